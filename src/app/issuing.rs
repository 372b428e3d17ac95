//! Standalone issuing: Certificates and Issuers from the manifest directory; the issued Secrets written as
//! YAML into `--state-dir` (mode 0600), read back like any manifest, so the proxy serves them at once and a
//! restart issues nothing twice.
//!
//! Decisions are `certs::decide` (pure); this module only schedules: one issuance per Certificate at a
//! time, failures retried with exponential backoff, renewals woken at their renewal time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::acme::http01::Http01Tokens;
use crate::app::orders::{self, KubeJournal, OrderSpecFields};
use crate::certs::acme::{self, AcmeSettings, LocalJournal};
use crate::certs::decide::{self, Decision, TLS_KEY};
use crate::certs::issue;
use crate::certs::spec::{self, Wanted};
use crate::crd::acme::AcmeChallengeSolver;
use crate::crd::certificate::Certificate;
use crate::crd::certificate_request::CertificateRequest;
use crate::crd::issuer::IssuerSpec;
use crate::routing::build::secret_data;
use crate::world::{ObjectKey, World};
use kube::Resource;

const FIRST_BACKOFF: Duration = Duration::from_secs(60);
/// Issuances running at once per process.
const MAX_CONCURRENT_ISSUANCES: usize = 10;
/// The longest one issuance may take (ACME validation included) before it counts as failed.
const ISSUANCE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a Secret just written may take to show up in the watch cache before the Certificate is
/// decided on again from what the cache holds.
const WRITE_VISIBLE_WITHIN: Duration = Duration::from_secs(30);

/// What an issuance or account-registration task hands back.
pub struct Outcome(Done);

enum Done {
    Issuance {
        certificate: ObjectKey,
        secret: ObjectKey,
        result: Result<Issued, String>,
    },
    /// An ACME issuer's account registered (or found again) ahead of issuance: a new key to store, if one
    /// was made.
    Registration {
        issuer: IssuerId,
        /// The issuer's generation, and whether an account key was stored.
        tried_with: (Option<i64>, bool),
        account: ObjectKey,
        account_field: String,
        /// A new key to store, if one was made, and the account (URL, email).
        result: Result<Registered, String>,
    },
}

/// A registration's outcome: a new account key to store, if one was made, and the account (URL, email).
type Registered = (Option<String>, AcmeAccount);
/// An ACME account as registered: its URL and the email it was registered with.
type AcmeAccount = (String, Option<String>);

/// An Issuer (`Some(namespace)`) or ClusterIssuer (`None`) by kind, namespace and name.
pub type IssuerId = (String, Option<String>, String);

/// The CertificateRequest an issuance is recorded as (`<certificate>-<revision>`, owned by the Certificate),
/// so `kubectl get certificaterequest` shows what was asked and how it went, as with cert-manager.
struct RequestRecord {
    namespace: String,
    name: String,
    revision: i64,
    certificate: String,
    certificate_uid: String,
    owner: Option<serde_json::Value>,
    issuer: crate::crd::meta::IssuerRef,
    order: OrderSpecFields,
    issuer_ref: serde_json::Value,
    duration: Option<String>,
    is_ca: Option<bool>,
    usages: serde_json::Value,
}

impl RequestRecord {
    fn for_certificate(cert: &Certificate) -> Self {
        let revision = cert.status.as_ref().and_then(|s| s.revision).unwrap_or(0) + 1;
        let name = cert.metadata.name.clone().unwrap_or_default();
        Self {
            namespace: cert
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: format!("{name}-{revision}"),
            revision,
            certificate: name,
            certificate_uid: cert.metadata.uid.clone().unwrap_or_default(),
            issuer: cert.spec.issuer_ref.clone(),
            order: OrderSpecFields {
                common_name: cert.spec.common_name.clone(),
                dns_names: cert.spec.dns_names.clone().unwrap_or_default(),
                ip_addresses: cert.spec.ip_addresses.clone().unwrap_or_default(),
                duration: cert.spec.duration.clone(),
            },
            owner: cert
                .controller_owner_ref(&())
                .and_then(|o| serde_json::to_value(o).ok()),
            issuer_ref: serde_json::to_value(&cert.spec.issuer_ref).unwrap_or_default(),
            duration: cert.spec.duration.clone(),
            is_ca: cert.spec.is_ca,
            usages: serde_json::to_value(&cert.spec.usages).unwrap_or_default(),
        }
    }
}

struct Issued {
    data: BTreeMap<String, Vec<u8>>,
    annotations: BTreeMap<String, String>,
    /// A new ACME account key to store: (Secret, key name in it, PEM).
    account_key: Option<(ObjectKey, String, String)>,
    /// The key was kept in a next-private-key Secret while the order was open (Kubernetes, ACME).
    next_key_stored: bool,
    /// The ACME account's URL and registered email.
    acme_account: Option<AcmeAccount>,
    certificate_uid: String,
}

struct Failure {
    attempts: u32,
    retry_at: Instant,
}

/// The certificate just written to a Certificate's Secret, until the world shows it.
struct Written {
    crt: Vec<u8>,
    at: Instant,
}

/// Where issued Secrets and Certificate status go: YAML files in standalone mode, the API server in
/// Kubernetes mode (server-side apply, one field manager; status through the status subresource).
#[derive(Clone)]
pub enum Sink {
    Files(PathBuf),
    Kube(kube::Client),
}

/// Field manager of every write certgate makes.
pub const MANAGER: &str = "certgate";

