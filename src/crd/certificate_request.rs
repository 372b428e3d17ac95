//! `cert-manager.io/v1` CertificateRequest: one CSR sent to one issuer, and its outcome.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::certificate::KeyUsage;
use super::meta::{Base64Bytes, Condition, IssuerRef};

/// The request: a PEM CSR, the issuer, and what was asked for. Immutable after creation.
// clippy reads the repeated `printcolumn(type_ = ...)` keys of kube's derive as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "CertificateRequest",
    plural = "certificaterequests",
    namespaced,
    status = "CertificateRequestStatus",
    shortname = "cr",
    shortname = "crs",
    category = "cert-manager",
    doc = "A CertificateRequest is used to request a signed certificate from one of the configured issuers. All fields within the CertificateRequest's `spec` are immutable after creation. A CertificateRequest will either succeed or fail, as denoted by its `Ready` status condition and its `status.failureTime` field. A CertificateRequest is a one-shot resource, meaning it represents a single point in time request for a certificate and cannot be re-used.",
    derive = "PartialEq",
    printcolumn(
        name = "Approved",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Approved\")].status"
    ),
    printcolumn(
        name = "Denied",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Denied\")].status"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].status"
    ),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuerRef.name"),
    printcolumn(name = "Requester", type_ = "string", json_path = ".spec.username"),
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
pub struct CertificateRequestSpec {
    /// The PEM-encoded CSR.
    pub request: Base64Bytes,
    /// The issuer that signs.
    pub issuer_ref: IssuerRef,
    /// Requested lifetime, Go duration syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Requested key usages (must match the CSR's extensions if it has them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usages: Option<Vec<KeyUsage>>,
    /// Request a CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "isCA")]
    pub is_ca: Option<bool>,
    /// Name of the user that created the request (set on creation by the webhook in cert-manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// UID of the user that created the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Groups of the user that created the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Extra attributes of the user that created the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<BTreeMap<String, Vec<String>>>,
}

/// `status` of a CertificateRequest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestStatus {
    /// Known condition types: `Ready`, `InvalidRequest`, `Approved`, `Denied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::meta::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
    /// The signed PEM certificate (chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Base64Bytes>,
    /// The signer's PEM CA certificate, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<Base64Bytes>,
    /// When the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_time: Option<Time>,
}
