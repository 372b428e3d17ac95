//! `cert-manager.io/v1` Issuer (namespaced) and ClusterIssuer (cluster-scoped), which share [`IssuerSpec`]
//! and [`IssuerStatus`].
//!
//! certgate implements the `acme`, `ca` and `selfSigned` issuer types. `vault` and `venafi` are accepted and
//! preserved as given so existing manifests apply; certgate reports them not ready (`ErrInitIssuer`).

use std::ops::{Deref, DerefMut};

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::acme::{AcmeIssuer, AcmeIssuerStatus};
use super::meta::{Condition, Opaque};

/// The configuration of an Issuer or ClusterIssuer: exactly one issuer type should be set.
// clippy reads the repeated `printcolumn(type_ = ...)` keys of kube's derive as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Issuer",
    plural = "issuers",
    namespaced,
    status = "IssuerStatus",
    shortname = "iss",
    category = "cert-manager",
    doc = "An Issuer represents a certificate issuing authority which can be referenced as part of `issuerRef` fields. It is scoped to a single namespace and can therefore only be referenced by resources within the same namespace.",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC."
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// Obtain certificates from an RFC 8555 (ACME) server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeIssuer>,
    /// Sign with a CA key pair stored in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaIssuer>,
    /// HashiCorp Vault PKI (not implemented by certgate; preserved as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<Opaque>,
    /// Sign each certificate with its own private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<SelfSignedIssuer>,
    /// Venafi TPP / Cloud (not implemented by certgate; preserved as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venafi: Option<Opaque>,
}

// `kube::CustomResource` derives one resource per spec struct, so the cluster-scoped kind wraps the shared
// spec. It is flattened (identical on the wire and in the schema) and dereferences to `IssuerSpec`, so
// `cluster_issuer.spec.acme` reads like `issuer.spec.acme`. (A `//` comment: doc comments become the CRD's
// schema descriptions.)
/// Desired state of the ClusterIssuer resource: the same configuration as an Issuer's.
// clippy reads the repeated `printcolumn(type_ = ...)` keys of kube's derive as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "ClusterIssuer",
    plural = "clusterissuers",
    status = "IssuerStatus",
    shortname = "ciss",
    category = "cert-manager",
    doc = "A ClusterIssuer represents a certificate issuing authority which can be referenced as part of `issuerRef` fields. It is similar to an Issuer, however it is cluster-scoped and therefore can be referenced by resources that exist in *any* namespace, not just the same namespace as the referent.",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC."
    )
)]
pub struct ClusterIssuerSpec {
    #[serde(flatten)]
    pub issuer: IssuerSpec,
}

impl Deref for ClusterIssuerSpec {
    type Target = IssuerSpec;
    fn deref(&self) -> &IssuerSpec {
        &self.issuer
    }
}

impl DerefMut for ClusterIssuerSpec {
    fn deref_mut(&mut self) -> &mut IssuerSpec {
        &mut self.issuer
    }
}

impl From<IssuerSpec> for ClusterIssuerSpec {
    fn from(issuer: IssuerSpec) -> Self {
        ClusterIssuerSpec { issuer }
    }
}

/// `spec.ca`: sign with the key pair in a Secret (`tls.crt`, `tls.key`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaIssuer {
    /// Secret holding the signing CA's certificate and key.
    pub secret_name: String,
    /// CRL distribution points to embed in issued certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_distribution_points: Option<Vec<String>>,
    /// OCSP responder URLs to embed in issued certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_servers: Option<Vec<String>>,
    /// CA issuer URLs (AIA) to embed in issued certificates.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "issuingCertificateURLs"
    )]
    pub issuing_certificate_urls: Option<Vec<String>>,
}

/// `spec.selfSigned`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfSignedIssuer {
    /// CRL distribution points to embed in issued certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_distribution_points: Option<Vec<String>>,
}

/// `status` of an Issuer or ClusterIssuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    /// Known condition type: `Ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::meta::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
    /// ACME account state, for ACME issuers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeIssuerStatus>,
}
