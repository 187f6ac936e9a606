//! What the API reads from the agent's other parts, as small traits: the API depends on these, not on the
//! reconciler's or the flow service's concrete types (tests hand it fakes).

use std::sync::Arc;

use porin_flow::{FlowRecord, Query};
use serde_json::Value;
use tokio::sync::watch;

use crate::flows::{FlowService, LiveFeed};
use crate::reconciler::DataplaneStatus;

/// The node reconciler's state, for `porin status`.
pub trait ReconcilerStatus: Send + Sync {
    /// The `dataplane` section of `porin status`.
    fn status_json(&self) -> Value;
    /// True when some endpoint could not be programmed (those endpoints deny): health is degraded.
    fn has_errors(&self) -> bool;
}

/// What the reconciler publishes on its status channel.
impl ReconcilerStatus for watch::Receiver<Arc<DataplaneStatus>> {
    fn status_json(&self) -> Value {
        let s = self.borrow().clone();
        serde_json::to_value(&*s).unwrap_or_default()
    }
    fn has_errors(&self) -> bool {
        !self.borrow().errors.is_empty()
    }
}

/// Flow visibility: stored records, the live feed, metrics and the pipeline's status.
pub trait FlowSource: Send + Sync {
    /// Stored records matching `q`.
    fn query(&self, q: &Query) -> Result<Vec<FlowRecord>, porin_flow::Error>;
    /// Stored records matching `q`, and a receiver of every batch stored after them.
    fn follow(&self, q: &Query) -> Result<(Vec<FlowRecord>, LiveFeed), porin_flow::Error>;
    /// A live follower lost `n` batches (it was too slow).
    fn follow_lagged(&self, n: u64);
    /// OpenMetrics text.
    fn encode_metrics(&self) -> String;
    /// The `flows` section of `porin status`.
    fn status(&self) -> Value;
    /// Per-rule hit counters kept across restarts (`porin review unused`); None where none are kept.
    fn rule_hits(&self) -> Option<crate::flows::rulehits::RuleHitTable> {
        None
    }
}

impl FlowSource for FlowService {
    fn query(&self, q: &Query) -> Result<Vec<FlowRecord>, porin_flow::Error> {
        FlowService::query(self, q)
    }
    fn follow(&self, q: &Query) -> Result<(Vec<FlowRecord>, LiveFeed), porin_flow::Error> {
        FlowService::follow(self, q)
    }
    fn follow_lagged(&self, n: u64) {
        self.follow_lagged.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn encode_metrics(&self) -> String {
        FlowService::encode_metrics(self)
    }
    fn status(&self) -> Value {
        FlowService::status(self)
    }
    fn rule_hits(&self) -> Option<crate::flows::rulehits::RuleHitTable> {
        Some(FlowService::rule_hits(self))
    }
}
