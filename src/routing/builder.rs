//! The routing table kept up to date, one change at a time.
//!
//! Each build compares the world with the previous one — objects are shared `Arc`s, so an unchanged object
//! is the same allocation and the comparison is a pointer check — and recompiles only the Ingresses the
//! change touches: the changed Ingresses themselves, and those naming a changed Service, EndpointSlice or
//! auth Secret. Only the servers those Ingresses add to (before or after the change) are merged again; every
//! other server is the same `Arc<HostRules>` as before. A change to an IngressClass recompiles every Ingress,
//! since class selection may change for any of them.
//!
//! The result is the same as a build from scratch of the same world (`build::build` is one, and a property
//! test holds the two equal over random change sequences).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::FastMap;
use crate::routing::backends::{Backends, Inputs, Slices};
use crate::routing::build::{
    BuildOptions, Built, Compiled, Report, ServerName, class_matches, compile, merge_server,
};
use crate::routing::table::{HostRules, RouteTable};
use crate::world::{ObjectKey, SERVICE_NAME_LABEL, World};

/// Precedence of an Ingress: oldest first (creationTimestamp), then by namespace/name.
type Rank = (Option<Time>, ObjectKey);

pub struct RouteBuilder {
    opts: BuildOptions,
    /// The inputs of the last build, to find what the next one changes.
    classes: BTreeMap<String, Arc<IngressClass>>,
    ingresses: BTreeMap<ObjectKey, Arc<Ingress>>,
    services: BTreeMap<ObjectKey, Arc<Service>>,
    slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    slices_by_service: FastMap<ObjectKey, Slices>,
    backends: Backends,
    /// The served Ingresses, compiled, in precedence order.
    compiled: BTreeMap<Rank, Compiled>,
    rank_of: FastMap<ObjectKey, Rank>,
    /// Which served Ingresses name a Service, or an auth Secret.
    service_users: FastMap<ObjectKey, BTreeSet<ObjectKey>>,
    secret_users: FastMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// Which served Ingresses add to a server, in precedence order (sorted vectors: most servers have one).
    members: FastMap<ServerName, Vec<Rank>>,
    /// What merging each server reported (conflicts, invalid regexes).
    merge_reports: BTreeMap<ServerName, Vec<Report>>,
    exact: FastMap<Arc<str>, Arc<HostRules>>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: FastMap<Arc<str>, Arc<HostRules>>,
    catch_all: Arc<HostRules>,
}

