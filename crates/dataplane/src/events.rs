//! Flow/verdict events from the `porin_ev_v1` ring buffer: a pure decoder and
//! two readers (blocking with a timeout, and async on tokio's `AsyncFd`).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use aya::maps::{Array, Map, MapData, PerCpuHashMap, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::abi::{self, DaggKey, DaggValue, Direction, EvCtl, EventType, Reason};
use crate::error::{Error, Result};

/// How often a consumer must look at the ring buffer. The BPF program submits
/// records without waking the consumer (a cross-CPU wake-up per event costs far
/// more than the packet), and wakes it early only when the unread data reaches
/// 1/[`EVENT_WAKE_FRACTION`] of the ring; a reader therefore polls with at most
/// this timeout ([`EventReader::next_timeout`] callers, [`AsyncEventReader`]).
/// `PORIN_EV_POLL_MS` in `abi.h`.
pub const EVENT_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// `PORIN_EV_WAKE_FRACTION` in `abi.h`.
pub const EVENT_WAKE_FRACTION: u32 = 4;

pub use porin_abi::event::{DecodeError, Event};
use porin_abi::event::addr;

/// Reads events; blocking calls take a timeout.
pub struct EventReader {
    rb: RingBuf<MapData>,
    denied: Option<DeniedAggregates>,
    conntrack: Option<std::sync::Arc<std::sync::Mutex<crate::ct::CtMaps>>>,
}

impl EventReader {
    pub(crate) fn new(rb: RingBuf<MapData>, denied: Option<DeniedAggregates>) -> Self {
        Self { rb, denied, conntrack: None }
    }

    pub(crate) fn with_conntrack(mut self, ct: std::sync::Arc<std::sync::Mutex<crate::ct::CtMaps>>) -> Self {
        self.conntrack = Some(ct);
        self
    }

    /// Every live TCP/UDP/SCTP flow of the conntrack map as [`EventType::Progress`] events, one per direction
    /// that saw packets: its packets and bytes so far in that direction (cumulative), with the tuple as seen
    /// in that direction, so that the flow pipeline can report long-lived connections every interval instead
    /// of only at close. O(entries) map reads; returns the number of entries read.
    pub fn conntrack_progress(&mut self, out: &mut Vec<Event>) -> Result<usize> {
        let Some(ct) = &self.conntrack else { return Ok(0) };
        let entries = {
            let maps = ct.lock().unwrap_or_else(|p| p.into_inner());
            maps.entries()?
        };
        let n = entries.len();
        for (k, v) in entries {
            if !matches!(k.proto, 6 | 17 | 132) {
                continue;
            }
            let Some(origin) = Direction::from_u8(v.dir_of_origin) else { continue };
            let reply = match origin {
                Direction::Egress => Direction::Ingress,
                Direction::Ingress => Direction::Egress,
            };
            for (dir, packets, bytes, tcp_flags) in
                [(origin, v.packets, v.bytes, v.tcp_flags), (reply, v.packets_reply, v.bytes_reply, v.tcp_flags_reply)]
            {
                if packets == 0 {
                    continue;
                }
                let (s, d, sport, dport) = k.tuple_at(dir);
                let (Ok(src), Ok(dst)) = (addr(k.family, &s), addr(k.family, &d)) else { continue };
                out.push(Event {
                    ts_ns: v.last_seen_ns,
                    kind: EventType::Progress,
                    dir,
                    reason: Reason::AllowEstablished,
                    proto: k.proto,
                    tcp_flags,
                    endpoint_id: k.endpoint_id,
                    peer_identity: v.peer_identity,
                    rule_id: v.rule_id,
                    policy_rev: v.policy_rev,
                    ifindex: 0,
                    src,
                    dst,
                    sport: u16::from_be(sport),
                    dport: u16::from_be(dport),
                    packets,
                    bytes,
                    first_ts_ns: v.last_seen_ns,
                });
            }
        }
        Ok(n)
    }

    /// The denied-packet aggregates that come with this ring buffer (one
    /// consumer for both), when the dataplane has them.
    pub fn denied_aggregates(&mut self) -> Option<&mut DeniedAggregates> {
        self.denied.as_mut()
    }

