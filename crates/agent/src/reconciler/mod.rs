//! The agent's kernel programming: a [`PolicyConsumer`] ([`DataplaneConsumer`], on its own thread) that owns
//! the eBPF dataplane ([`porin_dataplane::Dataplane`]) and hands every policy revision to the
//! [`NodeReconciler`], which compiles it for the workloads on this node ([`porin_calc::compile`]) and makes
//! the dataplane enforce it through the [`Datapath`] seam, applying only the difference.
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
//! * **Order, so no window opens.** The revision is compiled first; then, interface by interface, a new
//!   interface is attached (an attached interface without an endpoint entry drops everything: reason
//!   `drop_no_endpoint`) and its endpoint policy written at once, so a new pod drops for its own attach and
//!   map writes (milliseconds), never for a compile; every changed endpoint policy is written the same way
//!   (they may name identities the ipcache does not map yet: harmless); then the ipcache is made equal to the
//!   desired one, which installs new identities only after the policies that mention them and removes old
//!   ones only after no policy refers to them any more. Endpoints of pods that left are removed last.
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

mod binding;
mod datapath;
mod node;
mod status;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use porin_dataplane::{Dataplane, DataplaneOptions};
use tokio::sync::watch;

pub use datapath::{Datapath, FakeDatapath, Inject, Op};
pub use binding::{Binding, IdentityMap, bindings, to_policy_entries};
pub use node::{LOCKDOWN_TRACE, NetnsId, NodeReconciler, Problem, ReconcileReport, locks_down};
pub use status::{DataplaneStatus, EndpointStatus, MapStatus, ReadBackStatus};

use crate::engine::{PolicyConsumer, PolicySnapshot};
use crate::flows::{ContextInputs, FlowContext, FlowService};

/// How the agent's dataplane is set up.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    pub node: String,
    pub pin_dir: PathBuf,
    pub options: DataplaneOptions,
}

/// Why the eBPF dataplane could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("mounting bpffs at {}: {source}", dir.display())]
    Bpffs {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the dataplane at {}: {source}", dir.display())]
    Open {
        dir: PathBuf,
        #[source]
        source: porin_dataplane::Error,
    },
    #[error("reading the agent's network namespace: {0}")]
    Netns(#[source] std::io::Error),
}

/// A problem of the whole dataplane (not of one interface), as `porin status` reports it.
#[derive(Debug)]
enum GlobalProblem {
    /// The dataplane could not be opened: nothing is programmed; cleared once it opens.
    Open(OpenError),
    /// The ipcache is not what the revision wants.
    Ipcache(String),
}

impl std::fmt::Display for GlobalProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GlobalProblem::Open(e) => write!(f, "{e}"),
            GlobalProblem::Ipcache(m) => f.write_str(m),
        }
    }
}

/// The consumer: owns the [`Dataplane`] (opened lazily, on the first local workload, or at once when
/// pinned state exists) and the [`NodeReconciler`].
pub struct DataplaneConsumer {
    cfg: DataplaneConfig,
    dp: Option<Dataplane>,
    reconciler: NodeReconciler,
    /// The agent's own network namespace: the only one it attaches in.
    netns: Option<NetnsId>,
    global_error: Option<GlobalProblem>,
    last_snapshot: Option<Arc<PolicySnapshot>>,
    status: DataplaneStatus,
    tx: watch::Sender<Arc<DataplaneStatus>>,
    /// The flow pipeline: gets the ring buffer, an enricher snapshot per revision, counters.
    flows: Option<Arc<FlowService>>,
    /// When freed memory was last handed back ([`release_free_memory`]).
    last_trim: Instant,
}

impl DataplaneConsumer {
    pub fn new(cfg: DataplaneConfig, tx: watch::Sender<Arc<DataplaneStatus>>) -> DataplaneConsumer {
        let status = DataplaneStatus { mode: "ebpf".into(), pin_dir: Some(cfg.pin_dir.display().to_string()), ..Default::default() };
        let reconciler = NodeReconciler::new(cfg.node.clone());
        let mut c = DataplaneConsumer { cfg, dp: None, reconciler, netns: None, global_error: None, last_snapshot: None, status, tx, flows: None, last_trim: Instant::now() };
        // Pinned state from a previous run: open now, so enforcement is read back (and reported) at once.
        if porin_dataplane::sys::is_bpffs(&c.cfg.pin_dir).unwrap_or(false)
            && let Err(e) = c.open()
        {
            c.global_error = Some(GlobalProblem::Open(e));
        }
        c.publish();
        c
    }

