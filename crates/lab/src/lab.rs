//! Lab lifecycle: [`up`], [`Lab::open`], [`status`], [`down`], [`cleanup_stale`], [`exec`].
//!
//! Order of `up`: validate and plan (pure) → tear down a dead previous incarnation → write the
//! state file (phase `creating`, listing every namespace about to exist) → create and mark the
//! namespaces → links, addresses, routes, neighbours → sysctls → read ifindexes → start the pod
//! servers and wait until they are bound → state phase `up`. Any failure tears down what exists.
//!
//! Every namespace carries a marker, its loopback alias `porin-lab state=<state file>`, so
//! [`cleanup_stale`] can tell lab namespaces from anyone else's `porin-*` namespaces and find
//! their owner even when the state file is gone.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use crate::error::{LabError, Result};
use crate::netns::{self, MARKER_PREFIX};
use crate::server::{PodServe, READY_LINE, ServeConfig, spawn_server_threads};
use crate::spec::{self, LabPlan, LabSpec};
use crate::state::{self, HostInfo, LabState, NodeInfo, Phase, PodInfo, ProcRef};

/// How the pod servers of a lab run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMode {
    /// A detached child process `program args... --netns <ns> --ports <list> ...` that calls
    /// [`crate::serve_main`] with the trailing arguments (the CLI: `porin lab-serve`). It runs in
    /// its own process group and outlives the process that ran `up`; its pid is in the state file.
    Spawn { program: PathBuf, args: Vec<String> },
    /// Threads of the calling process; the lab lives as long as this process.
    InProcess,
    /// No servers (every probe is blocked); the lab lives as long as this process.
    None,
}

impl ServerMode {
    /// Spawn the running executable with `args` (e.g. `["lab-serve"]`) as the server process.
    pub fn current_exe(args: &[&str]) -> Result<ServerMode> {
        let program = std::env::current_exe().map_err(|source| LabError::Spawn { command: "current_exe".into(), source })?;
        Ok(ServerMode::Spawn { program, args: args.iter().map(|s| s.to_string()).collect() })
    }
}

/// Where the lab keeps state, and how it runs its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// Directory of state files (default [`state::DEFAULT_STATE_DIR`]).
    pub state_dir: PathBuf,
    pub servers: ServerMode,
    /// How long `up` waits for the servers to bind.
    pub ready_timeout: Duration,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            state_dir: PathBuf::from(state::DEFAULT_STATE_DIR),
            servers: ServerMode::InProcess,
            ready_timeout: Duration::from_secs(10),
        }
    }
}

impl LabOptions {
    /// Default options with another state directory.
    pub fn with_state_dir(dir: impl Into<PathBuf>) -> Self {
        LabOptions { state_dir: dir.into(), ..Default::default() }
    }

    /// The lab's state file.
    pub fn state_path(&self, lab: &str) -> PathBuf {
        let dir = std::path::absolute(&self.state_dir).unwrap_or_else(|_| self.state_dir.clone());
        state::state_path(&dir, lab)
    }
}

/// A lab that is up (loaded from its state file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    state: LabState,
    state_path: PathBuf,
}

impl Lab {
    /// Load a lab from its state file.
    pub fn open(name: &str, opts: &LabOptions) -> Result<Lab> {
        spec::validate_lab_name(name)?;
        let path = opts.state_path(name);
        match state::load(&path)? {
            Some(state) => Ok(Lab { state, state_path: path }),
            None => Err(LabError::NotFound { lab: name.to_string(), path }),
        }
    }

    /// Lab id.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Pods in spec order (the index is the `k` in `porin-<lab>-p<k>`).
    pub fn pods(&self) -> &[PodInfo] {
        &self.state.pods
    }

