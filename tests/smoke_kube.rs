//! Proves the test control plane is a real Kubernetes API: CRDs install and become Established, custom
//! objects can be created, listed and watched, RBAC denies the restricted credential, and
//! kube-controller-manager finishes namespace deletion.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const MANAGER: &str = "certgate-smoke-test";
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "smoke.certgate.dev",
    version = "v1",
    kind = "Widget",
    namespaced
)]
struct WidgetSpec {
    size: i32,
}

async fn client_for(kubeconfig: &str, context: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("kubeconfig readable");
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
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

#[tokio::test]
async fn crd_objects_can_be_created_listed_and_watched_and_rbac_is_enforced() {
    let Some([kubeconfig]) = support::dev_cluster_env(["KUBECONFIG"]) else {
        return;
    };
    let admin = client_for(&kubeconfig, "admin").await;

    // The CRD, applied server-side and awaited until the apiserver serves it.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd = Widget::crd();
    let crd_name = crd.name_any();
    crds.patch(
        &crd_name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applies");
    within(
        "CRD established",
        await_condition(crds, &crd_name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD condition watch");

    // A namespace of our own, so runs never collide.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let ns = support::unique_name("smoke");
    let ns_obj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns_obj)
        .await
        .expect("namespace created");

    // Watch first, then create: the watcher must report the new object.
    let widgets: Api<Widget> = Api::namespaced(admin.clone(), &ns);
    let mut applied = watcher(widgets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let widget = Widget::new("first", WidgetSpec { size: 3 });
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("widget created");

    let listed = widgets
        .list(&ListParams::default())
        .await
        .expect("widgets listed");
    let names: Vec<String> = listed.items.iter().map(|w| w.name_any()).collect();
    assert_eq!(names, ["first"]);
    assert_eq!(listed.items[0].spec, WidgetSpec { size: 3 });

    let seen = within("watch event", async {
        loop {
            let w = applied
                .try_next()
                .await
                .expect("watch stream")
                .expect("stream open");
            if w.name_any() == "first" {
                return w;
            }
        }
    })
    .await;
    assert_eq!(seen.spec.size, 3);

    // RBAC: the restricted credential is authenticated but may neither read Secrets nor write widgets.
    let restricted = client_for(&kubeconfig, "restricted").await;
    let secrets: Api<Secret> = Api::namespaced(restricted.clone(), &ns);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("restricted user listed secrets: {other:?}"),
    }
    let restricted_widgets: Api<Widget> = Api::namespaced(restricted, &ns);
    match restricted_widgets
        .create(
            &PostParams::default(),
            &Widget::new("second", WidgetSpec { size: 1 }),
        )
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("restricted user created a widget: {other:?}"),
    }

    // Namespace deletion only completes when kube-controller-manager's namespace controller runs.
    let uid = namespaces.get(&ns).await.expect("namespace").uid();
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("namespace delete");
    within(
        "namespace deleted by kube-controller-manager",
        await_condition(
            namespaces,
            &ns,
            conditions::is_deleted(&uid.unwrap_or_default()),
        ),
    )
    .await
    .expect("namespace condition watch");
}
