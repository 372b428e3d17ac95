//! Private keys, CSRs and the SelfSigned / CA issuers: everything certgate does with certificates that
//! does not involve an ACME server.
//!
//! Pure functions: PEM, DER and plain request values in; PEM, DER and [`PkiError`] out. Nothing here
//! reads Secrets, talks to Kubernetes or reads the clock (callers pass `now`), so the certificate
//! controller decides *whether* to issue and these functions only decide *what* is issued.
//!
//! ```text
//! KeySpec ──key::generate──► GeneratedKey (PEM for tls.key + rcgen KeyPair)
//! CertRequest + key ──csr::build_csr──► CSR (DER)
//! CertRequest + key ──sign::self_signed──────────► IssuedCert { tls.crt, ca.crt }
//! CertRequest + key/CSR + CaKeyPair ──sign::sign_with_ca──► IssuedCert
//! tls.crt ──inspect::describe──► CertInfo ──inspect::matches_request(CertRequest)──► mismatches
//! ```
//!
//! The types mirror the fields of cert-manager's `Certificate` spec that shape a key or a certificate;
//! the CRD types convert into them. Crypto is ring (through rcgen) except RSA key *generation*, which ring
//! cannot do and the RustCrypto `rsa` crate does.
//!
//! SECURITY: no error built here contains private key bytes; errors end up in Events and status.

pub mod csr;
mod error;
pub mod inspect;
pub mod key;
mod request;
pub mod sign;

pub use error::PkiError;
pub use request::{CertRequest, DEFAULT_DURATION, DEFAULT_USAGES, Subject};

#[cfg(test)]
mod tests;
