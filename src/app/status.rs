//! `certgate status certificate NAME [-n NS]`: what `cmctl status certificate` shows — conditions, dates,
//! the issuer and its readiness, the Secret and the certificate in it, and the issuance in progress
//! (CertificateRequest → Order → Challenges with their states) — read from the cluster.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use crate::app::AppError;
use crate::crd::acme::{Challenge, Order, State};
use crate::crd::certificate::Certificate;
use crate::crd::certificate_request::CertificateRequest;
use crate::crd::issuer::{ClusterIssuer, Issuer};
use crate::pki::inspect;
use crate::routing::build::secret_data;

pub async fn certificate(client: Client, namespace: &str, name: &str) -> Result<String, AppError> {
    let certs: Api<Certificate> = Api::namespaced(client.clone(), namespace);
    let cert = certs
        .get_opt(name)
        .await
        .map_err(|e| AppError::Kube(format!("reading Certificate {namespace}/{name}: {e}")))?
        .ok_or_else(|| AppError::Kube(format!("Certificate {namespace}/{name} not found")))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(&cert.spec.secret_name).await.map_err(|e| {
        AppError::Kube(format!(
            "reading Secret {namespace}/{}: {e}",
            cert.spec.secret_name
        ))
    })?;
    let related = related(&client, namespace, &cert).await;
    Ok(render(&cert, secret.as_ref(), &related))
}

/// The objects around a Certificate that the report also shows (each optional: RBAC or a missing CRD
/// leaves a part out rather than failing the report).
#[derive(Default)]
pub struct Related {
    /// The issuer's Ready condition: (status, reason, message).
    pub issuer_ready: Option<(String, String, String)>,
    pub request: Option<CertificateRequest>,
    pub orders: Vec<Order>,
    pub challenges: Vec<Challenge>,
}

async fn related(client: &Client, namespace: &str, cert: &Certificate) -> Related {
    let r = &cert.spec.issuer_ref;
    let issuer_conditions = match r.kind.as_deref() {
        Some("ClusterIssuer") => Api::<ClusterIssuer>::all(client.clone())
            .get_opt(&r.name)
            .await
            .ok()
            .flatten()
            .and_then(|i| i.status.and_then(|s| s.conditions)),
        _ => Api::<Issuer>::namespaced(client.clone(), namespace)
            .get_opt(&r.name)
            .await
            .ok()
            .flatten()
            .and_then(|i| i.status.and_then(|s| s.conditions)),
    };
    let issuer_ready = issuer_conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                format!("{:?}", c.status),
                c.reason.unwrap_or_default(),
                c.message.unwrap_or_default(),
            )
        });
    // The request of the issuance in progress (next revision) if there is one, else the last one.
    let revision = cert.status.as_ref().and_then(|s| s.revision).unwrap_or(0);
    let requests: Api<CertificateRequest> = Api::namespaced(client.clone(), namespace);
    let mut request = None;
    for rev in [revision + 1, revision] {
        if let Ok(Some(cr)) = requests
            .get_opt(&format!("{}-{rev}", cert.name_any()))
            .await
        {
            request = Some(cr);
            break;
        }
    }
    let owned_by =
        |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
         kind: &str,
         name: &str| refs.iter().any(|o| o.kind == kind && o.name == name);
    let mut orders = Vec::new();
    if let Some(cr) = &request
        && let Ok(list) = Api::<Order>::namespaced(client.clone(), namespace)
            .list(&Default::default())
            .await
    {
        orders = list
            .items
            .into_iter()
            .filter(|o| owned_by(o.owner_references(), "CertificateRequest", &cr.name_any()))
            .collect();
    }
    let mut challenges = Vec::new();
    if !orders.is_empty()
        && let Ok(list) = Api::<Challenge>::namespaced(client.clone(), namespace)
            .list(&Default::default())
            .await
    {
        challenges = list
            .items
            .into_iter()
            .filter(|c| {
                orders
                    .iter()
                    .any(|o| owned_by(c.owner_references(), "Order", &o.name_any()))
            })
            .collect();
    }
    Related {
        issuer_ready,
        request,
        orders,
        challenges,
    }
}

