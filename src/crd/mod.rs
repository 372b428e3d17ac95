//! cert-manager's API, as Rust types: `cert-manager.io/v1` Issuer, ClusterIssuer, Certificate,
//! CertificateRequest and `acme.cert-manager.io/v1` Order, Challenge.
//!
//! The types serialize exactly like cert-manager's Go types (camelCase names, absent optional fields, enums as
//! cert-manager's strings), so manifests written for cert-manager apply and round-trip unchanged. Parts
//! certgate does not interpret (Vault, Venafi, DNS-01 providers, keystores…) are [`meta::Opaque`] objects,
//! declared `x-kubernetes-preserve-unknown-fields` so the apiserver keeps them.
//!
//! This module owns the types and the CRD manifests generated from them ([`crds`], [`render`]; the source
//! of `crds/*.yaml` and of `certgate crds`). It does no I/O and knows nothing of controllers.

pub mod acme;
pub mod certificate;
pub mod certificate_request;
pub mod conditions;
pub mod duration;
pub mod issuer;
pub mod meta;

pub use acme::{Challenge, ChallengeSpec, ChallengeStatus, Order, OrderSpec, OrderStatus};
pub use certificate::{Certificate, CertificateSpec, CertificateStatus};
pub use certificate_request::{
    CertificateRequest, CertificateRequestSpec, CertificateRequestStatus,
};
pub use duration::{DurationError, parse_go_duration};
pub use issuer::{ClusterIssuer, ClusterIssuerSpec, Issuer, IssuerSpec, IssuerStatus};
pub use meta::{Condition, ConditionStatus, IssuerRef};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// `cert-manager.io`.
pub const GROUP: &str = "cert-manager.io";
/// `acme.cert-manager.io`.
pub const ACME_GROUP: &str = "acme.cert-manager.io";

/// Rendering a CRD as YAML failed (a bug, not an input problem).
#[derive(Debug, thiserror::Error)]
#[error("rendering CRD {name} as YAML: {message}")]
pub struct RenderError {
    pub name: String,
    pub message: String,
}

/// The six CRDs, sorted by name so every rendering is identical.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut all = vec![
        Certificate::crd(),
        CertificateRequest::crd(),
        Issuer::crd(),
        ClusterIssuer::crd(),
        Order::crd(),
        Challenge::crd(),
    ];
    all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    all
}

/// One CRD as a YAML document (no leading `---`).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, RenderError> {
    serde_saphyr::to_string(crd).map_err(|e| RenderError {
        name: crd.metadata.name.clone().unwrap_or_default(),
        message: e.to_string(),
    })
}

/// The file name of a CRD under `crds/`: `<plural>.<group>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// Every CRD as `(file name, YAML)`, in [`crds`] order.
pub fn files() -> Result<Vec<(String, String)>, RenderError> {
    crds()
        .iter()
        .map(|crd| Ok((file_name(crd), to_yaml(crd)?)))
        .collect()
}

/// All CRDs as one multi-document YAML stream: what `certgate crds` prints.
pub fn render() -> Result<String, RenderError> {
    let mut out = String::new();
    for (_, yaml) in files()? {
        out.push_str("---\n");
        out.push_str(&yaml);
        if !yaml.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
