//! World → routing table: the pure configuration builder.
//!
//! Ingresses are taken oldest first (creationTimestamp, then namespace/name), so every conflict — the same
//! host and path in two Ingresses, a host's default backend, its TLS Secret — is won by the oldest, and the
//! result is the same whatever order the objects arrived in. Every decision a user should know about is
//! returned as a `Report`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kube::ResourceExt;
use regex::RegexBuilder;

use crate::annotations::{self, AuthSecretType, BasicAuth, BodySize};
use crate::auth::htpasswd::Htpasswd;
use crate::routing::path::{self, PathType};
use crate::routing::table::{Auth, Backend, HostRules, Matcher, Policy, Route, RouteTable, Target};
use crate::world::{ObjectKey, World};

/// The legacy annotation naming an Ingress's class.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `spec.controller` of the IngressClasses this instance serves.
    pub controller: String,
    /// Value of the legacy `kubernetes.io/ingress.class` annotation this instance serves.
    pub ingress_class: String,
    pub watch_without_class: bool,
    /// Loopback endpoints and ExternalName targets: allowed in standalone mode, refused in Kubernetes
    /// mode unless asked for (as ingress-nginx refuses them).
    pub allow_loopback: bool,
}

/// One `spec.tls` entry's host and the Secret it names, in precedence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsHost {
    pub host: String,
    pub secret: ObjectKey,
    pub ingress: ObjectKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The object the report is about: an Ingress, or the Secret of `--default-ssl-certificate`.
    pub object: ObjectKey,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Built {
    pub table: RouteTable,
    pub tls_hosts: Vec<TlsHost>,
    pub reports: Vec<Report>,
    /// The Ingresses this instance serves (after class selection).
    pub served: Vec<ObjectKey>,
}

/// A server being assembled.
#[derive(Default)]
struct HostDraft {
    /// (path type, path) → route, plus whether the route asks for regex mode.
    routes: BTreeMap<(PathType, String), (Arc<Target>, bool)>,
    default_backend: Option<Arc<Target>>,
    tls: bool,
}

