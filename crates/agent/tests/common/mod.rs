//! Shared set-up of the in-process tests: an embedded store in a temporary directory.

#![allow(dead_code)]

use porin_store::{AnyStore, EmbeddedOptions, Op, Store, StoreConfig};

pub async fn store(dir: &std::path::Path) -> AnyStore {
    AnyStore::open(StoreConfig::Embedded { dir: dir.join("store"), options: EmbeddedOptions::default() }).await.unwrap()
}

/// Write `value` under `key` (no condition).
pub async fn put(store: &AnyStore, key: &str, value: &str) {
    store.txn(vec![], vec![Op::put(key.to_string(), value.as_bytes().to_vec())]).await.unwrap();
}

/// A reconciler that reports what the test says.
pub struct FakeReconciler {
    pub errors: bool,
}

impl porin_agent::api::sources::ReconcilerStatus for FakeReconciler {
    fn status_json(&self) -> serde_json::Value {
        serde_json::json!({"mode": "fake", "errors": if self.errors { vec!["porin-v1: map full"] } else { vec![] }})
    }
    fn has_errors(&self) -> bool {
        self.errors
    }
}

/// The API's state over `store` and the engine snapshot `snapshot`, as an agent of node `n0` without flows or
/// captures: a fresh alert log, a fake reconciler (with errors when `dp_errors`). Tests change fields with
/// `ApiState { captures: ..., ..api_state(...) }`.
pub fn api_state(
    store: AnyStore,
    snapshot: tokio::sync::watch::Receiver<std::sync::Arc<porin_agent::engine::Snapshot>>,
    dp_errors: bool,
) -> porin_agent::api::ApiState {
    use std::sync::Arc;
    porin_agent::api::ApiState {
        store,
        store_kind: "embedded",
        store_desc: "embedded store (test)".into(),
        node: "n0".into(),
        snapshot,
        token_cache: std::sync::Mutex::new(std::collections::HashMap::new()),
        dataplane: Arc::new(FakeReconciler { errors: dp_errors }),
        flows: None,
        captures: None,
        write_lock: tokio::sync::Mutex::new(()),
        guard_decode: Default::default(),
        alerts: Arc::new(porin_agent::alerts::AlertLog::new("test", 100)),
    }
}
