//! Data-plane metrics. Under ingress-nginx's names: `nginx_ingress_controller_requests{namespace, ingress,
//! host, status}` (status as a class, `2xx`, as ingress-nginx's `--report-status-classes` writes it),
//! `nginx_ingress_controller_request_duration_seconds` (until the response body is sent) and
//! `nginx_ingress_controller_header_duration_seconds` (until the upstream's response head), both
//! `{namespace, ingress, host}`. Under `certgate_*`: upstream errors by kind, TLS handshakes by result,
//! connections by listener.
//!
//! Label values are bounded by the configuration, never by what clients send: `host` is the server that
//! matched (`www.example.com`, `*.example.com`, or `_` for the catch-all), `ingress`/`namespace` are empty
//! when no Ingress served the request. The request path never builds a label set: [`ProxyMetrics::route`]
//! finds the route's handles in a copy-on-write map keyed by borrowed strings (one hash lookup, no
//! allocation); a route's status-class counters are created on first use.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::FastMap;
use crate::metrics::{ExactCounter, LATENCY_BUCKETS};

/// `host` label of requests that matched no named server.
pub const CATCH_ALL_HOST: &str = "_";

const STATUS_CLASSES: [&str; 9] = [
    "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx",
];

/// `2xx` for 200..=299, and so on; HTTP status codes are 100..=999.
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

fn status_class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 9) - 1
}

/// Why a request got no answer from an upstream (the `kind` label of `certgate_upstream_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The TCP connection could not be made (refused, unreachable, connect timeout).
    Connect,
    /// No response head within `proxy-read-timeout`.
    Timeout,
    /// The connection was reset or closed before the response head.
    Reset,
    /// The upstream answered something that is not HTTP.
    Protocol,
    /// Any other failure while sending the request.
    Other,
    /// Nothing to send to: no ready endpoint, missing Service or port.
    NoEndpoint,
    /// An ExternalName Service did not resolve, or resolved to a refused address.
    Resolve,
}

