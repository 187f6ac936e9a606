//! Incident response: `POST /porin/v1/quarantine`, `/release`, `/block`, `/unblock` (and `GET /porin/v1/block`).
//!
//! Each command writes system-owned objects through [`super::write::commit`] (one transaction, one audit record
//! whose verb is the command) and raises an alert. The objects are reserved: [`reserved`] makes the ordinary
//! write path refuse to create, change or delete them, so only these commands can (docs/design/respond.md).
//!
//! Who may run them:
//! * `quarantine`: an admin, or a scoped token for a pod in one of its namespaces (a team may isolate its own
//!   workload: a quarantine only takes access away);
//! * `release`, `block`, `unblock`: admin only (a release gives access back; a block is cluster-wide).
//!
//! Enforcement and the cut of established connections: every agent compiles the new revision; the dataplane
//! revalidates each conntrack entry against the endpoint's new policy revision on its next packet and drops
//! (and deletes) the entries the new policy denies, so a connection of a quarantined workload, or with a blocked
//! address, dies at its next packet on every node (`bpf/porin_tc.bpf.c`, `decide_flow`).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::{Extension, Json};
use porin_model::respond::{
    BLOCKLIST_SET, DEFAULT_DNS_SELECTOR, DEFAULT_MONITORING_SELECTOR, LABEL_BLOCKLIST, POLICY_BLOCK, POLICY_QUARANTINE,
    RESERVED_ENDPOINT_LABELS, TIER_BLOCK, TIER_QUARANTINE, is_system_tier,
};
use porin_model::{Kind, Resource};
use porin_store::Store;
use serde::Deserialize;
use serde_json::{Value, json};

use super::write::{Change, Intent, commit, decode, known_tiers};
use super::{ApiError, ApiState, Shared};
use crate::alerts::{Alert, AlertKind};
use crate::auth::{Identity, Role};
use crate::registry::keys;

/// The verbs (audit `verb`) of the commands; only they may write reserved objects.
pub const VERBS: [&str; 4] = ["quarantine", "release", "block", "unblock"];

pub fn is_respond_verb(verb: &str) -> bool {
    VERBS.contains(&verb)
}

/// Why the ordinary write path may not write `r` (the old or the new object of a change), or None.
/// `new`: `r` is what the caller asks to store (a Pod may only be checked as written: an old one is replaced).
pub fn reserved(kind: Kind, name: &str, r: Option<&Resource>, new: bool) -> Option<String> {
    if kind == Kind::Quarantine {
        return Some("quarantines are written only by `porin quarantine` and `porin release`".into());
    }
    if kind == Kind::Tier && is_system_tier(name) {
        return Some(format!("tier {name:?} is reserved for Porin's incident response and decoys"));
    }
    if kind == Kind::GlobalNetworkSet && name == BLOCKLIST_SET {
        return Some(format!("{BLOCKLIST_SET:?} is written only by `porin block` and `porin unblock`"));
    }
    let r = r?;
    if let Some(t) = crate::auth::tier_of(r)
        && is_system_tier(&t)
    {
        return Some(format!("tier {t:?} is reserved: no policy may be put in it or removed from it"));
    }
    let labels = &r.metadata().labels;
    if matches!(kind, Kind::NetworkSet | Kind::GlobalNetworkSet) && labels.contains_key(LABEL_BLOCKLIST) {
        return Some(format!("label {LABEL_BLOCKLIST:?} is reserved for the block list"));
    }
    if new
        && kind == Kind::Pod
        && let Some(l) = RESERVED_ENDPOINT_LABELS.iter().find(|l| labels.contains_key(**l))
    {
        return Some(format!("label {l:?} is set by Porin (a quarantine or a Honeypod), not by a manifest"));
    }
    None
}

fn system_identity(id: &Identity) -> Identity {
    // The command was authorised above; the system objects it writes are cluster-scoped, so the commit runs
    // with admin rights on behalf of (and audited as) the caller.
    Identity { user: id.user.clone(), role: Role::Admin, token_id: id.token_id.clone() }
}

fn to_docs(what: &str, values: &[Value]) -> Result<Vec<porin_model::Document>, ApiError> {
    let text = serde_json::to_string(values).expect("json");
    porin_model::parse_documents(what, &text).map_err(|e| ApiError::invalid(&e))
}

async fn get(st: &ApiState, kind: Kind, ns: Option<&str>, name: &str) -> Result<Option<Resource>, ApiError> {
    let key = keys::object_key(kind, ns, name);
    match st.store.get(&key).await? {
        None => Ok(None),
        Some(kv) => decode(kind, &kv)
            .map(Some)
            .ok_or_else(|| ApiError::unavailable(format!("stored {kind} {name:?} does not decode; nothing was written"))),
    }
}

