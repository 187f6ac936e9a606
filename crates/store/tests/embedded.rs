//! The embedded backend: the shared conformance suite plus what is specific to a local file
//! (reopening, locking, changelog retention, slow watchers).

mod common;

use common::conformance;
use common::{SOON, converge, take_events};
use futures::StreamExt;
use porin_store::{
    AnyStore, EmbeddedOptions, EmbeddedStore, Op, Reflector, Store, StoreConfig, StoreError,
    SyncEvent, WatchEvent,
};

const MAX_OPS: usize = 1024;

fn opts() -> EmbeddedOptions {
    EmbeddedOptions { max_txn_ops: MAX_OPS, ..EmbeddedOptions::default() }
}

async fn open_temp() -> (tempfile::TempDir, AnyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = AnyStore::open(StoreConfig::Embedded { dir: dir.path().join("data"), options: opts() })
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_crud_occ_txn() {
    let (_dir, s) = open_temp().await;
    conformance::crud(&s).await;
    conformance::optimistic_concurrency(&s).await;
    conformance::transactions(&s, MAX_OPS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_watches() {
    let (_dir, s) = open_temp().await;
    conformance::watches(&s).await;
    conformance::concurrent_writers(&s).await;
    // Two handles on one embedded store behave like two etcd clients.
    conformance::two_watchers_agree(&s, &s.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_reflector() {
    let (_dir, s) = open_temp().await;
    conformance::reflector_follows(&s).await;
    conformance::resume_after_compaction(&s).await;
}

#[tokio::test]
async fn in_memory_store_works() {
    let s = AnyStore::Embedded(EmbeddedStore::in_memory(opts()).unwrap());
    conformance::crud(&s).await;
    conformance::watches(&s).await;
}

#[tokio::test]
async fn data_and_revisions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (rev, kv) = {
        let s = EmbeddedStore::open(dir.path(), opts()).unwrap();
        s.put("a", b"1".to_vec(), None).await.unwrap();
        s.put("b", b"2".to_vec(), None).await.unwrap();
        let rev = s.txn(vec![], vec![Op::put("a", "3"), Op::delete("b")]).await.unwrap().revision().unwrap();
        (rev, s.get("a").await.unwrap().unwrap())
    };
    let s = EmbeddedStore::open(dir.path(), opts()).unwrap();
    assert_eq!(s.revision().await.unwrap(), rev);
    assert_eq!(s.get("a").await.unwrap().unwrap(), kv);
    assert_eq!(s.get("b").await.unwrap(), None);
    // The changelog survives too: a watcher can resume from before the restart.
    let mut w = s.watch("", 0).await.unwrap();
    let evs = take_events(&mut w, 4).await;
    let kinds: Vec<_> = evs.iter().map(|e| (e.key(), e.revision(), matches!(e, WatchEvent::Put { .. }))).collect();
    assert_eq!(kinds, [("a", 1, true), ("b", 2, true), ("a", 3, true), ("b", 3, false)]);
    // Revisions continue from where they were.
    assert_eq!(s.put("c", vec![], None).await.unwrap(), rev + 1);
}

#[tokio::test]
async fn unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("data");
    let err = EmbeddedStore::open(&bad, opts()).unwrap_err();
    assert!(matches!(err, StoreError::Io { ref path, .. } if *path == bad), "{err:?}");
    assert!(err.to_string().contains(&bad.display().to_string()), "names the path: {err}");
}

#[tokio::test]
async fn changelog_is_bounded_and_compaction_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path(), EmbeddedOptions { changelog_retention: 10, ..opts() }).unwrap();
    for i in 0..30u8 {
        s.put(&format!("k/{}", i % 3), vec![i], None).await.unwrap();
    }
    assert_eq!(s.revision().await.unwrap(), 30);
    assert_eq!(s.compact_revision(), 21, "keeps the newest 10 revisions");
    // Resuming inside the retained window works...
    let mut w = s.watch("k/", 20).await.unwrap();
    let evs = take_events(&mut w, 10).await;
    assert_eq!(evs.first().unwrap().revision(), 21);
    // ...and before it is an explicit error, not a silent gap.
    match s.watch("k/", 19).await {
        Err(StoreError::Compacted { requested: 19, compact_revision: 21 }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Explicit compaction, clamped to the current revision + 1.
    assert_eq!(s.compact(25).await.unwrap(), 25);
    assert_eq!(s.compact(3).await.unwrap(), 25, "compaction never goes backwards");
    assert_eq!(s.compact(1000).await.unwrap(), 31);
    assert!(s.watch("k/", 30).await.is_ok());
    // Compaction survives a reopen.
    drop(w);
    drop(s);
    let s = EmbeddedStore::open(dir.path(), opts()).unwrap();
    assert_eq!(s.compact_revision(), 31);
}

/// A watcher slower than the broadcast buffer catches up from the changelog without a gap.
#[tokio::test]
async fn lagging_watcher_catches_up_from_the_changelog() {
    let s = EmbeddedStore::in_memory(EmbeddedOptions { watch_buffer: 2, ..opts() }).unwrap();
    let mut w = s.watch("lag/", 0).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..50u8 {
        revs.push(s.put(&format!("lag/{}", i % 7), vec![i], None).await.unwrap());
    }
    let evs = take_events(&mut w, 50).await;
    assert_eq!(evs.iter().map(WatchEvent::revision).collect::<Vec<_>>(), revs);
    // Then it keeps following live.
    let r = s.put("lag/live", vec![], None).await.unwrap();
    assert_eq!(take_events(&mut w, 1).await[0].revision(), r);
}

/// A watcher so slow that the changelog no longer reaches back is told (Compacted), and a
/// reflector in that situation relists and synthesises the deletes it missed.
#[tokio::test]
async fn lagging_past_the_changelog_forces_a_resync() {
    let s = EmbeddedStore::in_memory(EmbeddedOptions { watch_buffer: 2, changelog_retention: 5, ..opts() }).unwrap();
    let store = AnyStore::Embedded(s.clone());
    for k in ["a", "b", "c"] {
        s.put(&format!("slow/{k}"), k.as_bytes().to_vec(), None).await.unwrap();
    }
    let mut r = Reflector::new(store.clone(), "slow/", conformance::fast_reflector());
    converge(&mut r, 3).await;
    // Make sure the reflector's watch is established before it falls behind.
    let rev = s.put("slow/d", b"d".to_vec(), None).await.unwrap();
    converge(&mut r, rev).await;
    let mut raw = s.watch("slow/", rev).await.unwrap();

    s.delete("slow/a", None).await.unwrap();
    for i in 0..20u8 {
        s.put("slow/c", vec![i], None).await.unwrap();
    }
    let last = s.revision().await.unwrap();

    match tokio::time::timeout(SOON, raw.next()).await.unwrap() {
        Some(Err(StoreError::Compacted { requested, compact_revision })) => {
            assert_eq!(requested, rev);
            assert_eq!(compact_revision, last - 4);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(tokio::time::timeout(SOON, raw.next()).await.unwrap().is_none(), "the stream ends after the error");

    let seen = converge(&mut r, last).await;
    assert!(
        seen.iter().any(|e| matches!(e, SyncEvent::Delete { key, .. } if key == "slow/a")),
        "missed delete synthesised: {seen:#?}"
    );
    assert!(seen.iter().any(|e| matches!(e, SyncEvent::InSync { revision } if *revision == last)));
    assert_eq!(r.get("slow/c").unwrap().value, vec![19]);
    assert_eq!(r.items().len(), 3);
}

/// Dropping the store ends its watches with an explicit error, and the file can be reopened.
#[tokio::test]
async fn closing_the_store_ends_watches() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path(), opts()).unwrap();
    let mut w = s.watch("", 0).await.unwrap();
    drop(s);
    match tokio::time::timeout(SOON, w.next()).await.unwrap() {
        Some(Err(StoreError::Closed)) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    drop(w);
    let s = EmbeddedStore::open(dir.path(), opts()).unwrap();
    s.put("x", vec![], None).await.unwrap();
}
