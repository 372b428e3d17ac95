//! Standalone mode's source: every YAML document in a directory, as `kubectl apply -f DIR` would read it.
//!
//! Objects without a namespace are in `default`. Unknown kinds are skipped with a note; a malformed file or
//! document is reported with its file name (and line, where the YAML parser knows it) while everything else
//! still loads.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::sources::merged::{Fragment, Merged};
use crate::world::{ObjectKey, World};

/// A manifest larger than this is refused rather than read into memory.
const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub world: World,
    /// Files or documents that could not be used, each naming the file.
    pub problems: Vec<String>,
    /// Documents of kinds the proxy does not read (`file: Kind name`).
    pub skipped: Vec<String>,
}

/// `*.yaml` and `*.yml` files directly in `dir`, sorted by name.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_manifest_name(p))
        .collect();
    files.sort();
    Ok(files)
}

/// A name the directory's loader reads: `*.yaml` or `*.yml`.
pub fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

pub fn load_dir(dir: &Path) -> std::io::Result<Loaded> {
    ManifestCache::default().load(dir)
}

/// Parsed files, kept between reloads: a change re-reads only the files whose size, modification time or
/// inode changed, so applying one edit stays cheap with thousands of objects in the directory.
#[derive(Debug, Default)]
pub struct ManifestCache {
    files: HashMap<PathBuf, (FileStamp, Loaded)>,
    /// Their objects merged, patched on each load for the files that changed.
    merged: Merged,
}

type FileStamp = (u64, Option<SystemTime>, u64);

impl ManifestCache {
    pub fn load(&mut self, dir: &Path) -> std::io::Result<Loaded> {
        let files = manifest_files(dir)?;
        // The previous contents of removed and changed files: their objects are merged again.
        let mut before = Vec::new();
        let cached: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in cached.iter().filter(|p| files.binary_search(p).is_err()) {
            before.extend(self.files.remove(path).map(|(_, loaded)| loaded));
        }
        let mut changed = Vec::new();
        let mut unreadable = Vec::new();
        for file in &files {
            let name = file.display().to_string();
            let meta = match std::fs::metadata(file) {
                Ok(m) => m,
                Err(e) => {
                    unreadable.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let stamp = (meta.len(), meta.modified().ok(), meta.ino());
            let previous = match self.files.get(file) {
                Some((cached, _)) if *cached == stamp => continue,
                previous => previous,
            };
            let (mut fragment, usable) = read_file(&name, file, meta.len());
            // Bad input loses nothing: a file that cannot be used at all (an editor's half-written save, a
            // typo) keeps serving what it defined last time it was good.
            if !usable && let Some((_, last_good)) = previous {
                fragment.world = last_good.world.clone();
                fragment
                    .problems
                    .push(format!("{name}: its last good content keeps being served"));
            }
            before.extend(
                self.files
                    .insert(file.clone(), (stamp, fragment))
                    .map(|(_, loaded)| loaded),
            );
            changed.push(file);
        }
        let fragments: Vec<Fragment<'_>> = files
            .iter()
            .filter_map(|f| Some((f.display().to_string(), &self.files.get(f)?.1)))
            .collect();
        let touched: Vec<&Loaded> = before
            .iter()
            .chain(changed.iter().filter_map(|f| Some(&self.files.get(*f)?.1)))
            .collect();
        self.merged.update(&fragments, &touched);
        let mut merged = self.merged.loaded(&fragments);
        merged.problems.extend(unreadable);
        Ok(merged)
    }
}

/// Read one file. `None` in the second place: the file could not be used at all (unreadable, too large,
/// not YAML), as opposed to a file of which some documents are bad.
fn read_file(name: &str, path: &Path, len: u64) -> (Loaded, bool) {
    let mut loaded = Loaded::default();
    if len > MAX_FILE_BYTES {
        loaded.problems.push(format!(
            "{name}: larger than {MAX_FILE_BYTES} bytes; not read"
        ));
        return (loaded, false);
    }
    let usable = match std::fs::read_to_string(path) {
        Ok(text) => load_text(name, &text, &mut loaded),
        Err(e) => {
            loaded.problems.push(format!("{name}: {e}"));
            false
        }
    };
    (loaded, usable)
}

/// Add the documents of one file to `loaded`; `false` when the text is not YAML at all.
pub fn load_text(file: &str, text: &str, loaded: &mut Loaded) -> bool {
    let documents: Vec<Value> = match serde_saphyr::from_multiple(text) {
        Ok(docs) => docs,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default();
            // SECURITY: the parser's own rendering quotes the lines around the error, which in a Secret
            // manifest are its data (keys, htpasswd lines), and problems are logged: keep the position and
            // the parser's description only.
            let e = e.without_snippet();
            loaded
                .problems
                .push(format!("{file}{at}: not valid YAML: {e}"));
            return false;
        }
    };
    for (index, doc) in documents.into_iter().enumerate() {
        if let Err(problem) = add_document(doc, loaded, &format!("{file}: document {}", index + 1))
        {
            loaded.problems.push(problem);
        }
    }
    true
}

fn add_document(doc: Value, loaded: &mut Loaded, origin: &str) -> Result<(), String> {
    if doc.is_null() {
        return Ok(());
    }
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if kind.is_empty() || api_version.is_empty() {
        return Err(format!(
            "{origin}: not a Kubernetes object (apiVersion and kind are required)"
        ));
    }
    if name.is_empty() {
        return Err(format!("{origin}: {kind} has no metadata.name"));
    }
    let origin = format!("{origin} ({kind} {name})");
    let w = &mut loaded.world;
    match (api_version.as_str(), kind.as_str()) {
        ("networking.k8s.io/v1", "Ingress") => insert(&mut w.ingresses, parse(doc, &origin)?),
        ("v1", "Service") => insert(&mut w.services, parse(doc, &origin)?),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            insert(&mut w.endpoint_slices, parse(doc, &origin)?)
        }
        ("v1", "Secret") => insert(&mut w.secrets, parse(doc, &origin)?),
        ("cert-manager.io/v1", "Certificate") => insert(&mut w.certificates, parse(doc, &origin)?),
        ("cert-manager.io/v1", "Issuer") => insert(&mut w.issuers, parse(doc, &origin)?),
        ("cert-manager.io/v1", "ClusterIssuer") => {
            let issuer: crate::crd::issuer::ClusterIssuer = parse(doc, &origin)?;
            w.cluster_issuers.insert(name, Arc::new(issuer));
            Ok(())
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            let class: k8s_openapi::api::networking::v1::IngressClass = parse(doc, &origin)?;
            w.ingress_classes.insert(name, Arc::new(class));
            Ok(())
        }
        _ => {
            loaded.skipped.push(origin.clone());
            Ok(())
        }
    }
    .map_err(|()| format!("{origin}: defined more than once; the first definition is used"))
}

