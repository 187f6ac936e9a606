//! The agent's kernel programming: a [`PolicyConsumer`] that compiles every policy revision for the
//! workloads on this node ([`porin_calc::compile`]) and makes the eBPF dataplane enforce it
//! ([`porin_dataplane::Dataplane`]), applying only the difference.
//!
//! * **Which workloads.** The agent binds its node's WorkloadEndpoints (`spec.node` == `--node`): the
//!   pod `spec.pod` is enforced on the host-side interface `spec.interfaceName`, looked up **in the
//!   agent's own network namespace** (the node's) and nowhere else; interfaces are keyed by (network
//!   namespace, ifindex). WorkloadEndpoints are system-owned (admin or a `cni` token; `porin lab` writes
//!   them); pod annotations are not read (the former `porin.io/interface` / `porin.io/netns` annotations
//!   have no effect). A pod without a WorkloadEndpoint is not local.
//! * **Fail closed on bad bindings.** A WorkloadEndpoint binds only when it is the one binding of its
//!   interface and of its pod, the pod exists, its `ipNetworks` equal the pod's status addresses and no
//!   other endpoint claims them. Otherwise its interface is attached with no endpoint entry (drops
//!   everything) and the reason is in `porin status` (health degraded). An address claimed by two
//!   endpoints (state written before the API refused it, or straight into etcd) is removed from the
//!   model the kernel enforces, so it resolves like an address of no workload and never gets either
//!   claimant's identity; everything else keeps being programmed. (Before, such a prefix made every
//!   ipcache sync fail — the whole update was refused — so later label changes never reached the kernel.)
//! * **A lost binding never opens.** When a WorkloadEndpoint (or its pod) goes away while the interface
//!   exists, the interface stays attached and loses its entry: it drops everything. It is never detached
//!   while it exists; its pinned links are removed once the interface is gone (refresh tick).
//! * **Order, so no window opens.** New interfaces are attached first (an attached interface without an
//!   endpoint entry drops everything); then every changed endpoint policy is written (they may name
//!   identities the ipcache does not map yet: harmless); then the ipcache is made equal to the desired
//!   one, which installs new identities only after the policies that mention them and removes old ones
//!   only after no policy refers to them any more. Endpoints of pods that left are removed last.
//! * **Stable numbers.** The compiler's [`porin_calc::State`] lives as long as the agent, so identities
//!   and rule ids are stable across revisions. Across agent restarts, compiler identities are mapped to
//!   *node* identities ([`IdentityMap`]): a compiler identity inherits the node identity the pinned
//!   ipcache already gives its addresses, so a restarted agent rewrites nothing and revalidation keeps
//!   every established flow. Endpoint ids are read back from the pinned endpoints map.
//! * **Restart.** Maps and links are pinned under the pin directory (a bpffs the agent mounts if needed).
//!   On start, [`Dataplane::open`] reads them back; the first revision re-pushes the desired state (zero
//!   writes when nothing changed), then sweeps what is no longer wanted. Enforcement never stops: the
//!   pinned links keep the programs attached while no agent runs.
//! * **Errors.** An endpoint whose policy does not fit is locked down by the dataplane (it denies) and
//!   reported; any other error leaves the endpoint on its previous policy (or, when new, on no entry:
//!   drop) and is reported in `porin status` and retried on the next revision or tick.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use porin_calc::{Compiled, Entry, FIRST_DYNAMIC_IDENTITY};
use porin_dataplane::{Action, Dataplane, DataplaneOptions, EndpointPolicy, PolicyEntry, port_range_to_prefixes};
use porin_model::Resource;
use serde::Serialize;
use tokio::sync::watch;

use crate::engine::{PolicyConsumer, PolicySnapshot};
use crate::flows::{ContextInputs, FlowContext, FlowService};

/// How the agent's dataplane is set up.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    pub node: String,
    pub pin_dir: PathBuf,
    pub options: DataplaneOptions,
}

