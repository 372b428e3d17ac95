//! The incremental builder against a build from scratch: after every change of a random sequence, both give
//! the same table, TLS hosts, reports and served Ingresses; and a change leaves the servers it does not
//! touch as they were.

use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::routing::build::{TlsHost, build};
use crate::routing::table::{Backend, Matcher, Target};

const CONTROLLER: &str = "certgate.io/ingress-controller";
const HOSTS: [&str; 4] = ["a.test", "b.test", "*.w.test", "A.Test."];
const PATHS: [&str; 5] = ["/", "/a", "/a/b", "/(x)", "/["];
const TIMES: [&str; 3] = [
    "2026-01-01T00:00:00Z",
    "2026-01-02T00:00:00Z",
    "2026-01-03T00:00:00Z",
];

fn opts() -> BuildOptions {
    BuildOptions {
        controller: CONTROLLER.into(),
        ingress_class: "certgate".into(),
        watch_without_class: true,
        allow_loopback: false,
    }
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test object")
}

#[derive(Debug, Clone)]
struct IngressSpec {
    created: usize,
    /// 0 none, 1 ingressClassName "c", 2 legacy annotation "certgate", 3 legacy annotation "other".
    class: usize,
    /// 0 none, 1 rewrite-target, 2 use-regex, 3 basic auth, 4 an invalid value.
    annotation: usize,
    tls: Option<usize>,
    default_backend: Option<usize>,
    rules: Vec<Rule>,
}

/// (host, [(path, exact, service)]); host `None`: a host-less rule.
type Rule = (Option<usize>, Vec<(usize, bool, usize)>);

#[derive(Debug, Clone)]
enum Change {
    Ingress(usize, Option<IngressSpec>),
    /// `Some(false)`: a ClusterIP Service; `Some(true)`: ExternalName to localhost (refused).
    Service(usize, Option<bool>),
    /// Slice N: (service it belongs to, endpoint ready).
    Slice(usize, Option<(usize, bool)>),
    /// `Some(true)`: a valid htpasswd file.
    AuthSecret(Option<bool>),
    /// IngressClass "c": `Some(true)` is ours.
    Class(Option<bool>),
}

fn ingress_spec() -> impl Strategy<Value = IngressSpec> {
    let path = (0..PATHS.len(), any::<bool>(), 0..3usize);
    let rule = (
        prop::option::of(0..HOSTS.len()),
        prop::collection::vec(path, 0..3),
    );
    (
        0..TIMES.len(),
        0..4usize,
        0..5usize,
        prop::option::of(0..HOSTS.len()),
        prop::option::of(0..3usize),
        prop::collection::vec(rule, 0..3),
    )
        .prop_map(
            |(created, class, annotation, tls, default_backend, rules)| IngressSpec {
                created,
                class,
                annotation,
                tls,
                default_backend,
                rules,
            },
        )
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (0..6usize, prop::option::weighted(0.8, ingress_spec()))
            .prop_map(|(i, s)| Change::Ingress(i, s)),
        1 => (0..3usize, prop::option::of(prop::bool::weighted(0.2)))
            .prop_map(|(i, s)| Change::Service(i, s)),
        1 => (0..4usize, prop::option::of((0..3usize, any::<bool>())))
            .prop_map(|(i, s)| Change::Slice(i, s)),
        1 => prop::option::of(any::<bool>()).prop_map(Change::AuthSecret),
        1 => prop::option::of(any::<bool>()).prop_map(Change::Class),
    ]
}

fn backend(service: usize) -> Value {
    json!({"service": {"name": format!("s{service}"), "port": {"number": 80}}})
}

