//! Loss accounting: every stage counts what it could not pass on.
//!
//! [`PipelineCounters`] is shared (`Arc`) between the ring-buffer reader thread, the pipeline and the
//! metrics endpoint; fields are relaxed atomics (they are statistics, not synchronisation).
//! [`PipelineCounters::lost_by_stage`] lists the counters that mean "a flow event is missing from the
//! records"; the others explain records that look unusual but lose nothing.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

macro_rules! counters {
    ($( $(#[$m:meta])* $name:ident ),* $(,)?) => {
        /// Pipeline statistics (see the module docs).
        #[derive(Debug, Default)]
        pub struct PipelineCounters {
            $( $(#[$m])* pub $name: AtomicU64, )*
        }

        /// A plain copy of [`PipelineCounters`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct CountersSnapshot {
            $( $(#[$m])* pub $name: u64, )*
        }

        impl PipelineCounters {
            /// Reads every counter.
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot { $( $name: self.$name.load(Relaxed), )* }
            }
        }
    };
}

counters! {
    /// Events the aggregator accepted.
    events_in,
    /// LOST: `bpf_ringbuf_reserve` failures in the kernel (`PORIN_R_RINGBUF_FULL`), as last reported.
    ringbuf_full,
    /// LOST: ring-buffer records that did not decode.
    decode_errors,
    /// LOST: events dropped because the reader→pipeline queue was full.
    queue_overflow,
    /// LOST: records a sink (store) failed to write.
    store_errors,
    /// Records that the JSON-lines export failed to write (the store still has them).
    export_errors,
    /// Events without IP addresses (non-IP drops); counted, no record.
    non_ip_events,
    /// CLOSE/REVOKED events with no tracked open (opened before the agent started, or evicted):
    /// recorded as seen, orientation may be the reply's.
    close_unmatched,
    /// Connections not tracked because the tracker was full (their close is then unmatched).
    tracker_full,
    /// Tracked connections dropped after their idle lifetime (UDP and other protocols never close).
    tracker_expired,
    /// Records created for an endpoint id the enricher did not know.
    unknown_endpoint,
    /// Records created for a peer identity the enricher did not know.
    unknown_identity,
    /// Records created for a rule id the enricher did not know (empty enforced trace).
    unknown_rule,
    /// Flushes forced early because the interval's record table reached its limit.
    early_flushes,
    /// Records produced by flushes.
    records_out,
    /// Records written by the store.
    records_stored,
    /// Kernel aggregates of denied packets read (one event per flow and CPU, each many packets).
    denied_aggregates,
    /// Denied packets those aggregates held (not sent one by one through the ring buffer).
    denied_aggregated_packets,
}

impl PipelineCounters {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
}

impl CountersSnapshot {
    /// Events lost, by stage: `(stage, count)`. Stage names are the `stage` label of
    /// `porin_flow_lost_events_total`.
    pub fn lost_by_stage(&self) -> [(&'static str, u64); 4] {
        [
            ("ringbuf", self.ringbuf_full),
            ("decode", self.decode_errors),
            ("queue", self.queue_overflow),
            ("store", self.store_errors),
        ]
    }

    /// Sum of [`Self::lost_by_stage`].
    pub fn lost_total(&self) -> u64 {
        self.lost_by_stage().iter().map(|(_, n)| n).sum()
    }
}