fn parse<T: DeserializeOwned>(doc: Value, origin: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(doc)
        .map_err(|e| format!("{origin}: field {}: {}", e.path(), e.inner()))
}

fn insert<K: kube::Resource>(map: &mut BTreeMap<ObjectKey, Arc<K>>, obj: K) -> Result<(), ()> {
    let key = ObjectKey::of(&obj);
    if map.contains_key(&key) {
        return Err(());
    }
    map.insert(key, Arc::new(obj));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Loaded {
        let mut loaded = Loaded::default();
        let _ = load_text("test.yaml", text, &mut loaded);
        loaded
    }

    #[test]
    fn multi_document_file_loads_each_kind_into_default_namespace() {
        let l = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: prod}\n\
             spec: {rules: [{host: a.example}]}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {auth: 'x'}\n",
        );
        assert_eq!(l.problems, Vec::<String>::new());
        assert!(
            l.world
                .services
                .contains_key(&ObjectKey::new("default", "web"))
        );
        assert!(
            l.world
                .ingresses
                .contains_key(&ObjectKey::new("prod", "web"))
        );
        assert!(
            l.world
                .secrets
                .contains_key(&ObjectKey::new("default", "s"))
        );
    }

    #[test]
    fn unknown_kinds_are_skipped_not_errors() {
        let l = load("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n");
        assert!(l.problems.is_empty());
        assert_eq!(l.skipped, ["test.yaml: document 1 (Deployment web)"]);
    }

    #[test]
    fn cert_manager_kinds_load() {
        let l = load(
            "apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: le}\nspec: {selfSigned: {}}\n---\n\
             apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web}\n\
             spec: {secretName: web-tls, dnsNames: [a.example.com], issuerRef: {name: le, kind: ClusterIssuer}}\n",
        );
        assert_eq!(l.problems, Vec::<String>::new());
        assert!(l.world.cluster_issuers.contains_key("le"));
        assert!(
            l.world
                .certificates
                .contains_key(&ObjectKey::new("default", "web"))
        );
    }

    #[test]
    fn invalid_yaml_names_file_and_line() {
        let l = load("apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n");
        assert_eq!(l.problems.len(), 1);
        assert!(l.problems[0].starts_with("test.yaml:"), "{}", l.problems[0]);
        assert!(
            l.problems[0].contains("not valid YAML"),
            "{}",
            l.problems[0]
        );
    }

    #[test]
    fn invalid_yaml_in_a_secret_never_quotes_its_data() {
        // Seen in the manifest fuzz target's output: the parser's rendering quoted the lines around the
        // error, here a base64 key and an htpasswd line (also in fuzz/corpus/manifest).
        for (text, expected) in [
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata:\n  tls.key: \"LS0tLS1CRUdJTiBQUklWQVRF\n",
                "test.yaml:5: not valid YAML: unclosed quote at line 5, column 12",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData:\n  auth: 'alice:{PLAIN}hunter2'\n  auth: again\n",
                "test.yaml:6: not valid YAML: duplicate mapping key: auth, set DuplicateKeyPolicy in Options if \
                 acceptable at line 6, column 3",
            ),
        ] {
            assert_eq!(load(text).problems, [expected]);
        }
    }

    #[test]
    fn a_bad_document_names_its_field_and_the_others_still_load() {
        let l = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: [{port: eighty}]}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: good}\n",
        );
        assert_eq!(l.problems.len(), 1, "{:?}", l.problems);
        assert!(
            l.problems[0].contains("document 1 (Service bad): field spec.ports[0].port"),
            "{}",
            l.problems[0]
        );
        assert!(
            l.world
                .services
                .contains_key(&ObjectKey::new("default", "good"))
        );
    }

    #[test]
    fn documents_without_kind_or_name_are_reported() {
        let l = load("foo: bar\n---\napiVersion: v1\nkind: Service\nmetadata: {}\n---\n");
        assert_eq!(l.problems.len(), 2, "{:?}", l.problems);
    }

    #[test]
    fn duplicates_keep_the_first_definition() {
        let l = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: ClusterIP}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: ExternalName}\n",
        );
        assert_eq!(l.problems.len(), 1);
        let svc = &l.world.services[&ObjectKey::new("default", "a")];
        assert_eq!(
            svc.spec.as_ref().unwrap().type_.as_deref(),
            Some("ClusterIP")
        );
    }

    fn service(name: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n")
    }

    #[test]
    fn cache_rereads_only_changed_files_and_forgets_removed_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), service("a")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), service("b")).unwrap();
        let mut cache = ManifestCache::default();
        let first = cache.load(dir.path()).unwrap();
        let key_a = ObjectKey::new("default", "a");

        std::fs::write(dir.path().join("b.yaml"), service("b2")).unwrap();
        let second = cache.load(dir.path()).unwrap();
        // a.yaml was not re-read: the very same object is reused.
        assert!(Arc::ptr_eq(
            &first.world.services[&key_a],
            &second.world.services[&key_a]
        ));
        let names: Vec<&str> = second.world.services.keys().map(|k| &*k.name).collect();
        assert_eq!(names, ["a", "b2"]);

        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        let third = cache.load(dir.path()).unwrap();
        assert!(!third.world.services.contains_key(&key_a));
    }

    #[test]
    fn an_object_defined_in_two_files_keeps_the_first_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.yaml"), service("same")).unwrap();
        std::fs::write(dir.path().join("2.yml"), service("same")).unwrap();
        std::fs::write(dir.path().join("ignored.txt"), service("other")).unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        assert_eq!(loaded.world.services.len(), 1);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        assert!(
            loaded.problems[0].contains("2.yml: Service default/same is defined more than once")
        );
    }

    #[test]
    fn a_file_that_turns_into_garbage_keeps_its_last_good_objects() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), service("a")).unwrap();
        let mut cache = ManifestCache::default();
        assert_eq!(cache.load(dir.path()).unwrap().world.services.len(), 1);

        std::fs::write(dir.path().join("a.yaml"), "kind: [half-written\n").unwrap();
        let loaded = cache.load(dir.path()).unwrap();
        assert!(
            loaded
                .world
                .services
                .contains_key(&ObjectKey::new("default", "a"))
        );
        assert!(
            loaded.problems.iter().any(|p| p.contains("not valid YAML")),
            "{:?}",
            loaded.problems
        );
        assert!(
            loaded
                .problems
                .iter()
                .any(|p| p.contains("last good content")),
            "{:?}",
            loaded.problems
        );

        // A new file that is garbage from the start has nothing to keep.
        std::fs::write(dir.path().join("b.yaml"), "kind: [x\n").unwrap();
        assert_eq!(cache.load(dir.path()).unwrap().world.services.len(), 1);
    }
}
