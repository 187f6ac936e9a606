//! The reference evaluator: walks tiers, policies and rules for one connection exactly as the semantics say,
//! recording every hit. Small and direct on purpose; the fast paths (matrix, kernel maps) are checked against it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use porin_model::porin::{Action, TierDefaultAction};
use porin_model::{PortMatch, Protocol};
use serde::Serialize;

use crate::ir::{Cluster, Endpoint, Entity, IrPolicy, IrRule, IrTier, K8sPeer, NsScope, RuleMatch};

/// Policy direction, from the point of view of the endpoint being protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// One end of a connection: a known endpoint, or a bare IP (outside the cluster, or in a network set).
#[derive(Debug, Clone, Copy)]
pub enum Peer<'a> {
    Endpoint(&'a Endpoint),
    Ip(IpAddr),
}

impl Peer<'_> {
    fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Peer::Endpoint(e) => Some(e),
            Peer::Ip(_) => None,
        }
    }
    fn ip(&self, v6: bool) -> Option<IpAddr> {
        match self {
            Peer::Endpoint(e) => e.ip_of_family(v6),
            Peer::Ip(ip) => Some(*ip),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Peer::Endpoint(e) => e.id(),
            Peer::Ip(ip) => ip.to_string(),
        }
    }
}

/// What is being sent: protocol number, destination port (TCP/UDP/SCTP), ICMP type/code, address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    pub protocol: u8,
    pub port: Option<u16>,
    pub icmp: Option<(u8, Option<u8>)>,
    pub v6: bool,
}

impl Packet {
    pub fn l4(protocol: Protocol, port: u16) -> Packet {
        Packet { protocol: protocol.number(), port: Some(port), icmp: None, v6: false }
    }
}

/// What a hit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HitAction {
    Allow,
    Deny,
    Pass,
    Log,
    /// No rule of the tier's selecting policies matched: the tier's defaultAction Deny.
    EndOfTierDeny,
    /// No rule matched in a tier whose defaultAction is Pass.
    EndOfTierPass,
}

impl HitAction {
    pub fn word(self) -> &'static str {
        match self {
            HitAction::Allow => "allow",
            HitAction::Deny => "deny",
            HitAction::Pass => "pass",
            HitAction::Log => "log",
            HitAction::EndOfTierDeny => "deny",
            HitAction::EndOfTierPass => "pass",
        }
    }
}

/// One step of an explanation: `tier|policy|rule|action`; rule is -1 for an end-of-tier default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub tier: String,
    pub policy: String,
    pub rule: i64,
    pub action: HitAction,
}

impl std::fmt::Display for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}|{}|{}|{}", self.tier, self.policy, self.rule, self.action.word())
    }
}

/// The verdict for one direction at one endpoint, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideVerdict {
    pub direction: Direction,
    pub endpoint: String,
    pub allowed: bool,
    pub hits: Vec<Hit>,
    pub reason: String,
}

/// Both directions of a connection, for one policy set (enforced or pending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub allowed: bool,
    /// The source's egress policy (absent when the source is not a known endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<SideVerdict>,
    /// The destination's ingress policy (absent when the destination is not a known endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<SideVerdict>,
}

/// The full answer to "may src talk to dst": what is enforced, and what the staged policies would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub allowed: bool,
    pub enforced: Evaluation,
    pub pending: Evaluation,
}

/// Which policy set to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    Enforced,
    Pending,
}

impl Cluster {
    pub(crate) fn set(&self, v: Variant) -> (&[IrPolicy], &[IrTier]) {
        match v {
            Variant::Enforced => (&self.policies, &self.tiers),
            Variant::Pending => (&self.pending_policies, &self.pending_tiers),
        }
    }

    /// The verdict for a connection from `src` to `dst`.
    pub fn verdict(&self, src: Peer<'_>, dst: Peer<'_>, pkt: &Packet) -> Verdict {
        let enforced = self.evaluate(Variant::Enforced, src, dst, pkt);
        let pending = if self.has_staged { self.evaluate(Variant::Pending, src, dst, pkt) } else { enforced.clone() };
        Verdict { allowed: enforced.allowed, enforced, pending }
    }

