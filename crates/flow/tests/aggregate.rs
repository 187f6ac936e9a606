//! Decoder + enrichment + aggregation, through the public `Pipeline`.

mod common;

use common::*;
use porin_abi::{Direction, Event, EventType, Reason};
use porin_flow::record::{EndpointKind, TcpFlags};
use porin_flow::{AggregationLevel, FlowDirection, FlowRecord, PendingVerdict, Pipeline, Reporter, Verdict};

fn run(level: AggregationLevel, events: &[Event], flush_at: f64) -> (Vec<FlowRecord>, porin_flow::CountersSnapshot) {
    let mut p = Pipeline::new(cfg(level), enricher());
    for e in events {
        p.push_raw(&raw(e));
    }
    let recs = p.flush((flush_at * SEC as f64) as u64);
    (recs, p.counters().snapshot())
}

#[test]
fn decoder_reads_ring_buffer_bytes_and_counts_what_it_cannot() {
    let e = ev(EventType::NewAllowed, Direction::Egress, 1.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432);
    let mut p = Pipeline::new(cfg(AggregationLevel::FiveTuple), enricher());
    p.push_raw(&raw(&e));
    p.push_raw(&raw(&e)[..40]); // truncated
    let mut bad = raw(&e);
    bad[std::mem::offset_of!(porin_abi::RawEvent, r#type)] = 99;
    p.push_raw(&bad);
    let mut non_ip = e.clone();
    non_ip.src = None;
    non_ip.dst = None;
    non_ip.kind = EventType::Denied;
    p.push_raw(&raw(&non_ip));
    let c = p.counters().snapshot();
    assert_eq!((c.events_in, c.decode_errors, c.non_ip_events), (2, 2, 1));
    let recs = p.flush(2 * SEC);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.start_time, EPOCH + SEC);
    assert_eq!((r.verdict, r.direction, r.reporter), (Verdict::Allowed, FlowDirection::Egress, Reporter::Src));
    assert_eq!((r.src.ip, r.src.port, r.dst.ip, r.dst.port), (Some(ip("10.0.0.11")), Some(40000), Some(ip("10.0.0.13")), Some(5432)));
    assert_eq!(r.src.pod.as_deref(), Some("web-7d9f-abcde"));
    assert_eq!(r.dst.pod.as_deref(), Some("db-0"));
    assert_eq!(r.dst.identity, Some(ID_DB));
    assert_eq!(r.enforced_trace, ["security|prod.allow-web-db|0|pass", "default|prod/knp.default.db|1|allow"]);
    assert_eq!(r.deciding_hit(), Some("default|prod/knp.default.db|1|allow"));
    assert_eq!(r.protocol, "tcp");
    assert_eq!(r.node, "node-1");
    assert!(r.open);
}

#[test]
fn five_tuple_open_then_close_from_the_reply_side() {
    let evs = web_to_db_connection(40000, 1.0);
    // Interval 1: only the open.
    let mut p = Pipeline::new(cfg(AggregationLevel::FiveTuple), enricher());
    p.push(&evs[0]);
    let first = p.flush(2 * SEC);
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].flows_started, first[0].flows_completed, first[0].flows_open, first[0].open), (1, 0, 1, true));
    assert_eq!((first[0].packets_src_to_dst, first[0].bytes_src_to_dst), (1, 60));
    // Interval 2: the close, reported at web-1's ingress hook with the reversed tuple.
    p.push(&evs[1]);
    let second = p.flush(5 * SEC);
    assert_eq!(second.len(), 1, "{second:#?}");
    let r = &second[0];
    // Oriented like the original connection, reply totals on the reply side.
    assert_eq!((r.src.port, r.dst.port, r.direction), (Some(40000), Some(5432), FlowDirection::Egress));
    assert_eq!((r.packets_src_to_dst, r.packets_dst_to_src, r.bytes_dst_to_src), (0, 8, 4000));
    assert_eq!((r.flows_started, r.flows_completed, r.flows_open, r.open), (0, 1, 0, false));
    assert_eq!(r.tcp_flags, TcpFlags(TcpFlags::FIN | TcpFlags::ACK));
    assert_eq!(p.aggregator().tracked(), 0);
    assert_eq!(p.counters().snapshot().close_unmatched, 0);
}

