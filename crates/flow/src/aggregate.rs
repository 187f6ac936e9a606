//! Aggregation: dataplane events in, one [`FlowRecord`] per key per flush interval out.
//!
//! The dataplane reports a flow at its edges only: `NEW_ALLOWED` (first packet of an admitted
//! connection), `DENIED` (every dropped packet), `CLOSE` (first FIN/RST, with the conntrack
//! totals of that packet's direction) and `REVOKED` (an established flow cut by a policy change,
//! with the same totals). The [`Aggregator`] therefore keeps two tables:
//!
//! * the **interval table**: one entry per aggregation key with counters, created (and enriched)
//!   on the first event of the key in the interval, drained by [`Aggregator::flush`];
//! * the **connection tracker**: admitted connections not yet closed, so that a `CLOSE` seen from
//!   the reply side finds its original orientation and record key, so that totals are not counted
//!   twice (the first packet was already counted at `NEW_ALLOWED`), and so that a record can say
//!   how many of its connections are still open. It is bounded ([`AggregatorConfig::max_tracked`])
//!   and entries expire after the dataplane's conntrack lifetimes.
//!
//! Keys ([`AggregationLevel`]):
//! * `five_tuple`: local endpoint, peer identity, addresses, ports, protocol, direction, verdict,
//!   drop reason, rule id;
//! * `workload`: local workload and peer workload (by [`EndpointMeta::aggregate_name`], falling
//!   back to the endpoint id / identity when unknown) instead of endpoint, addresses and source
//!   port. Labels of a merged side are the labels all its pods share.
//!
//! The verdict is part of every key: allowed and denied traffic never share a record.
//!
//! The tables hash with FxHash (`rustc-hash`: fast, not collision-resistant). Keys are flow tuples chosen by
//! packets on the node, so a hostile workload could aim for collisions; the tables are bounded and counted (see
//! `docs/design/flows.md`), and the cost of a collision flood is CPU, not a wrong answer.
//!
//! A flush returns a [`FlowBatch`]: the interval's entries, which the flow store encodes directly (metadata
//! interned per block by pointer, see [`crate::codec::BlockEncoder`]) and which build [`FlowRecord`]s only
//! when asked.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use porin_abi::{Direction, Event, EventType, Reason};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::codec::{BlockEncoder, EndpointDesc, RecordRef, SideRef};
use crate::counters::PipelineCounters;
use crate::enrich::{EndpointMeta, Enricher, PendingMeta, PendingQuery, RuleMeta};
use crate::record::{
    AggregationLevel, EndpointKind, FlowDirection, FlowEndpoint, FlowRecord, Icmp, IpFamily, Reporter, TcpFlags,
    Verdict, protocol_name,
};
use crate::time::{TimeBase, UnixNanos};

/// Conntrack lifetimes of the dataplane (`abi.h`): idle time after which an entry is gone.
pub const CT_LIFETIME_TCP_NS: u64 = 6 * 3600 * 1_000_000_000;
/// Lifetime of non-TCP conntrack entries.
pub const CT_LIFETIME_OTHER_NS: u64 = 180 * 1_000_000_000;

/// Aggregator settings.
#[derive(Clone, Debug)]
pub struct AggregatorConfig {
    pub level: AggregationLevel,
    /// Node name written into every record.
    pub node: String,
    /// Monotonic → wall clock.
    pub time_base: TimeBase,
    /// Connection tracker capacity (open connections remembered). Default 262 144 (2× the
    /// dataplane's default conntrack size / 2 entries per connection, with headroom).
    pub max_tracked: usize,
    /// Interval table size at which [`Aggregator::ingest`] asks for an early flush. Default 65 536.
    pub max_interval_records: usize,
    /// Idle lifetime of a tracked TCP connection (default: the dataplane's, 6 h).
    pub tcp_lifetime_ns: u64,
    /// Idle lifetime of other tracked connections (default: the dataplane's, 180 s).
    pub other_lifetime_ns: u64,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            level: AggregationLevel::FiveTuple,
            node: String::new(),
            time_base: TimeBase::from_offset(0),
            max_tracked: 262_144,
            max_interval_records: 65_536,
            tcp_lifetime_ns: CT_LIFETIME_TCP_NS,
            other_lifetime_ns: CT_LIFETIME_OTHER_NS,
        }
    }
}

