//! Userspace side of the conntrack map: the expiry sweep, the purge of a
//! removed endpoint's entries, and the per-endpoint accounting that goes with
//! every delete.
//!
//! The BPF program counts each endpoint's entries in `porin_ctn_v1` with
//! atomic adds (+2 per new flow, -1 per entry it deletes). Userspace cannot add
//! to a map value atomically, so every entry *userspace* deletes is counted in
//! its own map, `porin_ctr_v1`, which only userspace writes (under one mutex).
//! The program's view of an endpoint's usage is `ctn - ctr`. Only a delete
//! that succeeded is counted (a concurrent BPF delete of the same entry gets
//! ENOENT or vice versa), so the accounting is exact.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aya::maps::{HashMap, MapData};

use crate::abi::{CT_F_CLOSING, CtCount, CtKey, CtValue, map_names as names};
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
