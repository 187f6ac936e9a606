//! Store format 4: dictionary blocks (a flush's records with their shared metadata in per-block tables).

use super::*;

/// First byte of a dictionary block (store format 4): a flush's records with their strings, label sets,
/// endpoint metadata and traces stored once per block in tables and referenced by index (see [`BlockEncoder`]).
pub const TAG_DICT_BLOCK: u8 = 0xB3;

/// Stable 64-bit checksum of a dictionary block (word-at-a-time rounds of multiply, add, rotate, multiply, then a
/// final avalanche). Defined here, not taken from a hashing crate, because it is stored: it must never change.
/// Every step is a bijection of the state for a fixed input word and of the word for a fixed state, so a value
/// that differs from the written one in one 8-byte word always fails the check. The rotate sits between two
/// multiplications so that a change in a word's high bits reaches the low bits of the state before the next word
/// is mixed in: with one multiplication per word (the first version), a change in the top byte of one word could
/// be cancelled by a change in the next word (the proptest found such a pair).
pub fn checksum(b: &[u8]) -> u64 {
    const K1: u64 = 0x9e37_79b1_85eb_ca87;
    const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    let round = |h: u64, w: u64| h.wrapping_add(w.wrapping_mul(K2)).rotate_left(31).wrapping_mul(K1);
    let mut h = (b.len() as u64 ^ 0x5851_f42d_4c95_7f2d).wrapping_mul(K1);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        h = round(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    h = round(h, u64::from_le_bytes(last));
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

pub(super) fn decode_dict_block(b: &[u8]) -> Result<Vec<FlowRecord>, CodecError> {
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
