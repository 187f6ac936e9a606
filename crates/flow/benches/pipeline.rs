//! End-to-end flow pipeline throughput on one core: synthetic ring-buffer records →
//! `Event::decode` → enrichment (hash-map enricher) → aggregation → flow store (redb, fsync per
//! flush), with zero loss checked at the end.
//!
//! `cargo bench -p porin-flow --bench pipeline [-- --events N --rounds R --level five_tuple|workload --via batch|records --no-readback]`
//!
//! `--via batch` (default) stores each flush as the agent does, encoded from the aggregator's entries; `--via
//! records` builds every record first and appends those. The stored records are read back at the end and checked
//! against the generator (every admitted connection, close and denied packet).
//!
//! Workload (replayed synthetic node): 200 local pods in 20 workloads across 10 namespaces; peers
//! are those pods, 5 network sets and the world. Per round (= one 10 s flush interval at a simulated
//! 100 k events/s): ~82 % of events belong to allowed TCP connections (NEW_ALLOWED, then CLOSE from
//! the forward or reply side a few hundred events later; 10 % of connections stay open), ~18 % to
//! denied attempts (a SYN and two retransmits). Destination ports from a set of 8.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use porin_abi::RawEvent;
use porin_abi::{Direction, EventType, Reason};
use porin_flow::{
    AggregationLevel, AggregatorConfig, EndpointMeta, FlowStore, FlowStoreOptions, MapEnricher, PendingVerdict, Pipeline,
    TimeBase, Verdict,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PODS: u32 = 200;
const PORTS: [u16; 8] = [80, 443, 5432, 6379, 8080, 9090, 53, 3306];
const WORLD: u32 = 2;
const NETSET0: u32 = 3;

fn pod_ip(p: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&Ipv4Addr::new(10, 1, (p / 250) as u8, (p % 250) as u8 + 1).octets());
    b
}

/// Rules are per (workload, port), as compiled policy would make them.
fn rule_of(local_pod: u32, port: u16) -> u32 {
    ((local_pod % 20) * 8 + u32::from(port) % 7) % 64
}

fn enricher() -> MapEnricher {
    let mut e = MapEnricher::default();
    for p in 0..PODS {
        let ns = format!("ns-{}", p % 10);
        let wl = format!("app-{}", p % 20);
        let pod = format!("{wl}-5d8f7-{p:05}");
        let m = EndpointMeta::pod(&ns, &pod, Some(&wl), &[("app", &wl), ("team", &ns), ("pod-template-hash", "5d8f7")]);
        e = e.with_endpoint(p + 1, m.clone()).with_identity(1000 + p, m);
    }
    e = e.with_identity(WORLD, EndpointMeta::world());
    for n in 0..5 {
        e = e.with_identity(NETSET0 + n, EndpointMeta::network_set(None, &format!("partners-{n}"), &[("kind", "partner")]));
    }
    for r in 0..64u32 {
        let allow = format!("default|ns-{}/knp.default.allow-{r}|{}|allow", r % 10, r % 4);
        e = e.with_rule(r, &["security|global.baseline|0|pass", &allow]);
        let deny = format!("security|global.deny-{r}|{}|deny", r % 3);
        e = e.with_rule(1000 + r, &[&deny]);
    }
    for p in 0..PODS / 4 {
        e = e.with_pending(p + 1, WORLD, 0, PendingVerdict::WouldDeny, &["staged:security|global.lockdown|0|deny"]);
    }
    e
}

#[derive(Default)]
struct Truth {
    new: u64,
    close: u64,
    denied: u64,
}

struct Gen {
    rng: Rng,
    ts: u64,
    step_ns: u64,
    /// (due index, raw CLOSE record)
    closes: std::collections::VecDeque<(u64, RawEvent)>,
    idx: u64,
    truth: Truth,
}

impl Gen {
    fn push(&mut self, out: &mut Vec<u8>, mut r: RawEvent) {
        r.ts_ns = self.ts;
        self.ts += self.step_ns;
        self.idx += 1;
        out.extend_from_slice(r.as_bytes());
    }

