//! `porin audit [--since DURATION|RFC3339] [--kind K] [-o table|json]`.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;
use hyper::Method;
use porin_model::Kind;

use super::offline::Output;
use crate::client::{Client, ClientArgs, block_on, enc};
use crate::printers;

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only records newer than this: a duration back from now (`90s`, `15m`, `2h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only changes to this kind: a resource kind (`gnp`, `pods`, ...) or `Token`.
    #[arg(long)]
    pub kind: Option<String>,
    /// Output format: a table for people, JSON for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `Token`, `token`, `tokens`: the audit trail's name for token changes.
pub fn is_token_kind(k: &str) -> bool {
    matches!(k.to_ascii_lowercase().as_str(), "token" | "tokens")
}

pub fn audit(a: AuditArgs) -> Result<ExitCode> {
    let mut q = Vec::new();
    if let Some(s) = &a.since {
        let t = porin_agent::timefmt::parse_since(s).ok_or_else(|| anyhow!("--since {s:?}: expected a duration like 15m or an RFC 3339 time"))?;
        q.push(format!("since={t}"));
    }
    if let Some(k) = &a.kind {
        // Tokens are audited too (the table prints their kind as Token) but are not a resource kind.
        if is_token_kind(k) {
            q.push("kind=Token".to_string());
        } else {
            let kind = Kind::from_cli(k).ok_or_else(|| anyhow!("unknown kind {k:?} (a resource kind, or Token)"))?;
            q.push(format!("kind={}", enc(format!("{}.{}", kind.info().plural, kind.info().group).trim_end_matches('.'))));
        }
    }
    let c = Client::new(&a.client);
    let v = block_on(c.call(Method::GET, &format!("/porin/v1/audit?{}", q.join("&")), None))??;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v["items"])?),
        Output::Table => print!("{}", printers::audit_table(v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]))),
    }
    Ok(ExitCode::SUCCESS)
}
