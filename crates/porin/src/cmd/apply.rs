//! `porin apply -f PATH...`: create or update; every document of one call commits atomically, or none does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use hyper::Method;
use porin_client::apply::{list_body, load_valid, outcomes};

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

pub fn apply(a: ApplyArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    block_on(async {
        let Some(docs) = load_valid(&c, &a.files, &mut std::io::stderr()).await? else { return Ok(ExitCode::from(1)) };
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
        print!("{}", outcomes(&result, suffix));
        Ok(ExitCode::SUCCESS)
    })?
}
