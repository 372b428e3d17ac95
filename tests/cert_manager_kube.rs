//! certgate beside cert-manager, against the real apiserver: while cert-manager's controller Lease is held
//! certgate issues nothing and says why (log line and Event naming the Lease); once the Lease is released it
//! issues, and a Secret cert-manager issued earlier is adopted as it is, not issued again.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use certgate::crd::certificate::Certificate;
use certgate::crd::certificate_request::CertificateRequest;
use support::certgate::Certgate;

const MANAGER: &str = "certgate-cert-manager-test";
const LEASE: &str = "cert-manager-controller";

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in certgate::crd::crds() {
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applies");
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .expect("CRD watch");
    }
}

async fn apply_cm(client: &Client, ns: &str, doc: Value) {
    let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
    let kind = doc["kind"].as_str().expect("kind").to_owned();
    let ar = kube::core::ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: kind.clone(),
        plural: format!("{}s", kind.to_lowercase()),
    };
    let api: Api<kube::core::DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&doc),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

/// A MicroTime `secs` from now, as client-go writes Lease times.
fn micro(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// What cert-manager's Secret for `name` looks like: a self-signed RSA 2048 certificate with a PKCS#1 key
/// (cert-manager's defaults), made by openssl, with the annotations and label cert-manager writes.
fn cert_manager_secret(ns: &str, name: &str, secret: &str, host: &str) -> Secret {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("tls.key");
    let crt = dir.path().join("tls.crt");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (key_path, crt_path) = (key.to_str().expect("path"), crt.to_str().expect("path"));
    std::fs::write(&key, rsa_key_pem()).expect("key written");
    openssl(&[
        "req",
        "-x509",
        "-key",
        key_path,
        "-days",
        "90",
        "-subj",
        &format!("/CN={host}"),
        "-addext",
        &format!("subjectAltName=DNS:{host}"),
        // A leaf, with cert-manager's default usages (openssl's own default is a CA).
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "-out",
        crt_path,
    ]);
    let key_pem = std::fs::read(&key).expect("key written");
    assert!(
        key_pem.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"),
        "PKCS#1 as cert-manager writes"
    );
    let crt_pem = std::fs::read(&crt).expect("certificate written");
    let annotations: BTreeMap<String, String> = [
        ("cert-manager.io/alt-names", host),
        ("cert-manager.io/certificate-name", name),
        ("cert-manager.io/common-name", host),
        ("cert-manager.io/ip-sans", ""),
        ("cert-manager.io/issuer-group", "cert-manager.io"),
        ("cert-manager.io/issuer-kind", "Issuer"),
        ("cert-manager.io/issuer-name", "selfsigned"),
        ("cert-manager.io/uri-sans", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut s = Secret::default();
    s.metadata.name = Some(secret.into());
    s.metadata.namespace = Some(ns.into());
    s.metadata.annotations = Some(annotations);
    s.metadata.labels = Some(BTreeMap::from([(
        "controller.cert-manager.io/fao".to_owned(),
        "true".to_owned(),
    )]));
    s.type_ = Some("kubernetes.io/tls".into());
    s.data = Some(BTreeMap::from([
        ("tls.crt".into(), k8s_openapi::ByteString(crt_pem.clone())),
        ("tls.key".into(), k8s_openapi::ByteString(key_pem)),
        ("ca.crt".into(), k8s_openapi::ByteString(crt_pem)),
    ]));
    s
}

/// An RSA 2048 key in PKCS#1 PEM, as cert-manager writes keys by default (made by openssl).
fn rsa_key_pem() -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"),
        "PKCS#1"
    );
    out.stdout
}

/// Wait (20 s at most) for an Event in `ns` with this reason about the Lease, returning its note.
async fn lease_event(events: &Api<Event>, reason: &str) -> String {
    let find = async {
        loop {
            let list = events.list(&Default::default()).await.expect("list Events");
            if let Some(e) = list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(LEASE)
            }) {
                return e.note.unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), find)
        .await
        .unwrap_or_else(|_| panic!("no {reason} Event about Lease {LEASE}"))
}

