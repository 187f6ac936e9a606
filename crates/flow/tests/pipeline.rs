//! Loss accounting across the pipeline: queue overflow, sinks that fail, kernel ring-buffer loss;
//! and the metrics text.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use porin_abi::{Counters, Direction, EventType, MapOccupancy, Reason};
use porin_flow::{
    AggregationLevel, Error, FlowRecord, FlowSink, FlowStore, FlowStoreOptions, Metrics, Pipeline, PipelineCounters, SendOutcome,
    event_queue,
};

fn open(sport: u16) -> porin_abi::Event {
    ev(EventType::NewAllowed, Direction::Egress, 1.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", sport, "10.0.0.13", 5432)
}

#[test]
fn a_full_queue_counts_exactly_the_overflow() {
    let counters = Arc::new(PipelineCounters::default());
    let (tx, rx) = event_queue(100, counters.clone());
    let outcomes: Vec<SendOutcome> = (0..130).map(|i| tx.send(open(i))).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == SendOutcome::Queued).count(), 100);
    assert_eq!(counters.snapshot().queue_overflow, 30);
    // Drain into a pipeline sharing the counters; the 100 queued events all become records.
    let mut p = Pipeline::with_counters(cfg(AggregationLevel::FiveTuple), enricher(), counters.clone());
    while let Ok(e) = rx.try_recv() {
        p.push(&e);
    }
    assert_eq!(p.flush(2 * SEC).len(), 100);
    // Room again: queued; receiver gone: counted as lost.
    assert_eq!(tx.send(open(500)), SendOutcome::Queued);
    drop(rx);
    assert_eq!(tx.send(open(501)), SendOutcome::Closed);
    let c = counters.snapshot();
    assert_eq!((c.events_in, c.queue_overflow, c.lost_total()), (100, 31, 31));
}

#[test]
fn blocking_send_applies_back_pressure_instead_of_dropping() {
    let counters = Arc::new(PipelineCounters::default());
    let (tx, rx) = event_queue(4, counters.clone());
    let producer = std::thread::spawn(move || (0..1000).filter(|i| tx.send_blocking(open(*i)) == SendOutcome::Queued).count());
    let mut got = 0;
    while rx.recv_timeout(Duration::from_secs(5)).is_ok() {
        got += 1;
    }
    assert_eq!((producer.join().unwrap(), got), (1000, 1000));
    assert_eq!(counters.snapshot().queue_overflow, 0);
}

struct Broken;
impl FlowSink for Broken {
    fn write(&mut self, _: &[FlowRecord]) -> Result<(), Error> {
        Err(Error::Io { what: "writing", path: "/dev/full".into(), source: std::io::Error::other("disk full") })
    }
}

#[test]
fn sink_failures_are_counted_per_stage() {
    let mut p = Pipeline::new(cfg(AggregationLevel::FiveTuple), enricher());
    // The sink uses the wall clock for age eviction; these records are from 2024.
    let opts = FlowStoreOptions { max_age: Duration::from_secs(100 * 365 * 86_400), ..Default::default() };
    let mut store = FlowStore::in_memory(opts).unwrap();
    p.push(&open(1));
    p.push(&open(2));
    let (recs, err) = p.flush_to(2 * SEC, &mut [&mut store, &mut Broken]);
    assert_eq!((recs.len(), err.is_some()), (2, true));
    p.push(&open(3));
    let (_, err) = p.flush_to(3 * SEC, &mut [&mut Broken, &mut store]);
    assert!(err.is_some());
    let c = p.counters().snapshot();
    assert_eq!((c.records_out, c.records_stored, c.export_errors, c.store_errors), (3, 2, 2, 1));
    assert_eq!(c.lost_by_stage()[3], ("store", 1));
    assert_eq!(store.stats().unwrap().records, 3);
}

#[test]
fn kernel_ring_buffer_loss_is_reported() {
    let mut p = Pipeline::new(cfg(AggregationLevel::FiveTuple), enricher());
    let mut c = Counters::default();
    c.by_reason.insert(Reason::RingbufFull, 17);
    p.observe_dataplane(&c);
    assert_eq!(p.counters().snapshot().lost_by_stage()[0], ("ringbuf", 17));
}

#[test]
fn metrics_text_has_the_expected_series() {
    let m = Metrics::new();
    let mut p = Pipeline::new(cfg(AggregationLevel::FiveTuple), enricher());
    p.push(&open(1));
    p.push(&ev(EventType::Denied, Direction::Egress, 1.0, WEB1, ID_WORLD, RULE_DENY_WORLD, "10.0.0.11", 9, "8.8.8.8", 53));
    m.observe_records(&p.flush(2 * SEC));
    let mut dp = Counters::default();
    dp.by_reason.insert(Reason::DropPolicyDeny, 5);
    dp.by_reason.insert(Reason::AllowNew, 9);
    m.observe_dataplane(&dp);
    let mut snap = p.counters().snapshot();
    snap.queue_overflow = 4;
    m.observe_pipeline(&snap);
    m.observe_occupancy(&[MapOccupancy { name: "porin_ct_v1", entries: 12, max_entries: 131072 }]);
    m.set_endpoints(3);
    m.observe_programming_latency(Duration::from_millis(3));
    let mut store = FlowStore::in_memory(FlowStoreOptions::default()).unwrap();
    store.append_at(&[], 0).unwrap();
    m.observe_store(&store.stats().unwrap());
    let text = m.encode();
    for series in [
        r#"porin_flow_flows_total{verdict="allowed",direction="egress"} 1"#,
        r#"porin_flow_flows_total{verdict="denied",direction="egress"} 1"#,
        "porin_flow_records_total 2",
        r#"porin_flow_lost_events_total{stage="queue"} 4"#,
        r#"porin_flow_lost_events_total{stage="ringbuf"} 0"#,
        r#"porin_dataplane_drops_total{reason="drop_policy_deny"} 5"#,
        r#"porin_dataplane_drops_total{reason="drop_no_policy"} 0"#,
        "porin_dataplane_endpoints 3",
        r#"porin_dataplane_map_entries{map="porin_ct_v1"} 12"#,
        r#"porin_dataplane_map_capacity{map="porin_ct_v1"} 131072"#,
        r#"porin_policy_rule_packets_total{tier="default",policy="prod/knp.default.db",rule="1"} 1"#,
        r#"porin_policy_rule_bytes_total{tier="default",policy="prod/knp.default.db",rule="1"} 60"#,
        r#"porin_policy_rule_connections_total{tier="security",policy="global.no-egress",rule="2"} 1"#,
        "porin_policy_programming_latency_seconds_count 1",
        r#"porin_policy_programming_latency_seconds_bucket{le="0.004"} 1"#,
        "porin_flow_store_bytes 0",
        "porin_flow_store_records 0",
        "# TYPE porin_flow_flows counter",
        "# EOF",
    ] {
        assert!(text.contains(series), "missing {series:?} in\n{text}");
    }
    assert!(!text.contains("allow_new"), "only drop reasons are drops");
}
