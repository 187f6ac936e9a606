//! What `kubectl` needs besides the resource endpoints of [`super::resources`]: version and discovery
//! (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`), OpenAPI (`/openapi/v2` as JSON or as
//! the protobuf kubectl asks for, `/openapi/v3` and one document per group version), server-side Table output
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) and PATCH bodies (JSON merge patch, strategic
//! merge patch as far as Porin's kinds need it, JSON patch). Schemas and columns come from
//! [`porin_model::schema`], the one place that defines them.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use porin_model::{Kind, schema};
use serde_json::{Map, Value, json};
use sha2::Digest;

use super::ApiError;

/// The Kubernetes API version whose semantics (NetworkPolicy v1, discovery, Table) this server follows.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "30";

/// The group versions served, in kubectl's resolution order: the core group, then Kubernetes' groups, then
/// Porin's (so `networkpolicies` names the Kubernetes kind, as kubectl users expect; Porin's is `pnp`).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    vec![("", "v1"), ("networking.k8s.io", "v1"), (porin_model::kind::PORIN_GROUP, "v1")]
}

fn kinds_of(group: &str, version: &str) -> Vec<Kind> {
    Kind::ALL.into_iter().filter(|k| k.info().group == group && k.info().version == version).collect()
}

/// `GET /version`.
pub async fn version() -> Response {
    axum::Json(json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0+porin.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "porin",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    }))
    .into_response()
}

/// `GET /api`.
pub async fn core_versions() -> Response {
    axum::Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})).into_response()
}

/// `GET /api/v1`.
pub async fn core_resources() -> Response {
    axum::Json(resource_list("", "v1").expect("the core group is served")).into_response()
}

/// `GET /apis`.
pub async fn groups() -> Response {
    let groups: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})).into_response()
}

/// The APIResourceList of a group version (`/api/v1`, `/apis/porin.io/v1`); None when it is not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if !group_versions().contains(&(group, version)) {
        return None;
    }
    let resources: Vec<Value> = kinds_of(group, version)
        .into_iter()
        .map(|k| {
            let i = k.info();
            let mut r = json!({
                "name": i.plural,
                "singularName": i.singular,
                "namespaced": i.namespaced,
                "kind": i.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": i.short,
            });
            if i.group == porin_model::kind::PORIN_GROUP {
                r["categories"] = json!(["porin"]);
            }
            r
        })
        .collect();
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// `/apis/<group>/<version>` (no resource): its APIResourceList.
pub fn group_discovery(path: &str) -> Option<Response> {
    let rest = path.strip_prefix("/apis/")?.trim_end_matches('/');
    let (g, v) = rest.split_once('/')?;
    if v.contains('/') {
        return None;
    }
    Some(match resource_list(g, v) {
        Some(l) => axum::Json(l).into_response(),
        None => ApiError::not_found(format!("the server could not find the requested resource ({path})")).into_response(),
    })
}

// ---- OpenAPI ----

fn gvk(kind: Kind) -> Value {
    let i = kind.info();
    json!({"group": i.group, "kind": i.kind, "version": i.version})
}

/// The REST path of one object of a kind, with its parameters, as OpenAPI names it.
fn object_path(kind: Kind) -> String {
    let i = kind.info();
    let base = if i.group.is_empty() { format!("/api/{}", i.version) } else { format!("/apis/{}/{}", i.group, i.version) };
    if i.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", i.plural)
    } else {
        format!("{base}/{}/{{name}}", i.plural)
    }
}

/// A kind's schema as an OpenAPI definition: `x-kubernetes-group-version-kind` is how kubectl finds it.
fn definition(kind: Kind) -> Value {
    let mut s = schema::object_schema(kind);
    s["x-kubernetes-group-version-kind"] = json!([gvk(kind)]);
    s
}

