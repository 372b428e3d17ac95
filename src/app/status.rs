//! `certgate status certificate NAME [-n NS]`: what `cmctl status certificate` shows — conditions, dates,
//! the issuer and its kind, the Secret and the certificate in it — read from the cluster.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use crate::app::AppError;
use crate::crd::certificate::Certificate;
use crate::pki::inspect;
use crate::routing::build::secret_data;

pub async fn certificate(client: Client, namespace: &str, name: &str) -> Result<String, AppError> {
    let certs: Api<Certificate> = Api::namespaced(client.clone(), namespace);
    let cert = certs
        .get_opt(name)
        .await
        .map_err(|e| AppError::Kube(format!("reading Certificate {namespace}/{name}: {e}")))?
        .ok_or_else(|| AppError::Kube(format!("Certificate {namespace}/{name} not found")))?;
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let secret = secrets.get_opt(&cert.spec.secret_name).await.map_err(|e| {
        AppError::Kube(format!(
            "reading Secret {namespace}/{}: {e}",
            cert.spec.secret_name
        ))
    })?;
    Ok(render(&cert, secret.as_ref()))
}

/// The report, from the objects (pure, so it is tested without a cluster).
pub fn render(cert: &Certificate, secret: Option<&Secret>) -> String {
    let mut out = String::new();
    let spec = &cert.spec;
    let ns = cert.namespace().unwrap_or_default();
    let _ = writeln!(out, "Name: {}\nNamespace: {ns}", cert.name_any());
    let status = cert.status.as_ref();
    let _ = writeln!(out, "Conditions:");
    let conditions = status
        .and_then(|s| s.conditions.as_ref())
        .filter(|c| !c.is_empty());
    match conditions {
        None => {
            let _ = writeln!(out, "  No Conditions set");
        }
        Some(conditions) => {
            for c in conditions {
                let _ = writeln!(
                    out,
                    "  {}: {:?}, Reason: {}, Message: {}",
                    c.type_,
                    c.status,
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or("")
                );
            }
        }
    }
    let time = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.map(|t| t.0.to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let _ = writeln!(out, "DNS Names:");
    for name in spec.dns_names.iter().flatten() {
        let _ = writeln!(out, "- {name}");
    }
    let kind = spec.issuer_ref.kind.as_deref().unwrap_or("Issuer");
    let _ = writeln!(
        out,
        "Issuer:\n  Name: {}\n  Kind: {kind}",
        spec.issuer_ref.name
    );
    let _ = writeln!(
        out,
        "Not Before: {}",
        time(status.and_then(|s| s.not_before.as_ref()))
    );
    let _ = writeln!(
        out,
        "Not After: {}",
        time(status.and_then(|s| s.not_after.as_ref()))
    );
    let _ = writeln!(
        out,
        "Renewal Time: {}",
        time(status.and_then(|s| s.renewal_time.as_ref()))
    );
    if let Some(s) = status.filter(|s| s.last_failure_time.is_some()) {
        let _ = writeln!(
            out,
            "Last Failure: {} ({} failed attempts)",
            time(s.last_failure_time.as_ref()),
            s.failed_issuance_attempts.unwrap_or(0)
        );
    }
    let _ = writeln!(out, "Secret:\n  Name: {}", spec.secret_name);
    match secret {
        None => {
            let _ = writeln!(out, "  does not exist");
        }
        Some(secret) => {
            let data = secret_data(secret);
            let _ = writeln!(
                out,
                "  Keys: {}",
                data.keys().cloned().collect::<Vec<_>>().join(" ")
            );
            let crt = data
                .get("tls.crt")
                .and_then(|c| String::from_utf8(c.clone()).ok());
            match crt.as_deref().map(inspect::describe) {
                Some(Ok(info)) => {
                    let _ = writeln!(
                        out,
                        "  Certificate:\n    Subject: {}\n    Issuer: {}\n    Serial: {}\n    DNS Names: {}\n    Not After: {}",
                        info.subject,
                        info.issuer,
                        info.serial,
                        info.dns_names.join(", "),
                        info.not_after.to_rfc3339()
                    );
                }
                Some(Err(e)) => {
                    let _ = writeln!(out, "  Certificate: invalid ({e})");
                }
                None => {
                    let _ = writeln!(out, "  Certificate: none");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_certificate_without_status_or_secret_says_so() {
        let cert: Certificate = serde_json::from_value(json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"secretName": "web-tls", "dnsNames": ["a.example.com"], "issuerRef": {"name": "le", "kind": "ClusterIssuer"}}
        }))
        .unwrap();
        let text = render(&cert, None);
        assert!(text.contains("Name: web\nNamespace: prod"), "{text}");
        assert!(text.contains("No Conditions set"), "{text}");
        assert!(text.contains("- a.example.com"), "{text}");
        assert!(text.contains("Name: le\n  Kind: ClusterIssuer"), "{text}");
        assert!(text.contains("Name: web-tls\n  does not exist"), "{text}");
    }
}
