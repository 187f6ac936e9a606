//! Conntrack lifecycle, map limits, events and pins.

use super::*;

#[test]
fn established_flow_survives_unrelated_change_and_is_revoked() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![], vec![allow(PEER_ID, TCP, 80)]);
    h.pass(Egress, &syn(POD, PEER, 40000, 80));
    h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, SYN | ACK)));
    // unrelated change: the flow is re-checked once (one entry for both directions) and kept
    h.policy(vec![], vec![allow(PEER_ID, TCP, 80), allow(PEER_ID, TCP, 443)]);
    h.pass(Egress, &frame(POD, PEER, TCP, &tcp(40000, 80, ACK)));
    h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, ACK)));
    assert_eq!(h.ctr(Reason::Revalidated), 1);
    h.pass(Egress, &frame(POD, PEER, TCP, &tcp(40000, 80, ACK)));
    assert_eq!(h.ctr(Reason::Revalidated), 1, "only once per flow per revision");
    // revoking change, first packet seen is the REPLY: the original direction
    // is re-evaluated and the flow is cut in both directions
    h.policy(vec![], vec![allow(PEER_ID, TCP, 443)]);
    let _ = h.events();
    h.drop_(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, ACK)));
    assert_eq!(h.ctr(Reason::DropRevoked), 1);
    let ev = h.events();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].kind, ev[0].reason, ev[0].dir), (EventType::Revoked, Reason::DropRevoked, Ingress));
    assert!(ev[0].packets >= 2, "CT totals reported: {:?}", ev[0]);
    // the entry is gone: the forward direction is now a new flow and denied
    h.drop_(Egress, &frame(POD, PEER, TCP, &tcp(40000, 80, ACK)));
    assert_eq!(h.ctr(Reason::DropNoPolicy), 1);
    assert!(h.dp.conntrack_entries().unwrap().is_empty());
}

#[test]
fn tcp_close_event_once_and_reopen() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![], vec![allow(PEER_ID, TCP, 80)]);
    h.pass(Egress, &syn(POD, PEER, 40000, 80));
    h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, SYN | ACK)));
    h.pass(Egress, &frame(POD, PEER, TCP, &tcp(40000, 80, FIN | ACK)));
    h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, FIN | ACK)));
    let ev = h.events();
    let closes: Vec<&Event> = ev.iter().filter(|e| e.kind == EventType::Close).collect();
    assert_eq!(closes.len(), 1, "{ev:?}");
    assert_eq!((closes[0].dir, closes[0].packets), (Egress, 2));
    let ct = h.dp.conntrack_entries().unwrap();
    assert_eq!(ct.len(), 1, "one entry for both directions");
    assert!(ct.iter().all(|(_, v)| v.flags & porin_dataplane::abi::CT_F_CLOSING != 0));
    // both directions' counters in it: SYN + FIN out, SYN-ACK + FIN in
    assert_eq!((ct[0].1.packets, ct[0].1.packets_reply, ct[0].1.dir_of_origin), (2, 2, Egress as u8));
    assert_eq!((ct[0].1.tcp_flags, ct[0].1.tcp_flags_reply), (SYN | FIN | ACK, SYN | FIN | ACK));
    // a new SYN on the closing tuple is a new flow (policy checked again)
    h.pass(Egress, &syn(POD, PEER, 40000, 80));
    assert_eq!(h.ctr(Reason::AllowNew), 2);
    let ct = h.dp.conntrack_entries().unwrap();
    assert!(ct.iter().all(|(_, v)| v.flags & porin_dataplane::abi::CT_F_CLOSING == 0));
    // A complete close: both FINs, then the ACK of the last one passes and takes both entries (and their
    // budget) with it. A plain ACK before the second FIN keeps them.
    h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, SYN | ACK)));
    h.pass(Egress, &frame(POD, PEER, TCP, &tcp(40000, 80, FIN | ACK)));
    h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, ACK)));
    h.pass(Egress, &frame(POD, PEER, TCP, &tcp(40000, 80, ACK)));
    assert_eq!(h.dp.conntrack_entries().unwrap().len(), 1, "half-closed: the entry stays");
    h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, FIN | ACK)));
    assert_eq!(h.dp.conntrack_usage(EP).unwrap(), 1);
    h.pass(Egress, &frame(POD, PEER, TCP, &tcp(40000, 80, ACK)));
    assert!(h.dp.conntrack_entries().unwrap().is_empty(), "the final ACK ends the flow");
    assert_eq!(h.dp.conntrack_usage(EP).unwrap(), 0, "its budget is back");
    // After that the tuple is no flow: a FIN resent from the peer is a new flow, and this endpoint's ingress
    // policy (empty) drops it; no entry is created for it.
    h.drop_(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, FIN | ACK)));
    assert_eq!(h.ctr(Reason::DropNoPolicy), 1);
    assert!(h.dp.conntrack_entries().unwrap().is_empty());
}