    /// Nodes by index.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.state.nodes
    }

    /// A pod by key `namespace/name`.
    pub fn pod(&self, key: &str) -> Result<&PodInfo> {
        self.state
            .pods
            .iter()
            .find(|p| p.key == key)
            .ok_or_else(|| LabError::UnknownPod { lab: self.name().to_string(), pod: key.to_string() })
    }

    /// External hosts in spec order (the index is the `k` in `porin-<lab>-h<k>`).
    pub fn hosts(&self) -> &[HostInfo] {
        &self.state.hosts
    }

    /// An external host by name.
    pub fn host(&self, name: &str) -> Result<&HostInfo> {
        self.state
            .hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::UnknownPod { lab: self.name().to_string(), pod: name.to_string() })
    }

    /// The namespace of a pod (`namespace/name`) or of an external host (`name`, no `/`).
    pub fn netns_of(&self, who: &str) -> Result<&str> {
        if who.contains('/') { Ok(&self.pod(who)?.netns) } else { Ok(&self.host(who)?.netns) }
    }

    /// The underlay namespace (multi-node labs).
    pub fn underlay_netns(&self) -> Option<&str> {
        self.state.underlay_netns.as_deref()
    }

    /// The spec the lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.state.spec
    }

    /// The full state as recorded.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// Path of the state file.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// [`exec`] on this lab.
    pub fn exec<S: AsRef<str>>(&self, pod: &str, argv: &[S]) -> Result<Output> {
        exec(self, pod, argv)
    }

    /// Take this lab down ([`down`]).
    pub fn down(self) -> Result<DownReport> {
        Ok(teardown(self.state.name.as_str(), Some(&self.state), &self.state_path))
    }

    /// Tie the lab's lifetime to a value: the lab is taken down when the guard drops (tests,
    /// benchmarks).
    pub fn guard(self) -> LabGuard {
        LabGuard(Some(self))
    }
}

/// Takes its lab down on drop; dereferences to [`Lab`].
#[derive(Debug)]
pub struct LabGuard(Option<Lab>);

impl std::ops::Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.0.as_ref().expect("lab present until drop")
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            let report = teardown(lab.state.name.as_str(), Some(&lab.state), &lab.state_path);
            if !report.errors.is_empty() {
                tracing::warn!(lab = %lab.state.name, errors = ?report.errors, "teardown on drop");
            }
        }
    }
}

/// Bring a lab up. Returns once every namespace, link and server is ready.
///
/// A previous incarnation of the same lab whose owners are dead is cleaned up first; one that is
/// alive makes this fail with [`LabError::AlreadyUp`].
pub fn up(spec: &LabSpec, opts: &LabOptions) -> Result<Lab> {
    let plan = spec::plan(spec)?;
    let name = plan.name.as_str();
    let path = opts.state_path(name);

    // Until our namespaces exist, carry markers and a state file with a live creator, nobody may
    // judge them: hold the global lock (cleanup_stale takes it too).
    let lock = state::global_lock()?;
    if let Some(old) = state::load(&path).unwrap_or(None) {
        let owners = old.live_owners();
        if !owners.is_empty() {
            return Err(LabError::AlreadyUp { lab: name.to_string(), pids: owners.iter().map(|o| o.pid).collect() });
        }
        tracing::info!(lab = name, "removing dead previous incarnation");
        teardown(name, Some(&old), &path);
    }
    for ns in netns::list_netns().into_iter().filter(|ns| spec::is_lab_netns(name, ns)) {
        if let Some(owner) = netns::read_marker(&ns).filter(|m| Path::new(m) != path)
            && let Ok(Some(st)) = state::load(Path::new(&owner))
        {
            let live = st.live_owners();
            if !live.is_empty() {
                return Err(LabError::AlreadyUp { lab: name.to_string(), pids: live.iter().map(|o| o.pid).collect() });
            }
        }
        tracing::info!(lab = name, netns = %ns, "removing leftover namespace");
        netns::delete_netns(&ns)?;
    }

    let mut st = LabState {
        version: state::STATE_VERSION,
        name: name.to_string(),
        phase: Phase::Creating,
        spec: spec.clone(),
        creator: ProcRef::current(),
        creator_owns: !matches!(opts.servers, ServerMode::Spawn { .. }),
        servers: Vec::new(),
        namespaces: plan.namespaces(),
        underlay_netns: plan.underlay_netns.clone(),
        nodes: Vec::new(),
        pods: Vec::new(),
        hosts: Vec::new(),
        server_log: None,
        control: None,
    };
    state::save(&path, &st)?;
    let marker = format!("{MARKER_PREFIX}{}", path.display());
    let early = spec::early_sysctls();
    let created = plan.namespaces().iter().try_for_each(|ns| {
        netns::create_netns(ns, &marker)?;
        netns::write_sysctls(ns, &early)
    });
    drop(lock);
    if let Err(e) = created {
        teardown(name, Some(&st), &path);
        return Err(e);
    }
    match build(&plan, &mut st, &path, opts) {
        Ok(()) => Ok(Lab { state: st, state_path: path }),
        Err(e) => {
            tracing::warn!(lab = name, error = %e, "up failed; tearing down");
            teardown(name, Some(&st), &path);
            Err(e)
        }
    }
}

