//! Incident response through the API in-process (no socket): who may quarantine, release, block; the reserved
//! objects; the alerts and audit records the commands leave.

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
    alerts: Arc<porin_agent::alerts::AlertLog>,
}

async fn api(dp_errors: bool) -> Api {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(tmp.path()).await;
    let alerts = Arc::new(porin_agent::alerts::AlertLog::new("test", 100));
    let snap = Snapshot { synced: true, connected: true, ..Default::default() };
    let (tx, rx) = watch::channel(Arc::new(snap));
    let state = Arc::new(ApiState { alerts: alerts.clone(), ..common::api_state(store.clone(), rx, dp_errors) });
    Api { app: router(state), store, _snap: tx, _tmp: tmp, alerts }
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

const CLUSTER: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ops}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: app, labels: {app: client}}\nstatus: {podIP: 10.0.0.1}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: tool, namespace: ops, labels: {app: tool}}\nstatus: {podIP: 10.0.0.2}\n";

async fn apply(a: &Api, uid: Option<u32>, token: Option<&str>, yaml: &str) -> (StatusCode, Value) {
    let mut req = Request::builder().method(Method::POST).uri("/porin/v1/apply");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req.body(Body::from(yaml.to_string())).unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerInfo { uid, tls: false }));
    let resp = a.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn scoped(a: &Api) -> &'static str {
    let rec = TokenRecord {
        name: "team-app".into(),
        role: Role::Scoped { namespaces: vec!["app".into()], tiers: vec!["default".into()] },
        created: "2026-01-01T00:00:00Z".into(),
        expires: None,
    };
    common::put(&a.store, &token_key("team-secret"), &serde_json::to_string(&rec).unwrap()).await;
    "team-secret"
}

