//! The generated CRDs: `crds/*.yaml` must be exactly what the types generate (and what `certgate crds`
//! prints), and the real apiserver must accept them together with cert-manager's documented manifests,
//! which must read back through the typed API field for field.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use certgate::crd::{self, Certificate, ClusterIssuer, Issuer};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config, Resource, ResourceExt};
use serde_json::Value;

const MANAGER: &str = "certgate-crds-test";
const DEADLINE: Duration = Duration::from_secs(60);
const REGENERATE: &str = "run scripts/gen-crds.sh to regenerate crds/ from src/crd";

fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds")
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cert-manager")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn crds_directory_matches_generated_output() {
    let generated = crd::files().expect("CRDs render");
    let dir = crds_dir();
    if std::env::var_os("CERTGATE_WRITE_CRDS").is_some() {
        for entry in std::fs::read_dir(&dir).expect("crds/ readable") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                std::fs::remove_file(&path).expect("stale CRD removed");
            }
        }
        for (name, yaml) in &generated {
            std::fs::write(dir.join(name), yaml).expect("CRD written");
        }
    }

    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ readable")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = generated.iter().map(|(name, _)| name.clone()).collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "crds/ holds other files than generated; {REGENERATE}"
    );

    for (name, yaml) in &generated {
        let written = std::fs::read_to_string(dir.join(name)).expect("CRD file readable");
        assert!(
            written == *yaml,
            "crds/{name} differs from the generated CRD; {REGENERATE}"
        );
    }
}

#[test]
fn certgate_crds_prints_every_crd_file_as_one_stream() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .arg("crds")
        .output()
        .expect("certgate runs");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    let expected: String = crd::files()
        .expect("CRDs render")
        .into_iter()
        .map(|(_, yaml)| format!("---\n{yaml}"))
        .collect();
    assert_eq!(printed, expected);
}

async fn admin_client(kubeconfig: &str) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig readable");
    let options = kube::config::KubeConfigOptions {
        context: Some("admin".to_owned()),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("kubeconfig valid");
    certgate::tls::install_process_provider();
    Client::try_from(config).expect("client")
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Server-side apply a documented manifest as it is, except its name (made unique) and namespace.
async fn apply_manifest<K>(client: &Client, manifest: &str, name: &str, ns: Option<&str>) -> Value
where
    K: Resource<DynamicType = ()>,
{
    let mut object: DynamicObject = serde_saphyr::from_str(manifest).expect("manifest parses");
    object.metadata.name = Some(name.to_owned());
    object.metadata.namespace = ns.map(str::to_owned);
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("{} {name} applies: {e}", K::kind(&())));
    let written: Value = serde_saphyr::from_str(manifest).expect("manifest parses");
    written["spec"].clone()
}

#[tokio::test]
async fn apiserver_accepts_crds_and_documented_manifests_round_trip() {
    let Some([kubeconfig]) = support::dev_cluster_env(["KUBECONFIG"]) else {
        return;
    };
    let client = admin_client(&kubeconfig).await;

    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crd::crds() {
        let name = crd.name_any();
        crd_api
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("CRD {name} applies: {e}"));
        within(
            "CRD established",
            await_condition(crd_api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD condition watch");
    }

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = support::unique_name("crds");
    let ns_obj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns_obj)
        .await
        .expect("namespace created");

    // Namespaced issuers: read back through the typed API, the spec is exactly what was written.
    let issuers: Api<Issuer> = Api::namespaced(client.clone(), &ns);
    for (file, name) in [
        ("issuer-ca.yaml", "ca-issuer"),
        ("issuer-selfsigned.yaml", "selfsigned-issuer"),
        ("issuer-dns01-cloudflare.yaml", "example-issuer"),
        ("issuer-vault.yaml", "vault-issuer"),
    ] {
        let written = apply_manifest::<Issuer>(&client, &fixture(file), name, Some(&ns)).await;
        let read = issuers.get(name).await.expect("issuer reads back");
        assert_eq!(
            serde_json::to_value(&read.spec).ok(),
            Some(written),
            "{file}: spec read back through the typed API"
        );
    }
    let vault = issuers.get("vault-issuer").await.expect("vault issuer");
    assert_eq!(
        vault
            .spec
            .vault
            .as_ref()
            .and_then(|v| v.get("auth"))
            .and_then(|a| a.pointer("/tokenSecretRef/key")),
        Some(&Value::from("token")),
        "unknown issuer types are preserved, not pruned"
    );

    // The cluster-scoped ACME issuer with an HTTP-01 ingress solver.
    let cluster_name = support::unique_name("letsencrypt-staging");
    let written = apply_manifest::<ClusterIssuer>(
        &client,
        &fixture("clusterissuer-acme-http01.yaml"),
        &cluster_name,
        None,
    )
    .await;
    let cluster_issuers: Api<ClusterIssuer> = Api::all(client.clone());
    let read = cluster_issuers
        .get(&cluster_name)
        .await
        .expect("cluster issuer reads back");
    assert_eq!(serde_json::to_value(&read.spec).ok(), Some(written));
    assert_eq!(
        read.spec.acme.as_ref().map(|a| a.server.as_str()),
        Some("https://acme-staging-v02.api.letsencrypt.org/directory")
    );

    // The documented Certificate with most fields.
    let written = apply_manifest::<Certificate>(
        &client,
        &fixture("certificate.yaml"),
        "example-com",
        Some(&ns),
    )
    .await;
    let certificates: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let read = certificates
        .get("example-com")
        .await
        .expect("certificate reads back");
    assert_eq!(serde_json::to_value(&read.spec).ok(), Some(written));
    assert_eq!(
        read.spec.duration(),
        Some(Ok(Duration::from_secs(2160 * 3600)))
    );

    // Status is a subresource: a status patch lands and the spec is untouched.
    let status = serde_json::json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "DoesNotExist",
            "message": "Issuing certificate as Secret does not exist",
            "lastTransitionTime": "2024-01-02T03:04:05Z"
        }]}
    });
    let patched = certificates
        .patch_status(
            "example-com",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("status applies");
    let conditions = patched
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert_eq!(conditions.len(), 1);
    assert_eq!(
        conditions[0].reason.as_deref(),
        Some(crd::conditions::certificate::DOES_NOT_EXIST)
    );

    cluster_issuers
        .delete(&cluster_name, &DeleteParams::default())
        .await
        .expect("cluster issuer deleted");
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("namespace delete");
}