impl UpstreamError {
    const COUNT: usize = 7;

    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Protocol => "protocol",
            Self::Other => "other",
            Self::NoEndpoint => "no_endpoint",
            Self::Resolve => "resolve",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    namespace: String,
    ingress: String,
    host: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    namespace: String,
    ingress: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    namespace: String,
    ingress: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// The families a route's handles are taken from.
#[derive(Debug)]
struct Families {
    requests: Family<RequestLabels, ExactCounter>,
    request_duration: HistogramFamily<RouteLabels>,
    header_duration: HistogramFamily<RouteLabels>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
}

#[derive(Debug)]
pub struct ProxyMetrics {
    families: Arc<Families>,
    routes: ArcSwap<FastMap<RouteKey, Arc<RouteHandles>>>,
    tls_ok: Counter,
    tls_failed: Counter,
    tls_timed_out: Counter,
    http: ListenerHandles,
    https: ListenerHandles,
}

#[derive(Debug)]
struct ListenerHandles {
    active: Gauge,
    accepted: Counter,
}

impl ProxyMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let histogram: fn() -> Histogram = || Histogram::new(LATENCY_BUCKETS);
        let families = Families {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(histogram),
            header_duration: Family::new_with_constructor(histogram),
            upstream_errors: Family::default(),
        };
        registry.register(
            "nginx_ingress_controller_requests",
            "The total number of client requests, by status class",
            families.requests.clone(),
        );
        registry.register(
            "nginx_ingress_controller_request_duration_seconds",
            "The time from the request's arrival until its response body was sent",
            families.request_duration.clone(),
        );
        registry.register(
            "nginx_ingress_controller_header_duration_seconds",
            "The time spent on receiving the response head from the upstream server",
            families.header_duration.clone(),
        );
        registry.register(
            "certgate_upstream_errors",
            "Requests that got no response from an upstream, by kind of failure",
            families.upstream_errors.clone(),
        );
        let handshakes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certgate_tls_handshakes",
            "TLS handshakes on the HTTPS listener, by result (success, failure, timeout)",
            handshakes.clone(),
        );
        let active = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "certgate_connections_active",
            "Client connections open now, by listener",
            active.clone(),
        );
        let accepted = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "certgate_connections",
            "Client connections accepted, by listener",
            accepted.clone(),
        );
        let listener = |name: &'static str| ListenerHandles {
            active: active.get_or_create_owned(&ListenerLabels { listener: name }),
            accepted: accepted.get_or_create_owned(&ListenerLabels { listener: name }),
        };
        let result =
            |name: &'static str| handshakes.get_or_create_owned(&ResultLabels { result: name });
        Self {
            families: Arc::new(families),
            routes: ArcSwap::default(),
            tls_ok: result("success"),
            tls_failed: result("failure"),
            tls_timed_out: result("timeout"),
            http: listener("http"),
            https: listener("https"),
        }
    }

    /// The handles of one route: `namespace`/`ingress` of the Ingress that served the request (empty for
    /// none), `host` the matched server's name (or [`CATCH_ALL_HOST`]).
    pub fn route(&self, namespace: &str, ingress: &str, host: &str) -> Arc<RouteHandles> {
        let view = (namespace, ingress, host);
        if let Some(handles) = self.routes.load().get(&view as &dyn KeyView) {
            return handles.clone();
        }
        // First request on this route: make its handles and publish a map that has them.
        let key = RouteKey {
            namespace: namespace.to_owned(),
            ingress: ingress.to_owned(),
            host: host.to_owned(),
        };
        let made = Arc::new(RouteHandles::new(self.families.clone(), key.clone()));
        self.routes.rcu(|map| {
            let mut map = FastMap::clone(map);
            map.entry(key.clone()).or_insert_with(|| made.clone());
            map
        });
        // Ours, or a racer's made for the same key a moment earlier (both count into the same series).
        self.routes
            .load()
            .get(&view as &dyn KeyView)
            .cloned()
            .unwrap_or(made)
    }

    pub fn tls_handshake(&self, result: HandshakeResult) {
        match result {
            HandshakeResult::Success => self.tls_ok.inc(),
            HandshakeResult::Failure => self.tls_failed.inc(),
            HandshakeResult::Timeout => self.tls_timed_out.inc(),
        };
    }

    /// A connection was accepted on the HTTPS (`tls`) or HTTP listener; it counts as active until the
    /// returned guard is dropped.
    pub fn connection(&self, tls: bool) -> ConnectionGuard {
        let handles = if tls { &self.https } else { &self.http };
        handles.accepted.inc();
        handles.active.inc();
        ConnectionGuard {
            active: handles.active.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeResult {
    Success,
    Failure,
    Timeout,
}

/// Counts a connection as active while it lives.
#[derive(Debug)]
pub struct ConnectionGuard {
    active: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.active.dec();
    }
}

/// Pre-resolved metrics of one (namespace, ingress, host).
#[derive(Debug)]
pub struct RouteHandles {
    families: Arc<Families>,
    key: RouteKey,
    /// One per status class, created on first use: a route shows only the classes it answered.
    requests: [OnceLock<ExactCounter>; 9],
    upstream_errors: [OnceLock<Counter>; UpstreamError::COUNT],
    request_duration: Histogram,
    /// Created on first use: routes that never reach an upstream (404s, redirects) get no empty series.
    header_duration: OnceLock<Histogram>,
}

impl RouteHandles {
    fn new(families: Arc<Families>, key: RouteKey) -> Self {
        Self {
            request_duration: families.request_duration.get_or_create_owned(&key.labels()),
            header_duration: OnceLock::new(),
            families,
            key,
            requests: Default::default(),
            upstream_errors: Default::default(),
        }
    }

    /// A request finished with `status` after `seconds`.
    pub fn request(&self, status: u16, seconds: f64) {
        let class = status_class_index(status);
        self.requests[class]
            .get_or_init(|| {
                let RouteLabels {
                    namespace,
                    ingress,
                    host,
                } = self.key.labels();
                self.families.requests.get_or_create_owned(&RequestLabels {
                    namespace,
                    ingress,
                    host,
                    status: STATUS_CLASSES[class],
                })
            })
            .inc();
        self.request_duration.observe(seconds);
    }

    /// The upstream's response head arrived after `seconds`.
    pub fn upstream_header(&self, seconds: f64) {
        self.header_duration
            .get_or_init(|| {
                self.families
                    .header_duration
                    .get_or_create_owned(&self.key.labels())
            })
            .observe(seconds);
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind.index()]
            .get_or_init(|| {
                self.families
                    .upstream_errors
                    .get_or_create_owned(&UpstreamErrorLabels {
                        namespace: self.key.namespace.clone(),
                        ingress: self.key.ingress.clone(),
                        kind: kind.label(),
                    })
            })
            .inc();
    }
}

