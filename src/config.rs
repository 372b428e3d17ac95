//! Turns a `World` into what the data plane serves: the routing table and the certificate table.
//!
//! Pure apart from one piece of memory: the last certificate that loaded for each TLS Secret, so a Secret
//! that goes missing or turns malformed is reported while the last good certificate keeps being served — a
//! broken new certificate never replaces a working one.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::routing::build::{self, BuildOptions, Report};
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
}

pub struct ConfigBuilder {
    options: BuildOptions,
    /// Served when no SNI name matches: `--default-ssl-certificate`'s Secret when it loads, else generated.
    default_cert: Arc<CertifiedKey>,
    default_secret: Option<ObjectKey>,
    /// Secret → (its tls.crt and tls.key bytes, the certificate they gave).
    last_good: HashMap<ObjectKey, (Vec<u8>, Vec<u8>, Arc<CertifiedKey>)>,
}

impl ConfigBuilder {
    pub fn new(
        options: BuildOptions,
        default_cert: Arc<CertifiedKey>,
        default_secret: Option<ObjectKey>,
    ) -> Self {
        Self { options, default_cert, default_secret, last_good: HashMap::new() }
    }

    pub fn build(&mut self, world: &World) -> Snapshot {
        let built = build::build(world, &self.options);
        let mut reports = built.reports;
        let default_cert = match self.default_secret.clone() {
            None => self.default_cert.clone(),
            Some(key) => match self.certificate(world, &key) {
                Ok(cert) => cert,
                Err(problem) => {
                    reports.push(Report {
                        ingress: key.clone(),
                        warning: true,
                        reason: "InvalidDefaultCertificate",
                        message: format!(
                            "--default-ssl-certificate {key}: {problem}; a generated certificate is served"
                        ),
                    });
                    self.default_cert.clone()
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
            let fallback = self
                .last_good
                .get(&tls_host.secret)
                .map(|(_, _, c)| c.clone());
            let outcome = match &fallback {
                Some(_) => "the last good certificate keeps being served",
                None => "the default certificate is served",
            };
            if let Some(cert) = fallback {
                certs.insert(&tls_host.host, cert);
            }
            reports.push(Report {
                ingress: tls_host.ingress.clone(),
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
        }
    }

    fn certificate(&mut self, world: &World, key: &ObjectKey) -> Result<Arc<CertifiedKey>, String> {
        let secret = world.secrets.get(key).ok_or("not found")?;
        let data = build::secret_data(secret);
        let (Some(crt), Some(tls_key)) = (data.get(TLS_CRT), data.get(TLS_KEY)) else {
            return Err(format!("needs both {TLS_CRT} and {TLS_KEY}"));
        };
        if let Some((c, k, cert)) = self.last_good.get(key)
            && c == crt
            && k == tls_key
        {
            return Ok(cert.clone());
        }
        let loaded = tls::keypair::load(crt, tls_key).map_err(|e| e.to_string())?;
        self.last_good.insert(
            key.clone(),
            (crt.clone(), tls_key.clone(), loaded.certified.clone()),
        );
        Ok(loaded.certified)
    }
}
