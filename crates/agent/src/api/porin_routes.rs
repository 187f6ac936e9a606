//! Porin's own endpoints: bulk apply/delete, audit, tokens, status.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use porin_model::Kind;
use porin_store::{Condition, KeyValue, Op, Store, TxnResult};
use serde::Deserialize;
use serde_json::{Value, json};

use super::write::{Change, Intent, commit, known_tiers};
use super::{ApiError, ApiState, Shared};
use crate::audit::{AuditEntry, AuditRecord};
use crate::auth::{Identity, Role, TokenRecord, new_token, token_key};
use crate::registry::keys;

fn parse_body(body: &Bytes) -> Result<Vec<porin_model::Document>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
    porin_model::parse_documents("request body", text).map_err(|e| ApiError::invalid(&e))
}

/// `POST /porin/v1/apply`: a YAML stream, JSON object, JSON array or `List`; every object is created or
/// updated in one transaction, or nothing is.
/// `?dryRun=All` checks everything a commit checks and writes nothing (`porin apply --dry-run=server`).
pub async fn apply(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None => false,
        Some("All") => true,
        Some(v) => return Err(ApiError::bad_request(format!("dryRun={v:?}: the only value is All"))),
    };
    let docs = parse_body(&body)?;
    super::check_documents(&id, docs.len())?;
    let tiers = known_tiers(&st).await?;
    porin_model::validate_set(&docs, &tiers).map_err(|e| ApiError::invalid(&e))?;
    let changes = docs.iter().map(|d| Change::from_doc(d, Intent::Upsert)).collect::<Result<Vec<_>, _>>()?;
    let (revision, items) = super::write::commit_opts(&st, &id, "apply", changes, dry_run).await?;
    Ok(Json(json!({"kind": "ApplyResult", "apiVersion": "porin.io/v1", "revision": revision, "dryRun": dry_run, "items": items})))
}

/// `POST /porin/v1/delete`: delete every object named in the body, atomically.
pub async fn delete(State(st): State<Shared>, Extension(id): Extension<Identity>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let docs = parse_body(&body)?;
    super::check_documents(&id, docs.len())?;
    let changes = docs.iter().map(|d| Change::from_doc(d, Intent::Delete)).collect::<Result<Vec<_>, _>>()?;
    let (revision, items) = commit(&st, &id, "delete", changes).await?;
    Ok(Json(json!({"kind": "ApplyResult", "apiVersion": "porin.io/v1", "revision": revision, "items": items})))
}

