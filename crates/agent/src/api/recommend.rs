//! `GET /porin/v1/recommend?since=24h&namespace=NS&tierOrder=N`: policy recommendations from this agent's
//! flow store (`porin recommend`). The records over the window become observations (egress records for the
//! source's namespace, ingress records for the destination's), the model comes from the store, and
//! [`porin_policy::recommend`] does the rest. Nothing is written: the caller applies what it keeps.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Extension;
use porin_flow::{EndpointKind, FlowDirection, FlowRecord};
use porin_model::Protocol;
use porin_policy::Cluster;
use porin_policy::recommend::{ObservationSet, ObservedAt, ObservedPeer, Observation, Options, PeerRef, recommend_set};
use serde_json::{Value, json};

use super::write::decode;
use super::{ApiError, Shared};
use crate::auth::{Identity, Role};
use crate::registry::keys;

const NANOS: i64 = 1_000_000_000;

/// The observation a stored record stands for; None for what a rule cannot express (ICMP, host, unknown).
pub fn observation(r: &FlowRecord) -> Option<Observation> {
    let protocol = Protocol::from_name(&r.protocol)?;
    let port = r.dst.port?;
    let peer = |e: &porin_flow::FlowEndpoint| -> Option<ObservedPeer> {
        match e.kind {
            EndpointKind::Pod => Some(ObservedPeer::Pod {
                namespace: e.namespace.clone()?,
                pod: e.pod.clone().or_else(|| e.workload.clone())?,
            }),
            EndpointKind::NetworkSet => {
                Some(ObservedPeer::NetworkSet { namespace: e.namespace.clone(), name: e.network_set.clone()?, ip: e.ip })
            }
            EndpointKind::World => e.ip.map(|ip| ObservedPeer::Ip { ip }),
            EndpointKind::Host | EndpointKind::Unknown => None,
        }
    };
    Some(Observation {
        at: match r.direction {
            FlowDirection::Egress => ObservedAt::Egress,
            FlowDirection::Ingress => ObservedAt::Ingress,
        },
        src: peer(&r.src)?,
        dst: peer(&r.dst)?,
        protocol,
        port,
        first_seen: (r.start_time as i64).div_euclid(NANOS),
        last_seen: (r.end_time as i64).div_euclid(NANOS),
        flows: r.flows_started,
    })
}

/// Add what a stored record stands for to `set` (merged by shape, peers interned: nothing is allocated for a
/// record whose peers were seen before). False for what a rule cannot express, as [`observation`].
pub fn add_record(set: &mut ObservationSet, r: &FlowRecord) -> bool {
    let Some(protocol) = Protocol::from_name(&r.protocol) else { return false };
    let Some(port) = r.dst.port else { return false };
    fn peer(e: &porin_flow::FlowEndpoint) -> Option<PeerRef<'_>> {
        match e.kind {
            EndpointKind::Pod => {
                Some(PeerRef::Pod { namespace: e.namespace.as_deref()?, pod: e.pod.as_deref().or(e.workload.as_deref())? })
            }
            EndpointKind::NetworkSet => {
                Some(PeerRef::NetworkSet { namespace: e.namespace.as_deref(), name: e.network_set.as_deref()?, ip: e.ip })
            }
            EndpointKind::World => e.ip.map(PeerRef::Ip),
            EndpointKind::Host | EndpointKind::Unknown => None,
        }
    }
    let (Some(src), Some(dst)) = (peer(&r.src), peer(&r.dst)) else { return false };
    let at = match r.direction {
        FlowDirection::Egress => ObservedAt::Egress,
        FlowDirection::Ingress => ObservedAt::Ingress,
    };
    let (first, last) = ((r.start_time as i64).div_euclid(NANOS), (r.end_time as i64).div_euclid(NANOS));
    set.add(at, src, dst, protocol, port, first, last, r.flows_started);
    true
}

