//! Never issue beside a running cert-manager. Both controllers act on the same objects (Certificates,
//! their Secrets and CertificateRequests, issuer status, ingress-shim's Certificates); two of them would
//! overwrite each other's work. cert-manager's controller holds a `coordination.k8s.io` Lease while it runs
//! (`cert-manager-controller` in its `--leader-election-namespace`, `kube-system` by default; renewed every
//! 15 s, valid 60 s, released on a clean stop), so certgate's leader reads that Lease before it issues and
//! then periodically, and pauses issuing while the Lease is held and fresh. The proxy is not affected:
//! certgate keeps serving traffic (and may well be the ingress controller in front of cert-manager).
//!
//! `verdict` and `next_check` are pure (unit-tested); `watch` is the thin task that reads the Lease, logs
//! and records an Event on each change, and publishes whether issuing is allowed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::app::AppError;
use crate::cli::ControllerArgs;
use crate::world::ObjectKey;

/// cert-manager's controller Lease with cert-manager's defaults.
pub const DEFAULT_LEASE: &str = "kube-system/cert-manager-controller";

/// cert-manager's default `--leader-election-lease-duration`, for a Lease that does not say.
const DEFAULT_LEASE_SECONDS: i64 = 60;

/// What the Lease says about cert-manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No such Lease, released (no holder), or not renewed in time: certgate may issue.
    Clear(&'static str),
    /// cert-manager's controller leads until `until` unless it renews: certgate must not issue.
    Running {
        holder: String,
        until: DateTime<Utc>,
    },
    /// The Lease could not be read: not issuing until it can be (two issuers are worse than a pause).
    Unknown(String),
}

impl Verdict {
    pub fn may_issue(&self) -> bool {
        matches!(self, Verdict::Clear(_))
    }

    /// Same situation, for reporting only on changes (a renewal moves `until` every 15 s).
    fn same_as(&self, other: &Verdict) -> bool {
        match (self, other) {
            (Verdict::Clear(_), Verdict::Clear(_)) => true,
            (Verdict::Running { holder: a, .. }, Verdict::Running { holder: b, .. }) => a == b,
            (Verdict::Unknown(a), Verdict::Unknown(b)) => a == b,
            _ => false,
        }
    }
}

/// Decide from the Lease as read at `now` (`Ok(None)`: it does not exist; `Err`: it could not be read).
pub fn verdict(lease: Result<Option<&Lease>, &str>, now: DateTime<Utc>) -> Verdict {
    let lease = match lease {
        Err(error) => return Verdict::Unknown(error.to_owned()),
        Ok(None) => return Verdict::Clear("the Lease does not exist"),
        Ok(Some(lease)) => lease,
    };
    let Some(spec) = &lease.spec else {
        return Verdict::Clear("the Lease has no spec");
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Verdict::Clear("the Lease was released");
    }
    let Some(renewed) = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .and_then(|t| {
            DateTime::<Utc>::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond() as u32)
        })
    else {
        return Verdict::Clear("the Lease was never renewed");
    };
    let seconds = spec
        .lease_duration_seconds
        .map_or(DEFAULT_LEASE_SECONDS, i64::from);
    let until = renewed + chrono::Duration::seconds(seconds);
    if until > now {
        Verdict::Running { holder, until }
    } else {
        Verdict::Clear("the Lease expired")
    }
}

/// When to read the Lease again: every `period`, and at the moment a held Lease would expire if sooner, so
/// issuing resumes as soon as a stopped cert-manager's Lease runs out.
pub fn next_check(verdict: &Verdict, now: DateTime<Utc>, period: Duration) -> Duration {
    match verdict {
        Verdict::Running { until, .. } => (*until - now)
            .to_std()
            .map_or(Duration::ZERO, |d| d + Duration::from_millis(100))
            .min(period),
        _ => period,
    }
}

