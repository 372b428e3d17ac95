//! [`CertRequest`]: what goes into a certificate, mirroring cert-manager's `Certificate` spec, and its
//! translation into rcgen parameters shared by the CSR and both issuers.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType,
};

use super::PkiError;

/// cert-manager's default `spec.duration`: 90 days.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 24 * 3600);
/// cert-manager's default `spec.usages`.
pub const DEFAULT_USAGES: [&str; 2] = ["digital signature", "key encipherment"];

// OIDs of subject attributes rcgen has no named `DnType` for.
const OID_STREET_ADDRESS: &[u64] = &[2, 5, 4, 9];
const OID_POSTAL_CODE: &[u64] = &[2, 5, 4, 17];
const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];

/// `spec.subject` of a cert-manager Certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub organizations: Vec<String>,
    pub countries: Vec<String>,
    pub organizational_units: Vec<String>,
    pub localities: Vec<String>,
    pub provinces: Vec<String>,
    pub street_addresses: Vec<String>,
    pub postal_codes: Vec<String>,
    pub serial_number: Option<String>,
}

/// What to put in a certificate: the identity and shape fields of a cert-manager Certificate spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertRequest {
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    /// Validity from issuance; cert-manager default [`DEFAULT_DURATION`].
    pub duration: Duration,
    pub is_ca: bool,
    /// cert-manager usage strings ("digital signature", "server auth", ...). Empty means
    /// [`DEFAULT_USAGES`], as in cert-manager.
    pub usages: Vec<String>,
    pub subject: Subject,
}

impl Default for CertRequest {
    fn default() -> Self {
        Self {
            common_name: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            email_addresses: Vec::new(),
            duration: DEFAULT_DURATION,
            is_ca: false,
            usages: Vec::new(),
            subject: Subject::default(),
        }
    }
}

/// A cert-manager usage string as one of the two X.509 extensions it lands in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Usage {
    Key(KeyUsagePurpose),
    Extended(ExtendedKeyUsagePurpose),
}

