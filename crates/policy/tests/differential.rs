//! Differential test: the fast class-based matrix equals the reference evaluator on random small clusters
//! with random policies of every kind (Kubernetes, namespaced and global tiered policies, tiers with Deny and
//! Pass defaults, network sets, staged Set/Delete), for the enforced and the pending policy set, on several
//! ports and protocols.
//!
//! A seeded loop (no shrinking, but every failure prints its seed and the generated manifests as JSON, which
//! `porin` and the tests load as they are). `PORIN_DIFF_CASES` and `PORIN_DIFF_SEED` widen or replay a run.

use porin_model::{Protocol, parse_documents, validate_set};
use porin_policy::{Cluster, Variant};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const NAMESPACES: [&str; 3] = ["n1", "n2", "n3"];
const KEYS: [&str; 3] = ["app", "tier", "env"];
const VALUES: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 3] = [80, 81, 8080];
const PORT_NAMES: [&str; 3] = ["http", "dns", "metrics"];
const SAS: [&str; 2] = ["sa1", "sa2"];
const POLICY_NAMES: [&str; 3] = ["p1", "p2", "p3"];
const SELECTORS: [&str; 10] = [
    "all()",
    "app == 'a'",
    "has(tier)",
    "app in {'a', 'b'}",
    "env != 'c'",
    "!has(app)",
    "app == 'a' && tier == 'b'",
    "app == 'b' || env == 'a'",
    "projectcalico.org/serviceaccount == 'sa1'",
    "tier not in {'a'}",
];
const NS_SELECTORS: [&str; 5] = ["all()", "team == 'x'", "env == 'prod'", "projectcalico.org/name == 'n1'", "!has(team)"];
const NETS: [&str; 6] = ["10.1.0.0/16", "10.2.0.0/24", "10.0.0.0/8", "10.3.0.4/30", "10.1.0.2/32", "192.0.2.0/24"];

struct Gen {
    rng: StdRng,
}

