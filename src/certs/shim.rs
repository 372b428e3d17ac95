//! ingress-shim, the pure part: which Certificates an annotated Ingress asks for, as cert-manager derives
//! them. One Certificate per `spec.tls` entry, named after its `secretName`, with the entry's hosts as
//! dnsNames (IP literals as ipAddresses) and the `cert-manager.io/*` annotations applied.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::crd::certificate::Certificate;
use crate::crd::duration::parse_go_duration;

pub const CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";
pub const ISSUER: &str = "cert-manager.io/issuer";
pub const ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
pub const ISSUER_GROUP: &str = "cert-manager.io/issuer-group";
pub const TLS_ACME: &str = "kubernetes.io/tls-acme";

/// The issuer `kubernetes.io/tls-acme: "true"` Ingresses use (cert-manager's --default-issuer-* flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefaultIssuer {
    pub name: String,
    pub kind: String,
    pub group: String,
}

/// cert-manager reports these on the Ingress with reason `BadConfig`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("BadConfig: {0}")]
pub struct BadConfig(pub String);

/// The Certificates `ing` asks for; empty when it carries no issuer annotation.
pub fn certificates(
    ing: &Ingress,
    default_issuer: Option<&DefaultIssuer>,
) -> Result<Vec<Certificate>, BadConfig> {
    let a = ing.annotations();
    let issuer_ref = match (
        a.get(ISSUER),
        a.get(CLUSTER_ISSUER),
        a.get(TLS_ACME).map(String::as_str),
    ) {
        (Some(_), Some(_), _) => {
            return Err(BadConfig(format!(
                "both {ISSUER} and {CLUSTER_ISSUER} are set; choose one"
            )));
        }
        (Some(name), None, _) => json!({
            "name": name,
            "kind": a.get(ISSUER_KIND).cloned().unwrap_or_else(|| "Issuer".into()),
            "group": a.get(ISSUER_GROUP).cloned().unwrap_or_else(|| "cert-manager.io".into()),
        }),
        (None, Some(name), _) => {
            json!({"name": name, "kind": "ClusterIssuer", "group": "cert-manager.io"})
        }
        (None, None, Some("true")) => match default_issuer {
            Some(d) => json!({"name": d.name, "kind": d.kind, "group": d.group}),
            None => {
                return Err(BadConfig(format!(
                    "{TLS_ACME} is set but no default issuer is configured"
                )));
            }
        },
        (None, None, _) => return Ok(Vec::new()),
    };
    let mut spec_extra = BTreeMap::new();
    apply_annotations(a, &mut spec_extra)?;

    let namespace = ing.namespace().unwrap_or_else(|| "default".into());
    let mut out: Vec<Certificate> = Vec::new();
    for (i, tls) in ing
        .spec
        .iter()
        .flat_map(|s| s.tls.iter().flatten())
        .enumerate()
    {
        let secret = tls
            .secret_name
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                BadConfig(format!(
                    "TLS entry {i} for hosts {:?} must specify a secretName",
                    tls.hosts
                ))
            })?;
        if out.iter().any(|c| c.spec.secret_name == secret) {
            return Err(BadConfig(format!(
                "duplicate TLS entry for secretName {secret:?}"
            )));
        }
        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        for host in tls.hosts.iter().flatten() {
            if host.parse::<IpAddr>().is_ok() {
                ips.push(host.clone())
            } else {
                dns.push(host.clone())
            }
        }
        let mut spec = json!({"secretName": secret, "issuerRef": issuer_ref.clone()});
        if !dns.is_empty() {
            spec["dnsNames"] = json!(dns);
        }
        if !ips.is_empty() {
            spec["ipAddresses"] = json!(ips);
        }
        for (k, v) in &spec_extra {
            spec[k] = v.clone();
        }
        let cert = json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": secret, "namespace": namespace, "labels": ing.labels()},
            "spec": spec,
        });
        out.push(
            serde_json::from_value(cert)
                .map_err(|e| BadConfig(format!("Certificate {secret}: {e}")))?,
        );
    }
    Ok(out)
}

