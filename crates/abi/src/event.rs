//! Decoding (and canonical encoding) of the programs' ring-buffer records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Direction, EventType, RawEvent, Reason};

/// A decoded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at the hook.
    pub ts_ns: u64,
    pub kind: EventType,
    pub dir: Direction,
    pub reason: Reason,
    /// IP protocol number (0 for non-IP).
    pub proto: u8,
    pub tcp_flags: u8,
    pub endpoint_id: u32,
    pub peer_identity: u32,
    pub rule_id: u32,
    pub policy_rev: u32,
    pub ifindex: u32,
    /// `None` for non-IP packets.
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// Host order. ICMP: `sport` 0 and `dport` = type << 8 | code.
    pub sport: u16,
    pub dport: u16,
    /// Close/revoke: totals of the conntrack entry; an aggregate of denied
    /// packets ([`DeniedAggregates`]): their sum; otherwise this packet.
    pub packets: u64,
    pub bytes: u64,
    /// The first packet this event stands for: `ts_ns` for a ring-buffer
    /// record, the first denied packet of an aggregate (whose `ts_ns` is the
    /// last one's).
    pub first_ts_ns: u64,
}

/// Why a ring-buffer record could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event record is {0} bytes, expected at least {len}", len = std::mem::size_of::<RawEvent>())]
    Short(usize),
    #[error("unknown event type {0}")]
    Type(u8),
    #[error("unknown direction {0}")]
    Dir(u8),
    #[error("unknown reason {0}")]
    Reason(u8),
    #[error("unknown address family {0}")]
    Family(u8),
}

/// The address of a record's `family` and 16 address bytes (`None` for non-IP).
pub fn addr(family: u8, b: &[u8; 16]) -> Result<Option<IpAddr>, DecodeError> {
    match family {
        0 => Ok(None),
        crate::FAMILY_V4 => Ok(Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))),
        crate::FAMILY_V6 => Ok(Some(IpAddr::V6(Ipv6Addr::from(*b)))),
        f => Err(DecodeError::Family(f)),
    }
}

impl Event {
    /// Decodes one ring-buffer record.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let r = RawEvent::from_bytes(b).ok_or(DecodeError::Short(b.len()))?;
        Ok(Self {
            ts_ns: r.ts_ns,
            // Progress is made by the agent from the conntrack map; in the ring buffer it can only be garbage.
            kind: EventType::from_u8(r.r#type).filter(|k| *k != EventType::Progress).ok_or(DecodeError::Type(r.r#type))?,
            dir: Direction::from_u8(r.dir).ok_or(DecodeError::Dir(r.dir))?,
            reason: Reason::from_u8(r.reason).ok_or(DecodeError::Reason(r.reason))?,
            proto: r.proto,
            tcp_flags: r.tcp_flags,
            endpoint_id: r.endpoint_id,
            peer_identity: r.peer_identity,
            rule_id: r.rule_id,
            policy_rev: r.policy_rev,
            ifindex: r.ifindex,
            src: addr(r.family, &r.src)?,
            dst: addr(r.family, &r.dst)?,
            sport: r.sport,
            dport: r.dport,
            packets: r.packets,
            bytes: r.bytes,
            first_ts_ns: r.ts_ns,
        })
    }
}

impl Event {
    /// The ring-buffer record this event decodes from, with every padding byte and
    /// every unused address byte zero (the canonical form). `decode(encode(e)) == e`
    /// for every decoded `e`; `src`/`dst` of different families (or one of them
    /// `None` while the other is not) cannot come from a record and encode as the
    /// family of `src`.
    pub fn encode(&self) -> RawEvent {
        let family_of = |a: &Option<IpAddr>| match a {
            None => 0,
            Some(IpAddr::V4(_)) => crate::FAMILY_V4,
            Some(IpAddr::V6(_)) => crate::FAMILY_V6,
        };
        let bytes = |a: &Option<IpAddr>| {
            let mut b = [0u8; 16];
            match a {
                Some(IpAddr::V4(v)) => b[..4].copy_from_slice(&v.octets()),
                Some(IpAddr::V6(v)) => b = v.octets(),
                None => {}
            }
            b
        };
        RawEvent {
            ts_ns: self.ts_ns,
            packets: self.packets,
            bytes: self.bytes,
            endpoint_id: self.endpoint_id,
            peer_identity: self.peer_identity,
            rule_id: self.rule_id,
            ifindex: self.ifindex,
            policy_rev: self.policy_rev,
            r#type: self.kind as u8,
            dir: self.dir as u8,
            family: family_of(&self.src),
            proto: self.proto,
            reason: self.reason as u8,
            tcp_flags: self.tcp_flags,
            pad: 0,
            src: bytes(&self.src),
            dst: bytes(&self.dst),
            sport: self.sport,
            dport: self.dport,
            pad2: [0; 2],
        }
    }
}

