//! TLS termination: certificates from `kubernetes.io/tls` Secrets and the choice of one per handshake.
//!
//! ```text
//! Secret data (tls.crt, tls.key) ──keypair::load──► LoadedCert ─┐
//! Ingress spec.tls[].hosts ─────────────────────────────────────┴─► CertTable (built off the hot path)
//!                                                                      │ SniResolver::store
//! handshake ──► SniResolver::resolve ──► ArcSwap<CertTable>::load ─────┘ exact → wildcard → default
//! ```
//!
//! This module owns parsing, SNI selection and the rustls `ServerConfig`. It does not read Secrets or
//! Ingresses, watch anything, or decide which Ingress wins a host: callers hand it bytes and host names
//! already in precedence order.

pub mod keypair;
pub mod resolver;
pub mod server_config;

#[cfg(test)]
pub(crate) mod testing;

pub use keypair::{KeyPairError, LoadedCert};
pub use resolver::{CertTable, Match, SniResolver};
pub use server_config::server_config;

/// Make ring the process-wide rustls provider, for libraries that build their TLS configuration with
/// rustls' defaults (kube's client): with two providers compiled in (aws-lc-rs for the HTTPS listeners,
/// see Cargo.toml) rustls cannot pick one by itself. Call before any such client is made; calling it again
/// is harmless.
pub fn install_process_provider() {
    // An error means a provider is installed already, which is all this asks for.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
