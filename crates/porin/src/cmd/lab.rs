//! `porin lab`: a cluster out of network namespaces on this machine, enforced by real Porin agents.
//!
//! The flags and the printing; the lab and its control plane (agents, etcd, the one state file) are
//! [`porin_lab::cluster`], which reaches the agents' API through `porin_client::labapi::SocketApi`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use porin_client::labfmt;
use porin_client::labapi::SocketApi;
use porin_lab::cluster::{self, DEFAULT_LAB, UpOptions};
use porin_lab::{LabOptions, Proto, ServerMode};

use super::offline::Output;

/// Environment variable overriding the lab state directory.
pub const STATE_DIR_ENV: &str = "PORIN_LAB_STATE_DIR";

#[derive(Args, Debug, Clone)]
pub struct LabCommon {
    /// Lab name (default: the only lab that is up, else `lab`).
    #[arg(long, global = true)]
    pub name: Option<String>,
    /// Directory of lab state.
    #[arg(long, global = true, env = STATE_DIR_ENV, default_value = porin_lab::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
    #[command(flatten)]
    pub common: LabCommon,
}

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Create namespaces, veths and servers for the manifests' pods, start an agent per node, apply the
    /// manifests, and wait until the kernel enforces them.
    Up(UpArgs),
    /// Measure who reaches whom with real packets; prints the observed matrix (`porin matrix` shape).
    Probe(ProbeArgs),
    /// Run a command inside a pod's (NAMESPACE/POD) or an external host's (NAME) network namespace.
    Exec(ExecArgs),
    /// Namespaces, servers, agents and their dataplanes.
    Status(LabStatusArgs),
    /// Stop agents, servers and etcd; delete the namespaces and state (also after a crash).
    Down,
    /// Wait until every agent enforces the store's current revision (after `porin apply`).
    Wait {
        /// Give up (exit 1) after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Stop or start one node's agent (tests: kill -9 and restart).
    #[command(hide = true)]
    Agent(AgentCtlArgs),
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Manifests: Namespaces, Pods (their status.podIP; every pod serves every containerPort any pod declares), policies.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Number of nodes; pods without spec.nodeName `n<i>` are spread round-robin.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// How long to wait for enforcement.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// The web console's port on the host's loopback (node 0's agent serves it; 0: any free port).
    #[arg(long, default_value_t = 0)]
    pub console_port: u16,
    /// An external ("internet") host outside the cluster, reached through a node:
    /// `name=c2[,ip=203.0.113.10][,ip=2001:db8::10][,port=443][,port=53/udp][,node=n0]` (repeatable). Default
    /// address 203.0.113.(10+k); no `port=`: it serves every port the pods serve.
    #[arg(long = "host", value_name = "name=NAME,ip=ADDR,port=P,node=N")]
    pub hosts: Vec<porin_lab::HostSpec>,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// Only this port (default: every port a pod serves).
    #[arg(long)]
    pub port: Option<u16>,
    /// Only this protocol (TCP, UDP, SCTP).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Per-probe timeout.
    #[arg(long, default_value_t = 500)]
    pub timeout_ms: u64,
    /// Output format: a grid for people, JSON for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// NAMESPACE/POD, or an external host's NAME
    pub pod: String,
    /// The command.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LabStatusArgs {
    /// Output format: a table for people, JSON for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct AgentCtlArgs {
    /// `stop` (SIGKILL) or `start`.
    pub action: String,
    /// Which node's agent (0 is the first).
    #[arg(long, default_value_t = 0)]
    pub node: u32,
}

/// The lab's options as the CLI opens its labs: servers are `porin lab-serve` processes.
pub fn lab_options(dir: &Path) -> Result<LabOptions> {
    Ok(LabOptions {
        state_dir: std::path::absolute(dir)?,
        servers: ServerMode::current_exe(&["lab-serve"])?,
        ready_timeout: Duration::from_secs(15),
    })
}

