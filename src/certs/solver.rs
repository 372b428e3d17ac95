//! Which of an ACME issuer's `solvers` answers the challenge for one name — cert-manager's selection rules,
//! as a pure function.
//!
//! A solver is a candidate when every `matchLabels` label is on the Certificate and, if it lists
//! `dnsNames` or `dnsZones`, the name is one of them or inside one of them. The most specific candidate
//! wins: a `dnsNames` match, then the longest matching `dnsZones` entry, then the most `matchLabels`, then a
//! solver without a selector; among equals the first in the list. certgate solves HTTP-01 only, so a name
//! whose solver is DNS-01 gets an error naming it rather than a silent fallback.

use std::collections::BTreeMap;

use crate::crd::acme::AcmeChallengeSolver;

/// How specific a candidate's match is; larger wins (compared field by field, in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    dns_name: bool,
    zone_len: usize,
    labels: usize,
}

fn specificity(
    solver: &AcmeChallengeSolver,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Option<Specificity> {
    let Some(selector) = &solver.selector else {
        return Some(Specificity {
            dns_name: false,
            zone_len: 0,
            labels: 0,
        });
    };
    let match_labels = selector.match_labels.as_ref();
    if match_labels
        .into_iter()
        .flatten()
        .any(|(k, v)| labels.get(k) != Some(v))
    {
        return None;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let names = selector.dns_names.as_deref().unwrap_or_default();
    let zones = selector.dns_zones.as_deref().unwrap_or_default();
    let dns_name = names
        .iter()
        .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&name));
    let zone_len = zones
        .iter()
        .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
        .filter(|z| name == *z || name.ends_with(&format!(".{z}")))
        .map(|z| z.len())
        .max()
        .unwrap_or(0);
    if (!names.is_empty() || !zones.is_empty()) && !dns_name && zone_len == 0 {
        return None;
    }
    Some(Specificity {
        dns_name,
        zone_len,
        labels: match_labels.map_or(0, BTreeMap::len),
    })
}

/// The solver for `name` (a DNS name or IP address) of a Certificate carrying `labels`.
pub fn select<'a>(
    solvers: &'a [AcmeChallengeSolver],
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<&'a AcmeChallengeSolver, String> {
    let mut best: Option<(Specificity, &AcmeChallengeSolver)> = None;
    for solver in solvers {
        if let Some(s) = specificity(solver, name, labels)
            && best.as_ref().is_none_or(|(b, _)| s > *b)
        {
            best = Some((s, solver));
        }
    }
    let (_, solver) =
        best.ok_or_else(|| format!("no solver of the issuer's acme.solvers selects {name}"))?;
    if solver.http01.is_none() {
        return Err(format!(
            "the solver selected for {name} is not http01; certgate answers HTTP-01 only (DNS-01 is not supported)"
        ));
    }
    Ok(solver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn solvers(v: serde_json::Value) -> Vec<AcmeChallengeSolver> {
        serde_json::from_value(v).unwrap()
    }

    fn pick(
        s: &[AcmeChallengeSolver],
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<String, String> {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        select(s, name, &labels).map(|s| {
            s.http01
                .as_ref()
                .and_then(|h| h.ingress.as_ref())
                .and_then(|i| i.name.clone())
                .unwrap_or_default()
        })
    }

    fn http(name: &str, selector: serde_json::Value) -> serde_json::Value {
        json!({"selector": selector, "http01": {"ingress": {"name": name}}})
    }

    #[test]
    fn a_solver_without_selector_takes_every_name() {
        let s = solvers(json!([{"http01": {"ingress": {"name": "any"}}}]));
        assert_eq!(pick(&s, "a.example.com", &[]).unwrap(), "any");
    }

    #[test]
    fn dns_names_beat_zones_and_the_longest_zone_wins() {
        let s = solvers(json!([
            http("zone", json!({"dnsZones": ["example.com"]})),
            http("subzone", json!({"dnsZones": ["shop.example.com"]})),
            http("exact", json!({"dnsNames": ["www.shop.example.com"]})),
            {"http01": {"ingress": {"name": "fallback"}}},
        ]));
        assert_eq!(pick(&s, "www.shop.example.com", &[]).unwrap(), "exact");
        assert_eq!(pick(&s, "api.shop.example.com", &[]).unwrap(), "subzone");
        assert_eq!(pick(&s, "shop.example.com", &[]).unwrap(), "subzone");
        assert_eq!(pick(&s, "EXAMPLE.com.", &[]).unwrap(), "zone");
        assert_eq!(pick(&s, "other.org", &[]).unwrap(), "fallback");
        // A zone matches whole labels only.
        assert_eq!(pick(&s, "badexample.com", &[]).unwrap(), "fallback");
    }

    #[test]
    fn match_labels_must_all_be_present_and_more_labels_win() {
        let s = solvers(json!([
            http("one", json!({"matchLabels": {"team": "a"}})),
            http("two", json!({"matchLabels": {"team": "a", "tier": "web"}})),
        ]));
        assert_eq!(pick(&s, "x.example.com", &[("team", "a")]).unwrap(), "one");
        assert_eq!(
            pick(&s, "x.example.com", &[("team", "a"), ("tier", "web")]).unwrap(),
            "two"
        );
        assert!(pick(&s, "x.example.com", &[("team", "b")]).is_err());
    }

    #[test]
    fn labels_and_zones_combine_with_and() {
        let s = solvers(json!([http(
            "both",
            json!({"matchLabels": {"team": "a"}, "dnsZones": ["example.com"]})
        ),]));
        assert_eq!(pick(&s, "x.example.com", &[("team", "a")]).unwrap(), "both");
        assert!(pick(&s, "x.example.com", &[]).is_err());
        assert!(pick(&s, "x.example.org", &[("team", "a")]).is_err());
    }

    #[test]
    fn first_of_equals_wins() {
        let s = solvers(json!([
            {"http01": {"ingress": {"name": "first"}}},
            {"http01": {"ingress": {"name": "second"}}},
        ]));
        assert_eq!(pick(&s, "a.example.com", &[]).unwrap(), "first");
    }

    #[test]
    fn a_name_selected_for_dns01_is_an_error_naming_it() {
        let s = solvers(json!([
            {"http01": {"ingress": {}}},
            {"selector": {"dnsZones": ["internal.example.com"]}, "dns01": {"route53": {"region": "eu-west-1"}}},
        ]));
        let e = pick(&s, "db.internal.example.com", &[]).unwrap_err();
        assert!(
            e.contains("db.internal.example.com") && e.contains("DNS-01"),
            "{e}"
        );
        assert!(pick(&s, "www.example.com", &[]).is_ok());
    }
}
