//! Packet capture (appended; see abi.h and docs/design/capture.md).

use std::mem::{offset_of, size_of};

use crate::Layout;

/// Maps of packet capture (pinned like the others).
pub mod capture_map_names {
    /// Hash: host-veth ifindex → [`super::CapConfig`].
    pub const CONFIG: &str = "porin_cap_v1";
    /// Array indexed by ifindex (slot 0: every ifindex ≥ [`super::CAP_IFINDEX_SLOTS`]): nonzero = look up
    /// [`CONFIG`].
    pub const IFACES: &str = "porin_capif_v1";
    /// Per-CPU counters, index [`super::CAP_ST_CAPTURED`] / [`super::CAP_ST_LOST`].
    pub const STATS: &str = "porin_capst_v1";
    /// Ring buffer of [`super::CapHdr`] + frame bytes.
    pub const RING: &str = "porin_caprb_v1";
    pub const PINNED: [&str; 4] = [CONFIG, IFACES, STATS, RING];
}

/// `enum porin_cap_limits`.
pub const CAP_MAX_FILTERS: usize = 8;
pub const CAP_MAX_SNAPLEN: u32 = 16384;
pub const CAP_IFINDEX_SLOTS: u32 = 65536;
/// `enum porin_cap_stats`.
pub const CAP_ST_CAPTURED: u32 = 0;
pub const CAP_ST_LOST: u32 = 1;
pub const CAP_ST_MAX: u32 = 2;

pub(crate) fn capture_enum_values() -> Vec<(&'static str, &'static str, u64)> {
    vec![
        ("porin_cap_limits", "PORIN_CAP_MAX_FILTERS", CAP_MAX_FILTERS as u64),
        ("porin_cap_limits", "PORIN_CAP_MAX_SNAPLEN", u64::from(CAP_MAX_SNAPLEN)),
        ("porin_cap_limits", "PORIN_CAP_IFINDEX_SLOTS", u64::from(CAP_IFINDEX_SLOTS)),
        ("porin_cap_stats", "PORIN_CAP_ST_CAPTURED", u64::from(CAP_ST_CAPTURED)),
        ("porin_cap_stats", "PORIN_CAP_ST_LOST", u64::from(CAP_ST_LOST)),
        ("porin_cap_stats", "PORIN_CAP_ST_MAX", u64::from(CAP_ST_MAX)),
    ]
}

abi_struct! {
    /// One capture filter: protocol (0 = any) and a port range (host order) matched against the source or
    /// the destination port; `port_lo = port_hi = 0` is any port.
    "porin_cap_filter" => pub struct CapFilter {
        pub proto: u8,
        pub pad: u8,
        pub port_lo: u16,
        pub port_hi: u16,
        pub pad2: u16,
    }
}

abi_struct! {
    /// `porin_cap_v1` value.
    "porin_cap_config" => pub struct CapConfig {
        pub snaplen: u32,
        /// 0 = every packet.
        pub n_filters: u32,
        pub filters: [CapFilter; 8],
    }
}

abi_struct! {
    /// Header of a `porin_caprb_v1` record; `cap_len` frame bytes follow.
    "porin_cap_hdr" => pub struct CapHdr {
        pub ts_ns: u64,
        pub ifindex: u32,
        pub len: u32,
        pub cap_len: u32,
        pub dir: u8,
        pub proto: u8,
        pub sport: u16,
        pub dport: u16,
        pub passed: u8,
        pub pad: [u8; 5],
    }
}

impl CapFilter {
    /// Does a packet of `proto` with these ports match (the kernel's rule)?
    pub fn matches(&self, proto: u8, sport: u16, dport: u16) -> bool {
        if self.proto != 0 && self.proto != proto {
            return false;
        }
        self.port_hi == 0
            || (self.port_lo..=self.port_hi).contains(&sport)
            || (self.port_lo..=self.port_hi).contains(&dport)
    }
}

impl CapConfig {
    /// Does a packet match one of the filters (none: every packet)?
    pub fn matches(&self, proto: u8, sport: u16, dport: u16) -> bool {
        let n = (self.n_filters as usize).min(CAP_MAX_FILTERS);
        n == 0 || self.filters[..n].iter().any(|f| f.matches(proto, sport, dport))
    }
}
