//! The lab's state file and process liveness.
//!
//! A lab is *alive* while any of its owner processes is alive: the process creating it (while
//! `phase` is `creating`, or for in-process servers) and the pod-server processes. A process is
//! identified by pid **and** start time, so a recycled pid never keeps a dead lab alive and is
//! never killed by `down`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::spec::{LabSpec, Proto};

/// Default directory of state files.
pub const DEFAULT_STATE_DIR: &str = "/run/porin/lab";

/// Lock serialising the moments when namespaces change hands: `up` creating and marking its
/// namespaces, and `cleanup_stale` judging and deleting marked ones. Global (not per state
/// directory) because markers can point into any state directory.
pub const LOCK_PATH: &str = "/run/porin/lab.lock";

/// Hold [`LOCK_PATH`] exclusively until the guard drops.
pub fn global_lock() -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = Path::new(LOCK_PATH);
    let io = |source| LabError::StateIo { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| io(e.into()))
}

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// A process: pid plus its start time (clock ticks since boot, `/proc/<pid>/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    pub start_time: u64,
}

fn stat_fields(pid: i32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl ProcRef {
    /// The calling process.
    pub fn current() -> ProcRef {
        Self::of(std::process::id() as i32).unwrap_or(ProcRef { pid: std::process::id() as i32, start_time: 0 })
    }

    /// A running process by pid.
    pub fn of(pid: i32) -> Option<ProcRef> {
        stat_fields(pid).map(|(_, start_time)| ProcRef { pid, start_time })
    }

    /// Is this exact process still running (zombies count as dead)?
    pub fn is_alive(&self) -> bool {
        matches!(stat_fields(self.pid), Some((state, start)) if start == self.start_time && state != 'Z' && state != 'X')
    }
}

/// Lifecycle phase recorded in the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `up` is running; the creator owns the lab.
    Creating,
    /// `up` finished.
    Up,
}

/// A node as built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub index: u32,
    pub netns: String,
    pub netns_path: PathBuf,
    pub pod_cidr_v4: Ipv4Net,
    pub pod_cidr_v6: Option<Ipv6Net>,
    /// Uplink interface to the underlay (multi-node labs).
    pub underlay_ifname: Option<String>,
    pub underlay_ipv4: Option<Ipv4Addr>,
    pub underlay_ipv6: Option<Ipv6Addr>,
}

/// A pod as built: everything a dataplane needs to attach to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub name: String,
    /// Node index.
    pub node: u32,
    /// The pod's own namespace.
    pub netns: String,
    pub netns_path: PathBuf,
    /// The node namespace holding the host end of the pod's veth.
    pub node_netns: String,
    pub node_netns_path: PathBuf,
    /// Host end of the veth (in the node netns): where a dataplane attaches.
    pub host_ifname: String,
    /// Its ifindex in the node netns.
    pub host_ifindex: u32,
    /// Pod end of the veth (in the pod netns).
    pub pod_ifname: String,
    pub pod_ifindex: u32,
    pub pod_mac: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub ports: Vec<(u16, Proto)>,
}

/// An external host as built (see [`crate::spec::HostSpec`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: String,
    /// Its gateway node.
    pub node: u32,
    pub netns: String,
    pub netns_path: PathBuf,
    pub node_netns: String,
    /// The node's end of its link (`porinh<k>`).
    pub node_ifname: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub ports: Vec<(u16, Proto)>,
}

/// The state file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub name: String,
    pub phase: Phase,
    pub spec: LabSpec,
    /// The process that ran `up`.
    pub creator: ProcRef,
    /// Does the creator keep the lab alive after `up` (in-process or no servers)?
    pub creator_owns: bool,
    /// Pod-server processes.
    pub servers: Vec<ProcRef>,
    /// Every namespace of the lab (created or about to be).
    pub namespaces: Vec<String>,
    pub underlay_netns: Option<String>,
    pub nodes: Vec<NodeInfo>,
    pub pods: Vec<PodInfo>,
    /// External hosts.
    #[serde(default)]
    pub hosts: Vec<HostInfo>,
    /// Where the pod servers write their log.
    pub server_log: Option<PathBuf>,
    /// The lab's control plane (its agents and etcd), once [`crate::cluster::up`] started it; `None` for a lab
    /// of namespaces only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlPlane>,
}

/// The processes [`crate::cluster`] supervises for a lab: one agent per node, etcd for several nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlane {
    pub nodes: u32,
    /// `<state-dir>/<lab>.d`: agent data, sockets, logs, bpffs pins, etcd.
    pub dir: PathBuf,
    pub agents: Vec<AgentProc>,
    pub etcd: Option<EtcdProc>,
    /// The socket clients should use (node 0's agent).
    pub server: PathBuf,
    /// The default API socket was linked to `server` (removed again by `down`).
    pub linked_default_socket: Option<PathBuf>,
}

/// One node's agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentProc {
    pub node: String,
    pub netns: String,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub argv: Vec<String>,
    pub proc: Option<ProcRef>,
}

/// The lab's etcd (multi-node labs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdProc {
    pub argv: Vec<String>,
    pub url: String,
    pub log: PathBuf,
    pub proc: Option<ProcRef>,
}

impl LabState {
    /// Live owner processes (see the module docs).
    pub fn live_owners(&self) -> Vec<ProcRef> {
        let mut out: Vec<ProcRef> = self.servers.iter().copied().filter(ProcRef::is_alive).collect();
        if (self.phase == Phase::Creating || self.creator_owns) && self.creator.is_alive() {
            out.push(self.creator);
        }
        out
    }

    /// Is any owner alive?
    pub fn is_alive(&self) -> bool {
        !self.live_owners().is_empty()
    }
}

/// Path of a lab's state file.
pub fn state_path(dir: &Path, lab: &str) -> PathBuf {
    dir.join(format!("{lab}.json"))
}

/// Load a state file; `Ok(None)` if it does not exist.
pub fn load(path: &Path) -> Result<Option<LabState>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| LabError::StateJson { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LabError::StateIo { path: path.to_path_buf(), source }),
    }
}

/// Write a state file atomically (temp file + rename).
pub fn save(path: &Path, state: &LabState) -> Result<()> {
    let io = |source| LabError::StateIo { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Remove a state file (ok if missing).
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LabError::StateIo { path: path.to_path_buf(), source }),
    }
}

/// Lab names with a state file in `dir`, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_fake_is_not() {
        let me = ProcRef::current();
        assert!(me.is_alive());
        assert!(!ProcRef { start_time: me.start_time + 1, ..me }.is_alive());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let r = ProcRef::of(child.id() as i32);
        child.wait().unwrap();
        if let Some(r) = r {
            assert!(!r.is_alive());
        }
    }
}
