//! The API server: Kubernetes-style REST over HTTP/1.1 on a Unix socket, and optionally on TCP with TLS
//! ([`listener::TlsListener`], certificates from [`crate::tls`]) or, for loopback only, plain HTTP.
//!
//! * `/api/v1/...` (core Namespace, Pod) and `/apis/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>]`:
//!   GET (one, list with `?labelSelector=`, `?watch=true` newline-delimited events), POST (create), PUT
//!   (create-or-replace; a stale `metadata.resourceVersion` is 409), DELETE.
//! * `/porin/v1/apply` and `/porin/v1/delete`: many documents, one store transaction, all or nothing;
//!   `/porin/v1/preview`: the flows an apply would flip, nothing written ([`preview`]).
//! * `/porin/v1/audit`, `/porin/v1/tokens`, `/porin/v1/status`.
//! * `/porin/v1/flows` (`porin observe`: NDJSON, `?follow=true` streams) and `/metrics` (OpenMetrics).
//! * `/porin/v1/alerts` (`porin alerts`: NDJSON, `?follow=true` streams) and
//!   `/porin/v1/threatfeeds/{name}/push` (`porin threatfeed push`).
//!
//! Every request is authenticated ([`crate::auth`]) and every accepted change is written together with its
//! audit record in one transaction ([`write::commit`]).

pub mod alerts;
pub mod binding;
pub mod captures;
pub mod guard;
pub mod console;
pub mod error;
pub mod flows;
pub mod health;
pub mod kube;
pub mod listener;
mod openapi_pb;
pub mod porin_routes;
pub mod preview;
pub mod promote;
pub mod reports;
pub mod recommend;
pub mod recommendations;
pub mod review;
pub mod resources;
pub mod respond;
pub mod session;
pub mod sources;
pub mod threatfeeds;
pub mod ui;
pub mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::IncomingStream;
use porin_store::{AnyStore, KeyValue, Store};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::engine::Snapshot;
use crate::auth::{Identity, Role, TokenRecord, token_key};
pub use error::ApiError;

/// Everything the handlers share. Owned state (the cache, the policy) belongs to the engine task; the API only
/// reads its published snapshot.
pub struct ApiState {
    pub store: AnyStore,
    pub store_kind: &'static str,
    /// Which datastore, for messages: `etcd at http://...` or `embedded store at /var/lib/porin/store`.
    pub store_desc: String,
    pub node: String,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Tokens seen while the store was reachable, so callers stay authenticated (read-only) during an outage.
    pub token_cache: Mutex<HashMap<String, TokenRecord>>,
    /// What the node reconciler last published (`porin status`).
    pub dataplane: Arc<dyn sources::ReconcilerStatus>,
    /// Flow visibility (agents only): `porin observe`, `/metrics`, the `flows` part of status.
    pub flows: Option<Arc<dyn sources::FlowSource>>,
    /// Packet capture on this node (agents with a dataplane only).
    pub captures: Option<Arc<crate::capture::CaptureService>>,
    /// Held by [`write::commit`] from its first read to its transaction: writes on this agent are checked
    /// (guards, scope) and committed one at a time.
    pub write_lock: tokio::sync::Mutex<()>,
    /// The guard check's decoded stored objects, by key and revision ([`guard`]).
    pub guard_decode: Mutex<guard::GuardCache>,
    /// This agent's alert log ([`crate::alerts`]).
    pub alerts: Arc<crate::alerts::AlertLog>,
}

pub type Shared = Arc<ApiState>;