/// cert-manager's `KeyUsage` strings and what they mean in X.509. The Microsoft / Netscape SGC and IPsec
/// purposes are encoded by OID (rcgen names only the common ones).
pub(crate) const USAGES: &[(&str, UsageId)] = &[
    ("signing", UsageId::Key(KeyBit::DigitalSignature)),
    ("digital signature", UsageId::Key(KeyBit::DigitalSignature)),
    (
        "content commitment",
        UsageId::Key(KeyBit::ContentCommitment),
    ),
    ("key encipherment", UsageId::Key(KeyBit::KeyEncipherment)),
    ("key agreement", UsageId::Key(KeyBit::KeyAgreement)),
    ("data encipherment", UsageId::Key(KeyBit::DataEncipherment)),
    ("cert sign", UsageId::Key(KeyBit::CertSign)),
    ("crl sign", UsageId::Key(KeyBit::CrlSign)),
    ("encipher only", UsageId::Key(KeyBit::EncipherOnly)),
    ("decipher only", UsageId::Key(KeyBit::DecipherOnly)),
    ("any", UsageId::Ext(&[2, 5, 29, 37, 0])),
    ("server auth", UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 1])),
    ("client auth", UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 2])),
    ("code signing", UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 3])),
    (
        "email protection",
        UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 4]),
    ),
    ("s/mime", UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 4])),
    (
        "ipsec end system",
        UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 5]),
    ),
    ("ipsec tunnel", UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 6])),
    ("ipsec user", UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 7])),
    ("timestamping", UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 8])),
    ("ocsp signing", UsageId::Ext(&[1, 3, 6, 1, 5, 5, 7, 3, 9])),
    (
        "microsoft sgc",
        UsageId::Ext(&[1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
    ),
    ("netscape sgc", UsageId::Ext(&[2, 16, 840, 1, 113730, 4, 1])),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyBit {
    DigitalSignature,
    ContentCommitment,
    KeyEncipherment,
    KeyAgreement,
    DataEncipherment,
    CertSign,
    CrlSign,
    EncipherOnly,
    DecipherOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UsageId {
    Key(KeyBit),
    Ext(&'static [u64]),
}

impl KeyBit {
    fn purpose(self) -> KeyUsagePurpose {
        match self {
            Self::DigitalSignature => KeyUsagePurpose::DigitalSignature,
            Self::ContentCommitment => KeyUsagePurpose::ContentCommitment,
            Self::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
            Self::KeyAgreement => KeyUsagePurpose::KeyAgreement,
            Self::DataEncipherment => KeyUsagePurpose::DataEncipherment,
            Self::CertSign => KeyUsagePurpose::KeyCertSign,
            Self::CrlSign => KeyUsagePurpose::CrlSign,
            Self::EncipherOnly => KeyUsagePurpose::EncipherOnly,
            Self::DecipherOnly => KeyUsagePurpose::DecipherOnly,
        }
    }
}

impl UsageId {
    fn usage(self) -> Usage {
        match self {
            Self::Key(bit) => Usage::Key(bit.purpose()),
            Self::Ext(oid) => Usage::Extended(ext_purpose(oid)),
        }
    }
}

/// rcgen's named variant where it has one, so certificates parse back to the same value.
fn ext_purpose(oid: &[u64]) -> ExtendedKeyUsagePurpose {
    match oid {
        [2, 5, 29, 37, 0] => ExtendedKeyUsagePurpose::Any,
        [1, 3, 6, 1, 5, 5, 7, 3, 1] => ExtendedKeyUsagePurpose::ServerAuth,
        [1, 3, 6, 1, 5, 5, 7, 3, 2] => ExtendedKeyUsagePurpose::ClientAuth,
        [1, 3, 6, 1, 5, 5, 7, 3, 3] => ExtendedKeyUsagePurpose::CodeSigning,
        [1, 3, 6, 1, 5, 5, 7, 3, 4] => ExtendedKeyUsagePurpose::EmailProtection,
        [1, 3, 6, 1, 5, 5, 7, 3, 8] => ExtendedKeyUsagePurpose::TimeStamping,
        [1, 3, 6, 1, 5, 5, 7, 3, 9] => ExtendedKeyUsagePurpose::OcspSigning,
        other => ExtendedKeyUsagePurpose::Other(other.to_vec()),
    }
}

impl CertRequest {
    /// The usages that apply: `usages`, or cert-manager's defaults when empty, plus "cert sign" for a CA
    /// (cert-manager adds it whatever the spec says). Lower-cased, de-duplicated, in the spec's order.
    pub fn effective_usages(&self) -> Vec<String> {
        let mut usages: Vec<String> = if self.usages.is_empty() {
            DEFAULT_USAGES.iter().map(|u| (*u).to_owned()).collect()
        } else {
            self.usages
                .iter()
                .map(|u| u.trim().to_ascii_lowercase())
                .collect()
        };
        if self.is_ca {
            usages.push("cert sign".to_owned());
        }
        let mut seen = Vec::with_capacity(usages.len());
        usages.retain(|u| {
            let new = !seen.contains(u);
            if new {
                seen.push(u.clone());
            }
            new
        });
        usages
    }

    /// Key usage and extended key usage purposes, or an error naming the unknown usage.
    pub(crate) fn usages(
        &self,
    ) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>), PkiError> {
        let mut key = Vec::new();
        let mut ext = Vec::new();
        for name in self.effective_usages() {
            let Some((_, id)) = USAGES.iter().find(|(known, _)| *known == name) else {
                return Err(PkiError::InvalidRequest {
                    field: "usages".to_owned(),
                    reason: format!("unknown usage {name:?}"),
                });
            };
            match id.usage() {
                Usage::Key(purpose) if !key.contains(&purpose) => key.push(purpose),
                Usage::Extended(purpose) if !ext.contains(&purpose) => ext.push(purpose),
                _ => {}
            }
        }
        Ok((key, ext))
    }

    /// Subject distinguished name: the order Go's `pkix.Name` (and so cert-manager) writes.
    pub(crate) fn distinguished_name(&self) -> Result<DistinguishedName, PkiError> {
        let s = &self.subject;
        let mut dn = DistinguishedName::new();
        let fields: [(&str, DnType, &[String]); 7] = [
            ("subject.countries", DnType::CountryName, &s.countries),
            (
                "subject.provinces",
                DnType::StateOrProvinceName,
                &s.provinces,
            ),
            ("subject.localities", DnType::LocalityName, &s.localities),
            (
                "subject.streetAddresses",
                DnType::CustomDnType(OID_STREET_ADDRESS.to_vec()),
                &s.street_addresses,
            ),
            (
                "subject.postalCodes",
                DnType::CustomDnType(OID_POSTAL_CODE.to_vec()),
                &s.postal_codes,
            ),
            (
                "subject.organizations",
                DnType::OrganizationName,
                &s.organizations,
            ),
            (
                "subject.organizationalUnits",
                DnType::OrganizationalUnitName,
                &s.organizational_units,
            ),
        ];
        for (field, ty, values) in fields {
            match values {
                [] => {}
                [value] => dn.push(ty, value.as_str()),
                // rcgen's DistinguishedName holds one value per attribute type; refusing is better than
                // silently issuing a certificate without the other values.
                _ => {
                    return Err(PkiError::InvalidRequest {
                        field: field.to_owned(),
                        reason: "more than one value is not supported".to_owned(),
                    });
                }
            }
        }
        if let Some(cn) = self.common_name.as_deref().filter(|cn| !cn.is_empty()) {
            dn.push(DnType::CommonName, cn);
        }
        if let Some(serial) = s.serial_number.as_deref().filter(|v| !v.is_empty()) {
            dn.push(DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()), serial);
        }
        Ok(dn)
    }

    /// Subject alternative names in cert-manager's order: DNS, IP, URI, email.
    pub(crate) fn sans(&self) -> Result<Vec<SanType>, PkiError> {
        let mut sans = Vec::new();
        for (i, name) in self.dns_names.iter().enumerate() {
            sans.push(SanType::DnsName(ia5("dnsNames", i, name)?));
        }
        sans.extend(self.ip_addresses.iter().copied().map(SanType::IpAddress));
        for (i, uri) in self.uris.iter().enumerate() {
            sans.push(SanType::URI(ia5("uris", i, uri)?));
        }
        for (i, email) in self.email_addresses.iter().enumerate() {
            sans.push(SanType::Rfc822Name(ia5("emailAddresses", i, email)?));
        }
        Ok(sans)
    }

    /// rcgen parameters for everything but validity and serial, which only certificates have.
    pub(crate) fn params(&self) -> Result<CertificateParams, PkiError> {
        if self.common_name.as_deref().is_none_or(str::is_empty)
            && self.dns_names.is_empty()
            && self.ip_addresses.is_empty()
            && self.uris.is_empty()
            && self.email_addresses.is_empty()
        {
            return Err(PkiError::InvalidRequest {
                field: "spec".to_owned(),
                reason: "at least one of commonName, dnsNames, uris, emailAddresses or ipAddresses must be set".to_owned(),
            });
        }
        let (key_usages, extended_key_usages) = self.usages()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = self.distinguished_name()?;
        params.subject_alt_names = self.sans()?;
        params.key_usages = key_usages;
        params.extended_key_usages = extended_key_usages;
        // cert-manager always writes BasicConstraints (BasicConstraintsValid = true), CA:FALSE included.
        params.is_ca = if self.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        Ok(params)
    }
}

fn ia5(field: &str, index: usize, value: &str) -> Result<Ia5String, PkiError> {
    Ia5String::try_from(value).map_err(|_| PkiError::InvalidRequest {
        field: format!("{field}[{index}]"),
        reason: format!("{value:?} is not ASCII (IA5String); IDNs must be given in punycode"),
    })
}
