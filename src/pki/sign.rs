//! The SelfSigned and CA issuers: certificates signed here, with no external party.
//!
//! What lands in the Secret follows cert-manager (`pki.SignCSRTemplate` / `ParseSingleCertificateChain`):
//! `tls.crt` is the leaf followed by every CA certificate up to, but not including, a self-signed root;
//! `ca.crt` is the top of that chain (the root when the CA Secret has it, else the highest intermediate).
//! A self-signed certificate is its own `ca.crt`. Validity is `now ..= now + duration` (no backdating,
//! as cert-manager); serials are 128 random bits.

use chrono::{DateTime, Utc};
use rcgen::{CertificateParams, CertificateSigningRequestParams, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use x509_parser::certificate::X509Certificate;

use super::{CertRequest, PkiError};

/// A signed certificate as it goes into a `kubernetes.io/tls` Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCert {
    /// `tls.crt`: PEM, leaf first.
    pub chain_pem: String,
    /// `ca.crt`: PEM of the issuing chain's top certificate, if there is one.
    pub ca_pem: Option<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// The public key a CA-signed certificate is for.
pub enum LeafKey<'a> {
    /// A key generated or parsed by [`super::key`].
    KeyPair(&'a KeyPair),
    /// A DER PKCS#10 request. As in cert-manager, subject and SANs come from the CSR; duration, isCA
    /// and usages from the [`CertRequest`].
    Csr(&'a [u8]),
}

/// SelfSigned issuer: `req` signed by its own `key`.
pub fn self_signed(
    req: &CertRequest,
    key: &KeyPair,
    now: DateTime<Utc>,
) -> Result<IssuedCert, PkiError> {
    let mut params = req.params()?;
    let (not_before, not_after) = set_validity(&mut params, req, now)?;
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(key)?;
    let pem = cert.pem();
    Ok(IssuedCert {
        chain_pem: pem.clone(),
        ca_pem: Some(pem),
        not_before,
        not_after,
    })
}

/// A CA issuer's signing key pair, read from its Secret and checked once.
pub struct CaKeyPair {
    issuer: Issuer<'static, KeyPair>,
    /// The issuing CA first, then its issuers, each signed by the next; the last may be self-signed.
    chain: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaKeyPair")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl CaKeyPair {
    /// From the CA Secret's `tls.crt` (the CA certificate first, then optionally its issuers),
    /// `tls.key` and optional `ca.crt` (appended to the chain, as cert-manager does).
    ///
    /// Refused, with cert-manager's "error getting keypair for CA issuer" prefix, when the first
    /// certificate is not a CA, the key is not its key, or the certificates do not form one chain.
    pub fn from_pem(tls_crt: &str, tls_key: &str, ca_crt: Option<&str>) -> Result<Self, PkiError> {
        let ca_err = |reason: &str| PkiError::CaKeyPair(reason.to_owned());
        let mut certs = CertificateDer::pem_slice_iter(tls_crt.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ca_err("tls.crt is not valid PEM"))?;
        if certs.is_empty() {
            return Err(ca_err("tls.crt contains no certificate"));
        }
        if let Some(ca_crt) = ca_crt.filter(|pem| !pem.trim().is_empty()) {
            // cert-manager reads one certificate from ca.crt.
            let ca = CertificateDer::pem_slice_iter(ca_crt.as_bytes())
                .next()
                .ok_or_else(|| ca_err("ca.crt contains no certificate"))?
                .map_err(|_| ca_err("ca.crt is not valid PEM"))?;
            certs.push(ca);
        }
        let key = super::key::parse(tls_key)
            .map_err(|error| PkiError::CaKeyPair(format!("tls.key: {error}")))?;

        {
            let ca = parse_cert(&certs[0])
                .map_err(|_| ca_err("tls.crt is not a valid X.509 certificate"))?;
            if !ca.is_ca() {
                return Err(ca_err("certificate is not a CA"));
            }
            if ca.public_key().subject_public_key.data.as_ref() != key.key_pair.public_key_raw() {
                return Err(ca_err("tls.key does not match the certificate in tls.crt"));
            }
        }
        let chain = order_chain(certs)?;
        let issuer = Issuer::from_ca_cert_der(&chain[0], key.key_pair)
            .map_err(|error| PkiError::CaKeyPair(format!("CA certificate: {error}")))?;
        Ok(Self { issuer, chain })
    }
}

/// CA issuer: a certificate for `leaf`'s public key, signed by `ca`.
pub fn sign_with_ca(
    req: &CertRequest,
    leaf: LeafKey<'_>,
    ca: &CaKeyPair,
    now: DateTime<Utc>,
) -> Result<IssuedCert, PkiError> {
    let cert = match leaf {
        LeafKey::KeyPair(key) => {
            let mut params = req.params()?;
            let validity = set_validity(&mut params, req, now)?;
            params.serial_number = Some(random_serial()?);
            params.use_authority_key_identifier_extension = true;
            (params.signed_by(key, &ca.issuer)?, validity)
        }
        LeafKey::Csr(der) => {
            let mut csr =
                CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
                    .map_err(|error| PkiError::BadCsr(error.to_string()))?;
            let (key_usages, extended_key_usages) = req.usages()?;
            let from_req = req.params().ok();
            let params = &mut csr.params;
            params.key_usages = key_usages;
            params.extended_key_usages = extended_key_usages;
            params.is_ca = match from_req {
                Some(p) => p.is_ca,
                None if req.is_ca => rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
                None => rcgen::IsCa::ExplicitNoCa,
            };
            let validity = set_validity(params, req, now)?;
            params.serial_number = Some(random_serial()?);
            params.use_authority_key_identifier_extension = true;
            (csr.signed_by(&ca.issuer)?, validity)
        }
    };
    let (cert, (not_before, not_after)) = cert;

    let mut chain_pem = cert.pem();
    for der in &ca.chain {
        if !is_self_signed(der) {
            chain_pem.push_str(&pem(der)?);
        }
    }
    let ca_pem = ca.chain.last().map(pem).transpose()?;
    Ok(IssuedCert {
        chain_pem,
        ca_pem,
        not_before,
        not_after,
    })
}

/// Order the CA Secret's certificates from the issuing CA (first in `tls.crt`) upwards, as
/// cert-manager's `ParseSingleCertificateChain` does; duplicates are dropped, a certificate that is
/// not part of the chain is an error.
fn order_chain(
    certs: Vec<CertificateDer<'static>>,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let mut rest: Vec<CertificateDer<'static>> = Vec::new();
    for cert in certs.iter().skip(1) {
        if cert != &certs[0] && !rest.contains(cert) {
            rest.push(cert.clone());
        }
    }
    let mut chain = vec![certs[0].clone()];
    while let Some(current) = chain.last() {
        if is_self_signed(current) {
            break;
        }
        let Some(index) = rest
            .iter()
            .position(|candidate| issued_by(current, candidate))
        else {
            break;
        };
        chain.push(rest.remove(index));
    }
    if !rest.is_empty() {
        return Err(PkiError::CaKeyPair(
            "certificate chain is malformed or broken: tls.crt / ca.crt hold a certificate that does not issue the CA".to_owned(),
        ));
    }
    Ok(chain)
}

fn parse_cert<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|error| PkiError::BadCertificate(error.to_string()))
}

