//! Starting the listeners and swapping configuration into them; reporting each configuration problem once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::app::AppError;
use crate::cli::CommonArgs;
use crate::config::Snapshot;
use crate::metrics::Metrics;
use crate::proxy::{Shared, server};
use crate::routing::build::Report;
use crate::tls::{SniResolver, server_config};

pub struct DataPlane {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    resolver: Arc<SniResolver>,
    tasks: JoinSet<()>,
}

impl DataPlane {
    /// Bind the HTTP, HTTPS and admin listeners (logging each bound address) and start serving `first`.
    pub async fn start(
        common: &CommonArgs,
        first: Snapshot,
        allow_loopback: bool,
        metrics: &Metrics,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, AppError> {
        let hsts = match common.hsts.as_str() {
            "off" => None,
            value => Some(hyper::header::HeaderValue::from_str(value).map_err(|_| {
                AppError::Flag(format!("--hsts {value:?} is not a valid header value"))
            })?),
        };
        let client = common.client.limits();
        let shared = Shared::new(
            first.routes,
            client,
            hsts,
            allow_loopback,
            metrics.proxy.clone(),
            common.access_log,
        );
        // One limit for both listeners, as nginx's worker_connections counts every client connection.
        let connections = Arc::new(tokio::sync::Semaphore::new(client.max_connections));
        let resolver = Arc::new(SniResolver::new(first.certs));
        let tls = server_config(resolver.clone()).map_err(|e| AppError::Tls(e.to_string()))?;

        let http = bind(SocketAddr::new(common.bind, common.http_port)).await?;
        let https = bind(SocketAddr::new(common.bind, common.https_port)).await?;
        let admin = bind(SocketAddr::new(common.bind, common.admin_port)).await?;
        shared.set_https_port(
            https
                .local_addr()
                .map(|a| a.port())
                .unwrap_or(common.https_port),
        );
        for (listener, l) in [("http", &http), ("https", &https), ("admin", &admin)] {
            if let Ok(addr) = l.local_addr() {
                info!(listener, %addr, "listening");
            }
        }
        let http_addr = http
            .local_addr()
            .map_err(|e| AppError::Bind(SocketAddr::new(common.bind, common.http_port), e))?;
        let mut tasks = JoinSet::new();
        tasks.spawn(server::serve(
            http,
            None,
            shared.clone(),
            connections.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(server::serve(
            https,
            Some(tokio_rustls::TlsAcceptor::from(tls)),
            shared.clone(),
            connections,
            shutdown.clone(),
        ));
        tasks.spawn(crate::admin::serve(admin, metrics.clone(), shutdown));
        Ok(Self {
            shared,
            http_addr,
            resolver,
            tasks,
        })
    }

    /// Pending HTTP-01 challenges the HTTP listener answers.
    pub fn http01(&self) -> Arc<crate::acme::http01::Http01Tokens> {
        self.shared.http01.clone()
    }

    /// Where the HTTP listener is bound (for HTTP-01 self checks; 0.0.0.0 is reached via loopback).
    pub fn http_addr(&self) -> SocketAddr {
        if self.http_addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], self.http_addr.port()))
        } else {
            self.http_addr
        }
    }

    /// Swap a new configuration in: requests in flight finish on the old one.
    pub fn apply(&self, snapshot: Snapshot) {
        self.shared.routes.store(Arc::new(snapshot.routes));
        self.resolver.store(snapshot.certs);
    }

    /// Wait until every listener has drained after shutdown.
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Bind(addr, e))
}

/// Remembers which reports were already made, so a problem is reported once, not on every rebuild, and is
/// reported again if it goes away and comes back.
#[derive(Debug, Default)]
pub struct ReportLog {
    current: BTreeSet<String>,
}

impl ReportLog {
    /// The reports not in the previous set.
    pub fn fresh<'a>(&mut self, reports: &'a [Report]) -> Vec<&'a Report> {
        let key = |r: &Report| format!("{} {} {}", r.object, r.reason, r.message);
        let next: BTreeSet<String> = reports.iter().map(key).collect();
        let fresh = reports
            .iter()
            .filter(|r| !self.current.contains(&key(r)))
            .collect();
        self.current = next;
        fresh
    }
}

pub fn log_report(report: &Report) {
    if report.warning {
        warn!(object = %report.object, reason = report.reason, detail = %report.message, "configuration");
    } else {
        info!(object = %report.object, reason = report.reason, detail = %report.message, "configuration");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::ObjectKey;

    fn report(msg: &str) -> Report {
        Report {
            object: ObjectKey::new("ns", "i"),
            warning: true,
            reason: "R",
            message: msg.into(),
        }
    }

    #[test]
    fn a_report_is_fresh_once_and_again_after_it_cleared() {
        let mut log = ReportLog::default();
        assert_eq!(log.fresh(&[report("a")]).len(), 1);
        assert_eq!(log.fresh(&[report("a")]).len(), 0);
        assert_eq!(log.fresh(&[report("a"), report("b")]).len(), 1);
        assert_eq!(log.fresh(&[]).len(), 0);
        assert_eq!(log.fresh(&[report("a")]).len(), 1);
    }
}
