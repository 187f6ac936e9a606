//! Replay of real-world manifests (`tests/fixtures/real-world`): the Kubernetes documentation's NetworkPolicy
//! examples, the well-known network-policy recipes and Calico documentation examples, restated as fixtures.
//! Every file must load and validate with the cluster next to it; for a selection, the verdicts and traces
//! are those upstream semantics give (Kubernetes NetworkPolicy; Calico tiers, selectors and named ports).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use porin_model::{load_paths, validate_set};
use porin_policy::{Cluster, Packet};

fn dir() -> PathBuf {
    fixture("real-world")
}

/// The cluster plus the given fixture files (relative to `real-world/`), loaded as `porin -f` would.
fn load(files: &[&str]) -> Cluster {
    let mut paths = vec![dir().join("cluster.yaml")];
    paths.extend(files.iter().map(|f| dir().join(f)));
    let docs = load_paths(&paths).unwrap_or_else(|e| panic!("{files:?}: {:#?}", e.iter().map(|e| e.to_string()).collect::<Vec<_>>()));
    validate_set(&docs, &Default::default())
        .unwrap_or_else(|e| panic!("{files:?}: {:#?}", e.iter().map(|e| e.to_string()).collect::<Vec<_>>()));
    Cluster::build(docs.iter().map(|d| &d.resource)).unwrap()
}

fn manifests(d: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            manifests(&p, out);
        } else if p.file_name().is_some_and(|n| n != "cluster.yaml") {
            out.push(p.strip_prefix(dir()).unwrap().display().to_string());
        }
    }
}

#[test]
fn every_real_world_manifest_loads_and_validates() {
    let mut files = Vec::new();
    manifests(&dir(), &mut files);
    files.sort();
    assert!(files.len() >= 14, "{files:?}");
    for f in &files {
        let c = load(&[f.as_str()]);
        assert!(!c.policies.is_empty(), "{f} has no policy");
    }
    // And all of one directory at once (they may stack).
    for d in ["k8s-docs", "recipes", "calico-docs"] {
        let fs: Vec<&str> = files.iter().filter(|f| f.starts_with(d)).map(String::as_str).collect();
        load(&fs);
    }
}

#[test]
fn kubernetes_docs_network_policy_example() {
    let c = load(&["k8s-docs/test-network-policy.yaml", "k8s-docs/multi-port-egress.yaml", "k8s-docs/defaults.yaml"]);
    let db = "default/db";
    // ipBlock with except.
    assert!(tcp(&c, "172.17.0.5", db, 6379).allowed);
    assert!(!tcp(&c, "172.17.1.5", db, 6379).allowed);
    // podSelector of the policy's namespace, TCP 6379 only.
    let v = tcp(&c, "default/frontend", db, 6379);
    assert!(v.allowed);
    assert_eq!(ih(&v), ["default|default/knp.test-network-policy|0|allow"]);
    assert!(!tcp(&c, "default/frontend", db, 6380).allowed);
    assert!(!udp(&c, "default/frontend", db, 6379).allowed);
    assert!(!tcp(&c, "default/web", db, 6379).allowed);
    // namespaceSelector project=myproject admits the client at db; the client's own namespace denies all egress.
    let v = tcp(&c, "myproject/client", db, 6379);
    assert!(ingress(&v).allowed);
    assert!(!v.allowed);
    assert_eq!(eh(&v), ["default|myproject/knp.default-deny-egress|-1|deny"]);
    // Egress: TCP 5978 to 10.0.0.0/24, and the endPort range 32000-32768 (both policies select db).
    assert!(tcp(&c, db, "10.0.0.5", 5978).allowed);
    assert!(!tcp(&c, db, "10.0.1.5", 5978).allowed);
    for (port, ok) in [(32000, true), (32768, true), (31999, false), (32769, false)] {
        assert_eq!(tcp(&c, db, "10.0.0.5", port).allowed, ok, "port {port}");
    }
    // Default deny ingress (elsewhere); allow-all ingress and egress (production); deny all (operations).
    assert!(!tcp(&c, "production/shop", "elsewhere/monitor", 80).allowed);
    assert!(tcp(&c, "10.200.0.1", "production/shop", 443).allowed);
    assert!(!tcp(&c, "operations/monitor", "production/shop", 80).allowed);
    assert!(!tcp(&c, "production/shop", "operations/other", 80).allowed);
}

#[test]
fn namespace_by_name_label() {
    let c = load(&["k8s-docs/namespace-by-name.yaml"]);
    assert!(tcp(&c, "operations/monitor", "production/shop", 80).allowed);
    assert!(!tcp(&c, "elsewhere/monitor", "production/shop", 80).allowed);
}

#[test]
fn recipe_deny_from_other_namespaces_with_null_match_labels() {
    let c = load(&["recipes/deny-from-other-namespaces.yaml"]);
    assert!(tcp(&c, "default/frontend", "default/db", 6379).allowed);
    let v = tcp(&c, "myproject/client", "default/db", 6379);
    assert!(!v.allowed);
    assert_eq!(ih(&v), ["default|default/knp.deny-from-other-namespaces|-1|deny"]);
    assert!(!tcp(&c, "10.200.0.1", "default/web", 80).allowed);
}

#[test]
fn recipe_deny_all_then_allow_all_stack() {
    let c = load(&["recipes/web-deny-all.yaml"]);
    assert!(!tcp(&c, "default/frontend", "default/web", 80).allowed);
    assert!(tcp(&c, "default/frontend", "default/api", 8080).allowed, "api is not selected");
    let c = load(&["recipes/web-deny-all.yaml", "recipes/web-allow-all.yaml"]);
    assert!(tcp(&c, "elsewhere/monitor", "default/web", 80).allowed, "policies are additive");
}

