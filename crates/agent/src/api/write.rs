//! The one write path: every create, update, apply and delete goes through [`commit`], which checks
//! permissions, computes created/configured/unchanged/deleted against the stored objects, and commits all
//! objects plus one audit record in ONE store transaction conditioned on every key's mod revision.

use std::collections::{BTreeMap, BTreeSet};

use porin_model::{Document, Kind, Resource};
use porin_store::{Condition, KeyValue, Op, Store, TxnResult};
use serde::Serialize;
use serde_json::Value;

use super::{ApiError, ApiState};
use crate::audit::{AuditEntry, AuditRecord};
use crate::auth::{Identity, Role};
use crate::registry::keys;
use crate::scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Create or update (kubectl apply, PUT).
    Upsert,
    /// Create only (POST): 409 AlreadyExists if present.
    Create,
    Delete,
}

pub struct Change {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
    /// The new object (None for deletes).
    pub resource: Option<Resource>,
    /// `metadata.resourceVersion` the caller based the change on.
    pub expected: Option<u64>,
    pub intent: Intent,
}

impl Change {
    pub fn from_doc(d: &Document, intent: Intent) -> Result<Change, ApiError> {
        let r = &d.resource;
        let expected = match &r.metadata().resource_version {
            None => None,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("{}: metadata.resourceVersion {s:?} is not a revision", d.location()))
            })?),
        };
        Ok(Change {
            kind: r.kind(),
            namespace: r.namespace().map(str::to_string),
            name: r.name().to_string(),
            resource: if intent == Intent::Delete { None } else { Some(r.clone()) },
            expected,
            intent,
        })
    }
    fn key(&self) -> String {
        keys::object_key(self.kind, self.namespace.as_deref(), &self.name)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub kind: String,
    pub api_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// created, configured, unchanged, deleted
    pub action: &'static str,
}

pub use crate::registry::{object_out, stored_json};

/// The resource a stored value holds; None when it does not decode.
pub fn decode(kind: Kind, kv: &KeyValue) -> Option<Resource> {
    crate::registry::decode(kind, kv).ok()
}

/// Tiers in the store (for validating tier references).
pub async fn known_tiers(st: &ApiState) -> Result<BTreeSet<String>, ApiError> {
    let (items, _) = st.list(&keys::scope_prefix(Kind::Tier, None)).await?;
    Ok(items.iter().filter_map(|kv| keys::parse_key(&kv.key)).map(|(_, _, n)| n).collect())
}

async fn current(st: &ApiState, changes: &[Change]) -> Result<BTreeMap<String, KeyValue>, ApiError> {
    let mut out = BTreeMap::new();
    if changes.len() <= 16 {
        for c in changes {
            if let Some(kv) = st.store.get(&c.key()).await? {
                out.insert(kv.key.clone(), kv);
            }
        }
    } else {
        let prefixes: BTreeSet<String> = changes.iter().map(|c| keys::kind_prefix(c.kind)).collect();
        for p in prefixes {
            let (items, _) = st.store.list(&p).await?;
            out.extend(items.into_iter().map(|kv| (kv.key.clone(), kv)));
        }
    }
    Ok(out)
}

/// Commit `changes` atomically, or nothing. Returns the store revision and one outcome per change.
pub async fn commit(st: &ApiState, id: &Identity, verb: &str, changes: Vec<Change>) -> Result<(u64, Vec<Outcome>), ApiError> {
    commit_opts(st, id, verb, changes, false).await
}

