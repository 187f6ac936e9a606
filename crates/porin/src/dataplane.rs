//! The agent's kernel programming: a [`PolicyConsumer`] that compiles every policy revision for the
//! workloads on this node ([`porin_calc::compile`]) and makes the eBPF dataplane enforce it
//! ([`porin_dataplane::Dataplane`]), applying only the difference.
//!
//! * **Which workloads.** A pod is local when its `spec.nodeName` is this node (or unset); it is
//!   programmed when it carries the annotation `porin.io/interface: <host-side ifname>` (optionally
//!   `porin.io/netns: <netns name or path>` when the interface is not in the agent's namespace).
//!   `porin lab` writes both; a CNI plugin would.
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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use porin_calc::{Compiled, Entry, FIRST_DYNAMIC_IDENTITY};
use porin_dataplane::{Action, Dataplane, DataplaneOptions, EndpointPolicy, PolicyEntry, port_range_to_prefixes};
use serde::Serialize;
use tokio::sync::watch;

use crate::agent::{PolicyConsumer, PolicySnapshot};
use crate::flows::{ContextInputs, FlowContext, FlowService};

/// Annotation naming a pod's host-side interface.
pub const ANNOT_INTERFACE: &str = "porin.io/interface";
/// Annotation naming the network namespace of that interface (name under /var/run/netns, or a path).
pub const ANNOT_NETNS: &str = "porin.io/netns";

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
    /// `programmed`, `locked-down` (denies everything) or `error`.
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

#[derive(Debug, Clone)]
struct Iface {
    ifname: String,
    netns: Option<PathBuf>,
    ifindex: u32,
    endpoint_id: u32,
}

fn netns_path(s: &str) -> PathBuf {
    if s.contains('/') { PathBuf::from(s) } else { Path::new("/var/run/netns").join(s) }
}

/// The consumer: owns the [`Dataplane`] (opened lazily, on the first local workload, or at once when
/// pinned state exists) and the compiler state.
pub struct DataplaneConsumer {
    cfg: DataplaneConfig,
    dp: Option<Dataplane>,
    calc: porin_calc::State,
    ids: IdentityMap,
    ifaces: BTreeMap<String, Iface>,
    last: BTreeMap<u32, EndpointPolicy>,
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
    fn publish_flow_context(&self, s: &PolicySnapshot, compiled: &Compiled) {
        let Some(f) = &self.flows else { return };
        let prev = f.context();
        let ctx = FlowContext::build(
            ContextInputs {
                revision: s.revision,
                cluster: s.cluster.clone(),
                endpoints: self.ifaces.iter().map(|(pod, i)| (i.endpoint_id, pod.clone())).collect(),
                identities: compiled.identities.iter().map(|i| (self.ids.get(i.id), i)).collect(),
                rules: &self.calc.rules,
            },
            Some(&prev),
        );
        f.set_context(ctx);
    }

