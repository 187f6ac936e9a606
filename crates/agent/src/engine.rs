//! The agent: one engine task owns the resource cache (a [`Reflector`] over `resources/`), rebuilds the policy
//! model ([`porin_policy::Cluster::build`]) after every batch of changes, and publishes two things over
//! `tokio::sync::watch`:
//!
//! * [`Snapshot`]: the cache, its revision and connectivity — the API serves reads from it while the datastore
//!   is unreachable;
//! * [`PolicySnapshot`]: the "policy revision" — the dataplane's input. **Seam for the dataplane:** implement
//!   [`PolicyConsumer`] and hand it to [`run_consumer`]; it is called with every new policy revision, in order,
//!   latest-wins (a slow consumer skips intermediate revisions, never sees them out of order).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use porin_policy::Cluster;
use porin_store::{AnyStore, KeyValue, Reflector, ReflectorOptions, SyncEvent};
use tokio::sync::watch;

use crate::registry::keys;
pub use crate::registry::Undecodable;
#[cfg(test)]
use crate::registry::decode_all;

/// What the API reads: the reflected cache and the current policy summary.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: u64,
    pub synced: bool,
    pub connected: bool,
    /// Epoch seconds when the datastore was lost (None while connected).
    pub disconnected_since: Option<i64>,
    pub last_error: Option<String>,
    pub items: Arc<BTreeMap<String, KeyValue>>,
    pub policy: Arc<PolicySummary>,
}

#[derive(Debug, Clone, Default)]
pub struct PolicySummary {
    pub revision: u64,
    pub endpoints: usize,
    pub policies: usize,
    /// Epoch seconds of the last recompute.
    pub built_at: Option<u64>,
    pub build_millis: f64,
    pub error: Option<String>,
    /// Stored objects that do not decode (their endpoints are locked down: see [`Lockdown`]).
    pub undecodable: Vec<Undecodable>,
}

/// Endpoints that must deny everything because a stored object that may apply to them does not decode: had
/// it been an isolating policy, leaving it out would fail open. A namespaced object locks down its
/// namespace; a cluster-scoped one (or a key whose kind or namespace is unknown) every endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockdown {
    pub all: bool,
    pub namespaces: std::collections::BTreeSet<String>,
}

impl Lockdown {
    pub fn from_undecodable(u: &[Undecodable]) -> Lockdown {
        let mut l = Lockdown::default();
        for x in u {
            match &x.namespace {
                Some(ns) => {
                    l.namespaces.insert(ns.clone());
                }
                None => l.all = true,
            }
        }
        l
    }
    pub fn is_empty(&self) -> bool {
        !self.all && self.namespaces.is_empty()
    }
    /// Does the lockdown cover endpoint `namespace/name`?
    pub fn covers(&self, endpoint: &str) -> bool {
        self.all || endpoint.split_once('/').is_some_and(|(ns, _)| self.namespaces.contains(ns))
    }
}

/// One computed policy model, as of store revision `revision`.
#[derive(Debug, Clone, Default)]
pub struct PolicySnapshot {
    pub revision: u64,
    pub cluster: Arc<Cluster>,
    /// Every WorkloadEndpoint: what binds pods to interfaces (the dataplane keeps its node's).
    pub bindings: Arc<Vec<crate::reconciler::Binding>>,
    /// When the agent saw the change this revision carries (programming latency starts here).
    pub changed_at: Option<Instant>,
    /// Endpoints the dataplane must make deny everything (stored objects that do not decode).
    pub lockdown: Arc<Lockdown>,
}

/// The dataplane seam: receives every policy revision the engine publishes.
pub trait PolicyConsumer: Send + 'static {
    fn apply(&mut self, snapshot: &PolicySnapshot);
}

/// Logs each revision; the default until the dataplane plugs in.
pub struct LogConsumer;

impl PolicyConsumer for LogConsumer {
    fn apply(&mut self, s: &PolicySnapshot) {
        tracing::info!(revision = s.revision, endpoints = s.cluster.endpoints.len(), policies = s.cluster.policies.len(), "policy revision");
    }
}

/// Feed `consumer` every new policy revision until the sender goes away.
pub async fn run_consumer(mut rx: watch::Receiver<Arc<PolicySnapshot>>, mut consumer: impl PolicyConsumer) {
    while rx.changed().await.is_ok() {
        let s = rx.borrow_and_update().clone();
        consumer.apply(&s);
    }
}


