//! Reachability matrices over all pods, fast.
//!
//! Pods that no policy can tell apart (same namespace, labels, service account, named ports, and the same
//! membership in every CIDR any rule or network set mentions) form a class.
//!
//! Every rule's match splits into a part that depends only on the local endpoint (the one whose policy is
//! walked) and a part that depends only on the peer: the source entity looks at the source, the destination
//! entity (and its ports, named ports resolving on the destination) at the destination, the K8s port list at
//! the destination and the K8s peers at the peer. So the tier walk runs once per (class, direction) over *sets*
//! of peer classes at once: each rule's peer part is a bitset over classes, computed once per rule and
//! memoised; a rule that matches removes its peers from the tier (Allow, Deny, Pass) and from the undecided
//! set (Allow, Deny). The egress and ingress results are combined and expanded to a pod-by-pod bit matrix.
//! The reference evaluator ([`Cluster::matrix_reference`]) is the oracle: the differential test compares
//! every cell on random clusters.

use std::collections::HashMap;

use ipnet::IpNet;
use porin_model::Protocol;
use serde::Serialize;

use crate::eval::{Direction, Packet, Peer, Variant, icmp_matches, port_matches};
use crate::ir::{Cluster, IrPolicy, IrRule, K8sPeer, RuleMatch, all_cidrs};
use porin_model::porin::{Action, TierDefaultAction};

/// A square bit matrix: `allowed(i, j)` says pod i may open a connection to pod j.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub protocol: Protocol,
    pub port: u16,
    /// `namespace/name`, in the cluster's endpoint order (sorted).
    pub pods: Vec<String>,
    words_per_row: usize,
    bits: Vec<u64>,
}

impl Matrix {
    fn new(protocol: Protocol, port: u16, pods: Vec<String>) -> Matrix {
        let n = pods.len();
        let words_per_row = n.div_ceil(64);
        Matrix { protocol, port, pods, words_per_row, bits: vec![0; words_per_row * n] }
    }
    pub fn allowed(&self, from: usize, to: usize) -> bool {
        self.bits[from * self.words_per_row + to / 64] >> (to % 64) & 1 == 1
    }
    fn set(&mut self, from: usize, to: usize) {
        self.bits[from * self.words_per_row + to / 64] |= 1 << (to % 64);
    }
    /// Every allowed ordered pair of distinct pods, in pod order.
    pub fn allowed_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for i in 0..self.pods.len() {
            for j in 0..self.pods.len() {
                if i != j && self.allowed(i, j) {
                    out.push((self.pods[i].clone(), self.pods[j].clone()));
                }
            }
        }
        out
    }
    pub fn count_allowed(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// The JSON shape other tools read: `{"port","protocol","pods","allowed":[[from,to],...]}`.
    pub fn to_json(&self) -> MatrixJson {
        MatrixJson {
            port: self.port,
            protocol: self.protocol.name().to_string(),
            pods: self.pods.clone(),
            allowed: self.allowed_pairs().into_iter().map(|(a, b)| [a, b]).collect(),
        }
    }
}

/// Serialised form of one matrix (documented in docs/matrix-json.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MatrixJson {
    pub port: u16,
    pub protocol: String,
    pub pods: Vec<String>,
    pub allowed: Vec<[String; 2]>,
}

/// Class key: everything about a pod that any policy can observe.
#[derive(PartialEq, Eq, Hash)]
struct ClassKey<'a> {
    namespace: &'a str,
    labels: &'a std::collections::BTreeMap<String, String>,
    sa: &'a str,
    /// The service account's labels (from its ServiceAccount object) as service-account selectors see them.
    sa_labels: &'a std::collections::BTreeMap<String, String>,
    named_ports: &'a [(String, Protocol, u16)],
    nets: Vec<u64>,
    has_ip: bool,
}

/// Endpoint classes (see [`Cluster::endpoint_classes`]) and one representative endpoint per class.
#[derive(Debug, Clone)]
pub struct Classes {
    pub class_of: Vec<usize>,
    pub reps: Vec<usize>,
}

