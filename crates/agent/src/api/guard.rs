//! Guardrails on the write path: before a write commits, the model it would produce (the stored objects with
//! the request's changes applied) is checked against every `ReachabilityGuard` (stored or in the request). A
//! violation refuses the whole write with 422 naming the guard, a witness pair and the deciding rule; nothing
//! is written, and [`super::write::commit`] records the refusal in the audit trail.
//!
//! Serialisation: `commit` holds the API's write lock across read, check and transaction, and every write's
//! transaction is conditioned on (and bumps) [`keys::WRITE_EPOCH`] as read before the check, so two writes (on
//! this agent or on two agents sharing etcd) can never both be checked against the same old model and both
//! commit: the second one's transaction fails and nothing of it is written.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use porin_model::{Kind, Resource};
use porin_policy::ir::ModelPart;
use porin_policy::{Cluster, EngineError};
use porin_policy::guard::{Guard, Violation};
use porin_store::Store;
use serde_json::json;

use super::write::Change;
use super::{ApiError, ApiState};
use crate::registry::keys;

/// What the guard check keeps across writes: every stored object decoded, and its part of the policy model, by
/// (key, revision).
#[derive(Debug, Default)]
pub struct GuardCache {
    decoded: crate::registry::DecodeCache,
    parts: HashMap<String, (u64, Result<ModelPart, EngineError>)>,
}

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
    // Objects are decoded and converted to their part of the model once per (key, revision) across writes
    // (`guard_decode`), so a write converts only what changed since the last one; the write lock is held, so the
    // cache is not contended.
    let (items, _) = st.store.list(keys::RESOURCES).await?;
    let mut cache = st.guard_decode.lock().unwrap_or_else(|e| e.into_inner());
    let GuardCache { decoded, parts } = &mut *cache;
    // Fail closed: a stored guard (or anything else) that no longer decodes cannot be checked.
    let decoded = decoded.decode_list(&items).map_err(|u| {
        ApiError::unavailable(format!("stored object {} does not decode; guards cannot be checked, nothing was written", u.key))
    })?;
    for (kv, (key, r)) in items.iter().zip(&decoded) {
        if parts.get(*key).is_none_or(|(rev, _)| *rev != kv.mod_revision) {
            parts.insert(key.to_string(), (kv.mod_revision, ModelPart::of(r)));
        }
    }
    if parts.len() > items.len() {
        let current: std::collections::HashSet<&str> = items.iter().map(|kv| kv.key.as_str()).collect();
        parts.retain(|k, _| current.contains(k.as_str()));
    }
    type Part<'a> = Cow<'a, Result<ModelPart, EngineError>>;
    let mut model: BTreeMap<&str, (&Resource, Part<'_>)> =
        decoded.into_iter().map(|(k, r)| (k, (r, Cow::Borrowed(&parts[k].1)))).collect();
    let keys: Vec<String> = changes.iter().map(|c| keys::object_key(c.kind, c.namespace.as_deref(), &c.name)).collect();
    for (c, key) in changes.iter().zip(&keys) {
        match &c.resource {
            Some(r) => model.insert(key.as_str(), (r, Cow::Owned(ModelPart::of(r)))),
            None => model.remove(key.as_str()),
        };
    }
    // What `Cluster::build` of the resulting objects would report first: a network set's error, then any other.
    let is_netset = |r: &Resource| matches!(r, Resource::NetworkSet(_) | Resource::GlobalNetworkSet(_));
    let refused = model
        .values()
        .filter(|(r, _)| is_netset(r))
        .chain(model.values().filter(|(r, _)| !is_netset(r)))
        .find_map(|(_, p)| p.as_ref().as_ref().err().cloned());
    let built = match refused {
        Some(e) => Err(e),
        None => Cluster::assemble(model.values().filter_map(|(_, p)| p.as_ref().as_ref().ok())),
    };
    let cluster = built.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("the change leaves a policy model that cannot be built ({e}); guards cannot be checked, nothing was written"),
        )
    })?;
    let model: BTreeMap<&str, &Resource> = model.into_iter().map(|(k, (r, _))| (k, r)).collect();
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
