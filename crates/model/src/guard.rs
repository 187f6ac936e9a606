//! `ReachabilityGuard` (`porin.io/v1`, cluster-scoped, short name `guard`): an invariant every change must
//! keep. The API refuses a write that would break one (422), and `porin validate` reports a violated guard as
//! an error. Storing one never changes enforcement.
//!
//! ```yaml
//! apiVersion: porin.io/v1
//! kind: ReachabilityGuard
//! metadata: {name: pci-only-checkout}
//! spec:
//!   from: {namespaceSelector: "name != 'pci'", selector: "app != 'checkout'"}   # either may be omitted: all()
//!   to: {selector: "pci == 'true'"}
//!   ports: [9000]          # optional: default every port a pod or policy names, plus one no rule names
//!   protocol: TCP          # default TCP
//!   expect: Deny           # Deny: nothing matching `from` reaches `to`; Allow: every pair stays reachable
//! ```
//!
//! A side is pods (`selector` over pod labels, `namespaceSelector` over namespace labels) or `{cidr}` (every
//! address in it).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::conntest::Expect;
use crate::Protocol;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReachabilityGuardSpec {
    #[serde(default)]
    pub from: GuardPeer,
    #[serde(default)]
    pub to: GuardPeer,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<i64>,
    /// TCP (default), UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Required (checked by [`check`]); an Option only so that a missing spec is reported, not defaulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

/// One side of a guard: pods by selector and namespace selector, or a CIDR.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

/// A side, parsed.
#[derive(Debug, Clone)]
pub enum GuardSide {
    Pods { selector: porin_selector::Selector, namespace_selector: porin_selector::Selector },
    Net(IpNet),
}

impl GuardPeer {
    pub fn resolve(&self) -> Result<GuardSide, String> {
        if let Some(c) = &self.cidr {
            if self.selector.is_some() || self.namespace_selector.is_some() {
                return Err("cidr excludes selector and namespaceSelector".into());
            }
            return crate::parse_cidr(c).map(GuardSide::Net).map_err(|m| format!("cidr {c:?}: {m}"));
        }
        let parse = |field: &str, s: &Option<String>| {
            porin_selector::Selector::parse(s.as_deref().unwrap_or("all()"))
                .map_err(|e| format!("{field} {:?}: {e}", s.as_deref().unwrap_or("")))
        };
        Ok(GuardSide::Pods {
            selector: parse("selector", &self.selector)?,
            namespace_selector: parse("namespaceSelector", &self.namespace_selector)?,
        })
    }
}

impl ReachabilityGuardSpec {
    /// The protocol (TCP when absent); None for anything but TCP, UDP or SCTP.
    pub fn protocol(&self) -> Option<Protocol> {
        match self.protocol.as_deref() {
            None => Some(Protocol::Tcp),
            Some(s) => Protocol::from_name(s),
        }
    }
    /// The ports as given (validated to 1-65535).
    pub fn port_list(&self) -> Vec<u16> {
        self.ports.iter().filter_map(|p| u16::try_from(*p).ok()).filter(|p| *p >= 1).collect()
    }
}

/// Per-document checks: every problem as (field path, message).
pub fn check(s: &ReachabilityGuardSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if s.expect.is_none() {
        out.push(("spec.expect".into(), "missing: Deny (nothing in from reaches to) or Allow (every pair stays reachable)".into()));
    }
    for (field, p) in [("spec.from", &s.from), ("spec.to", &s.to)] {
        if let Err(m) = p.resolve() {
            out.push((field.to_string(), m));
        }
    }
    if s.protocol().is_none() {
        out.push((
            "spec.protocol".into(),
            format!("{:?}: expected TCP, UDP or SCTP", s.protocol.as_deref().unwrap_or("")),
        ));
    }
    for (i, p) in s.ports.iter().enumerate() {
        if !(1..=65535).contains(p) {
            out.push((format!("spec.ports[{i}]"), format!("{p} is not a port (1-65535)")));
        }
    }
    if matches!((&s.from.cidr, &s.to.cidr), (Some(_), Some(_))) {
        out.push(("spec.to.cidr".into(), "a guard between two CIDRs checks nothing: one side must be pods".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_parse_and_bad_ones_are_named() {
        let g = |v: serde_json::Value| serde_json::from_value::<ReachabilityGuardSpec>(v).unwrap();
        let ok = g(serde_json::json!({"from": {"namespaceSelector": "name != 'pci'"}, "to": {"selector": "pci == 'true'"}, "expect": "Deny"}));
        assert!(check(&ok).is_empty());
        assert_eq!(ok.protocol(), Some(Protocol::Tcp));
        let bad = g(serde_json::json!({"from": {"selector": "app =="}, "to": {"cidr": "10.0.0.0/33", "selector": "all()"},
            "ports": [0, 80], "protocol": "ICMP", "expect": "Allow"}));
        let paths: Vec<String> = check(&bad).into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["spec.from", "spec.to", "spec.protocol", "spec.ports[0]"]);
        assert!(serde_json::from_value::<ReachabilityGuardSpec>(serde_json::json!({"from": {"selectr": "a"}, "to": {}, "expect": "Deny"})).is_err());
    }
}