    /// Opens the pinned ring buffer of a pin directory (another process may
    /// own the `Dataplane`; a ring buffer should have ONE consumer).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self> {
        let name = abi::map_names::EVENTS;
        let md = MapData::from_pin(pin_dir.join(name)).map_err(|e| Error::Map { name, source: Box::new(e) })?;
        let map = Map::from_map_data(md).map_err(|e| Error::Map { name, source: Box::new(e) })?;
        let rb = RingBuf::try_from(map).map_err(|e| Error::Map { name, source: Box::new(e) })?;
        Ok(Self { rb, denied: Some(DeniedAggregates::open_pinned(pin_dir)?), conntrack: None })
    }

    /// The next record, if one is ready.
    pub fn try_next(&mut self) -> Option<Result<Event, DecodeError>> {
        self.rb.next().map(|item| Event::decode(&item))
    }

    /// Everything that is ready now.
    pub fn drain(&mut self) -> Vec<Result<Event, DecodeError>> {
        std::iter::from_fn(|| self.try_next()).collect()
    }

    /// Waits up to `timeout` for the next record.
    pub fn next_timeout(&mut self, timeout: Duration) -> std::io::Result<Option<Result<Event, DecodeError>>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.try_next() {
                return Ok(Some(e));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd { fd: self.rb.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: `pfd` is a valid pollfd for the duration of the call and
            // the count is 1.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }

    /// Turns this into an async reader (needs a tokio runtime context).
    pub fn into_async(self) -> std::io::Result<AsyncEventReader> {
        // SAFETY: the fd belongs to the RingBuf (its MapData), which the
        // AsyncFd owns for its whole life; it is neither closed nor replaced
        // while registered, so as_raw_fd() always returns the same open fd.
        let fd = unsafe { AsyncFd::register_with_interest(self.rb, Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
        Ok(AsyncEventReader { fd })
    }
}

/// Denied packets aggregated per flow in the kernel (`porin_dagg_v1`), and the
/// switch that turns the aggregation on (`porin_evctl_v1`). Owned by the one
/// event consumer.
///
/// While enabled, a denied packet adds to its flow's per-CPU entry of the
/// current generation instead of sending an event; [`drain`](Self::drain)
/// moves to the next generation, waits for an RCU grace period (after which no
/// program can still add to an older generation: tc programs run inside an RCU
/// read-side section), then reads and deletes every entry of the older
/// generations. Nothing is read while it can still change, so the sums are
/// exact; a packet whose entry could not be created went to the ring buffer.
pub struct DeniedAggregates {
    ctl: Array<MapData, EvCtl>,
    agg: PerCpuHashMap<MapData, DaggKey, DaggValue>,
    generation: u32,
    flags: u32,
}

/// What one [`DeniedAggregates::drain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainStats {
    /// Entries read and deleted.
    pub entries: u64,
    /// Denied packets they held.
    pub packets: u64,
}

fn map_error(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |e| Error::Map { name, source: Box::new(e) }
}

impl DeniedAggregates {
    pub(crate) fn from_maps(ctl: Map, agg: Map) -> Result<Self> {
        use abi::flow_map_names::{DENIED_AGG, EVCTL};
        let ctl: Array<MapData, EvCtl> = Array::try_from(ctl).map_err(map_error(EVCTL))?;
        let agg = PerCpuHashMap::try_from(agg).map_err(map_error(DENIED_AGG))?;
        let cur = ctl.get(&0, 0).map_err(map_error(EVCTL))?;
        Ok(Self { ctl, agg, generation: cur.generation, flags: cur.flags })
    }

    /// Opens the pinned maps of a pin directory.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self> {
        use abi::flow_map_names::{DENIED_AGG, EVCTL};
        let open = |name: &'static str| -> Result<Map> {
            let md = MapData::from_pin(pin_dir.join(name)).map_err(|e| Error::Map { name, source: Box::new(e) })?;
            Map::from_map_data(md).map_err(|e| Error::Map { name, source: Box::new(e) })
        };
        Self::from_maps(open(EVCTL)?, open(DENIED_AGG)?)
    }

    /// Whether denied packets are being aggregated.
    pub fn enabled(&self) -> bool {
        self.flags & abi::EVCTL_F_AGGREGATE_DENIED != 0
    }

    /// Turns the aggregation on or off (off: every denied packet is an event
    /// again; entries made meanwhile stay until the next drain).
    pub fn set_enabled(&mut self, on: bool) -> Result<()> {
        let flags = if on { self.flags | abi::EVCTL_F_AGGREGATE_DENIED } else { self.flags & !abi::EVCTL_F_AGGREGATE_DENIED };
        self.ctl
            .set(0, EvCtl { generation: self.generation, flags }, 0)
            .map_err(map_error(abi::flow_map_names::EVCTL))?;
        self.flags = flags;
        Ok(())
    }

    /// Moves every aggregate made so far out of the kernel, as one DENIED event
    /// per (flow, CPU) with the summed packets and bytes, into `out`. Entries
    /// whose key does not decode are returned as errors (and deleted).
    pub fn drain(&mut self, out: &mut Vec<Result<Event, DecodeError>>) -> Result<DrainStats> {
        use abi::flow_map_names::{DENIED_AGG, EVCTL};
        let mut stats = DrainStats::default();
        // Anything to do? (An empty map costs one syscall, no grace period.)
        if self.agg.keys().next().is_none() {
            return Ok(stats);
        }
        let old = self.generation;
        self.generation = old.wrapping_add(1);
        self.ctl.set(0, EvCtl { generation: self.generation, flags: self.flags }, 0).map_err(map_error(EVCTL))?;
        crate::sys::synchronize_rcu()
            .map_err(|source| Error::Io { what: "waiting for an RCU grace period", path: DENIED_AGG.into(), source })?;
        // Every generation but the new one is final now (older ones: left by a
        // previous consumer).
        let keys: Vec<DaggKey> =
            self.agg.keys().filter_map(|k| k.ok()).filter(|k| k.generation != self.generation).collect();
        for k in keys {
            let values = self.agg.get(&k, 0).map_err(map_error(DENIED_AGG))?;
            self.agg.remove(&k).map_err(map_error(DENIED_AGG))?;
            stats.entries += 1;
            for v in values.iter().filter(|v| v.packets > 0) {
                stats.packets += v.packets;
                out.push(aggregate_event(&k, v));
            }
        }
        Ok(stats)
    }
}

