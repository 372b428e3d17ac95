//! Request path normalisation, Ingress path matching and `rewrite-target`, as one request meets them.
//!
//! Input: UTF-8 text. The first line is the raw request path (what follows the method in the request line,
//! without the query). Every further line is one of
//!
//! ```text
//! Exact /api              a rule (also Prefix, ImplementationSpecific)
//! use-regex true          an annotation of the Ingress holding the rules (also rewrite-target /$2)
//! ```
//!
//! The rules and annotations form one Ingress on `fuzz.example`, built by the real routing builder (regex
//! mode included); the normalised path is resolved in the table and rewritten as the proxy does.
//!
//! Properties: no panic; `normalize` accepts exactly the paths a plain reference accepts (decode every
//! escape, refuse `/`, `\` and NUL among them, resolve dot-segments) and its normal form means the same
//! bytes as the reference's result once fully decoded; a normal form is absolute, has no empty, `.` or `..`
//! segment and normalises to itself without allocating; every rule matches its own path; without annotations, the built table serves
//! the path exactly when one of the rules matches it.

#![no_main]

use std::borrow::Cow;
use std::collections::BTreeMap;

use certgate::annotations::PREFIX;
use certgate::routing::build::{BuildOptions, build};
use certgate::routing::path::{self, PathType};
use certgate::routing::table::Resolved;
use certgate::world::{ObjectKey, World};
use k8s_openapi::api::networking::v1::Ingress;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const HOST: &str = "fuzz.example";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let raw = lines.next().unwrap_or_default();
    let mut rules = Vec::new();
    let mut annotations = BTreeMap::new();
    for line in lines {
        let Some((word, rest)) = line.split_once(' ') else {
            continue;
        };
        match word {
            "Exact" => rules.push((PathType::Exact, "Exact", rest)),
            "Prefix" => rules.push((PathType::Prefix, "Prefix", rest)),
            "ImplementationSpecific" => rules.push((
                PathType::ImplementationSpecific,
                "ImplementationSpecific",
                rest,
            )),
            "use-regex" | "rewrite-target" => {
                annotations.insert(format!("{PREFIX}{word}"), rest.to_owned());
            }
            _ => {}
        }
    }

    let normal = match path::normalize(raw) {
        Ok(normal) => normal.into_owned(),
        Err(error) => {
            let _ = error.to_string();
            assert_eq!(reference(raw), None, "{raw:?} refused: {error}");
            return;
        }
    };
    assert_eq!(
        reference(raw),
        decode_all(&normal),
        "{raw:?} normalised to {normal:?}"
    );
    assert!(normal.starts_with('/'), "not absolute: {normal:?}");
    assert!(
        matches!(path::normalize(&normal), Ok(Cow::Borrowed(again)) if again == normal),
        "not a fixed point: {raw:?} -> {normal:?}"
    );
    let segments: Vec<&str> = normal[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(
            (last || !segment.is_empty()) && *segment != "." && *segment != "..",
            "segment {segment:?} left in {normal:?}"
        );
    }

    for &(path_type, _, rule) in &rules {
        let _ = path::matches(path_type, rule, &normal);
        assert!(
            path::matches(path_type, rule, rule),
            "{rule:?} does not match itself"
        );
    }
    let mut sorted = rules.clone();
    sorted.sort_by_key(|&(path_type, _, rule)| path::precedence_key(path_type, rule));
    // Without annotations the table matches plainly: some route serves the path exactly when some rule
    // the builder accepts (absolute; an empty path is "/") matches it.
    let plain_match = sorted.iter().any(|&(path_type, _, rule)| {
        let rule = if rule.is_empty() { "/" } else { rule };
        rule.starts_with('/') && path::matches(path_type, rule, &normal)
    });

    // The same rules through the real builder and table, as the proxy resolves and rewrites a request.
    let paths: Vec<_> = rules
        .iter()
        .map(|&(_, name, rule)| {
            json!({
                "path": rule,
                "pathType": name,
                "backend": {"service": {"name": "web", "port": {"number": 80}}},
            })
        })
        .collect();
    let ingress: Ingress = match serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "fuzz", "namespace": "default", "annotations": annotations},
        "spec": {"rules": [{"host": HOST, "http": {"paths": paths}}]},
    })) {
        Ok(ingress) => ingress,
        Err(error) => panic!("harness built an invalid Ingress: {error}"),
    };
    let mut world = World::default();
    world
        .ingresses
        .insert(ObjectKey::new("default", "fuzz"), ingress.into());
    let built = build(&world, &options());
    let resolved = built.table.resolve(HOST, &normal);
    if annotations.is_empty() {
        assert_eq!(
            matches!(resolved, Resolved::Route { .. }),
            plain_match,
            "table and path::matches disagree on {normal:?}"
        );
    }
    if let Resolved::Route { route, .. } = resolved {
        let _ = route.rewrite(&normal);
    }
});

fn options() -> BuildOptions {
    BuildOptions {
        controller: "certgate.io/ingress-controller".into(),
        ingress_class: "certgate".into(),
        watch_without_class: true,
        allow_loopback: true,
    }
}

/// Every `%XX` decoded, as bytes; `None` for a malformed escape.
fn decode_all(path: &str) -> Option<Vec<u8>> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .ok()
                    .filter(|_| !hex.starts_with('+'))?,
            );
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The meaning of a request path, written independently of `path::normalize`: decode everything (refusing
/// what would change the path's structure for a backend), merge slashes, resolve `.` and `..`.
fn reference(raw: &str) -> Option<Vec<u8>> {
    let rest = raw.strip_prefix('/')?;
    if raw.contains('\\') || raw.contains('\0') {
        return None;
    }
    // An escape that decodes to '/' would add a segment; '\\' and NUL are refused too.
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut trailing_slash = true;
    for raw_segment in rest.split('/') {
        let segment = decode_all(raw_segment)?;
        if segment.iter().any(|&b| matches!(b, b'/' | b'\\' | 0)) {
            return None;
        }
        match segment.as_slice() {
            b"" | b"." => trailing_slash = true,
            b".." => {
                segments.pop()?;
                trailing_slash = true;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = b"/".to_vec();
    out.extend(segments.join(&b'/'));
    if trailing_slash && !segments.is_empty() {
        out.push(b'/');
    }
    Some(out)
}
