//! Compiled policy entries (the input of the dataplane) and their encoding into
//! `porin_pol_v1` LPM keys.
//!
//! The dataplane does not know about policies, selectors or rules: another
//! component compiles those into [`PolicyEntry`] lists whose longest-prefix
//! match equals the policy engine's verdict. Here we only validate and encode.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::abi::{self, Action, Direction, PolicyKey, PolicyValue};

/// One compiled policy entry of one endpoint and one direction.
///
/// Levels (the LPM prefix grows with each field that is set):
/// - `identity: None` → the default for every peer (prefix 32); `proto` and
///   `port_prefix` must then be `None`.
/// - `identity: Some`, `proto: None` → every protocol from that peer (prefix 64).
/// - `proto: Some`, `port_prefix: None` → every port (prefix 80).
/// - `port_prefix: Some((value, bits))` → the top `bits` bits of the
///   destination port (prefix 80 + bits); `bits == 0` means every port, like
///   `None`. For ICMP/ICMPv6 the "port" is `type << 8 | code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyEntry {
    pub identity: Option<u32>,
    pub proto: Option<u8>,
    pub port_prefix: Option<(u16, u8)>,
    pub action: Action,
    pub rule_id: u32,
}

/// The whole compiled policy of one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Node-unique endpoint id, `< 2^30`.
    pub endpoint_id: u32,
    pub ingress: Vec<PolicyEntry>,
    pub egress: Vec<PolicyEntry>,
    /// The endpoint's own addresses: at most one IPv4 and one IPv6 (repeats
    /// of the same address are fine). Packets from the workload must carry
    /// one of them as source; a family without an address may not be sent
    /// at all (fail closed).
    pub addrs: Vec<IpAddr>,
}

/// Why an endpoint's addresses cannot be enforced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("two addresses of one family ({first} and {second}); at most one IPv4 and one IPv6 is supported")]
    TwoOfFamily { first: IpAddr, second: IpAddr },
    #[error("{0} cannot be an endpoint's own address (unspecified, multicast or broadcast)")]
    NotUnicast(IpAddr),
}

/// The address part of an endpoint value: `(flags, addr4, addr6)` with
/// [`abi::EP_F_HAS_V4`]/[`abi::EP_F_HAS_V6`] set as present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointAddrs {
    pub flags: u32,
    pub addr4: [u8; 4],
    pub addr6: [u8; 16],
}

impl EndpointAddrs {
    /// Validates and encodes `addrs` (see [`EndpointPolicy::addrs`]).
    pub fn new(addrs: &[IpAddr]) -> Result<Self, AddrError> {
        let mut out = Self::default();
        let (mut v4, mut v6): (Option<IpAddr>, Option<IpAddr>) = (None, None);
        for &a in addrs {
            let bad = match a {
                IpAddr::V4(x) => x.is_unspecified() || x.is_multicast() || x.is_broadcast(),
                IpAddr::V6(x) => x.is_unspecified() || x.is_multicast(),
            };
            if bad {
                return Err(AddrError::NotUnicast(a));
            }
            let slot = if a.is_ipv4() { &mut v4 } else { &mut v6 };
            match *slot {
                Some(first) if first != a => return Err(AddrError::TwoOfFamily { first, second: a }),
                _ => *slot = Some(a),
            }
        }
        if let Some(IpAddr::V4(x)) = v4 {
            out.flags |= abi::EP_F_HAS_V4;
            out.addr4 = x.octets();
        }
        if let Some(IpAddr::V6(x)) = v6 {
            out.flags |= abi::EP_F_HAS_V6;
            out.addr6 = x.octets();
        }
        Ok(out)
    }

    /// The address part of a (read-back) endpoint value.
    pub fn of(v: &abi::EndpointValue) -> Self {
        Self { flags: v.flags & abi::EP_F_ADDRS, addr4: v.addr4, addr6: v.addr6 }
    }

}

/// Why an entry cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("proto is set but identity is not (a protocol entry needs a peer identity)")]
    ProtoWithoutIdentity,
    #[error("port_prefix is set but proto is not")]
    PortWithoutProto,
    #[error("port prefix length {0} is out of range 0..=16")]
    PortBits(u8),
    #[error("port value {value:#06x} has bits set below its /{bits} prefix")]
    PortHostBits { value: u16, bits: u8 },
    #[error("entry duplicates an earlier entry's key with a different action or rule ({0:?})")]
    Conflict(PolicyKey),
}

impl PolicyEntry {
    /// An entry matching every peer of the direction.
    pub fn default_action(action: Action, rule_id: u32) -> Self {
        Self { identity: None, proto: None, port_prefix: None, action, rule_id }
    }

