//! The flow store's binary record encodings (store formats 2 to 4).
//!
//! A stored value starts with a tag byte that says how it is encoded:
//!
//! * `{` — the record's JSON (store format 1; still read, never written);
//! * [`TAG_V1`] — this encoding, version 1;
//! * [`TAG_BLOCK`] — a block of version-1 records (store format 3: one stored value per block of a flush's
//!   records, not one per record): `tag | count varint | (length varint, version-1 record) × count`, records
//!   in end-time order.
//! * [`TAG_DICT_BLOCK`] — a dictionary block (store format 4, written since): a flush's records with the
//!   metadata they share (strings, label sets, endpoints, traces) in per-block tables referenced by index, and a
//!   checksum; see [`BlockEncoder`]. The aggregator encodes these straight from its entries, without building a
//!   [`FlowRecord`] per record.
//!
//! Version 1, all integers little-endian, `varint` = unsigned LEB128 (minimal: at most 10 bytes,
//! no zero final byte after the first), `str` = varint length + UTF-8 bytes, `opt<T>` = present in a flag bit:
//!
//! ```text
//! tag u8 | flags u16 | start_time u64 | end_time - start_time varint | node str
//! | [pending_verdict u8] | [drop_reason str] | protocol str | [icmp type u8, code u8]
//! | src endpoint | dst endpoint | enforced_trace (varint n, n × str) | pending_trace (same)
//! | packets_src_to_dst, bytes_src_to_dst, packets_dst_to_src, bytes_dst_to_src varint
//! | tcp_flags u8 | flows_started, flows_completed, flows_open varint
//!
//! endpoint: kind u8 | present u8 | [namespace str] [pod str] [workload str] [network_set str]
//!           | labels (varint n, n × (str, str)) | [identity varint] | [ip: 4 or 16 bytes] | [port u16]
//! ```
//!
//! Every byte is checked on decode (enum values, UTF-8, lengths, no trailing bytes), so a
//! corrupt value is an error, never a misread record. The JSON output of `porin observe` does not
//! change: records are decoded back into [`FlowRecord`] and printed as before.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::record::{
    AggregationLevel, EndpointKind, FlowDirection, FlowEndpoint, FlowRecord, Icmp, IpFamily, PendingVerdict, Reporter,
    TcpFlags, Verdict,
};

/// First byte of a version-1 binary record.
pub const TAG_V1: u8 = 0xB1;
/// First byte of a block of version-1 records (store format 3).
pub const TAG_BLOCK: u8 = 0xB2;
/// First byte of a JSON record (store format 1).
pub const TAG_JSON: u8 = b'{';

/// Why a stored value could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty value")]
    Empty,
    #[error("unknown record encoding tag {0:#04x}")]
    Tag(u8),
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("invalid varint at byte {0}")]
    Varint(usize),
    #[error("invalid UTF-8 in a string at byte {0}")]
    Utf8(usize),
    #[error("invalid {what} {value} at byte {at}")]
    Value { what: &'static str, value: u64, at: usize },
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("checksum mismatch (the block was changed after it was written)")]
    Checksum,
    #[error("JSON record: {0}")]
    Json(String),
}

// flags (u16)
const F_DENIED: u16 = 1 << 0;
const F_PENDING: u16 = 1 << 1;
const F_DROP_REASON: u16 = 1 << 2;
const F_EGRESS: u16 = 1 << 3;
const F_REPORTER_DST: u16 = 1 << 4;
const F_V6: u16 = 1 << 5;
const F_ICMP: u16 = 1 << 6;
const F_OPEN: u16 = 1 << 7;
const F_WORKLOAD: u16 = 1 << 8;
const F_ALL: u16 = (1 << 9) - 1;

