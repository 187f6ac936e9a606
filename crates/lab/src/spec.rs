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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
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

/// The planned shape of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    pub index: u32,
    pub netns: String,
    pub pod_cidr_v4: Ipv4Net,
    pub pod_cidr_v6: Ipv6Net,
    /// Uplink to the underlay bridge (multi-node labs only).
    pub uplink: Option<UplinkPlan>,
}

/// A node's connection to the underlay bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkPlan {
    /// Interface in the node netns (`porinu0`).
    pub ifname: String,
    /// Peer interface in the underlay netns, enslaved to the bridge.
    pub peer_ifname: String,
    pub mac: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

/// The planned shape of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlan {
    /// Index in [`LabSpec::pods`].
    pub index: usize,
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub node: u32,
    pub netns: String,
    pub node_netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub ports: Vec<(u16, Proto)>,
    /// Host end of the veth, in the node netns.
    pub host_ifname: String,
    /// Pod end of the veth, in the pod netns (`porin-eth0`).
    pub pod_ifname: String,
    /// MAC of the pod end.
    pub pod_mac: String,
}

/// The planned shape of one external host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    /// Index in [`LabSpec::hosts`].
    pub index: usize,
    pub name: String,
    /// Its gateway node.
    pub node: u32,
    pub netns: String,
    pub node_netns: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub ports: Vec<(u16, Proto)>,
    /// The node's end of the link (`porinh<k>`, in the node netns).
    pub node_ifname: String,
    /// The host's end (`porin-eth0`, in the host netns).
    pub host_ifname: String,
    pub host_mac: String,
}

/// The whole planned lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPlan {
    pub name: String,
    pub ipv6: bool,
    pub underlay_netns: Option<String>,
    pub nodes: Vec<NodePlan>,
    pub pods: Vec<PodPlan>,
    #[serde(default)]
    pub hosts: Vec<HostPlan>,
}

impl LabPlan {
    /// Every namespace of the lab, in creation order (underlay, nodes, pods, external hosts).
    pub fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = self.underlay_netns.iter().cloned().collect();
        out.extend(self.nodes.iter().map(|n| n.netns.clone()));
        out.extend(self.pods.iter().map(|p| p.netns.clone()));
        out.extend(self.hosts.iter().map(|h| h.netns.clone()));
        out
    }
}

fn underlay_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 242, 0, (i + 1) as u8)
}

fn underlay_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x242, 0, 0, 0, 0, 0, (i + 1) as u16)
}

fn bad_addr(ip: IpAddr) -> Option<&'static str> {
    let underlay4: Ipv4Net = "10.242.0.0/24".parse().expect("static net");
    let underlay6: Ipv6Net = "fd00:242::/64".parse().expect("static net");
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() || v4.is_loopback() || v4.is_multicast() || v4.is_broadcast() {
                Some("not a unicast address")
            } else if v4.is_link_local() {
                Some("link-local addresses are reserved for the pod gateway")
            } else if underlay4.contains(&v4) {
                Some("10.242.0.0/24 is reserved for the underlay")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() {
                Some("not a unicast address")
            } else if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                Some("link-local addresses are reserved for the pod gateway")
            } else if underlay6.contains(&v6) {
                Some("fd00:242::/64 is reserved for the underlay")
            } else {
                None
            }
        }
    }
}