impl Gen {
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        v.choose(&mut self.rng).unwrap()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }
    fn upto(&mut self, n: usize) -> usize {
        self.rng.random_range(0..=n)
    }

    fn labels(&mut self, keys: &[&str], vals: &[&str]) -> Value {
        let mut m = serde_json::Map::new();
        for k in keys {
            if self.chance(0.6) {
                m.insert(k.to_string(), json!(self.pick(vals)));
            }
        }
        Value::Object(m)
    }

    fn k8s_label_selector(&mut self, keys: &[&str], vals: &[&str]) -> Value {
        match self.upto(3) {
            0 => json!({}),
            1 => json!({"matchLabels": {*self.pick(keys): *self.pick(vals)}}),
            2 => {
                let op = *self.pick(&["In", "NotIn", "Exists", "DoesNotExist"]);
                let key = *self.pick(keys);
                if op == "In" || op == "NotIn" {
                    json!({"matchExpressions": [{"key": key, "operator": op, "values": [*self.pick(vals), *self.pick(vals)]}]})
                } else {
                    json!({"matchExpressions": [{"key": key, "operator": op}]})
                }
            }
            _ => json!({"matchLabels": {*self.pick(keys): *self.pick(vals)}, "matchExpressions": [{"key": *self.pick(keys), "operator": "Exists"}]}),
        }
    }

    fn namespace(&mut self, name: &str) -> Value {
        let labels = self.labels(&["team", "env"], &["x", "y", "prod", "dev"]);
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    }

    fn pod(&mut self, i: usize, namespaces: &[&str]) -> Value {
        let ns = *self.pick(namespaces);
        let ns_index = NAMESPACES.iter().position(|n| *n == ns).unwrap() + 1;
        let labels = self.labels(&KEYS, &VALUES);
        let mut ports = Vec::new();
        for name in PORT_NAMES {
            if self.chance(0.4) {
                let proto = *self.pick(&["TCP", "UDP", "SCTP"]);
                ports.push(json!({"name": name, "containerPort": *self.pick(&PORTS), "protocol": proto}));
            }
        }
        let mut status = json!({});
        if !self.chance(0.05) {
            status = json!({"podIP": format!("10.{ns_index}.0.{}", i + 1)});
        }
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod{i}"), "namespace": ns, "labels": labels},
            "spec": {"serviceAccountName": *self.pick(&SAS), "containers": [{"name": "c", "ports": ports}]},
            "status": status,
        })
    }

    fn net_set(&mut self, i: usize, namespaces: &[&str]) -> Value {
        let nets: Vec<&str> = (0..1 + self.upto(1)).map(|_| *self.pick(&NETS)).collect();
        let labels = self.labels(&KEYS, &VALUES);
        if self.chance(0.5) {
            json!({"apiVersion": "porin.io/v1", "kind": "GlobalNetworkSet",
                   "metadata": {"name": format!("gset{i}"), "labels": labels}, "spec": {"nets": nets}})
        } else {
            json!({"apiVersion": "porin.io/v1", "kind": "NetworkSet",
                   "metadata": {"name": format!("set{i}"), "namespace": *self.pick(namespaces), "labels": labels},
                   "spec": {"nets": nets}})
        }
    }

    fn k8s_peer(&mut self) -> Value {
        match self.upto(3) {
            0 => json!({"podSelector": self.k8s_label_selector(&KEYS, &VALUES)}),
            1 => json!({"namespaceSelector": self.k8s_label_selector(&["team", "env"], &["x", "y", "prod", "dev"])}),
            2 => json!({"podSelector": self.k8s_label_selector(&KEYS, &VALUES),
                        "namespaceSelector": self.k8s_label_selector(&["team", "env"], &["x", "prod"])}),
            _ => {
                let (cidr, except): (&str, &[&str]) =
                    *self.pick(&[("10.0.0.0/8", &["10.1.0.0/16", "10.2.0.0/24"][..]), ("10.1.0.0/16", &["10.1.0.2/32"][..]), ("10.2.0.0/24", &[][..])]);
                let except: Vec<&str> = except.iter().copied().filter(|_| self.chance(0.6)).collect();
                json!({"ipBlock": {"cidr": cidr, "except": except}})
            }
        }
    }

    fn k8s_port(&mut self) -> Value {
        let mut p = serde_json::Map::new();
        if self.chance(0.7) {
            p.insert("protocol".into(), json!(*self.pick(&["TCP", "UDP", "SCTP"])));
        }
        match self.upto(3) {
            0 => {}
            1 => {
                p.insert("port".into(), json!(*self.pick(&PORTS)));
            }
            2 => {
                p.insert("port".into(), json!(*self.pick(&PORT_NAMES)));
            }
            _ => {
                p.insert("port".into(), json!(80));
                p.insert("endPort".into(), json!(*self.pick(&[80, 81, 8080])));
            }
        }
        Value::Object(p)
    }

    fn k8s_spec(&mut self) -> Value {
        let mut spec = serde_json::Map::new();
        spec.insert("podSelector".into(), self.k8s_label_selector(&KEYS, &VALUES));
        if self.chance(0.5) {
            let t = self.pick(&[&["Ingress"][..], &["Egress"][..], &["Ingress", "Egress"][..]]).to_vec();
            spec.insert("policyTypes".into(), json!(t));
        }
        for (dir, peer_key) in [("ingress", "from"), ("egress", "to")] {
            if self.chance(0.7) {
                let rules: Vec<Value> = (0..self.upto(2))
                    .map(|_| {
                        let mut r = serde_json::Map::new();
                        if self.chance(0.7) {
                            r.insert(peer_key.into(), json!((0..self.upto(2)).map(|_| self.k8s_peer()).collect::<Vec<_>>()));
                        }
                        if self.chance(0.5) {
                            r.insert("ports".into(), json!((0..self.upto(2)).map(|_| self.k8s_port()).collect::<Vec<_>>()));
                        }
                        Value::Object(r)
                    })
                    .collect();
                spec.insert(dir.into(), json!(rules));
            }
        }
        Value::Object(spec)
    }

    fn entity(&mut self, with_ports: bool) -> Value {
        let mut e = serde_json::Map::new();
        if self.chance(0.25) {
            e.insert("nets".into(), json!([*self.pick(&NETS)]));
        }
        if self.chance(0.15) {
            e.insert("notNets".into(), json!([*self.pick(&NETS)]));
        }
        if self.chance(0.4) {
            e.insert("selector".into(), json!(*self.pick(&SELECTORS)));
        }
        if self.chance(0.15) {
            e.insert("notSelector".into(), json!(*self.pick(&SELECTORS)));
        }
        if self.chance(0.25) {
            let s = if self.chance(0.2) { "global()" } else { *self.pick(&NS_SELECTORS) };
            e.insert("namespaceSelector".into(), json!(s));
        }
        if self.chance(0.1) {
            let sa = if self.chance(0.5) {
                json!({"names": [*self.pick(&SAS)]})
            } else {
                json!({"selector": format!("projectcalico.org/name == '{}'", self.pick(&SAS))})
            };
            e.insert("serviceAccounts".into(), sa);
        }
        if with_ports {
            let port = |g: &mut Gen| -> Value {
                match g.upto(3) {
                    0 => json!(*g.pick(&PORTS)),
                    1 => json!(*g.pick(&["80:81", "81:8080", "1:100"])),
                    _ => json!(*g.pick(&PORT_NAMES)),
                }
            };
            if self.chance(0.5) {
                let n = 1 + self.upto(1);
                e.insert("ports".into(), json!((0..n).map(|_| port(self)).collect::<Vec<_>>()));
            }
            if self.chance(0.15) {
                e.insert("notPorts".into(), json!([port(self)]));
            }
        }
        Value::Object(e)
    }

    fn rule(&mut self) -> Value {
        let action = *self.pick(&["Allow", "Allow", "Deny", "Pass", "Log"]);
        let mut r = serde_json::Map::new();
        r.insert("action".into(), json!(action));
        let proto = match self.upto(5) {
            0 | 1 => None,
            2 | 3 => Some(*self.pick(&["TCP", "UDP"])),
            4 => Some("SCTP"),
            _ => {
                r.insert("notProtocol".into(), json!(*self.pick(&["TCP", "UDP"])));
                None
            }
        };
        if let Some(p) = proto {
            r.insert("protocol".into(), json!(p));
        }
        let (src_ports, dst_ports) = (false, proto.is_some());
        if self.chance(0.6) {
            r.insert("source".into(), self.entity(src_ports));
        }
        if self.chance(0.6) {
            r.insert("destination".into(), self.entity(dst_ports));
        }
        if self.chance(0.05) {
            r.insert("ipVersion".into(), json!(4));
        }
        Value::Object(r)
    }

    fn calico_spec(&mut self, global: bool, tiers: &[&str]) -> Value {
        let mut spec = serde_json::Map::new();
        let tier = *self.pick(tiers);
        if tier != "default" || self.chance(0.3) {
            spec.insert("tier".into(), json!(tier));
        }
        if self.chance(0.7) {
            spec.insert("order".into(), json!(*self.pick(&[1.0, 5.0, 5.0, 999.0, 1000.0, 1001.0])));
        }
        if self.chance(0.8) {
            spec.insert("selector".into(), json!(*self.pick(&SELECTORS)));
        }
        if global && self.chance(0.3) {
            spec.insert("namespaceSelector".into(), json!(*self.pick(&NS_SELECTORS)));
        }
        if self.chance(0.1) {
            spec.insert("serviceAccountSelector".into(), json!(format!("projectcalico.org/name == '{}'", self.pick(&SAS))));
        }
        if self.chance(0.4) {
            let t = self.pick(&[&["Ingress"][..], &["Egress"][..], &["Ingress", "Egress"][..]]).to_vec();
            spec.insert("types".into(), json!(t));
        }
        for dir in ["ingress", "egress"] {
            if self.chance(0.7) {
                let n = self.upto(3);
                spec.insert(dir.into(), json!((0..n).map(|_| self.rule()).collect::<Vec<_>>()));
            }
        }
        Value::Object(spec)
    }

    fn cluster(&mut self) -> Vec<Value> {
        let mut docs = Vec::new();
        let nns = 1 + self.upto(2);
        let namespaces: Vec<&str> = NAMESPACES[..nns].to_vec();
        for ns in &namespaces {
            docs.push(self.namespace(ns));
        }
        // Pods come in replicas (same namespace, labels, account) so that the matrix's classes are not all
        // singletons; a replica may differ in its named ports, and always differs in its address.
        let mut pods: Vec<Value> = Vec::new();
        for i in 0..3 + self.upto(7) {
            let mut p = self.pod(i, &namespaces);
            if !pods.is_empty() && self.chance(0.6) {
                let mut twin = self.pick(&pods).clone();
                twin["metadata"]["name"] = p["metadata"]["name"].clone();
                let ns = twin["metadata"]["namespace"].as_str().unwrap();
                let ns_index = NAMESPACES.iter().position(|n| *n == ns).unwrap() + 1;
                twin["status"] = json!({"podIP": format!("10.{ns_index}.0.{}", i + 1)});
                if self.chance(0.2) {
                    twin["spec"]["containers"] = p["spec"]["containers"].clone();
                }
                p = twin;
            }
            pods.push(p);
        }
        docs.extend(pods);
        for i in 0..self.upto(2) {
            docs.push(self.net_set(i, &namespaces));
        }
        let mut tiers = vec!["default"];
        for name in ["t1", "t2"] {
            if self.chance(0.5) {
                let mut spec = serde_json::Map::new();
                if self.chance(0.8) {
                    spec.insert("order".into(), json!(*self.pick(&[10.0, 10.0, 2_000_000.0])));
                }
                spec.insert("defaultAction".into(), json!(*self.pick(&["Deny", "Pass"])));
                docs.push(json!({"apiVersion": "porin.io/v1", "kind": "Tier", "metadata": {"name": name}, "spec": spec}));
                tiers.push(name);
            }
        }
        if self.chance(0.2) {
            docs.push(json!({"apiVersion": "porin.io/v1", "kind": "ClusterSettings", "metadata": {"name": "default"},
                             "spec": {"defaultEndpointAction": "Deny"}}));
        }
        // Policies: (kind, namespace, name) unique per kind.
        let mut used = std::collections::BTreeSet::new();
        let mut enforced: Vec<(&str, Option<&str>, &str)> = Vec::new();
        for _ in 0..self.upto(5) {
            let kind = *self.pick(&["K8s", "NetworkPolicy", "GlobalNetworkPolicy"]);
            let ns = if kind == "GlobalNetworkPolicy" { None } else { Some(*self.pick(&namespaces)) };
            let name = *self.pick(&POLICY_NAMES);
            if !used.insert((kind, ns, name)) {
                continue;
            }
            enforced.push((kind, ns, name));
            docs.push(self.policy(kind, ns, name, &tiers, false));
        }
        for _ in 0..self.upto(3) {
            // Staged: mostly aimed at an enforced policy, sometimes new.
            let (kind, ns, name) = if !enforced.is_empty() && self.chance(0.7) {
                *self.pick(&enforced)
            } else {
                let kind = *self.pick(&["K8s", "NetworkPolicy", "GlobalNetworkPolicy"]);
                let ns = if kind == "GlobalNetworkPolicy" { None } else { Some(*self.pick(&namespaces)) };
                (kind, ns, *self.pick(&POLICY_NAMES))
            };
            if !used.insert((staged_kind(kind), ns, name)) {
                continue;
            }
            docs.push(self.policy(kind, ns, name, &tiers, true));
        }
        docs
    }

    fn policy(&mut self, kind: &str, ns: Option<&str>, name: &str, tiers: &[&str], staged: bool) -> Value {
        let delete = staged && self.chance(0.35);
        let mut meta = json!({"name": name});
        if let Some(ns) = ns {
            meta["namespace"] = json!(ns);
        }
        let (api, k) = match kind {
            "K8s" if staged => ("porin.io/v1", "StagedKubernetesNetworkPolicy"),
            "K8s" => ("networking.k8s.io/v1", "NetworkPolicy"),
            "NetworkPolicy" if staged => ("porin.io/v1", "StagedNetworkPolicy"),
            "NetworkPolicy" => ("porin.io/v1", "NetworkPolicy"),
            _ if staged => ("porin.io/v1", "StagedGlobalNetworkPolicy"),
            _ => ("porin.io/v1", "GlobalNetworkPolicy"),
        };
        let mut spec = if delete {
            json!({})
        } else if kind == "K8s" {
            self.k8s_spec()
        } else {
            self.calico_spec(kind == "GlobalNetworkPolicy", tiers)
        };
        if staged {
            spec["stagedAction"] = json!(if delete { "Delete" } else { "Set" });
        }
        json!({"apiVersion": api, "kind": k, "metadata": meta, "spec": spec})
    }
}

