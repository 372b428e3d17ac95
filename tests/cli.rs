//! The binary's command-line contract: every subcommand is listed, and those not built yet fail loudly.

use std::process::Command;

fn certgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(args)
        .output()
        .expect("certgate runs")
}

#[test]
fn help_lists_every_subcommand() {
    let out = certgate(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for subcommand in ["controller", "run", "crds", "status"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(subcommand)),
            "{subcommand} missing from:\n{help}"
        );
    }
}

#[test]
fn status_without_a_cluster_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(["status", "certificate", "web"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("certgate runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Kubernetes API"));
}

#[test]
fn controller_without_a_cluster_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args([
            "controller",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--admin-port",
            "0",
        ])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("certgate runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no Kubernetes API"), "{stderr}");
}

#[test]
fn run_with_a_missing_manifest_directory_fails_naming_it() {
    let out = certgate(&[
        "run",
        "--manifests",
        "/nonexistent/manifests",
        "--http-port",
        "0",
        "--https-port",
        "0",
        "--admin-port",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/manifests"), "{stderr}");
}
