//! The ingress-nginx annotations of one Ingress.
//!
//! Input: UTF-8 text, one annotation per line as `name: value` (split at the first `": "`, else the first
//! `:`). A name without `/` gets the `nginx.ingress.kubernetes.io/` prefix, so mutations land on the
//! annotations certgate reads. Each value is also read as a Secret reference (`ObjectKey::parse`).
//!
//! Properties: no panic; every outcome is one of the documented ones (settings within their ranges, only
//! prefixed names reported); the `auth-realm` challenge is always a valid header value.

#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use certgate::annotations::{self, BodySize, PREFIX};
use certgate::auth::basic;
use certgate::world::ObjectKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(": ").or_else(|| line.split_once(':')) else {
            continue;
        };
        let name = if name.contains('/') {
            name.to_owned()
        } else {
            format!("{PREFIX}{name}")
        };
        if let Some(key) = ObjectKey::parse(value, "default") {
            assert!(!key.namespace.is_empty() && !key.name.is_empty());
            assert!(!key.name.contains('/'));
        }
        map.insert(name, value.to_owned());
    }
    let parsed = annotations::parse(&map, "default");

    let ours = map.keys().filter(|name| name.starts_with(PREFIX)).count();
    for name in parsed.unsupported.iter().chain(&parsed.refused) {
        assert!(name.starts_with(PREFIX), "reported a foreign annotation");
    }
    // One outcome per annotation, plus the missing auth-secret of an `auth-type: basic`.
    assert!(parsed.invalid.len() + parsed.unsupported.len() + parsed.refused.len() <= ours + 1);
    for error in &parsed.invalid {
        let _ = error.to_string();
    }

    let s = &parsed.settings;
    if let Some(target) = &s.rewrite_target {
        assert!(!target.is_empty() && target.trim() == target);
    }
    if let Some(BodySize::Max(bytes)) = s.body_size {
        assert!(bytes > 0);
    }
    for timeout in [s.connect_timeout, s.send_timeout, s.read_timeout]
        .into_iter()
        .flatten()
    {
        assert!((Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&timeout));
    }
    if let Some(auth) = &s.auth {
        assert!(!auth.secret.name.is_empty());
        let realm = auth.realm.as_deref().unwrap_or(basic::DEFAULT_REALM);
        // SECURITY: the realm is user input written into a response header.
        assert!(http::HeaderValue::from_str(&basic::challenge(realm)).is_ok());
    }
});
