//! `porin token create NAME --role admin|read-only|scoped|cni [--namespace N]... [--tier T]... [--ttl 24h] [--rotate]`,
//! `porin token list [-o json]`, `porin token revoke NAME` (admin only).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use porin_client::tokens::{self, NewToken};

use crate::client::{Client, ClientArgs, block_on};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Everything.
    Admin,
    /// Read every object; write nothing.
    ReadOnly,
    /// Write only in the namespaces and tiers given with --namespace and --tier.
    Scoped,
    /// The CNI path: writes WorkloadEndpoints and Pod status only.
    Cni,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (it is stored only hashed and cannot be shown again).
    Create(TokenCreateArgs),
    /// List tokens: name, id, role, scope, created, expires (never the token itself).
    List(TokenListArgs),
    /// Revoke every token of a name; the next request with it is refused.
    Revoke(TokenRevokeArgs),
}

#[derive(Args, Debug)]
pub struct TokenListArgs {
    /// `table` or `json`.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct TokenRevokeArgs {
    /// The token's name (every token of that name is revoked).
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    /// The token's name: unique (see --rotate); the audit trail names it with the token's id.
    pub name: String,
    /// What the token may do: admin (everything), read-only, scoped (--namespace/--tier), cni (endpoints).
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Namespaces a scoped token may write in. Repeatable.
    #[arg(long = "namespace", short = 'n')]
    pub namespaces: Vec<String>,
    /// Tiers a scoped token may write policies in. Repeatable.
    #[arg(long = "tier")]
    pub tiers: Vec<String>,
    /// Lifetime (e.g. 30m, 24h, 7d); refused once expired. Default: no expiry.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Replace an existing token of this name (it is revoked in the same transaction).
    #[arg(long)]
    pub rotate: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn token(a: TokenArgs) -> Result<ExitCode> {
    match a.command {
        TokenCommand::Create(a) => create(a),
        TokenCommand::List(a) => list(a),
        TokenCommand::Revoke(a) => {
            let c = Client::new(&a.client);
            let v = block_on(c.call(Method::DELETE, &format!("/porin/v1/tokens/{}", a.name), None))??;
            let ids: Vec<&str> = v["revoked"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
            println!("token {:?} revoked (id {})", a.name, ids.join(", "));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn create(a: TokenCreateArgs) -> Result<ExitCode> {
    let role = match a.role {
        RoleArg::Admin => "admin",
        RoleArg::ReadOnly => "read-only",
        RoleArg::Scoped => "scoped",
        RoleArg::Cni => "cni",
    };
    let t = NewToken { name: a.name, role: role.into(), namespaces: a.namespaces, tiers: a.tiers, ttl: a.ttl, rotate: a.rotate };
    let body = tokens::create_body(&t)?;
    let c = Client::new(&a.client);
    let v = block_on(c.call(Method::POST, "/porin/v1/tokens", Some(body)))??;
    println!("{}", v["token"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}

fn list(a: TokenListArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    let v = block_on(c.call(Method::GET, "/porin/v1/tokens", None))??;
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", tokens::table(&v));
    }
    Ok(ExitCode::SUCCESS)
}
