//! `porin lab`: a cluster out of network namespaces on this machine, enforced by real Porin agents.
//!
//! `porin lab up -f PATH... [--nodes N]` builds the namespaces and veths ([`porin_lab::up`]), starts the
//! pod servers (`porin lab-serve`, detached), starts ONE `porin agent` per node, detached, inside that
//! node's network namespace (`porin agent --netns porin-<lab>-n<i>`: the agent joins it before starting
//! any thread; `ip netns exec` would also give it a private mount namespace, and the bpffs it mounts for
//! its pins would vanish with it, taking enforcement down on an agent restart), applies the manifests
//! through the normal API (Pods as written, plus their lab address in `status`; each pod gets a
//! WorkloadEndpoint binding it to its host-side veth on node `n<i>`, written as admin) and returns once
//! every agent enforces the applied revision.
//!
//! * `--host name=c2,ip=203.0.113.10,port=443` adds an external ("internet") host: a namespace outside every
//!   pod CIDR, routed through a node the way north-south traffic leaves a cluster, serving its ports; no
//!   WorkloadEndpoint, so flows to it are enriched as `world` (or as the GlobalNetworkSet covering it).
//!   `porin lab exec c2 -- CMD` runs in it.
//! * One node: the agent uses its embedded store.
//! * Several nodes: the lab starts a real etcd inside node 0's namespace, listening on node 0's
//!   underlay address (reachable from every node over the lab underlay, never from the root namespace),
//!   and every agent uses it; the CLI talks to node 0's agent over its Unix socket.
//!
//! Everything the lab owns lives under `<state-dir>/<lab>.d/` (agent data, sockets, logs, bpffs pins,
//! etcd) plus the namespaces `porin-<lab>-*`; nothing in the root network namespace is touched.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use hyper::Method;
use porin_lab::state::ProcRef;
use porin_lab::{LabOptions, LabSpec, PodSpec, Proto, ServerMode};
use porin_model::{Protocol, Resource};
use serde::{Deserialize, Serialize};

use super::offline::Output;
use crate::client::{Client, ClientArgs, block_on};

/// Environment variable overriding the lab state directory.
pub const STATE_DIR_ENV: &str = "PORIN_LAB_STATE_DIR";
/// Default lab name.
pub const DEFAULT_LAB: &str = "lab";

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

/// What the lab CLI records next to the lab's own state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabMeta {
    pub name: String,
    pub nodes: u32,
    pub dir: PathBuf,
    pub agents: Vec<AgentMeta>,
    pub etcd: Option<ProcMeta>,
    /// The socket `porin` commands should use (node 0's agent).
    pub server: PathBuf,
    /// The default socket path was linked to this lab.
    pub linked_default_socket: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentMeta {
    pub node: String,
    pub netns: String,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub argv: Vec<String>,
    pub proc: Option<ProcRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcMeta {
    pub argv: Vec<String>,
    pub url: String,
    pub log: PathBuf,
    pub proc: Option<ProcRef>,
}

fn lab_options(dir: &Path) -> Result<LabOptions> {
    Ok(LabOptions {
        state_dir: std::path::absolute(dir)?,
        servers: ServerMode::current_exe(&["lab-serve"])?,
        ready_timeout: Duration::from_secs(15),
    })
}

fn lab_dir(state_dir: &Path, name: &str) -> PathBuf {
    std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf()).join(format!("{name}.d"))
}

fn meta_path(state_dir: &Path, name: &str) -> PathBuf {
    lab_dir(state_dir, name).join("porin.json")
}

