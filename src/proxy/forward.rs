//! Sending a request to an upstream over pooled keep-alive HTTP/1.1 connections, and classifying failures
//! by where they came from (they decide the status: 502, 504, 413, or the client's 400 / 408).
//!
//! The three ingress-nginx upstream timeouts, with nginx's meaning:
//! - `proxy-connect-timeout`: establishing the TCP connection (504 when it runs out);
//! - `proxy-send-timeout`: between two successive writes to the upstream — a write that makes no progress
//!   for this long (the upstream stopped reading) fails the request with 504;
//! - `proxy-read-timeout`: from the moment the whole request was handed to the connection until the
//!   response head (nginx starts it once the request is written); then between two successive reads of
//!   the response body ([`crate::proxy::pool::PooledBody`]). Both waits use the connection's own timer
//!   ([`crate::proxy::pool::Lent`]), which is moved, not made again, for each request.
//!
//! Requests without a body (most) go the direct path ([`crate::proxy::direct`]), driven by the request's
//! own task; requests with a body and upgrades go through hyper's client on connections from
//! [`crate::proxy::pool`]. A request that finds its pooled connection closed is sent again on a new one:
//! on hyper's path when none of it was written (as hyper-util's client does), on the direct path when no
//! response arrived and none of it was written or its method is idempotent (as nginx does).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::LengthLimitError;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::metrics::proxy::UpstreamError;
use crate::proxy::body::{self, ClientBodyError, ProxyBody};
use crate::proxy::deadline::{MovingDeadline, Silence};
use crate::proxy::direct::{self, DirectConn};
use crate::proxy::headers::{self, Forwarded};
use crate::proxy::pool::{Lent, Pool, PoolKey, PooledBody};
use crate::routing::table::Policy;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream connect failed: {0}")]
    Connect(String),
    #[error("upstream connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("upstream did not read the request for {0:?}")]
    SendTimeout(Duration),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("request body larger than the limit")]
    BodyTooLarge,
    #[error("client sent nothing of the request body for {0:?}")]
    ClientTimeout(Duration),
    #[error("bad request body: {0}")]
    ClientBody(String),
    #[error("upstream failed: {detail}")]
    Upstream { kind: UpstreamError, detail: String },
}

