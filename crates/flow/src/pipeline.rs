//! The pipeline: raw ring-buffer records → decode → enrich + aggregate → flush to sinks.
//!
//! Synchronous and single-owner: the agent runs one [`Pipeline`] on one thread (or task), feeds it
//! events (directly from the ring buffer, or through the bounded [`event_queue`] when the reader
//! runs elsewhere), calls [`Pipeline::flush_to`] every flush interval, and reports the dataplane's
//! counters with [`Pipeline::observe_dataplane`]. Every place an event can be lost counts it in
//! [`PipelineCounters`].

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use porin_abi::{Counters, Event, Reason};

use crate::Error;
use crate::aggregate::{Aggregator, AggregatorConfig, FlowBatch};
use crate::counters::PipelineCounters;
use crate::enrich::Enricher;
use crate::record::FlowRecord;

/// Where flushed records go (the flow store, the JSON-lines export, a test vector).
pub trait FlowSink {
    /// Writes one flush's records (one transaction / one write for the whole batch).
    fn write(&mut self, records: &[FlowRecord]) -> Result<(), Error>;

    /// Writes one flush: `records` are `batch` built ([`FlowBatch::to_records`]). A sink that can use the batch
    /// directly (the flow store encodes it without the records) overrides this; the default writes `records`.
    fn write_flush(&mut self, batch: &FlowBatch, records: &[FlowRecord]) -> Result<(), Error> {
        let _ = batch;
        self.write(records)
    }
}

impl FlowSink for Vec<FlowRecord> {
    fn write(&mut self, records: &[FlowRecord]) -> Result<(), Error> {
        self.extend_from_slice(records);
        Ok(())
    }
}

/// Decode + aggregate, with loss accounting.
pub struct Pipeline<E> {
    agg: Aggregator,
    enricher: E,
    counters: Arc<PipelineCounters>,
}

impl<E> std::fmt::Debug for Pipeline<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("agg", &self.agg).finish_non_exhaustive()
    }
}

impl<E: Enricher> Pipeline<E> {
    pub fn new(cfg: AggregatorConfig, enricher: E) -> Self {
        Self::with_counters(cfg, enricher, Arc::default())
    }

    /// With counters shared with others (the queue, the metrics endpoint).
    pub fn with_counters(cfg: AggregatorConfig, enricher: E, counters: Arc<PipelineCounters>) -> Self {
        Self { agg: Aggregator::new(cfg, counters.clone()), enricher, counters }
    }

    pub fn counters(&self) -> &Arc<PipelineCounters> {
        &self.counters
    }

    pub fn aggregator(&self) -> &Aggregator {
        &self.agg
    }

    pub fn enricher(&self) -> &E {
        &self.enricher
    }

    /// Replaces the enricher (a new agent snapshot); applies to records created from now on.
    pub fn set_enricher(&mut self, e: E) {
        self.enricher = e;
    }

    /// Decodes and adds one ring-buffer record. Returns `true` if a flush is due early.
    pub fn push_raw(&mut self, bytes: &[u8]) -> bool {
        match Event::decode(bytes) {
            Ok(ev) => self.push(&ev),
            Err(_) => {
                PipelineCounters::add(&self.counters.decode_errors, 1);
                false
            }
        }
    }

    /// Adds a reader's result (the dataplane readers yield `Result<Event, DecodeError>`).
    pub fn push_result(&mut self, r: Result<Event, porin_abi::event::DecodeError>) -> bool {
        match r {
            Ok(ev) => self.push(&ev),
            Err(_) => {
                PipelineCounters::add(&self.counters.decode_errors, 1);
                false
            }
        }
    }

    /// Adds one decoded event. Returns `true` if a flush is due early (the interval table is
    /// full); the caller should then call [`Self::flush_to`].
    pub fn push(&mut self, ev: &Event) -> bool {
        self.agg.ingest(ev, &self.enricher)
    }