pub fn load_meta(state_dir: &Path, name: &str) -> Result<Option<LabMeta>> {
    let p = meta_path(state_dir, name);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("reading {}", p.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn save_meta(state_dir: &Path, m: &LabMeta) -> Result<()> {
    let p = meta_path(state_dir, &m.name);
    std::fs::create_dir_all(p.parent().expect("parent"))?;
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(m)?)?;
    std::fs::rename(&tmp, &p)?;
    Ok(())
}

/// The lab a command means: `--name`, else the only one up, else `lab`.
pub fn resolve_name(c: &LabCommon) -> String {
    if let Some(n) = &c.name {
        return n.clone();
    }
    // Only labs this CLI brought up (they have agents): never guess a lab someone else (a test, a
    // benchmark) owns in the same state directory.
    let all = porin_lab::list(&LabOptions::with_state_dir(&c.state_dir));
    let ours: Vec<&String> = all.iter().filter(|n| meta_path(&c.state_dir, n).exists()).collect();
    match ours.as_slice() {
        [one] => (*one).clone(),
        _ => DEFAULT_LAB.to_string(),
    }
}

pub fn lab(a: LabArgs) -> Result<ExitCode> {
    // `up` never picks an existing lab by itself.
    let name = match (&a.command, &a.common.name) {
        (LabCommand::Up(_), None) => DEFAULT_LAB.to_string(),
        _ => resolve_name(&a.common),
    };
    let dir = a.common.state_dir.clone();
    match a.command {
        LabCommand::Up(u) => {
            let t0 = Instant::now();
            let port = super::lab_console::pick_port(u.console_port)?;
            let meta = up(&UpOptions {
                name: name.clone(),
                state_dir: dir,
                files: u.files,
                nodes: u.nodes,
                timeout: Duration::from_secs(u.timeout_secs),
                console_port: Some(port),
                hosts: u.hosts,
            })?;
            let console = super::lab_console::written(&meta.dir, port)?;
            eprintln!(
                "lab {name} up in {:.1}s: {} node(s); agents log to {}/n*.log",
                t0.elapsed().as_secs_f64(),
                meta.nodes,
                meta.dir.display()
            );
            if meta.linked_default_socket {
                eprintln!("porin commands reach the lab's agent through {}", crate::client::DEFAULT_SOCKET);
            }
            eprintln!("web console: {}  (sign in with the token {}, also in {})", console.url, console.token, console.token_file.display());
            println!("export PORIN_SERVER={}", meta.server.display());
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Probe(p) => {
            let lab = porin_lab::Lab::open(&name, &lab_options(&dir)?)?;
            let ports = probe_ports(&lab, p.port, p.protocol.as_deref())?;
            let m = lab.probe(&ports, Duration::from_millis(p.timeout_ms))?;
            match p.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&m)?),
                Output::Table => print!("{}", observed_tables(&m)),
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Exec(e) => {
            let lab = porin_lab::Lab::open(&name, &lab_options(&dir)?)?;
            let status = porin_lab::exec_command(&lab, &e.pod, &e.argv)?.status()?;
            Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
        }
        LabCommand::Status(s) => {
            let st = status(&name, &dir)?;
            match s.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                Output::Table => print!("{}", status_table(&st)),
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down => {
            let r = down(&name, &dir)?;
            eprintln!("lab {name} down: {} namespace(s) removed, {} process(es) stopped", r.removed_netns.len(), r.killed.len());
            for e in &r.errors {
                eprintln!("warning: {e}");
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Wait { timeout_secs } => {
            wait_current(&name, &dir, Duration::from_secs(timeout_secs))?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Agent(c) => {
            let mut meta = load_meta(&dir, &name)?.ok_or_else(|| anyhow!("lab {name} is not up"))?;
            let i = c.node as usize;
            if i >= meta.agents.len() {
                bail!("--node {}: the lab has {} node(s)", c.node, meta.agents.len());
            }
            match c.action.as_str() {
                "stop" => {
                    if let Some(p) = meta.agents[i].proc.take() {
                        kill_hard(&p);
                    }
                    save_meta(&dir, &meta)?;
                }
                "start" => {
                    if meta.agents[i].proc.as_ref().is_some_and(|p| p.is_alive()) {
                        bail!("agent of node {} is running", c.node);
                    }
                    meta.agents[i].proc = Some(spawn_detached(&meta.agents[i].argv, &meta.agents[i].log)?);
                    save_meta(&dir, &meta)?;
                    wait_agent_ready(&meta.agents[i], Duration::from_secs(30))?;
                    wait_programmed(&meta, None, Duration::from_secs(30))?;
                }
                other => bail!("unknown action {other:?}: stop or start"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `porin lab up` as a library call (the demo and the tests use it).
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub name: String,
    pub state_dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub nodes: u32,
    pub timeout: Duration,
    /// Serve the web console on this loopback port of the host (node 0's agent).
    pub console_port: Option<u16>,
    /// External hosts (`--host`); those without ports serve every port the pods serve.
    pub hosts: Vec<porin_lab::HostSpec>,
}

fn lab_ports(ports: &[porin_model::k8s::ContainerPort]) -> Vec<(u16, Proto)> {
    let mut out: Vec<(u16, Proto)> = Vec::new();
    for p in ports {
        let proto = match p.protocol.unwrap_or(Protocol::Tcp) {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
            Protocol::Sctp => Proto::Sctp,
        };
        let Ok(port) = u16::try_from(p.container_port) else { continue };
        if port != 0 && !out.contains(&(port, proto)) {
            out.push((port, proto));
        }
    }
    out
}

fn node_index(node_name: Option<&str>, nodes: u32) -> Option<u32> {
    node_name.and_then(|n| n.strip_prefix('n')).and_then(|i| i.parse::<u32>().ok()).filter(|i| *i < nodes)
}

pub fn up(o: &UpOptions) -> Result<LabMeta> {
    if o.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let docs = porin_model::load_paths(&o.files).map_err(|errs| {
        anyhow!("{}", errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
    })?;
    // Pods → lab spec.
    let mut spec = LabSpec::new(o.name.clone(), o.nodes);
    let mut rr = 0u32;
    for d in &docs {
        if let Resource::Pod(p) = &d.resource {
            let ns = p.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let node = node_index(p.spec.node_name.as_deref(), o.nodes).unwrap_or_else(|| {
                rr += 1;
                (rr - 1) % o.nodes
            });
            let mut ps = PodSpec::new(ns, p.metadata.name.clone(), node);
            ps.ipv4 = p.status.pod_ip.as_deref().and_then(|s| s.parse().ok());
            ps.ports = lab_ports(&p.spec.containers.iter().flat_map(|c| c.ports.clone()).collect::<Vec<_>>());
            spec.pods.push(ps);
        }
    }
    if spec.pods.is_empty() {
        bail!("no Pod in the manifests: a lab needs workloads");
    }
    // Every pod serves every port any pod declares: a probe then observes the policy's verdict (what
    // `porin matrix` reports), not whether an application happens to listen.
    let mut all: Vec<(u16, Proto)> = spec.pods.iter().flat_map(|p| p.ports.iter().copied()).collect();
    all.sort_by_key(|(p, pr)| (*pr, *p));
    all.dedup();
    for p in &mut spec.pods {
        p.ports = all.clone();
    }
    // Decoys: each Honeypod becomes a pod whose server answers on the Honeypod's ports only.
    for d in &docs {
        if let Resource::Honeypod(h) = &d.resource {
            let ns = h.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            rr += 1;
            let mut ps = PodSpec::new(ns, h.metadata.name.clone(), (rr - 1) % o.nodes);
            ps.ports = lab_ports(&decoy_ports(&h.spec));
            spec.pods.push(ps);
        }
    }
    for h in &o.hosts {
        let ports = if h.ports.is_empty() { all.clone() } else { h.ports.clone() };
        spec.hosts.push(porin_lab::HostSpec { ports, ..h.clone() });
    }

    // A dead previous incarnation: clean it first.
    if let Some(old) = load_meta(&o.state_dir, &o.name)? {
        if old.agents.iter().any(|a| a.proc.as_ref().is_some_and(|p| p.is_alive())) && porin_lab::status(&o.name, &lab_options(&o.state_dir)?).map(|s| s.alive).unwrap_or(false) {
            bail!("lab {} is already up (porin lab down --name {} first)", o.name, o.name);
        }
        down(&o.name, &o.state_dir)?;
    }
    release_mounts(&lab_dir(&o.state_dir, &o.name));

    let lab = porin_lab::up(&spec, &lab_options(&o.state_dir)?)?;
    match start_control_plane(o, &lab, &docs) {
        Ok(m) => Ok(m),
        Err(e) => {
            let _ = down(&o.name, &o.state_dir);
            Err(e)
        }
    }
}

fn start_control_plane(o: &UpOptions, lab: &porin_lab::Lab, docs: &[porin_model::Document]) -> Result<LabMeta> {
    let dir = lab_dir(&o.state_dir, &o.name);
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?.display().to_string();
    let mut meta = LabMeta {
        name: o.name.clone(),
        nodes: o.nodes,
        dir: dir.clone(),
        agents: Vec::new(),
        etcd: None,
        server: dir.join("n0.sock"),
        linked_default_socket: false,
    };
    let mut store_args: Vec<String> = Vec::new();
    if o.nodes > 1 {
        let ip = lab.nodes()[0].underlay_ipv4.ok_or_else(|| anyhow!("node 0 has no underlay address"))?;
        let url = format!("http://{ip}:2379");
        let member = format!("porin-{}", o.name);
        let argv: Vec<String> = [
            "ip", "netns", "exec", &lab.nodes()[0].netns, "etcd", "--name", &member,
            "--data-dir", &dir.join("etcd").display().to_string(),
            "--listen-client-urls", &url, "--advertise-client-urls", &url,
            "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", &format!("{member}=http://127.0.0.1:2380"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let log = dir.join("etcd.log");
        let proc = spawn_detached(&argv, &log).context("starting etcd (apt-get install etcd-server)")?;
        meta.etcd = Some(ProcMeta { argv, url: url.clone(), log, proc: Some(proc) });
        save_meta(&o.state_dir, &meta)?;
        wait_etcd(&lab.nodes()[0].netns, &url, Duration::from_secs(20))?;
        store_args = vec!["--datastore".into(), "etcd".into(), "--etcd-endpoints".into(), url];
    }
    for n in lab.nodes() {
        let node = format!("n{}", n.index);
        let data_dir = dir.join(&node);
        let socket = dir.join(format!("{node}.sock"));
        let log = dir.join(format!("{node}.log"));
        let mut argv: Vec<String> = vec![
            exe.clone(),
            "agent".into(),
            "--netns".into(),
            n.netns.clone(),
            "--node".into(),
            node.clone(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--socket".into(),
            socket.display().to_string(),
            "--dataplane".into(),
            "ebpf".into(),
        ];
        argv.extend(store_args.iter().cloned());
        if let (0, Some(port)) = (n.index, o.console_port) {
            argv.extend(super::lab_console::agent_args(port));
        }
        if let Ok(extra) = std::env::var("PORIN_LAB_AGENT_ARGS") {
            argv.extend(extra.split_whitespace().map(String::from));
        }
        let proc = spawn_detached(&argv, &log)?;
        meta.agents.push(AgentMeta { node, netns: n.netns.clone(), socket, data_dir, log, argv, proc: Some(proc) });
        save_meta(&o.state_dir, &meta)?;
    }
    for a in &meta.agents {
        wait_agent_ready(a, Duration::from_secs(30))?;
    }
    // The console's login token first: a token write advances the store revision without a resource change,
    // so made after the manifests it would leave `porin lab wait` waiting for a revision no agent enforces.
    if let Some(port) = o.console_port {
        super::lab_console::login(&meta.server, &meta.dir, port)?;
    }

    // Apply the manifests: pods as written plus their lab address (`status`, the system-owned part, kept
    // when a pod is re-applied without it), and one WorkloadEndpoint per pod binding it to its host-side
    // veth on its node. Pods carry no binding of their own, so re-applying them as written changes
    // nothing (`unchanged`).
    let mut docs = docs.to_vec();
    let decoys: Vec<porin_model::Document> = docs.iter().filter_map(|d| decoy_pod(&d.resource)).collect::<Result<_>>()?;
    docs.extend(decoys);
    let mut weps = Vec::new();
    for d in &mut docs {
        if let Resource::Pod(p) = &mut d.resource {
            let key = format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or("default"), p.metadata.name);
            let info = lab.pod(&key)?;
            p.status.pod_ip = Some(info.ipv4.to_string());
            p.status.pod_ips.clear();
            weps.push(workload_endpoint(info, &format!("n{}", info.node))?);
        }
    }
    docs.extend(weps);
    let c = client(&meta.server);
    let rev = block_on(async {
        c.call(Method::POST, "/porin/v1/apply", Some(super::apply::list_body(&docs))).await?;
        let s = c.call(Method::GET, "/porin/v1/status", None).await?;
        anyhow::Ok(s["storeRevision"].as_u64().unwrap_or(0))
    })??;
    let pods_per_node: Vec<usize> =
        (0..o.nodes).map(|i| lab.pods().iter().filter(|p| p.node == i).count()).collect();
    wait_programmed(&meta, Some((rev, &pods_per_node)), o.timeout)?;

    // The default socket, when free, reaches this lab (only for the default state dir).
    let default = Path::new(crate::client::DEFAULT_SOCKET);
    if std::path::absolute(&o.state_dir).ok() == std::path::absolute(porin_lab::DEFAULT_STATE_DIR).ok()
        && std::fs::symlink_metadata(default).is_err()
    {
        if let Some(parent) = default.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        meta.linked_default_socket = std::os::unix::fs::symlink(&meta.server, default).is_ok();
    }
    save_meta(&o.state_dir, &meta)?;
    Ok(meta)
}

fn decoy_ports(h: &porin_model::respond::HoneypodSpec) -> Vec<porin_model::k8s::ContainerPort> {
    h.ports
        .iter()
        .map(|p| porin_model::k8s::ContainerPort { name: None, container_port: i64::from(p.port), protocol: p.protocol })
        .collect()
}

/// The Pod of a Honeypod in a lab: the Honeypod's name, namespace and labels, its ports. The engine marks it as
/// a decoy (by the Honeypod of the same name), not this manifest.
fn decoy_pod(r: &Resource) -> Option<Result<porin_model::Document>> {
    let Resource::Honeypod(h) = r else { return None };
    let v = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": h.metadata.name, "namespace": h.metadata.namespace.as_deref().unwrap_or("default"),
                     "labels": h.spec.labels},
        "spec": {"containers": [{"name": "decoy", "image": "porin/decoy", "ports": decoy_ports(&h.spec)}]},
    });
    let what = format!("Honeypod {}", r.qualified_name());
    Some(
        porin_model::parse_documents(&what, &v.to_string())
            .map_err(|e| anyhow!("{}", e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))
            .map(|mut d| d.remove(0)),
    )
}

/// The WorkloadEndpoint of a lab pod: `<node>-k8s-<pod>-eth0` in the pod's namespace (Calico's naming).
pub fn workload_endpoint(info: &porin_lab::PodInfo, node: &str) -> Result<porin_model::Document> {
    let (ns, pod) = (&info.namespace, &info.name);
    let v = serde_json::json!({
        "apiVersion": "porin.io/v1",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": format!("{node}-k8s-{pod}-eth0"), "namespace": ns},
        "spec": {
            "node": node,
            "orchestrator": "k8s",
            "pod": pod,
            "endpoint": "eth0",
            "interfaceName": info.host_ifname,
            "mac": info.pod_mac,
            "ipNetworks": [format!("{}/32", info.ipv4)],
        },
    });
    let resource = porin_model::load::to_resource(porin_model::Kind::WorkloadEndpoint, v).map_err(|(p, m)| anyhow!("WorkloadEndpoint {p}: {m}"))?;
    Ok(porin_model::Document { source: "porin lab".into(), doc: 0, prefix: String::new(), resource })
}

fn client(socket: &Path) -> Client {
    Client::new(&ClientArgs::socket(socket.display().to_string()))
}

/// Start `argv` detached (own process group, stdio to `log`), outside any runtime.
fn spawn_detached(argv: &[String], log: &Path) -> Result<ProcRef> {
    let f = std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("opening {}", log.display()))?;
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .env("PORIN_LOG", std::env::var("PORIN_LOG").unwrap_or_else(|_| "info".into()))
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", argv.join(" ")))?;
    let pid = child.id() as i32;
    // Not waited for: it outlives this process. A reaper thread collects it if it dies while we run.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    ProcRef::of(pid).ok_or_else(|| anyhow!("{} exited at once; see {}", argv[0], log.display()))
}

fn kill_hard(p: &ProcRef) {
    if !p.is_alive() {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(p.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let t0 = Instant::now();
    while p.is_alive() && t0.elapsed() < Duration::from_secs(5) {
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stop(p: &ProcRef) -> bool {
    if !p.is_alive() {
        return false;
    }
    let pid = nix::unistd::Pid::from_raw(p.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let t0 = Instant::now();
    while p.is_alive() && t0.elapsed() < Duration::from_secs(3) {
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_hard(p);
    true
}

fn wait_etcd(netns: &str, url: &str, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let ok = Command::new("ip")
            .args(["netns", "exec", netns, "etcdctl", "--endpoints", url, "endpoint", "health"])
            .env("ETCDCTL_API", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if t0.elapsed() > timeout {
            bail!("etcd at {url} (in {netns}) not healthy after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn agent_status(a: &AgentMeta) -> Result<serde_json::Value> {
    let c = client(&a.socket);
    block_on(c.call(Method::GET, "/porin/v1/status", None))?
}

fn wait_agent_ready(a: &AgentMeta, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = agent_status(a)
            && s["synced"] == true
        {
            return Ok(());
        }
        if !a.proc.as_ref().is_some_and(|p| p.is_alive()) || t0.elapsed() > timeout {
            let log = std::fs::read_to_string(&a.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            bail!("agent of node {} not ready (log {}):\n{}", a.node, a.log.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Is this agent enforcing store revision `rev` (and everything before)?
fn programmed(s: &serde_json::Value, rev: Option<u64>, pods: Option<usize>) -> bool {
    let d = &s["dataplane"];
    let prog = d["programmedRevision"].as_u64().unwrap_or(0);
    let policy = s["policyRevision"].as_u64().unwrap_or(0);
    let cache = s["cacheRevision"].as_u64().unwrap_or(0);
    let caught_up = match rev {
        Some(r) => prog >= r || (cache >= r && prog == policy && prog > 0),
        None => prog == policy && prog > 0,
    };
    let eps = d["endpoints"].as_array().map(|a| a.len()).unwrap_or(0);
    caught_up && d["requestedRevision"].as_u64() == Some(prog) && pods.is_none_or(|n| eps >= n)
}

/// Wait until every agent enforces the policy revision that covers store revision `rev` (`None`: the
/// latest it computed).
pub fn wait_programmed(meta: &LabMeta, want: Option<(u64, &[usize])>, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    for (i, a) in meta.agents.iter().enumerate() {
        loop {
            let s = agent_status(a).unwrap_or_default();
            if programmed(&s, want.map(|w| w.0), want.map(|w| w.1[i])) {
                break;
            }
            if t0.elapsed() > timeout {
                bail!(
                    "agent of node {} does not enforce revision {:?} after {timeout:?}: {}",
                    a.node,
                    want.map(|w| w.0),
                    serde_json::to_string(&s["dataplane"]).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Wait until every agent of lab `name` enforces the store's current revision (after `porin apply`).
pub fn wait_current(name: &str, state_dir: &Path, timeout: Duration) -> Result<()> {
    let meta = load_meta(state_dir, name)?.ok_or_else(|| anyhow!("lab {name} is not up"))?;
    let s = agent_status(&meta.agents[0])?;
    let rev = s["storeRevision"].as_u64().unwrap_or(0);
    let zeros = vec![0; meta.agents.len()];
    wait_programmed(&meta, Some((rev, &zeros)), timeout)
}

fn probe_ports(lab: &porin_lab::Lab, port: Option<u16>, protocol: Option<&str>) -> Result<Vec<(u16, Proto)>> {
    let proto = protocol.map(|p| p.parse::<Proto>().map_err(|_| anyhow!("--protocol {p:?}: expected TCP, UDP or SCTP"))).transpose()?;
    let declared: BTreeSet<(Proto, u16)> = lab.pods().iter().flat_map(|p| p.ports.iter().map(|(n, pr)| (*pr, *n))).collect();
    let mut out: Vec<(u16, Proto)> = match (port, proto) {
        (Some(p), Some(pr)) => vec![(p, pr)],
        (Some(p), None) => {
            let d: Vec<_> = declared.iter().filter(|(_, n)| *n == p).map(|(pr, n)| (*n, *pr)).collect();
            if d.is_empty() { vec![(p, Proto::Tcp)] } else { d }
        }
        (None, pr) => declared.iter().filter(|(x, _)| pr.is_none_or(|pr| pr == *x)).map(|(pr, n)| (*n, *pr)).collect(),
    };
    if out.is_empty() {
        bail!("no pod serves a port: pass --port (and --protocol)");
    }
    out.dedup();
    Ok(out)
}

/// The observed matrices as `porin matrix` grids.
pub fn observed_tables(m: &porin_lab::ObservedMatrices) -> String {
    let mut out = String::new();
    for (i, x) in m.matrices.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let allowed: BTreeSet<(&str, &str)> = x.allowed.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        out.push_str(&crate::printers::matrix_grid(x.protocol.as_str(), x.port, &x.pods, &|a, b| {
            allowed.contains(&(x.pods[a].as_str(), x.pods[b].as_str()))
        }));
    }
    out
}

#[derive(Debug, Serialize)]
pub struct FullStatus {
    pub lab: porin_lab::LabStatus,
    pub agents: Vec<serde_json::Value>,
    pub etcd: Option<bool>,
    pub server: Option<PathBuf>,
}

pub fn status(name: &str, state_dir: &Path) -> Result<FullStatus> {
    let lab = porin_lab::status(name, &lab_options(state_dir)?)?;
    let meta = load_meta(state_dir, name)?;
    let agents = meta
        .iter()
        .flat_map(|m| m.agents.iter())
        .map(|a| {
            let alive = a.proc.as_ref().is_some_and(|p| p.is_alive());
            let s = if alive { agent_status(a).ok() } else { None };
            serde_json::json!({"node": a.node, "netns": a.netns, "socket": a.socket, "log": a.log, "pid": a.proc.as_ref().map(|p| p.pid), "alive": alive, "status": s})
        })
        .collect();
    Ok(FullStatus {
        lab,
        agents,
        etcd: meta.as_ref().and_then(|m| m.etcd.as_ref()).map(|e| e.proc.as_ref().is_some_and(|p| p.is_alive())),
        server: meta.map(|m| m.server),
    })
}

fn status_table(s: &FullStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Lab {}: {}", s.lab.name, if s.lab.alive { "up" } else { "down" });
    if let Some(srv) = &s.server {
        let _ = writeln!(out, "API: export PORIN_SERVER={}", srv.display());
    }
    if let Some(e) = s.etcd {
        let _ = writeln!(out, "etcd: {}", if e { "running" } else { "NOT running" });
    }
    for a in &s.agents {
        let st = &a["status"];
        let d = &st["dataplane"];
        let _ = writeln!(
            out,
            "agent {} ({}): {}; policy rev {}, programmed rev {}, {} endpoint(s), last programming {:.1} ms, drops {}",
            a["node"].as_str().unwrap_or("?"),
            a["netns"].as_str().unwrap_or("?"),
            if a["alive"] == true { "running" } else { "NOT running" },
            st["policyRevision"],
            d["programmedRevision"],
            d["endpoints"].as_array().map_or(0, |e| e.len()),
            d["lastProgrammingMillis"].as_f64().unwrap_or(0.0),
            d["drops"].as_object().map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>()),
        );
        for e in d["errors"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  error: {}", e.as_str().unwrap_or(""));
        }
    }
    let _ = writeln!(out, "{:<16} {:<6} {:<16} {:<10} PORTS", "POD", "NODE", "IP", "HOST-IF");
    for p in &s.lab.pods {
        let _ = writeln!(
            out,
            "{:<16} n{:<5} {:<16} {:<10} {}",
            p.key,
            p.node,
            p.ipv4,
            p.host_ifname,
            porin_lab::spec::format_ports(&p.ports)
        );
    }
    if !s.lab.hosts.is_empty() {
        let _ = writeln!(out, "{:<16} {:<6} {:<16} {:<10} PORTS", "EXTERNAL HOST", "VIA", "IP", "NODE-IF");
        for h in &s.lab.hosts {
            let _ = writeln!(
                out,
                "{:<16} n{:<5} {:<16} {:<10} {}",
                h.name,
                h.node,
                h.ipv4,
                h.node_ifname,
                porin_lab::spec::format_ports(&h.ports)
            );
        }
    }
    out
}

/// Unmount every mount under `dir` (the agents' bpffs pins), deepest first.
fn release_mounts(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `porin lab down`: agents, etcd, servers, namespaces, pins, state. Works after a crash.
pub fn down(name: &str, state_dir: &Path) -> Result<porin_lab::DownReport> {
    let meta = load_meta(state_dir, name)?;
    let mut killed = Vec::new();
    if let Some(m) = &meta {
        for a in &m.agents {
            if let Some(p) = &a.proc
                && stop(p)
            {
                killed.push(p.pid);
            }
        }
        if let Some(p) = m.etcd.as_ref().and_then(|e| e.proc.as_ref())
            && stop(p)
        {
            killed.push(p.pid);
        }
        let default = Path::new(crate::client::DEFAULT_SOCKET);
        if m.linked_default_socket && std::fs::read_link(default).ok().as_deref() == Some(m.server.as_path()) {
            let _ = std::fs::remove_file(default);
        }
    }
    let mut r = porin_lab::down(name, &lab_options(state_dir)?)?;
    r.killed.extend(killed);
    let dir = lab_dir(state_dir, name);
    release_mounts(&dir);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        r.errors.push(format!("removing {}: {e}", dir.display()));
    }
    let _ = std::io::stderr().flush();
    Ok(r)
}

/// `porin lab-serve ARGS...`: the body of the detached pod-server process.
pub fn serve(args: Vec<String>) -> Result<ExitCode> {
    porin_lab::serve_main(args)?;
    Ok(ExitCode::SUCCESS)
}