fn staged_kind(kind: &str) -> &'static str {
    match kind {
        "K8s" => "StagedK8s",
        "NetworkPolicy" => "StagedNetworkPolicy",
        _ => "StagedGlobalNetworkPolicy",
    }
}

const CHECKS: [(Protocol, u16); 4] = [(Protocol::Tcp, 80), (Protocol::Tcp, 8080), (Protocol::Udp, 81), (Protocol::Sctp, 80)];

fn check_case(seed: u64) {
    let mut g = Gen { rng: StdRng::seed_from_u64(seed) };
    let docs = g.cluster();
    let text = serde_json::to_string_pretty(&Value::Array(docs)).unwrap();
    let parsed = parse_documents("generated.json", &text)
        .unwrap_or_else(|e| panic!("seed {seed}: generated input does not parse: {e:#?}\n{text}"));
    validate_set(&parsed, &Default::default())
        .unwrap_or_else(|e| panic!("seed {seed}: generated input does not validate: {e:#?}\n{text}"));
    let c = Cluster::build(parsed.iter().map(|d| &d.resource)).unwrap();
    for v in [Variant::Enforced, Variant::Pending] {
        for (proto, port) in CHECKS {
            let fast = c.matrix(v, proto, port);
            let reference = c.matrix_reference(v, proto, port);
            if fast != reference {
                let diffs: Vec<String> = (0..fast.pods.len())
                    .flat_map(|i| (0..fast.pods.len()).map(move |j| (i, j)))
                    .filter(|&(i, j)| fast.allowed(i, j) != reference.allowed(i, j))
                    .map(|(i, j)| format!("{} -> {}: fast {} reference {}", fast.pods[i], fast.pods[j], fast.allowed(i, j), reference.allowed(i, j)))
                    .collect();
                panic!("seed {seed} {v:?} {proto}/{port}: matrix differs from the reference:\n{}\n{text}", diffs.join("\n"));
            }
        }
    }
}

