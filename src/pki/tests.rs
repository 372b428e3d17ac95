//! Tests for the whole of `pki`: keys, CSRs, issuers and inspection, checked with x509-parser, rustls'
//! webpki verifier and `tls::keypair::load` (what the proxy serves with).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rcgen::{CertificateSigningRequestParams, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::key::{self, KeyAlgorithm, KeyEncoding, KeySpec};
use super::sign::{self, CaKeyPair, LeafKey};
use super::{CertRequest, PkiError, csr, inspect};
use crate::tls::keypair;

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn spec(algorithm: KeyAlgorithm, size: Option<u32>, encoding: KeyEncoding) -> KeySpec {
    KeySpec {
        algorithm,
        size,
        encoding,
    }
}

fn ec256() -> key::GeneratedKey {
    key::generate(&spec(KeyAlgorithm::Ecdsa, None, KeyEncoding::Pkcs8)).unwrap()
}

fn leaf_req(names: &[&str]) -> CertRequest {
    CertRequest {
        common_name: names.first().map(|n| (*n).to_owned()),
        dns_names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..CertRequest::default()
    }
}

fn ca_req(cn: &str) -> CertRequest {
    CertRequest {
        common_name: Some(cn.to_owned()),
        is_ca: true,
        duration: Duration::from_secs(365 * 24 * 3600),
        ..CertRequest::default()
    }
}

