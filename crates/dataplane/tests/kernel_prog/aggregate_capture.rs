//! Denied-packet aggregation and packet capture.

use super::*;

/// Denied-packet aggregation: with it on, denied packets make no events but exact per-flow sums that a
/// drain turns into one DENIED event per flow; allowed flows still send events; with it off again, every
/// denied packet is an event. When no aggregate entry can be made (map full), the packet goes to the ring:
/// sent = aggregated + ring events, always.
#[test]
fn denied_packets_aggregate_per_flow_and_drain_exactly() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![], vec![allow(PEER_ID, TCP, 80), deny(PEER_ID, TCP, 81)]);
    let agg = h.ev.denied_aggregates().expect("the dataplane has aggregates");
    assert!(!agg.enabled(), "off by default");
    agg.set_enabled(true).unwrap();
    let f81 = syn(POD, PEER, 40000, 81);
    let u9 = frame(POD, PEER, UDP, &udp(5000, 9, b"x"));
    for _ in 0..5 {
        h.drop_(Egress, &f81);
    }
    let r = h.dp.test_run(Egress, &u9, IFX, 1000).unwrap(); // 1000 runs in one call
    assert!(r.dropped());
    h.pass(Egress, &syn(POD, PEER, 40001, 80));
    let ring = h.events();
    assert_eq!(ring.len(), 1, "only the allowed flow's event is in the ring: {ring:?}");
    assert_eq!(ring[0].kind, EventType::NewAllowed);

    let mut out = Vec::new();
    let st = h.ev.denied_aggregates().unwrap().drain(&mut out).unwrap();
    let evs: Vec<Event> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!((st.entries, st.packets), (2, 1005), "{evs:?}");
    let tcp81 = evs.iter().find(|e| e.dport == 81).expect("the TCP flow");
    assert_eq!((tcp81.kind, tcp81.reason, tcp81.packets, tcp81.sport, tcp81.rule_id), (EventType::Denied, Reason::DropPolicyDeny, 5, 40000, 81));
    assert_eq!(tcp81.bytes, 5 * f81.len() as u64);
    assert!(tcp81.first_ts_ns <= tcp81.ts_ns && tcp81.first_ts_ns > 0);
    assert_eq!(tcp81.src, Some(POD.parse().unwrap()));
    let udp9: u64 = evs.iter().filter(|e| e.dport == 9).map(|e| e.packets).sum();
    assert_eq!(udp9, 1000);
    assert!(evs.iter().filter(|e| e.dport == 9).all(|e| e.reason == Reason::DropNoPolicy && e.proto == UDP));
    // drained means gone: the next drain is empty, the drop counters saw every packet
    let mut again = Vec::new();
    assert_eq!(h.ev.denied_aggregates().unwrap().drain(&mut again).unwrap(), Default::default());
    assert_eq!(h.ctr(Reason::DropPolicyDeny) + h.ctr(Reason::DropNoPolicy), 1005);

    // the next generation counts on from zero
    h.drop_(Egress, &f81);
    let mut out = Vec::new();
    assert_eq!(h.ev.denied_aggregates().unwrap().drain(&mut out).unwrap().packets, 1);

    // a policy change within one generation (another deny rule for the same flow) is another aggregate
    h.drop_(Egress, &f81);
    h.drop_(Egress, &f81);
    h.policy(vec![], vec![allow(PEER_ID, TCP, 80), PolicyEntry { rule_id: 99, ..deny(PEER_ID, TCP, 81) }]);
    for _ in 0..3 {
        h.drop_(Egress, &f81);
    }
    let mut out = Vec::new();
    h.ev.denied_aggregates().unwrap().drain(&mut out).unwrap();
    let mut by_rule: Vec<(u32, u64)> = out.into_iter().map(|e| e.map(|e| (e.rule_id, e.packets)).unwrap()).collect();
    by_rule.sort();
    assert_eq!(by_rule, [(81, 2), (99, 3)]);

    // off: events per packet again
    h.ev.denied_aggregates().unwrap().set_enabled(false).unwrap();
    h.drop_(Egress, &f81);
    h.drop_(Egress, &f81);
    assert_eq!(h.events().iter().filter(|e| e.kind == EventType::Denied).count(), 2);
}

