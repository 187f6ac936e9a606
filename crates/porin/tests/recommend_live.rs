//! `porin recommend` against a real `porin agent` whose flow store holds the shop's traffic (written before
//! the agent starts, as the flow pipeline would have): the YAML is golden; applied, promoted and put in
//! zero-trust mode it keeps every observed connection and denies the rest (`porin test --live`); a scoped
//! token cannot read another namespace's recommendation. `porin preview` replays the same records: zero trust
//! before the recommendation breaks every observed connection (exit 3), after it none. Regenerate goldens with `PORIN_BLESS=1`.

#[path = "control_plane/common.rs"]
mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};

fn repo(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(p).canonicalize().unwrap().to_str().unwrap().to_string()
}

/// (from, to, port) observed among the shop's pods.
const PAIRS: [(&str, &str, u16); 6] = [
    ("ops/loadgen", "shop/frontend", 8080),
    ("shop/frontend", "shop/catalog", 9000),
    ("shop/frontend", "shop/checkout", 9000),
    ("shop/checkout", "shop/payment", 9000),
    ("shop/checkout", "shop/db", 5432),
    ("shop/catalog", "shop/db", 5432),
];

fn endpoint(s: &str, port: Option<u16>) -> Value {
    let (ns, pod) = s.split_once('/').unwrap();
    json!({"kind": "pod", "namespace": ns, "pod": pod, "port": port})
}

fn record(i: usize, from: &str, to: &str, port: u16, direction: &str) -> porin_flow::FlowRecord {
    let v = json!({
        "start_time": format!("2026-01-01T10:{:02}:00Z", i),
        "end_time": format!("2026-01-01T11:{:02}:00Z", i),
        "node": "test-node", "verdict": "allowed", "direction": direction,
        "reporter": if direction == "egress" { "src" } else { "dst" },
        "ip_family": "v4", "protocol": "tcp",
        "src": endpoint(from, None), "dst": endpoint(to, Some(port)),
        "packets_src_to_dst": 10, "bytes_src_to_dst": 1000, "packets_dst_to_src": 10, "bytes_dst_to_src": 1000,
        "flows_started": 2 + i as u64, "flows_completed": 2, "flows_open": 0, "open": false, "aggregation": "five_tuple",
        "enforced_trace": [],
    });
    serde_json::from_value(v).unwrap()
}

fn seed_flow_store(data: &std::path::Path) {
    let dir = data.join("flows");
    std::fs::create_dir_all(&dir).unwrap();
    let opts = porin_flow::FlowStoreOptions { max_bytes: 1 << 30, max_age: std::time::Duration::from_secs(1 << 30), fsync: false };
    let mut store = porin_flow::FlowStore::open(dir.join("flows.redb"), opts).unwrap();
    let mut recs = Vec::new();
    for (i, (f, t, p)) in PAIRS.iter().enumerate() {
        recs.push(record(i, f, t, *p, "egress"));
        recs.push(record(i, f, t, *p, "ingress"));
    }
    let now = 1_767_268_800 * 1_000_000_000u64; // 2026-01-01T12:00:00Z
    store.append_at(&recs, now).unwrap();
}

const SINCE: &str = "2025-12-31T00:00:00Z";

