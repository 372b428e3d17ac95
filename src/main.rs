//! Entry point: parse the command line, set up logging, run the chosen command.

use std::process::ExitCode;

use clap::Parser;

use certgate::cli::{Cli, Command, StatusCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let feature = match &cli.command {
        Command::Controller(args) => {
            certgate::telemetry::init(args.common.log_format);
            "certgate controller (Kubernetes mode)"
        }
        Command::Run(args) => {
            certgate::telemetry::init(args.common.log_format);
            "certgate run (standalone mode)"
        }
        Command::Crds => "certgate crds",
        Command::Status(StatusCommand::Certificate { .. }) => "certgate status certificate",
    };
    // Never a silent success for a command that does nothing yet.
    eprintln!("error: {feature}: not implemented yet");
    ExitCode::from(2)
}
