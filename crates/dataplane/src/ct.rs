//! Userspace side of the conntrack map: the expiry sweep, the purge of a
//! removed endpoint's entries, and the per-endpoint accounting that goes with
//! every delete.
//!
//! The BPF program keeps ONE entry per flow and endpoint, for both directions
//! (`porin_ct_v3`; see `abi.h`), and counts each endpoint's entries in
//! `porin_ctn_v1` with atomic adds (+1 per new flow, -1 per entry it deletes). Userspace cannot add
//! to a map value atomically, so every entry *userspace* deletes is counted in
//! its own map, `porin_ctr_v1`, which only userspace writes (under one mutex).
//! The program's view of an endpoint's usage is `ctn - ctr`. Only a delete
//! that succeeded is counted (a concurrent BPF delete of the same entry gets
//! ENOENT or vice versa), so the accounting is exact.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aya::maps::{HashMap, MapData};

use crate::abi::{CT_F_CLOSING, CT_F_REPLY, CtCount, CtKey, CtValue, CtValueV2, Direction, map_names as names};
use crate::error::{Error, MapOpError, Result};

/// Conntrack lifetimes (`PORIN_CT_LIFETIME_*` in `abi.h`).
pub const LIFETIME_TCP_NS: u64 = 6 * 3600 * 1_000_000_000;
pub const LIFETIME_CLOSING_NS: u64 = 30 * 1_000_000_000;
pub const LIFETIME_OTHER_NS: u64 = 180 * 1_000_000_000;

/// The idle time after which the program treats `v` as absent.
pub fn lifetime_ns(k: &CtKey, v: &CtValue) -> u64 {
    if v.flags & CT_F_CLOSING != 0 {
        LIFETIME_CLOSING_NS
    } else if k.proto == 6 {
        LIFETIME_TCP_NS
    } else {
        LIFETIME_OTHER_NS
    }
}

/// Converts the entries of an older build's conntrack map (`porin_ct_v1`/`v2`: one entry per flow
/// direction, keyed by the tuple as seen at hook direction `dir`, the reply's marked [`CT_F_REPLY`]) into
/// `porin_ct_v3` entries (one per flow and endpoint, both directions' counters). The two old entries of a
/// flow merge into one: the original direction's counters from the entry without `CT_F_REPLY`, the reply's
/// from the other; the latest `last_seen_ns`; `CLOSING` if either had it; and, if their policy revisions
/// differ, the smaller (the program revalidates any revision other than the endpoint's current one). A
/// flow of which only one entry is left keeps what that entry says.
pub fn convert_v2(old: &[(CtKey, CtValueV2)]) -> Vec<(CtKey, CtValue)> {
    let mut out: BTreeMap<CtKey, CtValue> = BTreeMap::new();
    for (k, v) in old {
        let Some(dir) = Direction::from_u8(k.dir) else { continue };
        let key = CtKey::of_packet(k.endpoint_id, dir, k.family, k.proto, k.src, k.dst, k.sport, k.dport);
        let reply = v.flags & CT_F_REPLY != 0;
        let e = out.entry(key);
        let fresh = matches!(e, std::collections::btree_map::Entry::Vacant(_));
        let n = e.or_insert_with(|| CtValue {
            last_seen_ns: v.last_seen_ns,
            policy_rev: v.policy_rev,
            rule_id: v.rule_id,
            peer_identity: v.peer_identity,
            dir_of_origin: v.dir_of_origin,
            pol_port: v.pol_port,
            ..Default::default()
        });
        if !fresh {
            n.last_seen_ns = n.last_seen_ns.max(v.last_seen_ns);
            n.policy_rev = n.policy_rev.min(v.policy_rev);
        }
        if !reply {
            // The original direction's entry names the flow's rule and peer.
            (n.rule_id, n.peer_identity) = (v.rule_id, v.peer_identity);
            (n.dir_of_origin, n.pol_port) = (v.dir_of_origin, v.pol_port);
            (n.packets, n.bytes, n.tcp_flags) = (v.packets, v.bytes, v.tcp_flags);
        } else {
            (n.packets_reply, n.bytes_reply, n.tcp_flags_reply) = (v.packets, v.bytes, v.tcp_flags);
        }
        n.flags |= v.flags & CT_F_CLOSING;
    }
    out.into_iter().collect()
}