/// Key of the route map; looked up as `dyn KeyView` so a request borrows its strings instead of building
/// a key. Both impls hash the same `(&str, &str, &str)`, which `Borrow` requires.
#[derive(Debug, Clone)]
struct RouteKey {
    namespace: String,
    ingress: String,
    host: String,
}

impl RouteKey {
    fn labels(&self) -> RouteLabels {
        RouteLabels {
            namespace: self.namespace.clone(),
            ingress: self.ingress.clone(),
            host: self.host.clone(),
        }
    }
}

trait KeyView {
    fn parts(&self) -> (&str, &str, &str);
}

impl KeyView for RouteKey {
    fn parts(&self) -> (&str, &str, &str) {
        (&self.namespace, &self.ingress, &self.host)
    }
}

impl KeyView for (&str, &str, &str) {
    fn parts(&self) -> (&str, &str, &str) {
        *self
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for RouteKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyView + '_ {}

impl Hash for RouteKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for RouteKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for RouteKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn status_codes_fall_into_their_class() {
        assert_eq!(status_class(100), "1xx");
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(308), "3xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(499), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(999), "9xx");
        // Out of HTTP's range: the nearest class, never a panic.
        assert_eq!(status_class(0), "1xx");
        assert_eq!(status_class(u16::MAX), "9xx");
    }

    #[test]
    fn the_same_route_gets_the_same_handles_and_counts_by_class() {
        let metrics = Metrics::new();
        let a = metrics.proxy.route("prod", "web", "www.example.com");
        let b = metrics.proxy.route("prod", "web", "www.example.com");
        assert!(Arc::ptr_eq(&a, &b));
        let other = metrics.proxy.route("prod", "web", "api.example.com");
        assert!(!Arc::ptr_eq(&a, &other));
        a.request(200, 0.01);
        b.request(204, 0.01);
        a.request(404, 0.01);
        let text = metrics.encode().unwrap();
        let labels = r#"namespace="prod",ingress="web",host="www.example.com""#;
        assert!(
            text.contains(&format!(
                "nginx_ingress_controller_requests{{{labels},status=\"2xx\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "nginx_ingress_controller_requests{{{labels},status=\"4xx\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            !text.contains("status=\"5xx\""),
            "classes appear on first use: {text}"
        );
        assert!(
            text.contains(&format!(
                "nginx_ingress_controller_request_duration_seconds_count{{{labels}}} 3\n"
            )),
            "{text}"
        );
    }

    #[test]
    fn upstream_errors_count_by_kind_without_the_host() {
        let metrics = Metrics::new();
        metrics
            .proxy
            .route("prod", "web", "a.example.com")
            .upstream_error(UpstreamError::Connect);
        metrics
            .proxy
            .route("prod", "web", "b.example.com")
            .upstream_error(UpstreamError::Connect);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                "certgate_upstream_errors_total{namespace=\"prod\",ingress=\"web\",kind=\"connect\"} 2\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn connections_are_active_until_their_guard_drops() {
        let metrics = Metrics::new();
        let guard = metrics.proxy.connection(true);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("certgate_connections_active{listener=\"https\"} 1\n"),
            "{text}"
        );
        drop(guard);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("certgate_connections_active{listener=\"https\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("certgate_connections_total{listener=\"https\"} 1\n"),
            "{text}"
        );
    }
}