/// The observations of `records`, merged.
pub fn observation_set(records: &[FlowRecord]) -> ObservationSet {
    let mut set = ObservationSet::new();
    for r in records {
        add_record(&mut set, r);
    }
    set
}

/// The policy model of the stored objects. `what` says what cannot be told when an object does not decode.
pub async fn stored_cluster(st: &super::ApiState, what: &str) -> Result<Cluster, ApiError> {
    let (items, _) = st.list(keys::RESOURCES).await?;
    let mut model = Vec::with_capacity(items.len());
    for kv in &items {
        let Some((kind, _, _)) = keys::parse_key(&kv.key) else { continue };
        model.push(
            decode(kind, kv)
                .ok_or_else(|| ApiError::unavailable(format!("stored object {} does not decode; {what} cannot be told", kv.key)))?,
        );
    }
    Cluster::build(model.iter())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "Conflict", format!("the stored policies do not build ({e})")))
}

pub async fn handle(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let svc = st.flows.clone().ok_or_else(|| ApiError::not_found("recommendations need `porin agent`'s flow store (this server has none)"))?;
    let mut opts = Options::default();
    let mut since = "24h".to_string();
    for (k, v) in params {
        match k.as_str() {
            "since" => since = v,
            "namespace" => opts.namespaces.push(v),
            "tierOrder" => {
                opts.tier_order = v
                    .parse::<f64>()
                    .ok()
                    .filter(|o| o.is_finite())
                    .ok_or_else(|| ApiError::bad_request(format!("tierOrder={v:?}: expected a number")))?
            }
            other => return Err(ApiError::bad_request(format!("unknown parameter {other:?} (since=, namespace=, tierOrder=)"))),
        }
    }
    // A scoped token learns about its own namespaces only.
    if let Role::Scoped { namespaces, .. } = &id.role {
        if opts.namespaces.is_empty() {
            opts.namespaces = namespaces.clone();
        } else if let Some(ns) = opts.namespaces.iter().find(|n| !namespaces.contains(n)) {
            return Err(ApiError::forbidden(format!("{} (scoped) may not read flows of namespace {ns:?}", id.user)));
        }
    }
    let q = porin_flow::filter::parse_args(["--since".to_string(), since.clone()], porin_flow::time::now_unix())
        .map_err(|e| ApiError::bad_request(format!("since={since:?}: {e}")))?;
    let since_secs = (q.since.unwrap_or(0) / NANOS as u64) as i64;
    let records = tokio::task::spawn_blocking(move || svc.query(&q))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let n_records = records.len();
    let own = tokio::task::spawn_blocking(move || observation_set(&records)).await.map_err(|e| ApiError::internal(e.to_string()))?;
    // Other nodes' traffic: what they published for the continuous recommender (fresh within its lease), shapes
    // seen within the window. A node hosting workloads without a fresh summary is reported, never read as "no
    // traffic".
    let objects = {
        let snap = st.snapshot.borrow().clone();
        crate::registry::decode_all(&snap.items).0
    };
    let now = crate::timefmt::now_secs();
    let lease = crate::recommender::lease_duration(&objects);
    let seen = crate::recommender::cluster_observations(
        &st.store,
        &st.node,
        own,
        &crate::recommender::workload_nodes(&objects),
        now - lease.as_secs() as i64,
        since_secs,
    )
    .await?;
    let (nodes, missing) = (seen.nodes, seen.missing);
    let observed = seen.set;

    let cluster = stored_cluster(&st, "what is already allowed").await?;
    let rec = tokio::task::spawn_blocking(move || recommend_set(&cluster, &observed, &opts))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out: Vec<Value> = rec.tier.iter().map(|t| t.to_json()).collect();
    out.extend(rec.policies.iter().map(|p| p.to_json()));
    Ok(Json(json!({
        "kind": "List",
        "apiVersion": "v1",
        "items": out,
        "records": n_records,
        "alreadyAllowedFlows": rec.already_allowed,
        "deniedFlows": rec.denied,
        "nodes": nodes,
        "missingNodes": missing,
    })))
}
