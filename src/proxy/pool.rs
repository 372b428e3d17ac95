//! Keep-alive HTTP/1.1 connections to upstreams, reused across requests (nginx's `upstream keepalive`).
//!
//! A connection is taken for one request and comes back when that request's response body has been read
//! to its end ([`PooledBody`]); a response cut short, or a connection switched to another protocol, is
//! never reused. While the body streams, nginx's `proxy_read_timeout` applies between two successive
//! reads: an upstream that stops sending mid-body fails the response (the client's connection is closed,
//! as nginx closes it) instead of holding it open forever. Idle connections are kept per (upstream
//! address, send timeout), since the send timeout is a property of the connection: at most
//! [`MAX_IDLE_PER_KEY`] of them, each for at most [`IDLE_TIMEOUT`]; a background sweep every 10 s closes
//! the expired ones.
//!
//! The pool holds one kind of connection ([`Reusable`]): hyper's client connections ([`Lent`], for
//! requests with a body and upgrades), or the direct path's ([`crate::proxy::direct::DirectConn`]). A
//! hyper connection is driven by its own task; the request's task talks to it through hyper's
//! `SendRequest`. Compared with hyper-util's general-purpose client this skips the URI-keyed pool, its
//! per-request readiness task and the absolute-form URI round trip.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use crate::FastMap;
use crate::proxy::body::{BoxError, ProxyBody};
use crate::proxy::deadline::{MovingDeadline, Silence};
use crate::proxy::forward::{ForwardError, SendTimeoutIo, connect_tcp};

/// ingress-nginx's `upstream-keepalive-connections` default.
pub const MAX_IDLE_PER_KEY: usize = 320;
/// ingress-nginx's `upstream-keepalive-timeout` default.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often idle connections past [`IDLE_TIMEOUT`] are closed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Which idle connections can serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    pub send_timeout: Duration,
}

/// A connection as the pool lends it: hyper's sender, and the timer that bounds each wait for the upstream
/// (its response head, then each read of its body). The timer stays with the connection, so a request
/// does not insert and remove a timer-wheel entry of its own.
pub struct Lent {
    pub sender: SendRequest<ProxyBody>,
    pub timer: MovingDeadline,
}

/// A connection the pool can keep while idle.
pub trait Reusable: Send + 'static {
    /// The upstream closed it, or it cannot carry another request.
    fn is_closed(&self) -> bool;
}

impl Reusable for Lent {
    fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

impl<C: Reusable> Idle<C> {
    fn usable(&self, now: Instant) -> bool {
        !self.conn.is_closed() && now.saturating_duration_since(self.since) < IDLE_TIMEOUT
    }
}

struct Inner<C> {
    idle: Mutex<FastMap<PoolKey, Vec<Idle<C>>>>,
    sweeper_started: AtomicBool,
}

impl<C> Default for Inner<C> {
    fn default() -> Self {
        Self {
            idle: Mutex::default(),
            sweeper_started: AtomicBool::new(false),
        }
    }
}

impl<C: Reusable> Inner<C> {
    fn idle(&self) -> MutexGuard<'_, FastMap<PoolKey, Vec<Idle<C>>>> {
        // Liveness: held only to push or pop, never across an await; a panic elsewhere cannot leave the
        // map half-updated.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn put(self: &Arc<Self>, key: PoolKey, conn: C) {
        if conn.is_closed() {
            return;
        }
        {
            let mut idle = self.idle();
            let list = idle.entry(key).or_default();
            if list.len() >= MAX_IDLE_PER_KEY {
                // The oldest is the first to expire upstream anyway.
                list.remove(0);
            }
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
        // A body can be dropped outside the runtime (at shutdown): then there is nothing to sweep for.
        if let Ok(runtime) = tokio::runtime::Handle::try_current()
            && !self.sweeper_started.swap(true, Ordering::Relaxed)
        {
            runtime.spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Drop idle connections past their time or closed upstream.
    fn sweep(&self) {
        let now = Instant::now();
        self.idle().retain(|_, list| {
            list.retain(|entry| entry.usable(now));
            !list.is_empty()
        });
    }
}

/// Started by the first connection handed back; runs as long as the pool exists.
async fn sweep<C: Reusable>(pool: Weak<Inner<C>>) {
    let mut every =
        tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_INTERVAL, SWEEP_INTERVAL);
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.sweep();
    }
}

/// The upstream connection pool, for one kind of connection; cheap to clone (shared).
pub struct Pool<C = Lent> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
        }
    }
}

impl<C: Reusable> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle: usize = self.inner.idle().values().map(Vec::len).sum();
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

