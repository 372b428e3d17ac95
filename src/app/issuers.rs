//! Kubernetes mode: keep each Issuer's and ClusterIssuer's Ready condition in step with
//! `certs::issuer_status` (written only when it changes).

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tracing::warn;

use crate::certs::issuer_status::{Readiness, readiness};
use crate::crd::issuer::{ClusterIssuer, Issuer, IssuerStatus};
use crate::routing::build::secret_data;
use crate::world::{ObjectKey, World};

fn current(status: Option<&IssuerStatus>) -> Option<(String, String)> {
    let c = status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        format!("{:?}", c.status),
        c.reason.clone().unwrap_or_default(),
    ))
}

fn patch(r: &Readiness, generation: Option<i64>) -> serde_json::Value {
    serde_json::json!({"status": {"conditions": [{
        "type": "Ready", "status": if r.ready { "True" } else { "False" }, "reason": r.reason, "message": r.message,
        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "observedGeneration": generation,
    }]}})
}

fn changed(r: &Readiness, status: Option<&IssuerStatus>) -> bool {
    let want = (
        if r.ready { "True" } else { "False" }.to_owned(),
        r.reason.to_owned(),
    );
    current(status) != Some(want)
}

pub async fn update(client: &Client, world: &World, cluster_resource_namespace: &str) {
    for (key, issuer) in &world.issuers {
        let secret = |name: &str| {
            world
                .secrets
                .get(&ObjectKey::new(key.namespace.clone(), name))
                .map(|s| secret_data(s))
        };
        if let Some(r) =
            readiness(&issuer.spec, secret).filter(|r| changed(r, issuer.status.as_ref()))
        {
            let api: Api<Issuer> = Api::namespaced(client.clone(), &key.namespace);
            let body = patch(&r, issuer.metadata.generation);
            if let Err(error) = api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                warn!(issuer = %key, %error, "could not update Issuer status");
            }
        }
    }
    for (name, issuer) in &world.cluster_issuers {
        let secret = |n: &str| {
            world
                .secrets
                .get(&ObjectKey::new(cluster_resource_namespace, n))
                .map(|s| secret_data(s))
        };
        if let Some(r) =
            readiness(&issuer.spec, secret).filter(|r| changed(r, issuer.status.as_ref()))
        {
            let api: Api<ClusterIssuer> = Api::all(client.clone());
            let body = patch(&r, issuer.metadata.generation);
            if let Err(error) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                warn!(clusterissuer = %issuer.name_any(), %error, "could not update ClusterIssuer status");
            }
        }
    }
}
