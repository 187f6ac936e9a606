//! Continuous policy recommendations (issue "Policy lifecycle", `RecommendationScope`): while the singleton
//! `RecommendationScope default` has `namespaceSpec.recStatus: Enabled`, the agent that holds the recommender
//! lease refreshes, every `interval`, one `StagedNetworkPolicy` per selected namespace
//! (`<tier>.<ns>-recommendation`, `stagedAction: Learn`) with the one-shot recommender
//! ([`porin_policy::recommend`]) over its flow store, and keeps its status in annotations, as Calico does:
//!
//! * `policyrecommendation.porin.io/status`: `Learning` when new or its rules just changed, `Stabilizing` once
//!   unchanged for more than 2 × interval, `Stable` once unchanged for more than `stabilizationPeriod`;
//! * `policyrecommendation.porin.io/lastUpdated`: when its rules last changed.
//!
//! Rules only accumulate while learning (a rule whose flows aged out of the flow store stays), so a quiet hour
//! does not flip a Stable recommendation back. The user decides with `porin recommend accept|dismiss|relearn NS`
//! (the API's `/porin/v1/recommendations/{ns}/{verb}`): accept promotes it to an enforced NetworkPolicy (and the
//! recommender leaves a namespace with that policy alone), dismiss sets `stagedAction: Ignore` (not evaluated,
//! never refreshed), relearn sets `Learn` and status Learning again. A recommendation set to `stagedAction: Set`
//! by hand is left alone too.
//!
//! **One writer per cluster:** every agent runs the loop, but only the holder of the lease
//! `leases/recommender` in the store writes. The lease names its node and an expiry (3 × interval, at least
//! 30 s); it is taken with a transaction conditioned on the key's revision, renewed every pass, and taken over
//! by another agent once expired.
//!
//! **Every node's traffic:** a node's flow store holds only what that node's pods sent and received, so every
//! agent (writer or not) publishes, every pass, its observations over the lookback merged by shape
//! ([`porin_policy::recommend::ObservationSet`]) under `recommender/observations/<node>` in the store, and the
//! writer recommends from its own store plus every other node's summary, like Calico's recommender reads the
//! whole cluster's flow logs. Fail safe: a node that hosts workload endpoints but has no summary newer than the
//! lease duration (agent down, store unreachable from it) is named in `policyrecommendation.porin.io/missingNodes`
//! of every recommendation and holds it at `Learning` until it reports: its traffic is unknown, not absent.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use porin_model::porin::StagedAction;
use porin_model::recscope::RecommendationScopeSpec;
use porin_model::{Kind, Resource};
use porin_policy::recommend::{ObservationSet, ObservationSetJson, Options, recommend_set};
use porin_selector::Selector;
use porin_store::{Condition, Op, Store, TxnResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::write::{Change, Intent, commit};
use crate::api::{ApiError, ApiState};
use crate::auth::{Identity, Role};
use crate::registry::keys;

pub const LEASE_KEY: &str = "leases/recommender";
pub const ANN_STATUS: &str = "policyrecommendation.porin.io/status";
pub const ANN_UPDATED: &str = "policyrecommendation.porin.io/lastUpdated";
pub const ANN_MISSING: &str = "policyrecommendation.porin.io/missingNodes";
/// `recommender/observations/<node>` → [`NodeObservations`].
pub const OBSERVATIONS_PREFIX: &str = "recommender/observations/";

/// What one node publishes for the writer: its flow store's observations over `[since, at]`, merged by shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeObservations {
    pub node: String,
    /// Unix seconds: when it was read.
    pub at: i64,
    pub since: i64,
    pub observations: ObservationSetJson,
}

/// Every node's traffic as the writer sees it: the merged observations, which nodes contributed, and which
/// nodes host workloads but have no fresh summary.
#[derive(Debug, Default)]
pub struct ClusterObservations {
    pub set: ObservationSet,
    pub nodes: Vec<String>,
    pub missing: Vec<String>,
}

/// How long a lease (and a node's published observations) lasts under the current scope: 3 × its interval, at
/// least 30 s (30 s without an enabled scope).
pub fn lease_duration(objects: &[Resource]) -> Duration {
    let interval = scope_of(objects).filter(RecommendationScopeSpec::enabled).map_or(Duration::ZERO, |s| s.interval());
    (interval * 3).max(Duration::from_secs(30))
}

