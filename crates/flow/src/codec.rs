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

// ---------------------------------------------------------------------------------------------------------------
// Store format 4: dictionary blocks.

/// First byte of a dictionary block (store format 4): a flush's records with their strings, label sets,
/// endpoint metadata and traces stored once per block in tables and referenced by index (see [`BlockEncoder`]).
pub const TAG_DICT_BLOCK: u8 = 0xB3;

/// Stable 64-bit checksum of a dictionary block (a word-at-a-time multiply-rotate hash with a final avalanche).
/// Defined here, not taken from a hashing crate, because it is stored: it must never change. Every step is a
/// bijection of the state for a fixed input word and of the word for a fixed state, so a value that differs from
/// the written one in one 8-byte word always fails the check.
pub fn checksum(b: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (b.len() as u64 ^ 0x5851_f42d_4c95_7f2d).wrapping_mul(K);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(23) ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    h = (h.rotate_left(23) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The metadata of one end of a flow, without what differs per record (identity, address, port): one entry of a
/// dictionary block's endpoint table.
#[derive(Clone, Copy, Debug)]
pub struct EndpointDesc<'a> {
    pub kind: EndpointKind,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub workload: Option<&'a str>,
    pub network_set: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl<'a> EndpointDesc<'a> {
    /// An endpoint nothing is known about (`kind: unknown`, no names, no labels).
    pub fn unknown() -> EndpointDesc<'static> {
        EndpointDesc { kind: EndpointKind::Unknown, namespace: None, pod: None, workload: None, network_set: None, labels: &NO_LABELS }
    }

    /// The metadata part of a record's endpoint.
    pub fn of(e: &'a FlowEndpoint) -> Self {
        EndpointDesc {
            kind: e.kind,
            namespace: e.namespace.as_deref(),
            pod: e.pod.as_deref(),
            workload: e.workload.as_deref(),
            network_set: e.network_set.as_deref(),
            labels: &e.labels,
        }
    }
}

/// One end of a record in a dictionary block: an index into the block's endpoint table and the per-record fields.
#[derive(Clone, Copy, Debug)]
pub struct SideRef {
    pub endpoint: u32,
    pub identity: Option<u32>,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
}

/// A record whose strings, endpoints and traces are indices into a [`BlockEncoder`]'s tables (from
/// [`BlockEncoder::str`], [`BlockEncoder::endpoint`], [`BlockEncoder::trace`]); the other fields are the
/// [`FlowRecord`]'s.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef {
    pub start_time: u64,
    pub end_time: u64,
    pub node: u32,
    pub verdict: Verdict,
    pub pending_verdict: Option<PendingVerdict>,
    pub drop_reason: Option<u32>,
    pub direction: FlowDirection,
    pub reporter: Reporter,
    pub ip_family: IpFamily,
    pub protocol: u32,
    pub icmp: Option<Icmp>,
    pub src: SideRef,
    pub dst: SideRef,
    pub enforced_trace: u32,
    pub pending_trace: u32,
    pub packets_src_to_dst: u64,
    pub bytes_src_to_dst: u64,
    pub packets_dst_to_src: u64,
    pub bytes_dst_to_src: u64,
    pub tcp_flags: u8,
    pub flows_started: u64,
    pub flows_completed: u64,
    pub flows_open: u64,
    pub open: bool,
    pub aggregation: AggregationLevel,
}

/// What a finished block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub records: u64,
    /// End time of the first and of the last record (the store's key is the newest).
    pub first_end: u64,
    pub last_end: u64,
}

