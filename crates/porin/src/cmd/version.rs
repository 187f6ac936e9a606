//! `porin version [--client]` and `porin completion bash|zsh|fish|elvish|powershell`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use hyper::Method;

use crate::client::{Client, ClientArgs, block_on};

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Print the client version only; do not contact the API.
    #[arg(long)]
    pub client: bool,
    #[command(flatten)]
    pub api: ClientArgs,
}

/// `Client Version: v0.1.0`, then what `porin status` of the server says about itself. An unreachable server is
/// an error (exit 1) after the client line, as with kubectl.
pub fn version(a: VersionArgs) -> Result<ExitCode> {
    println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    if a.client {
        return Ok(ExitCode::SUCCESS);
    }
    let c = Client::new(&a.api);
    let v = block_on(c.call(Method::GET, "/porin/v1/status", None))??;
    println!("{}", server_line(&v));
    Ok(ExitCode::SUCCESS)
}

/// The server line from a status answer; agents that do not report a version say so rather than guess one.
pub fn server_line(status: &serde_json::Value) -> String {
    let node = status["node"].as_str().unwrap_or("?");
    match status["version"].as_str() {
        Some(v) => format!("Server Version: v{} (node {node})", v.trim_start_matches('v')),
        None => format!("Server Version: unknown (the agent on node {node} does not report its version)"),
    }
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to print a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The completion script on stdout: `source <(porin completion bash)`, `porin completion fish | source`, or for
/// zsh `porin completion zsh > "${fpath[1]}/_porin"`.
pub fn completion(a: CompletionArgs, cli: &mut clap::Command) -> Result<ExitCode> {
    clap_complete::generate(a.shell, cli, "porin", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
