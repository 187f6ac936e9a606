//! The node reconciler: decides what every local interface should enforce for one policy revision and makes a
//! [`Datapath`] do it, in the order that opens no window (see the module documentation of
//! [`crate::reconciler`]). It owns the compiler state and the interface table; it never opens, mounts or
//! reads the kernel itself: everything goes through the [`Datapath`] it is handed, so its ordering and its
//! failure handling are tested against the in-memory fake.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use porin_calc::{Compiled, Entry};
use porin_dataplane::EndpointPolicy;
use porin_policy::Shared;

use super::binding::{IdentityMap, Want, address_conflicts, decide, to_policy_entries, without_conflicts};
use super::datapath::Datapath;
use super::status::EndpointStatus;
use crate::engine::PolicySnapshot;

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

/// Why a local interface is not programmed as its pod's policy says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The binding is refused (see [`decide`]): the interface is attached without an entry and drops everything.
    Refused(String),
    /// The policy does not fit (map full, over quota): the dataplane locked the endpoint down (it denies).
    LockedDown(String),
    /// Anything else: the endpoint keeps its previous policy or, when new, has no entry (drops). Retried.
    Failed(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Refused(m) | Problem::LockedDown(m) | Problem::Failed(m) => f.write_str(m),
        }
    }
}

/// Does the dataplane deny everything on this endpoint after `e` (its policy did not fit)?
pub fn locks_down(e: &porin_dataplane::Error) -> bool {
    matches!(e, porin_dataplane::Error::PolicyMapFull { .. } | porin_dataplane::Error::PolicyOverQuota { .. })
}

/// What one reconciliation did.
#[derive(Debug, Clone)]
pub struct ReconcileReport {
    /// Kernel writes: entries inserted/updated/deleted, endpoint flips.
    pub writes: u64,
    /// Every local interface: wanted ones first (by name), then the unbound ones.
    pub endpoints: Vec<EndpointStatus>,
    /// Identities of the compiled revision.
    pub identities: usize,
    pub compile_millis: f64,
    /// When the compile finished and when the kernel writes of this revision were done.
    pub compiled_at: Instant,
    pub programmed_at: Instant,
    /// The ipcache could not be made equal to the desired one (or a prefix was left out).
    pub ipcache_error: Option<String>,
    /// Operations that failed outside an endpoint's reported problem (removals, the sweep); each was logged.
    pub cleanup_failures: u64,
    /// The model the kernel enforces (duplicate addresses removed) and what it compiled to.
    pub cluster: Arc<porin_policy::Cluster>,
    pub compiled: Compiled,
}

/// The reconciler of one node: compiler state, identity numbering and the table of attached interfaces.
#[derive(Debug)]
pub struct NodeReconciler {
    node: String,
    calc: porin_calc::State,
    ids: IdentityMap,
    /// Attached interfaces by name (all in the agent's namespace).
    ifaces: BTreeMap<String, Iface>,
    last: BTreeMap<IfKey, EndpointPolicy>,
    /// Problems by interface name.
    problems: BTreeMap<String, Problem>,
    swept: bool,
    /// Incident response: local endpoint ids quarantined, and blocked prefixes, whose connections were cut
    /// (each is cut once, when it first appears in a programmed revision).
    cut_quarantined: BTreeSet<u32>,
    cut_blocked: BTreeSet<IpNet>,
    /// The compiler's ipcache and identity table last written to the datapath in full and without a problem.
    /// A compile that hands back the same allocations (its identity table was reused: no CIDR, endpoint or
    /// network set changed) needs neither new identity numbers nor an ipcache diff. Forgotten when the
    /// datapath is (re)opened.
    ipcache_written: Option<(Shared<Vec<(IpNet, u32)>>, Shared<Vec<porin_calc::Identity>>)>,
    /// The duplicate addresses of the last revision's endpoints (the same allocation: the same answer).
    conflicts: Option<(Shared<Vec<porin_policy::Endpoint>>, Arc<BTreeMap<IpAddr, BTreeSet<String>>>)>,
}

