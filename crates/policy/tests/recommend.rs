//! The recommender on the shop's workloads with no policy: observed traffic in, one StagedNetworkPolicy per
//! namespace out. Promoted in zero-trust mode, every observed connection stays allowed and every other pod
//! pair on the ports in play is denied (the property the kernel-lab test checks on real packets). Traffic an
//! explicit policy already allows adds no rule; output is deterministic (golden: tests/golden, regenerate with
//! `PORIN_BLESS=1`).

use std::net::IpAddr;

use porin_model::{Document, Kind, Protocol, Resource, load_paths};
use porin_policy::recommend::{ObservedAt, ObservedPeer, Observation, Options, recommend};
use porin_policy::{Cluster, Packet, Peer, Variant};

fn golden(name: &str, actual: &str) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("PORIN_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(actual, want, "output differs from {} (PORIN_BLESS=1 regenerates)", path.display());
}

fn workloads() -> Vec<Document> {
    let f = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop/00-workloads.yaml");
    load_paths(&[f]).unwrap_or_else(|e| panic!("{e:#?}"))
}

fn pod(s: &str) -> ObservedPeer {
    let (ns, p) = s.split_once('/').unwrap();
    ObservedPeer::Pod { namespace: ns.into(), pod: p.into() }
}

/// (from, to, port): pod to pod, observed at both ends.
const PAIRS: [(&str, &str, u16); 9] = [
    ("ops/loadgen", "shop/frontend", 8080),
    ("shop/frontend", "shop/catalog", 9000),
    ("shop/frontend", "shop/cart", 9000),
    ("shop/frontend", "shop/checkout", 9000),
    ("shop/checkout", "shop/payment", 9000),
    ("shop/checkout", "shop/db", 5432),
    ("shop/cart", "shop/db", 5432),
    ("shop/catalog", "shop/db", 5432),
    ("ops/monitoring", "shop/payment", 9000),
];
const PUBLIC: &str = "93.184.216.34";
const DNS: &str = "10.96.0.10";

fn observations() -> Vec<Observation> {
    let mut out = Vec::new();
    for (i, (f, t, port)) in PAIRS.iter().enumerate() {
        for at in [ObservedAt::Egress, ObservedAt::Ingress] {
            out.push(Observation {
                at,
                src: pod(f),
                dst: pod(t),
                protocol: Protocol::Tcp,
                port: *port,
                first_seen: 1_764_700_000 + i as i64,
                last_seen: 1_764_760_000 + i as i64,
                flows: 10 + i as u64,
            });
        }
    }
    let ip = |s: &str| ObservedPeer::Ip { ip: s.parse().unwrap() };
    out.push(Observation { at: ObservedAt::Egress, src: pod("shop/checkout"), dst: ip(PUBLIC), protocol: Protocol::Tcp, port: 443, first_seen: 1_764_700_100, last_seen: 1_764_700_200, flows: 3 });
    for p in ["shop/frontend", "shop/checkout"] {
        out.push(Observation { at: ObservedAt::Egress, src: pod(p), dst: ip(DNS), protocol: Protocol::Udp, port: 53, first_seen: 1_764_700_050, last_seen: 1_764_700_900, flows: 40 });
    }
    out
}

fn enforced(staged: &Resource) -> Resource {
    let mut v = staged.to_json();
    v["kind"] = "NetworkPolicy".into();
    v["spec"].as_object_mut().unwrap().remove("stagedAction");
    porin_model::load::to_resource(Kind::NetworkPolicy, v).unwrap()
}

fn zero_trust() -> Resource {
    let v = serde_json::json!({"apiVersion": "porin.io/v1", "kind": "ClusterSettings", "metadata": {"name": "default"}, "spec": {"defaultEndpointAction": "Deny"}});
    porin_model::load::to_resource(Kind::ClusterSettings, v).unwrap()
}