/// What the log line and the Event say, naming the Lease and what to do.
pub fn message(lease: &ObjectKey, verdict: &Verdict) -> String {
    match verdict {
        Verdict::Running { holder, until } => format!(
            "cert-manager is running: its controller holds the Lease {lease} (holder {holder}, valid until {}). \
             certgate issues no certificates while it does, so the two never write the same objects; traffic is \
             still served. To let certgate issue, stop cert-manager and keep its CRDs and Secrets \
             (kubectl -n cert-manager scale deployment cert-manager --replicas=0, or uninstall it); certgate \
             starts once the Lease is released or expires. --cert-manager-lease names another Lease.",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        Verdict::Unknown(error) => format!(
            "cannot read the Lease {lease} that tells whether cert-manager runs ({error}); certgate issues no \
             certificates until it can. Allow get on that Lease (the Helm chart does), or pass \
             --cert-manager-lease='' to skip the check."
        ),
        Verdict::Clear(why) => {
            format!("cert-manager is not running ({why}: {lease}); certgate issues certificates")
        }
    }
}

/// Parse `--cert-manager-lease`: `NAMESPACE/NAME`, or empty for no check.
pub fn parse_lease(flag: &str) -> Result<Option<ObjectKey>, String> {
    if flag.is_empty() {
        return Ok(None);
    }
    ObjectKey::parse(flag, "")
        .filter(|_| flag.contains('/'))
        .map(Some)
        .ok_or_else(|| {
            format!("--cert-manager-lease {flag:?} is not NAMESPACE/NAME (or '' for no check)")
        })
}

/// Check cert-manager's Lease (`--cert-manager-lease`, every `--cert-manager-check-interval`) while this
/// replica leads; the receiver says whether issuing is allowed. It is false until the first check after
/// leadership is gained, and always true when the flag is empty.
pub fn watch(
    client: &Client,
    recorder: &Recorder,
    args: &ControllerArgs,
    mut leading: watch::Receiver<bool>,
) -> Result<watch::Receiver<bool>, AppError> {
    let Some(lease) = parse_lease(&args.cert_manager_lease).map_err(AppError::Flag)? else {
        return Ok(watch::channel(true).1);
    };
    let (client, recorder) = (client.clone(), recorder.clone());
    let period = args.cert_manager_check_interval;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &lease.namespace);
        let mut reported: Option<Verdict> = None;
        loop {
            while !*leading.borrow_and_update() {
                tx.send_if_modified(|allowed| std::mem::replace(allowed, false));
                if leading.changed().await.is_err() {
                    return;
                }
            }
            let read = api.get_opt(&lease.name).await.map_err(|e| e.to_string());
            let now = Utc::now();
            let found = read.as_ref().map(Option::as_ref).map_err(String::as_str);
            let verdict = verdict(found, now);
            if !reported.as_ref().is_some_and(|r| r.same_as(&verdict)) {
                let first = reported.is_none();
                report(
                    &recorder,
                    &lease,
                    read.ok().flatten().as_ref(),
                    &verdict,
                    first,
                )
                .await;
                reported = Some(verdict.clone());
            }
            let allowed = verdict.may_issue();
            tx.send_if_modified(|a| std::mem::replace(a, allowed) != allowed);
            tokio::select! {
                _ = tokio::time::sleep(next_check(&verdict, now, period)) => {}
                changed = leading.changed() => if changed.is_err() { return },
            }
        }
    });
    Ok(rx)
}