/// The OpenAPI v3 document of one group version (`/openapi/v3/apis/porin.io/v1`). Each object path declares
/// the `fieldValidation` and `dryRun` query parameters, which the server honours: kubectl then leaves
/// validation to the server (Porin's validator, with field paths) instead of validating on the client.
pub fn openapi_v3_group(group: &str, version: &str) -> Option<Value> {
    if !group_versions().contains(&(group, version)) {
        return None;
    }
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for k in kinds_of(group, version) {
        let name = schema::definition_name(k);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let content = json!({"application/json": {"schema": reference}});
        let param = |n: &str, d: &str| json!({"name": n, "in": "query", "description": d, "schema": {"type": "string", "uniqueItems": true}});
        let params = json!([
            param("fieldValidation", "Strict: unknown or duplicate fields are errors (Porin always validates strictly)."),
            param("dryRun", "All: check everything a write checks, write nothing."),
            param("fieldManager", "Accepted, ignored."),
        ]);
        // kubectl looks for the parameters on the operation (PATCH): then it leaves validation to the server.
        let op = |id: &str, write: bool| {
            let mut o = json!({
                "operationId": format!("{id}{}", k.info().kind),
                "x-kubernetes-group-version-kind": gvk(k),
                "responses": {"200": {"description": "OK", "content": content.clone()}},
            });
            if write {
                o["parameters"] = params.clone();
            }
            o
        };
        let mut patch = op("patch", true);
        patch["requestBody"] = json!({"content": {"application/merge-patch+json": {"schema": {"type": "object"}}}});
        paths.insert(
            object_path(k),
            json!({"get": op("read", false), "put": op("replace", true), "delete": op("delete", true), "patch": patch}),
        );
        schemas.insert(name, definition(k));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Porin", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn v3_url_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

fn hash_of(v: &Value) -> String {
    let d = sha2::Sha256::digest(v.to_string().as_bytes());
    d.iter().take(16).map(|b| format!("{b:02X}")).collect()
}

/// `GET /openapi/v3`: where each group version's document is.
pub async fn openapi_v3_root() -> Response {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        let doc = openapi_v3_group(g, v).expect("served");
        let p = v3_url_path(g, v);
        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash_of(&doc))}));
    }
    axum::Json(json!({"paths": paths})).into_response()
}

/// `GET /openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`.
pub async fn openapi_v3_doc(Path(rest): Path<String>) -> Result<Response, ApiError> {
    let rest = rest.trim_matches('/');
    let (g, v) = match rest.strip_prefix("api/") {
        Some(v) => ("", v),
        None => rest.strip_prefix("apis/").and_then(|r| r.split_once('/')).unwrap_or(("?", "?")),
    };
    let doc = openapi_v3_group(g, v).ok_or_else(|| ApiError::not_found(format!("no OpenAPI document for {rest:?}")))?;
    Ok(axum::Json(doc).into_response())
}

/// A v3 (structural) schema in OpenAPI v2 form: v2 has no int-or-string and no preserve-unknown-fields; a
/// schema without a type accepts anything there (which is what both mean to a v2 client).
fn to_v2(s: &Value) -> Value {
    let Some(m) = s.as_object() else { return s.clone() };
    if m.contains_key("x-kubernetes-int-or-string") || m.contains_key("x-kubernetes-preserve-unknown-fields") {
        let mut out = Map::new();
        if let Some(d) = m.get("description") {
            out.insert("description".into(), d.clone());
        }
        return Value::Object(out);
    }
    let mut out = Map::new();
    for (k, v) in m {
        let v = match k.as_str() {
            "properties" => Value::Object(v.as_object().into_iter().flatten().map(|(n, s)| (n.clone(), to_v2(s))).collect()),
            "items" | "additionalProperties" => to_v2(v),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// The OpenAPI v2 document: the definitions (kubectl's schemas), and one PATCH operation per kind naming the
/// query parameters the server honours (kubectl checks `dryRun` and `fieldValidation` support there).
pub fn openapi_v2() -> Value {
    let mut defs = Map::new();
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        for k in kinds_of(g, v) {
            defs.insert(schema::definition_name(k), to_v2(&definition(k)));
            let params: Vec<Value> = ["dryRun", "fieldValidation", "fieldManager"]
                .iter()
                .map(|n| json!({"name": n, "in": "query", "type": "string", "uniqueItems": true}))
                .collect();
            paths.insert(
                object_path(k),
                json!({"patch": {"operationId": format!("patch{}", k.info().kind), "parameters": params, "x-kubernetes-group-version-kind": gvk(k)}}),
            );
        }
    }
    json!({"swagger": "2.0", "info": {"title": "Porin", "version": env!("CARGO_PKG_VERSION")}, "paths": paths, "definitions": defs})
}

/// `GET /openapi/v2`: protobuf (gnostic's `openapi.v2.Document`) when the client asks for it, as kubectl does,
/// JSON otherwise.
pub async fn openapi_v2_handler(headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let doc = openapi_v2();
    if accept.contains("protobuf") {
        let body = super::openapi_pb::document(&doc);
        return ([(header::CONTENT_TYPE, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")], body).into_response();
    }
    axum::Json(doc).into_response()
}

// ---- Table ----

/// `Accept` asks for a `meta.k8s.io` Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

/// What each row carries (`?includeObject=`): None, Metadata (default) or Object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(q: Option<&String>) -> Result<Include, ApiError> {
        match q.map(String::as_str) {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("Object") => Ok(Include::Object),
            Some("None") => Ok(Include::None),
            Some(o) => Err(ApiError::bad_request(format!("includeObject {o:?}: expected None, Metadata or Object"))),
        }
    }
}

/// kubectl's age format (`45s`, `3m12s`, `5h`, `2d3h`, `400d`).
pub fn human_age(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) },
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) },
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 => if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) },
        _ if d < 730 => format!("{d}d"),
        _ if d < 2920 => if d % 365 == 0 { format!("{}y", d / 365) } else { format!("{}y{}d", d / 365, d % 365) },
        _ => format!("{}y", d / 365),
    }
}

