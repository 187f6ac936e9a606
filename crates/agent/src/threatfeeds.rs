//! Threat feeds in the agent: every `GlobalThreatFeed` (mode `Enabled`, with `pull`) is fetched on its period
//! from `http(s)://` or `file://`, parsed ([`porin_model::threatfeed::parse_feed`]) and written as the
//! GlobalNetworkSet `threatfeed.<name>` with the feed's labels, through the one write path
//! ([`crate::api::write::commit`], audited as `system:threatfeed`). `porin threatfeed push NAME -f FILE`
//! replaces the set the same way (audited as the caller). A policy in a security tier then denies the set.
//!
//! * **When.** A feed is pulled when its period (default 24 h, at least 5 m) has passed since the last attempt,
//!   and at once whenever the GlobalThreatFeed object changes (its spec, labels or annotations: a new
//!   `metadata.resourceVersion`), so `porin annotate`/`porin label`/re-apply forces a resync. A failed pull is
//!   retried after `--threatfeed-retry-seconds` (default 60) rather than a whole period.
//! * **Never emptied silently.** A feed that cannot be fetched, does not parse, or holds no address (the parser
//!   refuses an empty feed) leaves the last good set as it is; its status says why.
//! * **Status** (`threatfeed-status/<name>` in the store, shown as `status` of the GlobalThreatFeed by the API):
//!   `lastSuccessfulSync`, `entries`, `rejectedEntries`, `source`, `syncedBy` and `errorConditions`
//!   (`{type, message, time}`, cleared by the next success).
//! * **One puller per cluster.** Agents sharing a store elect one puller with a lease key
//!   (`meta/threatfeed-leader` = `{node, expires}`, renewed every check, taken over by another agent once it has
//!   expired; writes are conditioned on the key's revision, so two agents never both win). With the embedded
//!   store every agent has its own store and is its own puller.
//! * **Garbage.** A `threatfeed.*` set whose feed was deleted is deleted (with the feed's status).

use std::sync::Arc;
use std::time::Duration;

use porin_model::threatfeed::{FeedError, GlobalThreatFeedSpec, MIN_PERIOD_SECS, parse_feed, parse_period};
use porin_model::{Kind, Object, ObjectMeta, Resource};
use porin_store::{Condition, Op, Store, TxnResult};
use serde::{Deserialize, Serialize};

use crate::api::write::{Change, Intent, commit};
use crate::api::{ApiError, ApiState};
use crate::auth::{Identity, Role};
use crate::registry::keys;

/// Status records: `threatfeed-status/<feed>`.
pub const STATUS_PREFIX: &str = "threatfeed-status/";
/// The puller lease.
pub const LEADER_KEY: &str = "meta/threatfeed-leader";
/// Name prefix of the synced sets.
pub const SET_PREFIX: &str = "threatfeed.";
/// Annotation on a synced set naming its feed.
pub const FEED_ANNOTATION: &str = "porin.io/threatfeed";
/// Default pull period.
pub const DEFAULT_PERIOD_SECS: u64 = 24 * 3600;
/// Largest feed body read (bytes).
pub const MAX_FEED_BYTES: usize = 64 << 20;
/// Error conditions kept in a status.
const MAX_CONDITIONS: usize = 5;

/// How the syncer runs (agent flags).
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// How often feeds are checked for being due (and the lease renewed).
    pub check_every: Duration,
    /// How soon a failed pull is retried.
    pub retry_after: Duration,
    /// Deadline of one fetch.
    pub fetch_timeout: Duration,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions { check_every: Duration::from_secs(10), retry_after: Duration::from_secs(60), fetch_timeout: Duration::from_secs(60) }
    }
}

/// One error condition of a feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCondition {
    /// `PullFailed`, `ParseFailed` or `SyncFailed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub time: String,
}