fn pem_label(pem: &str) -> &str {
    pem.lines()
        .next()
        .unwrap()
        .trim_start_matches("-----BEGIN ")
        .trim_end_matches("-----")
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Verify `chain_pem` as a TLS server certificate for `name` with only `root_pem` trusted.
fn verify(chain_pem: &str, root_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ders(root_pem).remove(0)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let chain = ders(chain_pem);
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

// ---- keys ----

#[test]
fn every_supported_key_generates_reparses_with_the_right_label_and_serves() {
    let cases = [
        (
            KeyAlgorithm::Rsa,
            None,
            KeyEncoding::Pkcs1,
            "RSA PRIVATE KEY",
            2048,
        ),
        (
            KeyAlgorithm::Rsa,
            Some(2048),
            KeyEncoding::Pkcs8,
            "PRIVATE KEY",
            2048,
        ),
        (
            KeyAlgorithm::Rsa,
            Some(3072),
            KeyEncoding::Pkcs1,
            "RSA PRIVATE KEY",
            3072,
        ),
        (
            KeyAlgorithm::Rsa,
            Some(4096),
            KeyEncoding::Pkcs8,
            "PRIVATE KEY",
            4096,
        ),
        (
            KeyAlgorithm::Ecdsa,
            None,
            KeyEncoding::Pkcs1,
            "EC PRIVATE KEY",
            256,
        ),
        (
            KeyAlgorithm::Ecdsa,
            Some(256),
            KeyEncoding::Pkcs8,
            "PRIVATE KEY",
            256,
        ),
        (
            KeyAlgorithm::Ecdsa,
            Some(384),
            KeyEncoding::Pkcs1,
            "EC PRIVATE KEY",
            384,
        ),
        (
            KeyAlgorithm::Ecdsa,
            Some(384),
            KeyEncoding::Pkcs8,
            "PRIVATE KEY",
            384,
        ),
        (
            KeyAlgorithm::Ed25519,
            None,
            KeyEncoding::Pkcs8,
            "PRIVATE KEY",
            0,
        ),
    ];
    for (algorithm, size, encoding, label, bits) in cases {
        let wanted = spec(algorithm, size, encoding);
        // RSA 4096 takes about 1.3 s in a debug build here; worth keeping.
        let generated = key::generate(&wanted).unwrap();
        assert_eq!(pem_label(&generated.pem), label, "{wanted:?}");
        assert_eq!(generated.spec, spec(algorithm, Some(bits), encoding));

        let parsed = key::parse(&generated.pem).unwrap();
        assert_eq!(parsed.spec, generated.spec, "{wanted:?}");
        assert!(key::matches(&wanted, &parsed.spec));
        assert_eq!(
            parsed.key_pair.public_key_raw(),
            generated.key_pair.public_key_raw()
        );

        // Sign with the parsed key: the PEM as written to tls.key is what the proxy must serve with.
        let issued =
            sign::self_signed(&leaf_req(&["k.example.com"]), &parsed.key_pair, now()).unwrap();
        let loaded = keypair::load(issued.chain_pem.as_bytes(), generated.pem.as_bytes())
            .unwrap_or_else(|error| panic!("{wanted:?}: {error}"));
        assert_eq!(loaded.names, ["k.example.com"]);
    }
}

#[test]
fn ed25519_with_pkcs1_encoding_is_refused_like_cert_manager() {
    let error = key::generate(&spec(KeyAlgorithm::Ed25519, None, KeyEncoding::Pkcs1)).unwrap_err();
    assert!(matches!(error, PkiError::InvalidKeySpec(_)), "{error:?}");
    assert!(error.to_string().contains("Ed25519") && error.to_string().contains("PKCS8"));
}

#[test]
fn ecdsa_p521_is_a_clear_unsupported_error() {
    let error =
        key::generate(&spec(KeyAlgorithm::Ecdsa, Some(521), KeyEncoding::Pkcs1)).unwrap_err();
    assert!(matches!(error, PkiError::UnsupportedKey(_)), "{error:?}");
    assert!(error.to_string().contains("P-521"), "{error}");
}

#[test]
fn out_of_range_sizes_are_invalid_specs() {
    for bad in [
        spec(KeyAlgorithm::Rsa, Some(1024), KeyEncoding::Pkcs1),
        spec(KeyAlgorithm::Rsa, Some(16384), KeyEncoding::Pkcs1),
        spec(KeyAlgorithm::Ecdsa, Some(224), KeyEncoding::Pkcs8),
    ] {
        let error = key::generate(&bad).unwrap_err();
        assert!(
            matches!(error, PkiError::InvalidKeySpec(_)),
            "{bad:?}: {error:?}"
        );
    }
}

#[test]
fn key_matches_compares_algorithm_and_effective_size_not_encoding() {
    let rsa_default = spec(KeyAlgorithm::Rsa, None, KeyEncoding::Pkcs1);
    assert!(key::matches(
        &rsa_default,
        &spec(KeyAlgorithm::Rsa, Some(2048), KeyEncoding::Pkcs8)
    ));
    assert!(!key::matches(
        &rsa_default,
        &spec(KeyAlgorithm::Rsa, Some(4096), KeyEncoding::Pkcs1)
    ));
    assert!(!key::matches(
        &rsa_default,
        &spec(KeyAlgorithm::Ecdsa, Some(256), KeyEncoding::Pkcs1)
    ));
    let ec_default = spec(KeyAlgorithm::Ecdsa, None, KeyEncoding::Pkcs1);
    assert!(key::matches(
        &ec_default,
        &spec(KeyAlgorithm::Ecdsa, Some(256), KeyEncoding::Pkcs8)
    ));
    assert!(!key::matches(
        &ec_default,
        &spec(KeyAlgorithm::Ecdsa, Some(384), KeyEncoding::Pkcs1)
    ));
}

#[test]
fn openssl_fixture_keys_parse_with_their_algorithm_and_encoding() {
    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/tls/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let cases = [
        ("rsa.pkcs1.key", KeyAlgorithm::Rsa, KeyEncoding::Pkcs1),
        ("rsa.pkcs8.key", KeyAlgorithm::Rsa, KeyEncoding::Pkcs8),
        ("ec-p256.sec1.key", KeyAlgorithm::Ecdsa, KeyEncoding::Pkcs1),
        ("ec-p384.sec1.key", KeyAlgorithm::Ecdsa, KeyEncoding::Pkcs1),
        ("ed25519.key", KeyAlgorithm::Ed25519, KeyEncoding::Pkcs8),
    ];
    for (name, algorithm, encoding) in cases {
        let parsed = key::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (parsed.spec.algorithm, parsed.spec.encoding),
            (algorithm, encoding),
            "{name}"
        );
    }
}

#[test]
fn unparseable_keys_are_bad_key_errors_without_key_material() {
    let generated = ec256();
    let body: Vec<&str> = generated
        .pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let truncated = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body[0]
    );
    for input in ["", "hello", truncated.as_str()] {
        let error = key::parse(input).unwrap_err();
        assert!(matches!(error, PkiError::BadKey(_)), "{error:?}");
        let shown = format!("{error} {error:?}");
        assert!(
            !shown.contains(body[0]),
            "error echoes key material: {shown}"
        );
    }
}

