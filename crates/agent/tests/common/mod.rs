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
