//! `ConnectivityTest` (`porin.io/v1`, cluster-scoped): connectivity assertions as code, checked by `porin test`
//! against manifests or a live agent's model. Storing one never changes enforcement.
//!
//! ```yaml
//! apiVersion: porin.io/v1
//! kind: ConnectivityTest
//! metadata: {name: shop}
//! spec:
//!   cases:
//!     - {from: shop/frontend, to: shop/cart, port: 9000, expect: Allow}          # short form
//!     - name: nothing reaches payment but checkout
//!       from: {namespace: shop, selector: app != "checkout"}                     # every matching pod
//!       to: shop/payment
//!       port: 9000
//!       expect: Deny
//!       expectPending: Deny                                                      # with staged policies applied
//!     - {from: {globalNetworkSet: partners}, to: 10.10.0.10, port: 8080, expect: Deny}
//! ```
//!
//! A peer is `NAMESPACE/POD`, an IP address or CIDR (every address in it), `{namespace, selector}` (every pod
//! the Calico-syntax selector matches, in that namespace or, without `namespace`, in all), or a network set by
//! name: `{networkSet: NAMESPACE/NAME}`, `{globalNetworkSet: NAME}` (every address of its nets).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectivityTestSpec {
    #[serde(default)]
    pub cases: Vec<TestCase>,
}

/// Allow or Deny: what a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expect {
    Allow,
    Deny,
}

impl Expect {
    pub fn of(allowed: bool) -> Expect {
        if allowed { Expect::Allow } else { Expect::Deny }
    }
    pub fn allowed(self) -> bool {
        self == Expect::Allow
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.allowed() { "Allow" } else { "Deny" })
    }
}

/// One assertion: from, to, port/protocol, and the expected enforced (and optionally pending) verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestCase {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub from: PeerSpec,
    pub to: PeerSpec,
    /// Destination port; required for TCP, UDP and SCTP, absent for ICMP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// TCP (default), UDP, SCTP, ICMP, ICMPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub expect: Expect,
    /// The verdict expected with the staged policies applied (as `porin trace` shows under PENDING).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_pending: Option<Expect>,
}

impl TestCase {
    /// The IP protocol number (TCP when absent), or None for an unknown name.
    pub fn protocol_number(&self) -> Option<u8> {
        match self.protocol.as_deref() {
            None => Some(6),
            Some(s) => match s.to_ascii_uppercase().as_str() {
                "TCP" => Some(6),
                "UDP" => Some(17),
                "SCTP" => Some(132),
                "ICMP" => Some(1),
                "ICMPV6" => Some(58),
                _ => None,
            },
        }
    }
}

/// A peer as written: a string (`NS/POD`, IP, CIDR) or an object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PeerSpec {
    Text(String),
    Object(PeerObject),
}

/// By hand rather than `untagged`, so a misspelt field is reported as such ("unknown field `selectr`, expected
/// one of ...") instead of "did not match any variant".
impl<'de> Deserialize<'de> for PeerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PeerSpec, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(PeerSpec::Text(s)),
            v @ serde_json::Value::Object(_) => {
                serde_json::from_value(v).map(PeerSpec::Object).map_err(D::Error::custom)
            }
            _ => Err(D::Error::custom(
                "expected NAMESPACE/POD, an IP address or CIDR, {namespace, selector}, {networkSet} or {globalNetworkSet}",
            )),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `NAMESPACE/NAME` of a NetworkSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_network_set: Option<String>,
}

/// A peer, resolved from its written form (names are not looked up here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRef {
    Pod {
        namespace: String,
        name: String,
    },
    /// An address (a host prefix) or a CIDR.
    Net(IpNet),
    /// Every pod the selector matches, in `namespace` or in all namespaces.
    Selector {
        namespace: Option<String>,
        selector: String,
    },
    NetworkSet {
        namespace: String,
        name: String,
    },
    GlobalNetworkSet(String),
}

