//! Engine benchmarks: building the Cluster, the reachability matrix for one port at 1k pods / ~100 policies
//! and 10k pods / ~1k policies (goal < 1 s on one core), and a single traced verdict (goal < 10 µs).
//! Results and the command are in docs/benchmarks.md ("Policy engine").

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use porin_model::Protocol;
use porin_policy::{Cluster, Packet, Peer, Variant};

mod synth;

fn build(pods: usize) -> (Vec<porin_model::Resource>, Cluster) {
    let rs = synth::cluster(pods);
    let c = Cluster::build(rs.iter()).unwrap();
    let (k8s, gnp) = synth::policy_counts(&rs);
    eprintln!("synthetic cluster: {} pods, {} namespaces, {k8s} K8s policies + {gnp} GNPs", c.endpoints.len(), c.namespaces.len());
    (rs, c)
}

fn benches(cr: &mut Criterion) {
    let (rs1k, c1k) = build(1_000);
    let (rs10k, c10k) = build(10_000);

    let mut g = cr.benchmark_group("build");
    g.sample_size(10);
    g.bench_function("cluster_1k_pods", |b| b.iter(|| Cluster::build(black_box(&rs1k).iter()).unwrap()));
    g.bench_function("cluster_10k_pods", |b| b.iter(|| Cluster::build(black_box(&rs10k).iter()).unwrap()));
    g.finish();

    let mut g = cr.benchmark_group("matrix");
    g.sample_size(10);
    g.bench_function("1k_pods_100_policies_tcp_8080", |b| {
        b.iter(|| c1k.matrix(Variant::Enforced, Protocol::Tcp, black_box(8080)))
    });
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("10k_pods_1k_policies_tcp_8080", |b| {
        b.iter(|| c10k.matrix(Variant::Enforced, Protocol::Tcp, black_box(8080)))
    });
    g.finish();

    let mut g = cr.benchmark_group("verdict");
    let src = &c10k.endpoints[c10k.endpoint("ns3/app1-0").unwrap()];
    let dst = &c10k.endpoints[c10k.endpoint("ns3/app2-5").unwrap()];
    let pkt = Packet::l4(Protocol::Tcp, 8080);
    g.bench_function("trace_10k_pods_1k_policies", |b| {
        b.iter(|| c10k.verdict(Peer::Endpoint(black_box(src)), Peer::Endpoint(black_box(dst)), &pkt))
    });
    let ip = Peer::Ip("192.0.2.7".parse().unwrap());
    g.bench_function("trace_external_ip_to_pod_10k", |b| b.iter(|| c10k.verdict(black_box(ip), Peer::Endpoint(dst), &pkt)));
    g.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
