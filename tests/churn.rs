//! Sustained load through the proxy while its configuration changes 100 times and its certificate is
//! rotated several times: not one failed request, not one connection error. Standalone mode, real sockets,
//! a real HTTPS client verifying every response's certificate against the CA that issued it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use support::backend;
use support::certgate::Certgate;
use support::http::client;

const CHANGES: usize = 100;
const CLIENTS: usize = 8;

fn route(name: &str, host: &str, tls: Option<&str>, backend_port: u16) -> Vec<Value> {
    let mut ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}});
    if let Some(secret) = tls {
        ingress["spec"]["tls"] = json!([{"hosts": [host], "secretName": secret}]);
    }
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"ports": [{"name": "http", "port": 80}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-1"), "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": backend_port}],
               "endpoints": [{"addresses": ["127.0.0.1"]}]}),
        ingress,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_the_configuration_changes_and_the_certificate_rotates() {
    let site = backend::start("site").await;
    let other = backend::start("other").await;
    let dir = tempfile::tempdir().unwrap();
    let host = "churn.example.com";
    // A long-lived root, a CA Issuer on it, and a leaf renewed three seconds after each issuance.
    let mut docs = route("site", host, Some("site-tls"), site.addr.port());
    docs.extend([
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "bootstrap"},
               "spec": {"selfSigned": {}}}),
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "root"},
               "spec": {"secretName": "root-tls", "isCA": true, "commonName": "churn root",
                        "privateKey": {"algorithm": "ECDSA"}, "issuerRef": {"name": "bootstrap"}}}),
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "ca"},
               "spec": {"ca": {"secretName": "root-tls"}}}),
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "site"},
               "spec": {"secretName": "site-tls", "dnsNames": [host], "duration": "1h", "renewBefore": "59m57s",
                        "privateKey": {"algorithm": "ECDSA"}, "issuerRef": {"name": "ca"}}}),
    ]);
    support::write_manifests(dir.path(), "site.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    cg.wait_for_event("certificate issued", "secret", "default/site-tls")
        .await;
    let root = std::fs::read_to_string(dir.path().join(".state/default.root-tls.secret.yaml"))
        .expect("root Secret");
    let root: Value = serde_json::from_str(&root).expect("root JSON");
    let root_pem = base64::engine::general_purpose::STANDARD
        .decode(root["data"]["tls.crt"].as_str().expect("tls.crt"))
        .expect("base64");
    let ca = CertificateDer::from_pem_slice(&root_pem).expect("root PEM");
    let url = format!("https://{host}:{}/", cg.https.port());
    // Served with the issued certificate before the load starts.
    let c = client(Some(&ca));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while !c
        .get(&url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "not served over HTTPS in time");
        tick.tick().await;
    }

    // Clients on keep-alive connections (HTTP/2 and HTTP/1.1), each request verified against the root.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for _ in 0..CLIENTS {
        let (c, url, stop) = (client(Some(&ca)), url.clone(), stop.clone());
        let (ok, failed, failures) = (ok.clone(), failed.clone(), failures.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status().is_success() => match r.text().await {
                        Ok(body) if body.contains("site") => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            failures.lock().unwrap().push(format!("{other:?}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    },
                    other => {
                        failures.lock().unwrap().push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    // 100 changes: another file's Ingresses come and go (each a reload of the whole configuration).
    let started = Instant::now();
    let plain = client(None);
    for i in 0..CHANGES {
        let docs: Vec<Value> = (0..=(i % 10))
            .flat_map(|j| {
                route(
                    &format!("extra-{j}"),
                    &format!("e{j}-{i}.example.com"),
                    None,
                    other.addr.port(),
                )
            })
            .collect();
        support::write_manifests(dir.path(), "extra.yaml", &docs);
        // Each change is served before the next one is written: its newest host answers.
        let newest = format!("http://e{}-{i}.example.com:{}/", i % 10, cg.http.port());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while !plain
            .get(&newest)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "change {i} not served in time");
            tick.tick().await;
        }
    }
    // Keep the load on until the leaf has rotated at least three times in all.
    cg.wait_for_nth_event(4, "certificate issued", "secret", "default/site-tls")
        .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let rotations = cg
        .logs_containing("certificate issued")
        .iter()
        .filter(|v| v["fields"]["secret"] == "default/site-tls")
        .count()
        - 1;
    eprintln!(
        "churn: {ok} requests in {:.1} s, {failed} failed, {CHANGES} configuration changes, {rotations} certificate rotations",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(failed, 0, "failed requests: {:?}", failures.lock().unwrap());
    assert!(ok > 1000, "the load ran ({ok} requests)");
    assert!(rotations >= 3, "{rotations} rotations");
}

/// Kubernetes mode: the same load while the controller renews the certificate three times (every renewal
/// goes through the API: Secret written, watched, served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_the_controller_renews_the_certificate() {
    let Some([kubeconfig]) = support::dev_cluster_env(["KUBECONFIG"]) else {
        return;
    };
    let Some(netns) = support::netns::NetNs::create() else {
        return;
    };
    let web = netns.backend("site");
    let kube = support::kube::client().await;
    support::kube::install_crds(&kube).await;
    let ns = support::unique_name("renew");
    let host = format!("{ns}.example.com");
    support::kube::kubectl_apply(&[
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    ]);
    let in_ns = |mut doc: Value| {
        doc["metadata"]["namespace"] = json!(ns);
        doc
    };
    let mut docs: Vec<Value> = route("site", &host, Some("site-tls"), web.addr.port())
        .into_iter()
        .map(in_ns)
        .collect();
    docs[1]["endpoints"] =
        json!([{"addresses": [netns.ip.to_string()], "conditions": {"ready": true}}]);
    docs[2]["metadata"]["annotations"] = json!({"kubernetes.io/ingress.class": "certgate"});
    docs.extend(
        [
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "bootstrap"},
                   "spec": {"selfSigned": {}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "root"},
                   "spec": {"secretName": "root-tls", "isCA": true, "commonName": "renew root",
                            "privateKey": {"algorithm": "ECDSA"}, "issuerRef": {"name": "bootstrap"}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "ca"},
                   "spec": {"ca": {"secretName": "root-tls"}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "site"},
                   "spec": {"secretName": "site-tls", "dnsNames": [host], "duration": "1h", "renewBefore": "59m57s",
                            "privateKey": {"algorithm": "ECDSA"}, "issuerRef": {"name": "ca"}}}),
        ]
        .map(in_ns),
    );
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
    let site = format!("{ns}/site");
    cg.wait_for_event("certificate issued", "certificate", &site)
        .await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(kube.clone(), &ns);
    let root_pem = secrets
        .get("root-tls")
        .await
        .expect("root Secret")
        .data
        .expect("data")["tls.crt"]
        .0
        .clone();
    let ca = CertificateDer::from_pem_slice(&root_pem).expect("root PEM");
    let url = format!("https://{host}:{}/", cg.https.port());
    let c = client(Some(&ca));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while !c
        .get(&url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "not served over HTTPS in time");
        tick.tick().await;
    }

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
    let started = Instant::now();
    cg.wait_for_nth_event(4, "certificate issued", "certificate", &site)
        .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "renewal under load (Kubernetes): {ok} requests in {:.1} s, {failed} failed, 3 renewals",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        failed,
        0,
        "failed requests: {:?}",
        failures.lock().expect("failures")
    );
    assert!(ok > 100, "the load ran ({ok} requests)");
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(kube)
        .delete(&ns, &Default::default())
        .await
        .expect("delete namespace");
}
