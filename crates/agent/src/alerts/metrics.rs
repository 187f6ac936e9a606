//! The alert series of `/metrics` (prometheus-client, OpenMetrics text, prefix `porin`), served together with
//! the flow series:
//!
//! | series | labels | meaning |
//! |---|---|---|
//! | `porin_alerts_raised_total` | `kind` | alerts raised since start |
//! | `porin_alerts_evicted_total` | | alerts dropped from the bounded log (oldest first) |
//! | `porin_alert_webhook_deliveries_total` | `url` | alerts a webhook receiver accepted (2xx) |
//! | `porin_alert_webhook_failures_total` | `url` | failed POST attempts (connection refused, timeout, non-2xx) |
//! | `porin_alert_webhook_retries_total` | `url` | attempts that were retries of an alert that failed before |
//! | `porin_alert_webhook_dropped_total` | `url` | alerts never delivered: the bounded queue overflowed |
//! | `porin_alert_webhook_queue` | `url` | alerts waiting for delivery |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AlertKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UrlLabels {
    url: String,
}

/// The registry and its series.
#[derive(Debug)]
pub struct AlertMetrics {
    registry: Registry,
    raised: Family<KindLabels, Counter>,
    evicted: Counter,
    deliveries: Family<UrlLabels, Counter>,
    failures: Family<UrlLabels, Counter>,
    retries: Family<UrlLabels, Counter>,
    dropped: Family<UrlLabels, Counter>,
    queue: Family<UrlLabels, Gauge>,
}

impl Default for AlertMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AlertMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("porin");
        let m = AlertMetrics {
            registry: Registry::default(),
            raised: Family::default(),
            evicted: Counter::default(),
            deliveries: Family::default(),
            failures: Family::default(),
            retries: Family::default(),
            dropped: Family::default(),
            queue: Family::default(),
        };
        registry.register("alerts_raised", "Alerts raised, by kind", m.raised.clone());
        registry.register("alerts_evicted", "Alerts dropped from the bounded alert log", m.evicted.clone());
        registry.register("alert_webhook_deliveries", "Alerts a webhook receiver accepted", m.deliveries.clone());
        registry.register("alert_webhook_failures", "Failed webhook POST attempts", m.failures.clone());
        registry.register("alert_webhook_retries", "Webhook POST attempts that retried a failed alert", m.retries.clone());
        registry.register("alert_webhook_dropped", "Alerts never delivered because the webhook queue overflowed", m.dropped.clone());
        registry.register("alert_webhook_queue", "Alerts waiting for webhook delivery", m.queue.clone());
        for k in AlertKind::ALL {
            // Every kind shows up, at 0, before its first alert.
            let _ = m.raised.get_or_create(&KindLabels { kind: k.as_str().into() });
        }
        AlertMetrics { registry, ..m }
    }

    pub(crate) fn raised(&self, k: AlertKind) {
        self.raised.get_or_create(&KindLabels { kind: k.as_str().into() }).inc();
    }

    pub(crate) fn evicted(&self, total: u64) {
        let c = self.evicted.get();
        if total > c {
            self.evicted.inc_by(total - c);
        }
    }

    pub fn url(url: &str) -> UrlLabels {
        UrlLabels { url: url.to_string() }
    }

    /// A webhook URL's series, created at 0.
    pub fn register_webhook(&self, l: &UrlLabels) {
        let _ = self.deliveries.get_or_create(l);
        let _ = self.failures.get_or_create(l);
        let _ = self.retries.get_or_create(l);
        let _ = self.dropped.get_or_create(l);
        let _ = self.queue.get_or_create(l);
    }

    pub fn delivered(&self, l: &UrlLabels) {
        self.deliveries.get_or_create(l).inc();
    }

    pub fn failed(&self, l: &UrlLabels) {
        self.failures.get_or_create(l).inc();
    }

    pub fn retried(&self, l: &UrlLabels) {
        self.retries.get_or_create(l).inc();
    }

    pub fn dropped(&self, l: &UrlLabels, n: u64) {
        self.dropped.get_or_create(l).inc_by(n);
    }

    pub fn queue(&self, l: &UrlLabels, n: usize) {
        self.queue.get_or_create(l).set(n as i64);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