pub fn build(world: &World, opts: &BuildOptions) -> Built {
    let mut out = Built::default();
    let mut backends = BackendCache::new(world, opts);
    let mut ingresses: Vec<(&ObjectKey, &Ingress)> = world
        .ingresses
        .iter()
        .map(|(k, i)| (k, i.as_ref()))
        .filter(|(_, ing)| class_matches(world, ing, opts))
        .collect();
    ingresses.sort_by(|(ka, a), (kb, b)| {
        let ts = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
        ts(a).cmp(&ts(b)).then_with(|| ka.cmp(kb))
    });

    let mut hosts: BTreeMap<String, HostDraft> = BTreeMap::new();
    let mut catch_all = HostDraft::default();

    for (key, ing) in ingresses {
        out.served.push(key.clone());
        let mut report = |warning, reason, message: String| {
            out.reports.push(Report {
                object: key.clone(),
                warning,
                reason,
                message,
            })
        };
        let parsed = annotations::parse(ing.annotations(), &key.namespace);
        for name in &parsed.unsupported {
            report(
                true,
                "UnsupportedAnnotation",
                format!("annotation {name} is not supported by certgate and is ignored"),
            );
        }
        for name in &parsed.refused {
            report(
                true,
                "RefusedAnnotation",
                format!(
                    "annotation {name} is refused: certgate never injects configuration snippets"
                ),
            );
        }
        let policy = if parsed.invalid.is_empty() {
            Ok(policy_for(world, &parsed.settings, &mut report))
        } else {
            let reason = parsed
                .invalid
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            report(
                true,
                "InvalidAnnotation",
                format!("paths not served: {reason}"),
            );
            Err(reason)
        };
        let regex_mode = parsed.settings.use_regex || parsed.settings.rewrite_target.is_some();
        let mut target =
            |backend: &IngressBackend, report: &mut dyn FnMut(bool, &'static str, String)| {
                Arc::new(Target {
                    ingress: key.clone(),
                    backend: backends.resolve(&key.namespace, backend, report),
                    policy: policy.clone(),
                })
            };

        let Some(spec) = &ing.spec else {
            report(true, "InvalidIngress", "Ingress has no spec".into());
            continue;
        };
        for tls in spec.tls.iter().flatten() {
            for host in tls.hosts.iter().flatten() {
                let host = normalize_rule_host(host);
                hosts.entry(host.clone()).or_default().tls = true;
                match &tls.secret_name {
                    Some(secret) => out.tls_hosts.push(TlsHost {
                        host,
                        secret: ObjectKey::new(key.namespace.clone(), secret.clone()),
                        ingress: key.clone(),
                    }),
                    None => report(
                        true,
                        "InvalidTLS",
                        format!("spec.tls entry for {host} has no secretName"),
                    ),
                }
            }
        }

        let default_backend = spec
            .default_backend
            .as_ref()
            .map(|b| target(b, &mut report));
        let rules = spec.rules.as_deref().unwrap_or_default();
        if rules.is_empty()
            && let Some(default) = &default_backend
        {
            set_default(&mut catch_all, default, "the catch-all server", &mut report);
        }
        for rule in rules {
            let (draft, host_label) = match rule.host.as_deref().filter(|h| !h.is_empty()) {
                Some(h) => {
                    let h = normalize_rule_host(h);
                    (hosts.entry(h.clone()).or_default(), h)
                }
                None => (&mut catch_all, "the catch-all server".to_owned()),
            };
            if let Some(default) = &default_backend {
                set_default(draft, default, &host_label, &mut report);
            }
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                // ImplementationSpecific matches as Prefix does (element-wise), so it is stored as Prefix.
                let path_type = match p.path_type.as_str() {
                    "Exact" => PathType::Exact,
                    "Prefix" | "ImplementationSpecific" | "" => PathType::Prefix,
                    other => {
                        report(
                            true,
                            "InvalidPath",
                            format!(
                                "path {:?} on {host_label}: unknown pathType {other:?}",
                                p.path
                            ),
                        );
                        continue;
                    }
                };
                let path = p
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into());
                if !path.starts_with('/') {
                    report(
                        true,
                        "InvalidPath",
                        format!("path {path:?} on {host_label} does not start with '/'"),
                    );
                    continue;
                }
                match draft.routes.get(&(path_type, path.clone())) {
                    Some((older, _)) => report(
                        true,
                        "PathConflict",
                        format!(
                            "path {path} on {host_label} is already served by the older Ingress {}; this one is ignored",
                            older.ingress
                        ),
                    ),
                    None => {
                        let t = target(&p.backend, &mut report);
                        draft.routes.insert((path_type, path), (t, regex_mode));
                    }
                }
            }
        }
    }

    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    for (host, draft) in hosts {
        let rules = Arc::new(finish_host(draft, &host, &mut out.reports));
        match host.strip_prefix("*.") {
            Some(parent) => wildcard.insert(parent.to_owned(), rules),
            None => exact.insert(host, rules),
        };
    }
    let catch_all = Arc::new(finish_host(catch_all, "_", &mut out.reports));
    out.table = RouteTable::new(exact, wildcard, catch_all);
    out
}

fn set_default(
    draft: &mut HostDraft,
    default: &Arc<Target>,
    host: &str,
    report: &mut impl FnMut(bool, &'static str, String),
) {
    match &draft.default_backend {
        None => draft.default_backend = Some(default.clone()),
        Some(older) if older.ingress != default.ingress => report(
            true,
            "DefaultBackendConflict",
            format!(
                "the default backend of {host} is set by the older Ingress {}; this one is ignored",
                older.ingress
            ),
        ),
        Some(_) => {}
    }
}

/// Order a server's routes: in regex mode (any route asked for it) every non-Exact path becomes a
/// case-insensitive regex anchored at the start, tried longest first; otherwise longest path first, Exact
/// before Prefix at equal length.
fn finish_host(draft: HostDraft, host: &str, reports: &mut Vec<Report>) -> HostRules {
    let regex_mode = draft.routes.values().any(|(_, r)| *r);
    let mut routes: Vec<(PathType, String, Arc<Target>)> = draft
        .routes
        .into_iter()
        .map(|((t, p), (target, _))| (t, p, target))
        .collect();
    routes.sort_by(|a, b| {
        if regex_mode {
            // Exact paths stay exact (nginx `location =` wins over regex locations).
            (a.0 != PathType::Exact)
                .cmp(&(b.0 != PathType::Exact))
                .then(b.1.len().cmp(&a.1.len()))
        } else {
            path::precedence_key(a.0, &a.1).cmp(&path::precedence_key(b.0, &b.1))
        }
        .then_with(|| a.1.cmp(&b.1))
    });
    let mut out = HostRules {
        name: Arc::from(host),
        routes: Vec::with_capacity(routes.len()),
        default_backend: draft.default_backend,
        tls: draft.tls,
    };
    for (path_type, path, target) in routes {
        let matcher = if regex_mode && path_type != PathType::Exact {
            match RegexBuilder::new(&format!("^(?:{path})"))
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
            {
                Ok(re) => Matcher::Regex(re),
                Err(e) => {
                    reports.push(Report {
                        object: target.ingress.clone(),
                        warning: true,
                        reason: "InvalidPath",
                        message: format!(
                            "path {path:?} on {host} is not a valid regex and is not served: {e}"
                        ),
                    });
                    continue;
                }
            }
        } else {
            Matcher::Plain { path_type, path }
        };
        out.routes.push(Route { matcher, target });
    }
    out
}

fn normalize_rule_host(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    h.strip_suffix('.').map(str::to_owned).unwrap_or(h)
}

/// ingress-nginx's class selection: `spec.ingressClassName` naming an IngressClass of our controller; else
/// the legacy annotation equal to our class; else only when serving Ingresses without a class.
fn class_matches(world: &World, ing: &Ingress, opts: &BuildOptions) -> bool {
    if let Some(class) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return world
            .ingress_classes
            .get(class)
            .and_then(|c| c.spec.as_ref()?.controller.as_deref())
            .is_some_and(|c| c == opts.controller);
    }
    match ing.annotations().get(CLASS_ANNOTATION) {
        Some(class) => *class == opts.ingress_class,
        None => opts.watch_without_class,
    }
}

