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
