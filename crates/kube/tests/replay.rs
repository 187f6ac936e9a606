//! The datasource against recorded Kubernetes API responses: a local HTTP server plays a script of LIST and
//! WATCH answers (with BOOKMARK events, a 410 Gone, an event that does not decode, a failing LIST) and records
//! what the syncer asked; the test checks the store after each scene and the resourceVersions the syncer used.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use porin_kube::{Resource, SyncOptions, Syncer};
use porin_store::{EmbeddedOptions, EmbeddedStore, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PREFIX: &str = "resources/porin.io/globalnetworkpolicies/";

fn gnp(name: &str, rv: u64, order: u64) -> Value {
    json!({"apiVersion": "porin.io/v1", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name, "resourceVersion": rv.to_string(), "uid": format!("uid-{name}"),
                     "managedFields": [{"manager": "kubectl"}]},
        "spec": {"order": order, "selector": "all()", "ingress": [{"action": "Deny"}]}})
}

fn bad() -> Value {
    let mut v = gnp("bad", 19, 9);
    v["spec"]["selector"] = json!("(((");
    v["spec"]["ingress"] = json!([{"action": "Sometimes"}]);
    v
}

fn list(items: Vec<Value>, rv: u64) -> Value {
    json!({"apiVersion": "porin.io/v1", "kind": "GlobalNetworkPolicyList", "metadata": {"resourceVersion": rv.to_string()}, "items": items})
}

fn ev(ty: &str, obj: Value) -> String {
    json!({"type": ty, "object": obj}).to_string()
}

fn bookmark(rv: u64) -> String {
    ev("BOOKMARK", json!({"apiVersion": "porin.io/v1", "kind": "GlobalNetworkPolicy", "metadata": {"resourceVersion": rv.to_string()}}))
}

/// One scripted answer.
enum Answer {
    Json(u16, Value),
    /// Watch lines (`SLEEP:<ms>` pauses), then the connection closes (or stays open when `hold`).
    Lines(Vec<String>, bool),
}

