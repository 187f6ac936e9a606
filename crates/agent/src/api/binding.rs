//! The write-path rules for system-owned state, called by [`super::write::commit`] before anything is
//! written:
//!
//! * **Pod `status` is system-owned.** A write that omits it (every field empty) keeps the stored status,
//!   as Kubernetes' main resource ignores status: re-applying a pod manifest as the user wrote it never
//!   drops the pod's addresses. A scoped token whose write would change it is refused (403, naming the
//!   field); admin and `cni` tokens may.
//! * **`porin.io/*` annotations are system-owned**: a scoped token may not add, change or remove one
//!   (403, naming the annotation).
//! * **A `cni` token** may write WorkloadEndpoints and change the `status` of an existing Pod; creating,
//!   deleting or otherwise changing a Pod is refused.
//! * **Addresses and interfaces are unique.** After the request, no address may be claimed by two
//!   workloads (Pod `status.podIP`/`podIPs`, WorkloadEndpoint `spec.ipNetworks`), no node interface bound
//!   by two WorkloadEndpoints, no pod have two WorkloadEndpoints: otherwise 409 naming both objects, and
//!   nothing is written. (Two concurrent requests may still race past this check; the agent denies the
//!   endpoints of any conflict it finds, see `dataplane.rs`.)

use std::collections::BTreeMap;

use porin_model::endpoint::{ClaimIndex, claims};
use porin_model::{Kind, Resource};
use porin_store::{KeyValue, Store};

use super::write::{Change, decode};
use super::{ApiError, ApiState};
use crate::auth::{Identity, Role};
use crate::registry::keys;

/// The prefix of system annotations.
pub const SYSTEM_ANNOTATION_PREFIX: &str = "porin.io/";

fn key_of(c: &Change) -> String {
    keys::object_key(c.kind, c.namespace.as_deref(), &c.name)
}

/// Applies the system-field rules to `changes` (carrying stored Pod status forward) given the stored
/// objects `cur`. [`unique_claims`] runs once permissions are checked.
pub async fn check(_st: &ApiState, id: &Identity, changes: &mut [Change], cur: &BTreeMap<String, KeyValue>) -> Result<(), ApiError> {
    for c in changes.iter_mut() {
        let old = cur.get(&key_of(c)).and_then(|kv| decode(c.kind, kv));
        system_fields(id, old.as_ref(), c)?;
    }
    Ok(())
}

fn system_fields(id: &Identity, old: Option<&Resource>, c: &mut Change) -> Result<(), ApiError> {
    if let (Some(Resource::Pod(new)), Some(Resource::Pod(old))) = (c.resource.as_mut(), old)
        && new.status == Default::default()
    {
        new.status = old.status.clone();
    }
    let what = format!("{} {:?}", c.kind, qualified(c));
    match &id.role {
        Role::Scoped { .. } => {
            if let (Some(Resource::Pod(new)), old) = (c.resource.as_ref(), old) {
                let old_status = match old {
                    Some(Resource::Pod(p)) => p.status.clone(),
                    _ => Default::default(),
                };
                let field = if new.status.pod_ip != old_status.pod_ip {
                    Some("status.podIP")
                } else if new.status.pod_ips != old_status.pod_ips {
                    Some("status.podIPs")
                } else if new.status.phase != old_status.phase {
                    Some("status.phase")
                } else {
                    None
                };
                if let Some(f) = field {
                    return Err(ApiError::forbidden(format!(
                        "{} (scoped) may not set {f} of {what}: Pod status is system-owned (admin or a cni token)",
                        id.user
                    )));
                }
            }
            if let Some(new) = &c.resource {
                let empty = BTreeMap::new();
                let before = old.map_or(&empty, |o| &o.metadata().annotations);
                let after = &new.metadata().annotations;
                let changed = before
                    .keys()
                    .chain(after.keys())
                    .filter(|k| k.starts_with(SYSTEM_ANNOTATION_PREFIX))
                    .find(|k| before.get(*k) != after.get(*k));
                if let Some(k) = changed {
                    return Err(ApiError::forbidden(format!(
                        "{} (scoped) may not set metadata.annotations[{k:?}] of {what}: porin.io/ annotations are system-owned",
                        id.user
                    )));
                }
            }
        }
        Role::Cni if c.kind == Kind::Pod => {
            let strip = |r: &Resource| {
                let mut v = r.to_json();
                if let Some(m) = v.as_object_mut() {
                    m.remove("status");
                }
                if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    m.remove("resourceVersion");
                }
                v
            };
            match (old, &c.resource) {
                (Some(o), Some(n)) if strip(o) == strip(n) => {}
                (Some(_), Some(_)) => {
                    return Err(ApiError::forbidden(format!("{} (cni) may change only the status of {what}", id.user)));
                }
                _ => {
                    return Err(ApiError::forbidden(format!(
                        "{} (cni) may not create or delete {what}: only its status may change",
                        id.user
                    )));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Refuses a request after which two workloads claim one address or interface (see the module doc).
pub async fn unique_claims(st: &ApiState, changes: &[Change]) -> Result<(), ApiError> {
    if !changes.iter().any(|c| matches!(c.kind, Kind::Pod | Kind::WorkloadEndpoint)) {
        return Ok(());
    }
    let mut stored: BTreeMap<String, Resource> = BTreeMap::new();
    for kind in [Kind::Pod, Kind::WorkloadEndpoint] {
        let (items, _) = st.store.list(&keys::kind_prefix(kind)).await?;
        for kv in items {
            if let Some(r) = decode(kind, &kv) {
                stored.insert(kv.key.clone(), r);
            }
        }
    }
    let changed: BTreeMap<String, &Change> = changes.iter().map(|c| (key_of(c), c)).collect();
    let mut idx = ClaimIndex::default();
    // What stays as it is first (its claims are older), then the request's objects in order.
    for (k, r) in &stored {
        if !changed.contains_key(k)
            && let Some(cl) = claims(r)
        {
            idx.add(&cl);
        }
    }
    let mut problems = Vec::new();
    for c in changes {
        let Some(r) = &c.resource else { continue };
        let Some(cl) = claims(r) else { continue };
        for x in idx.add(&cl) {
            problems.push(format!("{}: {}: {}", cl.object, x.path, x.message));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::conflict(format!("{}; nothing was written", problems.join("\n"))))
    }
}

fn qualified(c: &Change) -> String {
    match &c.namespace {
        Some(ns) => format!("{ns}/{}", c.name),
        None => c.name.clone(),
    }
}
