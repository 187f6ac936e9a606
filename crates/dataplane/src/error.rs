//! Errors of the dataplane. Each says which map / interface / endpoint and what.

use std::io;
use std::path::PathBuf;

use crate::entries::{AddrError, LocatedEntryError};

/// A failed map operation (the low-level seam error).
#[derive(Debug, thiserror::Error)]
#[error("{op} on map {map}: {source}")]
pub struct MapOpError {
    pub map: &'static str,
    pub op: &'static str,
    #[source]
    pub source: io::Error,
}

impl MapOpError {
    pub fn new(map: &'static str, op: &'static str, source: io::Error) -> Self {
        Self { map, op, source }
    }

    /// The map (or the kernel's memory) is full: E2BIG, ENOSPC or ENOMEM.
    pub fn is_full(&self) -> bool {
        matches!(self.source.raw_os_error(), Some(libc::E2BIG | libc::ENOSPC | libc::ENOMEM))
    }

    /// The key did not exist.
    pub fn is_not_found(&self) -> bool {
        self.source.raw_os_error() == Some(libc::ENOENT)
    }
}

/// Everything that can go wrong in the dataplane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "map {map} is full while writing the policy of endpoint {endpoint_id} (ifindex {ifindex}); \
         the endpoint is locked down and denies all traffic until a policy fits"
    )]
    PolicyMapFull {
        map: &'static str,
        endpoint_id: u32,
        ifindex: u32,
        #[source]
        source: MapOpError,
    },
    #[error("conntrack accounting: {0}")]
    CtMap(#[source] MapOpError),
    #[error(
        "the policy of endpoint {endpoint_id} (ifindex {ifindex}) needs {entries} entries of map {map}, more than \
         its quota of {quota}; the endpoint is locked down and denies all traffic until a policy fits"
    )]
    PolicyOverQuota {
        map: &'static str,
        endpoint_id: u32,
        ifindex: u32,
        entries: usize,
        quota: usize,
    },
    #[error(
        "map {map} is full while inserting {prefix}; every endpoint is locked down (denies all) \
         until the ipcache fits"
    )]
    IpcacheFull {
        map: &'static str,
        prefix: ipnet::IpNet,
        #[source]
        source: MapOpError,
    },
    #[error("endpoint {endpoint_id} (ifindex {ifindex}): {source}")]
    EndpointMap {
        endpoint_id: u32,
        ifindex: u32,
        #[source]
        source: MapOpError,
    },
    #[error("ipcache entry {prefix}: {source}")]
    IpcacheMap {
        prefix: ipnet::IpNet,
        #[source]
        source: MapOpError,
    },
    #[error(transparent)]
    MapOp(#[from] MapOpError),
    #[error("endpoint {endpoint_id} (ifindex {ifindex}): invalid {source}")]
    InvalidEntry {
        endpoint_id: u32,
        ifindex: u32,
        #[source]
        source: LocatedEntryError,
    },
    #[error("endpoint {endpoint_id} (ifindex {ifindex}): invalid own addresses: {source}")]
    InvalidAddrs {
        endpoint_id: u32,
        ifindex: u32,
        #[source]
        source: AddrError,
    },
    #[error("endpoint id {endpoint_id} (ifindex {ifindex}) is out of range (max {max})", max = crate::abi::MAX_ENDPOINT_ID)]
    EndpointIdRange { endpoint_id: u32, ifindex: u32 },
    #[error("endpoint id {endpoint_id} is already used by ifindex {other_ifindex} (wanted for ifindex {ifindex})")]
    EndpointIdInUse { endpoint_id: u32, ifindex: u32, other_ifindex: u32 },
    #[error("ipcache: prefix {prefix} given twice, with identities {first} and {second}")]
    IpcacheConflict { prefix: ipnet::IpNet, first: u32, second: u32 },
    #[error("pin directory {path} is not on a bpf filesystem (mount it: mount -t bpf bpf {path})")]
    NotBpffs { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("loading the BPF object: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("BPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("BPF map {name} is missing from the object")]
    MissingMap { name: &'static str },
    #[error("pinned map {name} is incompatible with this build: {detail} (a layout change needs a new map version)")]
    IncompatiblePin { name: &'static str, detail: String },
    #[error("network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("interface {ifname}: {source}")]
    Interface {
        ifname: String,
        #[source]
        source: io::Error,
    },
    #[error("{hook} link of interface {ifname} at {path}: {detail}")]
    Link { ifname: String, hook: &'static str, path: PathBuf, detail: String },
    #[error("the event reader was already taken")]
    EventsTaken,
    #[error("test run of {prog}: {source}")]
    TestRun {
        prog: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
