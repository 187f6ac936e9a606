//! The compiler from the policy engine to the kernel's maps.
//!
//! Pure: a [`Cluster`] and the compiler's persistent [`State`] in, [`Compiled`] out. The kernel does one
//! longest-prefix lookup per new flow in a per-endpoint trie keyed by (peer identity, protocol, port); this
//! crate fills that trie so that the lookup gives **exactly** the engine's verdict for every packet.
//!
//! * **Identities.** Two peers get the same identity when no policy can tell them apart: pods with the same
//!   namespace, labels, service account, named ports and membership in every CIDR any rule or network set
//!   mentions (one identity per address family), and external addresses whose longest match among those
//!   CIDRs is the same prefix. The ipcache maps each pod address (/32, /128) and each such prefix (plus
//!   0.0.0.0/0 and ::/0, "world") to its identity.
//! * **Verdict functions.** For each local endpoint, direction and identity, the engine's tier walk runs on a
//!   representative of the identity, for every protocol that has meaning (TCP, UDP, SCTP, ICMP, ICMPv6, any
//!   protocol a rule names, and one stand-in for all others) and every port segment between the boundaries
//!   the applicable rules create. The verdict is constant inside a segment, so the walk runs once per segment.
//! * **Encoding.** The most common verdict becomes the endpoint default; an identity whose function differs
//!   gets an identity entry, a protocol whose function differs gets a protocol entry, and ports that differ
//!   from their protocol's entry get port-range entries (split into prefixes by the dataplane).
//!
//! Every entry carries a rule id: the index of the deciding trace (`tier|policy|rule|action` hits) in
//! [`State::rules`], so a flow record can say which rule decided.
//!
//! * **Reuse.** The entries of one (local endpoint, direction) are a function of the local endpoint's class
//!   (namespace, labels, service account, named ports, CIDR signature per family), the exact content and order
//!   of the applicable policies, and global inputs (identity table, CIDR set, protocols, default action, tiers,
//!   namespaces, network sets). Endpoints of one class are compiled once per run, and [`State`] keeps the last
//!   run's entries under that key, so a policy change recompiles only the endpoints it selects (or selected);
//!   a change to a global input recompiles everything.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use porin_model::PortMatch;
use porin_policy::eval::{Direction, Packet, Peer, Variant};
use porin_policy::ir::{Cluster, Endpoint, IrPolicy, IrRule, K8sPeer, PolicyId, RuleMatch, all_cidrs};
use serde::Serialize;

/// Identity of every IPv4 address no more specific prefix covers.
pub const IDENTITY_WORLD_V4: u32 = 2;
/// Identity of every IPv6 address no more specific prefix covers.
pub const IDENTITY_WORLD_V6: u32 = 3;
/// First identity the allocator hands out.
pub const FIRST_DYNAMIC_IDENTITY: u32 = 256;

/// Protocols that always get their own entries.
const BASE_PROTOCOLS: [u8; 5] = [1, 6, 17, 58, 132];

/// What an identity stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum IdentityKind {
    /// Pods that policy cannot tell apart; `rep` is one of them (`namespace/name`).
    Pods { rep: String, v6: bool },
    /// Addresses whose longest match is this prefix (and that are not pod addresses).
    Cidr { prefix: IpNet, rep: IpAddr },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub id: u32,
    pub kind: IdentityKind,
    /// Pods carrying this identity (`namespace/name`); empty for CIDR identities.
    pub members: Vec<String>,
}

/// One policy entry: longest match wins (ports > protocol > identity > endpoint default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Entry {
    pub identity: Option<u32>,
    pub proto: Option<u8>,
    /// Inclusive port range (ICMP: `type << 8 | code`).
    pub ports: Option<(u16, u16)>,
    pub allow: bool,
    pub rule_id: u32,
}

/// The compiled policy of one local endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointProgram {
    /// `namespace/name`.
    pub endpoint: String,
    pub ingress: Vec<Entry>,
    pub egress: Vec<Entry>,
}

