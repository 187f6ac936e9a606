//! Flow visibility on real packets: records with policy context, observe, follow, metrics, loss accounting.

use super::*;

// ---- Flow visibility: records with policy context, observe, follow, metrics, loss accounting ----

/// Flow records of `porin observe -o json ARGS`.
fn observe(lab: &TestLab, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["observe", "-o", "json"];
    a.extend_from_slice(args);
    lab.ok(&a).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `ns/pod` of a record end.
fn who(e: &Value) -> String {
    format!("{}/{}", e["namespace"].as_str().unwrap_or("?"), e["pod"].as_str().unwrap_or("?"))
}

/// The records of `from -> to:port` reported at `direction`, waiting (flush interval) up to 5 s for one.
fn wait_records(lab: &TestLab, from: &str, to: &str, port: u16, direction: &str) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let recs: Vec<Value> = observe(lab, &["--from-pod", from, "--to-pod", to, "--to-port", &port.to_string(), "--protocol", "tcp", "--last", "1000"])
            .into_iter()
            .filter(|r| r["direction"] == direction && who(&r["src"]) == from && who(&r["dst"]) == to)
            .collect();
        if !recs.is_empty() || t0.elapsed() > Duration::from_secs(5) {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET /metrics from the agent's `--metrics-listen 127.0.0.1:PORT` (inside the node's netns).
fn scrape(lab: &TestLab, port: u16) -> String {
    let ns = lab.lab().nodes()[0].netns.clone();
    porin_lab::netns::in_netns(&ns, move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        Ok(out)
    })
    .unwrap()
}

