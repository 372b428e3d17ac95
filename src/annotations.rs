//! ingress-nginx annotations (`nginx.ingress.kubernetes.io/*`): parsed into typed settings, with every
//! problem named. Pure: takes the annotation map, returns values.
//!
//! Outcomes, as the proxy issue defines them:
//! - a supported annotation with a valid value becomes a setting;
//! - a supported annotation with an invalid value is an `AnnotationError`: the Ingress's paths are not served;
//! - an annotation certgate does not implement is listed in `unsupported` and the rest is served;
//! - `*-snippet` annotations are listed in `refused`: raw configuration text never reaches the data plane.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::world::ObjectKey;

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Settings one Ingress's annotations ask for. `None` means "not set": the builder applies the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressSettings {
    pub rewrite_target: Option<String>,
    pub use_regex: bool,
    pub auth: Option<BasicAuth>,
    pub ssl_redirect: Option<bool>,
    pub force_ssl_redirect: bool,
    pub preserve_trailing_slash: bool,
    pub body_size: Option<BodySize>,
    pub connect_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
}

/// `auth-type: basic` with its Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub secret: ObjectKey,
    pub secret_type: AuthSecretType,
    pub realm: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSecretType {
    /// Key `auth` holds an htpasswd file.
    AuthFile,
    /// Every key is a user name, its value the password hash.
    AuthMap,
}

/// `proxy-body-size`: nginx's `client_max_body_size` syntax; 0 disables the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    Unlimited,
    Max(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}: {problem}")]
pub struct AnnotationError {
    pub annotation: String,
    pub problem: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedAnnotations {
    pub settings: IngressSettings,
    pub invalid: Vec<AnnotationError>,
    pub unsupported: Vec<String>,
    pub refused: Vec<String>,
}

/// Parse the annotations of an Ingress in `namespace`. Annotations outside the ingress-nginx prefix are
/// not ours and are ignored.
pub fn parse(annotations: &BTreeMap<String, String>, namespace: &str) -> ParsedAnnotations {
    let mut out = ParsedAnnotations::default();
    let mut auth_type = None;
    let mut auth_secret = None;
    let mut auth_secret_type = AuthSecretType::AuthFile;
    let mut auth_realm = None;

    for (full_name, value) in annotations {
        let Some(name) = full_name.strip_prefix(PREFIX) else {
            continue;
        };
        let mut invalid = |problem: String| {
            out.invalid.push(AnnotationError {
                annotation: full_name.clone(),
                problem,
            })
        };
        let s = &mut out.settings;
        match name {
            "rewrite-target" => match value.trim() {
                "" => invalid("must not be empty".into()),
                t => s.rewrite_target = Some(t.to_owned()),
            },
            "use-regex" => match parse_bool(value) {
                Ok(b) => s.use_regex = b,
                Err(p) => invalid(p),
            },
            "ssl-redirect" => match parse_bool(value) {
                Ok(b) => s.ssl_redirect = Some(b),
                Err(p) => invalid(p),
            },
            "force-ssl-redirect" => match parse_bool(value) {
                Ok(b) => s.force_ssl_redirect = b,
                Err(p) => invalid(p),
            },
            "preserve-trailing-slash" => match parse_bool(value) {
                Ok(b) => s.preserve_trailing_slash = b,
                Err(p) => invalid(p),
            },
            "proxy-body-size" => match parse_size(value) {
                Ok(size) => s.body_size = Some(size),
                Err(p) => invalid(p),
            },
            "proxy-connect-timeout" => match parse_seconds(value) {
                Ok(d) => s.connect_timeout = Some(d),
                Err(p) => invalid(p),
            },
            "proxy-send-timeout" => match parse_seconds(value) {
                Ok(d) => s.send_timeout = Some(d),
                Err(p) => invalid(p),
            },
            "proxy-read-timeout" => match parse_seconds(value) {
                Ok(d) => s.read_timeout = Some(d),
                Err(p) => invalid(p),
            },
            "auth-type" => match value.trim() {
                "basic" => auth_type = Some(()),
                "digest" => {
                    invalid("digest authentication is not supported by certgate; use basic".into())
                }
                other => invalid(format!(
                    "{other:?} is not an auth type (expected \"basic\")"
                )),
            },
            "auth-secret" => match ObjectKey::parse(value.trim(), namespace) {
                Some(key) => auth_secret = Some(key),
                None => invalid(format!("{value:?} is not a Secret name or namespace/name")),
            },
            "auth-secret-type" => match value.trim() {
                "auth-file" => auth_secret_type = AuthSecretType::AuthFile,
                "auth-map" => auth_secret_type = AuthSecretType::AuthMap,
                other => invalid(format!("{other:?} is not \"auth-file\" or \"auth-map\"")),
            },
            "auth-realm" => auth_realm = Some(value.clone()),
            n if n.ends_with("-snippet") => out.refused.push(full_name.clone()),
            _ => out.unsupported.push(full_name.clone()),
        }
    }

    match (auth_type, auth_secret) {
        (Some(()), Some(secret)) => {
            out.settings.auth = Some(BasicAuth {
                secret,
                secret_type: auth_secret_type,
                realm: auth_realm,
            })
        }
        (Some(()), None) => out.invalid.push(AnnotationError {
            annotation: format!("{PREFIX}auth-secret"),
            problem: "auth-type is basic but no auth-secret is given".into(),
        }),
        // ingress-nginx ignores auth-secret without auth-type; so do we.
        (None, _) => {}
    }
    out
}

/// Go's strconv.ParseBool, which ingress-nginx uses.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!(
            "{other:?} is not a boolean (expected \"true\" or \"false\")"
        )),
    }
}