/// What a rule id means.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RuleMeta {
    pub allow: bool,
    /// The enforced trace, `tier|policy|rule|action` per hit; empty when no policy applied (default action).
    pub trace: Vec<String>,
}

/// What the entries of one (local endpoint, direction) depend on, exactly (no hashes: equal keys mean equal
/// inputs to the walks and the encoding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    /// The local endpoint's class: namespace, labels, service account, named ports and, per address family,
    /// its CIDR signature (or no address) — everything a rule can look at on the local side.
    local: String,
    dir: Direction,
    /// The applicable list: (tier index, versions of the policies in evaluation order). A version denotes one
    /// exact policy content ([`IrPolicy`] equality), never reused.
    applicable: Vec<(usize, Vec<u64>)>,
    /// Generation of everything global: identity table (ids, CIDR set), protocols, default action, tiers
    /// (name, default action), namespaces' labels, network sets.
    global: u64,
}

/// Counters of the last [`compile`] (for tests and benchmarks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Tier walks run (cumulative over the state's life).
    pub walks: u64,
    /// (endpoint, direction) pairs whose entries were computed (not reused) in the last compile.
    pub computed: Vec<(String, Direction)>,
    /// (endpoint, direction) pairs whose entries came from the cache in the last compile.
    pub reused: usize,
}

/// State the compiler keeps between runs so identities and rule ids stay stable (the agent owns it), and the
/// entries of the last run so an unchanged endpoint is not recompiled.
#[derive(Debug, Clone, Default)]
pub struct State {
    identity_ids: HashMap<String, u32>,
    next_identity: u32,
    rule_ids: HashMap<RuleMeta, u32>,
    /// Index = rule id; id 0 is never used (the kernel treats action 0 as invalid).
    pub rules: Vec<RuleMeta>,
    /// The last seen content of every policy, with its version.
    policy_versions: HashMap<PolicyId, (IrPolicy, u64)>,
    next_version: u64,
    /// The last global fingerprint and its generation.
    global_fp: String,
    global_gen: u64,
    /// Entries of the last compile (only keys used by it are kept).
    cache: HashMap<CacheKey, Vec<Entry>>,
    pub stats: CompileStats,
}

impl State {
    pub fn new() -> State {
        State {
            identity_ids: HashMap::new(),
            next_identity: FIRST_DYNAMIC_IDENTITY,
            rule_ids: HashMap::new(),
            rules: vec![RuleMeta { allow: false, trace: vec!["<invalid>".into()] }],
            ..State::default()
        }
    }
    fn identity(&mut self, key: String) -> u32 {
        if let Some(&id) = self.identity_ids.get(&key) {
            return id;
        }
        let id = self.next_identity;
        self.next_identity += 1;
        self.identity_ids.insert(key, id);
        id
    }
    fn rule(&mut self, meta: RuleMeta) -> u32 {
        if let Some(&id) = self.rule_ids.get(&meta) {
            return id;
        }
        let id = self.rules.len() as u32;
        self.rules.push(meta.clone());
        self.rule_ids.insert(meta, id);
        id
    }
    pub fn rule_meta(&self, id: u32) -> Option<&RuleMeta> {
        if id == 0 { None } else { self.rules.get(id as usize) }
    }
    /// Forget the cached entries (identities and rule ids stay): the next compile starts cold.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
        self.policy_versions.clear();
        self.global_fp.clear();
    }
    /// The version of a policy's exact content.
    fn policy_version(&mut self, p: &IrPolicy) -> u64 {
        if let Some((old, v)) = self.policy_versions.get(&p.id)
            && old == p
        {
            return *v;
        }
        self.next_version += 1;
        let v = self.next_version;
        self.policy_versions.insert(p.id.clone(), (p.clone(), v));
        v
    }
}

/// The whole compiled state for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compiled {
    pub identities: Vec<Identity>,
    /// Prefix → identity, for the kernel's LPM ipcache.
    pub ipcache: Vec<(IpNet, u32)>,
    pub endpoints: Vec<EndpointProgram>,
}