#[test]
fn five_tuple_close_on_the_forward_side_does_not_count_the_first_packet_twice() {
    use Direction::*;
    use EventType::*;
    let open = ev(NewAllowed, Egress, 1.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432);
    let mut close = ev(Close, Egress, 3.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432);
    close.packets = 10;
    close.bytes = 1060;
    let (recs, c) = run(AggregationLevel::FiveTuple, &[open, close], 4.0);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!((r.packets_src_to_dst, r.bytes_src_to_dst), (10, 1060));
    assert_eq!((r.flows_started, r.flows_completed, r.open), (1, 1, false));
    assert_eq!((r.start_time, r.end_time), (EPOCH + SEC, EPOCH + 3 * SEC));
    assert_eq!(r.tcp_flags, TcpFlags(TcpFlags::SYN | TcpFlags::FIN | TcpFlags::ACK));
    assert_eq!(c.events_in, 2);
}

#[test]
fn five_tuple_keeps_connections_apart_and_sums_within_one() {
    let mut evs = web_to_db_connection(40000, 1.0);
    evs.extend(web_to_db_connection(40001, 1.5));
    let (recs, _) = run(AggregationLevel::FiveTuple, &evs, 10.0);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs.iter().map(|r| r.src.port).collect::<Vec<_>>(), [Some(40000), Some(40001)]);
    for r in &recs {
        assert_eq!((r.flows_started, r.flows_completed, r.packets_src_to_dst, r.packets_dst_to_src), (1, 1, 1, 8));
    }
}

#[test]
fn workload_level_merges_pods_ports_and_counts() {
    use Direction::*;
    use EventType::*;
    let mut evs = web_to_db_connection(40000, 1.0);
    evs.extend(web_to_db_connection(40001, 1.2));
    // web-2 (same workload) too; and an ingress view at db of web-1's connection.
    evs.push(ev(NewAllowed, Egress, 1.4, WEB2, ID_DB, RULE_ALLOW_DB, "10.0.0.12", 41000, "10.0.0.13", 5432));
    evs.push(ev(NewAllowed, Ingress, 1.0, DB, ID_WEB1, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432));
    let (recs, _) = run(AggregationLevel::Workload, &evs, 10.0);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let egress = recs.iter().find(|r| r.reporter == Reporter::Src).unwrap();
    assert_eq!(egress.aggregation, AggregationLevel::Workload);
    assert_eq!((egress.flows_started, egress.flows_completed, egress.flows_open, egress.open), (3, 2, 1, true));
    assert_eq!((egress.packets_src_to_dst, egress.packets_dst_to_src, egress.bytes_dst_to_src), (3, 16, 8000));
    assert_eq!(egress.src.workload.as_deref(), Some("web"));
    assert_eq!((egress.src.pod.as_ref(), egress.src.ip, egress.src.port), (None, None, None));
    assert_eq!(egress.dst.port, Some(5432));
    // Labels of the merged side: only what both pods share.
    assert_eq!(egress.src.labels.iter().collect::<Vec<_>>(), [(&"app".to_string(), &"web".to_string())]);
    let ingress = recs.iter().find(|r| r.reporter == Reporter::Dst).unwrap();
    assert_eq!((ingress.direction, ingress.src.workload.as_deref(), ingress.dst.workload.as_deref()), (FlowDirection::Ingress, Some("web"), Some("db")));
}

