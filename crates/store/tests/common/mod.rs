//! Shared test code: the etcd harness and a conformance suite run against both backends.

#![allow(dead_code)]

pub mod conformance;
pub mod etcd;

use std::time::Duration;

use futures::StreamExt;
use porin_store::{Reflector, Store, SyncEvent, WatchEvent, WatchStream};

/// Generous deadline for anything that should happen "soon" (noisy 2-core CI).
pub const SOON: Duration = Duration::from_secs(20);

/// Reads exactly `n` events, failing on error, end of stream or timeout.
pub async fn take_events(stream: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(SOON, stream.next()).await {
            Ok(Some(Ok(ev))) => out.push(ev),
            Ok(Some(Err(e))) => panic!("watch failed after {} events: {e:?}", out.len()),
            Ok(None) => panic!("watch ended after {} events", out.len()),
            Err(_) => panic!("timed out after {} of {n} events", out.len()),
        }
    }
    out
}

/// Asserts that nothing arrives on `stream` for a short while.
pub async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

/// Drives `r` until its cache equals `store.list(prefix)` at a revision >= `revision`.
pub async fn converge<S: Store>(r: &mut Reflector<S>, revision: u64) -> Vec<SyncEvent> {
    let mut seen = Vec::new();
    tokio::time::timeout(SOON, async {
        loop {
            if r.is_synced() && r.revision() >= revision {
                let (items, _) = r.store().list(r.prefix()).await.expect("list");
                if r.items().values().cloned().collect::<Vec<_>>() == items {
                    return;
                }
            }
            seen.push(r.next().await);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("reflector did not converge to revision {revision}; saw {seen:#?}"));
    seen
}

pub fn key_set(events: &[WatchEvent]) -> Vec<(String, u64)> {
    events.iter().map(|e| (e.key().to_owned(), e.revision())).collect()
}
