//! Parsing of a `kubernetes.io/tls` Secret's `tls.crt` and `tls.key` into a chain and signing key that
//! rustls can serve.
//!
//! Pure: bytes in, [`LoadedCert`] or [`KeyPairError`] out. It reads neither Secrets nor the clock, and does
//! not decide which host a certificate serves (that is [`super::resolver`]).
//!
//! SECURITY: errors name the Secret field and the kind of problem, never the bytes of `tls.key`; they end
//! up in logs, Events and Ingress status.

use std::sync::Arc;

// The same provider as the HTTPS listeners' configuration (src/tls/server_config.rs).
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys};
use x509_parser::extensions::GeneralName;

/// Secret data key holding the PEM certificate chain, leaf first.
pub const CERT_FIELD: &str = "tls.crt";
/// Secret data key holding the PEM private key.
pub const KEY_FIELD: &str = "tls.key";

/// Subject CN of the generated default certificate, the same text ingress-nginx uses so that tools and
/// people recognising "the fake certificate" keep doing so.
pub const DEFAULT_CERT_CN: &str = "Kubernetes Ingress Controller Fake Certificate";
/// The only SAN of the generated default certificate.
pub const DEFAULT_CERT_HOST: &str = "ingress.local";

/// Why a Secret's `tls.crt` / `tls.key` cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum KeyPairError {
    #[error("tls.crt contains no PEM \"CERTIFICATE\" block")]
    NoCertificate,
    #[error(
        "tls.key contains no PEM private key block (\"RSA PRIVATE KEY\", \"PRIVATE KEY\" or \"EC PRIVATE KEY\")"
    )]
    NoPrivateKey,
    /// The PEM framing itself is broken; `reason` is a fixed description, never the offending bytes.
    #[error("{field} is not valid PEM: {reason}")]
    BadPem {
        field: &'static str,
        reason: &'static str,
    },
    /// Certificate `index` (0 = leaf) in `tls.crt` is not a usable X.509 certificate.
    #[error("tls.crt: certificate #{index} is not a valid X.509 certificate: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error(
        "tls.key: {encoding} key is not a supported type (RSA of at least 2048 bits, ECDSA P-256 or P-384, Ed25519)"
    )]
    UnsupportedKey { encoding: &'static str },
    #[error("tls.key does not match the public key of the first certificate in tls.crt")]
    KeyDoesNotMatchCertificate,
    #[error("generating the default certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A parsed certificate chain and key, ready to serve.
#[derive(Clone, Debug)]
pub struct LoadedCert {
    /// Chain in the order given in `tls.crt` (leaf first) and the matching signing key.
    pub certified: Arc<CertifiedKey>,
    /// DNS subject alternative names of the leaf, lower-cased, without trailing dot; may hold wildcards
    /// (`*.example.com`). The subject CN is ignored, as by Go's crypto/tls and browsers.
    pub names: Vec<String>,
    /// Leaf `notBefore`, unix seconds.
    pub not_before: i64,
    /// Leaf `notAfter`, unix seconds.
    pub not_after: i64,
}

impl LoadedCert {
    /// Whether the leaf is inside its validity window at `now` (unix seconds, inclusive bounds as in
    /// RFC 5280). Loading never rejects a certificate on time: nginx serves an expired certificate too, and
    /// the caller decides (and reports) what to do with one.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Whether one of the leaf's DNS SANs covers `host`, with the same rules as SNI selection
    /// ([`super::resolver::name_matches`]).
    pub fn covers(&self, host: &str) -> bool {
        self.names
            .iter()
            .any(|pattern| super::resolver::name_matches(pattern, host))
    }
}

/// Parse `tls.crt` (PEM: leaf first, then the chain) and `tls.key` (PEM: PKCS#1 `RSA PRIVATE KEY`,
/// PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`; RSA, ECDSA P-256/P-384 or Ed25519).
///
/// Blocks of other types are skipped (an `EC PARAMETERS` block before the key, a key pasted into
/// `tls.crt`), as OpenSSL does. Only the first private key is used. The key must match the leaf.
pub fn load(tls_crt: &[u8], tls_key: &[u8]) -> Result<LoadedCert, KeyPairError> {
    let chain = CertificateDer::pem_slice_iter(tls_crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(CERT_FIELD, &error))?;
    let Some(leaf) = chain.first() else {
        return Err(KeyPairError::NoCertificate);
    };

    // Parse every certificate, not only the leaf, so a broken intermediate is reported here (as nginx
    // does when loading the file) rather than as an opaque handshake failure in some client.
    for (index, der) in chain.iter().enumerate().skip(1) {
        parse_x509(index, der)?;
    }
    let (names, not_before, not_after) = {
        let leaf = parse_x509(0, leaf)?;
        // webpki (rustls, and so `keys_match` below) and browsers only take v3 end-entity certificates;
        // say so plainly rather than through webpki's error.
        if leaf.version() != x509_parser::x509::X509Version::V3 {
            return Err(KeyPairError::BadCertificate {
                index: 0,
                reason: format!(
                    "version {}; TLS clients require version 3",
                    leaf.version().0.saturating_add(1)
                ),
            });
        }
        let validity = leaf.validity();
        (
            dns_names(&leaf)?,
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        )
    };

    let key = match PrivateKeyDer::from_pem_slice(tls_key) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => return Err(KeyPairError::NoPrivateKey),
        Err(error) => return Err(pem_error(KEY_FIELD, &error)),
    };
    let encoding = match &key {
        PrivateKeyDer::Pkcs1(_) => "PKCS#1",
        PrivateKeyDer::Sec1(_) => "SEC1",
        PrivateKeyDer::Pkcs8(_) => "PKCS#8",
        _ => "unknown",
    };
    // SECURITY: rustls' error here is a fixed string, but it is dropped anyway: nothing derived from the
    // key's bytes goes into the error.
    let signing_key =
        any_supported_type(&key).map_err(|_| KeyPairError::UnsupportedKey { encoding })?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot report its public key. Every aws-lc-rs key can, so this is unreachable in
        // practice; rustls' own `CertifiedKey::from_der` accepts it the same way.
        Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(KeyPairError::KeyDoesNotMatchCertificate);
        }
        // webpki could not parse a leaf that x509-parser accepted; rustls clients would refuse it too.
        Err(error) => {
            return Err(KeyPairError::BadCertificate {
                index: 0,
                reason: format!("rustls cannot use it: {error}"),
            });
        }
    }

    Ok(LoadedCert {
        certified: Arc::new(certified),
        names,
        not_before,
        not_after,
    })
}

