//! Policy recommendation from observed traffic, shaped like Calico's namespace recommender. Pure: the caller
//! turns its flow records into [`Observation`]s; this module decides which of them need a rule and writes one
//! `StagedNetworkPolicy` per namespace.
//!
//! * Every policy sits in one tier (default `namespace-isolation`, emitted with [`Options::tier_order`] and
//!   `defaultAction: Pass` when the cluster has no such tier) and selects the whole namespace (`all()`).
//! * Egress rules come from observations at the source's egress, ingress rules from observations at the
//!   destination's ingress. One rule per (direction, peer scope, protocol), its ports the observed ones:
//!   `Namespace` (a pod peer, by `projectcalico.org/name` of its namespace, the own namespace included),
//!   `NetworkSet` (by the set's labels; `global()` for a GlobalNetworkSet), `Private` (RFC 1918 nets, or the
//!   selector of a GlobalNetworkSet that covers all of them) and `Public` (ports only).
//! * Unlike Calico's (namespace-wide) rules, each rule is narrowed to the observed workloads on both ends,
//!   by a selector of the pod's own labels: promoted in zero-trust mode, every pair that was not observed
//!   is denied, not just every namespace pair.
//! * Only traffic that no explicit policy already allows contributes: an observation counts when its side's
//!   enforced verdict is allowed and was not decided by an Allow rule outside the recommendation tier (denied
//!   traffic is never opened).
//! * Output is deterministic: namespaces, rules and ports sorted; each rule annotated with its scope, first
//!   and last seen and flow count.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use porin_model::{Kind, Protocol, Resource};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::eval::{HitAction, Packet, Peer, SideVerdict, Variant};
use crate::ir::Cluster;

/// One end of an observed connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ObservedPeer {
    Pod { namespace: String, pod: String },
    NetworkSet { namespace: Option<String>, name: String, ip: Option<IpAddr> },
    Ip { ip: IpAddr },
}

/// Where a connection was observed: at the source's egress or at the destination's ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObservedAt {
    Egress,
    Ingress,
}

/// Connections of one kind, aggregated by the caller (or not: equal keys are merged here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub at: ObservedAt,
    pub src: ObservedPeer,
    pub dst: ObservedPeer,
    pub protocol: Protocol,
    pub port: u16,
    /// Unix seconds.
    pub first_seen: i64,
    pub last_seen: i64,
    pub flows: u64,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub tier: String,
    /// The order of the tier when it has to be created.
    pub tier_order: f64,
    /// Only these namespaces (empty: every namespace not excluded).
    pub namespaces: Vec<String>,
    /// Namespaces never recommended for: exact names, or prefixes ending in `*`.
    pub exclude: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tier: "namespace-isolation".into(),
            tier_order: 10_000.0,
            namespaces: vec![],
            exclude: ["kube-*", "calico-*", "tigera-*"].map(String::from).to_vec(),
        }
    }
}

/// What [`recommend`] produced.
#[derive(Debug, Clone, Default)]
pub struct Recommendation {
    /// The tier, when the cluster does not have it yet.
    pub tier: Option<Resource>,
    /// One StagedNetworkPolicy per namespace, sorted by namespace.
    pub policies: Vec<Resource>,
    /// Observed flows left out: already allowed by an explicit policy, or denied.
    pub already_allowed: u64,
    pub denied: u64,
}

/// The three RFC 1918 blocks.
pub fn rfc1918() -> [IpNet; 3] {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"].map(|s| s.parse().expect("literal"))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Namespace(String),
    NetworkSet { global: bool, namespace: String, name: String },
    Private,
    Public,
}

impl Scope {
    fn word(&self) -> &'static str {
        match self {
            Scope::Namespace(_) => "Namespace",
            Scope::NetworkSet { .. } => "NetworkSet",
            Scope::Private => "Private",
            Scope::Public => "Public",
        }
    }
}

type RuleKey = (ObservedAt, Option<String>, Scope, Option<String>, Protocol);

