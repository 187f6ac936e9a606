//! The web console's data routes, under `/porin/v1/console/`. They accept a bearer token or a console
//! session ([`super::session`]) and filter by the caller's scope **here**, on the server: a namespace- or
//! tier-scoped token gets only flows with an end in its namespaces, with the other end (when in another
//! namespace) reduced to "outside your scope" and trace entries of other tiers or namespaces hidden; only
//! the pods, tiers and policies of its namespaces and tiers. Filters (`arg=`) are evaluated on the reduced
//! records, so they cannot probe what is hidden.
//!
//! * `GET graph?window=15m`: the service graph, flows aggregated server-side over the window (1 m … 24 h).
//! * `GET flows?arg=...&follow=true`: `porin observe`'s query, NDJSON (as `/porin/v1/flows`).
//! * `GET policies?window=24h`: tiers, policies (objects as stored) and per-rule hit counters.
//! * `POST apply`: YAML or JSON documents, applied as `/porin/v1/apply` (same authorization).
//! * `POST preview?window=24h`: the flows those documents would flip, as `/porin/v1/preview` ([`super::preview`]).
//! * `POST login`, `POST logout`, `GET session`: [`super::session`]. `/ui/`: [`super::ui`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use porin_flow::{EndpointKind, FlowEndpoint, FlowRecord, PendingVerdict, Reporter, Verdict};
use porin_model::Kind;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, Shared, session, ui};
use crate::auth::{Identity, Role};

const NDJSON: &str = "application/x-ndjson";
const KEEPALIVE: Duration = Duration::from_secs(10);
/// The longest graph / hit-counter window (the flow store keeps 24 h by default).
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Hidden trace entries read like this (the action stays: that something decided is not a secret).
const HIDDEN: &str = "-|(outside your scope)|-";

/// The console's routes (merged into [`super::router`], with their own authentication).
pub fn router(state: Shared) -> Router<Shared> {
    let data = Router::new()
        .route("/porin/v1/console/session", get(session::whoami))
        .route("/porin/v1/console/graph", get(graph))
        .route("/porin/v1/console/flows", get(flows))
        .route("/porin/v1/console/policies", get(policies))
        .route("/porin/v1/console/apply", post(apply))
        .route("/porin/v1/console/preview", post(super::preview::preview))
        .route("/porin/v1/console/recommendations", get(super::recommendations::list))
        .route("/porin/v1/console/recommendations/{ns}/preview", get(super::recommendations::preview))
        .route("/porin/v1/console/recommendations/{ns}/{verb}", post(super::recommendations::act))
        .layer(axum::middleware::from_fn_with_state(state, session::console_authn));
    Router::new()
        .route("/porin/v1/console/login", post(session::login).layer(DefaultBodyLimit::max(session::MAX_LOGIN_BODY)))
        .route("/porin/v1/console/logout", post(session::logout))
        .route("/ui", get(ui::redirect))
        .route("/ui/", get(ui::index))
        .route("/ui/{*path}", get(ui::asset))
        .merge(data)
}

/// What a caller may see.
#[derive(Clone, Debug)]
pub enum View {
    All,
    /// `cni`: the `cni` token, which sees no flows, alerts or policies but reads the Pods and WorkloadEndpoints
    /// it binds (in every namespace: it serves every pod of its node), and the tiers and global network sets
    /// every token reads (the CLI validates manifests against the tiers).
    Scoped { namespaces: BTreeSet<String>, tiers: BTreeSet<String>, cni: bool },
}

impl View {
    pub fn of(id: &Identity) -> View {
        match &id.role {
            Role::Admin | Role::ReadOnly => View::All,
            Role::Scoped { namespaces, tiers } => {
                View::Scoped { namespaces: namespaces.iter().cloned().collect(), tiers: tiers.iter().cloned().collect(), cni: false }
            }
            // The CNI path sees nothing here but the objects it binds ([`View::object`]).
            Role::Cni => View::Scoped { namespaces: BTreeSet::new(), tiers: BTreeSet::new(), cni: true },
        }
    }

