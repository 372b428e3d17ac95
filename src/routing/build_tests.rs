//! Builder tests: worlds made with tiny helpers, assertions on what a request resolves to.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};

use super::*;
use crate::routing::table::{Backend, Resolved};

const CONTROLLER: &str = "certgate.io/ingress-controller";

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

fn path(p: &str, ty: &str, svc: &str) -> Value {
    json!({"path": p, "pathType": ty, "backend": {"service": {"name": svc, "port": {"number": 80}}}})
}

fn ingress(name: &str, created: &str, rules: Value) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": {"rules": rules}
    })
}

fn host_rule(host: &str, paths: Vec<Value>) -> Value {
    json!({"host": host, "http": {"paths": paths}})
}

struct W(World);

impl W {
    fn new() -> Self {
        W(World::default())
    }
    fn ingress(mut self, v: Value) -> Self {
        let ing: Ingress = obj(v);
        self.0.ingresses.insert(ObjectKey::of(&ing), Arc::new(ing));
        self
    }
    /// A Service with port 80 (named "http") and one ready endpoint 10.0.0.N:8080.
    fn service(mut self, name: &str, n: u8) -> Self {
        let svc: Service = obj(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }));
        self.0.services.insert(ObjectKey::of(&svc), Arc::new(svc));
        self.slice(
            &format!("{name}-1"),
            name,
            json!([{"addresses": [format!("10.0.0.{n}")], "conditions": {"ready": true}}]),
        )
    }
    fn slice(mut self, slice: &str, service: &str, endpoints: Value) -> Self {
        let s: EndpointSlice = obj(json!({
            "metadata": {"name": slice, "namespace": "ns", "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": endpoints
        }));
        self.0
            .endpoint_slices
            .insert(ObjectKey::of(&s), Arc::new(s));
        self
    }
    fn raw_service(mut self, v: Value) -> Self {
        let svc: Service = obj(v);
        self.0.services.insert(ObjectKey::of(&svc), Arc::new(svc));
        self
    }
    fn class(mut self, name: &str, controller: &str) -> Self {
        let c: IngressClass =
            obj(json!({"metadata": {"name": name}, "spec": {"controller": controller}}));
        self.0.ingress_classes.insert(name.into(), Arc::new(c));
        self
    }
    fn secret(mut self, name: &str, string_data: Value) -> Self {
        let s: Secret =
            obj(json!({"metadata": {"name": name, "namespace": "ns"}, "stringData": string_data}));
        self.0.secrets.insert(ObjectKey::of(&s), Arc::new(s));
        self
    }
    fn build(&self) -> Built {
        build(&self.0, &opts())
    }
}

/// Which Service a request reaches: `Some("svc")`, or `None` for certgate's own 404.
fn service_for(built: &Built, host: &str, path: &str) -> Option<String> {
    let target = match built.table.resolve(host, path) {
        Resolved::Route { route, .. } => &route.target,
        Resolved::DefaultBackend { target, .. } => target,
        Resolved::NotFound { .. } => return None,
    };
    Some(match target.backend.as_ref() {
        Backend::Endpoints { service, .. } | Backend::ExternalName { service, .. } => {
            service.name.to_string()
        }
        Backend::Unavailable(reason) => format!("unavailable: {reason}"),
    })
}

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-02T00:00:00Z";

#[test]
fn hosts_route_to_their_own_services() {
    let w = W::new()
        .service("a", 1)
        .service("b", 2)
        .ingress(ingress(
            "ia",
            T0,
            json!([host_rule("a.example.com", vec![path("/", "Prefix", "a")])]),
        ))
        .ingress(ingress(
            "ib",
            T0,
            json!([host_rule("b.example.com", vec![path("/", "Prefix", "b")])]),
        ));
    let b = w.build();
    assert_eq!(service_for(&b, "a.example.com", "/x").as_deref(), Some("a"));
    assert_eq!(service_for(&b, "b.example.com", "/").as_deref(), Some("b"));
    assert_eq!(service_for(&b, "c.example.com", "/"), None);
    assert!(b.reports.is_empty(), "{:?}", b.reports);
}

