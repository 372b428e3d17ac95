//! The proxy end to end in standalone mode: the real binary reading a manifest directory, real backends,
//! real HTTP/1.1, HTTP/2 and TLS clients over sockets.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::backend::{self, Echo};
use support::certgate::Certgate;
use support::http::client;

/// A Service named `name` (port 80, "http") whose one endpoint is the backend.
fn service(name: &str, backend: SocketAddr) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": backend.port()}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-1"), "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": backend.port()}],
               "endpoints": [{"addresses": [backend.ip().to_string()], "conditions": {"ready": true}}]}),
    ]
}

fn path(p: &str, ty: &str, svc: &str) -> Value {
    json!({"path": p, "pathType": ty, "backend": {"service": {"name": svc, "port": {"number": 80}}}})
}

fn ingress(name: &str, annotations: Value, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "annotations": annotations}, "spec": spec})
}

fn rule(host: &str, paths: Vec<Value>) -> Value {
    json!({"host": host, "http": {"paths": paths}})
}

fn url(cg: &Certgate, host: &str, path: &str) -> String {
    format!("http://{host}:{}{path}", cg.http.port())
}

fn tls_url(cg: &Certgate, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", cg.https.port())
}

async fn status_of(c: &reqwest::Client, url: impl reqwest::IntoUrl) -> StatusCode {
    c.get(url).send().await.expect("request").status()
}

async fn echo(resp: reqwest::Response) -> Echo {
    assert_eq!(resp.status(), StatusCode::OK, "expected a backend answer");
    serde_json::from_slice(&resp.bytes().await.expect("body")).expect("echo JSON")
}

