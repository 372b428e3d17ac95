//! Certificate issuance in standalone mode: Issuers and Certificates from the manifest directory, the
//! issued Secrets written to the state directory and served by the proxy at once. ACME against the real
//! Pebble, with HTTP-01 answered by certgate's own listener; SelfSigned and CA issuers locally.

mod support;

use std::path::Path;

use base64::Engine;
use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use support::backend;
use support::certgate::Certgate;
use support::http::client;
use support::pebble::Pebble;

/// A Service + EndpointSlice for the backend and an Ingress serving `host` over TLS from `secret`.
fn site(host: &str, secret: &str, backend: std::net::SocketAddr, annotations: Value) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"ports": [{"name": "http", "port": 80}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": backend.port()}],
               "endpoints": [{"addresses": ["127.0.0.1"]}]}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "annotations": annotations},
               "spec": {"tls": [{"hosts": [host], "secretName": secret}],
                        "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                   "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    ]
}

fn certificate(name: &str, secret: &str, issuer: (&str, &str), extra: Value) -> Value {
    let mut c = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": name},
                       "spec": {"secretName": secret, "issuerRef": {"name": issuer.0, "kind": issuer.1}}});
    if let (Some(spec), Some(extra)) = (c["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    c
}

fn state_file(state: &Path, ns: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(state.join(format!("{ns}.{name}.secret.yaml")))
        .expect("issued Secret file");
    serde_json::from_str(&text).expect("Secret JSON")
}

fn pem_field(secret: &Value, field: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(secret["data"][field].as_str().expect(field))
        .expect("base64")
}

#[tokio::test]
async fn self_signed_ca_chain_issues_and_is_served_at_once() {
    let site_backend = backend::start("site").await;
    let dir = tempfile::tempdir().unwrap();
    let host = "leaf.example.com";
    let mut docs = site(host, "leaf-tls", site_backend.addr, json!({}));
    docs.push(json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "bootstrap"},
                     "spec": {"selfSigned": {}}}));
    docs.push(certificate("root-ca", "root-ca-tls", ("bootstrap", "ClusterIssuer"),
        json!({"isCA": true, "commonName": "certgate test root", "privateKey": {"algorithm": "ECDSA"}})));
    docs.push(
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "ca"},
                     "spec": {"ca": {"secretName": "root-ca-tls"}}}),
    );
    docs.push(certificate(
        "leaf",
        "leaf-tls",
        ("ca", "Issuer"),
        json!({"dnsNames": [host], "privateKey": {"algorithm": "ECDSA", "encoding": "PKCS8"}}),
    ));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let state = dir.path().join(".state");
    let cg = Certgate::start(dir.path(), &[]);

    cg.wait_for_event("certificate issued", "secret", "default/leaf-tls")
        .await;
    let leaf = state_file(&state, "default", "leaf-tls");
    assert_eq!(leaf["type"], "kubernetes.io/tls");
    assert_eq!(
        leaf["metadata"]["annotations"]["cert-manager.io/issuer-kind"],
        "Issuer"
    );
    assert_eq!(
        leaf["metadata"]["annotations"]["cert-manager.io/alt-names"],
        host
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.join("default.leaf-tls.secret.yaml"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "issued Secrets hold private keys");
    let ca_pem = pem_field(&state_file(&state, "default", "root-ca-tls"), "tls.crt");
    let ca = CertificateDer::from_pem_slice(&ca_pem).unwrap();

    // Served by the proxy without a restart, verified against the CA that issued it.
    let c = client(Some(&ca));
    let url = format!("https://{host}:{}/", cg.https.port());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match c.get(&url).send().await {
            Ok(resp) if resp.status() == StatusCode::OK => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "not served with the issued certificate: {other:?}"
            ),
        }
    }

    // A restart reads the state directory: nothing is issued twice.
    drop(cg);
    let again = Certgate::start(dir.path(), &[]);
    let line = again.wait_for_log("certificates reconciled").await;
    assert_eq!(line["fields"]["started"], 0, "{line}");
    assert_eq!(line["fields"]["up_to_date"], 2, "{line}");
}

