//! Round-trips of cert-manager's documented manifests, and the shape of the generated CRDs.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;

const CERTIFICATE: &str = include_str!("../../tests/fixtures/cert-manager/certificate.yaml");
const ACME_HTTP01: &str =
    include_str!("../../tests/fixtures/cert-manager/clusterissuer-acme-http01.yaml");
const CA: &str = include_str!("../../tests/fixtures/cert-manager/issuer-ca.yaml");
const SELF_SIGNED: &str = include_str!("../../tests/fixtures/cert-manager/issuer-selfsigned.yaml");
const DNS01: &str = include_str!("../../tests/fixtures/cert-manager/issuer-dns01-cloudflare.yaml");
const VAULT: &str = include_str!("../../tests/fixtures/cert-manager/issuer-vault.yaml");

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("fixture is valid YAML")
}

/// Parse the manifest as `T`, serialize it again, and return (what was written, what came back).
fn round_trip<T: DeserializeOwned + Serialize>(text: &str) -> (T, Value, Value) {
    let written = yaml(text);
    let typed: T = serde_json::from_value(written.clone()).expect("manifest parses");
    let back = serde_json::to_value(&typed).expect("serializes");
    (typed, written, back)
}

#[test]
fn documented_certificate_round_trips_without_losing_or_renaming_a_field() {
    let (cert, written, back) = round_trip::<Certificate>(CERTIFICATE);
    assert_eq!(back, written);
    assert_eq!(cert.spec.secret_name, "example-com-tls");
    assert_eq!(cert.spec.is_ca, Some(false));
    assert_eq!(
        cert.spec.usages,
        Some(vec![
            certificate::KeyUsage::ServerAuth,
            certificate::KeyUsage::ClientAuth
        ])
    );
    let key = cert.spec.private_key.clone().unwrap_or_default();
    assert_eq!(key.algorithm, Some(certificate::PrivateKeyAlgorithm::Rsa));
    assert_eq!(key.encoding, Some(certificate::PrivateKeyEncoding::Pkcs1));
    assert_eq!(key.size, Some(2048));
    assert_eq!(
        cert.spec.issuer_ref,
        IssuerRef {
            name: "ca-issuer".into(),
            kind: Some("Issuer".into()),
            group: Some("cert-manager.io".into()),
        }
    );
    assert_eq!(
        cert.spec.keystores.as_ref().and_then(|k| k.get("pkcs12")),
        Some(&json!({
            "create": true,
            "passwordSecretRef": {"name": "example-com-tls-keystore", "key": "password"},
            "profile": "Modern2023"
        }))
    );
}

#[test]
fn certificate_durations_parse_as_go_durations() {
    let (cert, _, _) = round_trip::<Certificate>(CERTIFICATE);
    assert_eq!(
        cert.spec.duration(),
        Some(Ok(Duration::from_secs(2160 * 3600)))
    );
    assert_eq!(
        cert.spec.renew_before(),
        Some(Ok(Duration::from_secs(360 * 3600)))
    );
    let mut spec = cert.spec;
    spec.duration = Some("90d".into());
    assert!(matches!(
        spec.duration(),
        Some(Err(DurationError::UnknownUnit { .. }))
    ));
    spec.renew_before = None;
    assert_eq!(spec.renew_before(), None);
}

#[test]
fn documented_issuers_round_trip() {
    let (acme, written, back) = round_trip::<ClusterIssuer>(ACME_HTTP01);
    assert_eq!(back, written);
    let solver = acme
        .spec
        .acme
        .as_ref()
        .and_then(|a| a.solvers.as_ref())
        .and_then(|s| s.first())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        solver
            .http01
            .and_then(|h| h.ingress)
            .and_then(|i| i.ingress_class_name),
        Some("nginx".to_owned())
    );

    let (ca, written, back) = round_trip::<Issuer>(CA);
    assert_eq!(back, written);
    assert_eq!(
        ca.spec.ca.map(|c| c.secret_name),
        Some("ca-key-pair".to_owned())
    );

    let (self_signed, written, back) = round_trip::<Issuer>(SELF_SIGNED);
    assert_eq!(back, written);
    assert_eq!(self_signed.spec.self_signed, Some(Default::default()));

    let (dns01, written, back) = round_trip::<Issuer>(DNS01);
    assert_eq!(back, written);
    assert!(dns01.spec.acme.is_some());

    let (vault, written, back) = round_trip::<Issuer>(VAULT);
    assert_eq!(back, written);
    assert_eq!(
        vault.spec.vault.as_ref().and_then(|v| v.get("server")),
        Some(&json!("https://vault.local"))
    );
}

