//! The policy lifecycle end to end in a kernel lab (network namespaces, a real agent, eBPF): the shop's pods
//! with no policy exchange real traffic; `porin recommend` turns the agent's flow records into staged
//! policies; `porin preview` shows no observed flow flipping; `porin promote` plus zero-trust mode; then, on
//! real packets, every observed pair is still allowed and every unobserved pair is denied.
//! Needs root, like kernel_lab.rs; not root → fails, unless PORIN_SKIP_KERNEL_TESTS=1.

use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/cli_lab.rs"]
mod cli_lab;

use cli_lab::{Lab, kernel_ok, repo};

/// The traffic the shop "runs": (from, to, port).
const OBSERVED: [(&str, &str, u16); 6] = [
    ("ops/loadgen", "shop/frontend", 8080),
    ("shop/frontend", "shop/catalog", 9000),
    ("shop/frontend", "shop/checkout", 9000),
    ("shop/checkout", "shop/payment", 9000),
    ("shop/checkout", "shop/db", 5432),
    ("ops/monitoring", "shop/db", 5432),
];

/// Every pod and the port it serves (loadgen serves nothing).
const PODS: [(&str, Option<u16>); 8] = [
    ("ops/loadgen", None),
    ("ops/monitoring", Some(9090)),
    ("shop/frontend", Some(8080)),
    ("shop/catalog", Some(9000)),
    ("shop/cart", Some(9000)),
    ("shop/checkout", Some(9000)),
    ("shop/payment", Some(9000)),
    ("shop/db", Some(5432)),
];

fn cases(name: &str, list: &[(String, String, u16, &str)]) -> String {
    let mut s = format!("apiVersion: porin.io/v1\nkind: ConnectivityTest\nmetadata: {{name: {name}}}\nspec:\n  cases:\n");
    for (f, t, p, e) in list {
        s.push_str(&format!("    - {{from: {f}, to: {t}, port: {p}, expect: {e}}}\n"));
    }
    s
}

fn rules(v: &Value, dir: &str) -> usize {
    v["items"].as_array().unwrap().iter().map(|i| i["spec"][dir].as_array().map_or(0, Vec::len)).sum()
}

