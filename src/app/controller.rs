//! Kubernetes mode (`certgate controller`): kube-runtime reflectors for the kinds the proxy reads feed the
//! same configuration builder as standalone mode. Every change rebuilds the configuration (coalesced: a
//! burst of events is one rebuild) and swaps it in; problems become Events on the Ingress.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::app::dataplane::{DataPlane, ReportLog, log_report};
use crate::app::issuing::{Issuing, Sink};
use crate::app::keyed::Keyed;
use crate::app::{AppError, build_options, default_secret};
use crate::cli::ControllerArgs;
use crate::config::ConfigBuilder;
use crate::crd::certificate::Certificate;
use crate::crd::issuer::{ClusterIssuer, Issuer};
use crate::metrics::Metrics;
use crate::routing::build::Report;
use crate::tls::keypair;
use crate::world::{ObjectKey, World};
use std::collections::HashSet;

/// Reflector caches of everything the proxy reads.
struct Stores {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
    /// Present when the cert-manager CRDs are installed.
    certs: Option<CertStores>,
    made: Made,
}

struct CertStores {
    certificates: Store<Certificate>,
    issuers: Store<Issuer>,
    cluster_issuers: Store<ClusterIssuer>,
}

/// The last maps made from the stores, to make the next ones from ([`Keyed`]).
#[derive(Default)]
struct Made {
    ingresses: Keyed<Ingress>,
    services: Keyed<Service>,
    slices: Keyed<EndpointSlice>,
    secrets: Keyed<Secret>,
    certificates: Keyed<Certificate>,
    issuers: Keyed<Issuer>,
}

