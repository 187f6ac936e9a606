//! `porin`: the one binary. Each subcommand lives in its own module under `cmd/`; this file only parses
//! arguments and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod printers;

/// Porin: zero-trust network security for Kubernetes-style workloads.
#[derive(Parser, Debug)]
#[command(name = "porin", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check manifests: every error, with file, document and field path.
    Validate(cmd::offline::ValidateArgs),
    /// Explain the verdict for one connection: which tier, policy and rule decided.
    Trace(cmd::offline::TraceArgs),
    /// The reachability matrix over all pods, per port and protocol.
    Matrix(cmd::offline::MatrixArgs),
    /// Which (from, to, port) pairs a policy change opens and closes.
    Diff(cmd::offline::DiffArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => cmd::offline::validate(a),
        Command::Trace(a) => cmd::offline::trace(a),
        Command::Matrix(a) => cmd::offline::matrix(a),
        Command::Diff(a) => cmd::offline::diff(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
