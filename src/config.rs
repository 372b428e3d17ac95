//! Turns a `World` into what the data plane serves: the routing table and the certificate table.
//!
//! Pure apart from one piece of memory: the last certificate that loaded for each TLS Secret, so a Secret
//! that goes missing or turns malformed is reported while the last good certificate keeps being served — a
//! broken new certificate never replaces a working one.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::sign::CertifiedKey;

use crate::routing::build::{self, BuildOptions, Report};
use crate::routing::builder::RouteBuilder;
use crate::routing::table::RouteTable;
use crate::tls::{self, CertTable};
use crate::world::{ObjectKey, World};

/// The Secret keys of a `kubernetes.io/tls` Secret.
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

pub struct Snapshot {
    pub routes: RouteTable,
    pub certs: CertTable,
    pub reports: Vec<Report>,
    /// The Ingresses this instance serves (after class selection), for Ingress status.
    pub served: Vec<ObjectKey>,
}

pub struct ConfigBuilder {
    /// Keeps the routing table between builds, so a change redoes only what it touches.
    routes: RouteBuilder,
    /// Served when no SNI name matches: `--default-ssl-certificate`'s Secret when it loads, else generated.
    default_cert: Arc<CertifiedKey>,
    default_secret: Option<ObjectKey>,
    last_good: HashMap<ObjectKey, LastGood>,
}

/// The Secret (and its bytes) when it last loaded, and the certificate they gave.
struct LastGood {
    secret: Arc<Secret>,
    crt: Vec<u8>,
    key: Vec<u8>,
    cert: Arc<CertifiedKey>,
}

impl ConfigBuilder {
    pub fn new(
        options: BuildOptions,
        default_cert: Arc<CertifiedKey>,
        default_secret: Option<ObjectKey>,
    ) -> Self {
        Self {
            routes: RouteBuilder::new(options),
            default_cert,
            default_secret,
            last_good: HashMap::new(),
        }
    }

    pub fn build(&mut self, world: &World) -> Snapshot {
        let built = self.routes.build(world);
        let mut reports = built.reports;
        let default_cert = match self.default_secret.clone() {
            None => self.default_cert.clone(),
            Some(key) => match self.certificate(world, &key) {
                Ok(cert) => cert,
                Err(problem) => {
                    reports.push(Report {
                        object: key.clone(),
                        warning: true,
                        reason: "InvalidDefaultCertificate",
                        message: format!(
                            "--default-ssl-certificate {key}: {problem}; a generated certificate is served"
                        ),
                    });
                    let last = self.last_good.get(&key).map(|g| g.cert.clone());
                    last.unwrap_or_else(|| self.default_cert.clone())
                }
            },
        };
        let mut certs = CertTable::new(default_cert);
        for tls_host in &built.tls_hosts {
            let problem = match self.certificate(world, &tls_host.secret) {
                Ok(cert) => {
                    certs.insert(&tls_host.host, cert);
                    continue;
                }
                Err(problem) => problem,
            };
            let fallback = self.last_good.get(&tls_host.secret).map(|g| g.cert.clone());
            let outcome = match &fallback {
                Some(_) => "the last good certificate keeps being served",
                None => "the default certificate is served",
            };
            if let Some(cert) = fallback {
                certs.insert(&tls_host.host, cert);
            }
            reports.push(Report {
                object: tls_host.ingress.clone(),
                warning: true,
                reason: "InvalidTLSSecret",
                message: format!(
                    "TLS Secret {} for {}: {problem}; {outcome}",
                    tls_host.secret, tls_host.host
                ),
            });
        }
        Snapshot {
            routes: built.table,
            certs,
            reports,
            served: built.served,
        }
    }