#[tokio::test]
async fn annotated_ingress_gets_an_acme_certificate_over_http01_on_certgates_own_listener() {
    let Some([directory, acme_ca, pebble_roots, http_port]) = support::dev_cluster_env([
        "CERTGATE_ACME_DIRECTORY",
        "CERTGATE_ACME_CA",
        "CERTGATE_PEBBLE_ROOTS",
        "PEBBLE_HTTP_PORT",
    ]) else {
        return;
    };
    let site_backend = backend::start("site").await;
    let dir = tempfile::tempdir().unwrap();
    let host = format!("{}.certgate.test", support::unique_name("acme"));
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).unwrap());
    // The user's whole workflow: an Ingress annotated with the ClusterIssuer, nothing else.
    let mut docs = site(
        &host,
        "acme-tls",
        site_backend.addr,
        json!({"cert-manager.io/cluster-issuer": "pebble"}),
    );
    // A ClusterIssuer as cert-manager's documentation writes it, pointed at Pebble.
    docs.push(json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "pebble"},
        "spec": {"acme": {"server": directory, "email": "ops@example.com", "caBundle": ca_bundle,
                          "privateKeySecretRef": {"name": "pebble-account"},
                          "solvers": [{"http01": {"ingress": {"ingressClassName": "certgate"}}}]}}}));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let state = dir.path().join(".state");
    // Pebble validates against 127.0.0.1:PEBBLE_HTTP_PORT: certgate's own HTTP listener is there.
    let cg = Certgate::start(dir.path(), &["--http-port", &http_port]);

    let done = cg
        .wait_for_log_any(&["certificate issued", "issuance failed"])
        .await;
    assert_eq!(done["fields"]["message"], "certificate issued", "{done}");
    let issued = state_file(&state, "default", "acme-tls");
    let account = state_file(&state, "cert-manager", "pebble-account");
    assert!(
        String::from_utf8(pem_field(&account, "tls.key"))
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let chain_pem = pem_field(&issued, "tls.crt");
    assert!(
        CertificateDer::pem_slice_iter(&chain_pem).count() >= 2,
        "leaf and intermediate"
    );

    // HTTPS to the host serves the Pebble-issued chain, verified against Pebble's roots.
    let root = CertificateDer::pem_file_iter(&pebble_roots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let c = client(Some(&root));
    let url = format!("https://{host}:{}/", cg.https.port());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match c.get(&url).send().await {
            Ok(resp) if resp.status() == StatusCode::OK => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "not served with the ACME certificate: {other:?}"
            ),
        }
    }
    // HTTP to the host redirects to HTTPS (it has TLS now).
    let plain = c
        .get(format!("http://{host}:{http_port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::PERMANENT_REDIRECT);
    let issued_meta = &issued["metadata"]["annotations"];
    assert_eq!(issued_meta["cert-manager.io/certificate-name"], "acme-tls");
    assert_eq!(issued_meta["cert-manager.io/issuer-kind"], "ClusterIssuer");
    // The account key is reused after a restart: no new registration, nothing issued twice.
    drop(cg);
    let again = Certgate::start(dir.path(), &["--http-port", &http_port]);
    let line = again.wait_for_log("certificates reconciled").await;
    assert_eq!(line["fields"]["started"], 0, "{line}");
}

#[tokio::test]
async fn renewal_replaces_the_certificate_and_rotation_policy_decides_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "self"},
                        "spec": {"selfSigned": {}}});
    // Renewal three seconds after issuance: renewBefore is the lifetime minus three seconds.
    let short = json!({"duration": "1h", "renewBefore": "59m57s", "dnsNames": ["r.example.com"]});
    let mut keep = short.clone();
    keep["privateKey"] = json!({"algorithm": "ECDSA", "rotationPolicy": "Never"});
    let mut rotate = short;
    rotate["privateKey"] = json!({"algorithm": "ECDSA", "rotationPolicy": "Always"});
    support::write_manifests(
        dir.path(),
        "all.yaml",
        &[
            issuer,
            certificate("keep", "keep-tls", ("self", "Issuer"), keep),
            certificate("rotate", "rotate-tls", ("self", "Issuer"), rotate),
        ],
    );
    let state = dir.path().join(".state");
    let cg = Certgate::start(dir.path(), &[]);

    // Both first issuances are read before either renews (the files are replaced in place).
    let mut firsts = Vec::new();
    for secret in ["keep-tls", "rotate-tls"] {
        cg.wait_for_event("certificate issued", "secret", &format!("default/{secret}"))
            .await;
        firsts.push(state_file(&state, "default", secret));
    }
    // The renewal is announced with cert-manager's reason, then issued.
    cg.wait_for_event("issuing", "reason", "Renewing").await;
    for (secret, first) in ["keep-tls", "rotate-tls"].into_iter().zip(firsts) {
        let full = format!("default/{secret}");
        let renewed = cg
            .wait_for_nth_event(2, "certificate issued", "secret", &full)
            .await;
        assert_eq!(renewed["fields"]["secret"], full.as_str());
        let second = state_file(&state, "default", secret);
        assert_ne!(
            pem_field(&first, "tls.crt"),
            pem_field(&second, "tls.crt"),
            "{secret}: certificate renewed"
        );
        let same_key = pem_field(&first, "tls.key") == pem_field(&second, "tls.key");
        assert_eq!(
            same_key,
            secret == "keep-tls",
            "{secret}: rotationPolicy decides whether the key is kept"
        );
    }
    cg.assert_log_keys_unique();
}

