//! A lab's control plane: a cluster out of network namespaces on this machine, enforced by real Porin agents.
//!
//! [`up`] builds the namespaces and veths ([`crate::up`]), starts the pod servers (detached), starts ONE agent
//! per node, detached, inside that node's network namespace (`<agent command> --netns porin-<lab>-n<i>`: the
//! agent joins it before starting any thread; `ip netns exec` would also give it a private mount namespace, and
//! the bpffs it mounts for its pins would vanish with it, taking enforcement down on an agent restart), applies
//! the manifests through the normal API (Pods as written, plus their lab address in `status`; each pod gets a
//! WorkloadEndpoint binding it to its host-side veth on node `n<i>`, written as admin) and returns once every
//! agent enforces the applied revision.
//!
//! * External hosts ([`HostSpec`]): a namespace outside every pod CIDR, routed through a node the way
//!   north-south traffic leaves a cluster, serving its ports; no WorkloadEndpoint, so flows to it are enriched
//!   as `world` (or as the GlobalNetworkSet covering it).
//! * One node: the agent uses its embedded store.
//! * Several nodes: the lab starts a real etcd inside node 0's namespace, listening on node 0's underlay
//!   address (reachable from every node over the lab underlay, never from the root namespace), and every agent
//!   uses it; clients talk to node 0's agent over its Unix socket.
//!
//! The lab has ONE state file (`<state-dir>/<lab>.json`, [`crate::state::LabState`]): its namespaces, pods and
//! servers, and here its [`ControlPlane`] (agents, etcd, the API socket). Everything else the lab owns lives
//! under `<state-dir>/<lab>.d/` (agent data, sockets, logs, bpffs pins, etcd) plus the namespaces
//! `porin-<lab>-*`; nothing in the root network namespace is touched.
//!
//! This module never links an HTTP client: the agents' API is reached through [`AgentApi`], which the caller
//! implements (the CLI with `porin-client`).

mod console;
mod manifests;
mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

pub use console::{ConsoleLogin, agent_args as console_agent_args, login as console_login, pick_port, written as console_written};
pub use manifests::workload_endpoint;

use crate::error::{LabError, Result};
use crate::lab::{self, DownReport, Lab, LabOptions, LabStatus};
use crate::spec::HostSpec;
pub use crate::state::{AgentProc, ControlPlane, EtcdProc};
use crate::state::{self, DEFAULT_STATE_DIR};

/// Default lab name.
pub const DEFAULT_LAB: &str = "lab";

/// What the supervisor's API calls fail with (the implementation's own error, shown as it is).
pub type ApiError = Box<dyn std::error::Error + Send + Sync>;

/// The agents' API as the supervisor uses it: JSON requests over an agent's Unix socket, as admin (peer uid 0).
/// A non-2xx answer is an error.
pub trait AgentApi {
    fn get(&self, socket: &Path, path: &str) -> std::result::Result<Value, ApiError>;
    fn post(&self, socket: &Path, path: &str, body: Value) -> std::result::Result<Value, ApiError>;
}

/// `up`'s request.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub name: String,
    /// State directory and pod-server mode of the lab.
    pub lab: LabOptions,
    /// Manifests: Namespaces, Pods (their status.podIP; every pod serves every containerPort any pod declares),
    /// Honeypods, policies.
    pub files: Vec<PathBuf>,
    pub nodes: u32,
    /// How long to wait for enforcement.
    pub timeout: Duration,
    /// Serve the web console on this loopback port of the host (node 0's agent).
    pub console_port: Option<u16>,
    /// External hosts; those without ports serve every port the pods serve.
    pub hosts: Vec<HostSpec>,
    /// The agent command: program and leading arguments (`porin agent`); `--netns`, `--node`, `--data-dir`,
    /// `--socket`, `--dataplane ebpf` and the store's flags follow.
    pub agent: Vec<String>,
    /// Extra arguments for every agent.
    pub agent_args: Vec<String>,
    /// The default API socket, linked to node 0's agent when it is free (only for the default state directory).
    pub default_socket: Option<PathBuf>,
}

/// `<state-dir>/<lab>.d`.
pub fn lab_dir(opts: &LabOptions, name: &str) -> PathBuf {
    std::path::absolute(&opts.state_dir).unwrap_or_else(|_| opts.state_dir.clone()).join(format!("{name}.d"))
}

