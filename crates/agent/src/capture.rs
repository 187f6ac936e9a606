//! Packet capture on this node: `PacketCapture` objects → the kernel's capture maps → pcap files.
//!
//! ```text
//!  engine snapshot ──(thread porin-capture, every TICK)──► plan: captures × this node's selected endpoints
//!        │                                                   │ union per interface (filters, snap length)
//!        │                                                   ▼
//!        │                                        porin_cap_v1 / porin_capctl_v1 (pinned, dataplane crate)
//!        │                             porin_caprb_v1 ──► records ──► per capture: its filters, its snap length
//!        ▼                                                             ──► <data-dir>/captures/<ns>/<name>/<pod>-N.pcap
//!  status (memory) ──(async publisher)──► store `captures/<ns>/<name>/<node>` ──► GET /porin/v1/captures/...
//! ```
//!
//! The thread owns the capture maps and every open file; the API reads the published status and the files on
//! disk. Files rotate past `maxSizeBytes` and at most `maxFiles` are kept per endpoint (the oldest is deleted),
//! so an endpoint's files never exceed `maxFiles × maxSizeBytes` plus one packet. A file stays after its
//! capture ended or was deleted, until `porin capture clean`.
//!
//! Loss is never silent: the kernel counts matching packets its ring could not take (per CPU); the thread adds
//! the increase since its last look to every capture active on this node (the counter is per node: with two
//! captures active at once both report the node's loss), and counts packets it could not write itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use porin_dataplane::abi::{CAP_MAX_FILTERS, CapConfig, CapFilter};
use porin_dataplane::capture::{CaptureMaps, CapturedPacket};
use porin_model::capture::{FilterEntry, PacketCaptureSpec};
use porin_model::{Object, Resource};
use porin_selector::Selector;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::engine::Snapshot;

/// How often the thread re-plans, flushes files and reads the counters; the ring is read in between.
const TICK: Duration = Duration::from_millis(200);
/// pcap: global header and per-record header sizes.
const PCAP_HEADER: u64 = 24;
const PCAP_RECORD: u64 = 16;

/// A capture: (namespace, name).
pub type CaptureKey = (String, String);

/// Calico's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaptureState {
    Scheduled,
    Capturing,
    WaitingForTraffic,
    Finished,
    Error,
}

/// This node's part of a capture's status (Calico's `status.files[]` entry, plus counters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCaptureStatus {
    pub node: String,
    pub directory: String,
    /// Oldest first per endpoint.
    pub file_names: Vec<String>,
    pub state: CaptureState,
    /// Packets written to the files.
    pub packets: u64,
    /// Matching packets lost (kernel ring full, or not written).
    pub lost: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where the service works.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub node: String,
    /// `<data-dir>/captures`.
    pub dir: PathBuf,
    /// The dataplane's pin directory (the capture maps are pinned there once the dataplane is open).
    pub pin_dir: PathBuf,
}

/// The capture service: the thread's published status and the capture directory.
pub struct CaptureService {
    pub node: String,
    pub dir: PathBuf,
    status: Mutex<BTreeMap<CaptureKey, NodeCaptureStatus>>,
    /// Captures whose files `clean` removed: the thread drops its writers and counters for them.
    cleaned: Mutex<Vec<CaptureKey>>,
}

impl CaptureService {
    /// Starts the thread `porin-capture`.
    pub fn start(opts: CaptureOptions, snapshot: watch::Receiver<Arc<Snapshot>>) -> std::io::Result<Arc<CaptureService>> {
        std::fs::create_dir_all(&opts.dir)?;
        let svc = Arc::new(CaptureService {
            node: opts.node.clone(),
            dir: opts.dir.clone(),
            status: Mutex::new(BTreeMap::new()),
            cleaned: Mutex::new(Vec::new()),
        });
        let s = svc.clone();
        std::thread::Builder::new().name("porin-capture".into()).spawn(move || Worker::new(opts, s).run(snapshot))?;
        Ok(svc)
    }

    /// This node's status of every capture it has taken part in.
    pub fn statuses(&self) -> BTreeMap<CaptureKey, NodeCaptureStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The directory of a capture's files on this node.
    pub fn capture_dir(&self, ns: &str, name: &str) -> PathBuf {
        self.dir.join(ns).join(name)
    }

    /// Is the capture running (or about to) on this node?
    pub fn is_active(&self, key: &CaptureKey) -> bool {
        self.statuses().get(key).is_some_and(|s| matches!(s.state, CaptureState::Capturing | CaptureState::WaitingForTraffic))
    }