/// A selector for the pod's workload: its own labels (none of the keys Porin or Calico add, none of the
/// per-revision hashes), or None when the pod is unknown or has no labels (the whole namespace then).
fn workload(pods: &Pods<'_>, p: &ObservedPeer) -> Option<String> {
    let ObservedPeer::Pod { namespace, pod } = p else { return None };
    let e = pods.get(namespace, pod)?;
    let own: BTreeMap<String, String> = e
        .labels
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("projectcalico.org/")
                && !k.starts_with("porin.io/")
                && k.as_str() != "pod-template-hash"
                && k.as_str() != "controller-revision-hash"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    selector_of_labels(&own)
}

#[derive(Default)]
struct Acc {
    ports: BTreeSet<u16>,
    first: i64,
    last: i64,
    flows: u64,
}

fn excluded(ns: &str, o: &Options) -> bool {
    if !o.namespaces.is_empty() {
        return !o.namespaces.iter().any(|n| n == ns);
    }
    o.exclude.iter().any(|e| match e.strip_suffix('*') {
        Some(prefix) => ns.starts_with(prefix),
        None => e == ns,
    })
}

fn selector_of_labels(labels: &BTreeMap<String, String>) -> Option<String> {
    if labels.is_empty() {
        return None;
    }
    Some(labels.iter().map(|(k, v)| format!("{k} == '{v}'")).collect::<Vec<_>>().join(" && "))
}

/// The peer as a rule scope; None when it cannot be expressed (a network set that is gone).
fn scope(c: &Cluster, p: &ObservedPeer) -> Option<Scope> {
    match p {
        ObservedPeer::Pod { namespace, .. } => Some(Scope::Namespace(namespace.clone())),
        ObservedPeer::NetworkSet { namespace, name, ip } => {
            match c.net_sets.iter().find(|s| &s.namespace == namespace && &s.name == name) {
                Some(_) => Some(Scope::NetworkSet {
                    global: namespace.is_none(),
                    namespace: namespace.clone().unwrap_or_default(),
                    name: name.clone(),
                }),
                None => ip.map(|ip| ip_scope(ip)),
            }
        }
        ObservedPeer::Ip { ip } => Some(ip_scope(*ip)),
    }
}

fn ip_scope(ip: IpAddr) -> Scope {
    let private = match ip {
        IpAddr::V4(v4) => v4.is_private(),
        // Unique local addresses: the IPv6 counterpart of RFC 1918.
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    if private { Scope::Private } else { Scope::Public }
}

/// Pods by namespace and name (`Cluster::endpoint` scans; recommendations look pods up per record shape).
/// A peer of an [`ObservationSet`] placed in a cluster.
#[derive(Clone, Copy)]
pub(crate) struct Resolved {
    pub(crate) pod: Option<usize>,
    pub(crate) ip: Option<IpAddr>,
}

pub(crate) struct Pods<'c> {
    c: &'c Cluster,
    by_name: std::collections::HashMap<(&'c str, &'c str), usize>,
    /// Endpoint classes (IPv4): evaluations are shared by every pod of a class.
    class_of: Vec<usize>,
}

/// What an evaluation of an observation depends on, per end: a pod's class (IPv4), a pod itself (IPv6), or an
/// address. Observations with equal keys have equal evaluations.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum EvalKey {
    Class(usize),
    Pod(usize),
    Ip(IpAddr),
    Unknown,
}

