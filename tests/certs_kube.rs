//! Certificate issuance in Kubernetes mode against the real apiserver: Issuers and Certificates applied
//! through the API, the Secret written by server-side apply, the status what `kubectl get certificate`
//! shows. ACME against the real Pebble with HTTP-01 answered by the controller's own listener.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use certgate::crd::certificate::Certificate;
use support::certgate::Certgate;

const MANAGER: &str = "certgate-cert-test";

/// Each test here runs controllers that act on the whole cluster (every Certificate, every Ingress): one
/// test at a time, so two elected leaders never issue the same Certificates side by side.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn apply(client: &Client, ns: &str, doc: Value) {
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

/// Wait until the Certificate's Ready condition is True, returning it.
async fn ready(certs: &Api<Certificate>, name: &str) -> Certificate {
    let is_ready = |c: Option<&Certificate>| {
        c.and_then(|c| c.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Ready" && format!("{:?}", c.status) == "True")
            })
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(certs.clone(), name, is_ready),
    )
    .await
    .unwrap_or_else(|_| panic!("Certificate {name} not Ready in time"))
    .expect("Certificate watch")
    .expect("Certificate exists")
}

#[tokio::test]
async fn certificates_applied_with_the_api_become_ready_with_their_secrets() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let Some([kubeconfig, directory, acme_ca, http_port]) = support::dev_cluster_env([
        "KUBECONFIG",
        "CERTGATE_ACME_DIRECTORY",
        "CERTGATE_ACME_CA",
        "PEBBLE_HTTP_PORT",
    ]) else {
        return;
    };
    let client = support::kube::client().await;
    support::kube::install_crds(&client).await;
    let ns = support::unique_name("certs");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");

    use base64::Engine;
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).unwrap());
    apply(
        &client,
        &ns,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "selfsigned", "namespace": ns}, "spec": {"selfSigned": {}}}),
    )
    .await;
    apply(&client, &ns, json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "pebble", "namespace": ns},
        "spec": {"acme": {"server": directory, "caBundle": ca_bundle, "privateKeySecretRef": {"name": "pebble-account"},
                          "solvers": [{"http01": {"ingress": {"ingressClassName": "certgate"}}}]}}})).await;
    apply(&client, &ns, json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "local", "namespace": ns},
        "spec": {"secretName": "local-tls", "dnsNames": ["local.example.com"], "issuerRef": {"name": "selfsigned"},
                 "privateKey": {"algorithm": "ECDSA"}}})).await;
    let acme_host = format!("{}.certgate.test", support::unique_name("kube"));
    apply(
        &client,
        &ns,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "acme", "namespace": ns},
        "spec": {"secretName": "acme-tls", "dnsNames": [acme_host], "issuerRef": {"name": "pebble"},
                 "privateKey": {"algorithm": "ECDSA"}}}),
    )
    .await;

    // Pebble validates HTTP-01 against 127.0.0.1:PEBBLE_HTTP_PORT: the controller listens there.
    let _cg = Certgate::controller(
        &kubeconfig,
        &[
            "--http-port",
            &http_port,
            "--leader-election-namespace",
            &ns,
        ],
    );
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for (name, secret) in [("local", "local-tls"), ("acme", "acme-tls")] {
        let cert = ready(&certs, name).await;
        let status = cert.status.expect("status");
        assert!(
            status.not_after.is_some() && status.renewal_time.is_some(),
            "{name}: {status:?}"
        );
        let s = secrets.get(secret).await.expect("Secret written");
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = s.data.as_ref().expect("data");
        assert!(
            data.contains_key("tls.crt") && data.contains_key("tls.key"),
            "{name}: keys"
        );
        assert_eq!(
            s.annotations()
                .get("cert-manager.io/certificate-name")
                .map(String::as_str),
            Some(name)
        );
        assert_eq!(
            s.annotations()
                .get("cert-manager.io/issuer-kind")
                .map(String::as_str),
            Some("Issuer")
        );
    }
    // The Issuer's Ready condition, as `kubectl get issuer` shows it.
    let issuers: Api<certgate::crd::issuer::Issuer> = Api::namespaced(client.clone(), &ns);
    let issuer_ready = |i: Option<&certgate::crd::issuer::Issuer>| {
        i.and_then(|i| {
            i.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
        })
        .is_some_and(|c| {
            format!("{:?}", c.status) == "True" && c.reason.as_deref() == Some("IsReady")
        })
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(issuers.clone(), "selfsigned", issuer_ready),
    )
    .await
    .expect("Issuer Ready in time")
    .expect("watch");
    let pebble = issuers.get("pebble").await.expect("ACME Issuer");
    let pebble_ready = pebble
        .status
        .clone()
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready");
    assert_eq!(
        pebble_ready.and_then(|c| c.reason).as_deref(),
        Some("ACMEAccountRegistered"),
        "ACME issuer Ready after registration"
    );
    let account_uri = pebble
        .status
        .as_ref()
        .and_then(|s| s.acme.as_ref())
        .and_then(|a| a.uri.clone());
    assert!(
        account_uri.is_some_and(|u| u.starts_with(directory.trim_end_matches("/dir"))),
        "status.acme.uri is the account URL at the server"
    );

    // Each issuance is recorded as a CertificateRequest `<name>-<revision>` owned by its Certificate.
    let requests: Api<certgate::crd::certificate_request::CertificateRequest> =
        Api::namespaced(client.clone(), &ns);
    let request = requests
        .get("local-1")
        .await
        .expect("CertificateRequest local-1");
    assert_eq!(
        request
            .annotations()
            .get("cert-manager.io/certificate-revision")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        request.owner_references().first().map(|o| o.kind.as_str()),
        Some("Certificate")
    );
    let conditions = request
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for wanted in ["Approved", "Ready"] {
        let c = conditions
            .iter()
            .find(|c| c.type_ == wanted)
            .unwrap_or_else(|| panic!("{wanted} on the request"));
        assert_eq!(format!("{:?}", c.status), "True", "{c:?}");
    }
    assert!(
        request
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some(),
        "issued certificate on the request"
    );
    assert_eq!(
        certs
            .get("local")
            .await
            .expect("Certificate")
            .status
            .and_then(|s| s.revision),
        Some(1)
    );

    // The ACME issuance left cert-manager's object chain: CertificateRequest acme-1 → one Order, valid,
    // with the authorization of the name; its Challenges are gone once it ended; the key in flight was
    // emptied from its Secret.
    let orders: Api<certgate::crd::acme::Order> = Api::namespaced(client.clone(), &ns);
    let all_orders = orders.list(&Default::default()).await.expect("orders");
    assert_eq!(all_orders.items.len(), 1, "one Order: {all_orders:?}");
    let order = &all_orders.items[0];
    assert!(
        order.name_any().starts_with("acme-1-"),
        "{}",
        order.name_any()
    );
    let owner = order.owner_references().first().expect("Order owner");
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("CertificateRequest", "acme-1")
    );
    let order_status = order.status.clone().expect("Order status");
    assert_eq!(order_status.state, Some(certgate::crd::acme::State::Valid));
    assert!(
        order_status
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
        "{order_status:?}"
    );
    assert!(order_status.certificate.is_some(), "the chain on the Order");
    let authorizations = order_status.authorizations.unwrap_or_default();
    assert_eq!(
        authorizations
            .iter()
            .map(|a| a.identifier.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        [acme_host.as_str()]
    );
    assert_eq!(
        order.spec.dns_names.as_deref(),
        Some(std::slice::from_ref(&acme_host))
    );
    let challenges: Api<certgate::crd::acme::Challenge> = Api::namespaced(client.clone(), &ns);
    assert!(
        challenges
            .list(&Default::default())
            .await
            .expect("challenges")
            .items
            .is_empty(),
        "Challenges are deleted when their order ends"
    );
    let next_key = secrets
        .get("acme-next-private-key")
        .await
        .expect("next key Secret");
    assert!(
        next_key.data.unwrap_or_default().is_empty(),
        "the key in flight is emptied once issued"
    );
    assert_eq!(
        certs
            .get("acme")
            .await
            .expect("Certificate")
            .status
            .and_then(|s| s.next_private_key_secret_name),
        None
    );

    // `certgate status certificate`, as `cmctl status certificate` reports it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(["status", "certificate", "local", "-n", &ns])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("certgate status runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(
            "Ready: True, Reason: Ready, Message: Certificate is up to date and has not expired"
        ),
        "{report}"
    );
    assert!(
        report.contains("DNS Names:\n- local.example.com"),
        "{report}"
    );
    assert!(
        report.contains("Name: selfsigned\n  Kind: Issuer"),
        "{report}"
    );
    assert!(report.contains("Keys: ca.crt tls.crt tls.key"), "{report}");
    // For the ACME Certificate it also walks the chain: the request, its Order and that Order's state.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(["status", "certificate", "acme", "-n", &ns])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("certgate status runs");
    let report = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "Ready: True, Reason: ACMEAccountRegistered",
        "CertificateRequest:\n  Name: acme-1\n  Ready: True, Reason: Issued",
        &format!("Authorization: {acme_host} (pending)"),
        "State: valid",
        "Challenges: none (deleted once the order ends)",
    ] {
        assert!(
            report.contains(expected),
            "{expected:?} missing from:\n{report}"
        );
    }

    // The account key Secret exists and is reused from now on.
    assert!(
        secrets
            .get("pebble-account")
            .await
            .expect("account Secret")
            .data
            .expect("data")
            .contains_key("tls.key")
    );

    // What `kubectl get certificate` shows (the printer columns of certgate's CRD).
    if let Some(kubectl) = support::tool("kubectl") {
        let out = std::process::Command::new(kubectl)
            .args(["get", "certificate", "-n", &ns, "--no-headers"])
            .output()
            .expect("kubectl");
        let table = String::from_utf8_lossy(&out.stdout);
        for line in table.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cols.get(1), Some(&"True"), "READY column: {table}");
        }
        assert_eq!(table.lines().count(), 2, "{table}");
    }

    // ingress-shim: an annotated Ingress gets a Certificate it controls; removing the tls entry removes it.
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
        Api::namespaced(client.clone(), &ns);
    let ingress = |tls: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shimmed", "namespace": ns, "annotations": {"cert-manager.io/issuer": "selfsigned"}},
        "spec": {"tls": tls, "rules": [{"host": "shim.example.com"}]}})
    };
    let with_tls = ingress(json!([{"hosts": ["shim.example.com"], "secretName": "shim-tls"}]));
    let ing = ingresses
        .patch(
            "shimmed",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&with_tls),
        )
        .await
        .expect("Ingress applied");
    let shim_cert = ready(&certs, "shim-tls").await;
    let owner = shim_cert
        .owner_references()
        .first()
        .cloned()
        .expect("owner reference");
    assert_eq!(owner.kind, "Ingress");
    assert_eq!(Some(owner.uid), ing.uid());
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        shim_cert.spec.dns_names.as_deref(),
        Some(&["shim.example.com".to_owned()][..])
    );
    secrets
        .get("shim-tls")
        .await
        .expect("Secret issued for the Ingress");
    ingresses
        .patch(
            "shimmed",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&ingress(json!([]))),
        )
        .await
        .expect("Ingress without tls");
    let uid = shim_cert.uid().unwrap_or_default();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(certs.clone(), "shim-tls", conditions::is_deleted(&uid)),
    )
    .await
    .expect("Certificate deleted in time")
    .expect("watch");
    assert!(
        secrets.get_opt("shim-tls").await.expect("get").is_some(),
        "the Secret stays, as with cert-manager"
    );

    // An ACME server that cannot be reached: Ready False with the reason, the failure counted, the issuer
    // marked not Ready, no Secret.
    apply(&client, &ns, json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "unreachable", "namespace": ns},
        "spec": {"acme": {"server": "https://127.0.0.1:9/directory", "privateKeySecretRef": {"name": "nowhere-account"},
                          "solvers": [{"http01": {"ingress": {}}}]}}})).await;
    apply(&client, &ns, json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "doomed", "namespace": ns},
        "spec": {"secretName": "doomed-tls", "dnsNames": ["doomed.example.com"], "issuerRef": {"name": "unreachable"}}})).await;
    let failed = |c: Option<&Certificate>| {
        c.and_then(|c| c.status.as_ref())
            .is_some_and(|s| s.failed_issuance_attempts.unwrap_or(0) >= 1)
    };
    let doomed = tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(certs.clone(), "doomed", failed),
    )
    .await
    .expect("failure recorded in time")
    .expect("watch")
    .expect("Certificate");
    let status = doomed.status.expect("status");
    assert!(status.last_failure_time.is_some());
    let ready_condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(format!("{:?}", ready_condition.status), "False");
    assert_eq!(ready_condition.reason.as_deref(), Some("Failed"));
    assert!(
        ready_condition
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("ACME"),
        "{ready_condition:?}"
    );
    assert!(
        secrets.get_opt("doomed-tls").await.expect("get").is_none(),
        "no Secret for a failed issuance"
    );
    let not_registered = |i: Option<&certgate::crd::issuer::Issuer>| {
        i.and_then(|i| {
            i.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
        })
        .is_some_and(|c| c.reason.as_deref() == Some("ErrRegisterACMEAccount"))
    };
    let issuers: Api<certgate::crd::issuer::Issuer> = Api::namespaced(client.clone(), &ns);
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(issuers, "unreachable", not_registered),
    )
    .await
    .expect("ACME issuer marked not Ready")
    .expect("watch");

    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_it_dies() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let Some([kubeconfig]) = support::dev_cluster_env(["KUBECONFIG"]) else {
        return;
    };
    let client = support::kube::client().await;
    let ns = support::unique_name("lease");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    let args = [
        "--leader-election-namespace",
        ns.as_str(),
        "--leader-lease-duration",
        "3s",
    ];
    let first = Certgate::controller(&kubeconfig, &args);
    first
        .wait_for_event("leadership changed", "leading", "true")
        .await;
    let second = Certgate::controller(&kubeconfig, &args);
    // The second replica serves traffic but does not lead while the first renews its Lease.
    second.wait_for_log("caches synced").await;
    let lease: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns);
    let holder = lease
        .get("certgate-controller")
        .await
        .expect("Lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert!(
        holder.is_some_and(|h| h.ends_with(&first.pid().to_string())),
        "the first replica holds the Lease"
    );
    assert_eq!(second.count_logs("\"leading\":true"), 0, "two leaders");

    drop(first);
    let took_over = second
        .wait_for_event("leadership changed", "leading", "true")
        .await;
    assert_eq!(took_over["fields"]["leading"], true);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

