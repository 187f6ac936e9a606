//! Behaviour both backends must share. Each function uses its own key prefix, so several can
//! run against one store.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use porin_store::{
    AnyStore, Condition, ConditionFailure, Op, Reflector, ReflectorOptions, Store, StoreError,
    SyncEvent, TxnResult, WatchEvent,
};

use super::{SOON, assert_quiet, converge, take_events};

pub fn fast_reflector() -> ReflectorOptions {
    ReflectorOptions { min_backoff: Duration::from_millis(20), max_backoff: Duration::from_millis(500) }
}

pub async fn crud(s: &AnyStore) {
    assert_eq!(s.get("crud/a").await.unwrap(), None);
    let r1 = s.put("crud/a", b"one".to_vec(), None).await.unwrap();
    let a = s.get("crud/a").await.unwrap().expect("crud/a exists");
    assert_eq!((a.value.as_slice(), a.create_revision, a.mod_revision), (&b"one"[..], r1, r1));

    let r2 = s.put("crud/a", b"two".to_vec(), None).await.unwrap();
    assert!(r2 > r1, "revisions increase: {r1} then {r2}");
    let a = s.get("crud/a").await.unwrap().unwrap();
    assert_eq!((a.value.as_slice(), a.create_revision, a.mod_revision), (&b"two"[..], r1, r2));
    assert_eq!(s.revision().await.unwrap(), r2);

    let r3 = s.put("crud/b", b"bee".to_vec(), None).await.unwrap();
    s.put("crudx", b"outside".to_vec(), None).await.unwrap();
    let (items, rev) = s.list("crud/").await.unwrap();
    let keys: Vec<_> = items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["crud/a", "crud/b"], "sorted, prefix only");
    assert!(rev > r3);
    assert_eq!(s.list("crud/nothing/").await.unwrap().0, vec![]);

    let d = s.delete("crud/a", None).await.unwrap();
    assert!(d.revision > rev);
    assert_eq!((d.prev.key.as_str(), d.prev.value.as_slice(), d.prev.mod_revision), ("crud/a", &b"two"[..], r2));
    assert_eq!(s.get("crud/a").await.unwrap(), None);
    assert!(matches!(s.delete("crud/a", None).await, Err(StoreError::NotFound { key }) if key == "crud/a"));

    // Re-creating a key gives it a new create_revision.
    let r4 = s.put("crud/a", b"again".to_vec(), None).await.unwrap();
    assert_eq!(s.get("crud/a").await.unwrap().unwrap().create_revision, r4);

    assert!(matches!(s.put("", vec![], None).await, Err(StoreError::InvalidKey { .. })));
    assert!(matches!(s.get("").await, Err(StoreError::InvalidKey { .. })));
}

pub async fn optimistic_concurrency(s: &AnyStore) {
    let k = "occ/k";
    let r1 = s.put(k, b"1".to_vec(), Some(0)).await.expect("create-if-absent on a new key");
    match s.put(k, b"x".to_vec(), Some(0)).await {
        Err(StoreError::Conflict { key, expected: 0, actual }) => assert_eq!((key.as_str(), actual), (k, r1)),
        other => panic!("expected conflict, got {other:?}"),
    }
    match s.put(k, b"x".to_vec(), Some(r1 + 1000)).await {
        Err(StoreError::Conflict { expected, actual, .. }) => assert_eq!((expected, actual), (r1 + 1000, r1)),
        other => panic!("expected conflict, got {other:?}"),
    }
    let r2 = s.put(k, b"2".to_vec(), Some(r1)).await.expect("CAS with the right revision");
    // A stale writer loses.
    assert!(matches!(s.put(k, b"stale".to_vec(), Some(r1)).await, Err(StoreError::Conflict { .. })));
    assert_eq!(s.get(k).await.unwrap().unwrap().value, b"2");

    match s.put("occ/missing", b"x".to_vec(), Some(r2)).await {
        Err(StoreError::Conflict { expected, actual: 0, .. }) => assert_eq!(expected, r2),
        other => panic!("expected conflict on a missing key, got {other:?}"),
    }
    assert!(matches!(s.delete(k, Some(r1)).await, Err(StoreError::Conflict { .. })));
    assert!(s.get(k).await.unwrap().is_some(), "failed conditional delete changed nothing");
    let d = s.delete(k, Some(r2)).await.unwrap();
    assert_eq!(d.prev.mod_revision, r2);
    assert!(matches!(s.delete(k, Some(0)).await, Err(StoreError::NotFound { .. })));
}

