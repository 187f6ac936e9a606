//! Synthetic clusters with realistic label cardinality, for the engine benchmarks (and a test that checks
//! the fast matrix against the reference on a small one).
//!
//! Shape, for `pods` pods:
//! - `pods / 100` namespaces (`ns0`, `ns1`, ...), labelled `team` (one of 8) and `env` (prod for 3 in 4);
//! - 10 apps per namespace, 10 pods per app; the pods of one app share `app`, `tier` (frontend, backend, db)
//!   and `version` (two versions per app, a 3:1 rollout), run as the app's service account and serve a named
//!   port `http` (8080/TCP) and 9090/TCP;
//! - policies (`~pods / 10` in all): a K8s allow-list for 9 apps in 10 (from 1-3 peer apps of the namespace,
//!   sometimes of another namespace via namespaceSelector; on `http` or 8080), a K8s default-deny in every
//!   10th namespace, and a `security` tier with a handful of GlobalNetworkPolicies (quarantine deny,
//!   monitoring allow, an ipBlock-style nets rule, Pass for the rest) plus a `platform` tier with a
//!   Pass-default DNS egress policy.
//!
//! Deterministic: a small LCG, no `rand`, so the same sizes give the same cluster everywhere.

#![allow(dead_code)]

use porin_model::{Kind, Resource, load::to_resource};
use serde_json::{Value, json};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn res(kind: Kind, v: Value) -> Resource {
    to_resource(kind, v).expect("synthetic resources are well formed")
}

pub const APPS_PER_NS: usize = 10;
pub const PODS_PER_APP: usize = 10;