impl<'c> Pods<'c> {
    pub(crate) fn new(c: &'c Cluster) -> Self {
        Pods {
            c,
            by_name: c.endpoints.iter().enumerate().map(|(i, e)| ((e.namespace.as_str(), e.name.as_str()), i)).collect(),
            class_of: c.endpoint_classes(false),
        }
    }
    /// Each peer of `set` placed in this cluster: its pod (by index) and its address.
    pub(crate) fn resolve(&self, set: &ObservationSet) -> Vec<Resolved> {
        set.peers
            .iter()
            .map(|p| match p {
                ObservedPeer::Pod { namespace, pod } => {
                    Resolved { pod: self.by_name.get(&(namespace.as_str(), pod.as_str())).copied(), ip: None }
                }
                ObservedPeer::NetworkSet { ip, .. } => Resolved { pod: None, ip: *ip },
                ObservedPeer::Ip { ip } => Resolved { pod: None, ip: Some(*ip) },
            })
            .collect()
    }
    /// The evaluation keys of a shape's two ends (resolved by [`Self::resolve`]).
    pub(crate) fn keys(&self, r: &[Resolved], src: u32, dst: u32) -> (EvalKey, EvalKey) {
        let (s, d) = (&r[src as usize], &r[dst as usize]);
        let v6 = [s, d].iter().any(|p| matches!(p.ip, Some(IpAddr::V6(_))));
        let key = |p: &Resolved| match (p.pod, p.ip) {
            (Some(i), _) if v6 => EvalKey::Pod(i),
            (Some(i), _) => EvalKey::Class(self.class_of[i]),
            (None, Some(ip)) => EvalKey::Ip(ip),
            (None, None) => EvalKey::Unknown,
        };
        (key(s), key(d))
    }
    pub(crate) fn get(&self, ns: &str, pod: &str) -> Option<&'c crate::ir::Endpoint> {
        self.by_name.get(&(ns, pod)).map(|&i| &self.c.endpoints[i])
    }
    pub(crate) fn peer(&self, p: &ObservedPeer) -> Option<Peer<'c>> {
        match p {
            ObservedPeer::Pod { namespace, pod } => self.get(namespace, pod).map(Peer::Endpoint),
            ObservedPeer::NetworkSet { ip, .. } => ip.map(Peer::Ip),
            ObservedPeer::Ip { ip } => Some(Peer::Ip(*ip)),
        }
    }
}


#[derive(Clone, Copy)]
enum Coverage {
    /// Allowed by default (no policy, or every tier passed) or by the recommendation tier itself.
    Open,
    ExplicitlyAllowed,
    Denied,
}

fn coverage(side: Option<&SideVerdict>, tier: &str) -> Coverage {
    let Some(s) = side else { return Coverage::Open };
    if !s.allowed {
        return Coverage::Denied;
    }
    match s.hits.iter().rev().find(|h| h.action != HitAction::Log) {
        Some(h) if h.action == HitAction::Allow && h.tier != tier => Coverage::ExplicitlyAllowed,
        _ => Coverage::Open,
    }
}

/// Observations of the same shape (where, source, destination, protocol, port) merged into one, with the
/// earliest first, latest last and summed flows, and how many were merged.
pub fn merge_counted(observed: &[Observation]) -> Vec<(Observation, u64)> {
    let set = ObservationSet::of(observed);
    set.shapes
        .iter()
        .map(|sh| {
            let ob = Observation {
                at: sh.at,
                src: set.peer(sh.src).clone(),
                dst: set.peer(sh.dst).clone(),
                protocol: sh.protocol,
                port: sh.port,
                first_seen: sh.first_seen,
                last_seen: sh.last_seen,
                flows: sh.flows,
            };
            (ob, sh.records)
        })
        .collect()
}

/// A fast, non-cryptographic hasher for the interned keys of [`ObservationSet`] (small integers and short names
/// the caller's own records hold; no untrusted key decides a bucket in a way an attacker could exploit beyond
/// what the record count already allows). The multiply-rotate scheme of rustc's FxHasher.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 56));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64)
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type FxBuild = std::hash::BuildHasherDefault<FxHasher>;
pub(crate) type FxMap<K, V> = std::collections::HashMap<K, V, FxBuild>;

/// One end of an observed connection, borrowed from the caller's record (no allocation to look it up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRef<'a> {
    Pod { namespace: &'a str, pod: &'a str },
    NetworkSet { namespace: Option<&'a str>, name: &'a str, ip: Option<IpAddr> },
    Ip(IpAddr),
}

