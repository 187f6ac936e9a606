//! Which identities a rule can match: its peer part, indexed.
//!
//! A rule's match is a conjunction of a part that looks at the local endpoint, a part that looks at the peer and
//! a part that looks at the packet (protocol, ports, ICMP). The index answers the peer part as a **superset**:
//! an identity left out is one the rule matches for no packet; an identity in the set is still checked by the
//! engine's own rule match during the walk, so over-approximation costs time, never exactness.
//!
//! * CIDR peers (`ipBlock`, `nets`): the identities whose addresses the CIDR contains (precomputed per CIDR
//!   from each identity's containing prefixes; `except` and `notNets` only remove, so they are ignored here).
//! * Selector peers: the pod identities whose labels the selector matches (candidates narrowed by a required
//!   `key == value` / `key in {...}` conjunct through a label index, then matched exactly), plus the identities
//!   inside the networks of every network set the selector selects.
//! * Anything else (no peer constraint, only negative constraints): every identity (`All`).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use porin_policy::eval::Direction;
use porin_policy::ir::{Cluster, Entity, IrPolicy, IrRule, K8sPeer, NsScope, RuleMatch};
use porin_selector::{Expr, Selector};

use crate::identities::{Rep, Table};

#[derive(Debug)]
pub(crate) enum Cands {
    All,
    /// Sorted, without duplicates.
    Some(Vec<u32>),
}

pub(crate) struct Index<'a> {
    c: &'a Cluster,
    t: &'a Table,
    labels: HashMap<(&'a str, &'a str), Vec<u32>>,
    selectors: HashMap<Selector, Rc<Vec<u32>>>,
    /// Rule version → candidates: carried over from the previous compile while the identity table and the
    /// global inputs are unchanged (a version names one rule's exact content and place).
    rules: crate::IdMap<(Arc<Cands>, u64)>,
    /// This compile's mark: entries not marked with it are dropped at the end.
    now: u64,
}

/// Label pairs one of which every match must carry, if the selector requires any.
fn required(e: &Expr) -> Option<Vec<(&str, &str)>> {
    match e {
        Expr::Eq(k, v) => Some(vec![(k.as_str(), v.as_str())]),
        Expr::In(k, vs) => Some(vs.iter().map(|v| (k.as_str(), v.as_str())).collect()),
        Expr::And(parts) => parts.iter().find_map(required),
        _ => None,
    }
}