/// Builds dictionary blocks (store format 4), one at a time:
///
/// ```text
/// tag u8 | count varint
/// | strings: n varint, n × str
/// | label sets: n varint, n × (pairs varint, pairs × (key string index, value string index)), keys ascending
/// | endpoints: n varint, n × (kind u8 | present u8 | [namespace] [pod] [workload] [network_set] string indices
///                               | label set index)
/// | traces: n varint, n × (entries varint, entries × string index)
/// | first end_time u64
/// | count × record
/// | checksum u64 (of every byte before it, see [`checksum`])
///
/// record: flags u16 (as version 1) | end_time − previous end_time (zigzag varint; the first record's previous is
///         the header's) | end_time − start_time (varint, wrapping) | node string index | [pending_verdict u8]
///         | [drop_reason string index] | protocol string index | [icmp type u8, code u8] | src side | dst side
///         | enforced trace index | pending trace index | packets_src_to_dst, bytes_src_to_dst, packets_dst_to_src,
///         bytes_dst_to_src varint | tcp_flags u8 | flows_started, flows_completed, flows_open varint
/// side:   endpoint index varint | present u8 (identity, ip4, ip6, port bits of version 1) | [identity varint]
///         | [ip: 4 or 16 bytes] | [port u16]
/// ```
///
/// A record costs ~45 bytes instead of ~270 in version 1: the metadata it shares with the other records of its
/// block (pod names, labels, policy traces, the node) is written once per block. Tables are interned by content;
/// callers that hold the metadata behind shared pointers (the aggregator) also memoise by pointer
/// ([`Self::endpoint_memo`], [`Self::trace_memo`]) so that a record costs a few hash probes, not string hashing.
#[derive(Default)]
pub struct BlockEncoder {
    strings: rustc_hash::FxHashMap<Box<str>, u32>,
    string_bytes: Vec<u8>,
    label_sets: rustc_hash::FxHashMap<Vec<u32>, u32>,
    label_set_bytes: Vec<u8>,
    endpoints: rustc_hash::FxHashMap<[u32; 6], u32>,
    endpoint_bytes: Vec<u8>,
    traces: rustc_hash::FxHashMap<Vec<u32>, u32>,
    trace_bytes: Vec<u8>,
    endpoint_memo: rustc_hash::FxHashMap<usize, u32>,
    trace_memo: rustc_hash::FxHashMap<usize, u32>,
    scratch: Vec<u32>,
    records: Vec<u8>,
    count: u64,
    first_end: u64,
    prev_end: u64,
}

const NONE_IDX: u32 = u32::MAX;

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