/// The resources of a synthetic cluster with `pods` pods (a multiple of 100 reads best).
pub fn cluster(pods: usize) -> Vec<Resource> {
    let mut rng = Lcg(0x5eed_0000 + pods as u64);
    let namespaces = pods.div_ceil(APPS_PER_NS * PODS_PER_APP).max(1);
    let tiers = ["frontend", "backend", "db"];
    let mut out = Vec::new();
    for n in 0..namespaces {
        let env = if n % 4 == 3 { "dev" } else { "prod" };
        out.push(res(
            Kind::Namespace,
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": format!("ns{n}"), "labels": {"team": format!("team{}", n % 8), "env": env}}}),
        ));
    }
    let mut made = 0;
    'outer: for n in 0..namespaces {
        for a in 0..APPS_PER_NS {
            for r in 0..PODS_PER_APP {
                if made == pods {
                    break 'outer;
                }
                let version = if r % 4 == 3 { "v2" } else { "v1" };
                let mut labels = json!({"app": format!("app{a}"), "tier": tiers[a % 3], "version": version});
                if n % 17 == 5 && a == 0 {
                    labels["quarantine"] = json!("true");
                }
                out.push(res(
                    Kind::Pod,
                    json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": format!("app{a}-{r}"), "namespace": format!("ns{n}"), "labels": labels},
                           "spec": {"serviceAccountName": format!("app{a}"),
                                    "containers": [{"name": "main", "ports": [
                                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                                        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]}]},
                           "status": {"podIP": format!("10.{}.{}.{}", n / 250, n % 250, a * PODS_PER_APP + r + 1)}}),
                ));
                made += 1;
            }
        }
    }
    // Per-app K8s allow-lists.
    for n in 0..namespaces {
        for a in 0..APPS_PER_NS {
            if rng.below(10) == 9 {
                continue;
            }
            let peers: Vec<Value> = (0..1 + rng.below(3))
                .map(|_| {
                    let peer_app = format!("app{}", rng.below(APPS_PER_NS as u64));
                    if rng.below(5) == 0 {
                        json!({"podSelector": {"matchLabels": {"app": peer_app}},
                               "namespaceSelector": {"matchLabels": {"team": format!("team{}", rng.below(8))}}})
                    } else {
                        json!({"podSelector": {"matchLabels": {"app": peer_app}}})
                    }
                })
                .collect();
            let port = if rng.below(2) == 0 { json!("http") } else { json!(8080) };
            out.push(res(
                Kind::K8sNetworkPolicy,
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": format!("allow-app{a}"), "namespace": format!("ns{n}")},
                       "spec": {"podSelector": {"matchLabels": {"app": format!("app{a}")}},
                                "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": port}]}]}}),
            ));
        }
        if n % 10 == 0 {
            out.push(res(
                Kind::K8sNetworkPolicy,
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": "default-deny", "namespace": format!("ns{n}")},
                       "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
            ));
        }
    }
    // Tiers and global policies.
    out.push(res(Kind::Tier, json!({"apiVersion": "porin.io/v1", "kind": "Tier", "metadata": {"name": "security"},
                                    "spec": {"order": 100}})));
    out.push(res(Kind::Tier, json!({"apiVersion": "porin.io/v1", "kind": "Tier", "metadata": {"name": "platform"},
                                    "spec": {"order": 200, "defaultAction": "Pass"}})));
    let gnp = |name: &str, spec: Value| {
        res(Kind::GlobalNetworkPolicy, json!({"apiVersion": "porin.io/v1", "kind": "GlobalNetworkPolicy",
                                              "metadata": {"name": name}, "spec": spec}))
    };
    out.push(gnp("quarantine", json!({
        "tier": "security", "order": 10, "selector": "all()", "types": ["Ingress", "Egress"],
        "ingress": [{"action": "Deny", "source": {"selector": "quarantine == 'true'"}},
                    {"action": "Deny", "source": {"nets": ["192.0.2.0/24"]}},
                    {"action": "Pass"}],
        "egress": [{"action": "Deny", "destination": {"selector": "quarantine == 'true'"}},
                   {"action": "Pass"}]})));
    out.push(gnp("monitoring", json!({
        "tier": "security", "order": 5, "namespaceSelector": "env == 'prod'",
        "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"nets": ["10.255.0.0/16"]},
                     "destination": {"ports": ["metrics"]}}]})));
    out.push(gnp("dev-isolation", json!({
        "tier": "security", "order": 20, "namespaceSelector": "env == 'dev'", "types": ["Ingress"],
        "ingress": [{"action": "Deny", "source": {"namespaceSelector": "env == 'prod'", "selector": "tier == 'db'"}},
                    {"action": "Pass"}]})));
    out.push(gnp("allow-dns", json!({
        "tier": "platform", "selector": "all()", "types": ["Egress"],
        "egress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}]})));
    out.push(gnp("log-db", json!({
        "tier": "platform", "selector": "tier == 'db'",
        "ingress": [{"action": "Log", "protocol": "TCP", "destination": {"ports": ["5432:5439"]}}]})));
    out
}

/// How many policies of each family a cluster holds: (k8s, global).
pub fn policy_counts(rs: &[Resource]) -> (usize, usize) {
    let k8s = rs.iter().filter(|r| r.kind() == Kind::K8sNetworkPolicy).count();
    let gnp = rs.iter().filter(|r| r.kind() == Kind::GlobalNetworkPolicy).count();
    (k8s, gnp)
}

/// `n` more K8s allow-lists, spread over the namespaces of a `pods`-pod cluster, each selecting one app's pods
/// of one version (`app`, `version`) and allowing one TCP port from one peer app: a cluster with many
/// policies per workload (for the selector index: trace cost must not grow with the policy count).
pub fn extra_policies(pods: usize, n: usize) -> Vec<Resource> {
    let namespaces = pods.div_ceil(APPS_PER_NS * PODS_PER_APP).max(1);
    (0..n)
        .map(|i| {
            let ns = i % namespaces;
            let app = (i / namespaces) % APPS_PER_NS;
            let version = if (i / namespaces / APPS_PER_NS) % 2 == 0 { "v1" } else { "v2" };
            res(
                Kind::K8sNetworkPolicy,
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": format!("extra-{i}"), "namespace": format!("ns{ns}")},
                       "spec": {"podSelector": {"matchLabels": {"app": format!("app{app}"), "version": version}},
                                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("app{}", (app + 1) % APPS_PER_NS)}}}],
                                             "ports": [{"protocol": "TCP", "port": 10000 + (i % 50000) as u16}]}]}}),
            )
        })
        .collect()
}
