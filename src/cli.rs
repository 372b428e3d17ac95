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
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    pub worker_threads: Option<usize>,
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
    fn status_certificate_takes_namespace() {
        let cli = Cli::try_parse_from(["certgate", "status", "certificate", "web", "-n", "prod"])
            .unwrap();
        let Command::Status(StatusCommand::Certificate { name, namespace }) = cli.command else {
            panic!("expected status certificate, got {:?}", cli.command)
        };
        assert_eq!((name.as_str(), namespace.as_str()), ("web", "prod"));
    }
}
