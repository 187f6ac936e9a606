//! A plan as `ip` commands and sysctls, grouped by namespace; executed by [`crate::lab`].

use super::*;

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
