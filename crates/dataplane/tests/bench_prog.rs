//! Micro-measurement of per-packet program cost with BPF_PROG_TEST_RUN.
//! Not a benchmark suite: run by hand, as root:
//!   cargo test -p porin-dataplane --release --test bench_prog -- --ignored --nocapture

mod common;

use common::*;
use porin_dataplane::{Action, Dataplane, DataplaneOptions, Direction, EndpointPolicy, PolicyEntry};

const IFX: u32 = 1;

fn allow(identity: u32, proto: u8, port: u16) -> PolicyEntry {
    PolicyEntry { identity: Some(identity), proto: Some(proto), port_prefix: Some((port, 16)), action: Action::Allow, rule_id: 1 }
}

fn setup(fs: &Bpffs, n_entries: u32) -> Dataplane {
    let mut dp = Dataplane::open(&fs.pin_dir(), &DataplaneOptions::default()).unwrap();
    let mut ipc: Vec<(ipnet::IpNet, u32)> = vec![("0.0.0.0/0".parse().unwrap(), 2), ("10.0.0.2/32".parse().unwrap(), 100)];
    // many peers, one identity each (realistic ipcache population)
    for i in 0..n_entries {
        ipc.push((format!("10.{}.{}.{}/32", 1 + i / 65536, (i / 256) % 256, i % 256).parse().unwrap(), 1000 + i));
    }
    dp.set_ipcache(ipc).unwrap();
    let mut egress: Vec<PolicyEntry> = (0..n_entries.saturating_sub(1)).map(|i| allow(1000 + i, TCP, 80)).collect();
    egress.push(allow(100, TCP, 80));
    dp.set_endpoint(IFX, EndpointPolicy { endpoint_id: 1, ingress: vec![], egress, addrs: vec!["10.0.0.1".parse().unwrap()] }).unwrap();
    dp
}

fn avg_repeat(dp: &Dataplane, dir: Direction, f: &[u8], repeat: u32) -> u64 {
    dp.test_run(dir, f, IFX, repeat).unwrap().ns_per_run
}

/// New flows: a distinct tuple per run (repeat = 1 each, so every run takes
/// the full new-flow path including the conntrack insert and an event).
fn avg_new_flows(dp: &Dataplane, n: u16) -> (u64, bool) {
    let mut total = 0;
    let mut all_pass = true;
    for i in 0..n {
        let r = dp.test_run(Direction::Egress, &frame("10.0.0.1", "10.0.0.2", TCP, &tcp(10000 + i, 80, SYN)), IFX, 1).unwrap();
        all_pass &= r.passed();
        total += r.ns_per_run;
    }
    (total / u64::from(n), all_pass)
}

#[test]
#[ignore = "micro-measurement; run by hand with --ignored --nocapture"]
fn per_packet_cost() {
    if !kernel_tests_enabled() {
        return;
    }
    const R: u32 = 200_000;
    let mut rows = Vec::new();
    for n in [10u32, 10_000] {
        let fs = Bpffs::new();
        let mut dp = setup(&fs, n);
        let mut ev = dp.events().unwrap();
        let est = frame("10.0.0.1", "10.0.0.2", TCP, &tcp(9999, 80, ACK));
        assert!(dp.test_run(Direction::Egress, &frame("10.0.0.1", "10.0.0.2", TCP, &tcp(9999, 80, SYN)), IFX, 1).unwrap().passed());
        let _ = ev.drain();
        let (new_allowed, ok) = avg_new_flows(&dp, 2000);
        assert!(ok);
        let _ = ev.drain();
        rows.push((format!("new flow allowed (SYN, one CT insert, event), {n} policy entries"), new_allowed));
        rows.push((format!("established CT hit (TCP ACK), {n} policy entries"), avg_repeat(&dp, Direction::Egress, &est, R)));
        let _ = ev.drain();
        let denied = frame("10.0.0.1", "10.0.0.2", TCP, &tcp(9999, 81, SYN));
        rows.push((format!("new flow no-match drop (event, ring drained once), {n} policy entries"), avg_repeat(&dp, Direction::Egress, &denied, R)));
        if n == 10 {
            dp.remove_endpoint(IFX).unwrap();
            rows.push(("no endpoint entry (fail-closed drop + event)".to_string(), avg_repeat(&dp, Direction::Egress, &est, R)));
            let _ = ev.drain();
        }
    }
    println!("\nper-packet cost via BPF_PROG_TEST_RUN (avg ns/packet):");
    for (name, ns) in &rows {
        println!("  {ns:>6} ns  {name}");
    }
}
