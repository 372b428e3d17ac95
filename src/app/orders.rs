//! Kubernetes mode: the Order and Challenge objects of an ACME issuance (cert-manager's
//! `acme.cert-manager.io/v1`), written as it progresses, so that `kubectl get order,challenge` and
//! `cmctl status certificate` show where an issuance stands, every replica serves the HTTP-01 answers from
//! the Challenges, and a new leader resumes an order its predecessor opened instead of opening another.
//!
//! ```text
//! Certificate
//!   ├─ Secret <cert>-next-private-key    the key of the issuance in flight (until its certificate is written)
//!   └─ CertificateRequest <cert>-<revision>
//!        └─ Order <request>-<hash of the CSR>          status: url, state, authorizations
//!             └─ Challenge <order>-<hash of token>     spec: dnsName, token, key — served on port 80
//! ```
//! Challenges are deleted when their order reaches a final state, as cert-manager does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use sha2::Digest;
use tracing::{info, warn};

use crate::acme::http01::{Http01Tokens, PendingToken};
use crate::app::issuing::MANAGER;
use crate::certs::acme::{Journal, OrderProgress, Presented};
use crate::certs::issue::IssueError;
use crate::crd::acme::{AcmeChallengeSolver, Challenge, ChallengeType, Order, State};
use crate::crd::certificate_request::CertificateRequest;
use crate::crd::meta::IssuerRef;
use crate::pki::key::{self, GeneratedKey};

const NEXT_KEY_LABEL: &str = "cert-manager.io/next-private-key";

fn hash32(bytes: &[u8]) -> u32 {
    let digest = sha2::Sha256::digest(bytes);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The Order of a CertificateRequest: one per CSR, so a resumed issuance finds it by name.
pub fn order_name(request: &str, csr_der: &[u8]) -> String {
    format!("{request}-{}", hash32(csr_der))
}

pub fn challenge_name(order: &str, token: &str) -> String {
    format!("{order}-{}", hash32(token.as_bytes()))
}

pub fn next_key_secret_name(certificate: &str) -> String {
    format!("{certificate}-next-private-key")
}

fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
                       "controller": true, "blockOwnerDeletion": true})
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What an Order's spec says, from the CertificateRequest it serves.
#[derive(Clone)]
pub struct OrderSpecFields {
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub duration: Option<String>,
}

/// The [`Journal`] of one issuance in Kubernetes mode.
pub struct KubeJournal {
    client: Client,
    namespace: String,
    order: String,
    /// The CertificateRequest (name, uid) that owns the Order.
    request: (String, String),
    csr_der: Vec<u8>,
    issuer_ref: IssuerRef,
    spec: OrderSpecFields,
    /// The solver chosen for each name (recorded in its Challenge).
    solvers: BTreeMap<String, AcmeChallengeSolver>,
    /// The Order's uid once written: the Challenges' owner.
    order_uid: Mutex<Option<String>>,
}

impl KubeJournal {
    #[allow(clippy::too_many_arguments)] // one value per field of the objects it writes
    pub fn new(
        client: Client,
        namespace: &str,
        request: (String, String),
        csr_der: &[u8],
        issuer_ref: IssuerRef,
        spec: OrderSpecFields,
        solvers: BTreeMap<String, AcmeChallengeSolver>,
    ) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            order: order_name(&request.0, csr_der),
            request,
            csr_der: csr_der.to_vec(),
            issuer_ref,
            spec,
            solvers,
            order_uid: Mutex::new(None),
        }
    }

    fn orders(&self) -> Api<Order> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn challenges(&self) -> Api<Challenge> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A merge patch: each step sets its own fields and keeps the others (an apply would drop them).
    async fn order_status(&self, status: serde_json::Value) {
        let body = serde_json::json!({ "status": status });
        if let Err(error) = self
            .orders()
            .patch_status(&self.order, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            warn!(order = %self.order, %error, "could not update the Order status");
        }
    }
}

