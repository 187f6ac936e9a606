//! Who claims which address and which interface: Pods (`status.podIP`/`podIPs`) and WorkloadEndpoints
//! (`spec.ipNetworks`, `spec.node` + `spec.interfaceName`). One workload is `namespace/pod`; a Pod and the
//! WorkloadEndpoint of the same pod claim its addresses together. Two different workloads claiming one
//! address (or one node interface) is a conflict: the offline validator reports it, the API refuses it,
//! and the agent denies both endpoints if such state exists anyway.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::Resource;

/// One object's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `namespace/pod`: the workload the object speaks for.
    pub workload: String,
    /// How to name the object in messages: `Pod shop/a`, `WorkloadEndpoint shop/a-eth0`.
    pub object: String,
    /// Addresses, with the field path each comes from.
    pub addresses: Vec<(IpAddr, String)>,
    /// `(node, interfaceName)` for WorkloadEndpoints.
    pub interface: Option<(String, String)>,
}

/// What `r` claims; None for kinds that claim nothing.
pub fn claims(r: &Resource) -> Option<Claims> {
    let ns = r.namespace().unwrap_or("default");
    match r {
        Resource::Pod(p) => {
            let mut addresses = Vec::new();
            if let Some(Ok(ip)) = p.status.pod_ip.as_deref().map(str::parse::<IpAddr>) {
                addresses.push((ip, "status.podIP".to_string()));
            }
            for (i, x) in p.status.pod_ips.iter().enumerate() {
                if let Ok(ip) = x.ip.parse::<IpAddr>()
                    && !addresses.iter().any(|(a, _)| *a == ip)
                {
                    addresses.push((ip, format!("status.podIPs[{i}].ip")));
                }
            }
            Some(Claims { workload: format!("{ns}/{}", p.metadata.name), object: format!("Pod {ns}/{}", p.metadata.name), addresses, interface: None })
        }
        Resource::WorkloadEndpoint(w) => {
            let mut addresses = Vec::new();
            for (i, n) in w.spec.ip_networks.iter().enumerate() {
                if let Ok(net) = n.parse::<ipnet::IpNet>()
                    && net.prefix_len() == net.max_prefix_len()
                    && !addresses.iter().any(|(a, _)| *a == net.addr())
                {
                    addresses.push((net.addr(), format!("spec.ipNetworks[{i}]")));
                }
            }
            Some(Claims {
                workload: format!("{ns}/{}", w.spec.pod),
                object: format!("WorkloadEndpoint {ns}/{}", w.metadata.name),
                addresses,
                interface: Some((w.spec.node.clone(), w.spec.interface_name.clone())),
            })
        }
        _ => None,
    }
}

/// A conflict between a new claim and an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Field path in the newer object.
    pub path: String,
    pub message: String,
    /// The earlier claimant (`Pod shop/a`).
    pub other: String,
}

/// Accumulates claims and reports conflicts. Feed it the objects that stay (stored ones first, then the
/// ones of a request) and read the conflicts each new object causes.
#[derive(Debug, Default)]
pub struct ClaimIndex {
    addresses: BTreeMap<IpAddr, (String, String)>,
    interfaces: BTreeMap<(String, String), (String, String)>,
    weps: BTreeMap<String, String>,
}

impl ClaimIndex {
    /// Records `c`; returns what it conflicts with (it is recorded either way, first claimant kept).
    pub fn add(&mut self, c: &Claims) -> Vec<Conflict> {
        let mut out = Vec::new();
        for (ip, path) in &c.addresses {
            match self.addresses.get(ip) {
                Some((w, o)) if *w != c.workload => out.push(Conflict {
                    path: path.clone(),
                    message: format!("address {ip} is already held by {o} (workload {w}); {} may not claim it", c.object),
                    other: o.clone(),
                }),
                Some(_) => {}
                None => {
                    self.addresses.insert(*ip, (c.workload.clone(), c.object.clone()));
                }
            }
        }
        if let Some((node, ifname)) = &c.interface {
            let key = (node.clone(), ifname.clone());
            match self.interfaces.get(&key) {
                Some((w, o)) if *o != c.object => out.push(Conflict {
                    path: "spec.interfaceName".into(),
                    message: format!("interface {ifname:?} on node {node:?} is already bound by {o} (workload {w})"),
                    other: o.clone(),
                }),
                Some(_) => {}
                None => {
                    self.interfaces.insert(key, (c.workload.clone(), c.object.clone()));
                }
            }
            match self.weps.get(&c.workload) {
                Some(o) if *o != c.object => out.push(Conflict {
                    path: "spec.pod".into(),
                    message: format!("workload {} already has a WorkloadEndpoint, {o}; one interface per pod is supported", c.workload),
                    other: o.clone(),
                }),
                Some(_) => {}
                None => {
                    self.weps.insert(c.workload.clone(), c.object.clone());
                }
            }
        }
        out
    }
}