#[test]
fn known_host_without_matching_path_never_falls_back_to_hostless_rules() {
    let w = W::new()
        .service("a", 1)
        .service("any", 2)
        .ingress(ingress(
            "ia",
            T0,
            json!([host_rule(
                "a.example.com",
                vec![path("/app", "Prefix", "a")]
            )]),
        ))
        .ingress(ingress(
            "any",
            T0,
            json!([{"http": {"paths": [path("/", "Prefix", "any")]}}]),
        ));
    let b = w.build();
    assert_eq!(service_for(&b, "a.example.com", "/other"), None);
    assert_eq!(
        service_for(&b, "unknown.example.com", "/other").as_deref(),
        Some("any")
    );
}

#[test]
fn wildcard_host_matches_exactly_one_extra_label() {
    let w = W::new()
        .service("w", 1)
        .service("exact", 2)
        .ingress(ingress(
            "w",
            T0,
            json!([host_rule("*.example.com", vec![path("/", "Prefix", "w")])]),
        ))
        .ingress(ingress(
            "e",
            T0,
            json!([host_rule(
                "api.example.com",
                vec![path("/", "Prefix", "exact")]
            )]),
        ));
    let b = w.build();
    assert_eq!(
        service_for(&b, "www.example.com", "/").as_deref(),
        Some("w")
    );
    assert_eq!(
        service_for(&b, "api.example.com", "/").as_deref(),
        Some("exact")
    );
    assert_eq!(service_for(&b, "a.b.example.com", "/"), None);
    assert_eq!(service_for(&b, "example.com", "/"), None);
}

#[test]
fn longest_path_wins_and_exact_beats_prefix_of_same_length() {
    let w = W::new()
        .service("root", 1)
        .service("foo", 2)
        .service("exact", 3)
        .ingress(ingress(
            "i",
            T0,
            json!([host_rule(
                "h",
                vec![
                    path("/", "Prefix", "root"),
                    path("/foo", "Prefix", "foo"),
                    path("/foo", "Exact", "exact")
                ]
            )]),
        ));
    let b = w.build();
    assert_eq!(service_for(&b, "h", "/foo").as_deref(), Some("exact"));
    assert_eq!(service_for(&b, "h", "/foo/bar").as_deref(), Some("foo"));
    assert_eq!(service_for(&b, "h", "/foobar").as_deref(), Some("root"));
}

#[test]
fn ingresses_on_one_host_merge_and_the_oldest_wins_a_conflict() {
    let w = W::new()
        .service("old", 1)
        .service("new", 2)
        .service("extra", 3)
        // Inserted in name order "a-new" before "z-old": creation time, not name, must decide.
        .ingress(ingress(
            "a-new",
            T1,
            json!([host_rule(
                "h",
                vec![
                    path("/", "Prefix", "new"),
                    path("/extra", "Prefix", "extra")
                ]
            )]),
        ))
        .ingress(ingress(
            "z-old",
            T0,
            json!([host_rule("h", vec![path("/", "Prefix", "old")])]),
        ));
    let b = w.build();
    assert_eq!(service_for(&b, "h", "/").as_deref(), Some("old"));
    assert_eq!(service_for(&b, "h", "/extra/1").as_deref(), Some("extra"));
    let conflicts: Vec<_> = b
        .reports
        .iter()
        .filter(|r| r.reason == "PathConflict")
        .collect();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].object, ObjectKey::new("ns", "a-new"));
    assert!(
        conflicts[0].message.contains("ns/z-old"),
        "{}",
        conflicts[0].message
    );
}