impl<C: Reusable> Pool<C> {
    /// The most recently used idle connection still open (the likeliest to be still open upstream too).
    /// Connections past [`IDLE_TIMEOUT`] are the sweep's to close (at most one sweep interval late): no
    /// clock read here.
    pub fn take(&self, key: &PoolKey) -> Option<C> {
        let mut idle = self.inner.idle();
        let list = idle.get_mut(key)?;
        while let Some(entry) = list.pop() {
            if !entry.conn.is_closed() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Keep `conn` for the next request to `key` (unless it is closed, or the pool for `key` is full).
    pub fn put(&self, key: PoolKey, conn: C) {
        self.inner.put(key, conn);
    }
}

impl Pool<Lent> {
    /// A new connection, its driving task spawned. Upgrades (WebSocket) are passed through on it.
    pub async fn connect(
        &self,
        key: PoolKey,
        connect_timeout: Duration,
    ) -> Result<Lent, ForwardError> {
        let stream = connect_tcp(key.addr, connect_timeout).await?;
        let io = SendTimeoutIo::new(TokioIo::new(stream), key.send_timeout);
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ForwardError::Connect(format!("{}: {e}", key.addr)))?;
        let addr = key.addr;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                debug!(%error, upstream = %addr, "upstream connection ended with an error");
            }
        });
        Ok(Lent {
            sender,
            timer: MovingDeadline::default(),
        })
    }

    /// The response body that hands its connection back once read to its end; `read_timeout` bounds each
    /// wait for more of it.
    pub fn body(
        &self,
        status: StatusCode,
        inner: Incoming,
        key: PoolKey,
        conn: Lent,
        read_timeout: Duration,
    ) -> PooledBody {
        let Lent { sender, timer } = conn;
        // A 101 turns the connection into a tunnel: it never carries another request.
        let back = (status != StatusCode::SWITCHING_PROTOCOLS).then(|| Back {
            pool: self.inner.clone(),
            key,
            sender,
        });
        PooledBody {
            inner,
            back,
            upstream: key.addr,
            read_timeout,
            stalled: timer,
            silence: Silence::default(),
        }
    }
}

struct Back {
    pool: Arc<Inner<Lent>>,
    key: PoolKey,
    sender: SendRequest<ProxyBody>,
}

/// An upstream response body; see [`Pool::body`].
pub struct PooledBody {
    inner: Incoming,
    /// `None` once handed back, or when the connection must not be reused.
    back: Option<Back>,
    upstream: SocketAddr,
    read_timeout: Duration,
    stalled: MovingDeadline,
    silence: Silence,
}

/// The upstream sent nothing of the response body for the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing of the response body for {0:?}")]
pub struct BodyReadTimedOut(pub Duration);

impl PooledBody {
    fn release(&mut self) {
        if let Some(back) = self.back.take() {
            let timer = std::mem::take(&mut self.stalled);
            back.pool.put(
                back.key,
                Lent {
                    sender: back.sender,
                    timer,
                },
            );
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Ok(_))) => this.silence.reset(),
            // The connection broke mid-body: hyper closes it; it is never handed back.
            Poll::Ready(Some(Err(_))) => this.back = None,
            Poll::Pending
                if this
                    .silence
                    .too_long(&mut this.stalled, cx, this.read_timeout) =>
            {
                // Dropping the connection's sender (never handed back) closes it.
                this.back = None;
                warn!(upstream = %this.upstream, timeout = ?this.read_timeout, "upstream stopped sending the response body; closing");
                return Poll::Ready(Some(Err(BodyReadTimedOut(this.read_timeout).into())));
            }
            _ => {}
        }
        polled.map(|frame| frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304) is never polled; one dropped before its end is not reusable.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw HTTP/1.1 upstream on a real socket: answers every request head on a connection with `answer`
    /// and keeps the connection open.
    async fn upstream(answer: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while stream.read(&mut byte).await.unwrap_or(0) == 1 {
                        head.push(byte[0]);
                        if head.ends_with(b"\r\n\r\n") {
                            head.clear();
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn get() -> hyper::Request<ProxyBody> {
        hyper::Request::builder()
            .uri("/")
            .header("host", "a.example")
            .body(crate::proxy::body::empty())
            .expect("request")
    }

    const SECOND: Duration = Duration::from_secs(1);

    /// One exchange on a pooled (or new) connection; the response body is returned unread.
    async fn exchange(pool: &Pool, key: PoolKey) -> (PooledBody, bool) {
        let (mut conn, reused) = match pool.take(&key) {
            Some(conn) => (conn, true),
            None => (pool.connect(key, SECOND).await.expect("connect"), false),
        };
        conn.sender.ready().await.expect("ready");
        let resp = conn.sender.send_request(get()).await.expect("response");
        let status = resp.status();
        (
            pool.body(status, resp.into_body(), key, conn, SECOND),
            reused,
        )
    }

    fn key(addr: SocketAddr) -> PoolKey {
        PoolKey {
            addr,
            send_timeout: SECOND,
        }
    }

    #[tokio::test]
    async fn a_connection_comes_back_once_its_body_is_read_to_the_end() {
        let key = key(upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await);
        let pool = Pool::default();
        let (body, reused) = exchange(&pool, key).await;
        assert!(!reused);
        assert!(
            pool.take(&key).is_none(),
            "lent out while its body is unread"
        );
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"ok");
        let (body, reused) = exchange(&pool, key).await;
        assert!(reused, "the first connection was not used again");
        drop(body);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_never_comes_back() {
        // 5 of 10 promised bytes: the body cannot end.
        let key = key(upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345").await);
        let pool = Pool::default();
        let (mut body, _) = exchange(&pool, key).await;
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"12345"[..]));
        drop(body);
        assert!(
            pool.take(&key).is_none(),
            "a half-read connection was pooled"
        );
    }

    #[tokio::test]
    async fn an_upgraded_connection_never_comes_back() {
        let key = key(upstream(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
        )
        .await);
        let pool = Pool::default();
        let (body, _) = exchange(&pool, key).await;
        // Not even held for handing back: the connection task may not have noticed the switch yet.
        assert!(body.back.is_none(), "a tunnel would be handed back");
        drop(body);
        assert!(pool.take(&key).is_none(), "a tunnel was pooled");
    }

    #[tokio::test]
    async fn an_empty_body_that_is_never_polled_still_hands_its_connection_back() {
        let key = key(upstream(b"HTTP/1.1 204 No Content\r\n\r\n").await);
        let pool = Pool::default();
        let (body, _) = exchange(&pool, key).await;
        drop(body);
        assert!(pool.take(&key).is_some());
    }
}
