//! The Kubernetes-style resource endpoints.

use std::collections::HashMap;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use porin_model::{Document, Kind, ObjectMeta};
use porin_selector::Selector;
use porin_store::{KeyValue, Store, WatchEvent};
use serde_json::{Value, json};

use super::write::{Change, Intent, commit, known_tiers, object_out};
use super::{ApiError, Shared};
use crate::auth::Identity;
use crate::registry::keys;

/// A parsed REST path.
#[derive(Debug)]
pub struct Target {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

pub fn resolve(path: &str) -> Result<Target, ApiError> {
    let nf = || ApiError::not_found(format!("the server could not find the requested resource ({path})"));
    let (group, version, rest) = if let Some(r) = path.strip_prefix("/api/v1/") {
        ("", "v1", r)
    } else if let Some(r) = path.strip_prefix("/apis/") {
        let mut p = r.splitn(3, '/');
        let (g, v, rest) = (p.next().ok_or_else(nf)?, p.next().ok_or_else(nf)?, p.next().ok_or_else(nf)?);
        (g, v, rest)
    } else {
        return Err(nf());
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (ns, plural, name) = match segs.as_slice() {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return Err(nf()),
    };
    let kind = Kind::from_rest(group, version, plural).ok_or_else(nf)?;
    if ns.is_some() && !kind.info().namespaced {
        return Err(nf());
    }
    Ok(Target { kind, namespace: ns.map(str::to_string), name: name.map(str::to_string) })
}

fn labels_of(v: &Value) -> std::collections::BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

fn selector(q: &HashMap<String, String>) -> Result<Selector, ApiError> {
    match q.get("labelSelector") {
        Some(s) => porin_selector::labelsel::parse_any(s).map_err(|e| ApiError::bad_request(format!("invalid labelSelector: {e}"))),
        None => Ok(Selector::all()),
    }
}

pub async fn handle(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let t = resolve(uri.path())?;
    let _ = headers;
    match method {
        Method::GET if q.get("watch").is_some_and(|w| w == "true" || w == "1") => watch(&st, &t, &q).await,
        Method::GET => read(&st, &t, &q).await,
        Method::PUT | Method::POST => write(&st, &id, &t, &method, &body).await,
        Method::DELETE => {
            let name = t.name.clone().ok_or_else(|| ApiError::bad_request("DELETE needs a name"))?;
            let ns = if t.kind.info().namespaced { Some(t.namespace.clone().unwrap_or_else(|| "default".into())) } else { None };
            let expected = q.get("resourceVersion").and_then(|s| s.parse().ok());
            let c = Change { kind: t.kind, namespace: ns, name, resource: None, expected, intent: Intent::Delete };
            let (rev, out) = commit(&st, &id, "delete", vec![c]).await?;
            Ok(axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200,
                "details": {"kind": t.kind.info().plural, "name": out[0].name, "resourceVersion": rev.to_string()}}))
            .into_response())
        }
        _ => Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{method} is not supported"))),
    }
}

async fn read(st: &Shared, t: &Target, q: &HashMap<String, String>) -> Result<Response, ApiError> {
    if let Some(name) = &t.name {
        let key = keys::object_key(t.kind, t.namespace.as_deref(), name);
        return match st.get(&key).await? {
            Some(kv) => {
                let mut v = object_out(&kv);
                if t.kind == Kind::PacketCapture {
                    super::captures::add_status(st, &mut v).await;
                }
                Ok(axum::Json(v).into_response())
            }
            None => Err(ApiError::not_found(format!("{} {name:?} not found", t.kind.info().singular))),
        };
    }
    let sel = selector(q)?;
    let (items, rev) = st.list(&keys::scope_prefix(t.kind, t.namespace.as_deref())).await?;
    let mut items: Vec<Value> = items.iter().map(object_out).filter(|v| sel.matches(&labels_of(v))).collect();
    if t.kind == Kind::PacketCapture {
        for v in &mut items {
            super::captures::add_status(st, v).await;
        }
    }
    Ok(axum::Json(json!({
        "apiVersion": t.kind.api_version(),
        "kind": format!("{}List", t.kind.info().kind),
        "metadata": {"resourceVersion": rev.to_string()},
        "items": items,
    }))
    .into_response())
}

