//! The guard check on the API's write path keeps what it decoded and converted across writes (by key and
//! revision). These tests attack that cache: after writes that passed, a pod label change or a policy change that
//! opens the guarded pair is refused (422 naming the guard, the witness pair and the opening rule; nothing
//! written), also when the label change reached the store without the API (the next write sees it).

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use porin_agent::api::{PeerInfo, router};
use porin_agent::engine::Snapshot;
use porin_agent::registry::keys;
use porin_model::Kind;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

async fn call(app: &axum::Router, method: Method, uri: &str, body: Option<&Value>) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    let body = match body {
        Some(b) => Body::from(serde_json::to_vec(b).unwrap()),
        None => Body::empty(),
    };
    let mut req = req.body(body).unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerInfo { uid: Some(0), tls: false }));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn pod(ns: &str, name: &str, labels: Value, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 5432}]}]},
           "status": {"podIP": ip}})
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// pci/db admits only pods labelled `pci-access: "true"` (in any namespace); the guard says nothing outside
/// pci reaches pci/db on 5432.
fn base() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pci"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        pod("pci", "db", json!({"app": "db"}), "10.0.0.10"),
        pod("shop", "web", json!({"app": "web"}), "10.0.0.20"),
        pod("shop", "cart", json!({"app": "cart"}), "10.0.0.21"),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "db-access", "namespace": "pci"},
               "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pci-access": "true"}}}],
                                     "ports": [{"port": 5432}]}]}}),
        json!({"apiVersion": "porin.io/v1", "kind": "ReachabilityGuard", "metadata": {"name": "pci-closed"},
               "spec": {"from": {"namespaceSelector": "kubernetes.io/metadata.name != 'pci'"},
                        "to": {"namespaceSelector": "kubernetes.io/metadata.name == 'pci'", "selector": "app == 'db'"},
                        "ports": [5432], "expect": "Deny"}}),
    ]
}

async fn setup(tmp: &std::path::Path) -> (axum::Router, porin_store::AnyStore, watch::Sender<Arc<Snapshot>>) {
    let store = common::store(tmp).await;
    let (tx, rx) = watch::channel(Arc::new(Snapshot { synced: true, connected: true, ..Default::default() }));
    let app = router(Arc::new(common::api_state(store.clone(), rx, false)));
    let (code, out) = call(&app, Method::POST, "/porin/v1/apply", Some(&list(base()))).await;
    assert!(code.is_success(), "{out}");
    (app, store, tx)
}

fn assert_refused(code: StatusCode, out: &Value, from: &str, rule: &str) {
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let msg = out["message"].as_str().unwrap_or_default();
    assert!(msg.contains("\"pci-closed\""), "names the guard: {msg}");
    assert!(msg.contains(from) && msg.contains("pci/db"), "names the witness pair {from} -> pci/db: {msg}");
    assert!(msg.contains(rule), "names the opening rule {rule}: {msg}");
}

async fn web_labels(app: &axum::Router) -> Value {
    let (code, v) = call(app, Method::GET, "/api/v1/namespaces/shop/pods/web", None).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    v["metadata"]["labels"].clone()
}

#[tokio::test]
async fn a_label_change_that_opens_the_guarded_pair_is_refused_after_cached_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, _store, _tx) = setup(tmp.path()).await;
    // Writes that pass warm the cache (every stored object decoded and converted).
    for i in 0..2 {
        let (code, out) = call(&app, Method::POST, "/porin/v1/apply", Some(&pod("shop", "cart", json!({"app": "cart", "rev": i.to_string()}), "10.0.0.21"))).await;
        assert!(code.is_success(), "{out}");
    }
    // The label change that makes web admitted by db-access.
    let (code, out) = call(&app, Method::POST, "/porin/v1/apply", Some(&pod("shop", "web", json!({"app": "web", "pci-access": "true"}), "10.0.0.20"))).await;
    assert_refused(code, &out, "shop/web", "db-access");
    assert_eq!(web_labels(&app).await, json!({"app": "web"}), "nothing was written");
    // The same as `porin label` writes it: the stored object with the label added, PUT back.
    let (_, mut web) = call(&app, Method::GET, "/api/v1/namespaces/shop/pods/web", None).await;
    web["metadata"]["labels"]["pci-access"] = json!("true");
    let (code, out) = call(&app, Method::PUT, "/api/v1/namespaces/shop/pods/web", Some(&web)).await;
    assert_refused(code, &out, "shop/web", "db-access");
    assert_eq!(web_labels(&app).await, json!({"app": "web"}), "nothing was written");
    // Unrelated writes still pass.
    let (code, out) = call(&app, Method::POST, "/porin/v1/apply", Some(&pod("shop", "cart", json!({"app": "cart", "rev": "9"}), "10.0.0.21"))).await;
    assert!(code.is_success(), "{out}");
}

#[tokio::test]
async fn a_policy_change_that_opens_the_guarded_pair_is_refused_after_cached_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, _store, _tx) = setup(tmp.path()).await;
    let mut policy = base()[5].clone();
    // A change of the policy that keeps the pair closed passes (and is cached) ...
    policy["spec"]["ingress"][0]["ports"] = json!([{"port": 5432}, {"port": 6432}]);
    let (code, out) = call(&app, Method::POST, "/porin/v1/apply", Some(&policy)).await;
    assert!(code.is_success(), "{out}");
    // ... one that admits web does not.
    policy["spec"]["ingress"][0]["from"][0]["podSelector"] = json!({"matchLabels": {"app": "web"}});
    let (code, out) = call(&app, Method::POST, "/porin/v1/apply", Some(&policy)).await;
    assert_refused(code, &out, "shop/web", "db-access");
    let (_, stored) = call(&app, Method::GET, "/apis/networking.k8s.io/v1/namespaces/pci/networkpolicies/db-access", None).await;
    assert_eq!(stored["spec"]["ingress"][0]["from"][0]["podSelector"], json!({"matchLabels": {"pci-access": "true"}}), "nothing was written: {stored}");
    // Deleting the policy opens everything (no policy selects db): refused as well.
    let (code, out) = call(&app, Method::DELETE, "/apis/networking.k8s.io/v1/namespaces/pci/networkpolicies/db-access", None).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
}

/// A label change that reached the store without the API (another writer) is seen by the next write's check:
/// the cache is keyed by revision, so the changed pod is converted again and the unrelated write is refused.
#[tokio::test]
async fn a_change_behind_the_api_is_seen_by_the_next_check() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, store, _tx) = setup(tmp.path()).await;
    let (code, out) = call(&app, Method::POST, "/porin/v1/apply", Some(&pod("shop", "cart", json!({"app": "cart", "rev": "1"}), "10.0.0.21"))).await;
    assert!(code.is_success(), "{out}");
    let key = keys::object_key(Kind::Pod, Some("shop"), "web");
    let mut web = pod("shop", "web", json!({"app": "web", "pci-access": "true"}), "10.0.0.20");
    web["metadata"]["uid"] = json!("u-web");
    common::put(&store, &key, &web.to_string()).await;
    let (code, out) = call(&app, Method::POST, "/porin/v1/apply", Some(&pod("shop", "cart", json!({"app": "cart", "rev": "2"}), "10.0.0.21"))).await;
    assert_refused(code, &out, "shop/web", "db-access");
}
