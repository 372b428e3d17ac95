//! The data plane: listeners, the per-request decision, and forwarding to upstreams.
//!
//! Every request loads the current routing snapshot once (`ArcSwap::load_full`) and finishes on it, so a
//! configuration swap never disturbs requests in flight. Nothing here mutates configuration.

pub mod body;
pub mod client_io;
pub mod deadline;
pub mod direct;
pub mod forward;
pub mod handler;
pub mod headers;
pub mod observe;
pub mod pool;
pub mod screen;
pub mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use arc_swap::ArcSwap;

use crate::metrics::proxy::ProxyMetrics;
use crate::routing::table::RouteTable;

/// ingress-nginx's default HSTS header.
pub const DEFAULT_HSTS: &str = "max-age=31536000; includeSubDomains";

/// What the listeners share. Only `routes` changes after start, and only by atomic swap.
#[derive(Debug)]
pub struct Shared {
    pub routes: ArcSwap<RouteTable>,
    pub upstream: forward::Upstream,
    /// Client-side limits and timeouts (the command line's nginx-like flags).
    pub client: client_io::ClientLimits,
    /// Pending HTTP-01 challenges, answered before routing.
    pub http01: Arc<crate::acme::http01::Http01Tokens>,
    /// `Strict-Transport-Security` value for HTTPS responses of hosts with a certificate; `None`: off.
    pub hsts: Option<hyper::header::HeaderValue>,
    pub metrics: Arc<ProxyMetrics>,
    /// One `certgate::access` log line per request (`--access-log`).
    pub access_log: bool,
    allow_loopback: bool,
    /// The bound HTTPS port (redirects name it when it is not 443); set once the listener is bound.
    https_port: AtomicU16,
}

impl Shared {
    pub fn new(
        routes: RouteTable,
        client: client_io::ClientLimits,
        hsts: Option<hyper::header::HeaderValue>,
        allow_loopback: bool,
        metrics: Arc<ProxyMetrics>,
        access_log: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            routes: ArcSwap::from_pointee(routes),
            upstream: forward::Upstream::new(),
            client,
            http01: Arc::default(),
            hsts,
            metrics,
            access_log,
            allow_loopback,
            https_port: AtomicU16::new(443),
        })
    }

    pub fn allow_loopback(&self) -> bool {
        self.allow_loopback
    }

    pub fn https_port(&self) -> u16 {
        self.https_port.load(Ordering::Relaxed)
    }

    pub fn set_https_port(&self, port: u16) {
        self.https_port.store(port, Ordering::Relaxed);
    }
}
