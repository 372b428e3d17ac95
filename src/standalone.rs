//! Standalone mode (`certgate run --manifests DIR`): the proxy fed from a directory of manifests, reloaded
//! on every change. The same builders and data plane as Kubernetes mode; only the source differs.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::config::{ConfigBuilder, Snapshot};
use crate::proxy::{Shared, server};
use crate::routing::build::{BuildOptions, Report};
use crate::sources::manifests;
use crate::tls::{SniResolver, keypair, server_config};
use crate::world::ObjectKey;

/// `spec.controller` of IngressClasses certgate serves.
pub const CONTROLLER_NAME: &str = "certgate.io/ingress-controller";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("manifest directory {0}: {1}")]
    Manifests(PathBuf, std::io::Error),
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("--default-ssl-certificate {0:?} is not NAMESPACE/NAME")]
    DefaultCertificate(String),
    #[error("watching {0}: {1}")]
    Watch(PathBuf, notify::Error),
}

pub async fn run(args: RunArgs, shutdown: watch::Receiver<bool>) -> Result<(), RunError> {
    let common = &args.common;
    let options = BuildOptions {
        controller: CONTROLLER_NAME.into(),
        ingress_class: common.ingress_class.clone(),
        // Standalone mode serves Ingresses without a class by default.
        watch_without_class: true,
        allow_loopback: true,
    };
    let default_secret = match &common.default_ssl_certificate {
        None => None,
        Some(r) => Some(
            ObjectKey::parse(r, "default")
                .filter(|_| r.contains('/'))
                .ok_or_else(|| RunError::DefaultCertificate(r.clone()))?,
        ),
    };
    let generated = keypair::generate_default().map_err(|e| RunError::Tls(e.to_string()))?;
    let mut builder = ConfigBuilder::new(options, generated.certified, default_secret);
    let mut reported = BTreeSet::new();

    // Watch before the first load, so no change between the two is missed. A burst of events (an
    // editor's save) becomes one reload.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(|e| RunError::Watch(args.manifests.clone(), e))?;
    watcher
        .watch(&args.manifests, RecursiveMode::NonRecursive)
        .map_err(|e| RunError::Watch(args.manifests.clone(), e))?;
    let snapshot = load(&args.manifests, &mut builder, &mut reported)?;
    let hsts = (common.hsts != "off").then(|| common.hsts.clone());
    let shared = Shared::new(snapshot.routes, hsts, true);
    let resolver = Arc::new(SniResolver::new(snapshot.certs));
    let tls = server_config(resolver.clone()).map_err(|e| RunError::Tls(e.to_string()))?;

    let http = bind(SocketAddr::new(common.bind, common.http_port)).await?;
    let https = bind(SocketAddr::new(common.bind, common.https_port)).await?;
    let admin = bind(SocketAddr::new(common.bind, common.admin_port)).await?;
    let https_port = https
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(common.https_port);
    shared.set_https_port(https_port);
    for (listener, l) in [("http", &http), ("https", &https), ("admin", &admin)] {
        if let Ok(addr) = l.local_addr() {
            info!(listener, %addr, "listening");
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(server::serve(http, None, shared.clone(), shutdown.clone()));
    tasks.spawn(server::serve(
        https,
        Some(tokio_rustls::TlsAcceptor::from(tls)),
        shared.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::admin::serve(admin, shutdown.clone()));

    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            event = rx.recv() => {
                if event.is_none() { break; }
                while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {}
                match load(&args.manifests, &mut builder, &mut reported) {
                    Ok(snapshot) => {
                        shared.routes.store(Arc::new(snapshot.routes));
                        resolver.store(snapshot.certs);
                    }
                    Err(error) => warn!(%error, "reload failed; the previous configuration keeps serving"),
                }
            }
            _ = stop.changed() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| RunError::Bind(addr, e))
}

/// Read the directory and build a snapshot, logging problems and each report the first time it appears.
fn load(
    dir: &Path,
    builder: &mut ConfigBuilder,
    reported: &mut BTreeSet<String>,
) -> Result<Snapshot, RunError> {
    let started = Instant::now();
    let loaded = manifests::load_dir(dir).map_err(|e| RunError::Manifests(dir.to_owned(), e))?;
    for problem in &loaded.problems {
        warn!(%problem, "manifest not loaded");
    }
    for skipped in &loaded.skipped {
        info!(%skipped, "manifest kind not used by the proxy");
    }
    let snapshot = builder.build(&loaded.world);
    let current: BTreeSet<String> = snapshot.reports.iter().map(describe).collect();
    for report in snapshot
        .reports
        .iter()
        .filter(|r| !reported.contains(&describe(r)))
    {
        if report.warning {
            warn!(object = %report.object, reason = report.reason, message = %report.message, "configuration");
        } else {
            info!(object = %report.object, reason = report.reason, message = %report.message, "configuration");
        }
    }
    *reported = current;
    info!(
        ingresses = loaded.world.ingresses.len(),
        hosts = snapshot.routes.host_count(),
        certificates = snapshot.certs.len(),
        build_ms = started.elapsed().as_secs_f64() * 1000.0,
        "configuration loaded"
    );
    Ok(snapshot)
}

fn describe(r: &Report) -> String {
    format!("{} {} {}", r.object, r.reason, r.message)
}
