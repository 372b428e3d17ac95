//! What an issued certificate says, and whether that still matches a [`CertRequest`]: the input to
//! cert-manager's "re-issue because the spec changed" decision.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;

use super::request::{KeyBit, USAGES, UsageId};
use super::{CertRequest, PkiError, Subject};

/// The fields of a leaf certificate that a Certificate spec controls, plus validity and naming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    pub common_name: Option<String>,
    pub subject_fields: Subject,
    pub is_ca: bool,
    /// cert-manager usage names of the key usage and extended key usage extensions.
    pub usages: Vec<String>,
    /// Serial number, lower-case hex with colons.
    pub serial: String,
    /// RFC 4514-style strings, for display.
    pub subject: String,
    pub issuer: String,
}

/// Describe the first certificate of a PEM `tls.crt`.
pub fn describe(cert_pem: &str) -> Result<CertInfo, PkiError> {
    let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .ok_or_else(|| PkiError::BadCertificate("no PEM \"CERTIFICATE\" block".to_owned()))?
        .map_err(|_| PkiError::BadCertificate("not valid PEM".to_owned()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|error| PkiError::BadCertificate(error.to_string()))?;
    let bad = |what: &str, error: &dyn std::fmt::Display| {
        PkiError::BadCertificate(format!("{what}: {error}"))
    };

    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    let mut uris = Vec::new();
    let mut emails = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| bad("subjectAltName", &e))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                GeneralName::RFC822Name(email) => emails.push((*email).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }

    let mut usages = Vec::new();
    if let Some(ku) = cert.key_usage().map_err(|e| bad("keyUsage", &e))? {
        let ku = ku.value;
        let bits = [
            (ku.digital_signature(), KeyBit::DigitalSignature),
            (ku.non_repudiation(), KeyBit::ContentCommitment),
            (ku.key_encipherment(), KeyBit::KeyEncipherment),
            (ku.data_encipherment(), KeyBit::DataEncipherment),
            (ku.key_agreement(), KeyBit::KeyAgreement),
            (ku.key_cert_sign(), KeyBit::CertSign),
            (ku.crl_sign(), KeyBit::CrlSign),
            (ku.encipher_only(), KeyBit::EncipherOnly),
            (ku.decipher_only(), KeyBit::DecipherOnly),
        ];
        for (set, bit) in bits {
            if set {
                usages.push(usage_name(UsageId::Key(bit)));
            }
        }
    }
    if let Some(eku) = cert
        .extended_key_usage()
        .map_err(|e| bad("extendedKeyUsage", &e))?
    {
        let eku = eku.value;
        let named: [(bool, &[u64]); 7] = [
            (eku.any, &[2, 5, 29, 37, 0]),
            (eku.server_auth, &[1, 3, 6, 1, 5, 5, 7, 3, 1]),
            (eku.client_auth, &[1, 3, 6, 1, 5, 5, 7, 3, 2]),
            (eku.code_signing, &[1, 3, 6, 1, 5, 5, 7, 3, 3]),
            (eku.email_protection, &[1, 3, 6, 1, 5, 5, 7, 3, 4]),
            (eku.time_stamping, &[1, 3, 6, 1, 5, 5, 7, 3, 8]),
            (eku.ocsp_signing, &[1, 3, 6, 1, 5, 5, 7, 3, 9]),
        ];
        for (set, oid) in named {
            if set {
                usages.push(usage_name(UsageId::Ext(oid)));
            }
        }
        for oid in &eku.other {
            let arcs: Option<Vec<u64>> = oid.iter().map(Iterator::collect);
            let name = arcs
                .and_then(|arcs| {
                    USAGES
                        .iter()
                        .find(|(_, id)| matches!(id, UsageId::Ext(known) if *known == arcs.as_slice()))
                        .map(|(name, _)| (*name).to_owned())
                })
                .unwrap_or_else(|| oid.to_id_string());
            usages.push(name);
        }
    }

    let subject = cert.subject();
    let strings =
        |iter: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
            iter.filter_map(|attr| attr.as_str().ok().map(str::to_owned))
                .collect::<Vec<_>>()
        };
    let by_oid = |oid: &x509_parser::der_parser::oid::Oid<'_>| {
        subject
            .iter_attributes()
            .filter(|attr| attr.attr_type() == oid)
            .filter_map(|attr| attr.as_str().ok().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    use x509_parser::oid_registry as oids;
    let subject_fields = Subject {
        organizations: strings(&mut subject.iter_organization()),
        countries: strings(&mut subject.iter_country()),
        organizational_units: strings(&mut subject.iter_organizational_unit()),
        localities: strings(&mut subject.iter_locality()),
        provinces: strings(&mut subject.iter_state_or_province()),
        street_addresses: by_oid(&oids::OID_X509_STREET_ADDRESS),
        postal_codes: by_oid(&oids::OID_X509_POSTAL_CODE),
        serial_number: by_oid(&oids::OID_X509_SERIALNUMBER).into_iter().next(),
    };

    let validity = cert.validity();
    let time = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0)
            .ok_or_else(|| PkiError::BadCertificate("validity out of range".to_owned()))
    };
    Ok(CertInfo {
        not_before: time(validity.not_before)?,
        not_after: time(validity.not_after)?,
        dns_names,
        ip_addresses,
        uris,
        emails,
        common_name: strings(&mut subject.iter_common_name()).into_iter().next(),
        subject_fields,
        is_ca: cert.is_ca(),
        usages,
        serial: cert.raw_serial_as_string(),
        subject: subject.to_string(),
        issuer: cert.issuer().to_string(),
    })
}

