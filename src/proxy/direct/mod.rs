//! Requests without a body, sent to an upstream over HTTP/1.1 by the request's own task: the request head
//! is written, and the response head and body are read, by the futures the client's connection polls. No
//! connection task, no channel between tasks, no second HTTP state machine: this is most requests, and
//! on one core their cost is the proxy's throughput.
//!
//! Requests with a body to upload, and upgrades (WebSocket), go through hyper's client instead
//! ([`crate::proxy::pool`]): it reads the response while the body is still being written, and hands the
//! connection over for a tunnel.
//!
//! Timeouts as on hyper's path: `proxy-send-timeout` while a write makes no progress, `proxy-read-timeout`
//! from the request written to the response head and then between reads of the body. A pooled connection
//! that turns out closed before any of the response arrived is replaced by a new one, and the request sent
//! again, when nothing of it was written or the method is idempotent (nginx's rule).

mod body;
mod chunked;
mod head;

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use hyper::http::request;
use hyper::{Response, StatusCode};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::metrics::proxy::UpstreamError;
use crate::proxy::deadline::{MovingDeadline, Silence};
use crate::proxy::forward::{ForwardError, breaks_connection, connect_tcp};
use crate::proxy::headers::Forwarded;
use crate::proxy::pool::{Pool, PoolKey, Reusable};
use crate::routing::table::Policy;

pub use body::DirectBody;
use head::{Framing, HeadError};

/// Room made in the read buffer before a read, at first: enough for most response heads and small bodies.
const READ_SIZE: usize = 8 << 10;
/// The most room made before a read, for large bodies (hyper's adaptive reads go to ~400 KiB).
const MAX_READ_SIZE: usize = 256 << 10;

/// Room for a request head, at first (most are well under it).
const WRITE_SIZE: usize = 1 << 10;

/// An upstream connection this path drives itself.
pub struct DirectConn {
    stream: TcpStream,
    /// Read but not yet handed on; empty between requests.
    read: BytesMut,
    /// Room made before the next read: doubled after a read that filled it (a large body), back to
    /// [`READ_SIZE`] when the connection goes back to the pool.
    read_size: usize,
    /// The request head being written (kept to reuse its allocation).
    write: Vec<u8>,
    /// Bounds each wait for the upstream; stays with the connection (see [`MovingDeadline`]).
    timer: MovingDeadline,
}

impl Reusable for DirectConn {
    /// An idle keep-alive connection has nothing to read: readable means the upstream closed it (or sent
    /// something unasked). Checked against the readiness the runtime already has, without a system call
    /// unless it says readable.
    fn is_closed(&self) -> bool {
        if !self.read.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            // Readiness can be left over from the last read; only a read tells.
            Poll::Ready(Ok(())) => !matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }
}

impl DirectConn {
    async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, ForwardError> {
        Ok(Self {
            stream: connect_tcp(addr, timeout).await?,
            read: BytesMut::with_capacity(READ_SIZE),
            read_size: READ_SIZE,
            write: Vec::with_capacity(WRITE_SIZE),
            timer: MovingDeadline::default(),
        })
    }

    /// Write all of `self.write`; `send_timeout` bounds each wait for the upstream to take more.
    fn poll_write_head(
        &mut self,
        cx: &mut Context<'_>,
        written: &mut usize,
        stalled: &mut Silence,
        send_timeout: Duration,
    ) -> Poll<Result<(), Failure>> {
        while *written < self.write.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.write[*written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Failure::Io(io::ErrorKind::WriteZero.into())));
                }
                Poll::Ready(Ok(n)) => {
                    *written += n;
                    stalled.reset();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Failure::Io(e))),
                Poll::Pending if stalled.too_long(&mut self.timer, cx, send_timeout) => {
                    return Poll::Ready(Err(Failure::SendTimeout));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Read more into the buffer: `Ok(0)` at end of stream.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.read.reserve(self.read_size);
        let room = self.read.capacity() - self.read.len();
        let polled = tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read);
        if matches!(polled, Poll::Ready(Ok(n)) if n >= room) {
            self.read_size = (self.read_size * 2).min(MAX_READ_SIZE);
        }
        polled
    }

    /// Ready to wait in the pool: buffers grown for a large body or head are let go (the frames made from
    /// the read buffer keep it only as long as they live).
    fn shrink(&mut self) {
        if self.write.capacity() > 2 * WRITE_SIZE {
            self.write = Vec::with_capacity(WRITE_SIZE);
        }
        if self.read_size > READ_SIZE {
            self.read_size = READ_SIZE;
            if self.read.is_empty() && self.read.capacity() > 2 * READ_SIZE {
                self.read = BytesMut::with_capacity(READ_SIZE);
            }
        }
    }
}