    /// Encodes this entry for endpoint/generation/direction.
    pub fn key(&self, endpoint_id: u32, generation: u32, dir: Direction) -> Result<PolicyKey, EntryError> {
        let pid = abi::policy_id(endpoint_id, generation, dir);
        match (self.identity, self.proto, self.port_prefix) {
            (None, None, None) => Ok(PolicyKey::new(abi::POL_PREFIX_DEFAULT, pid, 0, 0, 0)),
            (None, Some(_), _) => Err(EntryError::ProtoWithoutIdentity),
            (_, None, Some(_)) => Err(EntryError::PortWithoutProto),
            (Some(id), None, None) => Ok(PolicyKey::new(abi::POL_PREFIX_IDENTITY, pid, id, 0, 0)),
            (Some(id), Some(p), None) | (Some(id), Some(p), Some((_, 0))) => {
                if let Some((v, 0)) = self.port_prefix
                    && v != 0
                {
                    return Err(EntryError::PortHostBits { value: v, bits: 0 });
                }
                Ok(PolicyKey::new(abi::POL_PREFIX_PROTO, pid, id, p, 0))
            }
            (Some(id), Some(p), Some((v, bits))) => {
                if bits > 16 {
                    return Err(EntryError::PortBits(bits));
                }
                let host_mask = if bits == 16 { 0 } else { u16::MAX >> bits };
                if v & host_mask != 0 {
                    return Err(EntryError::PortHostBits { value: v, bits });
                }
                Ok(PolicyKey::new(abi::POL_PREFIX_PROTO + u32::from(bits), pid, id, p, v))
            }
        }
    }

    /// The map value of this entry.
    pub fn value(&self) -> PolicyValue {
        PolicyValue { rule_id: self.rule_id, action: self.action as u8, flags: 0, pad: 0 }
    }
}

/// Where an invalid entry is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{dir:?} entry #{index}: {error}")]
pub struct LocatedEntryError {
    pub dir: Direction,
    pub index: usize,
    #[source]
    pub error: EntryError,
}

/// Encodes an endpoint's whole policy for one generation. Exact duplicates are
/// merged; duplicates that disagree are an error (the compiler must resolve
/// precedence, the dataplane will not guess).
pub fn compile(
    policy: &EndpointPolicy,
    generation: u32,
) -> Result<BTreeMap<PolicyKey, PolicyValue>, LocatedEntryError> {
    let mut out = BTreeMap::new();
    for (dir, entries) in [(Direction::Ingress, &policy.ingress), (Direction::Egress, &policy.egress)] {
        for (index, e) in entries.iter().enumerate() {
            let k = e.key(policy.endpoint_id, generation, dir).map_err(|error| LocatedEntryError { dir, index, error })?;
            let v = e.value();
            if let Some(prev) = out.insert(k, v)
                && prev != v
            {
                return Err(LocatedEntryError { dir, index, error: EntryError::Conflict(k) });
            }
        }
    }
    Ok(out)
}

