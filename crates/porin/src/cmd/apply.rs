//! `porin apply -f PATH...`: create or update; every document of one call commits atomically, or none does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use hyper::Method;
use porin_model::{Kind, load_paths, validate_set};

use crate::client::{Client, ClientArgs, block_on, type_name};

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest files or directories (`-` for stdin). Repeatable.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// client: validate locally (against the server's tiers) and print what would be sent; server: the server
    /// runs every check of a real apply (permissions, conflicts, scope, guards) and writes nothing.
    #[arg(long, value_name = "WHEN", value_parser = ["none", "client", "server"], default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Load and validate locally (same messages as `porin validate`, with file and document), against the tiers
/// the server has. Prints errors and returns None on failure.
pub async fn load_valid(c: &Client, files: &[PathBuf]) -> Result<Option<Vec<porin_model::Document>>> {
    let docs = match load_paths(files) {
        Ok(d) => d,
        Err(errors) => {
            errors.iter().for_each(|e| eprintln!("{e}"));
            return Ok(None);
        }
    };
    let tiers = c.call(Method::GET, &crate::client::collection_path(Kind::Tier, None), None).await?;
    let known = tiers["items"].as_array().into_iter().flatten().filter_map(|t| t["metadata"]["name"].as_str().map(String::from)).collect();
    if let Err(errors) = validate_set(&docs, &known) {
        errors.iter().for_each(|e| eprintln!("{e}"));
        return Ok(None);
    }
    Ok(Some(docs))
}

pub fn list_body(docs: &[porin_model::Document]) -> Vec<u8> {
    let items: Vec<_> = docs.iter().map(|d| d.resource.to_json()).collect();
    serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})).expect("json")
}

pub fn print_outcomes(result: &serde_json::Value) {
    print_outcomes_as(result, "");
}

/// Outcome lines with a kubectl-style suffix (` (dry run)`, ` (server dry run)`).
pub fn print_outcomes_as(result: &serde_json::Value, suffix: &str) {
    for it in result["items"].as_array().into_iter().flatten() {
        let kind = Kind::from_manifest(it["apiVersion"].as_str().unwrap_or(""), it["kind"].as_str().unwrap_or(""));
        let t = kind.map(type_name).unwrap_or_default();
        println!("{t}/{} {}{suffix}", it["name"].as_str().unwrap_or(""), it["action"].as_str().unwrap_or(""));
    }
}

pub fn apply(a: ApplyArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    block_on(async {
        let Some(docs) = load_valid(&c, &a.files).await? else { return Ok(ExitCode::from(1)) };
        if docs.is_empty() {
            eprintln!("error: no objects passed to apply");
            return Ok(ExitCode::from(1));
        }
        if a.dry_run == "client" {
            // As kubectl: what would be sent, checked locally, without asking the server what it would do.
            for d in &docs {
                let t = type_name(d.resource.kind());
                println!("{t}/{} configured (dry run)", d.resource.name());
            }
            return Ok(ExitCode::SUCCESS);
        }
        let (path, suffix) = match a.dry_run.as_str() {
            "server" => ("/porin/v1/apply?dryRun=All", " (server dry run)"),
            _ => ("/porin/v1/apply", ""),
        };
        let result = c.call(Method::POST, path, Some(list_body(&docs))).await?;
        print_outcomes_as(&result, suffix);
        Ok(ExitCode::SUCCESS)
    })?
}
