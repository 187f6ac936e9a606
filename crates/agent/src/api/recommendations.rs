//! The continuous recommendations ([`crate::recommender`]) as the user sees and decides them:
//!
//! * `GET /porin/v1/recommendations`: every recommendation of the caller's view (namespace, status —
//!   `Learning`, `Stabilizing`, `Stable`, or `Dismissed` for `stagedAction: Ignore` — last change, rule counts,
//!   the object);
//! * `GET /porin/v1/recommendations/{ns}/preview?window=24h`: the observed flows (of the caller's view) whose
//!   verdict would flip if it were accepted;
//! * `POST /porin/v1/recommendations/{ns}/{accept|dismiss|relearn}`: accept promotes it to an enforced
//!   NetworkPolicy (one audited transaction, guards checked); dismiss sets `stagedAction: Ignore`; relearn sets
//!   `Learn` and status Learning. Each is an ordinary write of the caller (`write::commit`): a read-only token
//!   gets 403, a scoped token needs the namespace and the recommendation's tier.
//!
//! The console serves the same under `/porin/v1/console/recommendations...`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use porin_model::porin::StagedAction;
use porin_model::{Kind, Resource};
use porin_policy::preview::{Side, preview_set as replay};
use porin_policy::{Cluster, Variant};
use serde_json::{Value, json};

use super::console::View;
use super::write::{Change, Intent, commit, decode, stored_json};
use super::{ApiError, Shared};
use crate::auth::Identity;
use crate::recommender::{ANN_STATUS, ANN_UPDATED};
use crate::registry::keys;

/// The recommendation of `ns` as stored: (object, its mod revision).
async fn find(st: &Shared, ns: &str) -> Result<(Resource, u64), ApiError> {
    let (items, _) = st.list(&keys::kind_prefix(Kind::StagedNetworkPolicy)).await?;
    for kv in items {
        let Some(r) = decode(Kind::StagedNetworkPolicy, &kv) else { continue };
        if r.namespace() == Some(ns) && r.metadata().annotations.contains_key(ANN_STATUS) {
            return Ok((r, kv.mod_revision));
        }
    }
    Err(ApiError::not_found(format!("namespace {ns:?} has no recommendation (is a RecommendationScope enabled for it?)")))
}

fn summary(r: &Resource) -> Value {
    let Resource::StagedNetworkPolicy(o) = r else { return Value::Null };
    let a = &o.metadata.annotations;
    let status = match o.spec.staged_action {
        Some(StagedAction::Ignore) => "Dismissed".to_string(),
        _ => a.get(ANN_STATUS).cloned().unwrap_or_default(),
    };
    json!({
        "namespace": o.metadata.namespace, "name": o.metadata.name, "tier": o.spec.tier,
        "status": status,
        "stagedAction": o.spec.staged_action.map(|s| format!("{s:?}")),
        "lastUpdated": a.get(ANN_UPDATED),
        "ingressRules": o.spec.ingress.len(), "egressRules": o.spec.egress.len(),
        "object": stored_json(r),
    })
}

pub async fn list(State(st): State<Shared>, Extension(id): Extension<Identity>) -> Result<Json<Value>, ApiError> {
    let view = View::of(&id);
    let (items, revision) = st.list(&keys::kind_prefix(Kind::StagedNetworkPolicy)).await?;
    let mut out = Vec::new();
    for kv in items {
        let Some(r) = decode(Kind::StagedNetworkPolicy, &kv) else { continue };
        let tier = match &r {
            Resource::StagedNetworkPolicy(o) => o.spec.tier.clone().unwrap_or_else(|| "default".into()),
            _ => continue,
        };
        if r.metadata().annotations.contains_key(ANN_STATUS) && view.policy(&tier, r.namespace()) {
            out.push(summary(&r));
        }
    }
    Ok(Json(json!({"revision": revision, "items": out})))
}

