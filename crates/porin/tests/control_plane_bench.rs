//! Control-plane benchmark (manual): `cargo test --release -p porin --test control_plane_bench -- --ignored --nocapture`.
//! Numbers go to docs/benchmarks.md under "## Control plane".

#[path = "control_plane/common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

/// One JSON `List` (the YAML loader caps a stream at 1024 documents; a List has no such cap).
fn policies(n: usize) -> String {
    let mut items = vec![serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})];
    for i in 0..n {
        items.push(serde_json::json!({
            "apiVersion": "porin.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("p{i}"), "namespace": "bench", "labels": {"n": i.to_string()}},
            "spec": {"selector": format!("app == 'a{i}'"),
                     "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [1000 + i % 5000]}}]},
        }));
    }
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn watch_latency(a: &Agent, label: &str) {
    for watchers in [1usize, 4, 16] {
        let mut ws: Vec<_> = (0..watchers).map(|_| a.watch("pnp")).collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut lat = Vec::new();
        let mut ack = Vec::new();
        for i in 0..20 {
            let f = a.write("one.yaml", &app_policy(&format!("w{watchers}-{i}"), "bench", "default"));
            let t0 = Instant::now();
            a.ok(&["apply", "-f", &f]);
            ack.push(t0.elapsed().as_secs_f64() * 1e3);
            let mut worst = 0f64;
            for (_, r) in ws.iter_mut() {
                let line = read_line(r);
                assert!(line.contains(&format!("\"w{watchers}-{i}\"")), "{line}");
                worst = worst.max(t0.elapsed().as_secs_f64() * 1e3);
            }
            lat.push(worst);
        }
        for (c, _) in ws.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        println!(
            "{label}: {watchers:>2} watchers: apply ack p50 {:.1} ms; last watcher notified p50 {:.1} ms, p99 {:.1} ms (20 writes)",
            pct(&mut ack, 0.5),
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
    }
}

#[test]
#[ignore]
fn bench_apply_10k_and_watch_latency() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let f = a.write("10k.json", &policies(10_000));
    let t0 = Instant::now();
    let out = a.ok(&["apply", "-f", &f]);
    let total = t0.elapsed();
    assert_eq!(out.lines().filter(|l| l.ends_with(" created")).count(), 10_001);
    println!("embedded: apply 10k policies (one txn): {:.2} s total, {:.1} µs/object", total.as_secs_f64(), total.as_secs_f64() * 1e6 / 10_001.0);
    let t0 = Instant::now();
    a.ok(&["apply", "-f", &f]);
    println!("embedded: re-apply 10k unchanged: {:.2} s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    loop {
        let s = a.ok(&["status", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        if v["policies"] == 10_000 {
            println!("embedded: engine recompute after the 10k apply: {} ms (status seen after {:.2} s)", v["recomputeMillis"], t0.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    watch_latency(&a, "embedded");
    drop(a);

    let etcd_dir = tempfile::tempdir().unwrap();
    if std::process::Command::new("etcd").arg("--version").output().is_err() {
        println!("etcd not installed: skipping the etcd half");
        return;
    }
    let (c, p) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{c}");
    let mut etcd = std::process::Command::new("etcd")
        .args(["--data-dir", etcd_dir.path().join("etcd").to_str().unwrap(), "--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}"), "--initial-advertise-peer-urls", &format!("http://127.0.0.1:{p}")])
        .args(["--initial-cluster", &format!("default=http://127.0.0.1:{p}"), "--max-txn-ops", "1024"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", c)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = etcd_dir.path().join("agent");
    std::fs::create_dir_all(&d).unwrap();
    let a = Agent::start(&d, &["--datastore", "etcd", "--etcd-endpoints", &url]);
    let f = a.write("1k.json", &policies(1000));
    let t0 = Instant::now();
    a.ok(&["apply", "-f", &f]);
    let total = t0.elapsed();
    println!("etcd: apply 1k policies (one txn, --max-txn-ops 1024): {:.2} s total, {:.1} µs/object", total.as_secs_f64(), total.as_secs_f64() * 1e6 / 1001.0);
    watch_latency(&a, "etcd");
    drop(a);
    let _ = etcd.kill();
    let _ = etcd.wait();
}