impl NodeReconciler {
    pub fn new(node: impl Into<String>) -> NodeReconciler {
        NodeReconciler {
            node: node.into(),
            calc: porin_calc::State::new(),
            ids: IdentityMap::default(),
            ifaces: BTreeMap::new(),
            last: BTreeMap::new(),
            problems: BTreeMap::new(),
            swept: false,
            cut_quarantined: BTreeSet::new(),
            cut_blocked: BTreeSet::new(),
            ipcache_written: None,
            conflicts: None,
        }
    }

    /// Sweep again after the next full push (a datapath was (re)opened).
    pub fn reset_sweep(&mut self) {
        self.swept = false;
        self.ipcache_written = None;
    }

    /// Does any local interface have a problem (a retry may help)?
    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    /// Current problems, by interface name.
    pub fn problems(&self) -> &BTreeMap<String, Problem> {
        &self.problems
    }

    /// The interfaces with a bound pod: (endpoint id, `namespace/pod`).
    pub fn bound_endpoints(&self) -> Vec<(u32, String)> {
        self.ifaces.values().filter_map(|i| i.pod.clone().map(|p| (i.endpoint_id, p))).collect()
    }

    /// How many interfaces are attached.
    pub fn attached(&self) -> usize {
        self.ifaces.len()
    }

    /// Node identity of compiler identity `id`.
    pub fn node_identity(&self, id: u32) -> u32 {
        self.ids.get(id)
    }

    /// The compiler's rule table (rule id → meta).
    pub fn rules(&self) -> &[porin_calc::RuleMeta] {
        &self.calc.rules
    }

    /// Would this revision bind any interface of this node? (Nothing to open before it does.)
    pub fn wants_interfaces(&self, s: &PolicySnapshot) -> bool {
        !decide(&self.node, &s.bindings, &s.cluster, &address_conflicts(&s.cluster)).is_empty()
    }