/// certgate's log lines about this Certificate (`namespace/name`), with this message if given.
fn lines_about(cg: &Certgate, certificate: &str, message: Option<&str>) -> Vec<Value> {
    cg.logs_containing(certificate)
        .into_iter()
        .filter(|v| v["fields"]["certificate"] == certificate)
        .filter(|v| message.is_none_or(|m| v["fields"]["message"] == m))
        .collect()
}

fn ready_condition(c: Option<&Certificate>) -> Option<(String, String)> {
    let cond = c?
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?
        .clone();
    Some((
        format!("{:?}", cond.status),
        cond.message.unwrap_or_default(),
    ))
}

#[tokio::test]
async fn no_issuance_while_cert_manager_holds_its_lease_then_adoption_without_reissuance() {
    let Some([kubeconfig, directory, acme_ca]) =
        support::dev_cluster_env(["KUBECONFIG", "CERTGATE_ACME_DIRECTORY", "CERTGATE_ACME_CA"])
    else {
        return;
    };
    if support::tool("openssl").is_none() {
        return;
    }
    let client = support::kube::client().await;
    install_crds(&client).await;
    let ns = support::unique_name("cm-lease");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");

    // cert-manager's controller, running: it holds its Lease (renewed just now, valid 60 s).
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = "cm-5d8f9-external-cert-manager-controller";
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": LEASE},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": 60,
                         "acquireTime": micro(-600), "renewTime": micro(0), "leaseTransitions": 3}}))
            .unwrap(),
        )
        .await
        .expect("Lease");

    // What cert-manager left: an Issuer, a Certificate it issued (its Secret), and one not issued yet.
    apply_cm(
        &client,
        &ns,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "selfsigned", "namespace": ns}, "spec": {"selfSigned": {}}}),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let old = cert_manager_secret(&ns, "adopted", "adopted-tls", "adopted.example.com");
    secrets
        .create(&PostParams::default(), &old)
        .await
        .expect("cert-manager's Secret");
    apply_cm(&client, &ns, json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "adopted", "namespace": ns},
        "spec": {"secretName": "adopted-tls", "dnsNames": ["adopted.example.com"], "issuerRef": {"name": "selfsigned"}}}))
    .await;
    apply_cm(&client, &ns, json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "fresh", "namespace": ns},
        "spec": {"secretName": "fresh-tls", "dnsNames": ["fresh.example.com"], "issuerRef": {"name": "selfsigned"}}}))
    .await;

    let lease_flag = format!("{ns}/{LEASE}");
    let cg = Certgate::controller(
        &kubeconfig,
        &[
            "--leader-election-namespace",
            &ns,
            "--cert-manager-lease",
            &lease_flag,
            "--cert-manager-check-interval",
            "1s",
        ],
    );
    cg.wait_for_event("leadership changed", "leading", "true")
        .await;
    // It says why, in the log and in an Event on the Lease, naming the Lease, its holder and what to do.
    let line = cg.wait_for_log("CertManagerRunning").await;
    let text = line.to_string();
    assert!(
        text.contains(&lease_flag) && text.contains(holder),
        "{line}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let note = lease_event(&events, "CertManagerRunning").await;
    for part in [
        lease_flag.as_str(),
        holder,
        "scale deployment cert-manager --replicas=0",
    ] {
        assert!(note.contains(part), "{part} in the Event: {note}");
    }
    // The leader decided after reading the Lease: nothing of this namespace was issued.
    for certificate in ["fresh", "adopted"] {
        let acted = lines_about(&cg, &format!("{ns}/{certificate}"), None);
        assert!(
            acted.is_empty(),
            "acted on while cert-manager runs: {acted:?}"
        );
    }
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        ready_condition(certs.get("fresh").await.ok().as_ref()),
        None,
        "no status written while cert-manager runs"
    );

    // cert-manager is scaled to 0: client-go releases the Lease on a clean stop.
    leases
        .patch(
            LEASE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro(0)}})),
        )
        .await
        .expect("Lease released");
    let resumed = lease_event(&events, "CertManagerStopped").await;
    assert!(resumed.contains("the Lease was released"), "{resumed}");

    let is_ready =
        |c: Option<&Certificate>| ready_condition(c).is_some_and(|(status, _)| status == "True");
    for name in ["fresh", "adopted"] {
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(certs.clone(), name, is_ready),
        )
        .await
        .unwrap_or_else(|_| panic!("Certificate {name} not Ready after the Lease was released"))
        .expect("Certificate watch");
    }
    assert!(
        secrets.get_opt("fresh-tls").await.expect("get").is_some(),
        "issued once cert-manager stopped"
    );

    // Adopted: the Secret cert-manager issued is served as it is, Ready, no issuance recorded.
    let issuing = lines_about(&cg, &format!("{ns}/adopted"), Some("issuing"));
    assert!(
        issuing.is_empty(),
        "the adopted Certificate was issued: {issuing:?}"
    );
    let adopted = certs.get("adopted").await.expect("Certificate");
    let (_, message) = ready_condition(Some(&adopted)).expect("Ready");
    assert_eq!(message, "Certificate is up to date and has not expired");
    assert_eq!(
        adopted.status.as_ref().and_then(|s| s.revision),
        None,
        "no revision: nothing was issued"
    );
    let now = secrets.get("adopted-tls").await.expect("Secret");
    assert_eq!(
        now.data, old.data,
        "cert-manager's certificate and key kept"
    );
    let requests: Api<CertificateRequest> = Api::namespaced(client.clone(), &ns);
    assert!(
        requests.get_opt("adopted-1").await.expect("get").is_none(),
        "no CertificateRequest for the adopted Certificate"
    );

    // cert-manager's ACME account key is RSA (PKCS#1); certgate signs with ECDSA P-256 only, so the issuer
    // says so, naming the Secret ...
    let mut account = Secret::default();
    account.metadata.name = Some("cm-account".into());
    account.data = Some(BTreeMap::from([(
        "tls.key".to_owned(),
        k8s_openapi::ByteString(rsa_key_pem()),
    )]));
    secrets
        .create(&PostParams::default(), &account)
        .await
        .expect("cert-manager's account key");
    use base64::Engine;
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).expect("CA"));
    let acme_issuer = |account: &str| {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "acme", "namespace": ns},
               "spec": {"acme": {"server": directory, "caBundle": ca_bundle, "email": "ops@example.com",
                                 "privateKeySecretRef": {"name": account},
                                 "solvers": [{"http01": {"ingress": {"ingressClassName": "certgate"}}}]}}})
    };
    apply_cm(&client, &ns, acme_issuer("cm-account")).await;
    let issuers: Api<certgate::crd::issuer::Issuer> = Api::namespaced(client.clone(), &ns);
    let refused = issuer_ready(&issuers, "acme", "ErrRegisterACMEAccount").await;
    for part in [
        "cm-account",
        "ECDSA P-256",
        "name a new Secret in privateKeySecretRef",
    ] {
        assert!(refused.contains(part), "{part} in {refused}");
    }
    // ... and registers a new account once privateKeySecretRef names a new Secret (the old key is kept).
    apply_cm(&client, &ns, acme_issuer("certgate-account")).await;
    issuer_ready(&issuers, "acme", "ACMEAccountRegistered").await;
    assert!(
        secrets
            .get_opt("certgate-account")
            .await
            .expect("get")
            .is_some(),
        "the new account key is stored"
    );
    assert_eq!(
        secrets.get("cm-account").await.expect("kept").data,
        account.data
    );

    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

/// Wait (30 s at most) until the Issuer's Ready condition has this reason; returns its message.
async fn issuer_ready(
    issuers: &Api<certgate::crd::issuer::Issuer>,
    name: &str,
    reason: &str,
) -> String {
    let has_reason =
        |i: Option<&certgate::crd::issuer::Issuer>| ready_of(i).is_some_and(|(r, _)| r == reason);
    let issuer = tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(issuers.clone(), name, has_reason),
    )
    .await
    .unwrap_or_else(|_| panic!("Issuer {name} not {reason} in time"))
    .expect("Issuer watch");
    ready_of(issuer.as_ref())
        .map(|(_, m)| m)
        .unwrap_or_default()
}

fn ready_of(i: Option<&certgate::crd::issuer::Issuer>) -> Option<(String, String)> {
    let c = i?
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?
        .clone();
    Some((c.reason.unwrap_or_default(), c.message.unwrap_or_default()))
}