fn build(plan: &LabPlan, st: &mut LabState, path: &Path, opts: &LabOptions) -> Result<()> {
    let cmds = spec::link_commands(plan);
    for (ns, group) in spec::group_by_netns(&cmds) {
        let args: Vec<Vec<String>> = group.into_iter().map(|c| c.args.clone()).collect();
        netns::ip_batch(ns, &args)?;
    }
    for node in &plan.nodes {
        netns::write_sysctls(&node.netns, &spec::node_sysctls(plan, node.index))?;
    }

    let mut node_links = Vec::new();
    for node in &plan.nodes {
        node_links.push(netns::link_indexes(&node.netns)?);
        st.nodes.push(NodeInfo {
            index: node.index,
            netns: node.netns.clone(),
            netns_path: netns::netns_path(&node.netns),
            pod_cidr_v4: node.pod_cidr_v4,
            pod_cidr_v6: plan.ipv6.then_some(node.pod_cidr_v6),
            underlay_ifname: node.uplink.as_ref().map(|u| u.ifname.clone()),
            underlay_ipv4: node.uplink.as_ref().map(|u| u.ipv4),
            underlay_ipv6: node.uplink.as_ref().filter(|_| plan.ipv6).map(|u| u.ipv6),
        });
    }
    let find = |links: &[(String, u32)], ns: &str, ifname: &str| {
        links.iter().find(|(n, _)| n == ifname).map(|(_, i)| *i).ok_or_else(|| LabError::Command {
            command: format!("ip -n {ns} -j link show"),
            status: "missing link".into(),
            stderr: format!("no interface {ifname}"),
        })
    };
    for p in &plan.pods {
        let host_ifindex = find(&node_links[p.node as usize], &p.node_netns, &p.host_ifname)?;
        let pod_ifindex = find(&netns::link_indexes(&p.netns)?, &p.netns, &p.pod_ifname)?;
        st.pods.push(PodInfo {
            key: p.key.clone(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            node: p.node,
            netns: p.netns.clone(),
            netns_path: netns::netns_path(&p.netns),
            node_netns: p.node_netns.clone(),
            node_netns_path: netns::netns_path(&p.node_netns),
            host_ifname: p.host_ifname.clone(),
            host_ifindex,
            pod_ifname: p.pod_ifname.clone(),
            pod_ifindex,
            pod_mac: p.pod_mac.clone(),
            ipv4: p.ipv4,
            ipv6: p.ipv6,
            ports: p.ports.clone(),
        });
    }
    for h in &plan.hosts {
        st.hosts.push(HostInfo {
            name: h.name.clone(),
            node: h.node,
            netns: h.netns.clone(),
            netns_path: netns::netns_path(&h.netns),
            node_netns: h.node_netns.clone(),
            node_ifname: h.node_ifname.clone(),
            ipv4: h.ipv4,
            ipv6: h.ipv6,
            ports: h.ports.clone(),
        });
    }
    state::save(path, st)?;

    // External hosts run the same servers as pods.
    let cfg = ServeConfig {
        pods: plan
            .pods
            .iter()
            .map(|p| PodServe { netns: p.netns.clone(), ports: p.ports.clone() })
            .chain(plan.hosts.iter().map(|h| PodServe { netns: h.netns.clone(), ports: h.ports.clone() }))
            .collect(),
    };
    match &opts.servers {
        ServerMode::Spawn { program, args } => {
            let log = path.with_extension("serve.log");
            st.server_log = Some(log.clone());
            let pid = spawn_server_process(&st.name, program, args, &cfg, &log, opts.ready_timeout)?;
            st.servers.push(pid);
        }
        ServerMode::InProcess => {
            spawn_server_threads(&cfg)?;
        }
        ServerMode::None => {}
    }
    st.phase = Phase::Up;
    state::save(path, st)
}

fn spawn_server_process(
    lab: &str,
    program: &Path,
    args: &[String],
    cfg: &ServeConfig,
    log: &Path,
    ready_timeout: Duration,
) -> Result<ProcRef> {
    let err = |reason: String| LabError::Servers { lab: lab.to_string(), reason };
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| LabError::StateIo { path: log.to_path_buf(), source })?;
    let mut cmd = Command::new(program);
    cmd.args(args).args(cfg.to_args()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file).process_group(0);
    let command = format!("{} {}", program.display(), args.join(" "));
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    let pid = child.id() as i32;
    let proc_ref = ProcRef::of(pid);
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(ready_timeout).unwrap_or_default();
    if line.starts_with(READY_LINE)
        && let Some(p) = proc_ref
    {
        // The child stays unreaped until this process exits or `down` reaps it.
        return Ok(p);
    }
    let _ = child.kill();
    let _ = child.wait();
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
    Err(err(format!(
        "`{command} ...` did not report ready within {ready_timeout:?}; log {}: {}",
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )))
}

