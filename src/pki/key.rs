//! Private keys as cert-manager's `spec.privateKey` describes them: generation, parsing of an existing
//! `tls.key`, and the "does this key still match the spec" decision behind `rotationPolicy: Never`.
//!
//! Encodings follow cert-manager: `PKCS1` means "RSA PRIVATE KEY" for RSA and SEC1 "EC PRIVATE KEY" for
//! ECDSA, and does not exist for Ed25519; `PKCS8` is "PRIVATE KEY" for all three.
//!
//! rcgen on ring only loads PKCS#8, so every key is held as PKCS#8 for signing and only re-framed for
//! the PEM written to the Secret.

use rcgen::{KeyPair, SignatureAlgorithm};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use rsa::pkcs8::der::{Decode, Encode};
use rsa::pkcs8::spki::AlgorithmIdentifierRef;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding, PrivateKeyInfoRef};
use rsa::traits::PublicKeyParts;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::PkiError;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// cert-manager's bounds on RSA key sizes; ring signs with any modulus in this range.
const RSA_MIN_BITS: u32 = 2048;
const RSA_MAX_BITS: u32 = 8192;
const RSA_DEFAULT_BITS: u32 = 2048;
const ECDSA_DEFAULT_BITS: u32 = 256;

/// `spec.privateKey.algorithm`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    #[default]
    Rsa,
    Ecdsa,
    Ed25519,
}

/// `spec.privateKey.encoding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyEncoding {
    #[default]
    Pkcs1,
    Pkcs8,
}

/// `spec.privateKey`: algorithm, size in bits (`None`: the algorithm's default) and PEM encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeySpec {
    pub algorithm: KeyAlgorithm,
    pub size: Option<u32>,
    pub encoding: KeyEncoding,
}

impl KeySpec {
    /// The size cert-manager uses: `size`, or 2048 for RSA, 256 for ECDSA; Ed25519 has no size (0).
    pub fn effective_size(&self) -> u32 {
        match self.algorithm {
            KeyAlgorithm::Rsa => self.size.filter(|s| *s != 0).unwrap_or(RSA_DEFAULT_BITS),
            KeyAlgorithm::Ecdsa => self.size.filter(|s| *s != 0).unwrap_or(ECDSA_DEFAULT_BITS),
            KeyAlgorithm::Ed25519 => 0,
        }
    }

