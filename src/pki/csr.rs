//! Certificate signing requests for ACME orders (and any issuer that takes a CSR).

use super::{CertRequest, PkiError};

/// A DER PKCS#10 request for `req`, signed with `key`: subject, SANs, key usages, extended key usages
/// and basic constraints as extensions, as cert-manager encodes them.
pub fn build_csr(req: &CertRequest, key: &rcgen::KeyPair) -> Result<Vec<u8>, PkiError> {
    let params = req.params()?;
    let csr = params.serialize_request(key)?;
    Ok(csr.der().to_vec())
}
