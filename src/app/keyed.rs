//! The maps of a [`crate::world::World`] made from reflector stores, each from the last one made: an object
//! still in its store (the same `Arc`) keeps its key, and only new or changed objects get a key made.
//!
//! Why: a change among 10,000 Ingresses spent most of its ~11 ms making 10,000 keys (two strings each)
//! and sorting them again. A kept key is also the same allocation as before, so the configuration
//! builder's diff of two Worlds compares it without reading it ([`ObjectKey`]'s shared-string shortcut).

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::Resource;

use crate::FastSet;
use crate::world::ObjectKey;

/// The last map made for one kind.
pub struct Keyed<K> {
    map: BTreeMap<ObjectKey, Arc<K>>,
}

impl<K> Default for Keyed<K> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
        }
    }
}

impl<K: Resource> Keyed<K> {
    /// The map of `state`, the objects a store holds now (each once).
    pub fn refresh(&mut self, state: Vec<Arc<K>>) -> BTreeMap<ObjectKey, Arc<K>> {
        let address = |object: &Arc<K>| Arc::as_ptr(object).addr();
        // Every object in `state`; those already in the map are taken out as the map is pruned, so what
        // is left is new (or a new version of an object).
        let mut new: FastSet<usize> = state.iter().map(address).collect();
        self.map.retain(|_, object| new.remove(&address(object)));
        if !new.is_empty() {
            for object in state {
                if new.contains(&address(&object)) {
                    self.map.insert(ObjectKey::of(object.as_ref()), object);
                }
            }
        }
        self.map.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::ObjectMeta;

    fn service(name: &str, version: &str) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        })
    }

    /// The map made from scratch, as the reference.
    fn fresh(state: &[Arc<Service>]) -> Vec<(ObjectKey, *const Service)> {
        let map: BTreeMap<_, _> = state
            .iter()
            .map(|s| (ObjectKey::of(s.as_ref()), Arc::as_ptr(s)))
            .collect();
        map.into_iter().collect()
    }

    fn entries(map: &BTreeMap<ObjectKey, Arc<Service>>) -> Vec<(ObjectKey, *const Service)> {
        map.iter()
            .map(|(k, v)| (k.clone(), Arc::as_ptr(v)))
            .collect()
    }

    #[test]
    fn each_map_is_the_one_made_from_scratch_and_unchanged_objects_keep_their_keys() {
        let (a, b, c, d) = (
            service("a", "1"),
            service("b", "1"),
            service("c", "1"),
            service("d", "1"),
        );
        let mut keyed = Keyed::default();
        let first = keyed.refresh(vec![b.clone(), a.clone(), c.clone()]);
        assert_eq!(entries(&first), fresh(&[a.clone(), b.clone(), c.clone()]));

        // b changed (a new object), c deleted, d added; a untouched.
        let b2 = service("b", "2");
        let state = vec![d.clone(), a.clone(), b2.clone()];
        let second = keyed.refresh(state.clone());
        assert_eq!(entries(&second), fresh(&state));
        let key_of = |map: &BTreeMap<ObjectKey, Arc<Service>>, name: &str| {
            map.keys().find(|k| &*k.name == name).cloned().expect("key")
        };
        assert!(
            Arc::ptr_eq(&key_of(&first, "a").name, &key_of(&second, "a").name),
            "an unchanged object's key was made again"
        );
        assert!(!Arc::ptr_eq(
            &key_of(&first, "b").name,
            &key_of(&second, "b").name
        ));

        // Nothing changed; then everything deleted.
        assert_eq!(entries(&keyed.refresh(state.clone())), fresh(&state));
        assert!(keyed.refresh(Vec::new()).is_empty());
    }
}