    /// Reject what cert-manager rejects, and what ring cannot sign with, before any work is done.
    pub fn validate(&self) -> Result<(), PkiError> {
        let size = self.effective_size();
        match self.algorithm {
            KeyAlgorithm::Rsa if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&size) => {
                Err(PkiError::InvalidKeySpec(format!(
                    "RSA key size {size} is not between {RSA_MIN_BITS} and {RSA_MAX_BITS}"
                )))
            }
            KeyAlgorithm::Ecdsa if size == 521 => Err(PkiError::UnsupportedKey(
                "ECDSA P-521 (size 521) is not supported: certgate signs with ring, which cannot \
                 sign with P-521 keys; use size 256 or 384"
                    .to_owned(),
            )),
            KeyAlgorithm::Ecdsa if size != 256 && size != 384 => Err(PkiError::InvalidKeySpec(
                format!("ECDSA key size {size} is not one of 256, 384 (or 521)"),
            )),
            KeyAlgorithm::Ed25519 if self.encoding == KeyEncoding::Pkcs1 => {
                Err(PkiError::InvalidKeySpec(
                    "Ed25519 keys have no PKCS#1 encoding; set encoding to PKCS8".to_owned(),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// A private key: the PEM to store in `tls.key` and the same key ready to sign with.
pub struct GeneratedKey {
    /// PEM in the encoding of [`GeneratedKey::spec`].
    pub pem: String,
    pub key_pair: KeyPair,
    /// What the key is; `size` is always set (0 for Ed25519).
    pub spec: KeySpec,
}

// SECURITY: never print the key.
impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Generate a key as `spec` asks.
pub fn generate(spec: &KeySpec) -> Result<GeneratedKey, PkiError> {
    spec.validate()?;
    let size = spec.effective_size();
    let detected = KeySpec {
        size: Some(size),
        ..*spec
    };
    match spec.algorithm {
        KeyAlgorithm::Rsa => {
            let bits = usize::try_from(size)
                .map_err(|_| PkiError::InvalidKeySpec(format!("RSA key size {size}")))?;
            let key = rsa::PrivateKey::new(&mut rand::rngs::SysRng, bits)
                .map_err(|error| PkiError::KeyGeneration(format!("RSA: {error}")))?;
            from_rsa(&key, detected)
        }
        KeyAlgorithm::Ecdsa | KeyAlgorithm::Ed25519 => {
            let alg = signature_algorithm(spec.algorithm, size)?;
            let key_pair = KeyPair::generate_for(alg)?;
            let pem = match spec.encoding {
                KeyEncoding::Pkcs8 => key_pair.serialize_pem(),
                KeyEncoding::Pkcs1 => sec1_pem(key_pair.serialized_der())?,
            };
            Ok(GeneratedKey {
                pem,
                key_pair,
                spec: detected,
            })
        }
    }
}

/// Parse an existing PEM private key: PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY" or PKCS#8
/// "PRIVATE KEY" (RSA, ECDSA P-256/P-384, Ed25519). The returned spec says what the key is, including
/// its encoding; `pem` is the input.
pub fn parse(pem_text: &str) -> Result<GeneratedKey, PkiError> {
    let der = match PrivateKeyDer::from_pem_slice(pem_text.as_bytes()) {
        Ok(der) => der,
        Err(pem::Error::NoItemsFound) => {
            return Err(PkiError::BadKey(
                "no PEM private key block (\"RSA PRIVATE KEY\", \"EC PRIVATE KEY\" or \"PRIVATE KEY\")"
                    .to_owned(),
            ));
        }
        // SECURITY: pki-types' messages can quote the offending line; use a fixed text.
        Err(_) => return Err(PkiError::BadKey("not valid PEM".to_owned())),
    };
    let (pkcs8, encoding) = match &der {
        PrivateKeyDer::Pkcs1(pkcs1) => {
            let key = rsa::PrivateKey::from_pkcs1_der(pkcs1.secret_pkcs1_der())
                .map_err(|_| bad_key("RSA PRIVATE KEY is not a valid PKCS#1 RSA key"))?;
            (rsa_pkcs8(&key)?, KeyEncoding::Pkcs1)
        }
        PrivateKeyDer::Sec1(sec1) => (sec1_to_pkcs8(sec1.secret_sec1_der())?, KeyEncoding::Pkcs1),
        PrivateKeyDer::Pkcs8(pkcs8) => (pkcs8.secret_pkcs8_der().to_vec(), KeyEncoding::Pkcs8),
        _ => return Err(bad_key("unsupported private key encoding")),
    };
    let (algorithm, size) = identify_pkcs8(&pkcs8)?;
    let spec = KeySpec {
        algorithm,
        size: Some(size),
        encoding,
    };
    let alg = signature_algorithm(algorithm, size)?;
    let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), alg)
        .map_err(|_| bad_key("ring rejects the key (is the EC public key missing?)"))?;
    Ok(GeneratedKey {
        pem: pem_text.to_owned(),
        key_pair,
        spec,
    })
}

/// Whether an existing key satisfies `spec`: same algorithm and size, as cert-manager checks before
/// reusing a key (`rotationPolicy: Never`). The encoding does not matter.
pub fn matches(spec: &KeySpec, existing: &KeySpec) -> bool {
    spec.algorithm == existing.algorithm && spec.effective_size() == existing.effective_size()
}

/// The signature algorithm cert-manager (Go's crypto/x509) uses for a key: SHA-256 for RSA below 3072
/// bits, SHA-384 from 3072, SHA-512 from 4096; the curve's own hash for ECDSA.
fn signature_algorithm(
    algorithm: KeyAlgorithm,
    size: u32,
) -> Result<&'static SignatureAlgorithm, PkiError> {
    Ok(match (algorithm, size) {
        (KeyAlgorithm::Rsa, 4096..) => &rcgen::PKCS_RSA_SHA512,
        (KeyAlgorithm::Rsa, 3072..) => &rcgen::PKCS_RSA_SHA384,
        (KeyAlgorithm::Rsa, _) => &rcgen::PKCS_RSA_SHA256,
        (KeyAlgorithm::Ecdsa, 256) => &rcgen::PKCS_ECDSA_P256_SHA256,
        (KeyAlgorithm::Ecdsa, 384) => &rcgen::PKCS_ECDSA_P384_SHA384,
        (KeyAlgorithm::Ecdsa, _) => {
            return Err(PkiError::UnsupportedKey(format!(
                "ECDSA key of {size} bits is not supported (P-256 and P-384 are)"
            )));
        }
        (KeyAlgorithm::Ed25519, _) => &rcgen::PKCS_ED25519,
    })
}

fn bad_key(reason: &str) -> PkiError {
    PkiError::BadKey(reason.to_owned())
}

fn from_rsa(key: &rsa::PrivateKey, spec: KeySpec) -> Result<GeneratedKey, PkiError> {
    let pkcs8 = rsa_pkcs8(key)?;
    let pem = match spec.encoding {
        KeyEncoding::Pkcs1 => key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|_| PkiError::KeyGeneration("encoding the RSA key as PKCS#1".to_owned()))?
            .to_string(),
        KeyEncoding::Pkcs8 => key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| PkiError::KeyGeneration("encoding the RSA key as PKCS#8".to_owned()))?
            .to_string(),
    };
    let alg = signature_algorithm(KeyAlgorithm::Rsa, spec.effective_size())?;
    let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), alg)
        .map_err(|_| PkiError::KeyGeneration("ring rejects the generated RSA key".to_owned()))?;
    Ok(GeneratedKey {
        pem,
        key_pair,
        spec,
    })
}

