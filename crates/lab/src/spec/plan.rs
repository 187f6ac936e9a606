//! The plan of a lab: every name and address chosen, every spec problem reported, no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::*;
use crate::error::{LabError, Result};

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
