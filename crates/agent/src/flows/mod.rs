//! The agent's flow pipeline: the `porin_flow` pieces wired to the live dataplane.
//!
//! ```text
//! porin_ev_v1 ring buffer ─(thread porin-flow-rb: EventReader, poll)─> event_queue (bounded; overflow counted)
//!    ─(thread porin-flow: Pipeline<FlowContext>)─ every flush interval ─> FlowStore <data-dir>/flows (+ JSONL export)
//!                                                                     └─> live broadcast (porin observe --follow)
//! ```
//!
//! * The dataplane thread owns the [`porin_dataplane::Dataplane`]; when it opens it, it hands the
//!   ring-buffer reader to [`FlowService::attach_events`] (one consumer per ring buffer). After every
//!   programmed revision it publishes a [`FlowContext`] (the enricher snapshot) with
//!   [`FlowService::set_context`]; on its refresh tick it reports counters and map occupancy
//!   ([`FlowService::observe_dataplane`]).
//! * The pipeline thread swaps the newest context in before the next event (a generation counter, one
//!   relaxed load per event), flushes every interval, and publishes each stored batch to followers.
//!   A follower registers under the same lock as a flush's append + publish, so it sees every stored
//!   record once: in its initial query or live.
//! * The API reads the store through a [`FlowStoreReader`] (redb readers never block the writer).
//! * Every loss is a [`PipelineCounters`] field: `ringbuf_full` (kernel, from the dataplane counters),
//!   `decode_errors` (reader), `queue_overflow` (queue), `store_errors` (store).

pub mod context;
pub mod rulehits;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use porin_dataplane::{Counters, EventReader, MapOccupancy, Reason};
use porin_flow::{
    AggregationLevel, AggregatorConfig, FlowRecord, FlowSink, FlowStore, FlowStoreOptions, FlowStoreReader, JsonlExporter, JsonlOptions, Metrics,
    Pipeline, PipelineCounters, Query, StoreStats, TimeBase, event_queue,
};
use serde_json::{Value, json};
use tokio::sync::broadcast;

pub use context::{ContextInputs, FlowContext};

/// How the agent's pipeline runs (from `porin agent` flags).
#[derive(Debug, Clone)]
pub struct FlowOptions {
    pub node: String,
    pub level: AggregationLevel,
    pub flush_interval: Duration,
    /// Directory of the flow store (`<data-dir>/flows`).
    pub store_dir: PathBuf,
    pub store: FlowStoreOptions,
    /// JSON-lines export directory.
    pub export: Option<PathBuf>,
    /// Reader → pipeline queue capacity (events).
    pub queue_capacity: usize,
    /// Where the per-rule hit counters are kept across restarts (`<data-dir>/rule-hits.json`); None: memory only.
    pub rule_hits: Option<PathBuf>,
}

/// A source contacting one decoy raises at most one alert per this interval (a port scan is one alert).
const DECOY_ALERT_EVERY: Duration = Duration::from_secs(60);
/// Bound of the (source, decoy) pairs remembered for [`DECOY_ALERT_EVERY`]; beyond it contacts are not alerted
/// again until pairs expire (a flood of spoofed sources cannot grow memory).
const DECOY_CONTACTS_MAX: usize = 65_536;
type DecoyContacts = HashMap<(std::net::IpAddr, u32), Instant>;

/// Stored batches, as they are stored.
pub type LiveFeed = broadcast::Receiver<Arc<Vec<FlowRecord>>>;

/// Batches kept for followers that fall behind (each is one flush).
const LIVE_BACKLOG: usize = 256;
/// Age eviction runs at least this often, even without new records.
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);

/// How often the kernel's denied-packet aggregates are drained (each drain waits for one RCU grace
/// period when there is something to drain).
const DENIED_DRAIN_EVERY: Duration = Duration::from_millis(200);

