//! `/metrics` and the access log, end to end: the real binary in standalone mode, real backends and
//! clients over sockets, the exposition scraped over HTTP and parsed; ACME client metrics against a private
//! Pebble.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::backend;
use support::certgate::Certgate;
use support::http::client;
use support::pebble::Pebble;

const APP: &str = "app.example.com";

/// A Service `name` (port 80) whose one endpoint is `addr`.
fn service(name: &str, addr: SocketAddr) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": addr.port()}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-1"), "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": addr.port()}],
               "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": true}}]}),
    ]
}

/// An Ingress `name` serving `host` from `svc`, over TLS from `tls_secret` when given.
fn ingress(name: &str, host: &str, svc: &str, tls_secret: Option<&str>) -> Value {
    let mut spec = json!({"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}]});
    if let Some(secret) = tls_secret {
        spec["tls"] = json!([{"hosts": [host], "secretName": secret}]);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name}, "spec": spec})
}

/// `app.example.com` over TLS from a SelfSigned Issuer's Certificate, and `broken.example.com` whose only
/// endpoint refuses connections.
fn site(app: SocketAddr) -> Vec<Value> {
    let closed = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let mut docs = service("app", app);
    docs.extend(service("gone", closed));
    docs.push(ingress("web", APP, "app", Some("web-tls")));
    docs.push(ingress("broken", "broken.example.com", "gone", None));
    docs.push(json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "selfsigned"},
                     "spec": {"selfSigned": {}}}));
    docs.push(json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "web-cert"},
        "spec": {"secretName": "web-tls", "issuerRef": {"name": "selfsigned", "kind": "Issuer"},
                 "dnsNames": [APP], "duration": "2160h", "renewBefore": "720h",
                 "privateKey": {"algorithm": "ECDSA"}}}));
    docs
}

/// One sample: its labels and value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

/// Parse the Prometheus text format (the subset certgate writes: no escapes in label values).
fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label pair");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            (name.to_owned(), labels, value)
        })
        .collect()
}

/// The value of the series with exactly these labels.
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| *v)
}

async fn scrape(cg: &Certgate) -> (String, Samples) {
    let resp = client(None)
        .get(format!("http://{}/metrics", cg.admin))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.expect("exposition");
    let samples = parse(&text);
    (text, samples)
}

/// Scrape until `ready` holds (a deadline, not a sleep: the value is recorded as the response ends, which
/// may be a moment after the client has it).
async fn scrape_until(cg: &Certgate, what: &str, ready: impl Fn(&Samples) -> bool) -> Samples {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        tick.tick().await;
        let (text, samples) = scrape(cg).await;
        if ready(&samples) {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never true: {what}\n{text}"
        );
    }
}

fn state_secret(dir: &std::path::Path, name: &str) -> Value {
    let text = std::fs::read_to_string(
        dir.join(".state")
            .join(format!("default.{name}.secret.yaml")),
    )
    .expect("issued Secret file");
    serde_json::from_str(&text).expect("Secret JSON")
}

fn tls_crt(secret: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["tls.crt"].as_str().expect("tls.crt"))
        .expect("base64")
}

/// A TLS client trusting only `ca`, with a connection of its own (each one is a new handshake).
async fn https_get(ca: &CertificateDer<'static>, cg: &Certgate, path: &str) -> StatusCode {
    client(Some(ca))
        .get(format!("https://{APP}:{}{path}", cg.https.port()))
        .send()
        .await
        .expect("HTTPS request")
        .status()
}

