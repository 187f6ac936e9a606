//! The agent's [`Enricher`]: what the dataplane consumer knew when it programmed a policy revision,
//! as an immutable snapshot the flow pipeline swaps in.
//!
//! * endpoint id → the local pod (namespace, name, labels, node);
//! * node identity → the pods it stands for (or, per 5-tuple, the one pod behind the address), the
//!   network set whose CIDR it is, or `world`;
//! * rule id → the enforced trace (`porin_calc::State::rules`, append-only, so every id the kernel
//!   can report stays resolvable);
//! * staged policies: the pending verdict, evaluated with the reference engine
//!   ([`Cluster::side`] with [`Variant::Pending`]) on the identity's representative, cached per
//!   (endpoint, direction, identity, protocol, port) for the life of the snapshot (= one policy
//!   revision).
//!
//! Events are produced before the pipeline sees the next snapshot, and after a change the kernel may
//! still report a number the new snapshot dropped, so a snapshot keeps the previous revision's
//! endpoint and identity maps as a fallback; what neither knows is recorded as `unknown` and counted
//! by the aggregator, never a crash.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use porin_calc::{Identity, IdentityKind};
use porin_flow::{EndpointKind, EndpointMeta, Enricher, FlowDirection, PendingMeta, PendingQuery, PendingVerdict, RuleMeta};
use porin_policy::{Cluster, Shared};
use porin_policy::eval::{Direction, Packet, Peer, Variant};

