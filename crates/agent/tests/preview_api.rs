//! `POST /porin/v1/preview` and `/porin/v1/console/preview` in-process: the flows an apply would flip, with
//! the apply's validation and authorization, over a fake flow store; nothing is ever written.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use porin_agent::api::sources::FlowSource;
use porin_agent::api::{PeerInfo, router};
use porin_agent::auth::{Role, TokenRecord, token_key};
use porin_agent::engine::Snapshot;
use porin_flow::{FlowEndpoint, FlowRecord, Query};
use porin_store::{AnyStore, Store};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

/// A flow store holding fixed records; queries are answered with the real filter.
struct FakeFlows(Vec<FlowRecord>);

impl FlowSource for FakeFlows {
    fn query(&self, q: &Query) -> Result<Vec<FlowRecord>, porin_flow::Error> {
        Ok(self.0.iter().filter(|r| q.since.is_none_or(|s| r.end_time >= s) && q.filter.matches(r)).cloned().collect())
    }
    fn follow(&self, q: &Query) -> Result<(Vec<FlowRecord>, porin_agent::flows::LiveFeed), porin_flow::Error> {
        Ok((self.query(q)?, tokio::sync::broadcast::channel(1).1))
    }
    fn follow_lagged(&self, _: u64) {}
    fn encode_metrics(&self) -> String {
        String::new()
    }
    fn status(&self) -> Value {
        Value::Null
    }
}

fn endpoint(ns: &str, pod: &str, port: Option<u16>) -> FlowEndpoint {
    let e: FlowEndpoint = serde_json::from_value(json!({"kind": "pod", "namespace": ns, "pod": pod, "labels": {"app": pod}})).unwrap();
    FlowEndpoint { port, ..e }
}

/// An allowed egress record `src` → `dst` tcp/9000 that ended a minute ago.
fn record(src: (&str, &str), dst: (&str, &str)) -> FlowRecord {
    let mut r: FlowRecord = serde_json::from_value(json!({
        "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:01Z", "node": "n0",
        "verdict": "allowed", "direction": "egress", "reporter": "src", "ip_family": "v4",
        "protocol": "tcp", "src": {"kind": "pod"}, "dst": {"kind": "pod"},
        "packets_src_to_dst": 3, "bytes_src_to_dst": 180, "packets_dst_to_src": 2, "bytes_dst_to_src": 120,
        "flows_started": 1, "flows_completed": 1, "flows_open": 0, "open": false, "aggregation": "five_tuple"
    }))
    .expect("a record");
    r.end_time = porin_flow::time::now_unix() - 60_000_000_000;
    r.start_time = r.end_time - 1_000_000_000;
    r.src = endpoint(src.0, src.1, Some(40000));
    r.dst = endpoint(dst.0, dst.1, Some(9000));
    r
}

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: bank}
---
apiVersion: porin.io/v1
kind: Tier
metadata: {name: app}
spec: {order: 100}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: shop, labels: {app: frontend}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: cart, namespace: shop, labels: {app: cart}}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: teller, namespace: bank, labels: {app: teller}}
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: vault, namespace: bank, labels: {app: vault}}
status: {podIP: 10.0.1.2}
"#;

/// Deny every ingress to `app == 'cart'` pods of `ns`.
fn lockdown(ns: &str) -> String {
    format!(
        "apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {{name: cart-lockdown, namespace: {ns}}}\n\
         spec:\n  tier: app\n  selector: app == 'cart'\n  ingress: [{{action: Deny}}]\n"
    )
}

struct Api {
    app: axum::Router,
    store: AnyStore,
    _snap: watch::Sender<Arc<Snapshot>>,
    _tmp: tempfile::TempDir,
}

async fn api() -> Api {
    let tmp = tempfile::tempdir().unwrap();
    let store = common::store(tmp.path()).await;
    let (tx, rx) = watch::channel(Arc::new(Snapshot { synced: true, connected: true, ..Default::default() }));
    let flows = FakeFlows(vec![
        record(("shop", "frontend"), ("shop", "cart")),
        record(("bank", "teller"), ("shop", "cart")),
        record(("bank", "teller"), ("bank", "vault")),
    ]);
    let state = porin_agent::api::ApiState { flows: Some(Arc::new(flows)), ..common::api_state(store.clone(), rx, false) };
    let a = Api { app: router(Arc::new(state)), store, _snap: tx, _tmp: tmp };
    let (code, v) = call(&a, "/porin/v1/apply", None, CLUSTER).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let tokens = [
        ("viewer-secret", "viewer", Role::ReadOnly),
        ("shop-secret", "shop-team", Role::Scoped { namespaces: vec!["shop".into()], tiers: vec!["app".into()] }),
    ];
    for (secret, name, role) in tokens {
        let rec = TokenRecord { name: name.into(), role, created: "2026-01-01T00:00:00Z".into(), expires: None };
        common::put(&a.store, &token_key(secret), &serde_json::to_string(&rec).unwrap()).await;
    }
    a
}

