//! Kubernetes helpers for tests against the dev cluster's real apiserver.

use std::io::Write;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};

/// A client for the dev cluster, from KUBECONFIG. kube builds its TLS configuration with rustls' process-wide
/// provider, which must be installed first now that two are compiled in (as `main` does).
pub async fn client() -> Client {
    certgate::tls::install_process_provider();
    Client::try_default().await.expect("client from KUBECONFIG")
}

/// Apply certgate's CRDs and wait until each is established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in certgate::crd::crds() {
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("certgate-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applies");
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .expect("CRD watch");
    }
}

/// `kubectl apply` these documents, as a user would.
pub fn kubectl_apply(docs: &[serde_json::Value]) {
    let kubectl = super::tool("kubectl").expect("kubectl");
    let mut child = std::process::Command::new(kubectl)
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("kubectl runs");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(list.to_string().as_bytes())
        .expect("write to kubectl");
    assert!(
        child.wait().expect("kubectl exits").success(),
        "kubectl apply failed"
    );
}
