//! The selector index is exact: on random policies (random selectors of every operator, namespaced and global,
//! several tiers, staged policies) and random pod labels, the indexed [`Cluster::applicable`] equals the linear
//! scan for every endpoint, direction and policy set. A seeded loop; failures print the seed and manifests.
//! `PORIN_INDEX_CASES` widens a run.

use porin_model::parse_documents;
use porin_policy::{Cluster, Direction, Variant};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const KEYS: [&str; 4] = ["app", "tier", "env", "zone"];
const VALUES: [&str; 4] = ["a", "b", "c", "d"];
const NAMESPACES: [&str; 3] = ["n1", "n2", "n3"];

struct Gen(StdRng);

impl Gen {
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        v.choose(&mut self.0).unwrap()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.0.random_bool(p)
    }
    fn selector(&mut self, depth: u32) -> String {
        let (k, v, w) = (*self.pick(&KEYS), *self.pick(&VALUES), *self.pick(&VALUES));
        let leaf = depth == 0 || self.chance(0.5);
        if leaf {
            return match self.0.random_range(0..9) {
                0 => "all()".into(),
                1 | 2 => format!("{k} == '{v}'"),
                3 => format!("{k} != '{v}'"),
                4 => format!("has({k})"),
                5 => format!("!has({k})"),
                6 => format!("{k} in {{'{v}', '{w}'}}"),
                7 => format!("{k} not in {{'{v}'}}"),
                _ => format!("{k} starts with '{v}'"),
            };
        }
        let (a, b) = (self.selector(depth - 1), self.selector(depth - 1));
        match self.0.random_range(0..3) {
            0 => format!("({a}) && ({b})"),
            1 => format!("({a}) || ({b})"),
            _ => format!("!({a})"),
        }
    }
    fn labels(&mut self) -> Value {
        let mut m = serde_json::Map::new();
        for k in KEYS {
            if self.chance(0.6) {
                m.insert(k.into(), json!(*self.pick(&VALUES)));
            }
        }
        Value::Object(m)
    }
    fn k8s_selector(&mut self) -> Value {
        match self.0.random_range(0..4) {
            0 => json!({}),
            1 => json!({"matchLabels": {*self.pick(&KEYS): *self.pick(&VALUES)}}),
            2 => {
                let op = *self.pick(&["In", "NotIn", "Exists", "DoesNotExist"]);
                let key = *self.pick(&KEYS);
                if op == "In" || op == "NotIn" {
                    json!({"matchExpressions": [{"key": key, "operator": op, "values": [*self.pick(&VALUES), *self.pick(&VALUES)]}]})
                } else {
                    json!({"matchExpressions": [{"key": key, "operator": op}]})
                }
            }
            _ => json!({"matchLabels": {*self.pick(&KEYS): *self.pick(&VALUES), *self.pick(&KEYS): *self.pick(&VALUES)}}),
        }
    }
    fn docs(&mut self) -> Vec<Value> {
        let mut docs = vec![];
        for ns in NAMESPACES {
            docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": *self.pick(&["x", "y"])}}}));
        }
        for t in ["t1", "t2"] {
            docs.push(json!({"apiVersion": "porin.io/v1", "kind": "Tier", "metadata": {"name": t},
                             "spec": {"order": *self.pick(&[10.0, 20.0]), "defaultAction": *self.pick(&["Deny", "Pass"])}}));
        }
        for i in 0..self.0.random_range(1..30) {
            docs.push(json!({"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": format!("pod{i}"), "namespace": *self.pick(&NAMESPACES), "labels": self.labels()},
                             "spec": {"serviceAccountName": *self.pick(&["sa1", "sa2"]), "containers": [{"name": "c"}]},
                             "status": {"podIP": format!("10.0.0.{}", i + 1)}}));
        }
        for i in 0..self.0.random_range(0..60) {
            let name = format!("p{i}");
            let ns = *self.pick(&NAMESPACES);
            let types = self.pick(&[&["Ingress"][..], &["Egress"][..], &["Ingress", "Egress"][..]]).to_vec();
            let staged = self.chance(0.15);
            match self.0.random_range(0..3) {
                0 => {
                    let kind = if staged { "StagedKubernetesNetworkPolicy" } else { "NetworkPolicy" };
                    let api = if staged { "porin.io/v1" } else { "networking.k8s.io/v1" };
                    let mut spec = json!({"podSelector": self.k8s_selector(), "policyTypes": types});
                    if staged {
                        spec["stagedAction"] = json!("Set");
                    }
                    docs.push(json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}));
                }
                k => {
                    let global = k == 2;
                    let kind = match (global, staged) {
                        (true, true) => "StagedGlobalNetworkPolicy",
                        (true, false) => "GlobalNetworkPolicy",
                        (false, true) => "StagedNetworkPolicy",
                        (false, false) => "NetworkPolicy",
                    };
                    let mut spec = json!({"tier": *self.pick(&["default", "t1", "t2"]), "order": *self.pick(&[1.0, 5.0, 100.0]),
                                          "selector": self.selector(3), "types": types});
                    if global && self.chance(0.3) {
                        spec["namespaceSelector"] = json!(*self.pick(&["team == 'x'", "all()"]));
                    }
                    if self.chance(0.1) {
                        spec["serviceAccountSelector"] = json!("projectcalico.org/name == 'sa1'");
                    }
                    if staged {
                        spec["stagedAction"] = json!("Set");
                    }
                    let mut meta = json!({"name": name});
                    if !global {
                        meta["namespace"] = json!(ns);
                    }
                    docs.push(json!({"apiVersion": "porin.io/v1", "kind": kind, "metadata": meta, "spec": spec}));
                }
            }
        }
        docs
    }
}