fn ingress(name: usize, spec: &IngressSpec) -> Ingress {
    let mut annotations = serde_json::Map::new();
    match spec.class {
        2 => annotations.insert("kubernetes.io/ingress.class".into(), "certgate".into()),
        3 => annotations.insert("kubernetes.io/ingress.class".into(), "other".into()),
        _ => None,
    };
    let prefix = "nginx.ingress.kubernetes.io";
    match spec.annotation {
        1 => annotations.insert(format!("{prefix}/rewrite-target"), "/$1".into()),
        2 => annotations.insert(format!("{prefix}/use-regex"), "true".into()),
        3 => {
            annotations.insert(format!("{prefix}/auth-type"), "basic".into());
            annotations.insert(format!("{prefix}/auth-secret"), "auth".into())
        }
        4 => annotations.insert(format!("{prefix}/proxy-body-size"), "lots".into()),
        _ => None,
    };
    let rules: Vec<Value> = spec
        .rules
        .iter()
        .map(|(host, paths)| {
            let paths: Vec<Value> = paths
                .iter()
                .map(|(p, exact, svc)| {
                    json!({
                        "path": PATHS[*p],
                        "pathType": if *exact { "Exact" } else { "Prefix" },
                        "backend": backend(*svc),
                    })
                })
                .collect();
            let mut rule = json!({"http": {"paths": paths}});
            if let Some(h) = host {
                rule["host"] = HOSTS[*h].into();
            }
            rule
        })
        .collect();
    let mut ing = json!({
        "metadata": {
            "name": format!("i{name}"),
            "namespace": "ns",
            "creationTimestamp": TIMES[spec.created],
            "annotations": annotations,
        },
        "spec": {"rules": rules},
    });
    if spec.class == 1 {
        ing["spec"]["ingressClassName"] = "c".into();
    }
    if let Some(h) = spec.tls {
        ing["spec"]["tls"] = json!([{"hosts": [HOSTS[h]], "secretName": "tls"}]);
    }
    if let Some(svc) = spec.default_backend {
        ing["spec"]["defaultBackend"] = backend(svc);
    }
    obj(ing)
}

fn apply(world: &mut World, change: &Change) {
    let key = |name: String| ObjectKey::new("ns", name);
    match change {
        Change::Ingress(i, spec) => {
            let k = key(format!("i{i}"));
            match spec {
                Some(spec) => world.ingresses.insert(k, Arc::new(ingress(*i, spec))),
                None => world.ingresses.remove(&k),
            };
        }
        Change::Service(i, spec) => {
            let k = key(format!("s{i}"));
            let service = |external: bool| -> Service {
                let mut s = json!({
                    "metadata": {"name": format!("s{i}"), "namespace": "ns"},
                    "spec": {"ports": [{"name": "http", "port": 80}]},
                });
                if external {
                    s["spec"]["type"] = "ExternalName".into();
                    s["spec"]["externalName"] = "localhost".into();
                }
                obj(s)
            };
            match spec {
                Some(external) => world.services.insert(k, Arc::new(service(*external))),
                None => world.services.remove(&k),
            };
        }
        Change::Slice(i, spec) => {
            let k = key(format!("slice{i}"));
            match spec {
                Some((svc, ready)) => {
                    let slice: EndpointSlice = obj(json!({
                        "metadata": {"name": format!("slice{i}"), "namespace": "ns",
                            "labels": {"kubernetes.io/service-name": format!("s{svc}")}},
                        "addressType": "IPv4",
                        "ports": [{"name": "http", "port": 8080}],
                        "endpoints": [{"addresses": [format!("10.0.0.{i}")], "conditions": {"ready": ready}}],
                    }));
                    world.endpoint_slices.insert(k, Arc::new(slice))
                }
                None => world.endpoint_slices.remove(&k),
            };
        }
        Change::AuthSecret(valid) => {
            let k = key("auth".into());
            match valid {
                Some(valid) => {
                    let file = if *valid { "u:{PLAIN}p" } else { "garbage" };
                    let s: Secret = obj(json!({
                        "metadata": {"name": "auth", "namespace": "ns"},
                        "stringData": {"auth": file},
                    }));
                    world.secrets.insert(k, Arc::new(s))
                }
                None => world.secrets.remove(&k),
            };
        }
        Change::Class(ours) => {
            match ours {
                Some(ours) => {
                    let controller = if *ours { CONTROLLER } else { "someone/else" };
                    let c: IngressClass =
                        obj(json!({"metadata": {"name": "c"}, "spec": {"controller": controller}}));
                    world.ingress_classes.insert("c".into(), Arc::new(c))
                }
                None => world.ingress_classes.remove("c"),
            };
        }
    }
}