    pub fn evaluate(&self, v: Variant, src: Peer<'_>, dst: Peer<'_>, pkt: &Packet) -> Evaluation {
        let egress = src.endpoint().map(|e| self.side(v, e, Direction::Egress, dst, pkt));
        let ingress = dst.endpoint().map(|e| self.side(v, e, Direction::Ingress, src, pkt));
        let allowed = egress.as_ref().is_none_or(|s| s.allowed) && ingress.as_ref().is_none_or(|s| s.allowed);
        Evaluation { allowed, egress, ingress }
    }

    /// Does policy `p` select endpoint `e`?
    pub fn policy_selects(&self, p: &IrPolicy, e: &Endpoint) -> bool {
        if let Some(ns) = &p.namespace
            && &e.namespace != ns {
                return false;
            }
        if !p.selector.matches(&e.labels) {
            return false;
        }
        if let Some(nsel) = &p.namespace_selector
            && !self.namespace_matches(nsel, &e.namespace) {
                return false;
            }
        if let Some(sa) = &p.sa_selector
            && !sa.matches(&e.sa_labels) {
                return false;
            }
        true
    }

    /// The policies that apply to `local` for `dir`, grouped by tier in evaluation order: (tier index, policy
    /// indices in order). Tiers with no selecting policy are left out (they are skipped entirely).
    pub fn applicable(&self, v: Variant, local: &Endpoint, dir: Direction) -> Vec<(usize, Vec<usize>)> {
        let policies = self.set(v).0;
        let index = match v {
            Variant::Enforced => &self.selector_index.enforced,
            Variant::Pending => &self.selector_index.pending,
        };
        if index.usable(policies) {
            let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
            for (ti, pi) in index.candidates(local) {
                let p = &policies[pi];
                let typed = match dir {
                    Direction::Ingress => p.ingress_type,
                    Direction::Egress => p.egress_type,
                };
                if !typed || !self.policy_selects(p, local) {
                    continue;
                }
                match out.last_mut() {
                    Some((t, list)) if *t == ti => list.push(pi),
                    _ => out.push((ti, vec![pi])),
                }
            }
            return out;
        }
        self.applicable_linear(v, local, dir)
    }

    /// [`Cluster::applicable`] by testing every policy (the reference the selector index must equal).
    pub fn applicable_linear(&self, v: Variant, local: &Endpoint, dir: Direction) -> Vec<(usize, Vec<usize>)> {
        let (policies, tiers) = self.set(v);
        let mut out = Vec::new();
        for (ti, tier) in tiers.iter().enumerate() {
            let list: Vec<usize> = tier
                .policies
                .iter()
                .copied()
                .filter(|&pi| {
                    let p = &policies[pi];
                    (match dir {
                        Direction::Ingress => p.ingress_type,
                        Direction::Egress => p.egress_type,
                    }) && self.policy_selects(p, local)
                })
                .collect();
            if !list.is_empty() {
                out.push((ti, list));
            }
        }
        out
    }

    /// Evaluate one direction at `local`, with `peer` on the other end.
    pub fn side(&self, v: Variant, local: &Endpoint, dir: Direction, peer: Peer<'_>, pkt: &Packet) -> SideVerdict {
        let applicable = self.applicable(v, local, dir);
        self.walk(v, &applicable, local, dir, peer, pkt, true)
    }