/// Validate a spec and derive the plan (names, addresses, MACs). Pure.
pub fn plan(spec: &LabSpec) -> Result<LabPlan> {
    validate_lab_name(&spec.name)?;
    if spec.nodes == 0 || spec.nodes > 250 {
        return Err(LabError::spec("nodes", format!("{} not in 1..=250", spec.nodes)));
    }
    let lab = spec.name.as_str();
    let multi = spec.nodes > 1;
    let nodes: Vec<NodePlan> = (0..spec.nodes)
        .map(|i| NodePlan {
            index: i,
            netns: node_netns(lab, i),
            pod_cidr_v4: Ipv4Net::new(Ipv4Addr::new(10, 244, i as u8, 0), 24).expect("prefix 24"),
            pod_cidr_v6: Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x244, i as u16, 0, 0, 0, 0, 0), 64)
                .expect("prefix 64"),
            uplink: multi.then(|| UplinkPlan {
                ifname: NODE_UPLINK_IFNAME.to_string(),
                peer_ifname: format!("porinn{i}"),
                mac: format!("0a:59:00:00:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff),
                ipv4: underlay_v4(i),
                ipv6: underlay_v6(i),
            }),
        })
        .collect();

    // Validate pods and collect fixed addresses first, so allocation skips them.
    let mut keys = BTreeSet::new();
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    for (k, pod) in spec.pods.iter().enumerate() {
        let field = |f: &str| format!("pods[{k}].{f}");
        let label_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        };
        if !label_ok(&pod.namespace) {
            return Err(LabError::spec(field("namespace"), format!("{:?}: want [A-Za-z0-9._-]+", pod.namespace)));
        }
        if !label_ok(&pod.name) {
            return Err(LabError::spec(field("name"), format!("{:?}: want [A-Za-z0-9._-]+", pod.name)));
        }
        if !keys.insert(pod.key()) {
            return Err(LabError::spec(field("name"), format!("duplicate pod {}", pod.key())));
        }
        if pod.node >= spec.nodes {
            return Err(LabError::spec(field("node"), format!("{} but the lab has {} node(s)", pod.node, spec.nodes)));
        }
        let mut seen_ports = BTreeSet::new();
        for (j, &(port, proto)) in pod.ports.iter().enumerate() {
            if port == 0 {
                return Err(LabError::spec(format!("pods[{k}].ports[{j}]"), "port 0"));
            }
            if !seen_ports.insert((port, proto)) {
                return Err(LabError::spec(format!("pods[{k}].ports[{j}]"), format!("duplicate {port}/{proto}")));
            }
        }
        for (f, ip) in [("ipv4", pod.ipv4.map(IpAddr::V4)), ("ipv6", pod.ipv6.map(IpAddr::V6))] {
            if let Some(ip) = ip {
                if let Some(why) = bad_addr(ip) {
                    return Err(LabError::spec(field(f), format!("{ip}: {why}")));
                }
                if !used.insert(ip) {
                    return Err(LabError::spec(field(f), format!("{ip} is used by another pod")));
                }
            }
        }
    }

    // Allocate per node.
    let mut next_host: BTreeMap<u32, u32> = BTreeMap::new();
    let alloc = |next_host: &mut BTreeMap<u32, u32>,
                 used: &BTreeSet<IpAddr>,
                 node: &NodePlan,
                 want_v4: bool|
     -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
        let h = next_host.entry(node.index).or_insert(2);
        loop {
            if *h > 254 {
                return Err(LabError::spec(
                    "pods",
                    format!("node {} has no free address left in {}", node.index, node.pod_cidr_v4),
                ));
            }
            let v4 = Ipv4Addr::from(u32::from(node.pod_cidr_v4.network()) + *h);
            let v6 = Ipv6Addr::from(u128::from(node.pod_cidr_v6.network()) + u128::from(*h));
            *h += 1;
            if (want_v4 && used.contains(&IpAddr::V4(v4))) || used.contains(&IpAddr::V6(v6)) {
                continue;
            }
            return Ok((Some(v4), Some(v6)));
        }
    };

    let mut pods = Vec::with_capacity(spec.pods.len());
    for (k, pod) in spec.pods.iter().enumerate() {
        let node = &nodes[pod.node as usize];
        let need_v4 = pod.ipv4.is_none();
        let need_v6 = pod.ipv6.is_none() && spec.ipv6;
        let (a4, a6) = if need_v4 || need_v6 { alloc(&mut next_host, &used, node, need_v4)? } else { (None, None) };
        let ipv4 = pod.ipv4.or(a4).expect("allocated");
        let ipv6 = if spec.ipv6 || pod.ipv6.is_some() { pod.ipv6.or(a6) } else { None };
        used.insert(IpAddr::V4(ipv4));
        if let Some(v6) = ipv6 {
            used.insert(IpAddr::V6(v6));
        }
        let kb = (k as u32).to_be_bytes();
        pods.push(PodPlan {
            index: k,
            key: pod.key(),
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node: pod.node,
            netns: pod_netns(lab, k),
            node_netns: node.netns.clone(),
            ipv4,
            ipv6,
            ports: pod.ports.clone(),
            host_ifname: format!("porinp{k}"),
            pod_ifname: POD_IFNAME.to_string(),
            pod_mac: format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", kb[0], kb[1], kb[2], kb[3]),
        });
    }

    let hosts = plan_hosts(spec, &nodes, &mut used)?;
    Ok(LabPlan {
        name: spec.name.clone(),
        ipv6: pods.iter().any(|p| p.ipv6.is_some()) || hosts.iter().any(|h| h.ipv6.is_some()),
        underlay_netns: multi.then(|| underlay_netns(lab)),
        nodes,
        pods,
        hosts,
    })
}