fn aggregate_event(k: &DaggKey, v: &DaggValue) -> Result<Event, DecodeError> {
    Ok(Event {
        ts_ns: v.last_ns,
        kind: EventType::Denied,
        dir: Direction::from_u8(k.dir).ok_or(DecodeError::Dir(k.dir))?,
        reason: Reason::from_u8(k.reason).ok_or(DecodeError::Reason(k.reason))?,
        proto: k.proto,
        tcp_flags: v.tcp_flags,
        endpoint_id: k.endpoint_id,
        peer_identity: k.peer_identity,
        rule_id: k.rule_id,
        policy_rev: v.policy_rev,
        ifindex: v.ifindex,
        src: addr(k.family, &k.src)?,
        dst: addr(k.family, &k.dst)?,
        sport: k.sport,
        dport: k.dport,
        packets: v.packets,
        bytes: v.bytes,
        first_ts_ns: v.first_ns,
    })
}

/// Async event reader on tokio's reactor.
pub struct AsyncEventReader {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl AsyncEventReader {
    /// The next event (waits as long as needed). Records are submitted without
    /// a wake-up, so this waits for readiness (an early wake-up of a filling
    /// ring) or [`EVENT_POLL_INTERVAL`], whichever comes first, and looks again.
    pub async fn next(&mut self) -> std::io::Result<Result<Event, DecodeError>> {
        loop {
            if let Some(item) = self.fd.get_mut().next() {
                return Ok(Event::decode(&item));
            }
            match tokio::time::timeout(EVENT_POLL_INTERVAL, self.fd.readable_mut()).await {
                Ok(guard) => {
                    let mut guard = guard?;
                    if let Some(item) = guard.get_inner_mut().next() {
                        return Ok(Event::decode(&item));
                    }
                    guard.clear_ready();
                }
                Err(_elapsed) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::RawEvent;

    #[test]
    fn decode_roundtrip_and_errors() {
        let mut r = RawEvent {
            ts_ns: 5,
            packets: 1,
            bytes: 60,
            endpoint_id: 7,
            peer_identity: 100,
            rule_id: 3,
            ifindex: 12,
            policy_rev: 9,
            r#type: EventType::Denied as u8,
            dir: Direction::Egress as u8,
            family: abi::FAMILY_V4,
            proto: 6,
            reason: Reason::DropPolicyDeny as u8,
            tcp_flags: 2,
            src: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: 1234,
            dport: 80,
            ..Default::default()
        };
        let e = Event::decode(r.as_bytes()).unwrap();
        assert_eq!(e.src, Some("10.0.0.1".parse().unwrap()));
        assert_eq!((e.kind, e.dir, e.reason, e.dport), (EventType::Denied, Direction::Egress, Reason::DropPolicyDeny, 80));
        assert_eq!(Event::decode(&r.as_bytes()[..10]), Err(DecodeError::Short(10)));
        r.r#type = 99;
        assert_eq!(Event::decode(r.as_bytes()), Err(DecodeError::Type(99)));
        r.r#type = 1;
        r.family = 5;
        assert_eq!(Event::decode(r.as_bytes()), Err(DecodeError::Family(5)));
    }

    #[test]
    fn poll_constants_match_abi_h() {
        let h = include_str!("../../../bpf/include/porin/abi.h");
        let def = |name: &str| -> u64 {
            let l = h.lines().find_map(|l| l.strip_prefix("#define ").and_then(|l| l.strip_prefix(name))).unwrap_or_else(|| panic!("{name} in abi.h"));
            l.trim().parse().unwrap()
        };
        assert_eq!(def("PORIN_EV_POLL_MS"), EVENT_POLL_INTERVAL.as_millis() as u64);
        assert_eq!(def("PORIN_EV_WAKE_FRACTION"), u64::from(EVENT_WAKE_FRACTION));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Event::decode(&b);
        }
    }
}