impl Journal for KubeJournal {
    async fn order_opened(&self, progress: &OrderProgress) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut spec = serde_json::json!({
            "request": b64.encode(&self.csr_der),
            "issuerRef": self.issuer_ref,
        });
        if let Some(cn) = &self.spec.common_name {
            spec["commonName"] = cn.clone().into();
        }
        if !self.spec.dns_names.is_empty() {
            spec["dnsNames"] = serde_json::json!(self.spec.dns_names);
        }
        if !self.spec.ip_addresses.is_empty() {
            spec["ipAddresses"] = serde_json::json!(self.spec.ip_addresses);
        }
        if let Some(d) = &self.spec.duration {
            spec["duration"] = d.clone().into();
        }
        let (request, uid) = &self.request;
        let doc = serde_json::json!({
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
            "metadata": {"name": self.order, "namespace": self.namespace,
                         "ownerReferences": [owner("cert-manager.io/v1", "CertificateRequest", request, uid)]},
            "spec": spec,
        });
        match self
            .orders()
            .patch(
                &self.order,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&doc),
            )
            .await
        {
            Ok(order) => {
                if let Ok(mut uid) = self.order_uid.lock() {
                    *uid = order.metadata.uid;
                }
            }
            Err(error) => {
                warn!(order = %self.order, %error, "could not record the Order");
                return;
            }
        }
        let authorizations: Vec<serde_json::Value> = progress
            .authorizations
            .iter()
            .map(|a| {
                serde_json::json!({
                    "url": a.url, "identifier": a.identifier, "wildcard": a.wildcard, "initialState": a.state,
                    "challenges": a.challenges.iter().map(|(url, token, type_)| serde_json::json!({"url": url, "token": token, "type": type_})).collect::<Vec<_>>(),
                })
            })
            .collect();
        self.order_status(serde_json::json!({
            "url": progress.url, "finalizeURL": progress.finalize_url, "state": progress.state,
            "authorizations": authorizations,
        }))
        .await;
    }

    async fn present(&self, c: &Presented) -> Result<(), IssueError> {
        let fail = |e: kube::Error| {
            IssueError::Acme(format!("recording the Challenge for {}: {e}", c.dns_name))
        };
        let order_uid = self
            .order_uid
            .lock()
            .ok()
            .and_then(|u| u.clone())
            .ok_or_else(|| {
                IssueError::Acme(format!(
                    "the Order {} was not recorded, so no replica can serve its challenges",
                    self.order
                ))
            })?;
        let name = challenge_name(&self.order, &c.token);
        let solver = self.solvers.get(&c.dns_name).cloned().unwrap_or_default();
        let spec = crate::crd::acme::ChallengeSpec {
            url: c.url.clone(),
            authorization_url: c.authorization_url.clone(),
            dns_name: c.dns_name.clone(),
            wildcard: c.wildcard,
            type_: ChallengeType::Http01,
            token: c.token.clone(),
            key: c.key_authorization.clone(),
            solver,
            issuer_ref: self.issuer_ref.clone(),
        };
        let doc = serde_json::json!({
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
            "metadata": {"name": name, "namespace": self.namespace,
                         "ownerReferences": [owner("acme.cert-manager.io/v1", "Order", &self.order, &order_uid)]},
            "spec": spec,
        });
        let params = PatchParams::apply(MANAGER).force();
        self.challenges()
            .patch(&name, &params, &Patch::Apply(&doc))
            .await
            .map_err(fail)?;
        let status = serde_json::json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
            "status": {"processing": true, "presented": true, "state": State::Pending,
                       "reason": "Waiting for HTTP-01 challenge propagation: certgate serves the key on port 80"}});
        self.challenges()
            .patch_status(&name, &params, &Patch::Apply(&status))
            .await
            .map_err(fail)?;
        Ok(())
    }

    async fn order_closed(
        &self,
        state: State,
        reason: Option<&str>,
        chain: Option<&str>,
        presented: &[Presented],
    ) {
        let mut status = serde_json::json!({"state": state});
        if let Some(reason) = reason {
            status["reason"] = reason.into();
            status["failureTime"] = now().into();
        }
        if let Some(chain) = chain {
            status["certificate"] = base64::engine::general_purpose::STANDARD
                .encode(chain)
                .into();
        }
        self.order_status(status).await;
        for c in presented {
            let name = challenge_name(&self.order, &c.token);
            match self
                .challenges()
                .delete(&name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(error) => warn!(challenge = %name, %error, "could not delete the Challenge"),
            }
        }
    }
}