/// Short connections, each closed normally, never use up the endpoint's conntrack budget: a budget of one
/// flow admits any number of them one after the other. (Before, a closed flow held its two entries for the
/// closing lifetime, 30 s, so a workload opening connections faster than budget / 2 per 30 s was cut off.)
#[test]
fn normally_closed_connections_give_their_budget_back() {
    let Some(mut h) = H::new(DataplaneOptions { ct_budget: 1, ct_sweep_every: None, ..Default::default() }) else { return };
    h.policy(vec![], vec![allow(PEER_ID, TCP, 80)]);
    for sport in 41000..41050u16 {
        h.pass(Egress, &syn(POD, PEER, sport, 80));
        h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, sport, SYN | ACK)));
        h.pass(Egress, &frame(POD, PEER, TCP, &tcp(sport, 80, ACK)));
        // the peer closes first, as a server in a request/response exchange does
        h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, sport, FIN | ACK)));
        h.pass(Egress, &frame(POD, PEER, TCP, &tcp(sport, 80, FIN | ACK)));
        h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, sport, ACK)));
    }
    assert_eq!(h.ctr(Reason::AllowNew), 50);
    assert_eq!(h.ctr(Reason::DropCtBudget), 0);
    assert_eq!(h.dp.conntrack_usage(EP).unwrap(), 0);
    // Control: a connection that is not closed keeps its slot, and the next one is over the budget.
    h.pass(Egress, &syn(POD, PEER, 42000, 80));
    h.drop_(Egress, &syn(POD, PEER, 42001, 80));
    assert_eq!(h.ctr(Reason::DropCtBudget), 1);
    let _ = h.events();
}

