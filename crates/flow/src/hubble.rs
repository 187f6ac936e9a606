//! `porin observe -o hubble`: one JSON object per line in the shape of Hubble's `GetFlowsResponse`
//! (`hubble observe -o json`), so that jq scripts and log pipelines written for Hubble keep working.
//!
//! Field names are the protobuf names Hubble prints (`flow.verdict`, `flow.IP.source`,
//! `flow.l4.TCP.destination_port`, `flow.source.pod_name`, `flow.traffic_direction`, `node_name`, `time`).
//! What differs, by nature of the record:
//! - a Porin record aggregates the packets of one flow over a flush interval, where Hubble prints one
//!   line per traced packet; `time` is the record's end time;
//! - labels are written `k8s:key=value` (pods also get `k8s:io.kubernetes.pod.namespace=NS`), outside
//!   addresses `reserved:world`, the node `reserved:host`, like Cilium's;
//! - the deciding policy goes into `{ingress,egress}_{allowed,denied}_by` as `{name, namespace, kind,
//!   labels}`, with the Porin tier and rule in `labels` (`porin:tier=…`, `porin:rule=…`);
//! - Porin's own counters and staged verdict ride along under `porin` (Hubble readers ignore it).

use serde_json::{Map, Value, json};

use crate::record::{EndpointKind, FlowDirection, FlowEndpoint, FlowRecord, IpFamily, PendingVerdict, TcpFlags, Verdict};
use crate::time::format_rfc3339;

/// Hubble's `DropReason` name and number for a Porin dataplane drop reason.
pub fn drop_reason(reason: Option<&str>) -> (&'static str, u32) {
    match reason.unwrap_or("") {
        "drop_policy_deny" | "drop_revoked" => ("POLICY_DENY", 181),
        "drop_no_policy" | "drop_no_identity" | "drop_lockdown" | "drop_bad_action" | "" => ("POLICY_DENIED", 133),
        "drop_no_endpoint" => ("DROP_EP_NOT_READY", 203),
        "drop_spoofed" | "drop_spoofed_ingress" => ("INVALID_SOURCE_IP", 132),
        "drop_ct_full" | "drop_ct_budget" => ("CT_MAP_INSERTION_FAILED", 155),
        "drop_frag" => ("FRAG_NOT_FOUND", 136),
        "drop_malformed" => ("INVALID_PACKET_DROPPED", 134),
        "drop_unsupported_l3" => ("UNSUPPORTED_L3_PROTOCOL", 139),
        "drop_icmp_unrelated" => ("INVALID_PACKET_DROPPED", 134),
        _ => ("DROP_REASON_UNKNOWN", 0),
    }
}

fn endpoint(e: &FlowEndpoint) -> Value {
    let mut m = Map::new();
    if let Some(id) = e.identity {
        m.insert("identity".into(), json!(id));
    }
    if let Some(ns) = &e.namespace {
        m.insert("namespace".into(), json!(ns));
    }
    let mut labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("k8s:{k}={v}")).collect();
    match e.kind {
        EndpointKind::Pod => {
            if let Some(ns) = &e.namespace {
                labels.push(format!("k8s:io.kubernetes.pod.namespace={ns}"));
            }
        }
        EndpointKind::World => labels.push("reserved:world".into()),
        EndpointKind::Host => labels.push("reserved:host".into()),
        EndpointKind::NetworkSet => {
            if let Some(n) = &e.network_set {
                labels.push(format!("porin:networkset={n}"));
            }
            labels.push("reserved:world".into());
        }
        EndpointKind::Unknown => {}
    }
    labels.sort();
    m.insert("labels".into(), json!(labels));
    if let Some(p) = &e.pod {
        m.insert("pod_name".into(), json!(p));
    }
    if let Some(w) = &e.workload {
        m.insert("workloads".into(), json!([{ "name": w, "kind": "Workload" }]));
    }
    Value::Object(m)
}

fn l4(r: &FlowRecord) -> Option<Value> {
    let ports = || {
        let mut m = Map::new();
        if let Some(p) = r.src.port {
            m.insert("source_port".into(), json!(p));
        }
        if let Some(p) = r.dst.port {
            m.insert("destination_port".into(), json!(p));
        }
        m
    };
    Some(match r.protocol.as_str() {
        "tcp" => {
            let mut m = ports();
            let flags: Map<String, Value> = [
                (TcpFlags::SYN, "SYN"),
                (TcpFlags::ACK, "ACK"),
                (TcpFlags::FIN, "FIN"),
                (TcpFlags::RST, "RST"),
                (TcpFlags::PSH, "PSH"),
                (TcpFlags::URG, "URG"),
                (TcpFlags::ECE, "ECE"),
                (TcpFlags::CWR, "CWR"),
            ]
            .into_iter()
            .filter(|(bit, _)| r.tcp_flags.0 & bit != 0)
            .map(|(_, n)| (n.to_string(), Value::Bool(true)))
            .collect();
            if !flags.is_empty() {
                m.insert("flags".into(), Value::Object(flags));
            }
            json!({ "TCP": m })
        }
        "udp" => json!({ "UDP": ports() }),
        "sctp" => json!({ "SCTP": ports() }),
        "icmp" | "icmpv6" => {
            let key = if r.protocol == "icmp" { "ICMPv4" } else { "ICMPv6" };
            let (t, c) = r.icmp.map(|i| (i.kind, i.code)).unwrap_or((0, 0));
            json!({ key: { "type": t, "code": c } })
        }
        _ => return None,
    })
}