    /// Deletes the capture's files on this node and forgets its status. Returns the files removed.
    pub fn clean(&self, ns: &str, name: &str) -> std::io::Result<Vec<String>> {
        let key = (ns.to_string(), name.to_string());
        self.cleaned.lock().unwrap_or_else(|p| p.into_inner()).push(key.clone());
        let dir = self.capture_dir(ns, name);
        let files = list_files(&dir)?.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.status.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        Ok(files)
    }
}

/// The pcap files of a capture directory: (name, bytes), by name (missing directory: none).
pub fn list_files(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".pcap") && e.file_type()?.is_file() {
            out.push((name, e.metadata()?.len()));
        }
    }
    out.sort_by_key(|a| file_order(&a.0));
    Ok(out)
}

/// `pod-N.pcap` sorts by pod, then N as a number.
fn file_order(name: &str) -> (String, u64) {
    let stem = name.strip_suffix(".pcap").unwrap_or(name);
    match stem.rsplit_once('-').and_then(|(p, n)| n.parse::<u64>().ok().map(|n| (p.to_string(), n))) {
        Some(x) => x,
        None => (stem.to_string(), 0),
    }
}

/// What a capture does on this node now.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub spec: PacketCaptureSpec,
    pub entries: Vec<FilterEntry>,
    /// Scheduled, WaitingForTraffic (= active) or Finished.
    pub state: CaptureState,
    /// Selected local endpoints: (pod name, host interface).
    pub endpoints: Vec<(String, String)>,
}

/// Plans every capture for `node` at `now` (epoch seconds) from the stored objects: which local endpoints (a
/// WorkloadEndpoint of this node whose pod, in the capture's namespace, matches its selector) each captures.
pub fn plan(objects: &[Resource], node: &str, now: i64) -> BTreeMap<CaptureKey, Planned> {
    let mut pods: HashMap<(&str, &str), BTreeMap<String, String>> = HashMap::new();
    for r in objects {
        if let Resource::Pod(p) = r {
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            pods.insert((ns, p.metadata.name.as_str()), p.metadata.labels.clone());
        }
    }
    let mut out = BTreeMap::new();
    for r in objects {
        let Resource::PacketCapture(Object { metadata, spec, .. }) = r else { continue };
        let ns = metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let (start, end) = spec.window();
        let state = if end.is_some_and(|e| e <= now) {
            CaptureState::Finished
        } else if start.is_some_and(|s| s > now) {
            CaptureState::Scheduled
        } else {
            CaptureState::WaitingForTraffic
        };
        let sel = match spec.selector.as_deref() {
            Some(s) => Selector::parse(s).unwrap_or_else(|_| Selector::parse("!all()").expect("a valid selector")),
            None => Selector::all(),
        };
        let mut endpoints = Vec::new();
        for w in objects {
            let Resource::WorkloadEndpoint(w) = w else { continue };
            if w.spec.node != node || w.metadata.namespace.as_deref().unwrap_or("default") != ns || w.spec.interface_name.is_empty() {
                continue;
            }
            let mut labels = pods.get(&(ns.as_str(), w.spec.pod.as_str())).cloned().unwrap_or_else(|| w.metadata.labels.clone());
            labels.insert(porin_policy::ir::LABEL_NAMESPACE.to_string(), ns.clone());
            if sel.matches(&labels) {
                endpoints.push((w.spec.pod.clone(), w.spec.interface_name.clone()));
            }
        }
        endpoints.sort();
        let key = (ns, metadata.name.clone());
        out.insert(key, Planned { entries: spec.entries(), spec: spec.clone(), state, endpoints });
    }
    out
}

/// The kernel's configuration of one interface: the union of the active captures that select it (largest
/// snap length; their filters, or every packet when one has none or there are more than the kernel holds:
/// the thread applies each capture's own filters to what arrives).
pub fn kernel_config(captures: &[&Planned]) -> CapConfig {
    let snaplen = captures.iter().map(|p| p.spec.snap_len()).max().unwrap_or(1);
    let mut set = BTreeSet::new();
    let mut all = false;
    for p in captures {
        if p.entries.is_empty() {
            all = true;
        }
        set.extend(p.entries.iter().copied());
    }
    let mut c = CapConfig { snaplen, n_filters: 0, ..Default::default() };
    if !all && set.len() <= CAP_MAX_FILTERS {
        for (i, e) in set.iter().enumerate() {
            let (lo, hi) = e.ports.unwrap_or((0, 0));
            c.filters[i] = CapFilter { proto: e.protocol.unwrap_or(0), pad: 0, port_lo: lo, port_hi: hi, pad2: 0 };
        }
        c.n_filters = set.len() as u32;
    }
    c
}