#[test]
fn fast_matrix_equals_reference_on_random_clusters() {
    if let Some(seed) = std::env::var("PORIN_DIFF_SEED").ok().and_then(|s| s.parse().ok()) {
        check_case(seed);
        return;
    }
    let cases: u64 = std::env::var("PORIN_DIFF_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    for seed in 0..cases {
        check_case(seed);
    }
}

/// The generator really produces what the test claims to cover (guards against a generator that silently
/// degenerates into empty policy sets).
#[test]
fn generator_covers_every_kind() {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut staged_differs = 0;
    for seed in 0..200 {
        let mut g = Gen { rng: StdRng::seed_from_u64(seed) };
        let docs = g.cluster();
        for d in &docs {
            let mut k = d["kind"].as_str().unwrap().to_string();
            if let Some(a) = d["spec"]["stagedAction"].as_str() {
                k = format!("{k}/{a}");
            }
            *kinds.entry(k).or_default() += 1;
        }
        let text = serde_json::to_string(&Value::Array(docs)).unwrap();
        let parsed = parse_documents("g.json", &text).unwrap();
        let c = Cluster::build(parsed.iter().map(|d| &d.resource)).unwrap();
        if c.matrix(Variant::Enforced, Protocol::Tcp, 80) != c.matrix(Variant::Pending, Protocol::Tcp, 80) {
            staged_differs += 1;
        }
    }
    for k in [
        "Namespace",
        "Pod",
        "NetworkPolicy",
        "GlobalNetworkPolicy",
        "Tier",
        "GlobalNetworkSet",
        "NetworkSet",
        "ClusterSettings",
        "StagedNetworkPolicy/Set",
        "StagedNetworkPolicy/Delete",
        "StagedGlobalNetworkPolicy/Set",
        "StagedGlobalNetworkPolicy/Delete",
        "StagedKubernetesNetworkPolicy/Set",
        "StagedKubernetesNetworkPolicy/Delete",
    ] {
        assert!(kinds.get(k).copied().unwrap_or(0) >= 5, "{k}: {kinds:?}");
    }
    assert!(staged_differs >= 10, "pending differs from enforced in only {staged_differs} clusters");
}
