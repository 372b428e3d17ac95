//! Prometheus metrics: the process's one registry, its metric families, and the text `/metrics` serves.
//!
//! Names and labels are the ones existing dashboards and alerts query:
//! - cert-manager's `certmanager_*` for certificates, the ACME client and controller syncs
//!   (`certificates`, `acme::client_metrics`);
//! - ingress-nginx's `nginx_ingress_controller_*` where certgate measures the same thing (requests, request
//!   and upstream-header latency, configuration reloads — `proxy`);
//! - `certgate_*` for the rest (upstream errors, TLS handshakes, connections, configuration build time).
//!
//! A [`Metrics`] handle is made once by `main` and cloned into whatever records: the data plane, the app
//! loops, the admin listener. Recording is atomics and pre-resolved label handles; nothing here decides
//! anything (certificate values come from `certs::decide` at scrape time) or does I/O.

pub mod certificates;
pub mod proxy;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::metrics::certificates::CertificateMetrics;
use crate::metrics::proxy::ProxyMetrics;

/// `Content-Type` of what [`Metrics::encode`] returns (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// prometheus-client's default (Go client) latency buckets, as ingress-nginx uses them.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric certgate exports, behind one cheap-to-clone handle.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub proxy: Arc<ProxyMetrics>,
    pub config: ConfigMetrics,
    pub certificates: Arc<CertificateMetrics>,
    sync_calls: Family<SyncLabels, ExactCounter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let proxy = Arc::new(ProxyMetrics::register(&mut registry));
        let config = ConfigMetrics::register(&mut registry);
        let certificates = Arc::new(CertificateMetrics::default());
        registry.register_collector(Box::new(certificates.clone()));
        crate::acme::client_metrics::register(&mut registry);
        let sync_calls = Family::<SyncLabels, ExactCounter>::default();
        registry.register(
            "certmanager_controller_sync_call_count",
            "The number of sync() calls made by a controller",
            sync_calls.clone(),
        );
        Self {
            registry: Arc::new(registry),
            proxy,
            config,
            certificates,
            sync_calls,
        }
    }

    /// cert-manager's `certmanager_controller_sync_call_count{controller}`: one more pass of a controller.
    pub fn sync_call(&self, controller: &'static str) {
        self.sync_calls
            .get_or_create(&SyncLabels { controller })
            .inc();
    }

    /// The Prometheus text exposition of every metric, as of now.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The `controller` label of `certmanager_controller_sync_call_count`. certgate's controllers: `certificates`
/// (one pass decides, issues and sets readiness — cert-manager splits that into several controllers),
/// `ingress-shim` and `issuers`, as cert-manager names theirs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    controller: &'static str,
}

/// Configuration reloads, under ingress-nginx's names (its "reload" is certgate's swap of a rebuilt
/// configuration), and how long building one took.
#[derive(Clone, Debug)]
pub struct ConfigMetrics {
    reloads: ExactCounter,
    reload_errors: ExactCounter,
    last_successful: Gauge,
    last_successful_time: Gauge,
    build_seconds: Histogram,
}

impl ConfigMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reloads: ExactCounter::default(),
            reload_errors: ExactCounter::default(),
            last_successful: Gauge::default(),
            last_successful_time: Gauge::default(),
            build_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        };
        registry.register(
            "nginx_ingress_controller_success",
            "Cumulative number of configuration reloads (rebuilt configurations swapped in)",
            m.reloads.clone(),
        );
        registry.register(
            "nginx_ingress_controller_errors",
            "Cumulative number of configuration reloads that failed (the previous configuration kept serving)",
            m.reload_errors.clone(),
        );
        registry.register(
            "nginx_ingress_controller_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            m.last_successful.clone(),
        );
        registry.register(
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
            "Timestamp of the last successful configuration reload",
            m.last_successful_time.clone(),
        );
        registry.register(
            "certgate_config_build_duration_seconds",
            "Time to read the sources and build a configuration, per reload",
            m.build_seconds.clone(),
        );
        m
    }

    /// A configuration built in `took` was swapped in.
    pub fn reloaded(&self, took: Duration) {
        self.reloads.inc();
        self.build_seconds.observe(took.as_secs_f64());
        self.last_successful.set(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_successful_time
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }

    /// A reload failed; the previous configuration keeps serving.
    pub fn reload_failed(&self) {
        self.reload_errors.inc();
        self.last_successful.set(0);
    }
}

/// A counter exported under its exact name. prometheus-client appends `_total` to every counter, but
/// cert-manager's and ingress-nginx's counters (`certmanager_controller_sync_call_count`,
/// `nginx_ingress_controller_requests`, …) have no such suffix, and dashboards query those names. The
/// series is typed `untyped`, which Prometheus stores and `rate()`s exactly like a counter.
#[derive(Clone, Debug, Default)]
pub struct ExactCounter(Counter);

impl ExactCounter {
    pub fn inc(&self) {
        self.0.inc();
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for ExactCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for ExactCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.0.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_counters_keep_their_names_without_a_total_suffix() {
        let metrics = Metrics::new();
        metrics.sync_call("certificates");
        metrics.sync_call("certificates");
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                "certmanager_controller_sync_call_count{controller=\"certificates\"} 2\n"
            ),
            "{text}"
        );
        assert!(!text.contains("sync_call_count_total"), "{text}");
    }

    #[test]
    fn a_reload_sets_success_and_its_time_and_a_failure_clears_success() {
        let metrics = Metrics::new();
        metrics.config.reloaded(Duration::from_millis(3));
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("nginx_ingress_controller_success 1\n"),
            "{text}"
        );
        assert!(
            text.contains("nginx_ingress_controller_config_last_reload_successful 1\n"),
            "{text}"
        );
        assert!(
            text.contains("certgate_config_build_duration_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        metrics.config.reload_failed();
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("nginx_ingress_controller_errors 1\n"),
            "{text}"
        );
        assert!(
            text.contains("nginx_ingress_controller_config_last_reload_successful 0\n"),
            "{text}"
        );
    }
}
