//! `acme.cert-manager.io/v1`: Order and Challenge, and the ACME issuer configuration (`spec.acme` of an
//! Issuer) with its challenge solvers, as cert-manager's `pkg/apis/acme/v1` defines them.
//!
//! certgate answers HTTP-01 itself, so of the solver configuration only the selector and the HTTP-01 ingress
//! class/name matter to it; everything else (pod and ingress templates, Gateway routes, every DNS-01
//! provider) is kept as an [`Opaque`] object so manifests written for cert-manager apply and round-trip.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::{Base64Bytes, IssuerRef, Opaque, SecretKeySelector};

/// `spec.acme` of an Issuer: an RFC 8555 server and how to prove control of names to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeIssuer {
    /// URL of the ACME server's directory.
    pub server: String,
    /// Contact email for the ACME account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Secret holding the account private key (`key` defaults to `tls.key`).
    pub private_key_secret_ref: SecretKeySelector,
    /// PEM CA bundle that verifies the ACME server's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<Base64Bytes>,
    /// INSECURE: do not verify the ACME server's TLS certificate.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "skipTLSVerify"
    )]
    pub skip_tls_verify: Option<bool>,
    /// External account binding, for CAs that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// Prefer the alternative chain whose root-most issuer has this common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub preferred_chain: Option<String>,
    /// Use an existing account key from the Secret instead of generating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_account_key_generation: Option<bool>,
    /// Request a notAfter matching the Certificate's duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_duration_feature: Option<bool>,
    /// Certificate profile to request from the server (listed in its directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// How to solve challenges, chosen per name by `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solvers: Option<Vec<AcmeChallengeSolver>>,
}

/// `externalAccountBinding`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountBinding {
    /// ID of the CA key the account is bound to.
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// Secret entry holding the (unpadded base64url) MAC key.
    pub key_secret_ref: SecretKeySelector,
    /// Deprecated and ignored by cert-manager (always HS256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<HmacKeyAlgorithm>,
}

/// `keyAlgorithm` of an external account binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HmacKeyAlgorithm {
    HS256,
    HS384,
    HS512,
}

/// One entry of `solvers`: which names it applies to and how it solves them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeChallengeSolver {
    /// Which names this solver applies to; absent means every name (lowest priority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<CertificateDnsNameSelector>,
    /// Solve with HTTP-01.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http01: Option<Http01Solver>,
    /// Solve with DNS-01. Provider configuration is kept as given (certgate does not run DNS-01 providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns01: Option<Opaque>,
}

/// `selector` of a solver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDnsNameSelector {
    /// Labels the Certificate must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Exact names this solver solves (takes precedence over `dnsZones`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    /// Zones this solver solves (the most specific zone wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_zones: Option<Vec<String>>,
}

/// `http01` of a solver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Http01Solver {
    /// Solve through an Ingress (certgate: through its own port-80 listener, for Ingresses of this class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Http01IngressSolver>,
    /// Solve through a Gateway API HTTPRoute (kept as given; not used by certgate).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "gatewayHTTPRoute"
    )]
    pub gateway_http_route: Option<Opaque>,
}

/// `http01.ingress` of a solver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Http01IngressSolver {
    /// `ingressClassName` of the solver Ingress (the recommended way to pick the class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// Value of the `kubernetes.io/ingress.class` annotation of the solver Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// An existing Ingress to add the challenge paths to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Service type of the solver Service (`NodePort` or `ClusterIP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// Overrides for the solver pod (kept as given; certgate runs no solver pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<Opaque>,
    /// Overrides for the solver Ingress metadata (kept as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_template: Option<Opaque>,
}

/// `status.acme` of an Issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeIssuerStatus {
    /// The account URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The email the account was last registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_registered_email: Option<String>,
    /// Hash of the account key the account was last registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_private_key_hash: Option<String>,
}

/// State of an ACME order, authorization or challenge, as the ACME server reports it (plus `errored`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Valid,
    Ready,
    Pending,
    Processing,
    Invalid,
    Expired,
    Errored,
}