#[test]
fn default_backend_serves_its_hosts_and_a_rule_less_ingress_is_the_catch_all() {
    let mut with_rules = ingress(
        "i",
        T0,
        json!([host_rule("h", vec![path("/app", "Prefix", "app")])]),
    );
    with_rules["spec"]["defaultBackend"] =
        json!({"service": {"name": "fallback", "port": {"number": 80}}});
    let only_default = json!({
        "metadata": {"name": "d", "namespace": "ns", "creationTimestamp": T0},
        "spec": {"defaultBackend": {"service": {"name": "catchall", "port": {"name": "http"}}}}
    });
    let w = W::new()
        .service("app", 1)
        .service("fallback", 2)
        .service("catchall", 3)
        .ingress(with_rules)
        .ingress(only_default);
    let b = w.build();
    assert_eq!(service_for(&b, "h", "/app").as_deref(), Some("app"));
    assert_eq!(service_for(&b, "h", "/else").as_deref(), Some("fallback"));
    assert_eq!(service_for(&b, "other", "/").as_deref(), Some("catchall"));
}

#[test]
fn class_selection_follows_ingress_nginx_order() {
    let with_class = |name: &str, class: &str| {
        let mut i = ingress(
            name,
            T0,
            json!([host_rule(
                &format!("{name}.h"),
                vec![path("/", "Prefix", "s")]
            )]),
        );
        i["spec"]["ingressClassName"] = json!(class);
        i
    };
    let with_annotation = |name: &str, class: &str| {
        let mut i = ingress(
            name,
            T0,
            json!([host_rule(
                &format!("{name}.h"),
                vec![path("/", "Prefix", "s")]
            )]),
        );
        i["metadata"]["annotations"] = json!({CLASS_ANNOTATION: class});
        i
    };
    let w = W::new()
        .service("s", 1)
        .class("ours", CONTROLLER)
        .class("theirs", "k8s.io/ingress-nginx")
        .ingress(with_class("mine", "ours"))
        .ingress(with_class("foreign", "theirs"))
        .ingress(with_class("unknown", "nope"))
        .ingress(with_annotation("legacy", "certgate"))
        .ingress(with_annotation("legacyother", "nginx"))
        .ingress(ingress(
            "noclass",
            T0,
            json!([host_rule("noclass.h", vec![path("/", "Prefix", "s")])]),
        ));
    let served = |b: &Built| {
        b.served
            .iter()
            .map(|k| k.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(served(&w.build()), ["legacy", "mine", "noclass"]);
    let strict = build(
        &w.0,
        &BuildOptions {
            watch_without_class: false,
            ..opts()
        },
    );
    assert_eq!(served(&strict), ["legacy", "mine"]);
    assert_eq!(service_for(&strict, "noclass.h", "/"), None);
}

#[test]
fn only_ready_endpoints_are_used_deduplicated_on_the_named_port() {
    let w = W::new()
        .raw_service(json!({"metadata": {"name": "s", "namespace": "ns"},
            "spec": {"ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 80}]}}))
        .slice(
            "s-1",
            "s",
            json!([
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]}
            ]),
        )
        .slice(
            "s-2",
            "s",
            json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}]),
        )
        .ingress(ingress(
            "i",
            T0,
            json!([host_rule(
                "h",
                vec![json!({"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "s", "port": {"name": "http"}}}})]
            )]),
        ));
    let b = w.build();
    let Resolved::Route { route, .. } = b.table.resolve("h", "/") else {
        panic!("no route")
    };
    let Backend::Endpoints { addrs, .. } = route.target.backend.as_ref() else {
        panic!("{:?}", route.target.backend)
    };
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    assert_eq!(addrs, ["10.0.0.1:8080", "10.0.0.3:8080"]);
}

#[test]
fn missing_service_port_or_endpoints_make_the_backend_unavailable() {
    let w = W::new()
        .service("s", 1)
        .raw_service(json!({"metadata": {"name": "empty", "namespace": "ns"}, "spec": {"ports": [{"port": 80}]}}))
        .ingress(ingress("i", T0, json!([host_rule("h", vec![
            path("/missing", "Prefix", "nosuch"),
            path("/empty", "Prefix", "empty"),
            json!({"path": "/badport", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 81}}}})
        ])])));
    let b = w.build();
    let unavailable = |p| service_for(&b, "h", p).unwrap();
    assert_eq!(
        unavailable("/missing"),
        "unavailable: Service ns/nosuch not found"
    );
    assert_eq!(
        unavailable("/empty"),
        "unavailable: Service ns/empty has no ready endpoints"
    );
    assert_eq!(
        unavailable("/badport"),
        "unavailable: Service ns/s has no port matching the Ingress backend"
    );
}

#[test]
fn loopback_external_name_is_refused_unless_allowed() {
    let w = W::new()
        .raw_service(json!({"metadata": {"name": "ext", "namespace": "ns"},
            "spec": {"type": "ExternalName", "externalName": "localhost"}}))
        .ingress(ingress(
            "i",
            T0,
            json!([host_rule("h", vec![path("/", "Prefix", "ext")])]),
        ));
    let b = w.build();
    assert!(service_for(&b, "h", "/").unwrap().contains("loopback"));
    assert!(b.reports.iter().any(|r| r.reason == "LoopbackRefused"));
    let allowed = build(
        &w.0,
        &BuildOptions {
            allow_loopback: true,
            ..opts()
        },
    );
    assert_eq!(service_for(&allowed, "h", "/").as_deref(), Some("ext"));
}

#[test]
fn rewrite_target_puts_the_whole_host_in_regex_mode() {
    let mut rewriting = ingress(
        "rw",
        T0,
        json!([host_rule(
            "h",
            vec![path("/api(/|$)(.*)", "ImplementationSpecific", "api")]
        )]),
    );
    rewriting["metadata"]["annotations"] =
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/$2"});
    let plain = ingress(
        "plain",
        T0,
        json!([host_rule("h", vec![path("/static", "Prefix", "static")])]),
    );
    let b = W::new()
        .service("api", 1)
        .service("static", 2)
        .ingress(rewriting)
        .ingress(plain)
        .build();

    let Resolved::Route { route, .. } = b.table.resolve("h", "/API/users") else {
        panic!("no route")
    };
    assert_eq!(route.rewrite("/API/users").as_deref(), Some("/users"));
    // The other Ingress's plain path is now a case-insensitive regex anchored at the start.
    assert_eq!(service_for(&b, "h", "/STATIC/x").as_deref(), Some("static"));
    assert_eq!(
        service_for(&b, "h", "/staticfile").as_deref(),
        Some("static")
    );
    assert_eq!(service_for(&b, "h", "/x/static"), None);
}

#[test]
fn invalid_annotation_stops_only_that_ingress() {
    let mut bad = ingress(
        "bad",
        T0,
        json!([host_rule("bad.h", vec![path("/", "Prefix", "s")])]),
    );
    bad["metadata"]["annotations"] = json!({"nginx.ingress.kubernetes.io/proxy-body-size": "lots"});
    let good = ingress(
        "good",
        T0,
        json!([host_rule("good.h", vec![path("/", "Prefix", "s")])]),
    );
    let b = W::new().service("s", 1).ingress(bad).ingress(good).build();
    let Resolved::Route { route, .. } = b.table.resolve("bad.h", "/") else {
        panic!("no route")
    };
    assert!(
        route
            .target
            .policy
            .as_ref()
            .unwrap_err()
            .contains("proxy-body-size")
    );
    let Resolved::Route { route, .. } = b.table.resolve("good.h", "/") else {
        panic!("no route")
    };
    assert!(route.target.policy.is_ok());
    assert!(
        b.reports
            .iter()
            .any(|r| r.reason == "InvalidAnnotation" && &*r.object.name == "bad")
    );
}

#[test]
fn basic_auth_with_a_missing_secret_is_closed_not_open() {
    let mut i = ingress(
        "i",
        T0,
        json!([host_rule("h", vec![path("/", "Prefix", "s")])]),
    );
    i["metadata"]["annotations"] = json!({
        "nginx.ingress.kubernetes.io/auth-type": "basic",
        "nginx.ingress.kubernetes.io/auth-secret": "nosuch"
    });
    let b = W::new().service("s", 1).ingress(i).build();
    let Resolved::Route { route, .. } = b.table.resolve("h", "/") else {
        panic!("no route")
    };
    let auth = route.target.policy.as_ref().unwrap().auth.as_ref().unwrap();
    assert_eq!(
        auth.users.as_ref().unwrap_err(),
        "auth Secret ns/nosuch not found"
    );
}

#[test]
fn basic_auth_loads_users_from_string_data() {
    let mut i = ingress(
        "i",
        T0,
        json!([host_rule("h", vec![path("/", "Prefix", "s")])]),
    );
    i["metadata"]["annotations"] = json!({
        "nginx.ingress.kubernetes.io/auth-type": "basic",
        "nginx.ingress.kubernetes.io/auth-secret": "users",
        "nginx.ingress.kubernetes.io/auth-realm": "Staff only"
    });
    // `htpasswd -nbs alice secret`
    let b = W::new()
        .service("s", 1)
        .secret(
            "users",
            json!({"auth": "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"}),
        )
        .ingress(i)
        .build();
    let Resolved::Route { route, .. } = b.table.resolve("h", "/") else {
        panic!("no route")
    };
    let auth = route.target.policy.as_ref().unwrap().auth.as_ref().unwrap();
    assert_eq!(auth.realm, "Staff only");
    let users = auth.users.as_ref().unwrap();
    assert!(users.verify("alice", "secret"));
    assert!(!users.verify("alice", "wrong"));
}

#[test]
fn tls_hosts_are_listed_oldest_first_and_mark_their_servers() {
    let mut older = ingress(
        "older",
        T0,
        json!([host_rule("h", vec![path("/", "Prefix", "s")])]),
    );
    older["spec"]["tls"] = json!([{"hosts": ["H"], "secretName": "cert-old"}]);
    let mut newer = ingress(
        "newer",
        T1,
        json!([host_rule("h", vec![path("/x", "Prefix", "s")])]),
    );
    newer["spec"]["tls"] = json!([{"hosts": ["h"], "secretName": "cert-new"}]);
    let b = W::new()
        .service("s", 1)
        .ingress(newer)
        .ingress(older)
        .build();
    let secrets: Vec<&str> = b.tls_hosts.iter().map(|t| &*t.secret.name).collect();
    assert_eq!(secrets, ["cert-old", "cert-new"]);
    assert_eq!(b.tls_hosts[0].host, "h");
    assert!(b.table.host("h").tls);
    assert!(!b.table.host("other").tls);
}

#[test]
fn routes_naming_the_same_service_port_share_one_backend() {
    let b = W::new()
        .service("s", 1)
        .ingress(ingress(
            "one",
            T0,
            json!([host_rule("one", vec![path("/", "Prefix", "s")])]),
        ))
        .ingress(ingress(
            "two",
            T0,
            json!([host_rule("two", vec![path("/", "Prefix", "s")])]),
        ))
        .build();
    let backend = |host| match b.table.resolve(host, "/") {
        Resolved::Route { route, .. } => route.target.backend.clone(),
        other => panic!("{other:?}"),
    };
    assert!(Arc::ptr_eq(&backend("one"), &backend("two")));
}

#[test]
fn a_shared_backend_problem_is_reported_for_every_ingress_using_it() {
    let w = W::new()
        .raw_service(json!({"metadata": {"name": "ext", "namespace": "ns"},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}}))
        .ingress(ingress(
            "one",
            T0,
            json!([host_rule("one", vec![path("/", "Prefix", "ext")])]),
        ))
        .ingress(ingress(
            "two",
            T0,
            json!([host_rule("two", vec![path("/", "Prefix", "ext")])]),
        ));
    let built = w.build();
    let reported: Vec<&str> = built
        .reports
        .iter()
        .filter(|r| r.reason == "LoopbackRefused")
        .map(|r| &*r.object.name)
        .collect();
    assert_eq!(reported, ["one", "two"]);
}