impl Sink {
    async fn write_secret(
        &self,
        key: &ObjectKey,
        data: BTreeMap<String, Vec<u8>>,
        annotations: BTreeMap<String, String>,
        tls: bool,
    ) -> Result<String, String> {
        match self {
            Sink::Files(dir) => write_secret(dir, key, data, annotations, tls)
                .map(|p| p.display().to_string())
                .map_err(|e| e.to_string()),
            Sink::Kube(client) => {
                let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &key.namespace);
                let doc = secret_doc(key, data, annotations, tls);
                let params = kube::api::PatchParams::apply(MANAGER).force();
                api.patch(&key.name, &params, &kube::api::Patch::Apply(&doc))
                    .await
                    .map(|_| format!("Secret {key}"))
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Create the CertificateRequest for an issuance (Kubernetes mode only); its uid once written.
    async fn record_request(&self, r: &RequestRecord, csr_der: &[u8]) -> Option<String> {
        use base64::Engine;
        let Sink::Kube(client) = self else {
            return None;
        };
        let mut metadata = serde_json::json!({
            "name": r.name, "namespace": r.namespace,
            "annotations": {"cert-manager.io/certificate-name": r.certificate,
                            "cert-manager.io/certificate-revision": r.revision.to_string()},
        });
        if let Some(owner) = &r.owner {
            metadata["ownerReferences"] = serde_json::json!([owner]);
        }
        let mut spec = serde_json::json!({
            "request": base64::engine::general_purpose::STANDARD.encode(csr_der),
            "issuerRef": r.issuer_ref,
        });
        if let Some(d) = &r.duration {
            spec["duration"] = serde_json::json!(d);
        }
        if let Some(ca) = r.is_ca {
            spec["isCA"] = serde_json::json!(ca);
        }
        if !r.usages.is_null() {
            spec["usages"] = r.usages.clone();
        }
        let doc = serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest", "metadata": metadata, "spec": spec});
        let api: kube::Api<CertificateRequest> =
            kube::Api::namespaced(client.clone(), &r.namespace);
        match api
            .patch(
                &r.name,
                &kube::api::PatchParams::apply(MANAGER).force(),
                &kube::api::Patch::Apply(&doc),
            )
            .await
        {
            Ok(cr) => {
                // A new attempt under the same name (the last one failed): its outcome is not this one's.
                let ended = cr
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready"));
                if ended {
                    let status = serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                        "status": {"conditions": [approved_condition()]}});
                    let params = kube::api::PatchParams::apply(MANAGER).force();
                    if let Err(error) = api
                        .patch_status(&r.name, &params, &kube::api::Patch::Apply(&status))
                        .await
                    {
                        warn!(request = %r.name, %error, "could not reset the CertificateRequest status");
                    }
                }
                cr.metadata.uid
            }
            Err(error) => {
                warn!(request = %r.name, %error, "could not record the CertificateRequest");
                None
            }
        }
    }