#[test]
fn recipe_limit_traffic_to_an_application() {
    let c = load(&["recipes/api-allow.yaml"]);
    assert!(!tcp(&c, "default/frontend", "default/api", 8080).allowed);
    assert!(tcp(&c, "default/api", "default/api", 8080).allowed);
}

#[test]
fn recipe_namespace_and_pod_selector_in_one_peer() {
    let c = load(&["recipes/allow-from-namespace.yaml"]);
    let shop = "production/shop";
    assert!(tcp(&c, shop, shop, 80).allowed, "purpose=production");
    assert!(tcp(&c, "operations/monitor", shop, 9100).allowed);
    assert!(!tcp(&c, "operations/monitor", shop, 9101).allowed);
    assert!(!tcp(&c, "operations/other", shop, 9100).allowed, "AND: the pod must be type=monitoring");
    assert!(!tcp(&c, "elsewhere/monitor", shop, 9100).allowed, "AND: the namespace must be team=operations");
}

#[test]
fn recipe_egress_deny_except_dns() {
    let c = load(&["recipes/egress-deny-except-dns.yaml"]);
    let f = "default/frontend";
    assert!(udp(&c, f, "kube-system/coredns", 53).allowed);
    assert!(tcp(&c, f, "kube-system/coredns", 53).allowed);
    assert!(udp(&c, f, "8.8.8.8", 53).allowed);
    let v = tcp(&c, f, "default/db", 6379);
    assert!(!v.allowed);
    assert_eq!(eh(&v), ["default|default/knp.frontend-dns-only|-1|deny"]);
}

#[test]
fn recipe_named_port_and_external_traffic() {
    let c = load(&["recipes/named-port.yaml"]);
    assert!(tcp(&c, "operations/monitor", "default/web", 9102).allowed);
    assert!(tcp(&c, "elsewhere/monitor", "default/web", 9102).allowed);
    assert!(!tcp(&c, "operations/monitor", "default/web", 80).allowed);
    assert!(!tcp(&c, "default/frontend", "default/web", 9102).allowed);
    let c = load(&["recipes/allow-external.yaml"]);
    assert!(tcp(&c, "203.0.113.9", "default/web", 80).allowed);
    assert!(!tcp(&c, "203.0.113.9", "default/web", 443).allowed);
}

#[test]
fn calico_docs_tier_default_deny_and_network_sets() {
    let c = load(&["calico-docs/policies.yaml"]);
    let (f, db) = ("default/frontend", "default/db");
    // Egress: the security tier passes; in the default tier default-deny has no matching egress rule and
    // frontend-out allows the named port `redis` (no protocol: the container port's TCP) to role=db.
    let v = tcp(&c, f, db, 6379);
    assert!(v.allowed);
    assert_eq!(eh(&v), ["security|security.block-known-bad|1|pass", "default|default/frontend-out|0|allow"]);
    assert_eq!(ih(&v), ["default|default/allow-tcp-6379|0|allow"]);
    assert!(!udp(&c, f, db, 6379).allowed, "redis is a TCP port");
    // The namespaced NetworkSet external-database matches role=db, but a named port resolves only on pods.
    assert!(!tcp(&c, f, "192.0.2.5", 6379).allowed);
    // The global set threat-feed is denied by the security tier before anything else.
    let v = udp(&c, f, "198.51.100.7", 53);
    assert!(!v.allowed);
    assert_eq!(eh(&v), ["security|security.block-known-bad|0|deny"]);
    // DNS to kube-dns is allowed by default-deny's one rule; kube-system is not selected by it.
    let v = udp(&c, f, "kube-system/coredns", 53);
    assert!(v.allowed);
    assert_eq!(eh(&v), ["security|security.block-known-bad|1|pass", "default|default-deny|0|allow"]);
    assert!(!tcp(&c, f, "kube-system/coredns", 53).allowed, "the rule says UDP");
    // Ingress to db only from role=frontend.
    assert!(!tcp(&c, "default/web", db, 6379).allowed);
    assert!(tcp(&c, db, "203.0.113.1", 443).allowed, "db's egress: allow-tcp-6379 allows all");
}

#[test]
fn calico_docs_ping_namespace_selector_and_staged() {
    let c = load(&["calico-docs/global-examples.yaml"]);
    let ping = Packet { protocol: 1, port: None, icmp: Some((8, Some(0))), v6: false };
    let pong = Packet { protocol: 1, port: None, icmp: Some((0, Some(0))), v6: false };
    assert!(verdict(&c, "default/web", "default/db", ping).allowed);
    assert!(!verdict(&c, "default/web", "default/db", pong).allowed);
    // production's pods accept type=monitoring pods of team=operations namespaces, nothing else.
    assert!(tcp(&c, "operations/monitor", "production/shop", 80).allowed);
    assert!(!tcp(&c, "elsewhere/monitor", "production/shop", 80).allowed);
    assert!(!tcp(&c, "operations/other", "production/shop", 80).allowed);
    // The staged policy changes nothing enforced; pending, the api accepts only the default service account
    // of its own namespace (every pod here runs as `default`).
    let v = tcp(&c, "myproject/client", "default/api", 8080);
    assert!(!v.allowed, "allow-ping-in-cluster selects the api for ingress");
    assert!(!pending_ingress(&v).allowed);
    let v = tcp(&c, "default/frontend", "default/api", 8080);
    assert!(pending_ingress(&v).allowed);
}
