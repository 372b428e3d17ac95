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
