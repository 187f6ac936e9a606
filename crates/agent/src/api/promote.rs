//! `POST /porin/v1/promote`: staged policies become enforced, in ONE audited transaction ([`commit`]).
//!
//! StagedNetworkPolicy → NetworkPolicy, StagedGlobalNetworkPolicy → GlobalNetworkPolicy,
//! StagedKubernetesNetworkPolicy → `networking.k8s.io` NetworkPolicy. `stagedAction: Delete` deletes the
//! enforced policy of the same name instead (404 when it does not exist). Every staged object promoted is
//! deleted in the same transaction, conditioned on the revision that was read, so a staged policy changed
//! meanwhile aborts the whole promotion. `dryRun: true` answers with the resulting objects and writes nothing.

use axum::extract::State;
use axum::{Extension, Json};
use porin_model::porin::{PolicySpec, StagedAction};
use porin_model::{Document, Kind, Object, ObjectMeta, Resource};
use serde::Deserialize;
use serde_json::{Value, json};

use super::write::{Change, Intent, commit, decode, known_tiers, stored_json};
use super::{ApiError, Shared};
use crate::auth::Identity;
use crate::registry::keys;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteRequest {
    pub items: Vec<StagedRef>,
    #[serde(default)]
    pub dry_run: bool,
}

/// A staged object by kind (`StagedNetworkPolicy`, ... or a CLI name such as `snp`), namespace, name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagedRef {
    pub kind: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
}

/// What promoting one staged object does to the enforced set.
#[derive(Debug, Clone, PartialEq)]
pub enum Promotion {
    /// Boxed: a Resource is much larger than the Delete variant.
    Set(Box<Resource>),
    Delete {
        kind: Kind,
        namespace: Option<String>,
        name: String,
    },
}

fn meta(m: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        labels: m.labels.clone(),
        annotations: m.annotations.clone(),
        ..Default::default()
    }
}

fn calico(kind: Kind, m: &ObjectMeta, spec: &PolicySpec) -> Object<PolicySpec> {
    Object {
        api_version: kind.api_version(),
        kind: kind.info().kind.to_string(),
        metadata: meta(m),
        spec: PolicySpec { staged_action: None, ..spec.clone() },
        status: None,
    }
}

/// The enforced counterpart of a staged object. Err for kinds that are not staged and for `Ignore`.
pub fn promoted(r: &Resource) -> Result<Promotion, String> {
    let (target, action) = match r {
        Resource::StagedNetworkPolicy(o) => {
            (Resource::NetworkPolicy(calico(Kind::NetworkPolicy, &o.metadata, &o.spec)), o.spec.staged_action)
        }
        Resource::StagedGlobalNetworkPolicy(o) => (
            Resource::GlobalNetworkPolicy(calico(Kind::GlobalNetworkPolicy, &o.metadata, &o.spec)),
            o.spec.staged_action,
        ),
        Resource::StagedKubernetesNetworkPolicy(o) => (
            Resource::K8sNetworkPolicy(Object {
                api_version: Kind::K8sNetworkPolicy.api_version(),
                kind: Kind::K8sNetworkPolicy.info().kind.to_string(),
                metadata: meta(&o.metadata),
                spec: o.spec.as_k8s(),
                status: None,
            }),
            o.spec.staged_action,
        ),
        other => {
            return Err(format!("{} {:?} is not a staged policy", other.kind(), other.qualified_name()));
        }
    };
    match action.unwrap_or(StagedAction::Set) {
        // Learn: accepting a recommendation enforces what it proposes now.
        StagedAction::Set | StagedAction::Learn => Ok(Promotion::Set(Box::new(target))),
        StagedAction::Delete => Ok(Promotion::Delete {
            kind: target.kind(),
            namespace: target.namespace().map(str::to_string),
            name: target.name().to_string(),
        }),
        StagedAction::Ignore => Err(format!(
            "{} {:?} has stagedAction Ignore (a dismissed recommendation), which has no enforced counterpart",
            r.kind(),
            r.qualified_name()
        )),
    }
}

fn staged_kind(name: &str) -> Result<Kind, ApiError> {
    let k = Kind::from_manifest(&Kind::StagedNetworkPolicy.api_version(), name)
        .or_else(|| Kind::from_cli(name))
        .ok_or_else(|| ApiError::bad_request(format!("unknown kind {name:?}")))?;
    match k {
        Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy | Kind::StagedKubernetesNetworkPolicy => Ok(k),
        other => Err(ApiError::bad_request(format!("{other} is not a staged policy kind"))),
    }
}

