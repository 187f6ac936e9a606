//! Webhook delivery (`--alert-webhook URL`, repeatable): one task per URL POSTs every alert raised after the
//! agent started, one JSON object per request (the [`Alert`] JSON of `porin alerts -o json`), in raise order.
//!
//! * **Never blocks the raiser.** The task follows the log's broadcast and moves each alert into its own queue
//!   of at most [`QUEUE_CAPACITY`] alerts; when the queue is full the oldest waiting alert is dropped, and
//!   drops (also those of a follower that fell behind the broadcast) are counted
//!   (`porin_alert_webhook_dropped_total`).
//! * **Retried with exponential backoff.** A failed POST (no connection, a timeout of [`POST_TIMEOUT`], a non-2xx
//!   answer) is retried after 250 ms, doubling up to [`MAX_BACKOFF`], for as long as it takes; the alerts behind
//!   it wait (and keep arriving into the queue). The first success resets the backoff.
//! * Every delivery, failure and retry is counted per URL ([`super::metrics`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::metrics::AlertMetrics;
use super::{Alert, AlertLog};

/// Alerts waiting per URL.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Deadline of one POST.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Checks a webhook URL (`http://` or `https://`).
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("--alert-webhook {url:?}: not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(()),
        _ => Err(format!("--alert-webhook {url:?}: expected http://HOST[:PORT]/PATH or https://...")),
    }
}

/// Starts the delivery task of `url` (backoff capped at `max_backoff`, normally [`MAX_BACKOFF`]). Subscribes at
/// once, so every alert raised after this call is delivered.
pub fn spawn(log: Arc<AlertLog>, url: String, max_backoff: Duration) -> tokio::task::JoinHandle<()> {
    let rx = log.subscribe();
    tokio::spawn(deliver(log, url, rx, max_backoff.max(FIRST_BACKOFF)))
}

async fn deliver(log: Arc<AlertLog>, url: String, mut rx: tokio::sync::broadcast::Receiver<Arc<Alert>>, max_backoff: Duration) {
    let m: &AlertMetrics = &log.metrics;
    let l = AlertMetrics::url(&url);
    m.register_webhook(&l);
    let mut queue: VecDeque<(Arc<Alert>, u32)> = VecDeque::new();
    let mut backoff = FIRST_BACKOFF;
    let mut next_try = tokio::time::Instant::now();
    let mut open = true;
    while open || !queue.is_empty() {
        tokio::select! {
            r = rx.recv(), if open => match r {
                Ok(a) => {
                    if queue.len() == QUEUE_CAPACITY {
                        queue.pop_front();
                        m.dropped(&l, 1);
                    }
                    queue.push_back((a, 0));
                }
                Err(RecvError::Lagged(n)) => m.dropped(&l, n),
                Err(RecvError::Closed) => open = false,
            },
            _ = tokio::time::sleep_until(next_try), if !queue.is_empty() => {
                let (alert, attempts) = queue.front_mut().expect("not empty");
                if *attempts > 0 {
                    m.retried(&l);
                }
                *attempts += 1;
                let body = serde_json::to_vec(&**alert).expect("alerts serialize");
                match crate::httpc::request(hyper::Method::POST, &url, &[], Some((body, "application/json")), POST_TIMEOUT, 64 << 10).await {
                    Ok(_) => {
                        m.delivered(&l);
                        queue.pop_front();
                        backoff = FIRST_BACKOFF;
                        next_try = tokio::time::Instant::now();
                    }
                    Err(e) => {
                        m.failed(&l);
                        if *attempts == 1 || backoff == max_backoff {
                            tracing::warn!(url, alert = alert.id, error = %e, "alert webhook delivery failed; retrying with backoff");
                        }
                        next_try = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
        }
        m.queue(&l, queue.len());
    }
}