/// Who is on the other end of a connection: the peer's uid on the Unix socket, nothing on TCP.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub uid: Option<u32>,
    /// The connection is TLS (the console's session cookie is then `Secure`).
    pub tls: bool,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerInfo {
    fn connect_info(s: IncomingStream<'_, UnixListener>) -> Self {
        PeerInfo { uid: s.io().peer_cred().ok().map(|c| c.uid()), tls: false }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for PeerInfo {
    fn connect_info(_: IncomingStream<'_, TcpListener>) -> Self {
        PeerInfo { uid: None, tls: false }
    }
}

impl ApiState {
    /// True when the engine's reflector currently reaches the store.
    pub fn connected(&self) -> bool {
        self.snapshot.borrow().connected
    }

    /// Whether the engine's cache can answer for `prefix`: only resources are reflected. Tokens and the audit
    /// trail are not, and an empty answer from the cache would be a lie.
    fn cache_covers(&self, prefix: &str) -> bool {
        prefix.starts_with(crate::registry::keys::RESOURCES) && self.snapshot.borrow().synced
    }

    /// 503 for a read the cache cannot answer while the datastore is unreachable.
    pub fn unreachable(&self, what: &str) -> ApiError {
        let s = self.snapshot.borrow();
        ApiError::unavailable(format!(
            "datastore {} is unreachable{}: {what} is only served while it is connected (the resources are served \
             read-only from the last known state)",
            self.store_desc,
            s.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        ))
    }

    /// Cached items under `prefix` (used while the datastore is unreachable).
    pub fn cached(&self, prefix: &str) -> (Vec<KeyValue>, u64) {
        let s = self.snapshot.borrow().clone();
        let items = s.items.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.clone()).collect();
        (items, s.revision)
    }

    /// List from the store, or from the engine's cache when the store is unreachable.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), ApiError> {
        let covered = self.cache_covers(prefix);
        if !self.connected() && covered {
            return Ok(self.cached(prefix));
        }
        match self.store.list(prefix).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_unavailable() && covered => Ok(self.cached(prefix)),
            Err(e) if e.is_unavailable() => Err(self.unreachable(&describe(prefix))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, ApiError> {
        let covered = self.cache_covers(key);
        if !self.connected() && covered {
            return Ok(self.snapshot.borrow().items.get(key).cloned());
        }
        match self.store.get(key).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_unavailable() && covered => Ok(self.snapshot.borrow().items.get(key).cloned()),
            Err(e) if e.is_unavailable() => Err(self.unreachable(&describe(key))),
            Err(e) => Err(e.into()),
        }
    }

    async fn authenticate(&self, bearer: Option<&str>, peer: &PeerInfo) -> Result<Identity, ApiError> {
        if let Some(tok) = bearer {
            let key = token_key(tok);
            let rec = match self.store.get(&key).await {
                Ok(Some(kv)) => {
                    let rec: TokenRecord = serde_json::from_slice(&kv.value)
                        .map_err(|e| ApiError::internal(format!("token record {key}: {e}")))?;
                    self.token_cache.lock().unwrap().insert(key.clone(), rec.clone());
                    Some(rec)
                }
                Ok(None) => None,
                Err(e) if e.is_unavailable() => match self.token_cache.lock().unwrap().get(&key) {
                    Some(r) => Some(r.clone()),
                    None => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            };
            return match rec {
                Some(r) if r.expires.is_some_and(|t| t <= crate::timefmt::now_secs()) => Err(ApiError::unauthorized(format!(
                    "token {:?} expired at {}",
                    r.name,
                    crate::timefmt::rfc3339(r.expires.unwrap_or_default())
                ))),
                Some(r) => Ok(Identity { user: format!("token:{}", r.name), role: r.role, token_id: Some(crate::auth::token_id(&key)) }),
                None => Err(ApiError::unauthorized("invalid bearer token")),
            };
        }
        match peer.uid {
            Some(0) => Ok(Identity { user: "uid:0".into(), role: Role::Admin, token_id: None }),
            Some(uid) => Err(ApiError::unauthorized(format!("uid {uid} needs a bearer token (--token / PORIN_TOKEN)"))),
            None => Err(ApiError::unauthorized("a bearer token is required (--token / PORIN_TOKEN)")),
        }
    }
}

/// What lives under a key, for messages.
fn describe(key: &str) -> String {
    if key.starts_with(crate::registry::keys::AUDIT) {
        "the audit trail".into()
    } else if key.starts_with(crate::registry::keys::TOKENS) {
        "token data".into()
    } else {
        format!("{key:?}")
    }
}

async fn authn(State(st): State<Shared>, ConnectInfo(peer): ConnectInfo<PeerInfo>, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|s| s.trim().to_string());
    match st.authenticate(bearer.as_deref(), &peer).await {
        Ok(id) => {
            let mut req = match admit(&id, req).await {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            };
            req.extensions_mut().insert(id);
            next.run(req).await
        }
        Err(e) => e.into_response()
    }
}

/// Request body budget of an admin (bytes). A 10k-object apply is about 5 MiB.
pub const MAX_BODY_ADMIN: usize = 64 << 20;
/// Request body budget of a scoped token (bytes).
pub const MAX_BODY_SCOPED: usize = 8 << 20;
/// Request body budget of a cni token (bytes): a WorkloadEndpoint or a Pod status at a time.
pub const MAX_BODY_CNI: usize = 1 << 20;
/// Documents (after `kind: List` expansion) one request may carry: admin, scoped, cni.
pub const MAX_DOCS_ADMIN: usize = 200_000;
pub const MAX_DOCS_SCOPED: usize = 2_000;
pub const MAX_DOCS_CNI: usize = 64;

/// The body budget of a request: nothing for reads and for read-only tokens.
pub fn body_limit(role: &Role, method: &Method) -> usize {
    if matches!(*method, Method::GET | Method::HEAD) {
        return 0;
    }
    match role {
        Role::Admin => MAX_BODY_ADMIN,
        Role::Scoped { .. } => MAX_BODY_SCOPED,
        Role::Cni => MAX_BODY_CNI,
        Role::ReadOnly => 0,
    }
}

/// How many documents one request of this caller may carry.
pub fn max_documents(role: &Role) -> usize {
    match role {
        Role::Admin => MAX_DOCS_ADMIN,
        Role::Scoped { .. } => MAX_DOCS_SCOPED,
        Role::Cni => MAX_DOCS_CNI,
        Role::ReadOnly => 0,
    }
}

/// 413 for a request with more documents than the caller's budget (checked before validation and commit).
pub fn check_documents(id: &Identity, n: usize) -> Result<(), ApiError> {
    let max = max_documents(&id.role);
    if n > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request carries {n} documents; {} may send at most {max} per request: split it", id.user),
        ));
    }
    Ok(())
}