/// What `porin status` shows about the dataplane.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneStatus {
    /// `ebpf`, `none` or `ebpf (idle: no local workload interface)`.
    pub mode: String,
    pub pin_dir: Option<String>,
    /// The policy revision the kernel enforces (0: none yet).
    pub programmed_revision: u64,
    /// The latest policy revision the dataplane was asked to program.
    pub requested_revision: u64,
    /// Wall time of the last programming (compile + kernel writes).
    pub last_programming_millis: f64,
    pub last_compile_millis: f64,
    pub last_programmed_at: Option<String>,
    pub programmings: u64,
    /// Kernel writes of the last programming: entries inserted/updated/deleted, endpoint flips.
    pub last_writes: u64,
    pub endpoints: Vec<EndpointStatus>,
    pub identities: usize,
    pub ipcache_entries: usize,
    pub policy_entries: usize,
    pub occupancy: Vec<MapStatus>,
    /// Packets dropped, by reason (`drop_*` counters).
    pub drops: BTreeMap<String, u64>,
    /// Every counter, by reason.
    pub counters: BTreeMap<String, u64>,
    /// Current problems (empty when everything is programmed).
    pub errors: Vec<String>,
    /// What the agent found pinned when it started.
    pub read_back: Option<ReadBackStatus>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub pod: String,
    pub interface: String,
    pub ifindex: Option<u32>,
    pub endpoint_id: Option<u32>,
    pub ingress_entries: usize,
    pub egress_entries: usize,
    /// `programmed`; `locked-down` (denies everything); `denied` (binding refused: attached, drops; see
    /// `error`); `unbound` (its WorkloadEndpoint is gone: attached, drops until the interface is gone); `error`.
    pub state: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapStatus {
    pub map: String,
    pub entries: usize,
    pub max_entries: u32,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadBackStatus {
    pub endpoints: usize,
    pub policy_entries: usize,
    pub ipcache_entries: usize,
}

/// Compiler identity → node identity, stable for the agent's life and inherited across restarts from
/// the pinned ipcache.
#[derive(Debug, Default)]
pub struct IdentityMap {
    trans: HashMap<u32, u32>,
    used: BTreeSet<u32>,
    next: u32,
}

impl IdentityMap {
    /// Map every identity of `c`; `pinned` is the ipcache the kernel has now.
    pub fn update(&mut self, c: &Compiled, pinned: &BTreeMap<IpNet, u32>) {
        self.next = self.next.max(FIRST_DYNAMIC_IDENTITY);
        if let Some(m) = pinned.values().chain(self.used.iter()).copied().max() {
            self.next = self.next.max(m + 1);
        }
        let mut prefixes: HashMap<u32, Vec<IpNet>> = HashMap::new();
        for (p, id) in &c.ipcache {
            prefixes.entry(*id).or_default().push(*p);
        }
        let mut ids: Vec<u32> = c.identities.iter().map(|i| i.id).collect();
        ids.sort_unstable();
        for id in ids {
            if id < FIRST_DYNAMIC_IDENTITY || self.trans.contains_key(&id) {
                continue;
            }
            let old: BTreeSet<Option<u32>> =
                prefixes.get(&id).into_iter().flatten().map(|p| pinned.get(p).copied()).collect();
            let inherit = match old.iter().next() {
                Some(Some(x)) if old.len() == 1 && *x >= FIRST_DYNAMIC_IDENTITY && !self.used.contains(x) => Some(*x),
                _ => None,
            };
            let node_id = inherit.unwrap_or_else(|| {
                let n = self.next;
                self.next += 1;
                n
            });
            self.trans.insert(id, node_id);
            self.used.insert(node_id);
        }
    }

    pub fn get(&self, id: u32) -> u32 {
        if id < FIRST_DYNAMIC_IDENTITY { id } else { self.trans.get(&id).copied().unwrap_or(id) }
    }
}

/// Compiled entries of one direction → dataplane entries (port ranges → prefix covers).
pub fn to_policy_entries(entries: &[Entry], ids: &IdentityMap) -> Vec<PolicyEntry> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let action = if e.allow { Action::Allow } else { Action::Deny };
        let identity = e.identity.map(|i| ids.get(i));
        match e.ports {
            None => out.push(PolicyEntry { identity, proto: e.proto, port_prefix: None, action, rule_id: e.rule_id }),
            Some((lo, hi)) => {
                for p in port_range_to_prefixes(lo, hi) {
                    out.push(PolicyEntry { identity, proto: e.proto, port_prefix: Some(p), action, rule_id: e.rule_id });
                }
            }
        }
    }
    out
}

/// One WorkloadEndpoint as the agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `namespace/name` of the WorkloadEndpoint.
    pub wep: String,
    /// `namespace/pod`: the workload it binds.
    pub pod: String,
    pub node: String,
    /// Host-side interface, in the node's (the agent's own) network namespace.
    pub ifname: String,
    pub addrs: Vec<IpAddr>,
}

