//! The ACME issuance (instant-acme): register or find the account, open (or resume) an order, present the
//! HTTP-01 answers, check that certgate's own listener serves them, let the server validate, finalize with
//! the Certificate's CSR, download the chain.
//!
//! Where the answers are presented and the progress recorded is the caller's [`Journal`]: the process's own
//! token table in standalone mode; Order and Challenge objects in Kubernetes mode, which every replica
//! serves tokens from and a new leader resumes an order from.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeStatus, ChallengeType, ExternalAccountKey, Identifier,
    Key, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::acme::http01::Http01Tokens;
use crate::certs::issue::{IssueError, http_client};
use crate::crd::acme::State;

/// An ACME issuer's settings, from its spec and Secrets.
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    /// PEM roots for a private ACME server (`caBundle`); `None`: the platform's web PKI roots.
    pub ca_bundle: Option<Vec<u8>>,
    /// `privateKeySecretRef` name (for messages) and its current `tls.key`, if the Secret exists.
    pub account_secret: String,
    pub account_key_pem: Option<String>,
    /// External account binding: key ID and the decoded HMAC key, used when registering a new account.
    pub eab: Option<(String, Vec<u8>)>,
}

pub struct AcmeIssued {
    /// The PEM chain, leaf first.
    pub chain_pem: String,
    /// A newly generated account key to store in `privateKeySecretRef` (PKCS#8 PEM), when there was none.
    pub new_account_key_pem: Option<String>,
    /// The account's URL at the server.
    pub account_uri: String,
}

/// An order as the server reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderProgress {
    pub url: String,
    pub finalize_url: String,
    pub state: State,
    pub authorizations: Vec<AuthorizationProgress>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationProgress {
    pub url: String,
    pub identifier: String,
    pub wildcard: bool,
    pub state: State,
    /// (url, token, type) of each challenge offered.
    pub challenges: Vec<(String, String, String)>,
}

/// One HTTP-01 answer to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub url: String,
    pub authorization_url: String,
    pub dns_name: String,
    pub wildcard: bool,
    pub token: String,
    pub key_authorization: String,
}

/// Where an issuance presents its answers and records its progress.
pub trait Journal: Sync {
    /// The order exists at the server (new or resumed) and needs these authorizations.
    fn order_opened(&self, order: &OrderProgress) -> impl Future<Output = ()> + Send;
    /// Serve `challenge`'s key authorization at `/.well-known/acme-challenge/<token>` on port 80.
    fn present(&self, challenge: &Presented)
    -> impl Future<Output = Result<(), IssueError>> + Send;
    /// The order reached a final state (`valid` with `chain`, or failed with `reason`): record it and
    /// withdraw what was presented.
    fn order_closed(
        &self,
        state: State,
        reason: Option<&str>,
        chain: Option<&str>,
        presented: &[Presented],
    ) -> impl Future<Output = ()> + Send;
}

/// Standalone mode: the answers live in this process's token table; nothing else is recorded.
pub struct LocalJournal<'a>(pub &'a Http01Tokens);

impl Journal for LocalJournal<'_> {
    async fn order_opened(&self, _: &OrderProgress) {}

    async fn present(&self, c: &Presented) -> Result<(), IssueError> {
        self.0.insert(&c.token, &c.dns_name, &c.key_authorization);
        Ok(())
    }

    async fn order_closed(
        &self,
        _: State,
        _: Option<&str>,
        _: Option<&str>,
        presented: &[Presented],
    ) {
        for c in presented {
            self.0.remove(&c.token);
        }
    }
}

/// How often one ACME request is tried when the server answers with a transient error (instant-acme
/// already retries a bad nonce three times per try).
const TRANSIENT_ATTEMPTS: u32 = 6;
/// How long the self-check waits for the listener to answer (in Kubernetes mode the answer arrives
/// through the Challenge watch, a moment after the object is written).
const SELF_CHECK_DEADLINE: Duration = Duration::from_secs(30);