/// Before any byte of the body is read: refuse what the caller may never do (a read-only token's write, a
/// non-admin's token request: 403), and a declared length over the caller's budget (413). Then buffer the
/// body within that budget (413 as soon as it is exceeded), so handlers only ever see bounded bodies.
async fn admit(id: &Identity, req: Request) -> Result<Request, ApiError> {
    let method = req.method().clone();
    let write = !matches!(method, Method::GET | Method::HEAD);
    if write && id.role == Role::ReadOnly {
        return Err(ApiError::forbidden(format!("{} has a read-only token: {method} is a write", id.user)));
    }
    if req.uri().path().starts_with("/porin/v1/tokens") && !id.is_admin() {
        return Err(ApiError::forbidden(format!("{} may not create tokens (admin only)", id.user)));
    }
    let limit = body_limit(&id.role, &method);
    let too_large = |what: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("{what}; {} may send at most {limit} bytes in a {method} request body", id.user),
        )
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > limit as u64
    {
        return Err(too_large(format!("the request body is {n} bytes")));
    }
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large(format!("the request body exceeds {limit} bytes")));
        }
        Err(e) => return Err(ApiError::bad_request(format!("reading the request body: {e}"))),
    };
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/{*rest}", any(resources::handle))
        .route("/apis/{*rest}", any(resources::handle))
        // kubectl: version, discovery, OpenAPI (kube.rs).
        .route("/version", get(kube::version))
        .route("/api", get(kube::core_versions))
        .route("/api/v1", get(kube::core_resources))
        .route("/apis", get(kube::groups))
        .route("/openapi/v2", get(kube::openapi_v2_handler))
        .route("/openapi/v3", get(kube::openapi_v3_root))
        .route("/openapi/v3/{*rest}", get(kube::openapi_v3_doc))
        .route("/porin/v1/apply", post(porin_routes::apply))
        .route("/porin/v1/delete", post(porin_routes::delete))
        .route("/porin/v1/promote", post(promote::promote))
        .route("/porin/v1/preview", post(preview::preview))
        .route("/porin/v1/audit", get(porin_routes::audit))
        .route("/porin/v1/tokens", post(porin_routes::create_token).get(porin_routes::list_tokens))
        .route("/porin/v1/tokens/{name}", axum::routing::delete(porin_routes::revoke_token))
        .route("/porin/v1/status", get(porin_routes::status))
        .route("/porin/v1/quarantine", post(respond::quarantine))
        .route("/porin/v1/release", post(respond::release))
        .route("/porin/v1/block", post(respond::block).get(respond::block_list))
        .route("/porin/v1/unblock", post(respond::unblock))
        .route("/porin/v1/flows", get(flows::flows))
        .route("/porin/v1/reports", get(reports::list))
        .route("/porin/v1/reports/{name}/run", post(reports::run))
        .route("/porin/v1/reports/{name}/{end}", get(reports::get))
        .route("/porin/v1/recommend", get(recommend::handle))
        .route("/porin/v1/threatfeeds/{name}/push", post(threatfeeds::push))
        .route("/porin/v1/alerts", get(alerts::alerts))
        .route("/porin/v1/captures/{ns}/{name}", get(captures::status))
        .route("/porin/v1/captures/{ns}/{name}/files", get(captures::list).delete(captures::clean))
        .route("/porin/v1/captures/{ns}/{name}/files/{file}", get(captures::download))
        .route("/porin/v1/review/unused", get(review::unused))
        .route("/porin/v1/recommendations", get(recommendations::list))
        .route("/porin/v1/recommendations/{ns}/preview", get(recommendations::preview))
        .route("/porin/v1/recommendations/{ns}/{verb}", post(recommendations::act))
        .route("/metrics", get(flows::metrics))
        .fallback(|| async { ApiError::not_found("the server could not find the requested resource") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), authn))
        .layer(DefaultBodyLimit::max(MAX_BODY_ADMIN))
        .merge(console::router(state.clone()))
        // Probes: merged after the layers above, so they need no authentication.
        .merge(health::routes())
        .with_state(state)
}