/// Labels the engine adds to every endpoint (namespace, service account, orchestrator): not the pod's
/// own, so flow records leave them out.
fn own_labels(l: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    l.iter().filter(|(k, _)| !k.starts_with("projectcalico.org/")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Who stands behind an identity, for a staged-policy evaluation.
#[derive(Debug, Clone)]
enum Rep {
    /// Index into `cluster.endpoints`.
    Endpoint(usize),
    Ip(IpAddr),
    /// World: use the flow's own peer address.
    PeerAddress,
}

#[derive(Debug)]
struct IdentityInfo {
    meta: Arc<EndpointMeta>,
    rep: Rep,
    /// Pod identities: more than one pod (the address then names the pod).
    shared: bool,
}

/// The inputs the dataplane consumer hands over after programming a revision.
pub struct ContextInputs<'a> {
    pub revision: u64,
    pub cluster: Arc<Cluster>,
    /// `(endpoint id, pod "namespace/name")` of every programmed local endpoint.
    pub endpoints: Vec<(u32, String)>,
    /// `(node identity, compiler identity)`.
    pub identities: Vec<(u32, &'a Identity)>,
    /// The compiler's identity table `identities` was read from (`porin_calc::Compiled::identities`): when it is
    /// the previous snapshot's (same allocation), with the same endpoints and network sets, the identity map is
    /// shared instead of rebuilt.
    pub identity_table: Shared<Vec<Identity>>,
    /// `porin_calc::State::rules` (index = rule id).
    pub rules: &'a [porin_calc::RuleMeta],
}

type PendingKey = (u32, FlowDirection, u32, u8, u16);

/// One policy revision's enrichment maps (see the module docs).
#[derive(Debug, Default)]
pub struct FlowContext {
    pub revision: u64,
    cluster: Arc<Cluster>,
    endpoints: Arc<HashMap<u32, (usize, Arc<EndpointMeta>)>>,
    identities: Arc<HashMap<u32, IdentityInfo>>,
    by_ip: Arc<HashMap<IpAddr, Arc<EndpointMeta>>>,
    rules: Arc<Vec<Option<Arc<RuleMeta>>>>,
    /// What depends only on `cluster.endpoints` (shared with the next snapshot while they are the same):
    /// endpoint id (`namespace/name`) → index, and index → its metadata.
    index: Arc<HashMap<String, usize>>,
    metas: Arc<Vec<Arc<EndpointMeta>>>,
    /// The identity table and node numbering `identities` was built from.
    identity_table: Shared<Vec<Identity>>,
    identity_nodes: Arc<Vec<(u32, u32)>>,
    prev_endpoints: Arc<HashMap<u32, (usize, Arc<EndpointMeta>)>>,
    prev_identities: Arc<HashMap<u32, IdentityInfo>>,
    prev_by_ip: Arc<HashMap<IpAddr, Arc<EndpointMeta>>>,
    pending: Mutex<HashMap<PendingKey, Option<Arc<PendingMeta>>>>,
}

/// Bound of the staged-verdict cache of one snapshot.
const PENDING_CACHE_MAX: usize = 65_536;

impl FlowContext {
    /// The decoy a local endpoint is (`(namespace, honeypod name)`), if it is one (docs/design/respond.md).
    pub fn decoy(&self, endpoint_id: u32) -> Option<(String, String)> {
        let (i, _) = self.endpoints.get(&endpoint_id)?;
        let e = self.cluster.endpoints.get(*i)?;
        let name = e.labels.get(porin_model::respond::LABEL_HONEYPOD)?;
        Some((e.namespace.clone(), name.clone()))
    }

    /// The workload at `ip`, with its labels, as an alert's endpoint (only the address when unknown).
    pub fn alert_endpoint(&self, ip: IpAddr, port: Option<u16>) -> porin_flow::FlowEndpoint {
        let mut out = porin_flow::FlowEndpoint { ip: Some(ip), port, ..Default::default() };
        match self.cluster.endpoint_by_ip(ip) {
            Some(i) => {
                let e = &self.cluster.endpoints[i];
                out.kind = EndpointKind::Pod;
                out.namespace = Some(e.namespace.clone());
                out.pod = Some(e.name.clone());
                out.labels = own_labels(&e.labels);
            }
            None => out.kind = EndpointKind::World,
        }
        out
    }

    /// Builds the snapshot of `inp`, keeping `prev`'s maps as the fallback and reusing its rule
    /// metadata (rule ids only grow).
    pub fn build(inp: ContextInputs<'_>, prev: Option<&FlowContext>) -> FlowContext {
        let c = &inp.cluster;
        let pod_meta = |i: usize| {
            let e = &c.endpoints[i];
            let labels = own_labels(&e.labels);
            Arc::new(EndpointMeta {
                kind: EndpointKind::Pod,
                namespace: Some(e.namespace.clone()),
                pod: Some(e.name.clone()),
                workload: None,
                network_set: None,
                labels,
            })
        };
        // The endpoint maps depend on the endpoints alone: shared while they are the same allocation (a
        // revision that changed only policies).
        let same_endpoints = prev.filter(|p| Shared::ptr_eq(&p.cluster.endpoints, &c.endpoints));
        let (index, metas, by_ip) = match same_endpoints {
            Some(p) => (p.index.clone(), p.metas.clone(), p.by_ip.clone()),
            None => {
                let index: HashMap<String, usize> = c.endpoints.iter().enumerate().map(|(i, e)| (e.id(), i)).collect();
                let mut by_ip = HashMap::new();
                let mut metas: Vec<Arc<EndpointMeta>> = Vec::with_capacity(c.endpoints.len());
                for (i, e) in c.endpoints.iter().enumerate() {
                    let m = pod_meta(i);
                    for ip in &e.ips {
                        by_ip.insert(*ip, m.clone());
                    }
                    metas.push(m);
                }
                (Arc::new(index), Arc::new(metas), Arc::new(by_ip))
            }
        };
        let endpoints: HashMap<u32, (usize, Arc<EndpointMeta>)> = inp
            .endpoints
            .iter()
            .filter_map(|(id, pod)| index.get(pod).map(|i| (*id, (*i, metas[*i].clone()))))
            .collect();
        let identity_nodes: Vec<(u32, u32)> = inp.identities.iter().map(|(n, i)| (*n, i.id)).collect();
        // The identity map depends on the endpoints, the network sets, the identity table and its numbering.
        let same_identities = same_endpoints.filter(|p| {
            Shared::ptr_eq(&p.identity_table, &inp.identity_table)
                && *p.identity_nodes == identity_nodes
                && p.cluster.net_sets == c.net_sets
        });
        let identities = match same_identities {
            Some(p) => p.identities.clone(),
            None => Arc::new(Self::identity_map(c, &inp.identities, &index, &metas)),
        };
        // Rebuilt at every revision: the compiler recycles the ids of rules no longer used, so an id may name
        // another rule than it did in an older revision. Every id the last compile used keeps its meaning here.
        // An id whose trace is the one it had is shared with the previous snapshot.
        let prev_rules = prev.map(|p| p.rules.clone()).unwrap_or_default();
        let rules: Vec<Option<Arc<RuleMeta>>> = inp
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (i != 0).then(|| match prev_rules.get(i) {
                    Some(Some(m)) if m.trace == r.trace => m.clone(),
                    _ => Arc::new(RuleMeta { trace: r.trace.clone() }),
                })
            })
            .collect();
        FlowContext {
            revision: inp.revision,
            cluster: inp.cluster.clone(),
            endpoints: Arc::new(endpoints),
            identities,
            by_ip,
            rules: Arc::new(rules),
            index,
            metas,
            identity_table: inp.identity_table.clone(),
            identity_nodes: Arc::new(identity_nodes),
            prev_endpoints: prev.map(|p| p.endpoints.clone()).unwrap_or_default(),
            prev_identities: prev.map(|p| p.identities.clone()).unwrap_or_default(),
            prev_by_ip: prev.map(|p| p.by_ip.clone()).unwrap_or_default(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Node identity → who stands behind it.
    fn identity_map(
        c: &Cluster,
        inputs: &[(u32, &Identity)],
        index: &HashMap<String, usize>,
        metas: &[Arc<EndpointMeta>],
    ) -> HashMap<u32, IdentityInfo> {
        let mut identities = HashMap::new();
        for (node_id, ident) in inputs {
            let info = match &ident.kind {
                IdentityKind::Pods { rep, .. } => {
                    let Some(&ri) = index.get(rep) else { continue };
                    let r = &c.endpoints[ri];
                    let shared = ident.members.len() > 1;
                    let meta = if shared {
                        // What every member shares: namespace and labels (same identity = same both).
                        Arc::new(EndpointMeta {
                            kind: EndpointKind::Pod,
                            namespace: Some(r.namespace.clone()),
                            labels: own_labels(&r.labels),
                            ..Default::default()
                        })
                    } else {
                        metas[ri].clone()
                    };
                    IdentityInfo { meta, rep: Rep::Endpoint(ri), shared }
                }
                IdentityKind::Cidr { prefix, rep } => {
                    let set = c.net_sets.iter().find(|s| s.nets.contains(prefix));
                    let meta = match set {
                        Some(s) => Arc::new(EndpointMeta {
                            kind: EndpointKind::NetworkSet,
                            namespace: s.namespace.clone(),
                            network_set: Some(s.name.clone()),
                            labels: s.labels.clone(),
                            ..Default::default()
                        }),
                        None => Arc::new(EndpointMeta::world()),
                    };
                    let rep = if prefix.prefix_len() == 0 { Rep::PeerAddress } else { Rep::Ip(*rep) };
                    IdentityInfo { meta, rep, shared: false }
                }
            };
            identities.insert(*node_id, info);
        }
        for w in [porin_calc::IDENTITY_WORLD_V4, porin_calc::IDENTITY_WORLD_V6] {
            identities.entry(w).or_insert_with(|| IdentityInfo { meta: Arc::new(EndpointMeta::world()), rep: Rep::PeerAddress, shared: false });
        }
        identities
    }

    fn identity_info(&self, id: u32) -> Option<&IdentityInfo> {
        self.identities.get(&id).or_else(|| self.prev_identities.get(&id))
    }

    fn evaluate_pending(&self, q: &PendingQuery) -> Option<Arc<PendingMeta>> {
        let c = &self.cluster;
        if !c.has_staged {
            return None;
        }
        let (ei, _) = self.endpoints.get(&q.endpoint_id)?;
        let local = &c.endpoints[*ei];
        let info = self.identity_info(q.peer_identity);
        let peer = match info.map(|i| &i.rep) {
            Some(Rep::Endpoint(i)) => Peer::Endpoint(c.endpoints.get(*i)?),
            Some(Rep::Ip(ip)) => Peer::Ip(*ip),
            Some(Rep::PeerAddress) | None => Peer::Ip(q.peer_ip?),
        };
        let v6 = match peer {
            Peer::Ip(ip) => ip.is_ipv6(),
            Peer::Endpoint(_) => q.peer_ip.is_some_and(|ip| ip.is_ipv6()),
        };
        let pkt = match q.protocol {
            1 | 58 => Packet { protocol: q.protocol, port: None, icmp: Some(((q.port >> 8) as u8, Some(q.port as u8))), v6 },
            6 | 17 | 132 => Packet { protocol: q.protocol, port: Some(q.port), icmp: None, v6 },
            p => Packet { protocol: p, port: None, icmp: None, v6 },
        };
        let dir = match q.direction {
            FlowDirection::Ingress => Direction::Ingress,
            FlowDirection::Egress => Direction::Egress,
        };
        let pending = c.side(Variant::Pending, local, dir, peer, &pkt);
        let enforced = c.side(Variant::Enforced, local, dir, peer, &pkt);
        // No staged policy changes anything here: no pending verdict (the record's is the enforced one).
        if pending.hits == enforced.hits && pending.allowed == enforced.allowed {
            return None;
        }
        Some(Arc::new(PendingMeta {
            verdict: if pending.allowed { PendingVerdict::WouldAllow } else { PendingVerdict::WouldDeny },
            trace: pending.hits.iter().map(ToString::to_string).collect(),
        }))
    }
}

impl Enricher for FlowContext {
    fn endpoint(&self, id: u32) -> Option<Arc<EndpointMeta>> {
        self.endpoints.get(&id).or_else(|| self.prev_endpoints.get(&id)).map(|(_, m)| m.clone())
    }

    fn identity(&self, id: u32) -> Option<Arc<EndpointMeta>> {
        self.identity_info(id).map(|i| i.meta.clone())
    }

    fn peer(&self, id: u32, ip: Option<IpAddr>) -> Option<Arc<EndpointMeta>> {
        let info = self.identity_info(id)?;
        if info.shared
            && let Some(ip) = ip
            && let Some(m) = self.by_ip.get(&ip).or_else(|| self.prev_by_ip.get(&ip))
        {
            return Some(m.clone());
        }
        Some(info.meta.clone())
    }

    fn rule(&self, id: u32) -> Option<Arc<RuleMeta>> {
        self.rules.get(id as usize).cloned().flatten()
    }

    fn pending(&self, q: &PendingQuery) -> Option<Arc<PendingMeta>> {
        if !self.cluster.has_staged {
            return None;
        }
        let key = (q.endpoint_id, q.direction, q.peer_identity, q.protocol, q.port);
        // World peers are evaluated on their own address: do not share the cache entry.
        let by_address = matches!(self.identity_info(q.peer_identity).map(|i| &i.rep), Some(Rep::PeerAddress) | None);
        if !by_address && let Some(v) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return v.clone();
        }
        let v = self.evaluate_pending(q);
        if !by_address {
            let mut cache = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= PENDING_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, v.clone());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(y: &str) -> Arc<Cluster> {
        let docs = porin_model::parse_documents("t", y).expect("parses");
        let rs: Vec<porin_model::Resource> = docs.into_iter().map(|d| d.resource).collect();
        Arc::new(Cluster::build(rs.iter()).expect("builds"))
    }

    fn pod(name: &str, ip: &str, app: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: s, labels: {{app: {app}}}}}\nstatus: {{podIP: {ip}}}\n---\n")
    }

    fn policy(port: u16) -> String {
        format!(
            "apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: s}}\n\
             spec: {{selector: app == 'a', types: [Ingress], ingress: [{{action: Allow, protocol: TCP, \
             source: {{selector: app == 'b'}}, destination: {{ports: [{port}]}}}}, \
             {{action: Allow, source: {{nets: [10.9.0.0/16]}}}}]}}\n---\n"
        )
    }

    /// The contexts of `c` compiled into `state`, built on `prev` and afresh (node identity = compiler
    /// identity + 1000), and the node identities of the compile.
    fn contexts(c: &Arc<Cluster>, state: &mut porin_calc::State, prev: Option<&FlowContext>) -> (FlowContext, FlowContext, Vec<u32>) {
        let compiled = porin_calc::compile(c, state, &|_| true);
        let inputs = || ContextInputs {
            revision: 1,
            cluster: c.clone(),
            endpoints: vec![(1, "s/a".into()), (2, "s/b".into())],
            identities: compiled.identities.iter().map(|i| (i.id + 1000, i)).collect(),
            identity_table: compiled.identities.clone(),
            rules: &state.rules,
        };
        let ids = compiled.identities.iter().map(|i| i.id + 1000).collect();
        (FlowContext::build(inputs(), prev), FlowContext::build(inputs(), None), ids)
    }

    /// Everything the enricher answers about the current revision's ids and addresses.
    fn answers(x: &FlowContext, c: &Cluster, ids: &[u32], rules: usize) -> Vec<String> {
        let mut out = Vec::new();
        let ips: Vec<IpAddr> = c.endpoints.iter().flat_map(|e| e.ips.iter().copied()).chain(["10.9.1.1".parse().expect("ip")]).collect();
        for id in [porin_calc::IDENTITY_WORLD_V4, porin_calc::IDENTITY_WORLD_V6].iter().chain(ids) {
            out.push(format!("{id}: {:?}", x.identity(*id)));
            for ip in &ips {
                out.push(format!("{id} {ip}: {:?}", x.peer(*id, Some(*ip))));
            }
        }
        for id in 1..3 {
            out.push(format!("endpoint {id}: {:?}", x.endpoint(id)));
        }
        for id in 0..rules as u32 {
            out.push(format!("rule {id}: {:?}", x.rule(id)));
        }
        out
    }

    /// A context built on the previous one (sharing what did not change) answers as one built afresh; a
    /// policy-only revision shares the endpoint and identity maps, a changed pod rebuilds them.
    #[test]
    fn a_context_built_on_the_previous_one_answers_as_one_built_afresh() {
        let pods = format!("{}{}{}", pod("a", "10.0.0.1", "a"), pod("b", "10.0.0.2", "b"), pod("c", "10.0.0.3", "c"));
        let mut state = porin_calc::State::new();
        let c1 = cluster(&format!("{pods}{}", policy(80)));
        let (x1, _, _) = contexts(&c1, &mut state, None);

        // Only the policy changes; the engine shares the endpoint side (as Model::cluster does).
        let mut c2 = (*cluster(&format!("{pods}{}", policy(81)))).clone();
        c2.endpoints = c1.endpoints.clone();
        let c2 = Arc::new(c2);
        let (x2, fresh, ids) = contexts(&c2, &mut state, Some(&x1));
        assert!(Arc::ptr_eq(&x1.by_ip, &x2.by_ip) && Arc::ptr_eq(&x1.metas, &x2.metas));
        assert!(Arc::ptr_eq(&x1.identities, &x2.identities), "the identity table was reused");
        let got = answers(&x2, &c2, &ids, state.rules.len());
        assert_eq!(got, answers(&fresh, &c2, &ids, state.rules.len()));
        // Not vacuous: rules, pods with their labels and a network of a rule are all answered.
        assert!(got.iter().any(|a| a.starts_with("rule 1: Some")), "{got:?}");
        assert!(got.iter().any(|a| a.contains("Pod") && a.contains("\"app\"")), "{got:?}");

        // A pod's labels change: nothing endpoint-side is shared, answers still equal a fresh build.
        let pods3 = pods.replace("labels: {app: c}", "labels: {app: b}");
        let c3 = cluster(&format!("{pods3}{}", policy(81)));
        let (x3, fresh, ids) = contexts(&c3, &mut state, Some(&x2));
        assert!(!Arc::ptr_eq(&x2.by_ip, &x3.by_ip) && !Arc::ptr_eq(&x2.identities, &x3.identities));
        assert_eq!(answers(&x3, &c3, &ids, state.rules.len()), answers(&fresh, &c3, &ids, state.rules.len()));
    }
}
