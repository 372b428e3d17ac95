//! certgate: one binary that is both an ingress proxy (ingress-nginx compatible) and an ACME certificate
//! manager (cert-manager compatible).
//!
//! The library holds everything; `main.rs` only parses the command line and wires the parts together.
//!
//! ```text
//! sources ──► world (typed objects) ──┬──► proxy config (pure) ──► ArcSwap<Config> ──► listeners
//!   kube watchers | manifest dir      ├──► ingress-shim (pure): Ingress ─► desired Certificates
//!                                     └──► certificate controller: decide (pure) ─► act (issuer, Secret)
//! ```

pub mod acme;
pub mod admin;
pub mod annotations;
pub mod app;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod config;
pub mod crd;
pub mod metrics;
pub mod pki;
pub mod proxy;
pub mod routing;
pub mod sources;
pub mod telemetry;
pub mod tls;
pub mod world;

/// The hash map of the request path and the configuration build (route hosts, upstream pool, metric
/// handles, SNI names, the builder's indexes): std's SipHash costs several times more per lookup than
/// foldhash, and these keys come from the configuration, not from clients, so a fast seeded hash is safe.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The set of the same hash as [`FastMap`].
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