/// Why one attempt failed.
enum Failure {
    Io(io::Error),
    SendTimeout,
    ReadTimeout,
    Head(HeadError),
    /// The upstream closed the connection before the response head was complete.
    Closed,
}

impl Failure {
    fn into_error(self, policy: &Policy) -> ForwardError {
        let upstream = |kind, detail: String| ForwardError::Upstream { kind, detail };
        match self {
            Self::Io(e) => upstream(io_kind(&e), e.to_string()),
            Self::SendTimeout => ForwardError::SendTimeout(policy.send_timeout),
            Self::ReadTimeout => ForwardError::Timeout(policy.read_timeout),
            Self::Head(e) => upstream(UpstreamError::Protocol, e.to_string()),
            Self::Closed => upstream(
                UpstreamError::Reset,
                "upstream closed the connection before the response head".into(),
            ),
        }
    }
}

fn io_kind(e: &io::Error) -> UpstreamError {
    // A write that took nothing is a broken connection here too.
    if breaks_connection(e.kind()) || e.kind() == io::ErrorKind::WriteZero {
        UpstreamError::Reset
    } else {
        UpstreamError::Other
    }
}

/// Send a request without a body (`parts`, whose URI is the origin-form target) and read the response
/// head; the body streams from the connection as the client takes it.
pub async fn exchange(
    pool: &Pool<DirectConn>,
    parts: &request::Parts,
    forwarded: &Forwarded<'_>,
    addr: SocketAddr,
    policy: &Policy,
) -> Result<Response<DirectBody>, ForwardError> {
    let key = PoolKey {
        addr,
        send_timeout: policy.send_timeout,
    };
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    loop {
        let (mut conn, reused) = match pool.take(&key) {
            Some(conn) => (conn, true),
            // Boxed: the rare path should not make every request's future larger.
            None => (
                Box::pin(DirectConn::connect(addr, policy.connect_timeout)).await?,
                false,
            ),
        };
        head::encode_request(
            &mut conn.write,
            &parts.method,
            target,
            &parts.headers,
            forwarded,
        );
        let mut written = 0;
        match roundtrip(&mut conn, &mut written, policy).await {
            Ok(response) => {
                let framing = head::framing(&parts.method, &response)
                    .map_err(|e| Failure::Head(e).into_error(policy))?;
                let reusable = framing != Framing::UntilClose && !response.closes;
                let mut resp = Response::new(());
                *resp.status_mut() = response.status;
                *resp.headers_mut() = response.headers;
                if let Some(reason) = response.reason {
                    resp.extensions_mut().insert(reason);
                }
                let body = DirectBody::new(
                    conn,
                    framing,
                    reusable.then(|| (pool.clone(), key)),
                    policy.read_timeout,
                    addr,
                );
                return Ok(resp.map(|()| body));
            }
            // A kept connection the upstream had closed: try a fresh one, when sending again is safe.
            Err(Failure::Io(_) | Failure::Closed)
                if reused && (written == 0 || parts.method.is_idempotent()) => {}
            Err(failure) => return Err(failure.into_error(policy)),
        }
    }
}

/// Write the head in `conn.write`, then read up to the end of a final (non-1xx) response head.
async fn roundtrip(
    conn: &mut DirectConn,
    written: &mut usize,
    policy: &Policy,
) -> Result<head::ResponseHead, Failure> {
    let mut stalled = Silence::default();
    poll_fn(|cx| conn.poll_write_head(cx, written, &mut stalled, policy.send_timeout)).await?;
    let deadline = Instant::now() + policy.read_timeout;
    poll_fn(|cx| {
        loop {
            match head::parse_response(&mut conn.read) {
                Ok(Some(head)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                    return Poll::Ready(Err(Failure::Head(HeadError::Invalid(
                        "101 Switching Protocols to a request that asked for no upgrade",
                    ))));
                }
                // 100 Continue, 103 Early Hints: the final response follows.
                Ok(Some(head)) if head.status.is_informational() => continue,
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(Failure::Head(e))),
            }
            match conn.poll_read_more(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Failure::Closed)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Failure::Io(e))),
                Poll::Pending => {
                    return match conn.timer.poll_until(cx, deadline) {
                        Poll::Ready(()) => Poll::Ready(Err(Failure::ReadTimeout)),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests;
