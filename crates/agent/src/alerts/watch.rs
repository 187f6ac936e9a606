//! The flow watcher: follows the flow service's live feed (every stored batch, about one flush interval after
//! the packets) and raises a `threat_feed` alert for each flow with an end whose address is in a threat feed's
//! set (`threatfeed.<feed>` GlobalNetworkSets, matched by address here, so a broader network set the enricher
//! may name instead does not hide it), allowed or denied.
//!
//! The alert names the feed, both endpoints with their workload context (as the flow record enriched them),
//! the protocol, the verdict and the enforced trace. Repeats of one (workload, feed, feed address, verdict)
//! within the dedup window raise nothing; the next alert of that key after the window carries
//! `detail.suppressed_repeats` (how many flows the window swallowed) and `detail.first_suppressed`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use porin_flow::{EndpointKind, FlowEndpoint, FlowRecord};
use porin_model::{Kind, Resource};
use tokio::sync::broadcast::error::RecvError;

use super::{Alert, AlertKind, AlertLog};
use crate::api::ApiState;
use crate::registry::keys;
use crate::threatfeeds::{FEED_ANNOTATION, SET_PREFIX};

/// The addresses of every threat feed's set.
#[derive(Debug, Default)]
pub struct FeedIndex {
    /// Host addresses (/32, /128) → feed.
    hosts: HashMap<IpAddr, Arc<str>>,
    /// Wider networks → feed (few in practice; checked in order).
    nets: Vec<(IpNet, Arc<str>)>,
    /// Feed → its set's labels.
    labels: HashMap<Arc<str>, std::collections::BTreeMap<String, String>>,
}

impl FeedIndex {
    /// From the current objects: every GlobalNetworkSet named `threatfeed.<feed>`.
    pub fn build(objects: &[Resource]) -> FeedIndex {
        let mut ix = FeedIndex::default();
        for r in objects {
            let Resource::GlobalNetworkSet(o) = r else { continue };
            let Some(feed) = o.metadata.name.strip_prefix(SET_PREFIX) else { continue };
            let feed: Arc<str> = o.metadata.annotations.get(FEED_ANNOTATION).map(String::as_str).unwrap_or(feed).into();
            ix.labels.insert(feed.clone(), o.metadata.labels.clone());
            for n in &o.spec.nets {
                let Some(net) = n.parse::<IpNet>().ok().or_else(|| n.parse::<IpAddr>().ok().map(IpNet::from)) else { continue };
                if net.prefix_len() == net.max_prefix_len() {
                    ix.hosts.insert(net.addr(), feed.clone());
                } else {
                    ix.nets.push((net, feed.clone()));
                }
            }
        }
        ix
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }

    /// The feed an address belongs to.
    pub fn feed_of(&self, ip: IpAddr) -> Option<&Arc<str>> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.hosts.get(&ip).or_else(|| self.nets.iter().find(|(n, _)| n.contains(&ip)).map(|(_, f)| f))
    }
}

/// Dedup state: key → (window start, repeats swallowed since, first swallowed time).
#[derive(Debug, Default)]
pub struct Dedup {
    window: Duration,
    seen: HashMap<(String, Arc<str>, IpAddr, &'static str), (Instant, u64)>,
}

impl Dedup {
    pub fn new(window: Duration) -> Self {
        Dedup { window, seen: HashMap::new() }
    }