/// `GET /porin/v1/audit?since=<epoch seconds>&kind=<Kind>`.
pub async fn audit(State(st): State<Shared>, Extension(id): Extension<Identity>, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    // A scoped caller reads the entries about objects it may read (its namespaces and tiers), never token
    // changes; a record with none of those is left out.
    let view = super::console::View::of(&id);
    let scoped = !matches!(view, super::console::View::All);
    let since: i64 = match q.get("since") {
        Some(s) => s.parse().map_err(|_| ApiError::bad_request(format!("since={s:?}: expected epoch seconds")))?,
        None => i64::MIN,
    };
    // A resource kind, or `Token` (token changes are audited with that kind but are not resources).
    let tokens = q.get("kind").is_some_and(|k| matches!(k.to_ascii_lowercase().as_str(), "token" | "tokens"));
    let kind = match q.get("kind") {
        Some(_) if tokens => None,
        Some(k) => Some(Kind::from_cli(k).ok_or_else(|| ApiError::bad_request(format!("unknown kind {k:?} (a resource kind, or Token)")))?),
        None => None,
    };
    let (items, _) = st.list(keys::AUDIT).await?;
    let mut out = Vec::new();
    for kv in items {
        let Ok(mut rec) = serde_json::from_slice::<AuditRecord>(&kv.value) else { continue };
        if rec.timestamp < since {
            continue;
        }
        if scoped {
            rec.entries.retain(|e| {
                Kind::from_manifest(&e.api_version, &e.kind).is_some_and(|k| view.object(k, e.namespace.as_deref(), &e.name))
            });
            if rec.entries.is_empty() {
                continue;
            }
        }
        if let Some(k) = kind {
            rec.entries.retain(|e| Kind::from_manifest(&e.api_version, &e.kind) == Some(k));
        } else if tokens {
            rec.entries.retain(|e| e.kind == "Token");
        }
        if (kind.is_some() || tokens) && rec.entries.is_empty() {
            continue;
        }
        out.push(rec);
    }
    Ok(Json(json!({"kind": "AuditList", "apiVersion": "porin.io/v1", "items": out})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Lifetime in seconds (None: no expiry).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Replace (revoke) existing tokens of this name in the same transaction.
    #[serde(default)]
    pub rotate: bool,
}

/// Every stored token record: (key, record). A record that does not decode is an error, not skipped.
async fn token_records(st: &ApiState) -> Result<Vec<(KeyValue, TokenRecord)>, ApiError> {
    let (items, _) = st.store.list(keys::TOKENS).await?;
    items
        .into_iter()
        .map(|kv| {
            let rec: TokenRecord = serde_json::from_slice(&kv.value)
                .map_err(|e| ApiError::internal(format!("token record {}: {e}", kv.key)))?;
            Ok((kv, rec))
        })
        .collect()
}

fn token_audit(st: &ApiState, id: &Identity, verb: &str, action: &str, name: &str, before: Option<Value>, after: Option<Value>) -> AuditRecord {
    let now = crate::timefmt::now_secs();
    AuditRecord {
        time: crate::timefmt::rfc3339(now),
        timestamp: now,
        user: id.user.clone(),
        token_id: id.token_id.clone(),
        verb: verb.into(),
        node: st.node.clone(),
        entries: vec![AuditEntry {
            action: action.into(),
            kind: "Token".into(),
            api_version: "porin.io/v1".into(),
            namespace: None,
            name: name.into(),
            before,
            after,
        }],
        refused: None,
    }
}

fn token_json(kv: &KeyValue, rec: &TokenRecord) -> Value {
    let mut v = serde_json::to_value(rec).expect("json");
    v["id"] = Value::String(crate::auth::token_id(&kv.key));
    v["expires"] = rec.expires.map(|t| Value::String(crate::timefmt::rfc3339(t))).unwrap_or(Value::Null);
    v
}

/// `GET /porin/v1/tokens` (admin only): name, id, role, created, expires of every token; never the token.
pub async fn list_tokens(State(st): State<Shared>, Extension(id): Extension<Identity>) -> Result<Json<Value>, ApiError> {
    if !id.is_admin() {
        return Err(ApiError::forbidden(format!("{} may not list tokens (admin only)", id.user)));
    }
    let mut items: Vec<Value> = token_records(&st).await?.iter().map(|(kv, r)| token_json(kv, r)).collect();
    items.sort_by(|a, b| (a["name"].as_str(), a["created"].as_str()).cmp(&(b["name"].as_str(), b["created"].as_str())));
    Ok(Json(json!({"kind": "TokenList", "apiVersion": "porin.io/v1", "items": items})))
}

/// `DELETE /porin/v1/tokens/{name}` (admin only): revoke every token of that name, at once (the next request
/// with it is refused: tokens are looked up in the store on every request).
pub async fn revoke_token(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !id.is_admin() {
        return Err(ApiError::forbidden(format!("{} may not revoke tokens (admin only)", id.user)));
    }
    let gone: Vec<(KeyValue, TokenRecord)> = token_records(&st).await?.into_iter().filter(|(_, r)| r.name == name).collect();
    if gone.is_empty() {
        return Err(ApiError::not_found(format!("token {name:?} not found")));
    }
    let mut conditions = Vec::new();
    let mut ops = Vec::new();
    for (kv, _) in &gone {
        conditions.push(Condition::mod_revision(kv.key.clone(), kv.mod_revision));
        ops.push(Op::delete(kv.key.clone()));
    }
    let claim = format!("{}{name}", keys::TOKEN_NAMES);
    if let Some(c) = st.store.get(&claim).await? {
        conditions.push(Condition::mod_revision(claim.clone(), c.mod_revision));
        ops.push(Op::delete(claim));
    }
    let before = serde_json::to_value(gone.iter().map(|(kv, r)| token_json(kv, r)).collect::<Vec<_>>()).expect("json");
    let audit = token_audit(&st, &id, "token-revoke", "deleted", &name, Some(before), None);
    ops.push(Op::put(crate::audit::new_key(), serde_json::to_vec(&audit).expect("json")));
    match st.store.txn(conditions, ops).await? {
        TxnResult::Committed { .. } => {
            let mut cache = st.token_cache.lock().unwrap();
            for (kv, _) in &gone {
                cache.remove(&kv.key);
            }
            let ids: Vec<String> = gone.iter().map(|(kv, _)| crate::auth::token_id(&kv.key)).collect();
            Ok(Json(json!({"name": name, "revoked": ids})))
        }
        TxnResult::Failed { .. } => Err(ApiError::conflict("the token changed concurrently; nothing was revoked, try again")),
    }
}

/// `POST /porin/v1/tokens` (admin only): create a token; the response is the only place it appears.
pub async fn create_token(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<Value>, ApiError> {
    if !id.is_admin() {
        return Err(ApiError::forbidden(format!("{} may not create tokens (admin only)", id.user)));
    }
    if req.name.is_empty() || !req.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
        return Err(ApiError::bad_request(format!("token name {:?}: use letters, digits, - _ . @", req.name)));
    }
    let role = match req.role.as_str() {
        "admin" => Role::Admin,
        "read-only" => Role::ReadOnly,
        "cni" => Role::Cni,
        "scoped" if req.namespaces.is_empty() && req.tiers.is_empty() => {
            return Err(ApiError::bad_request("a scoped token needs --namespace and/or --tier"));
        }
        "scoped" => Role::Scoped { namespaces: req.namespaces.clone(), tiers: req.tiers.clone() },
        other => return Err(ApiError::bad_request(format!("role {other:?}: expected admin, read-only, scoped or cni"))),
    };
    if req.ttl_seconds == Some(0) {
        return Err(ApiError::bad_request("--ttl must be positive"));
    }
    // Names are unique: a second token of a name only replaces the first (--rotate), in one transaction.
    let existing: Vec<(KeyValue, TokenRecord)> = token_records(&st).await?.into_iter().filter(|(_, r)| r.name == req.name).collect();
    if !existing.is_empty() && !req.rotate {
        return Err(ApiError::already_exists(format!(
            "a token named {:?} exists (id {}); use --rotate to replace it, or revoke it first",
            req.name,
            crate::auth::token_id(&existing[0].0.key)
        )));
    }
    let token = new_token().map_err(|e| ApiError::internal(format!("random: {e}")))?;
    let now = crate::timefmt::now_secs();
    let expires = req.ttl_seconds.map(|t| now.saturating_add(i64::try_from(t).unwrap_or(i64::MAX)));
    let rec = TokenRecord { name: req.name.clone(), role, created: crate::timefmt::rfc3339(now), expires };
    let key = token_key(&token);
    let id_of_new = crate::auth::token_id(&key);
    let mut conditions = vec![Condition::absent(key.clone()), Condition::absent(format!("{}{}", keys::TOKEN_NAMES, req.name))];
    let mut ops = vec![Op::put(key.clone(), serde_json::to_vec(&rec).expect("json"))];
    let before = (!existing.is_empty())
        .then(|| serde_json::to_value(existing.iter().map(|(kv, r)| token_json(kv, r)).collect::<Vec<_>>()).expect("json"));
    for (kv, _) in &existing {
        conditions.push(Condition::mod_revision(kv.key.clone(), kv.mod_revision));
        ops.push(Op::delete(kv.key.clone()));
    }
    // The name's claim: a concurrent create of the same name fails on it instead of making two.
    if let Some(claim) = st.store.get(&format!("{}{}", keys::TOKEN_NAMES, req.name)).await? {
        conditions[1] = Condition::mod_revision(claim.key.clone(), claim.mod_revision);
    }
    ops.push(Op::put(format!("{}{}", keys::TOKEN_NAMES, req.name), id_of_new.clone().into_bytes()));
    let mut after = token_json(&KeyValue { key: key.clone(), value: vec![], create_revision: 0, mod_revision: 0 }, &rec);
    if let Some(o) = after.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    let (verb, action) = if existing.is_empty() { ("token-create", "created") } else { ("token-rotate", "configured") };
    let audit = token_audit(&st, &id, verb, action, &req.name, before, Some(after));
    ops.push(Op::put(crate::audit::new_key(), serde_json::to_vec(&audit).expect("json")));
    match st.store.txn(conditions, ops).await? {
        TxnResult::Committed { .. } => {
            let mut cache = st.token_cache.lock().unwrap();
            for (kv, _) in &existing {
                cache.remove(&kv.key);
            }
            Ok(Json(json!({"name": rec.name, "id": id_of_new, "token": token, "role": rec.role})))
        }
        TxnResult::Failed { .. } => Err(ApiError::conflict("the token's name changed concurrently; nothing was written, try again")),
    }
}

/// `GET /porin/v1/status`. A scoped token sees the node's health and counters, but of the endpoints, their
/// errors and the undecodable objects only those of its namespaces (the others are counted, not named).
pub async fn status(State(st): State<Shared>, Extension(id): Extension<Identity>) -> Json<Value> {
    // The `cni` token serves every pod of its node and waits here for each one's interface: it sees the node.
    let view = match super::console::View::of(&id) {
        super::console::View::Scoped { cni: true, .. } => super::console::View::All,
        v => v,
    };
    let snap = st.snapshot.borrow().clone();
    let store_rev = match tokio::time::timeout(std::time::Duration::from_secs(2), st.store.revision()).await {
        Ok(Ok(r)) => Some(r),
        _ => None,
    };
    let p = &snap.policy;
    let (undecodable_seen, hidden): (Vec<_>, Vec<_>) =
        p.undecodable.iter().cloned().partition(|u| u.namespace.as_deref().is_some_and(|ns| view.namespace(ns)) || matches!(view, super::console::View::All));
    let undecodable = undecodable_health(&undecodable_seen).or_else(|| {
        (!hidden.is_empty()).then(|| format!("degraded: {} stored object(s) outside your scope do not decode (their endpoints deny)", hidden.len()))
    });
    let health = if store_rev.is_none() || !snap.connected {
        "degraded: datastore unreachable, serving last known state read-only"
    } else if let Some(h) = &undecodable {
        h.as_str()
    } else if p.error.is_some() {
        "degraded: policy recompute failed, previous policy kept"
    } else if !snap.synced {
        "starting"
    } else if st.dataplane.has_errors() {
        "degraded: dataplane errors (affected endpoints deny)"
    } else {
        "ok"
    };
    Json(json!({
        "node": st.node,
        "store": st.store_kind,
        "datastore": st.store_desc,
        "disconnectedSince": snap.disconnected_since.map(crate::timefmt::rfc3339),
        "storeRevision": store_rev,
        "cacheRevision": snap.revision,
        "connected": snap.connected,
        "synced": snap.synced,
        "lastError": snap.last_error,
        "endpoints": p.endpoints,
        "policies": p.policies,
        "objects": snap.items.len(),
        "policyRevision": p.revision,
        "lastRecompute": p.built_at.map(|t| crate::timefmt::rfc3339(t as i64)),
        "recomputeMillis": p.build_millis,
        "policyError": p.error,
        "undecodable": undecodable_seen,
        "undecodableOutsideScope": hidden.len(),
        "health": health,
        "dataplane": scoped_dataplane(&view, st.dataplane.status_json()),
        "flows": st.flows.as_ref().map(|f| f.status()),
    }))
}

/// The `dataplane` section as `view` may see it: endpoints of other namespaces (and interfaces bound to no pod)
/// are left out and counted, and so are the errors of their interfaces (`IFNAME: ...`); node-wide errors stay.
fn scoped_dataplane(view: &super::console::View, mut v: Value) -> Value {
    if matches!(view, super::console::View::All) {
        return v;
    }
    let in_scope = |pod: &str| pod.split_once('/').is_some_and(|(ns, _)| view.namespace(ns));
    let mut hidden_ifaces = std::collections::HashSet::new();
    if let Some(eps) = v.get_mut("endpoints").and_then(Value::as_array_mut) {
        eps.retain(|e| {
            let keep = e["pod"].as_str().is_some_and(in_scope);
            if !keep {
                hidden_ifaces.insert(e["interface"].as_str().unwrap_or_default().to_string());
            }
            keep
        });
    }
    if let Some(errs) = v.get_mut("errors").and_then(Value::as_array_mut) {
        errs.retain(|e| e.as_str().and_then(|t| t.split_once(": ")).is_none_or(|(subject, _)| !hidden_ifaces.contains(subject)));
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("endpointsOutsideScope".into(), json!(hidden_ifaces.len()));
    }
    v
}

/// The health line for stored objects that do not decode: each key, its error and what it locks down.
fn undecodable_health(u: &[crate::engine::Undecodable]) -> Option<String> {
    if u.is_empty() {
        return None;
    }
    let each: Vec<String> = u
        .iter()
        .map(|x| {
            let scope = match &x.namespace {
                Some(ns) => format!("every endpoint in namespace {ns} denies"),
                None => "every endpoint denies".to_string(),
            };
            format!("{} ({}; {scope})", x.key, x.error)
        })
        .collect();
    Some(format!("degraded: {} stored object(s) do not decode: {}", u.len(), each.join("; ")))
}