// endpoint present bits (u8)
const E_NAMESPACE: u8 = 1 << 0;
const E_POD: u8 = 1 << 1;
const E_WORKLOAD: u8 = 1 << 2;
const E_NETWORK_SET: u8 = 1 << 3;
const E_IDENTITY: u8 = 1 << 4;
const E_IP4: u8 = 1 << 5;
const E_IP6: u8 = 1 << 6;
const E_PORT: u8 = 1 << 7;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn endpoint_kind_code(k: EndpointKind) -> u8 {
    match k {
        EndpointKind::Pod => 0,
        EndpointKind::Host => 1,
        EndpointKind::NetworkSet => 2,
        EndpointKind::World => 3,
        EndpointKind::Unknown => 4,
    }
}

fn put_endpoint(out: &mut Vec<u8>, e: &FlowEndpoint) {
    let mut present = 0u8;
    for (bit, on) in [
        (E_NAMESPACE, e.namespace.is_some()),
        (E_POD, e.pod.is_some()),
        (E_WORKLOAD, e.workload.is_some()),
        (E_NETWORK_SET, e.network_set.is_some()),
        (E_IDENTITY, e.identity.is_some()),
        (E_IP4, matches!(e.ip, Some(IpAddr::V4(_)))),
        (E_IP6, matches!(e.ip, Some(IpAddr::V6(_)))),
        (E_PORT, e.port.is_some()),
    ] {
        if on {
            present |= bit;
        }
    }
    out.push(endpoint_kind_code(e.kind));
    out.push(present);
    for s in [&e.namespace, &e.pod, &e.workload, &e.network_set].into_iter().flatten() {
        put_str(out, s);
    }
    put_varint(out, e.labels.len() as u64);
    for (k, v) in &e.labels {
        put_str(out, k);
        put_str(out, v);
    }
    if let Some(id) = e.identity {
        put_varint(out, u64::from(id));
    }
    match e.ip {
        Some(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
        Some(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
        None => {}
    }
    if let Some(p) = e.port {
        out.extend_from_slice(&p.to_le_bytes());
    }
}

/// Appends `r`'s version-1 encoding to `out`.
pub fn encode(r: &FlowRecord, out: &mut Vec<u8>) {
    let mut flags = 0u16;
    for (bit, on) in [
        (F_DENIED, r.verdict == Verdict::Denied),
        (F_PENDING, r.pending_verdict.is_some()),
        (F_DROP_REASON, r.drop_reason.is_some()),
        (F_EGRESS, r.direction == FlowDirection::Egress),
        (F_REPORTER_DST, r.reporter == Reporter::Dst),
        (F_V6, r.ip_family == IpFamily::V6),
        (F_ICMP, r.icmp.is_some()),
        (F_OPEN, r.open),
        (F_WORKLOAD, r.aggregation == AggregationLevel::Workload),
    ] {
        if on {
            flags |= bit;
        }
    }
    out.push(TAG_V1);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&r.start_time.to_le_bytes());
    // A record never ends before it starts; should one, the encoding keeps it exact anyway
    // (wrapping difference, undone on decode).
    put_varint(out, r.end_time.wrapping_sub(r.start_time));
    put_str(out, &r.node);
    if let Some(p) = r.pending_verdict {
        out.push(match p {
            PendingVerdict::WouldAllow => 0,
            PendingVerdict::WouldDeny => 1,
        });
    }
    if let Some(d) = &r.drop_reason {
        put_str(out, d);
    }
    put_str(out, &r.protocol);
    if let Some(i) = r.icmp {
        out.push(i.kind);
        out.push(i.code);
    }
    put_endpoint(out, &r.src);
    put_endpoint(out, &r.dst);
    for trace in [&r.enforced_trace, &r.pending_trace] {
        put_varint(out, trace.len() as u64);
        for h in trace {
            put_str(out, h);
        }
    }
    for v in [r.packets_src_to_dst, r.bytes_src_to_dst, r.packets_dst_to_src, r.bytes_dst_to_src] {
        put_varint(out, v);
    }
    out.push(r.tcp_flags.0);
    for v in [r.flows_started, r.flows_completed, r.flows_open] {
        put_varint(out, v);
    }
}

/// `r` encoded (version 1).
pub fn to_vec(r: &FlowRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(256);
    encode(r, &mut v);
    v
}

/// Appends a block of `records` (each version 1, in the given order) to `out`.
pub fn encode_block<'r>(records: impl ExactSizeIterator<Item = &'r FlowRecord>, out: &mut Vec<u8>) {
    out.push(TAG_BLOCK);
    put_varint(out, records.len() as u64);
    let mut one = Vec::with_capacity(512);
    for r in records {
        one.clear();
        encode(r, &mut one);
        put_varint(out, one.len() as u64);
        out.extend_from_slice(&one);
    }
}

