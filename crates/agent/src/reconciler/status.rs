//! What `porin status` shows about the dataplane: published by the reconciler thread.

use std::collections::BTreeMap;

use serde::Serialize;

/// What `porin status` shows about the dataplane.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneStatus {
    /// `ebpf`, `none` or `ebpf (idle: no local workload interface)`.
    pub mode: String,
    pub pin_dir: Option<String>,
    /// The policy revision the kernel enforces (0: none yet).
    pub programmed_revision: u64,
    /// The latest policy revision the dataplane was asked to program.
    pub requested_revision: u64,
    /// Wall time of the last programming (compile + kernel writes).
    pub last_programming_millis: f64,
    pub last_compile_millis: f64,
    pub last_programmed_at: Option<String>,
    pub programmings: u64,
    /// Kernel writes of the last programming: entries inserted/updated/deleted, endpoint flips.
    pub last_writes: u64,
    pub endpoints: Vec<EndpointStatus>,
    pub identities: usize,
    pub ipcache_entries: usize,
    pub policy_entries: usize,
    pub occupancy: Vec<MapStatus>,
    /// Packets dropped, by reason (`drop_*` counters).
    pub drops: BTreeMap<String, u64>,
    /// Every counter, by reason.
    pub counters: BTreeMap<String, u64>,
    /// Current problems (empty when everything is programmed).
    pub errors: Vec<String>,
    /// What the agent found pinned when it started.
    pub read_back: Option<ReadBackStatus>,
    /// Dataplane operations that failed outside a reported endpoint error (an endpoint entry that could not
    /// be removed, a sweep): each is logged.
    pub cleanup_failures: u64,
    /// The last acknowledged write's way to the kernel (see [`crate::latency`]).
    pub last_latency: Option<crate::latency::RevisionLatency>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub pod: String,
    pub interface: String,
    pub ifindex: Option<u32>,
    pub endpoint_id: Option<u32>,
    pub ingress_entries: usize,
    pub egress_entries: usize,
    /// `programmed`; `locked-down` (denies everything); `denied` (binding refused: attached, drops; see
    /// `error`); `unbound` (its WorkloadEndpoint is gone: attached, drops until the interface is gone); `error`.
    pub state: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapStatus {
    pub map: String,
    pub entries: usize,
    pub max_entries: u32,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadBackStatus {
    pub endpoints: usize,
    pub policy_entries: usize,
    pub ipcache_entries: usize,
}

