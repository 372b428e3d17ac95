//! The Helm chart (`charts/certgate`): its CRD copy is exactly `crds/`, it installs on the real apiserver
//! with every object it promises, and its RBAC is exactly enough — every verb the controller uses is allowed,
//! the dangerous neighbours are not, and the real controller runs on the ServiceAccount's own token without
//! a single "forbidden".

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::certgate::Certgate;

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
const REGENERATE: &str = "run scripts/gen-chart-crds.sh to copy crds/ into the chart";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/certgate")
}

fn yaml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

#[test]
fn chart_crds_are_an_exact_copy_of_crds_directory() {
    let (source, copy) = (repo().join("crds"), chart().join("crds-src"));
    let names = yaml_files(&source);
    assert_eq!(names.len(), 6, "crds/ holds the six CRDs");
    assert_eq!(
        yaml_files(&copy),
        names,
        "chart CRD files differ from crds/; {REGENERATE}"
    );
    for name in &names {
        let a = std::fs::read(source.join(name)).expect("crds/ file readable");
        let b = std::fs::read(copy.join(name)).expect("chart CRD file readable");
        assert!(
            a == b,
            "charts/certgate/crds-src/{name} differs from crds/{name}; {REGENERATE}"
        );
    }
}

/// Run a command that must succeed; its stdout.
fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Poll `check` until it returns `Some` or the deadline passes.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

struct Cluster {
    kubectl: PathBuf,
    helm: PathBuf,
    kubeconfig: String,
}