    /// Record how the issuance went on its CertificateRequest, and the revision on the Certificate.
    async fn request_done(&self, r: &RequestRecord, result: &Result<Issued, String>) {
        use base64::Engine;
        let Sink::Kube(client) = self else { return };
        let b64 = |v: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(v);
        let approved = approved_condition();
        let status = match result {
            Ok(issued) => {
                let mut s = serde_json::json!({"conditions": [approved, condition("Ready", "True", "Issued", "Certificate fetched from issuer successfully", None)]});
                if let Some(crt) = issued.data.get(decide::TLS_CRT) {
                    s["certificate"] = serde_json::json!(b64(crt));
                }
                if let Some(ca) = issued.data.get(issue::CA_CRT) {
                    s["ca"] = serde_json::json!(b64(ca));
                }
                s
            }
            Err(error) => serde_json::json!({
                "conditions": [approved, condition("Ready", "False", "Failed", error, None)],
                "failureTime": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
        };
        let api: kube::Api<CertificateRequest> =
            kube::Api::namespaced(client.clone(), &r.namespace);
        let patch = serde_json::json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest", "status": status});
        if let Err(error) = api
            .patch_status(
                &r.name,
                &kube::api::PatchParams::apply(MANAGER).force(),
                &kube::api::Patch::Apply(&patch),
            )
            .await
        {
            warn!(request = %r.name, %error, "could not update the CertificateRequest status");
        }
        if result.is_ok() {
            let key = ObjectKey::new(r.namespace.clone(), r.certificate.clone());
            self.certificate_status(&key, serde_json::json!({"revision": r.revision}))
                .await;
        }
    }

    /// An ACME issuer is Ready once its account is registered (cert-manager's `ACMEAccountRegistered`), and
    /// not when registration fails (`ErrRegisterACMEAccount`). `result` is the registration's.
    /// `Ok(Some((uri, email)))`: the account as registered, recorded in `status.acme` as cert-manager does.
    async fn acme_issuer_status(
        &self,
        issuer: &IssuerId,
        result: Result<Option<&AcmeAccount>, &str>,
    ) {
        let Sink::Kube(client) = self else { return };
        let (status, reason, message) = match result {
            Ok(_) => (
                "True",
                "ACMEAccountRegistered",
                "The ACME account was registered with the ACME server".to_owned(),
            ),
            Err(e) => (
                "False",
                "ErrRegisterACMEAccount",
                format!("Failed to register ACME account: {e}"),
            ),
        };
        let mut body = serde_json::json!({"status": {"conditions": [{
            "type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }]}});
        // As cert-manager records the registration: the account URL and the email it was registered with.
        if let Ok(Some((uri, email))) = result {
            body["status"]["acme"] = serde_json::json!({"uri": uri, "lastRegisteredEmail": email});
        }
        let params = kube::api::PatchParams::default();
        let (kind, namespace, name) = issuer;
        let written = match namespace {
            Some(ns) => {
                let api: kube::Api<crate::crd::issuer::Issuer> =
                    kube::Api::namespaced(client.clone(), ns);
                api.patch_status(name, &params, &kube::api::Patch::Merge(&body))
                    .await
                    .map(|_| ())
            }
            None => {
                let api: kube::Api<crate::crd::issuer::ClusterIssuer> =
                    kube::Api::all(client.clone());
                api.patch_status(name, &params, &kube::api::Patch::Merge(&body))
                    .await
                    .map(|_| ())
            }
        };
        if let Err(error) = written {
            warn!(issuer = %name, kind = %kind, %error, "could not update the ACME issuer's status");
        }
    }

    /// Set the Certificate's status (Kubernetes mode; standalone mode has no status to write).
    async fn certificate_status(&self, key: &ObjectKey, status: serde_json::Value) {
        let Sink::Kube(client) = self else { return };
        let api: kube::Api<Certificate> = kube::Api::namespaced(client.clone(), &key.namespace);
        // A merge patch: each update sets only its own fields (revision, conditions, failure counters) and
        // leaves the others as they are; `null` removes a field.
        let patch = serde_json::json!({"status": status});
        let params = kube::api::PatchParams::default();
        if let Err(error) = api
            .patch_status(&key.name, &params, &kube::api::Patch::Merge(&patch))
            .await
        {
            warn!(certificate = %key, %error, "could not update Certificate status");
        }
    }
}

/// cert-manager approves its own requests; certgate records the same.
fn approved_condition() -> serde_json::Value {
    condition(
        "Approved",
        "True",
        "cert-manager.io",
        "Certificate request has been approved by cert-manager.io",
        None,
    )
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> serde_json::Value {
    serde_json::json!({"type": type_, "status": status, "reason": reason, "message": message,
                       "lastTransitionTime": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                       "observedGeneration": generation})
}

/// Is the Certificate's status already Ready for this certificate? (Then nothing is written.)
fn status_is_ready_for(cert: &Certificate, not_after: chrono::DateTime<Utc>) -> bool {
    let Some(status) = &cert.status else {
        return false;
    };
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == crate::crd::meta::ConditionStatus::True);
    ready
        && status
            .not_after
            .as_ref()
            .is_some_and(|t| t.0.as_second() == not_after.timestamp())
}

pub struct Issuing {
    sink: Sink,
    tokens: Arc<Http01Tokens>,
    http_listener: SocketAddr,
    cluster_resource_namespace: String,
    max_backoff: Duration,
    in_flight: HashSet<ObjectKey>,
    /// Certificates whose Secret was just written: in Kubernetes the write reaches the watch cache a moment
    /// later, and a reconcile in between must not read "Secret does not exist" and issue a second time.
    written: HashMap<ObjectKey, Written>,
    failures: HashMap<ObjectKey, Failure>,
    /// Certificates whose issuer is not usable yet, with the reason last logged.
    waiting: HashMap<ObjectKey, String>,
    /// ACME account Secrets being created by an issuance in flight, and which Certificate does it.
    registering: HashSet<ObjectKey>,
    registering_for: HashMap<ObjectKey, ObjectKey>,
    /// ACME issuers whose account this process registered or verified, at which generation.
    registered: HashMap<IssuerId, Option<i64>>,
    /// ACME issuers whose account registration is in flight.
    registrations: HashSet<IssuerId>,
    /// ACME issuers whose account registration failed, retried with the same backoff as issuances, or at
    /// once when what it was tried with changes: (generation, whether a key was stored).
    registration_failures: HashMap<IssuerId, ((Option<i64>, bool), Failure)>,
    /// Earliest renewal among up-to-date Certificates.
    next_renewal: Option<Instant>,
    done: mpsc::UnboundedSender<Outcome>,
}

impl Issuing {
    pub fn new(
        sink: Sink,
        tokens: Arc<Http01Tokens>,
        http_listener: SocketAddr,
        cluster_resource_namespace: String,
        max_backoff: Duration,
    ) -> (Self, mpsc::UnboundedReceiver<Outcome>) {
        let (done, outcomes) = mpsc::unbounded_channel();
        let issuing = Self {
            sink,
            tokens,
            http_listener,
            cluster_resource_namespace,
            max_backoff,
            in_flight: HashSet::new(),
            written: HashMap::new(),
            failures: HashMap::new(),
            waiting: HashMap::new(),
            registering: HashSet::new(),
            registering_for: HashMap::new(),
            registered: HashMap::new(),
            registrations: HashSet::new(),
            registration_failures: HashMap::new(),
            next_renewal: None,
            done,
        };
        (issuing, outcomes)
    }

    /// When the loop should call `reconcile` again without any change: a retry or a renewal. Only instants
    /// still ahead count: a retry that is due but waits for something else (the Certificate is in flight
    /// again, its issuer's account is being registered) is taken up when that outcome arrives, and waking
    /// for it now would spin the loop.
    pub fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        self.failures
            .values()
            .chain(self.registration_failures.values().map(|(_, f)| f))
            .map(|f| f.retry_at)
            .chain(self.written.values().map(|w| w.at + WRITE_VISIBLE_WITHIN))
            .chain(self.next_renewal)
            .filter(|at| *at > now)
            .min()
    }

    /// Start an issuance for every Certificate that needs one. `foreign_secrets`: Secrets certgate must
    /// not replace (defined in the manifests, or in Kubernetes not made for this Certificate).
    pub fn reconcile(&mut self, world: &World, foreign_secrets: &HashSet<ObjectKey>) {
        self.register_acme_issuers(world);
        let now = Utc::now();
        let mut next_renewal: Option<Instant> = None;
        let (mut up_to_date, mut started) = (0usize, 0usize);
        for (key, cert) in &world.certificates {
            let wanted = match spec::wanted(&cert.spec) {
                Ok(w) => w,
                Err(e) => {
                    warn!(certificate = %key, reason = "BadConfig", error = %e, "Certificate not issued");
                    continue;
                }
            };
            let secret_key = ObjectKey::new(key.namespace.clone(), cert.spec.secret_name.clone());
            let data = world.secrets.get(&secret_key).map(|s| secret_data(s));
            if let Some(written) = self.written.get(key) {
                let seen = data.as_ref().and_then(|d| d.get(decide::TLS_CRT)) == Some(&written.crt);
                if !seen && written.at.elapsed() < WRITE_VISIBLE_WITHIN {
                    continue;
                }
                self.written.remove(key);
            }
            let reason = match decide::decide(&wanted, data.as_ref(), now) {
                Decision::UpToDate {
                    not_before,
                    not_after,
                    renewal_time,
                } => {
                    self.failures.remove(key);
                    if matches!(self.sink, Sink::Kube(_)) && !status_is_ready_for(cert, not_after) {
                        let secs = chrono::SecondsFormat::Secs;
                        let status = serde_json::json!({
                            "conditions": [condition("Ready", "True", "Ready", "Certificate is up to date and has not expired", cert.metadata.generation)],
                            "notBefore": not_before.to_rfc3339_opts(secs, true),
                            "notAfter": not_after.to_rfc3339_opts(secs, true),
                            "renewalTime": renewal_time.to_rfc3339_opts(secs, true),
                            "lastFailureTime": null,
                            "failedIssuanceAttempts": null,
                        });
                        let (sink, key) = (self.sink.clone(), key.clone());
                        tokio::spawn(async move { sink.certificate_status(&key, status).await });
                    }
                    let wait = (renewal_time - now).to_std().unwrap_or_default();
                    let at = Instant::now() + wait;
                    next_renewal = Some(next_renewal.map_or(at, |n| n.min(at)));
                    up_to_date += 1;
                    continue;
                }
                Decision::Issue { reason, message } => (reason, message),
            };
            if foreign_secrets.contains(&secret_key) {
                if self.waiting.get(key).map(String::as_str) != Some("foreign") {
                    warn!(certificate = %key, secret = %secret_key, "the Secret exists and is not managed by certgate for this Certificate; not overwritten");
                    self.waiting.insert(key.clone(), "foreign".into());
                }
                continue;
            }
            if self.in_flight.contains(key)
                || self
                    .failures
                    .get(key)
                    .is_some_and(|f| f.retry_at > Instant::now())
            {
                continue;
            }
            if self.start(world, key.clone(), cert, wanted, secret_key, data) {
                info!(certificate = %key, reason = reason.0, detail = %reason.1, "issuing");
                started += 1;
            }
        }
        self.next_renewal = next_renewal;
        if !world.certificates.is_empty() {
            info!(
                certificates = world.certificates.len(),
                up_to_date,
                started,
                in_flight = self.in_flight.len(),
                "certificates reconciled"
            );
        }
    }

    fn start(
        &mut self,
        world: &World,
        key: ObjectKey,
        cert: &Certificate,
        wanted: Wanted,
        secret: ObjectKey,
        existing: Option<BTreeMap<String, Vec<u8>>>,
    ) -> bool {
        // Bounded concurrency, as cert-manager's workers are: the rest start as these finish (each outcome
        // triggers a reconcile), and an ACME server is never hit with hundreds of orders at once.
        if self.in_flight.len() >= MAX_CONCURRENT_ISSUANCES {
            return false;
        }
        // A missing Issuer or issuer Secret is a wait, not a failed attempt: it is re-checked on every
        // change (an Issuer's CA Secret is often issued by certgate itself a moment later).
        let plan = match self.plan(world, &key, cert) {
            Ok(plan) => plan,
            Err(problem) => {
                if self.waiting.get(&key) != Some(&problem) {
                    warn!(certificate = %key, reason = "IssuerNotReady", %problem, "waiting for the issuer");
                    self.waiting.insert(key, problem);
                }
                return false;
            }
        };
        // The first issuance against an ACME issuer without a stored account key registers the account;
        // the others wait for that key instead of each registering an account of their own (Let's Encrypt
        // allows 10 new accounts per IP per 3 hours).
        if let PlanKind::Acme {
            settings, account, ..
        } = &plan.kind
        {
            if settings.account_key_pem.is_some() {
                // The key is stored and visible: registration is over.
                self.registering.remove(account);
            } else {
                if !self.registering.insert(account.clone()) {
                    return false;
                }
                self.registering_for.insert(key.clone(), account.clone());
            }
        }
        self.waiting.remove(&key);
        self.in_flight.insert(key.clone());
        let (tokens, listener, done) = (self.tokens.clone(), self.http_listener, self.done.clone());
        let (sink, request) = (self.sink.clone(), RequestRecord::for_certificate(cert));
        let acme_issuer = plan.acme_issuer.clone();
        // The key of an issuance a previous leader left in flight (Kubernetes mode).
        let next_key = world
            .secrets
            .get(&ObjectKey::new(
                key.namespace.clone(),
                orders::next_key_secret_name(&key.name),
            ))
            .and_then(|s| secret_data(s).remove(TLS_KEY));
        tokio::spawn(async move {
            let existing_key = existing
                .as_ref()
                .and_then(|d| d.get(TLS_KEY))
                .and_then(|k| String::from_utf8(k.clone()).ok());
            // A server that stops answering must not hold the Certificate "in flight" forever.
            let attempt = run(
                plan,
                &wanted,
                existing_key.as_deref(),
                next_key,
                &tokens,
                listener,
                &sink,
                &request,
            );
            let result = tokio::time::timeout(ISSUANCE_TIMEOUT, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "issuance did not finish within {ISSUANCE_TIMEOUT:?}"
                    ))
                });
            // Other failures (validation, the order) say nothing about the issuer's account.
            let registration = match &result {
                Ok(issued) => Some(Ok(issued.acme_account.as_ref())),
                Err(e)
                    if e.contains("registering the account") || e.contains("ACME account key") =>
                {
                    Some(Err(e.as_str()))
                }
                Err(_) => None,
            };
            if let (Some(issuer), Some(registration)) = (&acme_issuer, registration) {
                sink.acme_issuer_status(issuer, registration).await;
            }
            let _ = done.send(Outcome(Done::Issuance {
                certificate: key,
                secret,
                result,
            }));
        });
        true
    }

    /// Which issuer, with what it needs from other Secrets, resolved now (the task owns no World).
    fn plan(&self, world: &World, key: &ObjectKey, cert: &Certificate) -> Result<Plan, String> {
        let r = &cert.spec.issuer_ref;
        if r.group
            .as_deref()
            .is_some_and(|g| !g.is_empty() && g != "cert-manager.io")
        {
            return Err(format!(
                "issuerRef.group {:?}: external issuers are not supported by certgate",
                r.group
            ));
        }
        let (issuer_spec, secrets_namespace, issuer_kind): (&IssuerSpec, &str, &str) =
            match r.kind.as_deref() {
                None | Some("") | Some("Issuer") => {
                    let issuer = world
                        .issuers
                        .get(&ObjectKey::new(key.namespace.clone(), r.name.clone()))
                        .ok_or_else(|| format!("Issuer {}/{} not found", key.namespace, r.name))?;
                    (&issuer.spec, &key.namespace, "Issuer")
                }
                Some("ClusterIssuer") => {
                    let issuer = world
                        .cluster_issuers
                        .get(&r.name)
                        .ok_or_else(|| format!("ClusterIssuer {} not found", r.name))?;
                    (
                        &issuer.spec,
                        &self.cluster_resource_namespace,
                        "ClusterIssuer",
                    )
                }
                Some(other) => {
                    return Err(format!(
                        "issuerRef.kind {other:?} is not Issuer or ClusterIssuer"
                    ));
                }
            };
        let secret = |name: &str| {
            world
                .secrets
                .get(&ObjectKey::new(secrets_namespace, name))
                .map(|s| secret_data(s))
        };
        let mut annotations = BTreeMap::from([
            (
                "cert-manager.io/certificate-name".to_owned(),
                key.name.to_string(),
            ),
            ("cert-manager.io/issuer-name".to_owned(), r.name.clone()),
            (
                "cert-manager.io/issuer-kind".to_owned(),
                issuer_kind.to_owned(),
            ),
            (
                "cert-manager.io/issuer-group".to_owned(),
                r.group.clone().unwrap_or_else(|| "cert-manager.io".into()),
            ),
        ]);
        if let Some(cn) = &cert.spec.common_name {
            annotations.insert("cert-manager.io/common-name".into(), cn.clone());
        }
        annotations.insert(
            "cert-manager.io/alt-names".into(),
            cert.spec.dns_names.clone().unwrap_or_default().join(","),
        );
        annotations.insert(
            "cert-manager.io/ip-sans".into(),
            cert.spec.ip_addresses.clone().unwrap_or_default().join(","),
        );
        annotations.insert(
            "cert-manager.io/uri-sans".into(),
            cert.spec.uris.clone().unwrap_or_default().join(","),
        );

        let kind = if issuer_spec.self_signed.is_some() {
            PlanKind::SelfSigned
        } else if let Some(ca) = &issuer_spec.ca {
            let data = secret(&ca.secret_name).ok_or_else(|| {
                format!("CA Secret {secrets_namespace}/{} not found", ca.secret_name)
            })?;
            PlanKind::Ca(data)
        } else if let Some(acme) = acme_settings(issuer_spec, secrets_namespace, world) {
            let (settings, account, account_field) = acme?;
            // Each name needs a solver, and certgate can only use HTTP-01 ones.
            let all_solvers = issuer_spec
                .acme
                .as_ref()
                .and_then(|a| a.solvers.as_deref())
                .unwrap_or_default();
            let labels = cert.metadata.labels.clone().unwrap_or_default();
            let mut solvers = BTreeMap::new();
            for name in cert
                .spec
                .dns_names
                .iter()
                .flatten()
                .chain(cert.spec.ip_addresses.iter().flatten())
            {
                let solver = crate::certs::solver::select(all_solvers, name, &labels)
                    .map_err(|e| format!("{issuer_kind} {}: {e}", r.name))?;
                solvers.insert(name.clone(), solver.clone());
            }
            PlanKind::Acme {
                settings: Box::new(settings),
                account,
                account_field,
                solvers,
            }
        } else {
            return Err(format!(
                "{issuer_kind} {}: only selfSigned, ca and acme issuers are supported by certgate",
                r.name
            ));
        };
        let acme_issuer = matches!(kind, PlanKind::Acme { .. }).then(|| {
            let ns = (issuer_kind == "Issuer").then(|| key.namespace.to_string());
            (issuer_kind.to_owned(), ns, r.name.clone())
        });
        Ok(Plan {
            kind,
            annotations,
            acme_issuer,
        })
    }

    /// Register the account of every ACME issuer ahead of its first issuance (cert-manager does it when the
    /// issuer appears), so `kubectl get clusterissuer` shows READY, or why not, before any Certificate asks.
    /// An account whose key is stored is verified once per process and issuer generation.
    fn register_acme_issuers(&mut self, world: &World) {
        let issuers = world
            .issuers
            .iter()
            .map(|(key, i)| {
                let id = (
                    "Issuer".to_owned(),
                    Some(key.namespace.to_string()),
                    key.name.to_string(),
                );
                (id, &i.spec, &*key.namespace, i.metadata.generation)
            })
            .chain(world.cluster_issuers.iter().map(|(name, i)| {
                let id = ("ClusterIssuer".to_owned(), None, name.clone());
                let ns = self.cluster_resource_namespace.as_str();
                (id, &i.spec.issuer, ns, i.metadata.generation)
            }));
        let mut start = Vec::new();
        for (id, spec, secrets_namespace, generation) in issuers {
            // Unsupported settings are reported when a Certificate asks for the issuer.
            let Some(Ok((settings, account, account_field))) =
                acme_settings(spec, secrets_namespace, world)
            else {
                continue;
            };
            if self.registrations.contains(&id) {
                continue;
            }
            let stored = settings.account_key_pem.is_some();
            if stored {
                // The key is stored and visible: any registration that made it is over.
                self.registering.remove(&account);
                if self.registered.get(&id) == Some(&generation) {
                    continue;
                }
            }
            let tried_with = (generation, stored);
            if self
                .registration_failures
                .get(&id)
                .is_some_and(|(with, f)| *with == tried_with && f.retry_at > Instant::now())
            {
                continue;
            }
            // Without a stored key, the first to register makes it (a Certificate's issuance or this); the
            // others wait for it, so an issuer never gets two accounts.
            if !stored && !self.registering.insert(account.clone()) {
                continue;
            }
            self.registrations.insert(id.clone());
            start.push((id, tried_with, settings, account, account_field));
        }
        for (issuer, tried_with, settings, account, account_field) in start {
            info!(issuer = %issuer.2, kind = %issuer.0, account = %account, "registering the ACME account");
            let done = self.done.clone();
            tokio::spawn(async move {
                let result =
                    tokio::time::timeout(ISSUANCE_TIMEOUT, acme::register_account(&settings))
                        .await
                        .unwrap_or_else(|_| {
                            Err(crate::certs::issue::IssueError::Acme(format!(
                                "registering the account did not finish within {ISSUANCE_TIMEOUT:?}"
                            )))
                        })
                        .map_err(|e| e.to_string())
                        .map(|(key, uri)| (key, (uri, settings.email.clone())));
                let _ = done.send(Outcome(Done::Registration {
                    issuer,
                    tried_with,
                    account,
                    account_field,
                    result,
                }));
            });
        }
    }

    /// Store a newly made account key, then set the issuer's Ready condition.
    async fn finish_registration(
        &mut self,
        issuer: IssuerId,
        tried_with: (Option<i64>, bool),
        account: ObjectKey,
        account_field: String,
        result: Result<Registered, String>,
    ) -> bool {
        let registered = result.as_ref().ok().map(|(_, account)| account.clone());
        let result = match result.map(|(key, _)| key) {
            Ok(Some(pem)) => self
                .sink
                .write_secret(
                    &account,
                    BTreeMap::from([(account_field, pem.into_bytes())]),
                    BTreeMap::new(),
                    false,
                )
                .await
                .map(|_| true)
                .map_err(|e| format!("ACME account key: storing Secret {account}: {e}")),
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        };
        self.registrations.remove(&issuer);
        // A new key's mark stays until the key shows up in the world, so no Certificate registers another.
        let made_key = matches!(result, Ok(true));
        if !made_key && !tried_with.1 {
            self.registering.remove(&account);
        }
        match &result {
            Ok(_) => {
                info!(issuer = %issuer.2, kind = %issuer.0, account = %account, "ACME account registered");
                self.registration_failures.remove(&issuer);
                self.registered.insert(issuer.clone(), tried_with.0);
            }
            Err(error) => {
                let attempts = self
                    .registration_failures
                    .get(&issuer)
                    .filter(|(with, _)| *with == tried_with)
                    .map_or(0, |(_, f)| f.attempts)
                    + 1;
                let backoff = backoff(attempts, self.max_backoff);
                warn!(issuer = %issuer.2, kind = %issuer.0, %error, attempts, retry_in_s = backoff.as_secs(), "ACME account registration failed");
                let retry_at = Instant::now() + backoff;
                let failure = Failure { attempts, retry_at };
                self.registration_failures
                    .insert(issuer.clone(), (tried_with, failure));
            }
        }
        let status = result
            .as_ref()
            .map(|_| registered.as_ref())
            .map_err(String::as_str);
        self.sink.acme_issuer_status(&issuer, status).await;
        matches!(result, Ok(true))
    }

    /// Record an outcome: on success write the Secret (and a new account key) into the state dir.
    /// Returns whether files changed (the caller reloads).
    pub async fn finish(&mut self, outcome: Outcome) -> bool {
        match outcome.0 {
            Done::Issuance {
                certificate,
                secret,
                result,
            } => self.finish_issuance(certificate, secret, result).await,
            Done::Registration {
                issuer,
                tried_with,
                account,
                account_field,
                result,
            } => {
                self.finish_registration(issuer, tried_with, account, account_field, result)
                    .await
            }
        }
    }

    async fn finish_issuance(
        &mut self,
        certificate: ObjectKey,
        secret: ObjectKey,
        result: Result<Issued, String>,
    ) -> bool {
        let outcome = IssuanceOutcome {
            certificate,
            secret,
            result,
        };
        self.in_flight.remove(&outcome.certificate);
        // On success the mark stays until the stored account key shows up in the world (see `start`);
        // on failure another Certificate may try to register.
        let registered_by_this = self.registering_for.remove(&outcome.certificate);
        if outcome.result.is_err()
            && let Some(account) = &registered_by_this
        {
            self.registering.remove(account);
        }
        match outcome.result {
            Ok(issued) => {
                self.failures.remove(&outcome.certificate);
                if let Some((secret, field, pem)) = &issued.account_key
                    && let Err(e) = self
                        .sink
                        .write_secret(
                            secret,
                            BTreeMap::from([(field.clone(), pem.clone().into_bytes())]),
                            BTreeMap::new(),
                            false,
                        )
                        .await
                {
                    warn!(secret = %secret, error = %e, "could not store the ACME account key");
                    self.registering.remove(secret);
                }
                let crt = issued
                    .data
                    .get(decide::TLS_CRT)
                    .cloned()
                    .unwrap_or_default();
                match self
                    .sink
                    .write_secret(&outcome.secret, issued.data, issued.annotations, true)
                    .await
                {
                    Ok(written) => {
                        info!(certificate = %outcome.certificate, secret = %outcome.secret, to = %written, "certificate issued");
                        let at = Instant::now();
                        self.written
                            .insert(outcome.certificate.clone(), Written { crt, at });
                        if let (true, Sink::Kube(client)) = (issued.next_key_stored, &self.sink) {
                            let c = &outcome.certificate;
                            let uid = issued.certificate_uid.as_str();
                            orders::drop_next_key(client, &c.namespace, (&c.name, uid)).await;
                        }
                        true
                    }
                    Err(e) => {
                        warn!(certificate = %outcome.certificate, error = %e, "could not write the issued Secret");
                        false
                    }
                }
            }
            Err(error) => {
                let attempts = self
                    .failures
                    .get(&outcome.certificate)
                    .map_or(0, |f| f.attempts)
                    + 1;
                let backoff = backoff(attempts, self.max_backoff);
                warn!(certificate = %outcome.certificate, reason = "Failed", %error, attempts, retry_in_s = backoff.as_secs(), "issuance failed");
                let status = serde_json::json!({
                    "conditions": [
                        condition("Ready", "False", "Failed", &error, None),
                        condition("Issuing", "False", "Failed", &format!("The certificate request has failed to complete and will be retried: {error}"), None),
                    ],
                    "lastFailureTime": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "failedIssuanceAttempts": attempts,
                });
                self.sink
                    .certificate_status(&outcome.certificate, status)
                    .await;
                self.failures.insert(
                    outcome.certificate,
                    Failure {
                        attempts,
                        retry_at: Instant::now() + backoff,
                    },
                );
                false
            }
        }
    }
}

/// The HMAC key of an external account binding: the Secret entry holds it base64url-encoded, as
/// cert-manager reads it (padding tolerated).
fn eab_key(
    eab: &crate::crd::acme::ExternalAccountBinding,
    secret: impl Fn(&str) -> Option<BTreeMap<String, Vec<u8>>>,
    namespace: &str,
) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let r = &eab.key_secret_ref;
    let field = r.key.as_deref().ok_or_else(|| {
        "acme.externalAccountBinding.keySecretRef.key is not set: name the Secret entry holding the MAC key".to_owned()
    })?;
    let data = secret(&r.name).ok_or_else(|| {
        format!(
            "external account binding Secret {namespace}/{} not found",
            r.name
        )
    })?;
    let value = data.get(field).ok_or_else(|| {
        format!(
            "external account binding Secret {namespace}/{} has no entry {field:?}",
            r.name
        )
    })?;
    let text = String::from_utf8_lossy(value);
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| {
            format!(
                "external account binding Secret {namespace}/{} entry {field:?} is not base64url",
                r.name
            )
        })
}

struct IssuanceOutcome {
    certificate: ObjectKey,
    secret: ObjectKey,
    result: Result<Issued, String>,
}

/// An issuer's ACME settings, account Secret and the key's field in it; `None` for other kinds,
/// `Some(Err)` for ACME settings certgate cannot use.
fn acme_settings(
    issuer: &IssuerSpec,
    secrets_namespace: &str,
    world: &World,
) -> Option<Result<(AcmeSettings, ObjectKey, String), String>> {
    let acme = issuer.acme.as_ref()?;
    if acme.skip_tls_verify == Some(true) {
        return Some(Err("acme.skipTLSVerify is not supported by certgate; give the server's CA in acme.caBundle".into()));
    }
    let http01 = acme.solvers.iter().flatten().any(|s| s.http01.is_some());
    if !http01 {
        return Some(Err("the ACME issuer has no http01 solver; certgate answers HTTP-01 only (DNS-01 is not supported)".into()));
    }
    let secret = |name: &str| {
        world
            .secrets
            .get(&ObjectKey::new(secrets_namespace, name))
            .map(|s| secret_data(s))
    };
    let eab = match &acme.external_account_binding {
        None => None,
        Some(eab) => match eab_key(eab, secret, secrets_namespace) {
            Ok(key) => Some((eab.key_id.clone(), key)),
            Err(e) => return Some(Err(e)),
        },
    };
    let account = ObjectKey::new(secrets_namespace, acme.private_key_secret_ref.name.clone());
    let account_field = acme
        .private_key_secret_ref
        .key
        .clone()
        .unwrap_or_else(|| TLS_KEY.into());
    let account_key_pem = world
        .secrets
        .get(&account)
        .map(|s| secret_data(s))
        .and_then(|d| d.get(&account_field).cloned())
        .and_then(|k| String::from_utf8(k).ok());
    let settings = AcmeSettings {
        directory: acme.server.clone(),
        email: acme.email.clone().filter(|e| !e.is_empty()),
        ca_bundle: acme.ca_bundle.as_ref().map(|b| b.0.clone()),
        account_secret: account.to_string(),
        account_key_pem,
        eab,
    };
    Some(Ok((settings, account, account_field)))
}

/// 1 min, 2, 4, … up to `max`: quick enough for a typo fixed a minute later, and inside Let's Encrypt's
/// failed-validation limits (5 per hour per name) once it grows.
pub fn backoff(attempts: u32, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(max)
}

struct Plan {
    kind: PlanKind,
    annotations: BTreeMap<String, String>,
    /// For ACME issuers: (kind, namespace for an Issuer, name), whose Ready condition follows account registration.
    acme_issuer: Option<IssuerId>,
}

enum PlanKind {
    SelfSigned,
    Ca(BTreeMap<String, Vec<u8>>),
    Acme {
        settings: Box<AcmeSettings>,
        account: ObjectKey,
        account_field: String,
        /// The solver chosen for each name.
        solvers: BTreeMap<String, AcmeChallengeSolver>,
    },
}

#[allow(clippy::too_many_arguments)] // the task's whole input, resolved before it was spawned
async fn run(
    plan: Plan,
    wanted: &Wanted,
    existing_key: Option<&str>,
    next_key: Option<Vec<u8>>,
    tokens: &Http01Tokens,
    listener: SocketAddr,
    sink: &Sink,
    request: &RequestRecord,
) -> Result<Issued, String> {
    let kube_acme = match (&plan.kind, sink) {
        (PlanKind::Acme { .. }, Sink::Kube(client)) => Some(client),
        _ => None,
    };
    // An order a previous leader left open is continued with its key and CSR, not opened again.
    let resume = match kube_acme {
        Some(client) => {
            orders::resumable(
                client,
                &request.namespace,
                &request.name,
                next_key.as_deref(),
            )
            .await
        }
        None => None,
    };
    let (key, csr, order_url) = match resume {
        Some(r) => {
            info!(certificate = %request.certificate, order = %r.order, "resuming the ACME order a previous leader opened");
            (r.key, r.csr_der, Some(r.order_url))
        }
        None => {
            let key = issue::private_key_off_runtime(wanted, existing_key)
                .await
                .map_err(|e| e.to_string())?;
            let csr = crate::pki::csr::build_csr(&wanted.request, &key.key_pair)
                .map_err(|e| e.to_string())?;
            if let Some(client) = kube_acme {
                let certificate = (
                    request.certificate.as_str(),
                    request.certificate_uid.as_str(),
                );
                orders::store_next_key(client, &request.namespace, certificate, &key.pem).await?;
            }
            (key, csr, None)
        }
    };
    let request_uid = sink.record_request(request, &csr).await;
    let issuance = Issuance {
        key: &key,
        csr: &csr,
        order_url: order_url.as_deref(),
        request_uid,
    };
    let result = issue_with(plan, wanted, issuance, tokens, listener, sink, request).await;
    sink.request_done(request, &result).await;
    result
}

/// One issuance's key and CSR, and where it stands.
struct Issuance<'a> {
    key: &'a crate::pki::key::GeneratedKey,
    csr: &'a [u8],
    /// An open ACME order to continue.
    order_url: Option<&'a str>,
    /// The CertificateRequest's uid (Kubernetes mode), owner of the Order.
    request_uid: Option<String>,
}

