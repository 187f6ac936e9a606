//! `/livez`, `/healthz` and `/readyz`: probes for a DaemonSet, served **without authentication** (they are
//! merged after the authentication layer and reveal nothing but readiness and its reason).
//!
//! * `/livez` (and `/healthz`, its older name): 200 `ok` while the API serves requests.
//! * `/readyz`: 200 `ok` once the datastore is synced and — for an agent that programs a dataplane — the
//!   first policy revision has been programmed into the kernel; 503 with the reason before that and while
//!   the datastore is unreachable. `?verbose` lists each check, as Kubernetes' API server does.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;

use super::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/livez", get(live)).route("/healthz", get(live)).route("/readyz", get(ready))
}

async fn live() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// Each readiness check: (name, passed, why not).
pub fn readiness(st: &super::ApiState) -> Vec<(&'static str, bool, String)> {
    let snap = st.snapshot.borrow().clone();
    let dp = st.dataplane.status_json();
    let mode = dp["mode"].as_str().unwrap_or("none").to_string();
    let programmed = dp["programmedRevision"].as_u64().unwrap_or(0);
    let programs = mode.starts_with("ebpf");
    vec![
        ("datastore-synced", snap.synced, "the datastore has not been listed yet".to_string()),
        (
            "datastore-connected",
            snap.connected,
            format!("the datastore ({}) is unreachable{}", st.store_desc, snap.last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()),
        ),
        ("dataplane-programmed", !programs || programmed > 0, format!("no policy revision programmed yet (dataplane {mode})")),
    ]
}

async fn ready(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let checks = readiness(&st);
    let ok = checks.iter().all(|(_, pass, _)| *pass);
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if q.contains_key("verbose") {
        let mut body = String::new();
        for (name, pass, why) in &checks {
            if *pass {
                body.push_str(&format!("[+]{name} ok\n"));
            } else {
                body.push_str(&format!("[-]{name} failed: {why}\n"));
            }
        }
        body.push_str(if ok { "readyz check passed\n" } else { "readyz check failed\n" });
        return (code, body).into_response();
    }
    if ok {
        (code, "ok\n").into_response()
    } else {
        let why: Vec<&str> = checks.iter().filter(|c| !c.1).map(|c| c.2.as_str()).collect();
        (code, format!("not ready: {}\n", why.join("; "))).into_response()
    }
}
