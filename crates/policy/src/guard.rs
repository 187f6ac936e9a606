//! Guardrails: check `ReachabilityGuard`s against a built cluster. Pure.
//!
//! Pod-to-pod pairs are read from the class-based [`Cluster::matrix`] (one matrix per protocol and port, shared
//! by every guard); pairs with a CIDR side run the reference evaluator for a few representative addresses of
//! the CIDR (its first address and the first address of every more specific CIDR any rule or network set
//! names, and the address just past it). The witness's deciding trace always comes from the reference
//! evaluator.
//!
//! Without `ports`, a guard is checked on every port a pod declares or a rule names for its protocol, plus one
//! port that nothing names (what a rule without ports, or a default, decides).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use porin_model::guard::{Expect, GuardSide, ReachabilityGuardSpec};
use porin_model::{PortMatch, Protocol};
use serde::Serialize;

use crate::eval::{Direction, Evaluation, Hit, HitAction, Packet, Peer, SideVerdict, Variant};
use crate::ir::{Cluster, RuleMatch, all_cidrs};
use crate::matrix::Classes;

/// A guard to check: its name and spec (validated: see `porin_model::guard::check`).
#[derive(Debug, Clone, Copy)]
pub struct Guard<'a> {
    pub name: &'a str,
    pub spec: &'a ReachabilityGuardSpec,
}

/// What decided one side of the witness connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub direction: Direction,
    pub endpoint: String,
    /// The rule (or end-of-tier default) that decided; None when no policy applies to the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit: Option<Hit>,
    pub reason: String,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.hit {
            Some(h) => write!(f, "{} at {}: {h}", self.direction, self.endpoint),
            None => write!(f, "{} at {}: {}", self.direction, self.endpoint, self.reason),
        }
    }
}

/// The first violation of one guard: a witness pair and what opened (Deny guard) or closed (Allow guard) it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub guard: String,
    pub expect: Expect,
    pub from: String,
    pub to: String,
    pub protocol: String,
    pub port: u16,
    pub deciding: Vec<Decision>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.expect == Expect::Deny { "is allowed" } else { "is denied" };
        write!(
            f,
            "ReachabilityGuard {:?} (expect {}) is violated: {} -> {} {}/{} {what} by ",
            self.guard, self.expect, self.from, self.to, self.protocol, self.port
        )?;
        let parts: Vec<String> = self.deciding.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

/// Check every guard against the enforced policy set; the first violation of each violated guard, in guard
/// order. Guards whose spec does not parse are skipped (validation reports them).
pub fn check(c: &Cluster, guards: &[Guard<'_>]) -> Vec<Violation> {
    // Endpoint classes once for every guard and port; each guard's pairs are evaluated for its own classes only.
    let mut classes: Option<Classes> = None;
    let mut out = Vec::new();
    for g in guards {
        if let Some(v) = check_one(c, g, &mut classes) {
            out.push(v);
        }
    }
    out
}

enum Side {
    Pods(Vec<usize>),
    Addrs(Vec<IpAddr>),
}

fn side(c: &Cluster, s: &GuardSide) -> Side {
    match s {
        GuardSide::Pods { selector, namespace_selector } => Side::Pods(
            c.endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| selector.matches(&e.labels) && c.namespace_matches(namespace_selector, &e.namespace))
                .map(|(i, _)| i)
                .collect(),
        ),
        GuardSide::Net(n) => Side::Addrs(representatives(c, n)),
    }
}

/// Addresses of `n` that between them meet every boundary a rule or network set draws inside it.
fn representatives(c: &Cluster, n: &IpNet) -> Vec<IpAddr> {
    let mut out = BTreeSet::from([n.network()]);
    for m in all_cidrs(c) {
        if n.contains(&m.network()) {
            out.insert(m.network());
        }
        if let Some(next) = next_addr(m.broadcast())
            && n.contains(&next)
        {
            out.insert(next);
        }
    }
    out.into_iter().collect()
}