#[tokio::test]
async fn issuance_succeeds_while_pebble_rejects_half_the_nonces() {
    let Some([acme_ca]) = support::dev_cluster_env(["CERTGATE_ACME_CA"]) else {
        return;
    };
    let http_port = support::free_port();
    let pebble = Pebble::start(
        &acme_ca,
        http_port,
        &[("PEBBLE_WFE_NONCEREJECT", "50")],
        json!({}),
    )
    .await;
    let site_backend = backend::start("site").await;
    let dir = tempfile::tempdir().unwrap();
    let host = format!("{}.certgate.test", support::unique_name("nonce"));
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).unwrap());
    let mut docs = site(
        &host,
        "nonce-tls",
        site_backend.addr,
        json!({"cert-manager.io/cluster-issuer": "flaky"}),
    );
    docs.push(json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "flaky"},
        "spec": {"acme": {"server": pebble.directory, "caBundle": ca_bundle, "privateKeySecretRef": {"name": "flaky-account"},
                          "solvers": [{"http01": {"ingress": {}}}]}}}));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let port = http_port.to_string();
    let cg = Certgate::start(dir.path(), &["--http-port", &port]);
    let done = cg
        .wait_for_log_any(&["certificate issued", "issuance failed"])
        .await;
    assert_eq!(done["fields"]["message"], "certificate issued", "{done}");
}

#[tokio::test]
async fn concurrent_first_issuances_register_one_acme_account() {
    let Some([acme_ca]) = support::dev_cluster_env(["CERTGATE_ACME_CA"]) else {
        return;
    };
    let http_port = support::free_port();
    let pebble = Pebble::start(&acme_ca, http_port, &[], json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).unwrap());
    let mut docs = vec![
        json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "shared"},
        "spec": {"acme": {"server": pebble.directory, "caBundle": ca_bundle, "privateKeySecretRef": {"name": "shared-account"},
                          "solvers": [{"http01": {"ingress": {}}}]}}}),
    ];
    for i in 0..5 {
        let name = format!("c{i}");
        let host = format!("{}-{i}.certgate.test", support::unique_name("acct"));
        docs.push(certificate(
            &name,
            &format!("{name}-tls"),
            ("shared", "ClusterIssuer"),
            json!({"dnsNames": [host], "privateKey": {"algorithm": "ECDSA"}}),
        ));
    }
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let port = http_port.to_string();
    let cg = Certgate::start(dir.path(), &["--http-port", &port]);
    for i in 0..5 {
        cg.wait_for_event("certificate issued", "secret", &format!("default/c{i}-tls"))
            .await;
    }
    assert_eq!(
        pebble.accounts(),
        1,
        "one account for the issuer, not one per Certificate"
    );
}