impl PeerSpec {
    pub fn resolve(&self) -> Result<PeerRef, String> {
        match self {
            PeerSpec::Text(s) => {
                if let Ok(ip) = s.parse::<std::net::IpAddr>() {
                    return Ok(PeerRef::Net(IpNet::from(ip)));
                }
                if s.contains(':') || s.chars().next().is_some_and(|c| c.is_ascii_digit()) && s.contains('.') {
                    return crate::parse_cidr(s).map(PeerRef::Net);
                }
                match s.split_once('/') {
                    Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                        Ok(PeerRef::Pod { namespace: ns.into(), name: name.into() })
                    }
                    _ => Err(format!("{s:?}: expected NAMESPACE/POD, an IP address or a CIDR")),
                }
            }
            PeerSpec::Object(o) => match (&o.selector, &o.network_set, &o.global_network_set) {
                (Some(sel), None, None) => {
                    porin_selector::Selector::parse(sel).map_err(|e| format!("selector {sel:?}: {e}"))?;
                    Ok(PeerRef::Selector { namespace: o.namespace.clone(), selector: sel.clone() })
                }
                (None, Some(ns), None) if o.namespace.is_none() => match ns.split_once('/') {
                    Some((n, name)) if !n.is_empty() && !name.is_empty() => {
                        Ok(PeerRef::NetworkSet { namespace: n.into(), name: name.into() })
                    }
                    _ => Err(format!("networkSet {ns:?}: expected NAMESPACE/NAME")),
                },
                (None, None, Some(name)) if o.namespace.is_none() && !name.is_empty() => {
                    Ok(PeerRef::GlobalNetworkSet(name.clone()))
                }
                _ => Err("expected exactly one of {namespace, selector}, {networkSet: NAMESPACE/NAME} or \
                          {globalNetworkSet: NAME}"
                    .into()),
            },
        }
    }
}

/// Per-document checks: every problem as (field path, message).
pub fn check(s: &ConnectivityTestSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if s.cases.is_empty() {
        out.push(("spec.cases".to_string(), "missing: a ConnectivityTest needs at least one case".to_string()));
    }
    for (i, c) in s.cases.iter().enumerate() {
        let base = format!("spec.cases[{i}]");
        for (field, p) in [("from", &c.from), ("to", &c.to)] {
            if let Err(m) = p.resolve() {
                out.push((format!("{base}.{field}"), m));
            }
        }
        match c.protocol_number() {
            None => out.push((
                format!("{base}.protocol"),
                format!("{:?}: expected TCP, UDP, SCTP, ICMP or ICMPv6", c.protocol.as_deref().unwrap_or("")),
            )),
            Some(6 | 17 | 132) => match c.port {
                None => out.push((format!("{base}.port"), "missing: required for TCP, UDP and SCTP".into())),
                Some(p) if !(1..=65535).contains(&p) => {
                    out.push((format!("{base}.port"), format!("{p} is not a port (1-65535)")))
                }
                Some(_) => {}
            },
            Some(_) => {
                if c.port.is_some() {
                    out.push((format!("{base}.port"), "only applies to TCP, UDP and SCTP".into()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_resolve_from_every_form() {
        let t = |s: &str| PeerSpec::Text(s.into()).resolve();
        assert_eq!(t("shop/cart"), Ok(PeerRef::Pod { namespace: "shop".into(), name: "cart".into() }));
        assert_eq!(t("10.0.0.1"), Ok(PeerRef::Net("10.0.0.1/32".parse().unwrap())));
        assert_eq!(t("10.0.0.0/8"), Ok(PeerRef::Net("10.0.0.0/8".parse().unwrap())));
        assert_eq!(t("fd00::/64"), Ok(PeerRef::Net("fd00::/64".parse().unwrap())));
        assert!(t("cart").is_err());
        assert!(t("10.0.0.0/33").is_err());
        let o = |o: PeerObject| PeerSpec::Object(o).resolve();
        assert!(o(PeerObject::default()).is_err());
        assert!(o(PeerObject { selector: Some("app ==".into()), ..Default::default() }).is_err());
        assert!(
            o(PeerObject { selector: Some("all()".into()), network_set: Some("a/b".into()), ..Default::default() })
                .is_err()
        );
        assert_eq!(
            o(PeerObject { network_set: Some("ops/partners".into()), ..Default::default() }),
            Ok(PeerRef::NetworkSet { namespace: "ops".into(), name: "partners".into() })
        );
    }
}