#[tokio::test]
async fn every_replica_answers_http01_and_a_new_leader_finishes_the_order_of_a_dead_one() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let Some([kubeconfig, directory, acme_ca, http_port]) = support::dev_cluster_env([
        "KUBECONFIG",
        "CERTGATE_ACME_DIRECTORY",
        "CERTGATE_ACME_CA",
        "PEBBLE_HTTP_PORT",
    ]) else {
        return;
    };
    let client = support::kube::client().await;
    support::kube::install_crds(&client).await;
    let ns = support::unique_name("ha");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    use base64::Engine;
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).unwrap());
    apply(&client, &ns, json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "pebble", "namespace": ns},
        "spec": {"acme": {"server": directory, "caBundle": ca_bundle, "privateKeySecretRef": {"name": "pebble-account"},
                          "solvers": [{"http01": {"ingress": {"ingressClassName": "certgate"}}}]}}})).await;
    let certificate = |name: &str| {
        let host = format!("{}.certgate.test", support::unique_name(name));
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"secretName": format!("{name}-tls"), "dnsNames": [host], "issuerRef": {"name": "pebble"},
                     "privateKey": {"algorithm": "ECDSA"}}})
    };

    // The leader listens on a port of its own; Pebble validates on PEBBLE_HTTP_PORT, where only the
    // follower listens: every validation below is answered by the replica that did not open the order.
    let lease = [
        "--leader-election-namespace",
        ns.as_str(),
        "--leader-lease-duration",
        "3s",
    ];
    let leader = Certgate::controller(&kubeconfig, &lease);
    leader
        .wait_for_event("leadership changed", "leading", "true")
        .await;
    let mut follower_args = lease.to_vec();
    follower_args.extend(["--http-port", http_port.as_str()]);
    let follower = Certgate::controller(&kubeconfig, &follower_args);
    follower.wait_for_log("caches synced").await;

    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    apply(&client, &ns, certificate("first")).await;
    ready(&certs, "first").await;
    leader
        .wait_for_event("certificate issued", "certificate", &format!("{ns}/first"))
        .await;
    assert_eq!(
        follower.count_logs("certificate issued"),
        0,
        "the follower issued"
    );

    // Kill the leader as soon as the second order's Challenge exists, before it can finish.
    let challenges: Api<certgate::crd::acme::Challenge> = Api::namespaced(client.clone(), &ns);
    let mut appeared =
        std::pin::pin!(kube::runtime::watcher(challenges, Default::default()).applied_objects());
    apply(&client, &ns, certificate("second")).await;
    let challenge = tokio::time::timeout(Duration::from_secs(30), async {
        use futures::StreamExt;
        loop {
            let c = appeared.next().await.expect("watch open").expect("watch");
            if c.name_any().starts_with("second-1-") {
                return c;
            }
        }
    })
    .await
    .expect("the second order's Challenge in time");
    drop(leader);

    // The follower takes the Lease, resumes that order (same Order, same Challenge) and finishes it.
    follower
        .wait_for_event("leadership changed", "leading", "true")
        .await;
    let resumed = follower
        .wait_for_log("resuming the ACME order a previous leader opened")
        .await;
    let second = ready(&certs, "second").await;
    let orders: Api<certgate::crd::acme::Order> = Api::namespaced(client.clone(), &ns);
    let second_orders: Vec<_> = orders
        .list(&Default::default())
        .await
        .expect("orders")
        .items
        .into_iter()
        .filter(|o| o.name_any().starts_with("second-"))
        .collect();
    assert_eq!(
        second_orders.len(),
        1,
        "one order, not a second one: {second_orders:?}"
    );
    let order = &second_orders[0];
    assert_eq!(resumed["fields"]["order"], order.name_any().as_str());
    assert_eq!(
        challenge
            .owner_references()
            .first()
            .map(|o| o.name.as_str()),
        Some(order.name_any().as_str())
    );
    assert_eq!(
        order.status.as_ref().and_then(|s| s.state),
        Some(certgate::crd::acme::State::Valid)
    );
    assert_eq!(second.status.and_then(|s| s.revision), Some(1));
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}
