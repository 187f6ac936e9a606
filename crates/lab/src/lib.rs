//! # porin-lab: real workloads on one machine
//!
//! Owns: the network namespaces, veths, pod servers and probes of a lab, its agents and etcd as processes, and
//! its one state file. Never: the root namespace's routes, addresses, firewall or interfaces (every name it
//! creates starts with `porin`); never links the agent or an HTTP client (it reaches the agents' API through
//! [`cluster::AgentApi`]).
//!
//! Builds a Calico-like routed cluster out of network namespaces, runs servers in every pod and
//! measures which pod can reach which:
//!
//! ```text
//!  pod netns porin-<lab>-p<k>          node netns porin-<lab>-n<i>            underlay porin-<lab>-u
//!  porin-eth0 10.244.i.x/32  <-veth->  porinp<k> (/32 route, static neigh) .. porinu0 <-veth-> porinn<i> -- porinbr0
//!  default via 169.254.1.1             forwarding on; routes to other nodes' pod CIDRs via their underlay IP
//! ```
//!
//! * [`LabSpec`] / [`PodSpec`] describe the lab; [`spec::plan`] turns that into names and
//!   addresses without touching the kernel.
//! * [`up`] builds it (everything through `ip -n <lab netns>`; nothing is ever created or changed
//!   in the root namespace), starts the pod servers ([`ServerMode`]) and records a state file
//!   (default `/run/porin/lab/<lab>.json`).
//! * [`Lab`] (from [`up`] or [`Lab::open`]) exposes, per pod, the node index, node netns path,
//!   host-side ifname and ifindex: where a dataplane attaches.
//! * [`HostSpec`]: external hosts (`porin-<lab>-h<k>`), "internet" addresses outside every pod CIDR reached
//!   through a node; [`probe_addr`] probes them from pods (or pods from them).
//! * [`probe()`] / [`probe_one`] measure reachability on TCP, UDP and SCTP (the kernel has no
//!   SCTP: servers and probes speak a minimal INIT / INIT-ACK over raw sockets, see [`sctp`]).
//! * [`exec`], [`status`], [`down`] and [`cleanup_stale`] manage a running lab.
//! * [`cluster`]: the lab's control plane, one Porin agent per node (and etcd for several nodes), supervised
//!   as detached processes, recorded in the same state file; the agents' API through the caller's
//!   [`cluster::AgentApi`].
//! * [`serve_main`] / [`run_servers`] are the body of the detached server process
//!   (`porin lab-serve ...`); this crate also ships it as the `porin-lab-serve` binary.
//!
//! Everything here blocks (it runs `ip`, spawns threads, waits on sockets): from async code call it
//! through `tokio::task::spawn_blocking`. No function forks into a namespace: namespaces are joined
//! only by dedicated, short-lived OS threads.
//!
//! Tests that need the kernel are in `tests/` and need root (set `PORIN_SKIP_KERNEL_TESTS=1` to
//! skip them elsewhere); the unit tests in the modules are pure.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod error;
pub mod lab;
pub mod netns;
pub mod probe;
pub mod sctp;
pub mod server;
pub mod spec;
pub mod state;

pub use error::{LabError, Result};
pub use lab::{
    DownReport, Lab, LabGuard, LabOptions, LabStatus, ServerMode, cleanup_stale, down, exec, exec_command, list, status, up,
};
pub use probe::{
    Family, ObservedMatrices, ObservedMatrix, ProbeOptions, ProbeSpec, probe, probe_addr, probe_one, probe_pairs, probe_with,
};
pub use server::{PodServe, ServeConfig, run_servers, serve_main, spawn_server_threads};
pub use spec::{HostSpec, LabSpec, PodSpec, Proto};
pub use state::{DEFAULT_STATE_DIR, HostInfo, NodeInfo, PodInfo};
