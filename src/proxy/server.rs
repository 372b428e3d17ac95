//! Listeners: accept loops for plain HTTP and TLS, HTTP/1.1 and HTTP/2 on each (ALPN on TLS, prior
//! knowledge on plain), the client connection limit, graceful drain on shutdown.
//!
//! Every connection runs through [`ClientIo`] (head screening, header and keep-alive timeouts) and a
//! service that tells it when requests begin and finish, answers refused heads and marks upgrades.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::metrics::proxy::HandshakeResult;
use crate::proxy::Shared;
use crate::proxy::body;
use crate::proxy::client_io::{ClientIo, ClientLimits, ConnState, InFlight};
use crate::proxy::handler::{self, Conn};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish at shutdown.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// At most one "connection limit reached" warning per this interval (the limit is hit under attack).
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

fn connection_builder(limits: &ClientLimits) -> auto::Builder<TokioExecutor> {
    let head_limit = limits.header_buffers.total();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // ClientIo enforces nginx's header and keep-alive timeouts; hyper's own header timer would also
        // run while a keep-alive connection is idle, cutting keep-alive short.
        .header_read_timeout(None)
        .keep_alive(!limits.keepalive_timeout.is_zero())
        // Room for a head of the configured size (ClientIo refuses longer ones before hyper reads them).
        .max_buf_size(head_limit.saturating_add(16 << 10).max(64 << 10));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(head_limit).unwrap_or(u32::MAX));
    builder
}

/// Serve one accepted connection until it ends or shutdown drains it.
async fn run_connection<IO>(
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    io: IO,
    shared: Arc<Shared>,
    conn: Conn,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = ConnState::new();
    let io = ClientIo::new(io, state.clone(), shared.client, conn.remote);
    let remote = conn.remote;
    let conn = Arc::new(conn);
    let service = service_fn(move |req| {
        let (shared, state, conn) = (shared.clone(), state.clone(), conn.clone());
        async move {
            let request = state.begin();
            if let Some(refusal) = state.refusal_for(request.index()) {
                let code = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
                let mut resp = handler::status(code, code.canonical_reason().unwrap_or(""));
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                // Counted and logged like any answered request.
                let resp = handler::refused(&shared, resp);
                return Ok::<_, Infallible>(resp.map(|b| finishing(b, request)));
            }
            let resp = handler::handle(shared, conn, req).await;
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                state.mark_upgraded();
            }
            Ok(resp.map(|b| finishing(b, request)))
        }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        debug!(%error, %remote, "connection ended with an error");
    }
}

/// The response body, marking its request finished when hyper is done with it.
fn finishing<B>(inner: B, request: InFlight) -> Finishing<B> {
    Finishing {
        inner,
        _request: request,
    }
}

struct Finishing<B> {
    inner: B,
    _request: InFlight,
}

impl<B> hyper::body::Body for Finishing<B>
where
    B: hyper::body::Body<Data = bytes::Bytes, Error = body::BoxError> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, body::BoxError>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Accept loop of one listener. `tls`: terminate TLS with this acceptor first. `connections` is shared by
/// the listeners: nginx's `worker_connections`, for the whole process.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = connection_builder(&shared.client);
    let graceful = GracefulShutdown::new();
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let refused = AtomicU64::new(0);
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // As nginx with worker_connections exhausted: the connection is accepted and closed at once, so
        // the client (or the load balancer in front) can go elsewhere instead of waiting in the backlog.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            drop(stream);
            let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
            if last_warning.is_none_or(|t| t.elapsed() >= LIMIT_WARNING_INTERVAL) {
                last_warning = Some(tokio::time::Instant::now());
                warn!(
                    port = local_port,
                    refused = count,
                    limit = shared.client.max_connections,
                    "client connection limit reached; closing new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn::new(remote, local_port, tls.is_some());
        let (builder, shared, watcher, tls) = (
            builder.clone(),
            shared.clone(),
            graceful.watcher(),
            tls.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let _active = shared.metrics.connection(tls.is_some());
            let Some(acceptor) = tls else {
                return run_connection(builder, watcher, stream, shared, conn).await;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    shared.metrics.tls_handshake(HandshakeResult::Success);
                    run_connection(builder, watcher, tls_stream, shared, conn).await
                }
                Ok(Err(error)) => {
                    shared.metrics.tls_handshake(HandshakeResult::Failure);
                    debug!(%error, %remote, "TLS handshake failed")
                }
                Err(_) => {
                    shared.metrics.tls_handshake(HandshakeResult::Timeout);
                    debug!(%remote, "TLS handshake timed out")
                }
            }
        });
    }
    info!(port = local_port, "listener closed; draining connections");
    if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            port = local_port,
            "connections still open after the grace period"
        );
    }
}
