//! World → routing table, the pure parts: one Ingress compiled on its own (`compile`), and the Ingresses that
//! add to one server merged (`merge_server`). `builder::RouteBuilder` puts them together.
//!
//! Ingresses are merged oldest first (creationTimestamp, then namespace/name), so every conflict — the same
//! host and path in two Ingresses, a host's default backend, its TLS Secret — is won by the oldest, and the
//! result is the same whatever order the objects arrived in. Every decision a user should know about is
//! returned as a `Report`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kube::ResourceExt;
use regex::RegexBuilder;

use crate::annotations::{self, AuthSecretType, BasicAuth, BodySize};
use crate::auth::htpasswd::Htpasswd;
use crate::routing::backends::{self, Backends};
use crate::routing::builder::RouteBuilder;
use crate::routing::path::{self, PathType};
use crate::routing::table::{Auth, HostRules, Matcher, Policy, Route, RouteTable, Target};
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

/// Build the routing table of a world from scratch (a `RouteBuilder` keeps what it built, to apply the
/// next change incrementally).
pub fn build(world: &World, opts: &BuildOptions) -> Built {
    RouteBuilder::new(opts.clone()).build(world)
}

/// A server's name: a host (`www.example.com`, `*.example.com`), or `None` for the catch-all server of
/// host-less rules and rule-less default backends.
pub type ServerName = Option<String>;

/// One served Ingress on its own: what it adds to each server, what it reported, and what it read. The
/// routing table is these merged server by server, oldest Ingress first, so a change recompiles only the
/// Ingresses it touches and re-merges only their servers.
#[derive(Debug, Default)]
pub struct Compiled {
    pub reports: Vec<Report>,
    pub tls_hosts: Vec<TlsHost>,
    /// By server name. Vectors, not maps: an Ingress adds to one or two servers, and thousands of them are
    /// kept.
    pub servers: Vec<(ServerName, Contribution)>,
    /// The Services its backends name (found or not) and the Secret its basic auth names, sorted: a
    /// change to one of them recompiles it.
    pub services: Vec<ObjectKey>,
    pub secrets: Vec<ObjectKey>,
}

impl Compiled {
    pub fn contribution(&self, server: &ServerName) -> Option<&Contribution> {
        self.servers
            .iter()
            .find(|(name, _)| name == server)
            .map(|(_, c)| c)
    }
}

/// What one Ingress adds to one server.
#[derive(Debug, Default)]
pub struct Contribution {
    /// The host is in the Ingress's `spec.tls`.
    pub tls: bool,
    pub default_backend: Option<Arc<Target>>,
    /// In the order the Ingress lists them; of two equal paths the first wins, as the older Ingress does.
    pub routes: Vec<(PathType, String, Arc<Target>)>,
    /// `use-regex` or `rewrite-target`: the whole server switches to regex mode.
    pub regex: bool,
}

