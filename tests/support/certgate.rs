//! The real certgate binary in standalone mode, on ephemeral loopback ports, with its log captured.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub struct Certgate {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Bumped for every log line, so waiting for a line needs no polling.
    log_count: tokio::sync::watch::Receiver<usize>,
}

impl Drop for Certgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log line's field equals `value`, given as a string whatever the JSON type (`"true"` matches `true`).
fn field_is(v: &serde_json::Value, field: &str, value: &str) -> bool {
    let f = &v["fields"][field];
    f.as_str() == Some(value) || serde_json::to_string(f).ok().as_deref() == Some(value)
}

impl Certgate {
    /// The binary under test: cargo's, or `CERTGATE_TEST_BIN` (a copy taken right after the build, for
    /// worktrees sharing one target directory, where another worktree's build replaces target/debug/certgate).
    fn binary() -> std::ffi::OsString {
        std::env::var_os("CERTGATE_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_certgate").into())
    }

    /// Standalone mode on a manifest directory.
    pub fn start(manifests: &Path, extra: &[&str]) -> Self {
        let mut cmd = Command::new(Self::binary());
        cmd.args(["run", "--manifests"])
            .arg(manifests)
            .arg("--state-dir")
            .arg(manifests.join(".state"));
        Self::spawn(cmd, extra)
    }

    /// Kubernetes mode against the cluster in `kubeconfig`.
    pub fn controller(kubeconfig: &str, extra: &[&str]) -> Self {
        let mut cmd = Command::new(Self::binary());
        cmd.arg("controller").env("KUBECONFIG", kubeconfig);
        Self::spawn(cmd, extra)
    }

    fn spawn(mut cmd: Command, extra: &[&str]) -> Self {
        // Ephemeral loopback ports, unless the test names one itself.
        for (flag, value) in [
            ("--bind", "127.0.0.1"),
            ("--http-port", "0"),
            ("--https-port", "0"),
            ("--admin-port", "0"),
        ] {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        let mut child = cmd
            .args(["--log-format", "json"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("certgate starts");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (count_tx, log_count) = tokio::sync::watch::channel(0usize);
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // A JSON log line with a field named like tracing's own `message` has the key twice.
                if line.matches("\"message\":").count() > 1 {
                    sink.lock()
                        .expect("logs")
                        .push(serde_json::json!({"duplicate_keys": line}));
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    eprintln!("certgate: {line}");
                    continue;
                };
                let fields = &v["fields"];
                if fields["message"] == "listening" {
                    let _ = tx.send((
                        fields["listener"].as_str().unwrap_or("").to_owned(),
                        fields["addr"].as_str().unwrap_or("").to_owned(),
                    ));
                }
                sink.lock().expect("logs").push(v);
                count_tx.send_modify(|n| *n += 1);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut http, mut https, mut admin) = (None, None, None);
        while http.is_none() || https.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let (listener, addr) = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "certgate did not report its listeners; logs: {:?}",
                    logs.lock().expect("logs")
                );
            });
            let addr: SocketAddr = addr.parse().expect("listening addr");
            match listener.as_str() {
                "http" => http = Some(addr),
                "https" => https = Some(addr),
                "admin" => admin = Some(addr),
                _ => {}
            }
        }
        Self {
            child,
            http: http.expect("http"),
            https: https.expect("https"),
            admin: admin.expect("admin"),
            logs,
            log_count,
        }
    }

    /// Log lines (JSON) whose message field contains `needle`, or any field of which does.
    pub fn logs_containing(&self, needle: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .expect("logs")
            .iter()
            .filter(|v| v.to_string().contains(needle))
            .cloned()
            .collect()
    }

    /// Wait until a log line contains `needle` (with a deadline).
    pub async fn wait_for_log(&self, needle: &str) -> serde_json::Value {
        self.wait_for(needle, |v| v.to_string().contains(needle))
            .await
    }

    /// Wait until `n` log lines with this message have `field` equal to `value`; returns the n-th.
    pub async fn wait_for_nth_event(
        &self,
        n: usize,
        message: &str,
        field: &str,
        value: &str,
    ) -> serde_json::Value {
        let what = format!("{n} × {message} with {field}={value}");
        let matching =
            |v: &serde_json::Value| v["fields"]["message"] == message && field_is(v, field, value);
        let mut changes = self.log_count.clone();
        let wait = async {
            loop {
                let found: Vec<serde_json::Value> = self
                    .logs
                    .lock()
                    .expect("logs")
                    .iter()
                    .filter(|v| matching(v))
                    .cloned()
                    .collect();
                if found.len() >= n {
                    return found[n - 1].clone();
                }
                if changes.changed().await.is_err() {
                    panic!("certgate exited before logging {what}");
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or_else(|_| panic!("no log line: {what}"))
    }

    /// Wait for the first log line whose message is one of `messages` (an outcome, success or failure).
    pub async fn wait_for_log_any(&self, messages: &[&str]) -> serde_json::Value {
        let what = messages.join(" | ");
        self.wait_for(&what, |v| {
            messages.iter().any(|m| v["fields"]["message"] == *m)
        })
        .await
    }

    /// Wait for a log line with this message whose `field` is `value`.
    pub async fn wait_for_event(
        &self,
        message: &str,
        field: &str,
        value: &str,
    ) -> serde_json::Value {
        let what = format!("{message} with {field}={value}");
        self.wait_for(&what, |v| {
            v["fields"]["message"] == message && field_is(v, field, value)
        })
        .await
    }

    async fn wait_for(
        &self,
        needle: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut changes = self.log_count.clone();
        let wait = async {
            loop {
                if let Some(v) = self
                    .logs
                    .lock()
                    .expect("logs")
                    .iter()
                    .rev()
                    .find(|v| matches(v))
                    .cloned()
                {
                    return v;
                }
                if changes.changed().await.is_err() {
                    panic!("certgate exited before logging {needle:?}");
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(20), wait).await {
            Ok(v) => v,
            Err(_) => panic!(
                "no log line containing {needle:?}; the last lines:\n{}",
                self.last_logs(30)
            ),
        }
    }

    /// The last `n` log lines, one per line (for failure messages).
    fn last_logs(&self, n: usize) -> String {
        let logs = self.logs.lock().expect("logs");
        let from = logs.len().saturating_sub(n);
        logs[from..].iter().map(|v| format!("{v}\n")).collect()
    }

    /// Every JSON log line so far had unique keys.
    pub fn assert_log_keys_unique(&self) {
        let dups = self.logs_containing("duplicate_keys");
        assert!(dups.is_empty(), "log lines with duplicate keys: {dups:?}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn count_logs(&self, needle: &str) -> usize {
        self.logs_containing(needle).len()
    }
}
