//! Guardrails on the write path: before a write commits, the model it would produce (the stored objects with
//! the request's changes applied) is checked against every `ReachabilityGuard` (stored or in the request). A
//! violation refuses the whole write with 422 naming the guard, a witness pair and the deciding rule; nothing
//! is written. Refusals are not audited: the audit trail records committed changes only.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use porin_model::{Kind, Resource};
use porin_policy::Cluster;
use porin_policy::guard::Guard;

use super::write::{Change, decode};
use super::{ApiError, ApiState};
use crate::keys;

/// Refuse `changes` if the resulting model violates a guard. Cheap when no guard exists.
pub async fn check(st: &ApiState, changes: &[Change]) -> Result<(), ApiError> {
    // ConnectivityTests never change enforcement.
    if changes.iter().all(|c| c.kind == Kind::ConnectivityTest) {
        return Ok(());
    }
    let adds_guard = changes.iter().any(|c| c.kind == Kind::ReachabilityGuard && c.resource.is_some());
    if !adds_guard {
        let (stored, _) = st.list(&keys::kind_prefix(Kind::ReachabilityGuard)).await?;
        if stored.is_empty() {
            return Ok(());
        }
    }
    let (items, _) = st.list(keys::RESOURCES).await?;
    let mut model: BTreeMap<String, Resource> = BTreeMap::new();
    for kv in &items {
        let Some((kind, _, _)) = keys::parse_key(&kv.key) else { continue };
        match decode(kind, kv) {
            Some(r) => {
                model.insert(kv.key.clone(), r);
            }
            // Fail closed: a stored guard (or anything else) that no longer decodes cannot be checked.
            None => {
                return Err(ApiError::unavailable(format!(
                    "stored object {} does not decode; guards cannot be checked, nothing was written",
                    kv.key
                )));
            }
        }
    }
    for c in changes {
        let key = keys::object_key(c.kind, c.namespace.as_deref(), &c.name);
        match &c.resource {
            Some(r) => model.insert(key, r.clone()),
            None => model.remove(&key),
        };
    }
    let cluster = Cluster::build(model.values()).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("the change leaves a policy model that cannot be built ({e}); guards cannot be checked, nothing was written"),
        )
    })?;
    let guards: Vec<Guard<'_>> = model
        .values()
        .filter_map(|r| match r {
            Resource::ReachabilityGuard(o) => Some(Guard { name: &o.metadata.name, spec: &o.spec }),
            _ => None,
        })
        .collect();
    let violations = porin_policy::guard::check(&cluster, &guards);
    if violations.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("refused, nothing was written: {}", lines.join("\n")),
    ))
}
