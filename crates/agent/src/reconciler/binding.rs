//! Which pod each local interface enforces ([`Binding`]s checked against the model: [`decide`]), the
//! duplicate addresses that deny, and the node's identity numbering ([`IdentityMap`]) with the translation of
//! compiled entries into dataplane entries. Used by [`super::node::NodeReconciler`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use porin_calc::{Compiled, Entry, FIRST_DYNAMIC_IDENTITY};
use porin_dataplane::{Action, PolicyEntry, port_range_to_prefixes};
use porin_model::Resource;

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

/// What one local interface should do this revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Want {
    /// Enforce this pod's policy, with these own addresses.
    Bound { pod: String, addrs: Vec<IpAddr> },
    /// Attached, no endpoint entry: every packet drops. The reason is reported.
    Deny { pod: String, reason: String },
}

/// Addresses claimed by more than one endpoint of `cluster` → the endpoints (`ns/name`) claiming them.
pub(super) fn address_conflicts(cluster: &porin_policy::Cluster) -> BTreeMap<IpAddr, BTreeSet<String>> {
    // Sorted (address, endpoint) pairs: only addresses with two claimants allocate anything (runs on every
    // revision over every endpoint of the cluster).
    let mut claims: Vec<(IpAddr, usize)> =
        cluster.endpoints.iter().enumerate().flat_map(|(i, e)| e.ips.iter().map(move |ip| (*ip, i))).collect();
    claims.sort_unstable();
    claims.dedup();
    let mut by_addr: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    for run in claims.chunk_by(|a, b| a.0 == b.0) {
        if run.len() > 1 {
            by_addr.insert(run[0].0, run.iter().map(|(_, i)| cluster.endpoints[*i].id()).collect());
        }
    }
    by_addr.retain(|_, pods| pods.len() > 1);
    by_addr
}

/// Is `e` the endpoint `namespace/name` (without formatting its id)?
fn is_endpoint(e: &porin_policy::Endpoint, id: &str) -> bool {
    id.split_once('/').is_some_and(|(ns, name)| e.namespace == ns && e.name == name)
}

/// Decide every local interface: bound to its pod, or denied with a reason. A WorkloadEndpoint binds only
/// when it is the one binding of its interface and of its pod, the pod exists, the addresses agree with the
/// pod's status, and no other endpoint claims them.
pub(super) fn decide(node: &str, bindings: &[Binding], cluster: &porin_policy::Cluster, conflicts: &BTreeMap<IpAddr, BTreeSet<String>>) -> BTreeMap<String, Want> {
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
        } else if let Some(e) = cluster.endpoints.iter().find(|e| is_endpoint(e, &b.pod)) {
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
pub(super) fn without_conflicts(cluster: &Arc<porin_policy::Cluster>, conflicts: &BTreeMap<IpAddr, BTreeSet<String>>) -> Arc<porin_policy::Cluster> {
    if conflicts.is_empty() {
        return cluster.clone();
    }
    let mut c = (**cluster).clone();
    for e in &mut c.endpoints {
        e.ips.retain(|ip| !conflicts.contains_key(ip));
    }
    Arc::new(c)
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
            ]
            .into(),
            ipcache: vec![(net("10.0.0.1/32"), 256), (net("10.0.0.2/32"), 257), (net("10.0.0.3/32"), 258), (net("0.0.0.0/0"), 2)].into(),
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
