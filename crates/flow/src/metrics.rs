//! Prometheus metrics (prometheus-client, OpenMetrics text): the agent serves
//! [`Metrics::encode`] at `/metrics`.
//!
//! Names follow `porin_<subsystem>_<thing>[_total]`; counters get `_total` from the encoder.
//! Label cardinality is bounded by design: verdict × direction, drop reasons, loss stages, map
//! names, and one series per (tier, policy, rule) that has decided a flow — never per pod or IP.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `porin_flow_flows_total` | counter | verdict, direction |
//! | `porin_flow_records_total` | counter | |
//! | `porin_flow_lost_events_total` | counter | stage (ringbuf, decode, queue, store) |
//! | `porin_flow_store_bytes`, `porin_flow_store_records` | gauge | |
//! | `porin_dataplane_drops_total` | counter | reason |
//! | `porin_dataplane_endpoints` | gauge | |
//! | `porin_dataplane_map_entries`, `porin_dataplane_map_capacity` | gauge | map |
//! | `porin_policy_rule_packets_total`, `…_bytes_total`, `…_connections_total` | counter | tier, policy, rule |
//! | `porin_policy_programming_latency_seconds` | histogram | |

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use porin_abi::{Counters, MapOccupancy, Reason};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::counters::CountersSnapshot;
use crate::record::{FlowRecord, Verdict};
use crate::store::StoreStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    verdict: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    tier: String,
    policy: String,
    rule: String,
}

/// The registry and every metric (see the module docs). Share it with `Arc`; all methods take
/// `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    flows: Family<FlowLabels, Counter>,
    records: Counter,
    lost: Family<StageLabels, Counter>,
    store_bytes: Gauge,
    store_records: Gauge,
    drops: Family<ReasonLabels, Counter>,
    endpoints: Gauge,
    map_entries: Family<MapLabels, Gauge>,
    map_capacity: Family<MapLabels, Gauge>,
    rule_packets: Family<RuleLabels, Counter>,
    rule_bytes: Family<RuleLabels, Counter>,
    rule_connections: Family<RuleLabels, Counter>,
    programming_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("porin");
        let m = Self {
            flows: Family::default(),
            records: Counter::default(),
            lost: Family::default(),
            store_bytes: Gauge::default(),
            store_records: Gauge::default(),
            drops: Family::default(),
            endpoints: Gauge::default(),
            map_entries: Family::default(),
            map_capacity: Family::default(),
            rule_packets: Family::default(),
            rule_bytes: Family::default(),
            rule_connections: Family::default(),
            // 1 ms .. ~32 s
            programming_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            registry: Registry::default(),
        };
        registry.register("flow_flows", "Connections seen (allowed: admitted; denied: distinct attempts)", m.flows.clone());
        registry.register("flow_records", "Flow records produced", m.records.clone());
        registry.register("flow_lost_events", "Flow events lost, by pipeline stage", m.lost.clone());
        registry.register("flow_store_bytes", "Bytes of flow records in the flow store", m.store_bytes.clone());
        registry.register("flow_store_records", "Flow records in the flow store", m.store_records.clone());
        registry.register("dataplane_drops", "Packets dropped by the dataplane, by reason", m.drops.clone());
        registry.register("dataplane_endpoints", "Endpoints programmed in the dataplane", m.endpoints.clone());
        registry.register("dataplane_map_entries", "Entries in each BPF map", m.map_entries.clone());
        registry.register("dataplane_map_capacity", "Capacity (max entries) of each BPF map", m.map_capacity.clone());
        registry.register("policy_rule_packets", "Packets decided by each rule", m.rule_packets.clone());
        registry.register("policy_rule_bytes", "Bytes decided by each rule", m.rule_bytes.clone());
        registry.register("policy_rule_connections", "Connections decided by each rule", m.rule_connections.clone());
        registry.register(
            "policy_programming_latency_seconds",
            "Time from a policy change to its enforcement in the dataplane",
            m.programming_latency.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts flushed records: flows by verdict/direction, per-rule hits of the deciding entry.
    pub fn observe_records(&self, recs: &[FlowRecord]) {
        self.records.inc_by(recs.len() as u64);
        for r in recs {
            let verdict = if r.verdict == Verdict::Allowed { "allowed" } else { "denied" };
            self.flows.get_or_create(&FlowLabels { verdict, direction: r.direction.as_str() }).inc_by(r.flows_started);
            if let Some(hit) = r.deciding_hit() {
                let mut p = hit.split('|');
                let l = RuleLabels {
                    tier: p.next().unwrap_or_default().into(),
                    policy: p.next().unwrap_or_default().into(),
                    rule: p.next().unwrap_or_default().into(),
                };
                self.rule_packets.get_or_create(&l).inc_by(r.packets_src_to_dst + r.packets_dst_to_src);
                self.rule_bytes.get_or_create(&l).inc_by(r.bytes_src_to_dst + r.bytes_dst_to_src);
                self.rule_connections.get_or_create(&l).inc_by(r.flows_started);
            }
        }
    }

    /// Copies the dataplane's drop counters (absolute, monotonic in the kernel).
    pub fn observe_dataplane(&self, c: &Counters) {
        for r in Reason::ALL.iter().filter(|r| r.is_drop()) {
            self.drops.get_or_create(&ReasonLabels { reason: r.as_str() }).inner().store(c.get(*r), Relaxed);
        }
    }

    /// Copies the pipeline's loss counters (absolute).
    pub fn observe_pipeline(&self, c: &CountersSnapshot) {
        for (stage, n) in c.lost_by_stage() {
            self.lost.get_or_create(&StageLabels { stage }).inner().store(n, Relaxed);
        }
    }

    /// BPF map occupancy.
    pub fn observe_occupancy(&self, occ: &[MapOccupancy]) {
        for o in occ {
            self.map_entries.get_or_create(&MapLabels { map: o.name }).set(o.entries as i64);
            self.map_capacity.get_or_create(&MapLabels { map: o.name }).set(i64::from(o.max_entries));
        }
    }

    pub fn set_endpoints(&self, n: usize) {
        self.endpoints.set(n as i64);
    }

    /// One policy change enforced after `d`.
    pub fn observe_programming_latency(&self, d: Duration) {
        self.programming_latency.observe(d.as_secs_f64());
    }

    pub fn observe_store(&self, s: &StoreStats) {
        self.store_bytes.set(s.bytes as i64);
        self.store_records.set(s.records as i64);
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
