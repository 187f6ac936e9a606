//! The guard check on the API's write path at 10k pods / ~1k policies, end to end in-process: `POST
//! /porin/v1/apply` of one changed policy while a `ReachabilityGuard` exists (store listing, decode, model
//! build, guard matrices, transaction, audit). Ignored by default (a benchmark); docs/benchmarks.md:
//! `cargo test --release -p porin-agent --test guard_timing -- --ignored --nocapture`

mod common;

#[path = "../../policy/benches/synth/mod.rs"]
mod synth;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use porin_agent::api::{PeerInfo, router};
use porin_agent::engine::Snapshot;
use porin_agent::registry::{keys, stored_json};
use porin_model::Resource;
use porin_store::{Op, Store};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

async fn apply(app: &axum::Router, body: &Value) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/porin/v1/apply")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerInfo { uid: Some(0), tls: false }));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn timing_apply_with_a_guard_at_10k_pods() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(tmp.path()).await;
    let rs: Vec<Resource> = synth::cluster(10_000);
    let (k8s, gnp) = synth::policy_counts(&rs);
    let ops: Vec<Op> = rs
        .iter()
        .map(|r| Op::put(keys::object_key(r.kind(), r.namespace(), r.name()), serde_json::to_vec(&stored_json(r)).unwrap()))
        .collect();
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        store.txn(vec![], ops.by_ref().take(5_000).collect()).await.unwrap();
    }
    let (tx, rx) = watch::channel(Arc::new(Snapshot { synced: true, connected: true, ..Default::default() }));
    let state = Arc::new(common::api_state(store.clone(), rx, false));
    let app = router(state);
    // A guard every write is checked against: nothing outside ns0 reaches ns0's app0 on 8080.
    let guard = json!({"apiVersion": "porin.io/v1", "kind": "ReachabilityGuard", "metadata": {"name": "ns0-app0"},
        "spec": {"from": {"namespaceSelector": "kubernetes.io/metadata.name != 'ns0'"},
                 "to": {"namespaceSelector": "kubernetes.io/metadata.name == 'ns0'", "selector": "app == 'app0'"},
                 "ports": [8080], "expect": "Deny"}});
    let (code, out) = apply(&app, &guard).await;
    assert!(code.is_success(), "{out}");
    // One K8s allow-list policy, changed on every write (its port alternates), so each write builds a new model.
    let target = rs
        .iter()
        .find(|r| matches!(r, Resource::K8sNetworkPolicy(_)) && r.namespace() == Some("ns5"))
        .expect("a K8s policy in ns5")
        .clone();
    let mut times = Vec::new();
    for i in 0..9 {
        let mut v = stored_json(&target);
        v["metadata"]["labels"] = json!({"rev": i.to_string()});
        let t = Instant::now();
        let (code, out) = apply(&app, &v).await;
        let dt = t.elapsed();
        assert!(code.is_success(), "{out}");
        times.push(dt);
    }
    let first = times.remove(0);
    times.sort();
    let median: Duration = times[times.len() / 2];
    eprintln!(
        "{} objects ({k8s} K8s + {gnp} global policies, 10k pods), one guard: apply of one changed policy: first {first:?}, then median {median:?} (max {:?}, n={})",
        rs.len(),
        times.last().unwrap(),
        times.len()
    );
    drop(tx);
}
