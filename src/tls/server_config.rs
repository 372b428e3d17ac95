//! The one rustls `ServerConfig` for HTTPS listeners: aws-lc-rs provider (see Cargo.toml for why not ring,
//! which the rest of the binary uses), TLS 1.2 and 1.3, ALPN `h2` then
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

/// Build the server configuration. Fails only if the provider cannot produce the configuration
/// (the protocol versions or the ticket key), which does not happen with a working system RNG.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    // Ticket keys rotate every 6 hours and live only in this process: replicas do not share them, so a
    // client moved to another replica makes a full handshake, as with nginx's default.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::keypair::{generate_default, load};
    use crate::tls::resolver::CertTable;
    use crate::tls::testing::TestCa;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn handshake_presents_the_certificate_chosen_by_sni_and_negotiates_h2() {
        let ca = TestCa::new();
        let exact = ca.leaf(&["a.example.com"]);
        let wildcard = ca.leaf(&["*.example.com"]);
        let mut table = CertTable::new(generate_default().unwrap().certified);
        table.insert(
            "*.example.com",
            load(wildcard.crt.as_bytes(), wildcard.key.as_bytes())
                .unwrap()
                .certified,
        );
        table.insert(
            "a.example.com",
            load(exact.crt.as_bytes(), exact.key.as_bytes())
                .unwrap()
                .certified,
        );
        let resolver = Arc::new(SniResolver::new(table));

        let acceptor =
            tokio_rustls::TlsAcceptor::from(server_config(Arc::clone(&resolver)).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            tls.write_all(b"ok").await.unwrap();
            tls.shutdown().await.unwrap();
        });

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der.clone()).unwrap();
        let mut client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        client_config.alpn_protocols = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("a.example.com").unwrap();
        let mut tls = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            connector.connect(name, tcp),
        )
        .await
        .unwrap()
        .unwrap();

        let (_, session) = tls.get_ref();
        let presented = session.peer_certificates().unwrap();
        assert_eq!(presented, [exact.leaf_der, ca.der]);
        // Server preference decides: h2 although the client listed http/1.1 first.
        assert_eq!(session.alpn_protocol(), Some(b"h2".as_slice()));
        let mut body = Vec::new();
        tls.read_to_end(&mut body).await.unwrap();
        assert_eq!(body, b"ok");
        server.await.unwrap();
        assert_eq!(resolver.default_hits(), 0);
    }
}
