//! What a flush hands out: the flushed entries in record order, and the records or store blocks built from them.

use super::*;

/// Full sort key of a flushed entry: (start, end, src ip, src port, dst ip, dst port, verdict) with `Option<IpAddr>`
/// as (0 none / 1 v4 / 2 v6, address as a big-endian number) and `Option<u16>` as 0 / port + 1, which orders
/// exactly as the record's fields do.
pub(super) type SortKey = (u64, u64, u8, u128, u32, u8, u128, u32, u8);

pub(super) fn ip_key(ip: Option<IpAddr>) -> (u8, u128) {
    match ip {
        None => (0, 0),
        Some(IpAddr::V4(a)) => (1, u128::from(u32::from(a))),
        Some(IpAddr::V6(a)) => (2, u128::from(a)),
    }
}

pub(super) fn port_key(p: Option<u16>) -> u32 {
    p.map_or(0, |p| u32::from(p) + 1)
}

/// One entry of a flushed interval.
#[derive(Debug)]
pub(super) struct Flushed {
    pub(super) key: AggKey,
    pub(super) e: Entry,
    pub(super) open: u32,
}

/// One side of a flushed entry as the record shows it.
pub(super) struct SideView<'a> {
    side: &'a Side,
    ip: Option<IpAddr>,
    port: Option<u16>,
    identity: Option<u32>,
}

impl Flushed {
    /// (src, dst) as the record shows them.
    fn sides(&self, workload: bool) -> (SideView<'_>, SideView<'_>) {
        let t = &self.e.first;
        let ingress = t.dir == Direction::Ingress as u8;
        let (sport, dport) = if t.is_icmp() { (None, None) } else { (Some(t.sport).filter(|_| !workload), Some(t.dport)) };
        let (src_ip, dst_ip) = if workload { (None, None) } else { (Some(ip_of(t.family, &t.src)), Some(ip_of(t.family, &t.dst))) };
        let (local_ip, peer_ip) = if ingress { (dst_ip, src_ip) } else { (src_ip, dst_ip) };
        let (local_port, peer_port) = if ingress { (dport, sport) } else { (sport, dport) };
        let local = SideView { side: &self.e.local, ip: local_ip, port: local_port, identity: None };
        let peer = SideView { side: &self.e.peer, ip: peer_ip, port: peer_port, identity: Some(self.e.peer_identity) };
        if ingress { (peer, local) } else { (local, peer) }
    }

    pub(super) fn sort_key(&self, tb: TimeBase, workload: bool) -> SortKey {
        let (src, dst) = self.sides(workload);
        let (sf, sa) = ip_key(src.ip);
        let (df, da) = ip_key(dst.ip);
        (tb.to_unix(self.e.start_ns), tb.to_unix(self.e.end_ns), sf, sa, port_key(src.port), df, da, port_key(dst.port), self.key.verdict)
    }

    pub(super) fn display_names(&self, workload: bool) -> (String, String) {
        let (src, dst) = self.sides(workload);
        (endpoint_of(&src, workload, false).display_name(), endpoint_of(&dst, workload, false).display_name())
    }

    fn record(&self, level: AggregationLevel, node: &str, tb: TimeBase) -> FlowRecord {
        let workload = level == AggregationLevel::Workload;
        let (k, e, open) = (&self.key, &self.e, self.open);
        let t = &e.first;
        let ingress = t.dir == Direction::Ingress as u8;
        let (src, dst) = self.sides(workload);
        FlowRecord {
            start_time: tb.to_unix(e.start_ns),
            end_time: tb.to_unix(e.end_ns),
            node: node.to_string(),
            verdict: if k.verdict == VERDICT_ALLOWED { Verdict::Allowed } else { Verdict::Denied },
            pending_verdict: e.pending.as_ref().map(|p| p.verdict),
            drop_reason: (k.reason != NO_REASON).then(|| reason_name(k.reason).into_owned()),
            direction: if ingress { FlowDirection::Ingress } else { FlowDirection::Egress },
            reporter: if ingress { Reporter::Dst } else { Reporter::Src },
            ip_family: if t.family == 4 { IpFamily::V4 } else { IpFamily::V6 },
            protocol: protocol_name(t.proto).into_owned(),
            icmp: t.is_icmp().then_some(Icmp { kind: (t.dport >> 8) as u8, code: t.dport as u8 }),
            src: endpoint_of(&src, workload, true),
            dst: endpoint_of(&dst, workload, true),
            enforced_trace: e.rule.as_ref().map(|r| r.trace.clone()).unwrap_or_default(),
            pending_trace: e.pending.as_ref().map(|p| p.trace.clone()).unwrap_or_default(),
            packets_src_to_dst: e.packets_fwd,
            bytes_src_to_dst: e.bytes_fwd,
            packets_dst_to_src: e.packets_rev,
            bytes_dst_to_src: e.bytes_rev,
            tcp_flags: TcpFlags(e.tcp_flags),
            flows_started: e.started,
            flows_completed: e.completed,
            flows_open: u64::from(open),
            open: open > 0,
            aggregation: level,
        }
    }

