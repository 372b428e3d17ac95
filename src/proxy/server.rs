//! Listeners: accept loops for plain HTTP and TLS, HTTP/1.1 and HTTP/2 on each (ALPN on TLS, prior
//! knowledge on plain), graceful drain on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::proxy::Shared;
use crate::proxy::handler::{self, Conn};

/// Slow clients must not hold a connection forever (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish at shutdown.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
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
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handler::handle(shared, conn, req).await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        debug!(%error, remote = %conn.remote, "connection ended with an error");
    }
}

/// Accept loop of one listener. `tls`: terminate TLS with this acceptor first.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
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
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            remote,
            local_port,
            tls: tls.is_some(),
        };
        let (builder, shared, watcher, tls) = (
            builder.clone(),
            shared.clone(),
            graceful.watcher(),
            tls.clone(),
        );
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return run_connection(builder, watcher, stream, shared, conn).await;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    run_connection(builder, watcher, tls_stream, shared, conn).await
                }
                Ok(Err(error)) => debug!(%error, %remote, "TLS handshake failed"),
                Err(_) => debug!(%remote, "TLS handshake timed out"),
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