pub async fn transactions(s: &AnyStore, max_ops: usize) {
    let r0 = s.put("txn/keep", b"k".to_vec(), None).await.unwrap();
    let rz = s.put("txn/z", b"z".to_vec(), None).await.unwrap();
    let mut w = s.watch("txn/", rz).await.unwrap();

    let res = s
        .txn(
            vec![Condition::absent("txn/x"), Condition::mod_revision("txn/z", rz)],
            vec![Op::put("txn/x", "x"), Op::put("txn/y", "y"), Op::delete("txn/z"), Op::delete("txn/never")],
        )
        .await
        .unwrap();
    let TxnResult::Committed { revision } = res else { panic!("expected commit, got {res:?}") };
    assert!(revision > rz);
    let (items, _) = s.list("txn/").await.unwrap();
    let state: BTreeMap<_, _> = items.iter().map(|kv| (kv.key.as_str(), kv.mod_revision)).collect();
    assert_eq!(state, BTreeMap::from([("txn/keep", r0), ("txn/x", revision), ("txn/y", revision)]));
    // One revision, three events (deleting a missing key is not an event), delivered together.
    let evs = take_events(&mut w, 3).await;
    assert!(evs.iter().all(|e| e.revision() == revision), "{evs:?}");
    assert!(matches!(&evs[2], WatchEvent::Delete { key, prev: Some(p), .. } if key == "txn/z" && p.value == b"z"));

    // Failing conditions: nothing is written, and every failed condition is reported.
    let before = s.revision().await.unwrap();
    let res = s
        .txn(
            vec![
                Condition::absent("txn/x"),
                Condition::mod_revision("txn/keep", r0),
                Condition::mod_revision("txn/gone", 7),
            ],
            vec![Op::put("txn/x", "clobbered"), Op::put("txn/new", "n")],
        )
        .await
        .unwrap();
    assert_eq!(
        res,
        TxnResult::Failed {
            failures: vec![
                ConditionFailure { key: "txn/x".into(), expected: 0, actual: revision },
                ConditionFailure { key: "txn/gone".into(), expected: 7, actual: 0 },
            ]
        }
    );
    assert_eq!(s.revision().await.unwrap(), before);
    assert_eq!(s.get("txn/x").await.unwrap().unwrap().value, b"x");
    assert_eq!(s.get("txn/new").await.unwrap(), None);
    assert_quiet(&mut w).await;

    // Only deletes of missing keys: commits, changes nothing, no new revision.
    let res = s.txn(vec![], vec![Op::delete("txn/none")]).await.unwrap();
    assert_eq!(res, TxnResult::Committed { revision: before });

    assert!(matches!(
        s.txn(vec![], vec![Op::put("txn/d", "1"), Op::put("txn/d", "2")]).await,
        Err(StoreError::DuplicateKey { .. })
    ));
    let too_many: Vec<Op> = (0..=max_ops).map(|i| Op::put(format!("txn/many/{i}"), "v")).collect();
    match s.txn(vec![], too_many).await {
        Err(StoreError::TooManyOps { ops, max }) => assert_eq!((ops, max), (max_ops + 1, Some(max_ops))),
        other => panic!("expected TooManyOps, got {other:?}"),
    }
    assert_eq!(s.list("txn/many/").await.unwrap().0.len(), 0, "nothing of an oversized txn is written");

    // A big `apply` (more than etcd's default 128 operations) commits atomically.
    let big: Vec<Op> = (0..600).map(|i| Op::put(format!("txn/big/{i:04}"), format!("{i}"))).collect();
    let rev = s.txn(vec![], big).await.unwrap().revision().expect("big txn commits");
    let (items, _) = s.list("txn/big/").await.unwrap();
    assert_eq!(items.len(), 600);
    assert!(items.iter().all(|kv| kv.mod_revision == rev));
}

