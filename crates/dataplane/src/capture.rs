//! Packet capture: the pinned `porin_cap_*` maps (see `abi.h`) from userspace.
//!
//! [`CaptureMaps`] sets which host-veth interfaces are captured and with which filters and snap length, reads
//! the captured/lost counters and the capture ring buffer. It opens the maps by their pins, so the one
//! capture consumer does not need the [`crate::Dataplane`] (owned by the dataplane thread).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf};

use crate::abi::{self, CapConfig, CapHdr, CapIf, capture_map_names as names};
use crate::error::{Error, Result};

/// One captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedPacket {
    pub hdr: CapHdr,
    /// The frame's first `hdr.cap_len` bytes (from the Ethernet header on).
    pub data: Vec<u8>,
}

impl CapturedPacket {
    /// Decodes a ring record; None when it is shorter than its header says.
    pub fn decode(rec: &[u8]) -> Option<CapturedPacket> {
        let hdr = CapHdr::from_bytes(rec)?;
        let start = std::mem::size_of::<CapHdr>();
        let data = rec.get(start..start + hdr.cap_len as usize)?.to_vec();
        Some(CapturedPacket { hdr, data })
    }
}

/// Counters of the programs, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Records written to the ring.
    pub captured: u64,
    /// Matching packets the ring could not take (or that could not be copied).
    pub lost: u64,
}

/// The capture maps of a pin directory.
pub struct CaptureMaps {
    config: HashMap<MapData, u32, CapConfig>,
    ifaces: Array<MapData, CapIf>,
    stats: PerCpuArray<MapData, u64>,
    ring: RingBuf<MapData>,
}

fn open(pin_dir: &Path, name: &'static str) -> Result<Map> {
    let md = MapData::from_pin(pin_dir.join(name)).map_err(|e| Error::Map { name, source: Box::new(e) })?;
    Map::from_map_data(md).map_err(|e| Error::Map { name, source: Box::new(e) })
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |e| Error::Map { name, source: Box::new(e) }
}

impl CaptureMaps {
    /// Opens the pinned maps (they exist once a [`crate::Dataplane`] was opened on `pin_dir`). The ring buffer
    /// should have ONE consumer.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self> {
        Ok(Self {
            config: HashMap::try_from(open(pin_dir, names::CONFIG)?).map_err(map_err(names::CONFIG))?,
            ifaces: Array::try_from(open(pin_dir, names::IFACES)?).map_err(map_err(names::IFACES))?,
            stats: PerCpuArray::try_from(open(pin_dir, names::STATS)?).map_err(map_err(names::STATS))?,
            ring: RingBuf::try_from(open(pin_dir, names::RING)?).map_err(map_err(names::RING))?,
        })
    }

    /// The interfaces captured now, with their configuration.
    pub fn entries(&self) -> Result<Vec<(u32, CapConfig)>> {
        self.config.iter().map(|r| r.map_err(map_err(names::CONFIG))).collect()
    }

    /// Makes the captured interfaces exactly `want` (ifindex → configuration): writes what differs, deletes
    /// the rest. The per-interface filter summary the programs check first ([`CapIf`]; slot 0 stands for
    /// every ifindex ≥ `CAP_IFINDEX_SLOTS`) is written after the configurations and cleared before a
    /// configuration is deleted.
    pub fn set(&mut self, want: &std::collections::BTreeMap<u32, CapConfig>) -> Result<()> {
        let slot = |ifindex: u32| if ifindex < abi::CAP_IFINDEX_SLOTS { ifindex } else { 0 };
        let have: std::collections::BTreeMap<u32, CapConfig> = self.entries()?.into_iter().collect();
        let mut by_slot: std::collections::BTreeMap<u32, Vec<&CapConfig>> = std::collections::BTreeMap::new();
        for (ifindex, c) in want {
            by_slot.entry(slot(*ifindex)).or_default().push(c);
        }
        for (ifindex, c) in want {
            if have.get(ifindex) != Some(c) {
                self.config.insert(ifindex, c, 0).map_err(map_err(names::CONFIG))?;
            }
        }
        // Every slot that is or was captured gets its summary (cleared: the default) rewritten if it differs.
        let old_slots = have.keys().map(|i| slot(*i));
        let slots: std::collections::BTreeSet<u32> = by_slot.keys().copied().chain(old_slots).collect();
        for s in slots {
            let summary = by_slot.get(&s).map(|cs| CapIf::summarize(cs.iter().copied())).unwrap_or_default();
            if self.ifaces.get(&s, 0).map_err(map_err(names::IFACES))? != summary {
                self.ifaces.set(s, summary, 0).map_err(map_err(names::IFACES))?;
            }
        }
        for ifindex in have.keys().filter(|k| !want.contains_key(k)) {
            match self.config.remove(ifindex) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(names::CONFIG)(e)),
            }
        }
        Ok(())
    }

    /// The filter summary the programs read for `ifindex`'s slot.
    pub fn summary(&self, ifindex: u32) -> Result<CapIf> {
        let s = if ifindex < abi::CAP_IFINDEX_SLOTS { ifindex } else { 0 };
        self.ifaces.get(&s, 0).map_err(map_err(names::IFACES))
    }

    /// Captured and lost packets since the maps were created.
    pub fn stats(&self) -> Result<CaptureStats> {
        let sum = |i: u32| -> Result<u64> {
            Ok(self.stats.get(&i, 0).map_err(map_err(names::STATS))?.iter().copied().fold(0u64, u64::wrapping_add))
        };
        Ok(CaptureStats { captured: sum(abi::CAP_ST_CAPTURED)?, lost: sum(abi::CAP_ST_LOST)? })
    }

    /// The next record, if one is ready. Undecodable records are skipped and counted in `bad`.
    pub fn try_next(&mut self, bad: &mut u64) -> Option<CapturedPacket> {
        loop {
            let item = self.ring.next()?;
            match CapturedPacket::decode(&item) {
                Some(p) => return Some(p),
                None => *bad += 1,
            }
        }
    }

    /// Waits until the ring has data or `timeout` passes (the programs wake the reader only when a quarter
    /// of the ring is used: poll with a short timeout).
    pub fn wait(&self, timeout: Duration) -> std::io::Result<()> {
        let mut pfd = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and the count is 1.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The per-interface flag array of an older build (`porin_capif_v1`, a `u32` per ifindex) cannot be read as
/// this build's summaries: its pin is removed, so the loader creates `porin_capif_v2`. Nothing is lost: the
/// capture service rewrites every captured interface's summary from `porin_cap_v1` at its next sync (a
/// capture misses packets until then; the verdict never depends on capture).
pub(crate) fn retire_capif_v1(pin_dir: &Path) -> Result<()> {
    let path = pin_dir.join(names::IFACES_V1);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    tracing::warn!(path = %path.display(), new_map = names::IFACES,
        "removed the pin of an older build's capture interface flags (layout changed); captures resume at the next sync");
    std::fs::remove_file(&path).map_err(|source| Error::Io { what: "removing the old capture flags pin", path, source })
}

/// Nanoseconds to add to a program's `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to get Unix time, now.
pub fn monotonic_to_unix_offset_ns() -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mono = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
    unix - mono
}
