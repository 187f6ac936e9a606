//! Alerts: security events a person must see, as opposed to flows (which are every connection).
//!
//! Sources raise an [`Alert`] through [`AlertLog::raise`]:
//! * a flow that touches an address of a threat feed's network set (allowed or denied): kind `threat_feed`;
//! * a connection attempt to a honeypod: kind `honeypod`;
//! * the incident-response commands: `quarantine`, `release`, `block`, `unblock`.
//!
//! The log keeps the newest [`AlertLog::capacity`] alerts (older ones are dropped and counted), numbers them
//! in raise order, counts them per kind for `/metrics`, and publishes each one to followers
//! (`porin alerts -f`, webhook delivery).
//!
//! * [`watch`]: the flow watcher raising `threat_feed` alerts (deduplicated within a window).
//! * [`webhook`]: delivery to `--alert-webhook` URLs (bounded queue, exponential backoff, counted failures).
//! * [`metrics`]: the alert series of `/metrics` (prometheus-client, like the flow metrics).
//!
//! * [`persist`]: the log across agent restarts (`<data-dir>/alerts.jsonl`).
//!
//! Alerts live on the agent that raised them (a flow's alert on the node that reported the flow).

pub mod metrics;
pub mod persist;
pub mod watch;
pub mod webhook;

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use porin_flow::FlowEndpoint;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// What raised an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    ThreatFeed,
    Honeypod,
    Quarantine,
    Release,
    Block,
    Unblock,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] =
        [AlertKind::ThreatFeed, AlertKind::Honeypod, AlertKind::Quarantine, AlertKind::Release, AlertKind::Block, AlertKind::Unblock];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ThreatFeed => "threat_feed",
            AlertKind::Honeypod => "honeypod",
            AlertKind::Quarantine => "quarantine",
            AlertKind::Release => "release",
            AlertKind::Block => "block",
            AlertKind::Unblock => "unblock",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One alert. The JSON field names are a stable interface (`porin alerts -o json`, the webhook body).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Sequence number on the raising agent, assigned by [`AlertLog::raise`] (1, 2, …).
    #[serde(default)]
    pub id: u64,
    /// RFC 3339 time; [`AlertLog::raise`] sets it when empty.
    #[serde(default)]
    pub time: String,
    /// The node whose agent raised it; [`AlertLog::raise`] sets it when empty.
    #[serde(default)]
    pub node: String,
    pub kind: Option<AlertKind>,
    /// What the alert is about: the feed, the decoy (`ns/name`), the quarantined workload (`ns/pod`) or the
    /// blocked ranges.
    pub name: String,
    /// One sentence for people.
    pub description: String,
    /// The endpoint that initiated the flow (for flow-triggered alerts), with workload context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<FlowEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<FlowEndpoint>,
    /// `tcp`, `udp`, `sctp`, `icmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// `allowed` or `denied` (flow-triggered alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The deciding `tier|policy|rule|action` entries, when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<String>,
    /// Who ran the command (incident-response alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Addresses the alert concerns (blocked CIDRs, the feed address that was touched, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Source-specific details (feed labels, honeypod ports, reason of a block, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
}

impl Alert {
    pub fn new(kind: AlertKind, name: impl Into<String>, description: impl Into<String>) -> Self {
        Alert { kind: Some(kind), name: name.into(), description: description.into(), ..Default::default() }
    }

    /// The address of the far end named by the alert (`dst` then `src`), if any.
    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.dst.as_ref().and_then(|e| e.ip).or_else(|| self.src.as_ref().and_then(|e| e.ip))
    }
}

/// Alerts kept in memory on one agent.
pub const DEFAULT_CAPACITY: usize = 10_000;
const LIVE_BACKLOG: usize = 1024;

/// The agent's bounded alert log.
pub struct AlertLog {
    node: String,
    capacity: usize,
    ring: Mutex<VecDeque<Arc<Alert>>>,
    next_id: AtomicU64,
    /// Alerts dropped from the log because it was full (still delivered to followers at the time).
    pub evicted: AtomicU64,
    raised: [AtomicU64; AlertKind::ALL.len()],
    live: broadcast::Sender<Arc<Alert>>,
    /// The `/metrics` series of alerts and webhook delivery.
    pub metrics: metrics::AlertMetrics,
}

