//! `porin-agent`: the Porin node agent as a library. [`Agent::run`] with an [`AgentConfig`] is the one entry
//! point; the `porin agent` / `porin serve` subcommands only parse flags into the config.
//!
//! What it owns, by module:
//! * [`engine`]: the engine task. It alone owns the resource cache (a reflector over the store) and the
//!   computed policy model, and publishes both as snapshots over `tokio::sync::watch`.
//! * [`reconciler`]: the node reconciler. It alone owns the eBPF dataplane (maps, links, pins) of this node
//!   and programs the engine's policy snapshots into it.
//! * [`flows`]: the flow service (ring-buffer reader, aggregation pipeline, flow store).
//! * [`api`]: the API server (REST, authentication [`auth`], tenant [`scope`], [`audit`], tokens, [`tls`]).
//!   It reads the engine's snapshot and writes to the store; it never holds policy state of its own.
//! * [`alerts`]: the bounded alert log (threat-feed hits, honeypod contacts, quarantine and block actions).
//! * [`threatfeeds`]: GlobalThreatFeed pulls and pushes into `threatfeed.<name>` GlobalNetworkSets.
//! * [`registry`]: storage keys of every kind and the decoding of stored objects (used by engine and API).
//!
//! What it must never do: parse command lines or print for humans (that is the `porin` CLI), touch
//! network namespaces other than the one it was configured to join, or enforce anything outside the
//! dataplane crate's programs. Errors in the dataplane path fail closed (the endpoint denies).

pub mod alerts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod capture;
pub mod engine;
mod etcd_tls;
pub mod flows;
pub mod httpc;
pub mod latency;
pub mod reconciler;
pub mod registry;
pub mod recommender;
pub mod reports;
mod run;
pub mod scope;
mod sha256;
pub mod timefmt;
pub mod threatfeeds;
pub mod tls;

pub use run::{set_announce_as_log, Agent, AgentConfig, AgentError, DEFAULT_DATA_DIR, DEFAULT_SOCKET, DataplaneKind, Datastore, FlowAggregation, Mode};

/// `a: b: c` for an error and its sources (the datastore's errors say where in their sources).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