/// Decodes one stored value into its records: a block, or one record of an older format.
pub fn decode_many(b: &[u8]) -> Result<Vec<FlowRecord>, CodecError> {
    if b.first() == Some(&TAG_DICT_BLOCK) {
        return decode_dict_block(b);
    }
    if b.first() != Some(&TAG_BLOCK) {
        return decode(b).map(|r| vec![r]);
    }
    let mut rd = Rd { b, at: 1 };
    let n = rd.len()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = rd.len()?;
        let at = rd.at;
        let one = rd.take(len)?;
        if one.first() != Some(&TAG_V1) {
            return Err(CodecError::Value { what: "record tag in a block", value: one.first().copied().unwrap_or(0).into(), at });
        }
        out.push(decode_v1(one)?);
    }
    if rd.at != b.len() {
        return Err(CodecError::Trailing(b.len() - rd.at));
    }
    Ok(out)
}

struct Rd<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or(CodecError::Truncated(self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let start = self.at;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            // the 10th byte may only carry the top bit of a u64; a zero final byte after the
            // first is an overlong (non-canonical) encoding
            if (i == 9 && b > 1) || (i > 0 && b == 0) {
                return Err(CodecError::Varint(start));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Varint(start))
    }

    fn len(&mut self) -> Result<usize, CodecError> {
        let at = self.at;
        let n = self.varint()?;
        // every length counts bytes or items of at least one byte still to come
        if n > (self.b.len() - self.at) as u64 {
            return Err(CodecError::Truncated(at));
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Result<String, CodecError> {
        let n = self.len()?;
        let at = self.at;
        let b = self.take(n)?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| CodecError::Utf8(at))
    }

    fn u32_varint(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let at = self.at;
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| CodecError::Value { what, value: v, at })
    }

    fn endpoint(&mut self) -> Result<FlowEndpoint, CodecError> {
        let at = self.at;
        let kind = match self.u8()? {
            0 => EndpointKind::Pod,
            1 => EndpointKind::Host,
            2 => EndpointKind::NetworkSet,
            3 => EndpointKind::World,
            4 => EndpointKind::Unknown,
            v => return Err(CodecError::Value { what: "endpoint kind", value: v.into(), at }),
        };
        let at = self.at;
        let present = self.u8()?;
        if present & E_IP4 != 0 && present & E_IP6 != 0 {
            return Err(CodecError::Value { what: "endpoint field set", value: present.into(), at });
        }
        let opt = |bit: u8, rd: &mut Self| if present & bit != 0 { rd.str().map(Some) } else { Ok(None) };
        let namespace = opt(E_NAMESPACE, self)?;
        let pod = opt(E_POD, self)?;
        let workload = opt(E_WORKLOAD, self)?;
        let network_set = opt(E_NETWORK_SET, self)?;
        let n = self.len()?;
        let mut labels = BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..n {
            let at = self.at;
            let k = self.str()?;
            let v = self.str()?;
            // written in map order: anything else is not an encoding of a record
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(CodecError::Value { what: "label order", value: 0, at });
            }
            last = Some(k.clone());
            labels.insert(k, v);
        }
        let identity = if present & E_IDENTITY != 0 { Some(self.u32_varint("identity")?) } else { None };
        let ip = if present & E_IP4 != 0 {
            let b: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        } else if present & E_IP6 != 0 {
            let b: [u8; 16] = self.take(16)?.try_into().expect("16 bytes");
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        } else {
            None
        };
        let port = if present & E_PORT != 0 { Some(self.u16()?) } else { None };
        Ok(FlowEndpoint { kind, namespace, pod, workload, network_set, labels, identity, ip, port })
    }

    fn trace(&mut self) -> Result<Vec<String>, CodecError> {
        let n = self.len()?;
        (0..n).map(|_| self.str()).collect()
    }
}