async fn write(st: &Shared, id: &Identity, t: &Target, method: &Method, body: &Bytes) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
    // Fill the namespace from the path before loading, so `POST .../namespaces/x/...` of an object without
    // one lands in x.
    let mut v: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")))?
    };
    if let (Some(ns), Some(m)) = (&t.namespace, v.get_mut("metadata").and_then(Value::as_object_mut))
        && !m.contains_key("namespace")
    {
        m.insert("namespace".into(), Value::String(ns.clone()));
    }
    let docs = porin_model::parse_documents("request body", &v.to_string()).map_err(|e| ApiError::invalid(&e))?;
    let [doc]: [Document; 1] = docs.try_into().map_err(|_| ApiError::bad_request("expected exactly one object"))?;
    let r = &doc.resource;
    if r.kind() != t.kind {
        return Err(ApiError::bad_request(format!("the body is a {} but the path names {}", r.kind(), t.kind)));
    }
    if let Some(ns) = &t.namespace
        && r.namespace() != Some(ns.as_str())
    {
        return Err(ApiError::bad_request(format!("the body's namespace {:?} does not match the path's {ns:?}", r.namespace())));
    }
    match (&t.name, method) {
        (Some(n), &Method::PUT) if n != r.name() => {
            return Err(ApiError::bad_request(format!("the body's name {:?} does not match the path's {n:?}", r.name())));
        }
        (None, &Method::PUT) => return Err(ApiError::bad_request("PUT needs a name in the path")),
        (Some(_), &Method::POST) => return Err(ApiError::bad_request("POST goes to the collection, without a name")),
        _ => {}
    }
    let tiers = known_tiers(st).await?;
    porin_model::validate_set(std::slice::from_ref(&doc), &tiers).map_err(|e| ApiError::invalid(&e))?;
    let intent = if *method == Method::POST { Intent::Create } else { Intent::Upsert };
    let c = Change::from_doc(&doc, intent)?;
    let key = keys::object_key(c.kind, c.namespace.as_deref(), &c.name);
    let (_, out) = commit(st, id, if intent == Intent::Create { "create" } else { "update" }, vec![c]).await?;
    let kv = st.store.get(&key).await?.ok_or_else(|| ApiError::internal("object vanished after commit"))?;
    let code = if out[0].action == "created" { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, axum::Json(object_out(&kv))).into_response())
}

fn deleted_object(kind: Kind, key: &str, prev: Option<&KeyValue>, revision: u64) -> Value {
    let mut v = match prev {
        Some(kv) => object_out(kv),
        None => {
            let (_, ns, name) = keys::parse_key(key).unwrap_or((kind, None, String::new()));
            let meta = ObjectMeta { name, namespace: ns, ..Default::default() };
            json!({"apiVersion": kind.api_version(), "kind": kind.info().kind, "metadata": meta})
        }
    };
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    v
}

/// `?watch=true`: newline-delimited `{"type": ADDED|MODIFIED|DELETED, "object": ...}` from
/// `resourceVersion` (default: now). A broken store watch ends the stream with an `ERROR` event.
async fn watch(st: &Shared, t: &Target, q: &HashMap<String, String>) -> Result<Response, ApiError> {
    let sel = selector(q)?;
    let prefix = match &t.name {
        Some(n) => keys::object_key(t.kind, t.namespace.as_deref(), n),
        None => keys::scope_prefix(t.kind, t.namespace.as_deref()),
    };
    let after = match q.get("resourceVersion").filter(|s| !s.is_empty() && *s != "0") {
        Some(s) => s.parse::<u64>().map_err(|_| ApiError::bad_request(format!("resourceVersion {s:?} is not a revision")))?,
        None => st.store.revision().await?,
    };
    let stream = st.store.watch(&prefix, after).await?;
    let kind = t.kind;
    let exact: Option<String> = t.name.as_ref().map(|_| prefix.clone());
    let wanted = move |key: &str| {
        keys::parse_key(key).is_some_and(|(k, _, _)| k == kind) && exact.as_deref().is_none_or(|e| e == key)
    };
    let events = stream.filter_map(move |ev| {
        let line = match ev {
            Ok(WatchEvent::Put { kv, prev }) if wanted(&kv.key) => {
                let obj = object_out(&kv);
                let ty = if prev.is_none() && kv.create_revision == kv.mod_revision { "ADDED" } else { "MODIFIED" };
                sel.matches(&labels_of(&obj)).then(|| json!({"type": ty, "object": obj}))
            }
            Ok(WatchEvent::Delete { key, revision, prev }) if wanted(&key) => {
                let obj = deleted_object(kind, &key, prev.as_ref(), revision);
                sel.matches(&labels_of(&obj)).then(|| json!({"type": "DELETED", "object": obj}))
            }
            Ok(_) => None,
            Err(e) => Some(json!({"type": "ERROR", "object": ApiError::from(e).to_json()})),
        };
        futures::future::ready(line.map(|l| Ok::<_, std::convert::Infallible>(Bytes::from(format!("{l}\n")))))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(events))
        .expect("valid response"))
}
