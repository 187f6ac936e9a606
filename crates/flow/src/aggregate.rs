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

/// A 5-tuple as seen at one hook of one endpoint (addresses as 16 raw bytes, v4 in the first 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tuple {
    endpoint_id: u32,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    family: u8,
    dir: u8,
}

impl Tuple {
    fn of(ev: &Event) -> Option<Self> {
        let (family, src) = ip_bytes(ev.src?);
        let (_, dst) = ip_bytes(ev.dst?);
        Some(Self {
            endpoint_id: ev.endpoint_id,
            src,
            dst,
            sport: ev.sport,
            dport: ev.dport,
            proto: ev.proto,
            family,
            dir: ev.dir as u8,
        })
    }

    /// The same connection seen from the other direction at the same endpoint.
    fn reversed(&self) -> Self {
        Self { src: self.dst, dst: self.src, sport: self.dport, dport: self.sport, dir: self.dir ^ 1, ..*self }
    }

    fn is_icmp(&self) -> bool {
        self.proto == 1 || self.proto == 58
    }
}

#[inline]
fn words(b: &[u8; 16]) -> (u64, u64) {
    (u64::from_le_bytes(b[..8].try_into().expect("8")), u64::from_le_bytes(b[8..].try_into().expect("8")))
}

// Hand-written hashes: a few whole words instead of field by field (these tables are the hot path).
impl std::hash::Hash for Tuple {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let (s0, s1) = words(&self.src);
        let (d0, d1) = words(&self.dst);
        h.write_u64(s0 ^ s1.rotate_left(32));
        h.write_u64(d0 ^ d1.rotate_left(32));
        h.write_u64(
            u64::from(self.endpoint_id)
                | u64::from(self.sport) << 32
                | u64::from(self.dport) << 48,
        );
        h.write_u32(u32::from(self.proto) | u32::from(self.family) << 8 | u32::from(self.dir) << 16);
    }
}

impl std::hash::Hash for AggKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let (s0, s1) = words(&self.src);
        let (d0, d1) = words(&self.dst);
        h.write_u64(self.local ^ self.peer.rotate_left(29));
        h.write_u64(s0 ^ s1.rotate_left(32));
        h.write_u64(d0 ^ d1.rotate_left(32));
        h.write_u64(u64::from(self.rule_id) | u64::from(self.sport) << 32 | u64::from(self.dport) << 48);
        h.write_u64(
            u64::from(self.proto)
                | u64::from(self.family) << 8
                | u64::from(self.dir) << 16
                | u64::from(self.verdict) << 24
                | u64::from(self.reason) << 32,
        );
    }
}

fn ip_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        }
        IpAddr::V6(a) => (6, a.octets()),
    }
}

fn ip_of(family: u8, b: &[u8; 16]) -> IpAddr {
    if family == 4 { IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])) } else { IpAddr::V6(Ipv6Addr::from(*b)) }
}

const VERDICT_ALLOWED: u8 = 0;
const VERDICT_DENIED: u8 = 1;
const NO_REASON: u8 = 255;
/// Side ids: raw endpoint ids / identities below 2^32, interned workload slots above.
const SLOT_BIT: u64 = 1 << 32;

/// The aggregation key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AggKey {
    local: u64,
    peer: u64,
    rule_id: u32,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    family: u8,
    dir: u8,
    verdict: u8,
    reason: u8,
}

