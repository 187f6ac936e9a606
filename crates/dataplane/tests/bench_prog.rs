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
        let _ = ev.drain();
        let denied_udp = frame("10.0.0.1", "10.0.0.2", UDP, &udp(9999, 9, b"x"));
        rows.push((format!("denied UDP flow, repeated (event, ring drained once), {n} policy entries"), avg_repeat(&dp, Direction::Egress, &denied_udp, R)));
        let _ = ev.drain();
        // As the agent runs it: denied packets summed per flow in the kernel (no event per packet).
        ev.denied_aggregates().unwrap().set_enabled(true).unwrap();
        rows.push((format!("denied UDP flow, repeated, aggregated (as with the agent), {n} policy entries"), avg_repeat(&dp, Direction::Egress, &denied_udp, R)));
        rows.push((format!("denied TCP tuple, repeated, aggregated, {n} policy entries"), avg_repeat(&dp, Direction::Egress, &denied, R)));
        ev.denied_aggregates().unwrap().set_enabled(false).unwrap();
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

/// Per-packet cost of packet capture on an established TCP packet: no capture anywhere, a capture on another
/// interface (both: one array lookup on the ifindex), a capture on this interface whose filter matches nothing
/// (+ the hash lookup of its configuration and the filter), and one that copies every packet (128-byte snap
/// length, ring drained between rounds). Variants interleave round by round; medians of the rounds.
#[test]
#[ignore = "micro-measurement; run by hand with --ignored --nocapture"]
fn capture_cost() {
    use porin_dataplane::abi::{CapConfig, CapFilter};
    use porin_dataplane::capture::CaptureMaps;
    use std::collections::BTreeMap;
    if !kernel_tests_enabled() {
        return;
    }
    const R: u32 = 20_000;
    const ROUNDS: usize = 21;
    let fs = Bpffs::new();
    let mut dp = setup(&fs, 10);
    let mut ev = dp.events().unwrap();
    let mut cap = CaptureMaps::open_pinned(dp.pin_dir()).unwrap();
    let est = frame("10.0.0.1", "10.0.0.2", TCP, &tcp(9999, 80, ACK));
    assert!(dp.test_run(Direction::Egress, &frame("10.0.0.1", "10.0.0.2", TCP, &tcp(9999, 80, SYN)), IFX, 1).unwrap().passed());
    let _ = ev.drain();
    let mut nothing = CapConfig { snaplen: 128, n_filters: 1, ..Default::default() };
    nothing.filters[0] = CapFilter { proto: 17, port_lo: 9, port_hi: 9, ..Default::default() };
    let mut same_proto = CapConfig { snaplen: 128, n_filters: 1, ..Default::default() };
    same_proto.filters[0] = CapFilter { proto: 6, port_lo: 1, port_hi: 1, ..Default::default() };
    let mut maybe = CapConfig { snaplen: 128, n_filters: 2, ..Default::default() };
    maybe.filters[0] = CapFilter { proto: 6, port_lo: 1, port_hi: 1, ..Default::default() };
    maybe.filters[1] = CapFilter { proto: 6, port_lo: 9000, port_hi: 9000, ..Default::default() };
    let every = CapConfig { snaplen: 128, n_filters: 0, ..Default::default() };
    let variants: Vec<(&str, BTreeMap<u32, CapConfig>)> = vec![
        ("no capture on the node (one array lookup)", BTreeMap::new()),
        ("a capture on another interface (same lookup)", BTreeMap::from([(IFX + 1000, every)])),
        ("a capture on this interface matching nothing (UDP/9: summary, other protocol)", BTreeMap::from([(IFX, nothing)])),
        ("a capture on this interface matching nothing (TCP/1: summary, port outside)", BTreeMap::from([(IFX, same_proto)])),
        ("TCP/1 or TCP/9000 (ports 1..9000 pass the summary: config lookup + filters)", BTreeMap::from([(IFX, maybe)])),
        ("capturing every packet (128-byte snap length)", BTreeMap::from([(IFX, every)])),
    ];
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); variants.len()];
    let mut bad = 0;
    for _ in 0..ROUNDS {
        for (i, (_, want)) in variants.iter().enumerate() {
            cap.set(want).unwrap();
            let r = dp.test_run(Direction::Egress, &est, IFX, R).unwrap();
            assert!(r.passed());
            samples[i].push(r.ns_per_run);
            while cap.try_next(&mut bad).is_some() {}
        }
    }
    let stats = cap.stats().unwrap();
    let median = |v: &mut Vec<u64>| {
        v.sort();
        v[v.len() / 2]
    };
    let base = median(&mut samples[0].clone()) as f64;
    println!("\npacket capture, established TCP packet via BPF_PROG_TEST_RUN (median of {ROUNDS} rounds of {R}):");
    for (i, (name, _)) in variants.iter().enumerate() {
        let m = median(&mut samples[i]);
        println!("  {m:>6} ns  x{:.2}  {name}", m as f64 / base);
    }
    println!("  (capture ring: {} captured, {} lost)", stats.captured, stats.lost);
}