#[test]
fn promoted_in_zero_trust_mode_exactly_the_observed_traffic_is_allowed() {
    let docs = workloads();
    let c = Cluster::build(docs.iter().map(|d| &d.resource)).unwrap();
    let rec = recommend(&c, &observations(), &Options::default());
    let names: Vec<_> = rec.policies.iter().map(|p| p.qualified_name()).collect();
    assert_eq!(names, ["ops/namespace-isolation.ops-recommendation", "shop/namespace-isolation.shop-recommendation"]);
    assert!(rec.tier.is_some(), "the tier is created when absent");

    let mut model: Vec<Resource> = docs.iter().map(|d| d.resource.clone()).collect();
    model.extend(rec.tier.clone());
    model.extend(rec.policies.iter().map(enforced));
    model.push(zero_trust());
    let z = Cluster::build(model.iter()).unwrap();
    let ep = |s: &str| Peer::Endpoint(&z.endpoints[z.endpoint(s).unwrap()]);
    let pods: Vec<String> = z.endpoints.iter().map(|e| format!("{}/{}", e.namespace, e.name)).collect();
    let mut checked = 0;
    for f in &pods {
        for t in &pods {
            for port in [8080u16, 9000, 5432, 9090] {
                if f == t {
                    continue;
                }
                let observed = PAIRS.iter().any(|(a, b, p)| a == f && b == t && *p == port);
                let e = z.evaluate(Variant::Enforced, ep(f), ep(t), &Packet::l4(Protocol::Tcp, port));
                assert_eq!(e.allowed, observed, "{f} -> {t} TCP/{port}: {e:#?}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 8 * 7 * 4);
    let to_ip = |f: &str, ip: &str, proto, port| {
        let ip: IpAddr = ip.parse().unwrap();
        z.evaluate(Variant::Enforced, ep(f), Peer::Ip(ip), &Packet::l4(proto, port)).allowed
    };
    assert!(to_ip("shop/checkout", PUBLIC, Protocol::Tcp, 443));
    assert!(!to_ip("shop/checkout", PUBLIC, Protocol::Tcp, 80), "only the observed public port");
    assert!(to_ip("shop/frontend", DNS, Protocol::Udp, 53));
    assert!(!to_ip("shop/payment", DNS, Protocol::Udp, 53), "payment never resolved: no rule lets it");
}

#[test]
fn rules_are_shaped_per_scope_sorted_and_annotated() {
    let docs = workloads();
    let c = Cluster::build(docs.iter().map(|d| &d.resource)).unwrap();
    let obs = observations();
    let rec = recommend(&c, &obs, &Options::default());
    let shop = rec.policies[1].to_json();
    golden("recommend-shop.json", &format!("{}\n", serde_json::to_string_pretty(&shop).unwrap()));
    let egress = shop["spec"]["egress"].as_array().unwrap();
    let scope = |r: &serde_json::Value| r["metadata"]["annotations"]["porin.io/scope"].as_str().unwrap().to_string();
    let public: Vec<_> = egress.iter().filter(|r| scope(r) == "Public").collect();
    assert_eq!(public.len(), 1);
    assert_eq!(public[0]["destination"], serde_json::json!({"ports": [443]}), "public: the port only");
    assert_eq!(public[0]["source"]["selector"], "app == 'checkout' && tier == 'api'");
    let private: Vec<_> = egress.iter().filter(|r| scope(r) == "Private").collect();
    assert_eq!(private.len(), 2, "frontend and checkout resolve names");
    assert_eq!(private[0]["destination"]["nets"], serde_json::json!(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]));
    let a = &private[0]["metadata"]["annotations"];
    assert_eq!((a["porin.io/flows"].as_str(), a["porin.io/first-seen"].as_str()), (Some("40"), Some("2025-12-02T18:27:30Z")));
    let db_in: Vec<_> = shop["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["destination"]["selector"] == "app == 'db' && tier == 'data'")
        .map(|r| r["source"]["selector"].as_str().unwrap())
        .collect();
    assert_eq!(db_in, ["app == 'cart' && tier == 'api'", "app == 'catalog' && tier == 'api'", "app == 'checkout' && tier == 'api'"], "sorted");

    // Deterministic: the same answer for the observations in any order.
    let mut rev = obs.clone();
    rev.reverse();
    let again = recommend(&c, &rev, &Options::default());
    assert_eq!(again.policies, rec.policies);

    // Restricted to one namespace; a covering GlobalNetworkSet replaces the RFC 1918 nets.
    let mut model: Vec<Resource> = docs.iter().map(|d| d.resource.clone()).collect();
    let gns = serde_json::json!({"apiVersion": "porin.io/v1", "kind": "GlobalNetworkSet", "metadata": {"name": "private", "labels": {"net": "private"}},
        "spec": {"nets": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}});
    model.push(porin_model::load::to_resource(Kind::GlobalNetworkSet, gns).unwrap());
    let c2 = Cluster::build(model.iter()).unwrap();
    let only = Options { namespaces: vec!["shop".into()], ..Options::default() };
    let rec2 = recommend(&c2, &obs, &only);
    assert_eq!(rec2.policies.len(), 1);
    let p = rec2.policies[0].to_json();
    let private = p["spec"]["egress"].as_array().unwrap().iter().find(|r| r["metadata"]["annotations"]["porin.io/scope"] == "Private").unwrap();
    assert_eq!(private["destination"]["selector"], "net == 'private'", "{p:#}");
}

#[test]
fn traffic_an_explicit_policy_allows_adds_no_rule() {
    let mut docs = workloads();
    let extra = porin_model::parse_documents(
        "allow.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n  ingress: [{ports: [{port: 5432}]}]\n",
    )
    .unwrap();
    docs.extend(extra);
    let c = Cluster::build(docs.iter().map(|d| &d.resource)).unwrap();
    let rec = recommend(&c, &observations(), &Options::default());
    let shop = rec.policies[1].to_json();
    let ingress = shop["spec"]["ingress"].as_array().unwrap();
    assert!(ingress.iter().all(|r| !r["destination"]["ports"].as_array().unwrap().contains(&5432.into())), "{shop:#}");
    // The egress side of the same connections is not covered by that policy: it still gets its rule.
    assert!(shop["spec"]["egress"][0]["destination"]["ports"].as_array().unwrap().contains(&5432.into()));
    assert_eq!(rec.already_allowed, 15 + 16 + 17, "the three db ingress observations");
}

#[path = "../benches/synth/mod.rs"]
mod synth;

/// 1M flow records' observations on the synthetic 1k-pod cluster (~100 policies), ~20k distinct connection
/// shapes: recommend, and preview of one change (a default-deny in one namespace); median of 5 runs each
/// (release: `cargo test --release -p porin-policy --test recommend -- --ignored --nocapture timing`;
/// docs/benchmarks.md).
#[test]
#[ignore]
fn timing_recommend_and_preview_1m() {
    use porin_policy::preview::{Side, preview};
    fn median(mut v: Vec<std::time::Duration>) -> std::time::Duration {
        v.sort();
        v[v.len() / 2]
    }
    let rs = synth::cluster(1_000);
    let c = Cluster::build(rs.iter()).unwrap();
    let pods: Vec<ObservedPeer> =
        c.endpoints.iter().map(|e| ObservedPeer::Pod { namespace: e.namespace.clone(), pod: e.name.clone() }).collect();
    let mut obs = Vec::with_capacity(1_000_000);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..1_000_000u64 {
        // xorshift: deterministic, ~20k distinct (src, dst, port) shapes.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let s = (x % 1000) as usize;
        let d = ((x >> 20) % 20) as usize;
        let dst = if d == 19 { ObservedPeer::Ip { ip: "93.184.216.34".parse().unwrap() } } else { pods[(s / 10 * 10 + d * 37) % pods.len()].clone() };
        let port = [8080u16, 443, 5432][((x >> 40) % 3) as usize];
        obs.push(Observation {
            at: if i % 2 == 0 { ObservedAt::Egress } else { ObservedAt::Ingress },
            src: pods[s].clone(),
            dst,
            protocol: Protocol::Tcp,
            port,
            first_seen: 1_764_700_000 + (i as i64 % 86_400),
            last_seen: 1_764_700_000 + (i as i64 % 86_400) + 5,
            flows: 1 + x % 3,
        });
    }
    let runs = 5;
    let mut n = 0;
    let rec = median(
        (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                n = recommend(&c, &obs, &Options::default()).policies.len();
                t.elapsed()
            })
            .collect(),
    );
    // The parts: merging 1M observations into shapes, and recommending from the merged set.
    let mut shapes = 0;
    let merge = median(
        (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                shapes = porin_policy::recommend::ObservationSet::of(&obs).len();
                t.elapsed()
            })
            .collect(),
    );
    let set = porin_policy::recommend::ObservationSet::of(&obs);
    let rec_set = median(
        (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                porin_policy::recommend::recommend_set(&c, &set, &Options::default());
                t.elapsed()
            })
            .collect(),
    );
    let ns = &c.endpoints[0].namespace;
    let deny = porin_model::parse_documents(
        "deny.yaml",
        &format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-all, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n"),
    )
    .unwrap();
    let mut changed = rs.clone();
    changed.extend(deny.into_iter().map(|d| d.resource));
    let after = Cluster::build(changed.iter()).unwrap();
    let mut flips = 0;
    let pre = median(
        (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                flips = preview(Side { cluster: &c, variant: Variant::Enforced }, Side { cluster: &after, variant: Variant::Enforced }, &obs).len();
                t.elapsed()
            })
            .collect(),
    );
    let pre_set = median(
        (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                porin_policy::preview::preview_set(Side { cluster: &c, variant: Variant::Enforced }, Side { cluster: &after, variant: Variant::Enforced }, &set);
                t.elapsed()
            })
            .collect(),
    );
    eprintln!("1M observations, {} pods: recommend {rec:?} ({n} policies); preview of one change {pre:?} ({flips} flipped groups)", c.endpoints.len());
    eprintln!("  of which: merging 1M observations into {shapes} shapes {merge:?}; recommend from the merged set {rec_set:?}; preview from the merged set {pre_set:?}");
}

