//! `porin recommend` end to end in the agent at 1M stored flow records: reading the records from a flow store
//! (the agent's `query`), merging them into an observation set while reading, and recommending. Ignored by
//! default (a benchmark); docs/benchmarks.md:
//! `cargo test --release -p porin-agent --test recommend_timing -- --ignored --nocapture`

#[path = "../../policy/benches/synth/mod.rs"]
mod synth;

use std::time::Instant;

use porin_agent::api::recommend::observation_set;
use porin_flow::FlowRecord;
use porin_policy::Cluster;
use porin_policy::recommend::{Options, recommend_set};
use serde_json::json;

fn record(t: u64, src: (&str, &str), dst: Option<(&str, &str)>, port: u16, egress: bool, flows: u64) -> FlowRecord {
    let pod = |(ns, p): (&str, &str), port: Option<u16>| json!({"kind": "pod", "namespace": ns, "pod": p, "port": port});
    let dst = match dst {
        Some(d) => pod(d, Some(port)),
        None => json!({"kind": "world", "ip": "93.184.216.34", "port": port}),
    };
    let v = json!({
        "start_time": porin_flow::time::format_rfc3339(t), "end_time": porin_flow::time::format_rfc3339(t + 5_000_000_000),
        "node": "n0", "verdict": "allowed", "direction": if egress { "egress" } else { "ingress" },
        "reporter": if egress { "src" } else { "dst" }, "ip_family": "v4", "protocol": "tcp",
        "src": pod(src, None), "dst": dst,
        "packets_src_to_dst": 10, "bytes_src_to_dst": 1000, "packets_dst_to_src": 10, "bytes_dst_to_src": 1000,
        "flows_started": flows, "flows_completed": flows, "flows_open": 0, "open": false, "aggregation": "five_tuple",
        "enforced_trace": [],
    });
    serde_json::from_value(v).unwrap()
}

#[test]
#[ignore]
fn timing_recommend_from_a_flow_store_of_1m_records() {
    let rs = synth::cluster(1_000);
    let c = Cluster::build(rs.iter()).unwrap();
    let pods: Vec<(String, String)> = c.endpoints.iter().map(|e| (e.namespace.clone(), e.name.clone())).collect();
    let tmp = tempfile::tempdir().unwrap();
    let opts = porin_flow::FlowStoreOptions { max_bytes: 8 << 30, max_age: std::time::Duration::from_secs(1 << 30), fsync: false };
    let mut store = porin_flow::FlowStore::open(tmp.path().join("flows.redb"), opts).unwrap();
    // The same shapes as porin-policy's 1M-observation benchmark (xorshift; ~120k distinct shapes).
    let base = 1_764_700_000u64 * 1_000_000_000;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut batch = Vec::with_capacity(50_000);
    let t = Instant::now();
    for i in 0..1_000_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let s = (x % 1000) as usize;
        let d = ((x >> 20) % 20) as usize;
        let dst = (d != 19).then(|| &pods[(s / 10 * 10 + d * 37) % pods.len()]);
        let port = [8080u16, 443, 5432][((x >> 40) % 3) as usize];
        let (sn, sp) = &pods[s];
        batch.push(record(base + (i % 86_400) * 1_000_000_000, (sn, sp), dst.map(|(a, b)| (a.as_str(), b.as_str())), port, i % 2 == 0, 1 + x % 3));
        if batch.len() == 50_000 {
            store.append_at(&batch, base + 86_400 * 1_000_000_000).unwrap();
            batch.clear();
        }
    }
    eprintln!("stored 1M records in {:?}", t.elapsed());
    let q = porin_flow::filter::parse_args(["--since".to_string(), "2025-01-01T00:00:00Z".to_string()], porin_flow::time::now_unix()).unwrap();
    let mut times = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let records = store.query(&q).unwrap();
        let t1 = Instant::now();
        let set = observation_set(&records);
        let t2 = Instant::now();
        drop(records);
        let t3 = Instant::now();
        let rec = recommend_set(&c, &set, &Options::default());
        let t4 = Instant::now();
        assert!(!rec.policies.is_empty());
        times.push((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0, set.records(), set.len()));
    }
    times.sort_by_key(|t| t.4);
    let (q, m, d, r, total, n, shapes) = times[1];
    eprintln!(
        "1M stored records, {} pods (median of 3): query {q:?}, merge into {shapes} shapes ({n} records) {m:?}, free the records {d:?}, recommend {r:?}, total {total:?}",
        c.endpoints.len()
    );
}
