//! The built routing table: what the data plane reads for every request. Immutable once built; a new one
//! replaces it atomically on every change.
//!
//! Lookup order, as ingress-nginx serves it: the request's host picks a server (exact name, then a
//! `*.domain` wildcard matching exactly one extra label, then the catch-all of host-less rules). A known host
//! whose paths do not match falls back to *that host's* default backend, never to the catch-all's rules.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use regex::Regex;

use crate::FastMap;
use crate::auth::htpasswd::Htpasswd;
use crate::routing::path::{self, PathType};
use crate::world::ObjectKey;

/// ingress-nginx defaults.
pub const DEFAULT_BODY_LIMIT: u64 = 1 << 20;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// ingress-nginx's `proxy-send-timeout` default.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct RouteTable {
    exact: FastMap<Arc<str>, Arc<HostRules>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: FastMap<Arc<str>, Arc<HostRules>>,
    catch_all: Arc<HostRules>,
}

/// The rules of one server (a host name, a wildcard, or the catch-all).
#[derive(Debug, Default)]
pub struct HostRules {
    /// The server's name as configured (`www.example.com`, `*.example.com`, `_` for the catch-all): the
    /// `host` of metrics, bounded by the configuration whatever Host a client sends.
    pub name: Arc<str>,
    /// Tried in order; the first match wins.
    pub routes: Vec<Route>,
    pub default_backend: Option<Arc<Target>>,
    /// The host appears in some Ingress's `spec.tls`.
    pub tls: bool,
}

#[derive(Debug)]
pub struct Route {
    pub matcher: Matcher,
    pub target: Arc<Target>,
}

#[derive(Debug)]
pub enum Matcher {
    Plain {
        path_type: PathType,
        path: String,
    },
    /// Regex mode: case-insensitive, anchored at the start.
    Regex(Regex),
}

/// Where a matched request goes, and under which rules.
#[derive(Debug)]
pub struct Target {
    /// The Ingress this route came from (for reports and access logs).
    pub ingress: ObjectKey,
    pub backend: Arc<Backend>,
    /// `Err(reason)`: the Ingress has an invalid annotation; its paths answer 503 and say why in the log.
    pub policy: Result<Policy, String>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub rewrite_target: Option<String>,
    pub auth: Option<Auth>,
    pub ssl_redirect: bool,
    pub force_ssl_redirect: bool,
    pub preserve_trailing_slash: bool,
    /// `None`: unlimited.
    pub body_limit: Option<u64>,
    /// `proxy-connect-timeout`: establishing the upstream connection.
    pub connect_timeout: Duration,
    /// `proxy-send-timeout`: between two successive writes to the upstream.
    pub send_timeout: Duration,
    /// `proxy-read-timeout`: from the request sent to the response head.
    pub read_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rewrite_target: None,
            auth: None,
            ssl_redirect: false,
            force_ssl_redirect: false,
            preserve_trailing_slash: false,
            body_limit: Some(DEFAULT_BODY_LIMIT),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub realm: String,
    /// `Err(reason)`: the auth Secret is missing or malformed; the paths answer 503, never open access.
    pub users: Result<Arc<Htpasswd>, String>,
}

#[derive(Debug)]
pub enum Backend {
    /// Ready endpoints of a Service, deduplicated, served round-robin.
    Endpoints {
        service: ObjectKey,
        addrs: Vec<SocketAddr>,
        next: AtomicUsize,
    },
    /// A Service of type ExternalName, resolved per connection.
    ExternalName {
        service: ObjectKey,
        host: String,
        port: u16,
    },
    /// Nothing to send to: missing Service, no such port, no ready endpoint (503), with the reason.
    Unavailable(String),
}

impl Backend {
    pub fn endpoints(service: ObjectKey, addrs: Vec<SocketAddr>) -> Self {
        Self::Endpoints {
            service,
            addrs,
            next: AtomicUsize::new(0),
        }
    }

    /// The next endpoint, round-robin. `None` for other kinds.
    pub fn next_endpoint(&self) -> Option<SocketAddr> {
        match self {
            Self::Endpoints { addrs, next, .. } if !addrs.is_empty() => {
                Some(addrs[next.fetch_add(1, Ordering::Relaxed) % addrs.len()])
            }
            _ => None,
        }
    }
}