impl Cluster {
    fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .args(["--context", "admin"]);
        cmd
    }

    fn helm(&self) -> Command {
        let mut cmd = Command::new(&self.helm);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .args(["--kube-context", "admin"]);
        cmd
    }

    fn apply(&self, doc: &serde_json::Value) {
        self.apply_text(&doc.to_string());
    }

    /// `kubectl apply` of YAML or JSON (server-side, so it never fights another test's field manager).
    fn apply_text(&self, manifests: &str) {
        let mut child = self
            .kubectl()
            .args([
                "apply",
                "--server-side",
                "--field-manager",
                "chart-test",
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifests.as_bytes())
            .expect("manifest written");
        let out = child.wait_with_output().expect("kubectl runs");
        assert!(
            out.status.success(),
            "apply {manifests}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl get -o jsonpath=...`, or `None` when the object does not exist.
    fn jsonpath(&self, ns: &str, object: &str, path: &str) -> Option<String> {
        let out = output(self.kubectl().args([
            "get",
            "-n",
            ns,
            object,
            "-o",
            &format!("jsonpath={path}"),
        ]));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn exists(&self, ns: &str, object: &str) -> bool {
        self.jsonpath(ns, object, "{.metadata.name}").is_some()
    }
}

/// The release under test; uninstalled and its namespace deleted when dropped (also on failure).
struct Release<'a> {
    cluster: &'a Cluster,
    name: String,
    namespace: String,
    uninstalled: bool,
}

impl Release<'_> {
    fn uninstall(&mut self) {
        run(self
            .cluster
            .helm()
            .args(["uninstall", &self.name, "-n", &self.namespace, "--wait"]));
        run(self
            .cluster
            .kubectl()
            .args(["delete", "namespace", &self.namespace, "--timeout=60s"]));
        self.uninstalled = true;
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if !self.uninstalled {
            let _ =
                output(
                    self.cluster
                        .helm()
                        .args(["uninstall", &self.name, "-n", &self.namespace]),
                );
            let _ = output(self.cluster.kubectl().args([
                "delete",
                "namespace",
                &self.namespace,
                "--wait=false",
            ]));
        }
    }
}

/// `kubectl auth can-i` as the ServiceAccount: true for "yes", false for "no".
fn can_i(cluster: &Cluster, sa: &str, verb: &str, resource: &str, scope: &[&str]) -> bool {
    let out = output(
        cluster
            .kubectl()
            .args(["auth", "can-i", verb, resource, "--as", sa])
            .args(scope),
    );
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl auth can-i {verb} {resource} {scope:?}: {answer:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A kubeconfig that authenticates with `token` against the admin kubeconfig's server and CA.
fn token_kubeconfig(cluster: &Cluster, token: &str, dir: &Path) -> String {
    let view = |path: &str| {
        run(cluster.kubectl().args([
            "config",
            "view",
            "--minify",
            "--flatten",
            "-o",
            &format!("jsonpath={path}"),
        ]))
    };
    let server = view("{.clusters[0].cluster.server}");
    let ca = view("{.clusters[0].cluster.certificate-authority-data}");
    assert!(
        !server.is_empty() && !ca.is_empty(),
        "admin kubeconfig names a server and CA"
    );
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "dev", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "dev", "user": "sa"}}],
        "current-context": "sa",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, config.to_string()).expect("kubeconfig written");
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn chart_installs_and_its_rbac_is_exactly_what_the_controller_needs() {
    let Some([kubeconfig]) = support::dev_cluster_env(["KUBECONFIG"]) else {
        return;
    };
    let (Some(kubectl), Some(helm)) = (support::tool("kubectl"), support::tool("helm")) else {
        return;
    };
    let cluster = Cluster {
        kubectl,
        helm,
        kubeconfig,
    };

    // The controller watches Certificates only when the CRDs are served; install them if no test has yet.
    cluster.apply_text(&run(
        Command::new(env!("CARGO_BIN_EXE_certgate")).arg("crds")
    ));

    let name = support::unique_name("cg");
    let namespace = format!("{name}-ns");
    let fullname = format!("{name}-certgate");
    let class = format!("{name}-class");
    let controller_class = format!("certgate.io/{name}");
    let mut release = Release {
        cluster: &cluster,
        name: name.clone(),
        namespace: namespace.clone(),
        uninstalled: false,
    };
    run(cluster.helm().arg("install").arg(&name).arg(chart()).args([
        "-n",
        &namespace,
        "--create-namespace",
        "--set",
        "crds.enabled=false",
        "--set",
        &format!("ingressClass.name={class}"),
        "--set",
        &format!("controller.controllerClass={controller_class}"),
        "--wait=false",
    ]));

    for object in [
        format!("deployment/{fullname}"),
        format!("service/{fullname}"),
        format!("serviceaccount/{fullname}"),
        format!("role.rbac.authorization.k8s.io/{fullname}"),
        format!("rolebinding.rbac.authorization.k8s.io/{fullname}"),
        format!("clusterrole.rbac.authorization.k8s.io/{fullname}"),
        format!("clusterrolebinding.rbac.authorization.k8s.io/{fullname}"),
        format!("ingressclass.networking.k8s.io/{class}"),
    ] {
        assert!(cluster.exists(&namespace, &object), "{object} installed");
    }
    // Reading cert-manager's Lease is granted where that Lease is, not in the release namespace.
    for object in [
        format!("role.rbac.authorization.k8s.io/{fullname}-cert-manager-lease"),
        format!("rolebinding.rbac.authorization.k8s.io/{fullname}-cert-manager-lease"),
    ] {
        assert!(
            cluster.exists("kube-system", &object),
            "{object} installed in kube-system"
        );
    }
    let deployment = format!("deployment/{fullname}");
    let pod = |path: &str| {
        cluster
            .jsonpath(&namespace, &deployment, path)
            .expect("Deployment readable")
    };
    assert_eq!(pod("{.spec.template.spec.serviceAccountName}"), fullname);
    assert_eq!(pod("{.spec.replicas}"), "2");
    let args = pod("{.spec.template.spec.containers[0].args}");
    for arg in [
        "\"controller\"".to_owned(),
        format!("\"--controller-class={controller_class}\""),
        format!("\"--cluster-resource-namespace={namespace}\""),
        "\"--cert-manager-lease=kube-system/cert-manager-controller\"".to_owned(),
    ] {
        assert!(args.contains(&arg), "{arg} in {args}");
    }
    assert_eq!(
        pod(
            "{.spec.template.spec.containers[0].env[?(@.name==\"POD_NAME\")].valueFrom.fieldRef.fieldPath}"
        ),
        "metadata.name"
    );
    assert_eq!(
        pod("{.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem}"),
        "true"
    );
    assert_eq!(
        pod("{.spec.template.spec.containers[0].readinessProbe.httpGet.path}"),
        "/readyz"
    );
    assert_eq!(
        cluster
            .jsonpath("", &format!("ingressclass/{class}"), "{.spec.controller}")
            .as_deref(),
        Some(controller_class.as_str())
    );
    assert_eq!(
        cluster
            .jsonpath(&namespace, &format!("service/{fullname}"), "{.spec.type}")
            .as_deref(),
        Some("LoadBalancer")
    );

    // RBAC, both directions, as the ServiceAccount (the admin context may impersonate).
    let sa = format!("system:serviceaccount:{namespace}:{fullname}");
    let kube_system = ["-n", "kube-system"];
    let everywhere = ["--all-namespaces"];
    let elsewhere = ["-n", "default"];
    let here = ["-n", namespace.as_str()];
    let allowed: &[(&str, &str, &[&str])] = &[
        ("list", "ingresses.networking.k8s.io", &everywhere),
        ("watch", "ingresses.networking.k8s.io", &everywhere),
        ("list", "ingressclasses.networking.k8s.io", &everywhere),
        ("watch", "ingressclasses.networking.k8s.io", &everywhere),
        ("list", "services", &everywhere),
        ("watch", "services", &everywhere),
        ("list", "secrets", &everywhere),
        ("watch", "secrets", &everywhere),
        ("list", "endpointslices.discovery.k8s.io", &everywhere),
        ("watch", "endpointslices.discovery.k8s.io", &everywhere),
        ("list", "certificates.cert-manager.io", &everywhere),
        ("watch", "certificates.cert-manager.io", &everywhere),
        ("list", "issuers.cert-manager.io", &everywhere),
        ("watch", "issuers.cert-manager.io", &everywhere),
        ("list", "clusterissuers.cert-manager.io", &everywhere),
        ("watch", "clusterissuers.cert-manager.io", &everywhere),
        ("create", "certificates.cert-manager.io", &elsewhere),
        ("patch", "certificates.cert-manager.io", &elsewhere),
        ("delete", "certificates.cert-manager.io", &elsewhere),
        ("create", "secrets", &elsewhere),
        ("patch", "secrets", &elsewhere),
        ("create", "events.events.k8s.io", &elsewhere),
        ("patch", "events.events.k8s.io", &elsewhere),
        ("create", "events", &elsewhere),
        ("patch", "events", &elsewhere),
        ("create", "certificaterequests.cert-manager.io", &elsewhere),
        ("patch", "certificaterequests.cert-manager.io", &elsewhere),
        ("get", "certificaterequests.cert-manager.io", &elsewhere),
        ("get", "orders.acme.cert-manager.io", &elsewhere),
        ("create", "orders.acme.cert-manager.io", &elsewhere),
        ("patch", "orders.acme.cert-manager.io", &elsewhere),
        ("list", "challenges.acme.cert-manager.io", &everywhere),
        ("watch", "challenges.acme.cert-manager.io", &everywhere),
        ("create", "challenges.acme.cert-manager.io", &elsewhere),
        ("patch", "challenges.acme.cert-manager.io", &elsewhere),
        ("delete", "challenges.acme.cert-manager.io", &elsewhere),
        ("get", "leases.coordination.k8s.io", &here),
        ("create", "leases.coordination.k8s.io", &here),
        ("update", "leases.coordination.k8s.io", &here),
        // Is cert-manager running? (its controller's Lease, read only)
        (
            "get",
            "leases.coordination.k8s.io/cert-manager-controller",
            &kube_system,
        ),
    ];
    for (verb, resource, scope) in allowed {
        assert!(
            can_i(&cluster, &sa, verb, resource, scope),
            "the controller needs {verb} {resource} {scope:?}"
        );
    }
    assert!(
        can_i(
            &cluster,
            &sa,
            "patch",
            "certificates.cert-manager.io",
            &["-n", "default", "--subresource", "status"]
        ),
        "the controller sets Certificate status"
    );
    assert!(
        can_i(
            &cluster,
            &sa,
            "patch",
            "certificaterequests.cert-manager.io",
            &["-n", "default", "--subresource", "status"]
        ),
        "the controller records CertificateRequest outcomes"
    );
    assert!(
        can_i(
            &cluster,
            &sa,
            "patch",
            "issuers.cert-manager.io",
            &["-n", "default", "--subresource", "status"]
        ),
        "the controller sets Issuer status"
    );
    let forbidden: &[(&str, &str, &[&str])] = &[
        ("delete", "secrets", &elsewhere),
        ("update", "secrets", &elsewhere),
        ("get", "pods", &elsewhere),
        ("create", "pods/exec", &elsewhere),
        ("list", "configmaps", &everywhere),
        (
            "create",
            "clusterroles.rbac.authorization.k8s.io",
            &everywhere,
        ),
        ("create", "rolebindings.rbac.authorization.k8s.io", &here),
        (
            "bind",
            "clusterroles.rbac.authorization.k8s.io",
            &everywhere,
        ),
        ("escalate", "roles.rbac.authorization.k8s.io", &here),
        ("impersonate", "serviceaccounts", &elsewhere),
        ("create", "serviceaccounts/token", &here),
        ("patch", "nodes", &everywhere),
        ("update", "leases.coordination.k8s.io", &kube_system),
        (
            "update",
            "leases.coordination.k8s.io/cert-manager-controller",
            &kube_system,
        ),
        (
            "get",
            "leases.coordination.k8s.io/kube-scheduler",
            &kube_system,
        ),
        ("list", "leases.coordination.k8s.io", &kube_system),
        ("create", "leases.coordination.k8s.io", &elsewhere),
        ("delete", "leases.coordination.k8s.io", &here),
        ("update", "ingresses.networking.k8s.io", &elsewhere),
        ("delete", "ingresses.networking.k8s.io", &elsewhere),
        ("create", "ingressclasses.networking.k8s.io", &everywhere),
        ("patch", "services", &elsewhere),
        ("delete", "events.events.k8s.io", &elsewhere),
        ("patch", "issuers.cert-manager.io", &elsewhere),
        ("patch", "clusterissuers.cert-manager.io", &everywhere),
        ("delete", "certificaterequests.cert-manager.io", &elsewhere),
        ("delete", "orders.acme.cert-manager.io", &elsewhere),
        ("get", "secrets", &elsewhere),
        (
            "create",
            "customresourcedefinitions.apiextensions.k8s.io",
            &everywhere,
        ),
    ];
    for (verb, resource, scope) in forbidden {
        assert!(
            !can_i(&cluster, &sa, verb, resource, scope),
            "the ServiceAccount must not {verb} {resource} {scope:?}"
        );
    }

    // The real controller on the ServiceAccount's token: an annotated Ingress in the release namespace makes it
    // use every write verb (Certificate apply and delete, its status, the Secret, Events).
    cluster.apply(
        &json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "selfsigned", "namespace": namespace}, "spec": {"selfSigned": {}}}),
    );
    let ingress = |tls: serde_json::Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": namespace,
                         "annotations": {"cert-manager.io/issuer": "selfsigned"}},
            "spec": {"ingressClassName": class, "tls": tls,
                     "rules": [{"host": "chart.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "missing", "port": {"number": 80}}}}]}}]}})
    };
    cluster.apply(&ingress(
        json!([{"hosts": ["chart.example.com"], "secretName": "web-tls"}]),
    ));
    let token = run(cluster.kubectl().args([
        "create",
        "token",
        &fullname,
        "-n",
        &namespace,
        "--duration=10m",
    ]));
    let dir = tempfile::tempdir().expect("temp dir");
    let sa_kubeconfig = token_kubeconfig(&cluster, token.trim(), dir.path());
    let controller = Certgate::controller(
        &sa_kubeconfig,
        &[
            "--ingress-class",
            &class,
            "--controller-class",
            &controller_class,
            "--cluster-resource-namespace",
            &namespace,
            // As in the Deployment, where POD_NAMESPACE is the release namespace.
            "--leader-election-namespace",
            &namespace,
        ],
    );
    controller.wait_for_log("caches synced").await;
    assert!(
        controller
            .logs_containing("CRDs are not installed")
            .is_empty(),
        "the ServiceAccount can list Certificates"
    );
    // A denied write is logged as a warning; fail on it at once, not at the deadline.
    let not_denied = || {
        let denied: Vec<_> = controller
            .logs_containing("forbidden")
            .into_iter()
            .chain(controller.logs_containing("Forbidden"))
            .collect();
        assert!(denied.is_empty(), "the controller was denied: {denied:?}");
    };
    let ready = "{.status.conditions[?(@.type==\"Ready\")].status}";
    eventually("Certificate web-tls Ready", || {
        not_denied();
        (cluster.jsonpath(&namespace, "certificate/web-tls", ready)? == "True").then_some(())
    });
    assert_eq!(
        cluster
            .jsonpath(&namespace, "secret/web-tls", "{.type}")
            .as_deref(),
        Some("kubernetes.io/tls")
    );
    eventually("a CreateCertificate Event", || {
        let reasons = cluster.jsonpath(&namespace, "events.events.k8s.io", "{.items[*].reason}")?;
        reasons.contains("CreateCertificate").then_some(())
    });
    cluster.apply(&ingress(json!([])));
    eventually("Certificate web-tls deleted with its tls entry", || {
        not_denied();
        (!cluster.exists(&namespace, "certificate/web-tls")).then_some(())
    });
    eventually("a DeleteCertificate Event", || {
        let reasons = cluster.jsonpath(&namespace, "events.events.k8s.io", "{.items[*].reason}")?;
        reasons.contains("DeleteCertificate").then_some(())
    });
    not_denied();
    drop(controller);

    release.uninstall();
    for object in [
        format!("clusterrole.rbac.authorization.k8s.io/{fullname}"),
        format!("clusterrolebinding.rbac.authorization.k8s.io/{fullname}"),
        format!("ingressclass.networking.k8s.io/{class}"),
        format!("namespace/{namespace}"),
    ] {
        assert!(!cluster.exists("default", &object), "{object} removed");
    }
    assert!(
        !cluster.exists(
            "kube-system",
            &format!("role.rbac.authorization.k8s.io/{fullname}-cert-manager-lease")
        ),
        "the kube-system Role removed"
    );
}