impl Compiled {
    pub fn endpoint(&self, id: &str) -> Option<&EndpointProgram> {
        self.endpoints.iter().find(|e| e.endpoint == id)
    }
    pub fn identity(&self, id: u32) -> Option<&Identity> {
        self.identities.iter().find(|i| i.id == id)
    }
}

type Value = (bool, u32);
/// [`Cluster::applicable`]: (tier index, policy indices) in evaluation order.
type Applicable = Vec<(usize, Vec<usize>)>;
/// A verdict function over ports: (first, last, verdict) segments.
type Segments = Vec<(u16, u16, Value)>;

/// Compile the enforced policy of every endpoint `local` accepts.
pub fn compile(c: &Cluster, state: &mut State, local: &dyn Fn(&Endpoint) -> bool) -> Compiled {
    let mut cidrs: BTreeSet<IpNet> = all_cidrs(c);
    cidrs.insert("0.0.0.0/0".parse().expect("valid"));
    cidrs.insert("::/0".parse().expect("valid"));
    let pod_ips: BTreeSet<IpAddr> = c.endpoints.iter().flat_map(|e| e.ips.iter().copied()).collect();

    // Pod identities, one per (class, family).
    let mut identities: Vec<Identity> = Vec::new();
    let mut by_id: BTreeMap<u32, usize> = BTreeMap::new();
    let mut ipcache: Vec<(IpNet, u32)> = Vec::new();
    // Per endpoint: its CIDR signature per family (None: no address of that family).
    let mut sigs: Vec<[Option<Vec<String>>; 2]> = Vec::with_capacity(c.endpoints.len());
    for e in &c.endpoints {
        let mut mine: [Option<Vec<String>>; 2] = [None, None];
        for v6 in [false, true] {
            let Some(ip) = e.ip_of_family(v6) else { continue };
            let sig: Vec<String> = cidrs.iter().filter(|n| n.contains(&ip)).map(|n| n.to_string()).collect();
            mine[usize::from(v6)] = Some(sig.clone());
            let key = serde_json::to_string(&(
                "pod",
                &e.namespace,
                &e.labels,
                &e.service_account,
                &e.named_ports.iter().map(|(n, p, port)| (n, p.number(), port)).collect::<Vec<_>>(),
                v6,
                sig,
            ))
            .expect("serialisable");
            let id = state.identity(key);
            let idx = *by_id.entry(id).or_insert_with(|| {
                identities.push(Identity { id, kind: IdentityKind::Pods { rep: e.id(), v6 }, members: vec![] });
                identities.len() - 1
            });
            identities[idx].members.push(e.id());
            ipcache.push((IpNet::from(ip), id));
        }
        sigs.push(mine);
    }
    // CIDR identities: one per prefix that still has uncovered, non-pod addresses.
    for prefix in &cidrs {
        let longer: Vec<IpNet> = cidrs
            .iter()
            .filter(|n| n.prefix_len() > prefix.prefix_len() && prefix.contains(*n))
            .copied()
            .chain(pod_ips.iter().filter(|ip| prefix.contains(*ip)).map(|ip| IpNet::from(*ip)))
            .collect();
        let Some(rep) = uncovered(*prefix, &longer) else { continue };
        let id = match prefix.prefix_len() {
            0 if matches!(prefix, IpNet::V4(_)) => IDENTITY_WORLD_V4,
            0 => IDENTITY_WORLD_V6,
            _ => state.identity(format!("cidr:{prefix}")),
        };
        identities.push(Identity { id, kind: IdentityKind::Cidr { prefix: *prefix, rep }, members: vec![] });
        ipcache.push((*prefix, id));
    }
    identities.sort_by_key(|i| i.id);
    ipcache.sort();

    // Protocols with their own entries, and a stand-in for every other protocol.
    let mut protocols: BTreeSet<u8> = BASE_PROTOCOLS.into_iter().collect();
    for p in &c.policies {
        for r in p.ingress.iter().chain(p.egress.iter()) {
            if let RuleMatch::Calico { protocol, not_protocol, .. } = &r.matcher {
                protocols.extend(protocol.iter().chain(not_protocol.iter()).copied());
            }
        }
    }
    let other = (2u8..=255).find(|p| !protocols.contains(p)).expect("some protocol is unnamed");

    // Everything outside the applicable policies that a walk or the encoding can depend on. Pod identity ids
    // are one-to-one with their keys (class and CIDR signature), CIDR identities with their prefix; a CIDR
    // identity's representative is matched by exactly the CIDRs containing its prefix.
    let global_fp = serde_json::to_string(&(
        identities.iter().map(|i| i.id).collect::<Vec<_>>(),
        cidrs.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        &protocols,
        other,
        c.default_allow,
        c.tiers.iter().map(|t| (&t.name, format!("{:?}", t.default_action))).collect::<Vec<_>>(),
        &c.namespaces,
        format!("{:?}", c.net_sets),
    ))
    .expect("serialisable");
    if global_fp != state.global_fp {
        state.global_gen += 1;
        state.global_fp = global_fp;
    }
    let global = state.global_gen;
    let versions: Vec<u64> = c.policies.iter().map(|p| state.policy_version(p)).collect();
    let live: std::collections::HashSet<&PolicyId> = c.policies.iter().map(|p| &p.id).collect();
    state.policy_versions.retain(|id, _| live.contains(id));

    let mut old = std::mem::take(&mut state.cache);
    let mut used: HashMap<CacheKey, Vec<Entry>> = HashMap::new();
    state.stats.computed.clear();
    state.stats.reused = 0;
    // The applicable lists depend only on the local class: computed once per class.
    let mut applicable_of: HashMap<String, [Applicable; 2]> = HashMap::new();
    let mut endpoints = Vec::new();
    for (ei, e) in c.endpoints.iter().enumerate() {
        if !local(e) {
            continue;
        }
        let class = serde_json::to_string(&(
            &e.namespace,
            &e.labels,
            &e.service_account,
            &e.named_ports.iter().map(|(n, p, port)| (n, p.number(), port)).collect::<Vec<_>>(),
            &sigs[ei],
        ))
        .expect("serialisable");
        let lists = applicable_of
            .entry(class.clone())
            .or_insert_with(|| {
                [Direction::Ingress, Direction::Egress].map(|dir| c.applicable(Variant::Enforced, e, dir))
            })
            .clone();
        let mut program = EndpointProgram { endpoint: e.id(), ingress: vec![], egress: vec![] };
        for (dir, applicable) in [Direction::Ingress, Direction::Egress].into_iter().zip(lists) {
            let key = CacheKey {
                local: class.clone(),
                dir,
                applicable: applicable
                    .iter()
                    .map(|(ti, list)| (*ti, list.iter().map(|&pi| versions[pi]).collect()))
                    .collect(),
                global,
            };
            let entries = if let Some(v) = used.get(&key) {
                state.stats.reused += 1;
                v.clone()
            } else if let Some(v) = old.remove(&key) {
                state.stats.reused += 1;
                used.insert(key, v.clone());
                v
            } else {
                state.stats.computed.push((e.id(), dir));
                let v = compile_direction(c, state, e, dir, &applicable, &identities, &protocols, other);
                used.insert(key, v.clone());
                v
            };
            match dir {
                Direction::Ingress => program.ingress = entries,
                Direction::Egress => program.egress = entries,
            }
        }
        endpoints.push(program);
    }
    state.cache = used;
    Compiled { identities, ipcache, endpoints }
}