#[test]
fn denied_aggregation_falls_back_to_events_when_its_map_is_full() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![], vec![]);
    h.ev.denied_aggregates().unwrap().set_enabled(true).unwrap();
    const CAP: u32 = 16384; // porin_dagg_v1 max_entries
    const SENT: u32 = CAP + 300;
    for i in 0..SENT {
        let sport = 1024 + (i % 60000) as u16;
        let dport = 1000 + (i / 60000) as u16;
        h.drop_(Egress, &frame(POD, PEER, UDP, &udp(sport, dport, b"x")));
    }
    let ring = h.events().into_iter().filter(|e| e.kind == EventType::Denied).count() as u64;
    let mut out = Vec::new();
    let st = h.ev.denied_aggregates().unwrap().drain(&mut out).unwrap();
    assert_eq!(st.entries, u64::from(CAP));
    assert_eq!(ring, u64::from(SENT - CAP), "the overflow went to the ring");
    assert_eq!(st.packets + ring + h.ctr(Reason::RingbufFull), u64::from(SENT));
}

/// Packet capture: nothing is copied without a capture (verdicts as usual); a captured interface copies
/// exactly the packets a filter matches, passed or dropped, up to the snap length, in both directions; a
/// capture elsewhere copies nothing here; a full ring counts what it could not take. The verdict never
/// changes.
#[test]
fn capture_copies_matching_packets_and_never_changes_the_verdict() {
    use porin_dataplane::abi::{CapConfig, CapFilter};
    use porin_dataplane::capture::CaptureMaps;
    use std::collections::BTreeMap;
    let Some(mut h) = H::new(DataplaneOptions { capture_ringbuf_bytes: Some(4096), ..Default::default() }) else { return };
    h.policy(vec![allow(PEER_ID, UDP, 53)], vec![allow(PEER_ID, UDP, 53)]);
    let mut cap = CaptureMaps::open_pinned(h.dp.pin_dir()).expect("capture maps pinned by open");
    let drain = |cap: &mut CaptureMaps| {
        let mut bad = 0;
        let v: Vec<_> = std::iter::from_fn(|| cap.try_next(&mut bad)).collect();
        assert_eq!(bad, 0, "every record decodes");
        v
    };
    let q = frame(POD, PEER, UDP, &udp(1000, 53, b"query"));
    let other = frame(POD, PEER, UDP, &udp(1000, 54, b"query"));
    let reply = frame(PEER, POD, UDP, &udp(53, 1000, b"answer"));
    let syn80 = syn(POD, PEER, 1001, 80);

    // No capture: verdicts as usual, nothing emitted.
    h.pass(Egress, &q);
    h.drop_(Egress, &other);
    h.drop_(Egress, &syn80);
    assert!(drain(&mut cap).is_empty());
    assert_eq!(cap.stats().unwrap(), Default::default());

    // A capture on another interface only: still nothing here.
    let f53 = CapFilter { proto: UDP, port_lo: 53, port_hi: 53, ..Default::default() };
    let mut cfg = CapConfig { snaplen: 40, n_filters: 1, ..Default::default() };
    cfg.filters[0] = f53;
    cap.set(&BTreeMap::from([(IFX + 1000, cfg)])).unwrap();
    h.pass(Egress, &q);
    h.drop_(Egress, &other);
    assert!(drain(&mut cap).is_empty());

    // This interface, UDP/53 (source or destination port), 40 bytes: the query and the reply, not port 54 or TCP.
    cap.set(&BTreeMap::from([(IFX, cfg)])).unwrap();
    h.pass(Egress, &q);
    h.pass(Ingress, &reply);
    h.drop_(Egress, &other);
    h.drop_(Egress, &syn80);
    let got = drain(&mut cap);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].hdr.dir, got[0].hdr.passed, got[0].hdr.proto, got[0].hdr.sport, got[0].hdr.dport), (Egress as u8, 1, UDP, 1000, 53));
    assert_eq!((got[1].hdr.dir, got[1].hdr.sport, got[1].hdr.dport), (Ingress as u8, 53, 1000));
    assert_eq!((got[0].hdr.len as usize, got[0].hdr.cap_len), (q.len(), 40));
    assert_eq!(got[0].data, q[..40]);
    assert_eq!(got[1].data, reply[..40]);
    assert_eq!(got[0].hdr.ifindex, IFX);

    // A dropped packet a filter matches is captured too (marked), with the whole frame under the snap length.
    cfg.snaplen = 9000;
    cfg.filters[1] = CapFilter { proto: UDP, port_lo: 54, port_hi: 60, ..Default::default() };
    cfg.n_filters = 2;
    cap.set(&BTreeMap::from([(IFX, cfg)])).unwrap();
    h.drop_(Egress, &other);
    h.drop_(Egress, &syn80);
    let got = drain(&mut cap);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].hdr.passed, got[0].hdr.dport, got[0].data.as_slice()), (0, 54, other.as_slice()));
    assert_eq!(cap.stats().unwrap(), porin_dataplane::capture::CaptureStats { captured: 3, lost: 0 });

    // No filter: everything, ARP included. A burst overflows the 4 KiB ring: counted, verdicts unchanged.
    cap.set(&BTreeMap::from([(IFX, CapConfig { snaplen: 9000, n_filters: 0, ..Default::default() })])).unwrap();
    let big = frame(POD, PEER, UDP, &udp(1000, 53, &[7u8; 600]));
    for _ in 0..20 {
        h.pass(Egress, &big);
    }
    h.pass(Ingress, &eth(0x0806, &[0u8; 28]));
    let got = drain(&mut cap);
    let s = cap.stats().unwrap();
    assert!(s.lost > 0, "a 4 KiB ring cannot hold 21 records of 650 bytes: {s:?}");
    assert_eq!(got.len() as u64 + s.lost, 21, "every matching packet is captured or counted lost");
    assert_eq!(s.captured, 3 + got.len() as u64);

    // Off again: nothing more.
    cap.set(&BTreeMap::new()).unwrap();
    h.pass(Egress, &big);
    assert!(drain(&mut cap).is_empty());
    assert_eq!(h.ctr(Reason::DropNoPolicy), 7);
}