/// One record being accumulated.
#[derive(Debug)]
struct Entry {
    start_ns: u64,
    end_ns: u64,
    /// The tuple and identity of the first event (enrichment and pending query used these).
    first: Tuple,
    peer_identity: u32,
    packets_fwd: u64,
    bytes_fwd: u64,
    packets_rev: u64,
    bytes_rev: u64,
    tcp_flags: u8,
    started: u64,
    completed: u64,
    local: Side,
    peer: Side,
    rule: Option<Arc<RuleMeta>>,
    pending: Option<Arc<PendingMeta>>,
}

/// Metadata of one side of an entry. For merged (per-workload) sides, the distinct members seen
/// are remembered (a few at a time) and their shared labels computed when the record is built.
#[derive(Debug)]
struct Side {
    meta: Option<Arc<EndpointMeta>>,
    last_member: u32,
    /// Per-workload records only: the members merged into this side (boxed: a per-5-tuple entry stays small).
    merge: Option<Box<Merge>>,
}

#[derive(Debug, Default)]
struct Merge {
    /// Other members seen since the last fold (ids and metadata), at most `MAX_MEMBERS`.
    members: Vec<(u32, Option<Arc<EndpointMeta>>)>,
    /// Labels shared by all members folded so far (`None`: nothing folded yet).
    shared_labels: Option<BTreeMap<String, String>>,
}

const MAX_MEMBERS: usize = 16;

impl Side {
    fn new(meta: Option<Arc<EndpointMeta>>, member: u32) -> Self {
        Self { meta, last_member: member, merge: None }
    }

    /// Notes that `member` contributed; `meta` is called only for a member not seen recently.
    #[inline]
    fn join(&mut self, member: u32, meta: impl FnOnce() -> Option<Arc<EndpointMeta>>) {
        if member == self.last_member {
            return;
        }
        self.last_member = member;
        let m = self.merge.get_or_insert_with(Default::default);
        if m.members.iter().any(|(x, _)| *x == member) {
            return;
        }
        if m.members.len() == MAX_MEMBERS {
            Self::fold(&self.meta, m);
        }
        m.members.push((member, meta()));
    }

    fn fold(meta: &Option<Arc<EndpointMeta>>, m: &mut Merge) {
        let labels = m.shared_labels.get_or_insert_with(|| meta.as_ref().map(|m| m.labels.clone()).unwrap_or_default());
        for (_, x) in m.members.drain(..) {
            match x {
                Some(x) => labels.retain(|k, v| x.labels.get(k) == Some(v)),
                None => labels.clear(),
            }
        }
    }

    /// Folds the members seen into the shared labels (once, when the interval is flushed).
    fn settle(&mut self) {
        if let Some(m) = self.merge.as_deref_mut()
            && (!m.members.is_empty() || m.shared_labels.is_some())
        {
            Self::fold(&self.meta, m);
        }
    }

    /// The labels every member has (with the same value); call [`Self::settle`] first.
    fn labels(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        match (self.merge.as_ref().and_then(|m| m.shared_labels.as_ref()), &self.meta) {
            (Some(l), _) => l,
            (None, Some(m)) => &m.labels,
            (None, None) => &NONE,
        }
    }
}

/// A tracked open connection (an allowed one). Its record key is rebuilt from the tracker's tuple and these ids
/// ([`Conn::key`]) rather than stored: a smaller tracker entry (112 bytes instead of 160) is fewer cache misses.
#[derive(Clone, Copy, Debug)]
struct Conn {
    local: u64,
    peer: u64,
    rule_id: u32,
    peer_identity: u32,
    /// Packets/bytes already counted per direction (original, reply).
    counted: [(u64, u64); 2],
    opened_ns: u64,
}

