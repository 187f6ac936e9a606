//! The flow record: what `porin observe`, the flow store and the JSON-lines export show.
//!
//! The JSON field names are a stable interface (documented in `docs/design/flows.md`); add fields,
//! never rename them. Optional fields are omitted when empty so that records stay small.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::time::{UnixNanos, rfc3339};

/// What the enforced policy did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allowed,
    Denied,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
        }
    }
}

/// What the staged (pending) policies would have done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingVerdict {
    WouldAllow,
    WouldDeny,
}

impl PendingVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            PendingVerdict::WouldAllow => "would_allow",
            PendingVerdict::WouldDeny => "would_deny",
        }
    }
}

/// Policy direction from the point of view of the reporting workload: the dataplane's own
/// [`porin_abi::Direction`] (one type; this name is kept for the flow record's field).
pub use porin_abi::Direction as FlowDirection;

/// Which end of the flow observed it: the source's egress hook or the destination's ingress hook.
/// A flow between two workloads on the same node is reported twice, once by each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reporter {
    Src,
    Dst,
}

/// IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpFamily {
    V4,
    V6,
}

/// How records were aggregated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregationLevel {
    /// One record per 5-tuple (and verdict, rule) per flush interval.
    #[default]
    FiveTuple,
    /// One record per (source workload, destination workload, destination port, protocol, verdict,
    /// rule) per flush interval: pods of one workload are merged, source ports and IPs dropped.
    Workload,
}

/// What kind of thing an endpoint of a flow is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// A pod (workload endpoint).
    Pod,
    /// The node itself or a host endpoint.
    Host,
    /// An address covered by a network set.
    NetworkSet,
    /// An address outside the cluster that no network set covers.
    World,
    /// Not known to the enricher (yet).
    #[default]
    Unknown,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Pod => "pod",
            EndpointKind::Host => "host",
            EndpointKind::NetworkSet => "network_set",
            EndpointKind::World => "world",
            EndpointKind::Unknown => "unknown",
        }
    }
}

/// One end of a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowEndpoint {
    pub kind: EndpointKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod name (absent when records are aggregated per workload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Owning workload (e.g. the Deployment), or the aggregated name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Network set name, for `kind: network_set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_set: Option<String>,
    /// Labels (per-workload records: the labels all merged pods share).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Dataplane security identity of this end (peer side), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<u32>,
    /// Absent when aggregated away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// TCP/UDP/SCTP port; absent for ICMP and when aggregated away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl FlowEndpoint {
    /// `ns/pod`, `ns/workload`, `netset:name`, `world`, or the IP: how printers name it.
    pub fn display_name(&self) -> String {
        let ns = self.namespace.as_deref();
        let with_ns = |n: &str| match ns {
            Some(ns) => format!("{ns}/{n}"),
            None => n.to_string(),
        };
        match (self.kind, &self.pod, &self.workload, &self.network_set) {
            (_, Some(p), _, _) => with_ns(p),
            (_, None, Some(w), _) => with_ns(w),
            (EndpointKind::NetworkSet, _, _, Some(n)) => format!("netset:{}", with_ns(n)),
            (EndpointKind::World, ..) => match self.ip {
                Some(ip) => format!("world:{ip}"),
                None => "world".into(),
            },
            (EndpointKind::Host, ..) => "host".into(),
            _ => self.ip.map(|i| i.to_string()).unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// OR of the TCP flags seen, serialized as a list of names (`["SYN","ACK"]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
    /// Each flag bit with its name, in the order printers list them.
    pub const NAMES: [(u8, &'static str); 8] = [
        (Self::SYN, "SYN"),
        (Self::ACK, "ACK"),
        (Self::FIN, "FIN"),
        (Self::RST, "RST"),
        (Self::PSH, "PSH"),
        (Self::URG, "URG"),
        (Self::ECE, "ECE"),
        (Self::CWR, "CWR"),
    ];

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Flag names in a fixed order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        Self::NAMES.iter().filter(|(b, _)| self.0 & b != 0).map(|(_, n)| *n)
    }
}

