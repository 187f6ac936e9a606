//! `porin capture status|copy|clean NAME -n NS`: a PacketCapture's files on every node (Calico's
//! `calicoctl captured-packets copy|clean`).
//!
//! Each agent serves only its own node's files; the status (in the store) lists every node's. `copy` and
//! `clean` therefore talk to every agent they know: the connected one, and with `--lab` every agent of that
//! kernel lab. A node whose status lists files but whose agent was not reached is an error, never a silently
//! incomplete copy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

use crate::client::{Client, ClientArgs, block_on, enc};
use porin_client::capture::{download, nodes_with_files};

#[derive(Args, Debug)]
pub struct CaptureArgs {
    #[command(subcommand)]
    pub command: CaptureCommand,
}

#[derive(Subcommand, Debug)]
pub enum CaptureCommand {
    /// Every node's files, state, and captured and lost packets.
    Status(StatusArgs),
    /// Copy the capture's pcap files from every node into DIR.
    Copy(CopyArgs),
    /// Delete the capture's files on every node (after the capture ended or was deleted).
    Clean(CleanArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The PacketCapture's name.
    pub name: String,
    /// Its namespace [default: default].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Also reach every agent of this kernel lab (`porin lab up --name`).
    #[arg(long)]
    pub lab: Option<String>,
    /// Directory of lab state (with --lab).
    #[arg(long, env = super::lab::STATE_DIR_ENV, default_value = porin_lab::DEFAULT_STATE_DIR)]
    pub lab_state_dir: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// table or json.
    #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    #[command(flatten)]
    pub target: Target,
    /// Destination directory (created if missing).
    #[arg(short = 'd', long = "dest", default_value = ".")]
    pub dest: PathBuf,
}

#[derive(Args, Debug)]
pub struct CleanArgs {
    #[command(flatten)]
    pub target: Target,
}

pub fn capture(a: CaptureArgs) -> Result<ExitCode> {
    match a.command {
        CaptureCommand::Status(a) => status(a),
        CaptureCommand::Copy(a) => copy(a),
        CaptureCommand::Clean(a) => clean(a),
    }
}

impl Target {
    fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
    fn path(&self) -> String {
        format!("/porin/v1/captures/{}/{}", enc(self.ns()), enc(&self.name))
    }
    /// The connected agent, then the lab's agents.
    fn clients(&self) -> Result<Vec<Client>> {
        let mut out = vec![Client::new(&self.client)];
        if let Some(lab) = &self.lab {
            let meta = porin_lab::cluster::control(&porin_lab::LabOptions::with_state_dir(&self.lab_state_dir), lab)?
                .ok_or_else(|| anyhow!("no lab {lab:?} in {}", self.lab_state_dir.display()))?;
            for ag in meta.agents {
                out.push(Client::new(&ClientArgs::socket(ag.socket.display().to_string())));
            }
        }
        Ok(out)
    }
}

/// Every node's status entry (from the connected agent).
fn node_statuses(c: &Client, t: &Target) -> Result<Vec<Value>> {
    let v = block_on(c.call(Method::GET, &t.path(), None))??;
    Ok(v["files"].as_array().cloned().unwrap_or_default())
}

fn status(a: StatusArgs) -> Result<ExitCode> {
    let t = &a.target;
    let c = Client::new(&t.client);
    let nodes = node_statuses(&c, t)?;
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(ExitCode::SUCCESS);
    }
    if nodes.is_empty() {
        eprintln!("No files or status for packet capture {}/{} on any node yet.", t.ns(), t.name);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![["NODE", "STATE", "PACKETS", "LOST", "FILES"].map(String::from).to_vec()];
    for n in &nodes {
        let files: Vec<&str> = n["fileNames"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mut state = n["state"].as_str().unwrap_or("").to_string();
        if let Some(e) = n["error"].as_str() {
            state = format!("{state} ({e})");
        }
        rows.push(vec![
            n["node"].as_str().unwrap_or("").to_string(),
            state,
            n["packets"].as_u64().unwrap_or(0).to_string(),
            n["lost"].as_u64().unwrap_or(0).to_string(),
            if files.is_empty() { "-".into() } else { files.join(",") },
        ]);
    }
    let mut w = vec![0; rows[0].len()];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    for r in &rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn copy(a: CopyArgs) -> Result<ExitCode> {
    let t = &a.target;
    let clients = t.clients()?;
    let mut expected = nodes_with_files(&node_statuses(&clients[0], t)?);
    std::fs::create_dir_all(&a.dest).with_context(|| format!("creating {}", a.dest.display()))?;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut copied = 0usize;
    let mut reached = std::collections::BTreeSet::new();
    for c in &clients {
        let v = block_on(c.call(Method::GET, &format!("{}/files", t.path()), None))??;
        let node = v["node"].as_str().unwrap_or("").to_string();
        if !reached.insert(node.clone()) {
            continue; // the connected agent is also one of the lab's
        }
        expected.remove(&node);
        for f in v["files"].as_array().into_iter().flatten() {
            let name = f["name"].as_str().ok_or_else(|| anyhow!("node {node}: a file without a name"))?;
            if name.contains('/') || name.starts_with('.') {
                bail!("node {node}: refusing file name {name:?}");
            }
            if let Some(other) = seen.insert(name.to_string(), node.clone()) {
                bail!("file {name} exists on nodes {other} and {node}");
            }
            let bytes = block_on(download(c, &format!("{}/files/{}", t.path(), enc(name))))??;
            let dest = a.dest.join(name);
            std::fs::write(&dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;
            println!("{node}: {name} ({} bytes) -> {}", bytes.len(), dest.display());
            copied += 1;
        }
    }
    if !expected.is_empty() {
        let missing: Vec<String> = expected.iter().map(|(n, k)| format!("{n} ({k} files)")).collect();
        bail!(
            "copied {copied} file(s), but no agent of node(s) {} was reached: run the command against that node's \
             agent (--server), or with --lab for a kernel lab",
            missing.join(", ")
        );
    }
    if copied == 0 {
        eprintln!("No files for packet capture {}/{}.", t.ns(), t.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn clean(a: CleanArgs) -> Result<ExitCode> {
    let t = &a.target;
    let clients = t.clients()?;
    let mut expected = nodes_with_files(&node_statuses(&clients[0], t)?);
    let mut reached = std::collections::BTreeSet::new();
    for c in &clients {
        let v = block_on(c.call(Method::DELETE, &format!("{}/files", t.path()), None))??;
        let node = v["node"].as_str().unwrap_or("").to_string();
        if !reached.insert(node.clone()) {
            continue;
        }
        expected.remove(&node);
        let n = v["removed"].as_array().map_or(0, Vec::len);
        println!("{node}: removed {n} file(s)");
    }
    if !expected.is_empty() {
        let missing: Vec<String> = expected.keys().cloned().collect();
        bail!("no agent of node(s) {} was reached: their files remain (use --server or --lab)", missing.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
