//! Recommendations see every node's traffic (kernel lab, two nodes, real packets): each agent publishes its
//! observations for the recommender, so connections between two pods of the node that does not write the
//! recommendations become rules too, in the continuous recommendation and in `porin recommend` (asked of node
//! 0). Fail safe: when node 1's agent dies, the recommendation names it in `missingNodes`, drops back to
//! `Learning`, and keeps the rules learned from it.

use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/cli_lab.rs"]
mod cli_lab;

use cli_lab::{Lab, kernel_ok, repo};

/// (from, to, port): two pairs within node 0, two within node 1, one across.
const TRAFFIC: [(&str, &str, u16); 5] = [
    ("shop/frontend", "shop/cart", 9000),
    ("shop/frontend", "shop/payment", 9000),
    ("shop/checkout", "shop/db", 5432),
    ("shop/catalog", "shop/db", 5432),
    ("shop/frontend", "shop/catalog", 9000),
];

fn app(pod: &str) -> &str {
    pod.split_once('/').unwrap().1
}

/// The egress rule of `from` towards `to` on `port` and the ingress rule of `to` from `from`, in a
/// recommendation's spec.
fn has_pair(spec: &Value, from: &str, to: &str, port: u16) -> bool {
    let (f, t) = (format!("app == '{}'", app(from)), format!("app == '{}'", app(to)));
    let sel = |v: &Value| v["selector"].as_str().unwrap_or("").to_string();
    let ports = |v: &Value| v["ports"].as_array().is_some_and(|p| p.iter().any(|x| x.as_u64() == Some(port as u64)));
    let egress = spec["egress"].as_array().into_iter().flatten().any(|r| {
        sel(&r["source"]).contains(&f) && sel(&r["destination"]).contains(&t) && ports(&r["destination"])
    });
    let ingress = spec["ingress"].as_array().into_iter().flatten().any(|r| {
        sel(&r["source"]).contains(&f) && sel(&r["destination"]).contains(&t) && ports(&r["destination"])
    });
    egress && ingress
}

fn recommendation(lab: &Lab) -> Option<Value> {
    let v: Value = serde_json::from_str(&lab.ok(&["get", "snp", "-n", "shop", "-o", "json"])).unwrap();
    v["items"].as_array().into_iter().flatten().find(|p| p["metadata"]["name"] == "namespace-isolation.shop-recommendation").cloned()
}

#[test]
fn recommendations_see_every_nodes_traffic_and_name_a_node_that_is_missing() {
    if !kernel_ok() {
        return;
    }
    let state = tempfile::Builder::new().prefix("porin-lab-recn").tempdir().unwrap();
    let mut lab = Lab { name: "recn", state, server: None };
    lab.ok(&["lab", "--name", lab.name, "up", "--nodes", "2", "-f", &repo("examples/shop/00-workloads.yaml")]);
    let meta: Value = serde_json::from_slice(&std::fs::read(lab.state.path().join("recn.json")).unwrap()).unwrap();
    lab.server = Some(meta["control"]["server"].as_str().unwrap().to_string());

    // Where the pods run: the traffic must include pairs within each node (the precondition of this test).
    let weps: Value = serde_json::from_str(&lab.ok(&["get", "workloadendpoints", "-A", "-o", "json"])).unwrap();
    let node_of = |pod: &str| -> String {
        let (ns, name) = pod.split_once('/').unwrap();
        weps["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["metadata"]["namespace"] == ns && w["spec"]["pod"] == name)
            .and_then(|w| w["spec"]["node"].as_str())
            .unwrap_or_else(|| panic!("no WorkloadEndpoint of {pod}: {weps:#}"))
            .to_string()
    };
    for node in ["n0", "n1"] {
        assert!(TRAFFIC.iter().any(|(f, t, _)| node_of(f) == node && node_of(t) == node), "no pair within {node}");
    }

    let scope = lab.write(
        "scope.yaml",
        "apiVersion: porin.io/v1\nkind: RecommendationScope\nmetadata: {name: default}\nspec:\n  interval: 1s\n  initialLookback: 1h\n  stabilizationPeriod: 4s\n  namespaceSpec: {recStatus: Enabled, selector: \"projectcalico.org/name == 'shop'\"}\n",
    );
    lab.ok(&["apply", "-f", &scope]);

    // Real connections (no policy: all allowed).
    let mut cases = String::from("apiVersion: porin.io/v1\nkind: ConnectivityTest\nmetadata: {name: traffic}\nspec:\n  cases:\n");
    for (f, t, p) in TRAFFIC {
        cases.push_str(&format!("    - {{from: {f}, to: {t}, port: {p}, expect: Allow}}\n"));
    }
    let traffic = lab.write("traffic.yaml", &cases);
    lab.ok(&["test", "--lab", lab.name, "-f", &traffic]);

    // The continuous recommendation holds every pair, whichever node writes it, and reaches Stable.
    let t0 = Instant::now();
    loop {
        let r = recommendation(&lab);
        let status = r.as_ref().and_then(|r| r["metadata"]["annotations"]["policyrecommendation.porin.io/status"].as_str().map(String::from));
        if let Some(r) = &r
            && TRAFFIC.iter().all(|(f, t, p)| has_pair(&r["spec"], f, t, *p))
            && status.as_deref() == Some("Stable")
        {
            assert!(r["metadata"]["annotations"].get("policyrecommendation.porin.io/missingNodes").is_none(), "{r:#}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "every node's traffic never became a stable recommendation: {r:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // `porin recommend` (asked of node 0) sees node 1's pairs too, and says which nodes it read.
    let v: Value = serde_json::from_str(&lab.ok(&["recommend", "--since", "10m", "-n", "shop", "-o", "json"])).unwrap();
    assert_eq!(v["missingNodes"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2), "{v:#}");
    let spec = &v["items"].as_array().unwrap().iter().find(|i| i["kind"] == "StagedNetworkPolicy").unwrap()["spec"];
    for (f, t, p) in TRAFFIC {
        assert!(has_pair(spec, f, t, p), "{f} -> {t}:{p} missing from `porin recommend`: {v:#}");
    }

    // Node 1's agent dies: its traffic is unknown, not absent. Once its published observations are older than
    // the lease (30 s), the recommendation names it, is Learning again, and keeps the rules learned from it.
    lab.ok(&["lab", "--name", lab.name, "agent", "stop", "--node", "1"]);
    let t0 = Instant::now();
    loop {
        let r = recommendation(&lab).expect("the recommendation stays");
        let ann = &r["metadata"]["annotations"];
        if ann["policyrecommendation.porin.io/missingNodes"] == "n1" {
            assert_eq!(ann["policyrecommendation.porin.io/status"], "Learning", "{r:#}");
            for (f, t, p) in TRAFFIC {
                assert!(has_pair(&r["spec"], f, t, p), "{f} -> {t}:{p} was dropped: {r:#}");
            }
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "the missing node was never reported: {r:#}");
        std::thread::sleep(Duration::from_millis(1000));
    }
    let (code, out, err) = lab.porin(&["recommend", "--since", "10m", "-n", "shop", "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["missingNodes"], serde_json::json!(["n1"]), "{v:#}");
    assert!(err.contains("warning: the traffic of node(s) n1 is missing"), "{err}");
}
