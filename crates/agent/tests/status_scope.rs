//! `GET /porin/v1/status` for a namespace-scoped token: the node's health and counters, but only its own
//! namespaces' endpoints, their interfaces' errors and undecodable objects; the rest is counted, not named.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use porin_agent::api::sources::ReconcilerStatus;
use porin_agent::api::{PeerInfo, router};
use porin_agent::auth::{Role, TokenRecord, token_key};
use porin_agent::engine::Snapshot;
use porin_agent::registry::Undecodable;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

/// A node with one pod of `shop`, one of `bank`, an interface bound to no pod, each interface with an error,
/// and a node-wide error.
struct TwoTenants;

impl ReconcilerStatus for TwoTenants {
    fn status_json(&self) -> Value {
        let ep = |pod: &str, iface: &str| json!({"pod": pod, "interface": iface, "state": "denied", "error": "refused"});
        json!({
            "mode": "fake",
            "endpoints": [ep("shop/cart", "porin-a"), ep("bank/vault", "porin-b"), ep("", "porin-c")],
            "errors": [
                "porin-a: binding of shop/cart refused",
                "porin-b: binding of bank/vault refused: its address is claimed by bank/teller",
                "porin-c: no compiled policy",
                "policy map full: every endpoint denies",
            ],
        })
    }
    fn has_errors(&self) -> bool {
        true
    }
}

async fn get(app: &axum::Router, token: Option<&str>) -> Value {
    let mut req = Request::builder().method(Method::GET).uri("/porin/v1/status");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerInfo { uid: if token.is_none() { Some(0) } else { None }, tls: false }));
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn a_scoped_token_sees_only_its_namespaces_in_the_status() {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(tmp.path()).await;
    let und = |key: &str, ns: Option<&str>| Undecodable { key: key.into(), error: "bad".into(), namespace: ns.map(str::to_string) };
    let policy = porin_agent::engine::PolicySummary {
        undecodable: vec![und("/porin/v1/NetworkPolicy/bank/secret-rule", Some("bank")), und("/porin/v1/NetworkPolicy/shop/mine", Some("shop"))],
        ..Default::default()
    };
    let snap = Snapshot { synced: true, connected: true, policy: Arc::new(policy), ..Default::default() };
    let (_tx, rx) = watch::channel(Arc::new(snap));
    let state = porin_agent::api::ApiState { dataplane: Arc::new(TwoTenants), ..common::api_state(store.clone(), rx, false) };
    let rec = TokenRecord {
        name: "shop-team".into(),
        role: Role::Scoped { namespaces: vec!["shop".into()], tiers: vec!["app".into()] },
        created: "2026-01-01T00:00:00Z".into(),
        expires: None,
    };
    common::put(&store, &token_key("shop-secret"), &serde_json::to_string(&rec).unwrap()).await;
    let cni = TokenRecord { name: "cni".into(), role: Role::Cni, created: "2026-01-01T00:00:00Z".into(), expires: None };
    common::put(&store, &token_key("cni-secret"), &serde_json::to_string(&cni).unwrap()).await;
    let app = router(Arc::new(state));

    // The admin sees everything (so the test can fail).
    let all = get(&app, None).await;
    assert_eq!(all["dataplane"]["endpoints"].as_array().unwrap().len(), 3, "{all:#}");
    assert!(all.to_string().contains("bank/vault") && all.to_string().contains("secret-rule"), "{all:#}");

    let v = get(&app, Some("shop-secret")).await;
    let text = v.to_string();
    assert!(!text.contains("bank"), "nothing of another namespace is named: {v:#}");
    assert!(!text.contains("porin-c"), "an interface bound to no pod is not shown to a tenant: {v:#}");
    let eps: Vec<&str> = v["dataplane"]["endpoints"].as_array().unwrap().iter().map(|e| e["pod"].as_str().unwrap()).collect();
    assert_eq!(eps, ["shop/cart"], "{v:#}");
    assert_eq!(v["dataplane"]["endpointsOutsideScope"], 2, "{v:#}");
    assert_eq!(
        v["dataplane"]["errors"],
        json!(["porin-a: binding of shop/cart refused", "policy map full: every endpoint denies"]),
        "its own interface's error and the node-wide one: {v:#}"
    );
    assert_eq!(v["undecodable"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["undecodableOutsideScope"], 1, "{v:#}");
    assert!(v["health"].as_str().unwrap().starts_with("degraded"), "{v:#}");

    // The CNI plugin serves every pod of its node and waits in the status for each one's interface.
    let c = get(&app, Some("cni-secret")).await;
    assert_eq!(c["dataplane"]["endpoints"].as_array().unwrap().len(), 3, "the cni token sees the node: {c:#}");
}
