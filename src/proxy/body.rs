//! The one body type responses and upstream requests use: streamed, boxed, never buffered whole.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn text(s: impl Into<Bytes>) -> ProxyBody {
    Full::new(s.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn stream<B>(body: B) -> ProxyBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Why reading a client's request body failed. Forwarding maps it to the client's fault (400 or 408), not
/// the upstream's (502).
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// nginx's `client_body_timeout`: nothing arrived for this long while the body was being read.
    #[error("client sent nothing of the request body for {0:?}")]
    Timeout(std::time::Duration),
    /// Malformed framing (a bad chunk size, a body shorter than its Content-Length) or a broken connection.
    #[error("client request body: {0}")]
    Malformed(#[source] hyper::Error),
}

/// A client's request body with nginx's `client_body_timeout`: the time between two successive reads,
/// counted only while the body is being read (a stalled upstream that stops reading stops the clock).
pub struct ClientBody {
    inner: hyper::body::Incoming,
    timeout: std::time::Duration,
    /// Armed when a read finds nothing; disarmed by the next frame.
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl ClientBody {
    pub fn new(inner: hyper::body::Incoming, timeout: std::time::Duration) -> Self {
        Self {
            inner,
            timeout,
            timer: None,
        }
    }
}

impl hyper::body::Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, ClientBodyError>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(ClientBodyError::Malformed(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyError::Timeout(timeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
