//! API handlers in-process: the router called as a service, no socket, with fake status sources.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use porin_agent::api::{ApiState, PeerInfo, router};
use porin_agent::auth::{Role, TokenRecord, token_key};
use porin_agent::engine::Snapshot;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

struct Api {
    app: axum::Router,
    store: porin_store::AnyStore,
    _snap: watch::Sender<Arc<Snapshot>>,
    _tmp: tempfile::TempDir,
}

async fn api(dp_errors: bool) -> Api {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(tmp.path()).await;
    let snap = Snapshot { synced: true, connected: true, ..Default::default() };
    let (tx, rx) = watch::channel(Arc::new(snap));
    let state = Arc::new(common::api_state(store.clone(), rx, dp_errors));
    Api { app: router(state), store, _snap: tx, _tmp: tmp }
}

/// One request as `uid` on the Unix socket (None: over TCP), with an optional bearer token.
async fn call(a: &Api, method: Method, path: &str, uid: Option<u32>, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let mut req = req.body(body).unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerInfo { uid, tls: false }));
    let resp = a.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}}})
}

#[tokio::test]
async fn status_reads_the_reconciler_through_its_trait() {
    let a = api(true).await;
    let (code, v) = call(&a, Method::GET, "/porin/v1/status", Some(0), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["dataplane"]["mode"], "fake");
    assert_eq!(v["health"], "degraded: dataplane errors (affected endpoints deny)");
    assert_eq!(v["node"], "n0");
    assert!(v["flows"].is_null(), "no flow source");
    let ok = api(false).await;
    let (_, v) = call(&ok, Method::GET, "/porin/v1/status", Some(0), None, None).await;
    assert_eq!(v["health"], "ok", "{v}");
}

