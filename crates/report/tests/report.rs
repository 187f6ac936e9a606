//! Reports over a reconstructed history: a policy removed in the middle of the interval makes its endpoint
//! unprotected for exactly the rest of the interval; flows from public addresses count as internet; the
//! policy-audit report names the change and the endpoints it touched.

use porin_flow::FlowRecord;
use porin_model::load::parse_documents;
use porin_report::{AuditEntryView, AuditRecordView, History, ReportType, Scope, compute, render};
use serde_json::{Value, json};

const OBJECTS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: a, labels: {app: p1}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: a, labels: {app: p2}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: q, namespace: b, labels: {app: q}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.1.1}
";

const POLICY: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p1-in, namespace: a}
spec:
  podSelector: {matchLabels: {app: p1}}
  policyTypes: [Ingress]
";

fn docs(text: &str) -> Vec<porin_model::Resource> {
    parse_documents("t.yaml", text).unwrap().into_iter().map(|d| d.resource).collect()
}

fn entry(r: &porin_model::Resource, action: &str, before: bool) -> AuditEntryView {
    let v = r.to_json();
    AuditEntryView {
        action: action.into(),
        kind: v["kind"].as_str().unwrap().into(),
        api_version: v["apiVersion"].as_str().unwrap().into(),
        namespace: r.namespace().map(String::from),
        name: r.name().into(),
        before: before.then(|| v.clone()),
        after: (!before).then_some(v),
    }
}

fn rec(t: i64, entries: Vec<AuditEntryView>) -> AuditRecordView {
    AuditRecordView { time: render::rfc3339(t), timestamp: t, user: "token:ops".into(), verb: "apply".into(), entries }
}

/// Objects and policy created at t=100; the policy deleted at t=500; now: objects only.
fn history() -> History {
    let objs = docs(OBJECTS);
    let pol = docs(POLICY);
    let mut created: Vec<AuditEntryView> = objs.iter().map(|r| entry(r, "created", false)).collect();
    created.push(entry(&pol[0], "created", false));
    History::new(&objs, vec![rec(500, vec![entry(&pol[0], "deleted", true)]), rec(100, created)])
}

fn flow(t: i64, src: Value, dst: Value, verdict: &str) -> FlowRecord {
    let ns = t as u64 * 1_000_000_000;
    serde_json::from_value(json!({
        "start_time": porin_flow::time::format_rfc3339(ns), "end_time": porin_flow::time::format_rfc3339(ns),
        "node": "n1", "verdict": verdict, "direction": "ingress", "reporter": "dst", "ip_family": "v4",
        "protocol": "tcp", "src": src, "dst": dst, "enforced_trace": [],
        "packets_src_to_dst": 1, "bytes_src_to_dst": 60, "packets_dst_to_src": 0, "bytes_dst_to_src": 0,
        "flows_started": 1, "flows_completed": 0, "flows_open": 1, "open": true, "aggregation": "five_tuple"
    }))
    .unwrap()
}

fn pod(ns: &str, name: &str, ip: &str) -> Value {
    json!({"kind": "pod", "namespace": ns, "pod": name, "ip": ip, "port": 80})
}

#[test]
fn protection_over_the_interval_follows_the_audit_trail() {
    let h = history();
    let scope = Scope::default();
    // Before the delete: p1 protected for ingress, p2 not; nobody for egress.
    let r = compute(ReportType::Inventory, "t", &scope, &h, &[], 200, 400).unwrap();
    let p1 = r.endpoints.iter().find(|e| e.pod == "p1").unwrap();
    let p2 = r.endpoints.iter().find(|e| e.pod == "p2").unwrap();
    assert!(p1.ingress_protected && !p1.egress_protected);
    assert_eq!(p1.ingress_policies, ["default|a/knp.p1-in"]);
    assert!(!p2.ingress_protected);
    assert_eq!((r.summary.endpoints, r.summary.ingress_protected, r.summary.egress_protected), (3, 1, 0));
    // Across the delete: p1 unprotected for the 300 s after it.
    let r = compute(ReportType::Inventory, "t", &scope, &h, &[], 200, 800).unwrap();
    let p1 = r.endpoints.iter().find(|e| e.pod == "p1").unwrap();
    assert!(!p1.ingress_protected, "{p1:?}");
    assert_eq!(p1.ingress_unprotected_seconds, 300);
    assert!(p1.ingress_policies.is_empty());
    assert_eq!(r.summary.ingress_protected, 0);
    // Before anything existed: no endpoints at all (the store was empty before its first audited change).
    let r = compute(ReportType::Inventory, "t", &scope, &h, &[], 10, 50).unwrap();
    assert!(r.endpoints.is_empty());
    // Scope: namespace b only.
    let scope_b = Scope { namespaces: ["b".to_string()].into(), selector: None };
    let r = compute(ReportType::Inventory, "t", &scope_b, &h, &[], 200, 800).unwrap();
    assert_eq!(r.endpoints.iter().map(|e| e.pod.as_str()).collect::<Vec<_>>(), ["q"]);
    assert!(compute(ReportType::Inventory, "t", &scope, &h, &[], 800, 200).is_err());
}

