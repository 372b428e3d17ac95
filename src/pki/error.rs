//! The one error type of [`crate::pki`].

/// Why a key, CSR or certificate could not be produced or read.
///
/// SECURITY: variants carry fixed descriptions or messages from parsers that describe structure
/// ("invalid encoding"), never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// `privateKey.algorithm` / `size` / `encoding` asks for something cert-manager rejects too.
    #[error("privateKey: {0}")]
    InvalidKeySpec(String),
    /// Valid in cert-manager, but not possible with certgate's crypto (ring).
    #[error("privateKey: {0}")]
    UnsupportedKey(String),
    #[error("generating the private key failed: {0}")]
    KeyGeneration(String),
    /// An existing private key (a Secret's `tls.key`, a CA's key) is not usable.
    #[error("private key: {0}")]
    BadKey(String),
    /// A field of the certificate request cannot be encoded, e.g. a DNS name with a space.
    #[error("{field}: {reason}")]
    InvalidRequest { field: String, reason: String },
    #[error("certificate: {0}")]
    BadCertificate(String),
    #[error("certificate signing request: {0}")]
    BadCsr(String),
    /// The CA issuer's Secret is unusable; the text matches cert-manager's `ErrGetKeyPair` message.
    #[error("error getting keypair for CA issuer: {0}")]
    CaKeyPair(String),
    /// rcgen refused to build or sign the certificate / CSR.
    #[error("signing failed: {0}")]
    Signing(#[from] rcgen::Error),
}
