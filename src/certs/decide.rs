//! Does a Certificate need issuing, and why? Pure: the spec, the Secret's data and the time in; a
//! decision with cert-manager's reasons and messages out (users' alerts and habits read those strings).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};

use crate::certs::spec::Wanted;
use crate::pki::inspect;

pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The Secret satisfies the spec; renew at `renewal_time`.
    UpToDate {
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
        renewal_time: DateTime<Utc>,
    },
    /// Issue now, for this cert-manager reason (`DoesNotExist`, `MissingData`, `InvalidKeyPair`,
    /// `InvalidCertificate`, `RequestChanged`, `Expired`, `Renewing`).
    Issue {
        reason: &'static str,
        message: String,
    },
}

/// cert-manager's rule: `renewBefore`, else `renewBeforePercentage` of the lifetime, else a third of it;
/// a renewBefore not shorter than the lifetime falls back to a third.
pub fn renewal_time(
    wanted: &Wanted,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> DateTime<Utc> {
    let lifetime = not_after - not_before;
    let third = lifetime / 3;
    let before = match (wanted.renew_before, wanted.renew_before_percentage) {
        (Some(d), _) => ChronoDuration::from_std(d).unwrap_or(third),
        (None, Some(pct)) => lifetime * pct as i32 / 100,
        (None, None) => third,
    };
    let before = if before >= lifetime || before <= ChronoDuration::zero() {
        third
    } else {
        before
    };
    not_after - before
}

pub fn decide(
    wanted: &Wanted,
    secret: Option<&BTreeMap<String, Vec<u8>>>,
    now: DateTime<Utc>,
) -> Decision {
    let issue = |reason, message: &str| Decision::Issue {
        reason,
        message: message.to_owned(),
    };
    let Some(data) = secret else {
        return issue(
            "DoesNotExist",
            "Issuing certificate as Secret does not exist",
        );
    };
    let text = |key| {
        data.get(key)
            .filter(|v| !v.is_empty())
            .and_then(|v| String::from_utf8(v.clone()).ok())
    };
    let Some(crt) = text(TLS_CRT) else {
        return issue(
            "MissingData",
            "Issuing certificate as Secret does not contain a certificate",
        );
    };
    let Some(key) = text(TLS_KEY) else {
        return issue(
            "MissingData",
            "Issuing certificate as Secret does not contain a private key",
        );
    };
    if crate::tls::keypair::load(crt.as_bytes(), key.as_bytes()).is_err() {
        return issue(
            "InvalidKeyPair",
            "Issuing certificate as Secret contains a private key that does not match the certificate",
        );
    }
    let info = match inspect::describe(&crt) {
        Ok(info) => info,
        Err(e) => {
            return issue(
                "InvalidCertificate",
                &format!("Issuing certificate as Secret contains an invalid certificate: {e}"),
            );
        }
    };
    // The names and CA flag must match the spec. Usages and subject are the issuer's policy (an ACME CA
    // chooses them, and sets a commonName nobody asked for), so they are not grounds for re-issuing.
    let mismatches: Vec<String> = inspect::matches_request(&info, &wanted.request)
        .into_iter()
        .filter(|m| {
            ["dnsNames", "ipAddresses", "uris", "emailAddresses", "isCA"]
                .iter()
                .any(|f| m.starts_with(f))
                || (m.starts_with("commonName") && wanted.request.common_name.is_some())
        })
        .collect();
    if !mismatches.is_empty() {
        return issue(
            "RequestChanged",
            &format!(
                "Fields on existing certificate not up to date: {}",
                mismatches.join("; ")
            ),
        );
    }
    if let Ok(existing) = crate::pki::key::parse(&key)
        && !crate::pki::key::matches(&wanted.key, &existing.spec)
    {
        return issue(
            "RequestChanged",
            "Fields on existing certificate not up to date: spec.privateKey",
        );
    }
    if now >= info.not_after {
        return issue(
            "Expired",
            &format!("Certificate expired on {}", info.not_after.to_rfc2822()),
        );
    }
    let renewal = renewal_time(wanted, info.not_before, info.not_after);
    if now >= renewal {
        return issue(
            "Renewing",
            &format!(
                "Renewing certificate as renewal was scheduled at {}",
                renewal.to_rfc3339()
            ),
        );
    }
    Decision::UpToDate {
        not_before: info.not_before,
        not_after: info.not_after,
        renewal_time: renewal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::spec;
    use crate::pki::key::{KeyAlgorithm, KeyEncoding, KeySpec};
    use serde_json::json;

    fn wanted(extra: serde_json::Value) -> Wanted {
        let mut v = json!({"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["a.example.com"],
                           "privateKey": {"algorithm": "ECDSA"}});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        spec::wanted(&serde_json::from_value(v).unwrap()).unwrap()
    }

    /// A Secret issued for `w` at `now` (self-signed).
    fn secret_for(w: &Wanted, now: DateTime<Utc>) -> BTreeMap<String, Vec<u8>> {
        let key = crate::pki::key::generate(&w.key).unwrap();
        let cert = crate::pki::sign::self_signed(&w.request, &key.key_pair, now).unwrap();
        BTreeMap::from([
            (TLS_CRT.to_owned(), cert.chain_pem.into_bytes()),
            (TLS_KEY.to_owned(), key.pem.into_bytes()),
        ])
    }

    fn reason(d: Decision) -> &'static str {
        match d {
            Decision::Issue { reason, .. } => reason,
            Decision::UpToDate { .. } => "UpToDate",
        }
    }

    #[test]
    fn a_missing_or_empty_secret_is_issued_with_cert_managers_reasons() {
        let w = wanted(json!({}));
        let now = Utc::now();
        assert_eq!(
            decide(&w, None, now),
            Decision::Issue {
                reason: "DoesNotExist",
                message: "Issuing certificate as Secret does not exist".into()
            }
        );
        let mut data = secret_for(&w, now);
        data.remove(TLS_KEY);
        assert_eq!(reason(decide(&w, Some(&data), now)), "MissingData");
    }

    #[test]
    fn a_matching_secret_is_up_to_date_until_two_thirds_of_its_life() {
        let w = wanted(json!({"duration": "2160h"}));
        let issued = Utc::now();
        let data = secret_for(&w, issued);
        let Decision::UpToDate {
            not_after,
            renewal_time,
            ..
        } = decide(&w, Some(&data), issued)
        else {
            panic!("not up to date")
        };
        let lifetime = ChronoDuration::hours(2160);
        assert!(
            (renewal_time - (not_after - lifetime / 3))
                .num_seconds()
                .abs()
                <= 1
        );
        assert_eq!(
            reason(decide(
                &w,
                Some(&data),
                renewal_time + ChronoDuration::seconds(1)
            )),
            "Renewing"
        );
        assert_eq!(
            reason(decide(
                &w,
                Some(&data),
                not_after + ChronoDuration::seconds(1)
            )),
            "Expired"
        );
    }

    #[test]
    fn renew_before_and_percentage_move_the_renewal_time() {
        let now = Utc::now();
        let end = now + ChronoDuration::days(90);
        let w = wanted(json!({"renewBefore": "720h"}));
        assert_eq!(renewal_time(&w, now, end), end - ChronoDuration::days(30));
        let w = wanted(json!({"renewBeforePercentage": 10}));
        assert_eq!(renewal_time(&w, now, end), end - ChronoDuration::days(9));
        // Longer than the lifetime: a third instead.
        let w = wanted(json!({"renewBefore": "9000h"}));
        assert_eq!(renewal_time(&w, now, end), end - ChronoDuration::days(30));
    }

    #[test]
    fn a_changed_spec_or_broken_pair_is_reissued() {
        let now = Utc::now();
        let w = wanted(json!({}));
        let data = secret_for(&w, now);
        let other_names = wanted(json!({"dnsNames": ["b.example.com"]}));
        assert_eq!(
            reason(decide(&other_names, Some(&data), now)),
            "RequestChanged"
        );
        let rsa = Wanted {
            key: KeySpec {
                algorithm: KeyAlgorithm::Rsa,
                size: None,
                encoding: KeyEncoding::Pkcs1,
            },
            ..w.clone()
        };
        assert_eq!(reason(decide(&rsa, Some(&data), now)), "RequestChanged");
        let mut swapped = data.clone();
        swapped.insert(TLS_KEY.into(), secret_for(&w, now)[TLS_KEY].clone());
        assert_eq!(reason(decide(&w, Some(&swapped), now)), "InvalidKeyPair");
        let mut garbage = data;
        garbage.insert(TLS_CRT.into(), b"not a certificate".to_vec());
        assert_ne!(reason(decide(&w, Some(&garbage), now)), "UpToDate");
    }
}