/// An address in `net` that none of `covered` contains, if any.
fn uncovered(net: IpNet, covered: &[IpNet]) -> Option<IpAddr> {
    let overlapping: Vec<IpNet> = covered.iter().filter(|c| c.contains(&net) || net.contains(*c)).copied().collect();
    if overlapping.is_empty() {
        return Some(net.network());
    }
    if overlapping.iter().any(|c| c.contains(&net)) {
        return None;
    }
    let halves = net.subnets(net.prefix_len() + 1).ok()?;
    for half in halves {
        if let Some(ip) = uncovered(half, &overlapping) {
            return Some(ip);
        }
    }
    None
}

fn peer_of<'a>(c: &'a Cluster, id: &Identity) -> (Peer<'a>, bool) {
    match &id.kind {
        IdentityKind::Pods { rep, v6 } => {
            let i = c.endpoint(rep).expect("identity representative is an endpoint");
            (Peer::Endpoint(&c.endpoints[i]), *v6)
        }
        IdentityKind::Cidr { rep, .. } => (Peer::Ip(*rep), rep.is_ipv6()),
    }
}

/// Port (or ICMP type/code) boundaries where a verdict can change, for one protocol.
fn boundaries(
    c: &Cluster,
    applicable: &[(usize, Vec<usize>)],
    proto: u8,
    dst: Option<&Endpoint>,
) -> BTreeSet<u32> {
    let mut b = BTreeSet::from([0u32]);
    let l4 = porin_model::Protocol::from_number(proto);
    let mut port_match = |m: &PortMatch, b: &mut BTreeSet<u32>| match m {
        PortMatch::Range(lo, hi) => {
            b.insert(u32::from(*lo));
            b.insert(u32::from(*hi) + 1);
        }
        PortMatch::Named(n) => {
            if let (Some(l4), Some(d)) = (l4, dst)
                && let Some(p) = d.resolve_named_port(n, l4) {
                    b.insert(u32::from(p));
                    b.insert(u32::from(p) + 1);
                }
        }
    };
    for (_, list) in applicable {
        for &pi in list {
            let p = &c.policies[pi];
            for r in p.ingress.iter().chain(p.egress.iter()) {
                rule_boundaries(r, proto, &mut b, &mut port_match);
            }
        }
    }
    b.retain(|v| *v <= 65535);
    b
}