/// The control plane of lab `name`, from its state file (`None`: no such lab, or one without agents).
pub fn control(opts: &LabOptions, name: &str) -> Result<Option<ControlPlane>> {
    Ok(state::load(&opts.state_path(name))?.and_then(|s| s.control))
}

/// The control plane whose agent listens on `socket` (`<state-dir>/<lab>.d/n<i>.sock`), if it is a lab's.
pub fn control_of_socket(socket: &Path) -> Option<ControlPlane> {
    let dir = socket.parent()?;
    let name = dir.file_name()?.to_str()?.strip_suffix(".d")?;
    state::load(&state::state_path(dir.parent()?, name)).ok().flatten()?.control
}

fn save_control(opts: &LabOptions, name: &str, c: &ControlPlane) -> Result<()> {
    let path = opts.state_path(name);
    let mut st = state::load(&path)?.ok_or_else(|| LabError::NotFound { lab: name.to_string(), path: path.clone() })?;
    st.control = Some(c.clone());
    state::save(&path, &st)
}

/// The lab a command means: `name`, else the only one with a control plane, else [`DEFAULT_LAB`].
pub fn resolve_name(name: Option<&str>, opts: &LabOptions) -> String {
    if let Some(n) = name {
        return n.to_string();
    }
    // Only labs with agents: never guess a lab someone else (a test, a benchmark) owns in the same state
    // directory.
    let ours: Vec<String> = lab::list(opts).into_iter().filter(|n| control(opts, n).ok().flatten().is_some()).collect();
    match ours.as_slice() {
        [one] => one.clone(),
        _ => DEFAULT_LAB.to_string(),
    }
}

/// Bring a lab up with its control plane (see the module docs). A dead previous incarnation is taken down
/// first; on failure everything started is taken down again.
pub fn up(o: &UpOptions, api: &dyn AgentApi) -> Result<ControlPlane> {
    if o.nodes == 0 {
        return Err(LabError::Usage("--nodes must be at least 1".into()));
    }
    let docs = porin_model::load_paths(&o.files)
        .map_err(|errs| LabError::Manifests(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))?;
    let spec = manifests::lab_spec(&o.name, o.nodes, &docs, &o.hosts)?;

    // A dead previous incarnation: clean it first.
    if let Some(old) = control(&o.lab, &o.name)? {
        if old.agents.iter().any(|a| a.proc.as_ref().is_some_and(|p| p.is_alive()))
            && lab::status(&o.name, &o.lab).map(|s| s.alive).unwrap_or(false)
        {
            return Err(LabError::Usage(format!("lab {} is already up (porin lab down --name {} first)", o.name, o.name)));
        }
        down(&o.name, &o.lab)?;
    }
    process::release_mounts(&lab_dir(&o.lab, &o.name));

    let lab = lab::up(&spec, &o.lab)?;
    match start(o, &lab, &docs, api) {
        Ok(c) => Ok(c),
        Err(e) => {
            let _ = down(&o.name, &o.lab);
            Err(e)
        }
    }
}

