//! `porin preview [-f FILE]... [--delete KIND/NAME]... [--since 24h] [-o table|json]`: replay the flows the
//! agent recorded through the policy engine with and without a change, and print the connections whose
//! verdict flips. Without `-f` and `--delete`, the change is the staged policies already applied. Exit 3 when
//! observed traffic would be denied (a pipeline blocks the merge), 0 otherwise, 2 on input errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use porin_model::{Document, Kind, load_paths_partial, validate_set};
use porin_policy::preview::{Side, preview as replay};
use porin_policy::{Cluster, Variant};
use serde_json::json;

use super::offline::Output;
use crate::client::{Client, ClientArgs, block_on, enc};
use porin_client::preview::table;

/// Exit code when observed traffic would be denied.
pub const BREAKS: u8 = 3;

#[derive(Args, Debug)]
pub struct PreviewArgs {
    /// Manifests of the proposed change (files or directories; as `porin apply -f` would write them).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// An object the change deletes: KIND/NAME or KIND/NAMESPACE/NAME (repeatable).
    #[arg(long = "delete")]
    pub delete: Vec<String>,
    /// How far back to replay the flow store: a duration (`90m`, `24h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Output format: a table for people, JSON for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn deleted(spec: &str) -> Result<(Kind, Option<String>, String)> {
    let parts: Vec<&str> = spec.split('/').collect();
    let (kind, ns, name) = match parts.as_slice() {
        [k, n] => (*k, None, *n),
        [k, ns, n] => (*k, Some(ns.to_string()), *n),
        _ => bail!("--delete {spec:?}: expected KIND/NAME or KIND/NAMESPACE/NAME"),
    };
    let kind = Kind::from_cli(kind).ok_or_else(|| anyhow!("--delete {spec:?}: unknown kind {kind:?}"))?;
    let ns = if kind.info().namespaced { Some(ns.unwrap_or_else(|| "default".into())) } else { None };
    Ok((kind, ns, name.to_string()))
}

pub fn preview(a: PreviewArgs) -> Result<ExitCode> {
    let (changes, errors) = if a.files.is_empty() { (vec![], vec![]) } else { load_paths_partial(&a.files) };
    let mut errors = errors;
    if let Err(e) = validate_set(&changes, &Default::default()) {
        errors.extend(e);
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!("{} error(s); nothing was previewed", errors.len());
        return Ok(ExitCode::from(2));
    }
    let dels = a.delete.iter().map(|d| deleted(d)).collect::<Result<Vec<_>>>()?;
    let c = Client::new(&a.client);
    let live = super::live::fetch_live(&c)?;
    for (k, ns, n) in &dels {
        if !live.iter().any(|d| d.resource.kind() == *k && d.resource.namespace().map(str::to_string) == *ns && d.resource.name() == n) {
            bail!("--delete {k}/{}{n}: not found on the server", ns.as_ref().map(|s| format!("{s}/")).unwrap_or_default());
        }
    }
    let staged_only = changes.is_empty() && dels.is_empty();
    let after_docs: Vec<Document> = super::live::overlay(live.clone(), changes)
        .into_iter()
        .filter(|d| !dels.iter().any(|(k, ns, n)| d.resource.kind() == *k && d.resource.namespace().map(str::to_string) == *ns && d.resource.name() == n))
        .collect();
    let before = Cluster::build(live.iter().map(|d| &d.resource)).context("building the current policy model")?;
    let after = Cluster::build(after_docs.iter().map(|d| &d.resource)).context("building the model with the change")?;

    let path = format!("/porin/v1/flows?arg=--since&arg={}", enc(&a.since));
    let body = block_on(async {
        let resp = c.send(Method::GET, &path, None).await?;
        let status = resp.status();
        let b = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
            bail!("Error from server ({}): {}", v["reason"].as_str().unwrap_or(status.as_str()), v["message"].as_str().unwrap_or("?"));
        }
        Ok::<_, anyhow::Error>(b)
    })??;
    let mut records = 0usize;
    let observed: Vec<_> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<porin_flow::FlowRecord>(l).ok())
        .inspect(|_| records += 1)
        .filter_map(|r| porin_agent::api::recommend::observation(&r))
        .collect();
    let (b, af) = if staged_only {
        (Side { cluster: &before, variant: Variant::Enforced }, Side { cluster: &before, variant: Variant::Pending })
    } else {
        (Side { cluster: &before, variant: Variant::Enforced }, Side { cluster: &after, variant: Variant::Enforced })
    };
    let flips = replay(b, af, &observed);
    let breaks = flips.iter().filter(|f| f.breaks()).count();
    match a.output {
        Output::Table => print!("{}", table(&flips, records, staged_only)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "records": records,
                "change": if staged_only { "staged policies" } else { "manifests" },
                "allowedToDenied": breaks,
                "deniedToAllowed": flips.len() - breaks,
                "flipped": flips,
            }))?
        ),
    }
    Ok(if breaks > 0 { ExitCode::from(BREAKS) } else { ExitCode::SUCCESS })
}

