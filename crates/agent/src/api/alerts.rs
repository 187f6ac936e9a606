//! `GET /porin/v1/alerts[?since=10m|RFC3339][&kind=threat_feed][&follow=true]`: this agent's alerts as NDJSON
//! (oldest first); with `follow=true` the response stays open and streams each new alert.
//!
//! Tenant scoping, like flows: a namespace-scoped token sees an alert only when one of its endpoints (or, for
//! an alert without endpoints, its `detail.namespace`) is in its namespaces; the other end and out-of-scope
//! trace entries are hidden. Cluster-wide alerts (blocks) are for admin and read-only tokens.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use porin_flow::{EndpointKind, FlowEndpoint};
use tokio::sync::broadcast::error::RecvError;

use super::console::View;
use super::{ApiError, Shared};
use crate::alerts::{Alert, AlertKind};
use crate::auth::Identity;

const NDJSON: &str = "application/x-ndjson";
const KEEPALIVE: Duration = Duration::from_secs(10);

/// The alert as `view` may see it: None when none of its workloads is in scope.
pub fn reduce(view: &View, a: &Alert) -> Option<Alert> {
    if matches!(view, View::All) {
        return Some(a.clone());
    }
    let in_scope = |ep: &Option<FlowEndpoint>| ep.as_ref().and_then(|e| e.namespace.as_deref()).is_some_and(|n| view.namespace(n));
    let detail_ns = a.detail.get("namespace").is_some_and(|n| view.namespace(n));
    if !in_scope(&a.src) && !in_scope(&a.dst) && !detail_ns {
        return None;
    }
    let mut a = a.clone();
    for ep in [&mut a.src, &mut a.dst] {
        if let Some(e) = ep.as_mut()
            && !e.namespace.as_deref().is_some_and(|n| view.namespace(n))
        {
            *e = if e.namespace.is_some() {
                FlowEndpoint { kind: EndpointKind::Unknown, port: e.port, ..Default::default() }
            } else {
                let kind = if e.kind == EndpointKind::NetworkSet { EndpointKind::World } else { e.kind };
                FlowEndpoint { kind, ip: e.ip, port: e.port, ..Default::default() }
            };
        }
    }
    for t in a.trace.iter_mut() {
        let mut p = t.split('|');
        let (tier, policy) = (p.next().unwrap_or(""), p.next().unwrap_or(""));
        if !view.policy(tier, policy.split_once('/').map(|(ns, _)| ns)) {
            let action = t.rsplit('|').next().unwrap_or("").to_string();
            *t = format!("(hidden)|{action}");
        }
    }
    Some(a)
}

struct Filter {
    since: Option<i64>,
    kind: Option<AlertKind>,
}

impl Filter {
    fn matches(&self, a: &Alert) -> bool {
        self.kind.is_none_or(|k| a.kind == Some(k))
            && self.since.is_none_or(|s| crate::timefmt::parse_rfc3339(&a.time).is_some_and(|t| t >= s))
    }
}

fn lines(alerts: &[Alert]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in alerts {
        if serde_json::to_writer(&mut out, a).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

pub async fn alerts(State(st): State<Shared>, Extension(id): Extension<Identity>, Query(params): Query<Vec<(String, String)>>) -> Result<Response, ApiError> {
    let view = View::of(&id);
    let mut f = Filter { since: None, kind: None };
    let mut follow = false;
    for (k, v) in params {
        match k.as_str() {
            "since" => {
                f.since = Some(crate::timefmt::parse_since(&v).ok_or_else(|| {
                    ApiError::bad_request(format!("since={v:?}: expected a duration (10m, 2h) or an RFC 3339 time"))
                })?)
            }
            "kind" => {
                f.kind = Some(AlertKind::parse(&v).ok_or_else(|| {
                    let all: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
                    ApiError::bad_request(format!("kind={v:?}: expected one of {}", all.join(", ")))
                })?)
            }
            "follow" => follow = matches!(v.as_str(), "true" | "1"),
            other => return Err(ApiError::bad_request(format!("unknown parameter {other:?} (since=, kind=, follow=)"))),
        }
    }
    let (stored, rx) = st.alerts.snapshot_and_follow();
    let pick = {
        let view = view.clone();
        move |a: &Arc<Alert>| if f.matches(a) { reduce(&view, a) } else { None }
    };
    let initial: Vec<Alert> = stored.iter().filter_map(&pick).collect();
    if !follow {
        return Ok(([(header::CONTENT_TYPE, NDJSON)], lines(&initial)).into_response());
    }
    let first = Bytes::from(lines(&initial));
    let pick = Arc::new(pick);
    let stream = futures::stream::unfold((Some(first), rx), move |(first, mut rx)| {
        let pick = pick.clone();
        async move {
            if let Some(b) = first {
                return Some((Ok::<Bytes, Infallible>(b), (None, rx)));
            }
            let chunk = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
                Err(_) => Bytes::from_static(b"\n"),
                Ok(Ok(a)) => match pick(&a) {
                    Some(a) => Bytes::from(lines(&[a])),
                    None => Bytes::new(),
                },
                Ok(Err(RecvError::Lagged(n))) => Bytes::from(format!("{{\"lagged\":{n}}}\n")),
                Ok(Err(RecvError::Closed)) => return None,
            };
            Some((Ok(chunk), (None, rx)))
        }
    });
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(stream)).into_response())
}