pub async fn watches(s: &AnyStore) {
    let start = s.revision().await.unwrap();
    let mut live = s.watch("w/", start).await.unwrap();
    let r1 = s.put("w/a", b"1".to_vec(), None).await.unwrap();
    s.put("wx", b"outside the prefix".to_vec(), None).await.unwrap();
    let r2 = s.put("w/a", b"2".to_vec(), None).await.unwrap();
    let r3 = s.put("w/b", b"b".to_vec(), None).await.unwrap();
    let r4 = s.delete("w/a", None).await.unwrap().revision;

    let evs = take_events(&mut live, 4).await;
    match &evs[0] {
        WatchEvent::Put { kv, prev: None } => assert_eq!((kv.key.as_str(), kv.mod_revision, kv.create_revision), ("w/a", r1, r1)),
        e => panic!("{e:?}"),
    }
    match &evs[1] {
        WatchEvent::Put { kv, prev: Some(p) } => {
            assert_eq!((kv.value.as_slice(), kv.mod_revision, kv.create_revision), (&b"2"[..], r2, r1));
            assert_eq!((p.value.as_slice(), p.mod_revision), (&b"1"[..], r1));
        }
        e => panic!("{e:?}"),
    }
    assert!(matches!(&evs[2], WatchEvent::Put { kv, .. } if kv.key == "w/b" && kv.mod_revision == r3));
    match &evs[3] {
        WatchEvent::Delete { key, revision, prev: Some(p) } => assert_eq!((key.as_str(), *revision, p.mod_revision), ("w/a", r4, r2)),
        e => panic!("{e:?}"),
    }
    assert_quiet(&mut live).await;

    // Resuming from any revision replays exactly what came after it.
    let mut resumed = s.watch("w/", r2).await.unwrap();
    let evs = take_events(&mut resumed, 2).await;
    assert_eq!(super::key_set(&evs), vec![("w/b".to_owned(), r3), ("w/a".to_owned(), r4)]);
    let r5 = s.put("w/c", b"c".to_vec(), None).await.unwrap();
    let evs = take_events(&mut resumed, 1).await;
    assert_eq!(evs[0].revision(), r5);
    assert_eq!(take_events(&mut live, 1).await[0].revision(), r5);

    // A watch "from now" sees only later changes; the whole keyspace can be watched.
    let now = s.revision().await.unwrap();
    let mut all = s.watch("", now).await.unwrap();
    let r6 = s.put("elsewhere", b"e".to_vec(), None).await.unwrap();
    let evs = take_events(&mut all, 1).await;
    assert_eq!((evs[0].key(), evs[0].revision()), ("elsewhere", r6));
}

pub async fn concurrent_writers(s: &AnyStore) {
    let start = s.revision().await.unwrap();
    let mut w = s.watch("conc/", start).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..20 {
                revs.push(s.put(&format!("conc/{t}/{i}"), vec![t as u8, i as u8], None).await.unwrap());
            }
            revs
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.windows(2).all(|w| w[0] < w[1]), "each writer sees increasing revisions");
        revs.extend(r);
    }
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), 160, "every write got its own revision");
    assert_eq!(s.list("conc/").await.unwrap().0.len(), 160);
    let evs = take_events(&mut w, 160).await;
    let seen: Vec<u64> = evs.iter().map(WatchEvent::revision).collect();
    assert_eq!(seen, revs, "the watch delivers every write, in revision order");
}

pub async fn two_watchers_agree(a: &AnyStore, b: &AnyStore) {
    let start = a.revision().await.unwrap();
    let mut wa = a.watch("shared/", start).await.unwrap();
    let mut wb = b.watch("shared/", start).await.unwrap();
    for i in 0..10 {
        a.put(&format!("shared/a{i}"), vec![i], None).await.unwrap();
        b.put(&format!("shared/b{i}"), vec![i], None).await.unwrap();
        if i % 3 == 0 {
            a.delete(&format!("shared/b{i}"), None).await.unwrap();
        }
    }
    let ea = take_events(&mut wa, 24).await;
    let eb = take_events(&mut wb, 24).await;
    assert_eq!(ea, eb, "both clients see the same events in the same order");
    assert_eq!(a.list("shared/").await.unwrap().0, b.list("shared/").await.unwrap().0);
    assert_eq!(b.get("shared/a3").await.unwrap().unwrap().value, vec![3]);
}

