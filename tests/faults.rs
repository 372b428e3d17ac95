//! Faults the proxy must survive, injected for real (standalone mode): a backend process killed under load
//! and started again; an ACME server that is down when an issuance starts and comes back later.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::certgate::Certgate;
use support::http::client;
use support::pebble::Pebble;

/// A backend in a process of its own (killing it closes every connection, pooled ones included).
struct ProcessBackend {
    child: Child,
}

impl ProcessBackend {
    fn start(name: &str, port: u16) -> Self {
        let script = format!(
            r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"{name}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H)
print("listening", flush=True)
server.serve_forever()
"#
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 backend starts");
        // Returns once the port is bound and listening: python says so on stdout. If it could not bind,
        // it exits with its error on stderr and stdout ends.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        if line.trim() != "listening" {
            let status = child.wait().expect("wait");
            panic!("backend {name} did not start on port {port}: {status}");
        }
        Self { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn route(name: &str, host: &str, port: u16) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"ports": [{"name": "http", "port": 80}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-1"), "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
               "endpoints": [{"addresses": ["127.0.0.1"]}]}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
               "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}}),
    ]
}

/// When each request to one host was sent, and its status (or "error"), in the order the answers came.
type Log = Arc<std::sync::Mutex<Vec<(Instant, String)>>>;

fn load(url: String, stop: Arc<AtomicBool>, log: Log) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = client(None);
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let outcome = match c.get(&url).send().await {
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) => format!("error: {e}"),
            };
            log.lock().expect("log").push((sent, outcome));
        }
    })
}

