//! ingress-shim in Kubernetes: the Certificates annotated Ingresses ask for (`certs::shim`, pure) applied
//! as objects controlled by their Ingress, as cert-manager does: created and updated with the Ingress,
//! deleted when their `spec.tls` entry goes, garbage-collected with the Ingress (the Secret stays). A
//! same-named Certificate the Ingress does not control is never touched.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::warn;

use crate::app::issuing::MANAGER;
use crate::certs::shim;
use crate::crd::certificate::Certificate;
use crate::world::{ObjectKey, World};

/// What to do, decided from the world (pure): applies (with the reason for the Event) and deletions.
#[derive(Debug, Default, PartialEq)]
pub struct ShimPlan {
    pub apply: Vec<(ObjectKey, &'static str, serde_json::Value)>,
    pub delete: Vec<(ObjectKey, ObjectKey)>,
    /// (Ingress, reason, message) for Events.
    pub problems: Vec<(ObjectKey, &'static str, String)>,
}

pub fn plan(world: &World) -> ShimPlan {
    let mut out = ShimPlan::default();
    for (ing_key, ing) in &world.ingresses {
        let uid = ing.uid().unwrap_or_default();
        let owned_by_ingress = |c: &Certificate| {
            c.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        };
        let desired = match shim::certificates(ing, None) {
            Ok(d) => d,
            Err(bad) => {
                out.problems.push((ing_key.clone(), "BadConfig", bad.0));
                continue;
            }
        };
        let mut wanted_names = BTreeSet::new();
        for cert in desired {
            let key = ObjectKey::of(&cert);
            wanted_names.insert(key.name.clone());
            let reason = match world.certificates.get(&key) {
                Some(existing) if !owned_by_ingress(existing) => {
                    out.problems.push((
                        ing_key.clone(),
                        "BadConfig",
                        format!("Certificate {key} exists and is not controlled by this Ingress; it is left alone"),
                    ));
                    continue;
                }
                Some(existing) if same_spec(existing, &cert) => continue,
                Some(_) => "UpdateCertificate",
                None => "CreateCertificate",
            };
            out.apply.push((key, reason, document(ing, cert)));
        }
        // A Certificate this Ingress controls whose tls entry is gone.
        for (key, cert) in world
            .certificates
            .range(ObjectKey::new(ing_key.namespace.clone(), String::new())..)
        {
            if key.namespace != ing_key.namespace {
                break;
            }
            if owned_by_ingress(cert) && !wanted_names.contains(&key.name) {
                out.delete.push((ing_key.clone(), key.clone()));
            }
        }
    }
    out
}

fn same_spec(existing: &Certificate, desired: &Certificate) -> bool {
    serde_json::to_value(&existing.spec).ok() == serde_json::to_value(&desired.spec).ok()
        && existing.labels() == desired.labels()
}

/// The Certificate to apply: controlled by the Ingress, so garbage collection removes it with the Ingress.
fn document(ing: &Ingress, cert: Certificate) -> serde_json::Value {
    let mut doc = serde_json::to_value(&cert).unwrap_or_default();
    if let Some(owner) = ing.controller_owner_ref(&()) {
        doc["metadata"]["ownerReferences"] = serde_json::json!([owner]);
    }
    doc
}

pub async fn execute(
    client: &Client,
    recorder: &Recorder,
    world: &World,
    plan: ShimPlan,
    said: &mut BTreeMap<ObjectKey, String>,
) {
    let event = |type_, reason: &str, note: String| Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1024).collect()),
        action: "IngressShim".into(),
        secondary: None,
    };
    let publish = |ing: &ObjectKey, ev: Event| {
        let Some(ingress) = world.ingresses.get(ing) else {
            return;
        };
        let (recorder, reference) = (recorder.clone(), ingress.object_ref(&()));
        tokio::spawn(async move {
            let _ = recorder.publish(&ev, &reference).await;
        });
    };
    for (ing, reason, message) in plan.problems {
        if said.get(&ing) != Some(&message) {
            warn!(ingress = %ing, reason, problem = %message, "ingress-shim");
            publish(&ing, event(EventType::Warning, reason, message.clone()));
            said.insert(ing, message);
        }
    }
    for (key, reason, doc) in plan.apply {
        let api: Api<Certificate> = Api::namespaced(client.clone(), &key.namespace);
        match api
            .patch(
                &key.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&doc),
            )
            .await
        {
            Ok(_) => {
                let owner = doc["metadata"]["ownerReferences"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let ing = ObjectKey::new(key.namespace.clone(), owner);
                publish(
                    &ing,
                    event(EventType::Normal, reason, format!("{reason} {}", key.name)),
                );
            }
            Err(error) => {
                warn!(certificate = %key, %error, "ingress-shim could not apply the Certificate")
            }
        }
    }
    for (ing, key) in plan.delete {
        let api: Api<Certificate> = Api::namespaced(client.clone(), &key.namespace);
        match api.delete(&key.name, &DeleteParams::default()).await {
            Ok(_) => publish(
                &ing,
                event(
                    EventType::Normal,
                    "DeleteCertificate",
                    format!("Deleted Certificate {}", key.name),
                ),
            ),
            Err(error) => {
                warn!(certificate = %key, %error, "ingress-shim could not delete the Certificate")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn world(tls: serde_json::Value, existing: Option<serde_json::Value>) -> World {
        let ing: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "ing-uid",
                         "annotations": {"cert-manager.io/cluster-issuer": "le"}},
            "spec": {"tls": tls}
        }))
        .unwrap();
        let mut w = World::default();
        w.ingresses.insert(ObjectKey::of(&ing), Arc::new(ing));
        if let Some(c) = existing {
            let cert: Certificate = serde_json::from_value(c).unwrap();
            w.certificates.insert(ObjectKey::of(&cert), Arc::new(cert));
        }
        w
    }

    fn controlled(name: &str, hosts: &[&str]) -> serde_json::Value {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
               "metadata": {"name": name, "namespace": "ns", "ownerReferences": [
                   {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web", "uid": "ing-uid", "controller": true}]},
               "spec": {"secretName": name, "dnsNames": hosts, "issuerRef": {"name": "le", "kind": "ClusterIssuer", "group": "cert-manager.io"}}})
    }

    #[test]
    fn a_new_tls_entry_is_created_and_controlled_by_the_ingress() {
        let p = plan(&world(
            json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
            None,
        ));
        assert_eq!(p.apply.len(), 1);
        let (key, reason, doc) = &p.apply[0];
        assert_eq!((&*key.name, *reason), ("a-tls", "CreateCertificate"));
        assert_eq!(doc["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(doc["metadata"]["ownerReferences"][0]["uid"], "ing-uid");
    }

    #[test]
    fn an_unchanged_certificate_is_left_as_it_is_and_a_changed_one_updated() {
        let tls = json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]);
        assert_eq!(
            plan(&world(
                tls.clone(),
                Some(controlled("a-tls", &["a.example.com"]))
            )),
            ShimPlan::default()
        );
        let p = plan(&world(tls, Some(controlled("a-tls", &["old.example.com"]))));
        assert_eq!(p.apply[0].1, "UpdateCertificate");
    }

    #[test]
    fn a_certificate_the_ingress_does_not_control_is_never_touched() {
        let mut foreign = controlled("a-tls", &["x"]);
        foreign["metadata"]["ownerReferences"] = json!([]);
        let p = plan(&world(
            json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
            Some(foreign),
        ));
        assert!(p.apply.is_empty() && p.delete.is_empty());
        assert_eq!(p.problems[0].1, "BadConfig");
    }

    #[test]
    fn removing_the_tls_entry_deletes_the_certificate_it_controlled() {
        let p = plan(&world(
            json!([]),
            Some(controlled("a-tls", &["a.example.com"])),
        ));
        assert_eq!(
            p.delete,
            [(ObjectKey::new("ns", "web"), ObjectKey::new("ns", "a-tls"))]
        );
    }
}
