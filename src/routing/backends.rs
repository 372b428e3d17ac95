//! Ingress backend → where requests go: a Service port resolved through its EndpointSlices (ready
//! endpoints only, named-port mapping, deduplicated), or an ExternalName Service.
//!
//! Resolutions are memoised per Service port and kept between builds: every route naming the same Service
//! port shares one `Backend` (one round-robin position per upstream, as nginx has one upstream block per
//! Service port), and a build stays linear with thousands of Ingresses on a few Services. A change to a
//! Service or to one of its EndpointSlices forgets only that Service's resolutions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressBackend;

use crate::FastMap;
use crate::routing::table::Backend;
use crate::world::ObjectKey;

/// A report not yet tied to an Ingress: (warning, reason, message).
pub type ReportLine = (bool, &'static str, String);

/// A Service's EndpointSlices, by slice key.
pub type Slices = BTreeMap<ObjectKey, Arc<EndpointSlice>>;

/// What the resolution of a backend reads.
pub struct Inputs<'a> {
    pub services: &'a BTreeMap<ObjectKey, Arc<Service>>,
    pub slices_by_service: &'a FastMap<ObjectKey, Slices>,
    /// Loopback endpoints and ExternalName targets: allowed in standalone mode, refused in Kubernetes
    /// mode unless asked for (as ingress-nginx refuses them).
    pub allow_loopback: bool,
}

#[derive(Default)]
pub struct Backends {
    /// namespace/service:number:name → the Service, its backend, and the reports its resolution made.
    memo: FastMap<String, (ObjectKey, Arc<Backend>, Vec<ReportLine>)>,
}

impl Backends {
    /// The backend for an Ingress backend reference, and the Service it names (`None` for a resource
    /// backend). Reports made by the resolution are given to `report` on every call, so each Ingress
    /// naming a broken backend hears about it.
    pub fn resolve(
        &mut self,
        inputs: &Inputs<'_>,
        namespace: &str,
        backend: &IngressBackend,
        report: &mut dyn FnMut(bool, &'static str, String),
    ) -> (Arc<Backend>, Option<ObjectKey>) {
        let (memo_key, service) = match &backend.service {
            Some(s) => {
                let port = s.port.as_ref();
                let number = port.and_then(|p| p.number).map(|n| n.to_string());
                let name = port.and_then(|p| p.name.as_deref());
                (
                    format!(
                        "{namespace}/{}:{}:{}",
                        s.name,
                        number.unwrap_or_default(),
                        name.unwrap_or_default()
                    ),
                    Some(ObjectKey::new(namespace, s.name.clone())),
                )
            }
            None => (format!("{namespace}/resource"), None),
        };
        let (_, resolved, made) = self.memo.entry(memo_key).or_insert_with(|| {
            let mut made = Vec::new();
            let mut record = |w, r, m| made.push((w, r, m));
            let resolved = resolve(inputs, namespace, backend, &mut record);
            let service = service
                .clone()
                .unwrap_or_else(|| ObjectKey::new(namespace, ""));
            (service, Arc::new(resolved), made)
        });
        for (warning, reason, message) in made.iter() {
            report(*warning, reason, message.clone());
        }
        (resolved.clone(), service)
    }

    /// How many resolutions are kept.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.memo.len()
    }

    /// Forget every resolution of these Services (they, or their EndpointSlices, changed).
    pub fn forget(&mut self, services: &BTreeSet<ObjectKey>) {
        if !services.is_empty() {
            self.memo
                .retain(|_, (service, _, _)| !services.contains(service));
        }
    }
}

fn resolve(
    inputs: &Inputs<'_>,
    namespace: &str,
    backend: &IngressBackend,
    report: &mut dyn FnMut(bool, &'static str, String),
) -> Backend {
    let Some(svc_ref) = &backend.service else {
        let msg =
            "resource backends are not supported by certgate; use a Service backend".to_owned();
        report(true, "UnsupportedBackend", msg.clone());
        return Backend::Unavailable(msg);
    };
    let key = ObjectKey::new(namespace, svc_ref.name.clone());
    let Some(service) = inputs.services.get(&key) else {
        return Backend::Unavailable(format!("Service {key} not found"));
    };
    let port_ref = svc_ref.port.as_ref();
    let spec = service.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let service_port = ports.iter().find(|p| match port_ref {
        Some(r) => {
            r.number.is_some_and(|n| n == p.port)
                || r.name
                    .as_deref()
                    .is_some_and(|n| p.name.as_deref() == Some(n))
        }
        None => ports.len() == 1,
    });

    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        let host = spec
            .and_then(|s| s.external_name.clone())
            .unwrap_or_default();
        let port = port_ref
            .and_then(|r| r.number)
            .or(service_port.map(|p| p.port));
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
            return Backend::Unavailable(format!(
                "ExternalName Service {key} has no port matching the Ingress backend"
            ));
        };
        if host.is_empty() {
            return Backend::Unavailable(format!("ExternalName Service {key} has no externalName"));
        }
        if !inputs.allow_loopback && is_loopback_name(&host) {
            let msg = format!("ExternalName Service {key} points at loopback ({host}); refused");
            report(true, "LoopbackRefused", msg.clone());
            return Backend::Unavailable(msg);
        }
        return Backend::ExternalName {
            service: key,
            host,
            port,
        };
    }

    let Some(service_port) = service_port else {
        return Backend::Unavailable(format!(
            "Service {key} has no port matching the Ingress backend"
        ));
    };
    let port_name = service_port.name.as_deref().unwrap_or_default();
    let mut addrs = BTreeSet::new();
    for slice in inputs
        .slices_by_service
        .get(&key)
        .into_iter()
        .flat_map(|s| s.values())
    {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            // Per the EndpointSlice API, an unknown readiness (nil) is to be taken as ready.
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                if ip.is_loopback() && !inputs.allow_loopback {
                    continue;
                }
                addrs.insert(SocketAddr::new(ip, port));
            }
        }
    }
    if addrs.is_empty() {
        return Backend::Unavailable(format!("Service {key} has no ready endpoints"));
    }
    Backend::endpoints(key, addrs.into_iter().collect())
}

fn is_loopback_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