/// Wait until `log` holds `n` more entries than `from` and return them (bounded).
async fn next_answers(log: &Log, from: usize, n: usize) -> Vec<(Instant, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        let answers = log.lock().expect("log")[from..].to_vec();
        if answers.len() >= n {
            return answers;
        }
        assert!(
            Instant::now() < deadline,
            "only {} answers in time",
            answers.len()
        );
        tick.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_fails_only_its_route_and_recovers_when_it_returns() {
    let Some(_) = support::tool("python3") else {
        return;
    };
    let (a_port, b_port) = (support::free_port(), support::free_port());
    let mut a = ProcessBackend::start("alpha", a_port);
    let _b = ProcessBackend::start("beta", b_port);
    let dir = tempfile::tempdir().unwrap();
    let mut docs = route("alpha", "a.example.com", a_port);
    docs.extend(route("beta", "b.example.com", b_port));
    support::write_manifests(dir.path(), "all.yaml", &docs);
    let cg = Certgate::start(dir.path(), &[]);
    let url = |host: &str| format!("http://{host}:{}/", cg.http.port());

    let stop = Arc::new(AtomicBool::new(false));
    let (a_log, b_log): (Log, Log) = Default::default();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        tasks.push(load(url("a.example.com"), stop.clone(), a_log.clone()));
        tasks.push(load(url("b.example.com"), stop.clone(), b_log.clone()));
    }
    // Both backends listen before certgate starts: every answer is 200 from the first.
    let a_up = next_answers(&a_log, 0, 20).await;
    let b_up = next_answers(&b_log, 0, 20).await;
    assert!(
        a_up.iter().chain(&b_up).all(|(_, s)| s == "200"),
        "before any fault: alpha {:?}, beta {:?}",
        a_up.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        b_up.iter().map(|(_, s)| s).collect::<Vec<_>>()
    );

    // Killed: alpha's route answers 502 (connection refused upstream), beta's keeps answering.
    let (a_at_kill, b_at_kill) = (
        a_log.lock().expect("log").len(),
        b_log.lock().expect("log").len(),
    );
    a.kill();
    let killed = Instant::now();
    let during = next_answers(&a_log, a_at_kill, 200).await;
    // Requests sent before the kill returned may still complete — their answers can come after another
    // task's 502 — or fail with 502; every request sent after it is a 502.
    let (after, before): (Vec<_>, Vec<_>) = during.iter().partition(|(sent, _)| *sent > killed);
    assert!(
        before.iter().all(|(_, s)| s == "200" || s == "502"),
        "around the kill: {before:?}"
    );
    assert!(
        after.len() >= 150 && after.iter().all(|(_, s)| s == "502"),
        "alpha while down: {:?}",
        after.iter().map(|(_, s)| s).collect::<Vec<_>>()
    );

    // Back on the same port: alpha recovers without any change to the configuration.
    let a_at_restart = a_log.lock().expect("log").len();
    let _a_again = ProcessBackend::start("alpha", a_port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let log = a_log.lock().expect("log")[a_at_restart..].to_vec();
        if log.len() >= 20 && log[log.len() - 20..].iter().all(|(_, s)| s == "200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alpha did not recover: {:?}",
            log.last()
        );
        tick.tick().await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let b_all: Vec<String> = b_log.lock().expect("log")[..]
        .iter()
        .map(|(_, s)| s.clone())
        .collect();
    assert!(
        b_all.len() > b_at_kill + 100,
        "beta was under load the whole time"
    );
    assert!(
        b_all.iter().all(|s| s == "200"),
        "beta failed: {:?}",
        b_all.iter().filter(|s| *s != "200").collect::<Vec<_>>()
    );
    eprintln!(
        "backend fault: alpha {} answers ({} while down), beta {} answers, all 200",
        a_log.lock().expect("log").len(),
        during.len(),
        b_all.len()
    );
}

#[tokio::test]
async fn an_acme_server_that_is_down_is_reported_retried_and_used_once_it_is_back() {
    let Some([acme_ca]) = support::dev_cluster_env(["CERTGATE_ACME_CA"]) else {
        return;
    };
    let http_port = support::free_port();
    let listen = support::free_port();
    let directory = format!("https://127.0.0.1:{listen}/dir");
    let dir = tempfile::tempdir().unwrap();
    use base64::Engine;
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&acme_ca).unwrap());
    let host = format!("{}.certgate.test", support::unique_name("down"));
    support::write_manifests(
        dir.path(),
        "all.yaml",
        &[
            json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "later"},
                   "spec": {"acme": {"server": directory, "caBundle": ca_bundle,
                                     "privateKeySecretRef": {"name": "later-account"},
                                     "solvers": [{"http01": {"ingress": {}}}]}}}),
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "site"},
                   "spec": {"secretName": "site-tls", "dnsNames": [host], "issuerRef": {"name": "later", "kind": "ClusterIssuer"}}}),
        ],
    );
    let port = http_port.to_string();
    // Retries capped at 2 s so the test does not wait for the one-minute first backoff.
    let cg = Certgate::start(
        dir.path(),
        &["--http-port", &port, "--max-issuance-backoff", "2s"],
    );
    let failed = cg
        .wait_for_event("issuance failed", "certificate", "default/site")
        .await;
    let error = failed["fields"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("registering the account") && error.contains(&listen.to_string()),
        "the failure names what was unreachable: {failed}"
    );
    assert_eq!(failed["fields"]["retry_in_s"], 2, "{failed}");

    // The server comes back on the same address: the next retry issues, once.
    let pebble = Pebble::start_at(&acme_ca, http_port, listen, &[], json!({})).await;
    cg.wait_for_event("certificate issued", "secret", "default/site-tls")
        .await;
    assert_eq!(pebble.accounts(), 1);
    assert_eq!(pebble.orders(), 1, "one order, no duplicates");
    assert_eq!(cg.count_logs("\"certificate issued\""), 1);
    // The loop wakes for retries ahead, never for one already due while the issuance runs (it spun).
    let reconciles = cg.count_logs("\"certificates reconciled\"");
    assert!(
        reconciles < 40,
        "{reconciles} reconciliations: the loop spins"
    );
}