/// Validate the external hosts and give them addresses outside every pod CIDR.
fn plan_hosts(spec: &LabSpec, nodes: &[NodePlan], used: &mut BTreeSet<IpAddr>) -> Result<Vec<HostPlan>> {
    // Pod CIDRs of nodes 0..=255 all fall in these: a host there would be mistaken for a pod.
    let pods4: Ipv4Net = "10.244.0.0/16".parse().expect("static net");
    let pods6: Ipv6Net = "fd00:244::/32".parse().expect("static net");
    let mut names = BTreeSet::new();
    let mut hosts = Vec::with_capacity(spec.hosts.len());
    for (k, h) in spec.hosts.iter().enumerate() {
        let field = |f: &str| format!("hosts[{k}].{f}");
        let name_ok = !h.name.is_empty()
            && h.name.len() <= 30
            && h.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(LabError::spec(field("name"), format!("{:?}: want 1-30 chars of [a-z0-9-]", h.name)));
        }
        if !names.insert(h.name.as_str()) {
            return Err(LabError::spec(field("name"), format!("duplicate host {}", h.name)));
        }
        if h.node >= spec.nodes {
            return Err(LabError::spec(field("node"), format!("{} but the lab has {} node(s)", h.node, spec.nodes)));
        }
        let mut seen_ports = BTreeSet::new();
        for (j, &(port, proto)) in h.ports.iter().enumerate() {
            if port == 0 {
                return Err(LabError::spec(format!("hosts[{k}].ports[{j}]"), "port 0"));
            }
            if !seen_ports.insert((port, proto)) {
                return Err(LabError::spec(format!("hosts[{k}].ports[{j}]"), format!("duplicate {port}/{proto}")));
            }
        }
        let n = 10 + k as u32;
        if n > 254 {
            return Err(LabError::spec("hosts", "at most 245 external hosts"));
        }
        let ipv4 = h.ipv4.unwrap_or(Ipv4Addr::new(203, 0, 113, n as u8));
        let ipv6 = h.ipv6.or_else(|| spec.ipv6.then(|| Ipv6Addr::new(0x2001, 0xdb8, 0x203, 0, 0, 0, 0, n as u16)));
        for (f, ip) in [("ipv4", Some(IpAddr::V4(ipv4))), ("ipv6", ipv6.map(IpAddr::V6))] {
            let Some(ip) = ip else { continue };
            if let Some(why) = bad_addr(ip) {
                return Err(LabError::spec(field(f), format!("{ip}: {why}")));
            }
            let in_pods = match ip {
                IpAddr::V4(a) => pods4.contains(&a),
                IpAddr::V6(a) => pods6.contains(&a),
            };
            if in_pods {
                return Err(LabError::spec(field(f), format!("{ip} is inside the pod networks ({pods4}, {pods6}): a host is outside the cluster")));
            }
            if !used.insert(ip) {
                return Err(LabError::spec(field(f), format!("{ip} is used by a pod or another host")));
            }
        }
        let kb = (k as u32).to_be_bytes();
        hosts.push(HostPlan {
            index: k,
            name: h.name.clone(),
            node: h.node,
            netns: host_netns(&spec.name, k),
            node_netns: nodes[h.node as usize].netns.clone(),
            ipv4,
            ipv6,
            ports: h.ports.clone(),
            node_ifname: format!("porinh{k}"),
            host_ifname: POD_IFNAME.to_string(),
            host_mac: format!("0a:5a:{:02x}:{:02x}:{:02x}:{:02x}", kb[0], kb[1], kb[2], kb[3]),
        });
    }
    Ok(hosts)
}