#[tokio::test]
async fn certificate_and_proxy_metrics_match_what_happened() {
    let app = backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    support::write_manifests(dir.path(), "all.yaml", &site(app.addr));
    let cg = Certgate::start(dir.path(), &[]);
    cg.wait_for_event("certificate issued", "secret", "default/web-tls")
        .await;

    // Certificate metrics: the issued Secret's dates, under cert-manager's names and labels.
    let pem = tls_crt(&state_secret(dir.path(), "web-tls"));
    let (_, parsed) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
    let leaf = parsed.parse_x509().expect("X.509");
    let not_after = leaf.validity().not_after.timestamp() as f64;
    let cert = [
        ("issuer_group", ""),
        ("issuer_kind", "Issuer"),
        ("issuer_name", "selfsigned"),
        ("name", "web-cert"),
        ("namespace", "default"),
    ];
    let expiration = "certmanager_certificate_expiration_timestamp_seconds";
    let samples = scrape_until(&cg, "the issued certificate's expiration", |s| {
        value(s, expiration, &cert).is_some_and(|v| v > 0.0)
    })
    .await;
    assert_eq!(value(&samples, expiration, &cert), Some(not_after));
    assert_eq!(
        value(
            &samples,
            "certmanager_certificate_renewal_timestamp_seconds",
            &cert
        ),
        Some(not_after - 720.0 * 3600.0),
        "renewBefore 720h"
    );
    for (condition, expected) in [("True", 1.0), ("False", 0.0), ("Unknown", 0.0)] {
        let mut labels = vec![("condition", condition)];
        labels.extend(cert);
        assert_eq!(
            value(&samples, "certmanager_certificate_ready_status", &labels),
            Some(expected),
            "condition {condition}"
        );
    }
    assert!(
        value(
            &samples,
            "certmanager_controller_sync_call_count",
            &[("controller", "certificates")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(
        value(
            &samples,
            "nginx_ingress_controller_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
    assert!(value(&samples, "nginx_ingress_controller_success", &[]).is_some_and(|n| n >= 1.0));

    // The issued certificate is served once the reload that read it is in.
    let ca = CertificateDer::from_pem_slice(&pem).expect("certificate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client(Some(&ca))
        .get(format!("https://{APP}:{}/", cg.https.port()))
        .send()
        .await
        .map_or(true, |r| r.status() != StatusCode::OK)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the issued certificate is not served"
        );
    }

    // Request metrics count from here: the wait above sent some.
    let route = [("namespace", "default"), ("ingress", "web"), ("host", APP)];
    let with_status = |status: &'static str| {
        let mut l = route.to_vec();
        l.push(("status", status));
        l
    };
    let requests = "nginx_ingress_controller_requests";
    let (_, before) = scrape(&cg).await;
    let ok_before = value(&before, requests, &with_status("2xx")).expect("2xx so far");
    let handshakes = |s: &Samples, result| {
        value(s, "certgate_tls_handshakes_total", &[("result", result)]).unwrap_or(0.0)
    };
    let (ok_handshakes, failed_handshakes) = (
        handshakes(&before, "success"),
        handshakes(&before, "failure"),
    );
    let durations = |s: &Samples, name| value(s, name, &route).unwrap_or(0.0);
    let request_count = "nginx_ingress_controller_request_duration_seconds_count";
    let header_count = "nginx_ingress_controller_header_duration_seconds_count";
    let (requests_timed, headers_timed) = (
        durations(&before, request_count),
        durations(&before, header_count),
    );

    for _ in 0..5 {
        assert_eq!(https_get(&ca, &cg, "/").await, StatusCode::OK);
    }
    let plain = client(None);
    for _ in 0..2 {
        let resp = plain
            .get(format!("http://{APP}:{}/", cg.http.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    }
    for _ in 0..3 {
        let resp = plain
            .get(format!(
                "http://unknown-host.example.net:{}/",
                cg.http.port()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    let resp = plain
        .get(format!("http://broken.example.com:{}/", cg.http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    // A client that does not trust the certificate fails its handshake.
    let untrusting = client(None)
        .get(format!("https://{APP}:{}/", cg.https.port()))
        .send()
        .await;
    assert!(untrusting.is_err(), "{untrusting:?}");
    drop(plain);

    let unmatched = [("namespace", ""), ("ingress", ""), ("host", "_")];
    let unmatched_4xx = {
        let mut l = unmatched.to_vec();
        l.push(("status", "4xx"));
        l
    };
    let samples = scrape_until(&cg, "every request counted", |s| {
        value(s, requests, &with_status("2xx")) == Some(ok_before + 5.0)
            && value(s, requests, &unmatched_4xx) == Some(3.0)
            && handshakes(s, "failure") > failed_handshakes
    })
    .await;
    assert_eq!(value(&samples, requests, &with_status("3xx")), Some(2.0));
    assert_eq!(value(&samples, requests, &with_status("5xx")), None);
    assert_eq!(
        value(
            &samples,
            requests,
            &[
                ("namespace", "default"),
                ("ingress", "broken"),
                ("host", "broken.example.com"),
                ("status", "5xx")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "certgate_upstream_errors_total",
            &[
                ("namespace", "default"),
                ("ingress", "broken"),
                ("kind", "connect")
            ]
        ),
        Some(1.0)
    );
    // Every request is timed; only the five that reached the backend have an upstream header time.
    assert_eq!(
        value(&samples, request_count, &route),
        Some(requests_timed + 7.0)
    );
    assert_eq!(
        value(&samples, header_count, &route),
        Some(headers_timed + 5.0)
    );
    assert_eq!(
        value(&samples, request_count, &unmatched),
        Some(3.0),
        "404s are timed under the catch-all"
    );
    // Each HTTPS request had a client of its own: five handshakes, and the untrusting client's failure.
    assert_eq!(handshakes(&samples, "success"), ok_handshakes + 5.0);
    assert_eq!(handshakes(&samples, "failure"), failed_handshakes + 1.0);
    // The Host a client sends never becomes a label value.
    let (text, _) = scrape(&cg).await;
    assert!(!text.contains("unknown-host"), "{text}");

    // Connections are active while open, and none once every client is gone.
    scrape_until(&cg, "no connection left open", |s| {
        value(s, "certgate_connections_active", &[("listener", "http")]) == Some(0.0)
            && value(s, "certgate_connections_active", &[("listener", "https")]) == Some(0.0)
    })
    .await;
    let (_, samples) = scrape(&cg).await;
    for listener in ["http", "https"] {
        assert!(
            value(
                &samples,
                "certgate_connections_total",
                &[("listener", listener)]
            )
            .is_some_and(|n| n > 0.0),
            "{listener}"
        );
    }
}

#[tokio::test]
async fn acme_client_requests_are_counted_under_cert_managers_labels() {
    let Some([acme_ca]) = support::dev_cluster_env(["CERTGATE_ACME_CA"]) else {
        return;
    };
    let http_port = support::free_port();
    let pebble = Pebble::start(&acme_ca, http_port, &[], json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).unwrap());
    let host = format!("{}.certgate.test", support::unique_name("metrics"));
    let docs = vec![
        json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "pebble"},
            "spec": {"acme": {"server": pebble.directory, "caBundle": ca_bundle,
                              "privateKeySecretRef": {"name": "pebble-account"},
                              "solvers": [{"http01": {"ingress": {}}}]}}}),
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "acme-cert"},
            "spec": {"secretName": "acme-tls", "issuerRef": {"name": "pebble", "kind": "ClusterIssuer"},
                     "dnsNames": [host], "privateKey": {"algorithm": "ECDSA"}}}),
    ];
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let port = http_port.to_string();
    let cg = Certgate::start(dir.path(), &["--http-port", &port]);
    cg.wait_for_event("certificate issued", "secret", "default/acme-tls")
        .await;

    let (text, samples) = scrape(&cg).await;
    let pebble_host = pebble
        .directory
        .trim_start_matches("https://")
        .trim_end_matches("/dir");
    let count = "certmanager_http_acme_client_request_count";
    let request = |path, method, status| {
        [
            ("host", pebble_host),
            ("method", method),
            ("path", path),
            ("scheme", "https"),
            ("status", status),
        ]
    };
    // One account, one order, one finalization: each counted once, under its endpoint's path.
    assert_eq!(
        value(&samples, count, &request("/sign-me-up", "POST", "201")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, count, &request("/order-plz", "POST", "201")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, count, &request("/finalize-order", "POST", "200")),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&samples, count, &request("/dir", "GET", "200")).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // IDs are stripped: every path is one of Pebble's endpoint names, so the series stay few.
    let acme: Vec<_> = samples.iter().filter(|(n, _, _)| n == count).collect();
    assert!(!acme.is_empty(), "{text}");
    for (_, labels, n) in &acme {
        let path = &labels["path"];
        let word = path.strip_prefix('/').unwrap_or("");
        assert!(
            !word.is_empty() && word.chars().all(|c| c.is_ascii_alphabetic() || c == '-'),
            "path label {path:?} is not an endpoint name\n{text}"
        );
        // The duration of every request is observed with the same labels.
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            value(
                &samples,
                "certmanager_http_acme_client_request_duration_seconds_count",
                &labels
            ),
            Some(*n)
        );
    }
}

#[tokio::test]
async fn access_log_has_one_line_per_request_and_never_the_query_or_credentials() {
    let app = backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let mut docs = service("app", app.addr);
    docs.push(ingress("web", APP, "app", None));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    let c = client(None);
    let url = format!(
        "http://{APP}:{}/hello?token=secret-query-value",
        cg.http.port()
    );

    let resp = c
        .get(&url)
        .header("authorization", "Basic dXNlcjpodW50ZXIy") // user:hunter2
        .header("cookie", "session=cookie-secret-value")
        .header("x-request-id", "metrics-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body_len = resp.bytes().await.unwrap().len();
    let line = cg
        .wait_for_event("request", "request_id", "metrics-test-1")
        .await;
    assert_eq!(line["target"], "certgate::access", "{line}");
    let f = &line["fields"];
    assert_eq!(f["method"], "GET", "{line}");
    assert_eq!(f["host"], APP, "{line}");
    assert_eq!(f["path"], "/hello", "{line}");
    assert_eq!(f["status"], 200, "{line}");
    assert_eq!(f["body_bytes_sent"], body_len, "{line}");
    assert!(f["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{line}");
    assert_eq!(f["upstream"], app.addr.to_string(), "{line}");
    assert_eq!(f["ingress"], "default/web", "{line}");

    // Without an X-Request-ID the line carries the one generated for the upstream.
    let echo: support::backend::Echo = serde_json::from_slice(
        &c.get(format!("http://{APP}:{}/second", cg.http.port()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let generated = &echo.headers["x-request-id"];
    let line = cg.wait_for_event("request", "request_id", generated).await;
    assert_eq!(line["fields"]["path"], "/second", "{line}");
    // A request no Ingress serves is logged too, without upstream or Ingress.
    let resp = c
        .get(format!(
            "http://nowhere.example.net:{}/x?y=z",
            cg.http.port()
        ))
        .header("x-request-id", "metrics-test-404")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let line = cg
        .wait_for_event("request", "request_id", "metrics-test-404")
        .await;
    assert_eq!(line["fields"]["status"], 404, "{line}");
    assert_eq!(line["fields"]["upstream"], "-", "{line}");
    assert_eq!(line["fields"]["ingress"], "-", "{line}");

    // A head refused before hyper parses it (request smuggling shape) is answered, logged and counted.
    let mut raw = tokio::net::TcpStream::connect(cg.http).await.unwrap();
    raw.write_all(
        b"POST /x?token=secret-query-value HTTP/1.1\r\nHost: app.example.com\r\n\
          Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let line = cg.wait_for_event("request", "status", "400").await;
    assert_eq!(line["target"], "certgate::access", "{line}");
    for field in ["method", "host", "path", "upstream", "ingress"] {
        assert_eq!(line["fields"][field], "-", "{field}: {line}");
    }
    let unmatched_4xx = [
        ("namespace", ""),
        ("ingress", ""),
        ("host", "_"),
        ("status", "4xx"),
    ];
    let samples = scrape_until(&cg, "the 404 and the refused head counted", |s| {
        value(s, "nginx_ingress_controller_requests", &unmatched_4xx) == Some(2.0)
    })
    .await;
    assert_eq!(
        value(
            &samples,
            "nginx_ingress_controller_requests",
            &unmatched_4xx
        ),
        Some(2.0)
    );

    assert_eq!(cg.count_logs("metrics-test-1"), 1, "one line per request");
    for secret in [
        "secret-query-value",
        "token=",
        "dXNlcjpodW50ZXIy",
        "hunter2",
        "cookie-secret-value",
    ] {
        assert_eq!(
            cg.logs_containing(secret),
            Vec::<Value>::new(),
            "{secret:?} was logged"
        );
    }
    cg.assert_log_keys_unique();
}

#[tokio::test]
async fn access_log_flag_switches_it_off() {
    let app = backend::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let closed = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let mut docs = service("app", app.addr);
    docs.extend(service("gone", closed));
    docs.push(ingress("web", APP, "app", None));
    docs.push(ingress("broken", "broken.example.com", "gone", None));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &["--access-log=false"]);
    let c = client(None);
    let resp = c
        .get(format!("http://{APP}:{}/", cg.http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A later request that does log (its upstream fails): the first one's line, had there been one,
    // would be before it in the log.
    let resp = c
        .get(format!("http://broken.example.com:{}/", cg.http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    cg.wait_for_log("upstream request failed").await;
    assert_eq!(cg.count_logs("certgate::access"), 0);
    // The requests are still counted.
    let web_2xx = [
        ("namespace", "default"),
        ("ingress", "web"),
        ("host", APP),
        ("status", "2xx"),
    ];
    let samples = scrape_until(&cg, "the request counted", |s| {
        value(s, "nginx_ingress_controller_requests", &web_2xx).is_some()
    })
    .await;
    assert_eq!(
        value(&samples, "nginx_ingress_controller_requests", &web_2xx),
        Some(1.0)
    );
}