impl AggKey {
    /// The key of tuple `t` with its sides' ids (`local`, `peer`: see [`Aggregator::key`]).
    fn build(level: AggregationLevel, t: &Tuple, local: u64, peer: u64, rule_id: u32, verdict: u8, reason: u8) -> Self {
        match level {
            AggregationLevel::FiveTuple => AggKey {
                local,
                peer,
                rule_id,
                src: t.src,
                dst: t.dst,
                sport: t.sport,
                dport: t.dport,
                proto: t.proto,
                family: t.family,
                dir: t.dir,
                verdict,
                reason,
            },
            // Ingress: the destination port is on the local side (dst), egress: on the peer (dst) -- either way
            // the packet's dport. ICMP keeps type/code.
            AggregationLevel::Workload => AggKey {
                local,
                peer,
                rule_id,
                src: [0; 16],
                dst: [0; 16],
                sport: 0,
                dport: t.dport,
                proto: t.proto,
                family: t.family,
                dir: t.dir,
                verdict,
                reason,
            },
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

/// Full sort key of a flushed entry: (start, end, src ip, src port, dst ip, dst port, verdict) with `Option<IpAddr>`
/// as (0 none / 1 v4 / 2 v6, address as a big-endian number) and `Option<u16>` as 0 / port + 1, which orders
/// exactly as the record's fields do.
type SortKey = (u64, u64, u8, u128, u32, u8, u128, u32, u8);

fn ip_key(ip: Option<IpAddr>) -> (u8, u128) {
    match ip {
        None => (0, 0),
        Some(IpAddr::V4(a)) => (1, u128::from(u32::from(a))),
        Some(IpAddr::V6(a)) => (2, u128::from(a)),
    }
}

fn port_key(p: Option<u16>) -> u32 {
    p.map_or(0, |p| u32::from(p) + 1)
}

/// One entry of a flushed interval.
#[derive(Debug)]
struct Flushed {
    key: AggKey,
    e: Entry,
    open: u32,
}

/// One side of a flushed entry as the record shows it.
struct SideView<'a> {
    side: &'a Side,
    ip: Option<IpAddr>,
    port: Option<u16>,
    identity: Option<u32>,
}

impl Flushed {
    /// (src, dst) as the record shows them.
    fn sides(&self, workload: bool) -> (SideView<'_>, SideView<'_>) {
        let t = &self.e.first;
        let ingress = t.dir == Direction::Ingress as u8;
        let (sport, dport) = if t.is_icmp() { (None, None) } else { (Some(t.sport).filter(|_| !workload), Some(t.dport)) };
        let (src_ip, dst_ip) = if workload { (None, None) } else { (Some(ip_of(t.family, &t.src)), Some(ip_of(t.family, &t.dst))) };
        let (local_ip, peer_ip) = if ingress { (dst_ip, src_ip) } else { (src_ip, dst_ip) };
        let (local_port, peer_port) = if ingress { (dport, sport) } else { (sport, dport) };
        let local = SideView { side: &self.e.local, ip: local_ip, port: local_port, identity: None };
        let peer = SideView { side: &self.e.peer, ip: peer_ip, port: peer_port, identity: Some(self.e.peer_identity) };
        if ingress { (peer, local) } else { (local, peer) }
    }

    fn sort_key(&self, tb: TimeBase, workload: bool) -> SortKey {
        let (src, dst) = self.sides(workload);
        let (sf, sa) = ip_key(src.ip);
        let (df, da) = ip_key(dst.ip);
        (tb.to_unix(self.e.start_ns), tb.to_unix(self.e.end_ns), sf, sa, port_key(src.port), df, da, port_key(dst.port), self.key.verdict)
    }

    fn display_names(&self, workload: bool) -> (String, String) {
        let (src, dst) = self.sides(workload);
        (endpoint_of(&src, workload, false).display_name(), endpoint_of(&dst, workload, false).display_name())
    }

    fn record(&self, level: AggregationLevel, node: &str, tb: TimeBase) -> FlowRecord {
        let workload = level == AggregationLevel::Workload;
        let (k, e, open) = (&self.key, &self.e, self.open);
        let t = &e.first;
        let ingress = t.dir == Direction::Ingress as u8;
        let (src, dst) = self.sides(workload);
        FlowRecord {
            start_time: tb.to_unix(e.start_ns),
            end_time: tb.to_unix(e.end_ns),
            node: node.to_string(),
            verdict: if k.verdict == VERDICT_ALLOWED { Verdict::Allowed } else { Verdict::Denied },
            pending_verdict: e.pending.as_ref().map(|p| p.verdict),
            drop_reason: (k.reason != NO_REASON).then(|| reason_name(k.reason).into_owned()),
            direction: if ingress { FlowDirection::Ingress } else { FlowDirection::Egress },
            reporter: if ingress { Reporter::Dst } else { Reporter::Src },
            ip_family: if t.family == 4 { IpFamily::V4 } else { IpFamily::V6 },
            protocol: protocol_name(t.proto).into_owned(),
            icmp: t.is_icmp().then_some(Icmp { kind: (t.dport >> 8) as u8, code: t.dport as u8 }),
            src: endpoint_of(&src, workload, true),
            dst: endpoint_of(&dst, workload, true),
            enforced_trace: e.rule.as_ref().map(|r| r.trace.clone()).unwrap_or_default(),
            pending_trace: e.pending.as_ref().map(|p| p.trace.clone()).unwrap_or_default(),
            packets_src_to_dst: e.packets_fwd,
            bytes_src_to_dst: e.bytes_fwd,
            packets_dst_to_src: e.packets_rev,
            bytes_dst_to_src: e.bytes_rev,
            tcp_flags: TcpFlags(e.tcp_flags),
            flows_started: e.started,
            flows_completed: e.completed,
            flows_open: u64::from(open),
            open: open > 0,
            aggregation: level,
        }
    }

    /// Adds this entry's record to `enc` (the record [`Self::record`] builds, in the block encoding), with the
    /// metadata interned by pointer: no string is copied.
    fn encode(&self, level: AggregationLevel, node: &str, tb: TimeBase, enc: &mut BlockEncoder) {
        let workload = level == AggregationLevel::Workload;
        let (k, e, open) = (&self.key, &self.e, self.open);
        let t = &e.first;
        let ingress = t.dir == Direction::Ingress as u8;
        let (src, dst) = self.sides(workload);
        let side = |v: &SideView<'_>, enc: &mut BlockEncoder| {
            let endpoint = match (&v.side.meta, workload) {
                (None, _) => enc.endpoint_memo(0, EndpointDesc::unknown),
                // Per-5-tuple: the metadata as the enricher shared it (one table entry per distinct `Arc`).
                (Some(m), false) => enc.endpoint_memo(Arc::as_ptr(m) as usize, || desc_of(m, v.side, false)),
                // Per workload: the labels are those the merged members share (interned by content).
                (Some(m), true) => enc.endpoint(desc_of(m, v.side, true)),
            };
            SideRef { endpoint, identity: v.identity, ip: v.ip, port: v.port }
        };
        let (src, dst) = (side(&src, enc), side(&dst, enc));
        let no_trace: &[String] = &[];
        let r = RecordRef {
            start_time: tb.to_unix(e.start_ns),
            end_time: tb.to_unix(e.end_ns),
            node: enc.str(node),
            verdict: if k.verdict == VERDICT_ALLOWED { Verdict::Allowed } else { Verdict::Denied },
            pending_verdict: e.pending.as_ref().map(|p| p.verdict),
            drop_reason: (k.reason != NO_REASON).then(|| enc.str(&reason_name(k.reason))),
            direction: if ingress { FlowDirection::Ingress } else { FlowDirection::Egress },
            reporter: if ingress { Reporter::Dst } else { Reporter::Src },
            ip_family: if t.family == 4 { IpFamily::V4 } else { IpFamily::V6 },
            protocol: enc.str(&protocol_name(t.proto)),
            icmp: t.is_icmp().then_some(Icmp { kind: (t.dport >> 8) as u8, code: t.dport as u8 }),
            src,
            dst,
            enforced_trace: match &e.rule {
                Some(r) => enc.trace_memo(Arc::as_ptr(r) as usize, &r.trace),
                None => enc.trace_memo(0, no_trace),
            },
            pending_trace: match &e.pending {
                Some(p) => enc.trace_memo(Arc::as_ptr(p) as usize, &p.trace),
                None => enc.trace_memo(0, no_trace),
            },
            packets_src_to_dst: e.packets_fwd,
            bytes_src_to_dst: e.bytes_fwd,
            packets_dst_to_src: e.packets_rev,
            bytes_dst_to_src: e.bytes_rev,
            tcp_flags: e.tcp_flags,
            flows_started: e.started,
            flows_completed: e.completed,
            flows_open: u64::from(open),
            open: open > 0,
            aggregation: level,
        };
        enc.push(&r);
    }
}

fn reason_name(reason: u8) -> std::borrow::Cow<'static, str> {
    match Reason::from_u8(reason) {
        Some(r) => r.as_str().into(),
        None => reason.to_string().into(),
    }
}

