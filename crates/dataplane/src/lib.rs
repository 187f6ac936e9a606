//! Porin's kernel enforcement point.
//!
//! Owns: the BPF programs, their loading, attachment and pinned maps. Never: policy semantics or the API; the ABI
//! mirror it programs against lives in `porin-abi`. Any error path in the programs drops.
//!
//! Two tc programs (attached with TCX to the host side of each workload veth)
//! decide every packet from pinned BPF maps: endpoints, ipcache, one policy LPM
//! trie, conntrack, fragments, counters and an event ring buffer. This crate
//! loads the object (built from `bpf/` by `build.rs`), attaches/detaches,
//! keeps the maps equal to the desired state with minimal diffs
//! ([`sync::Engine`]), and reads counters and events.
//!
//! See `docs/design/dataplane.md`.

pub use porin_abi as abi;
pub mod btf;
pub mod capture;
pub mod ct;
pub mod entries;
pub mod error;
pub mod events;
pub mod grace;
mod kernel;
pub mod netns;
pub mod sync;
pub mod sys;
mod upgrade;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aya::maps::{HashMap, Map, MapData, PerCpuArray, RingBuf};
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};

pub use abi::{Action, Counters, Direction, EventType, MapOccupancy, Reason};
pub use entries::{AddrError, EndpointAddrs, EndpointPolicy, PolicyEntry, port_range_to_prefixes};
pub use error::{Error, MapOpError, Result};
pub use events::{AsyncEventReader, DeniedAggregates, DrainStats, EVENT_POLL_INTERVAL, EVENT_WAKE_FRACTION, Event, EventReader};
pub use sync::{ReadBack, SyncStats};

use abi::{CtKey, CtValue, FragKey, FragValue, map_names as names, prog_names};
use kernel::KernelMaps;

/// The compiled BPF object (`bpf/porin_tc.bpf.c`).
pub static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/porin_tc.bpf.o"));

/// Sizing of the maps at creation. `None` keeps the default from `abi.h`.
/// Ignored for maps that already exist (pinned): they keep their size.
#[derive(Clone, Debug)]
pub struct DataplaneOptions {
    /// Event ring buffer size in bytes (power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// Also sizes the per-endpoint maps (`porin_own_v1`, `porin_ctn_v1`,
    /// `porin_ctr_v1`: twice this).
    pub max_endpoints: Option<u32>,
    pub max_ipcache_v4: Option<u32>,
    pub max_ipcache_v6: Option<u32>,
    pub max_policy: Option<u32>,
    pub max_conntrack: Option<u32>,
    pub max_frags: Option<u32>,
    /// Most conntrack entries one endpoint may hold (1 per flow; flows it
    /// opens and flows it accepts). A new flow over it drops
    /// (`DROP_CT_BUDGET`), other endpoints are unaffected. Written at every
    /// `open` (also to pinned maps). 0 admits no new flow.
    pub ct_budget: u32,
    /// Most policy entries one endpoint may have per generation (ingress +
    /// egress; an endpoint holds up to two generations). Over it,
    /// `set_endpoint` locks the endpoint down and returns
    /// [`Error::PolicyOverQuota`]. `None`: only the map's size limits.
    pub policy_quota: Option<u32>,
    /// How often a background thread deletes expired conntrack entries (and
    /// gives their slots back to their endpoints' budgets). `None`: never
    /// (call [`Dataplane::sweep_conntrack`] yourself).
    pub ct_sweep_every: Option<Duration>,
    /// Flows the denied-packet aggregates (`porin_dagg_v1`) hold between two drains.
    pub max_denied_aggregates: Option<u32>,
    /// Capture ring buffer (`porin_caprb_v1`) size in bytes (power of two, multiple of the page size);
    /// `None`: 8 MiB.
    pub capture_ringbuf_bytes: Option<u32>,
}

/// Default [`DataplaneOptions::ct_budget`]: 1/16 of the default conntrack map
/// (131072), i.e. 4096 concurrent flows per endpoint.
pub const DEFAULT_CT_BUDGET: u32 = 8192;
/// Default [`DataplaneOptions::policy_quota`]: 1/16 of the default policy map
/// (262144) per generation, 1/8 with both generations.
pub const DEFAULT_POLICY_QUOTA: u32 = 16384;

