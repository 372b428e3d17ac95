//! Test helpers: certificates made with rcgen (ECDSA P-256) and the OpenSSL fixtures.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;

/// A PEM pair as it would sit in a Secret.
pub(crate) struct Pem {
    pub crt: String,
    pub key: String,
    pub leaf_der: CertificateDer<'static>,
}

/// A throwaway CA that signs leaves.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "certgate test CA");
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// A leaf for `names`; `crt` holds the leaf then this CA's certificate.
    pub fn leaf(&self, names: &[&str]) -> Pem {
        let key = KeyPair::generate().unwrap();
        let params = leaf_params(names);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            crt: format!("{}{}", cert.pem(), self.pem),
            key: key.serialize_pem(),
            leaf_der: cert.der().clone(),
        }
    }
}

/// A self-signed leaf for `names`.
pub(crate) fn self_signed(names: &[&str]) -> Pem {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names).self_signed(&key).unwrap();
    Pem {
        crt: cert.pem(),
        key: key.serialize_pem(),
        leaf_der: cert.der().clone(),
    }
}

/// A servable key for resolver tests; identity is checked with `Arc::ptr_eq`.
pub(crate) fn certified(names: &[&str]) -> Arc<CertifiedKey> {
    let pem = self_signed(names);
    super::keypair::load(pem.crt.as_bytes(), pem.key.as_bytes())
        .unwrap()
        .certified
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    params
}