impl<'a> PeerRef<'a> {
    pub fn of(p: &'a ObservedPeer) -> PeerRef<'a> {
        match p {
            ObservedPeer::Pod { namespace, pod } => PeerRef::Pod { namespace, pod },
            ObservedPeer::NetworkSet { namespace, name, ip } => PeerRef::NetworkSet { namespace: namespace.as_deref(), name, ip: *ip },
            ObservedPeer::Ip { ip } => PeerRef::Ip(*ip),
        }
    }
    fn owned(self) -> ObservedPeer {
        match self {
            PeerRef::Pod { namespace, pod } => ObservedPeer::Pod { namespace: namespace.into(), pod: pod.into() },
            PeerRef::NetworkSet { namespace, name, ip } => {
                ObservedPeer::NetworkSet { namespace: namespace.map(String::from), name: name.into(), ip }
            }
            PeerRef::Ip(ip) => ObservedPeer::Ip { ip },
        }
    }
}

/// Observations merged by shape while they are read: every peer is interned once (an id), and one shape —
/// (where, source, destination, protocol, port) — keeps the earliest first, latest last, summed flows and how
/// many records it merged. Adding a record whose peers were seen before allocates nothing. This is what
/// [`recommend_set`] and [`crate::preview::preview_set`] read; sets of several nodes merge with [`Self::merge`].
#[derive(Debug, Clone, Default)]
pub struct ObservationSet {
    peers: Vec<ObservedPeer>,
    pods: FxMap<Box<str>, FxMap<Box<str>, u32>>,
    others: FxMap<ObservedPeer, u32>,
    index: FxMap<ShapeKey, u32>,
    shapes: Vec<Shape>,
    records: u64,
}

type ShapeKey = (ObservedAt, u32, u32, Protocol, u16);

/// One merged shape: peers by id into [`ObservationSet`]'s peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub at: ObservedAt,
    pub src: u32,
    pub dst: u32,
    pub protocol: Protocol,
    pub port: u16,
    pub first_seen: i64,
    pub last_seen: i64,
    pub flows: u64,
    pub records: u64,
}

/// The serialized form of an [`ObservationSet`]: the peers once, the shapes by peer index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObservationSetJson {
    pub peers: Vec<ObservedPeer>,
    pub shapes: Vec<Shape>,
}

/// A serialized set names a peer it does not hold.
#[derive(Debug, thiserror::Error)]
#[error("observation shape {shape} names peer {peer}, but the set has {peers} peers")]
pub struct BadPeerIndex {
    pub shape: usize,
    pub peer: u32,
    pub peers: usize,
}

