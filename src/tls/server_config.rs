//! The one rustls `ServerConfig` for HTTPS listeners: ring provider, TLS 1.2 and 1.3, ALPN `h2` then
//! `http/1.1`, session resumption by cache and by tickets, certificates from an [`SniResolver`].
//!
//! It does not accept connections or handle `acme-tls/1` (TLS-ALPN-01 needs its own config).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ServerSessionMemoryCache;

use super::resolver::SniResolver;

/// ALPN protocols in server preference order: rustls picks the first of these the client offers.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Stateful resumption entries kept for clients that do not take tickets (TLS 1.2 without the ticket
/// extension). A few hundred bytes each: a few MiB at most.
pub const SESSION_CACHE_SIZE: usize = 8192;

/// Build the server configuration. Fails only if the ring provider cannot produce the configuration
/// (the protocol versions or the ticket key), which does not happen with a working system RNG.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    // Ticket keys rotate every 6 hours and live only in this process: replicas do not share them, so a
    // client moved to another replica makes a full handshake, as with nginx's default.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}