async fn issue_with(
    plan: Plan,
    wanted: &Wanted,
    issuance: Issuance<'_>,
    tokens: &Http01Tokens,
    listener: SocketAddr,
    sink: &Sink,
    request: &RequestRecord,
) -> Result<Issued, String> {
    let now = Utc::now();
    let key = issuance.key;
    let mut next_key_stored = false;
    let mut acme_account = None;
    let (data, account_key) = match plan.kind {
        PlanKind::SelfSigned => (
            issue::self_signed(wanted, key, now).map_err(|e| e.to_string())?,
            None,
        ),
        PlanKind::Ca(ca) => (
            issue::with_ca(wanted, key, &ca, now).map_err(|e| e.to_string())?,
            None,
        ),
        PlanKind::Acme {
            settings,
            account,
            account_field,
            solvers,
        } => {
            let mut identifiers: Vec<instant_acme::Identifier> = wanted
                .request
                .dns_names
                .iter()
                .cloned()
                .map(instant_acme::Identifier::Dns)
                .collect();
            identifiers.extend(
                wanted
                    .request
                    .ip_addresses
                    .iter()
                    .copied()
                    .map(instant_acme::Identifier::Ip),
            );
            let (csr, resume) = (issuance.csr, issuance.order_url);
            let issued = match sink {
                Sink::Files(_) => {
                    let journal = LocalJournal(tokens);
                    acme::issue(&settings, identifiers, csr, resume, &journal, listener).await
                }
                Sink::Kube(client) => {
                    next_key_stored = true;
                    let uid = issuance.request_uid.ok_or_else(|| {
                        format!(
                            "the CertificateRequest {} could not be recorded, so its Order cannot be",
                            request.name
                        )
                    })?;
                    let journal = KubeJournal::new(
                        client.clone(),
                        &request.namespace,
                        (request.name.clone(), uid),
                        csr,
                        request.issuer.clone(),
                        request.order.clone(),
                        solvers,
                    );
                    acme::issue(&settings, identifiers, csr, resume, &journal, listener).await
                }
            }
            .map_err(|e| e.to_string())?;
            acme_account = Some((issued.account_uri, settings.email.clone()));
            (
                issue::secret_data(issued.chain_pem, key.pem.clone(), None),
                issued
                    .new_account_key_pem
                    .map(|pem| (account, account_field, pem)),
            )
        }
    };
    Ok(Issued {
        data,
        annotations: plan.annotations,
        account_key,
        next_key_stored,
        acme_account,
        certificate_uid: request.certificate_uid.clone(),
    })
}