fn msg(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn quarantine_is_audited_alerted_and_only_an_admin_releases() {
    let a = api(false).await;
    assert_eq!(apply(&a, Some(0), None, CLUSTER).await.0, StatusCode::OK);
    let team = scoped(&a).await;

    // A typo is not a quarantine of nothing.
    let (code, v) = call(&a, Method::POST, "/porin/v1/quarantine", Some(0), None, Some(json!({"namespace": "app", "pod": "nope"}))).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    // The team may isolate its own workload, not another namespace's.
    let (code, v) = call(&a, Method::POST, "/porin/v1/quarantine", None, Some(team), Some(json!({"namespace": "ops", "pod": "tool"}))).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    let (code, v) =
        call(&a, Method::POST, "/porin/v1/quarantine", None, Some(team), Some(json!({"namespace": "app", "pod": "client", "reason": "beaconing"}))).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let alerts = a.alerts.list_after(0);
    assert_eq!(alerts.len(), 1);
    let al = &alerts[0];
    assert_eq!(al.kind, Some(porin_agent::alerts::AlertKind::Quarantine));
    assert_eq!(al.name, "app/client");
    assert_eq!(al.actor.as_deref(), Some("token:team-app"));
    assert_eq!(al.detail.get("reason").map(String::as_str), Some("beaconing"));
    // Audited under the command's verb, as the caller.
    let (_, audit) = call(&a, Method::GET, "/porin/v1/audit", Some(0), None, None).await;
    let rec = audit["items"].as_array().unwrap().iter().find(|r| r["verb"] == "quarantine").expect("an audit record of the quarantine");
    assert_eq!(rec["user"], "token:team-app");
    let kinds: Vec<&str> = rec["entries"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"Quarantine") && kinds.contains(&"Tier") && kinds.contains(&"GlobalNetworkPolicy"), "{kinds:?}");

    // The team cannot undo it: not by the command, not by deleting the record, not by re-applying the pod
    // with the engine's label, not by a policy in the quarantine tier.
    let (code, v) = call(&a, Method::POST, "/porin/v1/release", None, Some(team), Some(json!({"namespace": "app", "pod": "client"}))).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    assert!(msg(&v).contains("admin only"), "{v}");
    let del = "apiVersion: porin.io/v1\nkind: Quarantine\nmetadata: {name: client, namespace: app}\n";
    let mut req = Request::builder().method(Method::POST).uri("/porin/v1/delete").header("authorization", format!("Bearer {team}"));
    req = req.header("content-type", "application/yaml");
    let mut req = req.body(Body::from(del)).unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerInfo { uid: None, tls: false }));
    let resp = a.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (code, v) = apply(&a, Some(0), None, del).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "not even an admin writes a Quarantine directly: {v}");
    let labelled = CLUSTER.replace("labels: {app: client}", "labels: {app: client, porin.io/quarantined: \"false\"}");
    let (code, v) = apply(&a, None, Some(team), &labelled).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    let sneaky = "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: porin-quarantine.out}\nspec: {tier: porin-quarantine, selector: all(), types: [Egress], egress: [{action: Allow}]}\n";
    let (code, v) = apply(&a, Some(0), None, sneaky).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    assert!(msg(&v).contains("reserved"), "{v}");
    let tier = "apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: porin-quarantine}\nspec: {order: 1, defaultAction: Pass}\n";
    let (code, v) = apply(&a, Some(0), None, tier).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");

    // The admin releases: the record goes, an alert says so.
    let (code, v) = call(&a, Method::POST, "/porin/v1/release", Some(0), None, Some(json!({"namespace": "app", "pod": "client"}))).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(a.alerts.raised(porin_agent::alerts::AlertKind::Release), 1);
    let (code, _) = call(&a, Method::POST, "/porin/v1/release", Some(0), None, Some(json!({"namespace": "app", "pod": "client"}))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn block_is_admin_only_validated_listed_and_alerted() {
    let a = api(false).await;
    assert_eq!(apply(&a, Some(0), None, CLUSTER).await.0, StatusCode::OK);
    let team = scoped(&a).await;
    let (code, _) = call(&a, Method::POST, "/porin/v1/block", None, Some(team), Some(json!({"cidrs": ["203.0.113.7"]}))).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // A bad entry names itself and blocks nothing.
    let (code, v) = call(&a, Method::POST, "/porin/v1/block", Some(0), None, Some(json!({"cidrs": ["203.0.113.7", "300.1.1.1/8"]}))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(msg(&v).contains("cidrs[1]"), "{v}");
    assert_eq!(a.alerts.raised(porin_agent::alerts::AlertKind::Block), 0);
    let (code, v) =
        call(&a, Method::POST, "/porin/v1/block", Some(0), None, Some(json!({"cidrs": ["203.0.113.7", "198.51.100.0/24"], "reason": "miner"}))).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let al = &a.alerts.list_after(0)[0];
    assert_eq!(al.kind, Some(porin_agent::alerts::AlertKind::Block));
    assert_eq!(al.addresses, vec!["203.0.113.7/32", "198.51.100.0/24"]);
    assert_eq!(al.actor.as_deref(), Some("uid:0"));
    let (_, list) = call(&a, Method::GET, "/porin/v1/block", Some(0), None, None).await;
    let cidrs: Vec<&str> = list["items"].as_array().unwrap().iter().filter_map(|i| i["cidr"].as_str()).collect();
    assert_eq!(cidrs, vec!["198.51.100.0/24", "203.0.113.7/32"]);
    assert_eq!(list["items"][0]["actor"], "uid:0");
    // The set is the ordinary write path's to read, not to change.
    let set = "apiVersion: porin.io/v1\nkind: GlobalNetworkSet\nmetadata: {name: porin-blocklist, labels: {porin.io/blocklist: \"true\"}}\nspec: {nets: []}\n";
    let (code, _) = apply(&a, Some(0), None, set).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let other = "apiVersion: porin.io/v1\nkind: NetworkSet\nmetadata: {name: mine, namespace: app, labels: {porin.io/blocklist: \"true\"}}\nspec: {nets: [0.0.0.0/0]}\n";
    let (code, v) = apply(&a, None, Some(team), other).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "a tenant could block the world with the block list's label: {v}");
    // Unblock.
    let (code, _) = call(&a, Method::POST, "/porin/v1/unblock", Some(0), None, Some(json!({"cidrs": ["192.0.2.1"]}))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, v) = call(&a, Method::POST, "/porin/v1/unblock", Some(0), None, Some(json!({"cidrs": ["203.0.113.7"]}))).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["blocked"], json!(["198.51.100.0/24"]));
    assert_eq!(a.alerts.raised(porin_agent::alerts::AlertKind::Unblock), 1);
}
