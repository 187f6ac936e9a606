//! From manifests to a lab: the pods (and Honeypod decoys) it builds, and the objects `up` applies (pods with
//! their lab address, one WorkloadEndpoint per pod).

use porin_model::{Document, Protocol, Resource};

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::spec::{HostSpec, LabSpec, PodSpec, Proto};
use crate::state::PodInfo;

fn lab_ports(ports: &[porin_model::k8s::ContainerPort]) -> Vec<(u16, Proto)> {
    let mut out: Vec<(u16, Proto)> = Vec::new();
    for p in ports {
        let proto = match p.protocol.unwrap_or(Protocol::Tcp) {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
            Protocol::Sctp => Proto::Sctp,
        };
        let Ok(port) = u16::try_from(p.container_port) else { continue };
        if port != 0 && !out.contains(&(port, proto)) {
            out.push((port, proto));
        }
    }
    out
}

fn node_index(node_name: Option<&str>, nodes: u32) -> Option<u32> {
    node_name.and_then(|n| n.strip_prefix('n')).and_then(|i| i.parse::<u32>().ok()).filter(|i| *i < nodes)
}

/// The lab for the manifests' Pods (spread round-robin over `nodes` unless `spec.nodeName` is `n<i>`) and
/// Honeypods, plus the external `hosts`.
pub(crate) fn lab_spec(name: &str, nodes: u32, docs: &[Document], hosts: &[HostSpec]) -> Result<LabSpec> {
    let mut spec = LabSpec::new(name.to_string(), nodes);
    let mut rr = 0u32;
    for d in docs {
        if let Resource::Pod(p) = &d.resource {
            let ns = p.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let node = node_index(p.spec.node_name.as_deref(), nodes).unwrap_or_else(|| {
                rr += 1;
                (rr - 1) % nodes
            });
            let mut ps = PodSpec::new(ns, p.metadata.name.clone(), node);
            ps.ipv4 = p.status.pod_ip.as_deref().and_then(|s| s.parse().ok());
            ps.ports = lab_ports(&p.spec.containers.iter().flat_map(|c| c.ports.clone()).collect::<Vec<_>>());
            spec.pods.push(ps);
        }
    }
    if spec.pods.is_empty() {
        return Err(LabError::Usage("no Pod in the manifests: a lab needs workloads".into()));
    }
    // Every pod serves every port any pod declares: a probe then observes the policy's verdict (what
    // `porin matrix` reports), not whether an application happens to listen.
    let mut all: Vec<(u16, Proto)> = spec.pods.iter().flat_map(|p| p.ports.iter().copied()).collect();
    all.sort_by_key(|(p, pr)| (*pr, *p));
    all.dedup();
    for p in &mut spec.pods {
        p.ports = all.clone();
    }
    // Decoys: each Honeypod becomes a pod whose server answers on the Honeypod's ports only.
    for d in docs {
        if let Resource::Honeypod(h) = &d.resource {
            let ns = h.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            rr += 1;
            let mut ps = PodSpec::new(ns, h.metadata.name.clone(), (rr - 1) % nodes);
            ps.ports = lab_ports(&decoy_ports(&h.spec));
            spec.pods.push(ps);
        }
    }
    for h in hosts {
        let ports = if h.ports.is_empty() { all.clone() } else { h.ports.clone() };
        spec.hosts.push(HostSpec { ports, ..h.clone() });
    }
    Ok(spec)
}

fn decoy_ports(h: &porin_model::respond::HoneypodSpec) -> Vec<porin_model::k8s::ContainerPort> {
    h.ports
        .iter()
        .map(|p| porin_model::k8s::ContainerPort { name: None, container_port: i64::from(p.port), protocol: p.protocol })
        .collect()
}

/// The Pod of a Honeypod in a lab: the Honeypod's name, namespace and labels, its ports. The engine marks it as
/// a decoy (by the Honeypod of the same name), not this manifest.
fn decoy_pod(r: &Resource) -> Option<Result<Document>> {
    let Resource::Honeypod(h) = r else { return None };
    let v = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": h.metadata.name, "namespace": h.metadata.namespace.as_deref().unwrap_or("default"),
                     "labels": h.spec.labels},
        "spec": {"containers": [{"name": "decoy", "image": "porin/decoy", "ports": decoy_ports(&h.spec)}]},
    });
    let what = format!("Honeypod {}", r.qualified_name());
    Some(
        porin_model::parse_documents(&what, &v.to_string())
            .map_err(|e| LabError::Manifests(e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))
            .map(|mut d| d.remove(0)),
    )
}

/// The WorkloadEndpoint of a lab pod: `<node>-k8s-<pod>-eth0` in the pod's namespace (Calico's naming).
pub fn workload_endpoint(info: &PodInfo, node: &str) -> Result<Document> {
    let (ns, pod) = (&info.namespace, &info.name);
    let v = serde_json::json!({
        "apiVersion": "porin.io/v1",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": format!("{node}-k8s-{pod}-eth0"), "namespace": ns},
        "spec": {
            "node": node,
            "orchestrator": "k8s",
            "pod": pod,
            "endpoint": "eth0",
            "interfaceName": info.host_ifname,
            "mac": info.pod_mac,
            "ipNetworks": [format!("{}/32", info.ipv4)],
        },
    });
    let resource = porin_model::load::to_resource(porin_model::Kind::WorkloadEndpoint, v)
        .map_err(|(p, m)| LabError::Manifests(format!("WorkloadEndpoint {p}: {m}")))?;
    Ok(Document { source: "porin lab".into(), doc: 0, prefix: String::new(), resource })
}

/// What `up` applies: the documents plus a Pod per Honeypod; every Pod with its lab address (`status`, the
/// system-owned part, kept when a pod is re-applied without it); one WorkloadEndpoint per pod binding it to its
/// host-side veth on its node. Pods carry no binding of their own, so re-applying them as written changes
/// nothing (`unchanged`).
pub(crate) fn applied(docs: &[Document], lab: &Lab) -> Result<Vec<Document>> {
    let mut docs = docs.to_vec();
    let decoys: Vec<Document> = docs.iter().filter_map(|d| decoy_pod(&d.resource)).collect::<Result<_>>()?;
    docs.extend(decoys);
    let mut weps = Vec::new();
    for d in &mut docs {
        if let Resource::Pod(p) = &mut d.resource {
            let key = format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or("default"), p.metadata.name);
            let info = lab.pod(&key)?;
            p.status.pod_ip = Some(info.ipv4.to_string());
            p.status.pod_ips.clear();
            weps.push(workload_endpoint(info, &format!("n{}", info.node))?);
        }
    }
    docs.extend(weps);
    Ok(docs)
}