impl BlockEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records in the current block.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded size of the current block so far (within a few bytes).
    pub fn size(&self) -> usize {
        self.string_bytes.len() + self.label_set_bytes.len() + self.endpoint_bytes.len() + self.trace_bytes.len() + self.records.len() + 48
    }

    /// The index of `s` in the block's string table.
    pub fn str(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.strings.len() as u32;
        put_str(&mut self.string_bytes, s);
        self.strings.insert(s.into(), i);
        i
    }

    fn labels(&mut self, labels: &BTreeMap<String, String>) -> u32 {
        let mut sc = std::mem::take(&mut self.scratch);
        sc.clear();
        for (k, v) in labels {
            sc.push(self.str(k));
            sc.push(self.str(v));
        }
        let i = match self.label_sets.get(&sc) {
            Some(&i) => i,
            None => {
                let i = self.label_sets.len() as u32;
                put_varint(&mut self.label_set_bytes, (sc.len() / 2) as u64);
                for &x in &sc {
                    put_varint(&mut self.label_set_bytes, u64::from(x));
                }
                self.label_sets.insert(sc.clone(), i);
                i
            }
        };
        self.scratch = sc;
        i
    }

    /// The index of `e` in the block's endpoint table.
    pub fn endpoint(&mut self, e: EndpointDesc<'_>) -> u32 {
        let mut present = 0u8;
        let mut key = [NONE_IDX; 6];
        for (n, (bit, s)) in
            [(E_NAMESPACE, e.namespace), (E_POD, e.pod), (E_WORKLOAD, e.workload), (E_NETWORK_SET, e.network_set)].into_iter().enumerate()
        {
            if let Some(s) = s {
                present |= bit;
                key[n + 1] = self.str(s);
            }
        }
        key[5] = self.labels(e.labels);
        key[0] = u32::from(endpoint_kind_code(e.kind)) | u32::from(present) << 8;
        if let Some(&i) = self.endpoints.get(&key) {
            return i;
        }
        let i = self.endpoints.len() as u32;
        let out = &mut self.endpoint_bytes;
        out.push(endpoint_kind_code(e.kind));
        out.push(present);
        for &s in key[1..5].iter().filter(|&&s| s != NONE_IDX) {
            put_varint(out, u64::from(s));
        }
        put_varint(out, u64::from(key[5]));
        self.endpoints.insert(key, i);
        i
    }

    /// [`Self::endpoint`], memoised under `ptr` (the address of the metadata the caller holds alive until the
    /// block is finished) for the rest of this block.
    pub fn endpoint_memo<'e>(&mut self, ptr: usize, e: impl FnOnce() -> EndpointDesc<'e>) -> u32 {
        if let Some(&i) = self.endpoint_memo.get(&ptr) {
            return i;
        }
        let i = self.endpoint(e());
        self.endpoint_memo.insert(ptr, i);
        i
    }

    /// The index of `trace` in the block's trace table.
    pub fn trace(&mut self, trace: &[String]) -> u32 {
        let mut sc = std::mem::take(&mut self.scratch);
        sc.clear();
        for h in trace {
            sc.push(self.str(h));
        }
        let i = match self.traces.get(&sc) {
            Some(&i) => i,
            None => {
                let i = self.traces.len() as u32;
                put_varint(&mut self.trace_bytes, sc.len() as u64);
                for &x in &sc {
                    put_varint(&mut self.trace_bytes, u64::from(x));
                }
                self.traces.insert(sc.clone(), i);
                i
            }
        };
        self.scratch = sc;
        i
    }

    /// [`Self::trace`], memoised under `ptr` (as [`Self::endpoint_memo`]).
    pub fn trace_memo(&mut self, ptr: usize, trace: &[String]) -> u32 {
        if let Some(&i) = self.trace_memo.get(&ptr) {
            return i;
        }
        let i = self.trace(trace);
        self.trace_memo.insert(ptr, i);
        i
    }

    fn put_side(out: &mut Vec<u8>, s: &SideRef) {
        put_varint(out, u64::from(s.endpoint));
        let mut present = 0u8;
        for (bit, on) in [
            (E_IDENTITY, s.identity.is_some()),
            (E_IP4, matches!(s.ip, Some(IpAddr::V4(_)))),
            (E_IP6, matches!(s.ip, Some(IpAddr::V6(_)))),
            (E_PORT, s.port.is_some()),
        ] {
            if on {
                present |= bit;
            }
        }
        out.push(present);
        if let Some(id) = s.identity {
            put_varint(out, u64::from(id));
        }
        match s.ip {
            Some(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
            Some(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
            None => {}
        }
        if let Some(p) = s.port {
            out.extend_from_slice(&p.to_le_bytes());
        }
    }

    /// Appends a record whose indices came from this block's tables.
    pub fn push(&mut self, r: &RecordRef) {
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
        if self.count == 0 {
            self.first_end = r.end_time;
            self.prev_end = r.end_time;
        }
        let out = &mut self.records;
        out.extend_from_slice(&flags.to_le_bytes());
        put_varint(out, zigzag(r.end_time.wrapping_sub(self.prev_end) as i64));
        put_varint(out, r.end_time.wrapping_sub(r.start_time));
        put_varint(out, u64::from(r.node));
        if let Some(p) = r.pending_verdict {
            out.push(match p {
                PendingVerdict::WouldAllow => 0,
                PendingVerdict::WouldDeny => 1,
            });
        }
        if let Some(d) = r.drop_reason {
            put_varint(out, u64::from(d));
        }
        put_varint(out, u64::from(r.protocol));
        if let Some(i) = r.icmp {
            out.push(i.kind);
            out.push(i.code);
        }
        Self::put_side(out, &r.src);
        Self::put_side(out, &r.dst);
        put_varint(out, u64::from(r.enforced_trace));
        put_varint(out, u64::from(r.pending_trace));
        for v in [r.packets_src_to_dst, r.bytes_src_to_dst, r.packets_dst_to_src, r.bytes_dst_to_src] {
            put_varint(out, v);
        }
        out.push(r.tcp_flags);
        for v in [r.flows_started, r.flows_completed, r.flows_open] {
            put_varint(out, v);
        }
        self.prev_end = r.end_time;
        self.count += 1;
    }

    /// Appends a whole record, interning its metadata by content.
    pub fn push_record(&mut self, r: &FlowRecord) {
        let side = |enc: &mut Self, e: &FlowEndpoint| SideRef { endpoint: enc.endpoint(EndpointDesc::of(e)), identity: e.identity, ip: e.ip, port: e.port };
        let rr = RecordRef {
            start_time: r.start_time,
            end_time: r.end_time,
            node: self.str(&r.node),
            verdict: r.verdict,
            pending_verdict: r.pending_verdict,
            drop_reason: r.drop_reason.as_deref().map(|d| self.str(d)),
            direction: r.direction,
            reporter: r.reporter,
            ip_family: r.ip_family,
            protocol: self.str(&r.protocol),
            icmp: r.icmp,
            src: side(self, &r.src),
            dst: side(self, &r.dst),
            enforced_trace: self.trace(&r.enforced_trace),
            pending_trace: self.trace(&r.pending_trace),
            packets_src_to_dst: r.packets_src_to_dst,
            bytes_src_to_dst: r.bytes_src_to_dst,
            packets_dst_to_src: r.packets_dst_to_src,
            bytes_dst_to_src: r.bytes_dst_to_src,
            tcp_flags: r.tcp_flags.0,
            flows_started: r.flows_started,
            flows_completed: r.flows_completed,
            flows_open: r.flows_open,
            open: r.open,
            aggregation: r.aggregation,
        };
        self.push(&rr);
    }

    /// Appends the finished block to `out` and starts a new, empty one. `None` (and nothing written) when the block
    /// is empty.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Option<BlockInfo> {
        if self.count == 0 {
            return None;
        }
        let start = out.len();
        out.push(TAG_DICT_BLOCK);
        put_varint(out, self.count);
        for (n, bytes) in [
            (self.strings.len(), &self.string_bytes),
            (self.label_sets.len(), &self.label_set_bytes),
            (self.endpoints.len(), &self.endpoint_bytes),
            (self.traces.len(), &self.trace_bytes),
        ] {
            put_varint(out, n as u64);
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&self.first_end.to_le_bytes());
        out.extend_from_slice(&self.records);
        let sum = checksum(&out[start..]);
        out.extend_from_slice(&sum.to_le_bytes());
        let info = BlockInfo { records: self.count, first_end: self.first_end, last_end: self.prev_end };
        self.strings.clear();
        self.string_bytes.clear();
        self.label_sets.clear();
        self.label_set_bytes.clear();
        self.endpoints.clear();
        self.endpoint_bytes.clear();
        self.traces.clear();
        self.trace_bytes.clear();
        self.endpoint_memo.clear();
        self.trace_memo.clear();
        self.records.clear();
        self.count = 0;
        Some(info)
    }
}