fn desc_of<'a>(m: &'a EndpointMeta, side: &'a Side, workload: bool) -> EndpointDesc<'a> {
    EndpointDesc {
        kind: m.kind,
        namespace: m.namespace.as_deref(),
        pod: if workload { None } else { m.pod.as_deref() },
        workload: if workload { m.aggregate_name() } else { m.workload.as_deref() },
        network_set: m.network_set.as_deref(),
        labels: side.labels(),
    }
}

/// The record's endpoint of a side (`labels: false`: without labels, for display names).
fn endpoint_of(v: &SideView<'_>, workload: bool, labels: bool) -> FlowEndpoint {
    let mut ep = FlowEndpoint { ip: v.ip, port: v.port, identity: v.identity, ..Default::default() };
    if let Some(m) = &v.side.meta {
        let d = desc_of(m, v.side, workload);
        ep.kind = d.kind;
        ep.namespace = d.namespace.map(Into::into);
        ep.pod = d.pod.map(Into::into);
        ep.workload = d.workload.map(Into::into);
        ep.network_set = d.network_set.map(Into::into);
        if labels {
            ep.labels = d.labels.clone();
        }
    }
    ep
}

/// One flush interval's records before they are built: what [`Aggregator::flush_batch`] returns. The flow store
/// encodes it without building a [`FlowRecord`] per record; [`Self::to_records`] builds them (the records
/// [`Aggregator::flush`] returns, in the same order).
#[derive(Debug)]
pub struct FlowBatch {
    level: AggregationLevel,
    node: Arc<str>,
    time_base: TimeBase,
    /// In drain order; `order` lists them in flush order.
    entries: Vec<Flushed>,
    order: Vec<u32>,
}