/// The per-interface filter summary (porin_capif_v2) only ever spares the configuration lookup for packets no
/// filter matches: a packet inside the summary's port union but outside every filter is still not captured
/// (the filters decide), every packet a filter matches is captured, a protocol the filters do not name costs
/// nothing and is not captured, and removing the capture clears the summary.
#[test]
fn capture_summary_rejects_only_what_no_filter_matches() {
    use porin_dataplane::abi::{self, CapConfig, CapFilter, CapIf};
    use porin_dataplane::capture::CaptureMaps;
    use std::collections::BTreeMap;
    let Some(mut h) = H::new(DataplaneOptions::default()) else { return };
    h.policy(vec![], vec![allow(PEER_ID, UDP, 53), allow(PEER_ID, TCP, 80)]);
    let mut cap = CaptureMaps::open_pinned(h.dp.pin_dir()).expect("capture maps pinned by open");
    let drain = |cap: &mut CaptureMaps| {
        let mut bad = 0;
        let v: Vec<(u8, u16, u16)> =
            std::iter::from_fn(|| cap.try_next(&mut bad)).map(|p| (p.hdr.proto, p.hdr.sport, p.hdr.dport)).collect();
        assert_eq!(bad, 0);
        v
    };
    let mut cfg = CapConfig { snaplen: 64, n_filters: 2, ..Default::default() };
    cfg.filters[0] = CapFilter { proto: UDP, port_lo: 53, port_hi: 53, ..Default::default() };
    cfg.filters[1] = CapFilter { proto: TCP, port_lo: 80, port_hi: 80, ..Default::default() };
    cap.set(&BTreeMap::from([(IFX, cfg)])).unwrap();
    let s = cap.summary(IFX).unwrap();
    let tcp_udp = (1 << abi::CAP_CL_TCP) | (1 << abi::CAP_CL_UDP);
    assert_eq!((s.flags, s.any_port, s.with_port, s.port_lo, s.port_hi), (abi::CAPIF_F_ON, 0, tcp_udp, 53, 80));

    h.pass(Egress, &frame(POD, PEER, UDP, &udp(1000, 53, b"q"))); // filter 0
    h.drop_(Egress, &frame(POD, PEER, UDP, &udp(1000, 60, b"q"))); // in 53..80, no filter: the filters decide
    h.drop_(Egress, &frame(POD, PEER, UDP, &udp(1000, 80, b"q"))); // TCP's port, but UDP
    h.pass(Egress, &syn(POD, PEER, 1001, 80)); // filter 1
    h.drop_(Egress, &syn(POD, PEER, 1002, 81)); // outside the union
    h.drop_(Egress, &frame(POD, PEER, ICMP, &echo(8, 7))); // a protocol no filter names
    assert_eq!(drain(&mut cap), vec![(UDP, 1000, 53), (TCP, 1001, 80)]);

    // A protocol-only filter: that protocol at any port (ICMP's "port" is type << 8 | code), nothing else.
    cfg.n_filters = 1;
    cfg.filters[0] = CapFilter { proto: ICMP, ..Default::default() };
    cap.set(&BTreeMap::from([(IFX, cfg)])).unwrap();
    assert_eq!(cap.summary(IFX).unwrap().any_port, 1 << abi::CAP_CL_ICMP);
    h.drop_(Egress, &frame(POD, PEER, ICMP, &echo(8, 7)));
    h.pass(Egress, &frame(POD, PEER, UDP, &udp(1000, 53, b"q")));
    assert_eq!(drain(&mut cap), vec![(ICMP, 0, 8 << 8)]);

    cap.set(&BTreeMap::new()).unwrap();
    assert_eq!(cap.summary(IFX).unwrap(), CapIf::default());
    h.drop_(Egress, &frame(POD, PEER, ICMP, &echo(8, 7)));
    assert!(drain(&mut cap).is_empty());
    assert_eq!(cap.stats().unwrap().lost, 0);
}

