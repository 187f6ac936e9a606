//! Per-identity verdict functions of one (local endpoint class, direction).
//!
//! The applicable rules are flattened in evaluation order; each rule's candidate identities come from the
//! [`Index`]. An identity's function is computed by a tier walk over **its** candidate rules only (plus the
//! rules that can match any peer), for every protocol that has meaning and every port segment between the
//! boundaries those rules create. An identity with no candidate rule gets the walk in which no rule matches
//! (computed once). A function is reused from the previous compile of the same class and direction when the
//! identity (same key), its candidate rules (same versions, same order) and the tier skeleton are unchanged.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use porin_model::PortMatch;
use porin_model::porin::{Action, TierDefaultAction};
use porin_policy::eval::{Direction, Hit, HitAction, Packet, Peer};
use porin_policy::ir::{Cluster, Endpoint, IrPolicy, IrRule, RuleMatch};

use crate::identities::{Rep, Table};
use crate::index::{Cands, Index};
use crate::{RuleMeta, State};

pub(crate) type Value = (bool, u32);
/// A verdict function over ports: (first, last, verdict) segments.
pub(crate) type Segments = Vec<(u16, u16, Value)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Func {
    /// The verdict of every protocol without its own entries.
    pub other: Value,
    pub protos: Vec<(u8, Segments)>,
    /// Every protocol and port has the verdict `other`.
    pub constant: bool,
}

impl Func {
    pub(crate) fn rule_ids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.other.1).chain(self.protos.iter().flat_map(|(_, s)| s.iter().map(|x| x.2.1)))
    }
}

/// What the previous compile of one (class, direction) computed, for reuse.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirMemo {
    /// Tier skeleton and global generation the functions were computed under.
    pub skeleton: String,
    pub global: u64,
    /// Identity serial → (versions of its candidate rules in order, function, the compile that last used it).
    pub funcs: crate::IdMap<(Vec<u64>, Arc<Func>, u64)>,
    /// The function of identities no rule can match.
    pub empty: Option<Arc<Func>>,
}

/// One applicable rule, flattened.
struct Flat<'a> {
    slot: usize,
    pi: usize,
    ri: usize,
    policy: &'a IrPolicy,
    rule: &'a IrRule,
    version: u64,
}

/// A hit, by position (turned into trace text only when its rule id is new).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HitRef {
    Rule { ti: u32, pi: u32, ri: u32, action: u8 },
    End { ti: u32, last: u32, pass: bool },
}

/// Per-compile context shared by every (class, direction).
pub(crate) struct Ctx<'a> {
    pub c: &'a Cluster,
    pub table: &'a Table,
    pub index: Index<'a>,
    pub protocols: &'a BTreeSet<u8>,
    pub other: u8,
    /// Per policy index, per direction: the versions of its rules.
    pub rule_versions: &'a [[Vec<u64>; 2]],
    /// This compile's number.
    pub now: u64,
    /// Hits → rule id, for this compile.
    pub rule_ids: HashMap<(bool, Vec<HitRef>), u32>,
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

/// Port (or ICMP type/code) boundaries one rule creates for one protocol.
fn rule_boundaries(r: &IrRule, proto: u8, dst: Option<&Endpoint>, b: &mut BTreeSet<u32>) {
    let l4 = porin_model::Protocol::from_number(proto);
    let port_match = |m: &PortMatch, b: &mut BTreeSet<u32>| match m {
        PortMatch::Range(lo, hi) => {
            b.insert(u32::from(*lo));
            b.insert(u32::from(*hi) + 1);
        }
        PortMatch::Named(n) => {
            if let (Some(l4), Some(d)) = (l4, dst)
                && let Some(p) = d.resolve_named_port(n, l4)
            {
                b.insert(u32::from(p));
                b.insert(u32::from(p) + 1);
            }
        }
    };
    match &r.matcher {
        RuleMatch::K8s { ports, .. } => {
            for pm in ports {
                if pm.protocol.number() == proto
                    && let Some(m) = &pm.port
                {
                    port_match(m, b);
                }
            }
        }
        RuleMatch::Calico { icmp, not_icmp, destination, .. } => {
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
            }
        }
    }
}

/// Where a rule can match, for one protocol: a superset (the engine's match decides).
enum Foot {
    Never,
    Any,
    /// Only inside these inclusive ranges of the kernel's value (port, or ICMP `type << 8 | code`).
    Ranges(Vec<(u32, u32)>),
}