/// Partition the endpoints into classes for a given address family.
fn classes(c: &Cluster, v6: bool) -> (Vec<usize>, Vec<usize>) {
    let cidrs: Vec<IpNet> = all_cidrs(c).into_iter().filter(|n| matches!(n, IpNet::V6(_)) == v6).collect();
    let mut index: HashMap<ClassKey<'_>, usize> = HashMap::new();
    let mut class_of = Vec::with_capacity(c.endpoints.len());
    let mut reps = Vec::new();
    for (i, e) in c.endpoints.iter().enumerate() {
        let ip = e.ip_of_family(v6);
        let mut nets = vec![0u64; cidrs.len().div_ceil(64)];
        if let Some(ip) = ip {
            for (k, n) in cidrs.iter().enumerate() {
                if n.contains(&ip) {
                    nets[k / 64] |= 1 << (k % 64);
                }
            }
        }
        let key = ClassKey {
            namespace: &e.namespace,
            labels: &e.labels,
            sa: &e.service_account,
            sa_labels: &e.sa_labels,
            named_ports: &e.named_ports,
            nets,
            has_ip: ip.is_some(),
        };
        let next = reps.len();
        let k = *index.entry(key).or_insert(next);
        if k == next {
            reps.push(i);
        }
        class_of.push(k);
    }
    (class_of, reps)
}

impl Cluster {
    /// Each endpoint's class for an address family: endpoints of one class are told apart by no policy
    /// (namespace, labels, service account and its labels, named ports, and which policy CIDRs hold their address are equal),
    /// so every evaluation with one in place of another has the same verdict and trace.
    pub fn endpoint_classes(&self, v6: bool) -> Vec<usize> {
        classes(self, v6).0
    }

    /// The reachability matrix for one protocol and port, for the enforced or pending policy set.
    pub fn matrix(&self, v: Variant, protocol: Protocol, port: u16) -> Matrix {
        self.matrix_family(v, protocol, port, false)
    }