#[test]
fn indexed_applicable_equals_linear_scan() {
    let cases: u64 = std::env::var("PORIN_INDEX_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(400);
    let mut nonempty = 0usize;
    for seed in 0..cases {
        let mut g = Gen(StdRng::seed_from_u64(seed));
        let text = serde_json::to_string_pretty(&Value::Array(g.docs())).unwrap();
        let parsed = parse_documents("generated.json", &text).unwrap_or_else(|e| panic!("seed {seed}: {e:#?}\n{text}"));
        let c = Cluster::build(parsed.iter().map(|d| &d.resource)).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
        for e in &c.endpoints {
            for v in [Variant::Enforced, Variant::Pending] {
                for dir in [Direction::Ingress, Direction::Egress] {
                    let indexed = c.applicable(v, e, dir);
                    let linear = c.applicable_linear(v, e, dir);
                    assert_eq!(indexed, linear, "seed {seed}: {} {v:?} {dir:?}\n{text}", e.id());
                    nonempty += usize::from(!linear.is_empty());
                }
            }
        }
    }
    // The generator must produce selections, or the comparison says nothing.
    assert!(nonempty > (cases as usize) * 5, "only {nonempty} non-empty applicable lists");
}

#[test]
fn a_stale_index_falls_back_to_the_linear_scan() {
    let text = r#"[
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "n1", "labels": {"app": "a"}},
       "spec": {"containers": [{"name": "c"}]}, "status": {"podIP": "10.0.0.1"}},
      {"apiVersion": "porin.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "n1"},
       "spec": {"selector": "app == 'b'", "types": ["Ingress"]}}
    ]"#;
    let parsed = parse_documents("t.json", text).unwrap();
    let mut c = Cluster::build(parsed.iter().map(|d| &d.resource)).unwrap();
    let e = c.endpoints[0].clone();
    assert!(c.applicable(Variant::Enforced, &e, Direction::Ingress).is_empty());
    // A policy added by hand after the build (the index does not know it) is still found.
    let mut p = c.policies[0].clone();
    p.selector = porin_selector::Selector::parse("app == 'a'").unwrap();
    p.id.name = "q".into();
    c.policies.push(p);
    let n = c.policies.len() - 1;
    c.tiers.iter_mut().find(|t| t.name == "default").unwrap().policies.push(n);
    assert_eq!(c.applicable(Variant::Enforced, &e, Direction::Ingress), c.applicable_linear(Variant::Enforced, &e, Direction::Ingress));
    assert_eq!(c.applicable(Variant::Enforced, &e, Direction::Ingress).len(), 1);
    c.reindex();
    assert_eq!(c.applicable(Variant::Enforced, &e, Direction::Ingress).len(), 1);
}