/// Nodes that host workload endpoints (WorkloadEndpoint `spec.node`, Pod `spec.nodeName`).
pub fn workload_nodes(objects: &[Resource]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|r| match r {
            Resource::WorkloadEndpoint(w) => Some(w.spec.node.clone()),
            Resource::Pod(p) => p.spec.node_name.clone(),
            _ => None,
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// `own` plus every other node's published summary newer than `fresh_after` (unix seconds), keeping only shapes
/// last seen at or after `since`. `expected`: nodes whose traffic must be there (the rest are reported missing).
pub async fn cluster_observations(
    store: &impl Store,
    node: &str,
    own: ObservationSet,
    expected: &BTreeSet<String>,
    fresh_after: i64,
    since: i64,
) -> Result<ClusterObservations, ApiError> {
    let mut out = ClusterObservations { set: own, nodes: vec![node.to_string()], missing: vec![] };
    let (items, _) = store.list(OBSERVATIONS_PREFIX).await?;
    let mut seen = BTreeSet::from([node.to_string()]);
    for kv in items {
        let Some(name) = kv.key.strip_prefix(OBSERVATIONS_PREFIX) else { continue };
        if name == node {
            continue;
        }
        let summary = match serde_json::from_slice::<NodeObservations>(&kv.value) {
            Ok(s) if s.at >= fresh_after => s,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(node = name, error = %e, "a node's published observations do not decode; its traffic is missing");
                continue;
            }
        };
        let mut set = match ObservationSet::from_json(&summary.observations) {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(node = name, error = %e, "a node's published observations are inconsistent; its traffic is missing");
                continue;
            }
        };
        set.retain(|_, sh| sh.last_seen >= since);
        out.set.merge(&set);
        out.nodes.push(name.to_string());
        seen.insert(name.to_string());
    }
    out.missing = expected.iter().filter(|n| !seen.contains(*n)).cloned().collect();
    Ok(out)
}