    /// Programs revision `s` into `dp` (interfaces of namespace `netns`), applying only the difference.
    ///
    /// Order, so no window opens: 1. compile; 2. per interface, attach it if new (attached without an entry:
    /// drop) and 3. write its endpoint policy at once (or remove the entry of a refused binding); 4. the
    /// ipcache; 5. remove the entries of interfaces whose binding is gone (they stay attached: drop); 6. after
    /// the first full push, sweep what a previous run left.
    pub fn reconcile(&mut self, dp: &mut dyn Datapath, s: &PolicySnapshot, netns: NetnsId) -> ReconcileReport {
        let conflicts = match &self.conflicts {
            Some((of, c)) if Shared::ptr_eq(of, &s.cluster.endpoints) => c.clone(),
            _ => {
                let c = Arc::new(address_conflicts(&s.cluster));
                self.conflicts = Some((s.cluster.endpoints.clone(), c.clone()));
                c
            }
        };
        let wanted = decide(&self.node, &s.bindings, &s.cluster, &conflicts);
        let cluster = without_conflicts(&s.cluster, &conflicts);
        let mut cleanup_failures = 0u64;
        let mut writes = 0u64;
        let mut count = |st: porin_dataplane::SyncStats| {
            writes += u64::from(st.inserted + st.updated + st.deleted + st.flips);
        };

        // 1. Compile first, for the bound local endpoints whose interface is attached or exists now: a new
        //    interface is attached (step 2) only once its policy is ready, so between its attach and its
        //    endpoint entry (step 3) it drops for the time of the map writes, never for a compile. An
        //    interface that appears between this compile and its attach has no compiled policy yet: attached,
        //    no entry, drops; it is programmed on the next revision or retry tick.
        let t0 = Instant::now();
        // namespace → pod names (looked up per endpoint of the cluster without formatting its id).
        let mut local: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (_, w) in wanted.iter().filter(|(ifname, _)| self.ifaces.contains_key(*ifname) || dp.ifindex(ifname).is_some()) {
            if let Want::Bound { pod, .. } = w
                && let Some((ns, name)) = pod.split_once('/')
            {
                local.entry(ns).or_default().insert(name);
            }
        }
        let mut compiled = porin_calc::compile(&cluster, &mut self.calc, &|e| {
            local.get(e.namespace.as_str()).is_some_and(|names| names.contains(e.name.as_str()))
        });
        lock_down(&mut compiled, &s.lockdown, &mut self.calc);
        let same_table = self
            .ipcache_written
            .take()
            .filter(|(c, i)| Shared::ptr_eq(c, &compiled.ipcache) && Shared::ptr_eq(i, &compiled.identities));
        if same_table.is_none() {
            self.ids.update(&compiled, dp.ipcache());
        }
        let compiled_at = Instant::now();
        let compile_millis = compiled_at.duration_since(t0).as_secs_f64() * 1e3;
        tracing::info!(revision = s.revision, millis = compile_millis, endpoints = local.values().map(BTreeSet::len).sum::<usize>(), "dataplane compiled");
        let programs: BTreeMap<&str, &porin_calc::EndpointProgram> = compiled.endpoints.iter().map(|p| (p.endpoint.as_str(), p)).collect();

        // 2. Per wanted interface: attach it if it is new or was re-created (new index) -- it drops everything
        //    until its endpoint entry exists; only in the agent's own network namespace -- and write its
        //    endpoint entry right away (3), before the next interface is attached, so that each interface's
        //    drop window is its own attach-to-entry time.
        let mut attached_at: BTreeMap<String, Instant> = BTreeMap::new();
        for (ifname, want) in &wanted {
            let now = dp.ifindex(ifname);
            let current = self.ifaces.get(ifname).is_some_and(|i| now == Some(i.key.1));
            if !current {
                match dp.attach(ifname) {
                    Ok(ifindex) => {
                        let key = (netns, ifindex);
                        // Another name on this index (renamed, or replaced): forget it first.
                        let stale: Vec<String> =
                            self.ifaces.iter().filter(|(n, i)| i.key == key || *n == ifname).map(|(n, _)| n.clone()).collect();
                        for n in stale {
                            if let Some(old) = self.ifaces.remove(&n)
                                && old.key != key
                            {
                                if let Err(e) = dp.remove_endpoint(old.key.1) {
                                    tracing::warn!(ifname = %n, ifindex = old.key.1, error = %e, "removing the entry of a replaced interface failed");
                                    cleanup_failures += 1;
                                }
                                self.last.remove(&old.key);
                            }
                        }
                        let endpoint_id = match dp.endpoint_id(ifindex) {
                            Some(id) => id,
                            None => {
                                let mut used = dp.endpoint_ids();
                                used.extend(self.ifaces.values().map(|i| i.endpoint_id));
                                (1..).find(|i| !used.contains(i)).expect("free id")
                            }
                        };
                        self.ifaces.insert(ifname.clone(), Iface { key, endpoint_id, pod: None });
                        self.problems.remove(ifname);
                        tracing::info!(revision = s.revision, interface = %ifname, ifindex, "dataplane attached");
                        attached_at.insert(ifname.clone(), Instant::now());
                    }
                    Err(e) => {
                        self.problems.insert(ifname.clone(), Problem::Failed(format!("attaching to {ifname} (in the node's network namespace): {e}")));
                    }
                }
            }

            // 3. Its endpoint policy (before the ipcache installs the identities it names). Denied interfaces
            //    lose their entry: no entry, every packet drops.
            let Some(i) = self.ifaces.get_mut(ifname) else { continue };
            match want {
                Want::Deny { pod, reason } => {
                    i.pod = Some(pod.clone());
                    self.problems.insert(ifname.clone(), Problem::Refused(reason.clone()));
                    if self.last.remove(&i.key).is_some() || dp.endpoint_id(i.key.1).is_some() {
                        match dp.remove_endpoint(i.key.1) {
                            Ok(st) => count(st),
                            Err(e) => {
                                tracing::warn!(ifname = %ifname, error = %e, "removing the entry of a refused binding failed");
                                self.problems.insert(ifname.clone(), Problem::Refused(format!("{reason}; removing its entry failed: {e}")));
                            }
                        }
                    }
                }
                Want::Bound { pod, addrs } => {
                    i.pod = Some(pod.clone());
                    let Some(prog) = programs.get(pod.as_str()) else {
                        self.problems.insert(ifname.clone(), Problem::Failed(format!("no compiled policy for {pod}")));
                        continue;
                    };
                    let policy = EndpointPolicy {
                        endpoint_id: i.endpoint_id,
                        ingress: to_policy_entries(&prog.ingress, &self.ids),
                        egress: to_policy_entries(&prog.egress, &self.ids),
                        addrs: addrs.clone(),
                    };
                    if self.last.get(&i.key) == Some(&policy) && dp.endpoint_id(i.key.1).is_some() {
                        self.problems.remove(ifname);
                        continue;
                    }
                    match dp.set_endpoint(i.key.1, policy.clone()) {
                        Ok(st) => {
                            count(st);
                            self.problems.remove(ifname);
                            self.last.insert(i.key, policy);
                            if let Some(t) = attached_at.get(ifname) {
                                // The window in which the new interface dropped everything.
                                tracing::info!(revision = s.revision, interface = %ifname, dropped_millis = t.elapsed().as_secs_f64() * 1e3, "dataplane endpoint programmed after attach");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(pod = %pod, error = %e, "programming endpoint failed");
                            let problem = if locks_down(&e) { Problem::LockedDown(e.to_string()) } else { Problem::Failed(e.to_string()) };
                            self.problems.insert(ifname.clone(), problem);
                            self.last.remove(&i.key);
                        }
                    }
                }
            }
        }

        // 4. The ipcache: new identities after the policies naming them, stale ones after no policy does.
        //    A prefix with two identities (never expected once duplicate addresses are removed above) is
        //    left out and reported instead of failing the whole sync: every other change still lands.
        let ipcache_error = match same_table {
            Some(written) => {
                self.ipcache_written = Some(written);
                None
            }
            None => self.write_ipcache(dp, &compiled, &mut count),
        };

        // 4b. Incident response (docs/design/respond.md): once the revision that quarantines a local endpoint
        //     or blocks a prefix is programmed, delete the conntrack entries of that endpoint and those with an
        //     address in the prefix. The dataplane would also revoke them at their next packet (an endpoint's
        //     new policy revision revalidates its entries), but only where that endpoint's entries changed: a
        //     prefix added to an existing block list changes the ipcache alone. Without an entry, every
        //     packet of the connection is decided by the policy and dropped.
        self.cut_connections(dp, &cluster);

        // 5. Interfaces whose binding is gone (WorkloadEndpoint or pod deleted, moved to another node):
        //    they stay attached and lose their entry, so they drop everything while they exist. They are
        //    forgotten (and their pinned links removed) once the interface is gone: see `forget_gone`.
        for (ifname, i) in self.ifaces.iter_mut() {
            if wanted.contains_key(ifname) {
                continue;
            }
            if i.pod.take().is_some() || self.last.contains_key(&i.key) || dp.endpoint_id(i.key.1).is_some() {
                self.last.remove(&i.key);
                match dp.remove_endpoint(i.key.1) {
                    Ok(st) => count(st),
                    Err(e) => {
                        tracing::warn!(ifname, error = %e, "removing endpoint failed");
                        cleanup_failures += 1;
                    }
                }
            }
            self.problems.remove(ifname);
        }
        self.problems.retain(|n, _| wanted.contains_key(n));

        // 6. After the first full push since open: sweep what a previous run left and nobody wants.
        if !self.swept {
            match dp.sweep() {
                Ok(st) => count(st),
                Err(e) => {
                    tracing::warn!(error = %e, "sweep failed");
                    cleanup_failures += 1;
                }
            }
            if let Err(e) = dp.detach_gone() {
                tracing::warn!(error = %e, "removing links of interfaces that are gone failed");
                cleanup_failures += 1;
            }
            self.swept = true;
        }

        let programmed_at = Instant::now();
        ReconcileReport {
            writes,
            endpoints: self.endpoint_status(&wanted, s),
            identities: compiled.identities.len(),
            compile_millis,
            compiled_at,
            programmed_at,
            ipcache_error,
            cleanup_failures,
            cluster,
            compiled,
        }
    }

    /// Step 4 of [`NodeReconciler::reconcile`]: makes the datapath's ipcache the compiled one; remembers it as
    /// written when nothing was left out.
    fn write_ipcache(
        &mut self,
        dp: &mut dyn Datapath,
        compiled: &Compiled,
        count: &mut impl FnMut(porin_dataplane::SyncStats),
    ) -> Option<String> {
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
                if ipcache_problems.is_empty() {
                    self.ipcache_written = Some((compiled.ipcache.clone(), compiled.identities.clone()));
                    None
                } else {
                    Some(format!("ipcache: {}", ipcache_problems.join("; ")))
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "programming the ipcache failed");
                Some(format!("ipcache: {e}"))
            }
        }
    }

    fn cut_connections(&mut self, dp: &mut dyn Datapath, cluster: &porin_policy::Cluster) {
        use porin_model::respond::{BLOCKLIST_SET, LABEL_QUARANTINED};
        let quarantined: BTreeSet<u32> = self
            .ifaces
            .values()
            .filter(|i| self.last.contains_key(&i.key))
            .filter(|i| {
                i.pod.as_deref().and_then(|p| cluster.endpoint(p)).is_some_and(|x| {
                    cluster.endpoints[x].labels.get(LABEL_QUARANTINED).is_some_and(|v| v == "true")
                })
            })
            .map(|i| i.endpoint_id)
            .collect();
        let blocked: BTreeSet<IpNet> = cluster
            .net_sets
            .iter()
            .filter(|n| n.namespace.is_none() && n.name == BLOCKLIST_SET)
            .flat_map(|n| n.nets.iter().copied())
            .collect();
        let new_q: BTreeSet<u32> = quarantined.difference(&self.cut_quarantined).copied().collect();
        let new_b: Vec<IpNet> = blocked.difference(&self.cut_blocked).copied().collect();
        if !new_q.is_empty() || !new_b.is_empty() {
            match dp.cut_connections(&new_q, &new_b) {
                Ok(n) => tracing::warn!(endpoints = ?new_q, prefixes = ?new_b, deleted = n, "incident response: connections cut"),
                Err(e) => {
                    // Not remembered as cut: tried again with the next revision or retry. The dataplane still
                    // revokes the entries whose endpoint's policy changed, at their next packet.
                    tracing::error!(error = %e, "cutting the connections of quarantined endpoints or blocked prefixes failed");
                    return;
                }
            }
        }
        self.cut_quarantined = quarantined;
        self.cut_blocked = blocked;
    }

    fn endpoint_status(&self, wanted: &BTreeMap<String, Want>, s: &PolicySnapshot) -> Vec<EndpointStatus> {
        let mut eps = Vec::new();
        for (ifname, want) in wanted {
            let i = self.ifaces.get(ifname);
            let pol = i.and_then(|i| self.last.get(&i.key));
            let problem = self.problems.get(ifname);
            let (pod, state) = match (want, problem, pol) {
                (Want::Deny { pod, .. }, _, _) => (pod, "denied"),
                (Want::Bound { pod, .. }, Some(Problem::LockedDown(_)), _) => (pod, "locked-down"),
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
                error: problem.map(|p| p.to_string()),
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
        eps
    }

    /// Forgets unbound interfaces that are gone and detaches what is attached to interfaces that no longer
    /// exist. An interface that still exists is never detached (called on the refresh tick). Returns the
    /// forgotten interface names and the failures (each logged).
    pub fn forget_gone(&mut self, dp: &mut dyn Datapath) -> (Vec<String>, u64) {
        let mut failures = 0;
        let gone: Vec<String> = self.ifaces.iter().filter(|(n, i)| i.pod.is_none() && dp.ifindex(n) != Some(i.key.1)).map(|(n, _)| n.clone()).collect();
        for n in &gone {
            if let Some(i) = self.ifaces.remove(n) {
                self.last.remove(&i.key);
                if let Err(e) = dp.remove_endpoint(i.key.1) {
                    tracing::warn!(ifname = %n, error = %e, "removing the entry of a gone interface failed");
                    failures += 1;
                }
            }
        }
        match dp.detach_gone() {
            Ok(k) if k > 0 => tracing::info!(links = k, "removed pinned links of interfaces that are gone"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "sweeping links failed");
                failures += 1;
            }
        }
        (gone, failures)
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