pub async fn preview(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let view = View::of(&id);
    if !view.namespace(&ns) {
        return Err(ApiError::forbidden(format!("{} may not read namespace {ns:?}", id.user)));
    }
    let (w, _) = super::console::window(&q, "24h")?;
    let (staged, _) = find(&st, &ns).await?;
    let target = match super::promote::promoted(&Resource::StagedNetworkPolicy(match &staged {
        Resource::StagedNetworkPolicy(o) => {
            let mut o = o.clone();
            o.spec.staged_action = Some(StagedAction::Set);
            o
        }
        _ => unreachable!("find returns staged network policies"),
    })) {
        Ok(super::promote::Promotion::Set(t)) => *t,
        _ => return Err(ApiError::internal("a recommendation has no enforced counterpart")),
    };
    let (items, _) = st.list(keys::RESOURCES).await?;
    let mut before = Vec::new();
    for kv in &items {
        let Some((kind, _, _)) = keys::parse_key(&kv.key) else { continue };
        before.push(decode(kind, kv).ok_or_else(|| ApiError::unavailable(format!("stored object {} does not decode", kv.key)))?);
    }
    let mut after: Vec<Resource> = before.iter().filter(|r| !(r.kind() == Kind::StagedNetworkPolicy && r.namespace() == Some(ns.as_str()) && r.name() == staged.name())).cloned().collect();
    after.retain(|r| !(r.kind() == target.kind() && r.namespace() == target.namespace() && r.name() == target.name()));
    after.push(target);
    let built = |rs: &[Resource]| Cluster::build(rs.iter()).map_err(|e| ApiError::new(axum::http::StatusCode::CONFLICT, "Conflict", format!("the policies do not build ({e})")));
    let (cb, ca) = (built(&before)?, built(&after)?);
    let records = super::console::records_in_window(&st, &view, &w).await?;
    let observed = super::recommend::observation_set(&records);
    let mut flips = tokio::task::spawn_blocking(move || {
        replay(Side { cluster: &cb, variant: Variant::Enforced }, Side { cluster: &ca, variant: Variant::Enforced }, &observed)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    // A scoped token sees its flows, but not the names of policies outside its tiers and namespaces that decide them.
    for f in &mut flips {
        super::preview::redact(&view, f);
    }
    let breaks = flips.iter().filter(|f| f.breaks()).count();
    Ok(Json(json!({
        "namespace": ns, "window": w, "records": records.len(),
        "allowedToDenied": breaks, "deniedToAllowed": flips.len() - breaks, "flipped": flips,
    })))
}

pub async fn act(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Path((ns, verb)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (staged, rev) = find(&st, &ns).await?;
    let Resource::StagedNetworkPolicy(mut o) = staged.clone() else { unreachable!("find returns staged network policies") };
    let name = o.metadata.name.clone();
    let mut changes = Vec::new();
    match verb.as_str() {
        "dismiss" | "relearn" => {
            if verb == "dismiss" {
                o.spec.staged_action = Some(StagedAction::Ignore);
            } else {
                o.spec.staged_action = Some(StagedAction::Learn);
                o.metadata.annotations.insert(ANN_STATUS.into(), "Learning".into());
                o.metadata.annotations.insert(ANN_UPDATED.into(), crate::timefmt::rfc3339(crate::timefmt::now_secs()));
            }
            o.metadata.resource_version = None;
            changes.push(Change {
                kind: Kind::StagedNetworkPolicy,
                namespace: Some(ns.clone()),
                name,
                resource: Some(Resource::StagedNetworkPolicy(o)),
                expected: Some(rev),
                intent: Intent::Upsert,
            });
        }
        "accept" => {
            if o.spec.staged_action == Some(StagedAction::Ignore) {
                return Err(ApiError::bad_request(format!("the recommendation of {ns:?} is dismissed: relearn it first")));
            }
            let Ok(super::promote::Promotion::Set(target)) = super::promote::promoted(&staged) else {
                return Err(ApiError::bad_request(format!("the recommendation of {ns:?} cannot be promoted")));
            };
            let mut target = *target;
            // The enforced policy carries no recommendation or system annotations (a scoped token may write it).
            target.metadata_mut().annotations.retain(|k, _| !k.starts_with(super::binding::SYSTEM_ANNOTATION_PREFIX) && !k.starts_with("policyrecommendation."));
            changes.push(Change { kind: Kind::StagedNetworkPolicy, namespace: Some(ns.clone()), name, resource: None, expected: Some(rev), intent: Intent::Delete });
            changes.push(Change {
                kind: target.kind(),
                namespace: target.namespace().map(str::to_string),
                name: target.name().to_string(),
                resource: Some(target),
                expected: None,
                intent: Intent::Upsert,
            });
        }
        other => return Err(ApiError::bad_request(format!("unknown action {other:?}: accept, dismiss or relearn"))),
    }
    let (revision, items) = commit(&st, &id, &format!("recommend-{verb}"), changes).await?;
    Ok(Json(json!({"kind": "ApplyResult", "apiVersion": "porin.io/v1", "revision": revision, "items": items})))
}