/// [`commit`], or with `dry_run` every check of a real commit (permissions, conflicts, scope, bindings, guards)
/// and the outcomes, with nothing written and nothing audited (`kubectl apply --dry-run=server`).
pub async fn commit_opts(
    st: &ApiState,
    id: &Identity,
    verb: &str,
    mut changes: Vec<Change>,
    dry_run: bool,
) -> Result<(u64, Vec<Outcome>), ApiError> {
    if !st.connected() && st.store_kind == "etcd" {
        let last = st.snapshot.borrow().last_error.clone();
        return Err(ApiError::unavailable(format!(
            "datastore {} is unreachable{}: nothing was written; the API serves the last known state read-only until \
             it reconnects",
            st.store_desc,
            last.map(|e| format!(" ({e})")).unwrap_or_default()
        )));
    }
    if st.store_kind == "kubernetes"
        && let Some(c) = changes.iter().find(|c| crate::registry::kube_owned(c.kind))
    {
        return Err(ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "{} {:?} belongs to the Kubernetes API server (--datastore kubernetes): change it there, with kubectl; \
                 nothing was written",
                c.kind,
                qualified(c)
            ),
        ));
    }
    // One write at a time from the first read to the transaction (see `api::guard`).
    let _serial = st.write_lock.lock().await;
    let mut seen = BTreeSet::new();
    for c in &changes {
        if !seen.insert(c.key()) {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{} {:?} appears more than once in one request", c.kind, qualified(c)),
            ));
        }
    }
    let cur = current(st, &changes).await?;
    super::binding::check(st, id, &mut changes, &cur).await?;
    let mut conditions = Vec::with_capacity(changes.len());
    let mut ops = Vec::with_capacity(changes.len() + 1);
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut entries = Vec::new();
    for c in &changes {
        let key = c.key();
        let old = cur.get(&key);
        let old_res = old.and_then(|kv| decode(c.kind, kv));
        if old.is_some() && old_res.is_none() && !id.is_admin() {
            // Its tier, labels and scope are unknown: only an admin may replace or delete it.
            return Err(ApiError::forbidden(format!(
                "{} may not change {} {:?}: the stored object does not decode (admin only)",
                id.user,
                c.kind,
                qualified(c)
            )));
        }
        if !super::respond::is_respond_verb(verb) {
            let reserved = super::respond::reserved(c.kind, &c.name, old_res.as_ref(), false)
                .or_else(|| super::respond::reserved(c.kind, &c.name, c.resource.as_ref(), true));
            if let Some(why) = reserved {
                return Err(ApiError::forbidden(format!("{} may not {verb} {} {:?}: {why}", id.user, c.kind, qualified(c))));
            }
        }
        if let Some(r) = &old_res {
            id.can_write(r).map_err(ApiError::forbidden)?;
        }
        if let Some(r) = &c.resource {
            id.can_write(r).map_err(ApiError::forbidden)?;
        }
        if c.resource.is_none() && !id.is_admin() && old_res.is_none() {
            // A non-admin may only delete what it could write; check the would-be object by kind and scope
            // (a 403, not a 404, for what it could not delete anyway).
            if let Err(e) = id.can_write(&placeholder(c.kind, c.namespace.as_deref(), &c.name)) {
                return Err(ApiError::forbidden(e));
            }
        }
        let mod_rev = old.map_or(0, |kv| kv.mod_revision);
        if let Some(exp) = c.expected
            && exp != mod_rev
        {
            return Err(ApiError::conflict(format!(
                "Operation cannot be fulfilled on {} {:?}: the object has been modified (resourceVersion {exp}, now {}); \
                 get the latest version and try again",
                c.kind,
                qualified(c),
                if mod_rev == 0 { "deleted".to_string() } else { mod_rev.to_string() }
            )));
        }
        conditions.push(Condition::mod_revision(key.clone(), mod_rev));
        let info = c.kind.info();
        let mut entry = AuditEntry {
            action: String::new(),
            kind: info.kind.to_string(),
            api_version: c.kind.api_version(),
            namespace: c.namespace.clone(),
            name: c.name.clone(),
            before: old.map(|kv| serde_json::from_slice(&kv.value).unwrap_or(Value::Null)),
            after: None,
        };
        let action = match (&c.resource, old) {
            (None, None) => return Err(ApiError::not_found(format!("{} {:?} not found", c.kind, qualified(c)))),
            (None, Some(_)) => {
                ops.push(Op::delete(key));
                "deleted"
            }
            (Some(_), Some(_)) if c.intent == Intent::Create => {
                return Err(ApiError::already_exists(format!("{} {:?} already exists", c.kind, qualified(c))));
            }
            (Some(r), old) => {
                let mut new = stored_json(r);
                // The server owns creationTimestamp: set at creation, kept by every update (a client's value is
                // ignored, as the Kubernetes API server does).
                let created = match &entry.before {
                    Some(b) => b["metadata"].get("creationTimestamp").cloned(),
                    None => Some(Value::String(crate::timefmt::rfc3339(crate::timefmt::now_secs()))),
                };
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    match created {
                        Some(t) => m.insert("creationTimestamp".into(), t),
                        None => m.remove("creationTimestamp"),
                    };
                }
                if entry.before.as_ref() == Some(&new) {
                    "unchanged"
                } else {
                    ops.push(Op::put(key, serde_json::to_vec(&new).expect("json")));
                    entry.after = Some(new);
                    if old.is_some() { "configured" } else { "created" }
                }
            }
        };
        if action != "unchanged" {
            entry.action = action.to_string();
            entries.push(entry);
        }
        outcomes.push(Outcome {
            kind: info.kind.to_string(),
            api_version: c.kind.api_version(),
            namespace: c.namespace.clone(),
            name: c.name.clone(),
            action,
        });
    }
    check_scope(st, id, &changes, &cur).await?;
    if ops.is_empty() {
        return Ok((st.store.revision().await.unwrap_or(0), outcomes));
    }
    // Read before the guard check: if any other write commits after this point, ours fails its condition.
    let epoch = st.store.get(keys::WRITE_EPOCH).await?.map_or(0, |kv| kv.mod_revision);
    // Incident response overrides guardrails (an isolation must not wait for a guard's permission); the audit
    // record names the verb.
    if !super::respond::is_respond_verb(verb)
        && let Err(refusal) = super::guard::check(st, &changes).await?
    {
        // A dry run (and a preview) writes nothing, not even the refusal's audit record.
        if !dry_run {
            audit_refusal(st, id, verb, entries, &refusal).await?;
        }
        return Err(refusal.to_api_error());
    }
    super::binding::unique_claims(st, &changes).await?;
    conditions.push(Condition::mod_revision(keys::WRITE_EPOCH, epoch));
    ops.push(Op::put(keys::WRITE_EPOCH, crate::timefmt::now_nanos().to_string().into_bytes()));
    let record = audit_record(st, id, verb, entries, None);
    ops.push(Op::put(crate::audit::new_key(), serde_json::to_vec(&record).expect("json")));
    if dry_run {
        return Ok((st.store.revision().await.unwrap_or(0), outcomes));
    }
    match st.store.txn(conditions, ops).await? {
        TxnResult::Committed { revision } => {
            crate::latency::acked(revision);
            Ok((revision, outcomes))
        }
        TxnResult::Failed { failures } => {
            let keys: Vec<String> = failures.iter().map(|f| f.key.clone()).collect();
            Err(ApiError::conflict(format!(
                "the objects were modified concurrently ({}); nothing was written, try again",
                keys.join(", ")
            )))
        }
    }
}

