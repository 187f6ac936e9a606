//! The engine task in-process, over an embedded store: what it publishes to the API and to the dataplane.

mod common;

use std::sync::Arc;
use std::time::Duration;

use porin_agent::engine::{PolicySnapshot, Snapshot, run_engine};
use porin_agent::registry::keys;
use porin_model::Kind;
use tokio::sync::watch;

const POD_A: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"shop","labels":{"app":"a"}},"status":{"podIP":"10.0.0.1"}}"#;
const ISOLATE: &str = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"iso","namespace":"shop"},"spec":{"podSelector":{},"policyTypes":["Ingress"]}}"#;

/// Wait until `rx` publishes a value `ok` accepts (bounded: the test fails rather than hangs).
async fn until<T: Clone>(rx: &mut watch::Receiver<Arc<T>>, ok: impl Fn(&T) -> bool) -> Arc<T> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let v = rx.borrow_and_update().clone();
            if ok(&v) {
                return v;
            }
            rx.changed().await.expect("the engine runs");
        }
    })
    .await
    .expect("the engine published in time")
}

struct Engine {
    snap: watch::Receiver<Arc<Snapshot>>,
    policy: watch::Receiver<Arc<PolicySnapshot>>,
}

fn start(store: porin_store::AnyStore, build: bool) -> Engine {
    let (snap_tx, snap) = watch::channel(Arc::new(Snapshot::default()));
    let (policy_tx, policy) = watch::channel(Arc::new(PolicySnapshot::default()));
    tokio::spawn(run_engine(store, build, snap_tx, policy_tx));
    Engine { snap, policy }
}

#[tokio::test]
async fn every_change_is_a_policy_revision_with_the_store_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(tmp.path()).await;
    let mut e = start(store.clone(), true);
    let s = until(&mut e.snap, |s| s.synced && s.connected).await;
    assert_eq!(s.items.len(), 0);

    common::put(&store, &keys::object_key(Kind::Pod, Some("shop"), "a"), POD_A).await;
    let p = until(&mut e.policy, |p| p.cluster.endpoints.len() == 1).await;
    assert!(p.revision > 0 && p.lockdown.is_empty());
    assert!(p.changed_at.is_some(), "programming latency starts at the change");
    let s = until(&mut e.snap, |s| s.policy.revision == p.revision).await;
    assert_eq!((s.policy.endpoints, s.policy.policies, s.items.len()), (1, 0, 1));

    common::put(&store, &keys::object_key(Kind::K8sNetworkPolicy, Some("shop"), "iso"), ISOLATE).await;
    let p2 = until(&mut e.policy, |p| !p.cluster.policies.is_empty()).await;
    assert!(p2.revision > p.revision, "revisions only grow");
}

#[tokio::test]
async fn an_undecodable_object_locks_down_its_namespace_and_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(tmp.path()).await;
    common::put(&store, &keys::object_key(Kind::Pod, Some("shop"), "a"), POD_A).await;
    // A policy that does not decode (tier must be a string): had it isolated `shop`, skipping it would open.
    let bad = r#"{"apiVersion":"porin.io/v1","kind":"NetworkPolicy","metadata":{"name":"x","namespace":"shop"},"spec":{"tier":7}}"#;
    common::put(&store, &keys::object_key(Kind::NetworkPolicy, Some("shop"), "x"), bad).await;
    let mut e = start(store, true);
    let p = until(&mut e.policy, |p| p.revision > 0).await;
    assert!(p.lockdown.covers("shop/a") && !p.lockdown.covers("other/b") && !p.lockdown.all, "{:?}", p.lockdown);
    let s = until(&mut e.snap, |s| s.policy.revision == p.revision).await;
    assert_eq!(s.policy.undecodable.len(), 1);
    assert_eq!(s.policy.undecodable[0].namespace.as_deref(), Some("shop"));
}

#[tokio::test]
async fn the_api_only_engine_caches_and_builds_no_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(tmp.path()).await;
    common::put(&store, &keys::object_key(Kind::Pod, Some("shop"), "a"), POD_A).await;
    let mut e = start(store, false);
    let s = until(&mut e.snap, |s| s.synced && s.items.len() == 1).await;
    assert_eq!(s.policy.revision, 0, "no policy model without the engine");
    assert_eq!(e.policy.borrow().revision, 0);
}
