//! `porin status [-o table|json]`: store kind and revision, counts, policy revision, last recompute, health.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use hyper::Method;

use super::offline::Output;
use crate::client::{Client, ClientArgs, block_on};
use porin_client::status::{dataplane_table, flows_table};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Output format: `key value` lines for people, the raw JSON status for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn status(a: StatusArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    let v = block_on(c.call(Method::GET, "/porin/v1/status", None))??;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Output::Table => {
            print!("{}", crate::printers::status_table(&v));
            print!("{}", dataplane_table(&v["dataplane"]));
            print!("{}", flows_table(&v["flows"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}