    pub fn matrix_family(&self, v: Variant, protocol: Protocol, port: u16, v6: bool) -> Matrix {
        let pods: Vec<String> = self.endpoints.iter().map(|e| e.id()).collect();
        let mut m = Matrix::new(protocol, port, pods);
        let (class_of, reps) = classes(self, v6);
        let nc = reps.len();
        let pkt = Packet { protocol: protocol.number(), port: Some(port), icmp: None, v6 };
        let mut ctx = SideCtx::new(self, v, &reps, pkt);
        // For every class: the peer classes its egress policy lets it reach, and the peer classes its ingress
        // policy admits.
        let egress: Vec<Bits> = (0..nc).map(|c| ctx.allowed_peers(c, Direction::Egress)).collect();
        let ingress: Vec<Bits> = (0..nc).map(|c| ctx.allowed_peers(c, Direction::Ingress)).collect();
        // Transpose ingress: admitted_by[s] = the destination classes that admit source class s.
        let mut admitted_by = vec![Bits::new(nc); nc];
        for (cd, srcs) in ingress.iter().enumerate() {
            for cs in srcs.ones() {
                admitted_by[cs].set(cd);
            }
        }
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); nc];
        for (i, &k) in class_of.iter().enumerate() {
            members[k].push(i);
        }
        let words = m.words_per_row;
        let mut row = vec![0u64; words];
        for cs in 0..nc {
            row.iter_mut().for_each(|w| *w = 0);
            let mut ok = egress[cs].clone();
            ok.and(&admitted_by[cs]);
            for cd in ok.ones() {
                for &j in &members[cd] {
                    row[j / 64] |= 1 << (j % 64);
                }
            }
            for &i in &members[cs] {
                let base = i * words;
                m.bits[base..base + words].copy_from_slice(&row);
                // A pod is never listed as reaching itself.
                m.bits[base + i / 64] &= !(1 << (i % 64));
            }
        }
        m
    }

    /// The endpoint classes of the IPv4 family, for [`Cluster::pair_witness`] on many ports (classes do not
    /// depend on the port).
    pub fn classes_v4(&self) -> Classes {
        let (class_of, reps) = classes(self, false);
        Classes { class_of, reps }
    }

    /// The first pair (in `from` order, then the lowest index of `to`) of distinct pods whose reachability on
    /// `protocol`/`port` is not `want_allowed`: the pair [`Cluster::matrix`] would show first, computed only for
    /// the classes of `from` and `to` (ingress of the destination classes; egress of a source class only when
    /// it can change the answer).
    #[allow(clippy::too_many_arguments)]
    pub fn pair_witness(
        &self,
        v: Variant,
        protocol: Protocol,
        port: u16,
        cls: &Classes,
        from: &[usize],
        to: &[usize],
        want_allowed: bool,
    ) -> Option<(usize, usize)> {
        let nc = cls.reps.len();
        let pkt = Packet { protocol: protocol.number(), port: Some(port), icmp: None, v6: false };
        let mut ctx = SideCtx::new(self, v, &cls.reps, pkt);
        let mut to_classes = Bits::new(nc);
        for &j in to {
            to_classes.set(cls.class_of[j]);
        }
        // admitted[cd] for every destination class: the source classes its ingress admits.
        let mut ingress: HashMap<usize, Bits> = HashMap::new();
        let mut admitted_any = Bits::new(nc);
        for cd in to_classes.ones() {
            let b = ctx.allowed_peers(cd, Direction::Ingress);
            admitted_any.or(&b);
            ingress.insert(cd, b);
        }
        // Per source class: the destination classes whose answer differs from `want_allowed`.
        let mut bad: HashMap<usize, Bits> = HashMap::new();
        for &i in from {
            let cs = cls.class_of[i];
            let b = bad.entry(cs).or_insert_with(|| {
                let ok = if !want_allowed && !admitted_any.get(cs) {
                    // No destination admits this class: nothing is allowed, so nothing to find for a Deny guard.
                    Bits::new(nc)
                } else {
                    let mut ok = ctx.allowed_peers(cs, Direction::Egress);
                    ok.and(&to_classes);
                    for cd in ok.clone().ones() {
                        if !ingress[&cd].get(cs) {
                            ok.clear(cd);
                        }
                    }
                    ok
                };
                let mut b = to_classes.clone();
                if want_allowed {
                    b.and_not(&ok);
                } else {
                    b.and(&ok);
                }
                b
            });
            if b.is_empty() {
                continue;
            }
            if let Some(&j) = to.iter().find(|&&j| j != i && b.get(cls.class_of[j])) {
                return Some((i, j));
            }
        }
        None
    }

    /// The reference matrix: the plain evaluator on every pair. Slow; the oracle for tests.
    pub fn matrix_reference(&self, v: Variant, protocol: Protocol, port: u16) -> Matrix {
        let pods: Vec<String> = self.endpoints.iter().map(|e| e.id()).collect();
        let mut m = Matrix::new(protocol, port, pods);
        let pkt = Packet::l4(protocol, port);
        for (i, a) in self.endpoints.iter().enumerate() {
            for (j, b) in self.endpoints.iter().enumerate() {
                if i != j && self.evaluate(v, Peer::Endpoint(a), Peer::Endpoint(b), &pkt).allowed {
                    m.set(i, j);
                }
            }
        }
        m
    }

    /// Every (protocol, port) declared by any pod's containers, sorted.
    pub fn declared_ports(&self) -> Vec<(Protocol, u16)> {
        let mut v: Vec<(Protocol, u16)> = self.endpoints.iter().flat_map(|e| e.ports.iter().copied()).collect();
        v.sort_by_key(|(p, port)| (*port, *p));
        v.dedup();
        v
    }
}

/// A fixed-size bitset over classes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn full(n: usize) -> Bits {
        let mut b = Bits(vec![u64::MAX; n.div_ceil(64)]);
        if !n.is_multiple_of(64)
            && let Some(last) = b.0.last_mut()
        {
            *last = (1u64 << (n % 64)) - 1;
        }
        b
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    fn and(&mut self, o: &Bits) {
        self.0.iter_mut().zip(&o.0).for_each(|(a, b)| *a &= b);
    }
    fn or(&mut self, o: &Bits) {
        self.0.iter_mut().zip(&o.0).for_each(|(a, b)| *a |= b);
    }
    fn and_not(&mut self, o: &Bits) {
        self.0.iter_mut().zip(&o.0).for_each(|(a, b)| *a &= !b);
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            })
        })
    }
}