fn rsa_pkcs8(key: &rsa::PrivateKey) -> Result<Vec<u8>, PkiError> {
    key.to_pkcs8_der()
        .map(|doc| doc.as_bytes().to_vec())
        .map_err(|_| bad_key("RSA key cannot be encoded as PKCS#8"))
}

/// Algorithm and size of a PKCS#8 key.
fn identify_pkcs8(der: &[u8]) -> Result<(KeyAlgorithm, u32), PkiError> {
    let info = PrivateKeyInfoRef::from_der(der)
        .map_err(|_| bad_key("PRIVATE KEY is not a valid PKCS#8 structure"))?;
    let oid = info.algorithm.oid;
    if oid == OID_RSA {
        let key = rsa::PrivateKey::from_pkcs8_der(der)
            .map_err(|_| bad_key("PRIVATE KEY holds an invalid RSA key"))?;
        let bits = key.n().bit_width();
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(PkiError::UnsupportedKey(format!(
                "RSA key of {bits} bits is outside {RSA_MIN_BITS}..={RSA_MAX_BITS}"
            )));
        }
        Ok((KeyAlgorithm::Rsa, bits))
    } else if oid == OID_EC_PUBLIC_KEY {
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|_| bad_key("EC key without a named curve"))?;
        Ok((KeyAlgorithm::Ecdsa, curve_bits(curve)?))
    } else if oid == OID_ED25519 {
        Ok((KeyAlgorithm::Ed25519, 0))
    } else {
        Err(PkiError::UnsupportedKey(format!(
            "key algorithm {oid} is not RSA, ECDSA or Ed25519"
        )))
    }
}

fn curve_bits(curve: ObjectIdentifier) -> Result<u32, PkiError> {
    if curve == OID_P256 {
        Ok(256)
    } else if curve == OID_P384 {
        Ok(384)
    } else if curve == OID_P521 {
        Err(PkiError::UnsupportedKey(
            "ECDSA P-521 keys are not supported: ring cannot sign with them".to_owned(),
        ))
    } else {
        Err(PkiError::UnsupportedKey(format!(
            "EC curve {curve} is not supported (P-256 and P-384 are)"
        )))
    }
}

/// Re-frame a PKCS#8 EC key as SEC1 "EC PRIVATE KEY", with the named curve inside (no outer
/// AlgorithmIdentifier carries it any more) as OpenSSL and Go write it.
fn sec1_pem(pkcs8: &[u8]) -> Result<String, PkiError> {
    let encode_error = || PkiError::KeyGeneration("encoding the EC key as SEC1".to_owned());
    let info = PrivateKeyInfoRef::from_der(pkcs8).map_err(|_| encode_error())?;
    let curve = info
        .algorithm
        .parameters_oid()
        .map_err(|_| encode_error())?;
    let mut inner =
        sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).map_err(|_| encode_error())?;
    inner.parameters = Some(sec1::EcParameters::NamedCurve(curve));
    let der = inner.to_der().map_err(|_| encode_error())?;
    rsa::pkcs8::der::pem::encode_string("EC PRIVATE KEY", LineEnding::LF, &der)
        .map_err(|_| encode_error())
}

/// Wrap a SEC1 key into PKCS#8, the only form ring loads.
fn sec1_to_pkcs8(sec1_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let key = sec1::EcPrivateKey::from_der(sec1_der)
        .map_err(|_| bad_key("EC PRIVATE KEY is not a valid SEC1 key"))?;
    let Some(sec1::EcParameters::NamedCurve(curve)) = key.parameters else {
        return Err(bad_key("EC PRIVATE KEY does not name its curve"));
    };
    curve_bits(curve)?;
    let algorithm = AlgorithmIdentifierRef {
        oid: OID_EC_PUBLIC_KEY,
        parameters: Some(AnyRef::from(&curve)),
    };
    let octets = OctetStringRef::new(sec1_der).map_err(|_| bad_key("EC key too large"))?;
    PrivateKeyInfoRef::new(algorithm, octets)
        .to_der()
        .map_err(|_| bad_key("EC key cannot be re-encoded as PKCS#8"))
}