#[test]
fn recommend_promote_zero_trust_keeps_exactly_the_observed_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    seed_flow_store(&tmp.path().join("data"));
    let a = Agent::start(tmp.path(), &["--flow-store-max-age", "1000000h"]);
    a.ok(&["apply", "-f", &repo("examples/shop/00-workloads.yaml")]);

    let (code, yaml, err) = a.porin(&["recommend", "--since", "2025-12-31T00:00:00Z"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("from 12 flow records"), "{err}");
    golden("recommend-shop.yaml", &yaml);
    let json: Value = serde_json::from_str(&a.ok(&["recommend", "--since", "2025-12-31T00:00:00Z", "-o", "json", "-n", "shop"])).unwrap();
    let kinds: Vec<&str> = json["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Tier", "StagedNetworkPolicy"], "-n shop: the tier and shop's policy only");

    // Zero trust before any policy would deny every observed connection: preview says so, exit 3.
    let zt = "apiVersion: porin.io/v1\nkind: ClusterSettings\nmetadata: {name: default}\nspec: {defaultEndpointAction: Deny}\n";
    let zt = a.write("zt.yaml", zt);
    let (code, out, err) = a.porin(&["preview", "-f", &zt, "--since", SINCE]);
    assert_eq!(code, 3, "{out}{err}");
    golden("preview-zero-trust-first.txt", &out);

    // Observe -> recommend -> apply (staged) -> preview -> promote -> preview zero trust -> zero trust.
    a.ok(&["apply", "-f", &a.write("rec.yaml", &yaml)]);
    let (code, out, err) = a.porin(&["preview", "--since", SINCE]);
    assert_eq!((code, out.as_str()), (0, "no observed flow changes verdict with the staged policies (12 flow records replayed)\n"), "{err}");
    a.ok(&["promote", "--all"]);
    let (code, out, err) = a.porin(&["preview", "-f", &zt, "--since", SINCE]);
    assert_eq!((code, out.as_str()), (0, "no observed flow changes verdict with the change (12 flow records replayed)\n"), "{err}");
    a.ok(&["apply", "-f", &zt]);
    let mut cases = String::new();
    let pods = ["ops/loadgen", "ops/monitoring", "shop/frontend", "shop/catalog", "shop/cart", "shop/checkout", "shop/payment", "shop/db"];
    for f in pods {
        for t in pods {
            for port in [8080, 9000, 5432] {
                if f == t {
                    continue;
                }
                let expect = if PAIRS.contains(&(f, t, port)) { "Allow" } else { "Deny" };
                cases.push_str(&format!("    - {{from: {f}, to: {t}, port: {port}, expect: {expect}}}\n"));
            }
        }
    }
    let test = format!("apiVersion: porin.io/v1\nkind: ConnectivityTest\nmetadata: {{name: observed}}\nspec:\n  cases:\n{cases}");
    let (code, out, err) = a.porin(&["test", "--live", "-f", &a.write("t.yaml", &test)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("168 passed, 0 failed\n"), "{out}");

    // Deleting shop's recommendation now would break what was observed: allowed -> denied, exit 3.
    let (code, out, err) =
        a.porin(&["preview", "--delete", "pnp/shop/namespace-isolation.shop-recommendation", "--since", SINCE, "-o", "json"]);
    assert_eq!(code, 3, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["allowedToDenied"].as_u64(), v["deniedToAllowed"].as_u64()), (Some(6), Some(0)), "{v:#}");
    let first = &v["flipped"][0];
    assert!(first["before"].as_str().unwrap().contains("namespace-isolation|shop/namespace-isolation.shop-recommendation"), "{v:#}");
    assert!(first["after"].as_str().unwrap().contains("default deny"), "{v:#}");
    let (code, _, err) = a.porin(&["preview", "--delete", "pnp/shop/nope", "--since", SINCE]);
    assert!(code != 0 && err.contains("not found"), "{err}");

    // A scoped token reads its own namespaces' recommendation, never another's.
    let t = a.ok(&["token", "create", "shop", "--role", "scoped", "--namespace", "shop", "--tier", "default"]).trim().to_string();
    let (code, _, err) = a.porin_as(Some(&t), &["recommend", "--since", "2025-12-31T00:00:00Z", "-n", "ops"]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
}