/// A feed's sync status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_sync: Option<String>,
    /// Unix seconds of the last attempt (pull or push).
    #[serde(default)]
    pub last_attempt: i64,
    /// Whether the last attempt succeeded.
    #[serde(default)]
    pub last_attempt_ok: bool,
    /// Addresses and networks in the set.
    #[serde(default)]
    pub entries: usize,
    /// Lines of the last good feed that were not addresses.
    #[serde(default)]
    pub rejected_entries: usize,
    /// `pull <url>` or `push by <user>` (the last good sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The agent that did the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_by: Option<String>,
    /// The feed object's revision at the last attempt (a newer one syncs at once).
    #[serde(default)]
    pub feed_revision: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_conditions: Vec<ErrorCondition>,
}

/// Why one sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Pull(String),
    #[error("{0}")]
    Parse(#[from] FeedError),
    #[error("writing GlobalNetworkSet {set}: {message}")]
    Write { set: String, message: String },
}

impl SyncError {
    fn kind(&self) -> &'static str {
        match self {
            SyncError::Pull(_) => "PullFailed",
            SyncError::Parse(_) => "ParseFailed",
            SyncError::Write { .. } => "SyncFailed",
        }
    }
}

fn status_key(feed: &str) -> String {
    format!("{STATUS_PREFIX}{feed}")
}

/// The identity syncs are committed and audited as.
pub fn system_identity() -> Identity {
    Identity { user: "system:threatfeed".into(), role: Role::Admin, token_id: None }
}

/// The stored status of `feed`.
pub async fn read_status(st: &ApiState, feed: &str) -> Option<FeedStatus> {
    let kv = st.store.get(&status_key(feed)).await.ok()??;
    serde_json::from_slice(&kv.value).ok()
}

async fn write_status(st: &ApiState, feed: &str, s: &FeedStatus) {
    let op = Op::put(status_key(feed), serde_json::to_vec(s).expect("status serializes"));
    if let Err(e) = st.store.txn(vec![], vec![op]).await {
        tracing::warn!(feed, error = %e, "recording a threat feed's status failed");
    }
}

/// The GlobalThreatFeeds of the engine's cache, with their mod revisions.
fn feeds(st: &ApiState) -> Vec<(Object<GlobalThreatFeedSpec>, u64)> {
    let snap = st.snapshot.borrow().clone();
    let prefix = keys::kind_prefix(Kind::GlobalThreatFeed);
    snap.items
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, kv)| match crate::registry::decode(Kind::GlobalThreatFeed, kv) {
            Ok(Resource::GlobalThreatFeed(o)) => Some((o, kv.mod_revision)),
            _ => None,
        })
        .collect()
}

/// The stored GlobalThreatFeed `name`.
pub fn feed(st: &ApiState, name: &str) -> Option<Object<GlobalThreatFeedSpec>> {
    feeds(st).into_iter().map(|(o, _)| o).find(|o| o.metadata.name == name)
}

/// Replaces the set of `feed` with `nets` through the write path.
pub async fn write_set(
    st: &ApiState,
    id: &Identity,
    verb: &str,
    feed: &Object<GlobalThreatFeedSpec>,
    nets: &[ipnet::IpNet],
) -> Result<(), ApiError> {
    let name = format!("{SET_PREFIX}{}", feed.metadata.name);
    let labels = feed.spec.global_network_set.as_ref().map(|g| g.labels.clone()).unwrap_or_default();
    let set = Object {
        api_version: "porin.io/v1".into(),
        kind: "GlobalNetworkSet".into(),
        metadata: ObjectMeta {
            name: name.clone(),
            labels,
            annotations: [(FEED_ANNOTATION.to_string(), feed.metadata.name.clone())].into(),
            ..Default::default()
        },
        spec: porin_model::porin::NetworkSetSpec { nets: nets.iter().map(|n| n.to_string()).collect(), allowed_egress_domains: None },
        status: None,
    };
    let change = Change {
        kind: Kind::GlobalNetworkSet,
        namespace: None,
        name,
        resource: Some(Resource::GlobalNetworkSet(set)),
        expected: None,
        intent: Intent::Upsert,
    };
    commit(st, id, verb, vec![change]).await.map(|_| ())
}