fn cell(v: Option<&Value>, c: &schema::Column) -> Value {
    match v {
        None | Some(Value::Null) => Value::String(c.default.unwrap_or("<none>").into()),
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Number(n)) => Value::Number(n.clone()),
        Some(Value::Bool(b)) => Value::String(b.to_string()),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            Value::String(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
        }
        Some(sel @ Value::Object(m)) if m.is_empty() || m.contains_key("matchLabels") || m.contains_key("matchExpressions") => {
            Value::String(label_selector_text(sel))
        }
        Some(other) => Value::String(other.to_string()),
    }
}

/// A LabelSelector as kubectl prints it: `app=web,tier in (a,b)`; empty: `<none>`.
fn label_selector_text(sel: &Value) -> String {
    let mut parts: Vec<String> =
        sel["matchLabels"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {} ({})", if op == "In" { "in" } else { "notin" }, values.join(",")),
        });
    }
    if parts.is_empty() { "<none>".into() } else { parts.join(",") }
}

/// The column definitions of a kind's Table: Name, the kind's columns (as `porin get`), Age.
pub fn column_definitions(kind: Kind) -> Vec<Value> {
    let mut cols = vec![json!({"name": "Name", "type": "string", "format": "name", "description": "The object's name.", "priority": 0})];
    for c in schema::columns(kind) {
        cols.push(json!({"name": c.name, "type": c.ty, "format": "", "description": c.description, "priority": c.priority}));
    }
    cols.push(json!({"name": "Age", "type": "string", "format": "", "description": "Time since the object was created.", "priority": 0}));
    cols
}

/// One Table row for an object.
pub fn table_row(kind: Kind, obj: &Value, include: Include, now: i64) -> Value {
    let mut cells = vec![obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
    for c in schema::columns(kind) {
        cells.push(cell(obj.pointer(c.pointer), &c));
    }
    let age = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(crate::timefmt::parse_rfc3339)
        .map_or_else(|| "<unknown>".to_string(), |t| human_age(now - t));
    cells.push(Value::String(age));
    let mut row = json!({"cells": cells});
    match include {
        Include::None => {}
        Include::Object => row["object"] = obj.clone(),
        Include::Metadata => {
            row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]});
        }
    }
    row
}

/// A `meta.k8s.io/v1` Table of objects of one kind.
pub fn table(kind: Kind, items: &[Value], resource_version: Option<String>, include: Include) -> Value {
    let now = crate::timefmt::now_secs();
    let mut meta = Map::new();
    if let Some(rv) = resource_version {
        meta.insert("resourceVersion".into(), Value::String(rv));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(kind),
        "rows": items.iter().map(|o| table_row(kind, o, include, now)).collect::<Vec<_>>(),
    })
}

// ---- PATCH ----

