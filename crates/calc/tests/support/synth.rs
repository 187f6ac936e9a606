//! Synthetic clusters for the compiler's scale tests and benchmarks (shared by `tests/` and `benches/`).
//!
//! * **Distinct peers** (`Peers::Distinct`): every rule names its own peer and its own port, as many real
//!   policies do: rule `i` allows `10.99.x.y/32` (the i-th address; `10.100.x.y` past 64,000) on TCP port `20000 + i % 40000`; every
//!   tenth rule names a pod-selector peer (`app == 'g<k>'`) instead. Half of the policies are Calico
//!   NetworkPolicies, half Kubernetes NetworkPolicies (`ipBlock` / `podSelector`).
//! * **Shared peers** (`Peers::Shared`): the shape of the project's earlier benchmark: 100 peers shared by all
//!   rules (`10.250.0.<i % 100>/32`), ports `20000 + i / 100`.
//!
//! Both select one server pod with 100 rules per policy; `fillers` pods in 20 label groups carry one small
//! policy of their own, so the compiler sees several endpoint classes.

#![allow(dead_code)]

use porin_policy::ir::Cluster;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    Distinct,
    Shared,
}

pub const RULES_PER_POLICY: usize = 100;

fn pod(name: &str, labels: Value, ip: String) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "bench", "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "bench"}]},
           "status": {"podIP": ip}})
}

/// The address of rule `i`'s peer (distinct peers).
pub fn distinct_peer(i: usize) -> String {
    format!("10.{}.{}.{}/32", 99 + i / 64_000, (i / 250) % 256, i % 250 + 1)
}

/// The documents of a synthetic cluster; `variant` changes rule 0's port (the "one rule changed" knob).
pub fn docs(rules: usize, fillers: usize, peers: Peers, variant: u16) -> Vec<Value> {
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
        pod("client", json!({"app": "client"}), "10.244.0.2".into()),
        pod("server", json!({"app": "server"}), "10.244.0.3".into()),
    ];
    for i in 0..fillers {
        let ip = format!("10.245.{}.{}", i / 250, i % 250 + 1);
        docs.push(pod(&format!("filler-{i}"), json!({"app": format!("g{}", i % 20), "role": "filler"}), ip));
    }
    docs.push(json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "fillers", "namespace": "bench"},
        "spec": {"selector": "role == 'filler'", "order": 10,
                 "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'filler'"},
                              "destination": {"ports": [8080]}}]}}));
    for p in 0..rules.div_ceil(RULES_PER_POLICY) {
        let range = p * RULES_PER_POLICY..((p + 1) * RULES_PER_POLICY).min(rules);
        let k8s = p % 2 == 1;
        let mut ingress = Vec::new();
        for i in range {
            let port = match (i, peers) {
                (0, _) => 20000 + variant,
                (_, Peers::Distinct) => 20000 + (i % 40000) as u16,
                (_, Peers::Shared) => 20000 + (i / 100) as u16,
            };
            let selector_peer = peers == Peers::Distinct && i % 10 == 9;
            let net = match peers {
                Peers::Distinct => distinct_peer(i),
                Peers::Shared => format!("10.250.0.{}/32", i % 100),
            };
            let group = format!("g{}", (i / 10) % 20);
            ingress.push(match (k8s, selector_peer) {
                (false, false) => json!({"action": "Allow", "protocol": "TCP", "source": {"nets": [net]},
                                         "destination": {"ports": [port]}}),
                (false, true) => json!({"action": "Allow", "protocol": "TCP",
                                        "source": {"selector": format!("app == '{group}'")},
                                        "destination": {"ports": [port]}}),
                (true, false) => json!({"from": [{"ipBlock": {"cidr": net}}], "ports": [{"protocol": "TCP", "port": port}]}),
                (true, true) => json!({"from": [{"podSelector": {"matchLabels": {"app": group}}}],
                                       "ports": [{"protocol": "TCP", "port": port}]}),
            });
        }
        docs.push(if k8s {
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("rules-{p:05}"), "namespace": "bench"},
                "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
                         "ingress": ingress}})
        } else {
            json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                "metadata": {"name": format!("rules-{p:05}"), "namespace": "bench"},
                "spec": {"selector": "app == 'server'", "order": 100 + p, "types": ["Ingress"], "ingress": ingress}})
        });
    }
    docs
}

pub fn cluster(rules: usize, fillers: usize, peers: Peers, variant: u16) -> Cluster {
    let text = serde_json::to_string(&Value::Array(docs(rules, fillers, peers, variant))).unwrap();
    let docs = porin_model::parse_documents("synthetic", &text).unwrap_or_else(|e| panic!("{e:?}"));
    Cluster::build(docs.iter().map(|d| &d.resource)).unwrap()
}