/// A self-signed certificate generated at start and served when nothing else matches, like
/// ingress-nginx's "Kubernetes Ingress Controller Fake Certificate" (subject CN [`DEFAULT_CERT_CN`], SAN
/// [`DEFAULT_CERT_HOST`]), valid from today for one year.
///
/// The key is ECDSA P-256: rcgen on ring cannot generate RSA keys (ingress-nginx's is RSA 2048).
pub fn generate_default() -> Result<LoadedCert, KeyPairError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![DEFAULT_CERT_HOST.to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme Co");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEFAULT_CERT_CN);
    let (year, month, day) = calendar_day(chrono::Utc::now().date_naive());
    params.not_before = rcgen::date_time_ymd(year, month, day);
    params.not_after = rcgen::date_time_ymd(year.saturating_add(1), month, day);
    let cert = params.self_signed(&key)?;
    load(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

/// `today` as rcgen wants it, with the day clamped to 28 so that "same day next year" exists even from
/// 29 February (`date_time_ymd` panics on an invalid date).
fn calendar_day(today: chrono::NaiveDate) -> (i32, u8, u8) {
    use chrono::Datelike;
    // chrono months and days are always 1..=12 and 1..=31, so the narrowing cannot fail.
    let month = u8::try_from(today.month()).unwrap_or(1);
    let day = u8::try_from(today.day()).unwrap_or(1).min(28);
    (today.year(), month, day)
}

fn parse_x509(
    index: usize,
    der: &[u8],
) -> Result<x509_parser::certificate::X509Certificate<'_>, KeyPairError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => Ok(cert),
        Err(error) => Err(KeyPairError::BadCertificate {
            index,
            reason: error.to_string(),
        }),
    }
}

