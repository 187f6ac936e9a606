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
    /// The evaluation keys of an observation's two ends (`v6`: the observation involves an IPv6 address).
    pub(crate) fn keys(&self, ob: &Observation) -> (EvalKey, EvalKey) {
        let ip = |p: &ObservedPeer| match p {
            ObservedPeer::NetworkSet { ip, .. } => *ip,
            ObservedPeer::Ip { ip } => Some(*ip),
            ObservedPeer::Pod { .. } => None,
        };
        let v6 = [&ob.src, &ob.dst].iter().any(|p| matches!(ip(p), Some(IpAddr::V6(_))));
        let key = |p: &ObservedPeer| match p {
            ObservedPeer::Pod { namespace, pod } => match self.by_name.get(&(namespace.as_str(), pod.as_str())) {
                Some(&i) if v6 => EvalKey::Pod(i),
                Some(&i) => EvalKey::Class(self.class_of[i]),
                None => EvalKey::Unknown,
            },
            other => ip(other).map_or(EvalKey::Unknown, EvalKey::Ip),
        };
        (key(&ob.src), key(&ob.dst))
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
/// earliest first, latest last and summed flows, and how many were merged. Keys borrow: no allocation per record.
pub fn merge_counted(observed: &[Observation]) -> Vec<(Observation, u64)> {
    type Key<'a> = (ObservedAt, &'a ObservedPeer, &'a ObservedPeer, Protocol, u16);
    let mut shapes: std::collections::HashMap<Key<'_>, (i64, i64, u64, u64)> = std::collections::HashMap::new();
    for ob in observed {
        let e = shapes.entry((ob.at, &ob.src, &ob.dst, ob.protocol, ob.port)).or_insert((i64::MAX, i64::MIN, 0, 0));
        e.0 = e.0.min(ob.first_seen);
        e.1 = e.1.max(ob.last_seen);
        e.2 += ob.flows;
        e.3 += 1;
    }
    shapes
        .into_iter()
        .map(|((at, src, dst, protocol, port), (first_seen, last_seen, flows, n))| {
            (Observation { at, src: src.clone(), dst: dst.clone(), protocol, port, first_seen, last_seen, flows }, n)
        })
        .collect()
}

fn merge(observed: &[Observation]) -> Vec<Observation> {
    merge_counted(observed).into_iter().map(|(o, _)| o).collect()
}

/// Recommend one StagedNetworkPolicy per namespace from `observed` traffic (see the module docs).
pub fn recommend(c: &Cluster, observed: &[Observation], o: &Options) -> Recommendation {
    let mut out = Recommendation::default();
    // namespace -> (direction, local workload, scope, peer workload, protocol) -> ports and times
    let mut rules: BTreeMap<String, BTreeMap<RuleKey, Acc>> = BTreeMap::new();
    for ns in c.endpoints.iter().map(|e| e.namespace.clone()) {
        if !excluded(&ns, o) {
            rules.entry(ns).or_default();
        }
    }
    // Evaluations are shared by observations whose ends are of one class (see [`Pods::keys`]).
    let mut memo: std::collections::HashMap<(ObservedAt, EvalKey, EvalKey, Protocol, u16), Coverage> = std::collections::HashMap::new();
    let mut workloads: std::collections::HashMap<ObservedPeer, Option<String>> = std::collections::HashMap::new();
    let pods = Pods::new(c);
    for ob in &merge(observed) {
        let (local, remote) = match ob.at {
            ObservedAt::Egress => (&ob.src, &ob.dst),
            ObservedAt::Ingress => (&ob.dst, &ob.src),
        };
        let ObservedPeer::Pod { namespace, .. } = local else { continue };
        if excluded(namespace, o) {
            continue;
        }
        let Some(sc) = scope(c, remote) else { continue };
        // Many records share one connection shape: evaluate each shape once.
        let (ks, kd) = pods.keys(ob);
        let cov = *memo.entry((ob.at, ks, kd, ob.protocol, ob.port)).or_insert_with(|| {
            let (Some(src), Some(dst)) = (pods.peer(&ob.src), pods.peer(&ob.dst)) else { return Coverage::Open };
            let v6 = matches!(src, Peer::Ip(IpAddr::V6(_))) || matches!(dst, Peer::Ip(IpAddr::V6(_)));
            let pkt = Packet { v6, ..Packet::l4(ob.protocol, ob.port) };
            let e = c.evaluate(Variant::Enforced, src, dst, &pkt);
            let side = match ob.at {
                ObservedAt::Egress => e.egress.as_ref(),
                ObservedAt::Ingress => e.ingress.as_ref(),
            };
            coverage(side, &o.tier)
        });
        match cov {
            Coverage::Open => {}
            Coverage::ExplicitlyAllowed => {
                out.already_allowed += ob.flows;
                continue;
            }
            Coverage::Denied => {
                out.denied += ob.flows;
                continue;
            }
        }
        let mut wl = |p: &ObservedPeer| workloads.entry(p.clone()).or_insert_with(|| workload(&pods, p)).clone();
        let key = (ob.at, wl(local), sc, wl(remote), ob.protocol);
        let acc = rules.entry(namespace.clone()).or_default().entry(key).or_insert_with(|| Acc {
            first: i64::MAX,
            last: i64::MIN,
            ..Acc::default()
        });
        acc.ports.insert(ob.port);
        acc.first = acc.first.min(ob.first_seen);
        acc.last = acc.last.max(ob.last_seen);
        acc.flows += ob.flows;
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