/// What `down` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DownReport {
    /// Was there a state file?
    pub had_state: bool,
    /// Server pids signalled.
    pub killed: Vec<i32>,
    /// Namespaces deleted.
    pub removed_netns: Vec<String>,
    /// Problems that did not stop the teardown.
    pub errors: Vec<String>,
}

/// Take a lab down: stop its servers, delete its namespaces and its state file. Works after a
/// crash (from the state file and the namespace markers) and is a no-op for an unknown lab.
pub fn down(name: &str, opts: &LabOptions) -> Result<DownReport> {
    spec::validate_lab_name(name)?;
    let path = opts.state_path(name);
    let st = state::load(&path)?;
    Ok(teardown(name, st.as_ref(), &path))
}

fn stop_process(p: &ProcRef) -> bool {
    if !p.is_alive() {
        let _ = waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG));
        return false;
    }
    let pid = Pid::from_raw(p.pid);
    for (sig, wait) in [(Signal::SIGTERM, Duration::from_secs(2)), (Signal::SIGKILL, Duration::from_secs(5))] {
        let _ = kill(pid, sig);
        let until = Instant::now() + wait;
        while Instant::now() < until {
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            if !p.is_alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    true
}

/// Is the namespace (following the lab's naming scheme) owned by the state file at `path`, or by
/// no live lab at all?
fn owned_or_orphan(ns: &str, path: &Path) -> bool {
    match netns::read_marker(ns) {
        Some(m) if Path::new(&m) == path => true,
        Some(m) => !state::load(Path::new(&m)).ok().flatten().is_some_and(|s| s.is_alive()),
        None => true,
    }
}

fn teardown(name: &str, st: Option<&LabState>, path: &Path) -> DownReport {
    let mut report = DownReport { had_state: st.is_some(), ..Default::default() };
    if let Some(st) = st {
        // Agents and etcd outlive a crashed `up` only until here: nothing else records them.
        for p in st.control.iter().flat_map(|c| c.agents.iter().filter_map(|a| a.proc.as_ref()).chain(c.etcd.iter().filter_map(|e| e.proc.as_ref()))) {
            if stop_process(p) {
                report.killed.push(p.pid);
            }
        }
        for s in &st.servers {
            if stop_process(s) {
                report.killed.push(s.pid);
            }
        }
    }
    let mut victims: Vec<String> = st.map(|s| s.namespaces.clone()).unwrap_or_default();
    for ns in netns::list_netns() {
        if spec::is_lab_netns(name, &ns) && !victims.contains(&ns) && owned_or_orphan(&ns, path) {
            victims.push(ns);
        }
    }
    // Pods and external hosts first, then nodes, then the underlay.
    victims.sort_by_key(|ns| match ns.rsplit_once('-').map(|(_, s)| s.as_bytes()[0]) {
        Some(b'p' | b'h') => 0,
        Some(b'n') => 1,
        _ => 2,
    });
    for ns in victims {
        if !netns::netns_exists(&ns) {
            continue;
        }
        match netns::delete_netns(&ns) {
            Ok(()) => report.removed_netns.push(ns),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    if let Err(e) = state::remove(path) {
        report.errors.push(e.to_string());
    }
    if let Some(log) = st.and_then(|s| s.server_log.as_ref()) {
        let _ = std::fs::remove_file(log);
    }
    report
}

/// What exists of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabStatus {
    pub name: String,
    pub state_file: PathBuf,
    /// Phase from the state file (`None`: no state file).
    pub phase: Option<Phase>,
    /// Is any owner process alive?
    pub alive: bool,
    /// Live owner pids.
    pub live_owners: Vec<i32>,
    /// Namespaces the lab should have, with whether each exists.
    pub namespaces: Vec<(String, bool)>,
    /// Namespaces named after the lab that the state file does not list.
    pub stray_namespaces: Vec<String>,
    /// Pods as recorded.
    pub pods: Vec<PodInfo>,
    /// External hosts as recorded.
    pub hosts: Vec<HostInfo>,
}

/// Report what exists of a lab (no error for an unknown lab: everything is empty).
pub fn status(name: &str, opts: &LabOptions) -> Result<LabStatus> {
    spec::validate_lab_name(name)?;
    let path = opts.state_path(name);
    let st = state::load(&path)?;
    let listed: Vec<String> = st.as_ref().map(|s| s.namespaces.clone()).unwrap_or_default();
    let existing = netns::list_netns();
    Ok(LabStatus {
        name: name.to_string(),
        state_file: path,
        phase: st.as_ref().map(|s| s.phase),
        alive: st.as_ref().is_some_and(|s| s.is_alive()),
        live_owners: st.as_ref().map(|s| s.live_owners().iter().map(|p| p.pid).collect()).unwrap_or_default(),
        namespaces: listed.iter().map(|n| (n.clone(), existing.contains(n))).collect(),
        stray_namespaces: existing.into_iter().filter(|n| spec::is_lab_netns(name, n) && !listed.contains(n)).collect(),
        hosts: st.as_ref().map(|s| s.hosts.clone()).unwrap_or_default(),
        pods: st.map(|s| s.pods).unwrap_or_default(),
    })
}

/// Labs with a state file in the state directory.
pub fn list(opts: &LabOptions) -> Vec<String> {
    state::list(&opts.state_dir)
}

/// Remove everything left by dead labs: labs in the state directory whose owners are all dead,
/// and any marked lab namespace whose state file is gone or whose owners are dead. Namespaces of
/// live labs and unmarked namespaces are never touched. Returns the namespaces removed.
pub fn cleanup_stale(opts: &LabOptions) -> Result<Vec<String>> {
    let _lock = state::global_lock()?;
    let mut removed = Vec::new();
    for lab in list(opts) {
        if spec::validate_lab_name(&lab).is_err() {
            continue;
        }
        let path = opts.state_path(&lab);
        let st = match state::load(&path) {
            Ok(Some(st)) => st,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(lab = %lab, error = %e, "unreadable state file; removing it");
                removed.extend(teardown(&lab, None, &path).removed_netns);
                continue;
            }
        };
        if !st.is_alive() {
            tracing::info!(lab = %lab, "cleaning up dead lab");
            removed.extend(teardown(&lab, Some(&st), &path).removed_netns);
        }
    }
    for ns in netns::list_netns() {
        if spec::parse_lab_netns(&ns).is_none() {
            continue;
        }
        let Some(owner) = netns::read_marker(&ns) else { continue };
        // Under the lock, a marked namespace's state file is already saved with a live creator.
        if !state::load(Path::new(&owner)).ok().flatten().is_some_and(|s| s.is_alive()) {
            netns::delete_netns(&ns)?;
            removed.push(ns);
        }
    }
    Ok(removed)
}

/// A command that runs `argv` inside a pod's namespace (`ip netns exec`), or an external host's (a name
/// without `/`), for the caller to run with whatever stdio it wants.
pub fn exec_command<S: AsRef<str>>(lab: &Lab, pod: &str, argv: &[S]) -> Result<Command> {
    let ns = lab.netns_of(pod)?;
    if argv.is_empty() {
        return Err(LabError::spec("argv", "empty command"));
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(argv.iter().map(|a| a.as_ref()));
    Ok(cmd)
}

/// Run `argv` inside a pod's namespace and collect its output (a non-zero exit is not an error
/// here: look at `status`).
pub fn exec<S: AsRef<str>>(lab: &Lab, pod: &str, argv: &[S]) -> Result<Output> {
    let mut cmd = exec_command(lab, pod, argv)?;
    let rendered = format!("ip netns exec {} {}", lab.netns_of(pod)?, argv.iter().map(|a| a.as_ref()).collect::<Vec<_>>().join(" "));
    cmd.stdin(Stdio::null()).output().map_err(|source| LabError::Spawn { command: rendered, source })
}