impl State {
    /// Final states: nothing will change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Valid | State::Invalid | State::Expired | State::Errored
        )
    }
}

/// An ACME order for one CertificateRequest.
// clippy reads the repeated `printcolumn(type_ = ...)` keys of kube's derive as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "acme.cert-manager.io",
    version = "v1",
    kind = "Order",
    plural = "orders",
    namespaced,
    status = "OrderStatus",
    category = "cert-manager",
    category = "cert-manager-acme",
    doc = "Order is a type to represent an Order with an ACME server",
    derive = "PartialEq",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Issuer",
        type_ = "string",
        json_path = ".spec.issuerRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
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
pub struct OrderSpec {
    /// DER CSR to finalize the order with.
    pub request: Base64Bytes,
    /// The ACME Issuer or ClusterIssuer.
    pub issuer_ref: IssuerRef,
    /// Common name from the CSR (also in `dnsNames` or `ipAddresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// DNS names to authorize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    /// IP addresses to authorize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<Vec<String>>,
    /// Requested lifetime (Go duration), sent as notAfter when the issuer enables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Certificate profile to request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// `status` of an Order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    /// The order URL at the ACME server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where to finalize the order.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "finalizeURL"
    )]
    pub finalize_url: Option<String>,
    /// The issued PEM chain, once `valid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Base64Bytes>,
    /// Current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// Why the order is in its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The authorizations the server requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizations: Option<Vec<AcmeAuthorization>>,
    /// When the order failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_time: Option<Time>,
}

/// One authorization of an Order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeAuthorization {
    /// The authorization URL.
    pub url: String,
    /// The name being authorized (without `*.` for wildcards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// Whether this authorizes a wildcard name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<bool>,
    /// State when first fetched (`valid` means nothing to solve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<State>,
    /// Challenges the server offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenges: Option<Vec<AcmeChallenge>>,
}

/// One challenge offered for an authorization.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeChallenge {
    /// The challenge URL.
    pub url: String,
    /// The challenge token.
    pub token: String,
    /// The raw type from the server: `http-01`, `dns-01`, `tls-alpn-01`…
    #[serde(rename = "type")]
    pub type_: String,
}

/// `HTTP-01` or `DNS-01`, as a Challenge's `spec.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ChallengeType {
    #[default]
    #[serde(rename = "HTTP-01")]
    Http01,
    #[serde(rename = "DNS-01")]
    Dns01,
}

/// One ACME challenge being solved. certgate's proxy answers HTTP-01 tokens from these.
// clippy reads the repeated `printcolumn(type_ = ...)` keys of kube's derive as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "acme.cert-manager.io",
    version = "v1",
    kind = "Challenge",
    plural = "challenges",
    namespaced,
    status = "ChallengeStatus",
    category = "cert-manager",
    category = "cert-manager-acme",
    doc = "Challenge is a type to represent a Challenge request with an ACME server",
    derive = "PartialEq",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.dnsName"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
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
pub struct ChallengeSpec {
    /// The challenge URL at the ACME server.
    pub url: String,
    /// The authorization this challenge belongs to.
    #[serde(rename = "authorizationURL")]
    pub authorization_url: String,
    /// The name being validated (without `*.` for wildcards).
    pub dns_name: String,
    /// Whether the name is a wildcard.
    #[serde(default)]
    pub wildcard: bool,
    /// `HTTP-01` or `DNS-01`.
    #[serde(rename = "type")]
    pub type_: ChallengeType,
    /// The token from the server.
    pub token: String,
    /// What to present: the key authorization for HTTP-01, its SHA-256 (base64url) for DNS-01.
    pub key: String,
    /// The solver chosen from the issuer's `solvers`.
    pub solver: AcmeChallengeSolver,
    /// The ACME Issuer or ClusterIssuer.
    pub issuer_ref: IssuerRef,
}

/// `status` of a Challenge.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeStatus {
    /// Whether the challenge is being worked on.
    #[serde(default)]
    pub processing: bool,
    /// Whether the response is being presented (served or published).
    #[serde(default)]
    pub presented: bool,
    /// Why the challenge is in its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
}
