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

    // 10k pods, 10k policies (the 905 above plus 9,095 more, ~10 per app): the selector index keeps the trace
    // independent of the policy count; the same cluster without its index scans every policy per side.
    let mut rs = rs10k.clone();
    rs.extend(synth::extra_policies(10_000, 10_000 - c10k.policies.len()));
    let many = Cluster::build(rs.iter()).unwrap();
    eprintln!("10k pods, {} policies", many.policies.len());
    let mut linear = many.clone();
    linear.selector_index = Default::default();
    let src = &many.endpoints[many.endpoint("ns3/app1-0").unwrap()];
    let dst = &many.endpoints[many.endpoint("ns3/app2-5").unwrap()];
    g.bench_function("trace_10k_pods_10k_policies", |b| {
        b.iter(|| many.verdict(Peer::Endpoint(black_box(src)), Peer::Endpoint(black_box(dst)), &pkt))
    });
    g.bench_function("trace_10k_pods_10k_policies_linear_scan", |b| {
        b.iter(|| linear.verdict(Peer::Endpoint(black_box(src)), Peer::Endpoint(black_box(dst)), &pkt))
    });
    g.bench_function("trace_10k_pods_1k_policies_linear_scan", |b| {
        let mut c = c10k.clone();
        c.selector_index = Default::default();
        let src = &c10k.endpoints[c10k.endpoint("ns3/app1-0").unwrap()];
        let dst = &c10k.endpoints[c10k.endpoint("ns3/app2-5").unwrap()];
        b.iter(|| c.verdict(Peer::Endpoint(black_box(src)), Peer::Endpoint(black_box(dst)), &pkt))
    });
    g.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