impl Serialize for TcpFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for TcpFlags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut v = 0u8;
        for n in names {
            let bit = Self::NAMES
                .iter()
                .find(|(_, name)| name.eq_ignore_ascii_case(&n))
                .ok_or_else(|| serde::de::Error::custom(format!("unknown TCP flag {n:?}")))?;
            v |= bit.0;
        }
        Ok(TcpFlags(v))
    }
}

/// IP protocol by number, printed by name where one is known.
pub fn protocol_name(p: u8) -> std::borrow::Cow<'static, str> {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string().into(),
    }
}

/// Protocol number from a name (`tcp`, `UDP`, `icmpv6`, …) or a decimal number.
pub fn protocol_number(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "icmp" | "icmpv4" => Some(1),
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmpv6" | "ipv6-icmp" => Some(58),
        "sctp" => Some(132),
        n => n.parse().ok(),
    }
}

/// ICMP type and code (`dport` of ICMP events is `type << 8 | code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icmp {
    #[serde(rename = "type")]
    pub kind: u8,
    pub code: u8,
}

/// One flow record: a connection (or, aggregated, a set of connections) during one flush interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// First event of the record in this interval.
    #[serde(with = "rfc3339")]
    pub start_time: UnixNanos,
    /// Last event of the record in this interval (the store orders by it).
    #[serde(with = "rfc3339")]
    pub end_time: UnixNanos,
    /// Node that reported the flow.
    pub node: String,
    pub verdict: Verdict,
    /// What staged policies would have done; absent when no staged policy applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_verdict: Option<PendingVerdict>,
    /// Dataplane drop reason for denied flows (`drop_policy_deny`, `drop_no_policy`, `drop_revoked`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    pub direction: FlowDirection,
    pub reporter: Reporter,
    pub ip_family: IpFamily,
    /// Protocol name (`tcp`, `udp`, `icmp`, `icmpv6`, `sctp`) or number.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<Icmp>,
    pub src: FlowEndpoint,
    pub dst: FlowEndpoint,
    /// Enforced policy trace, `tier|policy|rule|action` entries in evaluation order.
    #[serde(default)]
    pub enforced_trace: Vec<String>,
    /// Trace of the staged policies (empty when none apply).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_trace: Vec<String>,
    pub packets_src_to_dst: u64,
    pub bytes_src_to_dst: u64,
    pub packets_dst_to_src: u64,
    pub bytes_dst_to_src: u64,
    /// TCP flags seen (OR) in the events of this record.
    #[serde(default, skip_serializing_if = "TcpFlags::is_empty")]
    pub tcp_flags: TcpFlags,
    /// Connections admitted (allowed) or attempted (denied: distinct 5-tuples) in this interval.
    pub flows_started: u64,
    /// Connections that closed (FIN/RST) or were revoked in this interval.
    pub flows_completed: u64,
    /// Connections of this record still open when the interval was flushed.
    pub flows_open: u64,
    /// `flows_open > 0`.
    pub open: bool,
    pub aggregation: AggregationLevel,
}

impl FlowRecord {
    /// The entry of the enforced trace that decided (the last allow/deny), if any.
    pub fn deciding_hit(&self) -> Option<&str> {
        self.enforced_trace.iter().rev().find(|h| h.ends_with("|allow") || h.ends_with("|deny")).map(String::as_str)
    }

    /// Destination port, or ICMP `type/code`.
    pub fn port_label(&self) -> String {
        match (self.icmp, self.dst.port) {
            (Some(i), _) => format!("{}/{}", i.kind, i.code),
            (None, Some(p)) => p.to_string(),
            (None, None) => "-".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_roundtrip_as_names() {
        let f = TcpFlags(TcpFlags::SYN | TcpFlags::ACK | TcpFlags::FIN);
        let j = serde_json::to_string(&f).unwrap();
        assert_eq!(j, r#"["SYN","ACK","FIN"]"#);
        assert_eq!(serde_json::from_str::<TcpFlags>(&j).unwrap(), f);
        assert!(serde_json::from_str::<TcpFlags>(r#"["XYZ"]"#).is_err());
    }

    #[test]
    fn protocol_names() {
        for p in [1u8, 6, 17, 58, 132, 47] {
            assert_eq!(protocol_number(&protocol_name(p)), Some(p));
        }
        assert_eq!(protocol_number("TCP"), Some(6));
        assert_eq!(protocol_number("bogus"), None);
    }
}
