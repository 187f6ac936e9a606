//! Packet capture (appended; see abi.h and docs/design/capture.md).

use std::mem::{offset_of, size_of};

use crate::Layout;

/// Maps of packet capture (pinned like the others).
pub mod capture_map_names {
    /// Hash: host-veth ifindex → [`super::CapConfig`].
    pub const CONFIG: &str = "porin_cap_v1";
    /// Array indexed by ifindex (slot 0: every ifindex ≥ [`super::CAP_IFINDEX_SLOTS`]): the filter summary
    /// [`super::CapIf`] of the slot's interfaces; [`CONFIG`] is looked up only for packets it may match.
    pub const IFACES: &str = "porin_capif_v2";
    /// The older per-interface flag (`u32`, nonzero = captured), replaced by [`IFACES`]; its pin is removed.
    pub const IFACES_V1: &str = "porin_capif_v1";
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
/// `enum porin_cap_class`: bit numbers of [`CapIf::any_port`] / [`CapIf::with_port`].
pub const CAP_CL_TCP: u8 = 0;
pub const CAP_CL_UDP: u8 = 1;
pub const CAP_CL_SCTP: u8 = 2;
pub const CAP_CL_ICMP: u8 = 3;
pub const CAP_CL_ICMPV6: u8 = 4;
pub const CAP_CL_OTHER: u8 = 5;
/// `enum porin_capif_flags`.
pub const CAPIF_F_ON: u8 = 1;
pub const CAPIF_F_ALL: u8 = 2;

pub(crate) fn capture_enum_values() -> Vec<(&'static str, &'static str, u64)> {
    vec![
        ("porin_cap_limits", "PORIN_CAP_MAX_FILTERS", CAP_MAX_FILTERS as u64),
        ("porin_cap_limits", "PORIN_CAP_MAX_SNAPLEN", u64::from(CAP_MAX_SNAPLEN)),
        ("porin_cap_limits", "PORIN_CAP_IFINDEX_SLOTS", u64::from(CAP_IFINDEX_SLOTS)),
        ("porin_cap_stats", "PORIN_CAP_ST_CAPTURED", u64::from(CAP_ST_CAPTURED)),
        ("porin_cap_stats", "PORIN_CAP_ST_LOST", u64::from(CAP_ST_LOST)),
        ("porin_cap_stats", "PORIN_CAP_ST_MAX", u64::from(CAP_ST_MAX)),
        ("porin_cap_class", "PORIN_CAP_CL_TCP", u64::from(CAP_CL_TCP)),
        ("porin_cap_class", "PORIN_CAP_CL_UDP", u64::from(CAP_CL_UDP)),
        ("porin_cap_class", "PORIN_CAP_CL_SCTP", u64::from(CAP_CL_SCTP)),
        ("porin_cap_class", "PORIN_CAP_CL_ICMP", u64::from(CAP_CL_ICMP)),
        ("porin_cap_class", "PORIN_CAP_CL_ICMPV6", u64::from(CAP_CL_ICMPV6)),
        ("porin_cap_class", "PORIN_CAP_CL_OTHER", u64::from(CAP_CL_OTHER)),
        ("porin_capif_flags", "PORIN_CAPIF_F_ON", u64::from(CAPIF_F_ON)),
        ("porin_capif_flags", "PORIN_CAPIF_F_ALL", u64::from(CAPIF_F_ALL)),
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

abi_struct! {
    /// `porin_capif_v2` value: a conservative summary of the filters of a slot's interfaces, so that the
    /// programs look up [`CapConfig`] only for packets a filter may match (see abi.h).
    "porin_capif" => pub struct CapIf {
        /// `CAPIF_F_*`.
        pub flags: u8,
        /// Protocol classes (`1 << CAP_CL_*`) some filter matches at any port.
        pub any_port: u8,
        /// Protocol classes some filter with a port range applies to.
        pub with_port: u8,
        pub pad: u8,
        /// The union of those filters' port ranges (host order).
        pub port_lo: u16,
        pub port_hi: u16,
    }
}

/// The summary's protocol class of an IP protocol number (`cap_class` in the program).
pub fn cap_class(proto: u8) -> u8 {
    match proto {
        6 => CAP_CL_TCP,
        17 => CAP_CL_UDP,
        132 => CAP_CL_SCTP,
        1 => CAP_CL_ICMP,
        58 => CAP_CL_ICMPV6,
        _ => CAP_CL_OTHER,
    }
}

const CAP_CL_ALL_BITS: u8 = (1 << (CAP_CL_OTHER + 1)) - 1;

impl CapIf {
    /// The summary of the interfaces captured with `configs` (several when they share slot 0); the default
    /// (flags 0) for none: nothing is captured.
    pub fn summarize<'a>(configs: impl IntoIterator<Item = &'a CapConfig>) -> CapIf {
        let mut s = CapIf::default();
        let mut range: Option<(u16, u16)> = None;
        for c in configs {
            s.flags |= CAPIF_F_ON;
            let n = (c.n_filters as usize).min(CAP_MAX_FILTERS);
            if n == 0 {
                s.flags |= CAPIF_F_ALL;
            }
            for f in &c.filters[..n] {
                let classes = if f.proto == 0 { CAP_CL_ALL_BITS } else { 1 << cap_class(f.proto) };
                if f.port_hi == 0 {
                    if f.proto == 0 {
                        s.flags |= CAPIF_F_ALL;
                    }
                    s.any_port |= classes;
                } else {
                    s.with_port |= classes;
                    let (lo, hi) = range.unwrap_or((f.port_lo, f.port_hi));
                    range = Some((lo.min(f.port_lo), hi.max(f.port_hi)));
                }
            }
        }
        if let Some((lo, hi)) = range {
            s.port_lo = lo;
            s.port_hi = hi;
        }
        s
    }

    /// May a packet match (the program's `cap_may_match`)? Never false for a packet one of the summarized
    /// filters matches.
    pub fn may_match(&self, proto: u8, sport: u16, dport: u16) -> bool {
        if self.flags & CAPIF_F_ON == 0 {
            return false;
        }
        if self.flags & CAPIF_F_ALL != 0 {
            return true;
        }
        let bit = 1u8 << cap_class(proto);
        if self.any_port & bit != 0 {
            return true;
        }
        let r = self.port_lo..=self.port_hi;
        self.with_port & bit != 0 && (r.contains(&sport) || r.contains(&dport))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency): xorshift64*.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
            xs[(self.next() % xs.len() as u64) as usize]
        }
    }

