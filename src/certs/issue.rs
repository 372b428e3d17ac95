//! Issuing: SelfSigned and CA issuers (local, `pki`), ACME (instant-acme, HTTP-01 answered by certgate's
//! own listener). Each returns the data of the `kubernetes.io/tls` Secret to write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hyper_util::rt::TokioExecutor;
use instant_acme::BodyWrapper;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::certs::decide::{TLS_CRT, TLS_KEY};
use crate::certs::spec::Wanted;
use crate::pki::key::{self, GeneratedKey};
use crate::pki::sign::{self, CaKeyPair, LeafKey};

pub const CA_CRT: &str = "ca.crt";

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error("CA issuer: {0}")]
    Ca(String),
    #[error("ACME: {0}")]
    Acme(String),
    #[error("ACME account key in Secret {secret}: {problem}")]
    AccountKey { secret: String, problem: String },
    #[error("HTTP-01 self check for {domain} failed: {problem}")]
    SelfCheck { domain: String, problem: String },
    #[error("generating the private key: {0}")]
    KeyTask(String),
}

/// The private key for this issuance: the existing one when `rotationPolicy: Never` and it still fits the
/// spec, else a new one.
pub fn private_key(
    wanted: &Wanted,
    existing_pem: Option<&str>,
) -> Result<GeneratedKey, IssueError> {
    if !wanted.rotate_key
        && let Some(pem) = existing_pem
        && let Ok(existing) = key::parse(pem)
        && key::matches(&wanted.key, &existing.spec)
    {
        return Ok(existing);
    }
    Ok(key::generate(&wanted.key)?)
}

/// [`private_key`] on tokio's blocking pool: an RSA key takes tens of milliseconds to seconds to generate, and
/// with `--worker-threads 1` the runtime's one thread also serves every proxied request.
pub async fn private_key_off_runtime(
    wanted: &Wanted,
    existing_pem: Option<&str>,
) -> Result<GeneratedKey, IssueError> {
    let (wanted, existing_pem) = (wanted.clone(), existing_pem.map(str::to_owned));
    tokio::task::spawn_blocking(move || private_key(&wanted, existing_pem.as_deref()))
        .await
        .unwrap_or_else(|e| Err(IssueError::KeyTask(e.to_string())))
}

/// The data of a `kubernetes.io/tls` Secret.
pub fn secret_data(
    chain_pem: String,
    key_pem: String,
    ca_pem: Option<String>,
) -> BTreeMap<String, Vec<u8>> {
    let mut data = BTreeMap::from([
        (TLS_CRT.to_owned(), chain_pem.into_bytes()),
        (TLS_KEY.to_owned(), key_pem.into_bytes()),
    ]);
    if let Some(ca) = ca_pem {
        data.insert(CA_CRT.to_owned(), ca.into_bytes());
    }
    data
}

pub fn self_signed(
    wanted: &Wanted,
    key: &GeneratedKey,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Vec<u8>>, IssueError> {
    let cert = sign::self_signed(&wanted.request, &key.key_pair, now)?;
    Ok(secret_data(cert.chain_pem, key.pem.clone(), cert.ca_pem))
}

/// `ca_secret`: the CA issuer's Secret data (`tls.crt`, `tls.key`, optional `ca.crt`).
pub fn with_ca(
    wanted: &Wanted,
    key: &GeneratedKey,
    ca_secret: &BTreeMap<String, Vec<u8>>,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Vec<u8>>, IssueError> {
    let text = |k: &str| ca_secret.get(k).and_then(|v| std::str::from_utf8(v).ok());
    let (Some(crt), Some(ca_key)) = (text(TLS_CRT), text(TLS_KEY)) else {
        return Err(IssueError::Ca(format!(
            "the CA Secret needs {TLS_CRT} and {TLS_KEY}"
        )));
    };
    let ca = CaKeyPair::from_pem(crt, ca_key, text(CA_CRT))?;
    let cert = sign::sign_with_ca(&wanted.request, LeafKey::KeyPair(&key.key_pair), &ca, now)?;
    Ok(secret_data(cert.chain_pem, key.pem.clone(), cert.ca_pem))
}

/// The HTTPS client for an ACME server: `ca_bundle` roots for a private server, else the web PKI roots.
pub(crate) fn http_client(
    ca_bundle: Option<&[u8]>,
) -> Result<Box<dyn instant_acme::HttpClient>, IssueError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| IssueError::Acme(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    match ca_bundle {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|_| IssueError::Acme("caBundle is not PEM".into()))?;
                roots
                    .add(cert)
                    .map_err(|e| IssueError::Acme(format!("caBundle: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = builder.with_root_certificates(roots).with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build::<_, BodyWrapper<Bytes>>(https);
    Ok(crate::acme::client_metrics::instrument(Box::new(client)))
}
