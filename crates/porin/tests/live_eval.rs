//! `trace`, `matrix` and `diff` against a real `porin agent` (no `-f`, or `--live`): the live objects give
//! the same answers as the same manifests offline, and `--live -f CHANGES` / `diff --against CHANGES`
//! evaluate the changes applied on top of the live objects without writing them.

#[path = "control_plane/common.rs"]
mod common;

use std::path::PathBuf;

use common::*;

fn repo(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(p).canonicalize().unwrap().to_str().unwrap().to_string()
}

/// Opens frontend → payment for the whole shop (a new policy, in a tier above platform's pci isolation).
const OPEN_PCI: &str = "\
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: break-glass}
spec: {order: 10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: break-glass.frontend-payment}
spec:
  tier: break-glass
  order: 1
  selector: app in {'frontend', 'payment'}
  types: [Ingress, Egress]
  ingress: [{action: Allow, source: {selector: app == 'frontend'}}]
  egress: [{action: Allow, destination: {selector: app == 'payment'}}]
";

#[test]
fn trace_matrix_diff_read_the_live_model() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let shop = repo("examples/shop");
    a.ok(&["apply", "-f", &shop]);
    let trace = ["trace", "--from", "shop/frontend", "--to", "shop/payment", "--port", "9000", "-o", "json"];

    // trace: live (no -f, and --live) equals offline on the same manifests.
    let offline = a.ok(&[&trace[..], &["-f", shop.as_str()][..]].concat());
    let live = a.ok(&trace);
    assert_eq!(live, offline);
    assert_eq!(a.ok(&[&trace[..], &["--live"][..]].concat()), offline);
    let v: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!(v["allowed"], false, "{live}");

    // matrix: the same grid.
    assert_eq!(a.ok(&["matrix", "--port", "9000"]), a.ok(&["matrix", "-f", &shop, "--port", "9000"]));

    // What-if: the live objects with a change on top open the pair; nothing is written.
    let change = a.write("open-pci.yaml", OPEN_PCI);
    let what_if = a.ok(&[&trace[..], &["--live", "-f", change.as_str()][..]].concat());
    let v: serde_json::Value = serde_json::from_str(&what_if).unwrap();
    assert_eq!(v["allowed"], true, "{what_if}");
    assert_eq!(a.ok(&trace), live, "a what-if trace must not write");

    // diff against the live objects names the flipped pair, as the offline diff of the full sets does.
    let d = a.ok(&["diff", "--against", &change, "--port", "9000"]);
    assert!(d.contains("shop/frontend") && d.contains("shop/payment"), "{d}");
    let offline_diff = a.ok(&["diff", "-f", &shop, "--against", &shop, &change, "--port", "9000"]);
    assert_eq!(d, offline_diff);

    // Unknown pods are named as such.
    let (code, _, err) = a.porin(&["trace", "--from", "shop/nope", "--to", "shop/payment", "--port", "9000"]);
    assert_ne!(code, 0);
    assert!(err.contains("shop/nope") && err.contains("no such pod"), "{err}");
}

#[test]
fn diff_warns_when_no_pods_are_given() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let pol = repo("examples/shop/20-shop-policies.yaml");
    let (code, _, err) = a.porin(&["diff", "-f", &pol, "--against", &pol]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: neither side holds a pod"), "{err}");
}