impl Conn {
    fn new(key: &AggKey, peer_identity: u32, counted: [(u64, u64); 2], opened_ns: u64) -> Self {
        Self { local: key.local, peer: key.peer, rule_id: key.rule_id, peer_identity, counted, opened_ns }
    }

    /// The record key of this connection, whose tuple (the tracker's key) is `t`.
    fn key(&self, level: AggregationLevel, t: &Tuple) -> AggKey {
        AggKey::build(level, t, self.local, self.peer, self.rule_id, VERDICT_ALLOWED, NO_REASON)
    }
}

/// Per-interval cache of the enricher's answers for per-workload keys.
#[derive(Default)]
struct SideCache {
    endpoints: FxHashMap<u32, (Option<Arc<EndpointMeta>>, u64)>,
    identities: FxHashMap<u32, (Option<Arc<EndpointMeta>>, u64)>,
}

/// Events → records (see the module docs).
pub struct Aggregator {
    cfg: AggregatorConfig,
    counters: Arc<PipelineCounters>,
    interval: FxHashMap<AggKey, Entry>,
    /// Denied tuples seen this interval (to count attempts, not packets).
    denied_seen: FxHashSet<Tuple>,
    tracker: FxHashMap<Tuple, Conn>,
    /// Per-workload keys: tracked connections per key (for `flows_open`). Per 5-tuple a key names one tuple, so
    /// it has at most one tracked connection, found in the tracker itself ([`Aggregator::open_of`]).
    live: FxHashMap<AggKey, u32>,
    cache: SideCache,
    /// Workload names → slots; persistent so that keys stored in the tracker stay valid.
    slots: FxHashMap<(EndpointKind, Option<String>, String), u32>,
    /// Memory of a written batch ([`Aggregator::recycle`]): entries and order.
    spare: (Vec<Flushed>, Vec<u32>),
    sort_keys: Vec<(UnixNanos, UnixNanos, u32)>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("level", &self.cfg.level)
            .field("interval_records", &self.interval.len())
            .field("tracked", &self.tracker.len())
            .finish_non_exhaustive()
    }
}

impl Aggregator {
    pub fn new(cfg: AggregatorConfig, counters: Arc<PipelineCounters>) -> Self {
        Self {
            cfg,
            counters,
            interval: FxHashMap::default(),
            denied_seen: FxHashSet::default(),
            tracker: FxHashMap::default(),
            live: FxHashMap::default(),
            cache: SideCache::default(),
            slots: FxHashMap::default(),
            spare: Default::default(),
            sort_keys: Vec::new(),
        }
    }

    pub fn config(&self) -> &AggregatorConfig {
        &self.cfg
    }

    /// Records accumulated in the current interval.
    pub fn interval_len(&self) -> usize {
        self.interval.len()
    }

    /// Open connections tracked.
    pub fn tracked(&self) -> usize {
        self.tracker.len()
    }

    /// Estimated heap bytes held by the connection tracker, per tracked connection (key, value and
    /// the hash table's control byte, at the table's current load), plus the live-count table.
    pub fn state_bytes_per_tracked(&self) -> f64 {
        let entry = std::mem::size_of::<(Tuple, Conn)>() + 1;
        let live = std::mem::size_of::<(AggKey, u32)>() + 1;
        let bytes = self.tracker.capacity() * entry + self.live.capacity() * live;
        bytes as f64 / self.tracker.len().max(1) as f64
    }

    /// Adds one event. Returns `true` when the interval table is full and the caller should
    /// [`flush`](Self::flush) now (nothing is dropped if it does not; the table just grows).
    pub fn ingest<E: Enricher + ?Sized>(&mut self, ev: &Event, enr: &E) -> bool {
        PipelineCounters::add(&self.counters.events_in, 1);
        let Some(t) = Tuple::of(ev) else {
            PipelineCounters::add(&self.counters.non_ip_events, 1);
            return false;
        };
        match ev.kind {
            EventType::NewAllowed => self.on_new(ev, t, enr),
            EventType::Denied => {
                // One packet, or an aggregate of the kernel's (first_ts_ns..ts_ns, summed counts).
                let span = (ev.first_ts_ns.min(ev.ts_ns), ev.ts_ns);
                let reason = ev.reason as u8;
                self.on_denied(span, t, ev.peer_identity, ev.rule_id, reason, (ev.packets, ev.bytes), ev.tcp_flags, enr);
            }
            EventType::Close | EventType::Revoked => self.on_close(ev, t, enr),
            EventType::Progress => self.on_progress(ev, t, enr),
        }
        self.interval.len() >= self.cfg.max_interval_records
    }