/// Does a packet match a capture's filters (none: every packet)?
pub fn entries_match(entries: &[FilterEntry], proto: u8, sport: u16, dport: u16) -> bool {
    entries.is_empty()
        || entries.iter().any(|e| {
            e.protocol.is_none_or(|p| p == proto)
                && e.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&sport) || (lo..=hi).contains(&dport))
        })
}

/// One endpoint's current file.
struct EndpointFile {
    index: u64,
    size: u64,
    writer: PcapWriter<SharedFile>,
    file: SharedFile,
}

/// Per capture, what the thread keeps.
#[derive(Default)]
struct Running {
    files: HashMap<String, EndpointFile>,
    packets: u64,
    lost: u64,
    error: Option<String>,
}

struct Worker {
    opts: CaptureOptions,
    svc: Arc<CaptureService>,
    maps: Option<CaptureMaps>,
    maps_error: Option<String>,
    plan: BTreeMap<CaptureKey, Planned>,
    /// The decoded objects of the snapshot at `plan_revision` (planned again every tick: times pass).
    objects: Vec<Resource>,
    plan_revision: u64,
    /// ifindex → (capture, pod) selected on it.
    by_ifindex: HashMap<u32, Vec<(CaptureKey, String)>>,
    running: BTreeMap<CaptureKey, Running>,
    last_lost: Option<u64>,
    clock_offset_ns: i128,
}

impl Worker {
    fn new(opts: CaptureOptions, svc: Arc<CaptureService>) -> Worker {
        Worker {
            opts,
            svc,
            maps: None,
            maps_error: None,
            plan: BTreeMap::new(),
            objects: Vec::new(),
            plan_revision: u64::MAX,
            by_ifindex: HashMap::new(),
            running: BTreeMap::new(),
            last_lost: None,
            clock_offset_ns: porin_dataplane::capture::monotonic_to_unix_offset_ns(),
        }
    }