    pub fn namespace(&self, ns: &str) -> bool {
        match self {
            View::All => true,
            View::Scoped { namespaces, .. } => namespaces.contains(ns),
        }
    }

    fn tier(&self, t: &str) -> bool {
        match self {
            View::All => true,
            View::Scoped { tiers, .. } => tiers.contains(t),
        }
    }

    /// May this caller read the stored object `kind` `ns/name` through the resource routes, `porin get`, a
    /// watch or the audit trail? A scoped token reads namespaced objects of its namespaces, its namespaces, the
    /// tiers (their names and order say which tier's policies come before its own) and the global network sets
    /// (which its policies may name); no other cluster-scoped object (global policies, cluster settings, guards,
    /// feeds, reports, …): those describe other tenants or the platform.
    pub fn object(&self, kind: Kind, ns: Option<&str>, name: &str) -> bool {
        match self {
            View::All => true,
            View::Scoped { cni: true, .. } => {
                matches!(kind, Kind::Pod | Kind::WorkloadEndpoint | Kind::Tier | Kind::GlobalNetworkSet)
            }
            View::Scoped { .. } if kind.info().namespaced => ns.is_some_and(|n| self.namespace(n)),
            View::Scoped { .. } => match kind {
                Kind::Namespace => self.namespace(name),
                Kind::Tier | Kind::GlobalNetworkSet => true,
                _ => false,
            },
        }
    }

    /// May this caller list or watch `kind` at all? Not when it may read no object of the kind (a cluster-scoped
    /// kind outside [`View::object`]'s list): that is a 403, as Kubernetes RBAC answers, not an empty list.
    pub fn kind(&self, kind: Kind) -> bool {
        match self {
            View::All => true,
            View::Scoped { cni: true, .. } => {
                matches!(kind, Kind::Pod | Kind::WorkloadEndpoint | Kind::Tier | Kind::GlobalNetworkSet)
            }
            View::Scoped { .. } => kind.info().namespaced || matches!(kind, Kind::Namespace | Kind::Tier | Kind::GlobalNetworkSet),
        }
    }

    /// A namespaced policy in a namespace and tier of the scope (global policies only for unscoped callers).
    pub fn policy(&self, tier: &str, ns: Option<&str>) -> bool {
        match self {
            View::All => true,
            View::Scoped { .. } => self.tier(tier) && ns.is_some_and(|n| self.namespace(n)),
        }
    }

    fn endpoint(&self, ep: &FlowEndpoint) -> bool {
        ep.namespace.as_deref().is_some_and(|n| self.namespace(n))
    }

    /// A trace entry `tier|policy|rule|action` the caller may read (policy `ns/name` or a global `name`).
    fn trace_entry(&self, e: &str) -> bool {
        let mut p = e.split('|');
        let (tier, policy) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
        let ns = policy.split_once('/').map(|(ns, _)| ns);
        self.policy(tier, ns)
    }

    /// The record as this caller may see it: None when neither end is in scope.
    pub fn reduce(&self, mut r: FlowRecord) -> Option<FlowRecord> {
        if matches!(self, View::All) {
            return Some(r);
        }
        if !self.endpoint(&r.src) && !self.endpoint(&r.dst) {
            return None;
        }
        for ep in [&mut r.src, &mut r.dst] {
            if !self.endpoint(ep) {
                *ep = hidden_endpoint(ep);
            }
        }
        for t in [&mut r.enforced_trace, &mut r.pending_trace] {
            for e in t.iter_mut() {
                if !self.trace_entry(e) {
                    let action = e.rsplit('|').next().unwrap_or("").to_string();
                    *e = format!("{HIDDEN}|{action}");
                }
            }
        }
        Some(r)
    }
}

/// The other end of a flow, outside the caller's scope: in another namespace nothing but the port; outside
/// the cluster its kind and address (a network set's name and labels are hidden).
fn hidden_endpoint(ep: &FlowEndpoint) -> FlowEndpoint {
    if ep.namespace.is_some() {
        return FlowEndpoint { kind: EndpointKind::Unknown, port: ep.port, ..Default::default() };
    }
    let kind = if ep.kind == EndpointKind::NetworkSet { EndpointKind::World } else { ep.kind };
    FlowEndpoint { kind, ip: ep.ip, port: ep.port, ..Default::default() }
}