fn footprint(r: &IrRule, proto: u8, dst: Option<&Endpoint>) -> Foot {
    let l4 = porin_model::Protocol::from_number(proto);
    let range = |m: &PortMatch| -> Option<(u32, u32)> {
        match m {
            PortMatch::Range(lo, hi) => Some((u32::from(*lo), u32::from(*hi))),
            PortMatch::Named(n) => {
                let p = dst?.resolve_named_port(n, l4?)?;
                Some((u32::from(p), u32::from(p)))
            }
        }
    };
    let ranges = |v: Vec<(u32, u32)>| if v.is_empty() { Foot::Never } else { Foot::Ranges(v) };
    match &r.matcher {
        RuleMatch::K8s { ports, .. } => {
            if ports.is_empty() {
                return Foot::Any;
            }
            let mine: Vec<_> = ports.iter().filter(|pm| pm.protocol.number() == proto).collect();
            if mine.is_empty() {
                return Foot::Never;
            }
            let mut out = Vec::new();
            for pm in mine {
                match &pm.port {
                    None => return Foot::Any,
                    Some(m) => out.extend(range(m)),
                }
            }
            ranges(out)
        }
        RuleMatch::Calico { protocol, not_protocol, icmp, destination, .. } => {
            if protocol.is_some_and(|p| p != proto) || *not_protocol == Some(proto) {
                return Foot::Never;
            }
            match proto {
                1 | 58 => match icmp {
                    Some((Some(t), None)) => Foot::Ranges(vec![(u32::from(*t) << 8, u32::from(*t) << 8 | 255)]),
                    Some((Some(t), Some(c))) => {
                        let v = u32::from(*t) << 8 | u32::from(*c);
                        Foot::Ranges(vec![(v, v)])
                    }
                    _ => Foot::Any,
                },
                6 | 17 | 132 if !destination.ports.is_empty() => ranges(destination.ports.iter().filter_map(range).collect()),
                _ => Foot::Any,
            }
        }
    }
}

/// The functions of one (class, direction): one per identity (index into the table), shared where equal.
pub(crate) struct DirFuncs {
    pub funcs: Vec<Arc<Func>>,
    /// Functions computed (not reused) here.
    pub computed: usize,
    pub walks: u64,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn compile_direction(
    ctx: &mut Ctx<'_>,
    state: &mut State,
    local: &Endpoint,
    dir: Direction,
    applicable: &[(usize, Vec<usize>)],
    skeleton: &str,
    global: u64,
    old: Option<DirMemo>,
) -> (DirFuncs, DirMemo) {
    let c = ctx.c;
    let mut flat: Vec<Flat<'_>> = Vec::new();
    for (slot, (_, list)) in applicable.iter().enumerate() {
        for &pi in list {
            let p = &c.policies[pi];
            let rules = match dir {
                Direction::Ingress => &p.ingress,
                Direction::Egress => &p.egress,
            };
            let versions = &ctx.rule_versions[pi][usize::from(dir == Direction::Egress)];
            for (ri, rule) in rules.iter().enumerate() {
                flat.push(Flat { slot, pi, ri, policy: p, rule, version: versions[ri] });
            }
        }
    }
    // Candidates: (identity, position) for specific rules, positions of rules that can match anyone.
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    let mut anyone: Vec<u32> = Vec::new();
    for (pos, f) in flat.iter().enumerate() {
        match &*ctx.index.rule(f.pi, dir, f.ri, f.version) {
            Cands::All => anyone.push(pos as u32),
            Cands::Some(ids) => pairs.extend(ids.iter().map(|&k| (k, pos as u32))),
        }
    }
    pairs.sort_unstable();
    let old = old.filter(|m| m.skeleton == skeleton && m.global == global).unwrap_or_default();
    // The previous functions are updated in place; those no identity used this time are dropped at the end.
    let mut memo = old;
    memo.skeleton = skeleton.to_string();
    memo.global = global;
    let now = ctx.now;
    let table = ctx.table;
    let n = table.identities.len();
    let mut out = DirFuncs { funcs: Vec::with_capacity(n), computed: 0, walks: 0 };
    let mut walker = Walker { ctx, state, local, dir, applicable, flat: &flat, walks: 0 };
    let empty = match &memo.empty {
        Some(f) => f.clone(),
        None => Arc::new(walker.function(&[], Peer::Ip("0.0.0.0".parse().expect("valid")), false)),
    };
    memo.empty = Some(empty.clone());
    let mut next = 0usize;
    let mut list: Vec<u32> = Vec::new();
    for k in 0..n as u32 {
        let start = next;
        while next < pairs.len() && pairs[next].0 == k {
            next += 1;
        }
        if start == next && anyone.is_empty() {
            out.funcs.push(empty.clone());
            continue;
        }
        // Merge the identity's own candidates with the rules that can match anyone, in evaluation order.
        list.clear();
        list.extend(pairs[start..next].iter().map(|p| p.1));
        list.extend(anyone.iter().copied());
        list.sort_unstable();
        list.dedup();
        let info = &table.info[k as usize];
        let same = |v: &[u64]| v.len() == list.len() && v.iter().zip(&list).all(|(a, &pos)| *a == flat[pos as usize].version);
        if let Some((v, f, used)) = memo.funcs.get_mut(&info.serial)
            && same(v)
        {
            *used = now;
            out.funcs.push(f.clone());
            continue;
        }
        let versions: Vec<u64> = list.iter().map(|&pos| flat[pos as usize].version).collect();
        let peer = match info.rep {
            Rep::Endpoint(ei) => Peer::Endpoint(&c.endpoints[ei]),
            Rep::Ip(ip) => Peer::Ip(ip),
        };
        let (serial, v6) = (info.serial, info.v6);
        let f = Arc::new(walker.function(&list, peer, v6));
        out.computed += 1;
        memo.funcs.insert(serial, (versions, f.clone(), now));
        out.funcs.push(f);
    }
    memo.funcs.retain(|_, e| e.2 == now);
    out.walks = walker.walks;
    (out, memo)
}

struct Walker<'w, 'a> {
    ctx: &'w mut Ctx<'a>,
    state: &'w mut State,
    local: &'w Endpoint,
    dir: Direction,
    applicable: &'w [(usize, Vec<usize>)],
    flat: &'w [Flat<'a>],
    walks: u64,
}