// ---- CSR ----

#[test]
fn csr_parses_back_with_sans_subject_and_usages() {
    let key = ec256();
    let req = CertRequest {
        common_name: Some("www.example.com".to_owned()),
        dns_names: vec!["www.example.com".to_owned(), "example.com".to_owned()],
        ip_addresses: vec!["10.1.2.3".parse::<IpAddr>().unwrap()],
        uris: vec!["spiffe://cluster.local/ns/a/sa/b".to_owned()],
        email_addresses: vec!["ops@example.com".to_owned()],
        usages: vec!["digital signature".to_owned(), "server auth".to_owned()],
        ..CertRequest::default()
    };
    let der = csr::build_csr(&req, &key.key_pair).unwrap();
    let parsed = CertificateSigningRequestParams::from_der(&der.as_slice().into()).unwrap();
    assert_eq!(
        parsed.params.subject_alt_names,
        [
            SanType::DnsName("www.example.com".try_into().unwrap()),
            SanType::DnsName("example.com".try_into().unwrap()),
            SanType::IpAddress("10.1.2.3".parse().unwrap()),
            SanType::URI("spiffe://cluster.local/ns/a/sa/b".try_into().unwrap()),
            SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
        ]
    );
    assert_eq!(
        parsed.params.key_usages,
        [KeyUsagePurpose::DigitalSignature]
    );
    assert_eq!(
        parsed.params.extended_key_usages,
        [ExtendedKeyUsagePurpose::ServerAuth]
    );
    assert_eq!(parsed.params.is_ca, rcgen::IsCa::ExplicitNoCa);
    let cn = parsed
        .params
        .distinguished_name
        .get(&rcgen::DnType::CommonName);
    assert_eq!(
        cn,
        Some(&rcgen::DnValue::Utf8String("www.example.com".to_owned()))
    );
    assert_eq!(
        rcgen::PublicKeyData::der_bytes(&parsed.public_key),
        key.key_pair.public_key_raw()
    );
}

#[test]
fn request_without_any_identity_is_refused() {
    let error = csr::build_csr(&CertRequest::default(), &ec256().key_pair).unwrap_err();
    assert!(
        matches!(error, PkiError::InvalidRequest { .. }),
        "{error:?}"
    );
}

#[test]
fn unknown_usage_and_non_ascii_dns_name_name_the_field() {
    let key = ec256();
    let mut req = leaf_req(&["a.example.com"]);
    req.usages = vec!["server auth".to_owned(), "teleport".to_owned()];
    let error = csr::build_csr(&req, &key.key_pair).unwrap_err();
    assert_eq!(error.to_string(), "usages: unknown usage \"teleport\"");

    let req = leaf_req(&["a.example.com", "bücher.example"]);
    let error = csr::build_csr(&req, &key.key_pair).unwrap_err();
    assert!(error.to_string().starts_with("dnsNames[1]: "), "{error}");
}

// ---- SelfSigned ----