pub(crate) fn window(q: &HashMap<String, String>, default: &str) -> Result<(String, Duration), ApiError> {
    let w = q.get("window").map(String::as_str).unwrap_or(default);
    let d = porin_flow::time::parse_duration(w).map_err(|e| ApiError::bad_request(format!("window={w:?}: {e}")))?;
    if d < Duration::from_secs(60) || d > MAX_WINDOW {
        return Err(ApiError::bad_request(format!("window={w:?}: must be between 1m and 24h")));
    }
    Ok((w.to_string(), d))
}

fn flow_service(st: &Shared) -> Result<std::sync::Arc<dyn super::sources::FlowSource>, ApiError> {
    st.flows.clone().ok_or_else(|| ApiError::not_found("flow visibility runs in `porin agent` (this server has no flow pipeline)"))
}

/// Stored records of the last `d`, reduced to the caller's view.
pub(crate) async fn records_in_window(st: &Shared, view: &View, w: &str) -> Result<Vec<FlowRecord>, ApiError> {
    let Ok(svc) = flow_service(st) else { return Ok(Vec::new()) };
    let mut args = vec!["--since".to_string(), w.to_string()];
    if let View::Scoped { namespaces, .. } = view {
        if namespaces.is_empty() {
            return Ok(Vec::new());
        }
        for ns in namespaces {
            args.extend(["--namespace".to_string(), ns.clone()]);
        }
    }
    let q = porin_flow::filter::parse_args(args, porin_flow::time::now_unix()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let recs = tokio::task::spawn_blocking(move || svc.query(&q))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(recs.into_iter().filter_map(|r| view.reduce(r)).collect())
}

/// Which way a record was decided, for the graph's edges.
pub fn edge_verdict(r: &FlowRecord) -> &'static str {
    match (r.verdict, r.pending_verdict) {
        (Verdict::Denied, _) => "denied",
        (Verdict::Allowed, Some(PendingVerdict::WouldDeny)) => "would-deny",
        (Verdict::Allowed, _) => "allowed",
    }
}

/// Private, loopback, link-local, CGNAT and ULA addresses: "private network"; the rest: "public internet".
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private() || a.is_loopback() || a.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64) || a.is_unspecified()
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback() || a.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// A graph node: `(id, kind, label, parent namespace)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeKey {
    pub id: String,
    pub kind: &'static str,
    pub label: String,
    pub namespace: Option<String>,
}

/// The workload a pod belongs to: its `app` label, else its name.
fn workload_name(labels: &BTreeMap<String, String>, fallback: &str) -> String {
    labels.get("app").cloned().unwrap_or_else(|| fallback.to_string())
}

/// The node a flow endpoint is drawn as.
pub fn node_of(ep: &FlowEndpoint) -> NodeKey {
    match (ep.kind, &ep.namespace) {
        (EndpointKind::NetworkSet, ns) => {
            let name = ep.network_set.clone().unwrap_or_else(|| "?".into());
            let id = match ns {
                Some(n) => format!("netset:{n}/{name}"),
                None => format!("netset:{name}"),
            };
            NodeKey { id, kind: "networkset", label: name, namespace: ns.clone() }
        }
        (_, Some(ns)) => {
            let w = ep.workload.clone().unwrap_or_else(|| workload_name(&ep.labels, ep.pod.as_deref().unwrap_or("?")));
            let w = if ep.labels.contains_key("app") { workload_name(&ep.labels, &w) } else { w };
            NodeKey { id: format!("wl:{ns}/{w}"), kind: "workload", label: w, namespace: Some(ns.clone()) }
        }
        (EndpointKind::Host, None) => NodeKey { id: "host".into(), kind: "host", label: "hosts".into(), namespace: None },
        (EndpointKind::Unknown, None) if ep.ip.is_none() => {
            NodeKey { id: "other".into(), kind: "other", label: "outside your scope".into(), namespace: None }
        }
        (_, None) => match ep.ip {
            Some(ip) if !is_private(ip) => NodeKey { id: "internet".into(), kind: "internet", label: "public internet".into(), namespace: None },
            _ => NodeKey { id: "private".into(), kind: "private", label: "private network".into(), namespace: None },
        },
    }
}