fn start(o: &UpOptions, lab: &Lab, docs: &[porin_model::Document], api: &dyn AgentApi) -> Result<ControlPlane> {
    let dir = lab_dir(&o.lab, &o.name);
    std::fs::create_dir_all(&dir).map_err(LabError::io(format!("creating {}", dir.display())))?;
    let mut c = ControlPlane {
        nodes: o.nodes,
        dir: dir.clone(),
        agents: Vec::new(),
        etcd: None,
        server: dir.join("n0.sock"),
        linked_default_socket: None,
    };
    let mut store_args: Vec<String> = Vec::new();
    if o.nodes > 1 {
        let ip = lab.nodes()[0].underlay_ipv4.ok_or_else(|| LabError::Usage("node 0 has no underlay address".into()))?;
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
        let proc = process::spawn_detached(&argv, &log).map_err(|e| LabError::Context {
            what: "starting etcd (apt-get install etcd-server)".into(),
            source: Box::new(e),
        })?;
        c.etcd = Some(EtcdProc { argv, url: url.clone(), log, proc: Some(proc) });
        save_control(&o.lab, &o.name, &c)?;
        process::wait_etcd(&lab.nodes()[0].netns, &url, Duration::from_secs(20))?;
        store_args = vec!["--datastore".into(), "etcd".into(), "--etcd-endpoints".into(), url];
    }
    for n in lab.nodes() {
        let node = format!("n{}", n.index);
        let data_dir = dir.join(&node);
        let socket = dir.join(format!("{node}.sock"));
        let log = dir.join(format!("{node}.log"));
        let mut argv: Vec<String> = o.agent.clone();
        argv.extend([
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
        ]);
        argv.extend(store_args.iter().cloned());
        if let (0, Some(port)) = (n.index, o.console_port) {
            argv.extend(console::agent_args(port));
        }
        argv.extend(o.agent_args.iter().cloned());
        let proc = process::spawn_detached(&argv, &log)?;
        c.agents.push(AgentProc { node, netns: n.netns.clone(), socket, data_dir, log, argv, proc: Some(proc) });
        save_control(&o.lab, &o.name, &c)?;
    }
    for a in &c.agents {
        wait_agent_ready(api, a, Duration::from_secs(30))?;
    }
    // The console's login token first: a token write advances the store revision without a resource change,
    // so made after the manifests it would leave `porin lab wait` waiting for a revision no agent enforces.
    if let Some(port) = o.console_port {
        console::login(api, &c.server, &c.dir, port)?;
    }

    let docs = manifests::applied(docs, lab)?;
    let items: Vec<Value> = docs.iter().map(|d| d.resource.to_json()).collect();
    api.post(&c.server, "/porin/v1/apply", serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))
        .map_err(LabError::Api)?;
    let s = api.get(&c.server, "/porin/v1/status").map_err(LabError::Api)?;
    let rev = s["storeRevision"].as_u64().unwrap_or(0);
    let pods_per_node: Vec<usize> = (0..o.nodes).map(|i| lab.pods().iter().filter(|p| p.node == i).count()).collect();
    wait_programmed(api, &c, Some((rev, &pods_per_node)), o.timeout)?;

    // The default socket, when free, reaches this lab (only for the default state dir).
    if let Some(default) = &o.default_socket
        && std::path::absolute(&o.lab.state_dir).ok() == std::path::absolute(DEFAULT_STATE_DIR).ok()
        && std::fs::symlink_metadata(default).is_err()
    {
        if let Some(parent) = default.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if std::os::unix::fs::symlink(&c.server, default).is_ok() {
            c.linked_default_socket = Some(default.clone());
        }
    }
    save_control(&o.lab, &o.name, &c)?;
    Ok(c)
}

fn agent_status(api: &dyn AgentApi, a: &AgentProc) -> Result<Value> {
    api.get(&a.socket, "/porin/v1/status").map_err(LabError::Api)
}