    /// `Some(swallowed)` when an alert is due for this key now (swallowed: repeats since the last one), `None`
    /// when it is a repeat within the window.
    fn admit(&mut self, key: (String, Arc<str>, IpAddr, &'static str), now: Instant) -> Option<u64> {
        if self.seen.len() > 100_000 {
            let w = self.window;
            self.seen.retain(|_, (t, n)| now.duration_since(*t) < w || *n > 0);
        }
        match self.seen.get_mut(&key) {
            Some((start, n)) if now.duration_since(*start) < self.window => {
                *n += 1;
                None
            }
            Some((start, n)) => {
                let swallowed = *n;
                *start = now;
                *n = 0;
                Some(swallowed)
            }
            None => {
                self.seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

fn who(ep: &FlowEndpoint) -> String {
    match (&ep.namespace, &ep.pod, &ep.workload) {
        (Some(ns), Some(p), _) => format!("{ns}/{p}"),
        (Some(ns), None, Some(w)) => format!("{ns}/{w}"),
        _ => ep.ip.map(|i| i.to_string()).unwrap_or_else(|| ep.display_name()),
    }
}

/// The alerts a batch of flow records raises.
pub fn alerts_for(ix: &FeedIndex, dedup: &mut Dedup, recs: &[FlowRecord], now: Instant) -> Vec<Alert> {
    let mut out = Vec::new();
    if ix.is_empty() {
        return out;
    }
    for r in recs {
        // The end in the feed; prefer the destination (a workload calling out to a C2 address).
        let hit = [(&r.dst, &r.src, "to"), (&r.src, &r.dst, "from")]
            .into_iter()
            .find_map(|(feed_end, other, dir)| feed_end.ip.and_then(|ip| ix.feed_of(ip)).map(|f| (f.clone(), feed_end, other, dir)));
        let Some((feed, feed_end, other, dir)) = hit else { continue };
        // A flow between two feed addresses (not a workload) is not ours to report.
        if other.kind != EndpointKind::Pod && other.namespace.is_none() {
            continue;
        }
        let ip = feed_end.ip.expect("matched by address");
        let verdict = r.verdict.as_str();
        let Some(swallowed) = dedup.admit((who(other), feed.clone(), ip, verdict), now) else { continue };
        let port = match (dir, feed_end.port.or(r.dst.port)) {
            ("to", Some(p)) => format!(":{p}"),
            _ => String::new(),
        };
        let description = format!(
            "{} {} {} {ip}{port}/{}, an address of threat feed {feed}: {verdict}",
            who(other),
            if dir == "to" { "connected" } else { "was contacted" },
            dir,
            r.protocol
        );
        let mut a = Alert::new(AlertKind::ThreatFeed, feed.to_string(), description);
        a.src = Some(r.src.clone());
        a.dst = Some(r.dst.clone());
        a.protocol = Some(r.protocol.clone());
        a.verdict = Some(verdict.to_string());
        a.trace = r.enforced_trace.clone();
        a.addresses = vec![ip.to_string()];
        a.detail.insert("feed".into(), feed.to_string());
        a.detail.insert("set".into(), format!("{SET_PREFIX}{feed}"));
        a.detail.insert("direction".into(), if dir == "to" { "egress".into() } else { "ingress".into() });
        a.detail.insert("workload".into(), who(other));
        a.detail.insert("reporter".into(), r.node.clone());
        if let Some(labels) = ix.labels.get(&feed) {
            for (k, v) in labels {
                a.detail.insert(format!("label:{k}"), v.clone());
            }
        }
        if swallowed > 0 {
            a.detail.insert("suppressed_repeats".into(), swallowed.to_string());
        }
        out.push(a);
    }
    out
}

fn objects(st: &ApiState) -> Vec<Resource> {
    let snap = st.snapshot.borrow().clone();
    let prefix = keys::kind_prefix(Kind::GlobalNetworkSet);
    snap.items
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, kv)| crate::registry::decode(Kind::GlobalNetworkSet, kv).ok())
        .collect()
}

/// The watcher task: follows the live flow feed until the flow service goes away.
pub async fn run(st: Arc<ApiState>, log: Arc<AlertLog>, window: Duration) {
    let Some(flows) = st.flows.clone() else { return };
    let (_, mut rx) = match flows.follow(&porin_flow::Query::default()) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "threat-feed alerts: following the flow feed failed; no alerts will be raised");
            return;
        }
    };
    let mut snap_rx = st.snapshot.clone();
    let mut ix = FeedIndex::build(&objects(&st));
    let mut dedup = Dedup::new(window);
    loop {
        tokio::select! {
            changed = snap_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                ix = FeedIndex::build(&objects(&st));
            }
            batch = rx.recv() => match batch {
                Ok(recs) => {
                    for a in alerts_for(&ix, &mut dedup, &recs, Instant::now()) {
                        log.raise(a);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    flows.follow_lagged(n);
                    tracing::warn!(batches = n, "threat-feed alerts: the flow watcher fell behind; some flows were not checked");
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use porin_flow::Verdict;
    use porin_model::{Object, ObjectMeta};

    fn set(name: &str, nets: &[&str]) -> Resource {
        Resource::GlobalNetworkSet(Object {
            api_version: "porin.io/v1".into(),
            kind: "GlobalNetworkSet".into(),
            metadata: ObjectMeta { name: name.into(), labels: [("threatfeed".to_string(), "feodo".to_string())].into(), ..Default::default() },
            spec: porin_model::porin::NetworkSetSpec { nets: nets.iter().map(|s| s.to_string()).collect(), allowed_egress_domains: None },
            status: None,
        })
    }

    fn flow(dst: &str, verdict: Verdict) -> FlowRecord {
        let json = r#"{"start_time":"2026-12-03T15:53:04.906704085Z","end_time":"2026-12-03T15:53:04.908421977Z","node":"n0",
            "verdict":"allowed","direction":"egress","reporter":"src","ip_family":"v4","protocol":"tcp",
            "src":{"kind":"pod","namespace":"shop","pod":"frontend","ip":"10.0.0.1","port":50714},
            "dst":{"kind":"world","ip":"192.0.2.1","port":443},"enforced_trace":[],"packets_src_to_dst":1,"bytes_src_to_dst":74,
            "packets_dst_to_src":0,"bytes_dst_to_src":0,"tcp_flags":["SYN"],"flows_started":1,"flows_completed":0,"flows_open":0,
            "open":false,"aggregation":"five_tuple"}"#;
        let mut r: FlowRecord = serde_json::from_str(json).unwrap();
        r.verdict = verdict;
        r.dst.ip = Some(dst.parse().unwrap());
        r.enforced_trace = vec!["security|block-feodo|egress[0]|deny".into()];
        r
    }

    #[test]
    fn feed_addresses_raise_once_per_window_with_context() {
        let ix = FeedIndex::build(&[set("threatfeed.feodo", &["203.0.113.10/32", "192.0.2.0/28"]), set("office", &["198.51.100.0/24"])]);
        let mut d = Dedup::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let recs = vec![flow("203.0.113.10", Verdict::Denied), flow("203.0.113.10", Verdict::Denied), flow("198.51.100.1", Verdict::Allowed), flow("192.0.2.3", Verdict::Allowed)];
        let a = alerts_for(&ix, &mut d, &recs, t0);
        assert_eq!(a.len(), 2, "{a:#?}");
        assert_eq!(a[0].name, "feodo");
        assert_eq!(a[0].verdict.as_deref(), Some("denied"));
        assert_eq!(a[0].src.as_ref().unwrap().pod.as_deref(), Some("frontend"));
        assert!(a[0].description.starts_with("shop/frontend connected to 203.0.113.10:443/tcp"), "{}", a[0].description);
        assert_eq!(a[0].trace, vec!["security|block-feodo|egress[0]|deny"]);
        assert_eq!(a[0].detail["label:threatfeed"], "feodo");
        assert_eq!(a[1].addresses, vec!["192.0.2.3"], "a network of the feed matches too");
        // Within the window: nothing; after it: one alert counting what was swallowed.
        assert!(alerts_for(&ix, &mut d, &recs[..1], t0 + Duration::from_secs(30)).is_empty());
        let later = alerts_for(&ix, &mut d, &recs[..1], t0 + Duration::from_secs(61));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].detail["suppressed_repeats"], "2");
        // Another verdict is another key.
        assert_eq!(alerts_for(&ix, &mut d, &[flow("203.0.113.10", Verdict::Allowed)], t0 + Duration::from_secs(62)).len(), 1);
        assert!(alerts_for(&FeedIndex::default(), &mut d, &recs, t0).is_empty());
    }
}
