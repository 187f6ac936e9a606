//! `porin capture status|copy|clean NAME -n NS`: a PacketCapture's files on every node (Calico's
//! `calicoctl captured-packets copy|clean`).
//!
//! Each agent serves only its own node's files; the status (in the store) lists every node's. `copy` and
//! `clean` therefore talk to every agent they know: the connected one, and with `--lab` every agent of that
//! kernel lab. A node whose status lists files but whose agent was not reached is an error, never a silently
//! incomplete copy.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use porin_client::capture::{CaptureTarget, status_table};

use crate::client::ClientArgs;

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
        CaptureCommand::Status(a) => {
            let t = a.target.into_lib();
            let nodes = t.node_statuses()?;
            if a.output == "json" {
                println!("{}", serde_json::to_string_pretty(&nodes)?);
            } else if nodes.is_empty() {
                eprintln!("No files or status for packet capture {}/{} on any node yet.", t.ns(), t.name);
            } else {
                print!("{}", status_table(&nodes));
            }
        }
        CaptureCommand::Copy(a) => {
            let t = a.target.into_lib();
            if t.copy(&a.dest, &mut std::io::stdout())? == 0 {
                eprintln!("No files for packet capture {}/{}.", t.ns(), t.name);
            }
        }
        CaptureCommand::Clean(a) => a.target.into_lib().clean(&mut std::io::stdout())?,
    }
    Ok(ExitCode::SUCCESS)
}

impl Target {
    fn into_lib(self) -> CaptureTarget {
        CaptureTarget { name: self.name, namespace: self.namespace, lab: self.lab, lab_state_dir: self.lab_state_dir, client: self.client }
    }
}
