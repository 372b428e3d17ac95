//! The command-line contract (shared/DESIGN.md): subcommands and the flags they share.
//!
//! Only parsing lives here; what each command does is wired in `main.rs`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "certgate",
    version,
    about = "Kubernetes ingress proxy and cert-manager compatible ACME certificate manager in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Kubernetes mode: watch the cluster (KUBECONFIG or in-cluster), serve traffic, issue certificates.
    Controller(ControllerArgs),
    /// Standalone mode: the same engine, with resources read from YAML manifests in a directory.
    Run(RunArgs),
    /// Print the CustomResourceDefinition manifests (the source of crds/*.yaml).
    Crds,
    /// Show the state of a resource, as `cmctl status` does.
    #[command(subcommand)]
    Status(StatusCommand),
}

#[derive(Debug, Subcommand)]
pub enum StatusCommand {
    /// Conditions, dates, issuer, current Order/Challenges and last failure of a Certificate.
    Certificate {
        /// Name of the Certificate.
        name: String,
        /// Namespace of the Certificate.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publish this Service's load-balancer addresses in the status of served Ingresses (NAMESPACE/NAME).
    #[arg(
        long,
        value_name = "NS/NAME",
        conflicts_with = "publish_status_address"
    )]
    pub publish_service: Option<String>,
    /// Publish these addresses (comma-separated IPs or host names) in the status of served Ingresses.
    #[arg(long, value_delimiter = ',')]
    pub publish_status_address: Vec<String>,
    /// Namespace of the Lease that elects the one replica running the issuing controllers.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// How long a leader's Lease lasts without renewal before another replica takes over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_lease_duration: std::time::Duration,
    /// cert-manager's leader-election Lease (NAMESPACE/NAME): while it is held, certgate issues nothing (the
    /// proxy keeps serving), so the two never write the same objects. Empty: no check.
    #[arg(long, value_name = "NS/NAME", default_value = crate::app::cert_manager::DEFAULT_LEASE)]
    pub cert_manager_lease: String,
    /// How often the leader reads that Lease again (also at its expiry, if sooner).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub cert_manager_check_interval: std::time::Duration,
    /// Allow endpoints and ExternalName Services that point at loopback (refused by default, as
    /// ingress-nginx refuses them: they would reach the proxy's own host).
    #[arg(long)]
    pub allow_loopback_backends: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Directory of YAML manifests (multi-document, *.yaml / *.yml), reloaded on change.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Where issued Secrets (and ACME account keys) are written as YAML, mode 0600; read back at start.
    #[arg(long, value_name = "DIR", default_value = ".certgate-state")]
    pub state_dir: PathBuf,
}

/// Flags both serving modes share. Every port may be 0 (ephemeral; the bound address is logged).
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Port of the plain HTTP listener (also answers ACME HTTP-01 challenges).
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Port of the TLS listener.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Port serving /metrics, /healthz and /readyz.
    #[arg(long, default_value_t = 10254)]
    pub admin_port: u16,
    /// Address every listener binds to.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Value of the legacy `kubernetes.io/ingress.class` annotation this instance serves.
    #[arg(long, default_value = "certgate")]
    pub ingress_class: String,
    /// `spec.controller` of the IngressClasses this instance serves.
    #[arg(long, default_value = "certgate.io/ingress-controller")]
    pub controller_class: String,
    /// Also serve Ingresses that name no class.
    #[arg(long)]
    pub watch_ingress_without_class: bool,
    /// Certificate served when no SNI name matches (NAMESPACE/NAME of a kubernetes.io/tls Secret).
    #[arg(long, value_name = "NS/NAME")]
    pub default_ssl_certificate: Option<String>,
    /// Send `Strict-Transport-Security` on HTTPS responses for hosts with a certificate ("off" disables).
    #[arg(long, default_value = crate::proxy::DEFAULT_HSTS)]
    pub hsts: String,
    /// Runtime worker threads (default: one per core). 1 runs everything on one thread (tokio's
    /// current-thread scheduler, like one nginx worker): no cross-thread wakeups, about 15 % more requests/s.
    #[arg(long)]
    pub worker_threads: Option<usize>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Namespace of the Secrets ClusterIssuers refer to (CA key pair, ACME account key), as cert-manager's
    /// --cluster-resource-namespace.
    #[arg(long, default_value = "cert-manager")]
    pub cluster_resource_namespace: String,
    /// Upper bound of the wait between failed issuance attempts (it starts at one minute and doubles).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub max_issuance_backoff: std::time::Duration,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// One log line per request on the `certgate::access` target: method, host, path without the query
    /// string, status, body bytes sent, duration, upstream, request id, Ingress. `--access-log=false`
    /// turns it off.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub access_log: bool,
}

