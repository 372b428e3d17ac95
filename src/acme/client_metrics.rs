//! ACME client metrics: every HTTP request instant-acme makes (retries and nonce fetches included, since the
//! wrapper sits below them) counted and timed under cert-manager's names and labels,
//! `certmanager_http_acme_client_request_count` and `certmanager_http_acme_client_request_duration_seconds`
//! `{scheme, host, path, method, status}`.
//!
//! This module owns the `instant_acme::HttpClient` wrapper and the label rules. It never reads request or
//! response bodies (JWS payloads carry the account's signatures) and never logs.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::{ExactCounter, LATENCY_BUCKETS};

/// The status label when no response came back (connection or TLS failure), as cert-manager writes it.
const NO_RESPONSE: u16 = 999;

/// One process-wide set of families. The ACME HTTP client is built in `certs::issue::http_client`, once per
/// issuance inside its spawned task, several calls below anything that holds a `Metrics` handle; the
/// families live here so that function can wrap its client without a handle threaded through the issuing
/// code, and every `Metrics` registry exposes these same families.
static FAMILIES: LazyLock<AcmeClientMetrics> = LazyLock::new(AcmeClientMetrics::new);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    scheme: String,
    host: String,
    path: String,
    method: String,
    status: String,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug)]
struct AcmeClientMetrics {
    count: Family<RequestLabels, ExactCounter>,
    // cert-manager exports a summary; prometheus-client has no summary type, and a histogram gives the same
    // `_sum` and `_count` series (average-latency panels work unchanged) plus buckets for quantiles.
    duration: HistogramFamily,
}

impl AcmeClientMetrics {
    fn new() -> Self {
        Self {
            count: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
        }
    }

    fn observe(&self, mut labels: RequestLabels, status: u16, took: Duration) {
        labels.status = status.to_string();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.count.get_or_create(&labels).inc();
    }
}

/// Add the ACME client families to a registry (`Metrics::new` does).
pub fn register(registry: &mut Registry) {
    registry.register(
        "certmanager_http_acme_client_request_count",
        "The number of requests made by the ACME client",
        FAMILIES.count.clone(),
    );
    registry.register(
        "certmanager_http_acme_client_request_duration_seconds",
        "The HTTP request latencies in seconds for the ACME client (to the response head)",
        FAMILIES.duration.clone(),
    );
}

/// Wrap an ACME HTTP client so each of its requests is counted and timed.
pub fn instrument(inner: Box<dyn HttpClient>) -> Box<dyn HttpClient> {
    Box::new(Instrumented {
        inner,
        metrics: FAMILIES.clone(),
    })
}

struct Instrumented {
    inner: Box<dyn HttpClient>,
    metrics: AcmeClientMetrics,
}

impl HttpClient for Instrumented {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri();
        let labels = RequestLabels {
            scheme: uri.scheme_str().unwrap_or_default().to_owned(),
            host: host_label(uri),
            path: path_label(uri.path()),
            method: req.method().as_str().to_owned(),
            status: String::new(),
        };
        let started = Instant::now();
        let response = self.inner.request(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let result = response.await;
            let status = result
                .as_ref()
                .map_or(NO_RESPONSE, |r| r.parts.status.as_u16());
            metrics.observe(labels, status, started.elapsed());
            result
        })
    }
}

/// `host[:port]`, as Go's `URL.Host` (cert-manager's label); never the userinfo.
fn host_label(uri: &hyper::Uri) -> String {
    let authority = uri.authority().map_or("", |a| a.as_str());
    authority.rsplit('@').next().unwrap_or("").to_owned()
}

/// The `path` label: cert-manager keeps the first two path segments, which drops Let's Encrypt's IDs
/// (`/acme/authz-v3/123` → `/acme/authz-v3`). Servers that put an ID within the first two (Pebble's
/// `/authZ/<id>`) would still make one series per order, so a segment that looks like an ID ends the label
/// there as well (`/authZ`).
pub fn path_label(path: &str) -> String {
    let mut label = String::new();
    for segment in path.split('/').skip(1).take(2) {
        if looks_like_id(segment) {
            break;
        }
        label.push('/');
        label.push_str(segment);
    }
    if label.is_empty() {
        label.push('/');
    }
    label
}

/// A number, or a long token with digits, capitals or `_` (base64url, hex): ACME endpoint names are short
/// lower-case words (`new-order`, `authz-v3`, `rollover-account-key`).
fn looks_like_id(segment: &str) -> bool {
    let all_digits = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
    let token = segment.len() >= 12
        && segment
            .bytes()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b == b'_');
    all_digits || token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_keeps_cert_managers_first_two_segments() {
        assert_eq!(path_label("/directory"), "/directory");
        assert_eq!(path_label("/acme/new-order"), "/acme/new-order");
        assert_eq!(path_label("/acme/authz-v3/4711"), "/acme/authz-v3");
        assert_eq!(path_label("/acme/order/123/456"), "/acme/order");
        assert_eq!(path_label("/acme/chall-v3/99/AbCdEf"), "/acme/chall-v3");
        assert_eq!(path_label("/"), "/");
        assert_eq!(path_label(""), "/");
    }

    #[test]
    fn ids_within_the_first_two_segments_are_stripped() {
        assert_eq!(
            path_label("/authZ/dGhpcyBpcyBhIHJhbmRvbSBpZCBvZiBwZWJibGU"),
            "/authZ"
        );
        assert_eq!(path_label("/certZ/4a3f9b2c1d0e8f7a"), "/certZ");
        assert_eq!(path_label("/my-account/1"), "/my-account");
        assert_eq!(
            path_label("/finalize-order/x_Y-12abcdefgh"),
            "/finalize-order"
        );
        // Endpoint names stay, however long.
        assert_eq!(path_label("/rollover-account-key"), "/rollover-account-key");
        assert_eq!(path_label("/nonce-plz"), "/nonce-plz");
    }

    #[test]
    fn host_is_host_and_port_without_userinfo() {
        let uri: hyper::Uri = "https://127.0.0.1:14000/dir".parse().unwrap();
        assert_eq!(host_label(&uri), "127.0.0.1:14000");
        let uri: hyper::Uri = "https://user@acme.example/dir".parse().unwrap();
        assert_eq!(host_label(&uri), "acme.example");
    }
}