async fn fetch(spec: &GlobalThreatFeedSpec, opts: &FeedOptions) -> Result<String, SyncError> {
    let pull = spec.pull.as_ref().ok_or_else(|| SyncError::Pull("the feed has no pull".into()))?;
    let url = pull.http.url.as_str();
    let bytes = if let Some(path) = url.strip_prefix("file://") {
        let meta = tokio::fs::metadata(path).await.map_err(|e| SyncError::Pull(format!("{url}: {e}")))?;
        if meta.len() > MAX_FEED_BYTES as u64 {
            return Err(SyncError::Pull(format!("{url}: {} bytes, more than {MAX_FEED_BYTES}", meta.len())));
        }
        tokio::fs::read(path).await.map_err(|e| SyncError::Pull(format!("{url}: {e}")))?
    } else {
        let headers: Vec<(String, String)> = pull.http.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
        crate::httpc::request(hyper::Method::GET, url, &headers, None, opts.fetch_timeout, MAX_FEED_BYTES)
            .await
            .map_err(|e| SyncError::Pull(e.to_string()))?
    };
    String::from_utf8(bytes).map_err(|_| SyncError::Pull(format!("{url}: the body is not UTF-8 text")))
}

/// Pulls one feed now and records the outcome in its status. Returns the new status.
///
/// Store writes are ordered so that the last one of a successful sync is the set itself: the status goes first
/// (then the set's commit), so the engine's cache revision reaches the store's and `porin lab wait` sees the new
/// set enforced. A failure that repeats the previous one word for word does not rewrite the status.
pub async fn sync_one(st: &ApiState, feed: &Object<GlobalThreatFeedSpec>, revision: u64, opts: &FeedOptions) -> FeedStatus {
    let name = &feed.metadata.name;
    let old = read_status(st, name).await.unwrap_or_default();
    let mut status = old.clone();
    let url = feed.spec.pull.as_ref().map(|p| p.http.url.clone()).unwrap_or_default();
    let parsed = async {
        let text = fetch(&feed.spec, opts).await?;
        Ok::<_, SyncError>(parse_feed(&text, feed.spec.pull.as_ref().and_then(|p| p.http.format.as_ref()))?)
    }
    .await;
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            let repeat = !old.last_attempt_ok && old.error_conditions.last().is_some_and(|c| c.message.starts_with(&e.to_string()));
            record(&mut status, st, revision, Err(e), format!("pull {url}"));
            if !repeat || old.feed_revision != revision {
                write_status(st, name, &status).await;
            }
            return status;
        }
    };
    record(&mut status, st, revision, Ok((parsed.nets.len(), parsed.rejected_count)), format!("pull {url}"));
    write_status(st, name, &status).await;
    if let Err(e) = write_set(st, &system_identity(), "threatfeed-sync", feed, &parsed.nets).await {
        status = old;
        record(&mut status, st, revision, Err(SyncError::Write { set: format!("{SET_PREFIX}{name}"), message: e.message }), format!("pull {url}"));
        write_status(st, name, &status).await;
    }
    status
}

fn record(status: &mut FeedStatus, st: &ApiState, revision: u64, result: Result<(usize, usize), SyncError>, source: String) {
    let now = crate::timefmt::now_secs();
    status.last_attempt = now;
    status.feed_revision = revision;
    status.synced_by = Some(st.node.clone());
    match result {
        Ok((entries, rejected)) => {
            status.last_attempt_ok = true;
            status.last_successful_sync = Some(crate::timefmt::rfc3339(now));
            status.entries = entries;
            status.rejected_entries = rejected;
            status.source = Some(source);
            status.error_conditions.clear();
        }
        Err(e) => {
            tracing::warn!(source, error = %e, "threat feed sync failed; the last good set stays");
            status.last_attempt_ok = false;
            status.error_conditions.push(ErrorCondition {
                kind: e.kind().into(),
                message: format!("{e}; the last good set is kept"),
                time: crate::timefmt::rfc3339(now),
            });
            let n = status.error_conditions.len();
            status.error_conditions.drain(..n.saturating_sub(MAX_CONDITIONS));
        }
    }
}

