//! Enrichment: what the agent knows about the numbers in a dataplane event.
//!
//! An event names a local endpoint (`endpoint_id`), a peer security identity and the `rule_id`
//! cookie of the policy entry that decided. The agent owns the maps from those numbers to pods,
//! labels and policy traces, and implements [`Enricher`] over its current snapshot. The
//! aggregator calls it once per **record** (when a record is first created in a flush interval,
//! and once per endpoint/identity per interval for per-workload aggregation), not once per event,
//! so an implementation may take a lock or evaluate staged policy without costing per-packet CPU.
//!
//! Lookups return `Arc`s so that a snapshot can hand out shared metadata without copying labels.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use crate::record::{EndpointKind, FlowDirection, PendingVerdict};

/// What is known about a local endpoint or a peer identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointMeta {
    pub kind: EndpointKind,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    /// Owning workload (Deployment, StatefulSet, …); per-workload aggregation merges pods by it
    /// (falling back to the pod name).
    pub workload: Option<String>,
    /// Network set name, for `kind: NetworkSet`.
    pub network_set: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl EndpointMeta {
    /// A pod.
    pub fn pod(namespace: &str, pod: &str, workload: Option<&str>, labels: &[(&str, &str)]) -> Self {
        Self {
            kind: EndpointKind::Pod,
            namespace: Some(namespace.into()),
            pod: Some(pod.into()),
            workload: workload.map(Into::into),
            network_set: None,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// Addresses outside the cluster.
    pub fn world() -> Self {
        Self { kind: EndpointKind::World, ..Default::default() }
    }

    /// A network set (`namespace: None` for a global one).
    pub fn network_set(namespace: Option<&str>, name: &str, labels: &[(&str, &str)]) -> Self {
        Self {
            kind: EndpointKind::NetworkSet,
            namespace: namespace.map(Into::into),
            network_set: Some(name.into()),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    /// The name per-workload aggregation groups by.
    pub fn aggregate_name(&self) -> Option<&str> {
        self.workload.as_deref().or(self.pod.as_deref()).or(self.network_set.as_deref())
    }
}

/// The enforced policy behind a `rule_id` cookie: its trace, `tier|policy|rule|action` entries in
/// evaluation order (the format of `porin_policy::Hit`'s `Display`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleMeta {
    pub trace: Vec<String>,
}

/// What staged policies would do with a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMeta {
    pub verdict: PendingVerdict,
    pub trace: Vec<String>,
}

/// The question asked of [`Enricher::pending`]: the flow as the local endpoint's policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PendingQuery {
    pub endpoint_id: u32,
    pub direction: FlowDirection,
    pub peer_identity: u32,
    /// The peer address (absent for per-workload records, where it was aggregated away).
    pub peer_ip: Option<IpAddr>,
    pub protocol: u8,
    /// Destination port, or `type << 8 | code` for ICMP (as the dataplane's policy key).
    pub port: u16,
}

/// Resolves event numbers to metadata. Implemented by the agent over its current snapshot.
pub trait Enricher {
    /// The local endpoint behind an event's `endpoint_id`.
    fn endpoint(&self, endpoint_id: u32) -> Option<Arc<EndpointMeta>>;
    /// The peer behind a security identity.
    fn identity(&self, identity: u32) -> Option<Arc<EndpointMeta>>;
    /// The peer of a per-5-tuple record, which knows the peer's address: an identity may stand for
    /// several pods that policy cannot tell apart, and the address names the one. Default: the
    /// identity's metadata.
    fn peer(&self, identity: u32, ip: Option<IpAddr>) -> Option<Arc<EndpointMeta>> {
        let _ = ip;
        self.identity(identity)
    }
    /// The enforced trace behind a policy entry's `rule_id`.
    fn rule(&self, rule_id: u32) -> Option<Arc<RuleMeta>>;
    /// What staged policies would do; `None` when no staged policy applies.
    fn pending(&self, q: &PendingQuery) -> Option<Arc<PendingMeta>>;
}

impl<E: Enricher + ?Sized> Enricher for &E {
    fn endpoint(&self, id: u32) -> Option<Arc<EndpointMeta>> {
        (**self).endpoint(id)
    }
    fn identity(&self, id: u32) -> Option<Arc<EndpointMeta>> {
        (**self).identity(id)
    }
    fn peer(&self, id: u32, ip: Option<IpAddr>) -> Option<Arc<EndpointMeta>> {
        (**self).peer(id, ip)
    }
    fn rule(&self, id: u32) -> Option<Arc<RuleMeta>> {
        (**self).rule(id)
    }
    fn pending(&self, q: &PendingQuery) -> Option<Arc<PendingMeta>> {
        (**self).pending(q)
    }
}

impl<E: Enricher + ?Sized> Enricher for Arc<E> {
    fn endpoint(&self, id: u32) -> Option<Arc<EndpointMeta>> {
        (**self).endpoint(id)
    }
    fn identity(&self, id: u32) -> Option<Arc<EndpointMeta>> {
        (**self).identity(id)
    }
    fn peer(&self, id: u32, ip: Option<IpAddr>) -> Option<Arc<EndpointMeta>> {
        (**self).peer(id, ip)
    }
    fn rule(&self, id: u32) -> Option<Arc<RuleMeta>> {
        (**self).rule(id)
    }
    fn pending(&self, q: &PendingQuery) -> Option<Arc<PendingMeta>> {
        (**self).pending(q)
    }
}

/// An [`Enricher`] over plain hash maps: for tests, benchmarks, replay, and as a snapshot the
/// agent can rebuild and swap. Pending verdicts are looked up per (endpoint, rule) pair.
#[derive(Clone, Debug, Default)]
pub struct MapEnricher {
    pub endpoints: FxHashMap<u32, Arc<EndpointMeta>>,
    pub identities: FxHashMap<u32, Arc<EndpointMeta>>,
    pub rules: FxHashMap<u32, Arc<RuleMeta>>,
    /// Keyed by (endpoint_id, peer_identity, port); `port` 0 matches any port.
    pub pending: FxHashMap<(u32, u32, u16), Arc<PendingMeta>>,
}

impl MapEnricher {
    pub fn with_endpoint(mut self, id: u32, m: EndpointMeta) -> Self {
        self.endpoints.insert(id, Arc::new(m));
        self
    }
    pub fn with_identity(mut self, id: u32, m: EndpointMeta) -> Self {
        self.identities.insert(id, Arc::new(m));
        self
    }
    pub fn with_rule(mut self, id: u32, trace: &[&str]) -> Self {
        self.rules.insert(id, Arc::new(RuleMeta { trace: trace.iter().map(|s| s.to_string()).collect() }));
        self
    }
    pub fn with_pending(mut self, endpoint_id: u32, peer_identity: u32, port: u16, verdict: PendingVerdict, trace: &[&str]) -> Self {
        let m = PendingMeta { verdict, trace: trace.iter().map(|s| s.to_string()).collect() };
        self.pending.insert((endpoint_id, peer_identity, port), Arc::new(m));
        self
    }
}

impl Enricher for MapEnricher {
    fn endpoint(&self, id: u32) -> Option<Arc<EndpointMeta>> {
        self.endpoints.get(&id).cloned()
    }
    fn identity(&self, id: u32) -> Option<Arc<EndpointMeta>> {
        self.identities.get(&id).cloned()
    }
    fn rule(&self, id: u32) -> Option<Arc<RuleMeta>> {
        self.rules.get(&id).cloned()
    }
    fn pending(&self, q: &PendingQuery) -> Option<Arc<PendingMeta>> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending
            .get(&(q.endpoint_id, q.peer_identity, q.port))
            .or_else(|| self.pending.get(&(q.endpoint_id, q.peer_identity, 0)))
            .cloned()
    }
}