impl Default for DataplaneOptions {
    fn default() -> Self {
        Self {
            ringbuf_bytes: 4 << 20,
            max_endpoints: None,
            max_ipcache_v4: None,
            max_ipcache_v6: None,
            max_policy: None,
            max_conntrack: None,
            max_frags: None,
            ct_budget: DEFAULT_CT_BUDGET,
            policy_quota: Some(DEFAULT_POLICY_QUOTA),
            ct_sweep_every: Some(Duration::from_secs(10)),
            max_denied_aggregates: None,
            capture_ringbuf_bytes: None,
        }
    }
}


/// A TCX attachment recorded by a pinned link.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    pub ifname: String,
    pub ifindex: u32,
    /// "ingress" (from the workload) or "egress" (to the workload).
    pub hook: String,
    pub pin: PathBuf,
}

/// The result of one `BPF_PROG_TEST_RUN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// The program's return value (`TC_ACT_*`).
    pub retval: i32,
    /// Average run time per repetition.
    pub ns_per_run: u64,
}

impl TestRunOutcome {
    /// `TC_ACT_UNSPEC` (-1, "no objection", what Porin returns to pass) or `TC_ACT_OK`.
    pub fn passed(&self) -> bool {
        self.retval == -1 || self.retval == 0
    }
    /// `TC_ACT_SHOT`.
    pub fn dropped(&self) -> bool {
        self.retval == 2
    }
}

const HOOKS: [(&str, &str, TcAttachType); 2] = [
    (prog_names::FROM_WORKLOAD, "ingress", TcAttachType::Ingress),
    (prog_names::TO_WORKLOAD, "egress", TcAttachType::Egress),
];

fn map_data(m: &Map) -> Option<&MapData> {
    match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::RingBuf(d) => Some(d),
        _ => None,
    }
}