/// Preview shares one evaluation among pods of one endpoint class: on the synthetic cluster (many pods per
/// class), its flips equal those of evaluating every observed pod pair on its own, before and after a change
/// that flips some of them (a default-deny in one namespace, and a policy opening one app in another).
#[test]
fn class_shared_preview_equals_per_pair_evaluation() {
    use porin_policy::preview::{Side, preview};
    use std::collections::BTreeSet;
    let rs = synth::cluster(200);
    let c = Cluster::build(rs.iter()).unwrap();
    let ns0 = c.endpoints[0].namespace.clone();
    let ns1 = c.endpoints.iter().map(|e| e.namespace.clone()).find(|n| *n != ns0).unwrap();
    let change = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-all, namespace: {ns0}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n---\napiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: open-{ns1}}}\nspec:\n  order: 1\n  namespaceSelector: projectcalico.org/name == '{ns1}'\n  ingress: [{{action: Allow}}]\n  egress: [{{action: Allow}}]\n"
    );
    let mut changed = rs.clone();
    changed.extend(porin_model::parse_documents("change.yaml", &change).unwrap().into_iter().map(|d| d.resource));
    let after = Cluster::build(changed.iter()).unwrap();
    let pods: Vec<ObservedPeer> = c.endpoints.iter().map(|e| ObservedPeer::Pod { namespace: e.namespace.clone(), pod: e.name.clone() }).collect();
    let mut obs = Vec::new();
    for (i, s) in pods.iter().enumerate() {
        for d in [(i * 7 + 3) % pods.len(), (i * 13 + 1) % pods.len(), (i * 31 + 5) % pods.len()] {
            for port in [8080u16, 443, 5432] {
                obs.push(Observation { at: ObservedAt::Egress, src: s.clone(), dst: pods[d].clone(), protocol: Protocol::Tcp, port, first_seen: 1, last_seen: 2, flows: 1 });
            }
        }
    }
    let got: BTreeSet<(String, String, u16, bool)> = preview(Side { cluster: &c, variant: Variant::Enforced }, Side { cluster: &after, variant: Variant::Enforced }, &obs)
        .into_iter()
        .map(|f| (f.from, f.to, f.port, f.allowed_after))
        .collect();
    let ep = |cl: &Cluster, p: &ObservedPeer| {
        let ObservedPeer::Pod { namespace, pod } = p else { unreachable!() };
        cl.endpoints.iter().find(|e| &e.namespace == namespace && &e.name == pod).unwrap().clone()
    };
    let mut want = BTreeSet::new();
    for o in &obs {
        let v = |cl: &Cluster| {
            let (s, d) = (ep(cl, &o.src), ep(cl, &o.dst));
            cl.evaluate(Variant::Enforced, Peer::Endpoint(&s), Peer::Endpoint(&d), &Packet::l4(o.protocol, o.port)).allowed
        };
        let (b, a) = (v(&c), v(&after));
        if b != a {
            let name = |p: &ObservedPeer| match p {
                ObservedPeer::Pod { namespace, pod } => format!("{namespace}/{pod}"),
                _ => unreachable!(),
            };
            want.insert((name(&o.src), name(&o.dst), o.port, a));
        }
    }
    assert!(want.len() > 100, "the change flips observed traffic: {} flips", want.len());
    let classes: BTreeSet<usize> = c.endpoint_classes(false).into_iter().collect();
    assert!(classes.len() < c.endpoints.len(), "the synthetic cluster has pods that share a class");
    assert_eq!(got, want);
}