    /// Adds this entry's record to `enc` (the record [`Self::record`] builds, in the block encoding), with the
    /// metadata interned by pointer: no string is copied.
    fn encode(&self, level: AggregationLevel, node: &str, tb: TimeBase, enc: &mut BlockEncoder) {
        let workload = level == AggregationLevel::Workload;
        let (k, e, open) = (&self.key, &self.e, self.open);
        let t = &e.first;
        let ingress = t.dir == Direction::Ingress as u8;
        let (src, dst) = self.sides(workload);
        let side = |v: &SideView<'_>, enc: &mut BlockEncoder| {
            let endpoint = match (&v.side.meta, workload) {
                (None, _) => enc.endpoint_memo(0, EndpointDesc::unknown),
                // Per-5-tuple: the metadata as the enricher shared it (one table entry per distinct `Arc`).
                (Some(m), false) => enc.endpoint_memo(Arc::as_ptr(m) as usize, || desc_of(m, v.side, false)),
                // Per workload: the labels are those the merged members share (interned by content).
                (Some(m), true) => enc.endpoint(desc_of(m, v.side, true)),
            };
            SideRef { endpoint, identity: v.identity, ip: v.ip, port: v.port }
        };
        let (src, dst) = (side(&src, enc), side(&dst, enc));
        let no_trace: &[String] = &[];
        let r = RecordRef {
            start_time: tb.to_unix(e.start_ns),
            end_time: tb.to_unix(e.end_ns),
            node: enc.str(node),
            verdict: if k.verdict == VERDICT_ALLOWED { Verdict::Allowed } else { Verdict::Denied },
            pending_verdict: e.pending.as_ref().map(|p| p.verdict),
            drop_reason: (k.reason != NO_REASON).then(|| enc.str(&reason_name(k.reason))),
            direction: if ingress { FlowDirection::Ingress } else { FlowDirection::Egress },
            reporter: if ingress { Reporter::Dst } else { Reporter::Src },
            ip_family: if t.family == 4 { IpFamily::V4 } else { IpFamily::V6 },
            protocol: enc.str(&protocol_name(t.proto)),
            icmp: t.is_icmp().then_some(Icmp { kind: (t.dport >> 8) as u8, code: t.dport as u8 }),
            src,
            dst,
            enforced_trace: match &e.rule {
                Some(r) => enc.trace_memo(Arc::as_ptr(r) as usize, &r.trace),
                None => enc.trace_memo(0, no_trace),
            },
            pending_trace: match &e.pending {
                Some(p) => enc.trace_memo(Arc::as_ptr(p) as usize, &p.trace),
                None => enc.trace_memo(0, no_trace),
            },
            packets_src_to_dst: e.packets_fwd,
            bytes_src_to_dst: e.bytes_fwd,
            packets_dst_to_src: e.packets_rev,
            bytes_dst_to_src: e.bytes_rev,
            tcp_flags: e.tcp_flags,
            flows_started: e.started,
            flows_completed: e.completed,
            flows_open: u64::from(open),
            open: open > 0,
            aggregation: level,
        };
        enc.push(&r);
    }
}

