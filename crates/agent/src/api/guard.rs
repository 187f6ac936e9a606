//! Guardrails on the write path: before a write commits, the model it would produce (the stored objects with
//! the request's changes applied) is checked against every `ReachabilityGuard` (stored or in the request). A
//! violation refuses the whole write with 422 naming the guard, a witness pair and the deciding rule; nothing
//! is written, and [`super::write::commit`] records the refusal in the audit trail.
//!
//! Serialisation: `commit` holds the API's write lock across read, check and transaction, and every write's
//! transaction is conditioned on (and bumps) [`keys::WRITE_EPOCH`] as read before the check, so two writes (on
//! this agent or on two agents sharing etcd) can never both be checked against the same old model and both
//! commit: the second one's transaction fails and nothing of it is written.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use porin_model::{Kind, Resource};
use porin_policy::Cluster;
use porin_policy::guard::{Guard, Violation};
use porin_store::Store;
use serde_json::json;

use super::write::Change;
use super::{ApiError, ApiState};
use crate::registry::keys;

/// Why a write was refused by guards: the first violation of every violated guard.
pub struct Refusal {
    pub violations: Vec<Violation>,
}

impl Refusal {
    pub fn message(&self) -> String {
        let lines: Vec<String> = self.violations.iter().map(ToString::to_string).collect();
        format!("refused by a ReachabilityGuard, nothing was written: {}", lines.join("\n"))
    }

    pub fn to_api_error(&self) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", self.message());
        e.causes = self
            .violations
            .iter()
            .map(|v| {
                json!({
                    "reason": "GuardViolated",
                    "field": format!("ReachabilityGuard/{}", v.guard),
                    "message": v.to_string(),
                    "violation": v,
                })
            })
            .collect();
        e
    }
}

/// Check `changes` against every guard in the model they would produce. `Ok(Err(refusal))` when a guard is
/// violated; `Err` when the check itself cannot run (the write is refused then too: fail closed).
pub async fn check(st: &ApiState, changes: &[Change]) -> Result<Result<(), Refusal>, ApiError> {
    // ConnectivityTests never change enforcement.
    if changes.iter().all(|c| c.kind == Kind::ConnectivityTest) {
        return Ok(Ok(()));
    }
    let adds_guard = changes.iter().any(|c| c.kind == Kind::ReachabilityGuard && c.resource.is_some());
    if !adds_guard {
        let (stored, _) = st.store.list(&keys::kind_prefix(Kind::ReachabilityGuard)).await?;
        if stored.is_empty() {
            return Ok(Ok(()));
        }
    }
    // The store itself, never the engine's cache: the check must see what the transaction is conditioned on.
    // Objects are decoded once per (key, revision) across writes (`guard_decode`); the write lock is held, so the
    // cache is not contended.
    let (items, _) = st.store.list(keys::RESOURCES).await?;
    let mut cache = st.guard_decode.lock().unwrap_or_else(|e| e.into_inner());
    // Fail closed: a stored guard (or anything else) that no longer decodes cannot be checked.
    let decoded = cache.decode_list(&items).map_err(|u| {
        ApiError::unavailable(format!("stored object {} does not decode; guards cannot be checked, nothing was written", u.key))
    })?;
    let mut model: BTreeMap<&str, &Resource> = decoded.into_iter().collect();
    let keys: Vec<String> = changes.iter().map(|c| keys::object_key(c.kind, c.namespace.as_deref(), &c.name)).collect();
    for (c, key) in changes.iter().zip(&keys) {
        match &c.resource {
            Some(r) => model.insert(key.as_str(), r),
            None => model.remove(key.as_str()),
        };
    }
    let cluster = Cluster::build(model.values().copied()).map_err(|e| {
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
    if violations.is_empty() { Ok(Ok(())) } else { Ok(Err(Refusal { violations })) }
}