    fn run(mut self, snapshot: watch::Receiver<Arc<Snapshot>>) {
        let mut last_tick = Instant::now() - TICK;
        loop {
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                let snap = snapshot.borrow().clone();
                self.tick(&snap);
            }
            self.drain();
            match &self.maps {
                Some(m) => {
                    let _ = m.wait(TICK.saturating_sub(last_tick.elapsed()).max(Duration::from_millis(1)));
                }
                None => std::thread::sleep(TICK),
            }
        }
    }

    fn tick(&mut self, snap: &Snapshot) {
        for key in std::mem::take(&mut *self.svc.cleaned.lock().unwrap_or_else(|p| p.into_inner())) {
            self.running.remove(&key);
        }
        if self.maps.is_none() {
            match CaptureMaps::open_pinned(&self.opts.pin_dir) {
                Ok(m) => {
                    self.maps = Some(m);
                    self.maps_error = None;
                }
                Err(e) => self.maps_error = Some(format!("the dataplane's capture maps are not open: {e}")),
            }
        }
        if snap.revision != self.plan_revision {
            // Without a PacketCapture the plan is empty: do not decode every stored object (every pod) on every
            // revision for it (at 10k pods that was most of the agent's CPU under policy churn).
            let prefix = crate::registry::keys::kind_prefix(porin_model::Kind::PacketCapture);
            let any = snap.items.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix));
            self.objects = if any { crate::registry::decode_all(&snap.items).0 } else { Vec::new() };
            self.plan_revision = snap.revision;
        }
        self.plan = plan(&self.objects, &self.opts.node, crate::timefmt::now_secs());
        // Interfaces of the active captures.
        let mut by_ifindex: HashMap<u32, Vec<(CaptureKey, String)>> = HashMap::new();
        let mut per_if: BTreeMap<u32, Vec<&Planned>> = BTreeMap::new();
        for (key, p) in &self.plan {
            if p.state != CaptureState::WaitingForTraffic {
                continue;
            }
            for (pod, ifname) in &p.endpoints {
                let Ok(ifindex) = nix::net::if_::if_nametoindex(ifname.as_str()) else { continue };
                by_ifindex.entry(ifindex).or_default().push((key.clone(), pod.clone()));
                per_if.entry(ifindex).or_default().push(p);
            }
        }
        let want: BTreeMap<u32, CapConfig> = per_if.iter().map(|(i, ps)| (*i, kernel_config(ps))).collect();
        if let Some(m) = self.maps.as_mut()
            && let Err(e) = m.set(&want)
        {
            self.maps_error = Some(format!("programming the capture maps: {e}"));
        }
        // Drain what the old configuration captured before switching the dispatch table.
        self.drain();
        self.by_ifindex = by_ifindex;
        // Loss since the last look, to every active capture.
        if let Some(m) = &self.maps
            && let Ok(s) = m.stats()
        {
            let delta = self.last_lost.map_or(0, |l| s.lost.saturating_sub(l));
            self.last_lost = Some(s.lost);
            if delta > 0 {
                for (key, p) in &self.plan {
                    if p.state == CaptureState::WaitingForTraffic && !p.endpoints.is_empty() {
                        self.running.entry(key.clone()).or_default().lost += delta;
                    }
                }
            }
        }
        // Close the files of captures that are no longer active here.
        let active: BTreeSet<&CaptureKey> =
            self.plan.iter().filter(|(_, p)| p.state == CaptureState::WaitingForTraffic && !p.endpoints.is_empty()).map(|(k, _)| k).collect();
        for (key, r) in self.running.iter_mut() {
            if !active.contains(key) {
                for (_, mut f) in r.files.drain() {
                    let _ = f.writer_flush();
                }
            } else {
                for f in r.files.values_mut() {
                    if let Err(e) = f.writer_flush() {
                        r.error = Some(format!("writing: {e}"));
                    }
                }
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        let mut out = BTreeMap::new();
        let keys: BTreeSet<CaptureKey> = self.plan.keys().chain(self.running.keys()).cloned().collect();
        for key in keys {
            let p = self.plan.get(&key);
            let dir = self.svc.capture_dir(&key.0, &key.1);
            let file_names: Vec<String> = list_files(&dir).unwrap_or_default().into_iter().map(|(n, _)| n).collect();
            let r = self.running.get(&key);
            let has_endpoints = p.is_some_and(|p| !p.endpoints.is_empty());
            if !has_endpoints && file_names.is_empty() && r.is_none_or(|r| r.packets == 0 && r.lost == 0) {
                continue; // nothing of this capture on this node
            }
            let mut state = match p {
                Some(p) if p.state == CaptureState::WaitingForTraffic && !has_endpoints => CaptureState::WaitingForTraffic,
                Some(p) if p.state == CaptureState::WaitingForTraffic && r.is_some_and(|r| r.packets > 0) => CaptureState::Capturing,
                Some(p) => p.state,
                None => CaptureState::Finished, // deleted: its files stay until cleaned
            };
            let mut error = r.and_then(|r| r.error.clone());
            if state == CaptureState::WaitingForTraffic
                && let Some(e) = &self.maps_error
            {
                error = Some(e.clone());
            }
            if error.is_some() && state != CaptureState::Finished {
                state = CaptureState::Error;
            }
            out.insert(
                key.clone(),
                NodeCaptureStatus {
                    node: self.opts.node.clone(),
                    directory: dir.display().to_string(),
                    file_names,
                    state,
                    packets: r.map_or(0, |r| r.packets),
                    lost: r.map_or(0, |r| r.lost),
                    error,
                },
            );
        }
        *self.svc.status.lock().unwrap_or_else(|p| p.into_inner()) = out;
    }

    /// Reads every record that is ready and writes it to the files of the captures that want it.
    fn drain(&mut self) {
        let Some(maps) = self.maps.as_mut() else { return };
        let mut bad = 0u64;
        let mut batch = Vec::new();
        while let Some(p) = maps.try_next(&mut bad) {
            batch.push(p);
            if batch.len() >= 4096 {
                break;
            }
        }
        for p in batch {
            self.write(&p);
        }
    }

    fn write(&mut self, p: &CapturedPacket) {
        let Some(targets) = self.by_ifindex.get(&p.hdr.ifindex) else { return };
        for (key, pod) in targets {
            let Some(plan) = self.plan.get(key) else { continue };
            if !entries_match(&plan.entries, p.hdr.proto, p.hdr.sport, p.hdr.dport) {
                continue;
            }
            let snap = plan.spec.snap_len() as usize;
            let data = &p.data[..p.data.len().min(snap)];
            let ts_ns = (p.hdr.ts_ns as i128 + self.clock_offset_ns).max(0) as u128;
            let ts = Duration::new((ts_ns / 1_000_000_000) as u64, (ts_ns % 1_000_000_000) as u32);
            let dir = self.svc.capture_dir(&key.0, &key.1);
            let r = self.running.entry(key.clone()).or_default();
            match write_packet(r, &dir, pod, plan, ts, p.hdr.len, data) {
                Ok(()) => r.packets += 1,
                Err(e) => {
                    r.lost += 1;
                    r.error = Some(format!("writing {}: {e}", dir.display()));
                }
            }
        }
    }
}