impl ObservationSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of `observed` (merged).
    pub fn of(observed: &[Observation]) -> Self {
        let mut s = Self::new();
        for ob in observed {
            s.add_observation(ob);
        }
        s
    }

    fn intern(&mut self, p: PeerRef<'_>) -> u32 {
        let next = self.peers.len() as u32;
        match p {
            PeerRef::Pod { namespace, pod } => {
                if let Some(&id) = self.pods.get(namespace).and_then(|m| m.get(pod)) {
                    return id;
                }
                self.pods.entry(namespace.into()).or_default().insert(pod.into(), next);
            }
            other => {
                let owned = other.owned();
                if let Some(&id) = self.others.get(&owned) {
                    return id;
                }
                self.others.insert(owned, next);
            }
        }
        self.peers.push(p.owned());
        next
    }

    /// Add one record's worth of connections.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        at: ObservedAt,
        src: PeerRef<'_>,
        dst: PeerRef<'_>,
        protocol: Protocol,
        port: u16,
        first_seen: i64,
        last_seen: i64,
        flows: u64,
    ) {
        let (s, d) = (self.intern(src), self.intern(dst));
        self.add_shape(Shape { at, src: s, dst: d, protocol, port, first_seen, last_seen, flows, records: 1 });
    }

    pub fn add_observation(&mut self, ob: &Observation) {
        self.add(ob.at, PeerRef::of(&ob.src), PeerRef::of(&ob.dst), ob.protocol, ob.port, ob.first_seen, ob.last_seen, ob.flows)
    }

    fn add_shape(&mut self, sh: Shape) {
        self.records += sh.records;
        let next = self.shapes.len() as u32;
        let i = *self.index.entry((sh.at, sh.src, sh.dst, sh.protocol, sh.port)).or_insert(next);
        if i == next {
            self.shapes.push(sh);
            return;
        }
        let e = &mut self.shapes[i as usize];
        e.first_seen = e.first_seen.min(sh.first_seen);
        e.last_seen = e.last_seen.max(sh.last_seen);
        e.flows += sh.flows;
        e.records += sh.records;
    }

    /// Add every shape of `other` (another node's observations).
    pub fn merge(&mut self, other: &ObservationSet) {
        let ids: Vec<u32> = other.peers.iter().map(|p| self.intern(PeerRef::of(p))).collect();
        for sh in &other.shapes {
            self.add_shape(Shape { src: ids[sh.src as usize], dst: ids[sh.dst as usize], ..*sh });
        }
    }

    /// Records added (before merging).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Distinct shapes.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    pub fn peer(&self, id: u32) -> &ObservedPeer {
        &self.peers[id as usize]
    }

    pub fn peers(&self) -> &[ObservedPeer] {
        &self.peers
    }

    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// Only the shapes `keep` accepts (peers stay interned).
    pub fn retain(&mut self, mut keep: impl FnMut(&ObservationSet, &Shape) -> bool) {
        let shapes = std::mem::take(&mut self.shapes);
        let kept: Vec<Shape> = shapes.into_iter().filter(|s| keep(self, s)).collect();
        self.index = kept.iter().enumerate().map(|(i, s)| ((s.at, s.src, s.dst, s.protocol, s.port), i as u32)).collect();
        self.records = kept.iter().map(|s| s.records).sum();
        self.shapes = kept;
    }

    pub fn to_json(&self) -> ObservationSetJson {
        ObservationSetJson { peers: self.peers.clone(), shapes: self.shapes.clone() }
    }

    pub fn from_json(j: &ObservationSetJson) -> Result<Self, BadPeerIndex> {
        let mut s = Self::new();
        let ids: Vec<u32> = j.peers.iter().map(|p| s.intern(PeerRef::of(p))).collect();
        for (n, sh) in j.shapes.iter().enumerate() {
            let id = |p: u32| ids.get(p as usize).copied().ok_or(BadPeerIndex { shape: n, peer: p, peers: ids.len() });
            s.add_shape(Shape { src: id(sh.src)?, dst: id(sh.dst)?, ..*sh });
        }
        Ok(s)
    }
}

/// Recommend one StagedNetworkPolicy per namespace from `observed` traffic (see the module docs).
pub fn recommend(c: &Cluster, observed: &[Observation], o: &Options) -> Recommendation {
    recommend_set(c, &ObservationSet::of(observed), o)
}

