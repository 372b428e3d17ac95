//! The admin listener: `/healthz` (the process runs) and `/readyz` (listeners bound, configuration loaded).
//! It is started only after both are true, so both answer 200 once reachable.

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
}
