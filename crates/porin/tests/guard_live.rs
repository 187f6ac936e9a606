//! ReachabilityGuards against a real `porin agent`: every kind of write (apply, delete, label, promote) whose
//! resulting model would break a guard is refused with 422 naming the guard, a witness pair and the rule;
//! nothing is written and the refusal is audited. Two concurrent writes that only break a guard together
//! cannot both commit. A namespace-scoped token can neither write nor delete a guard.

#[path = "control_plane/common.rs"]
mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

fn repo(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(p).canonicalize().unwrap().to_str().unwrap().to_string()
}

const GUARDS: &str = "\
apiVersion: porin.io/v1
kind: ReachabilityGuard
metadata: {name: pci-only-checkout}
spec:
  from: {selector: \"app != 'checkout' && app != 'prometheus'\"}
  to: {selector: \"app == 'payment'\"}
  expect: Deny
---
apiVersion: porin.io/v1
kind: ReachabilityGuard
metadata: {name: web-never-pci}
spec:
  from: {selector: \"tier == 'web'\"}
  to: {selector: \"pci == 'true'\"}
  ports: [9000]
  expect: Deny
";

const OPEN_PCI: &str = "\
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: open-pci}
spec:
  tier: platform
  order: 5
  selector: pci == \"true\" || app == \"frontend\"
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      source: {selector: app == \"frontend\"}
  egress:
    - action: Allow
      destination: {selector: pci == \"true\"}
";

/// The shop's frontend policy with every egress allowed.
const FRONTEND_OPEN: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: frontend}}
  policyTypes: [Egress]
  egress: [{}]
";

/// Everything a refused write could have touched, and the audit records.
fn state(a: &Agent) -> (Vec<String>, Vec<Value>) {
    let objs = ["gnp", "sgnp", "netpol", "pods", "guard"]
        .iter()
        .map(|k| {
            let list: Value = serde_json::from_str(&a.ok(&["get", k, "-A", "-o", "json"])).unwrap();
            list["items"].to_string()
        })
        .collect();
    let audit: Value = serde_json::from_str(&a.ok(&["audit", "-o", "json"])).unwrap();
    (objs, audit.as_array().unwrap().clone())
}

/// `porin ARGS` must be refused by a guard; nothing may change but one audit record of the refusal.
fn refused_by_guard(a: &Agent, token: Option<&str>, args: &[&str], verb: &str, needles: &[&str]) {
    let (objs, audit) = state(a);
    let (code, out, err) = a.porin_as(token, args);
    assert!(code != 0 && err.contains("Error from server (Invalid)") && err.contains("refused by a ReachabilityGuard"), "porin {args:?} was not refused: {out}{err}");
    for n in needles {
        assert!(err.contains(n), "porin {args:?}: the refusal should mention {n:?}: {err}");
    }
    let (objs2, audit2) = state(a);
    assert_eq!(objs, objs2, "porin {args:?}: a refused write changed stored objects");
    assert_eq!(audit2.len(), audit.len() + 1, "porin {args:?}: exactly one audit record for the refusal");
    let rec = audit2.iter().find(|r| !audit.contains(r)).unwrap();
    assert_eq!(rec["verb"], verb, "{rec:#}");
    assert!(rec["refused"].as_str().is_some_and(|m| needles.iter().all(|n| m.contains(n))), "{rec:#}");
    let entries = rec["entries"].as_array().unwrap();
    assert!(!entries.is_empty() && entries.iter().all(|e| e["action"] == "refused"), "{rec:#}");
}

#[test]
fn guards_refuse_every_kind_of_write_that_opens_pci() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &repo("examples/shop")]);
    // The shop keeps both guards: storing them is accepted.
    a.ok(&["apply", "-f", &a.write("guards.yaml", GUARDS)]);
    assert_eq!(a.ok(&["get", "guard", "-o", "name"]).lines().count(), 2);

    // apply: a policy that opens pci; the witness and the opening rule are named.
    let open = a.write("open.yaml", OPEN_PCI);
    refused_by_guard(
        &a,
        None,
        &["apply", "-f", &open],
        "apply",
        &["pci-only-checkout", "web-never-pci", "shop/frontend -> shop/payment", "platform|open-pci|0|allow"],
    );

    // label: the frontend relabelled as checkout would reach payment (it is still tier web).
    refused_by_guard(
        &a,
        None,
        &["label", "pod", "frontend", "-n", "shop", "app=checkout", "--overwrite"],
        "update",
        &["web-never-pci", "shop/frontend -> shop/payment"],
    );

    // promote: the same opening, staged (staging changes nothing and is accepted), then promoted.
    let staged = OPEN_PCI.replace("kind: GlobalNetworkPolicy", "kind: StagedGlobalNetworkPolicy");
    a.ok(&["apply", "-f", &a.write("staged.yaml", &staged)]);
    refused_by_guard(&a, None, &["promote", "--all"], "promote", &["pci-only-checkout", "open-pci"]);
    a.ok(&["delete", "sgnp", "open-pci"]);

    // A change that keeps every guard still goes through.
    a.ok(&["label", "pod", "frontend", "-n", "shop", "release=blue"]);
}

/// Deleting pci-isolation alone keeps pci closed (the frontend's egress list still holds), and opening the
/// frontend's egress alone too (pci-isolation still holds); together they open it. Sent at the same time,
/// exactly one of the two deletes may commit, whichever order the agent sees them in.
#[test]
fn two_concurrent_writes_cannot_both_pass_a_guard() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &repo("examples/shop")]);
    a.ok(&["apply", "-f", &a.write("guards.yaml", GUARDS)]);
    let pair = a.write("frontend-open.yaml", FRONTEND_OPEN);
    for round in 0..3 {
        let results: Vec<(i32, String, String)> = std::thread::scope(|s| {
            let h1 = s.spawn(|| a.porin(&["delete", "gnp", "pci-isolation"]));
            let h2 = s.spawn(|| a.porin(&["apply", "-f", &pair]));
            vec![h1.join().unwrap(), h2.join().unwrap()]
        });
        let ok = results.iter().filter(|r| r.0 == 0).count();
        assert_eq!(ok, 1, "round {round}: exactly one delete may commit: {results:#?}");
        let loser = results.iter().find(|r| r.0 != 0).unwrap();
        assert!(loser.2.contains("pci-only-checkout") && loser.2.contains("shop/frontend -> shop/payment"), "{loser:?}");
        // Put everything back for the next round.
        a.ok(&["apply", "-f", &repo("examples/shop")]);
    }
}

