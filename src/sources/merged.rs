//! The manifest files' objects merged into one World, kept between loads and patched for the files that
//! changed: with 10,000 objects, merging every file again on each edit was most of a reload.
//!
//! Rule (as before): files are taken in name order and the first file defining an object wins; each later
//! definition is reported.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;

use crate::sources::manifests::Loaded;
use crate::world::World;

/// One file's name (as reported) and its parsed content.
pub type Fragment<'a> = (String, &'a Loaded);

#[derive(Debug, Default)]
pub struct Merged {
    world: World,
    /// Objects defined by more than one file: (kind, key) → one report per later definition.
    duplicates: BTreeMap<(&'static str, String), Vec<String>>,
}

impl Merged {
    /// Re-decide the objects that `touched` (the changed files' previous and new contents) define: which
    /// file now wins each, if any still defines it. `files`: every current file, in order.
    pub fn update(&mut self, files: &[Fragment<'_>], touched: &[&Loaded]) {
        // One kind: its map here, in each file, and the name its duplicates are reported under (none for
        // the cluster-scoped kinds, as before).
        macro_rules! update {
            ($kind:ident, $reported_as:expr) => {
                update_kind(
                    &mut self.world.$kind,
                    &mut self.duplicates,
                    files,
                    touched,
                    |w| &w.$kind,
                    $reported_as,
                )
            };
        }
        update!(ingresses, Some("Ingress"));
        update!(services, Some("Service"));
        update!(endpoint_slices, Some("EndpointSlice"));
        update!(secrets, Some("Secret"));
        update!(certificates, Some("Certificate"));
        update!(issuers, Some("Issuer"));
        update!(cluster_issuers, None);
        update!(ingress_classes, None);
    }

    /// The merged objects (a copy: maps of shared objects, cheap to clone) and the files' reports.
    pub fn loaded(&self, files: &[Fragment<'_>]) -> Loaded {
        let mut out = Loaded {
            world: self.world.clone(),
            ..Loaded::default()
        };
        out.problems
            .extend(self.duplicates.values().flatten().cloned());
        for (_, fragment) in files {
            out.problems.extend(fragment.problems.iter().cloned());
            out.skipped.extend(fragment.skipped.iter().cloned());
        }
        out
    }
}

fn update_kind<K: Ord + Clone + Display, V>(
    merged: &mut BTreeMap<K, Arc<V>>,
    duplicates: &mut BTreeMap<(&'static str, String), Vec<String>>,
    files: &[Fragment<'_>],
    touched: &[&Loaded],
    map: impl Fn(&World) -> &BTreeMap<K, Arc<V>>,
    kind: Option<&'static str>,
) {
    let mut keys: Vec<&K> = touched.iter().flat_map(|t| map(&t.world).keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let mut definitions = files
            .iter()
            .filter_map(|(file, f)| Some((file, map(&f.world).get(key)?)));
        match definitions.next() {
            Some((_, first)) => {
                merged.insert(key.clone(), first.clone());
            }
            None => {
                merged.remove(key);
            }
        }
        let Some(kind) = kind else { continue };
        let later: Vec<String> = definitions
            .map(|(file, _)| {
                format!(
                    "{file}: {kind} {key} is defined more than once; the first definition is used"
                )
            })
            .collect();
        let id = (kind, key.to_string());
        if later.is_empty() {
            duplicates.remove(&id);
        } else {
            duplicates.insert(id, later);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::ObjectKey;
    use k8s_openapi::api::core::v1::Service;
    use proptest::prelude::*;

    /// The reference, independent of `Merged`: every file merged from scratch by a stable sort of all
    /// definitions (the first of each key wins), as the loader did before it patched.
    fn merge_from_scratch(files: &[Fragment<'_>]) -> Loaded {
        let mut out = Loaded::default();
        out.world.services =
            scratch_kind(files, |w| &w.services, Some("Service"), &mut out.problems);
        out.world.ingress_classes =
            scratch_kind(files, |w| &w.ingress_classes, None, &mut out.problems);
        for (_, fragment) in files {
            out.problems.extend(fragment.problems.iter().cloned());
        }
        out
    }

    fn scratch_kind<K: Ord + Clone + Display, V>(
        files: &[Fragment<'_>],
        map: impl Fn(&World) -> &BTreeMap<K, Arc<V>>,
        kind: Option<&str>,
        problems: &mut Vec<String>,
    ) -> BTreeMap<K, Arc<V>> {
        let mut all: Vec<(&K, &Arc<V>, &str)> = files
            .iter()
            .flat_map(|(file, f)| map(&f.world).iter().map(|(k, v)| (k, v, file.as_str())))
            .collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        let mut merged = BTreeMap::new();
        for (key, obj, file) in all {
            if merged.contains_key(key) {
                if let Some(kind) = kind {
                    problems.push(format!(
                        "{file}: {kind} {key} is defined more than once; the first definition is used"
                    ));
                }
                continue;
            }
            merged.insert(key.clone(), obj.clone());
        }
        merged
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    fn same_objects<K: Ord + std::fmt::Debug, V>(
        a: &BTreeMap<K, Arc<V>>,
        b: &BTreeMap<K, Arc<V>>,
    ) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((ka, va), (kb, vb))| ka == kb && Arc::ptr_eq(va, vb))
    }

    /// A file defining Services named by `names` (each a fresh object) and one IngressClass.
    fn file(names: &[u8], class: Option<u8>) -> Loaded {
        let mut f = Loaded::default();
        for n in names {
            f.world.services.insert(
                ObjectKey::new("default", format!("s{n}")),
                Arc::new(Service::default()),
            );
        }
        if let Some(c) = class {
            f.world
                .ingress_classes
                .insert(format!("c{c}"), Arc::new(Default::default()));
        }
        f
    }

    #[test]
    fn the_first_file_wins_and_later_definitions_are_reported_until_they_go() {
        let (a, b) = (file(&[1, 2], None), file(&[2, 3], None));
        let mut merged = Merged::default();
        let files = [("a.yaml".to_owned(), &a), ("b.yaml".to_owned(), &b)];
        merged.update(&files, &[&a, &b]);
        let loaded = merged.loaded(&files);
        let s2 = ObjectKey::new("default", "s2");
        assert!(Arc::ptr_eq(
            &loaded.world.services[&s2],
            &a.world.services[&s2]
        ));
        assert_eq!(
            loaded.problems,
            ["b.yaml: Service default/s2 is defined more than once; the first definition is used"]
        );

        // a.yaml drops s2: b.yaml's definition takes over, and nothing is reported any more.
        let a2 = file(&[1], None);
        let files = [("a.yaml".to_owned(), &a2), ("b.yaml".to_owned(), &b)];
        merged.update(&files, &[&a, &a2]);
        let loaded = merged.loaded(&files);
        assert!(Arc::ptr_eq(
            &loaded.world.services[&s2],
            &b.world.services[&s2]
        ));
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    }

    proptest! {
        /// Over random sequences of file edits, additions and removals, the patched merge equals a merge
        /// of every file from scratch: the same winners (the very same objects) and the same reports.
        #[test]
        fn patching_equals_merging_from_scratch(
            edits in prop::collection::vec(
                (0usize..4, prop::option::of((prop::collection::vec(0u8..6, 0..4), prop::option::of(0u8..3)))),
                1..25,
            )
        ) {
            let names = ["a.yaml", "b.yaml", "c.yml", "d.yaml"];
            let mut contents: Vec<Option<Loaded>> = vec![None, None, None, None];
            let mut merged = Merged::default();
            for (slot, edit) in edits {
                // None: the file is removed; Some: it is written with these objects.
                let before = contents[slot].take();
                contents[slot] = edit.map(|(services, class)| file(&services, class));
                let files: Vec<Fragment<'_>> = names
                    .iter()
                    .zip(&contents)
                    .filter_map(|(n, c)| Some(((*n).to_owned(), c.as_ref()?)))
                    .collect();
                let touched: Vec<&Loaded> = before.iter().chain(contents[slot].as_ref()).collect();
                merged.update(&files, &touched);
                let patched = merged.loaded(&files);
                let scratch = merge_from_scratch(&files);
                prop_assert!(same_objects(&patched.world.services, &scratch.world.services));
                prop_assert!(same_objects(&patched.world.ingress_classes, &scratch.world.ingress_classes));
                prop_assert_eq!(sorted(patched.problems), sorted(scratch.problems));
            }
        }
    }
}