#[test]
fn self_signed_certificate_verifies_as_its_own_issuer_and_is_its_own_ca() {
    let key = ec256();
    let at = now();
    let issued = sign::self_signed(&leaf_req(&["self.example.com"]), &key.key_pair, at).unwrap();
    assert_eq!(issued.ca_pem.as_deref(), Some(issued.chain_pem.as_str()));
    let der = ders(&issued.chain_pem).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
    cert.verify_signature(None).unwrap();
    assert_eq!(issued.not_before.timestamp(), at.timestamp());
    assert_eq!((issued.not_after - issued.not_before).num_days(), 90);
    assert_eq!(
        cert.validity().not_after.timestamp(),
        issued.not_after.timestamp()
    );
}

#[test]
fn serials_are_random_and_positive() {
    let key = ec256();
    let req = leaf_req(&["s.example.com"]);
    let a = inspect::describe(
        &sign::self_signed(&req, &key.key_pair, now())
            .unwrap()
            .chain_pem,
    )
    .unwrap();
    let b = inspect::describe(
        &sign::self_signed(&req, &key.key_pair, now())
            .unwrap()
            .chain_pem,
    )
    .unwrap();
    assert_ne!(a.serial, b.serial);
}

#[test]
fn usages_map_to_key_usage_and_extended_key_usage_extensions() {
    let key = ec256();
    let mut req = leaf_req(&["u.example.com"]);
    req.usages = [
        "digital signature",
        "key encipherment",
        "server auth",
        "client auth",
        "cert sign",
    ]
    .map(str::to_owned)
    .to_vec();
    let issued = sign::self_signed(&req, &key.key_pair, now()).unwrap();
    let der = ders(&issued.chain_pem).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    let ku = ku.value;
    assert!(ku.digital_signature() && ku.key_encipherment() && ku.key_cert_sign());
    assert!(!ku.crl_sign() && !ku.key_agreement());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
    assert!(!cert.is_ca());
    assert_eq!(
        inspect::describe(&issued.chain_pem).unwrap().usages,
        [
            "digital signature",
            "key encipherment",
            "cert sign",
            "server auth",
            "client auth"
        ]
    );
}

#[test]
fn default_usages_are_digital_signature_and_key_encipherment_and_a_ca_adds_cert_sign() {
    let key = ec256();
    let leaf = sign::self_signed(&leaf_req(&["d.example.com"]), &key.key_pair, now()).unwrap();
    let info = inspect::describe(&leaf.chain_pem).unwrap();
    assert_eq!(info.usages, ["digital signature", "key encipherment"]);
    assert!(!info.is_ca);

    let ca = sign::self_signed(&ca_req("Test CA"), &key.key_pair, now()).unwrap();
    let info = inspect::describe(&ca.chain_pem).unwrap();
    assert_eq!(
        info.usages,
        ["digital signature", "key encipherment", "cert sign"]
    );
    assert!(info.is_ca);
}

// ---- CA issuer ----

struct Ca {
    crt: String,
    key: String,
}

fn make_ca(cn: &str) -> Ca {
    let key = ec256();
    let issued = sign::self_signed(&ca_req(cn), &key.key_pair, now()).unwrap();
    Ca {
        crt: issued.chain_pem,
        key: key.pem,
    }
}

