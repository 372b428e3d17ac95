//! Ingress status (`status.loadBalancer.ingress`), as ingress-nginx publishes it: the addresses of
//! `--publish-service`'s load balancer, or `--publish-status-address`, on every Ingress this instance serves —
//! so `kubectl get ingress` shows an ADDRESS. Written by the leader, only when it differs.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tracing::warn;

use crate::world::{ObjectKey, World};

/// The addresses to publish (pure): the flag's list, or the Service's load-balancer status.
pub fn addresses(
    world: &World,
    publish_service: Option<&ObjectKey>,
    fixed: &[String],
) -> Vec<Value> {
    if let Some(key) = publish_service {
        let lb = world
            .services
            .get(key)
            .and_then(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.clone());
        return lb
            .unwrap_or_default()
            .into_iter()
            .map(|i| match (i.ip, i.hostname) {
                (Some(ip), _) => json!({"ip": ip}),
                (None, Some(host)) => json!({"hostname": host}),
                (None, None) => json!({}),
            })
            .filter(|v| v != &json!({}))
            .collect();
    }
    fixed
        .iter()
        .map(|a| {
            if a.parse::<std::net::IpAddr>().is_ok() {
                json!({"ip": a})
            } else {
                json!({"hostname": a})
            }
        })
        .collect()
}

pub async fn update(client: &Client, world: &World, served: &[ObjectKey], addresses: &[Value]) {
    if addresses.is_empty() {
        return;
    }
    for key in served {
        let Some(ing) = world.ingresses.get(key) else {
            continue;
        };
        let current = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| serde_json::to_value(&lb.ingress).ok())
            .unwrap_or(Value::Null);
        if current == Value::Array(addresses.to_vec()) {
            continue;
        }
        let api: Api<k8s_openapi::api::networking::v1::Ingress> =
            Api::namespaced(client.clone(), &key.namespace);
        let patch = json!({"status": {"loadBalancer": {"ingress": addresses}}});
        if let Err(error) = api
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            warn!(ingress = %key, %error, "could not publish the Ingress status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fixed_addresses_are_ips_or_host_names() {
        let a = addresses(
            &World::default(),
            None,
            &["192.0.2.10".into(), "lb.example.com".into()],
        );
        assert_eq!(
            a,
            [
                json!({"ip": "192.0.2.10"}),
                json!({"hostname": "lb.example.com"})
            ]
        );
    }

    #[test]
    fn a_published_service_gives_its_load_balancer_addresses() {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"name": "certgate", "namespace": "certgate"},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}, {"hostname": "lb.example.net"}]}}
        }))
        .unwrap();
        let mut w = World::default();
        let key = ObjectKey::new("certgate", "certgate");
        w.services.insert(key.clone(), Arc::new(svc));
        assert_eq!(
            addresses(&w, Some(&key), &[]),
            [
                json!({"ip": "203.0.113.5"}),
                json!({"hostname": "lb.example.net"})
            ]
        );
        assert!(addresses(&w, Some(&ObjectKey::new("x", "missing")), &[]).is_empty());
    }
}
