//! Leader election over a `coordination.k8s.io` Lease: every replica serves traffic, one at a time runs
//! the issuing controllers. The holder renews the Lease every third of its duration; another replica takes
//! over once it has not been renewed for a whole duration. Writes use the Lease's resourceVersion, so two
//! replicas can never both win the same round.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

pub const LEASE_NAME: &str = "certgate-controller";

/// Is `lease` held by someone other than `me` and still fresh at `now`? (Pure.)
pub fn held_by_other(lease: &Lease, me: &str, now: chrono::DateTime<Utc>) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return false;
    }
    let duration = chrono::Duration::seconds(spec.lease_duration_seconds.unwrap_or(15).into());
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    now.timestamp() < renewed + duration.num_seconds()
}

fn micro_now() -> Option<MicroTime> {
    serde_json::from_value(serde_json::json!(
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    ))
    .ok()
}

/// One round: acquire, renew or observe. `Ok(true)`: this replica leads until the next round.
async fn round(api: &Api<Lease>, me: &str, duration: Duration) -> Result<bool, kube::Error> {
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(15);
    match api.get_opt(LEASE_NAME).await? {
        None => {
            let lease: Lease = serde_json::from_value(serde_json::json!({
                "metadata": {"name": LEASE_NAME},
                "spec": {"holderIdentity": me, "leaseDurationSeconds": seconds,
                         "acquireTime": micro_now(), "renewTime": micro_now(), "leaseTransitions": 0}
            }))
            .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(lease) if held_by_other(&lease, me, Utc::now()) => Ok(false),
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(me) {
                spec.holder_identity = Some(me.to_owned());
                spec.acquire_time = micro_now();
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = micro_now();
            spec.lease_duration_seconds = Some(seconds);
            match api
                .replace(&lease.name_any(), &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Run elections forever; the receiver says whether this replica leads now.
pub fn elect(
    client: Client,
    namespace: &str,
    me: String,
    duration: Duration,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, namespace);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(duration / 3);
        loop {
            tick.tick().await;
            let leading = match round(&api, &me, duration).await {
                Ok(leading) => leading,
                Err(error) => {
                    // Unsure: step down rather than risk two leaders.
                    warn!(%error, "leader election failed; not leading");
                    false
                }
            };
            if *tx.borrow() != leading {
                info!(identity = %me, leading, "leadership changed");
                if tx.send(leading).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> Lease {
        let renew = (Utc::now() - chrono::Duration::seconds(renewed_secs_ago))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        serde_json::from_value(json!({"metadata": {"name": LEASE_NAME},
            "spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": duration}}))
        .unwrap()
    }

    #[test]
    fn a_fresh_lease_of_another_replica_is_respected_and_an_expired_one_is_not() {
        let now = Utc::now();
        assert!(held_by_other(&lease("b", 2, 15), "a", now));
        assert!(!held_by_other(&lease("b", 20, 15), "a", now));
        assert!(
            !held_by_other(&lease("a", 2, 15), "a", now),
            "our own lease"
        );
        assert!(!held_by_other(&lease("", 2, 15), "a", now), "released");
    }
}