impl RouteBuilder {
    pub fn new(opts: BuildOptions) -> Self {
        Self {
            opts,
            classes: BTreeMap::new(),
            ingresses: BTreeMap::new(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            secrets: BTreeMap::new(),
            slices_by_service: FastMap::default(),
            backends: Backends::default(),
            compiled: BTreeMap::new(),
            rank_of: FastMap::default(),
            service_users: FastMap::default(),
            secret_users: FastMap::default(),
            members: FastMap::default(),
            merge_reports: BTreeMap::new(),
            exact: FastMap::default(),
            wildcard: FastMap::default(),
            catch_all: Arc::new(merge_server(&None, []).0),
        }
    }

    /// The routing table of `world`, built from what changed since the last call.
    pub fn build(&mut self, world: &World) -> Built {
        let mut dirty: BTreeSet<ObjectKey> = BTreeSet::new();
        if !sync(&mut self.classes, &world.ingress_classes).is_empty() {
            dirty.extend(self.ingresses.keys().cloned());
            dirty.extend(world.ingresses.keys().cloned());
        }
        dirty.extend(
            sync(&mut self.ingresses, &world.ingresses)
                .into_iter()
                .map(|(key, ..)| key),
        );

        let mut services: BTreeSet<ObjectKey> = sync(&mut self.services, &world.services)
            .into_iter()
            .map(|(key, ..)| key)
            .collect();
        for (key, old, new) in sync(&mut self.slices, &world.endpoint_slices) {
            if let Some(service) = old.as_deref().and_then(|s| service_of(&key, s)) {
                if let Some(slices) = self.slices_by_service.get_mut(&service) {
                    slices.remove(&key);
                    if slices.is_empty() {
                        self.slices_by_service.remove(&service);
                    }
                }
                services.insert(service);
            }
            if let Some(new) = new
                && let Some(service) = service_of(&key, &new)
            {
                self.slices_by_service
                    .entry(service.clone())
                    .or_default()
                    .insert(key, new);
                services.insert(service);
            }
        }
        self.backends.forget(&services);
        for service in &services {
            dirty.extend(
                self.service_users
                    .get(service)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        for (key, ..) in sync(&mut self.secrets, &world.secrets) {
            dirty.extend(self.secret_users.get(&key).into_iter().flatten().cloned());
        }

        let mut touched: BTreeSet<ServerName> = BTreeSet::new();
        for key in &dirty {
            self.forget(key, &mut touched);
            let Some(ing) = world.ingresses.get(key) else {
                continue;
            };
            if !class_matches(world, ing, &self.opts) {
                continue;
            }
            let inputs = Inputs {
                services: &self.services,
                slices_by_service: &self.slices_by_service,
                allow_loopback: self.opts.allow_loopback,
            };
            let compiled = compile(key, ing, &self.secrets, &inputs, &mut self.backends);
            let rank = (ing.metadata.creation_timestamp.clone(), key.clone());
            self.remember(rank, compiled, &mut touched);
        }
        for name in &touched {
            self.merge(name);
        }
        self.assemble()
    }

    /// Take a served Ingress out, noting the servers it added to.
    fn forget(&mut self, key: &ObjectKey, touched: &mut BTreeSet<ServerName>) {
        let Some(rank) = self.rank_of.remove(key) else {
            return;
        };
        let Some(compiled) = self.compiled.remove(&rank) else {
            return;
        };
        for (name, _) in &compiled.servers {
            if let Some(members) = self.members.get_mut(name) {
                if let Ok(at) = members.binary_search(&rank) {
                    members.remove(at);
                }
                if members.is_empty() {
                    self.members.remove(name);
                }
            }
            touched.insert(name.clone());
        }
        let unused = unlink(&mut self.service_users, &compiled.services, key);
        // Resolutions no Ingress names any more are dropped, so the memo stays as large as what is used.
        self.backends.forget(&unused);
        unlink(&mut self.secret_users, &compiled.secrets, key);
    }

    fn remember(&mut self, rank: Rank, compiled: Compiled, touched: &mut BTreeSet<ServerName>) {
        let key = &rank.1;
        for (name, _) in &compiled.servers {
            let members = self.members.entry(name.clone()).or_default();
            if let Err(at) = members.binary_search(&rank) {
                members.insert(at, rank.clone());
            }
            touched.insert(name.clone());
        }
        for service in &compiled.services {
            self.service_users
                .entry(service.clone())
                .or_default()
                .insert(key.clone());
        }
        for secret in &compiled.secrets {
            self.secret_users
                .entry(secret.clone())
                .or_default()
                .insert(key.clone());
        }
        self.rank_of.insert(key.clone(), rank.clone());
        self.compiled.insert(rank, compiled);
    }

    /// Merge one server again from its members; a server no Ingress adds to any more goes away (the
    /// catch-all stays, empty).
    fn merge(&mut self, name: &ServerName) {
        let members = self.members.get(name).into_iter().flatten();
        let contributions = members.filter_map(|rank| {
            let contribution = self.compiled.get(rank)?.contribution(name)?;
            Some((&rank.1, contribution))
        });
        let (rules, reports) = merge_server(name, contributions);
        let rules = Arc::new(rules);
        let present = self.members.contains_key(name);
        if present && !reports.is_empty() {
            self.merge_reports.insert(name.clone(), reports);
        } else {
            self.merge_reports.remove(name);
        }
        let Some(host) = name else {
            self.catch_all = rules;
            return;
        };
        let (map, key) = match host.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent),
            None => (&mut self.exact, host.as_str()),
        };
        if present {
            map.insert(Arc::from(key), rules);
        } else {
            map.remove(key);
        }
    }

    fn assemble(&self) -> Built {
        let compiled = self.compiled.values();
        Built {
            table: RouteTable::new(
                self.exact.clone(),
                self.wildcard.clone(),
                self.catch_all.clone(),
            ),
            tls_hosts: compiled
                .clone()
                .flat_map(|c| c.tls_hosts.iter().cloned())
                .collect(),
            reports: compiled
                .flat_map(|c| &c.reports)
                .chain(self.merge_reports.values().flatten())
                .cloned()
                .collect(),
            served: self.compiled.keys().map(|(_, key)| key.clone()).collect(),
        }
    }
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label, same namespace).
fn service_of(key: &ObjectKey, slice: &EndpointSlice) -> Option<ObjectKey> {
    let service = slice.labels().get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey::new(key.namespace.clone(), service.clone()))
}

/// Take `user` off the users of each object it used; returns the objects left with no user.
fn unlink(
    users: &mut FastMap<ObjectKey, BTreeSet<ObjectKey>>,
    used: &[ObjectKey],
    user: &ObjectKey,
) -> BTreeSet<ObjectKey> {
    let mut unused = BTreeSet::new();
    for object in used {
        if let Some(set) = users.get_mut(object) {
            set.remove(user);
            if set.is_empty() {
                users.remove(object);
                unused.insert(object.clone());
            }
        }
    }
    unused
}

/// A changed key, with its object before and after (`None`: absent).
type Change<K, V> = (K, Option<Arc<V>>, Option<Arc<V>>);

/// Bring `kept` in line with `now`, returning what was added, removed or replaced. One walk over both
/// sorted maps; an object counts as unchanged when it is the same allocation.
fn sync<K: Ord + Clone, V>(
    kept: &mut BTreeMap<K, Arc<V>>,
    now: &BTreeMap<K, Arc<V>>,
) -> Vec<Change<K, V>> {
    let mut changes = Vec::new();
    let mut old = kept.iter().peekable();
    let mut new = now.iter().peekable();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ko, _)), Some((kn, _))) => ko.cmp(kn),
        };
        match order {
            Ordering::Less => {
                let (key, was) = old.next().expect("peeked");
                changes.push((key.clone(), Some(was.clone()), None));
            }
            Ordering::Greater => {
                let (key, is) = new.next().expect("peeked");
                changes.push((key.clone(), None, Some(is.clone())));
            }
            Ordering::Equal => {
                let ((key, was), (_, is)) =
                    (old.next().expect("peeked"), new.next().expect("peeked"));
                if !Arc::ptr_eq(was, is) {
                    changes.push((key.clone(), Some(was.clone()), Some(is.clone())));
                }
            }
        }
    }
    for (key, _, is) in &changes {
        match is {
            Some(is) => kept.insert(key.clone(), is.clone()),
            None => kept.remove(key),
        };
    }
    changes
}

#[cfg(test)]
#[path = "builder_tests.rs"]
mod tests;