/// Serves `script` in order to every request (any path), recording `METHOD path?query` of each.
async fn serve(script: Vec<Answer>, seen: Arc<Mutex<Vec<String>>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let script = Arc::new(Mutex::new(script.into_iter()));
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = l.accept().await.unwrap();
            let (script, seen) = (script.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let line = head.lines().next().unwrap_or("").to_string();
                let target = line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                seen.lock().unwrap().push(target);
                let answer = script.lock().unwrap().next();
                match answer {
                    Some(Answer::Json(code, v)) => {
                        let body = v.to_string();
                        let resp = format!(
                            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = sock.write_all(resp.as_bytes()).await;
                    }
                    Some(Answer::Lines(lines, hold)) => {
                        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n").await;
                        for l in lines {
                            // `SLEEP:<ms>`: a pause in the stream, not a line.
                            if let Some(ms) = l.strip_prefix("SLEEP:") {
                                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
                                continue;
                            }
                            let _ = sock.write_all(format!("{l}\n").as_bytes()).await;
                            let _ = sock.flush().await;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if hold {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                    // The script is over: hang (a watch that never sends anything).
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    port
}

/// The store's objects of the prefix: name → spec.order (and the stored object of each, for checks).
async fn state(store: &EmbeddedStore) -> BTreeMap<String, Value> {
    let (items, _) = store.list(PREFIX).await.unwrap();
    items
        .into_iter()
        .map(|kv| (kv.key.trim_start_matches(PREFIX).trim_start_matches("_/").to_string(), serde_json::from_slice(&kv.value).unwrap()))
        .collect()
}

async fn wait_for(store: &EmbeddedStore, what: &str, want: &[(&str, u64)]) -> BTreeMap<String, Value> {
    let t0 = Instant::now();
    loop {
        let s = state(store).await;
        let orders: Vec<(String, u64)> = s.iter().map(|(k, v)| (k.clone(), v["spec"]["order"].as_u64().unwrap_or(0))).collect();
        let want_v: Vec<(String, u64)> = want.iter().map(|(k, o)| (k.to_string(), *o)).collect();
        if orders == want_v {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{what}: store has {orders:?}, want {want_v:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_list_watch_with_bookmarks_410_and_decode_errors() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = vec![
        // 1. The first listing.
        Answer::Json(200, list(vec![gnp("a", 5, 1), gnp("b", 6, 2)], 10)),
        // 2. Watch from 10: an add, a change, a bookmark, then the server ends the stream.
        Answer::Lines(vec![ev("ADDED", gnp("c", 11, 3)), ev("MODIFIED", gnp("a", 12, 10)), bookmark(15)], false),
        // 3. Watch from the bookmark's 15: too old.
        Answer::Lines(
            vec![ev("ERROR", json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "too old resource version: 15 (25)", "reason": "Expired", "code": 410}))],
            false,
        ),
        // 4. The relist: b was deleted and a changed while the watch was gone; "bad" is a valid Kubernetes object
        //    but not a valid Porin policy: it is stored as it is, for the engine to fail closed on.
        Answer::Json(200, list(vec![gnp("a", 20, 20), bad(), gnp("c", 11, 3)], 21)),
        // 5. Watch from 21: an event whose object does not decode. Nothing of it may be applied (c stays).
        Answer::Lines(vec![r#"{"type":"DELETED","object":{"metadata":"not an object"}}"#.to_string()], false),
        // 6. The relist that follows fails (the API is down): the last good state is kept.
        Answer::Json(503, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "unavailable", "reason": "ServiceUnavailable", "code": 503})),
        // 7. It comes back.
        Answer::Json(200, list(vec![gnp("a", 20, 20), bad(), gnp("c", 11, 3)], 30)),
        // 8. Watch from 30: c is deleted; the stream stays open.
        //    (After a pause: the state between the relists stays long enough to be seen on a loaded machine.)
        Answer::Lines(vec!["SLEEP:2000".to_string(), ev("DELETED", gnp("c", 31, 3))], true),
    ];
    let port = serve(script, seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store"), EmbeddedOptions::default()).unwrap();
    // An object the listing does not have is deleted by the first listing (the store follows Kubernetes).
    store.put(&format!("{PREFIX}_/stale"), serde_json::to_vec(&gnp("stale", 1, 99)).unwrap(), None).await.unwrap();
    // Another kind's keys are not touched.
    store.put("resources/porin.io/tiers/_/t", b"{}".to_vec(), None).await.unwrap();

    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let client = porin_kube::Client::try_from(config).unwrap();
    let opts = SyncOptions { min_backoff: Duration::from_millis(50), max_backoff: Duration::from_millis(200), watch_timeout: 5 };
    let syncer = Syncer::new(store.clone(), client, opts);
    let status = syncer.status();
    let res = Resource {
        group: "porin.io".into(),
        version: "v1".into(),
        kind: "GlobalNetworkPolicy".into(),
        plural: "globalnetworkpolicies".into(),
        namespaced: false,
        key_prefix: PREFIX.into(),
    };
    let task = tokio::spawn(syncer.run(vec![res]));

    // After the first list and watch: a changed, c added.
    let s = wait_for(&store, "after the first watch", &[("a", 10), ("b", 2), ("c", 3)]).await;
    let a = &s["a"];
    assert_eq!(a["apiVersion"], "porin.io/v1");
    assert!(a["metadata"].get("resourceVersion").is_none() && a["metadata"].get("managedFields").is_none(), "{a}");
    // After the 410 and the relist: b's delete, missed while away, is applied; then the undecodable event
    // deletes nothing, and the failed listing keeps the state; the final watch deletes c.
    let s = wait_for(&store, "after the relist", &[("a", 20), ("bad", 9), ("c", 3)]).await;
    assert_eq!(s["bad"]["spec"]["selector"], "(((", "an invalid policy is kept as written, not dropped");
    wait_for(&store, "after the last watch", &[("a", 20), ("bad", 9)]).await;
    assert!(store.get("resources/porin.io/tiers/_/t").await.unwrap().is_some(), "another kind was touched");

    let seen = seen.lock().unwrap().clone();
    let q: Vec<String> = seen.iter().map(|s| s.split_once('?').map_or(String::new(), |(_, q)| q.to_string())).collect();
    assert_eq!(seen.len(), 8, "{seen:#?}");
    assert!(!q[0].contains("watch"), "{seen:#?}");
    for (i, rv) in [(1, "10"), (2, "15"), (4, "21"), (7, "30")] {
        assert!(q[i].contains("watch=true") && q[i].contains(&format!("resourceVersion={rv}")), "request {i}: {}", seen[i]);
        assert!(q[i].contains("allowWatchBookmarks=true"), "request {i}: {}", seen[i]);
    }
    for i in [3, 5, 6] {
        assert!(!q[i].contains("watch"), "request {i} should be a list: {}", seen[i]);
    }
    let st = status.borrow().clone();
    let k = &st["globalnetworkpolicies.porin.io"];
    assert_eq!((k.lists, k.bookmarks), (3, 1), "{k:?}");
    assert_eq!(k.resource_version.as_deref(), Some("31"));
    task.abort();
}

#[tokio::test]
async fn an_unreachable_api_keeps_the_stored_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("store"), EmbeddedOptions::default()).unwrap();
    store.put(&format!("{PREFIX}_/kept"), serde_json::to_vec(&gnp("kept", 1, 7)).unwrap(), None).await.unwrap();
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = porin_kube::Client::try_from(kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap())).unwrap();
    let opts = SyncOptions { min_backoff: Duration::from_millis(20), max_backoff: Duration::from_millis(50), watch_timeout: 5 };
    let syncer = Syncer::new(store.clone(), client, opts);
    let mut status = syncer.status();
    let res = Resource {
        group: "porin.io".into(),
        version: "v1".into(),
        kind: "GlobalNetworkPolicy".into(),
        plural: "globalnetworkpolicies".into(),
        namespaced: false,
        key_prefix: PREFIX.into(),
    };
    let task = tokio::spawn(syncer.run(vec![res]));
    // Several failed attempts later the object is still there.
    let t0 = Instant::now();
    loop {
        status.changed().await.unwrap();
        let err = status.borrow().get("globalnetworkpolicies.porin.io").and_then(|k| k.last_error.clone());
        if err.is_some() && t0.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    wait_for(&store, "while unreachable", &[("kept", 7)]).await;
    task.abort();
}