/// Compile one Ingress that this instance serves.
pub fn compile(
    key: &ObjectKey,
    ing: &Ingress,
    secrets: &BTreeMap<ObjectKey, Arc<Secret>>,
    inputs: &backends::Inputs<'_>,
    backends: &mut Backends,
) -> Compiled {
    let mut out = Compiled::default();
    let mut reports = Vec::new();
    let mut report = |warning, reason, message: String| {
        reports.push(Report {
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
            format!("annotation {name} is refused: certgate never injects configuration snippets"),
        );
    }
    if let Some(auth) = &parsed.settings.auth {
        out.secrets.push(auth.secret.clone());
    }
    let policy = if parsed.invalid.is_empty() {
        Ok(policy_for(secrets, &parsed.settings, &mut report))
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
    let regex = parsed.settings.use_regex || parsed.settings.rewrite_target.is_some();
    let mut services = BTreeSet::new();
    let mut target = |backend: &IngressBackend,
                      report: &mut dyn FnMut(bool, &'static str, String)| {
        let (backend, service) = backends.resolve(inputs, &key.namespace, backend, report);
        services.extend(service);
        Arc::new(Target {
            ingress: key.clone(),
            backend,
            policy: policy.clone(),
        })
    };

    let Some(spec) = &ing.spec else {
        report(true, "InvalidIngress", "Ingress has no spec".into());
        out.reports = reports;
        return out;
    };
    let mut servers: BTreeMap<ServerName, Contribution> = BTreeMap::new();
    for tls in spec.tls.iter().flatten() {
        for host in tls.hosts.iter().flatten() {
            let host = normalize_rule_host(host);
            servers.entry(Some(host.clone())).or_default().tls = true;
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
        servers.entry(None).or_default().default_backend = Some(default.clone());
    }
    for rule in rules {
        let name = rule
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(normalize_rule_host);
        let host_label = name
            .clone()
            .unwrap_or_else(|| "the catch-all server".to_owned());
        let server = servers.entry(name).or_default();
        server.regex = regex;
        if default_backend.is_some() {
            server.default_backend = default_backend.clone();
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
            let t = target(&p.backend, &mut report);
            server.routes.push((path_type, path, t));
        }
    }
    out.servers = servers.into_iter().collect();
    out.services = services.into_iter().collect();
    out.reports = reports;
    out
}

/// A server being assembled.
#[derive(Default)]
struct HostDraft {
    /// (path type, path) → route, plus whether the route asks for regex mode.
    routes: BTreeMap<(PathType, String), (Arc<Target>, bool)>,
    default_backend: Option<Arc<Target>>,
    tls: bool,
}

/// Merge what the Ingresses add to one server, oldest first: the first to claim a path or the default
/// backend keeps it, and each later claim is reported on its Ingress.
pub fn merge_server<'a>(
    name: &ServerName,
    contributions: impl IntoIterator<Item = (&'a ObjectKey, &'a Contribution)>,
) -> (HostRules, Vec<Report>) {
    let label = name.as_deref().unwrap_or("the catch-all server");
    let mut draft = HostDraft::default();
    let mut reports = Vec::new();
    for (key, c) in contributions {
        let mut report = |warning, reason, message: String| {
            reports.push(Report {
                object: key.clone(),
                warning,
                reason,
                message,
            })
        };
        draft.tls |= c.tls;
        if let Some(default) = &c.default_backend {
            match &draft.default_backend {
                None => draft.default_backend = Some(default.clone()),
                Some(older) if older.ingress != default.ingress => report(
                    true,
                    "DefaultBackendConflict",
                    format!(
                        "the default backend of {label} is set by the older Ingress {}; this one is ignored",
                        older.ingress
                    ),
                ),
                Some(_) => {}
            }
        }
        for (path_type, path, target) in &c.routes {
            match draft.routes.get(&(*path_type, path.clone())) {
                Some((older, _)) => report(
                    true,
                    "PathConflict",
                    format!(
                        "path {path} on {label} is already served by the older Ingress {}; this one is ignored",
                        older.ingress
                    ),
                ),
                None => {
                    draft
                        .routes
                        .insert((*path_type, path.clone()), (target.clone(), c.regex));
                }
            }
        }
    }
    let rules = finish_host(draft, name.as_deref().unwrap_or("_"), &mut reports);
    (rules, reports)
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
pub fn class_matches(world: &World, ing: &Ingress, opts: &BuildOptions) -> bool {
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
    secrets: &BTreeMap<ObjectKey, Arc<Secret>>,
    s: &annotations::IngressSettings,
    report: &mut impl FnMut(bool, &'static str, String),
) -> Policy {
    let defaults = Policy::default();
    Policy {
        rewrite_target: s.rewrite_target.clone(),
        auth: s.auth.as_ref().map(|a| auth_for(secrets, a, report)),
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
    secrets: &BTreeMap<ObjectKey, Arc<Secret>>,
    a: &BasicAuth,
    report: &mut impl FnMut(bool, &'static str, String),
) -> Auth {
    let users = match secrets.get(&a.secret) {
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

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