    /// The tier walk over a precomputed [`Cluster::applicable`] list.
    // The hot loop of every fast path: its inputs are all distinct values the callers already hold.
    #[allow(clippy::too_many_arguments)]
    pub fn walk(
        &self,
        v: Variant,
        applicable: &[(usize, Vec<usize>)],
        local: &Endpoint,
        dir: Direction,
        peer: Peer<'_>,
        pkt: &Packet,
        record: bool,
    ) -> SideVerdict {
        let (policies, tiers) = self.set(v);
        let mut hits = Vec::new();
        let verdict = |allowed: bool, hits: Vec<Hit>, reason: String| SideVerdict {
            direction: dir,
            endpoint: local.id(),
            allowed,
            hits,
            reason,
        };
        'tiers: for (ti, list) in applicable {
            let tier = &tiers[*ti];
            for &pi in list {
                let p = &policies[pi];
                let rules = match dir {
                    Direction::Ingress => &p.ingress,
                    Direction::Egress => &p.egress,
                };
                for (ri, rule) in rules.iter().enumerate() {
                    if !self.rule_matches(rule, p, local, dir, peer, pkt) {
                        continue;
                    }
                    let hit = |a| Hit { tier: tier.name.clone(), policy: p.id.to_string(), rule: ri as i64, action: a };
                    match rule.action {
                        Action::Log => {
                            if record {
                                hits.push(hit(HitAction::Log));
                            }
                        }
                        Action::Allow => {
                            if record { hits.push(hit(HitAction::Allow)); }
                            let reason = if !record { String::new() } else { format!("{dir} rule {ri} of {} in tier {} allows it", p.id, tier.name) };
                            return verdict(true, hits, reason);
                        }
                        Action::Deny => {
                            if record { hits.push(hit(HitAction::Deny)); }
                            let reason = if !record { String::new() } else { format!("{dir} rule {ri} of {} in tier {} denies it", p.id, tier.name) };
                            return verdict(false, hits, reason);
                        }
                        Action::Pass => {
                            if record { hits.push(hit(HitAction::Pass)); }
                            continue 'tiers;
                        }
                    }
                }
            }
            let policy = if record { list.last().map(|&i| policies[i].id.to_string()).unwrap_or_default() } else { String::new() };
            match tier.default_action {
                TierDefaultAction::Deny => {
                    if record { hits.push(Hit { tier: tier.name.clone(), policy, rule: -1, action: HitAction::EndOfTierDeny }); }
                    let reason = if !record { String::new() } else { format!(
                        "tier {} has policies selecting {} for {dir} but no rule matched: end-of-tier deny",
                        tier.name,
                        local.id()
                    ) };
                    return verdict(false, hits, reason);
                }
                TierDefaultAction::Pass => {
                    if record { hits.push(Hit { tier: tier.name.clone(), policy, rule: -1, action: HitAction::EndOfTierPass }); }
                }
            }
        }
        let mode = if self.default_allow { "allow" } else { "deny (zero-trust mode)" };
        let reason = if !record {
            String::new()
        } else if applicable.is_empty() {
            format!("no policy selects {} for {dir}: default {mode}", local.id())
        } else {
            format!("every tier applying to {} for {dir} passed: default {mode}", local.id())
        };
        verdict(self.default_allow, hits, reason)
    }

    pub(crate) fn rule_matches(
        &self,
        rule: &IrRule,
        p: &IrPolicy,
        local: &Endpoint,
        dir: Direction,
        peer: Peer<'_>,
        pkt: &Packet,
    ) -> bool {
        let (src, dst) = match dir {
            Direction::Ingress => (peer, Peer::Endpoint(local)),
            Direction::Egress => (Peer::Endpoint(local), peer),
        };
        match &rule.matcher {
            RuleMatch::K8s { peers, ports } => {
                let ports_ok = ports.is_empty()
                    || ports.iter().any(|pm| {
                        pm.protocol.number() == pkt.protocol
                            && match &pm.port {
                                None => true,
                                Some(m) => port_matches(m, pkt, dst),
                            }
                    });
                if !ports_ok {
                    return false;
                }
                peers.is_empty()
                    || peers.iter().any(|k| match k {
                        K8sPeer::Pods { pods, namespaces } => match peer.endpoint() {
                            None => false,
                            Some(e) => {
                                let ns_ok = match namespaces {
                                    None => Some(&e.namespace) == p.namespace.as_ref(),
                                    Some(s) => self.namespace_matches(s, &e.namespace),
                                };
                                ns_ok && pods.matches(&e.labels)
                            }
                        },
                        K8sPeer::IpBlock { cidr, except } => match peer.ip(pkt.v6) {
                            None => false,
                            Some(ip) => cidr.contains(&ip) && !except.iter().any(|x| x.contains(&ip)),
                        },
                    })
            }
            RuleMatch::Calico { ip_version, protocol, not_protocol, icmp, not_icmp, source, destination } => {
                if let Some(v) = ip_version
                    && (*v == 6) != pkt.v6 {
                        return false;
                    }
                if protocol.is_some_and(|p| p != pkt.protocol) || not_protocol.is_some_and(|p| p == pkt.protocol) {
                    return false;
                }
                if let Some(m) = icmp
                    && !icmp_matches(*m, pkt) {
                        return false;
                    }
                if let Some(m) = not_icmp
                    && icmp_matches(*m, pkt) {
                        return false;
                    }
                self.entity_matches(source, src, None, pkt) && self.entity_matches(destination, dst, Some(dst), pkt)
            }
        }
    }

    /// Calico entity-rule match for one side. `port_side` is Some(dst) for the destination side, whose ports
    /// are checked against the packet's destination port (named ports resolve on `dst`).
    pub(crate) fn entity_matches(&self, e: &Entity, side: Peer<'_>, port_side: Option<Peer<'_>>, pkt: &Packet) -> bool {
        let ip = side.ip(pkt.v6);
        if !e.nets.is_empty() && !ip.is_some_and(|ip| e.nets.iter().any(|n| n.contains(&ip))) {
            return false;
        }
        if ip.is_some_and(|ip| e.not_nets.iter().any(|n| n.contains(&ip))) {
            return false;
        }
        // Calico builds one positive selector per entity rule from the namespace scope, the service-account
        // match and `selector` (libcalico-go updateprocessors/rules.go, getEndpointSelector: a namespaced policy
        // scopes it to its namespace as soon as selector, notSelector or serviceAccounts is used; a
        // namespaceSelector always scopes it). When there is a positive selector, felix folds `notSelector`
        // into it, `(positive) && !(notSelector)`, evaluated per endpoint or network set (felix
        // calc/rule_scanner.go, combineMatchesIfPossible); only without one is `notSelector` a separate IP-set
        // exclusion, which then also excludes IPs of non-matching objects that a matching network set holds.
        // A named port is an IP set of the endpoints that match the positive selector and have the port (felix
        // calc/rule_scanner.go, namedPortsToIPSets, for ports and notPorts alike): it resolves only on an
        // endpoint that matches by itself, not on one whose IP a matching network set holds.
        let mut named_ok = true;
        if let Some(scope) = &e.scope {
            let has_sa = !e.sa_names.is_empty() || e.sa_selector.is_some();
            let positive = e.selector.is_some() || has_sa || !matches!(scope, NsScope::Any);
            if positive {
                let (any, endpoint_itself) = self.positive_match(e, scope, has_sa, side, pkt.v6);
                if !any {
                    return false;
                }
                named_ok = endpoint_itself;
            } else if let Some(ns) = &e.not_selector
                && self.ip_set_contains(ns, side, pkt.v6)
            {
                return false;
            }
        }
        if let Some(dst) = port_side {
            let hit = |m: &PortMatch| (named_ok || !matches!(m, PortMatch::Named(_))) && port_matches(m, pkt, dst);
            if !e.ports.is_empty() && !e.ports.iter().any(hit) {
                return false;
            }
            if e.not_ports.iter().any(hit) {
                return false;
            }
        }
        true
    }

    /// Is an object (endpoint or network set) of namespace `ns` (None: a global network set) inside `scope`?
    /// Calico's scope terms (libcalico-go updateprocessors/rules.go, getEndpointSelector): the policy's own
    /// namespace is `projectcalico.org/namespace == 'ns'`; a namespaceSelector is evaluated on the object's
    /// namespace labels (`pcns.` prefixed, which a global network set does not carry), with `all()` read as
    /// `has(projectcalico.org/namespace)` and `global()` as `!has(projectcalico.org/namespace)`.
    fn object_in_scope(&self, scope: &NsScope, ns: Option<&str>) -> bool {
        match scope {
            NsScope::Same(own) => ns == Some(own.as_str()),
            NsScope::Selected(s) => self.ns_selector_matches(s, ns),
            NsScope::Any => true,
            NsScope::Global => ns.is_none(),
        }
    }

    /// A rule's namespaceSelector on the namespace labels of an object in `ns` (None: no namespace).
    fn ns_selector_matches(&self, s: &porin_selector::Selector, ns: Option<&str>) -> bool {
        use porin_selector::Expr;
        match s.expr() {
            Expr::All => return ns.is_some(),
            Expr::Global => return ns.is_none(),
            _ => {}
        }
        let mut special = false;
        s.expr().visit(&mut |x| special |= matches!(x, Expr::All | Expr::Global));
        if !special {
            return match ns {
                Some(ns) => self.namespace_matches(s, ns),
                None => s.matches(&BTreeMap::<String, String>::new()),
            };
        }
        let labels = match ns {
            Some(ns) => self.namespace_labels(ns),
            None => BTreeMap::new(),
        };
        fn eval(e: &Expr, labels: &BTreeMap<String, String>, namespaced: bool) -> bool {
            match e {
                Expr::All => namespaced,
                Expr::Global => !namespaced,
                Expr::Not(x) => !eval(x, labels, namespaced),
                Expr::And(xs) => xs.iter().all(|x| eval(x, labels, namespaced)),
                Expr::Or(xs) => xs.iter().any(|x| eval(x, labels, namespaced)),
                leaf => leaf.matches(labels),
            }
        }
        eval(s.expr(), &labels, ns.is_some())
    }

    /// Calico's positive selector `(scope) && (serviceAccounts) && (selector) && !(notSelector)`, per object:
    /// this side's endpoint, or a network set holding its IP. Returns (some object matches, the endpoint itself
    /// matches).
    fn positive_match(&self, e: &Entity, scope: &NsScope, has_sa: bool, side: Peer<'_>, v6: bool) -> (bool, bool) {
        let labels_ok = |labels: &dyn porin_selector::Labels| {
            e.selector.as_ref().is_none_or(|s| s.matches(labels))
                && !e.not_selector.as_ref().is_some_and(|s| s.matches(labels))
        };
        if let Some(ep) = side.endpoint() {
            let sa_ok = (e.sa_names.is_empty() || e.sa_names.contains(&ep.service_account))
                && e.sa_selector.as_ref().is_none_or(|s| s.matches(&ep.sa_labels));
            if sa_ok && self.object_in_scope(scope, Some(&ep.namespace)) && labels_ok(&ep.labels) {
                return (true, true);
            }
        }
        // Network sets have no service account.
        if has_sa {
            return (false, false);
        }
        let Some(ip) = side.ip(v6) else { return (false, false) };
        let by_set = self.net_sets.iter().any(|set| {
            set.nets.iter().any(|n| n.contains(&ip))
                && self.object_in_scope(scope, set.namespace.as_deref())
                && labels_ok(&set.selector_labels())
        });
        (by_set, false)
    }

    /// Is this side's IP in the IP set of `sel` over every endpoint and network set (no namespace scope)?
    fn ip_set_contains(&self, sel: &porin_selector::Selector, side: Peer<'_>, v6: bool) -> bool {
        if side.endpoint().is_some_and(|ep| sel.matches(&ep.labels)) {
            return true;
        }
        let Some(ip) = side.ip(v6) else { return false };
        self.net_sets.iter().any(|set| set.nets.iter().any(|n| n.contains(&ip)) && sel.matches(&set.selector_labels()))
    }
}

