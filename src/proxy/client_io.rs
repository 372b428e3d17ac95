//! The client side of one accepted connection, below hyper: request heads are screened before hyper reads
//! them ([`crate::proxy::screen`]), and the connection-level timers nginx has are enforced here.
//!
//! ```text
//!   socket/TLS ──► ClientIo ──► hyper (HTTP/1 or HTTP/2) ──► service (server.rs) ──► handler
//!                   │  holds each HTTP/1 head until complete, judges it, then      │
//!                   │  passes it on — or a stand-in the service answers with the   │
//!                   │  refusal (so hyper writes it, in order, and closes)          │
//!                   └──────────── ConnState: requests begun/finished, upgraded ────┘
//! ```
//!
//! Timers (nginx's, measured while no request is in flight; a request in flight is bounded by the body and
//! upstream timeouts instead):
//! - `client_header_timeout`: the first request's head must be complete within it of the accept; a later
//!   head within it of its first byte. On expiry the connection is closed without an answer (as nginx).
//! - `keepalive_timeout`: an idle connection (last response done, no byte of a next head) is closed after it.
//! - HTTP/2, upgraded and unscreened connections have no head boundaries: an idle one (no stream in flight)
//!   is closed `keepalive_timeout` after its last response (the header timeout before the first), whatever
//!   bytes arrive meanwhile.
//!
//! Owns no routing and no policy: it only passes bytes, holds them back or ends the stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::debug;

use crate::proxy::deadline::MovingDeadline;
use crate::proxy::screen::{
    self, ChunkProgress, ChunkedScan, Framing, HeaderBuffers, Refusal, Verdict,
};

/// nginx's `client_header_timeout` default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `client_body_timeout` default.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// ingress-nginx's `keep-alive` default (nginx's own is 75 s too).
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// ingress-nginx's `max-worker-connections` default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16384;

/// The request hyper parses in place of a refused head: no body, `Connection: close`, so hyper closes the
/// connection after the service's answer.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused.invalid\r\nconnection: close\r\n\r\n";

/// What a client connection may do, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub header_timeout: Duration,
    /// Between two successive reads of a request body.
    pub body_timeout: Duration,
    /// Zero: no keep-alive (nginx's `keepalive_timeout 0`).
    pub keepalive_timeout: Duration,
    pub header_buffers: HeaderBuffers,
    /// Client connections open at once; more are closed on accept.
    pub max_connections: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            header_buffers: HeaderBuffers::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What a connection's IO layer and its request service share.
#[derive(Debug)]
pub struct ConnState {
    accepted: Instant,
    begun: AtomicU64,
    finished: AtomicU64,
    /// When the last response finished, in nanoseconds after `accepted`.
    idle_since_ns: AtomicU64,
    upgraded: AtomicBool,
    /// The index of the request standing in for a refused head, and the refusal.
    refused: OnceLock<(u64, Refusal)>,
}

impl ConnState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            accepted: Instant::now(),
            begun: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            idle_since_ns: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            refused: OnceLock::new(),
        })
    }

    /// A request reached the service; the guard marks it finished when dropped (with its response body).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let index = self.begun.fetch_add(1, Ordering::AcqRel);
        InFlight {
            state: self.clone(),
            index,
        }
    }

    /// The refusal when request number `index` is the stand-in for a refused head.
    pub fn refusal_for(&self, index: u64) -> Option<Refusal> {
        self.refused
            .get()
            .filter(|(i, _)| *i == index)
            .map(|(_, r)| *r)
    }

    /// The connection switched protocols (101): from here on it is a tunnel, without HTTP timers.
    pub fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    fn upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    fn in_flight(&self) -> bool {
        self.begun.load(Ordering::Acquire) > self.finished.load(Ordering::Acquire)
    }

    fn any_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire) > 0
    }

    fn idle_since(&self) -> Instant {
        self.accepted + Duration::from_nanos(self.idle_since_ns.load(Ordering::Acquire))
    }
}

/// One request in flight on a connection; see [`ConnState::begin`].
#[derive(Debug)]
pub struct InFlight {
    state: Arc<ConnState>,
    index: u64,
}