fn audit_record(st: &ApiState, id: &Identity, verb: &str, entries: Vec<AuditEntry>, refused: Option<String>) -> AuditRecord {
    let now = crate::timefmt::now_secs();
    AuditRecord {
        time: crate::timefmt::rfc3339(now),
        timestamp: now,
        user: id.user.clone(),
        token_id: id.token_id.clone(),
        verb: verb.to_string(),
        node: st.node.clone(),
        entries,
        refused,
    }
}

/// A write refused by a guard leaves one audit record (every entry's action `refused`, `after` the object the
/// caller asked for) and nothing else.
async fn audit_refusal(st: &ApiState, id: &Identity, verb: &str, mut entries: Vec<AuditEntry>, r: &super::guard::Refusal) -> Result<(), ApiError> {
    for e in &mut entries {
        e.action = "refused".to_string();
    }
    let record = audit_record(st, id, verb, entries, Some(r.message()));
    let op = Op::put(crate::audit::new_key(), serde_json::to_vec(&record).expect("json"));
    match st.store.txn(vec![], vec![op]).await? {
        TxnResult::Committed { .. } => Ok(()),
        TxnResult::Failed { .. } => Err(ApiError::internal("recording the refusal in the audit trail failed")),
    }
}

/// Scoped tokens: a Pod, ServiceAccount or NetworkSet change must not alter how policies outside the token's
/// scope see the object ([`crate::scope`]). The policy model is built from the store at request time.
async fn check_scope(st: &ApiState, id: &Identity, changes: &[Change], cur: &BTreeMap<String, KeyValue>) -> Result<(), ApiError> {
    let Role::Scoped { namespaces, tiers } = &id.role else { return Ok(()) };
    if !changes.iter().any(|c| scope::guarded(c.kind)) {
        return Ok(());
    }
    let mut model = Vec::new();
    for kind in scope::MODEL_KINDS {
        let (items, _) = st.store.list(&keys::kind_prefix(kind)).await?;
        for kv in items {
            let r = decode(kind, &kv).ok_or_else(|| {
                ApiError::forbidden(format!(
                    "{}: stored object {} does not decode, so what a label change would alter cannot be verified; \
                     scoped tokens may not change pods, service accounts or network sets until an admin fixes it",
                    id.user, kv.key
                ))
            })?;
            model.push(r);
        }
    }
    let cluster = scope::guard_cluster(&model).map_err(|e| {
        ApiError::forbidden(format!(
            "{}: the stored policies do not build ({e}), so what a label change would alter cannot be verified",
            id.user
        ))
    })?;
    let s = scope::Scope { user: &id.user, namespaces, tiers };
    for c in changes.iter().filter(|c| scope::guarded(c.kind)) {
        // Undecodable old objects were refused above, before any of this.
        let old = cur.get(&c.key()).and_then(|kv| decode(c.kind, kv));
        s.check(&cluster, old.as_ref(), c.resource.as_ref()).map_err(|e| ApiError::forbidden(e.to_string()))?;
    }
    Ok(())
}

fn qualified(c: &Change) -> String {
    match &c.namespace {
        Some(ns) => format!("{ns}/{}", c.name),
        None => c.name.clone(),
    }
}

/// A minimal object of `kind` for permission checks on objects that do not exist.
fn placeholder(kind: Kind, ns: Option<&str>, name: &str) -> Resource {
    let v = serde_json::json!({"apiVersion": kind.api_version(), "kind": kind.info().kind, "metadata": {"name": name, "namespace": ns}});
    porin_model::load::to_resource(kind, v).unwrap_or_else(|_| unreachable!("a bare object always decodes"))
}