fn wait_agent_ready(api: &dyn AgentApi, a: &AgentProc, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = agent_status(api, a)
            && s["synced"] == true
        {
            return Ok(());
        }
        if !a.proc.as_ref().is_some_and(|p| p.is_alive()) || t0.elapsed() > timeout {
            let log = std::fs::read_to_string(&a.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            return Err(LabError::NotReady(format!(
                "agent of node {} not ready (log {}):\n{}",
                a.node,
                a.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Is this agent enforcing store revision `rev` (and everything before)?
fn programmed(s: &Value, rev: Option<u64>, pods: Option<usize>) -> bool {
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

/// Wait until every agent enforces the policy revision that covers store revision `want.0` with at least
/// `want.1[i]` endpoints on node `i` (`None`: the latest revision it computed).
pub fn wait_programmed(api: &dyn AgentApi, c: &ControlPlane, want: Option<(u64, &[usize])>, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    for (i, a) in c.agents.iter().enumerate() {
        loop {
            let s = agent_status(api, a).unwrap_or_default();
            if programmed(&s, want.map(|w| w.0), want.map(|w| w.1[i])) {
                break;
            }
            if t0.elapsed() > timeout {
                return Err(LabError::NotReady(format!(
                    "agent of node {} does not enforce revision {:?} after {timeout:?}: {}",
                    a.node,
                    want.map(|w| w.0),
                    serde_json::to_string(&s["dataplane"]).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Wait until every agent of lab `name` enforces the store's current revision (after an apply).
pub fn wait_current(api: &dyn AgentApi, name: &str, opts: &LabOptions, timeout: Duration) -> Result<()> {
    let c = control(opts, name)?.ok_or_else(|| LabError::NotUp { lab: name.to_string() })?;
    let s = agent_status(api, &c.agents[0])?;
    let rev = s["storeRevision"].as_u64().unwrap_or(0);
    let zeros = vec![0; c.agents.len()];
    wait_programmed(api, &c, Some((rev, &zeros)), timeout)
}

/// Stop (SIGKILL) node `node`'s agent, for tests of crashes and restarts.
pub fn kill_agent(name: &str, opts: &LabOptions, node: u32) -> Result<()> {
    let mut c = agent_control(name, opts, node)?;
    if let Some(p) = c.agents[node as usize].proc.take() {
        process::kill_hard(&p);
    }
    save_control(opts, name, &c)
}

/// Start node `node`'s agent again (as `up` started it) and wait until it enforces its latest revision.
pub fn start_agent(api: &dyn AgentApi, name: &str, opts: &LabOptions, node: u32) -> Result<()> {
    let mut c = agent_control(name, opts, node)?;
    let i = node as usize;
    if c.agents[i].proc.as_ref().is_some_and(|p| p.is_alive()) {
        return Err(LabError::Usage(format!("agent of node {node} is running")));
    }
    c.agents[i].proc = Some(process::spawn_detached(&c.agents[i].argv, &c.agents[i].log)?);
    save_control(opts, name, &c)?;
    wait_agent_ready(api, &c.agents[i], Duration::from_secs(30))?;
    wait_programmed(api, &c, None, Duration::from_secs(30))
}

fn agent_control(name: &str, opts: &LabOptions, node: u32) -> Result<ControlPlane> {
    let c = control(opts, name)?.ok_or_else(|| LabError::NotUp { lab: name.to_string() })?;
    if node as usize >= c.agents.len() {
        return Err(LabError::Usage(format!("--node {node}: the lab has {} node(s)", c.agents.len())));
    }
    Ok(c)
}

/// A lab with its agents, etcd and API socket.
#[derive(Debug, Serialize)]
pub struct FullStatus {
    pub lab: LabStatus,
    /// Per agent: node, netns, socket, log, pid, alive, and its `/porin/v1/status` when it answers.
    pub agents: Vec<Value>,
    pub etcd: Option<bool>,
    pub server: Option<PathBuf>,
}

/// What exists of lab `name`, with its agents' status.
pub fn status(api: &dyn AgentApi, name: &str, opts: &LabOptions) -> Result<FullStatus> {
    let lab = lab::status(name, opts)?;
    let c = control(opts, name)?;
    let agents = c
        .iter()
        .flat_map(|m| m.agents.iter())
        .map(|a| {
            let alive = a.proc.as_ref().is_some_and(|p| p.is_alive());
            let s = if alive { agent_status(api, a).ok() } else { None };
            serde_json::json!({"node": a.node, "netns": a.netns, "socket": a.socket, "log": a.log, "pid": a.proc.as_ref().map(|p| p.pid), "alive": alive, "status": s})
        })
        .collect();
    Ok(FullStatus {
        lab,
        agents,
        etcd: c.as_ref().and_then(|m| m.etcd.as_ref()).map(|e| e.proc.as_ref().is_some_and(|p| p.is_alive())),
        server: c.map(|m| m.server),
    })
}

/// Take a lab down: agents, etcd, servers, namespaces, pins, state. Works after a crash.
pub fn down(name: &str, opts: &LabOptions) -> Result<DownReport> {
    let c = control(opts, name)?;
    let mut killed = Vec::new();
    if let Some(m) = &c {
        for p in m.agents.iter().filter_map(|a| a.proc.as_ref()).chain(m.etcd.iter().filter_map(|e| e.proc.as_ref())) {
            if process::stop(p) {
                killed.push(p.pid);
            }
        }
        if let Some(default) = &m.linked_default_socket
            && std::fs::read_link(default).ok().as_deref() == Some(m.server.as_path())
        {
            let _ = std::fs::remove_file(default);
        }
    }
    let mut r = lab::down(name, opts)?;
    r.killed.extend(killed);
    let dir = lab_dir(opts, name);
    process::release_mounts(&dir);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        r.errors.push(format!("removing {}: {e}", dir.display()));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn programmed_needs_the_revision_the_requested_one_and_the_endpoints() {
        let s = |prog: u64, req: u64, policy: u64, cache: u64, eps: usize| {
            json!({"policyRevision": policy, "cacheRevision": cache,
                   "dataplane": {"programmedRevision": prog, "requestedRevision": req, "endpoints": vec![json!({}); eps]}})
        };
        assert!(programmed(&s(7, 7, 7, 7, 2), Some(7), Some(2)));
        assert!(!programmed(&s(6, 6, 6, 6, 2), Some(7), Some(2)), "behind the store revision");
        assert!(programmed(&s(6, 6, 6, 7, 2), Some(7), Some(2)), "the cache saw 7 and the policy did not change");
        assert!(!programmed(&s(7, 8, 7, 8, 2), Some(7), Some(2)), "a newer request is still being programmed");
        assert!(!programmed(&s(7, 7, 7, 7, 1), Some(7), Some(2)), "an endpoint is missing");
        assert!(!programmed(&s(0, 0, 0, 0, 0), None, None), "nothing programmed yet");
    }

    fn state_with(name: &str, c: ControlPlane) -> crate::state::LabState {
        crate::state::LabState {
            version: crate::state::STATE_VERSION,
            name: name.into(),
            phase: crate::state::Phase::Up,
            spec: crate::LabSpec::new(name, 1),
            creator: crate::state::ProcRef::current(),
            creator_owns: false,
            servers: vec![],
            namespaces: vec![],
            underlay_netns: None,
            nodes: vec![],
            pods: vec![],
            hosts: vec![],
            server_log: None,
            control: Some(c),
        }
    }

    #[test]
    fn down_stops_the_recorded_agents_and_leaves_a_default_socket_linked_elsewhere() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = LabOptions::with_state_dir(tmp.path());
        let dir = lab_dir(&opts, "porinut");
        std::fs::create_dir_all(&dir).unwrap();
        // An "agent" (a long sleep in its own process) and a default socket that points at another lab's server.
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let agent = crate::state::ProcRef::of(child.id() as i32).unwrap();
        let default = tmp.path().join("porin.sock");
        std::os::unix::fs::symlink(tmp.path().join("other.d/n0.sock"), &default).unwrap();
        let c = ControlPlane {
            nodes: 1,
            dir: dir.clone(),
            agents: vec![AgentProc {
                node: "n0".into(),
                netns: "porin-porinut-n0".into(),
                socket: dir.join("n0.sock"),
                data_dir: dir.join("n0"),
                log: dir.join("n0.log"),
                argv: vec!["sleep".into(), "30".into()],
                proc: Some(agent),
            }],
            etcd: None,
            server: dir.join("n0.sock"),
            linked_default_socket: Some(default.clone()),
        };
        state::save(&opts.state_path("porinut"), &state_with("porinut", c)).unwrap();
        let r = down("porinut", &opts).unwrap();
        let _ = child.wait();
        assert!(r.killed.contains(&agent.pid), "{r:?}");
        assert!(!agent.is_alive());
        assert!(!opts.state_path("porinut").exists() && !dir.exists(), "the one state file and the lab dir are gone");
        assert!(std::fs::symlink_metadata(&default).is_ok(), "a default socket linked to another server stays");
    }

    #[test]
    fn a_dead_labs_teardown_stops_its_agents_too() {
        // `up` after a crash, or cleanup_stale, tears a dead lab down from its state file alone: the agents it
        // records must not outlive it.
        let tmp = tempfile::tempdir().unwrap();
        let opts = LabOptions::with_state_dir(tmp.path());
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let agent = crate::state::ProcRef::of(child.id() as i32).unwrap();
        let dir = lab_dir(&opts, "porinud");
        let c = ControlPlane {
            nodes: 1,
            dir: dir.clone(),
            agents: vec![],
            etcd: Some(EtcdProc { argv: vec![], url: "http://10.242.0.1:2379".into(), log: dir.join("etcd.log"), proc: Some(agent) }),
            server: dir.join("n0.sock"),
            linked_default_socket: None,
        };
        state::save(&opts.state_path("porinud"), &state_with("porinud", c)).unwrap();
        let r = crate::down("porinud", &opts).unwrap();
        let _ = child.wait();
        assert!(r.killed.contains(&agent.pid), "{r:?}");
        assert!(!agent.is_alive());
    }

    #[test]
    fn the_control_plane_of_a_socket_is_found_in_the_labs_one_state_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("x.d");
        let c = ControlPlane {
            nodes: 1,
            dir: dir.clone(),
            agents: vec![],
            etcd: None,
            server: dir.join("n0.sock"),
            linked_default_socket: None,
        };
        let st = state_with("x", c.clone());
        state::save(&state::state_path(tmp.path(), "x"), &st).unwrap();
        assert_eq!(control_of_socket(&dir.join("n0.sock")), Some(c.clone()));
        assert_eq!(control(&LabOptions::with_state_dir(tmp.path()), "x").unwrap(), Some(c));
        assert_eq!(control_of_socket(&tmp.path().join("y.d/n0.sock")), None);
        assert_eq!(resolve_name(None, &LabOptions::with_state_dir(tmp.path())), "x");
    }
}
