//! `/porin/v1/captures/{namespace}/{name}`: a PacketCapture's status on every node, and this node's files.
//!
//! * `GET .../{ns}/{name}`: every node's part of the status (from the store, where each agent publishes its
//!   own): `files[]` = `{node, directory, fileNames, state, packets, lost}`.
//! * `GET .../{ns}/{name}/files`: this node's files (`{node, files: [{name, size}]}`).
//! * `GET .../{ns}/{name}/files/{file}`: one file (pcap bytes).
//! * `DELETE .../{ns}/{name}/files`: deletes this node's files (`porin capture clean`); refused while the
//!   capture is active here.
//!
//! Scope: admin and read-only tokens read every namespace; a scoped token reads and cleans only captures of
//! its namespaces (the packets are its workloads' traffic); read-only cannot clean; a cni token neither.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use porin_store::Store;
use serde_json::{Value, json};

use super::{ApiError, Shared};
use crate::auth::{Identity, Role};
use crate::capture::{self, CaptureService};

/// Namespaces and capture names are Kubernetes names (lowercase alphanumerics, '-', '.'; not starting with '.'):
/// they become directories under the capture directory, so `..` or a '/' could reach another capture's files.
fn check_name(what: &str, s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('.')
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
    if ok { Ok(()) } else { Err(ApiError::bad_request(format!("{what} {s:?} is not a valid name"))) }
}

fn may(id: &Identity, ns: &str, write: bool) -> Result<(), ApiError> {
    check_name("namespace", ns)?;
    match &id.role {
        Role::Admin => Ok(()),
        Role::ReadOnly if !write => Ok(()),
        Role::ReadOnly => Err(ApiError::forbidden(format!("{} has a read-only token: it may not clean captures", id.user))),
        Role::Scoped { namespaces, .. } if namespaces.iter().any(|n| n == ns) => Ok(()),
        Role::Scoped { .. } => Err(ApiError::forbidden(format!("{} (scoped) may not access packet captures in namespace {ns:?}", id.user))),
        Role::Cni => Err(ApiError::forbidden(format!("{} (cni) may not access packet captures", id.user))),
    }
}

fn service(st: &Shared) -> Result<&std::sync::Arc<CaptureService>, ApiError> {
    st.captures.as_ref().ok_or_else(|| ApiError::not_found("packet capture runs in `porin agent` with a dataplane (this server has none)"))
}

/// `GET /porin/v1/captures/{ns}/{name}`.
pub async fn status(State(st): State<Shared>, Extension(id): Extension<Identity>, Path((ns, name)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    may(&id, &ns, false)?;
    check_name("packet capture", &name)?;
    let (items, _) = st.store.list(&format!("{}{ns}/{name}/", capture::CAPTURES)).await?;
    let mut files = Vec::new();
    for kv in items {
        let v: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("{}: {e}", kv.key)))?;
        files.push(v);
    }
    Ok(Json(json!({"kind": "PacketCaptureStatus", "apiVersion": "porin.io/v1", "namespace": ns, "name": name, "node": st.node, "files": files})))
}

/// Sets `status.files` of a PacketCapture object read through the resource API to every node's entry (as
/// Calico's status lists them); an object no node reported on yet gets no status.
pub async fn add_status(st: &Shared, v: &mut Value) {
    let (Some(ns), Some(name)) = (v.pointer("/metadata/namespace").and_then(Value::as_str), v.pointer("/metadata/name").and_then(Value::as_str))
    else {
        return;
    };
    let Ok((items, _)) = st.store.list(&format!("{}{ns}/{name}/", capture::CAPTURES)).await else { return };
    let files: Vec<Value> = items.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect();
    if !files.is_empty() {
        v["status"] = json!({"files": files});
    }
}

/// `GET /porin/v1/captures/{ns}/{name}/files`.
pub async fn list(State(st): State<Shared>, Extension(id): Extension<Identity>, Path((ns, name)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    may(&id, &ns, false)?;
    check_name("packet capture", &name)?;
    let svc = service(&st)?;
    let dir = svc.capture_dir(&ns, &name);
    let files = capture::list_files(&dir).map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let files: Vec<Value> = files.into_iter().map(|(n, size)| json!({"name": n, "size": size})).collect();
    Ok(Json(json!({"node": st.node, "directory": dir.display().to_string(), "files": files})))
}

/// `GET /porin/v1/captures/{ns}/{name}/files/{file}`.
pub async fn download(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Path((ns, name, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    may(&id, &ns, false)?;
    check_name("packet capture", &name)?;
    let svc = service(&st)?;
    let dir = svc.capture_dir(&ns, &name);
    // Only a name the directory lists: no path, no `..`.
    let known = capture::list_files(&dir).map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    if !known.iter().any(|(n, _)| *n == file) {
        return Err(ApiError::not_found(format!("no capture file {file:?} of {ns}/{name} on node {}", st.node)));
    }
    let path = dir.join(&file);
    let bytes = tokio::fs::read(&path).await.map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    Ok(([(header::CONTENT_TYPE, "application/vnd.tcpdump.pcap")], Body::from(bytes)).into_response())
}

/// `DELETE /porin/v1/captures/{ns}/{name}/files`.
pub async fn clean(State(st): State<Shared>, Extension(id): Extension<Identity>, Path((ns, name)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    may(&id, &ns, true)?;
    check_name("packet capture", &name)?;
    let svc = service(&st)?;
    if svc.is_active(&(ns.clone(), name.clone())) {
        return Err(ApiError::conflict(format!(
            "packet capture {ns}/{name} is still capturing on node {}: delete it (or wait for its endTime) first",
            st.node
        )));
    }
    let removed = svc.clean(&ns, &name).map_err(|e| ApiError::internal(format!("cleaning {ns}/{name}: {e}")))?;
    let _ = st.store.txn(vec![], vec![porin_store::Op::delete(capture::status_key(&ns, &name, &st.node))]).await?;
    Ok(Json(json!({"node": st.node, "removed": removed})))
}