impl ForwardError {
    pub fn status(&self) -> hyper::StatusCode {
        use hyper::StatusCode;
        match self {
            Self::Connect(_) | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::ConnectTimeout(_) | Self::SendTimeout(_) | Self::Timeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::ClientBody(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The client is at fault and the request body was not read to its end: the connection cannot carry
    /// another request, so the answer says `Connection: close`.
    pub fn closes_client_connection(&self) -> bool {
        matches!(self, Self::ClientTimeout(_) | Self::ClientBody(_))
    }

    /// The upstream's part in the failure, for metrics; `None` when the client is at fault (body too large,
    /// too slow or malformed). A connect timeout is a failed connect; send and read timeouts are `timeout`.
    pub fn upstream_kind(&self) -> Option<UpstreamError> {
        match self {
            Self::Connect(_) | Self::ConnectTimeout(_) => Some(UpstreamError::Connect),
            Self::SendTimeout(_) | Self::Timeout(_) => Some(UpstreamError::Timeout),
            Self::BodyTooLarge | Self::ClientTimeout(_) | Self::ClientBody(_) => None,
            Self::Upstream { kind, .. } => Some(*kind),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Upstream {
    /// Connections hyper's client drives: requests with a body, and upgrades.
    pool: Pool,
    /// Connections the requests' own tasks drive: everything else ([`crate::proxy::direct`]).
    direct: Pool<DirectConn>,
}

impl Upstream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Send with the route's timeouts; the response body then streams.
    pub async fn send(
        &self,
        mut req: Request<ProxyBody>,
        forwarded: Forwarded<'_>,
        addr: SocketAddr,
        policy: &Policy,
    ) -> Result<Response<ProxyBody>, ForwardError> {
        let upload = !hyper::body::Body::is_end_stream(req.body());
        // Only an upgrade request keeps its Upgrade header (hop-by-hop otherwise).
        let upgrade = req.headers().contains_key(hyper::header::UPGRADE);
        if !upload && !upgrade {
            let (parts, _) = req.into_parts();
            let resp = direct::exchange(&self.direct, &parts, &forwarded, addr, policy).await?;
            return Ok(resp.map(body::stream));
        }
        forwarded.set_on(req.headers_mut());
        let mut resp = if upload {
            Box::pin(self.send_body(req, addr, policy)).await?
        } else {
            // Nothing to upload: the read timeout runs from when the request goes to the connection.
            Box::pin(self.exchange(req, addr, policy, Some(policy.read_timeout))).await?
        };
        // The direct path strips while it parses the head. A 101 answering an upgrade keeps its fields:
        // the handler passes it on as it is, and the connection becomes a tunnel.
        if !(upgrade && resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS) {
            headers::strip_response(resp.headers_mut());
        }
        Ok(resp.map(body::stream))
    }

    /// A request with a body to upload: the read timeout starts once all of it was handed over.
    async fn send_body(
        &self,
        req: Request<ProxyBody>,
        addr: SocketAddr,
        policy: &Policy,
    ) -> Result<Response<PooledBody>, ForwardError> {
        let read_timeout = policy.read_timeout;
        let (sent_tx, sent_rx) = oneshot::channel();
        let req = req.map(|b| body::stream(SignalEnd::new(b, sent_tx)));
        // nginx starts proxy_read_timeout once the request is sent; a slow upload is the send timeout's
        // business (and the client body timeout's), not this one's.
        let read_deadline = async move {
            let _ = sent_rx.await;
            tokio::time::sleep(read_timeout).await;
        };
        tokio::select! {
            result = self.exchange(req, addr, policy, None) => result,
            () = read_deadline => Err(ForwardError::Timeout(read_timeout)),
        }
    }

    /// `head_timeout`: how long the upstream may take to answer once the request is on its connection
    /// (`None` when the caller times that itself).
    async fn exchange(
        &self,
        mut req: Request<ProxyBody>,
        addr: SocketAddr,
        policy: &Policy,
        head_timeout: Option<Duration>,
    ) -> Result<Response<PooledBody>, ForwardError> {
        let key = PoolKey {
            addr,
            send_timeout: policy.send_timeout,
        };
        loop {
            let (mut conn, reused) = match self.pool.take(&key) {
                Some(conn) => (conn, true),
                // Boxed: the rare path should not make every request's future larger.
                None => (
                    Box::pin(self.pool.connect(key, policy.connect_timeout)).await?,
                    false,
                ),
            };
            let Lent { sender, timer } = &mut conn;
            let deadline = head_timeout.map(|t| (tokio::time::Instant::now() + t, t));
            // A connection handed back at the end of a body may still be finishing that exchange (and
            // find then that the upstream closes it): wait for it to be idle, or move on.
            if reused
                && !sender.is_ready()
                && before(timer, deadline, sender.ready()).await?.is_err()
            {
                continue;
            }
            match before(timer, deadline, sender.try_send_request(req)).await? {
                Ok(resp) => {
                    let status = resp.status();
                    let read_timeout = policy.read_timeout;
                    return Ok(resp.map(|b| self.pool.body(status, b, key, conn, read_timeout)));
                }
                Err(mut e) => match e.take_message() {
                    // The pooled connection closed before the request went out: try the next one.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(classify(&e.into_error(), policy)),
                },
            }
        }
    }
}

/// `wait`'s output, or [`ForwardError::Timeout`] once `deadline` passes first; `wait` alone without one.
async fn before<F: Future>(
    timer: &mut MovingDeadline,
    deadline: Option<(tokio::time::Instant, Duration)>,
    wait: F,
) -> Result<F::Output, ForwardError> {
    let Some((at, timeout)) = deadline else {
        return Ok(wait.await);
    };
    let mut wait = std::pin::pin!(wait);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = wait.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        timer
            .poll_until(cx, at)
            .map(|()| Err(ForwardError::Timeout(timeout)))
    })
    .await
}

fn classify(e: &hyper::Error, policy: &Policy) -> ForwardError {
    let mut source = Some(e as &(dyn std::error::Error + 'static));
    while let Some(s) = source {
        if s.is::<LengthLimitError>() {
            return ForwardError::BodyTooLarge;
        }
        if let Some(client) = s.downcast_ref::<ClientBodyError>() {
            return match client {
                ClientBodyError::Timeout(d) => ForwardError::ClientTimeout(*d),
                ClientBodyError::Malformed(e) => ForwardError::ClientBody(e.to_string()),
            };
        }
        // io::Error::source skips its payload, so look at the payload itself.
        if let Some(io) = s.downcast_ref::<io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<SendTimedOut>())
        {
            return ForwardError::SendTimeout(policy.send_timeout);
        }
        source = s.source();
    }
    ForwardError::Upstream {
        kind: failure_kind(e),
        detail: error_chain(e),
    }
}

/// A TCP connection to an upstream within `timeout`, Nagle off (both upstream paths).
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ForwardError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ForwardError::ConnectTimeout(timeout)),
        Ok(Err(e)) => return Err(ForwardError::Connect(format!("{addr}: {e}"))),
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Does this I/O failure mean the connection broke (reset, or closed in the middle of a message)?
pub fn breaks_connection(kind: io::ErrorKind) -> bool {
    use io::ErrorKind::*;
    matches!(
        kind,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// Reset: the connection broke before the response head (RST, EOF mid-message); protocol: the upstream
/// sent something that is not HTTP.
fn failure_kind(e: &hyper::Error) -> UpstreamError {
    let mut source = Some(e as &(dyn std::error::Error + 'static));
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return UpstreamError::Reset;
            }
            if h.is_parse() || h.is_parse_status() {
                return UpstreamError::Protocol;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && breaks_connection(io.kind())
        {
            return UpstreamError::Reset;
        }
        source = s.source();
    }
    UpstreamError::Other
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Fires `sent` when the body has been handed over completely (at once for an empty body, which hyper
/// never polls).
struct SignalEnd {
    inner: ProxyBody,
    sent: Option<oneshot::Sender<()>>,
}

impl SignalEnd {
    fn new(inner: ProxyBody, sent: oneshot::Sender<()>) -> Self {
        let mut this = Self {
            inner,
            sent: Some(sent),
        };
        if hyper::body::Body::is_end_stream(&this.inner) {
            this.fire();
        }
        this
    }

    fn fire(&mut self) {
        if let Some(sent) = self.sent.take() {
            let _ = sent.send(());
        }
    }
}

impl hyper::body::Body for SignalEnd {
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, body::BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.fire();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The payload of the io::Error a send timeout fails the connection with.
#[derive(Debug, thiserror::Error)]
#[error("upstream did not read for {0:?}")]
struct SendTimedOut(Duration);

/// An upstream connection whose writes fail when one makes no progress for `send_timeout`.
pub struct SendTimeoutIo {
    inner: TokioIo<TcpStream>,
    send_timeout: Duration,
    /// Since when writes have been waiting (the direct path's rule too).
    stalled: Silence,
    timer: MovingDeadline,
}

impl SendTimeoutIo {
    pub fn new(inner: TokioIo<TcpStream>, send_timeout: Duration) -> Self {
        Self {
            inner,
            send_timeout,
            stalled: Silence::default(),
            timer: MovingDeadline::default(),
        }
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled.reset();
            return polled;
        }
        let timeout = self.send_timeout;
        if self.stalled.too_long(&mut self.timer, cx, timeout) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                SendTimedOut(timeout),
            )));
        }
        Poll::Pending
    }
}

impl hyper::rt::Read for SendTimeoutIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for SendTimeoutIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