/// How often live connections' counters are read from the conntrack map, so a long-lived connection
/// reports packets and bytes while it is open, not only at close.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Moves the kernel's denied-packet aggregates into the queue. They are sent with back-pressure (one
/// event stands for many packets: dropping it would lose more than one event's worth); the ring keeps
/// filling meanwhile, where loss is counted by the kernel. Returns `false` when the pipeline is gone.
fn drain_denied(reader: &mut EventReader, buf: &mut Vec<Result<porin_dataplane::Event, porin_dataplane::events::DecodeError>>, tx: &porin_flow::EventSender, c: &PipelineCounters) -> bool {
    let Some(agg) = reader.denied_aggregates() else { return true };
    buf.clear();
    match agg.drain(buf) {
        Ok(st) => {
            PipelineCounters::add(&c.denied_aggregates, buf.len() as u64);
            PipelineCounters::add(&c.denied_aggregated_packets, st.packets);
        }
        Err(e) => tracing::warn!(error = %e, "draining the denied-packet aggregates failed (retried)"),
    }
    for r in buf.drain(..) {
        match r {
            Ok(ev) => {
                if tx.send_blocking(ev) == porin_flow::SendOutcome::Closed {
                    return false;
                }
            }
            Err(_) => PipelineCounters::add(&c.decode_errors, 1),
        }
    }
    true
}

/// Why flow visibility could not start.
#[derive(Debug, thiserror::Error)]
pub enum FlowStartError {
    #[error("opening the flow store {}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: porin_flow::Error,
    },
    #[error("opening the flow export {}", path.display())]
    Export {
        path: PathBuf,
        #[source]
        source: porin_flow::Error,
    },
    /// A flow thread could not be started.
    #[error(transparent)]
    Thread(#[from] std::io::Error),
}

/// The pipeline's shared face: counters, metrics, store reader, live feed, enricher snapshot.
pub struct FlowService {
    pub counters: Arc<PipelineCounters>,
    pub metrics: Arc<Metrics>,
    opts: FlowOptions,
    store_path: PathBuf,
    reader: FlowStoreReader,
    live: broadcast::Sender<Arc<Vec<FlowRecord>>>,
    /// Held across a flush's store append + publish, and across a follower's query + subscribe.
    publish: Mutex<()>,
    store_stats: Mutex<StoreStats>,
    context: Mutex<Arc<FlowContext>>,
    context_gen: AtomicU64,
    events_tx: Mutex<Option<mpsc::Sender<EventReader>>>,
    reader_attached: AtomicBool,
    /// Live followers lost batches (a slow `observe --follow`); not flow loss: the store has them.
    pub follow_lagged: AtomicU64,
    /// Where honeypod contacts are raised ([`FlowService::set_alerts`]).
    alerts: std::sync::OnceLock<Arc<crate::alerts::AlertLog>>,
    /// Per-rule hit counters (`porin review unused`), written by the pipeline thread.
    rule_hits: Mutex<rulehits::RuleHits>,
}

impl std::fmt::Debug for FlowService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowService").field("store", &self.store_path).finish_non_exhaustive()
    }
}