pub async fn promote(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Json(req): Json<PromoteRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.items.is_empty() {
        return Err(ApiError::bad_request("nothing to promote"));
    }
    let mut changes = Vec::new();
    let mut results = Vec::new();
    let mut targets = Vec::new();
    for (i, r) in req.items.iter().enumerate() {
        let kind = staged_kind(&r.kind)?;
        let ns =
            if kind.info().namespaced { Some(r.namespace.clone().unwrap_or_else(|| "default".into())) } else { None };
        let key = keys::object_key(kind, ns.as_deref(), &r.name);
        let qualified = ns.as_ref().map_or(r.name.clone(), |ns| format!("{ns}/{}", r.name));
        let kv = st.get(&key).await?.ok_or_else(|| ApiError::not_found(format!("{kind} {qualified:?} not found")))?;
        let staged = decode(kind, &kv)
            .ok_or_else(|| ApiError::internal(format!("{kind} {qualified:?}: stored object does not decode")))?;
        let promotion = promoted(&staged).map_err(ApiError::bad_request)?;
        changes.push(Change {
            kind,
            namespace: ns.clone(),
            name: r.name.clone(),
            resource: None,
            expected: Some(kv.mod_revision),
            intent: Intent::Delete,
        });
        match promotion {
            Promotion::Set(target) => {
                results
                    .push(json!({"action": "apply", "object": stored_json(&target), "staged": stored_json(&staged)}));
                changes.push(Change {
                    kind: target.kind(),
                    namespace: target.namespace().map(str::to_string),
                    name: target.name().to_string(),
                    resource: Some((*target).clone()),
                    expected: None,
                    intent: Intent::Upsert,
                });
                targets.push(Document {
                    source: format!("promoted {kind} {qualified}"),
                    doc: i + 1,
                    prefix: String::new(),
                    resource: *target,
                });
            }
            Promotion::Delete { kind: k, namespace, name } => {
                results.push(json!({"action": "delete", "staged": stored_json(&staged), "object": {
                    "apiVersion": k.api_version(), "kind": k.info().kind, "metadata": {"name": name, "namespace": namespace}
                }}));
                changes.push(Change {
                    kind: k,
                    namespace,
                    name,
                    resource: None,
                    expected: None,
                    intent: Intent::Delete,
                });
            }
        }
    }
    let tiers = known_tiers(&st).await?;
    porin_model::validate_set(&targets, &tiers).map_err(|e| ApiError::invalid(&e))?;
    if req.dry_run {
        return Ok(Json(
            json!({"kind": "PromoteResult", "apiVersion": "porin.io/v1", "dryRun": true, "items": results}),
        ));
    }
    let (revision, items) = commit(&st, &id, "promote", changes).await?;
    Ok(Json(json!({"kind": "ApplyResult", "apiVersion": "porin.io/v1", "revision": revision, "items": items})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> Resource {
        porin_model::parse_documents("t", yaml).unwrap().remove(0).resource
    }

    #[test]
    fn staged_kinds_map_to_their_enforced_kinds() {
        let r = one(
            "apiVersion: porin.io/v1\nkind: StagedNetworkPolicy\nmetadata: {name: a, namespace: shop, resourceVersion: \"7\"}\nspec: {selector: all(), stagedAction: Set, ingress: [{action: Deny}]}\n",
        );
        let Promotion::Set(t) = promoted(&r).unwrap() else { panic!() };
        let Resource::NetworkPolicy(p) = *t else { panic!() };
        assert_eq!(
            (p.kind.as_str(), p.metadata.namespace.as_deref(), p.spec.staged_action),
            ("NetworkPolicy", Some("shop"), None)
        );
        assert_eq!(p.metadata.resource_version, None);
        let r = one(
            "apiVersion: porin.io/v1\nkind: StagedKubernetesNetworkPolicy\nmetadata: {name: k, namespace: shop}\nspec: {podSelector: {}}\n",
        );
        let Promotion::Set(t) = promoted(&r).unwrap() else { panic!() };
        assert_eq!((t.kind(), t.api_version()), (Kind::K8sNetworkPolicy, "networking.k8s.io/v1"));
        let r = one(
            "apiVersion: porin.io/v1\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: g}\nspec: {stagedAction: Delete}\n",
        );
        assert_eq!(
            promoted(&r).unwrap(),
            Promotion::Delete { kind: Kind::GlobalNetworkPolicy, namespace: None, name: "g".into() }
        );
        let r = one(
            "apiVersion: porin.io/v1\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: g}\nspec: {stagedAction: Ignore}\n",
        );
        assert!(promoted(&r).is_err());
        let r = one(
            "apiVersion: porin.io/v1\nkind: StagedNetworkPolicy\nmetadata: {name: r, namespace: shop}\nspec: {selector: all(), stagedAction: Learn}\n",
        );
        assert!(matches!(promoted(&r).unwrap(), Promotion::Set(t) if t.kind() == Kind::NetworkPolicy));
        let r = one("apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: t}\n");
        assert!(promoted(&r).is_err());
    }
}
