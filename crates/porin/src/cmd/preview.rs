//! `porin preview [-f FILE]... [--delete KIND/NAME]... [--since 24h] [-o table|json]`: replay the flows the
//! agent recorded through the policy engine with and without a change, and print the connections whose
//! verdict flips. Without `-f` and `--delete`, the change is the staged policies already applied. Exit 3 when
//! observed traffic would be denied (a pipeline blocks the merge), 0 otherwise, 2 on input errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::offline::Output;
use crate::client::{Client, ClientArgs};

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

pub fn preview(a: PreviewArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    let json = a.output == Output::Json;
    let Some(p) = porin_client::preview::preview(&c, &a.files, &a.delete, &a.since, json, &mut std::io::stderr())? else {
        return Ok(ExitCode::from(2));
    };
    print!("{}", p.text);
    Ok(if p.breaks > 0 { ExitCode::from(BREAKS) } else { ExitCode::SUCCESS })
}