/// (name, map type, key size, value size) the code expects for each pinned map.
fn expected_maps() -> [(&'static str, aya::maps::MapType, u32, u32); 13] {
    use aya::maps::MapType as T;
    use std::mem::size_of as s;
    [
        (names::ENDPOINTS, T::Hash, 4, s::<abi::EndpointValue>() as u32),
        (names::IPCACHE_V4, T::LpmTrie, s::<abi::IpcacheV4Key>() as u32, s::<abi::IpcacheValue>() as u32),
        (names::IPCACHE_V6, T::LpmTrie, s::<abi::IpcacheV6Key>() as u32, s::<abi::IpcacheValue>() as u32),
        (names::POLICY, T::LpmTrie, s::<abi::PolicyKey>() as u32, s::<abi::PolicyValue>() as u32),
        (names::CONNTRACK, T::Hash, s::<CtKey>() as u32, s::<CtValue>() as u32),
        (names::FRAGS, T::LruHash, s::<FragKey>() as u32, s::<FragValue>() as u32),
        (names::COUNTERS, T::PerCpuArray, 4, 8),
        (names::EVENTS, T::RingBuf, 0, 0),
        (names::META, T::Array, 4, s::<abi::Meta>() as u32),
        (names::CT_COUNT, T::Hash, 4, s::<abi::CtCount>() as u32),
        (names::CT_RELEASED, T::Hash, 4, s::<abi::CtCount>() as u32),
        (names::OWN, T::Hash, s::<abi::OwnKey>() as u32, s::<abi::OwnValue>() as u32),
        (names::CONFIG, T::Array, 4, s::<abi::Config>() as u32),
    ]
}

/// The same for the flow-event delivery maps (`abi::flow_map_names`) and the capture maps.
fn expected_flow_maps() -> [(&'static str, aya::maps::MapType, u32, u32); 6] {
    use aya::maps::MapType as T;
    use std::mem::size_of as s;
    use abi::capture_map_names as cap;
    [
        (abi::flow_map_names::EVCTL, T::Array, 4, s::<abi::EvCtl>() as u32),
        (abi::flow_map_names::DENIED_AGG, T::PerCpuHash, s::<abi::DaggKey>() as u32, s::<abi::DaggValue>() as u32),
        (cap::CONFIG, T::Hash, 4, s::<abi::CapConfig>() as u32),
        (cap::IFACES, T::Array, 4, s::<abi::CapIf>() as u32),
        (cap::STATS, T::PerCpuArray, 4, 8),
        (cap::RING, T::RingBuf, 0, 0),
    ]
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |e| Error::Map { name, source: Box::new(e) }
}

fn take(bpf: &mut Ebpf, name: &'static str) -> Result<Map> {
    bpf.take_map(name).ok_or(Error::MissingMap { name })
}

/// `__sk_buff` context for `BPF_PROG_TEST_RUN` with `ifindex` set; the layout
/// comes from the object's BTF (the program's argument type).
fn skb_ctx(ifindex: u32, ingress_ifindex: u32) -> Vec<u8> {
    static LAYOUT: OnceLock<(usize, usize, usize)> = OnceLock::new();
    let (size, off, in_off) = *LAYOUT.get_or_init(|| {
        let l = btf::layouts_from_object(BPF_OBJECT).expect("object BTF");
        let (size, members) = l.structs.get("__sk_buff").expect("__sk_buff in BTF");
        let m = members.iter().find(|m| m.name == "ifindex").expect("__sk_buff.ifindex");
        let i = members.iter().find(|m| m.name == "ingress_ifindex").expect("__sk_buff.ingress_ifindex");
        (*size, m.offset, i.offset)
    });
    let mut ctx = vec![0u8; size];
    ctx[off..off + 4].copy_from_slice(&ifindex.to_ne_bytes());
    ctx[in_off..in_off + 4].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}

/// The loaded enforcement point of one node.
pub struct Dataplane {
    pin_dir: PathBuf,
    bpf: Ebpf,
    maps: KernelMaps,
    conntrack: Arc<Mutex<ct::CtMaps>>,
    _ct_sweeper: Option<ct::Sweeper>,
    frags: HashMap<MapData, FragKey, FragValue>,
    counters: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
    max_entries: BTreeMap<&'static str, u32>,
    engine: sync::Engine,
    last_read_back: ReadBack,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane").field("pin_dir", &self.pin_dir).field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl Dataplane {
    /// Loads the BPF object, reusing the maps pinned under `pin_dir` if they
    /// exist (enforcement continues across agent restarts) or creating and
    /// pinning them, and reads the maps back into the actual state.
    /// `pin_dir` must be on a bpf filesystem (see [`sys::ensure_bpffs`]).
    pub fn open(pin_dir: &Path, opts: &DataplaneOptions) -> Result<Self> {
        std::fs::create_dir_all(pin_dir.join("links"))
            .map_err(|source| Error::Io { what: "creating pin directory", path: pin_dir.to_path_buf(), source })?;
        if !sys::is_bpffs(pin_dir).map_err(|source| Error::Io { what: "statfs", path: pin_dir.to_path_buf(), source })? {
            return Err(Error::NotBpffs { path: pin_dir.to_path_buf() });
        }
        upgrade::retire_endpoints_v1(pin_dir)?;
        capture::retire_capif_v1(pin_dir)?;
        let old_ct = upgrade::take_old_conntrack(pin_dir)?;
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(pin_dir);
        loader.map_max_entries(names::EVENTS, opts.ringbuf_bytes);
        if let Some(n) = opts.capture_ringbuf_bytes {
            loader.map_max_entries(abi::capture_map_names::RING, n);
        }
        for (name, v) in [
            (names::ENDPOINTS, opts.max_endpoints),
            (names::IPCACHE_V4, opts.max_ipcache_v4),
            (names::IPCACHE_V6, opts.max_ipcache_v6),
            (names::POLICY, opts.max_policy),
            (names::CONNTRACK, opts.max_conntrack),
            (names::FRAGS, opts.max_frags),
            (abi::flow_map_names::DENIED_AGG, opts.max_denied_aggregates),
        ] {
            if let Some(v) = v {
                loader.map_max_entries(name, v);
            }
        }
        // Per-endpoint maps: two addresses per endpoint; budget counters may
        // outlive an endpoint id until its purge.
        if let Some(n) = opts.max_endpoints {
            for name in [names::OWN, names::CT_COUNT, names::CT_RELEASED] {
                loader.map_max_entries(name, n.saturating_mul(2));
            }
        }
        let mut bpf = loader.load(BPF_OBJECT).map_err(|e| Error::Load(Box::new(e)))?;

        // A pinned map from another build must have the same layout.
        let mut max_entries = BTreeMap::new();
        for (name, ty, ks, vs) in expected_maps() {
            let md = bpf.map(name).and_then(map_data).ok_or(Error::MissingMap { name })?;
            let info = md.info().map_err(map_err(name))?;
            let actual_ty = info.map_type().map_err(map_err(name))?;
            if actual_ty != ty || info.key_size() != ks || info.value_size() != vs {
                return Err(Error::IncompatiblePin {
                    name,
                    detail: format!(
                        "type {actual_ty:?} key {} value {}, expected {ty:?} key {ks} value {vs}",
                        info.key_size(),
                        info.value_size()
                    ),
                });
            }
            max_entries.insert(name, info.max_entries());
        }

        for (name, ty, ks, vs) in expected_flow_maps() {
            let md = bpf.map(name).and_then(map_data).ok_or(Error::MissingMap { name })?;
            let info = md.info().map_err(map_err(name))?;
            let actual_ty = info.map_type().map_err(map_err(name))?;
            if actual_ty != ty || info.key_size() != ks || info.value_size() != vs {
                return Err(Error::IncompatiblePin {
                    name,
                    detail: format!("type {actual_ty:?} key {} value {}, expected {ty:?} key {ks} value {vs}", info.key_size(), info.value_size()),
                });
            }
            max_entries.insert(name, info.max_entries());
        }

        for (prog, _, _) in HOOKS {
            let p: &mut SchedClassifier = bpf
                .program_mut(prog)
                .ok_or_else(|| Error::Program { name: prog, source: Box::new(aya::programs::ProgramError::NotLoaded) })?
                .try_into()
                .map_err(|e| Error::Program { name: prog, source: Box::new(e) })?;
            p.load().map_err(|e| Error::Program { name: prog, source: Box::new(e) })?;
        }

        let maps = KernelMaps {
            endpoints: HashMap::try_from(take(&mut bpf, names::ENDPOINTS)?).map_err(map_err(names::ENDPOINTS))?,
            policy: aya::maps::LpmTrie::try_from(take(&mut bpf, names::POLICY)?).map_err(map_err(names::POLICY))?,
            ipc4: aya::maps::LpmTrie::try_from(take(&mut bpf, names::IPCACHE_V4)?).map_err(map_err(names::IPCACHE_V4))?,
            ipc6: aya::maps::LpmTrie::try_from(take(&mut bpf, names::IPCACHE_V6)?).map_err(map_err(names::IPCACHE_V6))?,
            meta: aya::maps::Array::try_from(take(&mut bpf, names::META)?).map_err(map_err(names::META))?,
            own: HashMap::try_from(take(&mut bpf, names::OWN)?).map_err(map_err(names::OWN))?,
            grace: grace::GraceClock::spawn(sys::synchronize_rcu).map_err(|source| Error::Io {
                what: "starting the grace-period thread",
                path: pin_dir.to_path_buf(),
                source,
            })?,
        };
        let mut config: aya::maps::Array<MapData, abi::Config> =
            aya::maps::Array::try_from(take(&mut bpf, names::CONFIG)?).map_err(map_err(names::CONFIG))?;
        config
            .set(0, abi::Config { ct_budget: opts.ct_budget, pad: [0; 3] }, 0)
            .map_err(map_err(names::CONFIG))?;
        let mut ct_maps = ct::CtMaps {
            ct: HashMap::try_from(take(&mut bpf, names::CONNTRACK)?).map_err(map_err(names::CONNTRACK))?,
            count: HashMap::try_from(take(&mut bpf, names::CT_COUNT)?).map_err(map_err(names::CT_COUNT))?,
            released: HashMap::try_from(take(&mut bpf, names::CT_RELEASED)?).map_err(map_err(names::CT_RELEASED))?,
        };
        if let Some((paths, entries)) = old_ct {
            upgrade::migrate_old_conntrack(&mut ct_maps, &paths, entries)?;
        }
        let conntrack = Arc::new(Mutex::new(ct_maps));
        let ct_sweeper = match opts.ct_sweep_every {
            Some(every) => Some(ct::Sweeper::spawn(conntrack.clone(), every).map_err(|source| Error::Io {
                what: "starting the conntrack sweep thread",
                path: pin_dir.to_path_buf(),
                source,
            })?),
            None => None,
        };
        let frags = HashMap::try_from(take(&mut bpf, names::FRAGS)?).map_err(map_err(names::FRAGS))?;
        let counters = PerCpuArray::try_from(take(&mut bpf, names::COUNTERS)?).map_err(map_err(names::COUNTERS))?;
        let events = Some(RingBuf::try_from(take(&mut bpf, names::EVENTS)?).map_err(map_err(names::EVENTS))?);

        let mut dp = Self {
            pin_dir: pin_dir.to_path_buf(),
            bpf,
            maps,
            conntrack,
            _ct_sweeper: ct_sweeper,
            frags,
            counters,
            events,
            max_entries,
            engine: {
                let mut e = sync::Engine::default();
                e.set_policy_quota(opts.policy_quota.map(|q| q as usize));
                e
            },
            last_read_back: ReadBack::default(),
        };
        let meta = sync::MapOps::meta_get(&dp.maps)?;
        if meta.abi_version != 0 && meta.abi_version != abi::ABI_VERSION {
            return Err(Error::IncompatiblePin {
                name: names::META,
                detail: format!("pinned state has ABI version {}, this build {}", meta.abi_version, abi::ABI_VERSION),
            });
        }
        dp.read_back()?;
        if meta.abi_version == 0 {
            let m = abi::Meta { abi_version: abi::ABI_VERSION, rev_high_water: dp.last_read_back.rev_high_water, flags: 0, pad: 0 };
            sync::MapOps::meta_put(&mut dp.maps, &m)?;
        }
        Ok(dp)
    }

    /// The pin directory.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// What the last read-back found.
    pub fn last_read_back(&self) -> ReadBack {
        self.last_read_back
    }

    /// Reads the pinned maps into the actual state (done by `open`). Starts a
    /// new mark phase: endpoints not set again before [`Dataplane::sweep`] are removed.
    pub fn read_back(&mut self) -> Result<ReadBack> {
        let rb = self.engine.read_back(&mut self.maps)?;
        self.last_read_back = rb;
        tracing::info!(endpoints = rb.endpoints, policy_entries = rb.policy_entries, orphans = rb.orphan_policy_entries, ipcache = rb.ipcache_entries, "dataplane read back");
        Ok(rb)
    }

    /// Removes what Porin owns but no longer wants: endpoints not set since the
    /// last read-back and policy entries of no endpoint.
    pub fn sweep(&mut self) -> Result<SyncStats> {
        let before: Vec<u32> = self.engine.endpoint_ifindexes().iter().filter_map(|i| self.engine.endpoint(*i)).map(|v| v.endpoint_id).collect();
        let r = self.engine.sweep(&mut self.maps)?;
        let after: std::collections::BTreeSet<u32> =
            self.engine.endpoint_ifindexes().iter().filter_map(|i| self.engine.endpoint(*i)).map(|v| v.endpoint_id).collect();
        for id in before.into_iter().filter(|id| !after.contains(id)) {
            self.purge_conntrack(id)?;
        }
        Ok(r)
    }

    fn ct(&self) -> std::sync::MutexGuard<'_, ct::CtMaps> {
        self.conntrack.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes the conntrack entries and budget counters of an endpoint id
    /// no endpoint uses (after its removal and a grace period).
    fn purge_conntrack(&mut self, endpoint_id: u32) -> Result<ct::CtSweep> {
        if self.engine.endpoint_ifindexes().iter().any(|i| self.engine.endpoint(*i).is_some_and(|v| v.endpoint_id == endpoint_id)) {
            return Ok(ct::CtSweep::default());
        }
        self.ct().purge_endpoint(endpoint_id)
    }

    /// Cuts established connections (incident response): deletes every conntrack entry of an endpoint in
    /// `endpoint_ids`, and every entry with an address (either end) inside one of `nets`. Their next packet
    /// finds no entry and is decided by the policy like a new connection (dropped when denied; a non-SYN TCP
    /// packet is never let through for lack of an entry).
    pub fn cut_conntrack(&mut self, endpoint_ids: &std::collections::BTreeSet<u32>, nets: &[ipnet::IpNet]) -> Result<ct::CtSweep> {
        let hit = |k: &CtKey| {
            endpoint_ids.contains(&k.endpoint_id)
                || (!nets.is_empty()
                    && [&k.src, &k.dst].into_iter().any(|a| {
                        matches!(abi::event::addr(k.family, a), Ok(Some(ip)) if nets.iter().any(|n| n.contains(&ip)))
                    }))
        };
        self.ct().delete_where(|k, _| hit(k))
    }

    /// Deletes expired conntrack entries now (the background sweep does the
    /// same every [`DataplaneOptions::ct_sweep_every`]).
    pub fn sweep_conntrack(&mut self) -> Result<ct::CtSweep> {
        self.sweep_conntrack_at(ct::ktime_now_ns())
    }

    /// [`Dataplane::sweep_conntrack`] as if the monotonic clock read `now_ns`
    /// (tests and diagnostics: entries idle at `now_ns` are deleted).
    pub fn sweep_conntrack_at(&mut self, now_ns: u64) -> Result<ct::CtSweep> {
        self.ct().sweep_expired(now_ns)
    }

    /// Conntrack entries the program counts against `endpoint_id`'s budget.
    pub fn conntrack_usage(&self, endpoint_id: u32) -> Result<i64> {
        self.ct().usage(endpoint_id)
    }

    /// Enforces `policy` on the endpoint behind host-veth `ifindex` (node netns).
    /// An endpoint id replaced on the interface loses its conntrack entries.
    pub fn set_endpoint(&mut self, ifindex: u32, policy: EndpointPolicy) -> Result<SyncStats> {
        let old = self.engine.endpoint(ifindex).map(|v| v.endpoint_id).filter(|id| *id != policy.endpoint_id);
        let r = self.engine.set_endpoint(&mut self.maps, ifindex, &policy);
        if let Some(old) = old
            && self.engine.endpoint(ifindex).is_some_and(|v| v.endpoint_id != old)
        {
            self.purge_conntrack(old)?;
        }
        r
    }

    /// Removes the endpoint entry (its traffic then drops) and its policy.
    /// Its conntrack entries and budget counters go too (after the grace
    /// period `remove_endpoint` already waits for).
    pub fn remove_endpoint(&mut self, ifindex: u32) -> Result<SyncStats> {
        let id = self.engine.endpoint(ifindex).map(|v| v.endpoint_id);
        let r = self.engine.remove_endpoint(&mut self.maps, ifindex)?;
        if let Some(id) = id {
            self.purge_conntrack(id)?;
        }
        Ok(r)
    }

    /// Makes the ipcache equal `entries` (diff).
    pub fn set_ipcache(&mut self, entries: Vec<(ipnet::IpNet, u32)>) -> Result<SyncStats> {
        self.engine.set_ipcache(&mut self.maps, &entries)
    }

    /// The desired-vs-actual engine (read-only view).
    pub fn engine(&self) -> &sync::Engine {
        &self.engine
    }

    fn links_dir(&self) -> PathBuf {
        self.pin_dir.join("links")
    }

    /// Attaches both programs (TCX, first in the chain) to `ifname` in `netns`
    /// (`None`: the current namespace) from a dedicated thread, and pins the
    /// links so enforcement outlives this process. If links are already pinned
    /// for this interface, they are atomically switched to this build's
    /// programs. Returns the interface index (the endpoints-map key).
    pub fn attach(&mut self, netns: Option<&Path>, ifname: &str) -> Result<u32> {
        let links_dir = self.links_dir();
        let bpf = &mut self.bpf;
        netns::in_netns(netns, move || -> Result<u32> {
            let ifindex =
                sys::ifindex(ifname).map_err(|source| Error::Interface { ifname: ifname.to_string(), source })?;
            for (prog, hook, ty) in HOOKS {
                let path = links_dir.join(link_pin_name(ifname, ifindex, hook));
                attach_one(bpf, prog, hook, ty, ifname, &path)?;
            }
            Ok(ifindex)
        })?
    }

    /// Detaches Porin from `ifname` by removing its pinned links (any ifindex
    /// recorded under that name). Works after the interface is gone.
    pub fn detach(&mut self, _netns: Option<&Path>, ifname: &str) -> Result<usize> {
        let mut n = 0;
        for a in self.attachments()? {
            if a.ifname == ifname {
                detach_pinned(&a.pin)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Attachments recorded by pinned links (bpftool 7.1 does not list TCX).
    pub fn attachments(&self) -> Result<Vec<Attachment>> {
        let dir = self.links_dir();
        let rd = std::fs::read_dir(&dir).map_err(|source| Error::Io { what: "listing links", path: dir.clone(), source })?;
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let Some((ifname, ifindex, hook)) = parse_link_pin_name(&name) else { continue };
            out.push(Attachment { ifname, ifindex, hook, pin: ent.path() });
        }
        out.sort();
        Ok(out)
    }

    /// Removes pinned links whose interface no longer exists (by index and
    /// name) in `netns`. Returns how many were removed.
    pub fn sweep_links(&mut self, netns: Option<&Path>) -> Result<usize> {
        let atts = self.attachments()?;
        let stale: Vec<Attachment> = netns::in_netns(netns, || {
            atts.into_iter().filter(|a| sys::ifindex(&a.ifname).ok() != Some(a.ifindex)).collect()
        })?;
        for a in &stale {
            detach_pinned(&a.pin)?;
        }
        Ok(stale.len())
    }

    /// Counters by reason, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let mut c = Counters::default();
        for r in Reason::ALL {
            let v = self.counters.get(&(*r as u32), 0).map_err(map_err(names::COUNTERS))?;
            c.by_reason.insert(*r, v.iter().sum());
        }
        Ok(c)
    }

    /// Entries vs capacity of every keyed map. The hash maps are walked (O(entries)); the LPM tries (policy,
    /// ipcache), which only this process writes, are counted from the mirror: walking a trie with
    /// `get_next_key` costs O(entries) per key, O(entries²) in all — at 10k rules hundreds of ms on the
    /// thread that also programs policy changes.
    pub fn occupancy(&self) -> Result<Vec<MapOccupancy>> {
        let mx = |n| self.max_entries.get(n).copied().unwrap_or(0);
        let count = |it: &mut dyn Iterator<Item = bool>| it.count();
        let v4 = self.engine.ipcache().keys().filter(|n| matches!(n, ipnet::IpNet::V4(_))).count();
        let v6 = self.engine.ipcache().len() - v4;
        Ok(vec![
            MapOccupancy { name: names::ENDPOINTS, entries: count(&mut self.maps.endpoints.keys().map(|r| r.is_ok())), max_entries: mx(names::ENDPOINTS) },
            MapOccupancy { name: names::POLICY, entries: self.engine.policy_len(), max_entries: mx(names::POLICY) },
            MapOccupancy { name: names::IPCACHE_V4, entries: v4, max_entries: mx(names::IPCACHE_V4) },
            MapOccupancy { name: names::IPCACHE_V6, entries: v6, max_entries: mx(names::IPCACHE_V6) },
            MapOccupancy { name: names::CONNTRACK, entries: count(&mut self.ct().ct.keys().map(|r| r.is_ok())), max_entries: mx(names::CONNTRACK) },
            MapOccupancy { name: names::FRAGS, entries: count(&mut self.frags.keys().map(|r| r.is_ok())), max_entries: mx(names::FRAGS) },
        ])
    }

    /// All conntrack entries (diagnostics; O(entries)).
    pub fn conntrack_entries(&self) -> Result<Vec<(CtKey, CtValue)>> {
        self.ct().ct.iter().map(|r| r.map_err(map_err(names::CONNTRACK))).collect()
    }

    /// Takes the event reader (a ring buffer has one consumer).
    pub fn events(&mut self) -> Result<EventReader> {
        let rb = self.events.take().ok_or(Error::EventsTaken)?;
        let denied = match (self.bpf.take_map(abi::flow_map_names::EVCTL), self.bpf.take_map(abi::flow_map_names::DENIED_AGG)) {
            (Some(ctl), Some(agg)) => Some(events::DeniedAggregates::from_maps(ctl, agg)?),
            _ => None,
        };
        Ok(EventReader::new(rb, denied).with_conntrack(self.conntrack.clone()))
    }

    /// Runs one program on `frame` (an Ethernet frame) with `BPF_PROG_TEST_RUN`,
    /// as if it arrived on `ifindex` (must exist in the caller's netns; 1 = lo).
    /// For tests, diagnostics and micro-benchmarks.
    pub fn test_run(&self, dir: Direction, frame: &[u8], ifindex: u32, repeat: u32) -> Result<TestRunOutcome> {
        self.test_run_from(dir, frame, ifindex, 0, repeat)
    }

    /// [`Dataplane::test_run`] with `__sk_buff.ingress_ifindex` set: the
    /// interface the packet entered the node through (0: sent by the node).
    pub fn test_run_from(
        &self,
        dir: Direction,
        frame: &[u8],
        ifindex: u32,
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<TestRunOutcome> {
        let prog = match dir {
            Direction::Egress => prog_names::FROM_WORKLOAD,
            Direction::Ingress => prog_names::TO_WORKLOAD,
        };
        let p: &SchedClassifier = self
            .bpf
            .program(prog)
            .ok_or_else(|| Error::Program { name: prog, source: Box::new(aya::programs::ProgramError::NotLoaded) })?
            .try_into()
            .map_err(|e| Error::Program { name: prog, source: Box::new(e) })?;
        let ctx = skb_ctx(ifindex, ingress_ifindex);
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat: repeat.max(1),
            ..Default::default()
        };
        let r = p.test_run(opts).map_err(|e| Error::TestRun { prog, source: Box::new(e) })?;
        Ok(TestRunOutcome { retval: r.return_value as i32, ns_per_run: r.duration.as_nanos() as u64 })
    }
}

/// Detaches the link pinned at `pin` synchronously, then removes the pin.
fn detach_pinned(pin: &Path) -> Result<()> {
    use std::os::fd::AsFd;
    let io = |what| move |source| Error::Io { what, path: pin.to_path_buf(), source };
    let fd = sys::bpf_obj_get(pin).map_err(io("opening pinned link"))?;
    match sys::bpf_link_detach(fd.as_fd()) {
        // ENOLINK: already defunct (interface gone).
        Err(e) if e.raw_os_error() != Some(libc::ENOLINK) => return Err(io("detaching link")(e)),
        _ => {}
    }
    std::fs::remove_file(pin).map_err(io("unpinning link"))
}

/// Pin file name of a link: `{ifname}_{ifindex}_{hook}`. bpffs refuses '.'
/// in names (reserved), so '%' and '.' in interface names are %-escaped.
fn link_pin_name(ifname: &str, ifindex: u32, hook: &str) -> String {
    let esc = ifname.replace('%', "%25").replace('.', "%2e");
    format!("{esc}_{ifindex}_{hook}")
}

fn parse_link_pin_name(name: &str) -> Option<(String, u32, String)> {
    let mut parts = name.rsplitn(3, '_');
    let (hook, idx, esc) = (parts.next()?, parts.next()?, parts.next()?);
    if hook != "ingress" && hook != "egress" {
        return None;
    }
    let ifindex = idx.parse().ok()?;
    Some((esc.replace("%2e", ".").replace("%25", "%"), ifindex, hook.to_string()))
}

fn attach_one(
    bpf: &mut Ebpf,
    prog: &'static str,
    hook: &'static str,
    ty: TcAttachType,
    ifname: &str,
    path: &Path,
) -> Result<()> {
    let link_err = |detail: String| Error::Link { ifname: ifname.to_string(), hook, path: path.to_path_buf(), detail };
    let p: &mut SchedClassifier = bpf
        .program_mut(prog)
        .ok_or_else(|| Error::Program { name: prog, source: Box::new(aya::programs::ProgramError::NotLoaded) })?
        .try_into()
        .map_err(|e| Error::Program { name: prog, source: Box::new(e) })?;
    let prog_err = |e| Error::Program { name: prog, source: Box::new(e) };

    match PinnedLink::from_pin(path) {
        Ok(pinned) => {
            let fd: FdLink = pinned.into();
            let link = SchedClassifierLink::try_from(fd).map_err(|e| link_err(format!("not a TCX link: {e}")))?;
            match p.attach_to_link(link) {
                Ok(id) => {
                    // The pin keeps the link; our handle can go.
                    drop(p.take_link(id).map_err(prog_err)?);
                    return Ok(());
                }
                Err(e) => {
                    // Defunct (interface re-created) or otherwise unusable:
                    // attach a fresh link FIRST, then replace the pin, so there
                    // is no moment without enforcement.
                    tracing::warn!(ifname, hook, error = %e, "pinned link unusable, replacing it");
                }
            }
            let id = p.attach_with_options(ifname, ty, TcAttachOptions::TcxOrder(LinkOrder::first())).map_err(prog_err)?;
            let fd: FdLink = p.take_link(id).map_err(prog_err)?.try_into().map_err(|e: LinkError| link_err(e.to_string()))?;
            let mut tmp = path.as_os_str().to_owned();
            tmp.push("-new");
            let tmp = PathBuf::from(tmp);
            let _ = std::fs::remove_file(&tmp);
            drop(fd.pin(&tmp).map_err(|e| link_err(format!("pin: {e}")))?);
            std::fs::rename(&tmp, path).map_err(|e| link_err(format!("rename pin: {e}")))?;
            Ok(())
        }
        Err(LinkError::SyscallError(s)) if s.io_error.kind() == std::io::ErrorKind::NotFound => {
            let id = p.attach_with_options(ifname, ty, TcAttachOptions::TcxOrder(LinkOrder::first())).map_err(prog_err)?;
            let fd: FdLink = p.take_link(id).map_err(prog_err)?.try_into().map_err(|e: LinkError| link_err(e.to_string()))?;
            drop(fd.pin(path).map_err(|e| link_err(format!("pin: {e}")))?);
            Ok(())
        }
        Err(e) => Err(link_err(format!("open pinned link: {e}: {:?}", std::error::Error::source(&e)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_pin_names_roundtrip_without_dots() {
        for name in ["porinha", "eth0.100", "a_b", "x%2e.y", "lxc_1.2"] {
            let pin = link_pin_name(name, 42, "egress");
            assert!(!pin.contains('.'), "{pin}");
            assert_eq!(parse_link_pin_name(&pin), Some((name.to_string(), 42, "egress".to_string())));
        }
        assert_eq!(parse_link_pin_name("porinha_3_ingress-new"), None);
    }
}
