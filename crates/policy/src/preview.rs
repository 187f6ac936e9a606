//! The impact of a change on observed traffic: every observed connection evaluated before and after, and the
//! ones whose verdict flips, grouped by source, destination, protocol and port with flow counts and the
//! deciding rule on each side of the change. Allowed → denied first: that is the change that breaks traffic.
//! Pure; the observations come from [`crate::recommend::Observation`].
//!
//! A connection between two pods is usually observed twice (at the source's egress and the destination's
//! ingress); it counts once: from the egress record when the source is a pod, otherwise from the ingress one.

use std::net::IpAddr;

use serde::Serialize;

use crate::eval::{Evaluation, HitAction, Packet, Peer, Variant};
use crate::ir::Cluster;
use crate::recommend::{EvalKey, FxMap, ObservationSet, ObservedAt, ObservedPeer, Observation, Pods, Shape};
use porin_model::Protocol;

/// One side of the comparison: a cluster and which of its policy sets (enforced, or with staged applied).
#[derive(Clone, Copy)]
pub struct Side<'c> {
    pub cluster: &'c Cluster,
    pub variant: Variant,
}

/// A group of observed connections whose verdict the change flips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flip {
    pub from: String,
    pub to: String,
    pub protocol: String,
    pub port: u16,
    pub allowed_before: bool,
    pub allowed_after: bool,
    /// Connections observed (flows started) and records read for this group.
    pub flows: u64,
    pub records: u64,
    /// What decided, `tier|policy|rule|action` per side, or the default that applied.
    pub before: String,
    pub after: String,
}

impl Flip {
    pub fn breaks(&self) -> bool {
        self.allowed_before && !self.allowed_after
    }
}

fn name(p: &ObservedPeer) -> String {
    match p {
        ObservedPeer::Pod { namespace, pod } => format!("{namespace}/{pod}"),
        ObservedPeer::NetworkSet { namespace: Some(ns), name, .. } => format!("netset:{ns}/{name}"),
        ObservedPeer::NetworkSet { namespace: None, name, .. } => format!("netset:{name}"),
        ObservedPeer::Ip { ip } => ip.to_string(),
    }
}

/// The deciding step(s): for a denied connection the side that denied, for an allowed one both sides.
pub fn deciding(e: &Evaluation) -> String {
    let sides = [&e.egress, &e.ingress];
    let parts: Vec<String> = sides
        .into_iter()
        .flatten()
        .filter(|s| e.allowed || !s.allowed)
        .map(|s| match s.hits.iter().rev().find(|h| h.action != HitAction::Log) {
            Some(h) => format!("{} {h}", s.direction),
            None => format!("{} {}", s.direction, if s.allowed { "default allow" } else { "default deny" }),
        })
        .collect();
    parts.join("; ")
}

fn evaluate(s: Side<'_>, pods: &Pods<'_>, set: &ObservationSet, sh: &Shape) -> Option<Evaluation> {
    let (src, dst) = (pods.peer(set.peer(sh.src))?, pods.peer(set.peer(sh.dst))?);
    let v6 = matches!(src, Peer::Ip(IpAddr::V6(_))) || matches!(dst, Peer::Ip(IpAddr::V6(_)));
    Some(s.cluster.evaluate(s.variant, src, dst, &Packet { v6, ..Packet::l4(sh.protocol, sh.port) }))
}

/// Every group of observed connections whose verdict differs between `before` and `after`: allowed → denied
/// first, then by flows (most first), then by name. Connections one side cannot place (a pod that is gone)
/// are left out.
pub fn preview(before: Side<'_>, after: Side<'_>, observed: &[Observation]) -> Vec<Flip> {
    preview_set(before, after, &ObservationSet::of(observed))
}

/// [`preview`] over observations already merged by shape.
pub fn preview_set(before: Side<'_>, after: Side<'_>, set: &ObservationSet) -> Vec<Flip> {
    let (pods_before, pods_after) = (Pods::new(before.cluster), Pods::new(after.cluster));
    let (res_before, res_after) = (pods_before.resolve(set), pods_after.resolve(set));
    // Evaluations are shared by connections whose ends are of one class in both clusters (see `Pods::keys`):
    // (allowed, deciding step) before and after.
    type Key = (EvalKey, EvalKey, EvalKey, EvalKey, u8, u16);
    type Evals = Option<((bool, String), (bool, String))>;
    let mut memo: FxMap<Key, Evals> = FxMap::default();
    // Groups by (source name, destination name, protocol, port); a name is computed once per peer (peers of one
    // network set seen at several addresses share one name).
    let mut names: Vec<String> = Vec::new();
    let mut name_ids: FxMap<String, u32> = FxMap::default();
    let name_of: Vec<u32> = set
        .peers()
        .iter()
        .map(|p| {
            let n = name(p);
            let next = names.len() as u32;
            let id = *name_ids.entry(n.clone()).or_insert(next);
            if id == next {
                names.push(n);
            }
            id
        })
        .collect();
    let mut groups: FxMap<(u32, u32, Protocol, u16), Flip> = FxMap::default();
    for sh in set.shapes() {
        let src_pod = matches!(set.peer(sh.src), ObservedPeer::Pod { .. });
        let primary = match sh.at {
            ObservedAt::Egress => src_pod,
            ObservedAt::Ingress => !src_pod,
        };
        if !primary {
            continue;
        }
        let ((bs, bd), (a_s, ad)) = (pods_before.keys(&res_before, sh.src, sh.dst), pods_after.keys(&res_after, sh.src, sh.dst));
        let key = (bs, bd, a_s, ad, sh.protocol.number(), sh.port);
        let evals = memo.entry(key).or_insert_with(|| {
            let (b, a) = (evaluate(before, &pods_before, set, sh)?, evaluate(after, &pods_after, set, sh)?);
            Some(((b.allowed, if b.allowed != a.allowed { deciding(&b) } else { String::new() }), (a.allowed, if b.allowed != a.allowed { deciding(&a) } else { String::new() })))
        });
        let Some(((b_allowed, b_why), (a_allowed, a_why))) = evals else { continue };
        if b_allowed == a_allowed {
            continue;
        }
        let (nf, nt) = (name_of[sh.src as usize], name_of[sh.dst as usize]);
        let g = groups.entry((nf, nt, sh.protocol, sh.port)).or_insert_with(|| Flip {
            from: names[nf as usize].clone(),
            to: names[nt as usize].clone(),
            protocol: sh.protocol.name().to_string(),
            port: sh.port,
            allowed_before: *b_allowed,
            allowed_after: *a_allowed,
            flows: 0,
            records: 0,
            before: b_why.clone(),
            after: a_why.clone(),
        });
        g.flows += sh.flows;
        g.records += sh.records;
    }
    let mut out: Vec<Flip> = groups.into_values().collect();
    out.sort_by(|x, y| {
        (!x.breaks(), std::cmp::Reverse(x.flows), &x.from, &x.to, &x.protocol, x.port).cmp(&(
            !y.breaks(),
            std::cmp::Reverse(y.flows),
            &y.from,
            &y.to,
            &y.protocol,
            y.port,
        ))
    });
    out
}
