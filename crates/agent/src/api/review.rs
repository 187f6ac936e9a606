//! `GET /porin/v1/review/unused?since=30d`: every enforced policy and rule of the caller's view with its last
//! hit on this node, from the per-rule counters the flow pipeline keeps across restarts
//! ([`crate::flows::rulehits`]); `unused` marks those with no hit since the window's start. The window may
//! reach further back than the flow store keeps records, which is why the counters, not the records, are the
//! source. `porin review unused` asks every node and merges (a rule is unused when no node saw it hit).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::{Extension, Json};
use porin_model::porin::Action;
use serde_json::{Value, json};

use super::console::View;
use super::{ApiError, Shared};
use crate::auth::Identity;

#[derive(Default, Clone, Copy)]
struct Seen {
    last: u64,
    connections: u64,
}

impl Seen {
    fn add(&mut self, last: u64, connections: u64) {
        self.last = self.last.max(last);
        self.connections += connections;
    }
}

fn action(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Pass => "pass",
        Action::Log => "log",
    }
}

fn time(t: u64) -> Value {
    if t == 0 { Value::Null } else { json!(porin_flow::time::format_rfc3339(t)) }
}

pub async fn unused(State(st): State<Shared>, Extension(id): Extension<Identity>, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "since") {
        return Err(ApiError::bad_request(format!("unknown parameter {k:?} (since=)")));
    }
    let since_arg = q.get("since").cloned().unwrap_or_else(|| "30d".into());
    let now = porin_flow::time::now_unix();
    let since = porin_flow::time::parse_time_arg(&since_arg, now).map_err(|e| ApiError::bad_request(format!("since={since_arg:?}: {e}")))?;
    let table = st
        .flows
        .as_ref()
        .and_then(|f| f.rule_hits())
        .ok_or_else(|| ApiError::not_found("rule hit counters need `porin agent`'s flow pipeline (this server has none)"))?;
    let cluster = super::recommend::stored_cluster(&st, "which policies exist").await?;
    let view = View::of(&id);

    // (policy trace name) → seen; (policy, direction, rule index) → seen. Enforced traces only.
    let mut by_policy: BTreeMap<&str, Seen> = BTreeMap::new();
    let mut by_rule: BTreeMap<(&str, &str, i64), Seen> = BTreeMap::new();
    for h in table.hits.iter().filter(|h| !h.staged && h.last_hit >= since) {
        let mut p = h.entry.split('|');
        let (Some(_tier), Some(policy), Some(rule)) = (p.next(), p.next(), p.next()) else { continue };
        by_policy.entry(policy).or_default().add(h.last_hit, h.connections);
        if let Ok(i) = rule.parse::<i64>() {
            by_rule.entry((policy, h.direction.as_str(), i)).or_default().add(h.last_hit, h.connections);
        }
    }

    let mut policies = Vec::new();
    for tier in &cluster.tiers {
        for &pi in &tier.policies {
            let p = &cluster.policies[pi];
            if !view.policy(&p.tier, p.id.namespace.as_deref()) {
                continue;
            }
            let name = p.id.to_string();
            let seen = by_policy.get(name.as_str()).copied().unwrap_or_default();
            let mut rules = Vec::new();
            for (dir, list) in [("ingress", &p.ingress), ("egress", &p.egress)] {
                for (i, r) in list.iter().enumerate() {
                    let s = by_rule.get(&(name.as_str(), dir, i as i64)).copied().unwrap_or_default();
                    rules.push(json!({
                        "direction": dir, "index": i, "action": action(r.action),
                        "lastHit": time(s.last), "connections": s.connections, "unused": s.last == 0,
                    }));
                }
            }
            policies.push(json!({
                "kind": match p.id.kind {
                    porin_policy::PolicyKind::K8s => "KubernetesNetworkPolicy",
                    porin_policy::PolicyKind::Namespaced => "NetworkPolicy",
                    porin_policy::PolicyKind::Global => "GlobalNetworkPolicy",
                },
                "namespace": p.id.namespace, "name": p.id.name, "tier": p.tier, "traceName": name,
                "lastHit": time(seen.last), "connections": seen.connections, "unused": seen.last == 0,
                "rules": rules,
            }));
        }
    }
    Ok(Json(json!({
        "node": st.node,
        "since": porin_flow::time::format_rfc3339(since),
        "countersSince": porin_flow::time::format_rfc3339(table.since),
        // False when the counters start after the window does: "unused" then means "since countersSince".
        "complete": table.since <= since,
        "policies": policies,
    })))
}
