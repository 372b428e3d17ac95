//! Issuing: SelfSigned and CA issuers (local, `pki`), ACME (instant-acme, HTTP-01 answered by certgate's
//! own listener). Each returns the data of the `kubernetes.io/tls` Secret to write.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, ChallengeType, Identifier, Key, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::acme::http01::Http01Tokens;
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
}

fn acme_err(context: &str) -> impl Fn(instant_acme::Error) -> IssueError + '_ {
    move |e| IssueError::Acme(format!("{context}: {e}"))
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

fn secret_data(
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

/// An ACME issuer's settings, from its spec and Secrets.
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    /// PEM roots for a private ACME server (`caBundle`); `None`: the platform's web PKI roots.
    pub ca_bundle: Option<Vec<u8>>,
    /// `privateKeySecretRef` name (for messages) and its current `tls.key`, if the Secret exists.
    pub account_secret: String,
    pub account_key_pem: Option<String>,
}

pub struct AcmeIssued {
    pub secret: BTreeMap<String, Vec<u8>>,
    /// A newly generated account key to store in `privateKeySecretRef` (PKCS#8 PEM), when there was none.
    pub new_account_key_pem: Option<String>,
}

fn http_client(ca_bundle: Option<&[u8]>) -> Result<Box<dyn instant_acme::HttpClient>, IssueError> {
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
    Ok(Box::new(client))
}

/// How often one ACME request is tried when the server answers with a transient error (instant-acme
/// already retries a bad nonce three times per try).
const TRANSIENT_ATTEMPTS: u32 = 6;

/// Run an ACME request again while it fails transiently (a macro, not a function taking an async closure:
/// such closures currently make the spawned issuance future lose `Send`).
macro_rules! transient_retry {
    ($what:expr, $op:expr) => {{
        let mut attempt = 1;
        loop {
            match $op.await {
                Err(e) if is_transient(&e) && attempt < TRANSIENT_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    attempt += 1;
                }
                result => break result.map_err(|e| IssueError::Acme(format!("{}: {e}", $what))),
            }
        }
    }};
}

/// badNonce, a server error or a broken connection: worth another try within the same issuance.
fn is_transient(e: &instant_acme::Error) -> bool {
    match e {
        instant_acme::Error::Api(p) => {
            p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce")
                || p.status.is_some_and(|s| s >= 500)
        }
        instant_acme::Error::Hyper(_) | instant_acme::Error::Http(_) => true,
        _ => false,
    }
}

/// Register (or find) the issuer's ACME account: with the stored key when there is one, else with a new
/// ECDSA P-256 key, returned PEM-encoded for the caller to store in `privateKeySecretRef`. Registering
/// an existing key finds its account again, so this is also how an issuer's account is verified.
async fn account(settings: &AcmeSettings) -> Result<(Account, Option<String>), IssueError> {
    let account_key_err = |problem: String| IssueError::AccountKey {
        secret: settings.account_secret.clone(),
        problem,
    };
    let (pkcs8, new_account_key_pem) = match &settings.account_key_pem {
        Some(pem) => match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(der)) => (der, None),
            Ok(_) => return Err(account_key_err(
                "not a PKCS#8 ECDSA P-256 key; certgate's ACME client signs with P-256 only (an RSA account key \
                 left by cert-manager cannot be used: name a new Secret in privateKeySecretRef, or delete this \
                 one, and certgate registers a new account)".into(),
            )),
            Err(_) => return Err(account_key_err("tls.key is not a PEM private key".into())),
        },
        None => {
            let (_, der) = Key::generate_pkcs8().map_err(acme_err("generating an account key"))?;
            let pem = rcgen::KeyPair::try_from(der.secret_pkcs8_der())
                .map_err(|e| IssueError::Acme(format!("encoding the account key: {e}")))?
                .serialize_pem();
            (der, Some(pem))
        }
    };
    let der = pkcs8.secret_pkcs8_der().to_vec();
    Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(der.clone()))
        .map_err(|e| account_key_err(format!("not an ECDSA P-256 key: {e}")))?;
    let register = || async {
        let key = Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(der.clone()))?;
        let http = http_client(settings.ca_bundle.as_deref())
            .map_err(|e| instant_acme::Error::Other(e.to_string().into()))?;
        let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone()));
        let builder = Account::builder_with_http(http);
        builder
            .create_from_key((key, pkcs8), settings.directory.clone())
            .await
            .map(|(account, _)| account)
    };
    let account = transient_retry!("registering the account", register())?;
    if let Some(email) = &settings.email {
        let contact = format!("mailto:{email}");
        transient_retry!(
            "setting the account email",
            account.update_contacts(&[contact.as_str()])
        )?;
    }
    Ok((account, new_account_key_pem))
}

/// Register an ACME issuer's account ahead of any issuance, as cert-manager does when an Issuer is
/// created, so the issuer reports Ready (or why not) at once. Returns a new account key to store, if one
/// was made.
pub async fn register_account(settings: &AcmeSettings) -> Result<Option<String>, IssueError> {
    account(settings).await.map(|(_, new_key)| new_key)
}

