//! The etcd backend against a real etcd (started per test on random 127.0.0.1 ports). These fail
//! if `etcd` is not installed, unless `PORIN_SKIP_ETCD=1`.

mod common;

use std::time::{Duration, Instant};

use common::etcd::{EtcdServer, MAX_TXN_OPS};
use common::{SOON, conformance, converge};
use porin_store::{AnyStore, EtcdStore, Op, Reflector, ReflectorOptions, Store, StoreConfig, StoreError, SyncEvent};

async fn client(server: &EtcdServer) -> AnyStore {
    AnyStore::open(StoreConfig::Etcd(server.config())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_crud_occ_txn() {
    let Some(server) = EtcdServer::start() else { return };
    let s = client(&server).await;
    conformance::crud(&s).await;
    conformance::optimistic_concurrency(&s).await;
    conformance::transactions(&s, MAX_TXN_OPS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_watches() {
    let Some(server) = EtcdServer::start() else { return };
    let s = client(&server).await;
    conformance::watches(&s).await;
    conformance::concurrent_writers(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_reflector_and_compaction() {
    let Some(server) = EtcdServer::start() else { return };
    let s = client(&server).await;
    conformance::reflector_follows(&s).await;
    conformance::resume_after_compaction(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_see_the_same_data_and_events() {
    let Some(server) = EtcdServer::start() else { return };
    let a = client(&server).await;
    let b = client(&server).await;
    conformance::two_watchers_agree(&a, &b).await;
}

#[tokio::test]
async fn roots_isolate_tenants() {
    let Some(server) = EtcdServer::start() else { return };
    let a = EtcdStore::connect(server.config().with_root("/a/")).await.unwrap();
    let b = EtcdStore::connect(server.config().with_root("/b/")).await.unwrap();
    a.put("k", b"a".to_vec(), None).await.unwrap();
    b.put("k", b"b".to_vec(), None).await.unwrap();
    assert_eq!(a.get("k").await.unwrap().unwrap().value, b"a");
    let (items, _) = b.list("").await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].key, "k", "keys come back without the root");
}

#[tokio::test]
async fn large_listings_are_paged_consistently() {
    let Some(server) = EtcdServer::start() else { return };
    let s = client(&server).await;
    for chunk in 0..3 {
        let ops = (0..500).map(|i| Op::put(format!("big/{:05}", chunk * 500 + i), vec![0u8; 64])).collect();
        s.txn(vec![], ops).await.unwrap();
    }
    let (items, rev) = s.list("big/").await.unwrap();
    assert_eq!(items.len(), 1500);
    assert!(items.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(rev, s.revision().await.unwrap());
}

/// etcd's own `--max-txn-ops` is enforced too, with a clear error, when the client is configured
/// with a higher limit than the server.
#[tokio::test]
async fn server_side_txn_limit_is_reported() {
    let Some(server) = EtcdServer::start() else { return };
    let s = EtcdStore::connect(server.config().with_max_txn_ops(5000)).await.unwrap();
    let ops: Vec<Op> = (0..MAX_TXN_OPS + 1).map(|i| Op::put(format!("t/{i}"), "v")).collect();
    match s.txn(vec![], ops).await {
        Err(StoreError::TooManyOps { ops, max: None }) => assert_eq!(ops, MAX_TXN_OPS + 1),
        other => panic!("expected TooManyOps, got {other:?}"),
    }
    assert_eq!(s.list("t/").await.unwrap().0.len(), 0);
}

/// etcd goes down: writes fail with Unavailable, the reflector keeps its cache and reports the
/// disconnect; etcd comes back on the same data dir and port: the reflector resumes and
/// converges, including a delete made by another client after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_an_etcd_restart() {
    let Some(mut server) = EtcdServer::start() else { return };
    let cfg = server.config().with_request_timeout(Duration::from_secs(2));
    let s = AnyStore::Etcd(EtcdStore::connect(cfg.clone()).await.unwrap());
    for k in ["a", "b", "c"] {
        s.put(&format!("r/{k}"), k.as_bytes().to_vec(), None).await.unwrap();
    }
    let opts = ReflectorOptions { min_backoff: Duration::from_millis(50), max_backoff: Duration::from_millis(400) };
    let mut r = Reflector::new(s.clone(), "r/", opts);
    let rev = s.revision().await.unwrap();
    converge(&mut r, rev).await;

    server.stop();
    match s.put("r/x", b"x".to_vec(), None).await {
        Err(e @ StoreError::Unavailable { .. }) => assert!(e.is_unavailable()),
        other => panic!("expected Unavailable while etcd is down, got {other:?}"),
    }
    let ev = tokio::time::timeout(SOON, r.next()).await.expect("the reflector notices");
    assert!(matches!(ev, SyncEvent::Disconnected { .. }), "{ev:?}");
    assert_eq!(r.items().len(), 3, "the cache keeps serving the last known state");
    assert_eq!(r.get("r/b").unwrap().value, b"b");

    server.restart();
    // Another client writes once etcd is back (retrying while its connection re-establishes).
    let other = EtcdStore::connect(cfg).await.unwrap();
    let deadline = Instant::now() + SOON;
    let last = loop {
        let res = async {
            other.delete("r/b", None).await?;
            other.put("r/d", b"d".to_vec(), None).await
        }
        .await;
        match res {
            Ok(rev) => break rev,
            Err(StoreError::NotFound { .. }) => break other.put("r/d", b"d".to_vec(), None).await.unwrap(),
            Err(e) if e.is_unavailable() && Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("write after restart failed: {e}"),
        }
    };
    let seen = converge(&mut r, last).await;
    assert!(seen.iter().any(|e| matches!(e, SyncEvent::Delete { key, .. } if key == "r/b")), "{seen:#?}");
    let keys: Vec<_> = r.items().keys().map(String::as_str).collect();
    assert_eq!(keys, ["r/a", "r/c", "r/d"]);
    // The original client works again too.
    s.put("r/e", b"e".to_vec(), None).await.unwrap();
}

/// After an outage in which nothing changed, the reflector still says that it is back: it is the
/// only sign a consumer gets (the agent leaves read-only mode on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnected_is_reported_when_nothing_changed() {
    let Some(mut server) = EtcdServer::start() else { return };
    let s = AnyStore::Etcd(EtcdStore::connect(server.config().with_request_timeout(Duration::from_secs(2))).await.unwrap());
    let rev = s.put("q/a", b"a".to_vec(), None).await.unwrap();
    let opts = ReflectorOptions { min_backoff: Duration::from_millis(50), max_backoff: Duration::from_millis(400) };
    let mut r = Reflector::new(s.clone(), "q/", opts);
    converge(&mut r, rev).await;
    server.stop();
    let ev = tokio::time::timeout(SOON, r.next()).await.expect("the reflector notices");
    assert!(matches!(ev, SyncEvent::Disconnected { .. }), "{ev:?}");
    server.restart();
    let deadline = Instant::now() + SOON;
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), r.next()).await.expect("Reconnected after the restart");
        match ev {
            SyncEvent::Reconnected { revision } => {
                assert_eq!(revision, rev);
                break;
            }
            SyncEvent::Disconnected { .. } => {}
            other => panic!("nothing changed, yet {other:?}"),
        }
    }
    assert_eq!(r.items().len(), 1);
}

#[tokio::test]
async fn unreachable_etcd_is_unavailable_not_a_hang() {
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    if common::etcd::skip_requested() {
        return;
    }
    let cfg = porin_store::EtcdConfig::new([format!("http://127.0.0.1:{port}")]).with_request_timeout(Duration::from_secs(1));
    let s = EtcdStore::connect(cfg).await.expect("connecting is lazy");
    let started = Instant::now();
    assert!(matches!(s.put("k", vec![], None).await, Err(StoreError::Unavailable { .. })));
    assert!(matches!(s.watch("", 0).await, Err(StoreError::Unavailable { .. })));
    assert!(started.elapsed() < SOON);
}

/// The per-request deadline must not cut long-lived watches.
#[tokio::test]
async fn idle_watch_outlives_the_request_timeout() {
    let Some(server) = EtcdServer::start() else { return };
    let s = EtcdStore::connect(server.config().with_request_timeout(Duration::from_millis(500))).await.unwrap();
    let mut w = s.watch("idle/", s.revision().await.unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rev = s.put("idle/k", b"v".to_vec(), None).await.unwrap();
    assert_eq!(common::take_events(&mut w, 1).await[0].revision(), rev);
}

/// etcd batches up to 1000 revisions into one watch response when a watcher catches up; that
/// must not trip gRPC's default 4 MiB receive limit (a reflector would retry it forever).
#[tokio::test]
async fn catching_up_a_large_history_works() {
    let Some(server) = EtcdServer::start() else { return };
    let s = client(&server).await;
    let from = s.revision().await.unwrap();
    for round in 0..6 {
        // ~1.2 MB per transaction, under etcd's default 1.5 MiB request limit.
        let ops = (0..100).map(|i| Op::put(format!("hist/{round}/{i}"), vec![round as u8; 12 * 1024])).collect();
        s.txn(vec![], ops).await.unwrap();
    }
    let mut w = s.watch("hist/", from).await.unwrap();
    let evs = common::take_events(&mut w, 600).await;
    assert_eq!(evs.len(), 600);
    assert_eq!(s.list("hist/").await.unwrap().0.len(), 600);
}
