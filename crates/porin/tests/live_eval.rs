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

/// `get -o yaml --api-version projectcalico.org/v3`: Calico v3 manifests that mean what the Porin objects
/// mean (same reachability when loaded back), with tiered policies named TIER.NAME as Calico requires.
#[test]
fn export_as_calico_v3() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let shop = repo("examples/shop");
    a.ok(&["apply", "-f", &shop]);
    let (code, out, err) =
        a.porin(&["get", "ns,pods,netpol,tiers,gnp,pnp,gns,networksets", "-A", "-o", "yaml", "--api-version", "projectcalico.org/v3"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("named TIER.NAME"), "{err}");
    let list: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for it in items {
        let api = it["apiVersion"].as_str().unwrap();
        let kind = it["kind"].as_str().unwrap();
        let name = it["metadata"]["name"].as_str().unwrap();
        assert!(it["metadata"].get("resourceVersion").is_none(), "{kind} {name}");
        match kind {
            "Namespace" | "Pod" => assert_eq!(api, "v1"),
            "NetworkPolicy" if api == "networking.k8s.io/v1" => {}
            _ => {
                assert_eq!(api, "projectcalico.org/v3", "{kind} {name}");
                // libcalico-go's tiered-name rule (before its relaxation): TIER.NAME outside the default tier.
                if let Some(tier) = it["spec"]["tier"].as_str().filter(|t| *t != "default") {
                    assert!(name.starts_with(&format!("{tier}.")), "{kind} {name} in tier {tier}");
                }
            }
        }
    }
    assert!(items.iter().any(|i| i["metadata"]["name"] == "platform.pci-isolation"), "{out}");
    let (code, gnp, err) = a.porin(&["get", "gnp,tiers", "-o", "yaml", "--api-version", "projectcalico.org/v3"]);
    assert_eq!(code, 0, "{err}");
    golden("get-calico-export.yaml", &gnp);
    // Loaded back, the export means the same thing.
    let f = a.write("calico.yaml", &out);
    for port in ["9000", "8080", "5432"] {
        assert_eq!(a.ok(&["matrix", "-f", &f, "--port", port]), a.ok(&["matrix", "-f", &shop, "--port", port]), "port {port}");
    }
    // Porin's own kinds are refused by name, nothing printed.
    a.ok(&["apply", "-f", &a.write("t.yaml", "apiVersion: porin.io/v1\nkind: ConnectivityTest\nmetadata: {name: t}\nspec: {cases: [{from: shop/frontend, to: shop/cart, port: 9000, expect: Allow}]}\n")]);
    let (code, out, err) = a.porin(&["get", "ctest", "-o", "yaml", "--api-version", "projectcalico.org/v3"]);
    assert_ne!(code, 0);
    assert!(out.is_empty() && err.contains("ConnectivityTest \"t\" has no projectcalico.org/v3 form"), "{err}");
}

/// `-l` takes kubectl's syntax and Calico's, with the same meaning, on the client and in the API.
#[test]
fn get_label_selectors_in_both_syntaxes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &repo("examples/shop")]);
    let names = |sel: &str| a.ok(&["get", "pods", "-n", "shop", "-l", sel, "-o", "name"]);
    assert_eq!(names("tier=api,app!=cart"), names("tier == 'api' && app != 'cart'"));
    assert_eq!(names("app in (frontend, db)"), "pod/db\npod/frontend\n");
    assert_eq!(names("has(pci)"), "pod/payment\n");
    let (code, _, err) = a.porin(&["get", "pods", "-n", "shop", "-l", "app == 'web"]);
    assert_ne!(code, 0);
    assert!(err.contains("Calico") && err.contains("kubectl"), "{err}");
}

/// `apply --dry-run=server` runs the server's checks and writes nothing; `--dry-run=client` never asks the server
/// to write either.
#[test]
fn apply_dry_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let shop = repo("examples/shop");
    a.ok(&["apply", "-f", &shop]);
    let rev = |a: &Agent| {
        let v: serde_json::Value = serde_json::from_str(&a.ok(&["status", "-o", "json"])).unwrap();
        v["revision"].clone()
    };
    let audit_len = |a: &Agent| a.ok(&["audit", "-o", "json"]).len();
    let (r0, n0) = (rev(&a), audit_len(&a));
    let change = a.write("open-pci.yaml", OPEN_PCI);
    let out = a.ok(&["apply", "-f", &change, "--dry-run=server"]);
    assert!(out.contains("/break-glass created (server dry run)"), "{out}");
    let out = a.ok(&["apply", "-f", &change, "--dry-run"]);
    assert!(out.contains("(dry run)"), "{out}");
    assert_eq!((rev(&a), audit_len(&a)), (r0, n0), "a dry run wrote something");
    let (code, _, _) = a.porin(&["get", "tier", "break-glass"]);
    assert_ne!(code, 0);
    // The server's checks run: a read-only token is refused even in a dry run.
    let ro = a.ok(&["token", "create", "viewer", "--role", "read-only"]).trim().to_string();
    let (code, _, err) = a.porin_as(Some(&ro), &["apply", "-f", &change, "--dry-run=server"]);
    assert_ne!(code, 0);
    assert!(err.contains("Forbidden"), "{err}");
}

/// `porin audit --kind Token` accepts the kind its own table prints for token changes.
#[test]
fn audit_filters_token_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &repo("examples/shop")]);
    a.ok(&["token", "create", "viewer", "--role", "read-only"]);
    for k in ["Token", "tokens"] {
        let v: serde_json::Value = serde_json::from_str(&a.ok(&["audit", "--kind", k, "-o", "json"])).unwrap();
        let entries: Vec<&serde_json::Value> = v.as_array().unwrap().iter().flat_map(|r| r["entries"].as_array().unwrap()).collect();
        assert!(!entries.is_empty(), "{v}");
        assert!(entries.iter().all(|e| e["kind"] == "Token"), "{v}");
    }
    let table = a.ok(&["audit", "--kind", "token"]);
    assert!(table.contains("Token") && table.contains("viewer") && !table.contains("Tier"), "{table}");
    let (code, _, err) = a.porin(&["audit", "--kind", "nonsense"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown kind \"nonsense\""), "{err}");
}

/// `porin get all`: the workloads and every kind that decides their traffic, as `kubectl get all` lists a
/// namespace's common kinds.
#[test]
fn get_all_lists_pods_policies_and_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &repo("examples/shop")]);
    let names = a.ok(&["get", "all", "-A", "-o", "name"]);
    for want in ["pod/frontend", "pod/loadgen", "/platform", "/pci-isolation", "/default-deny"] {
        assert!(names.lines().any(|l| l.ends_with(want) || l == want), "{want} missing:\n{names}");
    }
    assert!(!names.contains("workloadendpoint") && !names.contains("namespace/"), "{names}");
    let shop = a.ok(&["get", "all", "-n", "shop", "-o", "name"]);
    assert!(shop.contains("pod/frontend") && !shop.contains("pod/loadgen"), "{shop}");
    // `all` with another kind does not list anything twice.
    let both = a.ok(&["get", "pods,all", "-n", "shop", "-o", "name"]);
    assert_eq!(both.matches("pod/frontend").count(), 1, "{both}");
}