#[test]
fn observe_recommend_preview_promote_zero_trust_on_real_packets() {
    if !kernel_ok() {
        return;
    }
    let state = tempfile::Builder::new().prefix("porin-lab-life").tempdir().unwrap();
    let mut lab = Lab { name: "life", state, server: None };
    lab.ok(&["lab", "--name", lab.name, "up", "-f", &repo("examples/shop/00-workloads.yaml")]);
    let meta: Value = serde_json::from_slice(&std::fs::read(lab.state.path().join("life.json")).unwrap()).unwrap();
    lab.server = Some(meta["control"]["server"].as_str().unwrap().to_string());

    // 1. Traffic with no policy: real connections among the pods (all allowed).
    let observed: Vec<_> = OBSERVED.iter().map(|(f, t, p)| (f.to_string(), t.to_string(), *p, "Allow")).collect();
    let traffic = lab.write("traffic.yaml", &cases("traffic", &observed));
    lab.ok(&["test", "--lab", lab.name, "-f", &traffic]);

    // 2. Recommend, once the agent has flushed the records (1 s interval).
    let t0 = Instant::now();
    let yaml = loop {
        let v: Value = serde_json::from_str(&lab.ok(&["recommend", "--since", "10m", "-o", "json"])).unwrap();
        if rules(&v, "egress") >= OBSERVED.len() && rules(&v, "ingress") >= OBSERVED.len() {
            break lab.ok(&["recommend", "--since", "10m"]);
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the observed traffic never became recommendations: {v:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    lab.ok(&["apply", "-f", &lab.write("rec.yaml", &yaml)]);

    // 3. Preview: the staged policies flip no observed flow; nor does zero trust once they are enforced.
    let (code, out, err) = lab.porin(&["preview", "--since", "10m"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("no observed flow changes verdict"), "{out}");
    lab.ok(&["promote", "--all"]);
    let zt = lab.write("zt.yaml", "apiVersion: porin.io/v1\nkind: ClusterSettings\nmetadata: {name: default}\nspec: {defaultEndpointAction: Deny}\n");
    let (code, out, err) = lab.porin(&["preview", "-f", &zt, "--since", "10m"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("no observed flow changes verdict"), "{out}");
    lab.ok(&["apply", "-f", &zt]);

    // 4. Real packets: every observed pair allowed, every other pair (on the port its destination serves) denied.
    let mut all = Vec::new();
    for (f, _) in PODS {
        for (t, port) in PODS {
            let Some(port) = port else { continue };
            if f == t {
                continue;
            }
            let expect = if OBSERVED.contains(&(f, t, port)) { "Allow" } else { "Deny" };
            all.push((f.to_string(), t.to_string(), port, expect));
        }
    }
    let n = all.len();
    let matrix = lab.write("matrix.yaml", &cases("zero-trust", &all));
    // The agent programs the promoted policies and zero-trust mode asynchronously: retry until they hold.
    let t0 = Instant::now();
    loop {
        let (code, out, err) = lab.porin(&["test", "--lab", lab.name, "-f", &matrix, "--probe-timeout-ms", "300"]);
        if code == 0 {
            assert!(out.ends_with(&format!("{n} passed, 0 failed\n")), "{out}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "on real packets: {out}{err}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

const CATALOG_IN: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: catalog-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: catalog}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchLabels: {app: frontend}}}]
      ports: [{port: 9000}]
    - from: [{podSelector: {matchLabels: {app: cart}}}]
      ports: [{port: 9000}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchLabels: {app: checkout}}}]
      ports: [{port: 5432}]
";

fn unused_rules(lab: &Lab) -> Value {
    serde_json::from_str(&lab.ok(&["review", "unused", "--since", "30d", "-o", "json"])).unwrap()
}

fn policy<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["policies"].as_array().unwrap().iter().find(|p| p["traceName"] == name).unwrap_or_else(|| panic!("{name} missing: {v:#}"))
}

/// `porin review unused`: a rule hit by real traffic stays "used" across a kill -9 and restart of the agent
/// (the counters live in its data directory, not in the flow records' window); the rule nothing matched and
/// the policy nothing reached are listed as unused.
#[test]
fn review_unused_rule_counters_survive_an_agent_restart() {
    if !kernel_ok() {
        return;
    }
    let state = tempfile::Builder::new().prefix("porin-lab-rev").tempdir().unwrap();
    let mut lab = Lab { name: "rev", state, server: None };
    let pol = lab.write("catalog-in.yaml", CATALOG_IN);
    lab.ok(&["lab", "--name", lab.name, "up", "-f", &repo("examples/shop/00-workloads.yaml"), "-f", &pol]);
    let meta: Value = serde_json::from_slice(&std::fs::read(lab.state.path().join("rev.json")).unwrap()).unwrap();
    lab.server = Some(meta["control"]["server"].as_str().unwrap().to_string());

    // Before any traffic, everything is unused.
    let v = unused_rules(&lab);
    assert_eq!(policy(&v, "shop/knp.catalog-in")["unused"], true, "{v:#}");

    // frontend -> catalog:9000 is allowed by ingress rule 0 of catalog-in; cart is never a client.
    let t = lab.write("t.yaml", &cases("t", &[("shop/frontend".into(), "shop/catalog".into(), 9000, "Allow")]));
    lab.ok(&["test", "--lab", lab.name, "-f", &t]);
    let t0 = Instant::now();
    loop {
        let v = unused_rules(&lab);
        if policy(&v, "shop/knp.catalog-in")["rules"][0]["unused"] == false {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the hit never reached the counters: {v:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The counters are written at most every 500 ms after a change: let that pass, then kill -9 and restart.
    std::thread::sleep(Duration::from_millis(1500));
    lab.ok(&["lab", "--name", lab.name, "agent", "stop"]);
    lab.ok(&["lab", "--name", lab.name, "agent", "start"]);

    let v = unused_rules(&lab);
    let c = policy(&v, "shop/knp.catalog-in");
    assert_eq!(c["unused"], false, "{v:#}");
    assert_eq!(c["rules"][0]["unused"], false, "the hit before the restart still counts: {v:#}");
    assert!(c["rules"][0]["connections"].as_u64().unwrap() >= 1, "{v:#}");
    assert_eq!(c["rules"][1]["unused"], true, "no cart -> catalog traffic: {v:#}");
    assert_eq!(policy(&v, "shop/knp.db-in")["unused"], true, "{v:#}");
    let listed: Vec<(String, Value)> =
        v["unused"].as_array().unwrap().iter().map(|u| (u["policy"].as_str().unwrap().to_string(), u["rule"].clone())).collect();
    assert!(listed.contains(&("shop/knp.catalog-in".into(), Value::from("ingress 1 (allow)"))), "{listed:?}");
    assert!(listed.contains(&("shop/knp.db-in".into(), Value::Null)), "{listed:?}");
    assert!(!listed.iter().any(|(p, r)| p == "shop/knp.catalog-in" && r == "ingress 0 (allow)"), "{listed:?}");

    // The table names them too.
    let table = lab.ok(&["review", "unused", "--since", "30d"]);
    assert!(table.contains("shop/knp.db-in") && table.contains("ingress 1 (allow)"), "{table}");
}