    fn certificate(&mut self, world: &World, key: &ObjectKey) -> Result<Arc<CertifiedKey>, String> {
        let secret = world.secrets.get(key).ok_or("not found")?;
        // The same object as last time (sources share unchanged objects): nothing to compare or parse.
        if let Some(good) = self.last_good.get(key)
            && Arc::ptr_eq(&good.secret, secret)
        {
            return Ok(good.cert.clone());
        }
        let data = build::secret_data(secret);
        let (Some(crt), Some(tls_key)) = (data.get(TLS_CRT), data.get(TLS_KEY)) else {
            return Err(format!("needs both {TLS_CRT} and {TLS_KEY}"));
        };
        if let Some(good) = self.last_good.get_mut(key)
            && good.crt == *crt
            && good.key == *tls_key
        {
            good.secret = secret.clone();
            return Ok(good.cert.clone());
        }
        let loaded = tls::keypair::load(crt, tls_key).map_err(|e| e.to_string())?;
        self.last_good.insert(
            key.clone(),
            LastGood {
                secret: secret.clone(),
                crt: crt.clone(),
                key: tls_key.clone(),
                cert: loaded.certified.clone(),
            },
        );
        Ok(loaded.certified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Match;
    use crate::tls::testing::self_signed;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::networking::v1::Ingress;
    use serde_json::json;

    fn world(tls_crt: &str, tls_key: &str) -> World {
        let mut w = World::default();
        let ing: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"tls": [{"hosts": ["a.example.com"], "secretName": "web-tls"}]}
        }))
        .unwrap();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "web-tls", "namespace": "ns"},
            "stringData": {TLS_CRT: tls_crt, TLS_KEY: tls_key}
        }))
        .unwrap();
        w.ingresses.insert(ObjectKey::of(&ing), Arc::new(ing));
        w.secrets.insert(ObjectKey::of(&secret), Arc::new(secret));
        w
    }

    fn builder() -> ConfigBuilder {
        let options = BuildOptions {
            controller: "c".into(),
            ingress_class: "certgate".into(),
            watch_without_class: true,
            allow_loopback: false,
        };
        let default = crate::tls::keypair::generate_default().unwrap().certified;
        ConfigBuilder::new(options, default, None)
    }

    #[test]
    fn a_broken_secret_keeps_the_last_good_certificate_and_is_reported() {
        let good = self_signed(&["a.example.com"]);
        let mut b = builder();
        let first = b.build(&world(&good.crt, &good.key));
        let (served, how) = first.certs.lookup(Some("a.example.com"));
        assert_eq!(how, Match::Exact);
        assert!(first.reports.is_empty(), "{:?}", first.reports);

        let other = self_signed(&["a.example.com"]);
        let broken = b.build(&world(&good.crt, &other.key));
        let (still, how) = broken.certs.lookup(Some("a.example.com"));
        assert_eq!(how, Match::Exact);
        assert!(
            Arc::ptr_eq(&served, &still),
            "a broken Secret replaced a working certificate"
        );
        assert_eq!(broken.reports.len(), 1);
        assert_eq!(broken.reports[0].reason, "InvalidTLSSecret");
        assert!(
            broken.reports[0].message.contains("last good certificate"),
            "{}",
            broken.reports[0].message
        );
    }

    #[test]
    fn a_secret_that_never_loaded_falls_back_to_the_default_certificate() {
        let mut b = builder();
        let snap = b.build(&world("not a certificate", "nor a key"));
        assert_eq!(snap.certs.lookup(Some("a.example.com")).1, Match::Default);
        assert!(
            snap.reports[0].message.contains("default certificate"),
            "{}",
            snap.reports[0].message
        );
    }

    #[test]
    fn a_renewed_certificate_replaces_the_old_one() {
        let mut b = builder();
        let old = self_signed(&["a.example.com"]);
        let new = self_signed(&["a.example.com"]);
        let first = b
            .build(&world(&old.crt, &old.key))
            .certs
            .lookup(Some("a.example.com"))
            .0;
        let second = b
            .build(&world(&new.crt, &new.key))
            .certs
            .lookup(Some("a.example.com"))
            .0;
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.cert[0].as_ref(), new.leaf_der.as_ref());
    }
}
