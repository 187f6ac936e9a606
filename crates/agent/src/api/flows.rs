//! `GET /porin/v1/flows` (what `porin observe` reads) and `GET /metrics`.
//!
//! The query travels as the canonical `porin observe` filter arguments
//! ([`porin_flow::FilterArgs::to_argv`]), one `arg=` parameter each, in order (`--not` needs it), and is
//! evaluated here, next to the store. The answer is newline-delimited JSON, one flow record per line;
//! with `follow=true` the response stays open and streams every newly stored record that matches
//! (blank lines are keep-alives; `{"lagged": N}` says N stored batches were skipped because the
//! reader was too slow — they are in the store).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::broadcast::error::RecvError;

use super::console::View;
use super::{ApiError, Shared};
use crate::auth::Identity;
use super::sources::FlowSource;

const NDJSON: &str = "application/x-ndjson";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A follower gets a blank line after this much silence (and a gone client is noticed).
const KEEPALIVE: Duration = Duration::from_secs(10);

fn service(st: &Shared) -> Result<Arc<dyn FlowSource>, ApiError> {
    st.flows.clone().ok_or_else(|| ApiError::not_found("flow visibility runs in `porin agent` (this server has no flow pipeline)"))
}

fn lines(recs: &[porin_flow::FlowRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(recs.len() * 512);
    for r in recs {
        if serde_json::to_writer(&mut out, r).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// `GET /porin/v1/flows?arg=--verdict&arg=denied&follow=true`.
///
/// A namespace- or tier-scoped token sees a record only when one end is in its namespaces, with the other end and
/// out-of-scope trace entries hidden (the console's view). Its filters run on what it may see, after that
/// reduction, so they cannot probe the hidden parts.
pub async fn flows(
    State(st): State<Shared>,
    Extension(id): Extension<Identity>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let view = View::of(&id);
    let svc = service(&st)?;
    let mut args = Vec::new();
    let mut follow = false;
    for (k, v) in params {
        match k.as_str() {
            "arg" => args.push(v),
            "follow" => follow = matches!(v.as_str(), "true" | "1"),
            other => return Err(ApiError::bad_request(format!("unknown parameter {other:?} (arg=, follow=)"))),
        }
    }
    let q = porin_flow::filter::parse_args(args, porin_flow::time::now_unix()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let scoped = !matches!(view, View::All);
    // Scoped: ask the store for the time range only; reduce, then filter and count what the caller may see.
    let store_q = if scoped {
        porin_flow::Query { since: q.since, until: q.until, last: None, first: None, filter: Default::default() }
    } else {
        q.clone()
    };
    let visible = {
        let view = view.clone();
        let filter = q.filter.clone();
        move |recs: Vec<porin_flow::FlowRecord>| -> Vec<porin_flow::FlowRecord> {
            if !scoped {
                return recs;
            }
            recs.into_iter().filter_map(|r| view.reduce(r)).filter(|r| filter.matches(r)).collect()
        }
    };
    let s2 = svc.clone();
    if !follow {
        let recs = tokio::task::spawn_blocking(move || s2.query(&store_q))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut recs = visible(recs);
        if scoped {
            if let Some(n) = q.last {
                recs.drain(..recs.len().saturating_sub(n));
            } else if let Some(n) = q.first {
                recs.truncate(n);
            }
        }
        return Ok(([(header::CONTENT_TYPE, NDJSON)], lines(&recs)).into_response());
    }
    let (initial, rx) = tokio::task::spawn_blocking(move || s2.follow(&store_q))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut initial = visible(initial);
    if scoped && let Some(n) = q.last {
        initial.drain(..initial.len().saturating_sub(n));
    }
    let first = Bytes::from(lines(&initial));
    let filter = q.filter;
    let view2 = view.clone();
    let stream = futures::stream::unfold((Some(first), rx, filter, svc), move |(first, mut rx, filter, svc)| {
        let view = view2.clone();
        async move {
        if let Some(b) = first {
            return Some((Ok::<Bytes, Infallible>(b), (None, rx, filter, svc)));
        }
        let chunk = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
            Err(_) => Bytes::from_static(b"\n"),
            Ok(Ok(batch)) => {
                let matching: Vec<porin_flow::FlowRecord> = batch
                    .iter()
                    .filter_map(|r| if scoped { view.reduce(r.clone()) } else { Some(r.clone()) })
                    .filter(|r| filter.matches(r))
                    .collect();
                if matching.is_empty() {
                    // Nothing to write: an empty chunk keeps the loop going without output.
                    Bytes::new()
                } else {
                    Bytes::from(lines(&matching))
                }
            }
            Ok(Err(RecvError::Lagged(n))) => {
                svc.follow_lagged(n);
                Bytes::from(format!("{{\"lagged\":{n}}}\n"))
            }
            Ok(Err(RecvError::Closed)) => return None,
        };
        Some((Ok(chunk), (None, rx, filter, svc)))
        }
    });
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(stream)).into_response())
}

/// `GET /metrics` on the API (authenticated like every API route): the flow series and the alert series.
pub async fn metrics(State(st): State<Shared>) -> Result<Response, ApiError> {
    let svc = service(&st)?;
    let text = crate::alerts::join_openmetrics(&svc.encode_metrics(), &st.alerts.encode_metrics());
    Ok(([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response())
}

/// The `--metrics-listen` server: `/metrics` only, plain HTTP, no authentication (bind it to loopback
/// or a scrape network).
pub fn metrics_router(flows: Option<Arc<dyn FlowSource>>, alerts: Arc<crate::alerts::AlertLog>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let flows = flows.clone();
            let alerts = alerts.clone();
            async move {
                match flows {
                    Some(f) => {
                        let text = crate::alerts::join_openmetrics(&f.encode_metrics(), &alerts.encode_metrics());
                        ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
                    }
                    None => (axum::http::StatusCode::NOT_FOUND, "no flow pipeline\n").into_response(),
                }
            }
        }),
    )
}