#[test]
fn network_access_and_policy_audit() {
    let h = history();
    let world = json!({"kind": "world", "ip": "203.0.113.9", "port": 5555});
    let private = json!({"kind": "world", "ip": "192.168.7.7", "port": 5555});
    let flows = vec![
        flow(300, world.clone(), pod("a", "p1", "10.0.0.1"), "allowed"),
        flow(310, private, pod("a", "p2", "10.0.0.2"), "allowed"),
        flow(320, pod("b", "q", "10.0.1.1"), pod("a", "p2", "10.0.0.2"), "denied"),
        flow(330, pod("a", "p2", "10.0.0.2"), json!({"kind": "world", "ip": "198.51.100.1", "port": 443}), "allowed"),
        // Outside the interval: not counted.
        flow(900, world, pod("a", "p2", "10.0.0.2"), "allowed"),
    ];
    let r = compute(ReportType::NetworkAccess, "na", &Scope::default(), &h, &flows, 200, 800).unwrap();
    let get = |p: &str| r.endpoints.iter().find(|e| e.pod == p).unwrap().access.clone().unwrap();
    assert!(get("p1").ingress_from_internet);
    let p2 = get("p2");
    assert!(!p2.ingress_from_internet, "a private address is not the internet");
    assert!(p2.egress_to_internet);
    assert_eq!(p2.ingress_from_other_namespaces.iter().collect::<Vec<_>>(), ["b"]);
    assert_eq!((p2.ingress_allowed, p2.ingress_denied), (1, 1));
    assert!(get("q").egress_to_other_namespaces.contains("a"));
    assert_eq!((r.summary.ingress_from_internet, r.summary.egress_to_internet), (1, 1));

    let r = compute(ReportType::PolicyAudit, "pa", &Scope::default(), &h, &[], 200, 800).unwrap();
    assert_eq!(r.policy_changes.len(), 1);
    let c = &r.policy_changes[0];
    assert_eq!((c.action.as_str(), c.name.as_str(), c.timestamp), ("deleted", "p1-in", 500));
    assert_eq!(c.affected_endpoints, ["a/p1"]);
    // Out of scope: nothing.
    let scope_b = Scope { namespaces: ["b".to_string()].into(), selector: None };
    assert!(compute(ReportType::PolicyAudit, "pa", &scope_b, &h, &[], 200, 800).unwrap().policy_changes.is_empty());
}

#[test]
fn renderings() {
    let h = history();
    let r = compute(ReportType::NetworkAccess, "weekly", &Scope::default(), &h, &[], 200, 800).unwrap();
    let csv = render::csv(&r);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1 + r.endpoints.len());
    assert!(lines[0].starts_with("namespace,pod,serviceAccount,ingressProtected") && lines[0].ends_with("egressToOtherNamespaces"));
    let json: Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert_eq!(json["reportType"], "network-access");
    assert_eq!(json["summary"]["endpoints"], 3);
    let html = render::html(&r);
    assert!(html.starts_with("<!doctype html>") && html.contains("<svg") && html.contains("a/p1"));
    assert!(!html.contains("<script") && !html.contains("http://") || html.contains("http://www.w3.org/2000/svg"));
}