/// The file under a [`PcapWriter`], shared so that the thread can flush it (the writer gives its inner writer
/// back only by value).
#[derive(Clone)]
struct SharedFile(std::rc::Rc<std::cell::RefCell<BufWriter<std::fs::File>>>);

impl Write for SharedFile {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

impl EndpointFile {
    fn writer_flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn open_file(dir: &Path, pod: &str, index: u64, snaplen: u32) -> std::io::Result<EndpointFile> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{pod}-{index}.pcap"));
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
    let header = PcapHeader { snaplen, endianness: pcap_file::Endianness::native(), ..Default::default() };
    let file = SharedFile(std::rc::Rc::new(std::cell::RefCell::new(BufWriter::with_capacity(256 << 10, f))));
    let writer = PcapWriter::with_header(file.clone(), header).map_err(std::io::Error::other)?;
    Ok(EndpointFile { index, size: PCAP_HEADER, writer, file })
}

/// The next file index of `pod` in `dir` (after an agent restart, files are never overwritten).
fn next_index(dir: &Path, pod: &str) -> u64 {
    list_files(dir)
        .unwrap_or_default()
        .iter()
        .map(|(n, _)| file_order(n))
        .filter(|(p, _)| p == pod)
        .map(|(_, n)| n + 1)
        .max()
        .unwrap_or(0)
}

fn write_packet(r: &mut Running, dir: &Path, pod: &str, plan: &Planned, ts: Duration, orig_len: u32, data: &[u8]) -> std::io::Result<()> {
    let rec = PCAP_RECORD + data.len() as u64;
    let max_size = plan.spec.max_size_bytes();
    let rotate = r.files.get(pod).is_some_and(|f| f.size > PCAP_HEADER && f.size + rec > max_size);
    if rotate && let Some(mut old) = r.files.remove(pod) {
        old.writer_flush()?;
        let next = open_file(dir, pod, old.index + 1, plan.spec.snap_len())?;
        r.files.insert(pod.to_string(), next);
        // Keep at most maxFiles of this endpoint: delete the oldest.
        let keep = u64::from(plan.spec.max_files());
        let mine: Vec<(String, u64)> = list_files(dir)?.into_iter().filter(|(n, _)| file_order(n).0 == pod).collect();
        let excess = mine.len().saturating_sub(keep as usize);
        for (n, _) in mine.into_iter().take(excess) {
            std::fs::remove_file(dir.join(n))?;
        }
    }
    if !r.files.contains_key(pod) {
        let f = open_file(dir, pod, next_index(dir, pod), plan.spec.snap_len())?;
        r.files.insert(pod.to_string(), f);
    }
    let f = r.files.get_mut(pod).expect("opened above");
    f.writer.write_packet(&PcapPacket::new(ts, orig_len, data)).map_err(std::io::Error::other)?;
    f.size += rec;
    Ok(())
}

/// Store key of a node's status of a capture.
pub const CAPTURES: &str = "captures/";

pub fn status_key(ns: &str, name: &str, node: &str) -> String {
    format!("{CAPTURES}{ns}/{name}/{node}")
}

/// The publisher task: writes this node's status of each capture to the store when it changed (every
/// `every`), so that any agent's API shows every node's files.
pub async fn publisher(st: Arc<crate::api::ApiState>, svc: Arc<CaptureService>, every: Duration) {
    use porin_store::Store;
    let mut last: BTreeMap<CaptureKey, NodeCaptureStatus> = BTreeMap::new();
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        if !st.connected() {
            continue;
        }
        let now = svc.statuses();
        let mut ops = Vec::new();
        for (k, s) in &now {
            if last.get(k) != Some(s) {
                ops.push(porin_store::Op::put(status_key(&k.0, &k.1, &svc.node), serde_json::to_vec(s).expect("status serializes")));
            }
        }
        for k in last.keys().filter(|k| !now.contains_key(*k)) {
            ops.push(porin_store::Op::delete(status_key(&k.0, &k.1, &svc.node)));
        }
        if ops.is_empty() {
            continue;
        }
        match st.store.txn(vec![], ops).await {
            Ok(_) => last = now,
            Err(e) => tracing::warn!(error = %e, "publishing packet capture status failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Vec<Resource> {
        porin_model::load::parse_documents("test.yaml", yaml).expect("loads").into_iter().map(|d| d.resource).collect()
    }

    #[test]
    fn plans_select_local_endpoints_of_the_namespace_by_time() {
        let objs = load(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: other, labels: {app: web}}
---
apiVersion: porin.io/v1
kind: WorkloadEndpoint
metadata: {name: n1-web, namespace: shop}
spec: {node: n1, pod: web, interfaceName: veth1}
---
apiVersion: porin.io/v1
kind: WorkloadEndpoint
metadata: {name: n1-db, namespace: shop}
spec: {node: n1, pod: db, interfaceName: veth2}
---
apiVersion: porin.io/v1
kind: WorkloadEndpoint
metadata: {name: n1-web, namespace: other}
spec: {node: n1, pod: web, interfaceName: veth3}
---
apiVersion: projectcalico.org/v3
kind: PacketCapture
metadata: {name: now, namespace: shop}
spec: {selector: app == 'web', filters: [{protocol: UDP, ports: [53]}]}
---
apiVersion: porin.io/v1
kind: PacketCapture
metadata: {name: later, namespace: shop}
spec: {startTime: "2030-01-01T00:00:00Z"}
---
apiVersion: porin.io/v1
kind: PacketCapture
metadata: {name: over, namespace: shop}
spec: {endTime: "2020-01-01T00:00:00Z"}
"#,
        );
        let p = plan(&objs, "n1", 1_796_313_600);
        let k = |n: &str| ("shop".to_string(), n.to_string());
        assert_eq!(p[&k("now")].endpoints, [("web".to_string(), "veth1".to_string())], "its namespace only");
        assert_eq!(p[&k("now")].state, CaptureState::WaitingForTraffic);
        assert_eq!(p[&k("later")].state, CaptureState::Scheduled);
        assert_eq!(p[&k("later")].endpoints.len(), 2, "no selector: all() of the namespace");
        assert_eq!(p[&k("over")].state, CaptureState::Finished);
        assert!(plan(&objs, "n2", 0)[&k("now")].endpoints.is_empty(), "another node's endpoints are not ours");
    }

    #[test]
    fn kernel_config_is_the_union_and_filters_apply_per_capture() {
        let mk = |entries: Vec<FilterEntry>, snap: u32| Planned {
            spec: PacketCaptureSpec { snap_len: Some(snap), ..Default::default() },
            entries,
            state: CaptureState::WaitingForTraffic,
            endpoints: vec![],
        };
        let udp53 = FilterEntry { protocol: Some(17), ports: Some((53, 53)) };
        let tcp = FilterEntry { protocol: Some(6), ports: None };
        let a = mk(vec![udp53], 100);
        let b = mk(vec![tcp], 200);
        let c = kernel_config(&[&a, &b]);
        assert_eq!((c.snaplen, c.n_filters), (200, 2));
        assert!(c.matches(17, 5000, 53) && c.matches(6, 1, 2) && !c.matches(17, 1, 2));
        let all = mk(vec![], 64);
        assert_eq!(kernel_config(&[&a, &all]).n_filters, 0, "one capture without filters: every packet");
        let many = mk((1..=9).map(|p| FilterEntry { protocol: Some(6), ports: Some((p, p)) }).collect(), 64);
        assert_eq!(kernel_config(&[&many]).n_filters, 0, "more than the kernel holds: every packet, filtered here");
        assert!(entries_match(&a.entries, 17, 53, 9999) && !entries_match(&a.entries, 6, 53, 53));
        assert!(entries_match(&[], 1, 0, 0));
    }

    #[test]
    fn files_sort_by_endpoint_then_number() {
        assert_eq!(file_order("web-10.pcap"), ("web".into(), 10));
        assert_eq!(file_order("my-pod-2.pcap"), ("my-pod".into(), 2));
        let mut v = vec!["web-10.pcap", "web-9.pcap", "db-0.pcap"];
        v.sort_by_key(|n| file_order(n));
        assert_eq!(v, ["db-0.pcap", "web-9.pcap", "web-10.pcap"]);
    }
}
