//! Commands that evaluate the policy model without touching a kernel: `validate`, and `trace`, `matrix`,
//! `diff` on manifest files, on the live agent's objects (`--live`, or no `-f`), or on the live objects with
//! files applied on top (`--live -f CHANGES`: what the cluster would do after `porin apply -f CHANGES`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use porin_client::offline::{self, TraceQuery, build, live_docs, load, model};

use crate::client::ClientArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Manifest files or directories (`-` for stdin). Repeatable.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Manifests: pods, namespaces, policies. Without -f, the live agent's objects.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Evaluate the live agent's objects (with -f: the files applied on top of them).
    #[arg(long)]
    pub live: bool,
    /// Source: NAMESPACE/POD or an IP address.
    #[arg(long)]
    pub from: String,
    /// Destination: NAMESPACE/POD or an IP address.
    #[arg(long)]
    pub to: String,
    /// Destination port (TCP, UDP, SCTP).
    #[arg(long)]
    pub port: Option<u16>,
    /// TCP, UDP, SCTP, ICMP, ICMPv6 or a protocol number.
    #[arg(long, default_value = "TCP")]
    pub protocol: String,
    /// ICMP type (with --protocol ICMP/ICMPv6).
    #[arg(long)]
    pub icmp_type: Option<u8>,
    /// ICMP code (with --icmp-type).
    #[arg(long, requires = "icmp_type")]
    pub icmp_code: Option<u8>,
    /// Output format: a table for people, JSON for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct MatrixArgs {
    /// Manifests: pods, namespaces, policies (files or directories, `-` for stdin). Repeatable. Without -f,
    /// the live agent's objects.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Evaluate the live agent's objects (with -f: the files applied on top of them).
    #[arg(long)]
    pub live: bool,
    /// Only this port (default: every containerPort declared by any pod).
    #[arg(long)]
    pub port: Option<u16>,
    /// Only this protocol (TCP, UDP, SCTP).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Evaluate the pending policy set (staged policies applied) instead of the enforced one.
    #[arg(long)]
    pub staged: bool,
    /// Output format: a grid for people, JSON for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The current manifests. Without -f (or with --live), the live agent's objects.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub old: Vec<PathBuf>,
    /// The proposed manifests: with -f, the whole proposed set; against the live agent, the changes
    /// applied on top of its objects (as `porin apply` would).
    #[arg(long = "against", required = true, num_args = 1..)]
    pub new: Vec<PathBuf>,
    /// Compare against the live agent's objects.
    #[arg(long, conflicts_with = "old")]
    pub live: bool,
    /// Only this port (default: every containerPort declared by any pod, before or after).
    #[arg(long)]
    pub port: Option<u16>,
    /// Only this protocol (TCP, UDP, SCTP).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Output format: a list for people, JSON for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn validate(a: ValidateArgs) -> Result<ExitCode> {
    let Some(docs) = load(&a.files, &mut std::io::stderr())? else { return Ok(ExitCode::from(1)) };
    if docs.iter().any(|d| matches!(d.resource, porin_model::Resource::ReachabilityGuard(_))) {
        // A guard the inputs themselves break is an error like any other: the API would refuse the set.
        let c = porin_client::cluster(&docs)?;
        let errors: Vec<_> =
            porin_conntest::guards::check(&c, &docs).into_iter().filter_map(|(d, v)| v.map(|v| porin_conntest::guards::error(d, &v))).collect();
        if !errors.is_empty() {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{} guard(s) violated; the API would refuse these objects", errors.len());
            return Ok(ExitCode::from(1));
        }
    }
    println!("{} objects valid", docs.len());
    Ok(ExitCode::SUCCESS)
}

pub fn trace(a: TraceArgs) -> Result<ExitCode> {
    let Some(c) = model(&a.files, a.live, &a.client, &mut std::io::stderr())? else { return Ok(ExitCode::from(1)) };
    let q = TraceQuery { from: a.from, to: a.to, port: a.port, protocol: a.protocol, icmp_type: a.icmp_type, icmp_code: a.icmp_code };
    print!("{}", offline::trace(&c, &q, a.output == Output::Json)?);
    Ok(ExitCode::SUCCESS)
}

pub fn matrix(a: MatrixArgs) -> Result<ExitCode> {
    let Some(c) = model(&a.files, a.live, &a.client, &mut std::io::stderr())? else { return Ok(ExitCode::from(1)) };
    print!("{}", offline::matrix(&c, a.port, a.protocol.as_deref(), a.staged, a.output == Output::Json)?);
    Ok(ExitCode::SUCCESS)
}

pub fn diff(a: DiffArgs) -> Result<ExitCode> {
    let err = &mut std::io::stderr();
    let (old, new) = if a.live || a.old.is_empty() {
        let Some(old) = live_docs(&a.client, &[], err)? else { return Ok(ExitCode::from(1)) };
        let Some(new) = live_docs(&a.client, &a.new, err)? else { return Ok(ExitCode::from(1)) };
        (porin_client::cluster(&old)?, porin_client::cluster(&new)?)
    } else {
        let Some(old) = build(&a.old, err)? else { return Ok(ExitCode::from(1)) };
        let Some(new) = build(&a.new, err)? else { return Ok(ExitCode::from(1)) };
        (old, new)
    };
    print!("{}", offline::diff(&old, &new, a.port, a.protocol.as_deref(), a.output == Output::Json, err)?);
    Ok(ExitCode::SUCCESS)
}