fn recommendations(a: &Agent) -> Vec<Value> {
    let v: Value = serde_json::from_str(&a.ok(&["get", "snp", "-A", "-o", "json"])).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn status_of(a: &Agent, ns: &str) -> Option<(String, String)> {
    recommendations(a).into_iter().find(|i| i["metadata"]["namespace"] == ns).map(|i| {
        (
            i["metadata"]["annotations"]["policyrecommendation.porin.io/status"].as_str().unwrap_or("").to_string(),
            i["spec"]["stagedAction"].as_str().unwrap_or("").to_string(),
        )
    })
}

fn wait_for(a: &Agent, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(40), "{what} never happened: {:#?}\n{}", recommendations(a), a.log());
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Continuous mode: a RecommendationScope makes the agent keep one staged recommendation per selected namespace
/// current, Learning → Stabilizing → Stable; dismiss, relearn and accept are the user's; a read-only token sees
/// and cannot act.
#[test]
fn recommendation_scope_learns_stabilizes_and_the_user_decides() {
    let tmp = tempfile::tempdir().unwrap();
    seed_flow_store(&tmp.path().join("data"));
    let a = Agent::start(tmp.path(), &["--flow-store-max-age", "1000000h"]);
    a.ok(&["apply", "-f", &repo("examples/shop/00-workloads.yaml")]);
    let ro = a.ok(&["token", "create", "viewer", "--role", "read-only"]).trim().to_string();
    // Bad scopes are refused with their field paths.
    let bad = a.write("bad.yaml", "apiVersion: porin.io/v1\nkind: RecommendationScope\nmetadata: {name: other}\nspec: {interval: 5parsecs}\n");
    let (code, _, err) = a.porin(&["apply", "-f", &bad]);
    assert!(code != 0 && err.contains("metadata.name") && err.contains("spec.interval"), "{err}");
    assert!(recommendations(&a).is_empty(), "nothing before a scope is enabled");

    let scope = "apiVersion: porin.io/v1\nkind: RecommendationScope\nmetadata: {name: default}\nspec:\n  interval: 1s\n  initialLookback: 9000h\n  stabilizationPeriod: 4s\n  namespaceSpec: {recStatus: Enabled, selector: \"projectcalico.org/name == 'shop'\"}\n";
    a.ok(&["apply", "-f", &a.write("scope.yaml", scope)]);
    wait_for(&a, "a Learning recommendation for shop", || status_of(&a, "shop").is_some_and(|s| s == ("Learning".into(), "Learn".into())));
    let rec = recommendations(&a).into_iter().find(|i| i["metadata"]["namespace"] == "shop").unwrap();
    assert_eq!(rec["metadata"]["name"], "namespace-isolation.shop-recommendation");
    assert_eq!(rec["spec"]["egress"].as_array().unwrap().len() + rec["spec"]["ingress"].as_array().unwrap().len() > 0, true, "{rec:#}");
    assert!(status_of(&a, "ops").is_none(), "ops is not selected");
    wait_for(&a, "Stabilizing", || status_of(&a, "shop").is_some_and(|s| s.0 == "Stabilizing"));
    wait_for(&a, "Stable", || status_of(&a, "shop").is_some_and(|s| s.0 == "Stable"));
    let out = a.ok(&["recommend", "list"]);
    assert!(out.contains("shop") && out.contains("Stable"), "{out}");
    let audit = a.ok(&["audit", "--since", "1h"]);
    assert!(audit.contains("system:recommender@"), "the recommender's writes are audited: {audit}");

    // Read-only: sees, cannot act.
    let (code, out, _) = a.porin_as(Some(&ro), &["recommend", "list"]);
    assert!(code == 0 && out.contains("shop"), "{out}");
    let (code, _, err) = a.porin_as(Some(&ro), &["recommend", "dismiss", "shop"]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");

    // Dismissed: Ignore, and the recommender leaves it so.
    a.ok(&["recommend", "dismiss", "shop"]);
    assert_eq!(status_of(&a, "shop").unwrap().1, "Ignore");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(status_of(&a, "shop").unwrap().1, "Ignore", "a dismissed recommendation is not refreshed");
    assert!(a.ok(&["recommend", "list"]).contains("Dismissed"));
    let (code, _, err) = a.porin(&["recommend", "accept", "shop"]);
    assert!(code != 0 && err.contains("dismissed"), "{err}");

    // Relearn: Learning again, then refreshed as before.
    a.ok(&["recommend", "relearn", "shop"]);
    assert_eq!(status_of(&a, "shop").unwrap(), ("Learning".into(), "Learn".into()));
    wait_for(&a, "Stabilizing after relearn", || status_of(&a, "shop").is_some_and(|s| s.0 == "Stabilizing"));

    // Accept: enforced, the staged object gone, and no new recommendation for shop.
    a.ok(&["recommend", "accept", "shop"]);
    let np: Value = serde_json::from_str(&a.ok(&["get", "pnp", "-n", "shop", "-o", "json"])).unwrap();
    let names: Vec<&str> = np["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["namespace-isolation.shop-recommendation"]);
    assert!(np["items"][0]["metadata"]["annotations"].get("policyrecommendation.porin.io/status").is_none());
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(status_of(&a, "shop").is_none(), "an accepted namespace is not recommended for again: {:#?}", recommendations(&a));
    let (code, _, err) = a.porin(&["recommend", "dismiss", "nowhere"]);
    assert!(code != 0 && err.contains("no recommendation"), "{err}");
}
