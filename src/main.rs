//! Entry point: parse the command line, set up logging and the runtime, run the chosen command.

use std::process::ExitCode;

use clap::Parser;
use tokio::sync::watch;

use certgate::cli::{Cli, Command, StatusCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    certgate::tls::install_process_provider();
    // One registry per process, handed to each part that records.
    let metrics = certgate::metrics::Metrics::new();
    match cli.command {
        Command::Run(args) => {
            let _log = certgate::telemetry::init(args.common.log_format);
            block_on(args.common.worker_threads, async move {
                certgate::app::standalone::run(args, metrics, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Command::Controller(args) => {
            let _log = certgate::telemetry::init(args.common.log_format);
            block_on(args.common.worker_threads, async move {
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| format!("no Kubernetes API (KUBECONFIG or in-cluster): {e}"))?;
                certgate::app::controller::run(args, client, metrics, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        Command::Crds => match certgate::crd::render() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error.to_string()),
        },
        Command::Status(StatusCommand::Certificate { name, namespace }) => {
            block_on(Some(1), async move {
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| format!("no Kubernetes API (KUBECONFIG or in-cluster): {e}"))?;
                let report = certgate::app::status::certificate(client, &namespace, &name)
                    .await
                    .map_err(|e| e.to_string())?;
                print!("{report}");
                Ok(())
            })
        }
    }
}

/// Run a serving mode: on one thread with `--worker-threads 1` (no work stealing, no cross-thread wakeups
/// between a client's connection task and its upstream's), else on a multi-thread runtime (default: one
/// worker per core).
fn block_on(
    worker_threads: Option<usize>,
    main: impl Future<Output = Result<(), String>>,
) -> ExitCode {
    let mut builder = match worker_threads {
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(error) => return fail(&format!("starting the runtime: {error}")),
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// Flips to `true` on SIGINT or SIGTERM; every accept loop selects on it, then connections drain.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = terminate => {},
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