/// An issuance a previous leader left in flight, to be continued.
pub struct Resume {
    pub key: GeneratedKey,
    pub csr_der: Vec<u8>,
    pub order_url: String,
    pub order: String,
}

/// Is CertificateRequest `request` unfinished, with its key kept (`next_key_pem`, from the Secret
/// [`next_key_secret_name`]) and its Order open at the server?
pub async fn resumable(
    client: &Client,
    namespace: &str,
    request: &str,
    next_key_pem: Option<&[u8]>,
) -> Option<Resume> {
    let requests: Api<CertificateRequest> = Api::namespaced(client.clone(), namespace);
    let cr = requests.get_opt(request).await.ok()??;
    let finished = cr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready"));
    if finished {
        return None;
    }
    let csr_der = cr.spec.request.0.clone();
    let key = key::parse(std::str::from_utf8(next_key_pem?).ok()?).ok()?;
    if !csr_matches_key(&csr_der, &key) {
        return None;
    }
    let orders: Api<Order> = Api::namespaced(client.clone(), namespace);
    let name = order_name(request, &csr_der);
    let status = orders.get_opt(&name).await.ok()??.status?;
    let usable = status
        .state
        .is_none_or(|s| !s.is_final() || s == State::Valid);
    Some(Resume {
        key,
        csr_der,
        order_url: status.url.filter(|_| usable)?,
        order: name,
    })
}

/// Was `csr_der` made for `key`? (The same public key.)
fn csr_matches_key(csr_der: &[u8], key: &GeneratedKey) -> bool {
    use rcgen::PublicKeyData;
    use x509_parser::prelude::FromDer;
    x509_parser::certification_request::X509CertificationRequest::from_der(csr_der).is_ok_and(
        |(_, csr)| {
            csr.certification_request_info.subject_pki.raw
                == key.key_pair.subject_public_key_info().as_slice()
        },
    )
}

/// Keep the key of an issuance in flight, owned by its Certificate, so another replica can finish it.
pub async fn store_next_key(
    client: &Client,
    namespace: &str,
    certificate: (&str, &str),
    key_pem: &str,
) -> Result<(), String> {
    let data = serde_json::json!({crate::certs::decide::TLS_KEY: base64::engine::general_purpose::STANDARD.encode(key_pem)});
    apply_next_key(client, namespace, certificate, Some(data)).await?;
    let secret_name = next_key_secret_name(certificate.0);
    set_next_key_status(client, namespace, certificate.0, Some(&secret_name)).await;
    Ok(())
}

/// The certificate is written: the key in flight is no longer needed. Its Secret is emptied, not deleted
/// (certgate never deletes a Secret; this one goes with its Certificate).
pub async fn drop_next_key(client: &Client, namespace: &str, certificate: (&str, &str)) {
    if let Err(error) = apply_next_key(client, namespace, certificate, None).await {
        warn!(certificate = certificate.0, %error, "could not empty the next private key Secret");
    }
    set_next_key_status(client, namespace, certificate.0, None).await;
}

async fn apply_next_key(
    client: &Client,
    namespace: &str,
    (name, uid): (&str, &str),
    data: Option<serde_json::Value>,
) -> Result<(), String> {
    let secret_name = next_key_secret_name(name);
    let mut doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": secret_name, "namespace": namespace, "labels": {NEXT_KEY_LABEL: "true"},
                     "ownerReferences": [owner("cert-manager.io/v1", "Certificate", name, uid)]},
    });
    // Server-side apply without `data` removes the entries this manager set.
    if let Some(data) = data {
        doc["data"] = data;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    secrets
        .patch(
            &secret_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&doc),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            format!("storing the next private key in Secret {namespace}/{secret_name}: {e}")
        })
}

async fn set_next_key_status(
    client: &Client,
    namespace: &str,
    certificate: &str,
    name: Option<&str>,
) {
    let api: Api<crate::crd::certificate::Certificate> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({"status": {"nextPrivateKeySecretName": name}});
    if let Err(error) = api
        .patch_status(certificate, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        warn!(certificate, %error, "could not update the Certificate's nextPrivateKeySecretName");
    }
}

