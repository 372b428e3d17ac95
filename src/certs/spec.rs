//! A Certificate's spec → what to put in the certificate (`pki::CertRequest`) and which key (`KeySpec`).
//! Errors name the field, as cert-manager's validation does.

use std::net::IpAddr;

use crate::crd::certificate::{
    CertificateSpec, PrivateKeyAlgorithm, PrivateKeyEncoding, RotationPolicy,
};
use crate::pki::key::{KeyAlgorithm, KeyEncoding, KeySpec};
use crate::pki::{CertRequest, Subject};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SpecError {
    pub field: String,
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Everything the issuing side needs from a spec, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub request: CertRequest,
    pub key: KeySpec,
    /// `privateKey.rotationPolicy`: `Always` (the default in current cert-manager) makes a new key per issuance.
    pub rotate_key: bool,
    /// `renewBefore`, if set.
    pub renew_before: Option<std::time::Duration>,
    pub renew_before_percentage: Option<u32>,
}

pub fn wanted(spec: &CertificateSpec) -> Result<Wanted, SpecError> {
    let mut request = CertRequest {
        common_name: spec.common_name.clone().filter(|cn| !cn.is_empty()),
        dns_names: spec.dns_names.clone().unwrap_or_default(),
        uris: spec.uris.clone().unwrap_or_default(),
        email_addresses: spec.email_addresses.clone().unwrap_or_default(),
        is_ca: spec.is_ca.unwrap_or(false),
        ..CertRequest::default()
    };
    for (i, ip) in spec.ip_addresses.iter().flatten().enumerate() {
        let parsed: IpAddr = ip.parse().map_err(|_| {
            invalid(
                format!("spec.ipAddresses[{i}]"),
                format!("{ip:?} is not an IP address"),
            )
        })?;
        request.ip_addresses.push(parsed);
    }
    if request.common_name.is_none()
        && request.dns_names.is_empty()
        && request.ip_addresses.is_empty()
        && request.uris.is_empty()
        && request.email_addresses.is_empty()
    {
        return Err(invalid(
            "spec",
            "at least one of commonName, dnsNames, uris, ipAddresses or emailAddresses must be set",
        ));
    }
    if let Some(duration) = spec.duration() {
        request.duration = duration.map_err(|e| invalid("spec.duration", e.to_string()))?;
    }
    let renew_before = spec
        .renew_before()
        .transpose()
        .map_err(|e| invalid("spec.renewBefore", e.to_string()))?;
    let renew_before_percentage = match spec.renew_before_percentage {
        None => None,
        Some(p) if (1..100).contains(&p) => Some(p as u32),
        Some(p) => {
            return Err(invalid(
                "spec.renewBeforePercentage",
                format!("{p} is not between 1 and 99"),
            ));
        }
    };
    for (i, usage) in spec.usages.iter().flatten().enumerate() {
        let name = serde_json::to_value(usage)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        request
            .usages
            .push(name.ok_or_else(|| invalid(format!("spec.usages[{i}]"), "unknown usage"))?);
    }
    if let Some(s) = &spec.subject {
        request.subject = Subject {
            organizations: s.organizations.clone().unwrap_or_default(),
            countries: s.countries.clone().unwrap_or_default(),
            organizational_units: s.organizational_units.clone().unwrap_or_default(),
            localities: s.localities.clone().unwrap_or_default(),
            provinces: s.provinces.clone().unwrap_or_default(),
            street_addresses: s.street_addresses.clone().unwrap_or_default(),
            postal_codes: s.postal_codes.clone().unwrap_or_default(),
            serial_number: s.serial_number.clone(),
        };
    }
    let pk = spec.private_key.as_ref();
    let key =
        KeySpec {
            algorithm: match pk.and_then(|k| k.algorithm.as_ref()) {
                None | Some(PrivateKeyAlgorithm::Rsa) => KeyAlgorithm::Rsa,
                Some(PrivateKeyAlgorithm::Ecdsa) => KeyAlgorithm::Ecdsa,
                Some(PrivateKeyAlgorithm::Ed25519) => KeyAlgorithm::Ed25519,
            },
            size: match pk.and_then(|k| k.size) {
                None => None,
                Some(s) => Some(u32::try_from(s).map_err(|_| {
                    invalid("spec.privateKey.size", format!("{s} is not a key size"))
                })?),
            },
            encoding: match pk.and_then(|k| k.encoding.as_ref()) {
                None | Some(PrivateKeyEncoding::Pkcs1) => KeyEncoding::Pkcs1,
                Some(PrivateKeyEncoding::Pkcs8) => KeyEncoding::Pkcs8,
            },
        };
    key.validate()
        .map_err(|e| invalid("spec.privateKey", e.to_string()))?;
    let rotate_key = !matches!(
        pk.and_then(|k| k.rotation_policy.as_ref()),
        Some(RotationPolicy::Never)
    );
    Ok(Wanted {
        request,
        key,
        rotate_key,
        renew_before,
        renew_before_percentage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> CertificateSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_are_cert_managers() {
        let w = wanted(&spec(
            json!({"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["a.example.com"]}),
        ))
        .unwrap();
        assert_eq!(
            w.key,
            KeySpec {
                algorithm: KeyAlgorithm::Rsa,
                size: None,
                encoding: KeyEncoding::Pkcs1
            }
        );
        assert!(w.rotate_key, "rotationPolicy defaults to Always");
        assert_eq!(w.request.duration, crate::pki::DEFAULT_DURATION);
        assert_eq!(w.request.dns_names, ["a.example.com"]);
    }

    #[test]
    fn fields_are_carried_over() {
        let w = wanted(&spec(json!({
            "secretName": "s", "issuerRef": {"name": "i"}, "commonName": "web", "dnsNames": ["a.example.com"],
            "ipAddresses": ["192.0.2.1"], "duration": "2160h", "renewBefore": "360h", "isCA": false,
            "usages": ["server auth"], "privateKey": {"algorithm": "ECDSA", "size": 384, "encoding": "PKCS8", "rotationPolicy": "Never"}
        })))
        .unwrap();
        assert_eq!(w.request.common_name.as_deref(), Some("web"));
        assert_eq!(
            w.request.ip_addresses,
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            w.request.duration,
            std::time::Duration::from_secs(2160 * 3600)
        );
        assert_eq!(
            w.renew_before,
            Some(std::time::Duration::from_secs(360 * 3600))
        );
        assert_eq!(w.request.usages, ["server auth"]);
        assert_eq!(
            w.key,
            KeySpec {
                algorithm: KeyAlgorithm::Ecdsa,
                size: Some(384),
                encoding: KeyEncoding::Pkcs8
            }
        );
        assert!(!w.rotate_key);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |v| wanted(&spec(v)).unwrap_err().field;
        assert_eq!(
            err(json!({"secretName": "s", "issuerRef": {"name": "i"}})),
            "spec"
        );
        assert_eq!(
            err(json!({"secretName": "s", "issuerRef": {"name": "i"}, "ipAddresses": ["nope"]})),
            "spec.ipAddresses[0]"
        );
        assert_eq!(
            err(
                json!({"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["a"], "duration": "90 days"})
            ),
            "spec.duration"
        );
        assert_eq!(
            err(
                json!({"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["a"], "renewBeforePercentage": 100})
            ),
            "spec.renewBeforePercentage"
        );
        assert_eq!(
            err(
                json!({"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["a"], "privateKey": {"algorithm": "Ed25519", "encoding": "PKCS1"}})
            ),
            "spec.privateKey"
        );
    }
}