/// `porin threatfeed push`: replaces the set of `name` with the addresses in `text` (newline-delimited, `#`
/// comments), audited as the caller. The feed must exist; an empty or unparseable body changes nothing.
pub async fn push(st: &ApiState, id: &Identity, name: &str, text: &str) -> Result<FeedStatus, ApiError> {
    if !id.is_admin() {
        return Err(ApiError::forbidden(format!("{} may not push threat feeds (admin only)", id.user)));
    }
    let (obj, revision) = feeds(st)
        .into_iter()
        .find(|(o, _)| o.metadata.name == name)
        .ok_or_else(|| ApiError::not_found(format!("GlobalThreatFeed {name:?} not found")))?;
    let parsed = parse_feed(text, None).map_err(|e| {
        ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("threat feed {name:?}: {e}; nothing was changed"))
    })?;
    let old = read_status(st, name).await.unwrap_or_default();
    let mut status = old.clone();
    record(&mut status, st, revision, Ok((parsed.nets.len(), parsed.rejected_count)), format!("push by {}", id.user));
    write_status(st, name, &status).await;
    if let Err(e) = write_set(st, id, "threatfeed-push", &obj, &parsed.nets).await {
        write_status(st, name, &old).await;
        return Err(e);
    }
    Ok(status)
}

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    node: String,
    expires: i64,
}

/// Takes or renews the puller lease; true when this agent is the puller until the next check. With the
/// embedded store the agent is alone with its store: no lease. A held lease is renewed once half of it has run.
async fn lead(st: &ApiState, lease_secs: i64) -> bool {
    if st.store_kind != "etcd" {
        return true;
    }
    let now = crate::timefmt::now_secs();
    let cur = match st.store.get(LEADER_KEY).await {
        Ok(v) => v,
        Err(_) => return false,
    };
    let rev = cur.as_ref().map_or(0, |kv| kv.mod_revision);
    if let Some(kv) = &cur
        && let Ok(l) = serde_json::from_slice::<Lease>(&kv.value)
        && l.expires > now
    {
        if l.node != st.node {
            return false;
        }
        if l.expires - now > lease_secs / 2 {
            return true;
        }
    }
    let lease = Lease { node: st.node.clone(), expires: now + lease_secs };
    let op = Op::put(LEADER_KEY, serde_json::to_vec(&lease).expect("lease serializes"));
    matches!(st.store.txn(vec![Condition::mod_revision(LEADER_KEY, rev)], vec![op]).await, Ok(TxnResult::Committed { .. }))
}

fn period_of(spec: &GlobalThreatFeedSpec) -> u64 {
    spec.pull.as_ref().and_then(|p| p.period.as_deref()).and_then(parse_period).unwrap_or(DEFAULT_PERIOD_SECS).max(MIN_PERIOD_SECS)
}

/// Is the feed due at `now` given its status?
fn due(spec: &GlobalThreatFeedSpec, revision: u64, status: Option<&FeedStatus>, now: i64, opts: &FeedOptions) -> bool {
    let Some(s) = status else { return true };
    if s.feed_revision != revision {
        return true;
    }
    let wait = if s.last_attempt_ok { period_of(spec) } else { opts.retry_after.as_secs().min(period_of(spec)) };
    now >= s.last_attempt + wait as i64
}

/// What the syncer remembers between passes: per feed, the last attempt (time, success, feed revision). Seeded
/// from the stored status, so a restarted agent does not pull everything again.
pub type Attempts = std::collections::HashMap<String, FeedStatus>;

/// One pass: lease, due pulls, garbage. Returns the feeds pulled. Writes nothing when there is no feed and no
/// orphaned set.
pub async fn tick(st: &ApiState, opts: &FeedOptions, attempts: &mut Attempts) -> Vec<String> {
    let mut pulled = Vec::new();
    if !st.connected() {
        return pulled;
    }
    let all = feeds(st);
    let orphans = orphans(st, &all);
    if all.is_empty() && orphans.is_empty() {
        return pulled;
    }
    let lease = (opts.check_every.as_secs() as i64 * 6).max(60);
    if !lead(st, lease).await {
        return pulled;
    }
    let now = crate::timefmt::now_secs();
    for (obj, revision) in &all {
        let enabled = obj.spec.mode.as_deref().unwrap_or("Enabled") == "Enabled";
        if !enabled || obj.spec.pull.is_none() {
            continue;
        }
        let name = &obj.metadata.name;
        if !attempts.contains_key(name)
            && let Some(s) = read_status(st, name).await
        {
            attempts.insert(name.clone(), s);
        }
        if due(&obj.spec, *revision, attempts.get(name), now, opts) {
            let mut s = sync_one(st, obj, *revision, opts).await;
            s.last_attempt = now;
            attempts.insert(name.clone(), s);
            pulled.push(name.clone());
        }
    }
    attempts.retain(|n, _| all.iter().any(|(o, _)| &o.metadata.name == n));
    delete_orphans(st, orphans).await;
    pulled
}