/// An upgrade from a build with the plain per-interface capture flag (`porin_capif_v1`): its pin is removed, not
/// reused with the summary's layout; the captures' configurations (`porin_cap_v1`, unchanged) stay, and the
/// capture service's next sync writes the summaries, after which matching packets are captured again.
#[test]
fn an_old_capture_flag_pin_is_removed_and_the_next_sync_restores_the_summary() {
    use porin_dataplane::abi::{CapConfig, CapFilter, capture_map_names as cap_names};
    use porin_dataplane::capture::CaptureMaps;
    use std::collections::BTreeMap;
    if !kernel_tests_enabled() {
        return;
    }
    let fs = Bpffs::new();
    let pin = fs.pin_dir();
    let mut cfg = CapConfig { snaplen: 64, n_filters: 1, ..Default::default() };
    cfg.filters[0] = CapFilter { proto: TCP, port_lo: 80, port_hi: 80, ..Default::default() };
    let want = BTreeMap::from([(IFX, cfg)]);
    {
        let dp = Dataplane::open(&pin, &DataplaneOptions::default()).expect("open");
        CaptureMaps::open_pinned(dp.pin_dir()).unwrap().set(&want).unwrap();
    }
    // What the previous build left: its flag array instead of the summaries.
    std::fs::remove_file(pin.join(cap_names::IFACES)).unwrap();
    let old = pin.join(cap_names::IFACES_V1);
    let out = std::process::Command::new("bpftool")
        .args(["map", "create", old.to_str().unwrap(), "type", "array", "key", "4", "value", "4", "entries", "65536", "name", "porin_capif_v1"])
        .output()
        .expect("run bpftool");
    assert!(out.status.success(), "bpftool: {}", String::from_utf8_lossy(&out.stderr));

    let mut dp = Dataplane::open(&pin, &DataplaneOptions::default()).expect("open next to an old capture flag map");
    assert!(std::fs::symlink_metadata(&old).is_err(), "old pin removed");
    dp.set_ipcache(ipcache()).unwrap();
    dp.set_endpoint(IFX, EndpointPolicy { endpoint_id: EP, ingress: vec![], egress: vec![allow(PEER_ID, TCP, 80)], addrs: pod_addrs() }).unwrap();
    let mut cap = CaptureMaps::open_pinned(dp.pin_dir()).unwrap();
    assert_eq!(cap.entries().unwrap(), vec![(IFX, cfg)], "the configurations survive");
    let mut bad = 0;
    assert!(dp.test_run(Egress, &syn(POD, PEER, 1, 80), IFX, 1).unwrap().passed());
    assert!(cap.try_next(&mut bad).is_none(), "no summary yet: nothing captured");
    cap.set(&want).unwrap();
    assert!(dp.test_run(Egress, &syn(POD, PEER, 2, 80), IFX, 1).unwrap().passed());
    let got = cap.try_next(&mut bad).expect("captured after the sync");
    assert_eq!((got.hdr.sport, got.hdr.dport, bad), (2, 80, 0));
}