/// `porin lab up` as the demo runs it.
pub fn up_options(name: &str, state_dir: &Path, files: Vec<PathBuf>, nodes: u32, timeout: Duration) -> Result<UpOptions> {
    Ok(UpOptions {
        name: name.to_string(),
        lab: lab_options(state_dir)?,
        files,
        nodes,
        timeout,
        console_port: None,
        hosts: Vec::new(),
        agent: vec![std::env::current_exe()?.display().to_string(), "agent".into()],
        agent_args: std::env::var("PORIN_LAB_AGENT_ARGS").map(|e| e.split_whitespace().map(String::from).collect()).unwrap_or_default(),
        default_socket: Some(PathBuf::from(crate::client::DEFAULT_SOCKET)),
    })
}

pub fn lab(a: LabArgs) -> Result<ExitCode> {
    let dir = a.common.state_dir.clone();
    let opts = lab_options(&dir)?;
    // `up` never picks an existing lab by itself.
    let name = match (&a.command, &a.common.name) {
        (LabCommand::Up(_), None) => DEFAULT_LAB.to_string(),
        (_, n) => cluster::resolve_name(n.as_deref(), &opts),
    };
    match a.command {
        LabCommand::Up(u) => {
            let t0 = Instant::now();
            let port = cluster::pick_port(u.console_port)?;
            let o = UpOptions { console_port: Some(port), hosts: u.hosts, ..up_options(&name, &dir, u.files, u.nodes, Duration::from_secs(u.timeout_secs))? };
            let c = cluster::up(&o, &SocketApi)?;
            let console = cluster::console_written(&c.dir, port)?;
            eprintln!("lab {name} up in {:.1}s: {} node(s); agents log to {}/n*.log", t0.elapsed().as_secs_f64(), c.nodes, c.dir.display());
            if let Some(default) = &c.linked_default_socket {
                eprintln!("porin commands reach the lab's agent through {}", default.display());
            }
            eprintln!("web console: {}  (sign in with the token {}, also in {})", console.url, console.token, console.token_file.display());
            println!("export PORIN_SERVER={}", c.server.display());
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Probe(p) => {
            let lab = porin_lab::Lab::open(&name, &opts)?;
            let ports = probe_ports(&lab, p.port, p.protocol.as_deref())?;
            let m = lab.probe(&ports, Duration::from_millis(p.timeout_ms))?;
            match p.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&m)?),
                Output::Table => print!("{}", labfmt::observed_tables(&m)),
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Exec(e) => {
            let lab = porin_lab::Lab::open(&name, &opts)?;
            let status = porin_lab::exec_command(&lab, &e.pod, &e.argv)?.status()?;
            Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
        }
        LabCommand::Status(s) => {
            let st = cluster::status(&SocketApi, &name, &opts)?;
            match s.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                Output::Table => print!("{}", labfmt::status_table(&st)),
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down => {
            let r = cluster::down(&name, &opts)?;
            eprintln!("lab {name} down: {} namespace(s) removed, {} process(es) stopped", r.removed_netns.len(), r.killed.len());
            for e in &r.errors {
                eprintln!("warning: {e}");
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Wait { timeout_secs } => {
            cluster::wait_current(&SocketApi, &name, &opts, Duration::from_secs(timeout_secs))?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Agent(c) => {
            match c.action.as_str() {
                "stop" => cluster::kill_agent(&name, &opts, c.node)?,
                "start" => cluster::start_agent(&SocketApi, &name, &opts, c.node)?,
                other => bail!("unknown action {other:?}: stop or start"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn probe_ports(lab: &porin_lab::Lab, port: Option<u16>, protocol: Option<&str>) -> Result<Vec<(u16, Proto)>> {
    let proto = protocol.map(|p| p.parse::<Proto>().map_err(|_| anyhow!("--protocol {p:?}: expected TCP, UDP or SCTP"))).transpose()?;
    let out = lab.probe_ports(port, proto);
    if out.is_empty() {
        bail!("no pod serves a port: pass --port (and --protocol)");
    }
    Ok(out)
}

/// `porin lab-serve ARGS...`: the body of the detached pod-server process.
pub fn serve(args: Vec<String>) -> Result<ExitCode> {
    porin_lab::serve_main(args)?;
    Ok(ExitCode::SUCCESS)
}