/// Read this node's flow store over `[since, now]` into a merged set and publish it for the writer.
pub async fn publish(st: &ApiState, flows: Arc<dyn crate::api::sources::FlowSource>, since: i64, now: i64) -> Result<ObservationSet, ApiError> {
    let q = porin_flow::filter::parse_args(["--since".to_string(), format!("{}s", (now - since).max(1))], porin_flow::time::now_unix())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let set = tokio::task::spawn_blocking(move || flows.query(&q).map(|records| crate::api::recommend::observation_set(&records)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let summary = NodeObservations { node: st.node.clone(), at: now, since, observations: set.to_json() };
    let value = serde_json::to_vec(&summary).map_err(|e| ApiError::internal(e.to_string()))?;
    // Not fatal here (this node still recommends from its own set when it writes): the writer then finds no fresh
    // summary of this node and names it missing (e.g. a summary larger than etcd accepts).
    if let Err(e) = st.store.txn(vec![], vec![Op::put(format!("{OBSERVATIONS_PREFIX}{}", st.node), value)]).await {
        tracing::warn!(error = %e, shapes = set.len(), "publishing this node's observations failed; the recommender will report it missing");
    }
    Ok(set)
}

/// A recommendation's name in its namespace (the one-shot recommender's).
pub fn policy_name(tier: &str, ns: &str) -> String {
    format!("{tier}.{ns}-recommendation")
}

/// Learning → Stabilizing → Stable, from how long the rules have been unchanged.
pub fn status(unchanged: Duration, interval: Duration, stabilization: Duration) -> &'static str {
    if unchanged > stabilization {
        "Stable"
    } else if unchanged > interval * 2 {
        "Stabilizing"
    } else {
        "Learning"
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub holder: String,
    /// Unix seconds.
    pub expires: i64,
}

/// Takes or renews the lease for `node` until `now + duration`. True when `node` holds it afterwards.
pub async fn acquire_lease(store: &impl Store, node: &str, now: i64, duration: Duration) -> Result<bool, porin_store::StoreError> {
    let cur = store.get(LEASE_KEY).await?;
    let rev = match &cur {
        None => 0,
        Some(kv) => match serde_json::from_slice::<Lease>(&kv.value) {
            Ok(l) if l.holder != node && l.expires > now => return Ok(false),
            _ => kv.mod_revision,
        },
    };
    let lease = Lease { holder: node.to_string(), expires: now + duration.as_secs() as i64 };
    let put = Op::put(LEASE_KEY, serde_json::to_vec(&lease).expect("a lease serializes"));
    Ok(matches!(store.txn(vec![Condition::mod_revision(LEASE_KEY, rev)], vec![put]).await?, TxnResult::Committed { .. }))
}

/// The recommender's identity in the audit trail.
fn identity(node: &str) -> Identity {
    Identity { user: format!("system:recommender@{node}"), role: Role::Admin, token_id: None }
}

fn scope_of(objects: &[Resource]) -> Option<RecommendationScopeSpec> {
    objects.iter().find_map(|r| match r {
        Resource::RecommendationScope(o) if o.metadata.name == porin_model::recscope::SINGLETON => Some(o.spec.clone()),
        _ => None,
    })
}

/// The rules of a policy JSON without their per-rule metadata (first/last seen, counts change every pass).
fn rule_set(spec: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in ["ingress", "egress"] {
        for r in spec[dir].as_array().into_iter().flatten() {
            let mut r = r.clone();
            r.as_object_mut().map(|m| m.remove("metadata"));
            out.insert(format!("{dir}:{r}"));
        }
    }
    out
}

/// What one pass did (for tests and logs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub leader: bool,
    /// (namespace, status) of every recommendation written.
    pub written: Vec<(String, String)>,
    /// Nodes hosting workloads whose traffic the writer could not read.
    pub missing_nodes: Vec<String>,
}

/// One pass at `now` (unix seconds).
pub async fn tick(st: &ApiState, now: i64) -> Result<Pass, ApiError> {
    let mut pass = Pass::default();
    if !st.connected() {
        return Ok(pass);
    }
    let objects = {
        let snap = st.snapshot.borrow().clone();
        crate::registry::decode_all(&snap.items).0
    };
    let Some(scope) = scope_of(&objects).filter(RecommendationScopeSpec::enabled) else { return Ok(pass) };
    let Some(flows) = st.flows.clone() else { return Ok(pass) };
    let interval = scope.interval();
    let lease = lease_duration(&objects);
    // Every node publishes its traffic for the writer, whoever that is.
    let since = now - scope.initial_lookback().as_secs() as i64;
    let own = publish(st, flows, since, now).await?;
    if !acquire_lease(&st.store, &st.node, now, lease).await? {
        return Ok(pass);
    }
    pass.leader = true;
    let tier = scope.tier().to_string();
    let sel = Selector::parse(scope.selector()).map_err(|e| ApiError::bad_request(format!("RecommendationScope default: spec.namespaceSpec.selector: {e}")))?;

    // Which namespaces to learn for: selected, not dismissed, not accepted, not taken over by hand.
    let mut namespaces = Vec::new();
    for r in &objects {
        let Resource::Namespace(n) = r else { continue };
        let ns = &n.metadata.name;
        let mut labels = n.metadata.labels.clone();
        labels.insert("projectcalico.org/name".into(), ns.clone());
        if !sel.matches(&labels) {
            continue;
        }
        let name = policy_name(&tier, ns);
        let has = |k: Kind| objects.iter().any(|o| o.kind() == k && o.namespace() == Some(ns.as_str()) && o.name() == name);
        if has(Kind::NetworkPolicy) {
            continue;
        }
        let staged = objects.iter().find_map(|o| match o {
            Resource::StagedNetworkPolicy(p) if p.metadata.namespace.as_deref() == Some(ns.as_str()) && p.metadata.name == name => Some(p),
            _ => None,
        });
        if staged.is_some_and(|p| p.spec.staged_action != Some(StagedAction::Learn)) {
            continue;
        }
        namespaces.push(ns.clone());
    }
    if namespaces.is_empty() {
        return Ok(pass);
    }

    let seen = cluster_observations(&st.store, &st.node, own, &workload_nodes(&objects), now - lease.as_secs() as i64, since).await?;
    pass.missing_nodes = seen.missing.clone();
    let missing = seen.missing.join(",");
    let observed = seen.set;
    let cluster = crate::api::recommend::stored_cluster(st, "what is already allowed").await?;
    let opts = Options { tier: tier.clone(), namespaces: namespaces.clone(), ..Options::default() };
    let rec = tokio::task::spawn_blocking(move || recommend_set(&cluster, &observed, &opts))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;

    let mut changes = Vec::new();
    if let Some(t) = &rec.tier {
        changes.push(Change { kind: Kind::Tier, namespace: None, name: t.name().to_string(), resource: Some(t.clone()), expected: None, intent: Intent::Create });
    }
    for p in &rec.policies {
        let Some(ns) = p.namespace().map(str::to_string) else { continue };
        let name = p.name().to_string();
        let key = keys::object_key(Kind::StagedNetworkPolicy, Some(&ns), &name);
        let old = st.get(&key).await?;
        let old_json: Option<Value> = old.as_ref().and_then(|kv| serde_json::from_slice(&kv.value).ok());
        if old_json.as_ref().is_some_and(|o| o["spec"]["stagedAction"] != "Learn") {
            continue; // dismissed or set meanwhile
        }
        let mut new = p.to_json();
        // Rules accumulate while learning: keep earlier rules the window no longer shows.
        if let Some(o) = &old_json {
            let fresh = rule_set(&new["spec"]);
            for dir in ["ingress", "egress"] {
                for r in o["spec"][dir].as_array().into_iter().flatten() {
                    let mut bare = r.clone();
                    bare.as_object_mut().map(|m| m.remove("metadata"));
                    if !fresh.contains(&format!("{dir}:{bare}")) {
                        new["spec"][dir].as_array_mut().map(|a| a.push(r.clone()));
                    }
                }
            }
        }
        if rule_set(&new["spec"]).is_empty() && old_json.is_none() {
            continue; // nothing observed yet: nothing to propose
        }
        let changed = old_json.as_ref().is_none_or(|o| rule_set(&o["spec"]) != rule_set(&new["spec"]));
        let updated = match (&old_json, changed) {
            (Some(o), false) => o["metadata"]["annotations"][ANN_UPDATED].as_str().and_then(crate::timefmt::parse_rfc3339).unwrap_or(now),
            _ => now,
        };
        // A node's traffic is unknown: never claim the recommendation stable on part of the cluster's traffic.
        let s = if missing.is_empty() {
            status(Duration::from_secs((now - updated).max(0) as u64), interval, scope.stabilization_period())
        } else {
            "Learning"
        };
        let old_status = old_json.as_ref().and_then(|o| o["metadata"]["annotations"][ANN_STATUS].as_str().map(str::to_string));
        let old_missing = old_json.as_ref().and_then(|o| o["metadata"]["annotations"][ANN_MISSING].as_str()).unwrap_or("").to_string();
        if !changed && old_status.as_deref() == Some(s) && old_missing == missing {
            continue;
        }
        new["spec"]["stagedAction"] = "Learn".into();
        new["metadata"]["annotations"][ANN_STATUS] = s.into();
        if !missing.is_empty() {
            new["metadata"]["annotations"][ANN_MISSING] = missing.clone().into();
        }
        new["metadata"]["annotations"][ANN_UPDATED] = crate::timefmt::rfc3339(updated).into();
        let resource = porin_model::load::to_resource(Kind::StagedNetworkPolicy, new)
            .map_err(|(p, m)| ApiError::internal(format!("a recommendation does not load: {p}: {m}")))?;
        changes.push(Change {
            kind: Kind::StagedNetworkPolicy,
            namespace: Some(ns.clone()),
            name,
            resource: Some(resource),
            expected: Some(old.as_ref().map_or(0, |kv| kv.mod_revision)),
            intent: if old.is_some() { Intent::Upsert } else { Intent::Create },
        });
        pass.written.push((ns, s.to_string()));
    }
    if pass.written.is_empty() {
        return Ok(pass);
    }
    commit(st, &identity(&st.node), "recommend", changes).await?;
    Ok(pass)
}

/// The recommender task: a pass every `interval` of the current scope (re-read every second, so enabling or
/// changing the scope takes effect at once).
pub async fn run(st: Arc<ApiState>) {
    let mut next = 0i64;
    let mut last_interval = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let objects = {
            let snap = st.snapshot.borrow().clone();
            crate::registry::decode_all(&snap.items).0
        };
        let Some(scope) = scope_of(&objects).filter(RecommendationScopeSpec::enabled) else {
            next = 0;
            continue;
        };
        let interval = scope.interval().max(Duration::from_secs(1));
        if last_interval != Some(interval) {
            last_interval = Some(interval);
            next = 0;
        }
        let now = crate::timefmt::now_secs();
        if now < next {
            continue;
        }
        next = now + interval.as_secs().max(1) as i64;
        match tick(&st, now).await {
            Ok(p) if !p.written.is_empty() => tracing::info!(written = ?p.written, "recommendations refreshed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message, "a recommendation pass failed (retried next interval)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_time_since_the_last_change() {
        let (i, s) = (Duration::from_secs(150), Duration::from_secs(600));
        assert_eq!(status(Duration::from_secs(0), i, s), "Learning");
        assert_eq!(status(Duration::from_secs(300), i, s), "Learning");
        assert_eq!(status(Duration::from_secs(301), i, s), "Stabilizing");
        assert_eq!(status(Duration::from_secs(601), i, s), "Stable");
    }

    #[tokio::test]
    async fn one_agent_holds_the_lease_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = porin_store::EmbeddedStore::open(dir.path().join("s"), Default::default()).unwrap();
        let d = Duration::from_secs(30);
        assert!(acquire_lease(&store, "node-a", 100, d).await.unwrap());
        assert!(!acquire_lease(&store, "node-b", 110, d).await.unwrap(), "held by node-a until 130");
        assert!(acquire_lease(&store, "node-a", 120, d).await.unwrap(), "the holder renews");
        assert!(!acquire_lease(&store, "node-b", 149, d).await.unwrap(), "renewed until 150");
        assert!(acquire_lease(&store, "node-b", 151, d).await.unwrap(), "expired: taken over");
        assert!(!acquire_lease(&store, "node-a", 152, d).await.unwrap());
    }
}
