//! Per-revision timings of a policy change on its way to the kernel, measured from the API's acknowledgement.
//!
//! The API marks the instant a resource write committed ([`acked`], just before it answers); the engine marks
//! when it saw the revision and when its model was built, the reconciler when the compile finished and when the
//! kernel maps were written. When a revision is programmed, every acknowledged write up to that revision is
//! reported once, as one `revision latency` log line with milliseconds since its ack
//! (`ack_to_seen_ms`, `ack_to_built_ms`, `ack_to_compiled_ms`, `ack_to_programmed_ms`), and kept as the last
//! [`RevisionLatency`] for `porin status`. Process-local: an ack and its programming are matched only when the
//! same agent serves the API and programs the kernel.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Acks not yet matched to a programmed revision, oldest first (bounded: an agent without a dataplane never
/// matches them).
static ACKS: Mutex<VecDeque<(u64, Instant)>> = Mutex::new(VecDeque::new());
const MAX_PENDING: usize = 256;
/// An ack older than this is dropped unmatched (its revision was coalesced away or never programmed here).
const MAX_AGE: Duration = Duration::from_secs(120);

/// A resource write committed at store revision `revision` and is being acknowledged now.
pub fn acked(revision: u64) {
    let mut q = ACKS.lock().unwrap_or_else(|e| e.into_inner());
    if q.len() >= MAX_PENDING {
        q.pop_front();
    }
    q.push_back((revision, Instant::now()));
}

/// When each stage of one programmed revision finished.
#[derive(Debug, Clone, Copy)]
pub struct Stages {
    pub revision: u64,
    /// The engine received the change (first event of its batch).
    pub seen: Option<Instant>,
    /// The engine's model of the revision was ready.
    pub built: Option<Instant>,
    /// The compiler's output was ready.
    pub compiled: Option<Instant>,
    /// The kernel maps were written.
    pub programmed: Instant,
}

/// Milliseconds from one write's ack to each stage (negative: the stage happened before the ack returned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionLatency {
    pub acked_revision: u64,
    pub programmed_revision: u64,
    pub ack_to_seen_ms: Option<f64>,
    pub ack_to_built_ms: Option<f64>,
    pub ack_to_compiled_ms: Option<f64>,
    pub ack_to_programmed_ms: f64,
}

fn ms_since(ack: Instant, t: Instant) -> f64 {
    match t.checked_duration_since(ack) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(ack.duration_since(t).as_secs_f64() * 1e3),
    }
}

/// Revision `s.revision` is in the kernel: report every ack up to it (logged) and return the reports.
pub fn programmed(s: Stages) -> Vec<RevisionLatency> {
    let mut q = ACKS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    while let Some(&(rev, ack)) = q.front() {
        if rev > s.revision {
            break;
        }
        q.pop_front();
        if s.programmed.saturating_duration_since(ack) > MAX_AGE {
            continue;
        }
        let l = RevisionLatency {
            acked_revision: rev,
            programmed_revision: s.revision,
            ack_to_seen_ms: s.seen.map(|t| ms_since(ack, t)),
            ack_to_built_ms: s.built.map(|t| ms_since(ack, t)),
            ack_to_compiled_ms: s.compiled.map(|t| ms_since(ack, t)),
            ack_to_programmed_ms: ms_since(ack, s.programmed),
        };
        tracing::info!(
            revision = rev,
            programmed_revision = s.revision,
            ack_to_seen_ms = l.ack_to_seen_ms.unwrap_or(f64::NAN),
            ack_to_built_ms = l.ack_to_built_ms.unwrap_or(f64::NAN),
            ack_to_compiled_ms = l.ack_to_compiled_ms.unwrap_or(f64::NAN),
            ack_to_programmed_ms = l.ack_to_programmed_ms,
            "revision latency"
        );
        out.push(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_reported_once_by_the_first_revision_that_covers_them() {
        // Revisions far from any other test's (the queue is process-wide).
        acked(1_000_001);
        acked(1_000_003);
        let t = Instant::now();
        let stages = |revision| Stages { revision, seen: Some(t), built: Some(t), compiled: Some(t), programmed: Instant::now() };
        // Other tests of this process ack small revisions: only ours are looked at.
        let ours = |v: Vec<RevisionLatency>| v.into_iter().filter(|l| l.acked_revision > 1_000_000).collect::<Vec<_>>();
        let a = ours(programmed(stages(1_000_002)));
        assert_eq!(a.iter().map(|l| l.acked_revision).collect::<Vec<_>>(), vec![1_000_001]);
        assert!(a[0].ack_to_programmed_ms >= 0.0 && a[0].ack_to_seen_ms.is_some());
        let b = ours(programmed(stages(1_000_003)));
        assert_eq!(b.iter().map(|l| l.acked_revision).collect::<Vec<_>>(), vec![1_000_003]);
        assert!(ours(programmed(stages(1_000_003))).is_empty(), "reported once");
    }
}
