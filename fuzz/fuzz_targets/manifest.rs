//! A manifest file of standalone mode, from YAML text to what the data plane would serve.
//!
//! Input: any bytes; UTF-8 text is one `*.yaml` file of the manifest directory. It is loaded with
//! `sources::manifests::load_text` (what a reload does per file), and the resulting `World` goes through the
//! configuration builder: routes (annotations, auth Secrets with their htpasswd data, backends) and
//! certificates (TLS Secrets), then one request per served host is resolved.
//!
//! Properties: no panic; every problem names the file and quotes none of its lines (a Secret's data).

#![no_main]

use std::sync::OnceLock;

use certgate::config::ConfigBuilder;
use certgate::routing::build::BuildOptions;
use certgate::sources::manifests::{Loaded, load_text};
use certgate::tls::keypair::{self, LoadedCert};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut loaded = Loaded::default();
    let _usable = load_text(FILE, text, &mut loaded);
    for problem in &loaded.problems {
        assert!(
            problem.starts_with(FILE),
            "problem without its file: {problem}"
        );
        // SECURITY: the YAML parser's snippet quotes the file's lines (a Secret's data) into the log.
        assert!(
            !problem.contains("--> <input>"),
            "problem quotes the input: {problem}"
        );
    }

    let mut builder = ConfigBuilder::new(options(), default_cert().certified.clone(), None);
    let snapshot = builder.build(&loaded.world);
    for ingress in loaded.world.ingresses.values() {
        let rules = ingress
            .spec
            .iter()
            .flat_map(|spec| spec.rules.iter().flatten());
        for rule in rules.take(4) {
            let host = rule.host.as_deref().unwrap_or_default();
            let _ = snapshot.routes.resolve(host, "/");
            let _ = snapshot.certs.lookup(Some(host));
        }
    }
});

fn options() -> BuildOptions {
    BuildOptions {
        controller: "certgate.io/ingress-controller".into(),
        ingress_class: "certgate".into(),
        watch_without_class: true,
        allow_loopback: true,
    }
}

/// Generated once per process: the certificate served when no Secret matches.
fn default_cert() -> &'static LoadedCert {
    static CERT: OnceLock<LoadedCert> = OnceLock::new();
    CERT.get_or_init(|| match keypair::generate_default() {
        Ok(cert) => cert,
        Err(error) => panic!("generating the default certificate: {error}"),
    })
}
