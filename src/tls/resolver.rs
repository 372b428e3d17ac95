//! SNI → certificate selection.
//!
//! A [`CertTable`] is built off the hot path from the hosts Ingresses ask for, then swapped whole into the
//! [`SniResolver`]; the handshake only loads the current table (no lock, no allocation unless the SNI has
//! upper-case letters or a trailing dot).
//!
//! Lookup order: exact name, then wildcard (`*.example.com` covers exactly one more label), then the
//! default certificate. It does not parse certificates or know about Ingress precedence: the caller
//! registers hosts in precedence order and the first registration of a name wins.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::FastMap;

/// Which rule chose the certificate for a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Exact,
    Wildcard,
    /// No SNI, or nothing registered covers it.
    Default,
}

/// Immutable SNI table: exact names, wildcard names, then the default certificate.
///
/// Names are compared case-insensitively (ASCII, as DNS) and a trailing dot is ignored.
#[derive(Clone)]
pub struct CertTable {
    exact: FastMap<String, Arc<CertifiedKey>>,
    /// Keyed by the parent domain: `*.example.com` is stored under `example.com`.
    wildcard: FastMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertTable {
    /// An empty table that answers every handshake with `default`.
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Self {
            exact: FastMap::default(),
            wildcard: FastMap::default(),
            default,
        }
    }

    /// Serve `cert` for `host`, one of an Ingress's `spec.tls[].hosts` (the hosts the Ingress asks for,
    /// which need not be among the certificate's SANs). `host` may be a wildcard such as `*.example.com`.
    ///
    /// Precedence: when several certificates are registered for the same name, the first registration is
    /// kept and later ones are ignored, so callers register in precedence order (oldest Ingress first, as
    /// ingress-nginx does). Returns `false` when the name was already taken or is not a usable host name
    /// (empty, or a `*` anywhere but as the whole first label).
    pub fn insert(&mut self, host: &str, cert: Arc<CertifiedKey>) -> bool {
        let host = normalize(host);
        let (map, key) = match host.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent),
            None => (&mut self.exact, host.as_ref()),
        };
        if key.is_empty() || key.contains('*') || key.starts_with('.') {
            return false;
        }
        if map.contains_key(key) {
            return false;
        }
        map.insert(key.to_owned(), cert);
        true
    }

    /// The certificate for a ClientHello's SNI and the rule that chose it.
    pub fn lookup(&self, sni: Option<&str>) -> (Arc<CertifiedKey>, Match) {
        let Some(sni) = sni else {
            return (Arc::clone(&self.default), Match::Default);
        };
        let name = normalize(sni);
        if let Some(cert) = self.exact.get(name.as_ref()) {
            return (Arc::clone(cert), Match::Exact);
        }
        if let Some(parent) = wildcard_parent(&name)
            && let Some(cert) = self.wildcard.get(parent)
        {
            return (Arc::clone(cert), Match::Wildcard);
        }
        (Arc::clone(&self.default), Match::Default)
    }

    /// The certificate for a ClientHello's SNI.
    pub fn resolve(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        self.lookup(sni).0
    }

    /// The certificate served when nothing else matches.
    pub fn default_cert(&self) -> &Arc<CertifiedKey> {
        &self.default
    }

    /// Number of registered names (exact and wildcard), not counting the default.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether only the default certificate is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for CertTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exact: Vec<&str> = self.exact.keys().map(String::as_str).collect();
        exact.sort_unstable();
        let mut wildcard: Vec<&str> = self.wildcard.keys().map(String::as_str).collect();
        wildcard.sort_unstable();
        f.debug_struct("CertTable")
            .field("exact", &exact)
            .field("wildcard_parents", &wildcard)
            .finish_non_exhaustive()
    }
}

/// Whether `pattern` (a SAN or registered host, possibly `*.parent`) covers `host`, with the rules of
/// [`CertTable`].
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = normalize(pattern);
    let host = normalize(host);
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(parent) => wildcard_parent(&host) == Some(parent),
        None => pattern == host,
    }
}

/// rustls certificate resolver over a swappable [`CertTable`]; also counts handshakes that fell back to
/// the default certificate.
///
/// It always answers with the table's choice, even when the client did not offer a signature scheme for
/// that key (an Ed25519 certificate to an old client): the handshake then fails, as it does with nginx.
pub struct SniResolver {
    table: ArcSwap<CertTable>,
    default_hits: AtomicU64,
}

impl SniResolver {
    pub fn new(table: CertTable) -> Self {
        Self {
            table: ArcSwap::from_pointee(table),
            default_hits: AtomicU64::new(0),
        }
    }

    /// Replace the table; handshakes already past `resolve` keep the certificate they got.
    pub fn store(&self, table: CertTable) {
        self.table.store(Arc::new(table));
    }

    /// The table in use now.
    pub fn table(&self) -> Arc<CertTable> {
        self.table.load_full()
    }

    /// Handshakes answered with the default certificate since start (for a metric).
    pub fn default_hits(&self) -> u64 {
        self.default_hits.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("table", &self.table.load())
            .field("default_hits", &self.default_hits())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let (cert, matched) = self.table.load().lookup(client_hello.server_name());
        if matched == Match::Default {
            self.default_hits.fetch_add(1, Ordering::Relaxed);
        }
        Some(cert)
    }
}