    fn on_new<E: Enricher + ?Sized>(&mut self, ev: &Event, t: Tuple, enr: &E) {
        let key = self.key(&t, ev.peer_identity, ev.rule_id, VERDICT_ALLOWED, NO_REASON, enr);
        let e = self.entry(key, &t, ev.peer_identity, (ev.ts_ns, ev.ts_ns), enr);
        e.packets_fwd += ev.packets;
        e.bytes_fwd += ev.bytes;
        e.tcp_flags |= ev.tcp_flags;
        e.started += 1;

        let conn = Conn::new(&key, ev.peer_identity, [(ev.packets, ev.bytes), (0, 0)], ev.ts_ns);
        debug_assert_eq!(conn.key(self.cfg.level, &t), key);
        if self.tracker.len() >= self.cfg.max_tracked && !self.tracker.contains_key(&t) {
            self.expire(ev.ts_ns);
            if self.tracker.len() >= self.cfg.max_tracked {
                PipelineCounters::add(&self.counters.tracker_full, 1);
                return;
            }
        }
        if let Some(old) = self.tracker.insert(t, conn) {
            // The kernel forgot the old connection (idle expiry) and admitted the tuple again.
            self.unlive(&old.key(self.cfg.level, &t));
        }
        if self.cfg.level == AggregationLevel::Workload {
            *self.live.entry(key).or_insert(0) += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_denied<E: Enricher + ?Sized>(
        &mut self,
        span: (u64, u64),
        t: Tuple,
        peer_identity: u32,
        rule_id: u32,
        reason: u8,
        (packets, bytes): (u64, u64),
        tcp_flags: u8,
        enr: &E,
    ) {
        let key = self.key(&t, peer_identity, rule_id, VERDICT_DENIED, reason, enr);
        let first = self.denied_seen.insert(t);
        let e = self.entry(key, &t, peer_identity, span, enr);
        e.packets_fwd += packets;
        e.bytes_fwd += bytes;
        e.tcp_flags |= tcp_flags;
        e.started += u64::from(first);
    }

    fn on_close<E: Enricher + ?Sized>(&mut self, ev: &Event, t: Tuple, enr: &E) {
        let found = match self.tracker.remove(&t) {
            Some(c) => Some((c, 0usize, t)),
            None => self.tracker.remove(&t.reversed()).map(|c| (c, 1usize, t.reversed())),
        };
        let (key, orig, peer_identity, side, delta) = match found {
            Some((conn, side, orig)) => {
                let key = conn.key(self.cfg.level, &orig);
                self.unlive(&key);
                let (p0, b0) = conn.counted[side];
                (key, orig, conn.peer_identity, side, (ev.packets.saturating_sub(p0), ev.bytes.saturating_sub(b0)))
            }
            None => {
                PipelineCounters::add(&self.counters.close_unmatched, 1);
                let key = self.key(&t, ev.peer_identity, ev.rule_id, VERDICT_ALLOWED, NO_REASON, enr);
                (key, t, ev.peer_identity, 0, (ev.packets, ev.bytes))
            }
        };
        let e = self.entry(key, &orig, peer_identity, (ev.ts_ns, ev.ts_ns), enr);
        if side == 0 {
            e.packets_fwd += delta.0;
            e.bytes_fwd += delta.1;
        } else {
            e.packets_rev += delta.0;
            e.bytes_rev += delta.1;
        }
        e.tcp_flags |= ev.tcp_flags;
        e.completed += 1;
        if ev.kind == EventType::Revoked {
            // The packet that found the flow revoked was dropped: a denied record under the
            // revoking rule, in the connection's original orientation.
            self.on_denied((ev.ts_ns, ev.ts_ns), orig, peer_identity, ev.rule_id, Reason::DropRevoked as u8, (1, 0), ev.tcp_flags, enr);
        }
    }

    /// A live connection's counters so far (one conntrack entry, one direction): what was not counted yet goes
    /// into this interval's record, so a long-lived connection reports its packets and bytes every interval,
    /// not only at close. Connections the tracker does not know (opened before the agent, or expired from the
    /// tracker) are left to their close event; nothing is counted twice.
    fn on_progress<E: Enricher + ?Sized>(&mut self, ev: &Event, t: Tuple, enr: &E) {
        let (side, orig) = if self.tracker.contains_key(&t) {
            (0usize, t)
        } else if self.tracker.contains_key(&t.reversed()) {
            (1usize, t.reversed())
        } else {
            return;
        };
        let Some(conn) = self.tracker.get_mut(&orig) else { return };
        let (p0, b0) = conn.counted[side];
        let delta = (ev.packets.saturating_sub(p0), ev.bytes.saturating_sub(b0));
        if delta == (0, 0) {
            return;
        }
        conn.counted[side] = (p0.max(ev.packets), b0.max(ev.bytes));
        let (key, peer_identity) = (conn.key(self.cfg.level, &orig), conn.peer_identity);
        let e = self.entry(key, &orig, peer_identity, (ev.ts_ns, ev.ts_ns), enr);
        if side == 0 {
            e.packets_fwd += delta.0;
            e.bytes_fwd += delta.1;
        } else {
            e.packets_rev += delta.0;
            e.bytes_rev += delta.1;
        }
        e.tcp_flags |= ev.tcp_flags;
    }

    fn unlive(&mut self, key: &AggKey) {
        if self.cfg.level != AggregationLevel::Workload {
            return;
        }
        if let std::collections::hash_map::Entry::Occupied(mut o) = self.live.entry(*key) {
            *o.get_mut() -= 1;
            if *o.get() == 0 {
                o.remove();
            }
        }
    }

    /// Tracked connections of record key `key`.
    fn open_of(level: AggregationLevel, live: &FxHashMap<AggKey, u32>, tracker: &FxHashMap<Tuple, Conn>, key: &AggKey) -> u32 {
        match level {
            AggregationLevel::Workload => live.get(key).copied().unwrap_or(0),
            // The key holds the whole tuple: the connection tracked at that tuple, if its key is this one.
            AggregationLevel::FiveTuple => {
                if key.verdict != VERDICT_ALLOWED {
                    return 0;
                }
                let t = Tuple {
                    endpoint_id: key.local as u32,
                    src: key.src,
                    dst: key.dst,
                    sport: key.sport,
                    dport: key.dport,
                    proto: key.proto,
                    family: key.family,
                    dir: key.dir,
                };
                tracker.get(&t).is_some_and(|c| c.key(level, &t) == *key).into()
            }
        }
    }

    /// Drops tracked connections idle past their lifetime (at monotonic time `now_ns`).
    fn expire(&mut self, now_ns: u64) {
        let (tcp, other, level) = (self.cfg.tcp_lifetime_ns, self.cfg.other_lifetime_ns, self.cfg.level);
        let mut gone = Vec::new();
        self.tracker.retain(|t, c| {
            let life = if t.proto == 6 { tcp } else { other };
            let keep = now_ns.saturating_sub(c.opened_ns) < life;
            if !keep {
                gone.push(c.key(level, t));
            }
            keep
        });
        PipelineCounters::add(&self.counters.tracker_expired, gone.len() as u64);
        for k in gone {
            self.unlive(&k);
        }
    }

    fn key<E: Enricher + ?Sized>(&mut self, t: &Tuple, peer_identity: u32, rule_id: u32, verdict: u8, reason: u8, enr: &E) -> AggKey {
        let (local, peer) = match self.cfg.level {
            AggregationLevel::FiveTuple => (u64::from(t.endpoint_id), u64::from(peer_identity)),
            AggregationLevel::Workload => (self.endpoint_slot(t.endpoint_id, enr), self.identity_slot(peer_identity, enr)),
        };
        AggKey::build(self.cfg.level, t, local, peer, rule_id, verdict, reason)
    }

    fn slot_of(slots: &mut FxHashMap<(EndpointKind, Option<String>, String), u32>, m: &EndpointMeta) -> Option<u64> {
        let name = m.aggregate_name()?;
        let k = (m.kind, m.namespace.clone(), name.to_string());
        let n = slots.len() as u32;
        Some(SLOT_BIT | u64::from(*slots.entry(k).or_insert(n)))
    }

    fn endpoint_slot<E: Enricher + ?Sized>(&mut self, id: u32, enr: &E) -> u64 {
        if let Some((_, s)) = self.cache.endpoints.get(&id) {
            return *s;
        }
        let meta = enr.endpoint(id);
        let slot = meta.as_deref().and_then(|m| Self::slot_of(&mut self.slots, m)).unwrap_or(u64::from(id));
        self.cache.endpoints.insert(id, (meta, slot));
        slot
    }

    fn identity_slot<E: Enricher + ?Sized>(&mut self, id: u32, enr: &E) -> u64 {
        if let Some((_, s)) = self.cache.identities.get(&id) {
            return *s;
        }
        let meta = enr.identity(id);
        // World and other address-only peers without a name keep their identity.
        let slot = meta
            .as_deref()
            .filter(|m| m.kind != EndpointKind::World)
            .and_then(|m| Self::slot_of(&mut self.slots, m))
            .unwrap_or(u64::from(id));
        self.cache.identities.insert(id, (meta, slot));
        slot
    }

    /// The record of `key` in this interval, created if needed; `(first, last)` is the time span
    /// of what is being added.
    fn entry<E: Enricher + ?Sized>(&mut self, key: AggKey, t: &Tuple, peer_identity: u32, (first, last): (u64, u64), enr: &E) -> &mut Entry {
        use std::collections::hash_map::Entry as Slot;
        let workload = self.cfg.level == AggregationLevel::Workload;
        // One probe of the interval table (the fields are borrowed apart: the table, the cache, the counters).
        let cache = &self.cache;
        let v = match self.interval.entry(key) {
            Slot::Occupied(o) => {
                let e = o.into_mut();
                e.end_ns = e.end_ns.max(last);
                e.start_ns = e.start_ns.min(first);
                if workload {
                    e.local.join(t.endpoint_id, || cache.endpoints.get(&t.endpoint_id).and_then(|(m, _)| m.clone()));
                    e.peer.join(peer_identity, || cache.identities.get(&peer_identity).and_then(|(m, _)| m.clone()));
                }
                return e;
            }
            Slot::Vacant(v) => v,
        };
        let dir = if t.dir == Direction::Ingress as u8 { FlowDirection::Ingress } else { FlowDirection::Egress };
        let peer_ip = if workload {
            None
        } else {
            Some(ip_of(t.family, if dir == FlowDirection::Egress { &t.dst } else { &t.src }))
        };
        let local = match cache.endpoints.get(&t.endpoint_id) {
            Some((m, _)) => m.clone(),
            None => enr.endpoint(t.endpoint_id),
        };
        let peer = if workload {
            match cache.identities.get(&peer_identity) {
                Some((m, _)) => m.clone(),
                None => enr.identity(peer_identity),
            }
        } else {
            enr.peer(peer_identity, peer_ip)
        };
        let c = &self.counters;
        if local.is_none() {
            PipelineCounters::add(&c.unknown_endpoint, 1);
        }
        if peer.is_none() {
            PipelineCounters::add(&c.unknown_identity, 1);
        }
        let rule = enr.rule(key.rule_id);
        if rule.is_none() {
            PipelineCounters::add(&c.unknown_rule, 1);
        }
        let pending =
            enr.pending(&PendingQuery { endpoint_id: t.endpoint_id, direction: dir, peer_identity, peer_ip, protocol: t.proto, port: t.dport });
        v.insert(Entry {
            start_ns: first,
            end_ns: last,
            first: *t,
            peer_identity,
            packets_fwd: 0,
            bytes_fwd: 0,
            packets_rev: 0,
            bytes_rev: 0,
            tcp_flags: 0,
            started: 0,
            completed: 0,
            local: Side::new(local, t.endpoint_id),
            peer: Side::new(peer, peer_identity),
            rule,
            pending,
        })
    }

    /// Ends the interval at monotonic time `now_ns`: returns its records (ordered by start time,
    /// then end time, then source and destination), clears the interval table and the per-interval
    /// enrichment cache, and expires idle tracked connections.
    pub fn flush(&mut self, now_ns: u64) -> Vec<FlowRecord> {
        self.flush_batch(now_ns).to_records()
    }

    /// [`Self::flush`] without building the records: the interval's entries, in the same order, which the flow
    /// store encodes directly ([`crate::FlowStore::append_batch_at`]) and [`FlowBatch::to_records`] turns into
    /// the records `flush` returns.
    pub fn flush_batch(&mut self, now_ns: u64) -> FlowBatch {
        self.expire(now_ns);
        // The entries stay where the drain puts them (moved once, into a recycled vector); the flush order is a
        // permutation.
        let mut entries = std::mem::take(&mut self.spare.0);
        let (live, tracker, level) = (&self.live, &self.tracker, self.cfg.level);
        entries.extend(self.interval.drain().map(|(key, mut e)| {
            e.local.settle();
            e.peer.settle();
            Flushed { open: Self::open_of(level, live, tracker, &key), key, e }
        }));
        let tb = self.cfg.time_base;
        let workload = self.cfg.level == AggregationLevel::Workload;
        // The records' order: (start, end, src ip, src port, dst ip, dst port, verdict), then the sides' display
        // names, then the drain order (as a stable sort of the records would keep it). Start and end decide almost
        // always; the rest is computed only for ties.
        let keys = &mut self.sort_keys;
        keys.clear();
        keys.extend(entries.iter().enumerate().map(|(i, f)| (tb.to_unix(f.e.start_ns), tb.to_unix(f.e.end_ns), i as u32)));
        keys.sort_unstable_by(|a, b| {
            (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| {
                let (fa, fb) = (&entries[a.2 as usize], &entries[b.2 as usize]);
                fa.sort_key(tb, workload)
                    .cmp(&fb.sort_key(tb, workload))
                    .then_with(|| {
                        let (sa, da) = fa.display_names(workload);
                        let (sb, db) = fb.display_names(workload);
                        sa.cmp(&sb).then_with(|| da.cmp(&db))
                    })
                    .then(a.2.cmp(&b.2))
            })
        });
        let mut order = std::mem::take(&mut self.spare.1);
        order.extend(keys.iter().map(|k| k.2));
        if keys.capacity() > 4 * keys.len().max(1024) {
            keys.shrink_to(keys.len());
        }
        self.denied_seen.clear();
        self.cache.endpoints.clear();
        self.cache.identities.clear();
        if self.denied_seen.capacity() > 4 * 65_536 {
            self.denied_seen.shrink_to(65_536);
        }
        PipelineCounters::add(&self.counters.records_out, entries.len() as u64);
        FlowBatch { level: self.cfg.level, node: self.cfg.node.as_str().into(), time_base: tb, entries, order }
    }

    /// Takes a written batch back, to reuse its memory for the next flush (optional: a dropped batch just frees
    /// it).
    pub fn recycle(&mut self, batch: FlowBatch) {
        let (mut entries, mut order) = (batch.entries, batch.order);
        let n = entries.len();
        entries.clear();
        order.clear();
        // Keep at most a few times what the last flush needed.
        if entries.capacity() > 4 * n.max(1024) {
            entries.shrink_to(n);
            order.shrink_to(n);
        }
        self.spare = (entries, order);
    }
}

mod key;
use key::*;
mod batch;
pub use batch::*;
use batch::Flushed;
