//! `POST /porin/v1/preview?window=24h` (and `/porin/v1/console/preview`, the policy board's apply): the
//! documents a caller is about to apply, and the observed flows of the window whose verdict they would flip
//! (allowed → denied, which breaks something, and denied → allowed).
//!
//! The documents are parsed and validated as `/porin/v1/apply` does (a 400 names the document and field), and
//! authorized as that apply would be: every check of a real commit runs as a dry run ([`commit_opts`]), so a
//! read-only token gets 403 and a scoped token may preview only what it could write. The flows are the
//! caller's view of the flow store ([`View`]): a scoped token sees only flows with both ends it may see, and
//! the deciding steps of other tiers and namespaces hidden. Nothing is ever written.
//!
//! Before is the stored objects, after is the stored objects with the documents applied; both are built into
//! the policy model and the observed flows replayed against each ([`porin_policy::preview`]).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use porin_model::Resource;
use porin_policy::preview::{Flip, Side, preview_set as replay};
use porin_policy::{Cluster, Variant};
use serde_json::{Value, json};

use super::console::View;
use super::write::{Change, Intent, commit_opts, decode, known_tiers};
use super::{ApiError, Shared};
use crate::auth::{Identity, Role};
use crate::registry::keys;

/// A deciding step the caller may not read reads like this (the action stays).
const HIDDEN: &str = "(outside your scope)";

pub async fn preview(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // A preview is a write's question: who may not write may not ask (the router refused them already).
    if matches!(id.role, Role::ReadOnly | Role::Cni) {
        return Err(ApiError::forbidden(format!("{} may not preview an apply: it may not apply", id.user)));
    }
    let (w, _) = super::console::window(&q, "24h")?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("body is not UTF-8"))?;
    let docs = porin_model::parse_documents("request body", text).map_err(|e| ApiError::invalid(&e))?;
    if docs.is_empty() {
        return Err(ApiError::bad_request("request body: no documents to preview"));
    }
    super::check_documents(&id, docs.len())?;
    let tiers = known_tiers(&st).await?;
    porin_model::validate_set(&docs, &tiers).map_err(|e| ApiError::invalid(&e))?;
    let changes = docs.iter().map(|d| Change::from_doc(d, Intent::Upsert)).collect::<Result<Vec<_>, _>>()?;
    // Every check of the apply itself (permissions, scope, bindings, conflicts, guards), writing nothing.
    let (revision, items) = commit_opts(&st, &id, "apply", changes, true).await?;

    let (stored, _) = st.list(keys::RESOURCES).await?;
    let mut before = Vec::with_capacity(stored.len());
    for kv in &stored {
        let Some((kind, _, _)) = keys::parse_key(&kv.key) else { continue };
        before.push(decode(kind, kv).ok_or_else(|| {
            ApiError::unavailable(format!("stored object {} does not decode; what the apply would change cannot be told", kv.key))
        })?);
    }
    let same = |a: &Resource, b: &Resource| a.kind() == b.kind() && a.namespace() == b.namespace() && a.name() == b.name();
    let mut after: Vec<Resource> = before.iter().filter(|r| !docs.iter().any(|d| same(r, &d.resource))).cloned().collect();
    after.extend(docs.iter().map(|d| d.resource.clone()));
    let built = |rs: &[Resource], what: &str| {
        Cluster::build(rs.iter())
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "Conflict", format!("the policies {what} do not build ({e})")))
    };
    let (cb, ca) = (built(&before, "as stored")?, built(&after, "with the documents applied")?);
    let view = View::of(&id);
    let records = super::console::records_in_window(&st, &view, &w).await?;
    let observed = super::recommend::observation_set(&records);
    let mut flips = tokio::task::spawn_blocking(move || {
        replay(Side { cluster: &cb, variant: Variant::Enforced }, Side { cluster: &ca, variant: Variant::Enforced }, &observed)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    for f in &mut flips {
        redact(&view, f);
    }
    let breaks = flips.iter().filter(|f| f.breaks()).count();
    Ok(Json(json!({
        "kind": "PreviewResult", "apiVersion": "porin.io/v1",
        "revision": revision, "window": w, "records": records.len(), "items": items,
        "allowedToDenied": breaks, "deniedToAllowed": flips.len() - breaks, "flipped": flips,
    })))
}

/// The deciding steps (`egress tier|policy|rule|action; ingress ...`) with those of policies outside the
/// caller's view replaced by [`HIDDEN`].
pub(super) fn redact(view: &View, f: &mut Flip) {
    if matches!(view, View::All) {
        return;
    }
    for s in [&mut f.before, &mut f.after] {
        let parts: Vec<String> = s
            .split("; ")
            .map(|part| {
                let (dir, step) = part.split_once(' ').unwrap_or(("", part));
                let fields: Vec<&str> = step.split('|').collect();
                if fields.len() < 4 {
                    return part.to_string(); // "default allow" / "default deny"
                }
                let (tier, policy, action) = (fields[0], fields[1], fields[fields.len() - 1]);
                let ns = policy.split_once('/').map(|(ns, _)| ns);
                if view.policy(tier, ns) { part.to_string() } else { format!("{dir} -|{HIDDEN}|-|{action}") }
            })
            .collect();
        *s = parts.join("; ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciding_steps_outside_the_scope_are_hidden() {
        let view = View::Scoped { namespaces: ["shop".to_string()].into(), tiers: ["default".to_string()].into(), cni: false };
        let mut f = Flip {
            from: "shop/a".into(),
            to: "shop/b".into(),
            protocol: "tcp".into(),
            port: 80,
            allowed_before: true,
            allowed_after: false,
            flows: 1,
            records: 1,
            before: "egress default allow; ingress default|shop/allow|0|allow".into(),
            after: "ingress platform|pci|1|deny".into(),
        };
        redact(&view, &mut f);
        assert_eq!(f.before, "egress default allow; ingress default|shop/allow|0|allow");
        assert_eq!(f.after, format!("ingress -|{HIDDEN}|-|deny"));
        let mut g = f.clone();
        g.after = "ingress default|bank/x|0|deny".into();
        redact(&view, &mut g);
        assert_eq!(g.after, format!("ingress -|{HIDDEN}|-|deny"), "another namespace's policy in the caller's tier");
    }
}