pub(crate) fn icmp_matches(m: (Option<u8>, Option<u8>), pkt: &Packet) -> bool {
    if pkt.protocol != 1 && pkt.protocol != 58 {
        return false;
    }
    match (m, pkt.icmp) {
        ((None, _), _) => true,
        ((Some(_), _), None) => false,
        ((Some(t), None), Some((pt, _))) => t == pt,
        ((Some(t), Some(c)), Some((pt, pc))) => t == pt && pc == Some(c),
    }
}

pub(crate) fn port_matches(m: &PortMatch, pkt: &Packet, dst: Peer<'_>) -> bool {
    let Some(port) = pkt.port else { return false };
    match m {
        PortMatch::Range(lo, hi) => (*lo..=*hi).contains(&port),
        PortMatch::Named(name) => {
            let Some(proto) = Protocol::from_number(pkt.protocol) else { return false };
            dst.endpoint().and_then(|e| e.resolve_named_port(name, proto)) == Some(port)
        }
    }
}

/// The labels a service-account selector sees for a service account with no ServiceAccount object (only its
/// name). An endpoint's own view, with the object's labels, is [`Endpoint::sa_labels`].
pub fn sa_labels(sa: &str) -> BTreeMap<String, String> {
    crate::ir::sa_labels(sa, &BTreeMap::new())
}