/// [`recommend`] over observations already merged by shape.
pub fn recommend_set(c: &Cluster, set: &ObservationSet, o: &Options) -> Recommendation {
    let mut out = Recommendation::default();
    let pods = Pods::new(c);
    let resolved = pods.resolve(set);
    // Per peer, once: its namespace when it is a pod of a namespace recommended for, its rule scope, and its
    // workload selector (interned: many pods share one).
    let mut selectors: Vec<Option<String>> = Vec::new();
    let mut selector_ids: std::collections::HashMap<Option<String>, u32> = std::collections::HashMap::new();
    let mut scopes: Vec<Scope> = Vec::new();
    struct PeerFacts<'s> {
        local_ns: Option<&'s str>,
        scope: Option<u32>,
        workload: u32,
    }
    let facts: Vec<PeerFacts<'_>> = set
        .peers
        .iter()
        .map(|p| {
            let local_ns = match p {
                ObservedPeer::Pod { namespace, .. } if !excluded(namespace, o) => Some(namespace.as_str()),
                _ => None,
            };
            let scope = scope(c, p).map(|sc| match scopes.iter().position(|x| *x == sc) {
                Some(i) => i as u32,
                None => {
                    scopes.push(sc);
                    scopes.len() as u32 - 1
                }
            });
            let wl = workload(&pods, p);
            let next = selectors.len() as u32;
            let workload = *selector_ids.entry(wl.clone()).or_insert(next);
            if workload == next {
                selectors.push(wl);
            }
            PeerFacts { local_ns, scope, workload }
        })
        .collect();
    // Evaluations are shared by observations whose ends are of one class (see [`Pods::keys`]).
    let mut memo: FxMap<(ObservedAt, EvalKey, EvalKey, Protocol, u16), Coverage> = FxMap::default();
    // (local namespace, direction, local workload, scope, peer workload, protocol) -> ports and times
    let mut acc: FxMap<(&str, ObservedAt, u32, u32, u32, Protocol), Acc> = FxMap::default();
    for sh in &set.shapes {
        let (local, remote) = match sh.at {
            ObservedAt::Egress => (sh.src, sh.dst),
            ObservedAt::Ingress => (sh.dst, sh.src),
        };
        let (lf, rf) = (&facts[local as usize], &facts[remote as usize]);
        let Some(namespace) = lf.local_ns else { continue };
        let Some(sc) = rf.scope else { continue };
        // Many records share one connection shape: evaluate each shape once.
        let (ks, kd) = pods.keys(&resolved, sh.src, sh.dst);
        let cov = *memo.entry((sh.at, ks, kd, sh.protocol, sh.port)).or_insert_with(|| {
            let (Some(src), Some(dst)) = (pods.peer(set.peer(sh.src)), pods.peer(set.peer(sh.dst))) else { return Coverage::Open };
            let v6 = matches!(src, Peer::Ip(IpAddr::V6(_))) || matches!(dst, Peer::Ip(IpAddr::V6(_)));
            let pkt = Packet { v6, ..Packet::l4(sh.protocol, sh.port) };
            let e = c.evaluate(Variant::Enforced, src, dst, &pkt);
            let side = match sh.at {
                ObservedAt::Egress => e.egress.as_ref(),
                ObservedAt::Ingress => e.ingress.as_ref(),
            };
            coverage(side, &o.tier)
        });
        match cov {
            Coverage::Open => {}
            Coverage::ExplicitlyAllowed => {
                out.already_allowed += sh.flows;
                continue;
            }
            Coverage::Denied => {
                out.denied += sh.flows;
                continue;
            }
        }
        let a = acc.entry((namespace, sh.at, lf.workload, sc, rf.workload, sh.protocol)).or_insert_with(|| Acc {
            first: i64::MAX,
            last: i64::MIN,
            ..Acc::default()
        });
        a.ports.insert(sh.port);
        a.first = a.first.min(sh.first_seen);
        a.last = a.last.max(sh.last_seen);
        a.flows += sh.flows;
    }
    // namespace -> (direction, local workload, scope, peer workload, protocol) -> ports and times, sorted
    let mut rules: BTreeMap<String, BTreeMap<RuleKey, Acc>> = BTreeMap::new();
    for ns in c.endpoints.iter().map(|e| e.namespace.as_str()) {
        if !excluded(ns, o) && !rules.contains_key(ns) {
            rules.insert(ns.to_string(), BTreeMap::new());
        }
    }
    for ((ns, at, lw, sc, rw, proto), a) in acc {
        let key = (at, selectors[lw as usize].clone(), scopes[sc as usize].clone(), selectors[rw as usize].clone(), proto);
        rules.entry(ns.to_string()).or_default().insert(key, a);
    }
    let private_set = private_network_set(c);
    for (ns, rs) in rules {
        let mut ingress = Vec::new();
        let mut egress = Vec::new();
        for ((at, local, sc, remote, proto), acc) in &rs {
            let mut entity = entity(c, sc, private_set.as_deref());
            if let Some(sel) = remote {
                entity["selector"] = json!(sel);
            }
            let mut rule = json!({
                "action": "Allow",
                "protocol": proto.name(),
                "metadata": {"annotations": {
                    "porin.io/scope": sc.word(),
                    "porin.io/first-seen": rfc3339(acc.first),
                    "porin.io/last-seen": rfc3339(acc.last),
                    "porin.io/flows": acc.flows.to_string(),
                }},
            });
            let ports: Vec<Value> = acc.ports.iter().map(|p| json!(p)).collect();
            match at {
                ObservedAt::Egress => {
                    if let Some(sel) = local {
                        rule["source"] = json!({"selector": sel});
                    }
                    let mut d = entity;
                    d["ports"] = json!(ports);
                    rule["destination"] = d;
                    egress.push(rule);
                }
                ObservedAt::Ingress => {
                    if entity.as_object().is_some_and(|m| !m.is_empty()) {
                        rule["source"] = entity;
                    }
                    let mut d = json!({"ports": ports});
                    if let Some(sel) = local {
                        d["selector"] = json!(sel);
                    }
                    rule["destination"] = d;
                    ingress.push(rule);
                }
            }
        }
        let total: u64 = rs.values().map(|a| a.flows).sum();
        let v = json!({
            "apiVersion": "porin.io/v1",
            "kind": "StagedNetworkPolicy",
            "metadata": {
                "name": format!("{}.{ns}-recommendation", o.tier),
                "namespace": ns,
                "annotations": {
                    "porin.io/recommended": "true",
                    "porin.io/flows": total.to_string(),
                },
            },
            "spec": {
                "stagedAction": "Set",
                "tier": o.tier,
                "order": 1000,
                "selector": "all()",
                "types": ["Ingress", "Egress"],
                "ingress": ingress,
                "egress": egress,
            },
        });
        out.policies.push(porin_model::load::to_resource(Kind::StagedNetworkPolicy, v).expect("a recommendation is well-formed"));
    }
    if !c.tiers.iter().any(|t| t.name == o.tier) {
        let v = json!({
            "apiVersion": "porin.io/v1",
            "kind": "Tier",
            "metadata": {"name": o.tier},
            "spec": {"order": o.tier_order, "defaultAction": "Pass"},
        });
        out.tier = Some(porin_model::load::to_resource(Kind::Tier, v).expect("a tier is well-formed"));
    }
    out
}