/// How a PATCH body is to be applied, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    pub fn from_content_type(ct: Option<&str>) -> Result<PatchType, ApiError> {
        let ct = ct.unwrap_or("").split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "server-side apply is not supported: use client-side `kubectl apply` (the default), or `kubectl patch` \
                 with --type merge or json",
            )),
            other => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of a PATCH request must be application/merge-patch+json, application/strategic-merge-patch+json \
                     or application/json-patch+json, not {other:?}"
                ),
            )),
        }
    }
}

/// Apply a patch to `target`.
pub fn apply_patch(ty: PatchType, target: &Value, patch: &Value) -> Result<Value, ApiError> {
    match ty {
        PatchType::Merge => Ok(merge_patch(target, patch)),
        PatchType::Strategic => strategic_merge(target, patch, ""),
        PatchType::Json => json_patch(target, patch),
    }
}

/// RFC 7386.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Some(p) = patch.as_object() else { return patch.clone() };
    let mut out = target.as_object().cloned().unwrap_or_default();
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// Strategic merge patch for Porin's kinds and the Kubernetes ones it stores: none of their lists has a merge
/// key (every list is replaced as a whole, as NetworkPolicy's are upstream), so this is a merge patch that also
/// honours the directives kubectl sends: `$patch: replace|delete|merge`, `$retainKeys`,
/// `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` (order only: the list is replaced anyway).
/// Any other directive is refused rather than ignored.
pub fn strategic_merge(target: &Value, patch: &Value, path: &str) -> Result<Value, ApiError> {
    let Some(p) = patch.as_object() else { return Ok(patch.clone()) };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut r = p.clone();
            r.remove("$patch");
            return Ok(Value::Object(r));
        }
        Some("delete") => return Ok(Value::Null),
        Some("merge") | None => {}
        Some(o) => return Err(ApiError::bad_request(format!("{path}: unknown strategic merge patch directive $patch: {o:?}"))),
    }
    let mut out = target.as_object().cloned().unwrap_or_default();
    for (k, v) in p {
        let at = format!("{path}.{k}");
        if k == "$patch" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if k == "$retainKeys" {
            let keep: Vec<&str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            out.retain(|name, _| keep.contains(&name.as_str()) || p.contains_key(name));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let drop: Vec<&Value> = v.as_array().into_iter().flatten().collect();
            if let Some(Value::Array(a)) = out.get_mut(field) {
                a.retain(|x| !drop.contains(&x));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(ApiError::bad_request(format!("{at}: unsupported strategic merge patch directive {k:?}")));
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = strategic_merge(out.get(k).unwrap_or(&Value::Null), v, &at)?;
        if merged.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), merged);
        }
    }
    Ok(Value::Object(out))
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Split `/a/b/c` into the parent pointer and the last token.
fn split_pointer(p: &str) -> Result<(&str, String), ApiError> {
    if p.is_empty() {
        return Err(ApiError::bad_request("JSON patch: the whole document cannot be replaced"));
    }
    let i = p.rfind('/').ok_or_else(|| ApiError::bad_request(format!("JSON patch: path {p:?} must start with /")))?;
    Ok((&p[..i], unescape(&p[i + 1..])))
}

