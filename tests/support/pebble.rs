//! A Pebble of the test's own (fault injection, EAB, a validation port of its choosing), sharing the dev
//! cluster's DNS (challtestsrv) and Pebble's TLS certificate, so `CERTGATE_ACME_CA` verifies it.

use std::path::Path;

use reqwest::StatusCode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use super::http::client;

pub struct Pebble {
    child: std::process::Child,
    pub directory: String,
    /// Management port: `/roots/0` is the root its certificates chain to.
    pub management: String,
    dir: tempfile::TempDir,
}

impl Pebble {
    /// Start Pebble validating HTTP-01 on 127.0.0.1:`http_port`, with extra environment (e.g.
    /// `PEBBLE_WFE_NONCEREJECT`) and extra keys merged into its `pebble` config object (e.g.
    /// `externalAccountBindingRequired`, `externalAccountMACKeys`); returns once its directory answers.
    pub async fn start(
        acme_ca: &str,
        http_port: u16,
        env: &[(&str, &str)],
        extra_config: serde_json::Value,
    ) -> Pebble {
        Self::start_at(acme_ca, http_port, super::free_port(), env, extra_config).await
    }

    /// Like [`Pebble::start`], with its directory at `https://127.0.0.1:<listen>/dir`.
    pub async fn start_at(
        acme_ca: &str,
        http_port: u16,
        listen: u16,
        env: &[(&str, &str)],
        extra_config: serde_json::Value,
    ) -> Pebble {
        let pki = Path::new(acme_ca).parent().expect("pki dir");
        let mgmt = super::free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("pebble.json");
        let mut config = json!({
            "listenAddress": format!("127.0.0.1:{listen}"), "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": pki.join("pebble.crt"), "privateKey": pki.join("pebble.key"),
            "httpPort": http_port, "tlsPort": super::free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        });
        if let (Some(c), Some(extra)) = (config.as_object_mut(), extra_config.as_object()) {
            c.extend(extra.clone());
        }
        std::fs::write(&config_path, json!({ "pebble": config }).to_string())
            .expect("pebble config");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("pebble log");
        let mut cmd = std::process::Command::new(super::tool("pebble").expect("pebble installed"));
        cmd.arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", "127.0.0.1:8053"])
            .env("PEBBLE_VA_NOSLEEP", "1");
        cmd.envs(env.iter().copied())
            .stdout(log.try_clone().expect("pebble log"))
            .stderr(log);
        let pebble = Pebble {
            child: cmd.spawn().expect("pebble starts"),
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: format!("https://127.0.0.1:{mgmt}"),
            dir,
        };
        // Ready when its directory answers (bounded).
        let ca = CertificateDer::pem_file_iter(acme_ca)
            .expect("CA file")
            .next()
            .expect("one CA")
            .expect("CA PEM");
        let c = client(Some(&ca));
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
        for _ in 0..200 {
            tick.tick().await;
            if c.get(&pebble.directory)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
            {
                return pebble;
            }
        }
        panic!("own Pebble did not start: {}", pebble.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// How many ACME accounts Pebble holds, from its log ("There are now N accounts in memory").
    pub fn accounts(&self) -> usize {
        self.count("accounts")
    }

    /// How many orders Pebble holds, from its log ("There are now N orders in the db").
    pub fn orders(&self) -> usize {
        self.count("orders")
    }

    fn count(&self, what: &str) -> usize {
        let log = self.log();
        let counts = log.lines().filter_map(|l| {
            let mut words = l.split("There are now ").nth(1)?.split_whitespace();
            let n = words.next()?.parse().ok()?;
            (words.next()? == what).then_some(n)
        });
        counts.max().unwrap_or(0)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