/// The selector of a GlobalNetworkSet whose nets cover all of RFC 1918 (the first by name), if any.
fn private_network_set(c: &Cluster) -> Option<String> {
    let mut sets: Vec<_> = c
        .net_sets
        .iter()
        .filter(|s| s.namespace.is_none() && rfc1918().iter().all(|b| s.nets.iter().any(|n| n.contains(b))))
        .collect();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    sets.into_iter().find_map(|s| selector_of_labels(&s.labels))
}

fn entity(c: &Cluster, sc: &Scope, private_set: Option<&str>) -> Value {
    match sc {
        Scope::Namespace(ns) => json!({"namespaceSelector": format!("projectcalico.org/name == '{ns}'")}),
        Scope::NetworkSet { global, namespace, name } => {
            let set = c.net_sets.iter().find(|s| s.name == *name && s.namespace.as_deref().unwrap_or("") == namespace);
            let ns_sel = if *global { "global()".to_string() } else { format!("projectcalico.org/name == '{namespace}'") };
            match set.and_then(|s| selector_of_labels(&s.labels)) {
                Some(sel) => json!({"selector": sel, "namespaceSelector": ns_sel}),
                // A set without labels cannot be selected: name its nets.
                None => json!({"nets": set.map(|s| s.nets.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default()}),
            }
        }
        Scope::Private => match private_set {
            Some(sel) => json!({"selector": sel, "namespaceSelector": "global()"}),
            None => json!({"nets": rfc1918().map(|n| n.to_string())}),
        },
        Scope::Public => json!({}),
    }
}

/// `1970-01-01T00:00:00Z` for Unix seconds.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