#[test]
fn status_fields_use_cert_manager_names() {
    let status = json!({
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Ready",
            "message": "Certificate is up to date and has not expired",
            "lastTransitionTime": "2024-01-02T03:04:05Z", "observedGeneration": 2
        }],
        "notBefore": "2024-01-02T03:04:05Z",
        "notAfter": "2024-04-01T03:04:05Z",
        "renewalTime": "2024-03-02T03:04:05Z",
        "revision": 3,
        "lastFailureTime": "2024-01-01T00:00:00Z",
        "failedIssuanceAttempts": 1,
        "nextPrivateKeySecretName": "example-com-tls-abcde"
    });
    let typed: CertificateStatus = serde_json::from_value(status.clone()).expect("parses");
    assert_eq!(serde_json::to_value(&typed).ok(), Some(status));
    let ready = typed.conditions.unwrap_or_default();
    assert_eq!(ready[0].status, ConditionStatus::True);
    assert_eq!(ready[0].type_, conditions::types::READY);
}

#[test]
fn acme_objects_use_cert_manager_names_and_enums() {
    let order = json!({
        "apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
        "metadata": {"name": "example-com-1-123", "namespace": "sandbox"},
        "spec": {
            "request": "LS0tLS1CRUdJTg==", "issuerRef": {"name": "le", "kind": "ClusterIssuer"},
            "dnsNames": ["example.com"], "commonName": "example.com", "duration": "2160h0m0s",
            "profile": "shortlived"
        },
        "status": {
            "url": "https://acme/order/1", "finalizeURL": "https://acme/finalize/1", "state": "pending",
            "authorizations": [{
                "url": "https://acme/authz/1", "identifier": "example.com", "wildcard": false,
                "initialState": "pending",
                "challenges": [{"url": "https://acme/chall/1", "token": "tok", "type": "http-01"}]
            }]
        }
    });
    let typed: Order = serde_json::from_value(order.clone()).expect("parses");
    assert_eq!(serde_json::to_value(&typed).ok(), Some(order));
    assert_eq!(typed.spec.request.0, b"-----BEGIN".to_vec());
    assert_eq!(
        typed.status.and_then(|s| s.state),
        Some(acme::State::Pending)
    );

    let challenge = json!({
        "apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
        "metadata": {"name": "example-com-1-123-0", "namespace": "sandbox"},
        "spec": {
            "url": "https://acme/chall/1", "authorizationURL": "https://acme/authz/1",
            "dnsName": "example.com", "wildcard": false, "type": "HTTP-01", "token": "tok",
            "key": "tok.thumb", "solver": {"http01": {"ingress": {"class": "certgate"}}},
            "issuerRef": {"name": "le", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        },
        "status": {"processing": true, "presented": true, "state": "pending"}
    });
    let typed: Challenge = serde_json::from_value(challenge.clone()).expect("parses");
    assert_eq!(serde_json::to_value(&typed).ok(), Some(challenge));
    assert_eq!(typed.spec.type_, acme::ChallengeType::Http01);
}

#[test]
fn invalid_base64_is_an_error_not_a_panic() {
    let result = serde_json::from_value::<CertificateRequestSpec>(json!({
        "request": "not base64!", "issuerRef": {"name": "x"}
    }));
    assert!(result.is_err());
}

fn crd(name: &str) -> CustomResourceDefinition {
    crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no CRD {name}"))
}

/// (name, jsonPath, priority) of each printer column.
fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String, i32)> {
    crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c: CustomResourceColumnDefinition| (c.name, c.json_path, c.priority.unwrap_or(0)))
        .collect()
}

fn col(name: &str, path: &str, priority: i32) -> (String, String, i32) {
    (name.to_owned(), path.to_owned(), priority)
}

const READY: &str = ".status.conditions[?(@.type == \"Ready\")].status";
const READY_MESSAGE: &str = ".status.conditions[?(@.type == \"Ready\")].message";
const AGE: &str = ".metadata.creationTimestamp";