#[tokio::test]
async fn routes_by_host_and_path_rewrites_and_falls_back_to_404() {
    let (a, b) = (backend::start("a").await, backend::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let mut docs = service("svc-a", a.addr);
    docs.extend(service("svc-b", b.addr));
    docs.push(ingress(
        "hosts",
        json!({}),
        json!({"rules": [
            rule("a.example.com", vec![path("/", "Prefix", "svc-a")]),
            rule("b.example.com", vec![path("/", "Prefix", "svc-b")]),
        ]}),
    ));
    docs.push(ingress("paths", json!({"nginx.ingress.kubernetes.io/rewrite-target": "/"}), json!({"rules": [
        rule("paths.example.com", vec![path("/apache", "Prefix", "svc-a"), path("/nginx", "Prefix", "svc-b")]),
    ]})));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    let c = client(None);

    assert_eq!(
        echo(c.get(url(&cg, "a.example.com", "/x")).send().await.unwrap())
            .await
            .backend,
        "a"
    );
    assert_eq!(
        echo(c.get(url(&cg, "B.Example.com", "/")).send().await.unwrap())
            .await
            .backend,
        "b"
    );
    let e = echo(
        c.get(url(&cg, "paths.example.com", "/apache/foo?q=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((e.backend.as_str(), e.uri.as_str()), ("a", "/?q=1"));
    let e = echo(
        c.get(url(&cg, "paths.example.com", "/nginx"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((e.backend.as_str(), e.uri.as_str()), ("b", "/"));
    // Known host, unknown path: that host's 404, not another server's rules.
    assert_eq!(
        status_of(&c, url(&cg, "a.example.com.", "/")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&c, url(&cg, "paths.example.com", "/other")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&c, url(&cg, "unknown.example.com", "/")).await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn forwards_client_information_and_drops_hop_by_hop_headers() {
    let a = backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let mut docs = service("svc", a.addr);
    docs.push(ingress(
        "i",
        json!({}),
        json!({"rules": [rule("h.example.com", vec![path("/", "Prefix", "svc")])]}),
    ));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    // With a body (hyper's client upstream) and without (the direct path): the same fields.
    for (method, body) in [("POST", "hello"), ("GET", "")] {
        let resp = client(None)
            .request(
                method.parse().unwrap(),
                url(&cg, "h.example.com", "/submit?x=1"),
            )
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X-Real-IP", "6.6.6.6")
            .header("Proxy", "http://attacker")
            .header("Connection", "keep-alive, X-Hop")
            .header("X-Hop", "secret")
            .body(body)
            .send()
            .await
            .unwrap();
        // The backend's own fields pass; those nginx hides do not.
        let answer = resp.headers();
        assert_eq!(answer["x-backend"], "a", "{method}");
        assert_ne!(
            answer.get("server").map(|v| v.as_bytes()),
            Some(backend::SERVER.as_bytes()),
            "{method}"
        );
        assert!(
            !answer.contains_key("x-accel-redirect"),
            "{method}: {answer:?}"
        );
        let e = echo(resp).await;
        assert_eq!(e.method, method);
        assert_eq!(e.uri, "/submit?x=1");
        assert_eq!(e.body_len, body.len());
        check_forwarded_fields(&e.headers, &cg);
    }
}

fn check_forwarded_fields(h: &std::collections::BTreeMap<String, String>, cg: &Certgate) {
    assert_eq!(h["host"], format!("h.example.com:{}", cg.http.port()));
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["x-forwarded-host"],
        format!("h.example.com:{}", cg.http.port())
    );
    assert_eq!(h["x-forwarded-port"], cg.http.port().to_string());
    assert_eq!(h["x-request-id"].len(), 32);
    for dropped in ["proxy", "x-hop"] {
        assert!(!h.contains_key(dropped), "{dropped} was forwarded: {h:?}");
    }
}

#[tokio::test]
async fn error_statuses_name_where_the_failure_is() {
    let live = backend::start("live").await;
    // A port nobody listens on.
    let dead_addr = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let dir = tempfile::tempdir().unwrap();
    let mut docs = service("live", live.addr);
    docs.extend(service("dead", dead_addr));
    docs.push(ingress(
        "i",
        json!({"nginx.ingress.kubernetes.io/proxy-read-timeout": "1"}),
        json!({"rules": [rule("h", vec![
            path("/live", "Prefix", "live"),
            path("/dead", "Prefix", "dead"),
            path("/missing", "Prefix", "nosuch"),
            path("/hang", "Prefix", "live"),
        ])]}),
    ));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    let c = client(None);
    let status = |p: &'static str| {
        let c = c.clone();
        let u = url(&cg, "h", p);
        async move { c.get(u).send().await.unwrap().status() }
    };
    assert_eq!(status("/live").await, StatusCode::OK);
    assert_eq!(status("/dead").await, StatusCode::BAD_GATEWAY);
    assert_eq!(status("/missing").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status("/hang").await, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(status("/live/..%2f..%2fetc").await, StatusCode::BAD_REQUEST);
    assert_eq!(status("/x/../live/./a").await, StatusCode::OK);

    let big = vec![b'x'; (1 << 20) + 1];
    let resp = c
        .post(url(&cg, "h", "/live"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let ok = vec![b'x'; 1 << 20];
    assert_eq!(
        echo(
            c.post(url(&cg, "h", "/live"))
                .body(ok)
                .send()
                .await
                .unwrap()
        )
        .await
        .body_len,
        1 << 20
    );
}

#[tokio::test]
async fn path_normalisation_never_reaches_a_less_specific_rule() {
    let (open, private) = (
        backend::start("open").await,
        backend::start("private").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut docs = service("open", open.addr);
    docs.extend(service("private", private.addr));
    docs.push(ingress(
        "i",
        json!({}),
        json!({"rules": [rule("h", vec![
            path("/", "Prefix", "open"),
            path("/admin", "Prefix", "private"),
        ])]}),
    ));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    let c = client(None);
    for p in [
        "/admin",
        "//admin",
        "/./admin",
        "/x/../admin",
        "/%61dmin",
        "/admin/",
        "/admin%2Fx",
    ] {
        let resp = c.get(url(&cg, "h", p)).send().await.unwrap();
        match resp.status() {
            StatusCode::OK => assert_eq!(
                echo(resp).await.backend,
                "private",
                "{p} reached the open rule"
            ),
            StatusCode::BAD_REQUEST => {}
            other => panic!("{p}: {other}"),
        }
    }
}

#[tokio::test]
async fn tls_by_sni_with_hsts_http2_redirects_and_the_acme_exception() {
    let a = backend::start("a").await;
    let ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut ca_params = ca_params;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: &[&str]| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (secure_crt, secure_key) = leaf(&["secure.example.com"]);
    let (wild_crt, wild_key) = leaf(&["*.wild.example.com"]);

    let dir = tempfile::tempdir().unwrap();
    let mut docs = service("svc", a.addr);
    for (name, crt, key) in [
        ("secure-tls", &secure_crt, &secure_key),
        ("wild-tls", &wild_crt, &wild_key),
    ] {
        docs.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                         "type": "kubernetes.io/tls", "stringData": {"tls.crt": crt, "tls.key": key}}));
    }
    docs.push(ingress(
        "secure",
        json!({}),
        json!({
            "tls": [{"hosts": ["secure.example.com"], "secretName": "secure-tls"},
                    {"hosts": ["*.wild.example.com"], "secretName": "wild-tls"}],
            "rules": [rule("secure.example.com", vec![path("/", "Prefix", "svc")]),
                      rule("*.wild.example.com", vec![path("/", "Prefix", "svc")])]
        }),
    ));
    docs.push(ingress(
        "plain",
        json!({}),
        json!({"rules": [rule("plain.example.com", vec![path("/", "Prefix", "svc")])]}),
    ));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    let ca = CertificateDer::from(ca_cert.der().to_vec());
    let c = client(Some(&ca));

    // SNI picks the exact certificate; HTTP/2 is negotiated by ALPN; HSTS is sent.
    let resp = c
        .get(tls_url(&cg, "secure.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let e = echo(resp).await;
    assert_eq!(e.headers["x-forwarded-proto"], "https");
    // Wildcard certificate for one extra label.
    assert_eq!(
        c.get(tls_url(&cg, "a.wild.example.com", "/"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // A name with no certificate gets the default one, which the test CA did not sign.
    let err = c
        .get(tls_url(&cg, "plain.example.com", "/"))
        .send()
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    // HTTP to a TLS host: 308 to HTTPS (trailing slash dropped, query kept); never for the ACME path.
    let resp = c
        .get(url(&cg, "secure.example.com", "/docs/?a=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        resp.headers()["location"],
        format!("https://secure.example.com:{}/docs/?a=1", cg.https.port())
    );
    let resp = c
        .get(url(&cg, "secure.example.com", "/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["location"],
        format!("https://secure.example.com:{}/docs", cg.https.port())
    );
    let resp = c
        .get(url(
            &cg,
            "secure.example.com",
            "/.well-known/acme-challenge/tok",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(echo(resp).await.uri, "/.well-known/acme-challenge/tok");
    // A host without TLS is served over HTTP without HSTS.
    let resp = c
        .get(url(&cg, "plain.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert!(!resp.headers().contains_key("strict-transport-security"));
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn basic_auth_with_files_made_by_htpasswd() {
    let Some(htpasswd) = support::tool("htpasswd") else {
        return;
    };
    let a = backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    // One file with a user per htpasswd format: apr1 (default), bcrypt, SHA-1, SHA-256 and SHA-512 crypt.
    let mut file = String::new();
    for (user, flags) in [
        ("apr", "-m"),
        ("bcrypt", "-B"),
        ("sha", "-s"),
        ("sha256", "-2"),
        ("sha512", "-5"),
    ] {
        let out = std::process::Command::new(&htpasswd)
            .args(["-nb", flags, user, "pw-123"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "htpasswd {flags}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        file.push_str(String::from_utf8(out.stdout).unwrap().trim_end());
        file.push('\n');
    }
    let mut docs = service("svc", a.addr);
    docs.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "users"}, "stringData": {"auth": file}}));
    docs.push(ingress(
        "auth",
        json!({
            "nginx.ingress.kubernetes.io/auth-type": "basic",
            "nginx.ingress.kubernetes.io/auth-secret": "users",
            "nginx.ingress.kubernetes.io/auth-realm": "Staff only",
        }),
        json!({"rules": [rule("auth.example.com", vec![path("/", "Prefix", "svc")])]}),
    ));
    docs.push(ingress(
        "broken",
        json!({
            "nginx.ingress.kubernetes.io/auth-type": "basic",
            "nginx.ingress.kubernetes.io/auth-secret": "nosuch",
        }),
        json!({"rules": [rule("broken.example.com", vec![path("/", "Prefix", "svc")])]}),
    ));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    let c = client(None);
    let u = url(&cg, "auth.example.com", "/");

    let resp = c.get(&u).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Basic realm=\"Staff only\""
    );
    for user in ["apr", "bcrypt", "sha", "sha256", "sha512"] {
        let wrong = c
            .get(&u)
            .basic_auth(user, Some("nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            wrong.status(),
            StatusCode::UNAUTHORIZED,
            "{user} with a wrong password"
        );
        let e = echo(
            c.get(&u)
                .basic_auth(user, Some("pw-123"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            !e.headers.contains_key("authorization"),
            "credentials forwarded upstream"
        );
    }
    assert_eq!(
        c.get(&u)
            .basic_auth("nobody", Some("pw-123"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // The ACME path is never behind auth.
    assert_eq!(
        status_of(
            &c,
            url(&cg, "auth.example.com", "/.well-known/acme-challenge/x")
        )
        .await,
        StatusCode::OK
    );
    // A missing auth Secret closes the paths (503), never opens them.
    let resp = c
        .get(url(&cg, "broken.example.com", "/"))
        .basic_auth("apr", Some("pw-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn bad_annotations_stop_only_their_ingress_and_are_reported() {
    let a = backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let mut docs = service("svc", a.addr);
    docs.push(ingress(
        "bad",
        json!({"nginx.ingress.kubernetes.io/ssl-redirect": "maybe"}),
        json!({"rules": [rule("bad.example.com", vec![path("/", "Prefix", "svc")])]}),
    ));
    docs.push(ingress(
        "snippet",
        json!({"nginx.ingress.kubernetes.io/configuration-snippet": "return 200;",
                                        "nginx.ingress.kubernetes.io/enable-cors": "true"}),
        json!({"rules": [rule("snippet.example.com", vec![path("/", "Prefix", "svc")])]}),
    ));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    std::fs::write(dir.path().join("broken.yaml"), "kind: [unclosed\n").unwrap();
    let cg = Certgate::start(dir.path(), &[]);
    let c = client(None);
    assert_eq!(
        status_of(&c, url(&cg, "bad.example.com", "/")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status_of(&c, url(&cg, "snippet.example.com", "/")).await,
        StatusCode::OK
    );
    let invalid = cg.wait_for_log("InvalidAnnotation").await;
    assert!(invalid.to_string().contains("ssl-redirect"), "{invalid}");
    cg.wait_for_log("RefusedAnnotation").await;
    cg.wait_for_log("UnsupportedAnnotation").await;
    let broken = cg.wait_for_log("broken.yaml").await;
    assert!(broken.to_string().contains("not valid YAML"), "{broken}");
    cg.assert_log_keys_unique();
}

#[tokio::test]
async fn websocket_upgrade_is_passed_through() {
    let a = backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let mut docs = service("svc", a.addr);
    docs.push(ingress(
        "i",
        json!({}),
        json!({"rules": [rule("ws.example.com", vec![path("/", "Prefix", "svc")])]}),
    ));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    let mut s = tokio::net::TcpStream::connect(cg.http).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "connection closed during the response head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping over the tunnel").await.unwrap();
    let mut buf = [0u8; 20];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping over the tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_apply_under_load_without_a_failed_request() {
    changes_under_load(&[]).await;
}

/// One thread (`--worker-threads 1`) runs the reloads and the proxy on the same scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_apply_under_load_on_a_single_thread_runtime() {
    changes_under_load(&["--worker-threads", "1"]).await;
}

async fn changes_under_load(extra: &[&str]) {
    let (a, b) = (backend::start("a").await, backend::start("b").await);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut base = service("svc-a", a.addr);
    base.extend(service("svc-b", b.addr));
    base.push(ingress(
        "steady",
        json!({}),
        json!({"rules": [rule("steady.example.com", vec![path("/", "Prefix", "svc-a")])]}),
    ));
    support::write_manifests(dir.path(), "base.yaml", &base);
    let cg = Certgate::start(dir.path(), extra);
    let c = client(None);

    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (c, u, failures, sent, stop) = (
            c.clone(),
            url(&cg, "steady.example.com", "/"),
            failures.clone(),
            sent.clone(),
            stop.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.get(&u).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // 20 changes: a moving route appears on svc-a then svc-b; each must be visible before the next.
    for i in 0..20 {
        let (svc, name) = if i % 2 == 0 {
            ("svc-a", "a")
        } else {
            ("svc-b", "b")
        };
        support::write_manifests(
            dir.path(),
            "moving.yaml",
            &[ingress(
                "moving",
                json!({}),
                json!({"rules": [rule("moving.example.com", vec![path("/", "Prefix", svc)])]}),
            )],
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let resp = c
                .get(url(&cg, "moving.example.com", "/"))
                .send()
                .await
                .expect("probe request");
            if resp.status() == StatusCode::OK && echo(resp).await.backend == name {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "change {i} not applied"
            );
        }
    }
    // The changes can apply faster than the load gets going: keep it up until it has some weight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sent.load(Ordering::Relaxed) <= 100 && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    assert!(
        sent.load(Ordering::Relaxed) > 100,
        "load too small: {}",
        sent.load(Ordering::Relaxed)
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed requests during configuration changes"
    );
}