    /// Records the dataplane's counters: `RINGBUF_FULL` (events the kernel could not queue) is
    /// the first stage of loss.
    pub fn observe_dataplane(&mut self, c: &Counters) {
        self.counters.ringbuf_full.store(c.get(Reason::RingbufFull), std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends the interval at monotonic time `now_ns` and returns its records.
    pub fn flush(&mut self, now_ns: u64) -> Vec<FlowRecord> {
        self.agg.flush(now_ns)
    }

    /// Ends the interval at monotonic time `now_ns` and returns its entries unbuilt (see
    /// [`Aggregator::flush_batch`]): write them with [`crate::FlowStore::append_batch_at`].
    pub fn flush_batch(&mut self, now_ns: u64) -> FlowBatch {
        self.agg.flush_batch(now_ns)
    }

    /// Takes a written batch back to reuse its memory (see [`Aggregator::recycle`]).
    pub fn recycle(&mut self, batch: FlowBatch) {
        self.agg.recycle(batch);
    }

    /// Ends the interval and writes its records to every sink. A failing first sink (the store)
    /// counts the records as lost (`store_errors`); failures of later sinks (exports) count in
    /// `export_errors`. Returns the records and the first error, if any.
    pub fn flush_to(&mut self, now_ns: u64, sinks: &mut [&mut dyn FlowSink]) -> (Vec<FlowRecord>, Option<Error>) {
        let batch = self.agg.flush_batch(now_ns);
        let recs = batch.to_records();
        let mut first_err = None;
        if !recs.is_empty() {
            for (i, s) in sinks.iter_mut().enumerate() {
                match s.write_flush(&batch, &recs) {
                    Ok(()) if i == 0 => PipelineCounters::add(&self.counters.records_stored, recs.len() as u64),
                    Ok(()) => {}
                    Err(e) => {
                        let c = if i == 0 { &self.counters.store_errors } else { &self.counters.export_errors };
                        PipelineCounters::add(c, recs.len() as u64);
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        self.agg.recycle(batch);
        (recs, first_err)
    }
}

/// The sending half of the bounded reader→pipeline queue. Never blocks in [`Self::send`]:
/// a full queue drops the event and counts it in `queue_overflow`.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: SyncSender<Event>,
    counters: Arc<PipelineCounters>,
}

/// Why an event was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    Queued,
    /// Dropped and counted in `queue_overflow`.
    Overflow,
    /// The pipeline side is gone (counted as overflow too: the event is lost).
    Closed,
}

impl EventSender {
    /// Queues without blocking; counts the event as lost if the queue is full.
    pub fn send(&self, ev: Event) -> SendOutcome {
        match self.tx.try_send(ev) {
            Ok(()) => SendOutcome::Queued,
            Err(TrySendError::Full(_)) => {
                PipelineCounters::add(&self.counters.queue_overflow, 1);
                SendOutcome::Overflow
            }
            Err(TrySendError::Disconnected(_)) => {
                PipelineCounters::add(&self.counters.queue_overflow, 1);
                SendOutcome::Closed
            }
        }
    }

    /// Queues, waiting for room: back-pressure instead of loss here (the kernel ring buffer then
    /// fills, and its losses are counted by the dataplane as `ringbuf_full`).
    pub fn send_blocking(&self, ev: Event) -> SendOutcome {
        match self.tx.send(ev) {
            Ok(()) => SendOutcome::Queued,
            Err(_) => {
                PipelineCounters::add(&self.counters.queue_overflow, 1);
                SendOutcome::Closed
            }
        }
    }
}

/// A bounded queue of `capacity` decoded events between a ring-buffer reader and the pipeline,
/// counting overflow in `counters.queue_overflow`.
pub fn event_queue(capacity: usize, counters: Arc<PipelineCounters>) -> (EventSender, Receiver<Event>) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    (EventSender { tx, counters }, rx)
}