/// POST `body` (YAML) to `path`: as uid 0 on the socket without a token, else over TCP with the token.
async fn call(a: &Api, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut req = Request::builder().method(Method::POST).uri(path).header("content-type", "application/yaml");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerInfo { uid: if token.is_none() { Some(0) } else { None }, tls: false }));
    let resp = a.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn flips(v: &Value) -> Vec<(String, String, bool, bool)> {
    v["flipped"]
        .as_array()
        .unwrap_or_else(|| panic!("no flipped list: {v}"))
        .iter()
        .map(|f| (f["from"].as_str().unwrap().into(), f["to"].as_str().unwrap().into(), f["allowedBefore"] == true, f["allowedAfter"] == true))
        .collect()
}

#[tokio::test]
async fn preview_of_a_deny_shows_the_allowed_flows_flipping_and_writes_nothing() {
    let a = api().await;
    let rev = a.store.revision().await.unwrap();
    for path in ["/porin/v1/preview", "/porin/v1/console/preview?window=1h"] {
        let (code, v) = call(&a, path, None, &lockdown("shop")).await;
        assert_eq!(code, StatusCode::OK, "{path}: {v}");
        let mut got = flips(&v);
        got.sort();
        assert_eq!(
            got,
            vec![("bank/teller".into(), "shop/cart".into(), true, false), ("shop/frontend".into(), "shop/cart".into(), true, false)],
            "{v}"
        );
        assert_eq!((v["allowedToDenied"].as_u64(), v["deniedToAllowed"].as_u64(), v["records"].as_u64()), (Some(2), Some(0), Some(3)), "{v}");
        let after = v["flipped"][0]["after"].as_str().unwrap();
        assert!(after.contains("app|shop/cart-lockdown") && after.ends_with("deny"), "the deciding step names the new policy: {v}");
        assert_eq!(v["items"][0]["action"], "created", "the apply's outcome, as its dry run: {v}");
    }
    // The preview wrote nothing, not even an audit record.
    assert_eq!(a.store.revision().await.unwrap(), rev, "a preview writes nothing");
    let key = porin_agent::registry::keys::object_key(porin_model::Kind::NetworkPolicy, Some("shop"), "cart-lockdown");
    assert!(a.store.get(&key).await.unwrap().is_none());
    // A window outside 1m…24h and an invalid document are refused before anything is evaluated.
    let (code, v) = call(&a, "/porin/v1/preview?window=48h", None, &lockdown("shop")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    let (code, v) = call(&a, "/porin/v1/preview", None, &lockdown("shop").replace("Deny", "Maybe")).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "invalid as apply answers: {v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("request body") && msg.contains("spec.ingress[0].action"), "names the document and the field: {v}");
    assert_eq!(a.store.revision().await.unwrap(), rev);
    // Once applied, the same documents flip nothing more.
    let (code, v) = call(&a, "/porin/v1/apply", None, &lockdown("shop")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert!(a.store.get(&key).await.unwrap().is_some());
    let (code, v) = call(&a, "/porin/v1/preview", None, &lockdown("shop")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(flips(&v), vec![], "{v}");
    assert_eq!(v["items"][0]["action"], "unchanged", "{v}");
}

#[tokio::test]
async fn preview_is_authorized_as_the_apply_would_be() {
    let a = api().await;
    let rev = a.store.revision().await.unwrap();
    // Read-only: 403 on both routes.
    for path in ["/porin/v1/preview", "/porin/v1/console/preview"] {
        let (code, v) = call(&a, path, Some("viewer-secret"), &lockdown("shop")).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(v.get("flipped").is_none());
    }
    // A scoped token may not preview another namespace's policy, nor a global one.
    let (code, v) = call(&a, "/porin/v1/console/preview", Some("shop-secret"), &lockdown("bank")).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    assert!(v.get("flipped").is_none(), "{v}");
    let global = "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: lock-all}\n\
                  spec:\n  tier: app\n  selector: all()\n  ingress: [{action: Deny}]\n";
    let (code, v) = call(&a, "/porin/v1/preview", Some("shop-secret"), global).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    // In its scope it previews, and sees only the flows it may see: the bank client's flow to the cart flips
    // too, but its other end is outside the scope, so it is not listed.
    let (code, v) = call(&a, "/porin/v1/console/preview", Some("shop-secret"), &lockdown("shop")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(flips(&v), vec![("shop/frontend".into(), "shop/cart".into(), true, false)], "{v}");
    assert!(!v.to_string().contains("bank"), "nothing of the other namespace: {v}");
    assert_eq!(a.store.revision().await.unwrap(), rev, "nothing was written by any of it");
}

/// A change a ReachabilityGuard refuses: the preview answers the guard's refusal, as the apply would, and
/// writes nothing (not even the refusal's audit record, which the real apply leaves).
#[tokio::test]
async fn a_guarded_change_is_refused_by_the_preview_without_an_audit_record() {
    let a = api().await;
    let guard = "apiVersion: porin.io/v1\nkind: ReachabilityGuard\nmetadata: {name: frontend-reaches-cart}\n\
                 spec:\n  from: {selector: \"app == 'frontend'\"}\n  to: {selector: \"app == 'cart'\"}\n  ports: [9000]\n  expect: Allow\n";
    let (code, v) = call(&a, "/porin/v1/apply", None, guard).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let rev = a.store.revision().await.unwrap();
    for path in ["/porin/v1/preview", "/porin/v1/console/preview", "/porin/v1/apply?dryRun=All"] {
        let (code, v) = call(&a, path, None, &lockdown("shop")).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains("frontend-reaches-cart"), "{path}: {v}");
        assert_eq!(a.store.revision().await.unwrap(), rev, "{path} wrote something");
    }
    // The real apply is refused too, and that refusal is audited (a write the checks above would have seen).
    let (code, v) = call(&a, "/porin/v1/apply", None, &lockdown("shop")).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(a.store.revision().await.unwrap() > rev, "the refused apply leaves its audit record");
}

/// GET `path` with a token over TCP.
async fn get_as(a: &Api, path: &str, token: &str) -> (StatusCode, Value) {
    let mut req = Request::builder().method(Method::GET).uri(path).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerInfo { uid: None, tls: false }));
    let resp = a.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The recommendation preview shows a scoped token the flips of its namespace, but not the names of the
/// platform's policies that decide them (a tier the token may not read).
#[tokio::test]
async fn the_recommendation_preview_hides_policies_outside_the_scope() {
    let a = api().await;
    let platform = "apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: platform}\nspec: {order: 10}\n---\n\
                    apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: namespace-isolation}\nspec: {order: 200}\n---\n\
                    apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: secret-egress-allow}\n\
                    spec:\n  tier: platform\n  selector: all()\n  types: [Egress]\n  egress: [{action: Allow}]\n---\n\
                    apiVersion: porin.io/v1\nkind: StagedNetworkPolicy\n\
                    metadata: {name: recommendation, namespace: shop, annotations: {policyrecommendation.porin.io/status: Stable}}\n\
                    spec:\n  tier: namespace-isolation\n  stagedAction: Set\n  selector: all()\n  types: [Ingress]\n";
    let (code, v) = call(&a, "/porin/v1/apply", None, platform).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    // The admin sees the platform policy in the deciding steps (so the test can fail).
    let admin = {
        let mut req = Request::builder().method(Method::GET).uri("/porin/v1/recommendations/shop/preview").body(Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo(PeerInfo { uid: Some(0), tls: false }));
        let resp = a.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    assert!(admin.to_string().contains("secret-egress-allow"), "the platform policy decides the egress side: {admin}");
    let (code, v) = get_as(&a, "/porin/v1/recommendations/shop/preview", "shop-secret").await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(flips(&v), vec![("shop/frontend".into(), "shop/cart".into(), true, false)], "{v}");
    assert!(!v.to_string().contains("secret-egress-allow"), "a policy of a tier outside the scope is not named: {v}");
    assert!(v.to_string().contains("outside your scope"), "{v}");
}
