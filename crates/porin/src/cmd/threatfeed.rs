//! `porin threatfeed push NAME -f FILE`: replace a GlobalThreatFeed's network set (`threatfeed.<name>`) with the
//! addresses in FILE (newline-delimited, `#` comments; `-` reads standard input). Admin only; audited as the
//! caller. The feed's sync status is in `porin get globalthreatfeed NAME -o yaml`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hyper::Method;

use crate::client::{Client, ClientArgs, block_on, enc};

#[derive(Args, Debug)]
pub struct ThreatFeedArgs {
    #[command(subcommand)]
    pub command: ThreatFeedCommand,
}

#[derive(Subcommand, Debug)]
pub enum ThreatFeedCommand {
    /// Replace the feed's set with the addresses in a file (one address or CIDR a line, `#` comments).
    Push(PushArgs),
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The GlobalThreatFeed's name.
    pub name: String,
    /// The addresses: a file, or `-` for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn threatfeed(a: ThreatFeedArgs) -> Result<ExitCode> {
    match a.command {
        ThreatFeedCommand::Push(p) => push(p),
    }
}

fn push(a: PushArgs) -> Result<ExitCode> {
    let text = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?
    };
    let c = Client::new(&a.client);
    let v = block_on(c.call(Method::POST, &format!("/porin/v1/threatfeeds/{}/push", enc(&a.name)), Some(text.into_bytes())))??;
    let st = &v["status"];
    let rejected = st["rejectedEntries"].as_u64().unwrap_or(0);
    println!(
        "globalthreatfeed.porin.io/{} pushed: globalnetworkset.porin.io/{} holds {} entries{}",
        a.name,
        v["set"].as_str().unwrap_or(""),
        st["entries"],
        if rejected > 0 { format!(" ({rejected} lines were not addresses and were skipped)") } else { String::new() }
    );
    Ok(ExitCode::SUCCESS)
}