/// The report, from the objects (pure, so it is tested without a cluster).
pub fn render(cert: &Certificate, secret: Option<&Secret>, related: &Related) -> String {
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
    match &related.issuer_ready {
        Some((status, reason, message)) => {
            let _ = writeln!(
                out,
                "  Conditions:\n    Ready: {status}, Reason: {reason}, Message: {message}"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  Conditions: none (the issuer is missing or not checked yet)"
            );
        }
    }
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
    render_issuance(&mut out, related);
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

/// The CertificateRequest, its Orders and their Challenges, each with its state.
fn render_issuance(out: &mut String, related: &Related) {
    let Some(cr) = &related.request else {
        let _ = writeln!(out, "CertificateRequest: none");
        return;
    };
    let ready = cr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let _ = writeln!(out, "CertificateRequest:\n  Name: {}", cr.name_any());
    match ready {
        Some(c) => {
            let _ = writeln!(
                out,
                "  Ready: {:?}, Reason: {}, Message: {}",
                c.status,
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or("")
            );
        }
        None => {
            let _ = writeln!(out, "  Ready: in progress");
        }
    }
    for order in &related.orders {
        let st = order.status.as_ref();
        let _ = writeln!(
            out,
            "Order:\n  Name: {}\n  State: {}, Reason: {}",
            order.name_any(),
            st.and_then(|s| s.state).map_or("<none>".into(), state_name),
            st.and_then(|s| s.reason.as_deref()).unwrap_or("")
        );
        for a in st
            .and_then(|s| s.authorizations.as_ref())
            .into_iter()
            .flatten()
        {
            let _ = writeln!(
                out,
                "  Authorization: {} ({})",
                a.identifier.as_deref().unwrap_or(""),
                a.initial_state.map_or("<none>".into(), state_name)
            );
        }
    }
    if related.orders.is_empty() {
        return;
    }
    if related.challenges.is_empty() {
        let _ = writeln!(out, "Challenges: none (deleted once the order ends)");
    }
    for c in &related.challenges {
        let st = c.status.as_ref();
        let _ = writeln!(
            out,
            "Challenge:\n  Name: {}, Type: HTTP-01, Token: {}, Domain: {}\n  State: {}, Reason: {}, Processing: {}, Presented: {}",
            c.name_any(),
            c.spec.token,
            c.spec.dns_name,
            st.and_then(|s| s.state).map_or("<none>".into(), state_name),
            st.and_then(|s| s.reason.as_deref()).unwrap_or(""),
            st.is_some_and(|s| s.processing),
            st.is_some_and(|s| s.presented)
        );
    }
}

fn state_name(s: State) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
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
        let text = render(&cert, None, &Related::default());
        assert!(text.contains("Name: web\nNamespace: prod"), "{text}");
        assert!(text.contains("No Conditions set"), "{text}");
        assert!(text.contains("- a.example.com"), "{text}");
        assert!(text.contains("Name: le\n  Kind: ClusterIssuer"), "{text}");
        assert!(text.contains("Name: web-tls\n  does not exist"), "{text}");
        assert!(text.contains("CertificateRequest: none"), "{text}");
    }

    #[test]
    fn an_issuance_in_progress_shows_request_order_and_challenges_with_their_states() {
        let cert: Certificate = serde_json::from_value(json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"secretName": "web-tls", "dnsNames": ["a.example.com"], "issuerRef": {"name": "le"}}
        }))
        .unwrap();
        let related = Related {
            issuer_ready: Some(("True".into(), "ACMEAccountRegistered".into(), "The ACME account was registered with the ACME server".into())),
            request: serde_json::from_value(json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                "metadata": {"name": "web-1", "namespace": "prod"},
                "spec": {"request": "", "issuerRef": {"name": "le"}}})).ok(),
            orders: vec![serde_json::from_value(json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
                "metadata": {"name": "web-1-42", "namespace": "prod"},
                "spec": {"request": "", "issuerRef": {"name": "le"}},
                "status": {"state": "pending", "authorizations": [{"url": "u", "identifier": "a.example.com", "initialState": "pending"}]}})).unwrap()],
            challenges: vec![serde_json::from_value(json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
                "metadata": {"name": "web-1-42-7", "namespace": "prod"},
                "spec": {"url": "u", "authorizationURL": "a", "dnsName": "a.example.com", "type": "HTTP-01",
                         "token": "tok", "key": "tok.thumb", "solver": {}, "issuerRef": {"name": "le"}},
                "status": {"state": "pending", "processing": true, "presented": true}})).unwrap()],
        };
        let text = render(&cert, None, &related);
        for expected in [
            "Ready: True, Reason: ACMEAccountRegistered",
            "CertificateRequest:\n  Name: web-1\n  Ready: in progress",
            "Order:\n  Name: web-1-42\n  State: pending",
            "Authorization: a.example.com (pending)",
            "Challenge:\n  Name: web-1-42-7, Type: HTTP-01, Token: tok, Domain: a.example.com\n  State: pending, Reason: , Processing: true, Presented: true",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
    }
}
