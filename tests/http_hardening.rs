//! Malformed HTTP, request smuggling, slow clients and misbehaving upstreams, end to end: the real binary
//! in standalone mode, raw TCP clients writing exact bytes and reading the exact answer, and backends that
//! record every request head that reaches them.
//!
//! docs/reliability.md tabulates what these tests send and what comes back.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use support::certgate::Certgate;

/// How long any single expected event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------------------
// Manifests

/// A Service named `name` (port 80) whose one endpoint is `backend`.
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

/// An Ingress with one rule: `host`, `paths` as (path, Service) Prefix paths.
fn ingress(name: &str, annotations: Value, host: &str, paths: &[(&str, &str)]) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(p, svc)| {
            json!({"path": p, "pathType": "Prefix",
                               "backend": {"service": {"name": svc, "port": {"number": 80}}}})
        })
        .collect();
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "annotations": annotations},
           "spec": {"rules": [{"host": host, "http": {"paths": paths}}]}})
}

/// certgate on `docs`, with `flags`; the directory lives as long as the process.
fn start(docs: &[Value], flags: &[&str]) -> (Certgate, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    support::write_manifests(dir.path(), "all.yaml", docs);
    (Certgate::start(dir.path(), flags), dir)
}

// ---------------------------------------------------------------------------------------------------------
// A backend that records every request head reaching it

#[derive(Debug, Clone)]
struct Seen {
    /// Path and query as received.
    uri: String,
    host: String,
    /// `Some(len)`: the body arrived complete; `None`: it broke off (or is still arriving).
    body: Option<usize>,
}

struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start(name: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |req: Request| record(name, log.clone(), req));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

async fn record(name: &'static str, log: Arc<Mutex<Vec<Seen>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let index = {
        let mut log = log.lock().expect("seen");
        log.push(Seen {
            uri: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            host: parts
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            body: None,
        });
        log.len() - 1
    };
    match body.collect().await {
        Ok(bytes) => {
            let len = bytes.to_bytes().len();
            log.lock().expect("seen")[index].body = Some(len);
            axum::Json(json!({"backend": name, "uri": parts.uri.to_string(), "body_len": len}))
                .into_response()
        }
        Err(_) => axum::http::StatusCode::BAD_REQUEST.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// A raw HTTP/1 client

struct Raw {
    stream: TcpStream,
    /// Bytes read but not yet parsed into a response.
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect within the deadline")
            .expect("connect");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Read more bytes; `false` at end of stream (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "nothing within {DEADLINE:?}; so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response; `None` when the connection ends before one begins.
    async fn answer(&mut self) -> Option<Answer> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) =
                resp.parse(&self.buf).expect("a valid response")
            {
                let status = resp.code.expect("status");
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let body_len: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map(|(_, v)| v.parse().expect("content-length"))
                    .unwrap_or(0);
                while self.buf.len() < len + body_len {
                    assert!(self.fill().await, "connection ended inside a response body");
                }
                let body = self.buf[len..len + body_len].to_vec();
                self.buf.drain(..len + body_len);
                return Some(Answer {
                    status,
                    headers,
                    body,
                });
            }
            if !self.fill().await {
                assert!(
                    self.buf.is_empty(),
                    "connection ended inside a response head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
        }
    }

    async fn expect_answer(&mut self) -> Answer {
        self.answer()
            .await
            .expect("an answer before the connection ended")
    }

    /// The server closes the connection (without sending anything more) within the deadline.
    async fn expect_closed(&mut self) {
        assert!(
            self.answer().await.is_none(),
            "expected the connection to close"
        );
    }
}

/// Send `bytes` on a fresh connection: the answer, and whether the connection was then closed.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (Answer, bool) {
    let mut raw = Raw::connect(addr).await;
    raw.send(bytes).await;
    let answer = raw.expect_answer().await;
    let closed = answer.header("connection") == Some("close") && {
        raw.expect_closed().await;
        true
    };
    (answer, closed)
}

fn get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------------------------
// 1. Request smuggling and malformed heads