fn next_addr(a: IpAddr) -> Option<IpAddr> {
    match a {
        IpAddr::V4(a) => u32::from(a).checked_add(1).map(|x| IpAddr::V4(x.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(1).map(|x| IpAddr::V6(x.into())),
    }
}

/// The ports to check for `proto`: declared container ports, every port bound a rule names, and one port that
/// no rule or pod names.
pub fn ports_to_check(c: &Cluster, proto: Protocol) -> Vec<u16> {
    let mut ports: BTreeSet<u16> = c.declared_ports().into_iter().filter(|(p, _)| *p == proto).map(|(_, n)| n).collect();
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    let mut add = |m: &PortMatch, ports: &mut BTreeSet<u16>| {
        if let PortMatch::Range(lo, hi) = m {
            ports.insert(*lo);
            ports.insert(*hi);
            ranges.push((*lo, *hi));
        }
    };
    for p in &c.policies {
        for r in p.ingress.iter().chain(&p.egress) {
            match &r.matcher {
                RuleMatch::K8s { ports: list, .. } => {
                    for pm in list.iter().filter(|pm| pm.protocol == proto) {
                        if let Some(m) = &pm.port {
                            add(m, &mut ports);
                        }
                    }
                }
                RuleMatch::Calico { source, destination, .. } => {
                    for m in source.ports.iter().chain(&source.not_ports).chain(&destination.ports).chain(&destination.not_ports) {
                        add(m, &mut ports);
                    }
                }
            }
        }
    }
    if let Some(free) = (1..=u16::MAX).find(|p| !ports.contains(p) && !ranges.iter().any(|(lo, hi)| lo <= p && p <= hi)) {
        ports.insert(free);
    }
    ports.into_iter().collect()
}

fn check_one(c: &Cluster, g: &Guard<'_>, classes: &mut Option<Classes>) -> Option<Violation> {
    let s = g.spec;
    let (Ok(from), Ok(to), Some(proto), Some(expect)) = (s.from.resolve(), s.to.resolve(), s.protocol(), s.expect)
    else {
        return None;
    };
    let (from, to) = (side(c, &from), side(c, &to));
    let want_allowed = expect == Expect::Allow;
    let ports = if s.ports.is_empty() { ports_to_check(c, proto) } else { s.port_list() };
    for port in ports {
        let pkt = Packet::l4(proto, port);
        let witness = match (&from, &to) {
            (Side::Pods(f), Side::Pods(t)) => {
                let cls = classes.get_or_insert_with(|| c.classes_v4());
                c.pair_witness(Variant::Enforced, proto, port, cls, f, t, want_allowed)
                    .map(|(i, j)| (Peer::Endpoint(&c.endpoints[i]), Peer::Endpoint(&c.endpoints[j])))
            }
            (Side::Pods(f), Side::Addrs(t)) => f.iter().find_map(|&i| {
                t.iter().find_map(|&a| {
                    let (src, dst) = (Peer::Endpoint(&c.endpoints[i]), Peer::Ip(a));
                    (c.evaluate(Variant::Enforced, src, dst, &packet(pkt, a)).allowed != want_allowed).then_some((src, dst))
                })
            }),
            (Side::Addrs(f), Side::Pods(t)) => t.iter().find_map(|&j| {
                f.iter().find_map(|&a| {
                    let (src, dst) = (Peer::Ip(a), Peer::Endpoint(&c.endpoints[j]));
                    (c.evaluate(Variant::Enforced, src, dst, &packet(pkt, a)).allowed != want_allowed).then_some((src, dst))
                })
            }),
            // Rejected by validation: nothing to check.
            (Side::Addrs(_), Side::Addrs(_)) => None,
        };
        if let Some((src, dst)) = witness {
            let v6 = matches!(src, Peer::Ip(IpAddr::V6(_))) || matches!(dst, Peer::Ip(IpAddr::V6(_)));
            let e = c.evaluate(Variant::Enforced, src, dst, &Packet { v6, ..pkt });
            return Some(Violation {
                guard: g.name.to_string(),
                expect,
                from: src.describe(),
                to: dst.describe(),
                protocol: proto.name().to_string(),
                port,
                deciding: deciding(&e, want_allowed),
            });
        }
    }
    None
}

fn packet(pkt: Packet, a: IpAddr) -> Packet {
    Packet { v6: a.is_ipv6(), ..pkt }
}

/// The sides that made the connection allowed (a Deny guard: both sides' deciding steps) or denied (an Allow
/// guard: the denying side's).
fn deciding(e: &Evaluation, want_allowed: bool) -> Vec<Decision> {
    let sides = [&e.egress, &e.ingress];
    sides
        .into_iter()
        .flatten()
        .filter(|s| want_allowed || s.allowed)
        .filter(|s| !want_allowed || !s.allowed)
        .map(decision)
        .collect()
}

fn decision(s: &SideVerdict) -> Decision {
    let hit = s.hits.iter().rev().find(|h| h.action != HitAction::Log).cloned();
    Decision { direction: s.direction, endpoint: s.endpoint.clone(), hit, reason: s.reason.clone() }
}