/// The engine task. `build` = false runs only the cache (for `porin serve`).
pub async fn run_engine(
    store: AnyStore,
    build: bool,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    policy_tx: watch::Sender<Arc<PolicySnapshot>>,
) {
    let mut refl = Reflector::new(store, keys::RESOURCES, ReflectorOptions::default());
    let mut snap = Snapshot::default();
    let mut summary = PolicySummary::default();
    let mut decoded = crate::registry::DecodeCache::default();
    loop {
        let first = refl.next().await;
        let changed_at = Instant::now();
        let mut dirty = false;
        let mut handle = |ev: SyncEvent, snap: &mut Snapshot| match ev {
            SyncEvent::Put { .. } | SyncEvent::Delete { .. } => {
                dirty = true;
            }
            SyncEvent::InSync { .. } => {
                snap.connected = true;
                snap.disconnected_since = None;
                snap.last_error = None;
                dirty = true;
            }
            // The watch is back: writes are accepted again, changes made meanwhile follow as events (or, if
            // that history is compacted, as a relist that synthesises the deletes).
            SyncEvent::Reconnected { .. } => {
                snap.connected = true;
                snap.disconnected_since = None;
                snap.last_error = None;
            }
            SyncEvent::Disconnected { error, .. } => {
                snap.connected = false;
                snap.disconnected_since.get_or_insert_with(crate::timefmt::now_secs);
                snap.last_error = Some(crate::error_chain(&error));
            }
        };
        handle(first, &mut snap);
        // Drain everything already available, so one transaction is one recompute.
        while let Some(ev) = refl.next().now_or_never() {
            handle(ev, &mut snap);
        }
        snap.revision = refl.revision();
        snap.synced = refl.is_synced();
        if dirty {
            snap.items = Arc::new(refl.items().clone());
        }
        if dirty && build && snap.synced {
            let t0 = Instant::now();
            let (resources, undecodable) = decoded.decode(refl.items());
            for u in &undecodable {
                tracing::error!(key = %u.key, error = %u.error, namespace = ?u.namespace, "stored object does not decode: its endpoints are locked down");
            }
            match Cluster::build(resources.iter().copied()) {
                Ok(cluster) => {
                    summary = PolicySummary {
                        revision: snap.revision,
                        endpoints: cluster.endpoints.len(),
                        policies: cluster.policies.len(),
                        built_at: Some(crate::timefmt::now_secs() as u64),
                        build_millis: t0.elapsed().as_secs_f64() * 1e3,
                        error: None,
                        undecodable: undecodable.clone(),
                    };
                    policy_tx.send_replace(Arc::new(PolicySnapshot {
                        revision: snap.revision,
                        cluster: Arc::new(cluster),
                        bindings: Arc::new(crate::reconciler::bindings(resources.iter().copied())),
                        changed_at: Some(changed_at),
                        lockdown: Arc::new(Lockdown::from_undecodable(&undecodable)),
                    }));
                }
                Err(e) => {
                    tracing::warn!(error = %e, revision = snap.revision, "policy recompute failed; keeping the previous policy");
                    summary.error = Some(e.to_string());
                    summary.undecodable = undecodable;
                }
            }
        }
        snap.policy = Arc::new(summary.clone());
        snap_tx.send_replace(Arc::new(snap.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> (String, KeyValue) {
        (key.to_string(), KeyValue { key: key.into(), value: value.as_bytes().to_vec(), create_revision: 1, mod_revision: 1 })
    }

    #[test]
    fn undecodable_objects_lock_down_their_scope() {
        let items: BTreeMap<String, KeyValue> = [
            kv("resources/porin.io/networkpolicies/shop/iso", "{\"apiVersion\": \"porin.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {\"name\": \"iso\", \"namespace\": \"shop\"}, \"spec\": {\"tier\": 7}}"),
            kv("resources/core/pods/shop/ok", "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"ok\", \"namespace\": \"shop\"}}"),
        ]
        .into_iter()
        .collect();
        let (ok, bad) = decode_all(&items);
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].error.contains("tier"), "{bad:?}");
        let l = Lockdown::from_undecodable(&bad);
        assert!(l.covers("shop/ok") && !l.covers("ops/db") && !l.all);
        // Cluster-scoped, or a key of an unknown kind: every endpoint.
        let mut items = items;
        items.extend([kv("resources/porin.io/globalnetworkpolicies/_/g", "not json")]);
        let (_, bad) = decode_all(&items);
        assert!(Lockdown::from_undecodable(&bad).covers("ops/db"));
        let items: BTreeMap<String, KeyValue> = [kv("resources/example.com/gadgets/shop/g", "{}")].into_iter().collect();
        let (_, bad) = decode_all(&items);
        assert!(Lockdown::from_undecodable(&bad).all, "{bad:?}");
    }
}