fn rule_boundaries(
    r: &IrRule,
    proto: u8,
    b: &mut BTreeSet<u32>,
    port_match: &mut impl FnMut(&PortMatch, &mut BTreeSet<u32>),
) {
    match &r.matcher {
        RuleMatch::K8s { ports, peers } => {
            for pm in ports {
                if pm.protocol.number() == proto
                    && let Some(m) = &pm.port {
                        port_match(m, b);
                    }
            }
            let _ = peers.iter().filter(|p| matches!(p, K8sPeer::IpBlock { .. })).count();
        }
        RuleMatch::Calico { icmp, not_icmp, source, destination, .. } => {
            if proto == 1 || proto == 58 {
                for (t, code) in icmp.iter().chain(not_icmp.iter()).copied() {
                    match (t, code) {
                        (Some(t), None) => {
                            b.insert(u32::from(t) << 8);
                            b.insert((u32::from(t) << 8) + 256);
                        }
                        (Some(t), Some(code)) => {
                            let v = u32::from(t) << 8 | u32::from(code);
                            b.insert(v);
                            b.insert(v + 1);
                        }
                        (None, _) => {}
                    }
                }
            } else {
                for m in destination.ports.iter().chain(destination.not_ports.iter()) {
                    port_match(m, b);
                }
                let _ = source;
            }
        }
    }
}

/// `applicable` without the policies that cannot match `pkt` in `dir` (the last of each tier is kept).
fn prune(c: &Cluster, applicable: &[(usize, Vec<usize>)], dir: Direction, pkt: &Packet) -> Applicable {
    applicable
        .iter()
        .map(|(ti, list)| {
            let last = list.len() - 1;
            let kept = list
                .iter()
                .enumerate()
                .filter(|(k, pi)| {
                    let p = &c.policies[**pi];
                    let rules = match dir {
                        Direction::Ingress => &p.ingress,
                        Direction::Egress => &p.egress,
                    };
                    *k == last || rules.iter().any(|r| may_match(r, pkt))
                })
                .map(|(_, pi)| *pi)
                .collect();
            (*ti, kept)
        })
        .collect()
}