/// Everything a build decides, as text: servers (sorted by name) with their routes, TLS hosts, reports and
/// the served Ingresses. Round-robin positions are left out (the incremental builder keeps them).
fn describe(built: &Built) -> String {
    fn target(t: &Target) -> String {
        let backend = match t.backend.as_ref() {
            Backend::Endpoints { service, addrs, .. } => format!("{service} {addrs:?}"),
            Backend::ExternalName {
                service,
                host,
                port,
            } => format!("{service} external {host}:{port}"),
            Backend::Unavailable(reason) => format!("unavailable: {reason}"),
        };
        format!("{} → {backend} {:?}", t.ingress, t.policy)
    }
    let mut out = String::new();
    for server in built.table.servers() {
        let _ = writeln!(out, "server {} tls={}", server.name, server.tls);
        if let Some(t) = &server.default_backend {
            let _ = writeln!(out, "  default {}", target(t));
        }
        for route in &server.routes {
            let matcher = match &route.matcher {
                Matcher::Plain { path_type, path } => format!("{path_type:?} {path}"),
                Matcher::Regex(re) => format!("regex {}", re.as_str()),
            };
            let _ = writeln!(out, "  {matcher} {}", target(&route.target));
        }
    }
    for TlsHost {
        host,
        secret,
        ingress,
    } in &built.tls_hosts
    {
        let _ = writeln!(out, "tls {host} {secret} from {ingress}");
    }
    for r in &built.reports {
        let _ = writeln!(out, "report {} {} {}", r.object, r.reason, r.message);
    }
    let _ = writeln!(out, "served {:?}", built.served);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn incremental_builds_equal_builds_from_scratch(changes in prop::collection::vec(change(), 1..40)) {
        let mut world = World::default();
        let mut builder = RouteBuilder::new(opts());
        for (step, change) in changes.iter().enumerate() {
            apply(&mut world, change);
            let incremental = describe(&builder.build(&world));
            let scratch = describe(&build(&world, &opts()));
            prop_assert_eq!(incremental, scratch, "after step {}: {:?}", step, change);
        }
    }
}

fn spec(host: usize, service: usize) -> IngressSpec {
    IngressSpec {
        created: 0,
        class: 0,
        annotation: 0,
        tls: None,
        default_backend: None,
        rules: vec![(Some(host), vec![(0, false, service)])],
    }
}

#[test]
fn a_change_rebuilds_only_the_servers_it_touches() {
    let mut world = World::default();
    for i in 0..3 {
        apply(&mut world, &Change::Service(i, Some(false)));
        apply(&mut world, &Change::Slice(i, Some((i, true))));
    }
    apply(&mut world, &Change::Ingress(0, Some(spec(0, 0))));
    apply(&mut world, &Change::Ingress(1, Some(spec(1, 1))));
    let mut builder = RouteBuilder::new(opts());
    let before = builder.build(&world);
    let server = |built: &Built, host: &str| {
        built
            .table
            .servers()
            .into_iter()
            .find(|s| &*s.name == host)
            .cloned()
            .expect(host)
    };

    // An Ingress on another host: a.test and b.test stay the very same servers.
    apply(&mut world, &Change::Ingress(2, Some(spec(2, 2))));
    let after = builder.build(&world);
    assert!(Arc::ptr_eq(
        &server(&before, "a.test"),
        &server(&after, "a.test")
    ));
    assert!(Arc::ptr_eq(
        &server(&before, "b.test"),
        &server(&after, "b.test")
    ));

    // s1's endpoints change: only b.test (the one naming s1) is merged again, and it sees the new endpoint.
    apply(&mut world, &Change::Slice(3, Some((1, true))));
    let later = builder.build(&world);
    assert!(Arc::ptr_eq(
        &server(&after, "a.test"),
        &server(&later, "a.test")
    ));
    let b = server(&later, "b.test");
    assert!(!Arc::ptr_eq(&server(&after, "b.test"), &b));
    match b.routes[0].target.backend.as_ref() {
        Backend::Endpoints { addrs, .. } => assert_eq!(addrs.len(), 2, "{addrs:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(describe(&later), describe(&build(&world, &opts())));
}

#[test]
fn resolutions_no_ingress_names_any_more_are_dropped() {
    let mut world = World::default();
    let mut builder = RouteBuilder::new(opts());
    for service in 0..3 {
        apply(&mut world, &Change::Ingress(0, Some(spec(0, service))));
        builder.build(&world);
        assert_eq!(builder.backends.kept(), 1, "after naming s{service}");
    }
    apply(&mut world, &Change::Ingress(0, None));
    builder.build(&world);
    assert_eq!(builder.backends.kept(), 0);
}