impl Walker<'_, '_> {
    /// The verdict function of one identity whose candidate rules are `list` (positions in `flat`).
    ///
    /// Per protocol, each candidate rule's footprint (the port or ICMP ranges it can match) selects the
    /// segments whose walks consider it, so a segment's walk looks only at the rules that can match there.
    fn function(&mut self, list: &[u32], peer: Peer<'_>, v6: bool) -> Func {
        let dst = match (self.dir, peer) {
            (Direction::Ingress, _) => Some(self.local),
            (Direction::Egress, Peer::Endpoint(e)) => Some(e),
            (Direction::Egress, Peer::Ip(_)) => None,
        };
        let flat = self.flat;
        let only = |p: u8| -> Vec<u32> {
            list.iter().copied().filter(|&pos| !matches!(footprint(flat[pos as usize].rule, p, dst), Foot::Never)).collect()
        };
        let other = self.ctx.other;
        let other = self.eval(&only(other), peer, &packet(other, 0, v6));
        let protocols: Vec<u8> = self.ctx.protocols.iter().copied().collect();
        let mut protos = Vec::with_capacity(protocols.len());
        let mut sub: Vec<u32> = Vec::new();
        for p in protocols {
            let segs: Segments = if has_ports(p) {
                let mut b = BTreeSet::from([0u32]);
                let mut wide: Vec<u32> = Vec::new();
                let mut ranges: Vec<(u32, u32, u32)> = Vec::new();
                for &pos in list {
                    let rule = flat[pos as usize].rule;
                    rule_boundaries(rule, p, dst, &mut b);
                    match footprint(rule, p, dst) {
                        Foot::Never => {}
                        Foot::Any => wide.push(pos),
                        Foot::Ranges(rs) => ranges.extend(rs.into_iter().map(|(lo, hi)| (lo, hi, pos))),
                    }
                }
                b.retain(|v| *v <= 65535);
                let starts: Vec<u32> = b.into_iter().collect();
                // (segment, rule position) for every segment a ranged rule covers.
                let mut narrow: Vec<(u32, u32)> = Vec::new();
                for (lo, hi, pos) in ranges {
                    let first = starts.partition_point(|s| *s <= lo) - 1;
                    let last = starts.partition_point(|s| *s <= hi.min(65535)) - 1;
                    narrow.extend((first..=last).map(|k| (k as u32, pos)));
                }
                narrow.sort_unstable();
                narrow.dedup();
                let mut next = 0;
                let mut segs: Segments = Vec::new();
                for (k, &lo) in starts.iter().enumerate() {
                    let hi = starts.get(k + 1).map(|n| n - 1).unwrap_or(65535);
                    sub.clear();
                    sub.extend(wide.iter().copied());
                    while next < narrow.len() && narrow[next].0 == k as u32 {
                        sub.push(narrow[next].1);
                        next += 1;
                    }
                    sub.sort_unstable();
                    let v = self.eval(&sub, peer, &packet(p, lo as u16, v6));
                    match segs.last_mut() {
                        Some(last) if last.2 == v && u32::from(last.1) + 1 == lo => last.1 = hi as u16,
                        _ => segs.push((lo as u16, hi as u16, v)),
                    }
                }
                segs
            } else {
                vec![(0, 65535, self.eval(&only(p), peer, &packet(p, 0, v6)))]
            };
            protos.push((p, segs));
        }
        let constant = protos.iter().all(|(_, s)| s.len() == 1 && s[0].2 == other);
        Func { other, protos, constant }
    }

