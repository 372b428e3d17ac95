//! The proxy in Kubernetes mode against the real apiserver: Ingresses, IngressClasses, Services,
//! EndpointSlices and ExternalName Services applied through the API, backends in a network namespace
//! (EndpointSlices cannot point at loopback), requests through the real binary.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use support::backend::Echo;
use support::certgate::Certgate;
use support::http::client;
use support::netns::NetNs;

const MANAGER: &str = "certgate-proxy-test";

async fn apply<K>(api: &Api<K>, obj: Value) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = obj["metadata"]["name"].as_str().expect("name").to_owned();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

fn slice(ns: &str, name: &str, service: &str, ip: &str, port: u16) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
           "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}]})
}

fn service(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
}

fn rule(host: &str, svc: &str, port: u16) -> Value {
    json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
           "backend": {"service": {"name": svc, "port": {"number": port}}}}]}})
}

/// GET until `check` accepts the answer (status, backend name or None for non-200), with a deadline:
/// the controller applies changes asynchronously.
async fn eventually(
    c: &reqwest::Client,
    url: &str,
    what: &str,
    check: impl Fn(StatusCode, Option<&str>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resp = c.get(url).send().await.expect("request");
        let status = resp.status();
        let backend = if status == StatusCode::OK {
            Some(
                serde_json::from_slice::<Echo>(&resp.bytes().await.expect("body"))
                    .expect("echo")
                    .backend,
            )
        } else {
            None
        };
        if check(status, backend.as_deref()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {status} {backend:?} at {url}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn serves_ingresses_from_the_cluster_and_follows_changes() {
    let Some([kubeconfig]) = support::dev_cluster_env(["KUBECONFIG"]) else {
        return;
    };
    let Some(netns) = NetNs::create() else { return };
    let (a, b) = (netns.backend("a"), netns.backend("b"));
    let ip = netns.ip.to_string();

    let kube = support::kube::client().await;
    let ns = support::unique_name("proxy");
    let class = support::unique_name("certgate-class");
    let namespaces: Api<Namespace> = Api::all(kube.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    let classes: Api<IngressClass> = Api::all(kube.clone());
    apply(&classes, json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": class},
                           "spec": {"controller": "certgate.io/ingress-controller"}})).await;

    let services: Api<Service> = Api::namespaced(kube.clone(), &ns);
    let slices: Api<EndpointSlice> = Api::namespaced(kube.clone(), &ns);
    let ingresses: Api<Ingress> = Api::namespaced(kube.clone(), &ns);
    apply(&services, service(&ns, "svc-a")).await;
    apply(&services, service(&ns, "svc-b")).await;
    apply(&slices, slice(&ns, "svc-a-1", "svc-a", &ip, a.addr.port())).await;
    apply(&slices, slice(&ns, "svc-b-1", "svc-b", &ip, b.addr.port())).await;
    apply(
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": ns},
                            "spec": {"type": "ExternalName", "externalName": ip}}),
    )
    .await;
    apply(
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "loop", "namespace": ns},
                            "spec": {"type": "ExternalName", "externalName": "localhost"}}),
    )
    .await;
    apply(
        &ingresses,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "hosts", "namespace": ns},
        "spec": {"ingressClassName": class, "rules": [
            rule("a.kube.test", "svc-a", 80), rule("b.kube.test", "svc-b", 80),
            rule("ext.kube.test", "ext", a.addr.port()), rule("loop.kube.test", "loop", 80)]}}),
    )
    .await;
    apply(&ingresses, json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "foreign", "namespace": ns},
        "spec": {"ingressClassName": "someone-else", "rules": [rule("foreign.kube.test", "svc-a", 80)]}})).await;

    let cg = Certgate::controller(
        &kubeconfig,
        &[
            "--publish-status-address",
            "192.0.2.10",
            "--leader-election-namespace",
            &ns,
        ],
    );
    let c = client(None);
    let url = |host: &str| format!("http://{host}:{}/", cg.http.port());

    eventually(&c, &url("a.kube.test"), "host a", |s, b| {
        s == StatusCode::OK && b == Some("a")
    })
    .await;
    eventually(&c, &url("b.kube.test"), "host b", |_, b| b == Some("b")).await;
    eventually(&c, &url("ext.kube.test"), "ExternalName", |_, b| {
        b == Some("a")
    })
    .await;
    eventually(
        &c,
        &url("loop.kube.test"),
        "loopback ExternalName refused",
        |s, _| s == StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    eventually(
        &c,
        &url("foreign.kube.test"),
        "other class ignored",
        |s, _| s == StatusCode::NOT_FOUND,
    )
    .await;

    // The leader publishes the address on the Ingresses it serves (kubectl's ADDRESS column), not on others.
    let published = |i: Option<&Ingress>| {
        i.and_then(|i| i.status.as_ref()?.load_balancer.as_ref()?.ingress.clone())
            .is_some_and(|lb| lb.iter().any(|e| e.ip.as_deref() == Some("192.0.2.10")))
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(ingresses.clone(), "hosts", published),
    )
    .await
    .expect("Ingress status published in time")
    .expect("watch");
    let foreign = ingresses.get("foreign").await.expect("foreign Ingress");
    assert!(
        !published(Some(&foreign)),
        "an Ingress of another class gets no status"
    );

    // Endpoints move: svc-a's slice now points at backend b.
    apply(&slices, slice(&ns, "svc-a-1", "svc-a", &ip, b.addr.port())).await;
    eventually(&c, &url("a.kube.test"), "EndpointSlice change", |_, b| {
        b == Some("b")
    })
    .await;
    // Endpoints not ready: 503.
    let mut not_ready = slice(&ns, "svc-b-1", "svc-b", &ip, b.addr.port());
    not_ready["endpoints"][0]["conditions"]["ready"] = json!(false);
    apply(&slices, not_ready).await;
    eventually(&c, &url("b.kube.test"), "no ready endpoint", |s, _| {
        s == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // The Service goes away: 503.
    services
        .delete("svc-a", &DeleteParams::default())
        .await
        .expect("delete svc-a");
    eventually(&c, &url("a.kube.test"), "Service deleted", |s, _| {
        s == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;

    // The refused loopback target is an Event on the Ingress, as ingress-nginx reports problems.
    let events: Api<Event> = Api::namespaced(kube.clone(), &ns);
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        let mut stream = watcher(events, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(ev) = stream.try_next().await.expect("event watch") {
            if ev.reason.as_deref() == Some("LoopbackRefused")
                && ev.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("hosts")
            {
                return ev;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("LoopbackRefused Event on Ingress hosts");
    assert_eq!(found.type_.as_deref(), Some("Warning"));

    drop(cg);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    classes
        .delete(&class, &DeleteParams::default())
        .await
        .expect("delete IngressClass");
}