/// Run an ACME request again while it fails transiently (a macro, not a function taking an async closure:
/// such closures currently make the spawned issuance future lose `Send`).
macro_rules! transient_retry {
    ($what:expr, $op:expr) => {{
        let mut attempt = 1;
        loop {
            match $op.await {
                Err(e) if is_transient(&e) && attempt < TRANSIENT_ATTEMPTS => {
                    transient_pause(attempt).await;
                    attempt += 1;
                }
                result => break result.map_err(|e| IssueError::Acme(format!("{}: {e}", $what))),
            }
        }
    }};
}

/// The pause before another try of a request that failed transiently: 100 ms, 200 ms, ….
async fn transient_pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
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

fn state_of_order(s: OrderStatus) -> State {
    match s {
        OrderStatus::Pending => State::Pending,
        OrderStatus::Ready => State::Ready,
        OrderStatus::Processing => State::Processing,
        OrderStatus::Valid => State::Valid,
        OrderStatus::Invalid => State::Invalid,
    }
}

fn state_of_authorization(s: AuthorizationStatus) -> State {
    match s {
        AuthorizationStatus::Pending => State::Pending,
        AuthorizationStatus::Valid => State::Valid,
        AuthorizationStatus::Expired => State::Expired,
        _ => State::Invalid,
    }
}

/// The account key to sign with: the stored one, or `None` to register a new account.
fn stored_account_key(settings: &AcmeSettings) -> Result<Option<Vec<u8>>, IssueError> {
    let fail = |problem: &str| IssueError::AccountKey {
        secret: settings.account_secret.clone(),
        problem: problem.to_owned(),
    };
    let Some(pem) = &settings.account_key_pem else {
        return Ok(None);
    };
    let der = match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(PrivateKeyDer::Pkcs8(der)) => der.secret_pkcs8_der().to_vec(),
        Ok(_) => return Err(fail(RSA_ACCOUNT_KEY)),
        Err(_) => return Err(fail("tls.key is not a PEM private key")),
    };
    Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(der.clone()))
        .map_err(|_| fail(RSA_ACCOUNT_KEY))?;
    Ok(Some(der))
}

const RSA_ACCOUNT_KEY: &str = "not an ECDSA P-256 key in PKCS#8; certgate's ACME client signs with P-256 only. \
     An RSA account key left by cert-manager cannot be used: name a new Secret in privateKeySecretRef, or \
     delete the Secret, and certgate registers a new account (see README, \"Migrating from cert-manager\")";

async fn account(settings: &AcmeSettings) -> Result<(Account, Option<String>), IssueError> {
    let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let client = || http_client(settings.ca_bundle.as_deref());
    let (account, new_key_der) = match stored_account_key(settings)? {
        Some(der) => {
            let register = || async {
                let key = Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(der.clone()))?;
                let http =
                    client().map_err(|e| instant_acme::Error::Other(e.to_string().into()))?;
                let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone()));
                Account::builder_with_http(http)
                    .create_from_key((key, pkcs8), settings.directory.clone())
                    .await
                    .map(|(account, _)| account)
            };
            let what = format!("registering the account at {}", settings.directory);
            (transient_retry!(what, register())?, None)
        }
        None => {
            let eab = settings
                .eab
                .as_ref()
                .map(|(id, key)| ExternalAccountKey::new(id.clone(), key));
            let register = || async {
                let http =
                    client().map_err(|e| instant_acme::Error::Other(e.to_string().into()))?;
                let new = NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                Account::builder_with_http(http)
                    .create(&new, settings.directory.clone(), eab.as_ref())
                    .await
            };
            let what = format!("registering the account at {}", settings.directory);
            let (account, credentials) = transient_retry!(what, register())?;
            (
                account,
                Some(credentials.private_key().secret_pkcs8_der().to_vec()),
            )
        }
    };
    if new_key_der.is_none() && !contacts.is_empty() {
        transient_retry!(
            "setting the account email",
            account.update_contacts(&contacts)
        )?;
    }
    let new_account_key_pem = match new_key_der {
        None => None,
        Some(der) => Some(
            rcgen::KeyPair::try_from(der.as_slice())
                .map_err(|e| IssueError::Acme(format!("encoding the account key: {e}")))?
                .serialize_pem(),
        ),
    };
    Ok((account, new_account_key_pem))
}

