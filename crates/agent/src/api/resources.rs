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

use super::console::View;
use super::write::{Change, Intent, commit_opts, known_tiers, object_out};
use super::{ApiError, Shared, kube};
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
    if method == Method::GET
        && let Some(r) = kube::group_discovery(uri.path())
    {
        return Ok(r);
    }
    let t = resolve(uri.path())?;
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(o) => return Err(ApiError::bad_request(format!("dryRun {o:?}: the only supported value is All"))),
    };
    let table = kube::wants_table(&headers).then(|| kube::Include::parse(q.get("includeObject"))).transpose()?;
    match method {
        Method::GET if q.get("watch").is_some_and(|w| w == "true" || w == "1") => watch(&st, &id, &t, &q, table).await,
        Method::GET => read(&st, &id, &t, &q, table).await,
        Method::PUT | Method::POST => write(&st, &id, &t, &method, &body, dry_run).await,
        Method::PATCH => {
            let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            patch(&st, &id, &t, kube::PatchType::from_content_type(ct)?, &body, dry_run).await
        }
        Method::DELETE => {
            let name = t.name.clone().ok_or_else(|| ApiError::bad_request("DELETE needs a name"))?;
            let ns = if t.kind.info().namespaced { Some(t.namespace.clone().unwrap_or_else(|| "default".into())) } else { None };
            let expected = q.get("resourceVersion").and_then(|s| s.parse().ok());
            let c = Change { kind: t.kind, namespace: ns, name, resource: None, expected, intent: Intent::Delete };
            let (rev, out) = commit_opts(&st, &id, "delete", vec![c], dry_run).await?;
            Ok(axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200,
                "details": {"kind": t.kind.info().plural, "name": out[0].name, "resourceVersion": rev.to_string()}}))
            .into_response())
        }
        _ => Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{method} is not supported"))),
    }
}

/// Is the stored object at `key` one the caller may read ([`View::object`])?
fn readable(view: &View, key: &str) -> bool {
    keys::parse_key(key).is_some_and(|(k, ns, name)| view.object(k, ns.as_deref(), &name))
}