#[tokio::test]
async fn callers_without_credentials_are_refused() {
    let a = api(false).await;
    let (code, v) = call(&a, Method::GET, "/api/v1/namespaces/shop/pods", Some(1000), None, None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["message"].as_str().unwrap().contains("uid 1000 needs a bearer token"), "{v}");
    let (code, _) = call(&a, Method::GET, "/api/v1/namespaces/shop/pods", None, None, None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "TCP without a token");
    let (code, _) = call(&a, Method::GET, "/api/v1/namespaces/shop/pods", None, Some("not-a-token"), None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn create_then_read_back_with_its_resource_version() {
    let a = api(false).await;
    let (code, created) = call(&a, Method::POST, "/api/v1/namespaces/shop/pods", Some(0), None, Some(pod("web"))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let (code, got) = call(&a, Method::GET, "/api/v1/namespaces/shop/pods/web", Some(0), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(got["metadata"]["labels"]["app"], "web");
    // Creating it again conflicts; nothing changes.
    let (code, _) = call(&a, Method::POST, "/api/v1/namespaces/shop/pods", Some(0), None, Some(pod("web"))).await;
    assert_eq!(code, StatusCode::CONFLICT);
    // Every accepted change has its audit record.
    let (code, audit) = call(&a, Method::GET, "/porin/v1/audit", Some(0), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(audit.to_string().contains("web"), "{audit}");
}

#[tokio::test]
async fn a_read_only_token_reads_but_never_writes() {
    let a = api(false).await;
    let rec = TokenRecord { name: "viewer".into(), role: Role::ReadOnly, created: "2026-01-01T00:00:00Z".into(), expires: None };
    common::put(&a.store, &token_key("viewer-secret"), &serde_json::to_string(&rec).unwrap()).await;
    let (code, _) = call(&a, Method::GET, "/api/v1/namespaces/shop/pods", None, Some("viewer-secret"), None).await;
    assert_eq!(code, StatusCode::OK);
    let (code, v) = call(&a, Method::POST, "/api/v1/namespaces/shop/pods", None, Some("viewer-secret"), Some(pod("x"))).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    let (code, list) = call(&a, Method::GET, "/api/v1/namespaces/shop/pods", Some(0), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "nothing was written: {list}");
    // An expired token is refused outright.
    let old = TokenRecord { expires: Some(1), ..rec };
    common::put(&a.store, &token_key("old-secret"), &serde_json::to_string(&old).unwrap()).await;
    let (code, v) = call(&a, Method::GET, "/porin/v1/status", None, Some("old-secret"), None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
}

#[tokio::test]
async fn flows_need_a_flow_source() {
    let a = api(false).await;
    let (code, v) = call(&a, Method::GET, "/porin/v1/flows", Some(0), None, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(v["message"].as_str().unwrap().contains("flow visibility runs in `porin agent`"), "{v}");
}

/// Capture files: a scoped token reaches only its namespace's; names that are not Kubernetes names (`..`, a
/// '/') are refused before they become paths, so no request reads or deletes outside a capture's directory.
#[tokio::test]
async fn capture_files_stay_inside_their_capture_and_their_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(tmp.path()).await;
    let (_tx, rx) = watch::channel(Arc::new(Snapshot { synced: true, connected: true, ..Default::default() }));
    let dir = tmp.path().join("captures");
    let opts = porin_agent::capture::CaptureOptions { node: "n0".into(), dir: dir.clone(), pin_dir: tmp.path().join("no-bpf") };
    let svc = porin_agent::capture::CaptureService::start(opts, rx.clone()).unwrap();
    let state = Arc::new(ApiState { captures: Some(svc), ..common::api_state(store.clone(), rx, false) });
    let a = Api { app: router(state), store, _snap: _tx, _tmp: tmp };
    for (ns, name) in [("shop", "web"), ("bank", "vault")] {
        std::fs::create_dir_all(dir.join(ns).join(name)).unwrap();
        std::fs::write(dir.join(ns).join(name).join("p-0.pcap"), b"pcap").unwrap();
    }
    let rec = TokenRecord {
        name: "shop".into(),
        role: Role::Scoped { namespaces: vec!["shop".into()], tiers: vec!["default".into()] },
        created: "2026-01-01T00:00:00Z".into(),
        expires: None,
    };
    common::put(&a.store, &token_key("shop-secret"), &serde_json::to_string(&rec).unwrap()).await;
    let shop = Some("shop-secret");
    let (code, v) = call(&a, Method::GET, "/porin/v1/captures/shop/web/files", None, shop, None).await;
    assert_eq!((code, v["files"][0]["name"].as_str()), (StatusCode::OK, Some("p-0.pcap")), "{v}");
    for (m, path) in [
        (Method::GET, "/porin/v1/captures/bank/vault/files"),
        (Method::GET, "/porin/v1/captures/bank/vault/files/p-0.pcap"),
        (Method::DELETE, "/porin/v1/captures/bank/vault/files"),
        (Method::GET, "/porin/v1/captures/bank/vault"),
    ] {
        let (code, v) = call(&a, m.clone(), path, None, shop, None).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{m} {path}: {v}");
    }
    // `..` as the capture name would be captures/shop/.. = captures/shop's parent's child: the whole shop
    // namespace, or with ns `..` everything. Refused, for admins too.
    for (m, path) in [
        (Method::DELETE, "/porin/v1/captures/shop/%2e%2e/files"),
        (Method::DELETE, "/porin/v1/captures/%2e%2e/bank/files"),
        (Method::GET, "/porin/v1/captures/shop/%2e%2e/files"),
        (Method::GET, "/porin/v1/captures/shop/web%2f..%2f..%2fbank%2fvault/files"),
    ] {
        let (code, v) = call(&a, m.clone(), path, Some(0), None, None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{m} {path}: {v}");
    }
    let (code, v) = call(&a, Method::GET, "/porin/v1/captures/shop/web/files/..%2f..%2fbank%2fvault%2fp-0.pcap", Some(0), None, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "only names the directory lists: {v}");
    assert!(dir.join("bank/vault/p-0.pcap").exists() && dir.join("shop/web/p-0.pcap").exists());
    // The tenant cleans its own (the capture is not running here).
    let (code, v) = call(&a, Method::DELETE, "/porin/v1/captures/shop/web/files", None, shop, None).await;
    assert_eq!((code, v["removed"][0].as_str()), (StatusCode::OK, Some("p-0.pcap")), "{v}");
    assert!(!dir.join("shop/web").exists() && dir.join("bank/vault/p-0.pcap").exists());
}