/// `bpf_ktime_get_ns()` as seen from userspace (CLOCK_MONOTONIC).
pub fn ktime_now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn map_err(name: &'static str, op: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |e| {
        let io = match e {
            aya::maps::MapError::SyscallError(s) => s.io_error,
            aya::maps::MapError::KeyNotFound => std::io::Error::from_raw_os_error(libc::ENOENT),
            other => std::io::Error::other(other.to_string()),
        };
        Error::CtMap(MapOpError::new(name, op, io))
    }
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtSweep {
    /// Entries looked at.
    pub scanned: usize,
    /// Entries deleted by this sweep (and accounted).
    pub deleted: usize,
}

/// The conntrack map and its accounting maps.
pub struct CtMaps {
    pub(crate) ct: HashMap<MapData, CtKey, CtValue>,
    pub(crate) count: HashMap<MapData, u32, CtCount>,
    pub(crate) released: HashMap<MapData, u32, CtCount>,
}

impl CtMaps {
    /// Every entry (O(entries) map reads).
    pub(crate) fn entries(&self) -> Result<Vec<(CtKey, CtValue)>> {
        self.ct.iter().map(|r| r.map_err(map_err(names::CONNTRACK, "iterate"))).collect()
    }

    /// Deletes every entry for which `doomed` holds; counts each delete that
    /// succeeded against its endpoint in `porin_ctr_v1`.
    pub fn delete_where(&mut self, doomed: impl Fn(&CtKey, &CtValue) -> bool) -> Result<CtSweep> {
        let mut out = CtSweep::default();
        let mut victims = Vec::new();
        for r in self.ct.iter() {
            let (k, v) = match r {
                Ok(kv) => kv,
                // An entry deleted while we walk: skip it.
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(map_err(names::CONNTRACK, "dump")(e)),
            };
            out.scanned += 1;
            if doomed(&k, &v) {
                victims.push(k);
            }
        }
        let mut freed: BTreeMap<u32, i64> = BTreeMap::new();
        for k in victims {
            // Re-check right before the delete: the program may have
            // replaced an expired entry by a fresh one meanwhile.
            match self.ct.get(&k, 0) {
                Ok(v) if doomed(&k, &v) => {}
                _ => continue,
            }
            match self.ct.remove(&k) {
                Ok(()) => {
                    *freed.entry(k.endpoint_id).or_default() += 1;
                    out.deleted += 1;
                }
                // The program deleted it first (and counted it).
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(aya::maps::MapError::SyscallError(s)) if s.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    self.add_released(&freed)?;
                    return Err(map_err(names::CONNTRACK, "delete")(e));
                }
            }
        }
        self.add_released(&freed)?;
        Ok(out)
    }

    pub(crate) fn add_released(&mut self, freed: &BTreeMap<u32, i64>) -> Result<()> {
        for (&id, &n) in freed {
            let cur = match self.released.get(&id, 0) {
                Ok(v) => v.entries,
                Err(aya::maps::MapError::KeyNotFound) => 0,
                Err(e) => return Err(map_err(names::CT_RELEASED, "lookup")(e)),
            };
            self.released.insert(id, CtCount { entries: cur + n }, 0).map_err(map_err(names::CT_RELEASED, "update"))?;
        }
        Ok(())
    }

    /// Deletes the entries that have expired at `now_ns` (the program treats
    /// them as absent already).
    pub fn sweep_expired(&mut self, now_ns: u64) -> Result<CtSweep> {
        self.delete_where(|k, v| now_ns.saturating_sub(v.last_seen_ns) >= lifetime_ns(k, v))
    }

    /// Deletes every entry and both counters of an endpoint that no program
    /// can use any more (its endpoint entry is gone and a grace period passed).
    pub fn purge_endpoint(&mut self, endpoint_id: u32) -> Result<CtSweep> {
        let s = self.delete_where(|k, _| k.endpoint_id == endpoint_id)?;
        for (m, name) in [(&mut self.count, names::CT_COUNT), (&mut self.released, names::CT_RELEASED)] {
            match m.remove(&endpoint_id) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(aya::maps::MapError::SyscallError(s)) if s.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(map_err(name, "delete")(e)),
            }
        }
        Ok(s)
    }

    /// Entries the program counts for `endpoint_id` (`ctn - ctr`).
    pub fn usage(&self, endpoint_id: u32) -> Result<i64> {
        let get = |m: &HashMap<MapData, u32, CtCount>, name| match m.get(&endpoint_id, 0) {
            Ok(v) => Ok(v.entries),
            Err(aya::maps::MapError::KeyNotFound) => Ok(0),
            Err(e) => Err(map_err(name, "lookup")(e)),
        };
        Ok(get(&self.count, names::CT_COUNT)? - get(&self.released, names::CT_RELEASED)?)
    }
}