/// A reflector follows live changes and its cache equals a fresh listing.
pub async fn reflector_follows(s: &AnyStore) {
    s.put("refl/seed", b"s".to_vec(), None).await.unwrap();
    let mut r = Reflector::new(s.clone(), "refl/", fast_reflector());
    let first = r.next().await;
    assert!(matches!(first, SyncEvent::Put { ref kv, prev: None } if kv.key == "refl/seed"), "{first:?}");
    assert!(matches!(r.next().await, SyncEvent::InSync { .. }));
    assert!(r.is_synced());

    s.put("refl/a", b"1".to_vec(), None).await.unwrap();
    s.put("refl/a", b"2".to_vec(), None).await.unwrap();
    s.put("other/x", b"x".to_vec(), None).await.unwrap();
    let rev = s.delete("refl/seed", None).await.unwrap().revision;
    let seen = converge(&mut r, rev).await;
    assert!(
        seen.iter().any(|e| matches!(e, SyncEvent::Delete { key, prev, .. } if key == "refl/seed" && prev.value == b"s")),
        "{seen:#?}"
    );
    assert_eq!(r.get("refl/a").unwrap().value, b"2");
    assert!(r.get("other/x").is_none());
}

/// The watcher was away, a key was deleted and the history compacted: resuming must report the
/// compaction, and the reflector must relist and synthesise the missed delete.
pub async fn resume_after_compaction(s: &AnyStore) {
    for k in ["a", "b", "c", "d"] {
        s.put(&format!("comp/{k}"), k.as_bytes().to_vec(), None).await.unwrap();
    }
    let mut r = Reflector::new(s.clone(), "comp/", fast_reflector());
    let synced_at = s.revision().await.unwrap();
    converge(&mut r, synced_at).await;
    let (snapshot, snap_rev) = (r.items().values().cloned().collect::<Vec<_>>(), r.revision());
    drop(r);

    // While away: the missed delete, a modification, a creation, unrelated churn.
    s.delete("comp/b", None).await.unwrap();
    s.put("comp/c", b"c2".to_vec(), None).await.unwrap();
    s.put("comp/e", b"e".to_vec(), None).await.unwrap();
    for i in 0..5 {
        s.put("unrelated", vec![i], None).await.unwrap();
    }
    let now = s.revision().await.unwrap();
    s.compact(now).await.unwrap();

    // A raw watch from the old revision reports the compaction explicitly.
    let err = match s.watch("comp/", snap_rev).await {
        Err(e) => e,
        Ok(mut w) => match tokio::time::timeout(SOON, w.next()).await.expect("watch reports something") {
            Some(Err(e)) => e,
            other => panic!("expected a compaction error, got {other:?}"),
        },
    };
    match err {
        StoreError::Compacted { requested, compact_revision } => {
            assert_eq!(requested, snap_rev);
            assert!(compact_revision > snap_rev + 1, "{compact_revision} vs {snap_rev}");
        }
        e => panic!("expected Compacted, got {e:?}"),
    }

    let mut r = Reflector::resume(s.clone(), "comp/", snapshot, snap_rev, fast_reflector());
    assert_eq!(r.get("comp/b").unwrap().value, b"b", "starts from the stale snapshot");
    let seen = converge(&mut r, now).await;
    assert!(
        seen.iter().any(|e| matches!(e, SyncEvent::Delete { key, revision, .. } if key == "comp/b" && *revision >= now)),
        "the missed delete is synthesised: {seen:#?}"
    );
    assert!(seen.iter().any(|e| matches!(e, SyncEvent::InSync { .. })), "{seen:#?}");
    assert!(!seen.iter().any(|e| matches!(e, SyncEvent::Put { kv, .. } if kv.key == "comp/a")), "unchanged keys are not re-reported");
    let keys: Vec<_> = r.items().keys().map(String::as_str).collect();
    assert_eq!(keys, ["comp/a", "comp/c", "comp/d", "comp/e"]);
    assert_eq!(r.get("comp/c").unwrap().value, b"c2");

    // And it keeps following.
    let rev = s.put("comp/f", b"f".to_vec(), None).await.unwrap();
    converge(&mut r, rev).await;
    assert!(r.get("comp/f").is_some());
}
