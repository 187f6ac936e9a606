//! Compile time at 1k endpoints / 10k rules (the shape of `crates/bench/src/synth.rs`: 100 Calico policies of
//! 100 allow rules on the server, 998 filler pods in 10 label groups with one small policy). Ignored by default:
//! `cargo test -p porin-calc --release --test timing -- --ignored --nocapture`.

use std::time::Instant;

use porin_calc::{State, compile};
use porin_policy::ir::Cluster;
use serde_json::{Value, json};

fn pod(name: &str, labels: Value, ip: String) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "bench", "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "bench"}]},
           "status": {"podIP": ip}})
}

/// `first_port`: the port of the first filler rule (the "one rule changed" knob).
fn synth(rules: usize, fillers: usize, first_port: u16) -> Cluster {
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
        pod("client", json!({"app": "client"}), "10.244.0.2".into()),
        pod("server", json!({"app": "server"}), "10.244.0.3".into()),
    ];
    for i in 0..fillers {
        let ip = format!("10.245.{}.{}", i / 250, i % 250 + 1);
        docs.push(pod(&format!("filler-{i}"), json!({"app": format!("filler-{}", i % 10), "role": "filler"}), ip));
    }
    docs.push(json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "fillers", "namespace": "bench"},
        "spec": {"selector": "role == 'filler'", "order": 10,
                 "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": "role == 'filler'"},
                              "destination": {"ports": [8080]}}]}}));
    for p in 0..rules.div_ceil(100) {
        let mut ingress = Vec::new();
        for j in p * 100..((p + 1) * 100).min(rules) {
            if j + 1 == rules {
                ingress.push(json!({"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'client'"},
                                    "destination": {"ports": [5201, 7001, 7002, 7004]}}));
            } else {
                let h = j / 100;
                let port = if j == 0 { first_port } else { 20000 + (j % 100) as u16 };
                ingress.push(json!({"action": "Allow", "protocol": "TCP",
                    "source": {"nets": [format!("10.250.{}.{}/32", h / 256, h % 256)]},
                    "destination": {"ports": [port]}}));
            }
        }
        docs.push(json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": format!("rules-{p:04}"), "namespace": "bench"},
            "spec": {"selector": "app == 'server'", "order": 100 + p, "types": ["Ingress"], "ingress": ingress}}));
    }
    let text = serde_json::to_string(&Value::Array(docs)).unwrap();
    let docs = porin_model::parse_documents("synthetic", &text).unwrap_or_else(|e| panic!("{e:?}"));
    Cluster::build(docs.iter().map(|d| &d.resource)).unwrap()
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn compile_time_1k_endpoints_10k_rules() {
    let rules: usize = std::env::var("PORIN_CALC_RULES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let c = synth(rules, 998, 20000);
    let mut state = State::new();
    let t = Instant::now();
    let a = compile(&c, &mut state, &|_| true);
    let cold = t.elapsed();
    let cold_walks = state.stats.walks;
    let t = Instant::now();
    let b = compile(&c, &mut state, &|_| true);
    let same = t.elapsed();
    assert_eq!(a, b);
    let mut change = Vec::new();
    for k in 0..3u16 {
        let c2 = synth(rules, 998, 30000 + k);
        let walks = state.stats.walks;
        let t = Instant::now();
        compile(&c2, &mut state, &|_| true);
        change.push((t.elapsed(), state.stats.walks - walks, state.stats.computed.len()));
    }
    println!(
        "{} endpoints, {rules} rules: cold {cold:?} ({cold_walks} walks); unchanged {same:?} ({} walks); \
         one rule changed {change:?} (time, walks, (endpoint, direction) recompiled)",
        c.endpoints.len(),
        state.stats.walks - cold_walks - change.iter().map(|x| x.1).sum::<u64>(),
    );
}
