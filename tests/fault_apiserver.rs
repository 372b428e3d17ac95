//! The kube-apiserver restarted under a running controller (its own test binary: nothing else runs against
//! the cluster meanwhile). The proxy keeps serving from its last configuration while the API is gone, the
//! watches resume afterwards, and no certificate that is still valid is issued again — neither then nor
//! by a restarted controller.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use support::certgate::Certgate;
use support::http::client;
use support::netns::NetNs;

fn site(ns: &str, name: &str, host: &str, ip: &str, port: u16, tls: bool) -> Vec<Value> {
    let mut ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns, "annotations": {"kubernetes.io/ingress.class": "certgate"}},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}});
    if tls {
        ingress["spec"]["tls"] = json!([{"hosts": [host], "secretName": format!("{name}-tls")}]);
    }
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
               "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-1"), "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
               "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}]}),
        ingress,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_serves_through_an_apiserver_restart_and_nothing_is_issued_twice() {
    let Some([kubeconfig]) = support::dev_cluster_env(["KUBECONFIG"]) else {
        return;
    };
    let Some(netns) = NetNs::create() else { return };
    let backend = netns.backend("web");
    let ip = netns.ip.to_string();
    let kube = support::kube::client().await;
    support::kube::install_crds(&kube).await;
    let ns = support::unique_name("apiserver");
    let namespaces: Api<Namespace> = Api::all(kube.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    // Unique per run: an Ingress left by an earlier run for the same host would win the host's TLS (oldest first).
    let host = format!("{ns}.example.com");
    let host = host.as_str();
    let mut docs = site(&ns, "web", host, &ip, backend.addr.port(), true);
    docs.extend([
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "self", "namespace": ns},
               "spec": {"selfSigned": {}}}),
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "web", "namespace": ns},
               "spec": {"secretName": "web-tls", "dnsNames": [host], "issuerRef": {"name": "self"},
                        "privateKey": {"algorithm": "ECDSA"}}}),
    ]);
    support::kube::kubectl_apply(&docs);
    let cg = Certgate::controller(
        &kubeconfig,
        &[
            "--leader-election-namespace",
            &ns,
            "--leader-lease-duration",
            "3s",
        ],
    );
    cg.wait_for_event("certificate issued", "certificate", &format!("{ns}/web"))
        .await;
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &ns);
    let crt = secrets
        .get("web-tls")
        .await
        .expect("Secret")
        .data
        .expect("data")["tls.crt"]
        .0
        .clone();
    let ca = CertificateDer::from_pem_slice(&crt).expect("PEM");
    let url = format!("https://{host}:{}/", cg.https.port());
    let c = client(Some(&ca));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let answer = c.get(&url).send().await;
        if answer.as_ref().is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served over HTTPS in time: {answer:?}"
        );
        tick.tick().await;
    }

    // Load through the restart: every request must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (c, url, stop) = (client(Some(&ca)), url.clone(), stop.clone());
        let (ok, failed, failures) = (ok.clone(), failed.clone(), failures.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        failures
                            .lock()
                            .expect("failures")
                            .push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let restart = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-cluster.sh"),
    )
    .arg("restart-apiserver")
    .status()
    .expect("dev-cluster.sh runs");
    assert!(restart.success(), "the apiserver restarted");
    let served_during_restart = ok.load(Ordering::Relaxed);

    // The watches resume: a new Ingress made after the restart is served.
    let other = netns.backend("other");
    support::kube::kubectl_apply(&site(
        &ns,
        "other",
        &format!("after-{host}"),
        &ip,
        other.addr.port(),
        false,
    ));
    let plain = client(None);
    let after = format!("http://after-{host}:{}/", cg.http.port());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !plain
        .get(&after)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "a change after the restart was not served"
        );
        tick.tick().await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "apiserver restart: {ok} requests ({served_during_restart} until the apiserver was back), {failed} failed"
    );
    assert_eq!(failed, 0, "{:?}", failures.lock().expect("failures"));
    assert!(served_during_restart > 50, "load ran through the restart");
    // The certificate was valid all along: issued once, and the Secret is the same.
    // Counted for this test's Certificate only: the controller acts on the whole cluster, where other
    // tests' namespaces may still be terminating with Certificates of their own.
    let web = format!("{ns}/web");
    let issued_here = |c: &Certgate| {
        c.logs_containing("\"certificate issued\"")
            .iter()
            .filter(|l| l["fields"]["certificate"] == web.as_str())
            .count()
    };
    assert_eq!(
        issued_here(&cg),
        1,
        "why it was issued: {:?}",
        cg.logs_containing(&web)
    );
    let crt_after = secrets
        .get("web-tls")
        .await
        .expect("Secret")
        .data
        .expect("data")["tls.crt"]
        .0
        .clone();
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(&crt),
        base64::engine::general_purpose::STANDARD.encode(&crt_after)
    );

    // A restarted controller finds the certificate valid and issues nothing.
    drop(cg);
    let again = Certgate::controller(
        &kubeconfig,
        &[
            "--leader-election-namespace",
            &ns,
            "--leader-lease-duration",
            "3s",
        ],
    );
    let reconciled = again
        .wait_for_event("leadership changed", "leading", "true")
        .await;
    assert_eq!(reconciled["fields"]["leading"], true);
    let line = again.wait_for_log("certificates reconciled").await;
    assert!(line["fields"]["up_to_date"].as_u64() >= Some(1), "{line}");
    let started_here: Vec<_> = again
        .logs_containing("\"issuing\"")
        .into_iter()
        .filter(|l| l["fields"]["certificate"] == web.as_str())
        .collect();
    assert!(started_here.is_empty(), "{started_here:?}");
    assert_eq!(issued_here(&again), 0);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
}