fn pointer_mut<'a>(doc: &'a mut Value, p: &str) -> Result<&'a mut Value, ApiError> {
    doc.pointer_mut(p).ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("JSON patch: path {p:?} does not exist")))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    let (parent, last) = split_pointer(path)?;
    match pointer_mut(doc, parent)? {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            let i = if last == "-" { a.len() } else { last.parse::<usize>().map_err(|_| ApiError::bad_request(format!("JSON patch: {path:?}: not an index")))? };
            if i > a.len() {
                return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("JSON patch: {path:?}: index out of range")));
            }
            a.insert(i, value);
        }
        _ => return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("JSON patch: {parent:?} is not an object or array"))),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, ApiError> {
    let (parent, last) = split_pointer(path)?;
    let missing = || ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("JSON patch: path {path:?} does not exist"));
    match pointer_mut(doc, parent)? {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

/// RFC 6902: add, remove, replace, move, copy, test.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops = patch.as_array().ok_or_else(|| ApiError::bad_request("a JSON patch is an array of operations"))?;
    let mut doc = target.clone();
    for (i, op) in ops.iter().enumerate() {
        let s = |f: &str| op.get(f).and_then(Value::as_str).ok_or_else(|| ApiError::bad_request(format!("JSON patch operation {i}: {f:?} is missing")));
        let value = || op.get("value").cloned().ok_or_else(|| ApiError::bad_request(format!("JSON patch operation {i}: \"value\" is missing")));
        let path = s("path")?;
        match s("op")? {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value()?)?;
            }
            "move" => {
                let v = remove(&mut doc, s("from")?)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = doc.pointer(s("from")?).cloned().ok_or_else(|| ApiError::bad_request(format!("JSON patch operation {i}: from does not exist")))?;
                add(&mut doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("JSON patch operation {i}: test of {path:?} failed")));
                }
            }
            o => return Err(ApiError::bad_request(format!("JSON patch operation {i}: unknown op {o:?}"))),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_sets_and_removes_labels() {
        let obj = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"ingress": [1, 2]}});
        let p = json!({"metadata": {"labels": {"x": null, "z": "3"}}, "spec": {"ingress": [3]}});
        let want = json!({"metadata": {"name": "a", "labels": {"y": "2", "z": "3"}}, "spec": {"ingress": [3]}});
        assert_eq!(apply_patch(PatchType::Merge, &obj, &p).unwrap(), want);
        assert_eq!(apply_patch(PatchType::Strategic, &obj, &p).unwrap(), want);
    }

    #[test]
    fn strategic_directives() {
        let obj = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}}, "spec": {"a": 1, "b": 2, "c": {"d": 1}}});
        let p = json!({
            "$setElementOrder/finalizers": ["a"],
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "labels": {"$patch": "replace", "y": "2"}},
            "spec": {"$retainKeys": ["a"], "c": {"$patch": "delete"}},
        });
        let out = apply_patch(PatchType::Strategic, &obj, &p).unwrap();
        assert_eq!(out, json!({"metadata": {"finalizers": ["a"], "labels": {"y": "2"}}, "spec": {"a": 1}}));
        let bad = json!({"spec": {"$unknown": 1}});
        assert_eq!(apply_patch(PatchType::Strategic, &obj, &bad).unwrap_err().code, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn json_patch_ops() {
        let obj = json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"nets": ["10.0.0.0/8"]}});
        let p = json!([
            {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
            {"op": "add", "path": "/spec/nets/-", "value": "192.168.0.0/16"},
            {"op": "replace", "path": "/spec/nets/0", "value": "172.16.0.0/12"},
            {"op": "copy", "from": "/metadata/labels/a~1b", "path": "/metadata/labels/c"},
            {"op": "move", "from": "/metadata/labels/c", "path": "/metadata/labels/d"},
            {"op": "remove", "path": "/metadata/labels/a~1b"},
        ]);
        let out = apply_patch(PatchType::Json, &obj, &p).unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"d": "1"}}, "spec": {"nets": ["172.16.0.0/12", "192.168.0.0/16"]}}));
        let failing = json!([{"op": "test", "path": "/spec/nets/0", "value": "x"}]);
        assert_eq!(apply_patch(PatchType::Json, &obj, &failing).unwrap_err().code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(apply_patch(PatchType::Json, &obj, &json!([{"op": "remove", "path": "/spec/nope"}])).is_err());
    }

    #[test]
    fn selectors_print_like_kubectl() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]});
        assert_eq!(label_selector_text(&sel), "app=web,tier in (a,b),!x");
        assert_eq!(label_selector_text(&json!({})), "<none>");
    }

    #[test]
    fn ages_read_like_kubectls() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(125), "2m5s");
        assert_eq!(human_age(600), "10m");
        assert_eq!(human_age(3 * 3600 + 60), "3h1m");
        assert_eq!(human_age(50 * 3600), "2d2h");
        assert_eq!(human_age(400 * 86400), "400d");
    }

    #[test]
    fn discovery_names_every_kind_once() {
        let mut n = 0;
        for (g, v) in group_versions() {
            n += resource_list(g, v).unwrap()["resources"].as_array().unwrap().len();
        }
        assert_eq!(n, Kind::ALL.len());
        assert!(resource_list("projectcalico.org", "v3").is_none());
    }

    #[test]
    fn table_accept_header() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json".parse().unwrap());
        assert!(wants_table(&h));
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_table(&h));
    }
}