/// `?fieldSelector=`: `metadata.name` and `metadata.namespace`, with `=`, `==` or `!=`, comma-separated.
struct FieldSelector(Vec<(&'static str, bool, String)>);

impl FieldSelector {
    fn parse(q: &HashMap<String, String>) -> Result<FieldSelector, ApiError> {
        let mut terms = Vec::new();
        for term in q.get("fieldSelector").map(String::as_str).unwrap_or("").split(',').filter(|t| !t.trim().is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid fieldSelector term {term:?}: expected FIELD=VALUE or FIELD!=VALUE")));
            };
            let pointer = match field.trim() {
                "metadata.name" => "/metadata/name",
                "metadata.namespace" => "/metadata/namespace",
                f => return Err(ApiError::bad_request(format!("field label not supported: {f} (metadata.name and metadata.namespace are)"))),
            };
            terms.push((pointer, eq, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }
    fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(p, eq, v)| (obj.pointer(p).and_then(Value::as_str).unwrap_or("") == v) == *eq)
    }
}

async fn read(st: &Shared, id: &Identity, t: &Target, q: &HashMap<String, String>, table: Option<kube::Include>) -> Result<Response, ApiError> {
    let view = View::of(id);
    if let Some(name) = &t.name {
        if !view.object(t.kind, t.namespace.as_deref(), name) {
            let what = match &t.namespace {
                Some(ns) => format!("{} {ns}/{name}", t.kind),
                None => format!("{} {name}", t.kind),
            };
            return Err(ApiError::forbidden(format!("{} (scoped) may not read {what}: outside its namespaces and tiers", id.user)));
        }
        let key = keys::object_key(t.kind, t.namespace.as_deref(), name);
        return match st.get(&key).await? {
            Some(kv) => {
                let mut obj = object_out(&kv);
                if t.kind == Kind::PacketCapture {
                    super::captures::add_status(st, &mut obj).await;
                }
                let obj = if t.kind == porin_model::Kind::GlobalThreatFeed { super::threatfeeds::with_status(st, obj).await } else { obj };
                match table {
                    Some(inc) => Ok(axum::Json(kube::table(t.kind, &[obj], None, inc)).into_response()),
                    None => Ok(axum::Json(obj).into_response()),
                }
            }
            None => Err(ApiError::not_found(format!("{} {name:?} not found", t.kind.info().singular))),
        };
    }
    if !view.kind(t.kind) {
        return Err(ApiError::forbidden(format!("{} (scoped) may not list {}: cluster-scoped, outside its namespaces (admin only)", id.user, t.kind.info().plural)));
    }
    let sel = selector(q)?;
    let fields = FieldSelector::parse(q)?;
    let (items, rev) = st.list(&keys::scope_prefix(t.kind, t.namespace.as_deref())).await?;
    // A scoped caller's list holds what it may read, like the console's view (not a 403: `get -A` works).
    let mut items: Vec<Value> = items
        .iter()
        .filter(|kv| readable(&view, &kv.key))
        .map(object_out)
        .filter(|v| sel.matches(&labels_of(v)) && fields.matches(v))
        .collect();
    if t.kind == porin_model::Kind::GlobalThreatFeed {
        for v in &mut items {
            *v = super::threatfeeds::with_status(st, std::mem::take(v)).await;
        }
    }
    if t.kind == Kind::PacketCapture {
        for v in &mut items {
            super::captures::add_status(st, v).await;
        }
    }
    if let Some(inc) = table {
        return Ok(axum::Json(kube::table(t.kind, &items, Some(rev.to_string()), inc)).into_response());
    }
    Ok(axum::Json(json!({
        "apiVersion": t.kind.api_version(),
        "kind": format!("{}List", t.kind.info().kind),
        "metadata": {"resourceVersion": rev.to_string()},
        "items": items,
    }))
    .into_response())
}

async fn write(st: &Shared, id: &Identity, t: &Target, method: &Method, body: &Bytes, dry_run: bool) -> Result<Response, ApiError> {
    write_as(st, id, t, method, body, dry_run, None).await
}

/// [`write`], audited under `verb` (default: create for POST, update for PUT).
async fn write_as(
    st: &Shared,
    id: &Identity,
    t: &Target,
    method: &Method,
    body: &Bytes,
    dry_run: bool,
    verb: Option<&str>,
) -> Result<Response, ApiError> {
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
    let verb = verb.unwrap_or(if intent == Intent::Create { "create" } else { "update" });
    let (_, out) = commit_opts(st, id, verb, vec![c], dry_run).await?;
    let code = if out[0].action == "created" { StatusCode::CREATED } else { StatusCode::OK };
    if dry_run {
        // Nothing was written: the object as it would be stored.
        return Ok((code, axum::Json(super::write::stored_json(r))).into_response());
    }
    let kv = st.store.get(&key).await?.ok_or_else(|| ApiError::internal("object vanished after commit"))?;
    Ok((code, axum::Json(object_out(&kv))).into_response())
}

/// PATCH: read the object, apply the patch, and write the result through [`write`] (validation, guards,
/// scope, audit) conditioned on the revision read, so a concurrent change is never overwritten. A patch that
/// names no `metadata.resourceVersion` is retried on such a conflict, as the Kubernetes API server does.
async fn patch(st: &Shared, id: &Identity, t: &Target, ty: kube::PatchType, body: &Bytes, dry_run: bool) -> Result<Response, ApiError> {
    let name = t.name.as_deref().ok_or_else(|| ApiError::bad_request("PATCH needs a name in the path"))?;
    let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON in the patch: {e}")))?;
    let key = keys::object_key(t.kind, t.namespace.as_deref(), name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let kv = st.get(&key).await?.ok_or_else(|| ApiError::not_found(format!("{} {name:?} not found", t.kind.info().singular)))?;
        let current = object_out(&kv);
        let mut new = kube::apply_patch(ty, &current, &p)?;
        let pinned = new.pointer("/metadata/resourceVersion") != current.pointer("/metadata/resourceVersion");
        if !pinned && let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), Value::String(kv.mod_revision.to_string()));
        }
        let body = Bytes::from(serde_json::to_vec(&new).expect("json"));
        match write_as(st, id, t, &Method::PUT, &body, dry_run, Some("patch")).await {
            Err(e) if e.code == StatusCode::CONFLICT && e.reason == "Conflict" && !pinned && attempt < 5 => continue,
            r => return r,
        }
    }
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
async fn watch(st: &Shared, id: &Identity, t: &Target, q: &HashMap<String, String>, table: Option<kube::Include>) -> Result<Response, ApiError> {
    let sel = selector(q)?;
    let view = View::of(id);
    if !view.kind(t.kind) || t.name.as_ref().is_some_and(|name| !view.object(t.kind, t.namespace.as_deref(), name)) {
        let name = t.name.as_deref().unwrap_or("");
        return Err(ApiError::forbidden(format!("{} (scoped) may not watch {} {name}: outside its namespaces and tiers", id.user, t.kind)));
    }
    let fields = FieldSelector::parse(q)?;
    let timeout = match q.get("timeoutSeconds").filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<u64>().map_err(|_| ApiError::bad_request(format!("timeoutSeconds {s:?} is not a number")))?),
        None => None,
    };
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
        keys::parse_key(key).is_some_and(|(k, ns, name)| k == kind && view.object(k, ns.as_deref(), &name))
            && exact.as_deref().is_none_or(|e| e == key)
    };
    let shown = move |obj: Value| match table {
        Some(inc) => kube::table(kind, &[obj], None, inc),
        None => obj,
    };
    let events = stream.filter_map(move |ev| {
        let line = match ev {
            Ok(WatchEvent::Put { kv, prev }) if wanted(&kv.key) => {
                let obj = object_out(&kv);
                let ty = if prev.is_none() && kv.create_revision == kv.mod_revision { "ADDED" } else { "MODIFIED" };
                (sel.matches(&labels_of(&obj)) && fields.matches(&obj)).then(|| json!({"type": ty, "object": shown(obj)}))
            }
            Ok(WatchEvent::Delete { key, revision, prev }) if wanted(&key) => {
                let obj = deleted_object(kind, &key, prev.as_ref(), revision);
                (sel.matches(&labels_of(&obj)) && fields.matches(&obj)).then(|| json!({"type": "DELETED", "object": shown(obj)}))
            }
            Ok(_) => None,
            Err(e) => Some(json!({"type": "ERROR", "object": ApiError::from(e).to_json()})),
        };
        futures::future::ready(line.map(|l| Ok::<_, std::convert::Infallible>(Bytes::from(format!("{l}\n")))))
    });
    // `?timeoutSeconds=`: the stream ends then (clients such as kube-rs ask for it and watch again).
    let events: futures::stream::BoxStream<'static, _> = match timeout {
        Some(secs) => events.take_until(tokio::time::sleep(std::time::Duration::from_secs(secs))).boxed(),
        None => events.boxed(),
    };
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(events))
        .expect("valid response"))
}