/// The value of one series (exact name with labels) in OpenMetrics text; 0 when absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' '))).map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[test]
fn flow_records_carry_verdicts_traces_and_staged_verdicts_observe_follows_metrics_agree() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let lab = TestLab::up("ktfl", 1, std::slice::from_ref(&cluster), Some("--flow-flush-interval 200ms --metrics-listen 127.0.0.1:19464"));
    lab.apply(&[&fixture("tests/fixtures/flows/guard-z.yaml")]);
    let l = lab.lab();
    let tcp = |from: &str, to: &str, port: u16| l.probe_one(from, to, port, porin_lab::Proto::Tcp, Duration::from_millis(500)).unwrap();
    // One attempt each (500 ms: before the first SYN retransmission, so one 5-tuple per attempt).
    assert!(tcp("y/a", "z/a", 80), "y -> z:80 must be allowed");
    assert!(!tcp("x/a", "z/a", 80), "x -> z must be denied");
    assert!(!tcp("y/a", "z/a", 81), "y -> z:81 must be denied (end of tier)");
    assert!(tcp("y/a", "z/c", 80), "y/a -> z/c:80 is allowed (the deny is only staged)");

    // (a) allowed: the ingress record at z/a names the allowing rule; the egress record at y/a has no policy.
    let r = wait_records(&lab, "y/a", "z/a", 80, "ingress");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["verdict"], "allowed");
    assert_eq!(r[0]["enforced_trace"], serde_json::json!(["security|guard-z|1|allow"]));
    assert!(r[0].get("pending_verdict").is_none(), "no staged policy applies to z/a: {}", r[0]);
    assert_eq!((r[0]["src"]["labels"]["pod"].as_str(), r[0]["dst"]["labels"]["pod"].as_str()), (Some("a"), Some("a")));
    assert_eq!(r[0]["flows_started"], 1);
    let e = wait_records(&lab, "y/a", "z/a", 80, "egress");
    assert_eq!((e.len(), &e[0]["verdict"], &e[0]["enforced_trace"]), (1, &Value::from("allowed"), &serde_json::json!([])), "{e:#?}");

    // (b) denied by the explicit Deny rule.
    let r = wait_records(&lab, "x/a", "z/a", 80, "ingress");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!((r[0]["verdict"].as_str(), r[0]["drop_reason"].as_str()), (Some("denied"), Some("drop_policy_deny")));
    assert_eq!(r[0]["enforced_trace"], serde_json::json!(["security|guard-z|0|deny"]));
    assert_eq!(r[0]["flows_started"], 1);

    // (c) denied at the end of the tier.
    let r = wait_records(&lab, "y/a", "z/a", 81, "ingress");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["verdict"], "denied");
    assert_eq!(r[0]["enforced_trace"], serde_json::json!(["security|guard-z|-1|deny"]));

    // (d) staged: enforced allowed, pending would-deny with the staged policy's trace.
    let r = wait_records(&lab, "y/a", "z/c", 80, "ingress");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["verdict"], "allowed");
    assert_eq!(r[0]["enforced_trace"], serde_json::json!(["security|guard-z|1|allow"]));
    assert_eq!(r[0]["pending_verdict"], "would_deny", "{}", r[0]);
    assert_eq!(r[0]["pending_trace"], serde_json::json!(["security|staged:lockdown-c|0|deny"]));
    let staged = observe(&lab, &["--verdict", "would-deny", "--last", "100"]);
    assert!(staged.iter().all(|r| r["pending_verdict"] == "would_deny") && staged.iter().any(|r| who(&r["dst"]) == "z/c"), "{staged:#?}");

    // A namespace-scoped token reads only flows with an end in its namespace, the other end and foreign trace
    // entries hidden; its filters cannot find hidden endpoints.
    let scoped = lab.ok(&["token", "create", "team-y", "--role", "scoped", "--namespace", "y", "--tier", "app"]).trim().to_string();
    let as_scoped = |args: &[&str]| -> Vec<Value> {
        let out = Command::new(bin())
            .args(["observe", "-o", "json"])
            .args(args)
            .env("PORIN_LAB_STATE_DIR", lab.state_dir.path())
            .env("PORIN_SERVER", &lab.server)
            .env("PORIN_TOKEN", &scoped)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let mine = as_scoped(&["--last", "1000"]);
    assert!(!mine.is_empty());
    for r in &mine {
        let ns = |e: &Value| e["namespace"].as_str().map(str::to_string);
        assert!(ns(&r["src"]).as_deref() == Some("y") || ns(&r["dst"]).as_deref() == Some("y"), "out of scope: {r}");
        assert!(who(&r["src"]) != "x/a" && who(&r["dst"]) != "z/a" && who(&r["dst"]) != "z/c", "a hidden end is named: {r}");
        for t in r["enforced_trace"].as_array().into_iter().flatten() {
            assert!(!t.as_str().unwrap().contains("guard-z"), "a foreign tier's policy is named: {r}");
        }
    }
    assert!(as_scoped(&["--from-pod", "x/a", "--last", "1000"]).is_empty(), "a filter found a hidden endpoint");
    assert!(as_scoped(&["--to-pod", "z/a", "--last", "1000"]).is_empty(), "a filter found a hidden endpoint");

    // `--verdict denied` shows exactly the denied ones.
    let denied = observe(&lab, &["--verdict", "denied", "--last", "1000"]);
    assert!(denied.iter().all(|r| r["verdict"] == "denied"), "{denied:#?}");
    let into_z: std::collections::BTreeSet<(String, String, u64)> = observe(&lab, &["--verdict", "denied", "--to-namespace", "z", "--protocol", "tcp", "--last", "1000"])
        .iter()
        .map(|r| (who(&r["src"]), who(&r["dst"]), r["dst"]["port"].as_u64().unwrap()))
        .collect();
    let want: std::collections::BTreeSet<(String, String, u64)> =
        [("x/a", "z/a", 80), ("y/a", "z/a", 81)].iter().map(|(a, b, p)| (a.to_string(), b.to_string(), *p)).collect();
    assert_eq!(into_z, want);

    // --follow: a new denied connection shows up live.
    let mut child = std::process::Command::new(bin())
        .args(["observe", "-f", "-o", "json", "--verdict", "denied", "--from-pod", "x/b"])
        .env("PORIN_SERVER", &lab.server)
        .env("PORIN_LAB_STATE_DIR", lab.state_dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let t_conn = Instant::now();
    assert!(!tcp("x/b", "z/b", 80));
    let got = rx.recv_timeout(Duration::from_secs(3));
    let latency = t_conn.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let line = got.expect("observe --follow printed nothing within 3 s of a denied connection");
    let r: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((who(&r["src"]), who(&r["dst"]), r["verdict"].as_str()), ("x/b".into(), "z/b".into(), Some("denied")), "{r}");
    eprintln!("observe --follow: denied connection shown {:.0} ms after the attempt", latency.as_secs_f64() * 1e3);

    // /metrics agrees with what the test generated: two connections denied by rule 0 (x/a, x/b -> z).
    // Flow records flush every flush interval and the dataplane's drop counters refresh every 2 s: wait for
    // both to have caught up (bounded), then assert exact values.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&lab, 19464);
        let caught_up = metric(&m, r#"porin_dataplane_drops_total{reason="drop_policy_deny"}"#) >= 3
            && metric(&m, r#"porin_policy_rule_connections_total{tier="security",policy="guard-z",rule="0"}"#) >= 2;
        if caught_up || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(metric(&m, r#"porin_policy_rule_connections_total{tier="security",policy="guard-z",rule="0"}"#), 2, "{m}");
    // End of tier: the TCP attempt to :81, plus whatever else reaches z (IPv6 neighbour discovery, …):
    // exactly what the store holds under that rule.
    let end_of_tier = observe(&lab, &["--policy", "security|guard-z|-1|deny", "--last", "100000"]);
    let n: u64 = end_of_tier.iter().map(|r| r["flows_started"].as_u64().unwrap()).sum();
    assert!(end_of_tier.iter().filter(|r| r["protocol"] == "tcp").count() == 1, "{end_of_tier:#?}");
    assert_eq!(metric(&m, r#"porin_policy_rule_connections_total{tier="security",policy="guard-z",rule="-1"}"#), n, "{m}");
    // y/a -> z/a:80 and y/a -> z/c:80 were allowed by rule 1 (ingress records).
    assert_eq!(metric(&m, r#"porin_policy_rule_connections_total{tier="security",policy="guard-z",rule="1"}"#), 2, "{m}");
    let denied_ingress: u64 = observe(&lab, &["--verdict", "denied", "--last", "100000"])
        .iter()
        .filter(|r| r["direction"] == "ingress")
        .map(|r| r["flows_started"].as_u64().unwrap())
        .sum();
    assert_eq!(metric(&m, r#"porin_flow_flows_total{verdict="denied",direction="ingress"}"#), denied_ingress, "{m}");
    assert!(denied_ingress >= 3, "{denied_ingress}");
    assert!(metric(&m, r#"porin_dataplane_drops_total{reason="drop_policy_deny"}"#) >= 3, "{m}");
    assert_eq!(metric(&m, "porin_dataplane_endpoints"), 9, "{m}");
    assert!(metric(&m, "porin_policy_programming_latency_seconds_count") >= 2, "{m}");
    assert_eq!(metric(&m, r#"porin_flow_lost_events_total{stage="ringbuf"}"#), 0, "{m}");
    // The API serves the same text (authenticated); status shows the pipeline.
    let st = lab.status();
    assert_eq!(st["flows"]["lostTotal"], 0, "{st}");
    assert!(st["flows"]["counters"]["records_stored"].as_u64().unwrap() > 0, "{st}");
    assert!(st["flows"]["storeStats"]["records"].as_u64().unwrap() > 0, "{st}");
    let table = lab.ok(&["status"]);
    assert!(table.contains("Flow events lost 0"), "{table}");
}

#[test]
fn flow_loss_is_counted_when_the_ring_buffer_overflows() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    // A one-page ring buffer (~39 events) and a flood of denied datagrams. Denied packets are summed per
    // flow in the kernel (here: 64 flows between two drains, then they go to the ring one by one); every
    // datagram comes from its own source port, so the aggregates fill up and the ring overflows.
    let lab = TestLab::up(
        "ktfr",
        1,
        std::slice::from_ref(&cluster),
        Some("--dp-ringbuf-bytes 4096 --dp-denied-aggregates 64 --flow-flush-interval 200ms"),
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deny-y.yaml");
    std::fs::write(&p, DENY_Y_INGRESS).unwrap();
    lab.apply(&[p.to_str().unwrap()]);
    let to = SocketAddr::from((lab.ip("y/b"), 81));
    const N: u64 = 20_000;
    porin_lab::netns::in_netns(&lab.netns("x/a"), || {
        for i in 0..N {
            let s = UdpSocket::bind(("0.0.0.0", 20_000 + i as u16)).unwrap();
            s.send_to(b"flood", to).unwrap();
        }
        Ok(())
    })
    .unwrap();
    // Every datagram is in a record or counted as lost (the kernel refreshes its counters every 2 s).
    let t0 = Instant::now();
    let (mut recorded, mut st);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        recorded = observe(&lab, &["--from-pod", "x/a", "--to-pod", "y/b", "--protocol", "udp", "--verdict", "denied", "--first", "100000"])
            .iter()
            .map(|r| r["packets_src_to_dst"].as_u64().unwrap())
            .sum::<u64>();
        st = lab.status();
        let lost = st["flows"]["lostTotal"].as_u64().unwrap();
        if recorded + lost >= N || t0.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let f = &st["flows"];
    let ringbuf = f["lostByStage"]["ringbuf"].as_u64().unwrap();
    eprintln!("flood of {N}: {recorded} recorded, lost {}", f["lostByStage"]);
    assert!(ringbuf > 0, "a 4 KiB ring buffer did not overflow: {f}");
    assert_eq!(st["dataplane"]["counters"]["ringbuf_full"].as_u64().unwrap(), ringbuf, "{st}");
    assert!(recorded + f["lostTotal"].as_u64().unwrap() >= N, "silent loss: {recorded} recorded + {} lost < {N} sent", f["lostTotal"]);
    assert!(recorded > 0 && recorded < N, "{recorded}");
    assert!(f["counters"]["denied_aggregated_packets"].as_u64().unwrap() > 0, "the kernel aggregated denied packets: {f}");
    let table = lab.ok(&["status"]);
    assert!(table.contains(&format!("ringbuf={ringbuf}")), "{table}");
    assert!(table.contains("Denied, summed"), "{table}");
}
