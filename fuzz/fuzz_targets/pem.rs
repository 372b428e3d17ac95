//! PEM from a `kubernetes.io/tls` Secret: the certificate chain and private key the proxy serves, and the
//! same data as the certificate controller reads it (describe a `tls.crt`, parse a `tls.key`).
//!
//! Input: any bytes, used as both `tls.crt` and `tls.key` (each parser skips the blocks of the other kind,
//! as OpenSSL does), so one file holding a certificate and its key is a Secret that loads. As UTF-8 text
//! the same bytes go to `pki::inspect::describe` and `pki::key::parse`.
//!
//! DER mode, so mutations reach the ASN.1 instead of breaking the base64: an input whose first byte is 0xD0
//! to 0xD3 is one DER object (the rest), wrapped here into a PEM block labelled `CERTIFICATE`,
//! `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`, and paired with a fixture key or certificate so
//! that `keypair::load` gets past the half that is not fuzzed.
//!
//! Properties: no panic; every error renders (errors go to logs, Events and status).

#![no_main]

use base64::Engine as _;
use certgate::pki::{CertRequest, inspect, key};
use certgate::tls::keypair;
use libfuzzer_sys::fuzz_target;

const FIXTURE_CERT: &str = include_str!("../../tests/fixtures/tls/ec-p256.crt");
const FIXTURE_KEY: &str = include_str!("../../tests/fixtures/tls/ec-p256.sec1.key");
const LABELS: [&str; 4] = [
    "CERTIFICATE",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
];

fuzz_target!(|data: &[u8]| {
    match der_as_pem(data) {
        Some(pem) => check(pem.as_bytes()),
        None => check(data),
    }
});

fn der_as_pem(data: &[u8]) -> Option<String> {
    let (&tag, der) = data.split_first()?;
    let label = LABELS.get(usize::from(tag.checked_sub(0xD0)?))?;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).ok()?);
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    // The other half of the Secret, after the fuzzed block (certificate parsers take the first certificate).
    pem.push_str(if *label == "CERTIFICATE" {
        FIXTURE_KEY
    } else {
        FIXTURE_CERT
    });
    Some(pem)
}

fn check(data: &[u8]) {
    match keypair::load(data, data) {
        Ok(loaded) => {
            let _ = loaded.covers("www.example.com");
            let _ = loaded.is_valid_at(loaded.not_before);
            for name in &loaded.names {
                let _ = loaded.covers(name);
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match inspect::describe(text) {
        Ok(info) => {
            let request = CertRequest {
                dns_names: info.dns_names.clone(),
                ..CertRequest::default()
            };
            let _ = inspect::matches_request(&info, &request);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    match key::parse(text) {
        Ok(parsed) => {
            let _ = key::matches(&parsed.spec, &parsed.spec);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}