#[derive(Default)]
struct EdgeAgg {
    connections: u64,
    packets: u64,
    bytes: u64,
    records: u64,
    last: u64,
    ports: BTreeSet<String>,
}

/// Nodes and edges of the service graph from (already reduced) records, plus the pods of the store (so an idle
/// workload is drawn too).
pub fn build_graph(records: &[FlowRecord], pods: &[(String, String, BTreeMap<String, String>)]) -> Value {
    let mut nodes: BTreeMap<String, (NodeKey, BTreeMap<String, String>, BTreeSet<String>)> = BTreeMap::new();
    let mut add = |k: NodeKey, labels: &BTreeMap<String, String>, pod: Option<&str>| {
        let e = nodes.entry(k.id.clone()).or_insert_with(|| (k, labels.clone(), BTreeSet::new()));
        // The labels every pod of the workload shares.
        e.1.retain(|key, v| labels.get(key) == Some(v));
        if let Some(p) = pod {
            e.2.insert(p.to_string());
        }
    };
    for (ns, name, labels) in pods {
        let w = workload_name(labels, name);
        add(NodeKey { id: format!("wl:{ns}/{w}"), kind: "workload", label: w, namespace: Some(ns.clone()) }, labels, Some(name));
    }
    // A connection between two observed workloads is reported twice: at the source's egress and at the
    // destination's ingress. The ingress record has the last word (a packet denied there was allowed at the
    // egress), so a source-side record with a destination-side twin is not drawn again.
    let key = |r: &FlowRecord| (r.src.ip, r.src.port, r.dst.ip, r.dst.port, r.protocol.clone(), node_of(&r.src).id, node_of(&r.dst).id);
    let at_dst: std::collections::HashSet<_> = records.iter().filter(|r| r.reporter == Reporter::Dst).map(key).collect();
    let mut edges: BTreeMap<(String, String, &'static str), EdgeAgg> = BTreeMap::new();
    for r in records {
        if r.reporter == Reporter::Src && at_dst.contains(&key(r)) {
            continue;
        }
        let (s, d) = (node_of(&r.src), node_of(&r.dst));
        add(s.clone(), &r.src.labels, r.src.pod.as_deref());
        add(d.clone(), &r.dst.labels, r.dst.pod.as_deref());
        let e = edges.entry((s.id, d.id, edge_verdict(r))).or_default();
        e.connections += r.flows_started;
        e.packets += r.packets_src_to_dst + r.packets_dst_to_src;
        e.bytes += r.bytes_src_to_dst + r.bytes_dst_to_src;
        e.records += 1;
        e.last = e.last.max(r.end_time);
        if e.ports.len() < 16 {
            e.ports.insert(format!("{}/{}", r.protocol, r.port_label()));
        }
    }
    let namespaces: BTreeSet<String> = nodes.values().filter_map(|(k, ..)| k.namespace.clone()).collect();
    let mut out_nodes: Vec<Value> = namespaces
        .iter()
        .map(|ns| json!({"id": format!("ns:{ns}"), "kind": "namespace", "label": ns, "namespace": ns}))
        .collect();
    out_nodes.extend(nodes.values().map(|(k, labels, pods)| {
        json!({
            "id": k.id, "kind": k.kind, "label": k.label, "namespace": k.namespace,
            "parent": k.namespace.as_ref().map(|n| format!("ns:{n}")),
            "labels": labels, "pods": pods,
        })
    }));
    let out_edges: Vec<Value> = edges
        .into_iter()
        .map(|((s, d, v), a)| {
            json!({
                "id": format!("{s}->{d}:{v}"), "source": s, "target": d, "verdict": v,
                "connections": a.connections, "packets": a.packets, "bytes": a.bytes, "records": a.records,
                "lastSeen": porin_flow::time::format_rfc3339(a.last), "ports": a.ports,
            })
        })
        .collect();
    json!({"nodes": out_nodes, "edges": out_edges})
}

/// The pods the caller may see: (namespace, name, labels).
async fn visible_pods(st: &Shared, view: &View) -> Result<Vec<(String, String, BTreeMap<String, String>)>, ApiError> {
    let (items, _) = st.list(&crate::registry::keys::kind_prefix(Kind::Pod)).await?;
    let mut out = Vec::new();
    for kv in items {
        let Ok(v) = serde_json::from_slice::<Value>(&kv.value) else { continue };
        let ns = v["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        if !view.namespace(&ns) {
            continue;
        }
        let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
        let labels: BTreeMap<String, String> = serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default();
        out.push((ns, name, labels));
    }
    Ok(out)
}

/// `GET /porin/v1/console/graph?window=15m`.
pub async fn graph(State(st): State<Shared>, Extension(id): Extension<Identity>, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let (w, d) = window(&q, "15m")?;
    let view = View::of(&id);
    let recs = records_in_window(&st, &view, &w).await?;
    let pods = visible_pods(&st, &view).await?;
    let mut g = build_graph(&recs, &pods);
    g["window"] = json!(w);
    g["windowSeconds"] = json!(d.as_secs());
    g["generated"] = json!(porin_flow::time::format_rfc3339(porin_flow::time::now_unix()));
    Ok(Json(g))
}

fn lines(recs: &[FlowRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(recs.len() * 512);
    for r in recs {
        if serde_json::to_writer(&mut out, r).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// `GET /porin/v1/console/flows?arg=--verdict&arg=denied&follow=true`: as `/porin/v1/flows`, reduced to the
/// caller's view; for a scoped caller the filter runs on the reduced records.
pub async fn flows(State(st): State<Shared>, Extension(id): Extension<Identity>, Query(params): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let svc = flow_service(&st)?;
    let view = View::of(&id);
    let mut args = Vec::new();
    let mut follow = false;
    for (k, v) in params {
        match k.as_str() {
            "arg" => args.push(v),
            "follow" => follow = matches!(v.as_str(), "true" | "1"),
            other => return Err(ApiError::bad_request(format!("unknown parameter {other:?} (arg=, follow=)"))),
        }
    }
    let now = porin_flow::time::now_unix();
    let user = porin_flow::filter::parse_args(args, now).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let user_filter = user.filter.clone();
    // The store query: the caller's time range, and for a scoped caller only its namespaces; the caller's own
    // filter and count run after the reduction.
    let mut q = user.clone();
    if let View::Scoped { namespaces, .. } = &view {
        let ns_args: Vec<String> = namespaces.iter().flat_map(|n| ["--namespace".to_string(), n.clone()]).collect();
        q.filter = if ns_args.is_empty() {
            // No namespace: nothing is visible; `--namespace` with a name no namespace can have matches nothing.
            porin_flow::filter::parse_args(["--namespace", "/"], now).map_err(|e| ApiError::internal(e.to_string()))?.filter
        } else {
            porin_flow::filter::parse_args(ns_args, now).map_err(|e| ApiError::internal(e.to_string()))?.filter
        };
        q.last = None;
        q.first = None;
    }
    let finish = {
        let (view, f, last, first) = (view.clone(), user_filter.clone(), user.last, user.first);
        move |recs: Vec<FlowRecord>| -> Vec<FlowRecord> {
            let mut v: Vec<FlowRecord> = recs.into_iter().filter_map(|r| view.reduce(r)).filter(|r| f.matches(r)).collect();
            if let Some(n) = last {
                let skip = v.len().saturating_sub(n);
                v.drain(..skip);
            } else if let Some(n) = first {
                v.truncate(n);
            }
            v
        }
    };
    let s2 = svc.clone();
    if !follow {
        let recs = tokio::task::spawn_blocking(move || s2.query(&q))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(([(header::CONTENT_TYPE, NDJSON)], lines(&finish(recs))).into_response());
    }
    let (initial, rx) = tokio::task::spawn_blocking(move || s2.follow(&q))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let first = Bytes::from(lines(&finish(initial)));
    let stream = futures::stream::unfold((Some(first), rx, view, user_filter, svc), |(first, mut rx, view, filter, svc)| async move {
        if let Some(b) = first {
            return Some((Ok::<Bytes, Infallible>(b), (None, rx, view, filter, svc)));
        }
        let chunk = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
            Err(_) => Bytes::from_static(b"\n"),
            Ok(Ok(batch)) => {
                let matching: Vec<FlowRecord> =
                    batch.iter().filter_map(|r| view.reduce(r.clone())).filter(|r| filter.matches(r)).collect();
                if matching.is_empty() { Bytes::new() } else { Bytes::from(lines(&matching)) }
            }
            Ok(Err(RecvError::Lagged(n))) => {
                svc.follow_lagged(n);
                Bytes::from(format!("{{\"lagged\":{n}}}\n"))
            }
            Ok(Err(RecvError::Closed)) => return None,
        };
        Some((Ok(chunk), (None, rx, view, filter, svc)))
    });
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(stream)).into_response())
}

/// The kinds on the policy board.
const POLICY_KINDS: [Kind; 6] = [
    Kind::GlobalNetworkPolicy,
    Kind::NetworkPolicy,
    Kind::K8sNetworkPolicy,
    Kind::StagedGlobalNetworkPolicy,
    Kind::StagedNetworkPolicy,
    Kind::StagedKubernetesNetworkPolicy,
];

/// How a policy is named in traces (`ns/name`, `ns/knp.name`, `staged:name`, ...).
pub fn trace_name(kind: Kind, ns: Option<&str>, name: &str) -> String {
    let staged = if matches!(kind, Kind::StagedGlobalNetworkPolicy | Kind::StagedNetworkPolicy | Kind::StagedKubernetesNetworkPolicy) {
        "staged:"
    } else {
        ""
    };
    let knp = if matches!(kind, Kind::K8sNetworkPolicy | Kind::StagedKubernetesNetworkPolicy) { "knp." } else { "" };
    match ns {
        Some(ns) => format!("{ns}/{staged}{knp}{name}"),
        None => format!("{staged}{name}"),
    }
}

/// Per-rule hits from records: `(direction, tier|policy|rule|action)` → counters.
pub fn rule_hits(records: &[FlowRecord]) -> Vec<Value> {
    #[derive(Default)]
    struct H {
        connections: u64,
        packets: u64,
        bytes: u64,
        last: u64,
    }
    let mut hits: BTreeMap<(String, String, bool), H> = BTreeMap::new();
    for r in records {
        let dir = r.direction.as_str().to_string();
        for (staged, t) in [(false, &r.enforced_trace), (true, &r.pending_trace)] {
            for e in t.iter().filter(|e| !e.starts_with(HIDDEN)) {
                let h = hits.entry((dir.clone(), e.clone(), staged)).or_default();
                h.connections += r.flows_started;
                h.packets += r.packets_src_to_dst + r.packets_dst_to_src;
                h.bytes += r.bytes_src_to_dst + r.bytes_dst_to_src;
                h.last = h.last.max(r.end_time);
            }
        }
    }
    hits.into_iter()
        .map(|((dir, e, staged), h)| {
            let p: Vec<&str> = e.split('|').collect();
            json!({
                "direction": dir, "entry": e, "staged": staged,
                "tier": p.first(), "policy": p.get(1), "rule": p.get(2), "action": p.get(3),
                "connections": h.connections, "packets": h.packets, "bytes": h.bytes,
                "lastHit": porin_flow::time::format_rfc3339(h.last),
            })
        })
        .collect()
}

/// `GET /porin/v1/console/policies?window=24h`: tiers, the policies of the caller's view, per-rule hits.
pub async fn policies(State(st): State<Shared>, Extension(id): Extension<Identity>, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let (w, _) = window(&q, "24h")?;
    let view = View::of(&id);
    let (tier_items, revision) = st.list(&crate::registry::keys::kind_prefix(Kind::Tier)).await?;
    let tiers: Vec<Value> = tier_items
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .filter(|v| view.tier(v["metadata"]["name"].as_str().unwrap_or("")))
        .collect();
    let mut policies = Vec::new();
    for kind in POLICY_KINDS {
        let (items, _) = st.list(&crate::registry::keys::kind_prefix(kind)).await?;
        for kv in items {
            let Ok(mut v) = serde_json::from_slice::<Value>(&kv.value) else { continue };
            let ns = v["metadata"]["namespace"].as_str().map(String::from);
            let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
            let k8s = matches!(kind, Kind::K8sNetworkPolicy | Kind::StagedKubernetesNetworkPolicy);
            let tier = if k8s { "default".to_string() } else { v["spec"]["tier"].as_str().unwrap_or("default").to_string() };
            if !view.policy(&tier, ns.as_deref()) {
                continue;
            }
            if v.get("apiVersion").is_none() {
                v["apiVersion"] = json!(kind.api_version());
            }
            if v.get("kind").is_none() {
                v["kind"] = json!(kind.info().kind);
            }
            policies.push(json!({
                "kind": kind.info().kind,
                "namespace": ns,
                "name": name,
                "tier": tier,
                "staged": trace_name(kind, None, "").starts_with("staged:"),
                "traceName": trace_name(kind, ns.as_deref(), &name),
                "object": v,
            }));
        }
    }
    let recs = records_in_window(&st, &view, &w).await?;
    Ok(Json(json!({
        "revision": revision,
        "window": w,
        "tiers": tiers,
        "policies": policies,
        "hits": rule_hits(&recs),
        "preview": "preview",
    })))
}

/// `POST /porin/v1/console/apply[?dryRun=All]`: the SPA's editor; exactly `/porin/v1/apply` (authorization and
/// the server-side dry run included).
pub async fn apply(st: State<Shared>, id: Extension<Identity>, q: Query<HashMap<String, String>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    super::porin_routes::apply(st, id, q, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ns: Option<&str>, pod: &str, app: &str) -> FlowEndpoint {
        FlowEndpoint {
            kind: if ns.is_some() { EndpointKind::Pod } else { EndpointKind::World },
            namespace: ns.map(String::from),
            pod: Some(pod.into()),
            labels: [("app".to_string(), app.to_string())].into(),
            ip: Some("10.10.0.9".parse().unwrap()),
            port: Some(9000),
            ..Default::default()
        }
    }

    fn scoped(ns: &[&str], tiers: &[&str]) -> View {
        View::Scoped {
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            tiers: tiers.iter().map(|s| s.to_string()).collect(),
            cni: false,
        }
    }

    #[test]
    fn scoped_view_hides_the_other_namespace_and_other_tiers() {
        let v = scoped(&["shop"], &["default"]);
        let mut r: FlowRecord = serde_json::from_value(json!({
            "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:01Z", "node": "n0",
            "verdict": "denied", "direction": "ingress", "reporter": "dst", "ip_family": "v4",
            "protocol": "tcp", "src": {"kind": "pod"}, "dst": {"kind": "pod"},
            "packets_src_to_dst": 1, "bytes_src_to_dst": 60, "packets_dst_to_src": 0, "bytes_dst_to_src": 0,
            "flows_started": 1, "flows_completed": 0, "flows_open": 0, "open": false, "aggregation": "five_tuple"
        }))
        .expect("a record");
        r.src = ep(Some("shop"), "frontend-1", "frontend");
        r.dst = ep(Some("bank"), "vault-1", "vault");
        r.enforced_trace = vec!["platform|pci-isolation|1|deny".into(), "default|shop/allow-web|0|allow".into(), "default|bank/x|0|allow".into()];
        let red = v.reduce(r.clone()).expect("one end is in scope");
        assert_eq!(red.src, r.src);
        assert_eq!(red.dst.namespace, None);
        assert_eq!(red.dst.pod, None);
        assert!(red.dst.labels.is_empty());
        assert_eq!(red.dst.ip, None, "a pod address in another namespace is hidden");
        assert_eq!(red.dst.port, Some(9000));
        assert_eq!(red.enforced_trace, vec![format!("{HIDDEN}|deny"), "default|shop/allow-web|0|allow".into(), format!("{HIDDEN}|allow")]);
        assert_eq!(node_of(&red.dst).id, "other");
        // Neither end in scope: nothing at all.
        let mut r2 = r.clone();
        r2.src = ep(Some("bank"), "teller", "teller");
        assert!(v.reduce(r2).is_none());
        // An admin sees it all.
        assert_eq!(View::All.reduce(r.clone()), Some(r));
    }

    #[test]
    fn graph_groups_pods_by_app_and_separates_verdicts() {
        let pods = vec![
            ("shop".to_string(), "frontend-1".to_string(), [("app".to_string(), "frontend".to_string())].into()),
            ("shop".to_string(), "frontend-2".to_string(), [("app".to_string(), "frontend".to_string())].into()),
            ("shop".to_string(), "idle".to_string(), BTreeMap::new()),
        ];
        let g = build_graph(&[], &pods);
        let ids: Vec<&str> = g["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec!["ns:shop", "wl:shop/frontend", "wl:shop/idle"]);
        assert_eq!(g["nodes"][1]["pods"], json!(["frontend-1", "frontend-2"]));
    }

    #[test]
    fn a_connection_denied_at_the_destination_is_one_denied_edge() {
        let mut egress: FlowRecord = serde_json::from_value(json!({
            "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:01Z", "node": "n0",
            "verdict": "allowed", "direction": "egress", "reporter": "src", "ip_family": "v4",
            "protocol": "tcp", "src": {"kind": "pod"}, "dst": {"kind": "pod"},
            "packets_src_to_dst": 1, "bytes_src_to_dst": 60, "packets_dst_to_src": 0, "bytes_dst_to_src": 0,
            "flows_started": 1, "flows_completed": 0, "flows_open": 0, "open": false, "aggregation": "five_tuple"
        }))
        .expect("a record");
        egress.src = ep(Some("shop"), "frontend", "frontend");
        egress.src.port = Some(40000);
        egress.dst = ep(Some("shop"), "payment", "payment");
        egress.dst.ip = Some("10.10.0.14".parse().unwrap());
        let mut ingress = egress.clone();
        ingress.verdict = Verdict::Denied;
        ingress.reporter = Reporter::Dst;
        ingress.direction = porin_flow::FlowDirection::Ingress;
        let g = build_graph(&[egress.clone(), ingress], &[]);
        let edges: Vec<&str> = g["edges"].as_array().unwrap().iter().map(|e| e["verdict"].as_str().unwrap()).collect();
        assert_eq!(edges, vec!["denied"]);
        // Alone, the egress record is drawn.
        let g = build_graph(&[egress], &[]);
        assert_eq!(g["edges"][0]["verdict"], "allowed");
    }

    #[test]
    fn addresses_split_into_private_and_internet() {
        for a in ["10.1.2.3", "192.168.1.1", "172.16.0.1", "100.64.0.1", "fd00::1", "fe80::1", "127.0.0.1"] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "100.128.0.1", "2001:db8::1", "172.32.0.1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn trace_names_match_the_policy_ids() {
        assert_eq!(trace_name(Kind::K8sNetworkPolicy, Some("shop"), "frontend"), "shop/knp.frontend");
        assert_eq!(trace_name(Kind::StagedKubernetesNetworkPolicy, Some("shop"), "a"), "shop/staged:knp.a");
        assert_eq!(trace_name(Kind::GlobalNetworkPolicy, None, "pci-isolation"), "pci-isolation");
        assert_eq!(trace_name(Kind::StagedGlobalNetworkPolicy, None, "x"), "staged:x");
        assert_eq!(trace_name(Kind::NetworkPolicy, Some("shop"), "x"), "shop/x");
    }
}