#[tokio::test]
async fn smuggling_attempts_and_malformed_heads_are_refused_before_reaching_the_backend() {
    let backend = Recorder::start("b").await;
    let mut docs = service("svc", backend.addr);
    docs.push(ingress("i", json!({}), "h.example", &[("/", "svc")]));
    let (cg, _dir) = start(&docs, &[]);

    let post = "POST /target HTTP/1.1\r\nHost: h.example\r\n";
    let cases: Vec<(&str, String, u16)> = vec![
        ("CL then TE", format!("{post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("TE then CL", format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"), 400),
        ("CL.TE smuggle", format!("{post}Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h.example\r\n\r\n"), 400),
        ("two differing CL", format!("{post}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), 400),
        ("two equal CL", format!("{post}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), 400),
        ("CL list", format!("{post}Content-Length: 5, 5\r\n\r\nhello"), 400),
        ("TE gzip", format!("{post}Transfer-Encoding: gzip\r\n\r\n"), 501),
        ("TE chunked, identity", format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"), 501),
        ("TE gzip, chunked", format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"), 501),
        ("TE twice", format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("TE on HTTP/1.0", "POST /target HTTP/1.0\r\nHost: h.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("obs-fold", "GET /target HTTP/1.1\r\nHost: h.example\r\nX-A: a\r\n  folded\r\n\r\n".into(), 400),
        ("space in header name", "GET /target HTTP/1.1\r\nHost: h.example\r\nX A: a\r\n\r\n".into(), 400),
        ("space before colon", "GET /target HTTP/1.1\r\nHost : h.example\r\n\r\n".into(), 400),
        ("NUL in request line", "GET /tar\0get HTTP/1.1\r\nHost: h.example\r\n\r\n".into(), 400),
        ("two Host headers", "GET /target HTTP/1.1\r\nHost: h.example\r\nHost: other.example\r\n\r\n".into(), 400),
        ("user info in target", "GET http://u@h.example/target HTTP/1.1\r\nHost: h.example\r\n\r\n".into(), 400),
    ];
    for (name, bytes, status) in &cases {
        let (answer, closed) = exchange(cg.http, bytes.as_bytes()).await;
        assert_eq!(answer.status, *status, "{name}");
        assert!(closed, "{name}: connection not closed");
    }
    assert!(
        backend.seen().is_empty(),
        "requests reached the backend: {:?}",
        backend.seen()
    );

    // Pipelined behind a good request, on one connection: the good one is served, the smuggling one
    // refused, and the connection closed; only the good one reaches the backend.
    let mut raw = Raw::connect(cg.http).await;
    raw.send(
        format!(
            "GET /first HTTP/1.1\r\nHost: h.example\r\n\r\n{post}Content-Length: 40\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h.example\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw.expect_answer().await.status, 200);
    assert_eq!(raw.expect_answer().await.status, 400);
    raw.expect_closed().await;
    let uris: Vec<String> = backend.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/first"]);
}

#[tokio::test]
async fn invalid_chunk_size_is_400_and_no_complete_request_reaches_the_backend() {
    let backend = Recorder::start("b").await;
    let mut docs = service("svc", backend.addr);
    docs.push(ingress("i", json!({}), "h.example", &[("/", "svc")]));
    let (cg, _dir) = start(&docs, &[]);
    let chunked = "POST /upload HTTP/1.1\r\nHost: h.example\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (name, body) in [
        ("not hex", "zz\r\nhello\r\n0\r\n\r\n"),
        ("bare LF", "5\nhello\n0\n\n"),
        ("overflowing size", "fffffffffffffffffff\r\n"),
        ("data longer than its size", "2\r\nhello\r\n0\r\n\r\n"),
    ] {
        let (answer, closed) = exchange(cg.http, format!("{chunked}{body}").as_bytes()).await;
        assert_eq!(answer.status, 400, "{name}");
        assert!(closed, "{name}: connection not closed");
    }
    // Bodies stream: the head may already be on its way upstream, but the upstream request is aborted, so
    // the backend never sees a complete one.
    let complete: Vec<Seen> = backend
        .seen()
        .into_iter()
        .filter(|s| s.body.is_some())
        .collect();
    assert!(
        complete.is_empty(),
        "complete requests upstream: {complete:?}"
    );

    // Control: a well-formed chunked body arrives whole.
    let (answer, _) = exchange(
        cg.http,
        format!("{chunked}5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["body_len"], 5);
}

// ---------------------------------------------------------------------------------------------------------
// 2. Header size, line endings, absolute-form, paths

#[tokio::test]
async fn large_client_header_buffers_bound_the_request_line_each_header_and_the_head() {
    let backend = Recorder::start("b").await;
    let mut docs = service("svc", backend.addr);
    docs.push(ingress("i", json!({}), "h.example", &[("/", "svc")]));
    let (cg, _dir) = start(&docs, &["--large-client-header-buffers", "4 1k"]);
    let line = |n: usize| "a".repeat(n);
    let headers = |count: usize, len: usize| -> String {
        (0..count)
            .map(|i| format!("X-{i}: {}\r\n", line(len)))
            .collect()
    };
    let cases = [
        (
            "request line of 1100 bytes",
            format!("GET /{} HTTP/1.1\r\nHost: h.example\r\n\r\n", line(1080)),
            414,
        ),
        (
            "header line of 1100 bytes",
            format!(
                "GET / HTTP/1.1\r\nHost: h.example\r\n{}\r\n",
                headers(1, 1090)
            ),
            431,
        ),
        (
            "5 header lines of 1000 bytes",
            format!(
                "GET / HTTP/1.1\r\nHost: h.example\r\n{}\r\n",
                headers(5, 990)
            ),
            431,
        ),
        (
            "3 header lines of 1000 bytes",
            format!(
                "GET / HTTP/1.1\r\nHost: h.example\r\n{}\r\n",
                headers(3, 990)
            ),
            200,
        ),
    ];
    for (name, bytes, status) in &cases {
        let (answer, closed) = exchange(cg.http, bytes.as_bytes()).await;
        assert_eq!(answer.status, *status, "{name}");
        assert_eq!(closed, *status != 200, "{name}: closed");
    }
    assert_eq!(backend.seen().len(), 1, "only the request that fits");
}

#[tokio::test]
async fn bare_lf_line_endings_are_accepted_as_nginx_accepts_them() {
    let backend = Recorder::start("b").await;
    let mut docs = service("svc", backend.addr);
    docs.push(ingress("i", json!({}), "h.example", &[("/", "svc")]));
    let (cg, _dir) = start(&docs, &[]);
    let mut raw = Raw::connect(cg.http).await;
    raw.send(b"GET /lf HTTP/1.1\nHost: h.example\n\nPOST /mixed HTTP/1.1\r\nHost: h.example\nContent-Length: 3\n\r\nabc")
        .await;
    assert_eq!(raw.expect_answer().await.json()["uri"], "/lf");
    let mixed = raw.expect_answer().await;
    assert_eq!(
        (
            mixed.json()["uri"].as_str(),
            mixed.json()["body_len"].as_u64()
        ),
        (Some("/mixed"), Some(3))
    );
}

#[tokio::test]
async fn absolute_form_target_is_routed_by_its_own_host_not_the_host_header() {
    let (a, b) = (Recorder::start("a").await, Recorder::start("b").await);
    let mut docs = service("svc-a", a.addr);
    docs.extend(service("svc-b", b.addr));
    docs.push(ingress("a", json!({}), "a.example", &[("/", "svc-a")]));
    docs.push(ingress("b", json!({}), "b.example", &[("/", "svc-b")]));
    let (cg, _dir) = start(&docs, &[]);
    let (answer, _) = exchange(
        cg.http,
        b"GET http://b.example/x?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
    )
    .await;
    assert_eq!(answer.json()["backend"], "b");
    let (answer, _) = exchange(
        cg.http,
        b"GET http://A.EXAMPLE:80/y HTTP/1.1\r\nHost: b.example\r\n\r\n",
    )
    .await;
    assert_eq!(answer.json()["backend"], "a");
    let seen_b = b.seen();
    assert_eq!(
        (seen_b[0].uri.as_str(), seen_b[0].host.as_str()),
        ("/x?q=1", "b.example"),
        "the upstream sees the host that routed the request"
    );
    assert_eq!(a.seen()[0].host, "A.EXAMPLE:80");
}

#[tokio::test]
async fn encoded_traversal_never_reaches_a_less_specific_rule_or_skips_auth() {
    let (apache, nginx) = (
        Recorder::start("apache").await,
        Recorder::start("nginx").await,
    );
    let mut docs = service("apache", apache.addr);
    docs.extend(service("nginx", nginx.addr));
    docs.push(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "users"},
                     "stringData": {"auth": "demo:{PLAIN}demo\n"}}),
    );
    docs.push(ingress(
        "open",
        json!({}),
        "h.example",
        &[("/apache", "apache")],
    ));
    docs.push(ingress(
        "protected",
        json!({"nginx.ingress.kubernetes.io/auth-type": "basic",
               "nginx.ingress.kubernetes.io/auth-secret": "users"}),
        "h.example",
        &[("/nginx", "nginx")],
    ));
    let (cg, _dir) = start(&docs, &[]);
    // 401: the request reached the protected rule (the open one has no auth). 400: refused outright.
    let cases = [
        ("/nginx", 401),
        ("/apache/../nginx", 401),
        ("/apache/%2e%2e/nginx", 401),
        ("/apache/%2E%2E/nginx", 401),
        ("/apache/.%2e/nginx", 401),
        ("//nginx", 401),
        ("/apache/..//nginx", 401),
        ("/./nginx", 401),
        ("/%6Eginx", 401),
        ("/apache/..%2fnginx", 400),
        ("/apache/..%2Fnginx", 400),
        ("/apache/%2e%2e%2fnginx", 400),
        ("/apache/..%5cnginx", 400),
        ("/apache/..\\nginx", 400),
        ("/apache/../../nginx", 400),
        ("/nginx%00", 400),
        ("/nginx%00/../apache", 400),
        ("/nginx\0", 400),
    ];
    for (path, status) in cases {
        let (answer, _) = exchange(cg.http, &get("h.example", path)).await;
        assert_eq!(answer.status, status, "{path:?}");
    }
    assert!(
        apache.seen().is_empty(),
        "reached apache: {:?}",
        apache.seen()
    );
    assert!(nginx.seen().is_empty(), "reached nginx without credentials");
    // With credentials, the normalised path is what the protected backend sees.
    let (answer, _) = exchange(
        cg.http,
        b"GET /apache/%2e%2e/nginx/x HTTP/1.1\r\nHost: h.example\r\nAuthorization: Basic ZGVtbzpkZW1v\r\n\r\n",
    )
    .await;
    assert_eq!(
        (answer.status, answer.json()["backend"].as_str()),
        (200, Some("nginx"))
    );
    assert_eq!(nginx.seen()[0].uri, "/nginx/x");
}

// ---------------------------------------------------------------------------------------------------------
// 3. Slow clients

/// Write `bytes` one at a time, `every` apart (the client's pace, not a wait for an event); stops at the
/// first failed write (the server closed the connection).
async fn trickle(stream: &mut tokio::net::tcp::OwnedWriteHalf, bytes: &[u8], every: Duration) {
    let mut pace = tokio::time::interval(every);
    for b in bytes {
        pace.tick().await;
        if stream.write_all(&[*b]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn slowloris_connections_time_out_without_starving_other_clients() {
    let backend = Recorder::start("b").await;
    let mut docs = service("svc", backend.addr);
    docs.push(ingress("i", json!({}), "h.example", &[("/", "svc")]));
    let (cg, _dir) = start(&docs, &["--client-header-timeout", "1s"]);
    const SLOW: usize = 50;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: h.example\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(100)
    );
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let stream = TcpStream::connect(cg.http).await.expect("connect");
        let opened = Instant::now();
        let (mut read, mut write) = stream.into_split();
        let head = head.clone();
        slow.push(tokio::spawn(async move {
            let writer = tokio::spawn(async move {
                trickle(&mut write, head.as_bytes(), Duration::from_millis(50)).await;
            });
            let mut got = Vec::new();
            let ended = tokio::time::timeout(DEADLINE, read.read_to_end(&mut got)).await;
            writer.abort();
            assert!(
                ended.is_ok(),
                "a slowloris connection was still open after {DEADLINE:?}"
            );
            (opened.elapsed(), got)
        }));
    }
    // While all 50 trickle, a normal client is served at once.
    let started = Instant::now();
    let (answer, _) = exchange(cg.http, &get("h.example", "/normal")).await;
    assert_eq!(answer.status, 200);
    eprintln!(
        "measured: normal request next to {SLOW} slowloris connections: {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "a normal request took {:?} next to {SLOW} slowloris connections",
        started.elapsed()
    );
    assert!(
        slow.iter().all(|t| !t.is_finished()),
        "slowloris connections ended too early"
    );
    let mut closed_after = Vec::new();
    for task in slow {
        let (open_for, got) = task.await.expect("slowloris task");
        closed_after.push(open_for);
        assert!(
            got.is_empty(),
            "a slowloris connection got an answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            // The server's timer starts at accept, which can precede this side's stopwatch by a few ms.
            open_for >= Duration::from_millis(950) && open_for < Duration::from_secs(3),
            "closed after {open_for:?}, expected 1 s (the header timeout)"
        );
    }
    eprintln!(
        "measured: slowloris closed after {:?} .. {:?}",
        closed_after.iter().min(),
        closed_after.iter().max()
    );
    // The trickled heads (5.8 s at that pace) never completed, so none reached the backend.
    assert_eq!(backend.seen().len(), 1);
}

#[tokio::test]
async fn slow_request_bodies_time_out_between_reads_not_in_total() {
    let backend = Recorder::start("b").await;
    let mut docs = service("svc", backend.addr);
    docs.push(ingress("i", json!({}), "h.example", &[("/", "svc")]));
    let (cg, _dir) = start(&docs, &["--client-body-timeout", "1s"]);
    let head = "POST /upload HTTP/1.1\r\nHost: h.example\r\nContent-Length: 6\r\n\r\n";

    // Half the body, then silence: 408 one body timeout after the last byte, and the connection closed.
    let mut raw = Raw::connect(cg.http).await;
    raw.send(format!("{head}abc").as_bytes()).await;
    let silent = Instant::now();
    let answer = raw.expect_answer().await;
    let waited = silent.elapsed();
    eprintln!("measured: 408 after {waited:?} of silence");
    assert_eq!(answer.status, 408);
    assert_eq!(answer.header("connection"), Some("close"));
    raw.expect_closed().await;
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(3),
        "408 after {waited:?}"
    );

    // One byte every 400 ms: 2.4 s in total, more than the timeout, but never 1 s between two reads.
    let stream = TcpStream::connect(cg.http).await.expect("connect");
    let (read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    trickle(&mut write, b"abcdef", Duration::from_millis(400)).await;
    let mut raw = Raw {
        stream: read.reunite(write).expect("same stream"),
        buf: Vec::new(),
    };
    let answer = raw.expect_answer().await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        (answer.status, answer.json()["body_len"].as_u64()),
        (200, Some(6))
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_keep_alive_timeout() {
    let backend = Recorder::start("b").await;
    let mut docs = service("svc", backend.addr);
    docs.push(ingress("i", json!({}), "h.example", &[("/", "svc")]));
    let (cg, _dir) = start(&docs, &["--keepalive-timeout", "1s"]);
    let mut raw = Raw::connect(cg.http).await;
    raw.send(&get("h.example", "/1")).await;
    assert_eq!(raw.expect_answer().await.status, 200);
    // Kept alive: a second request on the same connection. The connection is idle from the moment its
    // response is done, which is after this request was sent: the clock starts no later than here.
    let idle = Instant::now();
    raw.send(&get("h.example", "/2")).await;
    assert_eq!(raw.expect_answer().await.status, 200);
    raw.expect_closed().await;
    let after = idle.elapsed();
    eprintln!("measured: idle connection closed after {after:?}");
    assert!(
        after >= Duration::from_secs(1) && after < Duration::from_secs(3),
        "closed after {after:?} idle"
    );

    let (cg, _dir2) = start(&docs, &["--keepalive-timeout", "0"]);
    let (answer, closed) = exchange(cg.http, &get("h.example", "/")).await;
    assert_eq!(answer.status, 200);
    assert!(closed, "keep-alive 0 closes after every response");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once_and_served_again_when_one_frees() {
    let backend = Recorder::start("b").await;
    let mut docs = service("svc", backend.addr);
    docs.push(ingress("i", json!({}), "h.example", &[("/", "svc")]));
    let (cg, _dir) = start(&docs, &["--max-worker-connections", "3"]);
    let mut open = Vec::new();
    for i in 0..3 {
        let mut raw = Raw::connect(cg.http).await;
        raw.send(&get("h.example", &format!("/{i}"))).await;
        assert_eq!(raw.expect_answer().await.status, 200);
        open.push(raw);
    }
    let mut refused = Raw::connect(cg.http).await;
    refused.send(&get("h.example", "/refused")).await;
    refused.expect_closed().await;
    cg.wait_for_log("client connection limit reached").await;

    drop(open.pop());
    // The freed slot is noticed when certgate reads the close; retry until then (each try is refused
    // outright, so this is bounded by the deadline, not by a guess).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut raw = Raw::connect(cg.http).await;
        raw.send(&get("h.example", "/again")).await;
        if let Some(answer) = raw.answer().await {
            assert_eq!(answer.status, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection served after one was freed"
        );
    }
    let uris: Vec<String> = backend.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/0", "/1", "/2", "/again"]);
}

// ---------------------------------------------------------------------------------------------------------
// 4. Misbehaving upstreams

/// A listener whose accept queue is full: further connection attempts get no answer at all.
async fn never_accepting_listener() -> (tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    // Fill the queue until an attempt gets no answer within a short deadline (Linux keeps backlog + 1).
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => panic!("connect to the filled listener failed instead of hanging: {e}"),
            Err(_) => return (listener, fillers),
        }
    }
    panic!("the accept queue never filled");
}

#[tokio::test]
async fn proxy_connect_timeout_answers_504_after_the_annotated_seconds() {
    let (listener, _fillers) = never_accepting_listener().await;
    let mut docs = service("silent", listener.local_addr().expect("addr"));
    docs.push(ingress(
        "one",
        json!({"nginx.ingress.kubernetes.io/proxy-connect-timeout": "1"}),
        "one.example",
        &[("/", "silent")],
    ));
    docs.push(ingress(
        "three",
        json!({"nginx.ingress.kubernetes.io/proxy-connect-timeout": "3"}),
        "three.example",
        &[("/", "silent")],
    ));
    let (cg, _dir) = start(&docs, &[]);
    assert!(
        cg.logs_containing("proxy-connect-timeout").is_empty(),
        "reported as unsupported"
    );
    let timed = |host: &'static str| {
        let addr = cg.http;
        async move {
            let started = Instant::now();
            let (answer, _) = exchange(addr, &get(host, "/")).await;
            (answer.status, started.elapsed())
        }
    };
    let ((one, one_took), (three, three_took)) =
        tokio::join!(timed("one.example"), timed("three.example"));
    assert_eq!((one, three), (504, 504));
    eprintln!(
        "measured: connect timeouts 1 s and 3 s answered after {one_took:?} and {three_took:?}"
    );
    assert!(
        one_took >= Duration::from_secs(1) && one_took < Duration::from_secs(2),
        "1 s connect timeout answered after {one_took:?}"
    );
    assert!(
        three_took >= Duration::from_secs(3) && three_took < Duration::from_secs(4),
        "3 s connect timeout answered after {three_took:?}"
    );
}

#[tokio::test]
async fn proxy_send_timeout_answers_504_when_the_upstream_stops_reading() {
    // Accepts, never reads, with a small receive window: the upstream's buffers fill after a few MiB.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(16).expect("listen");
    let upstream = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut docs = service("deaf", upstream);
    docs.push(ingress(
        "i",
        json!({"nginx.ingress.kubernetes.io/proxy-send-timeout": "1",
               "nginx.ingress.kubernetes.io/proxy-read-timeout": "60",
               "nginx.ingress.kubernetes.io/proxy-body-size": "0"}),
        "h.example",
        &[("/", "deaf")],
    ));
    let (cg, _dir) = start(&docs, &[]);
    assert!(
        cg.logs_containing("proxy-send-timeout").is_empty(),
        "reported as unsupported"
    );

    const BODY: usize = 64 << 20;
    let stream = TcpStream::connect(cg.http).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: h.example\r\nContent-Length: {BODY}\r\n\r\n");
        write.write_all(head.as_bytes()).await.expect("head");
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..BODY / chunk.len() {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        write
    });
    // Read the answer while the body is still being written.
    let mut read = read;
    let mut buf = Vec::new();
    let status = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, read.read(&mut chunk))
            .await
            .expect("an answer within the deadline")
            .expect("read");
        assert!(n > 0, "connection closed without an answer");
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(_) = resp.parse(&buf).expect("response") {
            break resp.code.expect("status");
        }
    };
    let took = started.elapsed();
    eprintln!("measured: send timeout 1 s answered after {took:?}");
    writer.abort();
    held.abort();
    assert_eq!(status, 504);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "504 after {took:?} (send timeout 1 s, read timeout 60 s)"
    );
    cg.wait_for_log("upstream did not read the request").await;
}

#[tokio::test]
async fn proxy_read_timeout_applies_between_reads_of_the_response_body() {
    // `/trickle`: 5 body bytes 600 ms apart (2.4 s in all, each gap under the timeout). Anything else: the
    // head and 10 of 100 promised bytes, then silence with the socket open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            if head.windows(10).any(|w| w == b" /trickle ") {
                tokio::spawn(async move {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                        .await;
                    let mut gap = tokio::time::interval(Duration::from_millis(600));
                    for b in b"abcde" {
                        gap.tick().await;
                        let _ = stream.write_all(&[*b]).await;
                    }
                });
                continue;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                .await;
            held.push(stream);
        }
    });
    let mut docs = service("stall", upstream);
    docs.push(ingress(
        "i",
        json!({"nginx.ingress.kubernetes.io/proxy-read-timeout": "1"}),
        "h.example",
        &[("/", "stall")],
    ));
    let (cg, _dir) = start(&docs, &[]);

    // Without a request body (the direct upstream path) and with one (hyper's client).
    for method in ["GET", "POST"] {
        let head = |path: &str| match method {
            "GET" => get("h.example", path),
            _ => format!("POST {path} HTTP/1.1\r\nHost: h.example\r\nContent-Length: 1\r\n\r\nx")
                .into_bytes(),
        };
        let mut stream = TcpStream::connect(cg.http).await.expect("connect");
        stream.write_all(&head("/slow")).await.expect("request");
        let started = Instant::now();
        let mut received = Vec::new();
        let closed = tokio::time::timeout(DEADLINE, async {
            let mut chunk = [0u8; 4096];
            // EOF or a reset both end it: the client learns the body is cut short.
            while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                received.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let took = started.elapsed();
        eprintln!("measured: body stalled, read timeout 1 s, connection closed after {took:?}");
        assert!(
            closed.is_ok(),
            "{method}: the client connection was held open"
        );
        let text = String::from_utf8_lossy(&received);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("0123456789"),
            "{method}: {text}"
        );
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(5),
            "{method}: closed after {took:?} (read timeout 1 s)"
        );
        cg.wait_for_log("upstream stopped sending the response body")
            .await;

        // The timeout is between reads, not for the whole body: a slow but steady body arrives whole.
        let started = Instant::now();
        let mut stream = TcpStream::connect(cg.http).await.expect("connect");
        stream.write_all(&head("/trickle")).await.expect("request");
        let mut received = Vec::new();
        let whole = tokio::time::timeout(DEADLINE, async {
            let mut chunk = [0u8; 4096];
            while !received.ends_with(b"abcde") {
                match stream.read(&mut chunk).await {
                    Ok(n @ 1..) => received.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
        })
        .await;
        let text = String::from_utf8_lossy(&received);
        assert!(
            whole.is_ok() && text.ends_with("\r\n\r\nabcde"),
            "{method}: trickled body cut: {text:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(2300),
            "{method}: {:?}",
            started.elapsed()
        );
    }
    held.abort();
}