/// False only when the rule's packet-only conditions (address family, protocol, numeric destination ports)
/// rule out `pkt`; anything that depends on an endpoint (named ports, peers) counts as a possible match.
fn may_match(r: &IrRule, pkt: &Packet) -> bool {
    let in_range = |m: &PortMatch| match m {
        PortMatch::Range(lo, hi) => Some(pkt.port.is_some_and(|p| (*lo..=*hi).contains(&p))),
        PortMatch::Named(_) => None,
    };
    match &r.matcher {
        RuleMatch::K8s { ports, .. } => {
            ports.is_empty()
                || ports.iter().any(|pm| {
                    pm.protocol.number() == pkt.protocol && pm.port.as_ref().is_none_or(|m| in_range(m) != Some(false))
                })
        }
        RuleMatch::Calico { ip_version, protocol, not_protocol, destination, .. } => {
            if ip_version.is_some_and(|v| (v == 6) != pkt.v6)
                || protocol.is_some_and(|p| p != pkt.protocol)
                || not_protocol.is_some_and(|p| p == pkt.protocol)
            {
                return false;
            }
            if !destination.ports.is_empty() && destination.ports.iter().all(|m| in_range(m) == Some(false)) {
                return false;
            }
            !destination.not_ports.iter().any(|m| in_range(m) == Some(true))
        }
    }
}

fn packet(proto: u8, value: u16, v6: bool) -> Packet {
    match proto {
        6 | 17 | 132 => Packet { protocol: proto, port: Some(value), icmp: None, v6 },
        1 | 58 => Packet { protocol: proto, port: None, icmp: Some(((value >> 8) as u8, Some(value as u8))), v6 },
        _ => Packet { protocol: proto, port: None, icmp: None, v6 },
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 1 | 6 | 17 | 58 | 132)
}