/// One `ip` invocation of a plan: `ip -n <netns> <args...>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpCmd {
    pub netns: String,
    pub args: Vec<String>,
}

fn ip(netns: &str, args: &[&str]) -> IpCmd {
    IpCmd { netns: netns.to_string(), args: args.iter().map(|s| s.to_string()).collect() }
}

/// The `ip` commands that wire up links, addresses, routes and neighbours, in order, after the
/// namespaces exist. Every command runs with `-n <lab netns>`: nothing touches the root netns.
///
/// Commands come grouped by namespace (underlay bridge; each node with its uplink, pod veths,
/// pod routes and routes to the other nodes; the underlay ports; each pod), so consecutive
/// commands of one namespace can run as a single `ip -batch`.
pub fn link_commands(plan: &LabPlan) -> Vec<IpCmd> {
    let mut cmds = Vec::new();
    if let Some(u) = &plan.underlay_netns {
        cmds.push(ip(u, &["link", "add", UNDERLAY_BRIDGE, "type", "bridge"]));
        cmds.push(ip(u, &["link", "set", UNDERLAY_BRIDGE, "up"]));
    }
    for n in &plan.nodes {
        let ns = n.netns.as_str();
        if let (Some(u), Some(up)) = (&plan.underlay_netns, &n.uplink) {
            cmds.push(ip(ns, &["link", "add", &up.ifname, "address", &up.mac, "type", "veth", "peer", "name", &up.peer_ifname, "netns", u]));
            cmds.push(ip(ns, &["link", "set", &up.ifname, "up"]));
            cmds.push(ip(ns, &["addr", "add", &format!("{}/24", up.ipv4), "dev", &up.ifname]));
            if plan.ipv6 {
                cmds.push(ip(ns, &["addr", "add", &format!("{}/64", up.ipv6), "dev", &up.ifname, "nodad"]));
            }
            // Static neighbours and routes to the other nodes' pod CIDRs.
            for o in plan.nodes.iter().filter(|o| o.index != n.index) {
                let other = o.uplink.as_ref().expect("multi-node plan has uplinks");
                let gw4 = other.ipv4.to_string();
                let gw6 = other.ipv6.to_string();
                cmds.push(ip(ns, &["neigh", "replace", &gw4, "lladdr", &other.mac, "dev", &up.ifname, "nud", "permanent"]));
                cmds.push(ip(ns, &["route", "add", &o.pod_cidr_v4.to_string(), "via", &gw4, "dev", &up.ifname]));
                if plan.ipv6 {
                    cmds.push(ip(ns, &["neigh", "replace", &gw6, "lladdr", &other.mac, "dev", &up.ifname, "nud", "permanent"]));
                    cmds.push(ip(ns, &["route", "add", &o.pod_cidr_v6.to_string(), "via", &gw6, "dev", &up.ifname]));
                }
                // External hosts behind the other node: through its underlay address.
                for h in plan.hosts.iter().filter(|h| h.node == o.index) {
                    cmds.push(ip(ns, &["route", "add", &format!("{}/32", h.ipv4), "via", &gw4, "dev", &up.ifname]));
                    if let Some(v6) = h.ipv6 {
                        cmds.push(ip(ns, &["route", "add", &format!("{v6}/128"), "via", &gw6, "dev", &up.ifname]));
                    }
                }
                // Pods with fixed addresses outside their node's CIDR get host routes.
                for p in plan.pods.iter().filter(|p| p.node == o.index) {
                    if !o.pod_cidr_v4.contains(&p.ipv4) {
                        cmds.push(ip(ns, &["route", "add", &format!("{}/32", p.ipv4), "via", &gw4, "dev", &up.ifname]));
                    }
                    if let Some(v6) = p.ipv6.filter(|v6| !o.pod_cidr_v6.contains(v6)) {
                        cmds.push(ip(ns, &["route", "add", &format!("{v6}/128"), "via", &gw6, "dev", &up.ifname]));
                    }
                }
            }
        }
        // Host ends of the pod veths, with a host route and a static neighbour per pod.
        for p in plan.pods.iter().filter(|p| p.node == n.index) {
            let h = p.host_ifname.as_str();
            cmds.push(ip(
                ns,
                &["link", "add", h, "address", HOST_VETH_MAC, "type", "veth", "peer", "name", &p.pod_ifname, "address", &p.pod_mac, "netns", &p.netns],
            ));
            cmds.push(ip(ns, &["link", "set", h, "up"]));
            cmds.push(ip(ns, &["neigh", "replace", &p.ipv4.to_string(), "lladdr", &p.pod_mac, "dev", h, "nud", "permanent"]));
            cmds.push(ip(ns, &["route", "add", &format!("{}/32", p.ipv4), "dev", h, "scope", "link"]));
            if let Some(v6) = p.ipv6 {
                cmds.push(ip(ns, &["neigh", "replace", &v6.to_string(), "lladdr", &p.pod_mac, "dev", h, "nud", "permanent"]));
                cmds.push(ip(ns, &["route", "add", &format!("{v6}/128"), "dev", h]));
            }
        }
        // External hosts behind this node: a link like a pod's, with a host route and a static neighbour.
        for h in plan.hosts.iter().filter(|h| h.node == n.index) {
            let l = h.node_ifname.as_str();
            cmds.push(ip(
                ns,
                &["link", "add", l, "address", HOST_VETH_MAC, "type", "veth", "peer", "name", &h.host_ifname, "address", &h.host_mac, "netns", &h.netns],
            ));
            cmds.push(ip(ns, &["link", "set", l, "up"]));
            cmds.push(ip(ns, &["neigh", "replace", &h.ipv4.to_string(), "lladdr", &h.host_mac, "dev", l, "nud", "permanent"]));
            cmds.push(ip(ns, &["route", "add", &format!("{}/32", h.ipv4), "dev", l, "scope", "link"]));
            if let Some(v6) = h.ipv6 {
                cmds.push(ip(ns, &["neigh", "replace", &v6.to_string(), "lladdr", &h.host_mac, "dev", l, "nud", "permanent"]));
                cmds.push(ip(ns, &["route", "add", &format!("{v6}/128"), "dev", l]));
            }
        }
    }
    if let Some(u) = &plan.underlay_netns {
        for n in &plan.nodes {
            let up = n.uplink.as_ref().expect("multi-node plan has uplinks");
            cmds.push(ip(u, &["link", "set", &up.peer_ifname, "master", UNDERLAY_BRIDGE, "up"]));
        }
    }
    // Pod ends (and external hosts' ends): address, link-local gateway with a static neighbour, default route.
    let ends = plan.pods.iter().map(|p| (&p.netns, &p.pod_ifname, p.ipv4, p.ipv6));
    let ends = ends.chain(plan.hosts.iter().map(|h| (&h.netns, &h.host_ifname, h.ipv4, h.ipv6)));
    for (netns, ifname, ipv4, ipv6) in ends {
        let (pod, e) = (netns.as_str(), ifname.as_str());
        let gw4 = GATEWAY_V4.to_string();
        cmds.push(ip(pod, &["link", "set", e, "up"]));
        cmds.push(ip(pod, &["addr", "add", &format!("{ipv4}/32"), "dev", e]));
        cmds.push(ip(pod, &["neigh", "replace", &gw4, "lladdr", HOST_VETH_MAC, "dev", e, "nud", "permanent"]));
        cmds.push(ip(pod, &["route", "add", &gw4, "dev", e, "scope", "link"]));
        cmds.push(ip(pod, &["route", "add", "default", "via", &gw4, "dev", e]));
        if let Some(v6) = ipv6 {
            let gw6 = GATEWAY_V6.to_string();
            cmds.push(ip(pod, &["addr", "add", &format!("{v6}/128"), "dev", e, "nodad"]));
            cmds.push(ip(pod, &["neigh", "replace", &gw6, "lladdr", HOST_VETH_MAC, "dev", e, "nud", "permanent"]));
            cmds.push(ip(pod, &["route", "add", "::/0", "via", &gw6, "dev", e]));
        }
    }
    cmds
}