#[test]
fn crds_have_cert_manager_printer_columns() {
    assert_eq!(
        columns(&crd("certificates.cert-manager.io")),
        vec![
            col("Ready", READY, 0),
            col("Secret", ".spec.secretName", 0),
            col("Issuer", ".spec.issuerRef.name", 1),
            col("Status", READY_MESSAGE, 1),
            col("Age", AGE, 0),
        ]
    );
    assert_eq!(
        columns(&crd("certificaterequests.cert-manager.io")),
        vec![
            col(
                "Approved",
                ".status.conditions[?(@.type == \"Approved\")].status",
                0
            ),
            col(
                "Denied",
                ".status.conditions[?(@.type == \"Denied\")].status",
                0
            ),
            col("Ready", READY, 0),
            col("Issuer", ".spec.issuerRef.name", 0),
            col("Requester", ".spec.username", 0),
            col("Status", READY_MESSAGE, 1),
            col("Age", AGE, 0),
        ]
    );
    for name in ["issuers.cert-manager.io", "clusterissuers.cert-manager.io"] {
        assert_eq!(
            columns(&crd(name)),
            vec![
                col("Ready", READY, 0),
                col("Status", READY_MESSAGE, 1),
                col("Age", AGE, 0)
            ],
            "{name}"
        );
    }
    assert_eq!(
        columns(&crd("orders.acme.cert-manager.io")),
        vec![
            col("State", ".status.state", 0),
            col("Issuer", ".spec.issuerRef.name", 1),
            col("Reason", ".status.reason", 1),
            col("Age", AGE, 0),
        ]
    );
    assert_eq!(
        columns(&crd("challenges.acme.cert-manager.io")),
        vec![
            col("State", ".status.state", 0),
            col("Domain", ".spec.dnsName", 0),
            col("Reason", ".status.reason", 1),
            col("Age", AGE, 0),
        ]
    );
}

#[test]
fn crds_have_cert_manager_names_scopes_and_status_subresource() {
    let expect = [
        (
            "certificates.cert-manager.io",
            "Namespaced",
            vec!["cert", "certs"],
            vec!["cert-manager"],
        ),
        (
            "certificaterequests.cert-manager.io",
            "Namespaced",
            vec!["cr", "crs"],
            vec!["cert-manager"],
        ),
        (
            "issuers.cert-manager.io",
            "Namespaced",
            vec!["iss"],
            vec!["cert-manager"],
        ),
        (
            "clusterissuers.cert-manager.io",
            "Cluster",
            vec!["ciss"],
            vec!["cert-manager"],
        ),
        (
            "orders.acme.cert-manager.io",
            "Namespaced",
            vec![],
            vec!["cert-manager", "cert-manager-acme"],
        ),
        (
            "challenges.acme.cert-manager.io",
            "Namespaced",
            vec![],
            vec!["cert-manager", "cert-manager-acme"],
        ),
    ];
    for (name, scope, short, categories) in expect {
        let c = crd(name);
        assert_eq!(c.spec.scope, scope, "{name}");
        assert_eq!(
            c.spec.names.short_names.clone().unwrap_or_default(),
            short,
            "{name}"
        );
        assert_eq!(
            c.spec.names.categories.clone().unwrap_or_default(),
            categories,
            "{name}"
        );
        let version = &c.spec.versions[0];
        assert_eq!(version.name, "v1");
        assert!(version.served && version.storage, "{name}");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{name} has a status subresource"
        );
    }
    assert_eq!(crds().len(), 6);
}

fn schema_of(name: &str) -> Value {
    let c = crd(name);
    serde_json::to_value(&c.spec.versions[0].schema).unwrap_or_default()
}

#[test]
fn opaque_parts_are_preserved_and_conditions_merge_by_type() {
    let issuer = schema_of("issuers.cert-manager.io");
    let spec = &issuer["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for opaque in [&spec["vault"], &spec["venafi"]] {
        assert_eq!(opaque["x-kubernetes-preserve-unknown-fields"], json!(true));
    }
    let solver = &spec["acme"]["properties"]["solvers"]["items"]["properties"];
    assert_eq!(
        solver["dns01"]["x-kubernetes-preserve-unknown-fields"],
        json!(true)
    );
    let conditions = &issuer["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], json!("map"));
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    let ca_bundle = &spec["acme"]["properties"]["caBundle"];
    assert_eq!(
        (&ca_bundle["type"], &ca_bundle["format"]),
        (&json!("string"), &json!("byte"))
    );
}

#[test]
fn cluster_issuer_schema_is_the_issuer_schema() {
    let issuer = schema_of("issuers.cert-manager.io");
    let cluster = schema_of("clusterissuers.cert-manager.io");
    let props = |v: &Value| v["openAPIV3Schema"]["properties"]["spec"]["properties"].clone();
    assert_eq!(props(&issuer), props(&cluster));
    assert!(props(&issuer)["acme"].is_object());
}

#[test]
fn rendering_is_deterministic_multi_document_yaml() {
    let first = render().expect("renders");
    assert_eq!(render().ok(), Some(first.clone()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&first).expect("valid YAML");
    assert_eq!(docs.len(), 6);
    assert!(first.starts_with("---\n"));
    let back: Vec<CustomResourceDefinition> = docs
        .into_iter()
        .map(|d| serde_json::from_value(d).expect("a CRD"))
        .collect();
    assert_eq!(back, crds());
}