/// Register (or find) the account, order the names, answer HTTP-01 through `tokens` (served by the
/// proxy's port-80 listener at `http_listener`, self-checked first), finalize with our own key's CSR.
pub async fn acme(
    settings: &AcmeSettings,
    wanted: &Wanted,
    key: &GeneratedKey,
    tokens: &Http01Tokens,
    http_listener: SocketAddr,
) -> Result<AcmeIssued, IssueError> {
    let (account, new_account_key_pem) = account(settings).await?;

    let mut identifiers: Vec<Identifier> = wanted
        .request
        .dns_names
        .iter()
        .cloned()
        .map(Identifier::Dns)
        .collect();
    identifiers.extend(
        wanted
            .request
            .ip_addresses
            .iter()
            .copied()
            .map(Identifier::Ip),
    );
    let mut order = transient_retry!(
        "creating the order",
        account.new_order(&NewOrder::new(&identifiers))
    )?;

    let mut presented = Vec::new();
    let result = async {
        // Authorizations are walked again after a transient failure; the ones already answered are skipped.
        let mut answered = std::collections::HashSet::new();
        for attempt in 1..=TRANSIENT_ATTEMPTS {
            let mut failed = None;
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = match authz {
                    Ok(a) => a,
                    Err(e) if is_transient(&e) => {
                        failed = Some(e);
                        break;
                    }
                    Err(e) => {
                        return Err(IssueError::Acme(format!("reading an authorization: {e}")));
                    }
                };
                if authz.status == AuthorizationStatus::Valid || answered.contains(authz.url()) {
                    continue;
                }
                if authz.status != AuthorizationStatus::Pending {
                    return Err(IssueError::Acme(format!(
                        "authorization is {:?}",
                        authz.status
                    )));
                }
                let url = authz.url().to_owned();
                let domain = match &authz.identifier().identifier {
                    Identifier::Dns(d) => d.clone(),
                    Identifier::Ip(ip) => ip.to_string(),
                    other => {
                        return Err(IssueError::Acme(format!(
                            "unsupported identifier {other:?}"
                        )));
                    }
                };
                let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
                    IssueError::Acme(format!(
                        "the server offers no HTTP-01 challenge for {domain}"
                    ))
                })?;
                let key_authorization = challenge.key_authorization().as_str().to_owned();
                tokens.insert(&challenge.token, &domain, &key_authorization);
                presented.push(challenge.token.clone());
                self_check(http_listener, &domain, &challenge.token, &key_authorization).await?;
                match challenge.set_ready().await {
                    Ok(()) => {
                        answered.insert(url);
                    }
                    Err(e) if is_transient(&e) => {
                        failed = Some(e);
                        break;
                    }
                    Err(e) => {
                        return Err(IssueError::Acme(format!("accepting the challenge: {e}")));
                    }
                }
            }
            match failed {
                None => break,
                Some(e) if attempt == TRANSIENT_ATTEMPTS => {
                    return Err(IssueError::Acme(format!("answering the challenges: {e}")));
                }
                Some(_) => {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await
                }
            }
        }
        // First poll soon (a fast CA answers in milliseconds), then back off as instant-acme does.
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(50))
            .timeout(Duration::from_secs(120));
        match transient_retry!("waiting for validation", order.poll_ready(&retries))? {
            OrderStatus::Ready => {}
            status => {
                let detail = order
                    .state()
                    .error
                    .as_ref()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default();
                return Err(IssueError::Acme(format!("order is {status:?}{detail}")));
            }
        }
        let csr = crate::pki::csr::build_csr(&wanted.request, &key.key_pair)?;
        transient_retry!("finalizing", order.finalize_csr(&csr))?;
        transient_retry!(
            "downloading the certificate",
            order.poll_certificate(&retries)
        )
    }
    .await;
    for token in presented {
        tokens.remove(&token);
    }
    let chain = result?;
    Ok(AcmeIssued {
        secret: secret_data(chain, key.pem.clone(), None),
        new_account_key_pem,
    })
}

/// Ask our own listener for the challenge, with the challenge's Host, as the ACME server will — locally,
/// never through public DNS (which breaks behind NAT and split-horizon DNS).
async fn self_check(
    listener: SocketAddr,
    domain: &str,
    token: &str,
    expected: &str,
) -> Result<(), IssueError> {
    let fail = |problem: String| IssueError::SelfCheck {
        domain: domain.to_owned(),
        problem,
    };
    let check = async {
        let stream = tokio::net::TcpStream::connect(listener)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("/.well-known/acme-challenge/{token}"))
            .header(hyper::header::HOST, domain)
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        if status == hyper::StatusCode::OK && body.as_ref() == expected.as_bytes() {
            Ok(())
        } else {
            Err(fail(format!(
                "the listener answered {status} with a different body"
            )))
        }
    };
    tokio::time::timeout(Duration::from_secs(10), check)
        .await
        .map_err(|_| fail("timed out".into()))?
}