/// State for walking every class's policy against all peer classes at once.
struct SideCtx<'a> {
    c: &'a Cluster,
    v: Variant,
    reps: &'a [usize],
    pkt: Packet,
    /// Classes by namespace, to look only where a K8s peer can be.
    by_ns: HashMap<&'a str, Vec<usize>>,
    /// Memoised peer parts: [direction][policy][rule].
    peers: [Vec<Vec<Option<Bits>>>; 2],
}

impl<'a> SideCtx<'a> {
    fn new(c: &'a Cluster, v: Variant, reps: &'a [usize], pkt: Packet) -> SideCtx<'a> {
        let mut by_ns: HashMap<&str, Vec<usize>> = HashMap::new();
        for (k, &r) in reps.iter().enumerate() {
            by_ns.entry(c.endpoints[r].namespace.as_str()).or_default().push(k);
        }
        let (policies, _) = c.set(v);
        let ing = policies.iter().map(|p| vec![None; p.ingress.len()]).collect();
        let eg = policies.iter().map(|p| vec![None; p.egress.len()]).collect();
        SideCtx { c, v, reps, pkt, by_ns, peers: [ing, eg] }
    }

    fn rep(&self, class: usize) -> Peer<'a> {
        Peer::Endpoint(&self.c.endpoints[self.reps[class]])
    }

    /// The peer classes `class` accepts in direction `dir`: the tier walk of [`Cluster::walk`], over sets.
    fn allowed_peers(&mut self, class: usize, dir: Direction) -> Bits {
        let c = self.c;
        let nc = self.reps.len();
        let local = &c.endpoints[self.reps[class]];
        let (policies, tiers) = c.set(self.v);
        let mut undecided = Bits::full(nc);
        let mut allowed = Bits::new(nc);
        for (ti, list) in c.applicable(self.v, local, dir) {
            let mut in_tier = undecided.clone();
            'policies: for &pi in &list {
                let p = &policies[pi];
                let rules = match dir {
                    Direction::Ingress => &p.ingress,
                    Direction::Egress => &p.egress,
                };
                for (ri, rule) in rules.iter().enumerate() {
                    if in_tier.is_empty() {
                        break 'policies;
                    }
                    // Log never changes a verdict.
                    if rule.action == Action::Log || !self.local_part(rule, local, dir) {
                        continue;
                    }
                    let mut hit = self.peer_part(pi, p, ri, rule, dir).clone();
                    hit.and(&in_tier);
                    in_tier.and_not(&hit);
                    match rule.action {
                        Action::Allow => {
                            allowed.or(&hit);
                            undecided.and_not(&hit);
                        }
                        Action::Deny => undecided.and_not(&hit),
                        Action::Pass | Action::Log => {}
                    }
                }
            }
            if tiers[ti].default_action == TierDefaultAction::Deny {
                undecided.and_not(&in_tier);
            }
        }
        if c.default_allow {
            allowed.or(&undecided);
        }
        allowed
    }

    /// The part of a rule's match that looks only at the local endpoint (and the packet).
    fn local_part(&self, rule: &IrRule, local: &crate::ir::Endpoint, dir: Direction) -> bool {
        let pkt = &self.pkt;
        let me = Peer::Endpoint(local);
        match &rule.matcher {
            // Ingress: the local endpoint is the destination, on which the ports resolve.
            RuleMatch::K8s { ports, .. } => dir == Direction::Egress || k8s_ports_ok(ports, pkt, me),
            RuleMatch::Calico { ip_version, protocol, not_protocol, icmp, not_icmp, source, destination } => {
                if ip_version.is_some_and(|v| (v == 6) != pkt.v6)
                    || protocol.is_some_and(|p| p != pkt.protocol)
                    || not_protocol.is_some_and(|p| p == pkt.protocol)
                    || icmp.is_some_and(|m| !icmp_matches(m, pkt))
                    || not_icmp.is_some_and(|m| icmp_matches(m, pkt))
                {
                    return false;
                }
                match dir {
                    Direction::Ingress => self.c.entity_matches(destination, me, Some(me), pkt),
                    Direction::Egress => self.c.entity_matches(source, me, None, pkt),
                }
            }
        }
    }

    /// The peer classes for which the peer part of rule `ri` of policy `pi` holds (memoised).
    fn peer_part(&mut self, pi: usize, p: &IrPolicy, ri: usize, rule: &IrRule, dir: Direction) -> &Bits {
        let d = dir as usize;
        if self.peers[d][pi][ri].is_none() {
            let b = self.compute_peer_part(p, rule, dir);
            self.peers[d][pi][ri] = Some(b);
        }
        self.peers[d][pi][ri].as_ref().expect("just filled")
    }

    fn compute_peer_part(&self, p: &IrPolicy, rule: &IrRule, dir: Direction) -> Bits {
        let c = self.c;
        let nc = self.reps.len();
        let pkt = &self.pkt;
        match &rule.matcher {
            RuleMatch::K8s { peers, ports } => {
                let mut b = if peers.is_empty() { Bits::full(nc) } else { Bits::new(nc) };
                for k in peers {
                    match k {
                        K8sPeer::Pods { pods, namespaces } => {
                            let mut consider = |list: &Vec<usize>| {
                                for &k in list {
                                    if pods.matches(&c.endpoints[self.reps[k]].labels) {
                                        b.set(k);
                                    }
                                }
                            };
                            match namespaces {
                                None => {
                                    if let Some(list) = p.namespace.as_deref().and_then(|ns| self.by_ns.get(ns)) {
                                        consider(list);
                                    }
                                }
                                Some(sel) => {
                                    for (ns, list) in &self.by_ns {
                                        if c.namespace_matches(sel, ns) {
                                            consider(list);
                                        }
                                    }
                                }
                            }
                        }
                        K8sPeer::IpBlock { cidr, except } => {
                            for k in 0..nc {
                                if let Some(ip) = c.endpoints[self.reps[k]].ip_of_family(pkt.v6)
                                    && cidr.contains(&ip)
                                    && !except.iter().any(|x| x.contains(&ip))
                                {
                                    b.set(k);
                                }
                            }
                        }
                    }
                }
                // Egress: the peer is the destination, on which the ports resolve.
                if dir == Direction::Egress && !ports.is_empty() {
                    let set: Vec<usize> = b.ones().collect();
                    for k in set {
                        if !k8s_ports_ok(ports, pkt, self.rep(k)) {
                            b.clear(k);
                        }
                    }
                }
                b
            }
            RuleMatch::Calico { source, destination, .. } => {
                let mut b = Bits::new(nc);
                for k in 0..nc {
                    let peer = self.rep(k);
                    let ok = match dir {
                        Direction::Ingress => c.entity_matches(source, peer, None, pkt),
                        Direction::Egress => c.entity_matches(destination, peer, Some(peer), pkt),
                    };
                    if ok {
                        b.set(k);
                    }
                }
                b
            }
        }
    }
}

/// A K8s rule's port list against the packet, named ports resolving on `dst`.
fn k8s_ports_ok(ports: &[crate::ir::K8sPortIr], pkt: &Packet, dst: Peer<'_>) -> bool {
    ports.is_empty()
        || ports.iter().any(|pm| {
            pm.protocol.number() == pkt.protocol && pm.port.as_ref().is_none_or(|m| port_matches(m, pkt, dst))
        })
}

#[cfg(test)]
mod tests {
    use super::Bits;

    #[test]
    fn bits_full_and_ones() {
        for n in [0, 1, 63, 64, 65, 130] {
            let b = Bits::full(n);
            assert_eq!(b.ones().collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
        }
        let mut b = Bits::new(130);
        b.set(0);
        b.set(64);
        b.set(129);
        assert!(b.get(64) && !b.get(63));
        b.clear(64);
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![0, 129]);
    }
}
