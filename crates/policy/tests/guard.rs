//! Guardrails on the shop example: a guard holds, a change that opens pci violates it with a witness and the
//! rule; an Allow guard names the rule that closes it; the matrix fast path agrees with the reference.

use porin_model::guard::ReachabilityGuardSpec;
use porin_model::{Document, Resource, load_paths, parse_documents};
use porin_policy::guard::{Guard, check};
use porin_policy::{Cluster, Packet, Peer, Variant};

#[path = "../benches/synth/mod.rs"]
mod synth;

fn shop() -> Vec<Document> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop");
    load_paths(&[dir]).unwrap_or_else(|e| panic!("{e:#?}"))
}

fn spec(yaml: &str) -> ReachabilityGuardSpec {
    // Written as JSON: no YAML dependency in this crate.
    serde_json::from_str(yaml).unwrap()
}

const PCI_ONLY_CHECKOUT: &str = r#"{"from": {"selector": "app != 'checkout' && app != 'prometheus'"},
    "to": {"selector": "app == 'payment'"}, "expect": "Deny"}"#;

const OPEN_PCI: &str = r#"
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: open-pci}
spec:
  tier: platform
  order: 5
  selector: pci == "true" || app == "frontend"
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      source: {selector: app == "frontend"}
  egress:
    - action: Allow
      destination: {selector: pci == "true"}
"#;

fn build(docs: &[Document]) -> Cluster {
    Cluster::build(docs.iter().map(|d| &d.resource)).unwrap()
}

#[test]
fn deny_guard_holds_on_shop_and_breaks_when_pci_is_opened() {
    let g = spec(PCI_ONLY_CHECKOUT);
    let guards = [Guard { name: "pci-only-checkout", spec: &g }];
    let mut docs = shop();
    assert_eq!(check(&build(&docs), &guards), vec![], "the shop example keeps pci closed");
    docs.extend(parse_documents("open.yaml", OPEN_PCI).unwrap());
    let v = check(&build(&docs), &guards);
    assert_eq!(v.len(), 1, "{v:#?}");
    let v = &v[0];
    assert_eq!((v.from.as_str(), v.to.as_str()), ("shop/frontend", "shop/payment"));
    let text = v.to_string();
    assert!(text.contains("pci-only-checkout") && text.contains("platform|open-pci|0|allow"), "{text}");
}

#[test]
fn allow_guard_names_the_rule_that_closes_it() {
    // checkout must reach payment on 9000: true on the shop example, false once checkout's egress is cut.
    let g = spec(r#"{"from": {"selector": "app == 'checkout'"}, "to": {"selector": "app == 'payment'"},
        "ports": [9000], "expect": "Allow"}"#);
    let guards = [Guard { name: "checkout-pays", spec: &g }];
    let mut docs = shop();
    assert_eq!(check(&build(&docs), &guards), vec![]);
    docs.extend(
        parse_documents(
            "cut.yaml",
            r#"
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: cut-checkout}
spec:
  tier: platform
  order: 1
  selector: app == "checkout"
  types: [Egress]
  egress:
    - action: Deny
      destination: {selector: app == "payment"}
"#,
        )
        .unwrap(),
    );
    let v = check(&build(&docs), &guards);
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].from.as_str(), v[0].to.as_str(), v[0].port), ("shop/checkout", "shop/payment", 9000));
    assert!(v[0].to_string().contains("egress at shop/checkout: platform|cut-checkout|0|deny"), "{}", v[0]);
}

#[test]
fn cidr_side_is_checked_with_the_reference_evaluator() {
    // Nothing outside the cluster reaches payment: holds (zero trust), breaks when an ipBlock opens it.
    let g = spec(r#"{"from": {"cidr": "0.0.0.0/0"}, "to": {"selector": "pci == 'true'"}, "expect": "Deny"}"#);
    let guards = [Guard { name: "no-internet-to-pci", spec: &g }];
    let mut docs = shop();
    assert_eq!(check(&build(&docs), &guards), vec![]);
    docs.extend(
        parse_documents(
            "partner.yaml",
            r#"
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: partner}
spec:
  tier: platform
  order: 1
  selector: pci == "true"
  types: [Ingress]
  ingress:
    - action: Allow
      source: {nets: [203.0.113.0/24]}
"#,
        )
        .unwrap(),
    );
    let v = check(&build(&docs), &guards);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].from, "203.0.113.0");
    assert!(v[0].to_string().contains("platform|partner|0|allow"), "{}", v[0]);
}