    fn program(&mut self, s: &PolicySnapshot) -> Result<u64, String> {
        let node = self.cfg.node.clone();
        // Local pods with an interface.
        let mut wanted: BTreeMap<String, (String, Option<PathBuf>)> = BTreeMap::new();
        for e in &s.cluster.endpoints {
            let id = e.id();
            let Some(p) = s.pods.get(&id) else { continue };
            if p.node_name.as_deref().is_some_and(|n| n != node) {
                continue;
            }
            let Some(ifname) = p.annotations.get(ANNOT_INTERFACE).filter(|s| !s.is_empty()) else { continue };
            wanted.insert(id, (ifname.clone(), p.annotations.get(ANNOT_NETNS).map(|n| netns_path(n))));
        }
        if wanted.is_empty() && self.dp.is_none() {
            self.status.mode = "ebpf (idle: no local workload interface)".into();
            return Ok(0);
        }
        self.open()?;
        self.status.mode = "ebpf".into();
        let dp = self.dp.as_mut().expect("opened");

        // 1. Attach new interfaces (they drop everything until their endpoint entry exists).
        for (pod, (ifname, netns)) in &wanted {
            if let Some(i) = self.ifaces.get(pod)
                && &i.ifname == ifname
                && &i.netns == netns
            {
                continue;
            }
            match dp.attach(netns.as_deref(), ifname) {
                Ok(ifindex) => {
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
                    if let Some(old) = self.ifaces.insert(pod.clone(), Iface { ifname: ifname.clone(), netns: netns.clone(), ifindex, endpoint_id })
                        && old.ifindex != ifindex
                    {
                        let _ = dp.remove_endpoint(old.ifindex);
                        self.last.remove(&old.ifindex);
                    }
                }
                Err(e) => {
                    self.errors.insert(pod.clone(), format!("attaching to {ifname}: {e}"));
                }
            }
        }

        // 2. Compile for the attached local endpoints.
        let t0 = Instant::now();
        let local: BTreeSet<String> = wanted.keys().filter(|p| self.ifaces.contains_key(*p)).cloned().collect();
        let mut compiled = porin_calc::compile(&s.cluster, &mut self.calc, &|e| local.contains(&e.id()));
        lock_down(&mut compiled, &s.lockdown, &mut self.calc);
        self.ids.update(&compiled, dp.engine().ipcache());
        self.status.last_compile_millis = t0.elapsed().as_secs_f64() * 1e3;
        let mut writes = 0u64;
        let mut count = |st: porin_dataplane::SyncStats| {
            writes += u64::from(st.inserted + st.updated + st.deleted + st.flips);
        };

        // 3. Endpoint policies (before the ipcache installs the identities they name).
        for prog in &compiled.endpoints {
            let Some(i) = self.ifaces.get(&prog.endpoint) else { continue };
            let policy = EndpointPolicy {
                endpoint_id: i.endpoint_id,
                ingress: to_policy_entries(&prog.ingress, &self.ids),
                egress: to_policy_entries(&prog.egress, &self.ids),
                addrs: s.cluster.endpoints.iter().find(|e| prog.endpoint.split_once('/') == Some((e.namespace.as_str(), e.name.as_str()))).map(|e| e.ips.clone()).unwrap_or_default(),
            };
            if self.last.get(&i.ifindex) == Some(&policy) {
                continue;
            }
            match dp.set_endpoint(i.ifindex, policy.clone()) {
                Ok(st) => {
                    count(st);
                    self.errors.remove(&prog.endpoint);
                    self.last.insert(i.ifindex, policy);
                }
                Err(e) => {
                    tracing::warn!(pod = %prog.endpoint, error = %e, "programming endpoint failed");
                    self.errors.insert(prog.endpoint.clone(), e.to_string());
                    self.last.remove(&i.ifindex);
                }
            }
        }

        // 4. The ipcache: new identities after the policies naming them, stale ones after no policy does.
        let ipcache: Vec<(IpNet, u32)> = compiled.ipcache.iter().map(|(p, id)| (*p, self.ids.get(*id))).collect();
        match dp.set_ipcache(ipcache) {
            Ok(st) => {
                count(st);
                self.global_error = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "programming the ipcache failed");
                self.global_error = Some(format!("ipcache: {e}"));
            }
        }

        // 5. Endpoints of pods that left this node (or lost their interface).
        let gone: Vec<String> = self.ifaces.keys().filter(|p| !wanted.contains_key(*p)).cloned().collect();
        for pod in gone {
            let i = self.ifaces.remove(&pod).expect("present");
            self.last.remove(&i.ifindex);
            self.errors.remove(&pod);
            match dp.remove_endpoint(i.ifindex) {
                Ok(st) => count(st),
                Err(e) => tracing::warn!(pod, error = %e, "removing endpoint failed"),
            }
            if let Err(e) = dp.detach(i.netns.as_deref(), &i.ifname) {
                tracing::warn!(pod, error = %e, "detaching failed");
            }
        }
        self.errors.retain(|p, _| wanted.contains_key(p));

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
        self.publish_flow_context(s, &compiled);
        let mut eps = Vec::new();
        for (pod, (ifname, _)) in &wanted {
            let i = self.ifaces.get(pod);
            let pol = i.and_then(|i| self.last.get(&i.ifindex));
            let err = self.errors.get(pod).cloned();
            let state = match (&err, pol) {
                (Some(e), _) if e.contains("full") || e.contains("lock") => "locked-down",
                (Some(_), _) => "error",
                (None, Some(_)) if s.lockdown.covers(pod) => "locked-down",
                (None, Some(_)) => "programmed",
                (None, None) => "error",
            };
            eps.push(EndpointStatus {
                pod: pod.clone(),
                interface: ifname.clone(),
                ifindex: i.map(|i| i.ifindex),
                endpoint_id: i.map(|i| i.endpoint_id),
                ingress_entries: pol.map_or(0, |p| p.ingress.len()),
                egress_entries: pol.map_or(0, |p| p.egress.len()),
                state: state.into(),
                error: err,
            });
        }
        self.status.endpoints = eps;
        Ok(writes)
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

/// Endpoints the snapshot locks down ([`crate::agent::Lockdown`]) deny everything both ways: their entries
/// become one deny-all default per direction (a new policy revision, so established flows are revoked too).
fn lock_down(compiled: &mut Compiled, lockdown: &crate::agent::Lockdown, calc: &mut porin_calc::State) {
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
