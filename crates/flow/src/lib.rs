//! Porin flow visibility: every workload connection, allowed or denied, with the policy that
//! decided it and what staged policies would have done.
//!
//! Owns: flow records, aggregation, the flow store, filters, printers, metrics. Never: BPF (it reads decoded events
//! from `porin-abi`), threads (the agent runs the pipeline), policy decisions.
//!
//! The pieces, in pipeline order (see `docs/design/flows.md` for the record schema and the
//! reasoning):
//!
//! * [`pipeline`]: raw ring-buffer records → [`porin_abi::Event`] → [`aggregate`] →
//!   [`pipeline::FlowSink`]s, with a bounded reader→pipeline [`pipeline::event_queue`]; every
//!   loss counted in [`counters::PipelineCounters`].
//! * [`enrich`]: the [`enrich::Enricher`] trait the agent implements (endpoint ids, identities and
//!   rule ids → pods, labels, policy traces, staged verdicts).
//! * [`aggregate`]: per-5-tuple or per-workload records per flush interval, with a bounded
//!   connection tracker.
//! * [`record`]: the [`record::FlowRecord`] (stable JSON field names).
//! * [`store`]: the embedded flow store (redb), bounded by size and age, queryable by time and
//!   [`filter`]; [`export`]: rotated JSON-lines files for log shippers.
//! * [`filter`]: `porin observe` filter flags (`--namespace`, `--from-pod`, `--not`, …) with
//!   hubble's OR/AND/NOT rules; [`print`]: compact, JSON and table printers.
//! * [`metrics`]: the Prometheus registry the agent serves at `/metrics`.
//!
//! No threads or tasks are started by this crate; the caller owns the loop and the clock.
//!
//! # Wiring (what the agent does)
//!
//! ```
//! use porin_flow::{AggregationLevel, AggregatorConfig, FlowStore, FlowStoreOptions, MapEnricher, Metrics, Pipeline, TimeBase};
//! use porin_flow::filter::parse_args;
//! use porin_flow::print::{OutputFormat, Printer};
//!
//! let cfg = AggregatorConfig {
//!     level: AggregationLevel::Workload,
//!     node: "node-1".into(),
//!     time_base: TimeBase::system(),
//!     ..Default::default()
//! };
//! // The agent implements `Enricher` over its snapshot; a `MapEnricher` works too.
//! let mut pipeline = Pipeline::new(cfg, MapEnricher::default());
//! let mut store = FlowStore::in_memory(FlowStoreOptions::default())?;
//! let metrics = Metrics::new();
//!
//! // Loop: for each ring-buffer record `pipeline.push_raw(bytes)` (or `push_result` from the
//! // dataplane's `EventReader`); when it returns true, or every flush interval:
//! let now_mono = 0; // CLOCK_MONOTONIC ns, the clock of event timestamps
//! let (records, err) = pipeline.flush_to(now_mono, &mut [&mut store]);
//! assert!(err.is_none());
//! metrics.observe_records(&records);
//! metrics.observe_pipeline(&pipeline.counters().snapshot());
//! metrics.observe_store(&store.stats()?);
//! let _text = metrics.encode(); // serve at /metrics
//!
//! // `porin observe --namespace prod --not --verdict allowed --last 20`:
//! let q = parse_args(["--namespace", "prod", "--not", "--verdict", "allowed", "--last", "20"], porin_flow::time::now_unix())?;
//! let mut printer = Printer::new(std::io::stdout(), OutputFormat::Compact, false);
//! for r in store.query(&q)? {
//!     printer.print(&r)?;
//! }
//! printer.finish()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod aggregate;
pub mod codec;
pub mod counters;
pub mod enrich;
pub mod export;
pub mod filter;
pub mod hubble;
pub mod metrics;
pub mod pipeline;
pub mod print;
pub mod record;
pub mod store;
pub mod time;

use std::path::PathBuf;

pub use aggregate::{Aggregator, AggregatorConfig, BatchCounts, FlowBatch};
pub use counters::{CountersSnapshot, PipelineCounters};
pub use enrich::{EndpointMeta, Enricher, MapEnricher, PendingMeta, PendingQuery, RuleMeta};
pub use export::{JsonlExporter, JsonlOptions};
pub use filter::{FilterArgs, FilterError, FilterTerm, FlowFilter, Query};
pub use metrics::Metrics;
pub use pipeline::{EventSender, FlowSink, Pipeline, SendOutcome, event_queue};
pub use print::{OutputFormat, Printer};
pub use record::{
    AggregationLevel, EndpointKind, FlowDirection, FlowEndpoint, FlowRecord, IpFamily, PendingVerdict, Reporter,
    TcpFlags, Verdict,
};
pub use store::{FlowStore, FlowStoreOptions, FlowStoreReader, StoreStats};
pub use time::{TimeBase, UnixNanos};

/// Errors of the flow store and the export.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("flow store {path}: {source}")]
    Store { path: PathBuf, source: Box<redb::Error> },
    #[error("flow store {path} is open in another process")]
    StoreLocked { path: PathBuf },
    #[error("flow store {path}: corrupt record at key {key}: {detail}")]
    Corrupt { path: PathBuf, key: String, detail: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("encoding a flow record: {0}")]
    Encode(#[from] serde_json::Error),
}