fn issued_by(child: &CertificateDer<'_>, parent: &CertificateDer<'_>) -> bool {
    let (Ok(child), Ok(parent)) = (parse_cert(child), parse_cert(parent)) else {
        return false;
    };
    child.issuer().as_raw() == parent.subject().as_raw()
        && child.verify_signature(Some(parent.public_key())).is_ok()
}

fn is_self_signed(der: &CertificateDer<'_>) -> bool {
    issued_by(der, der)
}

fn pem(der: &CertificateDer<'_>) -> Result<String, PkiError> {
    rsa::pkcs8::der::pem::encode_string("CERTIFICATE", rsa::pkcs8::LineEnding::LF, der)
        .map_err(|_| PkiError::BadCertificate("cannot be PEM-encoded".to_owned()))
}

/// Set notBefore = `now`, notAfter = `now + duration`, truncated to whole seconds as X.509 stores them.
fn set_validity(
    params: &mut CertificateParams,
    req: &CertRequest,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), PkiError> {
    let too_long = || PkiError::InvalidRequest {
        field: "duration".to_owned(),
        reason: format!("{:?} is too long", req.duration),
    };
    let not_before = DateTime::from_timestamp(now.timestamp(), 0).ok_or_else(too_long)?;
    let duration = chrono::Duration::from_std(req.duration).map_err(|_| too_long())?;
    let not_after = not_before
        .checked_add_signed(duration)
        .ok_or_else(too_long)?;
    params.not_before = offset(not_before).ok_or_else(too_long)?;
    params.not_after = offset(not_after).ok_or_else(too_long)?;
    Ok((not_before, not_after))
}

fn offset(at: DateTime<Utc>) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp()).ok()
}

/// 128 random bits with the top bit clear: a positive INTEGER of at most 16 bytes, as cert-manager's
/// `rand.Int(2^128)`.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| PkiError::KeyGeneration("the OS random number generator failed".to_owned()))?;
    bytes[0] &= 0x7f;
    // A serial must be positive: never all zero.
    bytes[15] |= 1;
    Ok(SerialNumber::from_slice(&bytes))
}
