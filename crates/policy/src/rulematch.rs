//! The engine's rule match, exposed for compilers that index rules by peer and port and walk only the rules
//! that can match (`porin_calc`). Additive: it calls the evaluator's own matcher, so the two cannot disagree.

use crate::eval::{Direction, Packet, Peer};
use crate::ir::{Cluster, Endpoint, IrPolicy, IrRule, NsScope};

impl Cluster {
    /// Does `rule` of policy `p`, walked at `local` for `dir`, match a packet from/to `peer`? Exactly the test
    /// [`Cluster::walk`] applies to each rule.
    pub fn rule_matches_packet(
        &self,
        rule: &IrRule,
        p: &IrPolicy,
        local: &Endpoint,
        dir: Direction,
        peer: Peer<'_>,
        pkt: &Packet,
    ) -> bool {
        self.rule_matches(rule, p, local, dir, peer, pkt)
    }

    /// Is an endpoint of namespace `ns` inside an entity's namespace scope?
    pub fn namespace_in_scope(&self, scope: &NsScope, ns: &str) -> bool {
        match scope {
            NsScope::Same(own) => ns == own,
            NsScope::Selected(s) => self.namespace_matches(s, ns),
            NsScope::Any => true,
            NsScope::Global => false,
        }
    }
}
