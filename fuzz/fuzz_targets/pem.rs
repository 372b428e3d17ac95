//! PEM from a `kubernetes.io/tls` Secret: the certificate chain and private key the proxy serves, and the
//! same data as the certificate controller reads it (describe a `tls.crt`, parse a `tls.key`).
//!
//! Input: any bytes, used as both `tls.crt` and `tls.key` (each parser skips the blocks of the other kind,
//! as OpenSSL does), so one file holding a certificate and its key is a Secret that loads. As UTF-8 text
//! the same bytes go to `pki::inspect::describe` and `pki::key::parse`.
//!
//! Properties: no panic; every error renders (errors go to logs, Events and status).

#![no_main]

use certgate::pki::{CertRequest, inspect, key};
use certgate::tls::keypair;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
