//! Porin's policy engine: Kubernetes NetworkPolicy and tiered (Calico-style) policy semantics, answered
//! exactly and explained.
//!
//! Owns: policy semantics (the IR, verdicts with traces, matrices, diffs). Never: I/O, kernel encodings (that is `calc`).
//!
//! Pure: values in, values out. [`Cluster::build`] normalises validated resources into the internal
//! representation ([`ir`]); [`Cluster::verdict`] is the reference evaluator with a full trace ([`eval`]);
//! [`Cluster::matrix`] computes reachability over all pods fast ([`matrix`]); [`diff::diff`] compares two
//! policy sets.

#![forbid(unsafe_code)]

pub mod diff;
pub mod eval;
pub mod guard;
pub mod index;
pub mod ir;
pub mod matrix;
pub mod preview;
pub mod recommend;
pub mod rulematch;
pub mod shared;

pub use eval::{Direction, Evaluation, Hit, HitAction, Packet, Peer, SideVerdict, Variant, Verdict};
pub use ir::{Cluster, Endpoint, PolicyId, PolicyKind};
pub use matrix::{Matrix, MatrixJson};
pub use shared::Shared;

/// Errors building the engine's view of a resource set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A resource that should have been rejected by validation.
    #[error("invalid resource: {0}")]
    Invalid(String),
    #[error("policy {policy} is in tier {tier:?}, which does not exist")]
    UnknownTier { policy: String, tier: String },
}
