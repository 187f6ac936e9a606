//! Commands that evaluate the policy model without touching a kernel: `validate`, and `trace`, `matrix`,
//! `diff` on manifest files, on the live agent's objects (`--live`, or no `-f`), or on the live objects with
//! files applied on top (`--live -f CHANGES`: what the cluster would do after `porin apply -f CHANGES`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use porin_model::{Document, Protocol, load_paths_partial, validate_set};
use porin_policy::{Cluster, Packet, Peer, Variant};

use crate::client::{Client, ClientArgs};
use crate::printers;
use porin_client::offline::{parse_protocol_number, peer, port_filter};

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

/// Load and validate; on failure print every error and return None.
fn load(files: &[PathBuf]) -> Result<Option<Vec<Document>>> {
    // Parse everything, validate what parsed, and report every problem of both kinds at once.
    let (docs, mut errors) = load_paths_partial(files);
    if let Err(e) = validate_set(&docs, &Default::default()) {
        errors.extend(e);
    }
    if errors.is_empty() {
        return Ok(Some(docs));
    }
    errors.sort_by(|a, b| (&a.input, a.doc, &a.path).cmp(&(&b.input, b.doc, &b.path)));
    for e in &errors {
        eprintln!("{e}");
    }
    eprintln!("{} error(s); nothing was accepted", errors.len());
    Ok(None)
}

fn build(files: &[PathBuf]) -> Result<Option<Cluster>> {
    let Some(docs) = load(files)? else { return Ok(None) };
    cluster(&docs).map(Some)
}

fn cluster(docs: &[Document]) -> Result<Cluster> {
    Cluster::build(docs.iter().map(|d| &d.resource)).context("building the policy model")
}

/// The live agent's objects with `changes` (validated files, may be empty) applied on top; None after
/// printing the errors.
fn live_docs(client: &ClientArgs, changes: &[PathBuf]) -> Result<Option<Vec<Document>>> {
    let changes = if changes.is_empty() {
        Vec::new()
    } else {
        let (docs, errors) = load_paths_partial(changes);
        if !errors.is_empty() {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{} error(s); nothing was accepted", errors.len());
            return Ok(None);
        }
        docs
    };
    let live = super::live::fetch_live(&Client::new(client))?;
    let docs = super::live::overlay(live, changes);
    if let Err(errors) = validate_set(&docs, &Default::default()) {
        for e in &errors {
            eprintln!("{e}");
        }
        eprintln!("{} error(s) in the live objects with the changes applied", errors.len());
        return Ok(None);
    }
    Ok(Some(docs))
}

/// The model `trace` and `matrix` evaluate: files, or the live objects (plus files with --live).
fn model(files: &[PathBuf], live: bool, client: &ClientArgs) -> Result<Option<Cluster>> {
    if live || files.is_empty() {
        let Some(docs) = live_docs(client, files)? else { return Ok(None) };
        return cluster(&docs).map(Some);
    }
    build(files)
}

pub fn validate(a: ValidateArgs) -> Result<ExitCode> {
    let Some(docs) = load(&a.files)? else { return Ok(ExitCode::from(1)) };
    if docs.iter().any(|d| matches!(d.resource, porin_model::Resource::ReachabilityGuard(_))) {
        // A guard the inputs themselves break is an error like any other: the API would refuse the set.
        let c = Cluster::build(docs.iter().map(|d| &d.resource)).context("building the policy model")?;
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
    let Some(c) = model(&a.files, a.live, &a.client)? else { return Ok(ExitCode::from(1)) };
    let src = peer(&c, &a.from, "--from")?;
    let dst = peer(&c, &a.to, "--to")?;
    let protocol = parse_protocol_number(&a.protocol)?;
    let ports = Protocol::from_number(protocol).is_some();
    if ports && a.port.is_none() {
        bail!("--port is required for {}", a.protocol.to_ascii_uppercase());
    }
    if !ports && a.port.is_some() {
        bail!("--port only applies to TCP, UDP and SCTP");
    }
    if a.icmp_type.is_some() && protocol != 1 && protocol != 58 {
        bail!("--icmp-type only applies to ICMP and ICMPv6");
    }
    let v6 = match (src, dst) {
        (Peer::Ip(ip), _) | (_, Peer::Ip(ip)) => ip.is_ipv6(),
        (Peer::Endpoint(s), Peer::Endpoint(d)) => {
            s.ip_of_family(false).is_none() || d.ip_of_family(false).is_none()
        }
    };
    let pkt = Packet { protocol, port: a.port, icmp: a.icmp_type.map(|t| (t, a.icmp_code)), v6 };
    let verdict = c.verdict(src, dst, &pkt);
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&printers::trace_json(&src, &dst, &pkt, &verdict))?),
        Output::Table => print!("{}", printers::trace_table(&src, &dst, &pkt, &verdict)),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn matrix(a: MatrixArgs) -> Result<ExitCode> {
    let Some(c) = model(&a.files, a.live, &a.client)? else { return Ok(ExitCode::from(1)) };
    let ports = port_filter(&c, a.port, a.protocol.as_deref())?;
    if ports.is_empty() {
        bail!("no pod declares a containerPort: pass --port (and --protocol)");
    }
    let variant = if a.staged { Variant::Pending } else { Variant::Enforced };
    let matrices: Vec<_> = ports.iter().map(|(pr, p)| c.matrix(variant, *pr, *p)).collect();
    match a.output {
        Output::Json => {
            let doc = serde_json::json!({ "matrices": matrices.iter().map(|m| m.to_json()).collect::<Vec<_>>() });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Table => {
            for (i, m) in matrices.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print!("{}", printers::matrix_table(m));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn diff(a: DiffArgs) -> Result<ExitCode> {
    let (old, new) = if a.live || a.old.is_empty() {
        let Some(old) = live_docs(&a.client, &[])? else { return Ok(ExitCode::from(1)) };
        let Some(new) = live_docs(&a.client, &a.new)? else { return Ok(ExitCode::from(1)) };
        (cluster(&old)?, cluster(&new)?)
    } else {
        let Some(old) = build(&a.old)? else { return Ok(ExitCode::from(1)) };
        let Some(new) = build(&a.new)? else { return Ok(ExitCode::from(1)) };
        (old, new)
    };
    let ports = match (a.port, &a.protocol) {
        (None, None) => None,
        _ => {
            let mut p = port_filter(&old, a.port, a.protocol.as_deref())?;
            p.extend(port_filter(&new, a.port, a.protocol.as_deref())?);
            p.sort();
            p.dedup();
            Some(p)
        }
    };
    if old.endpoints.is_empty() && new.endpoints.is_empty() {
        eprintln!("warning: neither side holds a pod, so no reachability between pods can change; pass the pods' manifests too");
    }
    let d = porin_policy::diff::diff(&old, &new, ports.as_deref());
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&d)?),
        Output::Table => print!("{}", printers::diff_table(&d)),
    }
    Ok(ExitCode::SUCCESS)
}