    const PROTOS: [u8; 8] = [0, 1, 6, 17, 47, 58, 132, 250];
    const PORTS: [u16; 9] = [0, 1, 9, 53, 80, 443, 1024, 40000, 65535];

    fn random_config(r: &mut Rng) -> CapConfig {
        let mut c = CapConfig { snaplen: 64, n_filters: (r.next() % 4) as u32, ..Default::default() };
        for f in &mut c.filters[..c.n_filters as usize] {
            f.proto = r.pick(&PROTOS);
            if r.next().is_multiple_of(2) {
                let (a, b) = (r.pick(&PORTS), r.pick(&PORTS));
                f.port_lo = a.min(b);
                f.port_hi = a.max(b);
            }
        }
        c
    }

    /// The summary is conservative: whatever a filter of any summarized config matches, it lets through.
    #[test]
    fn summary_never_rejects_a_packet_a_filter_matches() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut rejected = 0;
        for _ in 0..3000 {
            let configs: Vec<CapConfig> = (0..1 + r.next() % 3).map(|_| random_config(&mut r)).collect();
            let s = CapIf::summarize(&configs);
            for _ in 0..50 {
                let (p, sp, dp) = (r.pick(&PROTOS), r.pick(&PORTS), r.pick(&PORTS));
                let any = configs.iter().any(|c| c.matches(p, sp, dp));
                assert!(!any || s.may_match(p, sp, dp), "{configs:?} -> {s:?} rejects proto {p} {sp}->{dp}");
                rejected += usize::from(!s.may_match(p, sp, dp));
            }
        }
        // The summary must also reject something, or it would be worthless (and this test vacuous).
        assert!(rejected > 10_000, "only {rejected} rejected");
    }

    #[test]
    fn summary_of_the_usual_filters_is_exact() {
        let tcp1 = CapFilter { proto: 6, port_lo: 1, port_hi: 1, ..Default::default() };
        let mut c = CapConfig { snaplen: 64, n_filters: 1, ..Default::default() };
        c.filters[0] = tcp1;
        let s = CapIf::summarize([&c]);
        assert_eq!((s.flags, s.any_port, s.with_port, s.port_lo, s.port_hi), (CAPIF_F_ON, 0, 1, 1, 1));
        assert!(s.may_match(6, 1, 80) && s.may_match(6, 5000, 1));
        assert!(!s.may_match(6, 5000, 80) && !s.may_match(17, 1, 1) && !s.may_match(0, 0, 0));
        // No configuration: nothing; no filters: everything.
        assert!(!CapIf::summarize([]).may_match(6, 1, 1));
        let all = CapIf::summarize([&CapConfig { snaplen: 64, ..Default::default() }]);
        assert!(all.may_match(0, 0, 0) && all.may_match(47, 0, 0));
        // A protocol-only filter: that protocol at any port, no other protocol.
        c.filters[0] = CapFilter { proto: 17, ..Default::default() };
        let s = CapIf::summarize([&c]);
        assert!(s.may_match(17, 1, 2) && !s.may_match(6, 1, 2));
    }
}