#[test]
fn ca_signed_leaf_verifies_for_its_name_and_not_another() {
    let ca = make_ca("Test Root");
    let signer = CaKeyPair::from_pem(&ca.crt, &ca.key, None).unwrap();
    let leaf_key = key::generate(&spec(KeyAlgorithm::Rsa, None, KeyEncoding::Pkcs1)).unwrap();
    let mut req = leaf_req(&["app.example.com"]);
    req.usages = vec![
        "digital signature".to_owned(),
        "key encipherment".to_owned(),
        "server auth".to_owned(),
    ];
    let issued =
        sign::sign_with_ca(&req, LeafKey::KeyPair(&leaf_key.key_pair), &signer, now()).unwrap();

    // Root CA: tls.crt is the leaf alone, ca.crt the root.
    assert_eq!(ders(&issued.chain_pem).len(), 1);
    assert_eq!(issued.ca_pem.as_deref(), Some(ca.crt.as_str()));
    verify(&issued.chain_pem, &ca.crt, "app.example.com").unwrap();
    let error = verify(&issued.chain_pem, &ca.crt, "other.example.com").unwrap_err();
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{error:?}"
    );
    let other = make_ca("Other Root");
    assert!(verify(&issued.chain_pem, &other.crt, "app.example.com").is_err());

    keypair::load(issued.chain_pem.as_bytes(), leaf_key.pem.as_bytes()).unwrap();
    let info = inspect::describe(&issued.chain_pem).unwrap();
    assert_eq!(info.issuer, "CN=Test Root");
}

#[test]
fn intermediate_ca_puts_itself_in_tls_crt_and_the_root_in_ca_crt() {
    let root = make_ca("Root");
    let root_signer = CaKeyPair::from_pem(&root.crt, &root.key, None).unwrap();
    let inter_key = ec256();
    let inter = sign::sign_with_ca(
        &ca_req("Intermediate"),
        LeafKey::KeyPair(&inter_key.key_pair),
        &root_signer,
        now(),
    )
    .unwrap();
    // The intermediate's Secret: tls.crt = intermediate only (root dropped as self-signed), ca.crt = root.
    assert_eq!(ders(&inter.chain_pem).len(), 1);
    let inter_signer =
        CaKeyPair::from_pem(&inter.chain_pem, &inter_key.pem, inter.ca_pem.as_deref()).unwrap();

    let leaf_key = ec256();
    let leaf = sign::sign_with_ca(
        &leaf_req(&["deep.example.com"]),
        LeafKey::KeyPair(&leaf_key.key_pair),
        &inter_signer,
        now(),
    )
    .unwrap();
    let chain = ders(&leaf.chain_pem);
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], ders(&inter.chain_pem)[0]);
    assert_eq!(leaf.ca_pem.as_deref(), Some(root.crt.as_str()));
    verify(&leaf.chain_pem, &root.crt, "deep.example.com").unwrap();
}

#[test]
fn ca_issuer_signs_a_csr_taking_names_from_the_csr() {
    let ca = make_ca("CSR Root");
    let signer = CaKeyPair::from_pem(&ca.crt, &ca.key, None).unwrap();
    let leaf_key = key::generate(&spec(KeyAlgorithm::Ed25519, None, KeyEncoding::Pkcs8)).unwrap();
    let req = leaf_req(&["csr.example.com"]);
    let der = csr::build_csr(&req, &leaf_key.key_pair).unwrap();
    let issued = sign::sign_with_ca(&req, LeafKey::Csr(&der), &signer, now()).unwrap();
    let info = inspect::describe(&issued.chain_pem).unwrap();
    assert_eq!(info.dns_names, ["csr.example.com"]);
    assert_eq!(info.common_name.as_deref(), Some("csr.example.com"));
    keypair::load(issued.chain_pem.as_bytes(), leaf_key.pem.as_bytes()).unwrap();

    let mut tampered = der.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let error = sign::sign_with_ca(&req, LeafKey::Csr(&tampered), &signer, now()).unwrap_err();
    assert!(matches!(error, PkiError::BadCsr(_)), "{error:?}");
}