/// The counters of one record of a [`FlowBatch`] (without building it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchCounts {
    pub verdict: Verdict,
    pub end_time: UnixNanos,
    pub packets_src_to_dst: u64,
    pub bytes_src_to_dst: u64,
    pub packets_dst_to_src: u64,
    pub bytes_dst_to_src: u64,
    pub flows_started: u64,
    pub flows_completed: u64,
    pub flows_open: u64,
}

impl FlowBatch {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The records, in flush order.
    pub fn to_records(&self) -> Vec<FlowRecord> {
        self.flushed().map(|f| f.record(self.level, &self.node, self.time_base)).collect()
    }

    fn flushed(&self) -> impl ExactSizeIterator<Item = &Flushed> + '_ {
        self.order.iter().map(|&i| &self.entries[i as usize])
    }

    /// Each record's counters, in flush order.
    pub fn counts(&self) -> impl ExactSizeIterator<Item = BatchCounts> + '_ {
        self.flushed().map(|f| BatchCounts {
            verdict: if f.key.verdict == VERDICT_ALLOWED { Verdict::Allowed } else { Verdict::Denied },
            end_time: self.time_base.to_unix(f.e.end_ns),
            packets_src_to_dst: f.e.packets_fwd,
            bytes_src_to_dst: f.e.bytes_fwd,
            packets_dst_to_src: f.e.packets_rev,
            bytes_dst_to_src: f.e.bytes_rev,
            flows_started: f.e.started,
            flows_completed: f.e.completed,
            flows_open: u64::from(f.open),
        })
    }

    /// End time of record `i` (flush order).
    pub fn end_time(&self, i: usize) -> UnixNanos {
        self.time_base.to_unix(self.entries[self.order[i] as usize].e.end_ns)
    }

    /// Adds record `i` (flush order) to `enc`: exactly what [`Self::to_records`]`()[i]` encodes to, without
    /// building it.
    pub fn encode(&self, i: usize, enc: &mut BlockEncoder) {
        self.entries[self.order[i] as usize].encode(self.level, &self.node, self.time_base, enc);
    }
}
