//! Entry point: parse the command line, set up logging and the runtime, run the chosen command.

use std::process::ExitCode;

use clap::Parser;
use tokio::sync::watch;

use certgate::cli::{Cli, Command, StatusCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            certgate::telemetry::init(args.common.log_format);
            let runtime = match runtime(args.common.worker_threads) {
                Ok(rt) => rt,
                Err(error) => return fail(&format!("starting the runtime: {error}")),
            };
            runtime.block_on(async {
                let shutdown = shutdown_signal();
                match certgate::standalone::run(args, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(error) => fail(&error.to_string()),
                }
            })
        }
        Command::Controller(args) => {
            certgate::telemetry::init(args.common.log_format);
            not_implemented("certgate controller (Kubernetes mode)")
        }
        Command::Crds => not_implemented("certgate crds"),
        Command::Status(StatusCommand::Certificate { .. }) => {
            not_implemented("certgate status certificate")
        }
    }
}

fn runtime(worker_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n.max(1));
    }
    builder.enable_all().build()
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

/// Never a silent success for a command that does nothing yet.
fn not_implemented(feature: &str) -> ExitCode {
    eprintln!("error: {feature}: not implemented yet");
    ExitCode::from(2)
}