#[test]
fn denied_packets_merge_and_count_attempts_not_packets() {
    use Direction::*;
    use EventType::*;
    // Three SYN retransmits of one connection to the world, and one of another.
    let mut evs: Vec<Event> = (0..3)
        .map(|i| ev(Denied, Egress, 1.0 + f64::from(i), WEB1, ID_WORLD, RULE_DENY_WORLD, "10.0.0.11", 50000, "8.8.8.8", 443))
        .collect();
    evs.push(ev(Denied, Egress, 2.5, WEB1, ID_WORLD, RULE_DENY_WORLD, "10.0.0.11", 50001, "8.8.8.8", 443));
    let (five, _) = run(AggregationLevel::FiveTuple, &evs, 10.0);
    assert_eq!(five.len(), 2);
    assert_eq!((five[0].packets_src_to_dst, five[0].flows_started, five[0].open), (3, 1, false));
    assert_eq!(five[0].verdict, Verdict::Denied);
    assert_eq!(five[0].drop_reason.as_deref(), Some("drop_policy_deny"));
    assert_eq!(five[0].dst.kind, EndpointKind::World);
    assert_eq!(five[0].pending_verdict, Some(PendingVerdict::WouldAllow));
    assert_eq!(five[0].pending_trace, ["staged:security|global.allow-dns|0|allow"]);
    let (wl, _) = run(AggregationLevel::Workload, &evs, 10.0);
    assert_eq!(wl.len(), 1);
    assert_eq!((wl[0].packets_src_to_dst, wl[0].flows_started), (4, 2));
    // World peers keep their address kind but the address is aggregated away.
    assert_eq!((wl[0].dst.kind, wl[0].dst.ip), (EndpointKind::World, None));
}

/// A kernel aggregate of denied packets (one event: summed packets and bytes, first..last time) counts
/// like the packets it stands for, merged with single-packet events of the same flow.
#[test]
fn kernel_aggregates_of_denied_packets_count_every_packet_and_keep_the_time_span() {
    use Direction::*;
    use EventType::*;
    let mut agg = ev(Denied, Egress, 4.0, WEB1, ID_WORLD, RULE_DENY_WORLD, "10.0.0.11", 50000, "8.8.8.8", 443);
    agg.first_ts_ns = SEC;
    agg.packets = 1000;
    agg.bytes = 60_000;
    let single = ev(Denied, Egress, 5.0, WEB1, ID_WORLD, RULE_DENY_WORLD, "10.0.0.11", 50000, "8.8.8.8", 443);
    // (decoded events: an aggregate never comes through the ring buffer)
    let run = |level, evs: &[Event]| {
        let mut p = Pipeline::new(cfg(level), enricher());
        for e in evs {
            p.push(e);
        }
        (p.flush(10 * SEC), ())
    };
    let (five, _) = run(AggregationLevel::FiveTuple, &[agg.clone(), single]);
    assert_eq!(five.len(), 1, "{five:#?}");
    let r = &five[0];
    assert_eq!((r.packets_src_to_dst, r.bytes_src_to_dst, r.flows_started), (1001, 60_060, 1));
    assert_eq!(r.end_time - r.start_time, 4 * SEC, "from the aggregate's first packet to the last event");
    let (wl, _) = run(AggregationLevel::Workload, &[agg]);
    assert_eq!((wl[0].packets_src_to_dst, wl[0].flows_started), (1000, 1));
}

#[test]
fn allowed_and_denied_never_share_a_record() {
    use Direction::*;
    use EventType::*;
    let evs = [
        ev(NewAllowed, Egress, 1.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432),
        ev(Denied, Egress, 1.1, WEB1, ID_DB, RULE_DEFAULT_DENY, "10.0.0.11", 40001, "10.0.0.13", 5432),
    ];
    let (recs, _) = run(AggregationLevel::Workload, &evs, 2.0);
    assert_eq!(recs.iter().map(|r| r.verdict).collect::<Vec<_>>(), [Verdict::Allowed, Verdict::Denied]);
}