/// The minimal set of port prefixes `(value, bits)` whose union is exactly
/// `lo..=hi`. `bits == 0` (only for the full range `0..=65535`) means every
/// port. Empty if `lo > hi`.
pub fn port_range_to_prefixes(lo: u16, hi: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    if lo > hi {
        return out;
    }
    let (mut cur, end) = (u32::from(lo), u32::from(hi));
    while cur <= end {
        // Largest aligned block starting at `cur` that stays within `end`.
        let mut size_log = if cur == 0 { 16 } else { cur.trailing_zeros().min(16) };
        while cur + (1u32 << size_log) - 1 > end {
            size_log -= 1;
        }
        out.push((cur as u16, (16 - size_log) as u8));
        cur += 1u32 << size_log;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covers(prefixes: &[(u16, u8)], port: u16) -> bool {
        prefixes.iter().any(|&(v, bits)| {
            let mask: u16 = if bits == 0 { 0 } else { u16::MAX << (16 - bits) };
            port & mask == v
        })
    }

    #[test]
    fn ranges_unit() {
        assert_eq!(port_range_to_prefixes(80, 80), vec![(80, 16)]);
        assert_eq!(port_range_to_prefixes(0, 65535), vec![(0, 0)]);
        assert_eq!(port_range_to_prefixes(1024, 2047), vec![(1024, 6)]);
        assert_eq!(port_range_to_prefixes(8080, 8081), vec![(8080, 15)]);
        assert_eq!(port_range_to_prefixes(8079, 8081), vec![(8079, 16), (8080, 15)]);
        assert_eq!(port_range_to_prefixes(1, 65535).len(), 16);
        assert_eq!(port_range_to_prefixes(32768, 65535), vec![(32768, 1)]);
        assert!(port_range_to_prefixes(10, 9).is_empty());
        // worst case for 16 bits: 30 prefixes
        assert_eq!(port_range_to_prefixes(1, 65534).len(), 30);
    }

    /// A brute-force minimal cover size, by dynamic programming over aligned blocks.
    fn minimal_count(lo: u32, hi: u32) -> usize {
        // Greedy on aligned blocks is optimal; check against the classic recursive split.
        fn rec(lo: u32, hi: u32, blo: u32, bits: u32) -> usize {
            let size = 1u32 << (16 - bits);
            let bhi = blo + size - 1;
            if hi < blo || lo > bhi {
                return 0;
            }
            if lo <= blo && bhi <= hi {
                return 1;
            }
            let half = size / 2;
            rec(lo, hi, blo, bits + 1) + rec(lo, hi, blo + half, bits + 1)
        }
        rec(lo, hi, 0, 0)
    }

    proptest! {
        #[test]
        fn ranges_exact_and_minimal(a in any::<u16>(), b in any::<u16>(), probe in any::<u16>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let p = port_range_to_prefixes(lo, hi);
            prop_assert_eq!(covers(&p, probe), (lo..=hi).contains(&probe));
            prop_assert!(covers(&p, lo) && covers(&p, hi));
            if lo > 0 { prop_assert!(!covers(&p, lo - 1)); }
            if hi < u16::MAX { prop_assert!(!covers(&p, hi + 1)); }
            prop_assert_eq!(p.len(), minimal_count(u32::from(lo), u32::from(hi)));
            // prefixes are disjoint, sorted, and valid entries
            for w in p.windows(2) { prop_assert!(w[0].0 < w[1].0); }
            for &(v, bits) in &p {
                let e = PolicyEntry { identity: Some(7), proto: Some(6), port_prefix: Some((v, bits)), action: Action::Allow, rule_id: 1 };
                prop_assert!(e.key(1, 0, Direction::Ingress).is_ok());
            }
        }
    }

    #[test]
    fn key_levels() {
        let e = |identity, proto, port_prefix| PolicyEntry { identity, proto, port_prefix, action: Action::Allow, rule_id: 9 };
        let k = e(None, None, None).key(5, 1, Direction::Egress).unwrap();
        assert_eq!((k.prefixlen, k.policy_id), (32, 5 << 2 | 1 << 1 | 1));
        assert_eq!(e(Some(3), None, None).key(5, 0, Direction::Ingress).unwrap().prefixlen, 64);
        assert_eq!(e(Some(3), Some(17), None).key(5, 0, Direction::Ingress).unwrap().prefixlen, 80);
        let k = e(Some(3), Some(17), Some((53, 16))).key(5, 0, Direction::Ingress).unwrap();
        assert_eq!((k.prefixlen, k.port_host(), k.port.to_ne_bytes()), (96, 53, [0, 53]));
        assert_eq!(e(Some(3), Some(6), Some((0, 0))).key(5, 0, Direction::Ingress).unwrap().prefixlen, 80);
        assert_eq!(e(None, Some(6), None).key(5, 0, Direction::Ingress), Err(EntryError::ProtoWithoutIdentity));
        assert_eq!(e(Some(1), None, Some((1, 16))).key(5, 0, Direction::Ingress), Err(EntryError::PortWithoutProto));
        assert_eq!(e(Some(1), Some(6), Some((1, 17))).key(5, 0, Direction::Ingress), Err(EntryError::PortBits(17)));
        assert_eq!(
            e(Some(1), Some(6), Some((0x8001, 1))).key(5, 0, Direction::Ingress),
            Err(EntryError::PortHostBits { value: 0x8001, bits: 1 })
        );
    }

    #[test]
    fn endpoint_addrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(EndpointAddrs::new(&[]).unwrap(), EndpointAddrs::default());
        let a = EndpointAddrs::new(&[ip("10.0.0.7"), ip("fd00::7"), ip("10.0.0.7")]).unwrap();
        assert_eq!(a.flags, abi::EP_F_HAS_V4 | abi::EP_F_HAS_V6);
        assert_eq!(a.addr4, [10, 0, 0, 7]);
        assert_eq!(a.addr6[15], 7);
        let v = abi::EndpointValue { flags: a.flags | abi::EP_F_LOCKDOWN, addr4: a.addr4, addr6: a.addr6, ..Default::default() };
        assert_eq!(EndpointAddrs::of(&v), a);
        assert_eq!(v.addrs(), vec![ip("10.0.0.7"), ip("fd00::7")]);
        let v6only = EndpointAddrs::new(&[ip("fd00::7")]).unwrap();
        assert_eq!((v6only.flags, v6only.addr4), (abi::EP_F_HAS_V6, [0; 4]));
        assert_eq!(
            EndpointAddrs::new(&[ip("10.0.0.7"), ip("10.0.0.8")]),
            Err(AddrError::TwoOfFamily { first: ip("10.0.0.7"), second: ip("10.0.0.8") })
        );
        assert!(EndpointAddrs::new(&[ip("fd00::1"), ip("fe80::1")]).is_err());
        assert_eq!(EndpointAddrs::new(&[ip("0.0.0.0")]), Err(AddrError::NotUnicast(ip("0.0.0.0"))));
        assert!(EndpointAddrs::new(&[ip("ff02::1")]).is_err());
    }

    #[test]
    fn compile_conflicts() {
        let a = PolicyEntry { identity: Some(3), proto: None, port_prefix: None, action: Action::Allow, rule_id: 1 };
        let mut b = a;
        let p = EndpointPolicy { endpoint_id: 2, ingress: vec![a, a], egress: vec![a], addrs: vec![] };
        assert_eq!(compile(&p, 0).unwrap().len(), 2);
        b.action = Action::Deny;
        let p = EndpointPolicy { endpoint_id: 2, ingress: vec![a, b], egress: vec![], addrs: vec![] };
        let err = compile(&p, 0).unwrap_err();
        assert_eq!((err.dir, err.index), (Direction::Ingress, 1));
    }
}
