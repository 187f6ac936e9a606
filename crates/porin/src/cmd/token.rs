//! `porin token create NAME --role admin|read-only|scoped|cni [--namespace N]... [--tier T]...` (admin only).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;

use crate::client::{Client, ClientArgs, block_on};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    ReadOnly,
    Scoped,
    /// The CNI path: writes WorkloadEndpoints and Pod status only.
    Cni,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (it is stored only hashed and cannot be shown again).
    Create(TokenCreateArgs),
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    pub name: String,
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Namespaces a scoped token may write in. Repeatable.
    #[arg(long = "namespace", short = 'n')]
    pub namespaces: Vec<String>,
    /// Tiers a scoped token may write policies in. Repeatable.
    #[arg(long = "tier")]
    pub tiers: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn token(a: TokenArgs) -> Result<ExitCode> {
    let TokenCommand::Create(a) = a.command;
    let role = match a.role {
        RoleArg::Admin => "admin",
        RoleArg::ReadOnly => "read-only",
        RoleArg::Scoped => "scoped",
        RoleArg::Cni => "cni",
    };
    let body = serde_json::json!({"name": a.name, "role": role, "namespaces": a.namespaces, "tiers": a.tiers});
    let c = Client::new(&a.client);
    let v = block_on(c.call(Method::POST, "/porin/v1/tokens", Some(serde_json::to_vec(&body)?)))??;
    println!("{}", v["token"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}