/// Limits on client connections, named after the nginx directives (and ingress-nginx ConfigMap keys)
/// they reproduce, with their defaults.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// nginx's client_header_timeout: a request head must arrive within it (for the first request on a
    /// connection, counted from the accept); otherwise the connection is closed without an answer.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub client_header_timeout: std::time::Duration,
    /// nginx's client_body_timeout: the longest wait between two successive reads of a request body
    /// (408 and the connection closed when it runs out).
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub client_body_timeout: std::time::Duration,
    /// nginx's keepalive_timeout (ingress-nginx `keep-alive`): idle client connections are closed after
    /// it; 0 disables keep-alive.
    #[arg(long, default_value = "75s", value_parser = parse_duration)]
    pub keepalive_timeout: std::time::Duration,
    /// nginx's large_client_header_buffers, "NUMBER SIZE": the request line longer than SIZE is 414, a
    /// header line longer than SIZE or a head longer than NUMBER×SIZE is 431.
    #[arg(long, value_name = "NUMBER SIZE", default_value = "4 8k")]
    pub large_client_header_buffers: crate::proxy::screen::HeaderBuffers,
    /// ingress-nginx's max-worker-connections, for the whole process: client connections open at once
    /// (HTTP and HTTPS together); beyond it new connections are accepted and closed at once, as nginx does.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_worker_connections: u32,
}

impl ClientArgs {
    pub fn limits(&self) -> crate::proxy::client_io::ClientLimits {
        crate::proxy::client_io::ClientLimits {
            header_timeout: self.client_header_timeout,
            body_timeout: self.client_body_timeout,
            keepalive_timeout: self.keepalive_timeout,
            header_buffers: self.large_client_header_buffers,
            max_connections: usize::try_from(self.max_worker_connections).unwrap_or(usize::MAX),
        }
    }
}

fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::crd::duration::parse_go_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_requires_manifests_directory() {
        let err = Cli::try_parse_from(["certgate", "run"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn ports_may_be_ephemeral() {
        let cli = Cli::try_parse_from([
            "certgate",
            "run",
            "--manifests",
            "m",
            "--http-port",
            "0",
            "--https-port",
            "0",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("expected run, got {:?}", cli.command)
        };
        assert_eq!((run.common.http_port, run.common.https_port), (0, 0));
        assert_eq!(run.manifests, PathBuf::from("m"));
    }

    #[test]
    fn access_log_is_on_unless_switched_off() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["certgate", "run", "--manifests", "m"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Run(run) => run.common.access_log,
                other => panic!("expected run, got {other:?}"),
            }
        };
        assert!(parse(&[]));
        assert!(parse(&["--access-log"]));
        assert!(parse(&["--access-log=true"]));
        assert!(!parse(&["--access-log=false"]));
        assert!(
            Cli::try_parse_from(["certgate", "run", "--manifests", "m", "--access-log=maybe"])
                .is_err()
        );
    }

    #[test]
    fn status_certificate_takes_namespace() {
        let cli = Cli::try_parse_from(["certgate", "status", "certificate", "web", "-n", "prod"])
            .unwrap();
        let Command::Status(StatusCommand::Certificate { name, namespace }) = cli.command else {
            panic!("expected status certificate, got {:?}", cli.command)
        };
        assert_eq!((name.as_str(), namespace.as_str()), ("web", "prod"));
    }

    #[test]
    fn client_limits_default_to_nginx_values_and_parse_nginx_syntax() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["certgate", "run", "--manifests", "m"];
            args.extend_from_slice(extra);
            match Cli::try_parse_from(args).map(|c| c.command) {
                Ok(Command::Run(run)) => Ok(run.common.client.limits()),
                Ok(other) => panic!("expected run, got {other:?}"),
                Err(e) => Err(e.kind()),
            }
        };
        assert_eq!(
            parse(&[]),
            Ok(crate::proxy::client_io::ClientLimits::default())
        );
        let limits = parse(&[
            "--client-header-timeout",
            "1s",
            "--client-body-timeout",
            "1500ms",
            "--keepalive-timeout",
            "0",
            "--large-client-header-buffers",
            "2 1k",
            "--max-worker-connections",
            "3",
        ])
        .unwrap();
        assert_eq!(
            (
                limits.header_timeout,
                limits.body_timeout,
                limits.keepalive_timeout
            ),
            (
                std::time::Duration::from_secs(1),
                std::time::Duration::from_millis(1500),
                std::time::Duration::ZERO
            )
        );
        assert_eq!(
            (limits.header_buffers.total(), limits.max_connections),
            (2048, 3)
        );
        for bad in [
            &["--client-header-timeout", "0"][..],
            &["--client-body-timeout", "0s"],
            &["--large-client-header-buffers", "8k"],
            &["--max-worker-connections", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