impl Stores {
    fn world(&mut self) -> World {
        let made = &mut self.made;
        let certs = self.certs.as_ref();
        World {
            ingresses: made.ingresses.refresh(self.ingresses.state()),
            ingress_classes: self
                .classes
                .state()
                .into_iter()
                .map(|c| (c.name_any(), c))
                .collect(),
            services: made.services.refresh(self.services.state()),
            endpoint_slices: made.slices.refresh(self.slices.state()),
            secrets: made.secrets.refresh(self.secrets.state()),
            certificates: certs
                .map(|c| made.certificates.refresh(c.certificates.state()))
                .unwrap_or_default(),
            issuers: certs
                .map(|c| made.issuers.refresh(c.issuers.state()))
                .unwrap_or_default(),
            cluster_issuers: certs
                .map(|c| {
                    c.cluster_issuers
                        .state()
                        .into_iter()
                        .map(|i| (i.name_any(), i))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Start a reflector for one kind; every change wakes `changed`.
fn reflect<K>(
    client: &Client,
    changed: Arc<Notify>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    reflect_trimmed(client, changed, tasks, LIST_PAGE_SIZE, |_: &mut K| {})
}

/// kube-runtime's default page for the initial list of a kind.
const LIST_PAGE_SIZE: u32 = 500;
/// Secrets come in small pages: a page of large ones (Helm releases reach 1 MiB) is parsed whole before it
/// is trimmed, and the allocator keeps that peak (measured in bench/secrets-memory.sh: 500 × 64 KiB Secrets
/// grew RSS by 27 MiB with pages of 50, 5 MiB with pages of 10).
const SECRET_LIST_PAGE_SIZE: u32 = 10;
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A reflector that keeps only what certgate reads of each object: `trim` drops the rest before it is
/// cached, and managedFields and kubectl's last-applied copy (often the larger part of an object) are
/// never kept.
fn reflect_trimmed<K>(
    client: &Client,
    changed: Arc<Notify>,
    tasks: &mut tokio::task::JoinSet<()>,
    page_size: u32,
    mut trim: impl FnMut(&mut K) + Send + 'static,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().page_size(page_size);
    let events = watcher(Api::<K>::all(client.clone()), config).modify(move |o: &mut K| {
        let meta = o.meta_mut();
        meta.managed_fields = None;
        // `kubectl apply` keeps a copy of the whole object here — for a Secret, its data again.
        if let Some(annotations) = meta.annotations.as_mut() {
            annotations.remove(LAST_APPLIED);
        }
        trim(o);
    });
    let stream = reflector::reflector(writer, events).default_backoff();
    tasks.spawn(async move {
        stream
            .for_each(|event| {
                match event {
                    Ok(_) => changed.notify_one(),
                    Err(error) => {
                        warn!(kind = K::kind(&()).as_ref(), %error, "watch failed; retrying")
                    }
                }
                std::future::ready(())
            })
            .await;
    });
    store
}

pub async fn run(
    args: ControllerArgs,
    client: Client,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    let allow_loopback = args.allow_loopback_backends;
    let options = build_options(
        &args.common,
        args.common.watch_ingress_without_class,
        allow_loopback,
    );
    let generated = keypair::generate_default().map_err(|e| AppError::Tls(e.to_string()))?;
    let mut builder =
        ConfigBuilder::new(options, generated.certified, default_secret(&args.common)?);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "certgate".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );

    let changed = Arc::new(Notify::new());
    let mut watches = tokio::task::JoinSet::new();
    let mut stores = Stores {
        ingresses: reflect(&client, changed.clone(), &mut watches),
        classes: reflect(&client, changed.clone(), &mut watches),
        services: reflect(&client, changed.clone(), &mut watches),
        slices: reflect(&client, changed.clone(), &mut watches),
        secrets: reflect_trimmed(
            &client,
            changed.clone(),
            &mut watches,
            SECRET_LIST_PAGE_SIZE,
            trim_secret,
        ),
        certs: if cert_manager_crds_installed(&client).await {
            Some(CertStores {
                certificates: reflect(&client, changed.clone(), &mut watches),
                issuers: reflect(&client, changed.clone(), &mut watches),
                cluster_issuers: reflect(&client, changed.clone(), &mut watches),
            })
        } else {
            warn!(
                "the cert-manager CRDs are not installed (`certgate crds | kubectl apply -f -`); certificates are not issued"
            );
            None
        },
        made: Made::default(),
    };
    // Serve nothing until every cache holds the cluster's state: a partial view would answer 404/503
    // for routes that exist.
    let synced = async {
        stores.ingresses.wait_until_ready().await?;
        stores.classes.wait_until_ready().await?;
        stores.services.wait_until_ready().await?;
        stores.slices.wait_until_ready().await?;
        stores.secrets.wait_until_ready().await?;
        if let Some(c) = &stores.certs {
            c.certificates.wait_until_ready().await?;
            c.issuers.wait_until_ready().await?;
            c.cluster_issuers.wait_until_ready().await?;
        }
        Ok::<(), reflector::store::WriterDropped>(())
    };
    synced
        .await
        .map_err(|e| AppError::Kube(format!("caches did not sync: {e}")))?;
    info!("caches synced");

    let publish_service = match &args.publish_service {
        None => None,
        Some(r) => Some(
            ObjectKey::parse(r, "")
                .filter(|_| r.contains('/'))
                .ok_or_else(|| {
                    AppError::Flag(format!("--publish-service {r:?} is not NAMESPACE/NAME"))
                })?,
        ),
    };
    let mut reports = ReportLog::default();
    let (first, world) = rebuild(&mut stores, &mut builder, &metrics);
    let mut served = first.served.clone();
    publish(&recorder, &world, reports.fresh(&first.reports));
    let dataplane = DataPlane::start(
        &args.common,
        first,
        allow_loopback,
        &metrics,
        shutdown.clone(),
    )
    .await?;
    // Every replica answers HTTP-01 from the Challenge objects, whichever replica opened the order.
    if stores.certs.is_some() {
        crate::app::orders::serve_challenges(&client, dataplane.http01(), &mut watches);
    }
    let (mut issuing, mut outcomes) = Issuing::new(
        Sink::Kube(client.clone()),
        dataplane.http01(),
        dataplane.http_addr(),
        args.common.cluster_resource_namespace.clone(),
        args.common.max_issuance_backoff,
    );
    let mut shim_said = std::collections::BTreeMap::new();
    // Every replica serves; the one holding the Lease issues certificates and applies ingress-shim.
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
    let mut leading = crate::app::lease::elect(
        client.clone(),
        &args.leader_election_namespace,
        identity,
        args.leader_lease_duration,
    );
    // Issue only while cert-manager does not run (the leader reads its Lease); serving is unaffected.
    let mut may_issue =
        crate::app::cert_manager::watch(&client, &recorder, &args, leading.clone())?;

    let mut stop = shutdown;
    loop {
        let wake = issuing.next_wake().map(tokio::time::Instant::from_std);
        // The World a rebuild made is reused by the leader's reconcile; other wake-ups read the caches once.
        let act: Option<Option<World>> = tokio::select! {
            _ = changed.notified() => {
                let (snapshot, world) = rebuild(&mut stores, &mut builder, &metrics);
                publish(&recorder, &world, reports.fresh(&snapshot.reports));
                served = snapshot.served.clone();
                dataplane.apply(snapshot);
                Some(Some(world))
            }
            Some(outcome) = outcomes.recv() => {
                // The written Secret comes back through the watch and triggers the next reconcile.
                issuing.finish(outcome).await;
                // Certificates waiting for this one (an ACME account being registered) may start now.
                Some(None)
            }
            _ = crate::app::sleep_until_some(wake) => Some(None),
            Ok(()) = leading.changed() => Some(None),
            Ok(()) = may_issue.changed() => Some(None),
            _ = stop.changed() => break,
        };
        if let Some(rebuilt) = act
            && *leading.borrow()
        {
            let world = rebuilt.unwrap_or_else(|| stores.world());
            let addresses = crate::app::ingress_status::addresses(
                &world,
                publish_service.as_ref(),
                &args.publish_status_address,
            );
            crate::app::ingress_status::update(&client, &world, &served, &addresses).await;
            if !*may_issue.borrow() {
                continue;
            }
            issuing.reconcile(&world, &foreign_secrets(&world));
            metrics.sync_call("certificates");
            if stores.certs.is_some() {
                let plan = crate::app::shim::plan(&world);
                crate::app::shim::execute(&client, &recorder, &world, plan, &mut shim_said).await;
                metrics.sync_call("ingress-shim");
                let crn = &args.common.cluster_resource_namespace;
                crate::app::issuers::update(&client, &world, crn).await;
                metrics.sync_call("issuers");
            }
        }
    }
    watches.abort_all();
    dataplane.join().await;
    Ok(())
}

/// Secret types certgate reads: TLS key pairs, and Opaque ones (htpasswd files, ACME account keys, EAB
/// keys, the key of an issuance in flight). The data of every other type — service-account tokens,
/// registry credentials, Helm release records (often the largest objects in a cluster) — is dropped
/// before it is cached, so memory does not grow with them.
const READ_SECRET_TYPES: [&str; 3] = ["kubernetes.io/tls", "Opaque", "kubernetes.io/basic-auth"];

fn trim_secret(secret: &mut Secret) {
    let read = secret
        .type_
        .as_deref()
        .is_none_or(|t| t.is_empty() || READ_SECRET_TYPES.contains(&t));
    if !read {
        secret.data = None;
        secret.string_data = None;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "certgate".into())
}

/// Is the cert-manager API served? (A one-item list: "is the CRD installed?" instead of a failing watch.)
async fn cert_manager_crds_installed(client: &Client) -> bool {
    let api: Api<Certificate> = Api::all(client.clone());
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .is_ok()
}

/// Secrets a Certificate names that certgate must not replace: they exist and were not made for it
/// (their `cert-manager.io/certificate-name` annotation names another Certificate, or none).
fn foreign_secrets(world: &World) -> HashSet<ObjectKey> {
    world
        .certificates
        .iter()
        .filter_map(|(key, cert)| {
            let secret_key = ObjectKey::new(key.namespace.clone(), cert.spec.secret_name.clone());
            let secret = world.secrets.get(&secret_key)?;
            let owner = secret.annotations().get("cert-manager.io/certificate-name");
            (owner.map(String::as_str) != Some(&*key.name)).then_some(secret_key)
        })
        .collect()
}

/// Build a configuration from the caches; the caller swaps it in (counted as a reload, and the
/// Certificates it saw are what the certificate metrics report).
fn rebuild(
    stores: &mut Stores,
    builder: &mut ConfigBuilder,
    metrics: &Metrics,
) -> (crate::config::Snapshot, World) {
    let started = Instant::now();
    let world = stores.world();
    let snapshot = builder.build(&world);
    metrics.config.reloaded(started.elapsed());
    metrics.certificates.publish(&world);
    info!(
        ingresses = world.ingresses.len(),
        hosts = snapshot.routes.host_count(),
        certificates = snapshot.certs.len(),
        build_ms = started.elapsed().as_secs_f64() * 1000.0,
        "configuration loaded"
    );
    (snapshot, world)
}

/// Log each new report and record it as an Event on its Ingress (or Secret), without blocking the rebuild.
fn publish(recorder: &Recorder, world: &World, reports: Vec<&Report>) {
    for report in reports {
        log_report(report);
        let reference = match (
            world.ingresses.get(&report.object),
            world.secrets.get(&report.object),
        ) {
            (Some(ingress), _) => ingress.object_ref(&()),
            (None, Some(secret)) => secret.object_ref(&()),
            (None, None) => continue,
        };
        let event = Event {
            type_: if report.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: report.reason.to_owned(),
            note: Some(report.message.chars().take(1024).collect()),
            action: "Configure".into(),
            secondary: None,
        };
        let recorder = recorder.clone();
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                warn!(%error, "could not record an Event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(type_: Option<&str>) -> Secret {
        Secret {
            type_: type_.map(str::to_owned),
            data: Some([("k".to_owned(), k8s_openapi::ByteString(b"v".to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_secret_types_certgate_reads_keep_their_data() {
        for kept in [
            None,
            Some(""),
            Some("Opaque"),
            Some("kubernetes.io/tls"),
            Some("kubernetes.io/basic-auth"),
        ] {
            let mut s = secret(kept);
            trim_secret(&mut s);
            assert!(s.data.is_some(), "{kept:?}");
        }
        for dropped in [
            "helm.sh/release.v1",
            "kubernetes.io/service-account-token",
            "kubernetes.io/dockerconfigjson",
        ] {
            let mut s = secret(Some(dropped));
            trim_secret(&mut s);
            assert!(s.data.is_none(), "{dropped}");
        }
    }
}