#[tokio::test]
async fn eab_bound_account_issues_several_names_through_the_solver_its_selector_picks() {
    let Some([acme_ca]) = support::dev_cluster_env(["CERTGATE_ACME_CA"]) else {
        return;
    };
    let http_port = support::free_port();
    // A CA that refuses accounts without an external account binding (as ZeroSSL or Google's CA do).
    let mac_key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start(
        &acme_ca,
        http_port,
        &[],
        json!({"externalAccountBindingRequired": true, "externalAccountMACKeys": {"kid-1": mac_key}}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).unwrap());
    let zone = format!("{}.certgate.test", support::unique_name("eab"));
    let acme = |name: &str, eab: Option<&str>| {
        let mut spec = json!({"server": pebble.directory, "caBundle": ca_bundle,
        "privateKeySecretRef": {"name": format!("{name}-account")},
        "solvers": [
            // Names under internal.<zone> would be solved by DNS-01, which certgate does not do.
            {"selector": {"dnsZones": [format!("internal.{zone}")]}, "dns01": {"route53": {"region": "eu-west-1"}}},
            {"selector": {"dnsZones": [zone.clone()]}, "http01": {"ingress": {"ingressClassName": "certgate"}}},
        ]});
        if let Some(secret) = eab {
            spec["externalAccountBinding"] =
                json!({"keyID": "kid-1", "keySecretRef": {"name": secret, "key": "secret"}});
        }
        json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": name},
               "spec": {"acme": spec}})
    };
    let names =
        |sub: &[&str]| -> Vec<String> { sub.iter().map(|s| format!("{s}.{zone}")).collect() };
    support::write_manifests(
        dir.path(),
        "all.yaml",
        &[
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "eab", "namespace": "cert-manager"},
                   "stringData": {"secret": mac_key}}),
            acme("bound", Some("eab")),
            acme("unbound", None),
            certificate(
                "several",
                "several-tls",
                ("bound", "ClusterIssuer"),
                json!({"dnsNames": names(&["www", "api"]), "privateKey": {"algorithm": "ECDSA"}}),
            ),
            certificate(
                "internal",
                "internal-tls",
                ("bound", "ClusterIssuer"),
                json!({"dnsNames": names(&["db.internal"])}),
            ),
            certificate(
                "no-eab",
                "no-eab-tls",
                ("unbound", "ClusterIssuer"),
                json!({"dnsNames": names(&["plain"])}),
            ),
        ],
    );
    let port = http_port.to_string();
    let cg = Certgate::start(dir.path(), &["--http-port", &port]);

    // Two names, one order, validated through the http01 solver the zone selector picked.
    cg.wait_for_event("certificate issued", "secret", "default/several-tls")
        .await;
    let issued = state_file(&dir.path().join(".state"), "default", "several-tls");
    let leaf = CertificateDer::pem_slice_iter(&pem_field(&issued, "tls.crt"))
        .next()
        .expect("leaf")
        .expect("PEM");
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).expect("X.509");
    let mut sans: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN extension")
        .expect("SANs")
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    sans.sort();
    assert_eq!(
        sans,
        [
            format!("DNSName({})", names(&["api"])[0]),
            format!("DNSName({})", names(&["www"])[0])
        ]
    );

    // A name whose solver is DNS-01 is not issued, and the reason names it.
    let waiting = cg
        .wait_for_event("waiting for the issuer", "certificate", "default/internal")
        .await;
    let problem = waiting["fields"]["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains(&names(&["db.internal"])[0]) && problem.contains("DNS-01"),
        "{waiting}"
    );

    // Without the binding, the CA refuses the account and the failure says so.
    let failed = cg
        .wait_for_event("issuance failed", "certificate", "default/no-eab")
        .await;
    assert!(
        failed["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("externalAccountRequired")),
        "{failed}"
    );
    assert_eq!(pebble.accounts(), 1, "only the bound account exists");
}

#[tokio::test]
async fn an_rsa_account_key_left_by_cert_manager_gets_a_clear_failure() {
    let Some([acme_ca, directory]) =
        support::dev_cluster_env(["CERTGATE_ACME_CA", "CERTGATE_ACME_DIRECTORY"])
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).unwrap());
    // cert-manager's account keys are RSA 2048 in PKCS#1.
    let rsa = certgate::pki::key::generate(&certgate::pki::key::KeySpec {
        algorithm: certgate::pki::key::KeyAlgorithm::Rsa,
        size: Some(2048),
        encoding: certgate::pki::key::KeyEncoding::Pkcs1,
    })
    .expect("RSA key");
    support::write_manifests(
        dir.path(),
        "all.yaml",
        &[
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "le-account", "namespace": "cert-manager"},
                   "stringData": {"tls.key": rsa.pem}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "le"},
                   "spec": {"acme": {"server": directory, "caBundle": ca_bundle,
                                     "privateKeySecretRef": {"name": "le-account"},
                                     "solvers": [{"http01": {"ingress": {}}}]}}}),
            certificate(
                "site",
                "site-tls",
                ("le", "ClusterIssuer"),
                json!({"dnsNames": ["rsa-account.certgate.test"]}),
            ),
        ],
    );
    let cg = Certgate::start(dir.path(), &[]);
    let failed = cg
        .wait_for_event("issuance failed", "certificate", "default/site")
        .await;
    let error = failed["fields"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cert-manager/le-account")
            && error.contains("P-256")
            && error.contains("delete the Secret"),
        "{failed}"
    );
    // The Secret is the user's: certgate did not overwrite it.
    assert!(
        !dir.path()
            .join(".state/cert-manager.le-account.secret.yaml")
            .exists()
    );
}
