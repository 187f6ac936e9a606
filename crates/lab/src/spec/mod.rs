//! What a lab should look like ([`LabSpec`]) and the pure plan derived from it ([`LabPlan`]).
//!
//! Planning does no I/O: it validates the spec, allocates pod addresses and chooses every name
//! (namespaces, interfaces, MAC addresses). The kernel side ([`crate::lab`]) only executes a plan.
//!
//! Naming (all names start with `porin`, interface names are at most 15 bytes):
//!
//! | object | name |
//! |---|---|
//! | node netns *i* | `porin-<lab>-n<i>` |
//! | pod netns *k* (k = index in `LabSpec::pods`) | `porin-<lab>-p<k>` |
//! | underlay netns (only when `nodes > 1`) | `porin-<lab>-u` |
//! | pod end of the pod veth (in the pod netns) | `porin-eth0` |
//! | host end of the pod veth (in the node netns) | `porinp<k>` |
//! | node uplink (in the node netns) / its peer on the underlay bridge | `porinu0` / `porinn<i>` |
//! | underlay bridge | `porinbr0` |
//! | external host netns *k* (k = index in `LabSpec::hosts`) | `porin-<lab>-h<k>` |
//! | host's end / node's end of an external host's link | `porin-eth0` / `porinh<k>` |
//!
//! Addresses: node *i* owns the pod CIDRs `10.244.i.0/24` and `fd00:244:i::/64`; pods without an
//! explicit address get the next free host number starting at `.2`. Node *i*'s underlay address is
//! `10.242.0.(i+1)/24` (`fd00:242::(i+1)/64`). Pods reach the node through the link-local gateway
//! `169.254.1.1` / `fe80::1` answered by the host veth's MAC `ee:ee:ee:ee:ee:ee` (Calico's model).
//!
//! External hosts ([`HostSpec`]) stand for the internet: each is a namespace with an address outside every pod
//! CIDR (default `203.0.113.(10+k)`, `2001:db8:203::(10+k)`; documentation ranges, never routed anywhere but
//! inside the lab), linked to one node (its *gateway node*) the way a pod is, but with no WorkloadEndpoint: the
//! node routes to it as north-south traffic would leave the cluster, and every other node routes to it through
//! the gateway node's underlay address. No agent attaches to its link, so the only policy its traffic meets is
//! the pods' own.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Proto {
    #[serde(alias = "tcp")]
    Tcp,
    #[serde(alias = "udp")]
    Udp,
    #[serde(alias = "sctp")]
    Sctp,
}

impl Proto {
    /// All protocols, in matrix order.
    pub const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Sctp];

    /// Upper-case name as used in JSON (`TCP`, `UDP`, `SCTP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = LabError;
    /// Case-insensitive `tcp`, `udp` or `sctp`.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(LabError::spec("protocol", format!("{s:?} is not TCP, UDP or SCTP"))),
        }
    }
}

/// Parse `80/tcp` (protocol defaults to TCP when omitted: `80`).
pub fn parse_port(s: &str) -> Result<(u16, Proto)> {
    let (port, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto.parse()?),
        None => (s, Proto::Tcp),
    };
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| LabError::spec("port", format!("{s:?}: not a port number")))?;
    if port == 0 {
        return Err(LabError::spec("port", format!("{s:?}: port 0")));
    }
    Ok((port, proto))
}

/// Format a port list as `80/tcp,53/udp` (the inverse of [`parse_ports`]).
pub fn format_ports(ports: &[(u16, Proto)]) -> String {
    ports
        .iter()
        .map(|(p, proto)| format!("{p}/{}", proto.as_str().to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parse a comma-separated port list `80/tcp,53/udp,9/sctp` (empty string = no ports).
pub fn parse_ports(s: &str) -> Result<Vec<(u16, Proto)>> {
    s.split(',').filter(|p| !p.trim().is_empty()).map(parse_port).collect()
}

/// One pod (workload) of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodSpec {
    /// Kubernetes-style namespace (only a label here; all pods share the routed network).
    pub namespace: String,
    /// Pod name, unique within its namespace.
    pub name: String,
    /// Index of the node the pod runs on, `0..nodes`.
    pub node: u32,
    /// Fixed IPv4 address; allocated from the node's pod CIDR when `None`.
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    /// Fixed IPv6 address; allocated from the node's v6 pod CIDR when `None` and [`LabSpec::ipv6`].
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    /// Ports the pod's servers answer on.
    #[serde(default)]
    pub ports: Vec<(u16, Proto)>,
}

impl PodSpec {
    /// A pod with no fixed address and no ports.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, node: u32) -> Self {
        PodSpec { namespace: namespace.into(), name: name.into(), node, ..Default::default() }
    }

    /// Builder: set the served ports.
    pub fn with_ports(mut self, ports: &[(u16, Proto)]) -> Self {
        self.ports = ports.to_vec();
        self
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// An external ("internet") host of the lab: a namespace outside the cluster, reached through a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostSpec {
    /// Host name: 1–30 characters of `[a-z0-9-]` (no `/`, so it never looks like a pod key).
    pub name: String,
    /// The node routing to it (its gateway), `0..nodes`.
    #[serde(default)]
    pub node: u32,
    /// Fixed IPv4 address, outside every pod CIDR; `203.0.113.(10+k)` when `None`.
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    /// Fixed IPv6 address; `2001:db8:203::(10+k)` when `None` and [`LabSpec::ipv6`].
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    /// Ports its server answers on (the pods' server: TCP banner, UDP echo, SCTP INIT-ACK).
    #[serde(default)]
    pub ports: Vec<(u16, Proto)>,
}

impl HostSpec {
    /// A host behind node 0 with a default address and no ports.
    pub fn new(name: impl Into<String>) -> Self {
        HostSpec { name: name.into(), ..Default::default() }
    }
}

impl FromStr for HostSpec {
    type Err = LabError;
    /// The command-line form: comma-separated `key=value` pairs, `name=` required, `ip=` (IPv4 or IPv6) and
    /// `port=` (`80` or `80/tcp`) repeatable, `node=` optional: `name=c2,ip=203.0.113.10,port=80,port=53/udp`.
    fn from_str(s: &str) -> Result<Self> {
        let mut h = HostSpec::default();
        let mut named = false;
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| LabError::spec("host", format!("{s:?}: {part:?} is not key=value (name, ip, port, node)")))?;
            let v = v.trim();
            match k.trim() {
                "name" => {
                    h.name = v.to_string();
                    named = true;
                }
                "ip" => match v.parse::<IpAddr>() {
                    Ok(IpAddr::V4(a)) if h.ipv4.is_none() => h.ipv4 = Some(a),
                    Ok(IpAddr::V6(a)) if h.ipv6.is_none() => h.ipv6 = Some(a),
                    Ok(_) => return Err(LabError::spec("host", format!("{s:?}: a second address of the same family"))),
                    Err(_) => return Err(LabError::spec("host", format!("{s:?}: {v:?} is not an IP address"))),
                },
                "port" => h.ports.push(parse_port(v)?),
                "node" => {
                    h.node = v
                        .strip_prefix('n')
                        .unwrap_or(v)
                        .parse()
                        .map_err(|_| LabError::spec("host", format!("{s:?}: node {v:?} is not a node index")))?
                }
                other => return Err(LabError::spec("host", format!("{s:?}: unknown key {other:?} (name, ip, port, node)"))),
            }
        }
        if !named {
            return Err(LabError::spec("host", format!("{s:?}: name= is required")));
        }
        Ok(h)
    }
}