fn usage_name(id: UsageId) -> String {
    // The first name in USAGES is the canonical one ("digital signature" before "signing" is not
    // guaranteed by order alone, so prefer the cert-manager default spellings explicitly).
    let preferred = |name: &&str| *name != "signing" && *name != "s/mime";
    USAGES
        .iter()
        .filter(|(name, _)| preferred(name))
        .find(|(_, known)| *known == id)
        .map(|(name, _)| (*name).to_owned())
        .unwrap_or_default()
}

/// How `info` differs from what `req` asks for, one human-readable line per field; empty when the
/// certificate matches. Lists are compared as sets (order and duplicates do not matter), DNS names
/// case-insensitively; usages after cert-manager's defaulting ("cert sign" added for a CA).
pub fn matches_request(info: &CertInfo, req: &CertRequest) -> Vec<String> {
    let mut out = Vec::new();
    let wanted_cn = req.common_name.clone().filter(|cn| !cn.is_empty());
    if info.common_name != wanted_cn {
        out.push(format!(
            "commonName differs: certificate has {:?}, spec wants {:?}",
            info.common_name, wanted_cn
        ));
    }
    let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>();
    compare(
        &mut out,
        "dnsNames",
        &lower(&info.dns_names),
        &lower(&req.dns_names),
    );
    compare(
        &mut out,
        "ipAddresses",
        &info.ip_addresses,
        &req.ip_addresses,
    );
    compare(&mut out, "uris", &info.uris, &req.uris);
    compare(
        &mut out,
        "emailAddresses",
        &info.emails,
        &req.email_addresses,
    );
    if info.is_ca != req.is_ca {
        out.push(format!(
            "isCA differs: certificate has {}, spec wants {}",
            info.is_ca, req.is_ca
        ));
    }
    let canonical = |names: Vec<String>| {
        names
            .into_iter()
            .map(|name| match name.as_str() {
                "signing" => "digital signature".to_owned(),
                "s/mime" => "email protection".to_owned(),
                _ => name,
            })
            .collect::<Vec<_>>()
    };
    compare(
        &mut out,
        "usages",
        &canonical(info.usages.clone()),
        &canonical(req.effective_usages()),
    );
    let (have, want) = (&info.subject_fields, &req.subject);
    compare(
        &mut out,
        "subject.organizations",
        &have.organizations,
        &want.organizations,
    );
    compare(
        &mut out,
        "subject.countries",
        &have.countries,
        &want.countries,
    );
    compare(
        &mut out,
        "subject.organizationalUnits",
        &have.organizational_units,
        &want.organizational_units,
    );
    compare(
        &mut out,
        "subject.localities",
        &have.localities,
        &want.localities,
    );
    compare(
        &mut out,
        "subject.provinces",
        &have.provinces,
        &want.provinces,
    );
    compare(
        &mut out,
        "subject.streetAddresses",
        &have.street_addresses,
        &want.street_addresses,
    );
    compare(
        &mut out,
        "subject.postalCodes",
        &have.postal_codes,
        &want.postal_codes,
    );
    let want_serial = want.serial_number.clone().filter(|s| !s.is_empty());
    if have.serial_number != want_serial {
        out.push(format!(
            "subject.serialNumber differs: certificate has {:?}, spec wants {:?}",
            have.serial_number, want_serial
        ));
    }
    out
}

fn compare<T: Ord + Clone + std::fmt::Debug>(
    out: &mut Vec<String>,
    field: &str,
    have: &[T],
    want: &[T],
) {
    let set = |v: &[T]| {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v
    };
    let (have, want) = (set(have), set(want));
    if have != want {
        out.push(format!(
            "{field} differ: certificate has {have:?}, spec wants {want:?}"
        ));
    }
}
