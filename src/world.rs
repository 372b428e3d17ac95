//! The objects certgate acts on, as one immutable snapshot.
//!
//! Sources (kube-runtime reflectors, the manifest directory) produce a `World`; the pure builders (routes,
//! certificates) read it. Nothing here knows which source is in use, and nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::ResourceExt;

use crate::crd::certificate::Certificate;
use crate::crd::issuer::{ClusterIssuer, Issuer};

/// `namespace/name` of a namespaced object.
#[derive(Debug, Clone, Eq)]
pub struct ObjectKey {
    /// Shared strings: keys are cloned into every map and index that names the object, and a clone must
    /// not allocate (a configuration with 10,000 Ingresses is rebuilt on every change).
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Key of an object; objects without a namespace are in `default`, as kubectl would put them.
    pub fn of<K: kube::Resource>(obj: &K) -> Self {
        Self::new(
            obj.namespace().unwrap_or_else(|| "default".into()),
            obj.name_any(),
        )
    }

    /// Parse `NAME` (in `default_namespace`) or `NAMESPACE/NAME`, as annotations and flags write references.
    pub fn parse(reference: &str, default_namespace: &str) -> Option<Self> {
        let valid = |s: &str| !s.is_empty() && !s.contains('/');
        match reference.split_once('/') {
            Some((ns, name)) if valid(ns) && valid(name) => Some(Self::new(ns, name)),
            None if valid(reference) => Some(Self::new(default_namespace, reference)),
            _ => None,
        }
    }
}

/// Two shared strings that are one allocation are equal without reading them: keys are compared when a
/// rebuilt World is diffed against the last one, and an unchanged object's key is the same allocation.
fn cmp_shared(a: &Arc<str>, b: &Arc<str>) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        a.cmp(b)
    }
}

impl Ord for ObjectKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_shared(&self.namespace, &other.namespace)
            .then_with(|| cmp_shared(&self.name, &other.name))
    }
}

impl PartialOrd for ObjectKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ObjectKey {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        same(&self.namespace, &other.namespace) && same(&self.name, &other.name)
    }
}

// By content, as equality is (a shared allocation only short-cuts the comparison).
impl std::hash::Hash for ObjectKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.namespace.hash(state);
        self.name.hash(state);
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything the builders need, keyed for deterministic iteration.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub ingresses: BTreeMap<ObjectKey, Arc<Ingress>>,
    pub ingress_classes: BTreeMap<String, Arc<IngressClass>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    /// Keyed by the slice's own name; the Service it belongs to is its `kubernetes.io/service-name` label.
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    pub secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    pub certificates: BTreeMap<ObjectKey, Arc<Certificate>>,
    pub issuers: BTreeMap<ObjectKey, Arc<Issuer>>,
    pub cluster_issuers: BTreeMap<String, Arc<ClusterIssuer>>,
}

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_namespace_then_name_whether_or_not_they_share_strings() {
        let a = ObjectKey::new("default", "web");
        let copy = ObjectKey::new(String::from("default"), String::from("web"));
        assert!(!Arc::ptr_eq(&a.name, &copy.name));
        assert_eq!(a, copy);
        assert_eq!(a.cmp(&copy), std::cmp::Ordering::Equal);
        assert_eq!(a, a.clone());
        let mut keys = [
            ObjectKey::new("prod", "a"),
            ObjectKey::new("default", "web2"),
            a.clone(),
            ObjectKey::new("default", "we"),
        ];
        keys.sort();
        let shown: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["default/we", "default/web", "default/web2", "prod/a"]
        );
        assert_ne!(a, ObjectKey::new("prod", "web"));
    }

    #[test]
    fn reference_without_namespace_uses_the_default() {
        assert_eq!(
            ObjectKey::parse("web", "prod"),
            Some(ObjectKey::new("prod", "web"))
        );
        assert_eq!(
            ObjectKey::parse("other/web", "prod"),
            Some(ObjectKey::new("other", "web"))
        );
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in ["", "/web", "ns/", "a/b/c"] {
            assert_eq!(ObjectKey::parse(bad, "prod"), None, "{bad:?}");
        }
    }
}
