//! cert-manager's certificate metrics, computed at scrape time from the Certificates (and the Secrets they
//! name) the app loops last published, so they are current in both modes without hooking the issuing code:
//!
//! - `certmanager_certificate_expiration_timestamp_seconds`: the issued Secret's `notAfter` (0 without one);
//! - `certmanager_certificate_renewal_timestamp_seconds`: the renewal time `certs::decide` computes (0 without
//!   a certificate);
//! - `certmanager_certificate_ready_status{condition}`: one series per condition value, 1 on the current one.
//!
//! Labels are cert-manager's: `name`, `namespace`, `issuer_name`, `issuer_kind`, `issuer_group` (the
//! Certificate's `issuerRef` as written, empty when unset). `state` is pure; the rest only encodes.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use crate::certs::decide::{self, Decision, TLS_CRT};
use crate::certs::spec;
use crate::crd::certificate::Certificate;
use crate::crd::meta::ConditionStatus;
use crate::world::{ObjectKey, World};

/// The latest Certificates and their Secrets; encoded on every scrape.
#[derive(Debug, Default)]
pub struct CertificateMetrics {
    tracked: ArcSwap<Vec<Tracked>>,
}

#[derive(Debug)]
struct Tracked {
    certificate: Arc<Certificate>,
    secret: Option<Arc<Secret>>,
}

impl CertificateMetrics {
    /// Take the Certificates of a freshly loaded World (cheap: reference-counted objects, no parsing).
    pub fn publish(&self, world: &World) {
        let tracked = world
            .certificates
            .iter()
            .map(|(key, cert)| {
                let secret_key =
                    ObjectKey::new(key.namespace.clone(), cert.spec.secret_name.clone());
                Tracked {
                    certificate: cert.clone(),
                    secret: world.secrets.get(&secret_key).cloned(),
                }
            })
            .collect();
        self.tracked.store(Arc::new(tracked));
    }
}

/// The `condition` label of `certmanager_certificate_ready_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    True,
    False,
    Unknown,
}

impl Ready {
    const ALL: [Ready; 3] = [Ready::True, Ready::False, Ready::Unknown];

    fn label(self) -> &'static str {
        match self {
            Ready::True => "True",
            Ready::False => "False",
            Ready::Unknown => "Unknown",
        }
    }
}

/// What the metrics say about one Certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateState {
    pub not_after: Option<DateTime<Utc>>,
    pub renewal_time: Option<DateTime<Utc>>,
    pub ready: Ready,
}

/// The Secret's certificate dates, the renewal time `certs::decide` gives them, and readiness: the
/// Certificate's own `Ready` condition when it has one (Kubernetes mode, what `kubectl get certificate`
/// shows), else what certgate would set — True when `decide` finds the Secret up to date, False when it
/// would issue or the spec is invalid (standalone mode has no status to read).
pub fn state(
    cert: &Certificate,
    secret: Option<&BTreeMap<String, Vec<u8>>>,
    now: DateTime<Utc>,
) -> CertificateState {
    let wanted = spec::wanted(&cert.spec).ok();
    let info = secret
        .and_then(|data| data.get(TLS_CRT))
        .and_then(|crt| std::str::from_utf8(crt).ok())
        .and_then(|pem| crate::pki::inspect::describe(pem).ok());
    let renewal_time = match (&wanted, &info) {
        (Some(w), Some(i)) => Some(decide::renewal_time(w, i.not_before, i.not_after)),
        _ => None,
    };
    let condition = cert
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let ready = match (condition, &wanted) {
        (Some(c), _) => match c.status {
            ConditionStatus::True => Ready::True,
            ConditionStatus::False => Ready::False,
            ConditionStatus::Unknown => Ready::Unknown,
        },
        (None, None) => Ready::False,
        (None, Some(w)) => match decide::decide(w, secret, now) {
            Decision::UpToDate { .. } => Ready::True,
            Decision::Issue { .. } => Ready::False,
        },
    };
    CertificateState {
        not_after: info.map(|i| i.not_after),
        renewal_time,
        ready,
    }
}

fn timestamp(t: Option<DateTime<Utc>>) -> i64 {
    t.map_or(0, |t| t.timestamp())
}