/// Every WorkloadEndpoint in `resources` (the agent keeps those of its node).
pub fn bindings<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Vec<Binding> {
    resources
        .into_iter()
        .filter_map(|r| match r {
            Resource::WorkloadEndpoint(w) => {
                let ns = w.metadata.namespace.as_deref().unwrap_or("default");
                Some(Binding {
                    wep: format!("{ns}/{}", w.metadata.name),
                    pod: format!("{ns}/{}", w.spec.pod),
                    node: w.spec.node.clone(),
                    ifname: w.spec.interface_name.clone(),
                    addrs: w.spec.addresses(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Identity of a network namespace: (device, inode) of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl NetnsId {
    /// The calling thread's network namespace.
    pub fn current() -> std::io::Result<NetnsId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/thread-self/ns/net")?;
        Ok(NetnsId { dev: m.dev(), ino: m.ino() })
    }
}

/// An interface is known by its namespace and index, never by index alone.
type IfKey = (NetnsId, u32);

#[derive(Debug, Clone)]
struct Iface {
    key: IfKey,
    endpoint_id: u32,
    /// The pod whose policy it enforces; None: its binding is lost or refused (it drops everything).
    pod: Option<String>,
}

/// What one local interface should do this revision.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// Enforce this pod's policy, with these own addresses.
    Bound { pod: String, addrs: Vec<IpAddr> },
    /// Attached, no endpoint entry: every packet drops. The reason is reported.
    Deny { pod: String, reason: String },
}

/// Addresses claimed by more than one endpoint of `cluster` → the endpoints (`ns/name`) claiming them.
fn address_conflicts(cluster: &porin_policy::Cluster) -> BTreeMap<IpAddr, BTreeSet<String>> {
    let mut by_addr: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    for e in &cluster.endpoints {
        for ip in &e.ips {
            by_addr.entry(*ip).or_default().insert(e.id());
        }
    }
    by_addr.retain(|_, pods| pods.len() > 1);
    by_addr
}

/// Decide every local interface: bound to its pod, or denied with a reason. A WorkloadEndpoint binds only
/// when it is the one binding of its interface and of its pod, the pod exists, the addresses agree with the
/// pod's status, and no other endpoint claims them.
fn decide(node: &str, bindings: &[Binding], cluster: &porin_policy::Cluster, conflicts: &BTreeMap<IpAddr, BTreeSet<String>>) -> BTreeMap<String, Want> {
    let local: Vec<&Binding> = bindings.iter().filter(|b| b.node == node).collect();
    let mut per_if: BTreeMap<&str, Vec<&Binding>> = BTreeMap::new();
    let mut per_pod: BTreeMap<&str, Vec<&Binding>> = BTreeMap::new();
    for b in &local {
        per_if.entry(b.ifname.as_str()).or_default().push(b);
        per_pod.entry(b.pod.as_str()).or_default().push(b);
    }
    let mut out = BTreeMap::new();
    for (ifname, bs) in per_if {
        let b = bs[0];
        let deny = |reason: String| Want::Deny { pod: b.pod.clone(), reason };
        let want = if porin_model::validate::check_ifname(ifname).is_err() {
            deny(format!("WorkloadEndpoint {}: interface name {ifname:?} is not a name in this node's network namespace", b.wep))
        } else if bs.len() > 1 {
            let weps: Vec<&str> = bs.iter().map(|b| b.wep.as_str()).collect();
            deny(format!("interface {ifname} is bound by several WorkloadEndpoints ({}); it denies until one remains", weps.join(", ")))
        } else if per_pod.get(b.pod.as_str()).is_some_and(|v| v.len() > 1) {
            let weps: Vec<&str> = per_pod[b.pod.as_str()].iter().map(|b| b.wep.as_str()).collect();
            deny(format!("pod {} has several WorkloadEndpoints ({}); it denies until one remains", b.pod, weps.join(", ")))
        } else if let Some(e) = cluster.endpoints.iter().find(|e| e.id() == b.pod) {
            let mut have: Vec<IpAddr> = e.ips.clone();
            let mut want: Vec<IpAddr> = b.addrs.clone();
            have.sort();
            have.dedup();
            want.sort();
            want.dedup();
            let clash: Vec<String> = want
                .iter()
                .filter_map(|ip| conflicts.get(ip).map(|pods| format!("{ip} is claimed by {}", pods.iter().cloned().collect::<Vec<_>>().join(" and "))))
                .collect();
            if !clash.is_empty() {
                deny(format!("duplicate address: {}; the endpoints claiming it deny", clash.join("; ")))
            } else if have != want || want.is_empty() {
                deny(format!(
                    "WorkloadEndpoint {} names addresses {want:?} but pod {} has {have:?}; it denies until they agree",
                    b.wep, b.pod
                ))
            } else {
                Want::Bound { pod: b.pod.clone(), addrs: want }
            }
        } else {
            deny(format!("WorkloadEndpoint {} binds pod {}, which does not exist; it denies until the pod exists", b.wep, b.pod))
        };
        out.insert(ifname.to_string(), want);
    }
    out
}

/// The model the kernel enforces: `cluster` with every address claimed twice removed from its endpoints, so
/// such an address resolves like any address of no workload (and never to either claimant's identity).
fn without_conflicts(cluster: &Arc<porin_policy::Cluster>, conflicts: &BTreeMap<IpAddr, BTreeSet<String>>) -> Arc<porin_policy::Cluster> {
    if conflicts.is_empty() {
        return cluster.clone();
    }
    let mut c = (**cluster).clone();
    for e in &mut c.endpoints {
        e.ips.retain(|ip| !conflicts.contains_key(ip));
    }
    Arc::new(c)
}

/// The consumer: owns the [`Dataplane`] (opened lazily, on the first local workload, or at once when
/// pinned state exists) and the compiler state.
pub struct DataplaneConsumer {
    cfg: DataplaneConfig,
    dp: Option<Dataplane>,
    calc: porin_calc::State,
    ids: IdentityMap,
    /// The agent's own network namespace: the only one it attaches in.
    netns: Option<NetnsId>,
    /// Attached interfaces by name (all in `netns`).
    ifaces: BTreeMap<String, Iface>,
    last: BTreeMap<IfKey, EndpointPolicy>,
    /// Problems by interface name.
    errors: BTreeMap<String, String>,
    global_error: Option<String>,
    swept: bool,
    last_snapshot: Option<Arc<PolicySnapshot>>,
    status: DataplaneStatus,
    tx: watch::Sender<Arc<DataplaneStatus>>,
    /// The flow pipeline: gets the ring buffer, an enricher snapshot per revision, counters.
    flows: Option<Arc<FlowService>>,
}

impl DataplaneConsumer {
    pub fn new(cfg: DataplaneConfig, tx: watch::Sender<Arc<DataplaneStatus>>) -> DataplaneConsumer {
        let status = DataplaneStatus { mode: "ebpf".into(), pin_dir: Some(cfg.pin_dir.display().to_string()), ..Default::default() };
        let mut c = DataplaneConsumer {
            cfg,
            dp: None,
            calc: porin_calc::State::new(),
            ids: IdentityMap::default(),
            netns: None,
            ifaces: BTreeMap::new(),
            last: BTreeMap::new(),
            errors: BTreeMap::new(),
            global_error: None,
            swept: false,
            last_snapshot: None,
            status,
            tx,
            flows: None,
        };
        // Pinned state from a previous run: open now, so enforcement is read back (and reported) at once.
        if porin_dataplane::sys::is_bpffs(&c.cfg.pin_dir).unwrap_or(false)
            && let Err(e) = c.open()
        {
            c.global_error = Some(e);
        }
        c.publish();
        c
    }

    fn open(&mut self) -> Result<(), String> {
        if self.dp.is_some() {
            return Ok(());
        }
        let dir = &self.cfg.pin_dir;
        porin_dataplane::sys::ensure_bpffs(dir).map_err(|e| format!("mounting bpffs at {}: {e}", dir.display()))?;
        let dp = Dataplane::open(dir, &self.cfg.options).map_err(|e| format!("opening the dataplane at {}: {e}", dir.display()))?;
        let rb = dp.last_read_back();
        self.status.read_back =
            Some(ReadBackStatus { endpoints: rb.endpoints, policy_entries: rb.policy_entries, ipcache_entries: rb.ipcache_entries });
        tracing::info!(pin_dir = %dir.display(), endpoints = rb.endpoints, "dataplane open");
        self.dp = Some(dp);
        self.swept = false;
        self.hand_events();
        Ok(())
    }

    /// Feed flow visibility: the event ring buffer, enricher snapshots, counters.
    pub fn with_flows(mut self, flows: Arc<FlowService>) -> Self {
        self.flows = Some(flows);
        self.hand_events();
        self
    }

    /// Gives the ring buffer (one consumer) to the flow pipeline once the dataplane is open.
    fn hand_events(&mut self) {
        if let (Some(dp), Some(f)) = (self.dp.as_mut(), &self.flows)
            && f.wants_events()
        {
            match dp.events() {
                Ok(r) => f.attach_events(r),
                Err(e) => tracing::warn!(error = %e, "no event ring buffer for flow visibility"),
            }
        }
    }

    /// Publishes what flow records need to know about this revision (see [`crate::flows::context`]).
    fn publish_flow_context(&self, s: &PolicySnapshot, cluster: &Arc<porin_policy::Cluster>, compiled: &Compiled) {
        let Some(f) = &self.flows else { return };
        let prev = f.context();
        let ctx = FlowContext::build(
            ContextInputs {
                revision: s.revision,
                cluster: cluster.clone(),
                endpoints: self.ifaces.values().filter_map(|i| i.pod.clone().map(|p| (i.endpoint_id, p))).collect(),
                identities: compiled.identities.iter().map(|i| (self.ids.get(i.id), i)).collect(),
                rules: &self.calc.rules,
            },
            Some(&prev),
        );
        f.set_context(ctx);
    }

    fn program(&mut self, s: &PolicySnapshot) -> Result<u64, String> {
        let conflicts = address_conflicts(&s.cluster);
        let wanted = decide(&self.cfg.node, &s.bindings, &s.cluster, &conflicts);
        let cluster = without_conflicts(&s.cluster, &conflicts);
        if wanted.is_empty() && self.dp.is_none() {
            self.status.mode = "ebpf (idle: no local workload interface)".into();
            return Ok(0);
        }
        self.open()?;
        self.status.mode = "ebpf".into();
        let netns = match self.netns {
            Some(n) => n,
            None => {
                let n = NetnsId::current().map_err(|e| format!("reading the agent's network namespace: {e}"))?;
                self.netns = Some(n);
                n
            }
        };
        let dp = self.dp.as_mut().expect("opened");
        let mut writes = 0u64;
        let mut count = |st: porin_dataplane::SyncStats| {
            writes += u64::from(st.inserted + st.updated + st.deleted + st.flips);
        };

        // 1. Attach every wanted interface that is new or was re-created (new index): it drops everything
        //    until its endpoint entry exists. Only in the agent's own network namespace.
        for ifname in wanted.keys() {
            let now = porin_dataplane::sys::ifindex(ifname).ok();
            if let Some(i) = self.ifaces.get(ifname)
                && now == Some(i.key.1)
            {
                continue;
            }
            match dp.attach(None, ifname) {
                Ok(ifindex) => {
                    let key = (netns, ifindex);
                    // Another name on this index (renamed, or replaced): forget it first.
                    let stale: Vec<String> = self.ifaces.iter().filter(|(n, i)| i.key == key || *n == ifname).map(|(n, _)| n.clone()).collect();
                    for n in stale {
                        if let Some(old) = self.ifaces.remove(&n)
                            && old.key != key
                        {
                            let _ = dp.remove_endpoint(old.key.1);
                            self.last.remove(&old.key);
                        }
                    }
                    let endpoint_id = match dp.engine().endpoint(ifindex) {
                        Some(v) => v.endpoint_id,
                        None => {
                            let used: BTreeSet<u32> = dp
                                .engine()
                                .endpoint_ifindexes()
                                .iter()
                                .filter_map(|i| dp.engine().endpoint(*i).map(|v| v.endpoint_id))
                                .chain(self.ifaces.values().map(|i| i.endpoint_id))
                                .collect();
                            (1..).find(|i| !used.contains(i)).expect("free id")
                        }
                    };
                    self.ifaces.insert(ifname.clone(), Iface { key, endpoint_id, pod: None });
                    self.errors.remove(ifname);
                }
                Err(e) => {
                    self.errors.insert(ifname.clone(), format!("attaching to {ifname} (in the node's network namespace): {e}"));
                }
            }
        }

        // 2. Compile for the attached, bound local endpoints.
        let t0 = Instant::now();
        let local: BTreeSet<String> = wanted
            .iter()
            .filter(|(ifname, _)| self.ifaces.contains_key(*ifname))
            .filter_map(|(_, w)| match w {
                Want::Bound { pod, .. } => Some(pod.clone()),
                Want::Deny { .. } => None,
            })
            .collect();
        let mut compiled = porin_calc::compile(&cluster, &mut self.calc, &|e| local.contains(&e.id()));
        lock_down(&mut compiled, &s.lockdown, &mut self.calc);
        self.ids.update(&compiled, dp.engine().ipcache());
        self.status.last_compile_millis = t0.elapsed().as_secs_f64() * 1e3;
        let programs: BTreeMap<&str, &porin_calc::EndpointProgram> = compiled.endpoints.iter().map(|p| (p.endpoint.as_str(), p)).collect();

        // 3. Endpoint policies (before the ipcache installs the identities they name). Denied interfaces
        //    lose their entry: no entry, every packet drops.
        for (ifname, want) in &wanted {
            let Some(i) = self.ifaces.get_mut(ifname) else { continue };
            match want {
                Want::Deny { pod, reason } => {
                    i.pod = Some(pod.clone());
                    self.errors.insert(ifname.clone(), reason.clone());
                    if self.last.remove(&i.key).is_some() || dp.engine().endpoint(i.key.1).is_some() {
                        match dp.remove_endpoint(i.key.1) {
                            Ok(st) => count(st),
                            Err(e) => {
                                self.errors.insert(ifname.clone(), format!("{reason}; removing its entry failed: {e}"));
                            }
                        }
                    }
                }
                Want::Bound { pod, addrs } => {
                    i.pod = Some(pod.clone());
                    let Some(prog) = programs.get(pod.as_str()) else {
                        self.errors.insert(ifname.clone(), format!("no compiled policy for {pod}"));
                        continue;
                    };
                    let policy = EndpointPolicy {
                        endpoint_id: i.endpoint_id,
                        ingress: to_policy_entries(&prog.ingress, &self.ids),
                        egress: to_policy_entries(&prog.egress, &self.ids),
                        addrs: addrs.clone(),
                    };
                    if self.last.get(&i.key) == Some(&policy) && dp.engine().endpoint(i.key.1).is_some() {
                        self.errors.remove(ifname);
                        continue;
                    }
                    match dp.set_endpoint(i.key.1, policy.clone()) {
                        Ok(st) => {
                            count(st);
                            self.errors.remove(ifname);
                            self.last.insert(i.key, policy);
                        }
                        Err(e) => {
                            tracing::warn!(pod = %pod, error = %e, "programming endpoint failed");
                            self.errors.insert(ifname.clone(), e.to_string());
                            self.last.remove(&i.key);
                        }
                    }
                }
            }
        }

        // 4. The ipcache: new identities after the policies naming them, stale ones after no policy does.
        //    A prefix with two identities (never expected once duplicate addresses are removed above) is
        //    left out and reported instead of failing the whole sync: every other change still lands.
        let mut by_prefix: BTreeMap<IpNet, BTreeSet<u32>> = BTreeMap::new();
        for (p, id) in &compiled.ipcache {
            by_prefix.entry(p.trunc()).or_default().insert(self.ids.get(*id));
        }
        let mut ipcache_problems = Vec::new();
        let ipcache: Vec<(IpNet, u32)> = by_prefix
            .into_iter()
            .filter_map(|(p, ids)| {
                if ids.len() == 1 {
                    ids.first().map(|id| (p, *id))
                } else {
                    ipcache_problems.push(format!("{p} maps to identities {ids:?}; left out"));
                    None
                }
            })
            .collect();
        match dp.set_ipcache(ipcache) {
            Ok(st) => {
                count(st);
                self.global_error = if ipcache_problems.is_empty() { None } else { Some(format!("ipcache: {}", ipcache_problems.join("; "))) };
            }
            Err(e) => {
                tracing::warn!(error = %e, "programming the ipcache failed");
                self.global_error = Some(format!("ipcache: {e}"));
            }
        }

        // 5. Interfaces whose binding is gone (WorkloadEndpoint or pod deleted, moved to another node):
        //    they stay attached and lose their entry, so they drop everything while they exist. They are
        //    forgotten (and their pinned links removed) once the interface is gone: see `gc_links`.
        for (ifname, i) in self.ifaces.iter_mut() {
            if wanted.contains_key(ifname) {
                continue;
            }
            if i.pod.take().is_some() || self.last.contains_key(&i.key) || dp.engine().endpoint(i.key.1).is_some() {
                self.last.remove(&i.key);
                match dp.remove_endpoint(i.key.1) {
                    Ok(st) => count(st),
                    Err(e) => tracing::warn!(ifname, error = %e, "removing endpoint failed"),
                }
            }
            self.errors.remove(ifname);
        }
        self.errors.retain(|n, _| wanted.contains_key(n));

        // 6. After the first full push since open: sweep what a previous run left and nobody wants.
        if !self.swept {
            match dp.sweep() {
                Ok(st) => count(st),
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
            let _ = dp.sweep_links(None);
            self.swept = true;
        }

        self.status.identities = compiled.identities.len();
        self.publish_flow_context(s, &cluster, &compiled);
        let mut eps = Vec::new();
        for (ifname, want) in &wanted {
            let i = self.ifaces.get(ifname);
            let pol = i.and_then(|i| self.last.get(&i.key));
            let err = self.errors.get(ifname).cloned();
            let (pod, state) = match (want, &err, pol) {
                (Want::Deny { pod, .. }, _, _) => (pod, "denied"),
                (Want::Bound { pod, .. }, Some(e), _) if e.contains("full") || e.contains("lock") => (pod, "locked-down"),
                (Want::Bound { pod, .. }, Some(_), _) => (pod, "error"),
                (Want::Bound { pod, .. }, None, Some(_)) if s.lockdown.covers(pod) => (pod, "locked-down"),
                (Want::Bound { pod, .. }, None, Some(_)) => (pod, "programmed"),
                (Want::Bound { pod, .. }, None, None) => (pod, "error"),
            };
            eps.push(EndpointStatus {
                pod: pod.clone(),
                interface: ifname.clone(),
                ifindex: i.map(|i| i.key.1),
                endpoint_id: i.map(|i| i.endpoint_id),
                ingress_entries: pol.map_or(0, |p| p.ingress.len()),
                egress_entries: pol.map_or(0, |p| p.egress.len()),
                state: state.into(),
                error: err,
            });
        }
        for (ifname, i) in &self.ifaces {
            if !wanted.contains_key(ifname) {
                eps.push(EndpointStatus {
                    pod: String::new(),
                    interface: ifname.clone(),
                    ifindex: Some(i.key.1),
                    endpoint_id: Some(i.endpoint_id),
                    ingress_entries: 0,
                    egress_entries: 0,
                    state: "unbound".into(),
                    error: Some("no WorkloadEndpoint binds it: attached, drops everything until the interface is gone".into()),
                });
            }
        }
        self.status.endpoints = eps;
        Ok(writes)
    }

    /// Forgets interfaces that are gone and removes pinned links of interfaces that no longer exist. An
    /// interface that still exists is never detached (called on the refresh tick).
    pub fn gc_links(&mut self) {
        let Some(dp) = self.dp.as_mut() else { return };
        let gone: Vec<String> = self
            .ifaces
            .iter()
            .filter(|(n, i)| i.pod.is_none() && porin_dataplane::sys::ifindex(n).ok() != Some(i.key.1))
            .map(|(n, _)| n.clone())
            .collect();
        for n in &gone {
            if let Some(i) = self.ifaces.remove(n) {
                self.last.remove(&i.key);
                let _ = dp.remove_endpoint(i.key.1);
            }
        }
        match dp.sweep_links(None) {
            Ok(k) if k > 0 => tracing::info!(links = k, "removed pinned links of interfaces that are gone"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeping links failed"),
        }
        if !gone.is_empty() {
            self.status.endpoints.retain(|e| e.state != "unbound" || !gone.contains(&e.interface));
        }
    }

    /// Re-read counters and occupancy (cheap enough every few seconds).
    pub fn refresh(&mut self) {
        if let Some(dp) = &self.dp {
            let counters = dp.counters().ok();
            let occupancy = dp.occupancy().ok();
            if let Some(f) = &self.flows {
                f.observe_dataplane(counters.as_ref(), occupancy.as_deref(), self.ifaces.len());
            }
            if let Some(c) = counters {
                self.status.counters = c.by_reason.iter().map(|(r, v)| (r.as_str().to_string(), *v)).collect();
                self.status.drops = c.by_reason.iter().filter(|(r, v)| r.is_drop() && **v > 0).map(|(r, v)| (r.as_str().to_string(), *v)).collect();
            }
            if let Some(o) = occupancy {
                self.status.occupancy =
                    o.into_iter().map(|m| MapStatus { map: m.name.to_string(), entries: m.entries, max_entries: m.max_entries }).collect();
            }
            self.status.policy_entries = dp.engine().policy_len();
            self.status.ipcache_entries = dp.engine().ipcache().len();
        }
        self.publish();
    }

    fn publish(&mut self) {
        let mut errors: Vec<String> = self.global_error.iter().cloned().collect();
        errors.extend(self.errors.iter().map(|(p, e)| format!("{p}: {e}")));
        self.status.errors = errors;
        self.tx.send_replace(Arc::new(self.status.clone()));
    }

    /// Retry after an error (called on the refresh tick).
    pub fn retry(&mut self) {
        if (self.global_error.is_some() || !self.errors.is_empty())
            && let Some(s) = self.last_snapshot.clone()
        {
            self.apply(&s);
        }
    }
}

impl PolicyConsumer for DataplaneConsumer {
    fn apply(&mut self, s: &PolicySnapshot) {
        let t0 = Instant::now();
        self.status.requested_revision = s.revision;
        self.last_snapshot = Some(Arc::new(s.clone()));
        match self.program(s) {
            Ok(writes) => {
                if self.global_error.as_deref().is_some_and(|e| e.starts_with("opening") || e.starts_with("mounting")) {
                    self.global_error = None;
                }
                self.status.last_writes = writes;
            }
            Err(e) => {
                tracing::warn!(revision = s.revision, error = %e, "dataplane programming failed");
                self.global_error = Some(e);
            }
        }
        if self.global_error.is_none() || self.dp.is_some() {
            self.status.programmed_revision = s.revision;
        }
        self.status.programmings += 1;
        if let (Some(f), Some(t)) = (&self.flows, s.changed_at)
            && self.global_error.is_none()
        {
            f.observe_programming(t.elapsed());
        }
        self.status.last_programming_millis = t0.elapsed().as_secs_f64() * 1e3;
        self.status.last_programmed_at = Some(crate::timefmt::rfc3339(crate::timefmt::now_secs()));
        tracing::info!(revision = s.revision, millis = self.status.last_programming_millis, writes = self.status.last_writes, "dataplane programmed");
        self.refresh();
    }
}

/// The trace of the lockdown's deny-all entries (flow records show it).
pub const LOCKDOWN_TRACE: &str = "porin|lockdown: a stored object that may apply does not decode|-1|deny";

/// Endpoints the snapshot locks down ([`crate::engine::Lockdown`]) deny everything both ways: their entries
/// become one deny-all default per direction (a new policy revision, so established flows are revoked too).
fn lock_down(compiled: &mut Compiled, lockdown: &crate::engine::Lockdown, calc: &mut porin_calc::State) {
    if lockdown.is_empty() {
        return;
    }
    let meta = porin_calc::RuleMeta { allow: false, trace: vec![LOCKDOWN_TRACE.to_string()] };
    let rule_id = match calc.rules.iter().position(|m| *m == meta) {
        Some(i) => i as u32,
        None => {
            calc.rules.push(meta);
            (calc.rules.len() - 1) as u32
        }
    };
    let deny = Entry { identity: None, proto: None, ports: None, allow: false, rule_id };
    for p in compiled.endpoints.iter_mut().filter(|p| lockdown.covers(&p.endpoint)) {
        p.ingress = vec![deny];
        p.egress = vec![deny];
    }
}

/// Runs `consumer` on a dedicated OS thread (kernel calls block; the RCU wait takes milliseconds), fed
/// latest-wins from `rx`, refreshing counters every `tick`.
pub fn spawn(mut consumer: DataplaneConsumer, mut rx: watch::Receiver<Arc<PolicySnapshot>>, tick: Duration) -> std::io::Result<()> {
    let handle = tokio::runtime::Handle::current();
    std::thread::Builder::new().name("porin-dataplane".into()).spawn(move || {
        loop {
            match handle.block_on(async { tokio::time::timeout(tick, rx.changed()).await }) {
                Ok(Ok(())) => {
                    let s = rx.borrow_and_update().clone();
                    consumer.apply(&s);
                }
                Ok(Err(_)) => return,
                Err(_) => {
                    consumer.retry();
                    consumer.gc_links();
                    consumer.refresh();
                }
            }
        }
    })?;
    Ok(())
}

/// The status of an agent without a dataplane (`--dataplane none`, `porin serve`).
pub fn none_status() -> DataplaneStatus {
    DataplaneStatus { mode: "none".into(), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(y: &str) -> (porin_policy::Cluster, Vec<Binding>) {
        let docs = porin_model::parse_documents("t", y).unwrap();
        let rs: Vec<Resource> = docs.into_iter().map(|d| d.resource).collect();
        (porin_policy::Cluster::build(rs.iter()).unwrap(), bindings(&rs))
    }

    fn pod(name: &str, ip: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: s}}\nstatus: {{podIP: {ip}}}\n---\n")
    }

    fn wep(name: &str, node: &str, pod: &str, ifname: &str, ip: &str) -> String {
        format!(
            "apiVersion: porin.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: s}}\n\
             spec: {{node: {node}, pod: {pod}, interfaceName: {ifname}, ipNetworks: ['{ip}/32']}}\n---\n"
        )
    }

    fn decided(y: &str) -> BTreeMap<String, Want> {
        let (c, b) = world(y);
        decide("n0", &b, &c, &address_conflicts(&c))
    }

    fn denied_because(w: Option<&Want>, needle: &str) -> bool {
        matches!(w, Some(Want::Deny { reason, .. }) if reason.contains(needle))
    }

    #[test]
    fn a_binding_needs_its_pod_matching_addresses_and_exclusive_claims() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let d = decided(&format!("{}{}{}", pod("a", "10.0.0.1"), wep("a", "n0", "a", "v1", "10.0.0.1"), wep("x", "n1", "a", "v9", "10.0.0.1")));
        assert_eq!(d.len(), 1, "only this node's bindings: {d:?}");
        assert_eq!(d.get("v1"), Some(&Want::Bound { pod: "s/a".into(), addrs: vec![ip("10.0.0.1")] }));
        // No pod (yet): denied.
        assert!(denied_because(decided(&wep("a", "n0", "a", "v1", "10.0.0.1")).get("v1"), "does not exist"));
        // Addresses disagree with the pod's status: denied.
        assert!(denied_because(decided(&format!("{}{}", pod("a", "10.0.0.1"), wep("a", "n0", "a", "v1", "10.0.0.2"))).get("v1"), "until they agree"));
        // One interface, two bindings: both denied.
        let d = decided(&format!("{}{}{}{}", pod("a", "10.0.0.1"), pod("b", "10.0.0.2"), wep("a", "n0", "a", "v1", "10.0.0.1"), wep("b", "n0", "b", "v1", "10.0.0.2")));
        assert!(denied_because(d.get("v1"), "several WorkloadEndpoints"));
        // One pod, two bindings: every interface of it denied.
        let d = decided(&format!("{}{}{}", pod("a", "10.0.0.1"), wep("a", "n0", "a", "v1", "10.0.0.1"), wep("a2", "n0", "a", "v2", "10.0.0.1")));
        assert!(denied_because(d.get("v1"), "several") && denied_because(d.get("v2"), "several"));
        // Another pod claims the address: denied, and the address leaves the enforced model.
        let y = format!("{}{}{}", pod("a", "10.0.0.1"), pod("b", "10.0.0.1"), wep("a", "n0", "a", "v1", "10.0.0.1"));
        assert!(denied_because(decided(&y).get("v1"), "duplicate address"));
        let (c, _) = world(&y);
        let conflicts = address_conflicts(&c);
        assert_eq!(conflicts.get(&ip("10.0.0.1")).map(|s| s.len()), Some(2));
        let enforced = without_conflicts(&Arc::new(c), &conflicts);
        assert!(enforced.endpoints.iter().all(|e| e.ips.is_empty()), "{:?}", enforced.endpoints);
    }

    #[test]
    fn ranges_become_prefix_covers_and_identities_translate() {
        let mut ids = IdentityMap::default();
        ids.trans.insert(300, 700);
        let e = [
            Entry { identity: None, proto: None, ports: None, allow: false, rule_id: 1 },
            Entry { identity: Some(300), proto: Some(6), ports: Some((80, 81)), allow: true, rule_id: 2 },
            Entry { identity: Some(2), proto: Some(17), ports: None, allow: true, rule_id: 3 },
        ];
        let p = to_policy_entries(&e, &ids);
        assert_eq!(p.len(), 3);
        assert_eq!(p[1], PolicyEntry { identity: Some(700), proto: Some(6), port_prefix: Some((80, 15)), action: Action::Allow, rule_id: 2 });
        assert_eq!(p[2].identity, Some(2));
    }

    #[test]
    fn identity_map_inherits_pinned_numbers_once() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let c = Compiled {
            identities: vec![
                porin_calc::Identity { id: 256, kind: porin_calc::IdentityKind::Cidr { prefix: net("10.0.0.1/32"), rep: "10.0.0.1".parse().unwrap() }, members: vec![] },
                porin_calc::Identity { id: 257, kind: porin_calc::IdentityKind::Cidr { prefix: net("10.0.0.2/32"), rep: "10.0.0.2".parse().unwrap() }, members: vec![] },
                porin_calc::Identity { id: 258, kind: porin_calc::IdentityKind::Cidr { prefix: net("10.0.0.3/32"), rep: "10.0.0.3".parse().unwrap() }, members: vec![] },
            ],
            ipcache: vec![(net("10.0.0.1/32"), 256), (net("10.0.0.2/32"), 257), (net("10.0.0.3/32"), 258), (net("0.0.0.0/0"), 2)],
            endpoints: vec![],
        };
        // A previous run numbered them 270 and 270 (merged) and left 10.0.0.3 unmapped.
        let pinned: BTreeMap<IpNet, u32> = [(net("10.0.0.1/32"), 270), (net("10.0.0.2/32"), 270)].into_iter().collect();
        let mut m = IdentityMap::default();
        m.update(&c, &pinned);
        assert_eq!(m.get(256), 270);
        assert_eq!(m.get(257), 271, "270 is taken: a fresh number");
        assert_eq!(m.get(258), 272);
        assert_eq!(m.get(2), 2);
        // Stable afterwards, whatever the kernel holds.
        m.update(&c, &BTreeMap::new());
        assert_eq!((m.get(256), m.get(257), m.get(258)), (270, 271, 272));
    }
}