    /// The tier walk of [`Cluster::walk`], over the candidate rules only (every other rule cannot match).
    fn eval(&mut self, list: &[u32], peer: Peer<'_>, pkt: &Packet) -> Value {
        self.walks += 1;
        let c = self.ctx.c;
        let mut hits: Vec<HitRef> = Vec::new();
        let mut k = 0;
        let mut allowed = None;
        'tiers: for (slot, (ti, policies)) in self.applicable.iter().enumerate() {
            while k < list.len() && self.flat[list[k] as usize].slot < slot {
                k += 1;
            }
            while k < list.len() && self.flat[list[k] as usize].slot == slot {
                let f = &self.flat[list[k] as usize];
                k += 1;
                if !c.rule_matches_packet(f.rule, f.policy, self.local, self.dir, peer, pkt) {
                    continue;
                }
                hits.push(HitRef::Rule { ti: *ti as u32, pi: f.pi as u32, ri: f.ri as u32, action: f.rule.action as u8 });
                match f.rule.action {
                    Action::Log => {}
                    Action::Allow => {
                        allowed = Some(true);
                        break 'tiers;
                    }
                    Action::Deny => {
                        allowed = Some(false);
                        break 'tiers;
                    }
                    Action::Pass => continue 'tiers,
                }
            }
            let last = *policies.last().expect("applicable tiers are not empty") as u32;
            match c.tiers[*ti].default_action {
                TierDefaultAction::Deny => {
                    hits.push(HitRef::End { ti: *ti as u32, last, pass: false });
                    allowed = Some(false);
                    break 'tiers;
                }
                TierDefaultAction::Pass => hits.push(HitRef::End { ti: *ti as u32, last, pass: true }),
            }
        }
        let allowed = allowed.unwrap_or(c.default_allow);
        let key = (allowed, hits);
        if let Some(&id) = self.ctx.rule_ids.get(&key) {
            return (allowed, id);
        }
        let trace = key.1.iter().map(|h| self.hit(*h).to_string()).collect();
        let id = self.state.rule(RuleMeta { allow: allowed, trace });
        self.ctx.rule_ids.insert(key, id);
        (allowed, id)
    }

    fn hit(&self, h: HitRef) -> Hit {
        let c = self.ctx.c;
        match h {
            HitRef::Rule { ti, pi, ri, action } => {
                let p = &c.policies[pi as usize];
                let action = match action {
                    a if a == Action::Allow as u8 => HitAction::Allow,
                    a if a == Action::Deny as u8 => HitAction::Deny,
                    a if a == Action::Pass as u8 => HitAction::Pass,
                    _ => HitAction::Log,
                };
                Hit { tier: c.tiers[ti as usize].name.clone(), policy: p.id.to_string(), rule: i64::from(ri), action }
            }
            HitRef::End { ti, last, pass } => Hit {
                tier: c.tiers[ti as usize].name.clone(),
                policy: c.policies[last as usize].id.to_string(),
                rule: -1,
                action: if pass { HitAction::EndOfTierPass } else { HitAction::EndOfTierDeny },
            },
        }
    }
}