/// Decodes one stored value: a version-1 binary record, or a JSON record of store format 1.
pub fn decode(b: &[u8]) -> Result<FlowRecord, CodecError> {
    match b.first() {
        None => Err(CodecError::Empty),
        Some(&TAG_JSON) => serde_json::from_slice(b).map_err(|e| CodecError::Json(e.to_string())),
        Some(&TAG_V1) => decode_v1(b),
        Some(&t) => Err(CodecError::Tag(t)),
    }
}

fn decode_v1(b: &[u8]) -> Result<FlowRecord, CodecError> {
    let mut r = Rd { b, at: 1 };
    let at = r.at;
    let flags = r.u16()?;
    if flags & !F_ALL != 0 {
        return Err(CodecError::Value { what: "flags", value: flags.into(), at });
    }
    let on = |bit: u16| flags & bit != 0;
    let start_time = r.u64()?;
    let end_time = start_time.wrapping_add(r.varint()?);
    let node = r.str()?;
    let pending_verdict = if on(F_PENDING) {
        let at = r.at;
        Some(match r.u8()? {
            0 => PendingVerdict::WouldAllow,
            1 => PendingVerdict::WouldDeny,
            v => return Err(CodecError::Value { what: "pending verdict", value: v.into(), at }),
        })
    } else {
        None
    };
    let drop_reason = if on(F_DROP_REASON) { Some(r.str()?) } else { None };
    let protocol = r.str()?;
    let icmp = if on(F_ICMP) { Some(Icmp { kind: r.u8()?, code: r.u8()? }) } else { None };
    let src = r.endpoint()?;
    let dst = r.endpoint()?;
    let enforced_trace = r.trace()?;
    let pending_trace = r.trace()?;
    let packets_src_to_dst = r.varint()?;
    let bytes_src_to_dst = r.varint()?;
    let packets_dst_to_src = r.varint()?;
    let bytes_dst_to_src = r.varint()?;
    let tcp_flags = TcpFlags(r.u8()?);
    let flows_started = r.varint()?;
    let flows_completed = r.varint()?;
    let flows_open = r.varint()?;
    if r.at != b.len() {
        return Err(CodecError::Trailing(b.len() - r.at));
    }
    Ok(FlowRecord {
        start_time,
        end_time,
        node,
        verdict: if on(F_DENIED) { Verdict::Denied } else { Verdict::Allowed },
        pending_verdict,
        drop_reason,
        direction: if on(F_EGRESS) { FlowDirection::Egress } else { FlowDirection::Ingress },
        reporter: if on(F_REPORTER_DST) { Reporter::Dst } else { Reporter::Src },
        ip_family: if on(F_V6) { IpFamily::V6 } else { IpFamily::V4 },
        protocol,
        icmp,
        src,
        dst,
        enforced_trace,
        pending_trace,
        packets_src_to_dst,
        bytes_src_to_dst,
        packets_dst_to_src,
        bytes_dst_to_src,
        tcp_flags,
        flows_started,
        flows_completed,
        flows_open,
        open: on(F_OPEN),
        aggregation: if on(F_WORKLOAD) { AggregationLevel::Workload } else { AggregationLevel::FiveTuple },
    })
}

mod dict;
pub use dict::*;

#[cfg(test)]
mod tests;