    fn open(&mut self) -> Result<(), OpenError> {
        if self.dp.is_some() {
            return Ok(());
        }
        let dir = &self.cfg.pin_dir;
        porin_dataplane::sys::ensure_bpffs(dir).map_err(|source| OpenError::Bpffs { dir: dir.clone(), source })?;
        let dp = Dataplane::open(dir, &self.cfg.options).map_err(|source| OpenError::Open { dir: dir.clone(), source })?;
        let rb = dp.last_read_back();
        self.status.read_back =
            Some(ReadBackStatus { endpoints: rb.endpoints, policy_entries: rb.policy_entries, ipcache_entries: rb.ipcache_entries });
        tracing::info!(pin_dir = %dir.display(), endpoints = rb.endpoints, "dataplane open");
        self.dp = Some(dp);
        self.reconciler.reset_sweep();
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
    fn publish_flow_context(&self, s: &PolicySnapshot, report: &ReconcileReport) {
        let Some(f) = &self.flows else { return };
        let prev = f.context();
        let ctx = FlowContext::build(
            ContextInputs {
                revision: s.revision,
                cluster: report.cluster.clone(),
                endpoints: self.reconciler.bound_endpoints(),
                identities: report.compiled.identities.iter().map(|i| (self.reconciler.node_identity(i.id), i)).collect(),
                identity_table: report.compiled.identities.clone(),
                rules: self.reconciler.rules(),
            },
            Some(&prev),
        );
        f.set_context(ctx);
    }

    fn program(&mut self, s: &PolicySnapshot) -> Result<u64, OpenError> {
        if self.dp.is_none() && !self.reconciler.wants_interfaces(s) {
            self.status.mode = "ebpf (idle: no local workload interface)".into();
            return Ok(0);
        }
        self.open()?;
        self.status.mode = "ebpf".into();
        let netns = match self.netns {
            Some(n) => n,
            None => {
                let n = NetnsId::current().map_err(OpenError::Netns)?;
                self.netns = Some(n);
                n
            }
        };
        let dp = self.dp.as_mut().expect("opened");
        let report = self.reconciler.reconcile(dp, s, netns);
        self.global_error = report.ipcache_error.clone().map(GlobalProblem::Ipcache);
        self.status.last_compile_millis = report.compile_millis;
        self.status.identities = report.identities;
        self.status.cleanup_failures += report.cleanup_failures;
        let latency = crate::latency::programmed(crate::latency::Stages {
            revision: s.revision,
            seen: s.changed_at,
            built: s.built_at,
            compiled: Some(report.compiled_at),
            programmed: report.programmed_at,
        });
        if let Some(l) = latency.last() {
            self.status.last_latency = Some(*l);
        }
        self.publish_flow_context(s, &report);
        self.status.endpoints = report.endpoints;
        Ok(report.writes)
    }

    /// Forgets interfaces that are gone and removes pinned links of interfaces that no longer exist. An
    /// interface that still exists is never detached (called on the refresh tick).
    pub fn gc_links(&mut self) {
        let Some(dp) = self.dp.as_mut() else { return };
        let (gone, failures) = self.reconciler.forget_gone(dp);
        self.status.cleanup_failures += failures;
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
                f.observe_dataplane(counters.as_ref(), occupancy.as_deref(), self.reconciler.attached());
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
        let mut errors: Vec<String> = self.global_error.iter().map(|e| e.to_string()).collect();
        errors.extend(self.reconciler.problems().iter().map(|(p, e)| format!("{p}: {e}")));
        self.status.errors = errors;
        self.tx.send_replace(Arc::new(self.status.clone()));
    }

    /// Hands freed memory back when the last time is at least `every` ago.
    fn trim(&mut self, every: Duration) {
        if self.last_trim.elapsed() >= every {
            release_free_memory();
            self.last_trim = Instant::now();
        }
    }

    /// Retry after an error (called on the refresh tick).
    pub fn retry(&mut self) {
        if (self.global_error.is_some() || self.reconciler.has_problems())
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
                if matches!(self.global_error, Some(GlobalProblem::Open(_))) {
                    self.global_error = None;
                }
                self.status.last_writes = writes;
            }
            Err(e) => {
                tracing::warn!(revision = s.revision, error = %e, "dataplane programming failed");
                self.global_error = Some(GlobalProblem::Open(e));
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
        // After the revision is in the kernel; at most once a second under a stream of changes.
        self.trim(Duration::from_secs(1));
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
                    consumer.trim(Duration::ZERO);
                }
            }
        }
    })?;
    Ok(())
}

/// Hands memory freed since the last tick back to the kernel. Every revision frees a model, a compile's
/// temporaries and a flow context; glibc keeps such free memory in its arenas (measured: ~120 MiB of a 436 MiB
/// resident set at 10k rules and 10k pods), so the resident set would track the largest revision ever
/// seen, not the current one. Called on the idle tick, never between a revision and its kernel writes.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists (thread-safe in glibc); no Rust invariant
    // is involved.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// The status of an agent without a dataplane (`--dataplane none`, `porin serve`).
pub fn none_status() -> DataplaneStatus {
    DataplaneStatus { mode: "none".into(), ..Default::default() }
}