/// Register an ACME issuer's account ahead of any issuance, as cert-manager does when an Issuer is
/// created, so the issuer reports Ready (or why not) at once. Registering a stored key finds its account
/// again, so this also verifies it. Returns a new account key to store, if one was made, and the account URL.
pub async fn register_account(
    settings: &AcmeSettings,
) -> Result<(Option<String>, String), IssueError> {
    let (account, new_key) = account(settings).await?;
    Ok((new_key, account.id().to_owned()))
}

/// Issue over ACME: `csr_der` is the Certificate's request; `resume` the URL of an order a previous
/// leader opened for that same request (the order is continued, not opened again).
pub async fn issue(
    settings: &AcmeSettings,
    identifiers: Vec<Identifier>,
    csr_der: &[u8],
    resume: Option<&str>,
    journal: &impl Journal,
    http_listener: SocketAddr,
) -> Result<AcmeIssued, IssueError> {
    let (account, new_account_key_pem) = account(settings).await?;
    let mut order = match resume {
        Some(url) => transient_retry!("resuming the order", account.order(url.to_owned()))?,
        None => transient_retry!(
            "creating the order",
            account.new_order(&NewOrder::new(&identifiers))
        )?,
    };

    // Read every authorization once: the order's record, and what there is to answer.
    let mut progress = OrderProgress {
        url: order.url().to_owned(),
        finalize_url: order.state().finalize.clone(),
        state: state_of_order(order.state().status),
        authorizations: Vec::new(),
    };
    let mut to_answer = Vec::new();
    // Read again from the first one when a read fails transiently (a bad nonce the client's own retries
    // did not get past, a server error).
    for attempt in 1..=TRANSIENT_ATTEMPTS {
        progress.authorizations.clear();
        to_answer.clear();
        let mut failed = false;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = match authz {
                Ok(a) => a,
                Err(e) if is_transient(&e) && attempt < TRANSIENT_ATTEMPTS => {
                    failed = true;
                    break;
                }
                Err(e) => return Err(IssueError::Acme(format!("reading an authorization: {e}"))),
            };
            let (identifier, wildcard) = match &authz.identifier().identifier {
                Identifier::Dns(d) => (d.clone(), authz.wildcard),
                Identifier::Ip(ip) => (ip.to_string(), false),
                other => {
                    return Err(IssueError::Acme(format!(
                        "unsupported identifier {other:?}"
                    )));
                }
            };
            let url = authz.url().to_owned();
            let state = state_of_authorization(authz.status);
            progress.authorizations.push(AuthorizationProgress {
                url: url.clone(),
                identifier: identifier.clone(),
                wildcard,
                state,
                challenges: authz
                    .challenges
                    .iter()
                    .map(|c| (c.url.clone(), c.token.clone(), challenge_type(&c.r#type)))
                    .collect(),
            });
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(IssueError::Acme(format!(
                        "the authorization for {identifier} is {other:?}"
                    )));
                }
            }
            let challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
                IssueError::Acme(format!(
                    "the server offers no HTTP-01 challenge for {identifier}"
                ))
            })?;
            to_answer.push((
                Presented {
                    url: challenge.url.clone(),
                    authorization_url: url,
                    dns_name: identifier,
                    wildcard,
                    token: challenge.token.clone(),
                    key_authorization: challenge.key_authorization().as_str().to_owned(),
                },
                challenge.status == ChallengeStatus::Pending,
            ));
        }
        if !failed {
            break;
        }
        transient_pause(attempt).await;
    }
    journal.order_opened(&progress).await;

    let mut presented = Vec::new();
    let result = async {
        for (challenge, _) in &to_answer {
            journal.present(challenge).await?;
            presented.push(challenge.clone());
            self_check(
                http_listener,
                &challenge.dns_name,
                &challenge.token,
                &challenge.key_authorization,
            )
            .await?;
        }
        // Tell the server to validate the challenges nobody has accepted yet (a resumed order may have
        // some already processing).
        let mut accepted: HashSet<&str> = to_answer
            .iter()
            .filter(|(_, pending)| !pending)
            .map(|(c, _)| c.url.as_str())
            .collect();
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
                let Some(mut challenge) = authz.challenge(ChallengeType::Http01) else {
                    continue;
                };
                let Some((c, _)) = to_answer.iter().find(|(c, _)| c.url == challenge.url) else {
                    continue;
                };
                if accepted.contains(c.url.as_str()) || challenge.status != ChallengeStatus::Pending
                {
                    continue;
                }
                match challenge.set_ready().await {
                    Ok(()) => {
                        accepted.insert(c.url.as_str());
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
                Some(_) => transient_pause(attempt).await,
            }
        }
        // First poll soon (a fast CA answers in milliseconds), then back off as instant-acme does.
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(50))
            .timeout(Duration::from_secs(120));
        // A resumed order may be past validation, or even past finalization.
        let status = order.state().status;
        if !matches!(status, OrderStatus::Processing | OrderStatus::Valid) {
            if status != OrderStatus::Ready {
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
            }
            transient_retry!("finalizing", order.finalize_csr(csr_der))?;
        }
        transient_retry!(
            "downloading the certificate",
            order.poll_certificate(&retries)
        )
    }
    .await;
    match &result {
        Ok(chain) => {
            journal
                .order_closed(State::Valid, None, Some(chain), &presented)
                .await
        }
        Err(e) => {
            let state = match order.refresh().await.map(|s| s.status) {
                Ok(OrderStatus::Invalid) => State::Invalid,
                _ => State::Errored,
            };
            journal
                .order_closed(state, Some(&e.to_string()), None, &presented)
                .await
        }
    }
    Ok(AcmeIssued {
        chain_pem: result?,
        new_account_key_pem,
        account_uri: account.id().to_owned(),
    })
}