/// Split commands into runs of consecutive commands in the same namespace.
pub fn group_by_netns(cmds: &[IpCmd]) -> Vec<(&str, Vec<&IpCmd>)> {
    let mut out: Vec<(&str, Vec<&IpCmd>)> = Vec::new();
    for c in cmds {
        match out.last_mut() {
            Some((ns, group)) if *ns == c.netns => group.push(c),
            _ => out.push((c.netns.as_str(), vec![c])),
        }
    }
    out
}

/// Sysctls to write in a freshly created namespace before any link exists in it.
pub fn early_sysctls() -> Vec<(String, String)> {
    [
        ("net/ipv6/conf/all/accept_dad", "0"),
        ("net/ipv6/conf/default/accept_dad", "0"),
        ("net/ipv6/conf/default/accept_ra", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Sysctls of a node netns once its links exist: forwarding, no reverse-path filter, proxy ARP
/// (with no delay) and proxy NDP on the host-side pod veths.
pub fn node_sysctls(plan: &LabPlan, node: u32) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/default/rp_filter", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if plan.ipv6 {
        out.push(("net/ipv6/conf/all/forwarding".into(), "1".into()));
    }
    for p in plan.pods.iter().filter(|p| p.node == node) {
        let h = &p.host_ifname;
        out.push((format!("net/ipv4/conf/{h}/rp_filter"), "0".into()));
        out.push((format!("net/ipv4/conf/{h}/proxy_arp"), "1".into()));
        out.push((format!("net/ipv4/neigh/{h}/proxy_delay"), "0".into()));
        if plan.ipv6 {
            out.push((format!("net/ipv6/conf/{h}/proxy_ndp"), "1".into()));
        }
    }
    for h in plan.hosts.iter().filter(|h| h.node == node) {
        out.push((format!("net/ipv4/conf/{}/rp_filter", h.node_ifname), "0".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LabSpec {
        LabSpec::new("t1", 2)
            .pod(PodSpec::new("x", "a", 0).with_ports(&[(80, Proto::Tcp)]))
            .pod(PodSpec { ipv4: Some(Ipv4Addr::new(10, 244, 0, 2)), ..PodSpec::new("x", "b", 1) })
            .pod(PodSpec::new("y", "a", 0))
    }

    #[test]
    fn proto_json_and_parse() {
        assert_eq!(serde_json::to_string(&Proto::Sctp).unwrap(), "\"SCTP\"");
        assert_eq!(serde_json::from_str::<Proto>("\"udp\"").unwrap(), Proto::Udp);
        let pod: PodSpec = serde_json::from_str(r#"{"namespace":"x","name":"a","node":0,"ports":[[80,"TCP"],[9,"sctp"]]}"#).unwrap();
        assert_eq!(pod.ports, vec![(80, Proto::Tcp), (9, Proto::Sctp)]);
        assert_eq!("udp".parse::<Proto>().unwrap(), Proto::Udp);
        assert!("icmp".parse::<Proto>().is_err());
        let ports = parse_ports("80/tcp,53/UDP,9/sctp,8080").unwrap();
        assert_eq!(ports, vec![(80, Proto::Tcp), (53, Proto::Udp), (9, Proto::Sctp), (8080, Proto::Tcp)]);
        assert_eq!(parse_ports(&format_ports(&ports)).unwrap(), ports);
        assert_eq!(parse_ports("").unwrap(), vec![]);
        assert!(parse_port("0/tcp").is_err());
        assert!(parse_port("x/tcp").is_err());
    }

    #[test]
    fn names() {
        assert!(validate_lab_name("ab-1").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "abcdefghijklmnopqrstu"] {
            assert!(validate_lab_name(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_lab_netns("porin-a-b-n0"), Some("a-b"));
        assert_eq!(parse_lab_netns("porin-a-p12"), Some("a"));
        assert_eq!(parse_lab_netns("porin-a-u"), Some("a"));
        assert_eq!(parse_lab_netns("porin-a-x1"), None);
        assert_eq!(parse_lab_netns("porin-a-n"), None);
        assert_eq!(parse_lab_netns("other-a-n0"), None);
        assert!(is_lab_netns("a", "porin-a-n3"));
        assert!(!is_lab_netns("a", "porin-a-b-n3"));
    }

    #[test]
    fn plan_allocates_and_skips_fixed() {
        let p = plan(&spec()).unwrap();
        assert_eq!(p.underlay_netns.as_deref(), Some("porin-t1-u"));
        assert_eq!(p.pods[0].ipv4, Ipv4Addr::new(10, 244, 0, 3), "10.244.0.2 is fixed for x/b");
        assert_eq!(p.pods[1].ipv4, Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(p.pods[2].ipv4, Ipv4Addr::new(10, 244, 0, 4));
        assert_eq!(p.pods[1].netns, "porin-t1-p1");
        assert_eq!(p.pods[1].node_netns, "porin-t1-n1");
        assert!(p.pods.iter().all(|p| p.ipv6.is_none()));
        assert_eq!(p.namespaces(), ["porin-t1-u", "porin-t1-n0", "porin-t1-n1", "porin-t1-p0", "porin-t1-p1", "porin-t1-p2"]);
        let mut s = spec();
        s.ipv6 = true;
        let p6 = plan(&s).unwrap();
        assert_eq!(p6.pods[0].ipv6, Some("fd00:244::3".parse().unwrap()));
        assert_eq!(p6.pods[1].ipv6, Some("fd00:244:1::2".parse().unwrap()));
    }

    #[test]
    fn plan_rejects_bad_specs() {
        let mut s = spec();
        s.pods[1].node = 2;
        assert!(matches!(plan(&s), Err(LabError::Spec { field, .. }) if field == "pods[1].node"));
        let mut s = spec();
        s.pods[2].name = "a".into();
        s.pods[2].namespace = "x".into();
        assert!(plan(&s).is_err());
        let mut s = spec();
        s.pods[0].ipv4 = Some(Ipv4Addr::new(10, 244, 0, 2));
        assert!(plan(&s).is_err(), "duplicate fixed address");
        let mut s = spec();
        s.pods[0].ipv4 = Some(Ipv4Addr::new(169, 254, 1, 1));
        assert!(plan(&s).is_err());
        let mut s = spec();
        s.nodes = 0;
        assert!(plan(&s).is_err());
    }

    #[test]
    fn hosts_parse_plan_and_route_from_every_node() {
        let h: HostSpec = "name=c2,ip=203.0.113.9,ip=2001:db8::9,port=443,port=53/udp,node=n1".parse().unwrap();
        assert_eq!(h.name, "c2");
        assert_eq!(h.ipv4, Some(Ipv4Addr::new(203, 0, 113, 9)));
        assert_eq!(h.ipv6, Some("2001:db8::9".parse().unwrap()));
        assert_eq!(h.ports, vec![(443, Proto::Tcp), (53, Proto::Udp)]);
        assert_eq!(h.node, 1);
        for bad in ["ip=1.2.3.4", "name=a,ip=x", "name=a,port=0", "name=a,color=red", "name=a,ip=1.1.1.1,ip=2.2.2.2", "name=a,oops"] {
            assert!(bad.parse::<HostSpec>().is_err(), "{bad}");
        }
        let s = spec().host(HostSpec::new("c2")).host(HostSpec { node: 1, ..HostSpec::new("web") });
        let p = plan(&s).unwrap();
        assert_eq!(p.hosts[0].ipv4, Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(p.hosts[1].ipv4, Ipv4Addr::new(203, 0, 113, 11));
        assert_eq!(p.hosts[1].netns, "porin-t1-h1");
        assert!(p.namespaces().ends_with(&["porin-t1-h0".to_string(), "porin-t1-h1".to_string()]));
        assert_eq!(parse_lab_netns("porin-t1-h1"), Some("t1"));
        let cmds = link_commands(&p);
        let has = |ns: &str, args: &str| cmds.iter().any(|c| c.netns == ns && c.args.join(" ") == args);
        assert!(has("porin-t1-n0", "route add 203.0.113.10/32 dev porinh0 scope link"));
        assert!(has("porin-t1-n1", "route add 203.0.113.10/32 via 10.242.0.1 dev porinu0"), "other nodes route through the gateway node");
        assert!(has("porin-t1-n0", "route add 203.0.113.11/32 via 10.242.0.2 dev porinu0"));
        assert!(has("porin-t1-h0", "route add default via 169.254.1.1 dev porin-eth0"));
        // Bad hosts: inside the pod networks, a pod's address, duplicate names, unknown node, bad name.
        for (h, field) in [
            (HostSpec { ipv4: Some(Ipv4Addr::new(10, 244, 9, 9)), ..HostSpec::new("a") }, "hosts[0].ipv4"),
            (HostSpec { ipv4: Some(Ipv4Addr::new(10, 244, 0, 2)), ..HostSpec::new("a") }, "hosts[0].ipv4"),
            (HostSpec { ipv6: Some("fd00:244:7::1".parse().unwrap()), ..HostSpec::new("a") }, "hosts[0].ipv6"),
            (HostSpec { node: 2, ..HostSpec::new("a") }, "hosts[0].node"),
            (HostSpec::new("A/b"), "hosts[0].name"),
            (HostSpec { ports: vec![(80, Proto::Tcp), (80, Proto::Tcp)], ..HostSpec::new("a") }, "hosts[0].ports[1]"),
        ] {
            let err = plan(&spec().host(h.clone())).unwrap_err();
            assert!(matches!(&err, LabError::Spec { field: f, .. } if f == field), "{h:?}: {err}");
        }
        let dup = spec().host(HostSpec::new("a")).host(HostSpec::new("a"));
        assert!(matches!(plan(&dup), Err(LabError::Spec { field, .. }) if field == "hosts[1].name"));
        let clash = spec().host(HostSpec::new("a")).host(HostSpec { ipv4: Some(Ipv4Addr::new(203, 0, 113, 10)), ..HostSpec::new("b") });
        assert!(plan(&clash).is_err(), "the second host takes the first's default address");
    }

    #[test]
    fn names_fit_and_every_command_is_namespaced() {
        let mut s = spec();
        s.ipv6 = true;
        s.name = "abcdefghijklmnopqrst".into();
        for k in 0..20 {
            s.pods.push(PodSpec::new("z", format!("p{k}"), 1));
        }
        let p = plan(&s).unwrap();
        let cmds = link_commands(&p);
        let owned: BTreeSet<String> = p.namespaces().into_iter().collect();
        for c in &cmds {
            assert!(owned.contains(&c.netns), "{c:?} outside the lab");
            if let Some(i) = c.args.iter().position(|a| a == "netns") {
                assert!(owned.contains(&c.args[i + 1]), "{c:?} moves a link outside the lab");
            }
            if c.args[0] == "link" && c.args[1] == "add" {
                assert!(c.args[2].starts_with("porin") && c.args[2].len() <= 15, "{c:?}");
                let peer = &c.args[c.args.iter().position(|a| a == "name").map_or(2, |i| i + 1)];
                assert!(peer.starts_with("porin") && peer.len() <= 15, "{c:?}");
            }
        }
        for p in &p.pods {
            assert!(p.host_ifname.len() <= 15 && p.host_ifname.starts_with("porin"));
        }
        // One batch per namespace, plus the underlay twice (bridge first, ports after the nodes).
        let groups = group_by_netns(&cmds);
        assert_eq!(groups.len(), p.namespaces().len() + 1);
        for c in &cmds {
            assert!(c.args.iter().all(|a| !a.is_empty() && !a.contains(char::is_whitespace)), "batch-safe: {c:?}");
        }
    }
}