#[test]
fn revocation_closes_the_connection_and_records_the_denial() {
    use Direction::*;
    use EventType::*;
    let open = ev(NewAllowed, Egress, 1.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432);
    // The revoking packet is a reply (ingress at web-1) after a policy change.
    let mut revoked = ev(Revoked, Ingress, 5.0, WEB1, ID_DB, RULE_DEFAULT_DENY, "10.0.0.13", 5432, "10.0.0.11", 40000);
    revoked.packets = 4;
    revoked.bytes = 400;
    let (recs, c) = run(AggregationLevel::FiveTuple, &[open, revoked], 6.0);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let allowed = recs.iter().find(|r| r.verdict == Verdict::Allowed).unwrap();
    assert_eq!((allowed.flows_completed, allowed.open, allowed.packets_dst_to_src), (1, false, 4));
    let denied = recs.iter().find(|r| r.verdict == Verdict::Denied).unwrap();
    assert_eq!(denied.drop_reason.as_deref(), Some(Reason::DropRevoked.as_str()));
    assert_eq!(denied.enforced_trace, ["default|prod/knp.default.db|-1|deny"]);
    assert_eq!((denied.src.port, denied.dst.port), (Some(40000), Some(5432)), "original orientation");
    assert_eq!(c.close_unmatched, 0);
}

#[test]
fn unmatched_close_and_unknown_metadata_are_recorded_and_counted() {
    use Direction::*;
    use EventType::*;
    let mut close = ev(Close, Egress, 1.0, 99, 4242, 777, "10.0.0.99", 1234, "10.0.0.13", 80);
    close.packets = 5;
    let (recs, c) = run(AggregationLevel::FiveTuple, &[close], 2.0);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].flows_completed, recs[0].packets_src_to_dst), (1, 5));
    assert_eq!(recs[0].src.kind, EndpointKind::Unknown);
    assert!(recs[0].enforced_trace.is_empty());
    assert_eq!((c.close_unmatched, c.unknown_endpoint, c.unknown_identity, c.unknown_rule), (1, 1, 1, 1));
}

#[test]
fn tracker_is_bounded_and_expires_idle_connections() {
    use Direction::*;
    use EventType::*;
    let mut cfg = cfg(AggregationLevel::FiveTuple);
    cfg.max_tracked = 2;
    let mut p = Pipeline::new(cfg, enricher());
    for (i, sport) in [1000u16, 1001, 1002].iter().enumerate() {
        let mut e = ev(NewAllowed, Egress, 1.0 + i as f64, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", *sport, "10.0.0.13", 53);
        e.proto = 17;
        p.push(&e);
    }
    assert_eq!(p.aggregator().tracked(), 2);
    assert_eq!(p.counters().snapshot().tracker_full, 1);
    let recs = p.flush(10 * SEC);
    assert_eq!(recs.iter().filter(|r| r.open).count(), 2);
    // UDP never closes: the tracker forgets it after the dataplane's 180 s lifetime.
    let recs = p.flush(200 * SEC);
    assert!(recs.is_empty());
    assert_eq!(p.aggregator().tracked(), 0);
    assert_eq!(p.counters().snapshot().tracker_expired, 2);
}

#[test]
fn icmp_and_ipv6_records() {
    use Direction::*;
    use EventType::*;
    let mut e = ev(Denied, Ingress, 1.0, DB, ID_WORLD, RULE_DEFAULT_DENY, "2001:db8::1", 0, "fd00::13", 0x0800);
    e.proto = 58;
    e.tcp_flags = 0;
    let (recs, _) = run(AggregationLevel::FiveTuple, &[e], 2.0);
    let r = &recs[0];
    assert_eq!((r.protocol.as_str(), r.ip_family), ("icmpv6", porin_flow::IpFamily::V6));
    assert_eq!(r.icmp.map(|i| (i.kind, i.code)), Some((8, 0)));
    assert_eq!((r.src.port, r.dst.port), (None, None));
    assert_eq!(r.port_label(), "8/0");
    assert_eq!((r.direction, r.reporter), (FlowDirection::Ingress, Reporter::Dst));
    assert_eq!(r.dst.pod.as_deref(), Some("db-0"));
}

#[test]
fn early_flush_is_requested_when_the_interval_table_is_full() {
    use Direction::*;
    use EventType::*;
    let mut cfg = cfg(AggregationLevel::FiveTuple);
    cfg.max_interval_records = 3;
    let mut p = Pipeline::new(cfg, enricher());
    let due: Vec<bool> = (0..3u16)
        .map(|i| p.push(&ev(Denied, Egress, 1.0, WEB1, ID_WORLD, RULE_DENY_WORLD, "10.0.0.11", 5000 + i, "1.1.1.1", 80)))
        .collect();
    assert_eq!(due, [false, false, true]);
}

#[test]
fn json_schema_field_names_are_stable() {
    let (recs, _) = run(AggregationLevel::FiveTuple, &web_to_db_connection(40000, 1.0), 10.0);
    let v = serde_json::to_value(&recs[0]).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "start_time", "end_time", "node", "verdict", "direction", "reporter", "ip_family", "protocol", "src", "dst",
            "enforced_trace", "packets_src_to_dst", "bytes_src_to_dst", "packets_dst_to_src", "bytes_dst_to_src",
            "tcp_flags", "flows_started", "flows_completed", "flows_open", "open", "aggregation"
        ]
    );
    let back: FlowRecord = serde_json::from_value(v).unwrap();
    assert_eq!(back, recs[0]);
}