/// Log the new verdict, and record it as an Event regarding the Lease: a Warning while cert-manager runs
/// or the Lease cannot be read, a Normal one when issuing resumes after that (not at a quiet start).
async fn report(
    recorder: &Recorder,
    key: &ObjectKey,
    lease: Option<&Lease>,
    verdict: &Verdict,
    first: bool,
) {
    let text = message(key, verdict);
    let (type_, reason) = match verdict {
        Verdict::Running { .. } => (EventType::Warning, "CertManagerRunning"),
        Verdict::Unknown(_) => (EventType::Warning, "CertManagerUnknown"),
        Verdict::Clear(_) if first => {
            info!(lease = %key, "{text}");
            return;
        }
        Verdict::Clear(_) => (EventType::Normal, "CertManagerStopped"),
    };
    if verdict.may_issue() {
        info!(lease = %key, reason, "{text}");
    } else {
        warn!(lease = %key, reason, "{text}");
    }
    let reference = match lease {
        Some(lease) => lease.object_ref(&()),
        None => k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("coordination.k8s.io/v1".into()),
            kind: Some("Lease".into()),
            namespace: Some(key.namespace.to_string()),
            name: Some(key.name.to_string()),
            ..Default::default()
        },
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(text.chars().take(1024).collect()),
        action: "Issue".into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &reference).await {
        warn!(%error, lease = %key, "could not record an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs_from_now: i64) -> String {
        (Utc::now() + chrono::Duration::seconds(secs_from_now))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    fn lease(spec: serde_json::Value) -> Lease {
        serde_json::from_value(
            json!({"metadata": {"name": "cert-manager-controller", "namespace": "kube-system"},
                                      "spec": spec}),
        )
        .unwrap()
    }

    /// A Lease as cert-manager's controller leaves it: renewed `ago` seconds ago, valid `duration`.
    fn held(ago: i64, duration: i32) -> Lease {
        lease(
            json!({"holderIdentity": "cm-7d9f-external-cert-manager-controller",
                     "renewTime": at(-ago), "acquireTime": at(-ago - 300), "leaseDurationSeconds": duration}),
        )
    }

    #[test]
    fn a_fresh_lease_means_cert_manager_runs_and_certgate_does_not_issue() {
        let v = verdict(Ok(Some(&held(10, 60))), Utc::now());
        let Verdict::Running { holder, until } = &v else {
            panic!("{v:?}")
        };
        assert_eq!(holder, "cm-7d9f-external-cert-manager-controller");
        assert!(*until > Utc::now() + chrono::Duration::seconds(45));
        assert!(!v.may_issue());
    }

    #[test]
    fn an_expired_lease_means_cert_manager_stopped_without_releasing_it() {
        let v = verdict(Ok(Some(&held(61, 60))), Utc::now());
        assert_eq!(v, Verdict::Clear("the Lease expired"));
        assert!(v.may_issue());
    }

    #[test]
    fn a_released_or_missing_lease_lets_certgate_issue() {
        // client-go's release on a clean stop: no holder, a one-second duration.
        let released =
            lease(json!({"holderIdentity": "", "renewTime": at(0), "leaseDurationSeconds": 1}));
        assert_eq!(
            verdict(Ok(Some(&released)), Utc::now()),
            Verdict::Clear("the Lease was released")
        );
        assert_eq!(
            verdict(Ok(None), Utc::now()),
            Verdict::Clear("the Lease does not exist")
        );
    }

    #[test]
    fn a_lease_that_cannot_be_read_stops_issuing() {
        let v = verdict(Err("leases \"x\" is forbidden"), Utc::now());
        assert!(!v.may_issue());
        assert!(
            message(&ObjectKey::new("kube-system", "x"), &v).contains("--cert-manager-lease=''")
        );
    }

    #[test]
    fn a_lease_without_a_duration_counts_cert_managers_default_minute() {
        let no_duration = lease(json!({"holderIdentity": "cm", "renewTime": at(-50)}));
        assert!(!verdict(Ok(Some(&no_duration)), Utc::now()).may_issue());
        let old = lease(json!({"holderIdentity": "cm", "renewTime": at(-70)}));
        assert!(verdict(Ok(Some(&old)), Utc::now()).may_issue());
        let never = lease(json!({"holderIdentity": "cm"}));
        assert!(verdict(Ok(Some(&never)), Utc::now()).may_issue());
    }

    #[test]
    fn the_lease_is_read_again_when_it_would_expire_if_that_is_sooner() {
        let now = Utc::now();
        let period = Duration::from_secs(10);
        let soon = Verdict::Running {
            holder: "cm".into(),
            until: now + chrono::Duration::seconds(3),
        };
        let check = next_check(&soon, now, period);
        assert!(
            check > Duration::from_secs(3) && check < Duration::from_secs(4),
            "{check:?}"
        );
        let later = Verdict::Running {
            holder: "cm".into(),
            until: now + chrono::Duration::seconds(50),
        };
        assert_eq!(next_check(&later, now, period), period);
        assert_eq!(next_check(&Verdict::Clear("x"), now, period), period);
    }

    #[test]
    fn the_message_names_the_lease_the_holder_and_what_to_do() {
        let key = ObjectKey::new("kube-system", "cert-manager-controller");
        let v = verdict(Ok(Some(&held(1, 60))), Utc::now());
        let text = message(&key, &v);
        for part in [
            "kube-system/cert-manager-controller",
            "cm-7d9f-external-cert-manager-controller",
            "scale deployment cert-manager --replicas=0",
            "--cert-manager-lease",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }

    #[test]
    fn the_flag_is_namespace_slash_name_or_empty() {
        assert_eq!(
            parse_lease(DEFAULT_LEASE).unwrap(),
            Some(ObjectKey::new("kube-system", "cert-manager-controller"))
        );
        assert_eq!(parse_lease("").unwrap(), None);
        assert!(parse_lease("cert-manager-controller").is_err());
        assert!(parse_lease("a/b/c").is_err());
    }

    #[test]
    fn renewals_are_not_reported_as_changes() {
        let now = Utc::now();
        let a = verdict(Ok(Some(&held(1, 60))), now);
        let b = verdict(Ok(Some(&held(0, 60))), now);
        assert_ne!(a, b);
        assert!(a.same_as(&b));
        assert!(!a.same_as(&Verdict::Clear("the Lease expired")));
    }
}