/// cert-manager's spelling of a challenge type in Order status (`http-01`, as the server sends it).
fn challenge_type(t: &ChallengeType) -> String {
    match t {
        ChallengeType::Http01 => "http-01",
        ChallengeType::Dns01 => "dns-01",
        ChallengeType::TlsAlpn01 => "tls-alpn-01",
        _ => "other",
    }
    .to_owned()
}

/// Ask our own listener for the challenge, with the challenge's Host, as the ACME server will — locally,
/// never through public DNS (which breaks behind NAT and split-horizon DNS). Retried until it answers
/// right or the deadline passes.
async fn self_check(
    listener: SocketAddr,
    domain: &str,
    token: &str,
    expected: &str,
) -> Result<(), IssueError> {
    let deadline = tokio::time::Instant::now() + SELF_CHECK_DEADLINE;
    let mut wait = Duration::from_millis(20);
    loop {
        let problem = match tokio::time::timeout(
            Duration::from_secs(10),
            fetch_challenge(listener, domain, token),
        )
        .await
        {
            Ok(Ok((hyper::StatusCode::OK, body))) if body.as_ref() == expected.as_bytes() => {
                return Ok(());
            }
            Ok(Ok((status, _))) => format!("the listener answered {status} with a different body"),
            Ok(Err(e)) => e,
            Err(_) => "timed out".to_owned(),
        };
        if tokio::time::Instant::now() + wait > deadline {
            return Err(IssueError::SelfCheck {
                domain: domain.to_owned(),
                problem,
            });
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

async fn fetch_challenge(
    listener: SocketAddr,
    domain: &str,
    token: &str,
) -> Result<(hyper::StatusCode, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(listener)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("/.well-known/acme-challenge/{token}"))
        .header(hyper::header::HOST, domain)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}
