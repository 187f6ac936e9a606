//! `porin review unused [--since 30d] [-o table|json]`: enforced policies and rules with no hit in the window
//! (Calico's `review unused-policies`), from the per-rule counters every agent keeps across restarts. In a
//! multi-node lab every node's agent is asked: a rule is unused when no node saw it hit.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::json;

use crate::client::{Client, ClientArgs, block_on, enc};
use porin_client::review::merge;

#[derive(Args, Debug)]
pub struct ReviewArgs {
    #[command(subcommand)]
    pub command: ReviewCommand,
}

#[derive(Subcommand, Debug)]
pub enum ReviewCommand {
    /// Policies and rules that decided no connection in the window (per-rule counters kept across restarts).
    Unused(UnusedArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ReviewOutput {
    #[default]
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct UnusedArgs {
    /// The window: a duration (`30d`, `12h`) or an RFC 3339 time.
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// Ask only `--server`, not every node of a multi-node lab.
    #[arg(long)]
    pub one_node: bool,
    /// Output format: a table, or JSON.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: ReviewOutput,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn review(a: ReviewArgs) -> Result<ExitCode> {
    match a.command {
        ReviewCommand::Unused(u) => unused(u),
    }
}

fn unused(a: UnusedArgs) -> Result<ExitCode> {
    let client = a.client.resolved()?;
    let server = client.server.clone().unwrap_or_default();
    let servers = if a.one_node { None } else { porin_client::observe::lab_servers(&server) }.unwrap_or_else(|| vec![server.clone()]);
    let path = format!("/porin/v1/review/unused?since={}", enc(&a.since));
    let answers = block_on(async {
        let mut out = Vec::new();
        for s in &servers {
            let c = Client::new(&ClientArgs { server: Some(s.clone()), ..client.clone() });
            out.push(c.call(Method::GET, &path, None).await?);
        }
        anyhow::Ok(out)
    })??;
    let mut v = merge(answers);
    v.as_object_mut().map(|o| o.remove("node"));
    // Only what is unused: whole policies, and the unused rules of used ones.
    let mut unused = Vec::new();
    for p in v["policies"].as_array().into_iter().flatten() {
        if p["unused"] == json!(true) {
            unused.push(json!({"tier": p["tier"], "policy": p["traceName"], "kind": p["kind"], "rule": null, "lastHit": null}));
            continue;
        }
        for r in p["rules"].as_array().into_iter().flatten().filter(|r| r["unused"] == json!(true)) {
            unused.push(json!({
                "tier": p["tier"], "policy": p["traceName"], "kind": p["kind"],
                "rule": format!("{} {} ({})", r["direction"].as_str().unwrap_or(""), r["index"], r["action"].as_str().unwrap_or("")),
                "policyLastHit": p["lastHit"],
            }));
        }
    }
    if a.output == ReviewOutput::Json {
        println!("{}", serde_json::to_string_pretty(&json!({
            "since": v["since"], "countersSince": v["countersSince"], "complete": v["complete"], "unused": unused, "policies": v["policies"],
        }))?);
        return Ok(ExitCode::SUCCESS);
    }
    if v["complete"] != json!(true) {
        eprintln!(
            "note: the rule counters reach back to {} only, not to {}: \"unused\" means unused since then",
            v["countersSince"].as_str().unwrap_or("?"),
            v["since"].as_str().unwrap_or("?")
        );
    }
    if unused.is_empty() {
        println!("every policy and rule was hit since {}", v["since"].as_str().unwrap_or("?"));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 4]> = unused
        .iter()
        .map(|u| {
            [
                u["tier"].as_str().unwrap_or("").to_string(),
                u["policy"].as_str().unwrap_or("").to_string(),
                u["rule"].as_str().map_or_else(|| "(whole policy: no hit)".to_string(), String::from),
                u["policyLastHit"].as_str().map_or_else(|| "-".to_string(), String::from),
            ]
        })
        .collect();
    let head = ["TIER", "POLICY", "UNUSED RULE", "POLICY LAST HIT"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    for r in std::iter::once(head.map(String::from)).chain(rows) {
        println!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3], w0 = w[0], w1 = w[1], w2 = w[2]);
    }
    Ok(ExitCode::SUCCESS)
}