/// The deciding policy of a trace entry `tier|policy|rule|action`, as Hubble's `Policy`.
fn policy(hit: &str) -> Option<Value> {
    let mut parts = hit.split('|');
    let (tier, name, rule) = (parts.next()?, parts.next()?, parts.next()?);
    let (namespace, name) = match name.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, name),
    };
    let kind = match (namespace, name.starts_with("knp.default.")) {
        (Some(_), true) => "KubernetesNetworkPolicy",
        (Some(_), false) => "NetworkPolicy",
        (None, _) => "GlobalNetworkPolicy",
    };
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    if let Some(ns) = namespace {
        m.insert("namespace".into(), json!(ns));
    }
    m.insert("kind".into(), json!(kind));
    m.insert("labels".into(), json!([format!("porin:tier={tier}"), format!("porin:rule={rule}")]));
    Some(Value::Object(m))
}

/// The Hubble `GetFlowsResponse` of one record.
pub fn to_hubble(r: &FlowRecord) -> Value {
    let time = format_rfc3339(r.end_time);
    let mut f = Map::new();
    f.insert("time".into(), json!(time));
    let denied = r.verdict == Verdict::Denied;
    f.insert("verdict".into(), json!(if denied { "DROPPED" } else { "FORWARDED" }));
    if denied {
        let (name, code) = drop_reason(r.drop_reason.as_deref());
        f.insert("drop_reason".into(), json!(code));
        f.insert("drop_reason_desc".into(), json!(name));
        f.insert("event_type".into(), json!({ "type": 1, "sub_type": code }));
    } else {
        f.insert("event_type".into(), json!({ "type": 5 }));
    }
    if let (Some(s), Some(d)) = (r.src.ip, r.dst.ip) {
        let v = if r.ip_family == IpFamily::V6 { "IPv6" } else { "IPv4" };
        f.insert("IP".into(), json!({ "source": s.to_string(), "destination": d.to_string(), "ipVersion": v }));
    }
    if let Some(l4) = l4(r) {
        f.insert("l4".into(), l4);
    }
    f.insert("source".into(), endpoint(&r.src));
    f.insert("destination".into(), endpoint(&r.dst));
    f.insert("Type".into(), json!("L3_L4"));
    f.insert("node_name".into(), json!(r.node));
    let dir = match r.direction {
        FlowDirection::Ingress => "INGRESS",
        FlowDirection::Egress => "EGRESS",
    };
    f.insert("traffic_direction".into(), json!(dir));
    f.insert("is_reply".into(), json!(false));
    if let Some(p) = r.deciding_hit().and_then(policy) {
        let key = match (r.direction, denied) {
            (FlowDirection::Ingress, false) => "ingress_allowed_by",
            (FlowDirection::Egress, false) => "egress_allowed_by",
            (FlowDirection::Ingress, true) => "ingress_denied_by",
            (FlowDirection::Egress, true) => "egress_denied_by",
        };
        f.insert(key.into(), json!([p]));
    }
    let mut porin = Map::new();
    porin.insert("enforced_trace".into(), json!(r.enforced_trace));
    if let Some(p) = r.pending_verdict {
        porin.insert(
            "pending_verdict".into(),
            json!(match p {
                PendingVerdict::WouldAllow => "WOULD_ALLOW",
                PendingVerdict::WouldDeny => "WOULD_DENY",
            }),
        );
        porin.insert("pending_trace".into(), json!(r.pending_trace));
    }
    for (k, v) in [
        ("packets_src_to_dst", r.packets_src_to_dst),
        ("bytes_src_to_dst", r.bytes_src_to_dst),
        ("packets_dst_to_src", r.packets_dst_to_src),
        ("bytes_dst_to_src", r.bytes_dst_to_src),
        ("flows_started", r.flows_started),
        ("flows_completed", r.flows_completed),
        ("flows_open", r.flows_open),
    ] {
        porin.insert(k.into(), json!(v));
    }
    porin.insert("start_time".into(), json!(format_rfc3339(r.start_time)));
    f.insert("porin".into(), Value::Object(porin));
    json!({ "flow": f, "node_name": r.node, "time": time })
}