/// Every guard answer agrees with the reference evaluator on every pod pair of a synthetic cluster.
#[test]
fn guard_matches_reference_on_synthetic_cluster() {
    let rs = synth::cluster(200);
    let c = Cluster::build(rs.iter()).unwrap();
    let g = spec(r#"{"from": {}, "to": {}, "expect": "Allow"}"#);
    let d = spec(r#"{"from": {}, "to": {}, "expect": "Deny"}"#);
    for (spec, want_allowed) in [(&g, true), (&d, false)] {
        let v = check(&c, &[Guard { name: "all", spec }]);
        // Reference: is there any pair, on any checked port, that differs from the expectation?
        let ports = porin_policy::guard::ports_to_check(&c, porin_model::Protocol::Tcp);
        let mut first = None;
        'outer: for port in &ports {
            for a in &c.endpoints {
                for b in &c.endpoints {
                    if a.id() != b.id()
                        && c.evaluate(Variant::Enforced, Peer::Endpoint(a), Peer::Endpoint(b), &Packet::l4(porin_model::Protocol::Tcp, *port)).allowed
                            != want_allowed
                    {
                        first = Some((a.id(), b.id(), *port));
                        break 'outer;
                    }
                }
            }
        }
        match (first, v.first()) {
            (None, None) => {}
            (Some(f), Some(x)) => assert_eq!(f, (x.from.clone(), x.to.clone(), x.port)),
            (f, x) => panic!("reference {f:?}, guard {x:?}"),
        }
    }
}

/// The guard's restricted check (only the classes of `from` and `to` evaluated, egress only where it can change
/// the answer) finds exactly the pair the full class matrix shows first, for subsets of every size, both
/// expectations and every checked port of a synthetic cluster.
#[test]
fn pair_witness_equals_the_full_matrix() {
    let rs = synth::cluster(300);
    let c = Cluster::build(rs.iter()).unwrap();
    let cls = c.classes_v4();
    let n = c.endpoints.len();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut found = [0usize; 2];
    for port in porin_policy::guard::ports_to_check(&c, porin_model::Protocol::Tcp) {
        let m = c.matrix(Variant::Enforced, porin_model::Protocol::Tcp, port);
        for round in 0..12 {
            // Sparse to dense subsets (one in 1, 2, 4, ... 64 pods), and the same pod on both sides sometimes.
            let keep = |r: u64, k: u64| r % (1 << (k % 7)) == 0;
            let from: Vec<usize> = (0..n).filter(|_| keep(next(), round)).collect();
            let to: Vec<usize> = (0..n).filter(|_| keep(next(), round + 3)).collect();
            for want_allowed in [true, false] {
                let expected = from.iter().find_map(|&i| to.iter().find(|&&j| j != i && m.allowed(i, j) != want_allowed).map(|&j| (i, j)));
                let got = c.pair_witness(Variant::Enforced, porin_model::Protocol::Tcp, port, &cls, &from, &to, want_allowed);
                assert_eq!(got, expected, "port {port}, round {round}, want_allowed {want_allowed}");
                found[want_allowed as usize] += expected.is_some() as usize;
            }
        }
    }
    // The comparison saw both answers for both expectations (it can fail).
    assert!(found[0] > 0 && found[1] > 0, "{found:?}");
}

/// `cargo test --release -p porin-policy --test guard -- --ignored --nocapture`
/// The guard check the API runs on a write at 10k pods / ~1k policies, median of 7 runs per step (release:
/// `cargo test --release -p porin-policy --test guard -- --ignored --nocapture timing`; docs/benchmarks.md).
/// Steps: decode the stored JSON of every object, build the cluster, check the guards.
#[test]
#[ignore]
fn timing_guard_10k() {
    fn median(mut v: Vec<std::time::Duration>) -> std::time::Duration {
        v.sort();
        v[v.len() / 2]
    }
    let rs: Vec<Resource> = synth::cluster(10_000);
    let (k8s, gnp) = synth::policy_counts(&rs);
    let stored: Vec<(porin_model::Kind, serde_json::Value)> = rs.iter().map(|r| (r.kind(), r.to_json())).collect();
    let c = Cluster::build(rs.iter()).unwrap();
    let ports = porin_policy::guard::ports_to_check(&c, porin_model::Protocol::Tcp);
    eprintln!("{} pods, {k8s}+{gnp} policies, {} TCP ports named", c.endpoints.len(), ports.len());
    let g = spec(r#"{"from": {"namespaceSelector": "all()"}, "to": {"selector": "all()"}, "expect": "Deny"}"#);
    let a = spec(r#"{"from": {}, "to": {}, "ports": [8080], "expect": "Allow"}"#);
    let one = spec(r#"{"from": {"selector": "app != 'app1'"}, "to": {"selector": "app == 'app9'"}, "ports": [8080], "expect": "Deny"}"#);
    let runs = 7;
    let decode = median(
        (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                let v: Vec<Resource> =
                    stored.iter().map(|(k, j)| porin_model::load::to_resource(*k, j.clone()).unwrap()).collect();
                assert_eq!(v.len(), rs.len());
                t.elapsed()
            })
            .collect(),
    );
    let build = median(
        (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                let c = Cluster::build(rs.iter()).unwrap();
                assert_eq!(c.endpoints.len(), 10_000);
                t.elapsed()
            })
            .collect(),
    );
    eprintln!("decode stored JSON: {decode:?}; Cluster::build: {build:?}");
    for (name, s) in [("deny all pairs, every port", &g), ("allow all pairs, one port", &a), ("deny one app pair, one port", &one)] {
        let mut n = 0;
        let check_t = median(
            (0..runs)
                .map(|_| {
                    let t = std::time::Instant::now();
                    n = check(&c, &[Guard { name, spec: s }]).len();
                    t.elapsed()
                })
                .collect(),
        );
        eprintln!("check {name}: {check_t:?} ({n} violation); with decode and build: {:?}", decode + build + check_t);
    }
}