fn policy_for(
    world: &World,
    s: &annotations::IngressSettings,
    report: &mut impl FnMut(bool, &'static str, String),
) -> Policy {
    let defaults = Policy::default();
    Policy {
        rewrite_target: s.rewrite_target.clone(),
        auth: s.auth.as_ref().map(|a| auth_for(world, a, report)),
        // On by default; the data plane redirects only for hosts with a TLS section.
        ssl_redirect: s.ssl_redirect.unwrap_or(true),
        force_ssl_redirect: s.force_ssl_redirect,
        preserve_trailing_slash: s.preserve_trailing_slash,
        body_limit: match s.body_size {
            None => defaults.body_limit,
            Some(BodySize::Unlimited) => None,
            Some(BodySize::Max(n)) => Some(n),
        },
        connect_timeout: s.connect_timeout.unwrap_or(defaults.connect_timeout),
        send_timeout: s.send_timeout.unwrap_or(defaults.send_timeout),
        read_timeout: s.read_timeout.unwrap_or(defaults.read_timeout),
    }
}

fn auth_for(
    world: &World,
    a: &BasicAuth,
    report: &mut impl FnMut(bool, &'static str, String),
) -> Auth {
    let users = match world.secrets.get(&a.secret) {
        None => Err(format!("auth Secret {} not found", a.secret)),
        Some(secret) => {
            load_users(secret, a.secret_type).map_err(|e| format!("auth Secret {}: {e}", a.secret))
        }
    };
    if let Err(reason) = &users {
        report(
            true,
            "InvalidAuthSecret",
            format!("{reason}; paths with basic auth answer 503"),
        );
    }
    Auth {
        realm: a.realm.clone().unwrap_or_default(),
        users,
    }
}

fn load_users(secret: &Secret, kind: AuthSecretType) -> Result<Arc<Htpasswd>, String> {
    let data = secret_data(secret);
    let users = match kind {
        AuthSecretType::AuthFile => {
            let file = data.get("auth").ok_or("has no key \"auth\"")?;
            let text = std::str::from_utf8(file).map_err(|_| "key \"auth\" is not UTF-8")?;
            Htpasswd::parse_file(text).map_err(|e| format!("key \"auth\": {e}"))?
        }
        AuthSecretType::AuthMap => {
            let mut entries = Vec::with_capacity(data.len());
            for (user, hash) in &data {
                let hash =
                    std::str::from_utf8(hash).map_err(|_| format!("key {user:?} is not UTF-8"))?;
                entries.push((user.as_str(), hash));
            }
            Htpasswd::from_map(entries).map_err(|e| e.to_string())?
        }
    };
    if users.is_empty() {
        return Err("has no users".into());
    }
    Ok(Arc::new(users))
}

/// A Secret's values, `stringData` (as written in manifests) over `data`, as the apiserver merges them.
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// A report not yet tied to an Ingress: (warning, reason, message).
type ReportLine = (bool, &'static str, String);

/// Backends resolved once per build and shared by every route that names the same Service port: one
/// round-robin position per upstream (as nginx has one upstream block per Service port), and a build that
/// stays linear with thousands of Ingresses on a few Services.
struct BackendCache<'w> {
    world: &'w World,
    opts: &'w BuildOptions,
    slices: HashMap<ObjectKey, Vec<&'w EndpointSlice>>,
    /// namespace/service:port → the backend and the reports its resolution made.
    memo: HashMap<String, (Arc<Backend>, Vec<ReportLine>)>,
}

impl<'w> BackendCache<'w> {
    fn new(world: &'w World, opts: &'w BuildOptions) -> Self {
        Self {
            world,
            opts,
            slices: world.slices_by_service(),
            memo: HashMap::new(),
        }
    }

    fn resolve(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
        report: &mut dyn FnMut(bool, &'static str, String),
    ) -> Arc<Backend> {
        let key = match &backend.service {
            Some(s) => {
                let port = s.port.as_ref();
                let number = port.and_then(|p| p.number).map(|n| n.to_string());
                let name = port.and_then(|p| p.name.clone());
                format!(
                    "{namespace}/{}:{}:{}",
                    s.name,
                    number.unwrap_or_default(),
                    name.unwrap_or_default()
                )
            }
            None => format!("{namespace}/resource"),
        };
        let (world, opts, slices) = (self.world, self.opts, &self.slices);
        let (resolved, made) = self.memo.entry(key).or_insert_with(|| {
            let mut made = Vec::new();
            let mut record = |w, r, m| made.push((w, r, m));
            let resolved = resolve_backend(world, slices, namespace, backend, opts, &mut record);
            (Arc::new(resolved), made)
        });
        for (warning, reason, message) in made.iter() {
            report(*warning, reason, message.clone());
        }
        resolved.clone()
    }
}

fn resolve_backend(
    world: &World,
    slices: &HashMap<ObjectKey, Vec<&EndpointSlice>>,
    namespace: &str,
    backend: &IngressBackend,
    opts: &BuildOptions,
    report: &mut dyn FnMut(bool, &'static str, String),
) -> Backend {
    let Some(svc_ref) = &backend.service else {
        let msg =
            "resource backends are not supported by certgate; use a Service backend".to_owned();
        report(true, "UnsupportedBackend", msg.clone());
        return Backend::Unavailable(msg);
    };
    let key = ObjectKey::new(namespace, svc_ref.name.clone());
    let Some(service) = world.services.get(&key) else {
        return Backend::Unavailable(format!("Service {key} not found"));
    };
    let port_ref = svc_ref.port.as_ref();
    let spec = service.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let service_port = ports.iter().find(|p| match port_ref {
        Some(r) => {
            r.number.is_some_and(|n| n == p.port)
                || r.name
                    .as_deref()
                    .is_some_and(|n| p.name.as_deref() == Some(n))
        }
        None => ports.len() == 1,
    });

    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        let host = spec
            .and_then(|s| s.external_name.clone())
            .unwrap_or_default();
        let port = port_ref
            .and_then(|r| r.number)
            .or(service_port.map(|p| p.port));
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
            return Backend::Unavailable(format!(
                "ExternalName Service {key} has no port matching the Ingress backend"
            ));
        };
        if host.is_empty() {
            return Backend::Unavailable(format!("ExternalName Service {key} has no externalName"));
        }
        if !opts.allow_loopback && is_loopback_name(&host) {
            let msg = format!("ExternalName Service {key} points at loopback ({host}); refused");
            report(true, "LoopbackRefused", msg.clone());
            return Backend::Unavailable(msg);
        }
        return Backend::ExternalName {
            service: key,
            host,
            port,
        };
    }

    let Some(service_port) = service_port else {
        return Backend::Unavailable(format!(
            "Service {key} has no port matching the Ingress backend"
        ));
    };
    let port_name = service_port.name.clone().unwrap_or_default();
    let mut addrs = BTreeSet::new();
    for slice in slices.get(&key).into_iter().flatten() {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            // Per the EndpointSlice API, an unknown readiness (nil) is to be taken as ready.
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                if ip.is_loopback() && !opts.allow_loopback {
                    continue;
                }
                addrs.insert(SocketAddr::new(ip, port));
            }
        }
    }
    if addrs.is_empty() {
        return Backend::Unavailable(format!("Service {key} has no ready endpoints"));
    }
    Backend::endpoints(key, addrs.into_iter().collect())
}

fn is_loopback_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