impl InFlight {
    pub fn index(&self) -> u64 {
        self.index
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ns = u64::try_from(self.state.accepted.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.state.idle_since_ns.fetch_max(ns, Ordering::AcqRel);
        self.state.finished.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
enum Phase {
    /// Collecting the next HTTP/1 head in `pending`.
    Head,
    /// Passing a body on; the next head starts where it ends.
    Body(BodyScan),
    /// A refused head was replaced by the stand-in; nothing more is read.
    Refused,
    /// Not screened (HTTP/2, an upgrade, or a head hyper refuses itself): bytes pass as they are.
    Passthrough,
}

#[derive(Debug)]
enum BodyScan {
    Length(u64),
    Chunked(ChunkedScan),
}

/// Screens and times one client connection; see the module docs.
#[derive(Debug)]
pub struct ClientIo<IO> {
    inner: IO,
    state: Arc<ConnState>,
    limits: ClientLimits,
    remote: SocketAddr,
    phase: Phase,
    /// Read from `inner`, not yet judged.
    pending: BytesMut,
    /// Judged and passed on, not yet handed to hyper.
    out: BytesMut,
    heads_passed: u64,
    /// When the first byte of the head in `pending` arrived.
    head_started: Option<Instant>,
    timer: MovingDeadline,
}

impl<IO> ClientIo<IO> {
    pub fn new(inner: IO, state: Arc<ConnState>, limits: ClientLimits, remote: SocketAddr) -> Self {
        Self {
            inner,
            state,
            limits,
            remote,
            phase: Phase::Head,
            pending: BytesMut::new(),
            out: BytesMut::new(),
            heads_passed: 0,
            head_started: None,
            timer: MovingDeadline::default(),
        }
    }

    /// Judge and pass on what `pending` holds, as far as it goes.
    fn advance(&mut self) {
        loop {
            match &mut self.phase {
                Phase::Refused => {
                    self.pending.clear();
                    return;
                }
                Phase::Passthrough => {
                    let all = self.pending.split();
                    self.out.unsplit(all);
                    return;
                }
                Phase::Body(scan) => {
                    if self.pending.is_empty() {
                        return;
                    }
                    let (taken, ended) = match scan {
                        BodyScan::Length(left) => {
                            let n = usize::try_from(*left)
                                .unwrap_or(usize::MAX)
                                .min(self.pending.len());
                            *left -= n as u64;
                            (n, *left == 0)
                        }
                        BodyScan::Chunked(chunks) => match chunks.feed(&self.pending) {
                            ChunkProgress::More => (self.pending.len(), false),
                            ChunkProgress::End(n) => (n, true),
                            // hyper refuses this body and closes the connection after the answer.
                            ChunkProgress::Invalid => {
                                self.phase = Phase::Passthrough;
                                continue;
                            }
                        },
                    };
                    let body = self.pending.split_to(taken);
                    self.out.unsplit(body);
                    if !ended {
                        return;
                    }
                    self.phase = Phase::Head;
                    self.head_started = (!self.pending.is_empty()).then(Instant::now);
                }
                Phase::Head => {
                    if self.pending.is_empty() {
                        return;
                    }
                    match screen::screen(&self.pending, self.limits.header_buffers) {
                        Verdict::Partial => return,
                        Verdict::NotScreened => self.phase = Phase::Passthrough,
                        Verdict::Accept { len, framing } => {
                            let head = self.pending.split_to(len);
                            self.out.unsplit(head);
                            self.head_passed(framing);
                            self.head_started = (!self.pending.is_empty()).then(Instant::now);
                        }
                        Verdict::Refuse(refusal) => {
                            debug!(remote = %self.remote, status = refusal.status, reason = refusal.reason, "request refused");
                            // Set once: the phase never leaves Refused.
                            let _ = self.state.refused.set((self.heads_passed, refusal));
                            self.pending.clear();
                            self.out.extend_from_slice(STAND_IN);
                            self.phase = Phase::Refused;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// A head was judged and passed on; what follows it is read as `framing` says.
    fn head_passed(&mut self, framing: Framing) {
        self.heads_passed += 1;
        self.phase = match framing {
            Framing::None => Phase::Head,
            Framing::Length(n) => Phase::Body(BodyScan::Length(n)),
            Framing::Chunked => Phase::Body(BodyScan::Chunked(ChunkedScan::default())),
            Framing::LeftToHyper => Phase::Passthrough,
        };
    }

    /// The common case: one read brought exactly one whole, acceptable head and nothing else was waiting.
    /// It is passed on where it lies, without the copies through `pending` and `out`.
    fn passes_whole(&mut self, read: &[u8]) -> bool {
        if !(matches!(self.phase, Phase::Head) && self.pending.is_empty() && self.out.is_empty()) {
            return false;
        }
        match screen::screen(read, self.limits.header_buffers) {
            Verdict::Accept { len, framing } if len == read.len() => {
                self.head_passed(framing);
                self.head_started = None;
                true
            }
            _ => false,
        }
    }

    /// When the connection must be closed if nothing changes; `None`: no connection-level limit now.
    fn deadline(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Refused) || self.state.upgraded() || self.state.in_flight() {
            return None;
        }
        let first = !self.state.any_finished();
        let idle_since = self.state.idle_since();
        if let (Phase::Head, Some(first_byte)) = (&self.phase, self.head_started) {
            let base = if first {
                self.state.accepted
            } else {
                first_byte.max(idle_since)
            };
            return Some(base + self.limits.header_timeout);
        }
        let limit = if first {
            self.limits.header_timeout
        } else {
            self.limits.keepalive_timeout
        };
        Some(idle_since + limit)
    }

    /// Nothing to read: arm the timer. `Ready`: the connection timed out (end the stream).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.deadline() else {
            return Poll::Pending;
        };
        // The deadline moves later with every request.
        if self.timer.poll_until(cx, deadline).is_pending() {
            return Poll::Pending;
        }
        let what = match (&self.phase, self.head_started) {
            (Phase::Head, Some(_)) => "client header timeout",
            _ if !self.state.any_finished() => "client header timeout (no request)",
            _ => "keep-alive timeout",
        };
        debug!(remote = %self.remote, "{what}; closing the connection");
        Poll::Ready(())
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ClientIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state.upgraded() && !matches!(this.phase, Phase::Passthrough | Phase::Refused) {
            this.phase = Phase::Passthrough;
        }
        loop {
            this.advance();
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if matches!(this.phase, Phase::Refused) {
                // hyper answers the stand-in and closes; the client's further bytes are never read.
                return Poll::Pending;
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Read into the caller's buffer; bytes not to be passed on yet are moved to `pending`.
            let start = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Pending => {
                    return match this.poll_deadline(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let got = buf.filled().len() - start;
            if got == 0 {
                // End of stream; a partial head is dropped, as nginx drops it.
                return Poll::Ready(Ok(()));
            }
            if matches!(this.phase, Phase::Passthrough) || this.passes_whole(&buf.filled()[start..])
            {
                return Poll::Ready(Ok(()));
            }
            if matches!(this.phase, Phase::Head) && this.pending.is_empty() {
                this.head_started = Some(Instant::now());
            }
            this.pending.extend_from_slice(&buf.filled()[start..]);
            buf.set_filled(start);
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ClientIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> ClientLimits {
        ClientLimits {
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(20),
            ..ClientLimits::default()
        }
    }

    fn wrap(
        limits: ClientLimits,
    ) -> (
        tokio::io::DuplexStream,
        ClientIo<tokio::io::DuplexStream>,
        Arc<ConnState>,
    ) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let state = ConnState::new();
        let io = ClientIo::new(
            server,
            state.clone(),
            limits,
            "127.0.0.1:1".parse().unwrap(),
        );
        (client, io, state)
    }

    /// Everything the wrapper passes on until the client stops writing (shut down) or a read would block.
    async fn passed(io: &mut ClientIo<tokio::io::DuplexStream>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            match tokio::time::timeout(Duration::from_millis(50), io.read(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => return out,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn pipelined_requests_pass_unchanged_in_small_reads() {
        let (mut client, mut io, _) = wrap(limits());
        let stream = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyzPOST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n";
        client.write_all(stream).await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(passed(&mut io).await, stream.to_vec());
        assert_eq!(io.heads_passed, 3);
    }

    #[tokio::test]
    async fn a_smuggling_head_after_a_chunked_body_is_replaced_by_the_stand_in() {
        let (mut client, mut io, state) = wrap(limits());
        let first = b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nGET\r\n0\r\n\r\n";
        let second = b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        client.write_all(first).await.unwrap();
        client.write_all(second).await.unwrap();
        let mut expected = first.to_vec();
        expected.extend_from_slice(STAND_IN);
        assert_eq!(passed(&mut io).await, expected);
        assert_eq!(state.refusal_for(0), None);
        assert_eq!(state.refusal_for(1).map(|r| r.status), Some(400));
    }

    #[tokio::test]
    async fn a_head_is_held_until_complete() {
        let (mut client, mut io, _) = wrap(limits());
        client.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
        assert_eq!(passed(&mut io).await, b"");
        client.write_all(b": a\r\n\r\n").await.unwrap();
        assert_eq!(passed(&mut io).await, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn header_timeout_counts_from_the_accept_for_the_first_request() {
        let (mut client, mut io, _) = wrap(limits());
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!((n, started.elapsed()), (0, Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keep_alive_connection_ends_after_the_keep_alive_timeout() {
        let (mut client, mut io, state) = wrap(limits());
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        let request = state.begin();
        // A response taking longer than both timeouts is not cut by them.
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(request);
        let idle = Instant::now();
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert_eq!(idle.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_counts_from_the_last_response_not_the_first() {
        let (mut client, mut io, state) = wrap(limits());
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut buf = [0u8; 256];
        let start = Instant::now();
        for _ in 0..2 {
            client.write_all(head).await.unwrap();
            // One read, one whole head: passed on as it was read.
            let n = io.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], head);
            drop(state.begin());
            // Idle for 15 s of the 20 s keep-alive: the read waits, the connection stays open.
            let idle = tokio::time::timeout(Duration::from_secs(15), io.read(&mut buf)).await;
            assert!(idle.is_err(), "closed while within keep-alive");
        }
        assert_eq!(io.heads_passed, 2);
        // The timer armed after the first response (due at 20 s) must not close it: 20 s after the second.
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert_eq!(start.elapsed(), Duration::from_secs(35));
    }

    #[tokio::test]
    async fn upgraded_connections_pass_everything() {
        let (mut client, mut io, state) = wrap(limits());
        client
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            )
            .await
            .unwrap();
        let _ = passed(&mut io).await;
        state.mark_upgraded();
        client.write_all(b"\x81\x05hello").await.unwrap();
        assert_eq!(passed(&mut io).await, b"\x81\x05hello");
    }
}