/// nginx size syntax: a number of bytes with an optional k/K, m/M or g/G suffix.
fn parse_size(value: &str) -> Result<BodySize, String> {
    let v = value.trim();
    let (digits, unit) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 'b'),
    };
    let multiplier: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return Err(format!("{v:?} is not a size (expected e.g. 8m, 512k, 0)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{v:?} is not a size (expected e.g. 8m, 512k, 0)"))?;
    match n.checked_mul(multiplier) {
        Some(0) => Ok(BodySize::Unlimited),
        Some(bytes) => Ok(BodySize::Max(bytes)),
        None => Err(format!("{v:?} is too large")),
    }
}

/// Whole seconds, as ingress-nginx's proxy-*-timeout annotations take them.
fn parse_seconds(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    match v.parse::<u64>() {
        Ok(n) if n > 0 && n <= 86_400 => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "{v:?} is not a number of seconds between 1 and 86400"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn no_annotations_means_defaults() {
        assert_eq!(
            parse(&BTreeMap::new(), "default"),
            ParsedAnnotations::default()
        );
    }

    #[test]
    fn foreign_annotations_are_ignored() {
        let mut a = BTreeMap::new();
        a.insert(
            "cert-manager.io/cluster-issuer".to_string(),
            "le".to_string(),
        );
        assert_eq!(parse(&a, "default"), ParsedAnnotations::default());
    }

    #[test]
    fn rewrite_and_regex_are_parsed() {
        let p = parse(
            &annotations(&[("rewrite-target", "/$1"), ("use-regex", "true")]),
            "ns",
        );
        assert_eq!(p.settings.rewrite_target.as_deref(), Some("/$1"));
        assert!(p.settings.use_regex);
        assert!(p.invalid.is_empty());
    }

    #[test]
    fn go_boolean_spellings_are_accepted_and_others_are_invalid() {
        assert_eq!(
            parse(&annotations(&[("ssl-redirect", "False")]), "ns")
                .settings
                .ssl_redirect,
            Some(false)
        );
        assert!(
            parse(&annotations(&[("force-ssl-redirect", "1")]), "ns")
                .settings
                .force_ssl_redirect
        );
        let p = parse(&annotations(&[("ssl-redirect", "yes")]), "ns");
        assert_eq!(p.invalid.len(), 1);
        assert_eq!(p.invalid[0].annotation, format!("{PREFIX}ssl-redirect"));
        assert!(p.invalid[0].problem.contains("\"yes\""), "{}", p.invalid[0]);
    }

    #[test]
    fn body_size_uses_nginx_units_and_zero_disables_the_limit() {
        let size = |v| {
            parse(&annotations(&[("proxy-body-size", v)]), "ns")
                .settings
                .body_size
        };
        assert_eq!(size("8m"), Some(BodySize::Max(8 << 20)));
        assert_eq!(size("512K"), Some(BodySize::Max(512 << 10)));
        assert_eq!(size("1g"), Some(BodySize::Max(1 << 30)));
        assert_eq!(size("1000"), Some(BodySize::Max(1000)));
        assert_eq!(size("0"), Some(BodySize::Unlimited));
        for bad in ["", "m", "8x", "-1", "1.5m", "99999999999999999999g"] {
            assert_eq!(
                parse(&annotations(&[("proxy-body-size", bad)]), "ns")
                    .invalid
                    .len(),
                1,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn basic_auth_needs_a_secret_and_resolves_its_namespace() {
        let p = parse(
            &annotations(&[
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("auth-realm", "Staff"),
            ]),
            "prod",
        );
        assert_eq!(
            p.settings.auth,
            Some(BasicAuth {
                secret: ObjectKey::new("prod", "users"),
                secret_type: AuthSecretType::AuthFile,
                realm: Some("Staff".into())
            })
        );
        let p = parse(
            &annotations(&[
                ("auth-type", "basic"),
                ("auth-secret", "sec/users"),
                ("auth-secret-type", "auth-map"),
            ]),
            "prod",
        );
        let auth = p.settings.auth.unwrap();
        assert_eq!(
            (auth.secret, auth.secret_type),
            (ObjectKey::new("sec", "users"), AuthSecretType::AuthMap)
        );

        let p = parse(&annotations(&[("auth-type", "basic")]), "prod");
        assert_eq!(p.settings.auth, None);
        assert_eq!(p.invalid[0].annotation, format!("{PREFIX}auth-secret"));
    }

    #[test]
    fn digest_auth_is_an_invalid_value_not_open_access() {
        let p = parse(
            &annotations(&[("auth-type", "digest"), ("auth-secret", "users")]),
            "prod",
        );
        assert_eq!(p.settings.auth, None);
        assert_eq!(p.invalid.len(), 1);
        assert!(p.invalid[0].problem.contains("not supported"));
    }

    #[test]
    fn snippets_are_refused_and_unknown_annotations_reported() {
        let p = parse(
            &annotations(&[
                ("configuration-snippet", "deny all;"),
                ("server-snippet", "x"),
                ("enable-cors", "true"),
            ]),
            "ns",
        );
        assert_eq!(
            p.refused,
            [
                format!("{PREFIX}configuration-snippet"),
                format!("{PREFIX}server-snippet")
            ]
        );
        assert_eq!(p.unsupported, [format!("{PREFIX}enable-cors")]);
        assert!(p.invalid.is_empty());
    }

    #[test]
    fn timeouts_are_whole_seconds() {
        let p = parse(
            &annotations(&[
                ("proxy-read-timeout", "120"),
                ("proxy-send-timeout", "30"),
                ("proxy-connect-timeout", " 3 "),
            ]),
            "ns",
        );
        assert!(p.unsupported.is_empty() && p.invalid.is_empty(), "{p:?}");
        assert_eq!(p.settings.read_timeout, Some(Duration::from_secs(120)));
        assert_eq!(p.settings.send_timeout, Some(Duration::from_secs(30)));
        assert_eq!(p.settings.connect_timeout, Some(Duration::from_secs(3)));
        for name in [
            "proxy-read-timeout",
            "proxy-send-timeout",
            "proxy-connect-timeout",
        ] {
            for bad in ["0", "5s", "-1", "1.5", ""] {
                let p = parse(&annotations(&[(name, bad)]), "ns");
                assert_eq!(p.invalid.len(), 1, "{name}: {bad:?}");
                assert_eq!(p.invalid[0].annotation, format!("{PREFIX}{name}"));
            }
        }
    }
}