/// What a request resolved to.
#[derive(Debug)]
pub enum Resolved<'a> {
    Route {
        route: &'a Route,
        host: &'a HostRules,
    },
    DefaultBackend {
        target: &'a Arc<Target>,
        host: &'a HostRules,
    },
    NotFound {
        host: &'a HostRules,
    },
}

impl Route {
    pub fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Plain {
                path_type,
                path: rule,
            } => path::matches(*path_type, rule, path),
            Matcher::Regex(re) => re.is_match(path),
        }
    }

    /// The upstream path after `rewrite-target`, with `$1`… taken from the path regex's captures.
    pub fn rewrite(&self, path: &str) -> Option<String> {
        let target = self
            .target
            .policy
            .as_ref()
            .ok()?
            .rewrite_target
            .as_deref()?;
        let captures = match &self.matcher {
            Matcher::Regex(re) => re.captures(path),
            Matcher::Plain { .. } => None,
        };
        Some(expand_captures(target, |i| {
            captures
                .as_ref()
                .and_then(|c| c.get(i))
                .map(|m| m.as_str())
                .unwrap_or("")
        }))
    }
}

/// nginx's `$N` expansion: `$` followed by digits names a capture group; anything else is literal.
fn expand_captures<'a>(template: &str, group: impl Fn(usize) -> &'a str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push('$');
        } else {
            out.push_str(after[..digits].parse().map(&group).unwrap_or(""));
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

impl HostRules {
    pub fn resolve(&self, path: &str) -> Resolved<'_> {
        if let Some(route) = self.routes.iter().find(|r| r.matches(path)) {
            return Resolved::Route { route, host: self };
        }
        match &self.default_backend {
            Some(target) => Resolved::DefaultBackend { target, host: self },
            None => Resolved::NotFound { host: self },
        }
    }
}

impl RouteTable {
    pub fn new(
        exact: FastMap<Arc<str>, Arc<HostRules>>,
        wildcard: FastMap<Arc<str>, Arc<HostRules>>,
        catch_all: Arc<HostRules>,
    ) -> Self {
        Self {
            exact,
            wildcard,
            catch_all,
        }
    }

    /// The server for a normalised host name (see `normalize_host`).
    pub fn host(&self, host: &str) -> &HostRules {
        if let Some(rules) = self.exact.get(host) {
            return rules;
        }
        if let Some((_, parent)) = host.split_once('.')
            && let Some(rules) = self.wildcard.get(parent)
        {
            return rules;
        }
        &self.catch_all
    }

    pub fn resolve(&self, host: &str, path: &str) -> Resolved<'_> {
        self.host(host).resolve(path)
    }

    /// Every server, named ones sorted by name, then the catch-all.
    #[cfg(test)]
    pub fn servers(&self) -> Vec<&Arc<HostRules>> {
        let mut named: Vec<_> = self.exact.values().chain(self.wildcard.values()).collect();
        named.sort_by(|a, b| a.name.cmp(&b.name));
        named.push(&self.catch_all);
        named
    }

    /// Number of servers with a name (exact and wildcard), for reports.
    pub fn host_count(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

/// Host header → lookup key: port dropped, trailing dot dropped, lower-cased.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let host = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets' content.
        raw.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    // The common case (already lower-case) costs no allocation on the request path.
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_loses_port_trailing_dot_and_case() {
        assert_eq!(normalize_host("Foo.Example.COM:8080"), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com."), "foo.example.com");
        assert_eq!(normalize_host("[::1]:443"), "::1");
        assert_eq!(normalize_host("example.com"), "example.com");
    }

    #[test]
    fn captures_expand_like_nginx() {
        let groups = ["/a/b", "a", "b"];
        let g = |i: usize| groups.get(i).copied().unwrap_or("");
        assert_eq!(expand_captures("/$2/$1", g), "/b/a");
        assert_eq!(expand_captures("/x$", g), "/x$");
        assert_eq!(expand_captures("/$9", g), "/");
        assert_eq!(expand_captures("$1$2", g), "ab");
        assert_eq!(expand_captures("/", g), "/");
    }

    #[test]
    fn endpoints_are_used_round_robin() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let backend = Backend::endpoints(ObjectKey::new("ns", "svc"), vec![a, b]);
        let picked: Vec<_> = (0..4).map(|_| backend.next_endpoint().unwrap()).collect();
        assert_eq!(picked, [a, b, a, b]);
        assert_eq!(Backend::Unavailable("x".into()).next_endpoint(), None);
    }
}
