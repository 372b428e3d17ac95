//! Shared helpers for integration tests that need the real services `scripts/dev-cluster.sh up` starts.
//!
//! The services are found through the variables `scripts/dev-cluster.sh env` prints. Under CI (`CI` set)
//! a missing variable fails the test; elsewhere the test says it is skipped and returns.

#![allow(dead_code)] // each test binary uses its own subset

use std::time::{SystemTime, UNIX_EPOCH};

/// The dev-cluster variables a test needs, or `None` (test skipped) when they are missing outside CI.
pub fn dev_cluster_env<const N: usize>(names: [&str; N]) -> Option<[String; N]> {
    let values = names.map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return Some(values.map(|v| v.unwrap_or_default()));
    }
    let advice = "run `scripts/dev-cluster.sh up && eval \"$(scripts/dev-cluster.sh env)\"` first, \
                  or use scripts/test.sh";
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {missing:?} are not: {advice}");
    }
    eprintln!("SKIPPED: {missing:?} not set; {advice}");
    None
}

/// A name unique to this test process, for objects and domains that must not collide across runs.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

pub mod backend;
pub mod certgate;
pub mod http;
pub mod kube;
pub mod netns;
pub mod pebble;

/// A TCP port free at the moment of asking (for listeners a child process binds, or for an address
/// nobody listens on).
///
/// It is taken below the kernel's ephemeral range, never from it: between this call and the child's bind,
/// any outgoing connection on the machine could be given an ephemeral port as its local port, and a
/// connection attempt to a closed ephemeral port can even connect to itself (TCP simultaneous open). Either
/// way the child could not bind and a test would fail for no fault of the code under test. The ports
/// scripts/dev-cluster.sh uses are all below the range searched here.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 24_000;
    let high = ephemeral_range_start().max(LOW + 1_000);
    let span = high - LOW;
    // A different starting point in each test process, then consecutive ports within it.
    let seed = std::process::id().wrapping_mul(7_919)
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for _ in 0..span {
        let offset = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(LOW + offset).expect("below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{high}");
}

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_range_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A command-line tool the test needs: its path, or `None` (test skipped) outside CI when it is missing.
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but {name} is not installed: scripts/tools.sh installs it");
        }
        eprintln!("SKIPPED: {name} not installed; run scripts/tools.sh");
    }
    found
}

/// Write manifests (JSON is YAML: one document each, separated by `---`) to `dir/file`, through a temporary
/// file renamed into place, as editors and kubectl-style tools do, so a reload never sees half a file.
pub fn write_manifests(dir: &std::path::Path, file: &str, docs: &[serde_json::Value]) {
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_json::to_string_pretty(d).expect("json"))
        .collect();
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text.join("\n---\n")).expect("write manifest");
    std::fs::rename(&tmp, dir.join(file)).expect("rename manifest");
}