/// `threatfeed.*` sets (by their annotation) whose feed no longer exists: (set, feed).
fn orphans(st: &ApiState, all: &[(Object<GlobalThreatFeedSpec>, u64)]) -> Vec<(String, String)> {
    let names: std::collections::BTreeSet<&str> = all.iter().map(|(o, _)| o.metadata.name.as_str()).collect();
    let snap = st.snapshot.borrow().clone();
    let prefix = keys::kind_prefix(Kind::GlobalNetworkSet);
    let mut out = Vec::new();
    for (_, kv) in snap.items.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
        if let Ok(r) = crate::registry::decode(Kind::GlobalNetworkSet, kv)
            && let Some(feed) = r.metadata().annotations.get(FEED_ANNOTATION)
            && r.name().starts_with(SET_PREFIX)
            && !names.contains(feed.as_str())
        {
            out.push((r.name().to_string(), feed.clone()));
        }
    }
    out
}

/// Deletes the sets (and statuses) of feeds that no longer exist.
async fn delete_orphans(st: &ApiState, orphans: Vec<(String, String)>) {
    for (set, feed) in orphans {
        let _ = st.store.txn(vec![], vec![Op::delete(status_key(&feed))]).await;
        let c = Change { kind: Kind::GlobalNetworkSet, namespace: None, name: set.clone(), resource: None, expected: None, intent: Intent::Delete };
        match commit(st, &system_identity(), "threatfeed-sync", vec![c]).await {
            Ok(_) => tracing::info!(set, feed, "deleted the set of a deleted threat feed"),
            Err(e) => tracing::warn!(set, error = %e.message, "deleting the set of a deleted threat feed failed"),
        }
    }
}

/// The syncer task: [`tick`] every `opts.check_every`.
pub async fn syncer(st: Arc<ApiState>, opts: FeedOptions) {
    let mut t = tokio::time::interval(opts.check_every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempts = Attempts::new();
    loop {
        t.tick().await;
        tick(&st, &opts, &mut attempts).await;
    }
}

/// The status of every feed, for the API (`status` of GlobalThreatFeed reads).
pub async fn status_json(st: &ApiState, name: &str) -> Option<serde_json::Value> {
    read_status(st, name).await.map(|s| serde_json::to_value(s).expect("status serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use porin_model::threatfeed::{Pull, PullHttp};

    fn spec(period: Option<&str>) -> GlobalThreatFeedSpec {
        GlobalThreatFeedSpec {
            pull: Some(Pull { period: period.map(str::to_string), http: PullHttp { url: "file:///x".into(), ..Default::default() } }),
            ..Default::default()
        }
    }

    #[test]
    fn due_follows_period_retry_and_revision() {
        let o = FeedOptions::default();
        let ok = FeedStatus { last_attempt: 1000, last_attempt_ok: true, feed_revision: 7, ..Default::default() };
        assert!(due(&spec(None), 7, None, 1000, &o), "never synced");
        assert!(!due(&spec(None), 7, Some(&ok), 1000 + 3600, &o));
        assert!(due(&spec(None), 7, Some(&ok), 1000 + 24 * 3600, &o));
        assert!(due(&spec(None), 8, Some(&ok), 1001, &o), "a changed feed object syncs at once");
        assert!(!due(&spec(Some("1m")), 7, Some(&ok), 1000 + 299, &o), "periods under 5m are raised to 5m");
        let failed = FeedStatus { last_attempt_ok: false, ..ok.clone() };
        assert!(!due(&spec(None), 7, Some(&failed), 1059, &o));
        assert!(due(&spec(None), 7, Some(&failed), 1060, &o), "a failure is retried after retry_after");
    }
}
