//! Compliance reports in the agent: GlobalReports run on their cron schedule and archived in the store
//! (`reports/<name>/<end, 20 digits>` → the report's JSON), plus on-demand runs and the API to list and read
//! archives. Each scheduled run covers the time since the previous one (the first: since the report was created).
//!
//! In a cluster every agent runs the scheduler; the archive write is conditioned on the key not existing, so a
//! report is archived once whichever agent gets there first. Reports span every namespace: scoped tokens may
//! not read them.

use std::sync::Arc;
use std::time::Duration;

use porin_model::report::GlobalReportSpec;
use porin_model::{Kind, Object, Resource};
use porin_report::{AuditRecordView, History, Report, ReportType, Scope};
use porin_selector::Selector;
use porin_store::{Condition, Op, Store, TxnResult};

use crate::api::{ApiError, ApiState};
use crate::auth::{Identity, Role};
use crate::registry::keys;

/// Archived reports: `reports/<name>/<end>`.
pub const REPORTS: &str = "reports/";
/// Archives kept per report (older ones are deleted when a new one is written).
pub const KEEP: usize = 30;

/// Why a report could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ReportRunError {
    #[error("GlobalReport {name:?}: {field}: {message}")]
    Spec { name: String, field: &'static str, message: String },
    #[error(transparent)]
    Compute(#[from] porin_report::ReportError),
    #[error("reading {what}: {message}")]
    Read { what: &'static str, message: String },
}

fn archive_key(name: &str, end: i64) -> String {
    format!("{REPORTS}{name}/{end:020}")
}

/// Type and scope of a GlobalReport; namespace selectors are resolved against `objects`.
pub fn scope_of(name: &str, spec: &GlobalReportSpec, objects: &[Resource]) -> Result<(ReportType, Scope), ReportRunError> {
    let err = |field, message: String| ReportRunError::Spec { name: name.to_string(), field, message };
    let t = ReportType::parse(&spec.report_type).ok_or_else(|| err("spec.reportType", format!("{:?}", spec.report_type)))?;
    let mut scope = Scope::default();
    if let Some(e) = &spec.endpoints {
        if let Some(s) = &e.selector {
            scope.selector = Some(Selector::parse(s).map_err(|x| err("spec.endpoints.selector", x.to_string()))?);
        }
        if let Some(n) = &e.namespaces {
            scope.namespaces.extend(n.names.iter().cloned());
            if let Some(s) = &n.selector {
                let sel = Selector::parse(s).map_err(|x| err("spec.endpoints.namespaces.selector", x.to_string()))?;
                for r in objects {
                    if let Resource::Namespace(ns) = r
                        && sel.matches(&ns.metadata.labels)
                    {
                        scope.namespaces.insert(ns.metadata.name.clone());
                    }
                }
            }
        }
    }
    Ok((t, scope))
}

/// The current objects (from the engine's cache).
fn objects(st: &ApiState) -> Vec<Resource> {
    let snap = st.snapshot.borrow().clone();
    let (items, _) = crate::registry::decode_all(&snap.items);
    items
}

/// Runs report `name` over `[start, end]` from the store's audit trail, the engine's cache and the flow store.
pub async fn run(st: &ApiState, name: &str, spec: &GlobalReportSpec, start: i64, end: i64) -> Result<Report, ReportRunError> {
    let objs = objects(st);
    let (kind, scope) = scope_of(name, spec, &objs)?;
    let (audit, _) =
        st.store.list(keys::AUDIT).await.map_err(|e| ReportRunError::Read { what: "the audit trail", message: e.to_string() })?;
    let mut records = Vec::new();
    for kv in audit {
        let r: AuditRecordView = serde_json::from_slice(&kv.value)
            .map_err(|e| ReportRunError::Read { what: "the audit trail", message: format!("{}: {e}", kv.key) })?;
        if r.timestamp >= start {
            records.push(r);
        }
    }
    let flows = match (kind, &st.flows) {
        (ReportType::NetworkAccess, Some(f)) => {
            let q = porin_flow::Query {
                since: Some(u64::try_from(start).unwrap_or(0) * 1_000_000_000),
                until: Some(u64::try_from(end).unwrap_or(0) * 1_000_000_000),
                ..Default::default()
            };
            f.query(&q).map_err(|e| ReportRunError::Read { what: "the flow store", message: e.to_string() })?
        }
        _ => Vec::new(),
    };
    let history = History::new(&objs, records);
    let mut r = porin_report::compute(kind, name, &scope, &history, &flows, start, end)?;
    r.generated_by = format!("porin agent on {}", st.node);
    Ok(r)
}

/// Archives `r` (once: a second writer of the same report and end finds the key and leaves it) and deletes
/// archives beyond [`KEEP`]. Returns the key.
pub async fn archive(st: &ApiState, r: &Report) -> Result<String, ApiError> {
    let key = archive_key(&r.name, r.end);
    let (old, _) = st.store.list(&format!("{REPORTS}{}/", r.name)).await?;
    let mut ops = vec![Op::put(key.clone(), serde_json::to_vec(r).expect("reports serialize"))];
    let excess = (old.len() + 1).saturating_sub(KEEP);
    ops.extend(old.iter().take(excess).map(|kv| Op::delete(kv.key.clone())));
    match st.store.txn(vec![Condition::mod_revision(key.clone(), 0)], ops).await? {
        TxnResult::Committed { .. } | TxnResult::Failed { .. } => Ok(key),
    }
}

/// The end of the newest archive of `name`.
async fn last_end(st: &ApiState, name: &str) -> Option<i64> {
    let (items, _) = st.store.list(&format!("{REPORTS}{name}/")).await.ok()?;
    items.last().and_then(|kv| kv.key.rsplit('/').next()).and_then(|s| s.parse().ok())
}

/// One pass of the scheduler at `now`: every due GlobalReport is run and archived. Returns the keys written.
pub async fn tick(st: &ApiState, now: i64) -> Vec<String> {
    let mut written = Vec::new();
    if !st.connected() {
        return written;
    }
    for r in objects(st) {
        let Resource::GlobalReport(Object { metadata, spec, .. }) = r else { continue };
        let Some(expr) = spec.schedule.as_deref() else { continue };
        if spec.suspend == Some(true) {
            continue;
        }
        let Ok(cron) = porin_model::report::parse_schedule(expr) else { continue };
        let created = metadata.creation_timestamp.as_deref().and_then(crate::timefmt::parse_rfc3339);
        let Some(anchor) = last_end(st, &metadata.name).await.or(created) else { continue };
        let Some(from) = chrono::DateTime::from_timestamp(anchor, 0) else { continue };
        let Ok(next) = cron.find_next_occurrence(&from, false) else { continue };
        let due = next.timestamp();
        if due > now {
            continue;
        }
        match run(st, &metadata.name, &spec, anchor, due).await {
            Ok(rep) => match archive(st, &rep).await {
                Ok(k) => {
                    tracing::info!(report = %metadata.name, start = anchor, end = due, "report archived");
                    written.push(k);
                }
                Err(e) => tracing::warn!(report = %metadata.name, error = %e.message, "archiving a report failed"),
            },
            Err(e) => tracing::warn!(report = %metadata.name, error = %e, "a scheduled report failed"),
        }
    }
    written
}

/// The scheduler task: [`tick`] every `every`.
pub async fn scheduler(st: Arc<ApiState>, every: Duration) {
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        tick(&st, crate::timefmt::now_secs()).await;
    }
}

/// Reports read across namespaces: admin and read-only tokens only.
pub fn may_read(id: &Identity) -> Result<(), ApiError> {
    match id.role {
        Role::Admin | Role::ReadOnly => Ok(()),
        _ => Err(ApiError::forbidden(format!("{} may not read reports: they span every namespace", id.user))),
    }
}

/// The stored GlobalReport `name`.
pub fn stored_spec(st: &ApiState, name: &str) -> Result<GlobalReportSpec, ApiError> {
    let key = keys::object_key(Kind::GlobalReport, None, name);
    let snap = st.snapshot.borrow().clone();
    let kv = snap.items.get(&key).ok_or_else(|| ApiError::not_found(format!("GlobalReport {name:?} not found")))?;
    match crate::registry::decode(Kind::GlobalReport, kv) {
        Ok(Resource::GlobalReport(o)) => Ok(o.spec),
        _ => Err(ApiError::unavailable(format!("GlobalReport {name:?} does not decode"))),
    }
}
