//! The reconciler's seam to the kernel: [`Datapath`], implemented by the eBPF [`Dataplane`] and, for tests
//! without root, by the in-memory [`FakeDatapath`], which also models what a packet meets.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use porin_dataplane::{Dataplane, EndpointPolicy, Error, SyncStats};

/// What the node reconciler does to the dataplane. Every write returns the dataplane's typed error.
pub trait Datapath {
    /// The index of interface `ifname` in the agent's network namespace, if it exists now.
    fn ifindex(&self, ifname: &str) -> Option<u32>;
    /// Attach the programs to `ifname` (in the agent's own network namespace); returns its index. An
    /// attached interface without an endpoint entry drops every packet.
    fn attach(&mut self, ifname: &str) -> Result<u32, Error>;
    /// Detach what is attached to interfaces that no longer exist (their pinned links); returns how many.
    /// An interface that exists is never detached.
    fn detach_gone(&mut self) -> Result<usize, Error>;
    /// The endpoint id the dataplane holds for `ifindex`.
    fn endpoint_id(&self, ifindex: u32) -> Option<u32>;
    /// Every endpoint id the dataplane holds.
    fn endpoint_ids(&self) -> BTreeSet<u32>;
    /// The ipcache as the dataplane holds it.
    fn ipcache(&self) -> &BTreeMap<IpNet, u32>;
    /// Write the policy and own addresses of the endpoint on `ifindex`.
    fn set_endpoint(&mut self, ifindex: u32, policy: EndpointPolicy) -> Result<SyncStats, Error>;
    /// Make the ipcache exactly `entries`.
    fn set_ipcache(&mut self, entries: Vec<(IpNet, u32)>) -> Result<SyncStats, Error>;
    /// Remove the endpoint entry of `ifindex` (its interface then drops everything while attached).
    fn remove_endpoint(&mut self, ifindex: u32) -> Result<SyncStats, Error>;
    /// Remove what a previous run left and nobody wants any more.
    fn sweep(&mut self) -> Result<SyncStats, Error>;
    /// Cut established connections: delete the conntrack entries of `endpoint_ids` (every one) and those with
    /// an address inside `nets`; returns how many were deleted. Their next packets are decided by the policy.
    fn cut_connections(&mut self, endpoint_ids: &BTreeSet<u32>, nets: &[IpNet]) -> Result<usize, Error>;
}

impl Datapath for Dataplane {
    fn ifindex(&self, ifname: &str) -> Option<u32> {
        porin_dataplane::sys::ifindex(ifname).ok()
    }
    fn attach(&mut self, ifname: &str) -> Result<u32, Error> {
        Dataplane::attach(self, None, ifname)
    }
    fn detach_gone(&mut self) -> Result<usize, Error> {
        self.sweep_links(None)
    }
    fn endpoint_id(&self, ifindex: u32) -> Option<u32> {
        self.engine().endpoint(ifindex).map(|v| v.endpoint_id)
    }
    fn endpoint_ids(&self) -> BTreeSet<u32> {
        let e = self.engine();
        e.endpoint_ifindexes().iter().filter_map(|i| e.endpoint(*i).map(|v| v.endpoint_id)).collect()
    }
    fn ipcache(&self) -> &BTreeMap<IpNet, u32> {
        self.engine().ipcache()
    }
    fn set_endpoint(&mut self, ifindex: u32, policy: EndpointPolicy) -> Result<SyncStats, Error> {
        Dataplane::set_endpoint(self, ifindex, policy)
    }
    fn set_ipcache(&mut self, entries: Vec<(IpNet, u32)>) -> Result<SyncStats, Error> {
        Dataplane::set_ipcache(self, entries)
    }
    fn remove_endpoint(&mut self, ifindex: u32) -> Result<SyncStats, Error> {
        Dataplane::remove_endpoint(self, ifindex)
    }
    fn sweep(&mut self) -> Result<SyncStats, Error> {
        Dataplane::sweep(self)
    }
    fn cut_connections(&mut self, endpoint_ids: &BTreeSet<u32>, nets: &[IpNet]) -> Result<usize, Error> {
        Dataplane::cut_conntrack(self, endpoint_ids, nets).map(|s| s.deleted)
    }
}

/// One call the reconciler made, as [`FakeDatapath`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Attach(String),
    DetachGone,
    SetEndpoint(u32),
    SetIpcache,
    RemoveEndpoint(u32),
    Sweep,
    /// Endpoint ids and prefixes whose connections were cut.
    CutConnections(Vec<u32>, Vec<IpNet>),
}

/// A failure [`FakeDatapath`] injects.
pub type Inject = Box<dyn FnMut(&Op) -> Option<Error> + Send>;