#[test]
fn a_scoped_token_can_neither_write_nor_delete_a_guard() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &repo("examples/shop")]);
    a.ok(&["apply", "-f", &a.write("guards.yaml", GUARDS)]);
    let t = a.ok(&["token", "create", "shop", "--role", "scoped", "--namespace", "shop", "--tier", "default"]).trim().to_string();
    let before = a.ok(&["get", "guard", "-o", "json"]);

    // Delete, weaken in place (same name, expect flipped), create a new one: all cluster-scoped, admin only.
    let weakened = GUARDS.replace("expect: Deny", "expect: Allow");
    let own = "apiVersion: porin.io/v1\nkind: ReachabilityGuard\nmetadata: {name: tenant-guard}\nspec:\n  to: {selector: \"app == 'db'\"}\n  expect: Allow\n";
    for args in [
        vec!["delete", "guard", "pci-only-checkout"],
        vec!["apply", "-f", &a.write("weak.yaml", &weakened)],
        vec!["apply", "-f", &a.write("own.yaml", own)],
        vec!["delete", "guard", "--all"],
    ] {
        let (code, out, err) = a.porin_as(Some(&t), &args);
        assert!(code != 0 && err.contains("Forbidden") && err.contains("admin only"), "porin {args:?} as a scoped token: {out}{err}");
    }
    assert_eq!(a.ok(&["get", "guard", "-o", "json"]), before, "a scoped token changed a guard");

    // The token's own writes are checked like anyone's: opening the frontend's egress in its namespace would
    // be fine while pci-isolation holds; without it, payment's ingress list lets the frontend in.
    a.ok(&["delete", "gnp", "pci-isolation"]);
    let pair = a.write("frontend-open.yaml", FRONTEND_OPEN);
    refused_by_guard(&a, Some(&t), &["apply", "-f", &pair], "apply", &["pci-only-checkout", "shop/frontend -> shop/payment"]);
}
