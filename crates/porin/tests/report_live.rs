//! `porin report run` against a real agent: protection over an interval follows the audit trail (a policy
//! deleted in the middle of the interval makes its pod unprotected for the rest of it), a stored GlobalReport
//! gives type and scope, and the CSV and HTML outputs are written.

#[path = "control_plane/common.rs"]
mod common;

use std::time::Duration;

use common::*;

const OBJECTS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: audit}
---
apiVersion: v1
kind: Pod
metadata: {name: x, namespace: audit, labels: {app: x}}
spec: {containers: [{name: c}]}
status: {podIP: 10.77.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: y, namespace: audit, labels: {app: y}}
spec: {containers: [{name: c}]}
status: {podIP: 10.77.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x-in, namespace: audit}
spec:
  podSelector: {matchLabels: {app: x}}
  policyTypes: [Ingress]
";

const GLOBAL_REPORT: &str = "\
apiVersion: projectcalico.org/v3
kind: GlobalReport
metadata: {name: x-only}
spec:
  reportType: policy-audit
  endpoints: {selector: app == 'x', namespaces: {names: [audit]}}
  schedule: 0 6 * * 1
";

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn reports_follow_the_audit_trail() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &a.write("o.yaml", OBJECTS)]);
    std::thread::sleep(Duration::from_millis(2100));
    a.ok(&["delete", "netpol", "x-in", "-n", "audit"]);
    std::thread::sleep(Duration::from_millis(1100));
    let audit = json(&a.ok(&["audit", "-o", "json"]));
    let del = audit.as_array().unwrap().iter().find(|r| r["verb"] == "delete").expect("the delete is audited");
    let t_del = del["timestamp"].as_i64().unwrap();
    let before_del = porin_report::render::rfc3339(t_del - 1);

    // Until just before the delete: x protected for ingress, y not.
    let r = json(&a.ok(&["report", "run", "inventory", "--since", "10m", "--until", &before_del]));
    let ep = |r: &serde_json::Value, p: &str| r["endpoints"].as_array().unwrap().iter().find(|e| e["pod"] == p).cloned().unwrap();
    assert_eq!(ep(&r, "x")["ingressProtected"], true, "{r}");
    assert_eq!(ep(&r, "y")["ingressProtected"], false);
    assert_eq!(r["summary"]["ingressProtected"], 1);
    // Up to now: the delete in the middle leaves x unprotected since then.
    let r = json(&a.ok(&["report", "run", "inventory", "--since", "10m", "-n", "audit"]));
    let x = ep(&r, "x");
    assert_eq!(x["ingressProtected"], false, "{r}");
    assert!(x["ingressUnprotectedSeconds"].as_i64().unwrap() >= 1, "{x}");
    assert!(r["method"].as_str().unwrap().contains("state(s) evaluated"), "{r}");

    // A stored GlobalReport (Calico's shape) gives type and scope: the delete touched x only.
    a.ok(&["apply", "-f", &a.write("gr.yaml", GLOBAL_REPORT)]);
    let r = json(&a.ok(&["report", "run", "x-only", "--since", "10m"]));
    assert_eq!(r["reportType"], "policy-audit");
    let changes = r["policyChanges"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["action"] == "deleted" && c["name"] == "x-in"), "{r}");
    assert!(changes.iter().all(|c| c["affectedEndpoints"] == serde_json::json!(["audit/x"])), "{r}");
    assert_eq!(r["endpoints"].as_array().unwrap().len(), 1);

    // CSV and HTML files.
    let csv = tmp.path().join("r.csv");
    a.ok(&["report", "run", "inventory", "--since", "10m", "-o", "csv", "--out", csv.to_str().unwrap()]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("namespace,pod,serviceAccount,ingressProtected") && text.contains("audit,x,"), "{text}");
    let html = tmp.path().join("r.html");
    a.ok(&["report", "run", "network-access", "--since", "10m", "-o", "html", "--out", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("audit/x"), "{page}");

    // Bad input is named.
    let (code, _, err) = a.porin(&["report", "run", "nope", "--since", "1h"]);
    assert_ne!(code, 0);
    assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
    let (code, _, err) = a.porin(&["report", "run", "inventory", "--since", "yesterday"]);
    assert_ne!(code, 0);
    assert!(err.contains("--since \"yesterday\""), "{err}");
    let (code, _, err) =
        a.porin(&["apply", "-f", &a.write("bad.yaml", "apiVersion: porin.io/v1\nkind: GlobalReport\nmetadata: {name: b}\nspec: {reportType: inventroy, schedule: '0 25 * * *'}\n")]);
    assert_ne!(code, 0);
    assert!(err.contains("spec.reportType") && err.contains("spec.schedule"), "{err}");
}