#[test]
fn policy_map_full_locks_the_endpoint_down() {
    let Some(mut h) = H::new(DataplaneOptions { max_policy: Some(8), ..Default::default() }) else { return };
    h.policy(vec![], vec![allow(PEER_ID, TCP, 80)]);
    h.pass(Egress, &syn(POD, PEER, 40000, 80));
    let big: Vec<PolicyEntry> = (0..20).map(|p| allow(PEER_ID, TCP, 1000 + p)).collect();
    let err = h.dp.set_endpoint(IFX, EndpointPolicy { endpoint_id: EP, ingress: vec![], egress: big, addrs: pod_addrs() }).unwrap_err();
    match &err {
        Error::PolicyMapFull { map, endpoint_id, ifindex, .. } => assert_eq!((*map, *endpoint_id, *ifindex), ("porin_pol_v1", EP, IFX)),
        other => panic!("unexpected error {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("porin_pol_v1") && msg.contains("endpoint 7"), "{msg}");
    // new flows and the established flow are denied
    h.drop_(Egress, &syn(POD, PEER, 40001, 80));
    h.drop_(Egress, &frame(POD, PEER, TCP, &tcp(40000, 80, ACK)));
    assert_eq!(h.ctr(Reason::DropLockdown), 1);
    assert_eq!(h.ctr(Reason::DropRevoked), 1);
    // ARP still works
    h.pass(Egress, &eth(0x0806, &[0u8; 28]));
    // a policy that fits lifts the lockdown
    h.policy(vec![], vec![allow(PEER_ID, TCP, 80)]);
    h.pass(Egress, &syn(POD, PEER, 40002, 80));
    let _ = h.events();
}

#[test]
fn ringbuf_full_counts_but_never_changes_the_verdict() {
    let Some(mut h) = H::new(DataplaneOptions { ringbuf_bytes: 4096, ..Default::default() }) else { return };
    h.policy(vec![], vec![allow(PEER_ID, UDP, 53)]);
    for i in 0..100u16 {
        h.pass(Egress, &frame(POD, PEER, UDP, &udp(10000 + i, 53, b"q")));
        h.drop_(Egress, &frame(POD, PEER, UDP, &udp(10000 + i, 54, b"q")));
    }
    let lost = h.ctr(Reason::RingbufFull);
    let got = h.events().len() as u64;
    assert!(lost > 0, "a 4 KiB ring cannot hold 200 events");
    assert_eq!(got + lost, 200);
    assert_eq!(h.ctr(Reason::AllowNew), 100);
    assert_eq!(h.ctr(Reason::DropNoPolicy), 100);
}

#[test]
fn maps_are_pinned_and_read_back_by_a_new_instance() {
    if !kernel_tests_enabled() {
        return;
    }
    let fs = Bpffs::new();
    let pin = fs.pin_dir();
    let policy = EndpointPolicy { endpoint_id: EP, ingress: vec![], egress: vec![allow(PEER_ID, TCP, 80)], addrs: pod_addrs() };
    {
        let mut dp = Dataplane::open(&pin, &DataplaneOptions::default()).unwrap();
        dp.set_ipcache(ipcache()).unwrap();
        dp.set_endpoint(IFX, policy.clone()).unwrap();
        dp.set_endpoint(2, EndpointPolicy { endpoint_id: 8, ..Default::default() }).unwrap();
        assert!(dp.test_run(Egress, &syn(POD, PEER, 1, 80), IFX, 1).unwrap().passed());
    }
    for name in porin_dataplane::abi::map_names::PINNED {
        assert!(pin.join(name).exists(), "{name} pinned");
    }
    let mut dp = Dataplane::open(&pin, &DataplaneOptions::default()).unwrap();
    let rb = dp.last_read_back();
    assert_eq!((rb.endpoints, rb.policy_entries, rb.ipcache_entries), (2, 1, 6));
    assert_eq!(dp.engine().endpoint(IFX).unwrap().addrs(), pod_addrs(), "addresses read back");
    assert!(dp.engine().endpoint(2).unwrap().addrs().is_empty());
    // state is intact: the established flow and the policy still work
    assert!(dp.test_run(Ingress, &frame(PEER, POD, TCP, &tcp(80, 1, ACK)), IFX, 1).unwrap().passed());
    assert!(dp.test_run(Egress, &syn(POD, PEER, 2, 80), IFX, 1).unwrap().passed());
    // re-pushing the same desired state is free; sweeping removes the rest
    assert_eq!(dp.set_endpoint(IFX, policy).unwrap(), Default::default());
    assert_eq!(dp.set_ipcache(ipcache()).unwrap(), Default::default());
    let s = dp.sweep().unwrap();
    assert_eq!(dp.engine().endpoint_ifindexes(), vec![IFX]);
    assert_eq!(s.flips, 1);
    let occ = dp.occupancy().unwrap();
    let pol = occ.iter().find(|o| o.name == "porin_pol_v1").unwrap();
    assert_eq!((pol.entries, pol.max_entries), (1, 262144));
    assert!(occ.iter().find(|o| o.name == "porin_ct_v3").unwrap().entries >= 1);
}

#[test]
fn open_refuses_a_pin_dir_outside_bpffs() {
    if !kernel_tests_enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let err = Dataplane::open(dir.path(), &DataplaneOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NotBpffs { .. }), "{err}");
}

#[test]
fn async_event_reader_yields_decoded_events() {
    let Some(h) = H::std() else { return };
    let H { mut dp, ev, _fs } = h;
    dp.set_endpoint(IFX, EndpointPolicy { endpoint_id: EP, ingress: vec![], egress: vec![allow(PEER_ID, TCP, 80)], addrs: pod_addrs() }).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let mut rd = ev.into_async().expect("AsyncFd");
        let f = syn(POD, PEER, 1234, 80);
        // run the packet from a blocking thread while the reader waits
        let waiter = tokio::time::timeout(std::time::Duration::from_secs(5), rd.next());
        std::thread::scope(|s| {
            s.spawn(|| assert!(dp.test_run(Egress, &f, IFX, 1).unwrap().passed()));
        });
        let e = waiter.await.expect("event within 5s").expect("io").expect("decodes");
        assert_eq!((e.kind, e.dport, e.endpoint_id), (EventType::NewAllowed, 80, EP));
    });
}