pub(super) fn reason_name(reason: u8) -> std::borrow::Cow<'static, str> {
    match Reason::from_u8(reason) {
        Some(r) => r.as_str().into(),
        None => reason.to_string().into(),
    }
}

pub(super) fn desc_of<'a>(m: &'a EndpointMeta, side: &'a Side, workload: bool) -> EndpointDesc<'a> {
    EndpointDesc {
        kind: m.kind,
        namespace: m.namespace.as_deref(),
        pod: if workload { None } else { m.pod.as_deref() },
        workload: if workload { m.aggregate_name() } else { m.workload.as_deref() },
        network_set: m.network_set.as_deref(),
        labels: side.labels(),
    }
}

/// The record's endpoint of a side (`labels: false`: without labels, for display names).
pub(super) fn endpoint_of(v: &SideView<'_>, workload: bool, labels: bool) -> FlowEndpoint {
    let mut ep = FlowEndpoint { ip: v.ip, port: v.port, identity: v.identity, ..Default::default() };
    if let Some(m) = &v.side.meta {
        let d = desc_of(m, v.side, workload);
        ep.kind = d.kind;
        ep.namespace = d.namespace.map(Into::into);
        ep.pod = d.pod.map(Into::into);
        ep.workload = d.workload.map(Into::into);
        ep.network_set = d.network_set.map(Into::into);
        if labels {
            ep.labels = d.labels.clone();
        }
    }
    ep
}

/// One flush interval's records before they are built: what [`Aggregator::flush_batch`] returns. The flow store
/// encodes it without building a [`FlowRecord`] per record; [`Self::to_records`] builds them (the records
/// [`Aggregator::flush`] returns, in the same order).
#[derive(Debug)]
pub struct FlowBatch {
    pub(super) level: AggregationLevel,
    pub(super) node: Arc<str>,
    pub(super) time_base: TimeBase,
    /// In drain order; `order` lists them in flush order.
    pub(super) entries: Vec<Flushed>,
    pub(super) order: Vec<u32>,
}

/// The counters of one record of a [`FlowBatch`] (without building it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchCounts {
    pub verdict: Verdict,
    pub end_time: UnixNanos,
    pub packets_src_to_dst: u64,
    pub bytes_src_to_dst: u64,
    pub packets_dst_to_src: u64,
    pub bytes_dst_to_src: u64,
    pub flows_started: u64,
    pub flows_completed: u64,
    pub flows_open: u64,
}

impl FlowBatch {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The records, in flush order.
    pub fn to_records(&self) -> Vec<FlowRecord> {
        self.flushed().map(|f| f.record(self.level, &self.node, self.time_base)).collect()
    }

    fn flushed(&self) -> impl ExactSizeIterator<Item = &Flushed> + '_ {
        self.order.iter().map(|&i| &self.entries[i as usize])
    }

    /// Each record's counters, in flush order.
    pub fn counts(&self) -> impl ExactSizeIterator<Item = BatchCounts> + '_ {
        self.flushed().map(|f| BatchCounts {
            verdict: if f.key.verdict == VERDICT_ALLOWED { Verdict::Allowed } else { Verdict::Denied },
            end_time: self.time_base.to_unix(f.e.end_ns),
            packets_src_to_dst: f.e.packets_fwd,
            bytes_src_to_dst: f.e.bytes_fwd,
            packets_dst_to_src: f.e.packets_rev,
            bytes_dst_to_src: f.e.bytes_rev,
            flows_started: f.e.started,
            flows_completed: f.e.completed,
            flows_open: u64::from(f.open),
        })
    }

    /// End time of record `i` (flush order).
    pub fn end_time(&self, i: usize) -> UnixNanos {
        self.time_base.to_unix(self.entries[self.order[i] as usize].e.end_ns)
    }

    /// Adds record `i` (flush order) to `enc`: exactly what [`Self::to_records`]`()[i]` encodes to, without
    /// building it.
    pub fn encode(&self, i: usize, enc: &mut BlockEncoder) {
        self.entries[self.order[i] as usize].encode(self.level, &self.node, self.time_base, enc);
    }
}