/// The HTTP-01 answers every replica serves: one per Challenge object not yet in a final state.
pub fn tokens_of<'a>(
    challenges: impl IntoIterator<Item = &'a Challenge>,
) -> HashMap<String, PendingToken> {
    challenges
        .into_iter()
        .filter(|c| c.spec.type_ == ChallengeType::Http01)
        .filter(|c| {
            !c.status
                .as_ref()
                .and_then(|s| s.state)
                .is_some_and(State::is_final)
        })
        .map(|c| {
            (
                c.spec.token.clone(),
                PendingToken {
                    domain: c.spec.dns_name.trim_end_matches('.').to_ascii_lowercase(),
                    key_authorization: c.spec.key.clone(),
                },
            )
        })
        .collect()
}

/// Watch the Challenges of the whole cluster and keep `tokens` equal to what they ask to serve, on every
/// replica (leader or not), without touching the routing configuration.
pub fn serve_challenges(
    client: &Client,
    tokens: Arc<Http01Tokens>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let (store, writer) = reflector::store::<Challenge>();
    let stream = reflector::reflector(
        writer,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff();
    tasks.spawn(async move {
        stream
            .for_each(|event| {
                match event {
                    Ok(_) => {
                        let state = store.state();
                        let next = tokens_of(state.iter().map(|c| c.as_ref()));
                        if next.len() != tokens.len() {
                            info!(challenges = next.len(), "HTTP-01 challenges served");
                        }
                        tokens.replace_all(next);
                    }
                    Err(error) => warn!(kind = "Challenge", %error, "watch failed; retrying"),
                }
                std::future::ready(())
            })
            .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn challenge(token: &str, domain: &str, state: Option<&str>) -> Challenge {
        let mut c = json!({"apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
            "metadata": {"name": token, "namespace": "default"},
            "spec": {"url": "u", "authorizationURL": "a", "dnsName": domain, "type": "HTTP-01",
                     "token": token, "key": format!("{token}.thumb"), "solver": {"http01": {"ingress": {}}},
                     "issuerRef": {"name": "pebble"}}});
        if let Some(s) = state {
            c["status"] = json!({"state": s, "processing": false, "presented": true});
        }
        serde_json::from_value(c).unwrap()
    }

    #[test]
    fn open_http01_challenges_are_served_and_final_ones_are_not() {
        let cs = [
            challenge("t1", "A.example.com.", None),
            challenge("t2", "b.example.com", Some("pending")),
            challenge("t3", "c.example.com", Some("valid")),
            challenge("t4", "d.example.com", Some("invalid")),
        ];
        let tokens = tokens_of(&cs);
        let mut served: Vec<(&str, &str)> = tokens
            .iter()
            .map(|(t, p)| (t.as_str(), p.domain.as_str()))
            .collect();
        served.sort();
        assert_eq!(served, [("t1", "a.example.com"), ("t2", "b.example.com")]);
        assert_eq!(tokens["t1"].key_authorization, "t1.thumb");
    }

    #[test]
    fn names_are_stable_per_request_and_token_and_differ_otherwise() {
        assert_eq!(order_name("web-1", b"csr"), order_name("web-1", b"csr"));
        assert_ne!(
            order_name("web-1", b"csr"),
            order_name("web-1", b"other csr")
        );
        let order = order_name("web-1", b"csr");
        assert!(order.starts_with("web-1-"));
        assert_ne!(
            challenge_name(&order, "tok1"),
            challenge_name(&order, "tok2")
        );
    }

    #[test]
    fn a_csr_matches_the_key_it_was_made_with_only() {
        let spec = crate::pki::key::KeySpec::default();
        let key = key::generate(&spec).unwrap();
        let other = key::generate(&spec).unwrap();
        let req = crate::pki::CertRequest {
            dns_names: vec!["a.example.com".into()],
            ..Default::default()
        };
        let csr = crate::pki::csr::build_csr(&req, &key.key_pair).unwrap();
        assert!(csr_matches_key(&csr, &key));
        assert!(!csr_matches_key(&csr, &other));
        assert!(!csr_matches_key(b"not a csr", &key));
    }
}
