//! Whether an Issuer or ClusterIssuer is ready, with cert-manager's reasons, so `kubectl get issuer` answers
//! at a glance. Pure: the spec and the Secrets it names in, the Ready condition out. ACME issuers get their
//! condition from account registration, which happens at issuance.

use std::collections::BTreeMap;

use crate::crd::issuer::IssuerSpec;
use crate::pki::sign::CaKeyPair;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// `secret`: the data of a Secret in the issuer's Secret namespace, by name. `None` for ACME issuers.
pub fn readiness(
    spec: &IssuerSpec,
    secret: impl Fn(&str) -> Option<BTreeMap<String, Vec<u8>>>,
) -> Option<Readiness> {
    let ok = |reason, message: &str| {
        Some(Readiness {
            ready: true,
            reason,
            message: message.into(),
        })
    };
    let bad = |reason, message: String| {
        Some(Readiness {
            ready: false,
            reason,
            message,
        })
    };
    if spec.self_signed.is_some() {
        return ok("IsReady", "");
    }
    if let Some(ca) = &spec.ca {
        let Some(data) = secret(&ca.secret_name) else {
            return bad(
                "ErrGetKeyPair",
                format!(
                    "Error getting keypair for CA issuer: secret \"{}\" not found",
                    ca.secret_name
                ),
            );
        };
        let text = |k: &str| {
            data.get(k)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        return match (text("tls.crt"), text("tls.key")) {
            (Some(crt), Some(key)) => {
                match CaKeyPair::from_pem(&crt, &key, text("ca.crt").as_deref()) {
                    Ok(_) => ok("KeyPairVerified", "Signing CA verified"),
                    Err(e) => bad(
                        "ErrInvalidKeyPair",
                        format!("Error getting keypair for CA issuer: {e}"),
                    ),
                }
            }
            _ => bad(
                "ErrGetKeyPair",
                "Error getting keypair for CA issuer: the Secret needs tls.crt and tls.key".into(),
            ),
        };
    }
    if spec.acme.is_some() {
        return None;
    }
    let kind = if spec.vault.is_some() {
        "vault"
    } else if spec.venafi.is_some() {
        "venafi"
    } else {
        "an empty"
    };
    bad(
        "ErrInitIssuer",
        format!(
            "certgate does not support {kind} issuer; supported: selfSigned, ca, acme (http01)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> IssuerSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn self_signed_is_ready_and_unsupported_kinds_say_what_is_unsupported() {
        assert_eq!(
            readiness(&spec(json!({"selfSigned": {}})), |_| None)
                .unwrap()
                .reason,
            "IsReady"
        );
        let vault = readiness(&spec(json!({"vault": {"server": "https://vault"}})), |_| {
            None
        })
        .unwrap();
        assert!(!vault.ready);
        assert_eq!(vault.reason, "ErrInitIssuer");
        assert!(vault.message.contains("vault"), "{}", vault.message);
        assert_eq!(
            readiness(
                &spec(json!({"acme": {"server": "s", "privateKeySecretRef": {"name": "a"}}})),
                |_| None
            ),
            None
        );
    }

    #[test]
    fn a_ca_issuer_is_ready_only_with_a_verified_key_pair() {
        let ca = spec(json!({"ca": {"secretName": "ca"}}));
        assert_eq!(readiness(&ca, |_| None).unwrap().reason, "ErrGetKeyPair");
        let leaf = crate::tls::testing::self_signed(&["not-a-ca.example.com"]);
        let data = BTreeMap::from([
            ("tls.crt".to_owned(), leaf.crt.into_bytes()),
            ("tls.key".to_owned(), leaf.key.into_bytes()),
        ]);
        let r = readiness(&ca, |_| Some(data.clone())).unwrap();
        assert_eq!((r.ready, r.reason), (false, "ErrInvalidKeyPair"));
    }
}