fn dns_names(
    leaf: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<Vec<String>, KeyPairError> {
    let san = leaf
        .subject_alternative_name()
        .map_err(|error| KeyPairError::BadCertificate {
            index: 0,
            reason: format!("subjectAltName: {error}"),
        })?;
    let Some(san) = san else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        })
        .collect())
}

/// A fixed description of a PEM framing error. pki-types' own messages can quote the offending line,
/// which for `tls.key` would put key bytes into logs.
fn pem_error(field: &'static str, error: &pem::Error) -> KeyPairError {
    let reason = match error {
        pem::Error::MissingSectionEnd { .. } => "a BEGIN line has no matching END line",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "the body of a block is not valid base64",
        pem::Error::SectionTooLarge => "a block is too large",
        pem::Error::NoItemsFound => "no PEM block found",
        _ => "unreadable PEM",
    };
    KeyPairError::BadPem { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::{TestCa, self_signed};
    use rcgen::{CertificateParams, KeyPair};

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/tls/",
                $name
            ))
            .as_slice()
        };
    }

    fn load_str(crt: &str, key: &str) -> Result<LoadedCert, KeyPairError> {
        load(crt.as_bytes(), key.as_bytes())
    }

    #[test]
    fn rsa_pkcs1_key_loads() {
        let loaded = load(fixture!("rsa.crt"), fixture!("rsa.pkcs1.key")).unwrap();
        assert_eq!(loaded.names, ["rsa.example.com"]);
    }

    #[test]
    fn rsa_pkcs8_key_loads() {
        let loaded = load(fixture!("rsa.crt"), fixture!("rsa.pkcs8.key")).unwrap();
        assert_eq!(loaded.names, ["rsa.example.com"]);
    }

    #[test]
    fn ecdsa_p256_sec1_key_loads() {
        let loaded = load(fixture!("ec-p256.crt"), fixture!("ec-p256.sec1.key")).unwrap();
        assert_eq!(loaded.names, ["ec256.example.com"]);
    }

    #[test]
    fn ecdsa_p384_sec1_key_loads() {
        let loaded = load(fixture!("ec-p384.crt"), fixture!("ec-p384.sec1.key")).unwrap();
        assert_eq!(loaded.names, ["ec384.example.com"]);
    }

    #[test]
    fn ed25519_pkcs8_key_loads() {
        let loaded = load(fixture!("ed25519.crt"), fixture!("ed25519.key")).unwrap();
        assert_eq!(loaded.names, ["ed25519.example.com"]);
    }

    #[test]
    fn pkcs8_keys_from_rcgen_load_for_each_curve() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let cert = CertificateParams::new(vec!["x.example.com".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let loaded = load_str(&cert.pem(), &key.serialize_pem()).unwrap();
            assert_eq!(loaded.certified.cert, [cert.der().clone()], "{alg:?}");
        }
    }

    #[test]
    fn ec_parameters_block_before_sec1_key_is_skipped() {
        // What `openssl ecparam -genkey` writes without -noout.
        let mut key =
            b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
                .to_vec();
        key.extend_from_slice(fixture!("ec-p256.sec1.key"));
        assert!(load(fixture!("ec-p256.crt"), &key).is_ok());
    }

    #[test]
    fn chain_order_is_preserved_leaf_first() {
        let ca = TestCa::new();
        let leaf = ca.leaf(&["a.example.com"]);
        let loaded = load_str(&leaf.crt, &leaf.key).unwrap();
        assert_eq!(loaded.certified.cert, [leaf.leaf_der, ca.der]);
    }

    #[test]
    fn names_are_dns_sans_lower_cased_and_cn_is_ignored() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![
            "WWW.Example.COM".to_owned(),
            "*.Example.com".to_owned(),
            "10.0.0.1".to_owned(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cn-only.example.com");
        let cert = params.self_signed(&key).unwrap();
        let loaded = load_str(&cert.pem(), &key.serialize_pem()).unwrap();
        assert_eq!(loaded.names, ["www.example.com", "*.example.com"]);
    }

    #[test]
    fn certificate_without_sans_has_no_names() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cn-only.example.com");
        let cert = params.self_signed(&key).unwrap();
        let loaded = load_str(&cert.pem(), &key.serialize_pem()).unwrap();
        assert!(loaded.names.is_empty());
        assert!(!loaded.covers("cn-only.example.com"));
    }

    #[test]
    fn validity_window_is_read_from_the_leaf() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["x.example.com".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let loaded = load_str(&cert.pem(), &key.serialize_pem()).unwrap();
        assert_eq!(loaded.not_before, 1_893_456_000);
        assert_eq!(loaded.not_after, 1_924_992_000);
        assert!(!loaded.is_valid_at(1_893_455_999));
        assert!(loaded.is_valid_at(1_893_456_000));
        assert!(loaded.is_valid_at(1_924_992_000));
        assert!(!loaded.is_valid_at(1_924_992_001));
    }

    #[test]
    fn expired_certificate_still_loads() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["old.example.com".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        assert!(load_str(&cert.pem(), &key.serialize_pem()).is_ok());
    }

    #[test]
    fn key_of_another_certificate_is_rejected() {
        let a = self_signed(&["a.example.com"]);
        let b = self_signed(&["b.example.com"]);
        let error = load_str(&a.crt, &b.key).unwrap_err();
        assert!(
            matches!(error, KeyPairError::KeyDoesNotMatchCertificate),
            "{error:?}"
        );
    }

    #[test]
    fn key_of_another_algorithm_is_rejected() {
        let error = load(fixture!("rsa.crt"), fixture!("ec-p256.sec1.key")).unwrap_err();
        assert!(
            matches!(error, KeyPairError::KeyDoesNotMatchCertificate),
            "{error:?}"
        );
    }

    #[test]
    fn key_matching_the_ca_instead_of_the_leaf_is_rejected() {
        // The chain holds the CA's certificate, but only the leaf's key may serve it.
        let ca = TestCa::new();
        let leaf = ca.leaf(&["a.example.com"]);
        let other = ca.leaf(&["b.example.com"]);
        let error = load_str(&leaf.crt, &other.key).unwrap_err();
        assert!(
            matches!(error, KeyPairError::KeyDoesNotMatchCertificate),
            "{error:?}"
        );
    }

    #[test]
    fn empty_tls_crt_is_no_certificate_naming_the_field() {
        let pem = self_signed(&["a.example.com"]);
        let error = load_str("", &pem.key).unwrap_err();
        assert!(matches!(error, KeyPairError::NoCertificate), "{error:?}");
        assert!(error.to_string().contains("tls.crt"));
    }

    #[test]
    fn tls_crt_holding_only_a_key_is_no_certificate() {
        let pem = self_signed(&["a.example.com"]);
        let error = load_str(&pem.key, &pem.key).unwrap_err();
        assert!(matches!(error, KeyPairError::NoCertificate), "{error:?}");
    }

    #[test]
    fn missing_key_is_no_private_key_naming_the_field() {
        let pem = self_signed(&["a.example.com"]);
        for key in ["", "not pem at all", pem.crt.as_str()] {
            let error = load_str(&pem.crt, key).unwrap_err();
            assert!(matches!(error, KeyPairError::NoPrivateKey), "{error:?}");
            assert!(error.to_string().contains("tls.key"));
        }
    }

    #[test]
    fn garbage_certificate_pem_is_bad_pem_naming_tls_crt() {
        let pem = self_signed(&["a.example.com"]);
        let crt = "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n";
        let error = load_str(crt, &pem.key).unwrap_err();
        assert!(
            matches!(
                error,
                KeyPairError::BadPem {
                    field: "tls.crt",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("tls.crt "));
    }

    #[test]
    fn truncated_key_is_bad_pem_naming_tls_key_without_echoing_it() {
        let pem = self_signed(&["a.example.com"]);
        let truncated: String = pem
            .key
            .lines()
            .filter(|line| !line.starts_with("-----END"))
            .map(|line| format!("{line}\n"))
            .collect();
        let error = load_str(&pem.crt, &truncated).unwrap_err();
        assert!(
            matches!(
                error,
                KeyPairError::BadPem {
                    field: "tls.key",
                    ..
                }
            ),
            "{error:?}"
        );
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("tls.key"));
        for body_line in pem.key.lines().filter(|line| !line.starts_with("-----")) {
            assert!(
                !shown.contains(body_line),
                "error echoes key material: {shown}"
            );
        }
    }

    #[test]
    fn key_block_that_is_not_a_key_is_unsupported_key() {
        let pem = self_signed(&["a.example.com"]);
        // Valid base64 ("hello"), not a key.
        let key = "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n";
        let error = load_str(&pem.crt, key).unwrap_err();
        assert!(
            matches!(error, KeyPairError::UnsupportedKey { encoding: "PKCS#8" }),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("tls.key: "));
    }

    #[test]
    fn certificate_block_that_is_not_x509_is_bad_certificate_with_its_index() {
        let pem = self_signed(&["a.example.com"]);
        let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";

        let error = load_str(junk, &pem.key).unwrap_err();
        assert!(
            matches!(error, KeyPairError::BadCertificate { index: 0, .. }),
            "{error:?}"
        );

        let error = load_str(&format!("{}{junk}", pem.crt), &pem.key).unwrap_err();
        assert!(
            matches!(error, KeyPairError::BadCertificate { index: 1, .. }),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("tls.crt: certificate #1 "));
    }

    #[test]
    fn x509_v1_leaf_is_bad_certificate() {
        let error = load(fixture!("ec-p256.v1.crt"), fixture!("ec-p256.sec1.key")).unwrap_err();
        assert!(
            matches!(error, KeyPairError::BadCertificate { index: 0, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "tls.crt: certificate #0 is not a valid X.509 certificate: version 1; TLS clients require version 3"
        );
    }

    #[test]
    fn generated_default_is_the_ingress_nginx_fake_certificate() {
        let loaded = generate_default().unwrap();
        assert_eq!(loaded.names, [DEFAULT_CERT_HOST]);
        assert_eq!(loaded.certified.cert.len(), 1);
        let (_, leaf) = x509_parser::parse_x509_certificate(&loaded.certified.cert[0]).unwrap();
        let cn: Vec<_> = leaf
            .subject()
            .iter_common_name()
            .map(|cn| cn.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(cn, [DEFAULT_CERT_CN]);
        let now = chrono::Utc::now().timestamp();
        assert!(loaded.is_valid_at(now));
        assert!(loaded.not_after - loaded.not_before >= 365 * 24 * 3600);
    }

    #[test]
    fn default_validity_from_29_february_is_a_real_date() {
        let leap = chrono::NaiveDate::from_ymd_opt(2028, 2, 29).unwrap();
        assert_eq!(calendar_day(leap), (2028, 2, 28));
    }

    #[test]
    fn covers_uses_sans_with_wildcard_rules() {
        let pem = self_signed(&["a.example.com", "*.wild.example.com"]);
        let loaded = load_str(&pem.crt, &pem.key).unwrap();
        assert!(loaded.covers("A.example.com."));
        assert!(loaded.covers("x.wild.example.com"));
        assert!(!loaded.covers("wild.example.com"));
        assert!(!loaded.covers("x.y.wild.example.com"));
        assert!(!loaded.covers("b.example.com"));
    }
}
