//! The aggregation keys: the 5-tuple seen at a hook and the record key derived from it.

use super::*;

/// A 5-tuple as seen at one hook of one endpoint (addresses as 16 raw bytes, v4 in the first 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tuple {
    pub(super) endpoint_id: u32,
    pub(super) src: [u8; 16],
    pub(super) dst: [u8; 16],
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) proto: u8,
    pub(super) family: u8,
    pub(super) dir: u8,
}

impl Tuple {
    pub(super) fn of(ev: &Event) -> Option<Self> {
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
    pub(super) fn reversed(&self) -> Self {
        Self { src: self.dst, dst: self.src, sport: self.dport, dport: self.sport, dir: self.dir ^ 1, ..*self }
    }

    pub(super) fn is_icmp(&self) -> bool {
        self.proto == 1 || self.proto == 58
    }
}

#[inline]
pub(super) fn words(b: &[u8; 16]) -> (u64, u64) {
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

pub(super) fn ip_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        }
        IpAddr::V6(a) => (6, a.octets()),
    }
}

pub(super) fn ip_of(family: u8, b: &[u8; 16]) -> IpAddr {
    if family == 4 { IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])) } else { IpAddr::V6(Ipv6Addr::from(*b)) }
}

pub(super) const VERDICT_ALLOWED: u8 = 0;
pub(super) const VERDICT_DENIED: u8 = 1;
pub(super) const NO_REASON: u8 = 255;
/// Side ids: raw endpoint ids / identities below 2^32, interned workload slots above.
pub(super) const SLOT_BIT: u64 = 1 << 32;

/// The aggregation key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AggKey {
    pub(super) local: u64,
    pub(super) peer: u64,
    pub(super) rule_id: u32,
    pub(super) src: [u8; 16],
    pub(super) dst: [u8; 16],
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) proto: u8,
    pub(super) family: u8,
    pub(super) dir: u8,
    pub(super) verdict: u8,
    pub(super) reason: u8,
}

impl AggKey {
    /// The key of tuple `t` with its sides' ids (`local`, `peer`: see [`Aggregator::key`]).
    pub(super) fn build(level: AggregationLevel, t: &Tuple, local: u64, peer: u64, rule_id: u32, verdict: u8, reason: u8) -> Self {
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