#[test]
fn ca_secret_whose_key_does_not_match_its_certificate_is_refused() {
    let ca = make_ca("Mismatch Root");
    let other = ec256();
    let error = CaKeyPair::from_pem(&ca.crt, &other.pem, None).unwrap_err();
    assert!(matches!(error, PkiError::CaKeyPair(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "error getting keypair for CA issuer: tls.key does not match the certificate in tls.crt"
    );
}

#[test]
fn ca_secret_holding_a_non_ca_certificate_is_refused() {
    let key = ec256();
    let leaf = sign::self_signed(&leaf_req(&["notca.example.com"]), &key.key_pair, now()).unwrap();
    let error = CaKeyPair::from_pem(&leaf.chain_pem, &key.pem, None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "error getting keypair for CA issuer: certificate is not a CA"
    );
}

#[test]
fn ca_secret_with_an_unrelated_ca_crt_is_a_broken_chain() {
    let ca = make_ca("Chain Root");
    let stranger = make_ca("Stranger");
    let error = CaKeyPair::from_pem(&ca.crt, &ca.key, Some(&stranger.crt)).unwrap_err();
    assert!(error.to_string().contains("malformed or broken"), "{error}");
}

// ---- inspect ----

#[test]
fn describe_reads_names_validity_and_subject() {
    let key = ec256();
    let mut req = leaf_req(&["a.example.com", "b.example.com"]);
    req.ip_addresses = vec!["::1".parse().unwrap()];
    req.subject.organizations = vec!["Example Org".to_owned()];
    req.subject.serial_number = Some("1234".to_owned());
    let at = now();
    let issued = sign::self_signed(&req, &key.key_pair, at).unwrap();
    let info = inspect::describe(&issued.chain_pem).unwrap();
    assert_eq!(info.dns_names, ["a.example.com", "b.example.com"]);
    assert_eq!(info.ip_addresses, ["::1".parse::<IpAddr>().unwrap()]);
    assert_eq!(info.common_name.as_deref(), Some("a.example.com"));
    assert_eq!(info.subject_fields.organizations, ["Example Org"]);
    assert_eq!(info.subject_fields.serial_number.as_deref(), Some("1234"));
    assert_eq!(info.not_before, issued.not_before);
    assert_eq!(info.not_after, issued.not_after);
    assert!(
        inspect::matches_request(&info, &req).is_empty(),
        "{:?}",
        inspect::matches_request(&info, &req)
    );
}

#[test]
fn matches_request_reports_a_missing_san_and_a_changed_common_name() {
    let key = ec256();
    let req = leaf_req(&["a.example.com"]);
    let info = inspect::describe(
        &sign::self_signed(&req, &key.key_pair, now())
            .unwrap()
            .chain_pem,
    )
    .unwrap();

    let mut wider = req.clone();
    wider.dns_names.push("new.example.com".to_owned());
    let diff = inspect::matches_request(&info, &wider);
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert!(diff[0].starts_with("dnsNames differ"), "{diff:?}");

    let mut renamed = req.clone();
    renamed.common_name = Some("b.example.com".to_owned());
    let diff = inspect::matches_request(&info, &renamed);
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert!(diff[0].starts_with("commonName differs"), "{diff:?}");

    let mut ca = req.clone();
    ca.is_ca = true;
    let diff = inspect::matches_request(&info, &ca);
    assert!(
        diff.iter().any(|d| d.starts_with("isCA differs")),
        "{diff:?}"
    );
    assert!(
        diff.iter().any(|d| d.starts_with("usages differ")),
        "{diff:?}"
    );
}

#[test]
fn matches_request_ignores_order_and_case_of_dns_names() {
    let key = ec256();
    let req = leaf_req(&["a.example.com", "b.example.com"]);
    let info = inspect::describe(
        &sign::self_signed(&req, &key.key_pair, now())
            .unwrap()
            .chain_pem,
    )
    .unwrap();
    let mut shuffled = req.clone();
    shuffled.dns_names = vec!["B.example.com".to_owned(), "a.example.com".to_owned()];
    assert!(inspect::matches_request(&info, &shuffled).is_empty());
}

#[test]
fn describe_of_garbage_is_a_bad_certificate_error() {
    assert!(matches!(
        inspect::describe(""),
        Err(PkiError::BadCertificate(_))
    ));
    let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        inspect::describe(junk),
        Err(PkiError::BadCertificate(_))
    ));
}