/// An in-memory dataplane: interfaces (by name → index), attachments, endpoint entries and the ipcache,
/// with a log of every call and failures injected per call.
#[derive(Default)]
pub struct FakeDatapath {
    /// Interfaces that exist in the namespace.
    pub interfaces: BTreeMap<String, u32>,
    /// Attached interface indexes.
    pub attached: BTreeSet<u32>,
    pub endpoints: BTreeMap<u32, EndpointPolicy>,
    pub ipcache: BTreeMap<IpNet, u32>,
    /// Every call, in order.
    pub log: Vec<Op>,
    /// Called before every operation; `Some(error)` makes it fail without effect.
    pub inject: Option<Inject>,
    /// Called after every successful operation with the state it left (for invariants that must hold at every
    /// step, not only at the end).
    #[allow(clippy::type_complexity)]
    pub observe: Option<Box<dyn FnMut(&Op, &FakeDatapath) + Send>>,
}

impl std::fmt::Debug for FakeDatapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDatapath")
            .field("interfaces", &self.interfaces)
            .field("attached", &self.attached)
            .field("endpoints", &self.endpoints.keys().collect::<Vec<_>>())
            .field("ipcache", &self.ipcache)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl FakeDatapath {
    pub fn new() -> FakeDatapath {
        FakeDatapath::default()
    }

    /// An interface appears (or is re-created with a new index).
    pub fn add_interface(&mut self, ifname: &str, ifindex: u32) {
        self.interfaces.insert(ifname.to_string(), ifindex);
    }

    /// What a packet on `ifindex` meets: None when nothing is attached (not enforced), `Some(None)` when
    /// attached without an entry (dropped), `Some(Some(policy))` otherwise.
    pub fn enforcement(&self, ifindex: u32) -> Option<Option<&EndpointPolicy>> {
        self.attached.contains(&ifindex).then(|| self.endpoints.get(&ifindex))
    }

    fn step(&mut self, op: Op) -> Result<(), Error> {
        self.log.push(op.clone());
        if let Some(f) = self.inject.as_mut()
            && let Some(e) = f(&op)
        {
            return Err(e);
        }
        Ok(())
    }

    fn done(&mut self) {
        if let Some(mut f) = self.observe.take() {
            let op = self.log.last().cloned().expect("an operation ran");
            f(&op, self);
            self.observe = Some(f);
        }
    }

    fn stats(n: usize) -> SyncStats {
        SyncStats { inserted: n as u32, ..Default::default() }
    }
}

impl Datapath for FakeDatapath {
    fn ifindex(&self, ifname: &str) -> Option<u32> {
        self.interfaces.get(ifname).copied()
    }
    fn attach(&mut self, ifname: &str) -> Result<u32, Error> {
        self.step(Op::Attach(ifname.to_string()))?;
        let Some(i) = self.interfaces.get(ifname).copied() else {
            return Err(Error::Interface { ifname: ifname.to_string(), source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such interface") });
        };
        self.attached.insert(i);
        self.done();
        Ok(i)
    }
    fn detach_gone(&mut self) -> Result<usize, Error> {
        self.step(Op::DetachGone)?;
        let live: BTreeSet<u32> = self.interfaces.values().copied().collect();
        let before = self.attached.len();
        self.attached.retain(|i| live.contains(i));
        self.done();
        Ok(before - self.attached.len())
    }
    fn endpoint_id(&self, ifindex: u32) -> Option<u32> {
        self.endpoints.get(&ifindex).map(|p| p.endpoint_id)
    }
    fn endpoint_ids(&self) -> BTreeSet<u32> {
        self.endpoints.values().map(|p| p.endpoint_id).collect()
    }
    fn ipcache(&self) -> &BTreeMap<IpNet, u32> {
        &self.ipcache
    }
    fn set_endpoint(&mut self, ifindex: u32, policy: EndpointPolicy) -> Result<SyncStats, Error> {
        self.step(Op::SetEndpoint(ifindex))?;
        let n = policy.ingress.len() + policy.egress.len();
        self.endpoints.insert(ifindex, policy);
        self.done();
        Ok(Self::stats(n))
    }
    fn set_ipcache(&mut self, entries: Vec<(IpNet, u32)>) -> Result<SyncStats, Error> {
        self.step(Op::SetIpcache)?;
        self.ipcache = entries.into_iter().collect();
        self.done();
        Ok(Self::stats(self.ipcache.len()))
    }
    fn remove_endpoint(&mut self, ifindex: u32) -> Result<SyncStats, Error> {
        self.step(Op::RemoveEndpoint(ifindex))?;
        let n = usize::from(self.endpoints.remove(&ifindex).is_some());
        self.done();
        Ok(SyncStats { deleted: n as u32, ..Default::default() })
    }
    fn sweep(&mut self) -> Result<SyncStats, Error> {
        self.step(Op::Sweep)?;
        self.done();
        Ok(SyncStats::default())
    }
    fn cut_connections(&mut self, endpoint_ids: &BTreeSet<u32>, nets: &[IpNet]) -> Result<usize, Error> {
        self.step(Op::CutConnections(endpoint_ids.iter().copied().collect(), nets.to_vec()))?;
        self.done();
        Ok(0)
    }
}