impl std::fmt::Debug for AlertLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertLog").field("node", &self.node).field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl AlertLog {
    pub fn new(node: impl Into<String>, capacity: usize) -> Self {
        AlertLog {
            node: node.into(),
            capacity: capacity.max(1),
            ring: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            evicted: AtomicU64::new(0),
            raised: Default::default(),
            live: broadcast::channel(LIVE_BACKLOG).0,
            metrics: metrics::AlertMetrics::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Numbers, stamps, stores and publishes an alert; returns it as stored.
    pub fn raise(&self, mut alert: Alert) -> Arc<Alert> {
        if alert.time.is_empty() {
            alert.time = porin_flow::time::format_rfc3339(porin_flow::time::now_unix());
        }
        if alert.node.is_empty() {
            alert.node = self.node.clone();
        }
        if let Some(k) = alert.kind {
            self.raised[k.index()].fetch_add(1, Relaxed);
            self.metrics.raised(k);
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        // Numbered under the lock, so the log is in id order and a follower never sees a gap it cannot explain.
        alert.id = self.next_id.fetch_add(1, Relaxed);
        let alert = Arc::new(alert);
        if ring.len() == self.capacity {
            ring.pop_front();
            self.evicted.fetch_add(1, Relaxed);
        }
        ring.push_back(alert.clone());
        // No follower is not an error.
        let _ = self.live.send(alert.clone());
        drop(ring);
        tracing::warn!(kind = alert.kind.map(|k| k.as_str()).unwrap_or(""), name = %alert.name, "alert: {}", alert.description);
        alert
    }

    /// The stored alerts with `id > after`, oldest first.
    pub fn list_after(&self, after: u64) -> Vec<Arc<Alert>> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().filter(|a| a.id > after).cloned().collect()
    }

    /// The stored alerts and a live receiver, taken together: every alert raised after this call reaches the
    /// receiver, and none in the list reaches it again.
    pub fn snapshot_and_follow(&self) -> (Vec<Arc<Alert>>, broadcast::Receiver<Arc<Alert>>) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.live.subscribe();
        (ring.iter().cloned().collect(), rx)
    }

    /// Alerts raised since start, by kind (for `/metrics`).
    pub fn raised(&self, kind: AlertKind) -> u64 {
        self.raised[kind.index()].load(Relaxed)
    }

    /// Puts alerts kept from a previous run back (oldest first; only the newest [`AlertLog::capacity`] stay) and
    /// continues numbering after the highest id. They are not published, counted or delivered again. Returns how
    /// many the log holds now.
    pub fn restore(&self, mut alerts: Vec<Alert>) -> usize {
        alerts.sort_by_key(|a| a.id);
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for a in alerts {
            if ring.back().is_some_and(|b| a.id <= b.id) {
                continue;
            }
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            self.next_id.fetch_max(a.id + 1, Relaxed);
            ring.push_back(Arc::new(a));
        }
        ring.len()
    }

    /// A receiver of every alert raised from now on (webhook delivery).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Alert>> {
        self.live.subscribe()
    }

    /// OpenMetrics text of the alert series.
    pub fn encode_metrics(&self) -> String {
        self.metrics.evicted(self.evicted.load(Relaxed));
        self.metrics.encode()
    }
}

impl AlertKind {
    /// By its JSON name (`threat_feed`, `honeypod`, ...).
    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s || k.as_str().replace('_', "") == s.replace(['-', '_'], ""))
    }
}

/// Joins two OpenMetrics texts into one exposition (one `# EOF`).
pub fn join_openmetrics(a: &str, b: &str) -> String {
    let strip = |s: &str| s.strip_suffix("# EOF\n").unwrap_or(s).to_string();
    format!("{}{}# EOF\n", strip(a), strip(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_numbers_bounds_counts_and_publishes() {
        let log = AlertLog::new("n1", 2);
        let (old, mut rx) = log.snapshot_and_follow();
        assert!(old.is_empty());
        for i in 0..3 {
            log.raise(Alert::new(AlertKind::Block, format!("10.0.0.{i}/32"), "blocked"));
        }
        log.raise(Alert::new(AlertKind::Honeypod, "ns/decoy", "contacted"));
        let kept = log.list_after(0);
        assert_eq!(kept.iter().map(|a| a.id).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(log.evicted.load(Relaxed), 2);
        assert_eq!(log.raised(AlertKind::Block), 3);
        assert_eq!(log.raised(AlertKind::Honeypod), 1);
        assert_eq!(kept[1].node, "n1");
        assert!(!kept[1].time.is_empty());
        let ids: Vec<u64> = (0..4).map(|_| rx.try_recv().unwrap().id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        assert_eq!(log.list_after(3).len(), 1);
    }
}