impl<'a> Index<'a> {
    pub(crate) fn new(c: &'a Cluster, t: &'a Table, carried: crate::IdMap<(Arc<Cands>, u64)>, now: u64) -> Index<'a> {
        let mut labels: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
        for &k in &t.pods {
            if let Rep::Endpoint(ei) = t.info[k as usize].rep {
                for (key, v) in &c.endpoints[ei].labels {
                    labels.entry((key.as_str(), v.as_str())).or_default().push(k);
                }
            }
        }
        Index { c, t, labels, selectors: HashMap::new(), rules: carried, now }
    }

    fn endpoint(&self, k: u32) -> Option<&'a porin_policy::ir::Endpoint> {
        match self.t.info[k as usize].rep {
            Rep::Endpoint(ei) => Some(&self.c.endpoints[ei]),
            Rep::Ip(_) => None,
        }
    }

    /// Pod identities whose labels `sel` matches (any namespace).
    fn selected_pods(&mut self, sel: &Selector) -> Rc<Vec<u32>> {
        if let Some(v) = self.selectors.get(sel) {
            return v.clone();
        }
        let mut pool: Vec<u32> = match required(sel.expr()) {
            Some(pairs) => pairs.iter().flat_map(|p| self.labels.get(p).into_iter().flatten().copied()).collect(),
            None => self.t.pods.clone(),
        };
        pool.sort_unstable();
        pool.dedup();
        pool.retain(|&k| self.endpoint(k).is_some_and(|e| sel.matches(&e.labels)));
        let v = Rc::new(pool);
        self.selectors.insert(sel.clone(), v.clone());
        v
    }

    fn in_cidr(&self, n: &ipnet::IpNet, out: &mut Vec<u32>) {
        if let Some(v) = self.t.by_cidr.get(n) {
            out.extend(v.iter().copied());
        }
    }

    /// The peer part of a Calico entity.
    fn entity(&mut self, e: &Entity, out: &mut Vec<u32>) -> bool {
        if !e.nets.is_empty() {
            for n in &e.nets {
                self.in_cidr(n, out);
            }
            return true;
        }
        let Some(scope) = &e.scope else { return false };
        let has_sa = !e.sa_names.is_empty() || e.sa_selector.is_some();
        if !has_sa && e.selector.is_none() && e.not_selector.is_some() {
            return false;
        }
        let all = Selector::all();
        let sel = e.selector.as_ref().unwrap_or(&all);
        let pods = self.selected_pods(sel);
        let c = self.c;
        out.extend(pods.iter().copied().filter(|&k| self.endpoint(k).is_some_and(|ep| c.namespace_in_scope(scope, &ep.namespace))));
        if !has_sa {
            for set in &c.net_sets {
                let ns_ok = match (scope, &set.namespace) {
                    (NsScope::Same(ns), Some(sns)) => ns == sns,
                    (NsScope::Selected(s), Some(sns)) => c.namespace_matches(s, sns),
                    (NsScope::Same(_) | NsScope::Selected(_), None) => false,
                    (NsScope::Any, _) => true,
                    (NsScope::Global, ns) => ns.is_none(),
                };
                if ns_ok && sel.matches(&set.labels) {
                    for n in &set.nets {
                        self.in_cidr(n, out);
                    }
                }
            }
        }
        true
    }

    fn compute(&mut self, p: &IrPolicy, rule: &IrRule, dir: Direction) -> Cands {
        let mut out = Vec::new();
        match &rule.matcher {
            RuleMatch::K8s { peers, .. } => {
                if peers.is_empty() {
                    return Cands::All;
                }
                for peer in peers {
                    match peer {
                        K8sPeer::IpBlock { cidr, .. } => self.in_cidr(cidr, &mut out),
                        K8sPeer::Pods { pods, namespaces } => {
                            let sel = self.selected_pods(pods);
                            let c = self.c;
                            out.extend(sel.iter().copied().filter(|&k| {
                                self.endpoint(k).is_some_and(|e| match namespaces {
                                    None => Some(&e.namespace) == p.namespace.as_ref(),
                                    Some(s) => c.namespace_matches(s, &e.namespace),
                                })
                            }));
                        }
                    }
                }
            }
            RuleMatch::Calico { source, destination, .. } => {
                let peer = match dir {
                    Direction::Ingress => source,
                    Direction::Egress => destination,
                };
                if !self.entity(peer, &mut out) {
                    return Cands::All;
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Cands::Some(out)
    }

    /// The identities rule `ri` of policy `pi` (in `dir`), of content version `version`, can match.
    pub(crate) fn rule(&mut self, pi: usize, dir: Direction, ri: usize, version: u64) -> Arc<Cands> {
        if let Some(e) = self.rules.get_mut(&version) {
            e.1 = self.now;
            return e.0.clone();
        }
        let c = self.c;
        let p = &c.policies[pi];
        let rule = match dir {
            Direction::Ingress => &p.ingress[ri],
            Direction::Egress => &p.egress[ri],
        };
        let v = Arc::new(self.compute(p, rule, dir));
        self.rules.insert(version, (v.clone(), self.now));
        v
    }

    /// The candidates this compile used, to carry over.
    pub(crate) fn into_used(self) -> crate::IdMap<(Arc<Cands>, u64)> {
        let now = self.now;
        let mut rules = self.rules;
        rules.retain(|_, e| e.1 == now);
        rules
    }
}