/// Commit validated documents as upserts (and `deletes`), returning the revision and outcomes.
async fn write(
    st: &ApiState,
    id: &Identity,
    verb: &str,
    docs: Vec<porin_model::Document>,
    deletes: Vec<Change>,
) -> Result<(u64, Value), ApiError> {
    let mut tiers = known_tiers(st).await?;
    tiers.extend([TIER_QUARANTINE.to_string(), TIER_BLOCK.to_string()]);
    porin_model::validate_set(&docs, &tiers).map_err(|e| ApiError::invalid(&e))?;
    let mut changes = docs.iter().map(|d| Change::from_doc(d, Intent::Upsert)).collect::<Result<Vec<_>, _>>()?;
    changes.extend(deletes);
    let (revision, items) = commit(st, &system_identity(id), verb, changes).await?;
    Ok((revision, serde_json::to_value(items).expect("json")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuarantineRequest {
    pub namespace: String,
    pub pod: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// Selector of the cluster DNS the workload may still query (UDP/TCP 53). Default: the stored policy's,
    /// else [`DEFAULT_DNS_SELECTOR`].
    #[serde(default)]
    pub dns_selector: Option<String>,
    /// Selector of the monitoring workloads that may still reach it. Default: the stored policy's, else
    /// [`DEFAULT_MONITORING_SELECTOR`].
    #[serde(default)]
    pub monitoring_selector: Option<String>,
    /// Ports the monitoring workloads may reach (TCP). Empty: every port.
    #[serde(default)]
    pub monitoring_ports: Option<Vec<u16>>,
}

/// The quarantine policy: DNS out and monitoring in are passed on to the following tiers (a quarantine only
/// takes access away), everything else to or from the quarantined workload is denied.
fn quarantine_policy(dns: &str, monitoring: &str, ports: &[u16]) -> Value {
    let mut mon = json!({"action": "Pass", "source": {"selector": monitoring}});
    if !ports.is_empty() {
        mon["protocol"] = json!("TCP");
        mon["destination"] = json!({"ports": ports});
    }
    json!({
        "apiVersion": "porin.io/v1",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": POLICY_QUARANTINE},
        "spec": {
            "tier": TIER_QUARANTINE,
            "order": 0,
            "selector": format!("{} == 'true'", porin_model::respond::LABEL_QUARANTINED),
            "types": ["Ingress", "Egress"],
            "ingress": [mon, {"action": "Deny"}],
            "egress": [
                {"action": "Pass", "protocol": "UDP", "destination": {"selector": dns, "ports": [53]}},
                {"action": "Pass", "protocol": "TCP", "destination": {"selector": dns, "ports": [53]}},
                {"action": "Deny"}
            ],
        }
    })
}

/// The DNS and monitoring settings of a stored quarantine policy.
fn stored_settings(p: &Resource) -> (Option<String>, Option<String>, Vec<u16>) {
    let v = crate::registry::stored_json(p);
    let dns = v["spec"]["egress"][0]["destination"]["selector"].as_str().map(str::to_string);
    let mon = v["spec"]["ingress"][0]["source"]["selector"].as_str().map(str::to_string);
    let ports = v["spec"]["ingress"][0]["destination"]["ports"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_u64().and_then(|p| u16::try_from(p).ok())).collect())
        .unwrap_or_default();
    (dns, mon, ports)
}

/// `POST /porin/v1/quarantine`.
pub async fn quarantine(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Json(req): Json<QuarantineRequest>,
) -> Result<Json<Value>, ApiError> {
    match &id.role {
        Role::Admin => {}
        Role::Scoped { namespaces, .. } if namespaces.contains(&req.namespace) => {}
        Role::Scoped { .. } => {
            return Err(ApiError::forbidden(format!(
                "{} (scoped) may not quarantine in namespace {:?}: only its own namespaces",
                id.user, req.namespace
            )));
        }
        _ => return Err(ApiError::forbidden(format!("{} may not quarantine workloads", id.user))),
    }
    if get(&st, Kind::Pod, Some(&req.namespace), &req.pod).await?.is_none() {
        return Err(ApiError::not_found(format!("pod {}/{} not found; nothing was quarantined", req.namespace, req.pod)));
    }
    let stored = get(&st, Kind::GlobalNetworkPolicy, None, POLICY_QUARANTINE).await?;
    let (s_dns, s_mon, s_ports) = stored.as_ref().map(stored_settings).unwrap_or_default();
    let dns = req.dns_selector.clone().or(s_dns).unwrap_or_else(|| DEFAULT_DNS_SELECTOR.to_string());
    let mon = req.monitoring_selector.clone().or(s_mon).unwrap_or_else(|| DEFAULT_MONITORING_SELECTOR.to_string());
    let ports = req.monitoring_ports.clone().unwrap_or(s_ports);
    let now = crate::timefmt::rfc3339(crate::timefmt::now_secs());
    let mut record = json!({
        "apiVersion": "porin.io/v1",
        "kind": "Quarantine",
        "metadata": {"name": req.pod, "namespace": req.namespace},
        "spec": {"actor": id.user, "since": now},
    });
    if let Some(r) = &req.reason {
        record["spec"]["reason"] = json!(r);
    }
    let docs = to_docs(
        "quarantine",
        &[
            json!({"apiVersion": "porin.io/v1", "kind": "Tier", "metadata": {"name": TIER_QUARANTINE},
                   "spec": {"defaultAction": "Deny"}}),
            quarantine_policy(&dns, &mon, &ports),
            record,
        ],
    )?;
    let (revision, items) = write(&st, &id, "quarantine", docs, vec![]).await?;
    let what = format!("{}/{}", req.namespace, req.pod);
    let mut a = Alert::new(
        AlertKind::Quarantine,
        what.clone(),
        format!("{what} quarantined by {}: all traffic denied except DNS and monitoring", id.user),
    );
    a.actor = Some(id.user.clone());
    if let Some(r) = &req.reason {
        a.detail.insert("reason".into(), r.clone());
    }
    a.detail.insert("revision".into(), revision.to_string());
    tracing::warn!(workload = %what, actor = %id.user, revision, "quarantined");
    st.alerts.raise(a);
    Ok(Json(json!({"kind": "RespondResult", "apiVersion": "porin.io/v1", "revision": revision, "items": items})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseRequest {
    pub namespace: String,
    pub pod: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /porin/v1/release`: admin only.
pub async fn release(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Json(req): Json<ReleaseRequest>,
) -> Result<Json<Value>, ApiError> {
    if !id.is_admin() {
        return Err(ApiError::forbidden(format!(
            "{} may not release a quarantine: admin only (a scoped token may quarantine its own workloads, never \
             release them)",
            id.user
        )));
    }
    if get(&st, Kind::Quarantine, Some(&req.namespace), &req.pod).await?.is_none() {
        return Err(ApiError::not_found(format!("{}/{} is not quarantined", req.namespace, req.pod)));
    }
    let del = Change {
        kind: Kind::Quarantine,
        namespace: Some(req.namespace.clone()),
        name: req.pod.clone(),
        resource: None,
        expected: None,
        intent: Intent::Delete,
    };
    let (revision, items) = write(&st, &id, "release", vec![], vec![del]).await?;
    let what = format!("{}/{}", req.namespace, req.pod);
    let mut a = Alert::new(AlertKind::Release, what.clone(), format!("{what} released from quarantine by {}", id.user));
    a.actor = Some(id.user.clone());
    if let Some(r) = &req.reason {
        a.detail.insert("reason".into(), r.clone());
    }
    a.detail.insert("revision".into(), revision.to_string());
    tracing::warn!(workload = %what, actor = %id.user, revision, "released from quarantine");
    st.alerts.raise(a);
    Ok(Json(json!({"kind": "RespondResult", "apiVersion": "porin.io/v1", "revision": revision, "items": items})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockRequest {
    pub cidrs: Vec<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

fn parse_cidrs(cidrs: &[String]) -> Result<Vec<String>, ApiError> {
    if cidrs.is_empty() {
        return Err(ApiError::bad_request("cidrs: give at least one address or CIDR"));
    }
    cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            porin_model::parse_cidr(c)
                .map(|n| n.to_string())
                .map_err(|m| ApiError::bad_request(format!("cidrs[{i}] {c:?}: {m}; nothing was blocked")))
        })
        .collect()
}

/// The blocked ranges now stored.
async fn blocked(st: &ApiState) -> Result<BTreeSet<String>, ApiError> {
    Ok(match get(st, Kind::GlobalNetworkSet, None, BLOCKLIST_SET).await? {
        Some(Resource::GlobalNetworkSet(o)) => o.spec.nets.iter().cloned().collect(),
        _ => BTreeSet::new(),
    })
}

fn block_docs(nets: &BTreeSet<String>) -> Result<Vec<porin_model::Document>, ApiError> {
    let set_sel = format!("{LABEL_BLOCKLIST} == 'true'");
    to_docs(
        "block",
        &[
            // Pass: endpoints whose peers are not blocked go on to the next tiers.
            json!({"apiVersion": "porin.io/v1", "kind": "Tier", "metadata": {"name": TIER_BLOCK},
                   "spec": {"defaultAction": "Pass"}}),
            json!({"apiVersion": "porin.io/v1", "kind": "GlobalNetworkSet",
                   "metadata": {"name": BLOCKLIST_SET, "labels": {LABEL_BLOCKLIST: "true"}},
                   "spec": {"nets": nets}}),
            json!({
                "apiVersion": "porin.io/v1",
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": POLICY_BLOCK},
                "spec": {
                    "tier": TIER_BLOCK,
                    "order": 0,
                    "selector": "all()",
                    "types": ["Ingress", "Egress"],
                    "ingress": [{"action": "Deny", "source": {"selector": set_sel, "namespaceSelector": "global()"}}],
                    "egress": [{"action": "Deny", "destination": {"selector": set_sel, "namespaceSelector": "global()"}}],
                }
            }),
        ],
    )
}

async fn change_blocks(st: Shared, id: Identity, req: BlockRequest, block: bool) -> Result<Json<Value>, ApiError> {
    let verb = if block { "block" } else { "unblock" };
    if !id.is_admin() {
        return Err(ApiError::forbidden(format!("{} may not {verb}: a block is cluster-wide (admin only)", id.user)));
    }
    let asked = parse_cidrs(&req.cidrs)?;
    let mut nets = blocked(&st).await?;
    for c in &asked {
        if block {
            nets.insert(c.clone());
        } else if !nets.remove(c) {
            return Err(ApiError::not_found(format!("{c} is not blocked (blocked: {nets:?}); nothing was unblocked")));
        }
    }
    let (revision, items) = write(&st, &id, verb, block_docs(&nets)?, vec![]).await?;
    let (kind, text) = if block { (AlertKind::Block, "blocked cluster-wide") } else { (AlertKind::Unblock, "unblocked") };
    let mut a = Alert::new(kind, asked.join(","), format!("{} {text} by {}", asked.join(", "), id.user));
    a.actor = Some(id.user.clone());
    a.addresses = asked.clone();
    if let Some(r) = &req.reason {
        a.detail.insert("reason".into(), r.clone());
    }
    a.detail.insert("revision".into(), revision.to_string());
    tracing::warn!(cidrs = %asked.join(","), actor = %id.user, revision, "{verb}");
    st.alerts.raise(a);
    Ok(Json(json!({
        "kind": "RespondResult", "apiVersion": "porin.io/v1", "revision": revision, "items": items, "blocked": nets,
    })))
}

/// `POST /porin/v1/block`: admin only.
pub async fn block(State(st): State<Shared>, Extension(id): Extension<Identity>, Json(req): Json<BlockRequest>) -> Result<Json<Value>, ApiError> {
    change_blocks(st, id, req, true).await
}

/// `POST /porin/v1/unblock`: admin only.
pub async fn unblock(State(st): State<Shared>, Extension(id): Extension<Identity>, Json(req): Json<BlockRequest>) -> Result<Json<Value>, ApiError> {
    change_blocks(st, id, req, false).await
}

/// `GET /porin/v1/block`: the blocked ranges, with when and by whom each was blocked (from the audit trail).
pub async fn block_list(State(st): State<Shared>) -> Result<Json<Value>, ApiError> {
    let nets = blocked(&st).await?;
    let mut since: BTreeMap<String, (String, String)> = BTreeMap::new();
    let (items, _) = st.list(keys::AUDIT).await?;
    for kv in items {
        let Ok(rec) = serde_json::from_slice::<crate::audit::AuditRecord>(&kv.value) else { continue };
        if rec.verb != "block" {
            continue;
        }
        for e in rec.entries.iter().filter(|e| e.kind == "GlobalNetworkSet" && e.name == BLOCKLIST_SET) {
            let before: BTreeSet<String> = e.before.as_ref().map(nets_of).unwrap_or_default();
            for n in e.after.as_ref().map(nets_of).unwrap_or_default() {
                if !before.contains(&n) {
                    since.insert(n, (rec.time.clone(), rec.user.clone()));
                }
            }
        }
    }
    let list: Vec<Value> = nets
        .iter()
        .map(|n| {
            let (t, u) = since.get(n).cloned().unwrap_or_default();
            json!({"cidr": n, "since": t, "actor": u})
        })
        .collect();
    Ok(Json(json!({"kind": "BlockList", "apiVersion": "porin.io/v1", "items": list})))
}

fn nets_of(v: &Value) -> BTreeSet<String> {
    v["spec"]["nets"].as_array().map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect()).unwrap_or_default()
}