fn mono_now() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FlowService {
    /// Opens the flow store and starts the reader and pipeline threads. The reader thread idles until
    /// the dataplane hands over its ring buffer.
    pub fn start(opts: FlowOptions) -> Result<Arc<FlowService>, FlowStartError> {
        let store_path = opts.store_dir.join("flows.redb");
        let store = FlowStore::open(&store_path, opts.store.clone()).map_err(|source| FlowStartError::Store { path: store_path.clone(), source })?;
        let exporter = match &opts.export {
            Some(dir) => Some(JsonlExporter::open(JsonlOptions::new(dir)).map_err(|source| FlowStartError::Export { path: dir.clone(), source })?),
            None => None,
        };
        let counters: Arc<PipelineCounters> = Arc::default();
        let (tx, rx) = mpsc::channel::<EventReader>();
        let svc = Arc::new(FlowService {
            counters: counters.clone(),
            metrics: Arc::new(Metrics::new()),
            reader: store.reader(),
            store_path,
            live: broadcast::channel(LIVE_BACKLOG).0,
            publish: Mutex::new(()),
            store_stats: Mutex::new(store.stats().unwrap_or_default()),
            context: Mutex::new(Arc::new(FlowContext::default())),
            context_gen: AtomicU64::new(0),
            events_tx: Mutex::new(Some(tx)),
            reader_attached: AtomicBool::new(false),
            follow_lagged: AtomicU64::new(0),
            alerts: std::sync::OnceLock::new(),
            rule_hits: Mutex::new(match &opts.rule_hits {
                Some(p) => rulehits::RuleHits::load(p, porin_flow::time::now_unix()),
                None => rulehits::RuleHits::in_memory(porin_flow::time::now_unix()),
            }),
            opts,
        });
        let (ev_tx, ev_rx) = event_queue(svc.opts.queue_capacity.max(1), counters.clone());
        let c2 = counters.clone();
        std::thread::Builder::new().name("porin-flow-rb".into()).spawn(move || {
            let Ok(mut reader) = rx.recv() else { return };
            tracing::info!("flow pipeline: reading the dataplane's event ring buffer");
            // Denied packets are summed per flow in the kernel and drained here, not sent one by one.
            if let Some(agg) = reader.denied_aggregates()
                && let Err(e) = agg.set_enabled(true)
            {
                tracing::warn!(error = %e, "denied-packet aggregation stays off: every denied packet is an event");
            }
            let mut last_drain = Instant::now();
            let mut last_progress = Instant::now();
            let mut drained = Vec::new();
            let mut progress = Vec::new();
            loop {
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = Instant::now();
                    progress.clear();
                    match reader.conntrack_progress(&mut progress) {
                        Ok(_) => {
                            for ev in progress.drain(..) {
                                if ev_tx.send_blocking(ev) == porin_flow::SendOutcome::Closed {
                                    return;
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "reading live connections' counters failed (retried)"),
                    }
                }
                if last_drain.elapsed() >= DENIED_DRAIN_EVERY {
                    last_drain = Instant::now();
                    if !drain_denied(&mut reader, &mut drained, &ev_tx, &c2) {
                        return;
                    }
                }
                match reader.next_timeout(porin_dataplane::EVENT_POLL_INTERVAL) {
                    Ok(None) => continue,
                    Ok(Some(first)) => {
                        let mut next = Some(first);
                        // Bounded, so that a ring that never empties still lets the aggregates drain.
                        let mut n = 0;
                        while let Some(r) = next {
                            match r {
                                Ok(ev) => {
                                    if ev_tx.send(ev) == porin_flow::SendOutcome::Closed {
                                        return;
                                    }
                                }
                                Err(_) => PipelineCounters::add(&c2.decode_errors, 1),
                            }
                            n += 1;
                            next = if n < 65_536 { reader.try_next() } else { None };
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "polling the event ring buffer failed");
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            }
        })?;
        let s2 = svc.clone();
        std::thread::Builder::new().name("porin-flow".into()).spawn(move || s2.run_pipeline(store, exporter, ev_rx))?;
        Ok(svc)
    }

    fn run_pipeline(self: Arc<Self>, mut store: FlowStore, mut exporter: Option<JsonlExporter>, rx: mpsc::Receiver<porin_dataplane::Event>) {
        let cfg = AggregatorConfig { level: self.opts.level, node: self.opts.node.clone(), time_base: TimeBase::system(), ..Default::default() };
        let mut pipeline = Pipeline::with_counters(cfg, self.context(), self.counters.clone());
        let mut generation = self.context_gen.load(Relaxed);
        let flush_every = self.opts.flush_interval.max(Duration::from_millis(10));
        let mut next_flush = Instant::now() + flush_every;
        let mut last_maintain = Instant::now();
        let mut last_store_error: Option<Instant> = None;
        let mut decoy_contacts = DecoyContacts::default();
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            let mut due = false;
            match rx.recv_timeout(wait) {
                Ok(ev) => {
                    let mut next = Some(ev);
                    // Up to one interval's worth without re-checking the clock.
                    let mut n = 0;
                    while let Some(ev) = next.take() {
                        let g = self.context_gen.load(Relaxed);
                        if g != generation {
                            pipeline.set_enricher(self.context());
                            generation = g;
                        }
                        self.check_decoy(&ev, &mut decoy_contacts);
                        due |= pipeline.push(&ev);
                        n += 1;
                        if due || n >= 4096 {
                            break;
                        }
                        next = rx.try_recv().ok();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
            if !due && Instant::now() < next_flush {
                continue;
            }
            if due {
                PipelineCounters::add(&self.counters.early_flushes, 1);
            }
            next_flush = Instant::now() + flush_every;
            let stored_before = self.counters.records_stored.load(Relaxed);
            let guard = lock(&self.publish);
            let (recs, err) = match exporter.as_mut() {
                Some(x) => pipeline.flush_to(mono_now(), &mut [&mut store as &mut dyn FlowSink, x]),
                None => pipeline.flush_to(mono_now(), &mut [&mut store as &mut dyn FlowSink]),
            };
            let stored = self.counters.records_stored.load(Relaxed) > stored_before;
            if !recs.is_empty() {
                self.metrics.observe_records(&recs);
                lock(&self.rule_hits).observe(&recs);
                if stored {
                    let _ = self.live.send(Arc::new(recs));
                }
            }
            drop(guard);
            if let Err(e) = lock(&self.rule_hits).save_if_due(false) {
                tracing::warn!(error = %e, "rule hit counters not saved (retried at the next flush)");
            }
            if let Some(e) = err
                && last_store_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10))
            {
                tracing::warn!(error = %e, "writing flow records failed (counted as lost)");
                last_store_error = Some(Instant::now());
            }
            if last_maintain.elapsed() >= MAINTAIN_EVERY {
                last_maintain = Instant::now();
                if let Err(e) = store.maintain(porin_flow::time::now_unix()) {
                    tracing::warn!(error = %e, "flow store eviction failed");
                }
            }
            self.metrics.observe_pipeline(&self.counters.snapshot());
            if let Ok(st) = store.stats() {
                self.metrics.observe_store(&st);
                *lock(&self.store_stats) = st;
            }
        }
    }

    /// Raise honeypod alerts into `alerts` (first call wins).
    pub fn set_alerts(&self, alerts: Arc<crate::alerts::AlertLog>) {
        let _ = self.alerts.set(alerts);
    }

    /// A new connection (allowed or denied) entering a decoy is a contact: raise a Honeypod alert naming the
    /// source workload, at once (before aggregation and the flush). One alert per (source, decoy) per
    /// [`DECOY_ALERT_EVERY`]; the ports tried meanwhile are counted, not alerted one by one.
    fn check_decoy(&self, ev: &porin_dataplane::Event, seen: &mut DecoyContacts) {
        use porin_dataplane::abi::{Direction, EventType};
        let Some(alerts) = self.alerts.get() else { return };
        if ev.dir != Direction::Ingress || !matches!(ev.kind, EventType::NewAllowed | EventType::Denied) {
            return;
        }
        let (Some(src), Some(dst)) = (ev.src, ev.dst) else { return };
        let ctx = self.context();
        let Some((ns, decoy)) = ctx.decoy(ev.endpoint_id) else { return };
        let now = Instant::now();
        seen.retain(|_, t| now.duration_since(*t) < DECOY_ALERT_EVERY);
        if seen.len() >= DECOY_CONTACTS_MAX || seen.insert((src, ev.endpoint_id), now).is_some() {
            return;
        }
        let ports = matches!(ev.proto, 6 | 17 | 132);
        let src_ep = ctx.alert_endpoint(src, ports.then_some(ev.sport));
        let who = match (&src_ep.namespace, &src_ep.pod) {
            (Some(n), Some(p)) => format!("{n}/{p}"),
            _ => src.to_string(),
        };
        let protocol = match ev.proto {
            6 => "tcp",
            17 => "udp",
            132 => "sctp",
            1 | 58 => "icmp",
            _ => "other",
        };
        let mut a = crate::alerts::Alert::new(
            crate::alerts::AlertKind::Honeypod,
            format!("{ns}/{decoy}"),
            format!("{who} contacted decoy {ns}/{decoy} ({protocol} port {})", ev.dport),
        );
        a.src = Some(src_ep);
        a.dst = Some(ctx.alert_endpoint(dst, ports.then_some(ev.dport)));
        a.protocol = Some(protocol.to_string());
        a.verdict = Some(if ev.kind == EventType::NewAllowed { "allowed" } else { "denied" }.to_string());
        a.addresses = vec![src.to_string()];
        tracing::warn!(decoy = %format!("{ns}/{decoy}"), source = %who, protocol, port = ev.dport, "honeypod contacted");
        alerts.raise(a);
    }

    /// The dataplane opened: its ring buffer becomes the pipeline's input (first call wins).
    pub fn attach_events(&self, r: EventReader) {
        if let Some(tx) = lock(&self.events_tx).take() {
            self.reader_attached.store(true, Relaxed);
            let _ = tx.send(r);
        }
    }

    pub fn wants_events(&self) -> bool {
        !self.reader_attached.load(Relaxed)
    }

    /// A new enricher snapshot (after a programmed revision).
    pub fn set_context(&self, ctx: FlowContext) {
        *lock(&self.context) = Arc::new(ctx);
        self.context_gen.fetch_add(1, Relaxed);
    }

    pub fn context(&self) -> Arc<FlowContext> {
        lock(&self.context).clone()
    }

    /// The dataplane's counters and occupancy (its refresh tick): drop metrics, and the kernel's
    /// `RINGBUF_FULL` as the first stage of flow loss.
    pub fn observe_dataplane(&self, c: Option<&Counters>, occ: Option<&[MapOccupancy]>, endpoints: usize) {
        if let Some(c) = c {
            self.metrics.observe_dataplane(c);
            self.counters.ringbuf_full.store(c.get(Reason::RingbufFull), Relaxed);
        }
        if let Some(o) = occ {
            self.metrics.observe_occupancy(o);
        }
        self.metrics.set_endpoints(endpoints);
        self.metrics.observe_pipeline(&self.counters.snapshot());
    }

    /// One policy change enforced `d` after the agent saw it.
    pub fn observe_programming(&self, d: Duration) {
        self.metrics.observe_programming_latency(d);
    }

    /// Stored records matching `q`.
    pub fn query(&self, q: &Query) -> Result<Vec<FlowRecord>, porin_flow::Error> {
        self.reader.query(q)
    }

    /// Stored records matching `q`, and a receiver of every batch stored after them.
    pub fn follow(&self, q: &Query) -> Result<(Vec<FlowRecord>, LiveFeed), porin_flow::Error> {
        let _g = lock(&self.publish);
        let rx = self.live.subscribe();
        let initial = if q.since.is_some() || q.until.is_some() || q.last.is_some() || q.first.is_some() { self.reader.query(q)? } else { Vec::new() };
        Ok((initial, rx))
    }

    /// The per-rule hit counters since they were first kept.
    pub fn rule_hits(&self) -> rulehits::RuleHitTable {
        lock(&self.rule_hits).table()
    }

    /// OpenMetrics text, with the pipeline counters as of now.
    pub fn encode_metrics(&self) -> String {
        self.metrics.observe_pipeline(&self.counters.snapshot());
        self.metrics.encode()
    }

    /// The `flows` section of `porin status`.
    pub fn status(&self) -> Value {
        let c = self.counters.snapshot();
        let lost: serde_json::Map<String, Value> = c.lost_by_stage().iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
        json!({
            "aggregation": match self.opts.level { AggregationLevel::FiveTuple => "five-tuple", AggregationLevel::Workload => "workload" },
            "flushIntervalMillis": self.opts.flush_interval.as_millis() as u64,
            "store": self.store_path.display().to_string(),
            "storeMaxBytes": self.opts.store.max_bytes,
            "storeMaxAgeSeconds": self.opts.store.max_age.as_secs(),
            "export": self.opts.export.as_ref().map(|p| p.display().to_string()),
            "readingEvents": self.reader_attached.load(Relaxed),
            "contextRevision": self.context().revision,
            "counters": c,
            "lostByStage": lost,
            "lostTotal": c.lost_total(),
            "followLagged": self.follow_lagged.load(Relaxed),
            "storeStats": *lock(&self.store_stats),
        })
    }
}