impl Collector for CertificateMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tracked = self.tracked.load();
        if tracked.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let rows: Vec<([(&str, &str); 5], CertificateState)> = tracked
            .iter()
            .map(|t| {
                let cert = &t.certificate;
                let data = t.secret.as_deref().map(crate::routing::build::secret_data);
                let issuer = &cert.spec.issuer_ref;
                // Alphabetical, as cert-manager's (Go client) output orders them.
                let labels = [
                    ("issuer_group", issuer.group.as_deref().unwrap_or("")),
                    ("issuer_kind", issuer.kind.as_deref().unwrap_or("")),
                    ("issuer_name", issuer.name.as_str()),
                    ("name", cert.metadata.name.as_deref().unwrap_or("")),
                    (
                        "namespace",
                        cert.metadata.namespace.as_deref().unwrap_or("default"),
                    ),
                ];
                (labels, state(cert, data.as_ref(), now))
            })
            .collect();

        let mut expiration = encoder.encode_descriptor(
            "certmanager_certificate_expiration_timestamp_seconds",
            "When the certificate in the Secret expires (its notAfter), as a Unix timestamp; 0 without one.",
            None,
            MetricType::Gauge,
        )?;
        for (labels, st) in &rows {
            expiration
                .encode_family(labels)?
                .encode_gauge(&timestamp(st.not_after))?;
        }
        let mut renewal = encoder.encode_descriptor(
            "certmanager_certificate_renewal_timestamp_seconds",
            "When the certificate will be renewed, as a Unix timestamp; 0 without one.",
            None,
            MetricType::Gauge,
        )?;
        for (labels, st) in &rows {
            renewal
                .encode_family(labels)?
                .encode_gauge(&timestamp(st.renewal_time))?;
        }
        let mut ready = encoder.encode_descriptor(
            "certmanager_certificate_ready_status",
            "The Ready condition of the certificate: 1 on the current value.",
            None,
            MetricType::Gauge,
        )?;
        for (labels, st) in &rows {
            for condition in Ready::ALL {
                let [group, kind, issuer, name, namespace] = *labels;
                let with_condition = [
                    ("condition", condition.label()),
                    group,
                    kind,
                    issuer,
                    name,
                    namespace,
                ];
                ready
                    .encode_family(&with_condition)?
                    .encode_gauge(&i64::from(st.ready == condition))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::decide::TLS_KEY;
    use chrono::Duration;
    use serde_json::json;

    fn certificate(status: serde_json::Value) -> Certificate {
        serde_json::from_value(json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"secretName": "web-tls", "issuerRef": {"name": "ca", "kind": "Issuer"},
                     "dnsNames": ["web.example.com"], "duration": "2160h", "privateKey": {"algorithm": "ECDSA"}},
            "status": status,
        }))
        .unwrap()
    }

    fn issued(cert: &Certificate, at: DateTime<Utc>) -> BTreeMap<String, Vec<u8>> {
        let wanted = spec::wanted(&cert.spec).unwrap();
        let key = crate::pki::key::generate(&wanted.key).unwrap();
        let signed = crate::pki::sign::self_signed(&wanted.request, &key.key_pair, at).unwrap();
        BTreeMap::from([
            (TLS_CRT.to_owned(), signed.chain_pem.into_bytes()),
            (TLS_KEY.to_owned(), key.pem.into_bytes()),
        ])
    }

    #[test]
    fn an_up_to_date_secret_gives_its_dates_and_ready_true() {
        let cert = certificate(json!({}));
        let now = Utc::now();
        let data = issued(&cert, now);
        let st = state(&cert, Some(&data), now);
        let not_after = st.not_after.unwrap();
        assert!(
            (not_after - (now + Duration::hours(2160)))
                .num_seconds()
                .abs()
                <= 1
        );
        // A third of the lifetime before notAfter, as `decide` renews.
        assert_eq!(st.renewal_time, Some(not_after - Duration::hours(720)));
        assert_eq!(st.ready, Ready::True);
    }

    #[test]
    fn without_a_secret_there_are_no_dates_and_it_is_not_ready() {
        let st = state(&certificate(json!({})), None, Utc::now());
        assert_eq!(
            st,
            CertificateState {
                not_after: None,
                renewal_time: None,
                ready: Ready::False
            }
        );
    }

    #[test]
    fn past_its_renewal_time_the_dates_stay_and_it_is_not_ready() {
        let cert = certificate(json!({}));
        let then = Utc::now() - Duration::hours(2000);
        let st = state(&cert, Some(&issued(&cert, then)), Utc::now());
        assert!(st.not_after.is_some() && st.renewal_time.is_some());
        assert_eq!(st.ready, Ready::False);
    }

    #[test]
    fn a_ready_condition_in_the_status_wins() {
        let cert = certificate(
            json!({"conditions": [{"type": "Ready", "status": "Unknown", "reason": "Pending"}]}),
        );
        let now = Utc::now();
        assert_eq!(
            state(&cert, Some(&issued(&cert, now)), now).ready,
            Ready::Unknown
        );
    }

    #[test]
    fn scrape_has_cert_managers_names_labels_and_one_ready_series_per_condition() {
        let cert = Arc::new(certificate(json!({})));
        let mut world = World::default();
        world
            .certificates
            .insert(ObjectKey::new("prod", "web"), cert.clone());
        let metrics = crate::metrics::Metrics::new();
        metrics.certificates.publish(&world);
        let text = metrics.encode().unwrap();
        let labels =
            r#"issuer_group="",issuer_kind="Issuer",issuer_name="ca",name="web",namespace="prod""#;
        for line in [
            format!("certmanager_certificate_expiration_timestamp_seconds{{{labels}}} 0\n"),
            format!("certmanager_certificate_renewal_timestamp_seconds{{{labels}}} 0\n"),
            format!("certmanager_certificate_ready_status{{condition=\"True\",{labels}}} 0\n"),
            format!("certmanager_certificate_ready_status{{condition=\"False\",{labels}}} 1\n"),
            format!("certmanager_certificate_ready_status{{condition=\"Unknown\",{labels}}} 0\n"),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
    }
}