/// A lab: `nodes` node namespaces and the pods on them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LabSpec {
    /// Lab id: 1–20 characters of `[a-z0-9-]`, starting with a letter or digit, not ending in `-`.
    pub name: String,
    /// Number of nodes (1–250).
    pub nodes: u32,
    /// The pods.
    pub pods: Vec<PodSpec>,
    /// Also give every pod an IPv6 address (allocated when the pod has none).
    #[serde(default)]
    pub ipv6: bool,
    /// External hosts outside the cluster (the "internet").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostSpec>,
}

impl LabSpec {
    /// An empty lab.
    pub fn new(name: impl Into<String>, nodes: u32) -> Self {
        LabSpec { name: name.into(), nodes, pods: Vec::new(), ipv6: false, hosts: Vec::new() }
    }

    /// Builder: add an external host.
    pub fn host(mut self, host: HostSpec) -> Self {
        self.hosts.push(host);
        self
    }

    /// Builder: add a pod.
    pub fn pod(mut self, pod: PodSpec) -> Self {
        self.pods.push(pod);
        self
    }
}

/// Maximum length of a lab name.
pub const MAX_LAB_NAME: usize = 20;
/// Interface name of the pod end of every pod veth.
pub const POD_IFNAME: &str = "porin-eth0";
/// Node uplink interface (node netns side) in multi-node labs.
pub const NODE_UPLINK_IFNAME: &str = "porinu0";
/// Bridge in the underlay netns.
pub const UNDERLAY_BRIDGE: &str = "porinbr0";
/// MAC address of every host-side pod veth (the pods' gateway).
pub const HOST_VETH_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// IPv4 link-local gateway configured in every pod.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// IPv6 link-local gateway configured in every pod.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// Check a lab name (see [`LabSpec::name`]).
pub fn validate_lab_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LAB_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(LabError::spec(
            "name",
            format!("{name:?}: want 1-{MAX_LAB_NAME} chars of [a-z0-9-], not starting or ending with '-'"),
        ))
    }
}

/// Name of node `i`'s network namespace.
pub fn node_netns(lab: &str, i: u32) -> String {
    format!("porin-{lab}-n{i}")
}

/// Name of pod `k`'s network namespace.
pub fn pod_netns(lab: &str, k: usize) -> String {
    format!("porin-{lab}-p{k}")
}

/// Name of external host `k`'s network namespace.
pub fn host_netns(lab: &str, k: usize) -> String {
    format!("porin-{lab}-h{k}")
}

/// Name of the underlay network namespace.
pub fn underlay_netns(lab: &str) -> String {
    format!("porin-{lab}-u")
}

/// Does the namespace name follow the naming scheme of lab `lab` exactly
/// (`porin-<lab>-u`, `porin-<lab>-n<digits>`, `porin-<lab>-p<digits>`, `porin-<lab>-h<digits>`)?
pub fn is_lab_netns(lab: &str, netns: &str) -> bool {
    parse_lab_netns(netns).is_some_and(|l| l == lab)
}

/// The lab a namespace name belongs to by the naming scheme, if any.
pub fn parse_lab_netns(netns: &str) -> Option<&str> {
    let rest = netns.strip_prefix("porin-")?;
    let (lab, suffix) = rest.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = suffix == "u"
        || suffix.strip_prefix('n').is_some_and(digits)
        || suffix.strip_prefix('p').is_some_and(digits)
        || suffix.strip_prefix('h').is_some_and(digits);
    (ok && validate_lab_name(lab).is_ok()).then_some(lab)
}

mod commands;
mod plan;
#[cfg(test)]
mod tests;

pub use commands::*;
pub use plan::*;
