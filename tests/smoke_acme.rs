//! Proves the test ACME server is real: an account registers at Pebble, an order for a made-up name is
//! validated over HTTP-01 against a listener this test runs on Pebble's `httpPort`, and the issued chain
//! verifies against Pebble's roots with rustls' WebPKI verifier, as a TLS client would check it.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

type Tokens = Arc<Mutex<HashMap<String, String>>>;

async fn answer_challenge(
    State(tokens): State<Tokens>,
    Path(token): Path<String>,
) -> (StatusCode, String) {
    match tokens.lock().expect("token map").get(&token) {
        Some(key_authorization) => (StatusCode::OK, key_authorization.clone()),
        None => (StatusCode::NOT_FOUND, String::new()),
    }
}

#[tokio::test]
async fn pebble_issues_a_certificate_validated_over_http01() {
    let Some([directory, acme_ca, pebble_roots, http_port]) = support::dev_cluster_env([
        "CERTGATE_ACME_DIRECTORY",
        "CERTGATE_ACME_CA",
        "CERTGATE_PEBBLE_ROOTS",
        "PEBBLE_HTTP_PORT",
    ]) else {
        return;
    };

    // The HTTP-01 responder, on the port Pebble's validator connects to.
    let tokens = Tokens::default();
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", http_port.parse::<u16>().expect("port")))
            .await
            .expect("bind Pebble's httpPort (is another test using it?)");
    let app = axum::Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer_challenge))
        .with_state(tokens.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // instant-acme and rustls' verifier builder take rustls' process-wide provider.
    certgate::tls::install_process_provider();
    let (account, _credentials) = Account::builder_with_root(&acme_ca)
        .expect("ACME client trusting Pebble's CA")
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory,
            None,
        )
        .await
        .expect("account registered");

    let name = format!("{}.certgate.test", support::unique_name("smoke"));
    let identifiers = [Identifier::Dns(name.clone())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .expect("order created");

    let mut authorizations = order.authorizations();
    let mut validated = 0;
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.expect("authorization");
        assert_eq!(authz.status, AuthorizationStatus::Pending);
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .expect("Pebble offers http-01");
        tokens.lock().expect("token map").insert(
            challenge.token.clone(),
            challenge.key_authorization().as_str().to_owned(),
        );
        challenge.set_ready().await.expect("challenge accepted");
        validated += 1;
    }
    assert_eq!(validated, 1);

    let retries = RetryPolicy::new().timeout(Duration::from_secs(60));
    assert_eq!(
        order.poll_ready(&retries).await.expect("order polled"),
        OrderStatus::Ready
    );
    let _key_pem = order.finalize().await.expect("finalized");
    let chain_pem = order
        .poll_certificate(&retries)
        .await
        .expect("certificate issued");
    server.abort();

    // Verify leaf + intermediates against Pebble's roots for the ordered name.
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain is PEM");
    assert!(
        chain.len() >= 2,
        "leaf and at least one intermediate, got {}",
        chain.len()
    );
    let mut roots = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_file_iter(&pebble_roots).expect("roots file") {
        roots
            .add(root.expect("root PEM"))
            .expect("root certificate");
    }
    let verifier = WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .expect("verifier");
    let server_name = ServerName::try_from(name.clone()).expect("DNS name");
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
        .expect("issued chain verifies against Pebble's roots");

    // And the same chain is not valid for another name.
    let other = ServerName::try_from("not-ordered.certgate.test").expect("DNS name");
    assert!(
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &other, &[], UnixTime::now())
            .is_err()
    );
}