/// The `cert-manager.io/*` annotations that shape the Certificates, validated as cert-manager does.
fn apply_annotations(
    a: &BTreeMap<String, String>,
    spec: &mut BTreeMap<&'static str, Value>,
) -> Result<(), BadConfig> {
    let bad = |name: &str, value: &str, why: &str| {
        BadConfig(format!(
            "annotation cert-manager.io/{name}: {value:?} {why}"
        ))
    };
    let get = |name: &str| a.get(&format!("cert-manager.io/{name}"));
    if let Some(v) = get("common-name") {
        spec.insert("commonName", json!(v));
    }
    for (name, field) in [("duration", "duration"), ("renew-before", "renewBefore")] {
        if let Some(v) = get(name) {
            parse_go_duration(v).map_err(|e| bad(name, v, &format!("is not a duration: {e}")))?;
            spec.insert(field, json!(v));
        }
    }
    if let Some(v) = get("renew-before-percentage") {
        let p: i32 = v
            .parse()
            .ok()
            .filter(|p| (1..100).contains(p))
            .ok_or_else(|| bad("renew-before-percentage", v, "is not between 1 and 99"))?;
        spec.insert("renewBeforePercentage", json!(p));
    }
    if let Some(v) = get("revision-history-limit") {
        let n: i32 = v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad("revision-history-limit", v, "is not a positive number"))?;
        spec.insert("revisionHistoryLimit", json!(n));
    }
    if let Some(v) = get("usages") {
        let usages: Vec<&str> = v
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        spec.insert("usages", json!(usages));
    }
    let mut key = serde_json::Map::new();
    if let Some(v) = get("private-key-algorithm") {
        match v.as_str() {
            "RSA" | "ECDSA" | "Ed25519" => key.insert("algorithm".into(), json!(v)),
            _ => {
                return Err(bad(
                    "private-key-algorithm",
                    v,
                    "is not RSA, ECDSA or Ed25519",
                ));
            }
        };
    }
    if let Some(v) = get("private-key-encoding") {
        match v.as_str() {
            "PKCS1" | "PKCS8" => key.insert("encoding".into(), json!(v)),
            _ => return Err(bad("private-key-encoding", v, "is not PKCS1 or PKCS8")),
        };
    }
    if let Some(v) = get("private-key-size") {
        let size: i64 = v
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| bad("private-key-size", v, "is not a key size"))?;
        key.insert("size".into(), json!(size));
    }
    if let Some(v) = get("private-key-rotation-policy") {
        match v.as_str() {
            "Never" | "Always" => key.insert("rotationPolicy".into(), json!(v)),
            _ => {
                return Err(bad(
                    "private-key-rotation-policy",
                    v,
                    "is not Never or Always",
                ));
            }
        };
    }
    if !key.is_empty() {
        spec.insert("privateKey", Value::Object(key));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::certificate::PrivateKeyAlgorithm;

    fn ingress(annotations: Value, tls: Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "prod", "annotations": annotations, "labels": {"app": "web"}},
            "spec": {"tls": tls}
        }))
        .unwrap()
    }

    #[test]
    fn one_certificate_per_tls_entry_named_after_its_secret() {
        let ing = ingress(
            json!({CLUSTER_ISSUER: "letsencrypt"}),
            json!([{"hosts": ["a.example.com", "b.example.com"], "secretName": "ab-tls"},
                   {"hosts": ["192.0.2.10"], "secretName": "ip-tls"}]),
        );
        let certs = certificates(&ing, None).unwrap();
        assert_eq!(certs.len(), 2);
        let ab = &certs[0];
        assert_eq!(
            (ab.name_any(), ab.namespace().as_deref()),
            ("ab-tls".to_owned(), Some("prod"))
        );
        assert_eq!(
            ab.spec.dns_names.as_deref(),
            Some(&["a.example.com".to_owned(), "b.example.com".to_owned()][..])
        );
        assert_eq!(ab.spec.issuer_ref.kind.as_deref(), Some("ClusterIssuer"));
        assert_eq!(ab.labels().get("app").map(String::as_str), Some("web"));
        assert_eq!(
            certs[1].spec.ip_addresses.as_deref(),
            Some(&["192.0.2.10".to_owned()][..])
        );
    }

    #[test]
    fn an_ingress_without_issuer_annotations_asks_for_nothing() {
        assert!(
            certificates(
                &ingress(json!({}), json!([{"hosts": ["a"], "secretName": "s"}])),
                None
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn shaping_annotations_are_applied() {
        let ing = ingress(
            json!({ISSUER: "ca", ISSUER_KIND: "Issuer", "cert-manager.io/common-name": "web", "cert-manager.io/duration": "720h",
                   "cert-manager.io/private-key-algorithm": "ECDSA", "cert-manager.io/private-key-size": "384",
                   "cert-manager.io/usages": "server auth, client auth"}),
            json!([{"hosts": ["a.example.com"], "secretName": "s"}]),
        );
        let c = &certificates(&ing, None).unwrap()[0];
        assert_eq!(c.spec.common_name.as_deref(), Some("web"));
        assert_eq!(c.spec.duration.as_deref(), Some("720h"));
        let key = c.spec.private_key.as_ref().unwrap();
        assert_eq!(
            (key.algorithm.as_ref(), key.size),
            (Some(&PrivateKeyAlgorithm::Ecdsa), Some(384))
        );
        assert_eq!(c.spec.usages.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn conflicting_or_invalid_annotations_are_bad_config() {
        let tls = json!([{"hosts": ["a"], "secretName": "s"}]);
        let err = |a| certificates(&ingress(a, tls.clone()), None).unwrap_err().0;
        assert!(err(json!({ISSUER: "a", CLUSTER_ISSUER: "b"})).contains("both"));
        assert!(
            err(json!({CLUSTER_ISSUER: "b", "cert-manager.io/duration": "soon"}))
                .contains("cert-manager.io/duration")
        );
        assert!(
            err(json!({CLUSTER_ISSUER: "b", "cert-manager.io/private-key-algorithm": "DSA"}))
                .contains("private-key-algorithm")
        );
        assert!(err(json!({TLS_ACME: "true"})).contains("no default issuer"));
        let no_secret = certificates(
            &ingress(json!({CLUSTER_ISSUER: "b"}), json!([{"hosts": ["a"]}])),
            None,
        )
        .unwrap_err();
        assert!(no_secret.0.contains("secretName"));
    }

    #[test]
    fn tls_acme_uses_the_default_issuer() {
        let d = DefaultIssuer {
            name: "le".into(),
            kind: "ClusterIssuer".into(),
            group: "cert-manager.io".into(),
        };
        let certs = certificates(
            &ingress(
                json!({TLS_ACME: "true"}),
                json!([{"hosts": ["a"], "secretName": "s"}]),
            ),
            Some(&d),
        )
        .unwrap();
        assert_eq!(certs[0].spec.issuer_ref.name, "le");
    }
}