/// Appends one dictionary block of `records` (in the given order) to `out`; `None` when there are none.
pub fn encode_dict_block<'r>(records: impl IntoIterator<Item = &'r FlowRecord>, out: &mut Vec<u8>) -> Option<BlockInfo> {
    let mut enc = BlockEncoder::new();
    for r in records {
        enc.push_record(r);
    }
    enc.finish(out)
}

/// The record count of a dictionary block's header, without decoding it (`None`: not a dictionary block, or a
/// corrupt header).
pub fn dict_block_records(b: &[u8]) -> Option<u64> {
    if b.first() != Some(&TAG_DICT_BLOCK) {
        return None;
    }
    Rd { b, at: 1 }.varint().ok()
}

fn decode_dict_block(b: &[u8]) -> Result<Vec<FlowRecord>, CodecError> {
    if b.len() < 1 + 1 + 8 + 8 {
        return Err(CodecError::Truncated(b.len()));
    }
    let (body, sum) = b.split_at(b.len() - 8);
    let want = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
    if checksum(body) != want {
        return Err(CodecError::Checksum);
    }
    let mut r = Rd { b: body, at: 1 };
    let count = r.len()?;
    let n = r.len()?;
    let mut strings: Vec<&str> = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.len()?;
        let at = r.at;
        strings.push(std::str::from_utf8(r.take(len)?).map_err(|_| CodecError::Utf8(at))?);
    }
    let idx = |r: &mut Rd<'_>, what: &'static str, n: usize| -> Result<usize, CodecError> {
        let at = r.at;
        let v = r.varint()?;
        if v >= n as u64 {
            return Err(CodecError::Value { what, value: v, at });
        }
        Ok(v as usize)
    };
    let n = r.len()?;
    let mut label_sets: Vec<BTreeMap<String, String>> = Vec::with_capacity(n);
    for _ in 0..n {
        let pairs = r.len()?;
        let mut m = BTreeMap::new();
        let mut last: Option<&str> = None;
        for _ in 0..pairs {
            let at = r.at;
            let k = strings[idx(&mut r, "label key string index", strings.len())?];
            let v = strings[idx(&mut r, "label value string index", strings.len())?];
            if last.is_some_and(|l| l >= k) {
                return Err(CodecError::Value { what: "label order", value: 0, at });
            }
            last = Some(k);
            m.insert(k.to_owned(), v.to_owned());
        }
        label_sets.push(m);
    }
    let n = r.len()?;
    let mut endpoints: Vec<FlowEndpoint> = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.at;
        let kind = match r.u8()? {
            0 => EndpointKind::Pod,
            1 => EndpointKind::Host,
            2 => EndpointKind::NetworkSet,
            3 => EndpointKind::World,
            4 => EndpointKind::Unknown,
            v => return Err(CodecError::Value { what: "endpoint kind", value: v.into(), at }),
        };
        let at = r.at;
        let present = r.u8()?;
        if present & !(E_NAMESPACE | E_POD | E_WORKLOAD | E_NETWORK_SET) != 0 {
            return Err(CodecError::Value { what: "endpoint table field set", value: present.into(), at });
        }
        let opt = |bit: u8, r: &mut Rd<'_>| -> Result<Option<String>, CodecError> {
            if present & bit == 0 {
                return Ok(None);
            }
            Ok(Some(strings[idx(r, "endpoint string index", strings.len())?].to_owned()))
        };
        let namespace = opt(E_NAMESPACE, &mut r)?;
        let pod = opt(E_POD, &mut r)?;
        let workload = opt(E_WORKLOAD, &mut r)?;
        let network_set = opt(E_NETWORK_SET, &mut r)?;
        let labels = label_sets[idx(&mut r, "label set index", label_sets.len())?].clone();
        endpoints.push(FlowEndpoint { kind, namespace, pod, workload, network_set, labels, identity: None, ip: None, port: None });
    }
    let n = r.len()?;
    let mut traces: Vec<Vec<String>> = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.len()?;
        let mut t = Vec::with_capacity(len);
        for _ in 0..len {
            t.push(strings[idx(&mut r, "trace string index", strings.len())?].to_owned());
        }
        traces.push(t);
    }
    let mut prev_end = r.u64()?;
    let side = |r: &mut Rd<'_>| -> Result<FlowEndpoint, CodecError> {
        let mut e = endpoints[idx(r, "endpoint index", endpoints.len())?].clone();
        let at = r.at;
        let present = r.u8()?;
        if present & !(E_IDENTITY | E_IP4 | E_IP6 | E_PORT) != 0 || present & E_IP4 != 0 && present & E_IP6 != 0 {
            return Err(CodecError::Value { what: "endpoint field set", value: present.into(), at });
        }
        if present & E_IDENTITY != 0 {
            e.identity = Some(r.u32_varint("identity")?);
        }
        if present & E_IP4 != 0 {
            let b: [u8; 4] = r.take(4)?.try_into().expect("4 bytes");
            e.ip = Some(IpAddr::V4(Ipv4Addr::from(b)));
        } else if present & E_IP6 != 0 {
            let b: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
            e.ip = Some(IpAddr::V6(Ipv6Addr::from(b)));
        }
        if present & E_PORT != 0 {
            e.port = Some(r.u16()?);
        }
        Ok(e)
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.at;
        let flags = r.u16()?;
        if flags & !F_ALL != 0 {
            return Err(CodecError::Value { what: "flags", value: flags.into(), at });
        }
        let on = |bit: u16| flags & bit != 0;
        let end_time = prev_end.wrapping_add(unzigzag(r.varint()?) as u64);
        prev_end = end_time;
        let start_time = end_time.wrapping_sub(r.varint()?);
        let node = strings[idx(&mut r, "node string index", strings.len())?].to_owned();
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
        let drop_reason =
            if on(F_DROP_REASON) { Some(strings[idx(&mut r, "drop reason string index", strings.len())?].to_owned()) } else { None };
        let protocol = strings[idx(&mut r, "protocol string index", strings.len())?].to_owned();
        let icmp = if on(F_ICMP) { Some(Icmp { kind: r.u8()?, code: r.u8()? }) } else { None };
        let src = side(&mut r)?;
        let dst = side(&mut r)?;
        let enforced_trace = traces[idx(&mut r, "trace index", traces.len())?].clone();
        let pending_trace = traces[idx(&mut r, "trace index", traces.len())?].clone();
        let packets_src_to_dst = r.varint()?;
        let bytes_src_to_dst = r.varint()?;
        let packets_dst_to_src = r.varint()?;
        let bytes_dst_to_src = r.varint()?;
        let tcp_flags = TcpFlags(r.u8()?);
        let flows_started = r.varint()?;
        let flows_completed = r.varint()?;
        let flows_open = r.varint()?;
        out.push(FlowRecord {
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
        });
    }
    if r.at != body.len() {
        return Err(CodecError::Trailing(body.len() - r.at));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlowRecord {
        let ep = |ns: &str, pod: &str, ip: &str, port: Option<u16>| FlowEndpoint {
            kind: EndpointKind::Pod,
            namespace: Some(ns.into()),
            pod: Some(pod.into()),
            workload: None,
            network_set: None,
            labels: [("app".to_string(), pod.to_string()), ("tier".to_string(), "x".to_string())].into(),
            identity: Some(1042),
            ip: Some(ip.parse().unwrap()),
            port,
        };
        FlowRecord {
            start_time: 1_700_000_000_123_456_789,
            end_time: 1_700_000_000_923_456_789,
            node: "node-1".into(),
            verdict: Verdict::Denied,
            pending_verdict: Some(PendingVerdict::WouldAllow),
            drop_reason: Some("drop_policy_deny".into()),
            direction: FlowDirection::Ingress,
            reporter: Reporter::Dst,
            ip_family: IpFamily::V4,
            protocol: "tcp".into(),
            icmp: None,
            src: ep("a", "web-1", "10.0.0.1", Some(40000)),
            dst: ep("b", "db-0", "10.0.0.2", Some(5432)),
            enforced_trace: vec!["security|guard|0|deny".into()],
            pending_trace: vec!["security|staged:x|1|allow".into()],
            packets_src_to_dst: 3,
            bytes_src_to_dst: 180,
            packets_dst_to_src: 0,
            bytes_dst_to_src: 0,
            tcp_flags: TcpFlags(TcpFlags::SYN),
            flows_started: 1,
            flows_completed: 0,
            flows_open: 0,
            open: false,
            aggregation: AggregationLevel::FiveTuple,
        }
    }

    #[test]
    fn roundtrip_is_exact_and_smaller_than_json() {
        let mut r = sample();
        let b = to_vec(&r);
        assert_eq!(decode(&b).unwrap(), r);
        let json = serde_json::to_vec(&r).unwrap();
        assert!(b.len() * 2 < json.len(), "binary {} bytes vs JSON {}", b.len(), json.len());
        // the JSON of store format 1 still reads
        assert_eq!(decode(&json).unwrap(), r);
        // every optional shape
        r.pending_verdict = None;
        r.drop_reason = None;
        r.icmp = Some(Icmp { kind: 8, code: 0 });
        r.ip_family = IpFamily::V6;
        r.src.ip = Some("fd00::1".parse().unwrap());
        r.src.port = None;
        r.dst = FlowEndpoint::default();
        r.open = true;
        r.flows_open = u64::MAX;
        r.bytes_src_to_dst = u64::MAX;
        r.aggregation = AggregationLevel::Workload;
        r.end_time = r.start_time - 1;
        assert_eq!(decode(&to_vec(&r)).unwrap(), r);
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_an_error() {
        let b = to_vec(&sample());
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_err(), "a prefix of {n} bytes decoded");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode(&long), Err(CodecError::Trailing(1)));
        let mut bad = b.clone();
        bad[0] = 0x42;
        assert_eq!(decode(&bad), Err(CodecError::Tag(0x42)));
        let mut bad = b;
        bad[2] = 0xff; // flags high byte: unknown bits
        assert!(matches!(decode(&bad), Err(CodecError::Value { what: "flags", .. })));
    }

    proptest::proptest! {
        /// Arbitrary bytes, and a valid record with bytes changed: never a panic; whatever decodes
        /// re-encodes to the same bytes (the encoding is canonical, so nothing was misread).
        #[test]
        fn corrupt_values_never_panic_or_misread(
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
        ) {
            let mut tagged = b.clone();
            if let Some(x) = tagged.first_mut() {
                *x = TAG_V1;
            }
            let mut mutated = to_vec(&sample());
            for (at, v) in flips {
                let n = mutated.len();
                mutated[at % n] = v;
            }
            for input in [b, tagged, mutated] {
                if input.first() == Some(&TAG_V1)
                    && let Ok(r) = decode(&input)
                {
                    proptest::prop_assert_eq!(to_vec(&r), input);
                }
            }
        }
    }

    #[test]
    fn overlong_varints_are_refused() {
        let mut r = Rd { b: &[0xff; 11], at: 0 };
        assert_eq!(r.varint(), Err(CodecError::Varint(0)));
        let mut r = Rd { b: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], at: 0 };
        assert_eq!(r.varint(), Ok(u64::MAX));
        let mut r = Rd { b: &[0x80, 0x00], at: 0 };
        assert_eq!(r.varint(), Err(CodecError::Varint(0)), "0 written in two bytes");
        let mut r = Rd { b: &[0x00], at: 0 };
        assert_eq!(r.varint(), Ok(0));
    }

    /// Records of every shape: both verdicts, v4/v6, ICMP, unknown endpoints, workload aggregation, extreme
    /// counters, a record ending before it starts, out-of-order end times.
    fn samples() -> Vec<FlowRecord> {
        let a = sample();
        let mut b = sample();
        b.pending_verdict = None;
        b.drop_reason = None;
        b.verdict = Verdict::Allowed;
        b.icmp = Some(Icmp { kind: 8, code: 0 });
        b.ip_family = IpFamily::V6;
        b.src.ip = Some("fd00::1".parse().unwrap());
        b.src.port = None;
        b.dst = FlowEndpoint::default();
        b.open = true;
        b.flows_open = u64::MAX;
        b.bytes_src_to_dst = u64::MAX;
        b.aggregation = AggregationLevel::Workload;
        b.end_time = b.start_time - 1;
        b.enforced_trace.clear();
        let mut c = sample();
        c.end_time = 3;
        c.start_time = u64::MAX;
        c.node = "node-2".into();
        c.src.labels.clear();
        c.src.kind = EndpointKind::World;
        c.src.namespace = None;
        c.src.pod = None;
        c.dst.workload = Some("db".into());
        c.dst.network_set = Some("x".into());
        c.pending_trace = vec!["a".into(), "a".into()];
        vec![a.clone(), b, c, a]
    }

    fn dict(records: &[FlowRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_dict_block(records, &mut out).unwrap();
        out
    }

    #[test]
    fn dict_blocks_roundtrip_exactly_and_are_small() {
        let recs = samples();
        let b = dict(&recs);
        assert_eq!(b[0], TAG_DICT_BLOCK);
        assert_eq!(dict_block_records(&b), Some(4));
        assert_eq!(decode_many(&b).unwrap(), recs);
        // Many records sharing their metadata: a fraction of version 1's size.
        let many: Vec<FlowRecord> = (0..500u64)
            .map(|i| {
                let mut r = sample();
                r.end_time += i * 1000;
                r.src.port = Some(30000 + i as u16);
                r
            })
            .collect();
        let v1: usize = many.iter().map(|r| to_vec(r).len()).sum();
        let b = dict(&many);
        assert!(b.len() * 3 < v1, "dictionary block {} bytes vs version 1 {v1}", b.len());
        assert_eq!(decode_many(&b).unwrap(), many);
        assert_eq!(BlockEncoder::new().finish(&mut Vec::new()), None, "an empty block is not written");
    }

    #[test]
    fn dict_block_every_truncation_and_changed_byte_is_an_error() {
        let b = dict(&samples());
        for n in 0..b.len() {
            assert!(decode_many(&b[..n]).is_err(), "a prefix of {n} bytes decoded");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(decode_many(&long).is_err());
        // Any one byte changed, to any of a few values: the checksum refuses it.
        for at in 0..b.len() {
            for x in [0x00, 0x01, 0x7f, 0x80, 0xff, b[at] ^ 0x10] {
                if x == b[at] {
                    continue;
                }
                let mut bad = b.clone();
                bad[at] = x;
                assert!(decode_many(&bad).is_err(), "byte {at} set to {x:#x} decoded");
            }
        }
    }

    /// A block whose body is changed and whose checksum is then recomputed (what a checksum collision would
    /// give): the structural checks alone must refuse it or decode it to what it says, never panic.
    fn resealed(mut b: Vec<u8>) -> Vec<u8> {
        if b.len() >= 8 {
            let n = b.len() - 8;
            let sum = checksum(&b[..n]);
            b[n..].copy_from_slice(&sum.to_le_bytes());
        }
        b
    }

    proptest::proptest! {
        #[test]
        fn corrupt_dict_blocks_never_panic_or_misread(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..4),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let good = dict(&samples());
            let mut tagged = junk.clone();
            if let Some(x) = tagged.first_mut() {
                *x = TAG_DICT_BLOCK;
            }
            let mut flipped = good.clone();
            for (at, v) in &flips {
                let n = flipped.len();
                flipped[at % n] = *v;
            }
            let changed = flipped != good;
            // Changed bytes under the original checksum: always refused.
            if changed {
                proptest::prop_assert!(decode_many(&flipped).is_err());
            }
            let mut short = good[..cut % good.len()].to_vec();
            short = resealed(short);
            for input in [junk, resealed(tagged), resealed(flipped), short] {
                if let Ok(recs) = decode_many(&input) {
                    // Whatever passes the checks is a block of valid records: encoding them again gives a block
                    // that decodes to the same records.
                    if input.first() == Some(&TAG_DICT_BLOCK) && !recs.is_empty() {
                        proptest::prop_assert_eq!(decode_many(&dict(&recs)).unwrap(), recs);
                    }
                }
            }
        }
    }

    #[test]
    fn checksum_is_stable() {
        // Stored in every block: this value must never change.
        assert_eq!(checksum(b""), checksum(&[]));
        assert_ne!(checksum(b"\0"), checksum(b""));
        assert_eq!(checksum(b"porin flow block"), 724_207_867_358_931_305);
    }
}