/// Lower-case (ASCII) and drop one trailing dot, borrowing when the name is already in that form.
fn normalize(name: &str) -> Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// `example.com` for `a.example.com`: the name a wildcard must be registered under to cover `name`. None
/// when the first label or the rest is empty.
fn wildcard_parent(name: &str) -> Option<&str> {
    match name.split_once('.') {
        Some((label, parent)) if !label.is_empty() && !parent.is_empty() => Some(parent),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::certified;

    struct Certs {
        default: Arc<CertifiedKey>,
        a: Arc<CertifiedKey>,
        b: Arc<CertifiedKey>,
    }

    fn certs() -> Certs {
        Certs {
            default: certified(&["ingress.local"]),
            a: certified(&["a"]),
            b: certified(&["b"]),
        }
    }

    fn table(certs: &Certs, hosts: &[(&str, &Arc<CertifiedKey>)]) -> CertTable {
        let mut table = CertTable::new(Arc::clone(&certs.default));
        for (host, cert) in hosts {
            assert!(table.insert(host, Arc::clone(cert)), "{host} not inserted");
        }
        table
    }

    #[track_caller]
    fn assert_serves(table: &CertTable, sni: Option<&str>, want: &Arc<CertifiedKey>, how: Match) {
        let (got, matched) = table.lookup(sni);
        assert!(Arc::ptr_eq(&got, want), "wrong certificate for {sni:?}");
        assert_eq!(matched, how, "{sni:?}");
        assert!(Arc::ptr_eq(&table.resolve(sni), want));
    }

    #[test]
    fn no_sni_gets_the_default() {
        let c = certs();
        let t = table(&c, &[("a.example.com", &c.a)]);
        assert_serves(&t, None, &c.default, Match::Default);
    }

    #[test]
    fn unregistered_name_gets_the_default() {
        let c = certs();
        let t = table(&c, &[("a.example.com", &c.a)]);
        assert_serves(&t, Some("b.example.com"), &c.default, Match::Default);
        assert_serves(&t, Some("example.com"), &c.default, Match::Default);
    }

    #[test]
    fn exact_name_beats_wildcard() {
        let c = certs();
        // Registered wildcard first: precedence between exact and wildcard is not registration order.
        let t = table(&c, &[("*.example.com", &c.b), ("a.example.com", &c.a)]);
        assert_serves(&t, Some("a.example.com"), &c.a, Match::Exact);
        assert_serves(&t, Some("c.example.com"), &c.b, Match::Wildcard);
    }

    #[test]
    fn wildcard_matches_exactly_one_extra_label() {
        let c = certs();
        let t = table(&c, &[("*.example.com", &c.a)]);
        assert_serves(&t, Some("a.example.com"), &c.a, Match::Wildcard);
        assert_serves(&t, Some("a.b.example.com"), &c.default, Match::Default);
        assert_serves(&t, Some("example.com"), &c.default, Match::Default);
        assert_serves(&t, Some(".example.com"), &c.default, Match::Default);
        assert_serves(&t, Some("aexample.com"), &c.default, Match::Default);
    }

    #[test]
    fn names_compare_case_insensitively() {
        let c = certs();
        let t = table(&c, &[("A.Example.COM", &c.a), ("*.Wild.Example.com", &c.b)]);
        assert_serves(&t, Some("a.example.com"), &c.a, Match::Exact);
        assert_serves(&t, Some("A.EXAMPLE.COM"), &c.a, Match::Exact);
        assert_serves(&t, Some("X.WILD.example.com"), &c.b, Match::Wildcard);
    }

    #[test]
    fn trailing_dot_is_ignored() {
        let c = certs();
        let t = table(
            &c,
            &[("a.example.com.", &c.a), ("*.wild.example.com", &c.b)],
        );
        assert_serves(&t, Some("a.example.com"), &c.a, Match::Exact);
        assert_serves(&t, Some("a.example.com."), &c.a, Match::Exact);
        assert_serves(&t, Some("x.wild.example.com."), &c.b, Match::Wildcard);
    }

    #[test]
    fn first_registered_certificate_wins_a_name() {
        let c = certs();
        let mut t = CertTable::new(Arc::clone(&c.default));
        assert!(t.insert("a.example.com", Arc::clone(&c.a)));
        assert!(!t.insert("A.example.com.", Arc::clone(&c.b)));
        assert!(t.insert("*.example.com", Arc::clone(&c.a)));
        assert!(!t.insert("*.EXAMPLE.com", Arc::clone(&c.b)));
        assert_serves(&t, Some("a.example.com"), &c.a, Match::Exact);
        assert_serves(&t, Some("z.example.com"), &c.a, Match::Wildcard);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn unusable_host_names_are_not_registered() {
        let c = certs();
        let mut t = CertTable::new(Arc::clone(&c.default));
        for host in [
            "",
            ".",
            "*",
            "*.",
            "*.*.example.com",
            "a.*.example.com",
            "**.example.com",
            ".example.com",
            "*..example.com",
        ] {
            assert!(!t.insert(host, Arc::clone(&c.a)), "{host:?} was registered");
        }
        assert!(t.is_empty());
        assert_serves(&t, Some("a.example.com"), &c.default, Match::Default);
    }

    #[test]
    fn resolver_serves_the_table_stored_last() {
        let c = certs();
        let resolver = SniResolver::new(table(&c, &[("a.example.com", &c.a)]));
        assert!(Arc::ptr_eq(
            &resolver.table().resolve(Some("a.example.com")),
            &c.a
        ));
        resolver.store(table(&c, &[("a.example.com", &c.b)]));
        assert!(Arc::ptr_eq(
            &resolver.table().resolve(Some("a.example.com")),
            &c.b
        ));
        assert_eq!(resolver.default_hits(), 0);
    }

    #[test]
    fn name_matches_follows_table_rules() {
        assert!(name_matches("*.example.com", "A.example.com."));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(name_matches("Example.com.", "example.COM"));
        assert!(!name_matches("", ""));
    }
}
