//! `/porin/v1/reports`: archived compliance reports (list, read) and on-demand runs of a GlobalReport.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use porin_store::Store;
use serde_json::{Value, json};

use super::{ApiError, Shared};
use crate::auth::Identity;
use crate::reports::{self, REPORTS};

/// `GET /porin/v1/reports[?name=NAME]`: every archive (name, type, interval), oldest first per report.
pub async fn list(State(st): State<Shared>, Extension(id): Extension<Identity>, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    reports::may_read(&id)?;
    let prefix = match q.get("name") {
        Some(n) => format!("{REPORTS}{n}/"),
        None => REPORTS.to_string(),
    };
    let (items, _) = st.store.list(&prefix).await?;
    let mut out = Vec::new();
    for kv in items {
        let v: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("{}: {e}", kv.key)))?;
        out.push(json!({
            "name": v["name"], "reportType": v["reportType"], "start": v["start"], "end": v["end"],
            "endpoints": v["summary"]["endpoints"], "ingressProtected": v["summary"]["ingressProtected"],
            "egressProtected": v["summary"]["egressProtected"], "policyChanges": v["summary"]["policyChanges"],
        }));
    }
    Ok(Json(json!({"kind": "ReportList", "apiVersion": "porin.io/v1", "items": out})))
}

/// `GET /porin/v1/reports/{name}/{end}` (`latest` for the newest): one archived report.
pub async fn get(State(st): State<Shared>, Extension(id): Extension<Identity>, Path((name, end)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    reports::may_read(&id)?;
    let (items, _) = st.store.list(&format!("{REPORTS}{name}/")).await?;
    let kv = if end == "latest" {
        items.last()
    } else {
        let e: i64 = end.parse().map_err(|_| ApiError::bad_request(format!("{end:?}: expected seconds since the epoch or latest")))?;
        items.iter().find(|kv| kv.key.ends_with(&format!("/{e:020}")))
    };
    let kv = kv.ok_or_else(|| ApiError::not_found(format!("no archived report {name:?} ending {end}")))?;
    let v: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("{}: {e}", kv.key)))?;
    Ok(Json(v))
}

/// `POST /porin/v1/reports/{name}/run?start=SECS&end=SECS[&archive=true]`: run a GlobalReport now; archiving
/// writes to the store, so it is for admins.
pub async fn run(State(st): State<Shared>, Extension(id): Extension<Identity>, Path(name): Path<String>, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    reports::may_read(&id)?;
    let secs = |k: &str| -> Result<i64, ApiError> {
        q.get(k).ok_or_else(|| ApiError::bad_request(format!("{k}= is required (seconds since the epoch)")))?.parse().map_err(|_| ApiError::bad_request(format!("{k}=: expected seconds since the epoch")))
    };
    let (start, end) = (secs("start")?, secs("end")?);
    let archive = q.get("archive").is_some_and(|v| v == "true");
    if archive && !id.is_admin() {
        return Err(ApiError::forbidden(format!("{} may not archive reports (admin only)", id.user)));
    }
    let spec = reports::stored_spec(&st, &name)?;
    let r = reports::run(&st, &name, &spec, start, end).await.map_err(|e| ApiError::bad_request(e.to_string()))?;
    if archive {
        reports::archive(&st, &r).await?;
    }
    Ok(Json(serde_json::to_value(&r).expect("reports serialize")))
}