#[allow(clippy::too_many_arguments)]
fn compile_direction(
    c: &Cluster,
    state: &mut State,
    local: &Endpoint,
    dir: Direction,
    applicable: &[(usize, Vec<usize>)],
    identities: &[Identity],
    protocols: &BTreeSet<u8>,
    other: u8,
) -> Vec<Entry> {
    // Per packet: the applicable list without policies none of whose rules can match it (the last policy of
    // each tier stays, it names the end-of-tier hit), so each walk scans only what can decide.
    let mut pruned: HashMap<Packet, Applicable> = HashMap::new();
    let mut eval = |state: &mut State, peer: Peer<'_>, pkt: &Packet| -> Value {
        state.stats.walks += 1;
        let list = pruned.entry(*pkt).or_insert_with(|| prune(c, applicable, dir, pkt));
        let s = c.walk(Variant::Enforced, list, local, dir, peer, pkt, true);
        let trace = s.hits.iter().map(|h| h.to_string()).collect();
        (s.allowed, state.rule(RuleMeta { allow: s.allowed, trace }))
    };
    // Boundaries that do not depend on the peer (ingress: named ports resolve on the local endpoint).
    let fixed: BTreeMap<u8, BTreeSet<u32>> = if dir == Direction::Ingress {
        protocols.iter().filter(|p| has_ports(**p)).map(|p| (*p, boundaries(c, applicable, *p, Some(local)))).collect()
    } else {
        BTreeMap::new()
    };
    struct Func {
        id: u32,
        other: Value,
        protos: Vec<(u8, Segments)>,
    }
    let mut funcs = Vec::with_capacity(identities.len());
    for ident in identities {
        let (peer, v6) = peer_of(c, ident);
        let other_v = eval(state, peer, &packet(other, 0, v6));
        let mut protos = Vec::new();
        for &p in protocols {
            let segs: Segments = if has_ports(p) {
                let b = match dir {
                    Direction::Ingress => fixed[&p].clone(),
                    Direction::Egress => {
                        let dst = match peer {
                            Peer::Endpoint(e) => Some(e),
                            Peer::Ip(_) => None,
                        };
                        boundaries(c, applicable, p, dst)
                    }
                };
                let starts: Vec<u32> = b.into_iter().collect();
                let mut segs: Segments = Vec::new();
                for (k, &lo) in starts.iter().enumerate() {
                    let hi = starts.get(k + 1).map(|n| n - 1).unwrap_or(65535);
                    let v = eval(state, peer, &packet(p, lo as u16, v6));
                    match segs.last_mut() {
                        Some(last) if last.2 == v && u32::from(last.1) + 1 == lo => last.1 = hi as u16,
                        _ => segs.push((lo as u16, hi as u16, v)),
                    }
                }
                segs
            } else {
                vec![(0, 65535, eval(state, peer, &packet(p, 0, v6)))]
            };
            protos.push((p, segs));
        }
        funcs.push(Func { id: ident.id, other: other_v, protos });
    }
    let constant = |f: &Func| f.protos.iter().all(|(_, s)| s.len() == 1 && s[0].2 == f.other);
    // The endpoint default: the most common verdict of identities whose function is constant; deny if none.
    let mut counts: HashMap<Value, usize> = HashMap::new();
    for f in funcs.iter().filter(|f| constant(f)) {
        *counts.entry(f.other).or_default() += 1;
    }
    let default = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| (!a.0.0).cmp(&!b.0.0)).then_with(|| b.0.1.cmp(&a.0.1)))
        .map(|(v, _)| v)
        .unwrap_or_else(|| (false, state.rule(RuleMeta { allow: false, trace: vec![] })));
    let mut out = vec![Entry { identity: None, proto: None, ports: None, allow: default.0, rule_id: default.1 }];
    for f in &funcs {
        if constant(f) && f.other == default {
            continue;
        }
        out.push(Entry { identity: Some(f.id), proto: None, ports: None, allow: f.other.0, rule_id: f.other.1 });
        for (p, segs) in &f.protos {
            if segs.len() == 1 && segs[0].2 == f.other {
                continue;
            }
            // The protocol entry takes the verdict that covers most ports; the rest become port ranges.
            let mut cover: HashMap<Value, u32> = HashMap::new();
            for (lo, hi, v) in segs {
                *cover.entry(*v).or_default() += u32::from(*hi) - u32::from(*lo) + 1;
            }
            let base = cover
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.1.cmp(&a.0.1)))
                .map(|(v, _)| v)
                .expect("at least one segment");
            out.push(Entry { identity: Some(f.id), proto: Some(*p), ports: None, allow: base.0, rule_id: base.1 });
            for (lo, hi, v) in segs {
                if *v != base {
                    out.push(Entry {
                        identity: Some(f.id),
                        proto: Some(*p),
                        ports: Some((*lo, *hi)),
                        allow: v.0,
                        rule_id: v.1,
                    });
                }
            }
        }
    }
    out
}

/// The kernel's lookup, emulated: the most specific entry that matches.
pub fn lookup(entries: &[Entry], identity: u32, proto: u8, port: u16) -> Option<&Entry> {
    entries
        .iter()
        .filter(|e| {
            e.identity.is_none_or(|i| i == identity)
                && (e.identity.is_some() || e.proto.is_none())
                && e.proto.is_none_or(|p| p == proto)
                && e.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&port))
        })
        .max_by_key(|e| (e.identity.is_some(), e.proto.is_some(), e.ports.is_some()))
}

/// The kernel's ipcache lookup, emulated: the longest prefix containing `ip`.
pub fn lookup_identity(ipcache: &[(IpNet, u32)], ip: IpAddr) -> Option<u32> {
    ipcache.iter().filter(|(n, _)| n.contains(&ip)).max_by_key(|(n, _)| n.prefix_len()).map(|(_, id)| *id)
}