/// The background expiry sweep: one thread, stopped when dropped.
pub(crate) struct Sweeper {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sweeper {
    pub(crate) fn spawn(maps: Arc<Mutex<CtMaps>>, every: Duration) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new().name("porin-ct-sweep".into()).spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                let r = maps.lock().unwrap_or_else(|p| p.into_inner()).sweep_expired(ktime_now_ns());
                match r {
                    Ok(s) if s.deleted > 0 => {
                        tracing::debug!(deleted = s.deleted, scanned = s.scanned, "conntrack sweep")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "conntrack sweep failed"),
                }
            }
        })?;
        Ok(Self { stop: Some(tx), handle: Some(handle) })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: u8, src: u8, dst: u8, sport: u16, dport: u16) -> CtKey {
        let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
        s[..4].copy_from_slice(&[10, 0, 0, src]);
        d[..4].copy_from_slice(&[10, 0, 0, dst]);
        CtKey { endpoint_id: 7, family: 4, proto: 6, dir, pad: 0, src: s, dst: d, sport: sport.to_be(), dport: dport.to_be() }
    }

    /// A v2 flow (an ingress-originated one: the tuple at the ingress hook, dir 0, and the reply at egress)
    /// becomes one v3 entry keyed from the endpoint's side, with both directions' counters, the later
    /// last-seen time, CLOSING from either entry and the smaller policy revision.
    #[test]
    fn two_v2_entries_of_a_flow_become_one() {
        let fwd = key(0, 2, 1, 40000, 80); // peer .2:40000 -> endpoint .1:80, seen entering the endpoint
        let rev = key(1, 1, 2, 80, 40000); // the reply, seen leaving it
        let v = CtValueV2 { last_seen_ns: 10, packets: 5, bytes: 500, policy_rev: 3, rule_id: 9, peer_identity: 44, dir_of_origin: 0, tcp_flags: 0x12, pol_port: 80u16.to_be(), ..Default::default() };
        let r = CtValueV2 { last_seen_ns: 20, packets: 4, bytes: 4000, policy_rev: 2, flags: CT_F_REPLY | CT_F_CLOSING, tcp_flags: 0x11, ..v };
        for old in [vec![(fwd, v), (rev, r)], vec![(rev, r), (fwd, v)]] {
            let out = convert_v2(&old);
            assert_eq!(out.len(), 1, "{out:?}");
            let (k, n) = out[0];
            assert_eq!(k, CtKey::of_packet(7, Direction::Ingress, 4, 6, fwd.src, fwd.dst, fwd.sport, fwd.dport));
            assert_eq!((k.src[3], k.dst[3], u16::from_be(k.sport), u16::from_be(k.dport), k.dir), (1, 2, 80, 40000, 0));
            assert_eq!((n.packets, n.bytes, n.packets_reply, n.bytes_reply), (5, 500, 4, 4000));
            assert_eq!((n.tcp_flags, n.tcp_flags_reply, n.flags), (0x12, 0x11, CT_F_CLOSING));
            assert_eq!((n.last_seen_ns, n.policy_rev, n.rule_id, n.peer_identity, n.dir_of_origin), (20, 2, 9, 44, 0));
        }
        // a direction not in the ABI is not guessed at
        assert!(convert_v2(&[(key(2, 1, 2, 80, 40000), v)]).is_empty());
    }
}
