//! The synthetic clusters the benchmarks use are valid, and the fast matrix agrees with the reference on one.

use std::collections::BTreeSet;

use porin_model::{Document, Protocol, validate_set};
use porin_policy::{Cluster, Variant};

#[path = "../benches/synth/mod.rs"]
mod synth;

#[test]
fn synthetic_cluster_validates_and_matrix_equals_reference() {
    let rs = synth::cluster(300);
    let docs: Vec<Document> = rs
        .iter()
        .enumerate()
        .map(|(i, r)| Document { source: "synth".into(), doc: i + 1, prefix: String::new(), resource: r.clone() })
        .collect();
    validate_set(&docs, &BTreeSet::new()).unwrap_or_else(|e| panic!("{e:#?}"));
    let c = Cluster::build(rs.iter()).unwrap();
    assert_eq!(c.endpoints.len(), 300);
    for (proto, port) in [(Protocol::Tcp, 8080), (Protocol::Tcp, 9090), (Protocol::Udp, 53)] {
        let m = c.matrix(Variant::Enforced, proto, port);
        assert_eq!(m, c.matrix_reference(Variant::Enforced, proto, port), "{proto}/{port}");
        // Not trivially all-allowed or all-denied.
        let n = m.pods.len();
        assert!(m.count_allowed() > n && m.count_allowed() < n * (n - 1), "{proto}/{port}: {}", m.count_allowed());
    }
}

/// Wall-clock numbers without criterion: `cargo test --release -p porin-policy --test bench_synth -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_10k() {
    for pods in [1_000, 10_000] {
        let rs = synth::cluster(pods);
        let t = std::time::Instant::now();
        let c = Cluster::build(rs.iter()).unwrap();
        eprintln!("{pods} pods: build {:?}", t.elapsed());
        let t = std::time::Instant::now();
        let m = c.matrix(Variant::Enforced, Protocol::Tcp, 8080);
        eprintln!("{pods} pods: matrix {:?} ({} allowed)", t.elapsed(), m.count_allowed());
    }
}