/// Write a Secret manifest atomically (temporary file, then rename), readable by the owner only: it holds
/// private keys.
fn write_secret(
    dir: &Path,
    key: &ObjectKey,
    data: BTreeMap<String, Vec<u8>>,
    annotations: BTreeMap<String, String>,
    tls: bool,
) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let doc = secret_doc(key, data, annotations, tls);
    let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    let path = dir.join(format!("{}.{}.secret.yaml", key.namespace, key.name));
    let tmp = dir.join(format!(".{}.{}.tmp", key.namespace, key.name));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// A `v1/Secret` document with the issued data.
fn secret_doc(
    key: &ObjectKey,
    data: BTreeMap<String, Vec<u8>>,
    annotations: BTreeMap<String, String>,
    tls: bool,
) -> serde_json::Value {
    let mut secret = Secret::default();
    secret.metadata.name = Some(key.name.to_string());
    secret.metadata.namespace = Some(key.namespace.to_string());
    if !annotations.is_empty() {
        secret.metadata.annotations = Some(annotations);
    }
    secret.type_ = Some(if tls { "kubernetes.io/tls" } else { "Opaque" }.into());
    secret.data = Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect());
    let mut doc = serde_json::to_value(&secret).unwrap_or_default();
    doc["apiVersion"] = "v1".into();
    doc["kind"] = "Secret".into();
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A World with a SelfSigned Issuer and a Certificate `web` (Secret `web-tls`) in `ns`, and `secret`.
    fn world_with(secret: Option<Secret>) -> World {
        let issuer: crate::crd::issuer::Issuer = serde_json::from_value(json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": "selfsigned", "namespace": "ns"}, "spec": {"selfSigned": {}}}))
        .unwrap();
        let cert: Certificate = serde_json::from_value(json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"secretName": "web-tls", "dnsNames": ["web.example.com"], "issuerRef": {"name": "selfsigned"},
                     "privateKey": {"algorithm": "ECDSA"}}}))
        .unwrap();
        let mut world = World::default();
        world
            .issuers
            .insert(ObjectKey::new("ns", "selfsigned"), Arc::new(issuer));
        world
            .certificates
            .insert(ObjectKey::new("ns", "web"), Arc::new(cert));
        if let Some(secret) = secret {
            world
                .secrets
                .insert(ObjectKey::new("ns", "web-tls"), Arc::new(secret));
        }
        world
    }

    #[tokio::test]
    async fn an_issuers_account_is_registered_once_at_a_time_and_retried_after_a_backoff() {
        // Without a stored key (registration) and with one (verification).
        for stored in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (mut issuing, mut outcomes) = Issuing::new(
                Sink::Files(dir.path().to_owned()),
                Arc::new(Http01Tokens::default()),
                "127.0.0.1:9".parse().unwrap(),
                "cert-manager".into(),
                Duration::from_secs(3600),
            );
            // Nothing listens on port 9: registration fails.
            let issuer: crate::crd::issuer::ClusterIssuer = serde_json::from_value(json!({
                "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "le"},
                "spec": {"acme": {"server": "https://127.0.0.1:9/directory", "privateKeySecretRef": {"name": "le-account"},
                                  "solvers": [{"http01": {"ingress": {}}}]}}}))
            .unwrap();
            let mut world = World::default();
            world.cluster_issuers.insert("le".into(), Arc::new(issuer));
            let account = ObjectKey::new("cert-manager", "le-account");
            if stored {
                let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": "le-account", "namespace": "cert-manager"},
                    "data": {"tls.key": base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD, key)}}))
                .unwrap();
                world.secrets.insert(account.clone(), Arc::new(secret));
            }
            for _ in 0..3 {
                issuing.reconcile(&world, &HashSet::new());
            }
            assert_eq!(
                issuing.registrations.len(),
                1,
                "stored {stored}: one registration at a time"
            );
            assert_eq!(
                issuing.registering.contains(&account),
                !stored,
                "Certificates wait only for a key being made"
            );

            let outcome = outcomes.recv().await.unwrap();
            assert!(!issuing.finish(outcome).await, "nothing written");
            assert!(issuing.registrations.is_empty() && !issuing.registering.contains(&account));
            issuing.reconcile(&world, &HashSet::new());
            assert!(
                issuing.registrations.is_empty(),
                "stored {stored}: retried before its backoff"
            );
            let wake = issuing.next_wake().expect("a retry is scheduled");
            assert!(wake > Instant::now() + Duration::from_secs(50), "{wake:?}");
            assert!(
                outcomes.try_recv().is_err(),
                "stored {stored}: a second registration ran"
            );
        }
    }

    #[tokio::test]
    async fn a_retry_that_is_due_while_the_certificate_is_in_flight_does_not_wake_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let (mut issuing, _outcomes) = Issuing::new(
            Sink::Files(dir.path().to_owned()),
            Arc::new(Http01Tokens::default()),
            "127.0.0.1:9".parse().unwrap(),
            "cert-manager".into(),
            Duration::from_secs(2),
        );
        let key = ObjectKey::new("default", "site");
        let due = Instant::now() - Duration::from_millis(1);
        let failure = |retry_at| Failure {
            attempts: 1,
            retry_at,
        };
        issuing.in_flight.insert(key.clone());
        issuing.failures.insert(key.clone(), failure(due));
        assert_eq!(
            issuing.next_wake(),
            None,
            "a due retry in flight would spin the loop"
        );
        let later = Instant::now() + Duration::from_secs(2);
        let issuer = ("ClusterIssuer".to_owned(), None, "le".to_owned());
        issuing
            .registration_failures
            .insert(issuer, ((None, false), failure(later)));
        assert_eq!(issuing.next_wake(), Some(later), "the retry still ahead");
    }

    #[tokio::test]
    async fn a_secret_just_written_is_not_issued_again_before_the_world_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut issuing, mut outcomes) = Issuing::new(
            Sink::Files(dir.path().to_owned()),
            Arc::new(Http01Tokens::default()),
            "127.0.0.1:9".parse().unwrap(),
            "cert-manager".into(),
            Duration::from_secs(3600),
        );
        let before = world_with(None);
        issuing.reconcile(&before, &HashSet::new());
        assert_eq!(issuing.in_flight.len(), 1, "the missing Secret is issued");
        let outcome = outcomes.recv().await.unwrap();
        assert!(issuing.finish(outcome).await, "the Secret is written");

        // The watch cache has not delivered the write yet: the World still has no Secret.
        issuing.reconcile(&before, &HashSet::new());
        assert!(issuing.in_flight.is_empty(), "issued a second time");

        // Once the World shows the written Secret, the Certificate is up to date and the mark is gone.
        let text = std::fs::read_to_string(dir.path().join("ns.web-tls.secret.yaml")).unwrap();
        let secret: Secret = serde_json::from_str(&text).unwrap();
        issuing.reconcile(&world_with(Some(secret)), &HashSet::new());
        assert!(issuing.in_flight.is_empty() && issuing.written.is_empty());
        assert!(issuing.next_renewal.is_some(), "renewal scheduled");
    }

    #[test]
    fn backoff_starts_at_a_minute_and_doubles_up_to_the_bound() {
        let max = Duration::from_secs(3600);
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(1000, max), max);
    }
}