/// A long-lived connection reports its counters every interval (progress events from the conntrack map, both
/// directions), and its close adds only what was not reported yet: the intervals sum to the connection's totals.
#[test]
fn long_lived_connections_report_counters_every_interval() {
    use Direction::*;
    use EventType::*;
    let mut p = Pipeline::new(cfg(AggregationLevel::FiveTuple), enricher());
    let open = ev(NewAllowed, Egress, 1.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432);
    let progress = |t: f64, reply: bool, packets: u64, bytes: u64| {
        let mut e = if reply {
            ev(Progress, Ingress, t, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.13", 5432, "10.0.0.11", 40000)
        } else {
            ev(Progress, Egress, t, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", 40000, "10.0.0.13", 5432)
        };
        e.packets = packets;
        e.bytes = bytes;
        e
    };
    for e in [open, progress(1.5, false, 10, 1000), progress(1.6, true, 8, 4000)] {
        p.push(&e);
    }
    // An entry the tracker never saw open (before the agent started): left to its close, no record now.
    let mut stranger = progress(1.7, false, 99, 9900);
    stranger.sport = 41000;
    p.push(&stranger);
    let first = p.flush(2 * SEC);
    assert_eq!(first.len(), 1, "{first:?}");
    let r = &first[0];
    assert_eq!((r.packets_src_to_dst, r.bytes_src_to_dst, r.packets_dst_to_src, r.bytes_dst_to_src), (10, 1000, 8, 4000));
    assert!(r.open && r.flows_open == 1 && r.flows_started == 1 && r.flows_completed == 0, "{r:?}");

    // Next interval: only what was added since; an unchanged counter makes no record.
    p.push(&progress(2.5, false, 15, 1500));
    p.push(&progress(2.6, true, 8, 4000));
    let second = p.flush(3 * SEC);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!((second[0].packets_src_to_dst, second[0].bytes_src_to_dst, second[0].packets_dst_to_src), (5, 500, 0));

    // Close (totals of the reply entry): the rest, once.
    let mut close = ev(Close, Ingress, 3.5, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.13", 5432, "10.0.0.11", 40000);
    close.packets = 12;
    close.bytes = 6000;
    p.push(&close);
    p.push(&progress(3.6, false, 20, 2000)); // read before the close was seen: the tracker has forgotten it
    let third = p.flush(4 * SEC);
    let fwd: u64 = [&first, &second, &third].iter().flat_map(|v| v.iter()).map(|r| r.packets_src_to_dst).sum();
    let rev: u64 = [&first, &second, &third].iter().flat_map(|v| v.iter()).map(|r| r.packets_dst_to_src).sum();
    assert_eq!((fwd, rev), (15, 12), "{third:?}");
    assert!(third.iter().any(|r| r.flows_completed == 1 && !r.open), "{third:?}");
}