    /// `n` events into `out`.
    fn round(&mut self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        let end = self.idx + n;
        while self.idx < end {
            if let Some((due, _)) = self.closes.front()
                && *due <= self.idx
            {
                let (_, c) = self.closes.pop_front().expect("front");
                self.truth.close += 1;
                self.push(out, c);
                continue;
            }
            let rng = &mut self.rng;
            let local = rng.below(u64::from(PODS)) as u32;
            let dir = if rng.below(2) == 0 { Direction::Egress } else { Direction::Ingress };
            let (peer_id, peer_ip) = match rng.below(10) {
                0 => (WORLD, { let mut b = [0u8; 16]; b[..4].copy_from_slice(&[93, 184, rng.below(256) as u8, rng.below(256) as u8]); b }),
                1 => (NETSET0 + rng.below(5) as u32, { let mut b = [0u8; 16]; b[..4].copy_from_slice(&[192, 0, 2, rng.below(64) as u8]); b }),
                _ => {
                    let p = rng.below(u64::from(PODS)) as u32;
                    (1000 + p, pod_ip(p))
                }
            };
            let port = PORTS[rng.below(PORTS.len() as u64) as usize];
            let sport = 32768 + rng.below(28000) as u16;
            let (src, dst) = if dir == Direction::Egress { (pod_ip(local), peer_ip) } else { (peer_ip, pod_ip(local)) };
            let base = RawEvent {
                packets: 1,
                bytes: 74,
                endpoint_id: local + 1,
                peer_identity: peer_id,
                ifindex: local + 10,
                policy_rev: 1,
                dir: dir as u8,
                family: 4,
                proto: 6,
                tcp_flags: 0x02,
                src,
                dst,
                sport,
                dport: port,
                ..Default::default()
            };
            if rng.below(100) < 12 {
                // 12 % of draws, 3 events each: ~18 % of events are denials
                let rule = 1000 + rule_of(local, port);
                for _ in 0..3 {
                    let r = RawEvent { r#type: EventType::Denied as u8, reason: Reason::DropPolicyDeny as u8, rule_id: rule, ..base };
                    self.truth.denied += 1;
                    self.push(out, r);
                }
            } else {
                let rule = rule_of(local, port);
                let r = RawEvent { r#type: EventType::NewAllowed as u8, reason: Reason::AllowNew as u8, rule_id: rule, ..base };
                self.truth.new += 1;
                self.push(out, r);
                if self.rng.below(10) != 0 {
                    let reply = self.rng.below(2) == 0;
                    let mut c = RawEvent {
                        r#type: EventType::Close as u8,
                        reason: Reason::AllowEstablished as u8,
                        packets: 5 + self.rng.below(50),
                        bytes: 2000 + self.rng.below(100_000),
                        tcp_flags: 0x11,
                        ..r
                    };
                    if reply {
                        c.src = r.dst;
                        c.dst = r.src;
                        c.sport = r.dport;
                        c.dport = r.sport;
                        c.dir ^= 1;
                    }
                    let due = self.idx + 100 + self.rng.below(1000);
                    self.closes.push_back((due, c));
                }
            }
        }
    }
}

/// CPU time of this thread (excludes time waiting for the CPU on a loaded machine, and I/O waits).
fn cpu() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn run(level: AggregationLevel, events_per_round: u64, rounds: u64, via_records: bool, readback: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = FlowStore::open(dir.path().join("flows.redb"), FlowStoreOptions::default()).expect("store");
    let tb = TimeBase::system();
    let cfg = AggregatorConfig { level, node: "bench".into(), time_base: tb, ..Default::default() };
    let mut p = Pipeline::new(cfg, enricher());
    // Simulated 100 k events/s, starting "now".
    let start_mono = tb.to_mono(porin_flow::time::now_unix());
    let mut g = Gen { rng: Rng(0x9e37_79b9_7f4a_7c15), ts: start_mono, step_ns: 10_000, closes: Default::default(), idx: 0, truth: Truth::default() };
    let mut buf = Vec::with_capacity(events_per_round as usize * 96);
    let (mut t_ingest, mut t_flush) = (Duration::ZERO, Duration::ZERO);
    let (mut records, mut flushes) = (0u64, 0u64);
    let mut all_started_allowed = 0u64;
    let mut all_completed = 0u64;
    let mut denied_packets = 0u64;
    let mut t_store = Duration::ZERO;
    let (mut c_ingest, mut c_flush, mut c_store) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut flush = |p: &mut Pipeline<MapEnricher>, now: u64, store: &mut FlowStore, t: &mut Duration| {
        let t0 = Instant::now();
        let c0 = cpu();
        let batch = p.flush_batch(now);
        if via_records {
            // The path of store format 3: build every record, then encode them.
            let recs = batch.to_records();
            let t1 = Instant::now();
            let c1 = cpu();
            store.append_at(&recs, tb.to_unix(now)).expect("append");
            t_store += t1.elapsed();
            c_store += cpu() - c1;
        } else {
            let t1 = Instant::now();
            let c1 = cpu();
            store.append_batch_at(&batch, tb.to_unix(now)).expect("append");
            t_store += t1.elapsed();
            c_store += cpu() - c1;
        }
        *t += t0.elapsed();
        c_flush += cpu() - c0;
        records += batch.len() as u64;
        flushes += 1;
        for r in batch.counts() {
            if r.verdict == Verdict::Allowed {
                all_started_allowed += r.flows_started;
                all_completed += r.flows_completed;
            } else {
                denied_packets += r.packets_src_to_dst;
            }
        }
        p.recycle(batch);
    };
    let mut peak_state = (0.0f64, 0usize);
    for _ in 0..rounds {
        g.round(events_per_round, &mut buf);
        let mut t0 = Instant::now();
        let mut c0 = cpu();
        for rec in buf.chunks_exact(std::mem::size_of::<RawEvent>()) {
            if p.push_raw(rec) {
                // Early flush (interval table full): timed as flush, not ingest.
                t_ingest += t0.elapsed();
                c_ingest += cpu() - c0;
                flush(&mut p, g.ts, &mut store, &mut t_flush);
                t0 = Instant::now();
                c0 = cpu();
            }
        }
        t_ingest += t0.elapsed();
        c_ingest += cpu() - c0;
        let tracked = p.aggregator().tracked();
        if tracked > peak_state.1 {
            peak_state = (p.aggregator().state_bytes_per_tracked(), tracked);
        }
        flush(&mut p, g.ts, &mut store, &mut t_flush);
    }
    // Deliver the closes still pending, then a final flush.
    let mut rest = Vec::new();
    while let Some((_, c)) = g.closes.pop_front() {
        g.truth.close += 1;
        let mut c = c;
        c.ts_ns = g.ts;
        rest.extend_from_slice(c.as_bytes());
    }
    for rec in rest.chunks_exact(std::mem::size_of::<RawEvent>()) {
        p.push_raw(rec);
    }
    flush(&mut p, g.ts, &mut store, &mut t_flush);

    let c = p.counters().snapshot();
    let events = c.events_in;
    assert_eq!(c.lost_total(), 0, "loss: {c:?}");
    assert_eq!(all_started_allowed, g.truth.new, "every admitted connection is in a record");
    assert_eq!(all_completed, g.truth.close, "every close is in a record");
    assert_eq!(denied_packets, g.truth.denied, "every denied packet is in a record");
    let st = store.stats().expect("stats");
    // What was stored, read back (not timed above): every event is in a stored record.
    let t_query = Instant::now();
    let stored = if readback { store.query(&porin_flow::Query::default()).expect("query") } else { Vec::new() };
    let t_query = t_query.elapsed();
    assert!(!readback || stored.len() as u64 == records, "every record was stored (none evicted)");
    let (mut s_new, mut s_close, mut s_denied) = (0, 0, 0);
    for r in &stored {
        if r.verdict == Verdict::Allowed {
            s_new += r.flows_started;
            s_close += r.flows_completed;
        } else {
            s_denied += r.packets_src_to_dst;
        }
    }
    assert!(!readback || (s_new, s_close, s_denied) == (g.truth.new, g.truth.close, g.truth.denied), "stored records hold every event");
    let total = t_ingest + t_flush;
    println!(
        "level={level:?} via={} events={events} records={records} flushes={flushes} aggregation_ratio={:.1} events/record",
        if via_records { "records" } else { "batch" },
        events as f64 / records.max(1) as f64
    );
    println!(
        "  end-to-end {:.2} M events/s ({:.0} ns/event; decode+enrich+aggregate {:.0} ms = {:.0} ns/event, flush {:.0} ms, store {:.0} ms = {:.1} us/record)",
        events as f64 / total.as_secs_f64() / 1e6,
        total.as_nanos() as f64 / events as f64,
        t_ingest.as_secs_f64() * 1e3,
        t_ingest.as_nanos() as f64 / events as f64,
        (t_flush - t_store).as_secs_f64() * 1e3,
        t_store.as_secs_f64() * 1e3,
        t_store.as_secs_f64() * 1e6 / records.max(1) as f64,
    );
    let c_total = c_ingest + c_flush;
    println!(
        "  CPU time (this thread): {:.2} M events per CPU-second (decode+enrich+aggregate {:.0} ns/event, flush {:.0} ms, store {:.0} ms = {:.2} us/record)",
        events as f64 / c_total.as_secs_f64() / 1e6,
        c_ingest.as_nanos() as f64 / events as f64,
        (c_flush - c_store).as_secs_f64() * 1e3,
        c_store.as_secs_f64() * 1e3,
        c_store.as_secs_f64() * 1e6 / records.max(1) as f64,
    );
    println!(
        "  tracked connections peak={} state={:.0} B/tracked flow; store records={} bytes={} file={} B ({:.0} B/record); lost={}",
        peak_state.1,
        peak_state.0,
        st.records,
        st.bytes,
        st.file_bytes,
        st.bytes as f64 / st.records.max(1) as f64,
        c.lost_total()
    );
    println!(
        "  query of every stored record: {:.0} ms ({:.2} M records/s)",
        t_query.as_secs_f64() * 1e3,
        stored.len() as f64 / t_query.as_secs_f64() / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let events: u64 = arg(&args, "--events", 1_000_000);
    let rounds: u64 = arg(&args, "--rounds", 5);
    let level: String = arg(&args, "--level", "both".to_string());
    // `--via records`: build every flushed record and append those (the path before store format 4).
    let via_records = arg(&args, "--via", "batch".to_string()) == "records";
    // `--no-readback`: skip reading the store back at the end (for profiling the pipeline alone).
    let readback = !args.iter().any(|a| a == "--no-readback");
    if level == "both" || level == "workload" {
        run(AggregationLevel::Workload, events, rounds, via_records, readback);
    }
    if level == "both" || level == "five_tuple" {
        run(AggregationLevel::FiveTuple, events, rounds, via_records, readback);
    }
}
