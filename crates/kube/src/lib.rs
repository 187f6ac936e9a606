//! Kubernetes as Porin's datasource (`porin agent --datastore kubernetes`).
//!
//! The seam is the agent's own store: one [`Syncer`] task per kind lists and watches the Kubernetes API and
//! writes what it sees into the agent's local store (the embedded redb store) under the kind's key prefix. The
//! engine, its reflector and the API then work exactly as with the embedded or etcd datastores; the API refuses
//! writes to these kinds (they belong to the Kubernetes API server: change them with kubectl there).
//!
//! Per kind, the protocol of Kubernetes informers:
//! 1. LIST → the objects and the list's `resourceVersion`. The listing is *diffed* against the store: changed
//!    objects are written, objects that vanished are deleted (a delete missed while away is never missed for
//!    good), all in one transaction.
//! 2. WATCH from that `resourceVersion` with bookmarks (`allowWatchBookmarks=true`): ADDED/MODIFIED/DELETED are
//!    applied one by one; BOOKMARK only moves the `resourceVersion` on; the stream ends after `timeoutSeconds`
//!    and is opened again from the last `resourceVersion` seen.
//! 3. `410 Gone` (an ERROR event or a refused watch: the version is too old) → back to 1.
//! 4. The API unreachable, or any other error: the store keeps the last good state (the agent keeps enforcing
//!    it), and the watch is retried with exponential backoff from the last `resourceVersion`.
//! 5. Fails closed on decode errors: an event or listing that does not decode is never applied — in particular
//!    it never deletes anything — and the kind is listed again. Objects that decode as Kubernetes objects but not
//!    as valid Porin resources are stored as they are: the engine then treats them as it treats such an object
//!    in etcd (one that does not decode locks its namespace, or every endpoint, down and `porin status` names it;
//!    one that decodes but does not build keeps the previous policy, health degraded).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
use porin_store::{Op, Store, TxnResult};
use serde_json::Value;
use tokio::sync::watch;

pub use kube::Client;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was asked.
        what: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The local store refused a write.
    #[error("writing {what} to the local store: {source}")]
    Store {
        /// What was written.
        what: String,
        /// The store's error.
        #[source]
        source: porin_store::StoreError,
    },
}

/// A client from a kubeconfig file (`--kubeconfig`), or, without one, from the environment (`KUBECONFIG`,
/// `~/.kube/config`, or the in-cluster service account).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, KubeError> {
    let err = |path: String| move |e: Box<dyn std::error::Error + Send + Sync>| KubeError::Kubeconfig { path: path.clone(), source: e };
    let config = match kubeconfig {
        Some(p) => {
            let path = p.display().to_string();
            let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| err(path.clone())(Box::new(e)))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| err(path.clone())(Box::new(e)))?
        }
        None => kube::Config::infer().await.map_err(|e| err("(inferred)".into())(Box::new(e)))?,
    };
    Client::try_from(config).map_err(|e| err("(client)".into())(Box::new(e)))
}

/// One kind the datasource follows, and where its objects go in the store.
#[derive(Debug, Clone)]
pub struct Resource {
    /// API group ("" for core).
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// The store prefix of the kind (`resources/porin.io/networkpolicies/`); an object's key is
    /// `<prefix><namespace or _>/<name>`.
    pub key_prefix: String,
}

impl Resource {
    fn api_resource(&self) -> ApiResource {
        let api_version = if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) };
        ApiResource { group: self.group.clone(), version: self.version.clone(), api_version, kind: self.kind.clone(), plural: self.plural.clone() }
    }
    fn api_version(&self) -> String {
        self.api_resource().api_version
    }
    /// The store key of an object, None when it has no name.
    fn key(&self, obj: &DynamicObject) -> Option<String> {
        let name = obj.metadata.name.as_deref().filter(|n| !n.is_empty())?;
        let ns = if self.namespaced { obj.metadata.namespace.as_deref().unwrap_or("default") } else { "_" };
        Some(format!("{}{ns}/{name}", self.key_prefix))
    }
    /// The object as Porin stores it: apiVersion and kind set (list items may lack them), without
    /// `metadata.resourceVersion` (the store's revision takes its place) and `managedFields`.
    fn stored(&self, obj: &DynamicObject) -> Vec<u8> {
        let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.insert("apiVersion".into(), Value::String(self.api_version()));
            m.insert("kind".into(), Value::String(self.kind.clone()));
        }
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        serde_json::to_vec(&v).expect("json")
    }
    fn what(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }
}

/// Reconnect and watch tuning.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// `timeoutSeconds` of each watch request (the server ends the stream then; it is opened again).
    pub watch_timeout: u32,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions { min_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(10), watch_timeout: 290 }
    }
}

/// What each kind's syncer last did, for status and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindStatus {
    /// The last resourceVersion seen (list, event or bookmark).
    pub resource_version: Option<String>,
    /// Listings applied (the first, and one per relist).
    pub lists: u64,
    /// Watch events applied (ADDED, MODIFIED, DELETED).
    pub events: u64,
    /// Bookmarks seen.
    pub bookmarks: u64,
    /// The last error, cleared by the next successful list or watch event.
    pub last_error: Option<String>,
}

/// The status of every kind, by `plural.group`.
pub type Status = BTreeMap<String, KindStatus>;

/// Follows `resources` and writes them into `store` until the task is dropped.
pub struct Syncer<S> {
    store: S,
    client: Client,
    opts: SyncOptions,
    status: watch::Sender<Status>,
}

impl<S: Store + Clone + 'static> Syncer<S> {
    pub fn new(store: S, client: Client, opts: SyncOptions) -> Self {
        Syncer { store, client, opts, status: watch::channel(Status::new()).0 }
    }

    /// The status channel (one entry per kind once it started).
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Run one loop per kind, concurrently, forever.
    pub async fn run(self, resources: Vec<Resource>) {
        let loops = resources.into_iter().map(|r| {
            let s = SyncKind { store: self.store.clone(), client: self.client.clone(), opts: self.opts.clone(), status: self.status.clone(), res: r };
            async move { s.run().await }
        });
        futures::future::join_all(loops).await;
    }
}

struct SyncKind<S> {
    store: S,
    client: Client,
    opts: SyncOptions,
    status: watch::Sender<Status>,
    res: Resource,
}

/// Why a watch stopped.
enum WatchEnd {
    /// Timed out or closed by the server: watch again from the last resourceVersion.
    Closed,
    /// 410 Gone, or something that did not decode: list again.
    Relist(String),
    /// Another failure: back off, then watch again from the last resourceVersion.
    Failed(String),
}

impl<S: Store> SyncKind<S> {
    fn update(&self, f: impl FnOnce(&mut KindStatus)) {
        self.status.send_modify(|s| f(s.entry(self.res.what()).or_default()));
    }

    async fn run(self) {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.res.api_resource());
        let mut rv: Option<String> = None;
        let mut backoff = self.opts.min_backoff;
        loop {
            if rv.is_none() {
                match self.relist(&api).await {
                    Ok(v) => {
                        backoff = self.opts.min_backoff;
                        rv = Some(v);
                    }
                    Err(e) => {
                        tracing::warn!(kind = %self.res.what(), error = %e, retry_in = ?backoff, "listing failed; keeping the last good state");
                        self.update(|s| s.last_error = Some(e.to_string()));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(self.opts.max_backoff);
                        continue;
                    }
                }
            }
            match self.watch(&api, &mut rv).await {
                WatchEnd::Closed => backoff = self.opts.min_backoff,
                WatchEnd::Relist(why) => {
                    tracing::info!(kind = %self.res.what(), reason = %why, "listing again");
                    rv = None;
                }
                WatchEnd::Failed(e) => {
                    tracing::warn!(kind = %self.res.what(), error = %e, retry_in = ?backoff, "watch failed; keeping the last good state");
                    self.update(|s| s.last_error = Some(e));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.opts.max_backoff);
                }
            }
        }
    }

    /// LIST and make the store's objects of this kind equal to the listing, in one transaction. Returns the
    /// list's resourceVersion.
    async fn relist(&self, api: &Api<DynamicObject>) -> Result<String, KubeError> {
        let what = self.res.what();
        let list = api.list(&ListParams::default()).await.map_err(|e| KubeError::Api { what: format!("listing {what}"), source: Box::new(e) })?;
        let rv = list.metadata.resource_version.clone().unwrap_or_default();
        let mut want = BTreeMap::new();
        for obj in &list.items {
            if let Some(key) = self.res.key(obj) {
                want.insert(key, self.res.stored(obj));
            }
        }
        let store_err = |source| KubeError::Store { what: format!("the listing of {what}"), source };
        let (have, _) = self.store.list(&self.res.key_prefix).await.map_err(store_err)?;
        let mut ops = Vec::new();
        for kv in &have {
            if !want.contains_key(&kv.key) {
                ops.push(Op::delete(kv.key.clone()));
            }
        }
        let have: BTreeMap<&str, &[u8]> = have.iter().map(|kv| (kv.key.as_str(), kv.value.as_slice())).collect();
        for (key, value) in &want {
            if have.get(key.as_str()) != Some(&value.as_slice()) {
                ops.push(Op::put(key.clone(), value.clone()));
            }
        }
        if !ops.is_empty() {
            match self.store.txn(vec![], ops).await.map_err(store_err)? {
                TxnResult::Committed { .. } => {}
                TxnResult::Failed { .. } => unreachable!("an unconditional transaction cannot fail its conditions"),
            }
        }
        self.update(|s| {
            s.lists += 1;
            s.resource_version = Some(rv.clone());
            s.last_error = None;
        });
        Ok(rv)
    }

    async fn put(&self, obj: &DynamicObject) -> Result<(), String> {
        let key = self.res.key(obj).ok_or("an object without a name")?;
        let value = self.res.stored(obj);
        let cur = self.store.get(&key).await.map_err(|e| e.to_string())?;
        if cur.is_some_and(|kv| kv.value == value) {
            return Ok(());
        }
        self.store.txn(vec![], vec![Op::put(key, value)]).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn delete(&self, obj: &DynamicObject) -> Result<(), String> {
        let key = self.res.key(obj).ok_or("an object without a name")?;
        if self.store.get(&key).await.map_err(|e| e.to_string())?.is_some() {
            self.store.txn(vec![], vec![Op::delete(key)]).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn watch(&self, api: &Api<DynamicObject>, rv: &mut Option<String>) -> WatchEnd {
        let from = rv.clone().unwrap_or_default();
        // Bookmarks are asked for by default (`allowWatchBookmarks=true`).
        let wp = WatchParams::default().timeout(self.opts.watch_timeout);
        let stream = match api.watch(&wp, &from).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 410 => return WatchEnd::Relist(format!("410 Gone: {}", s.message)),
            Err(e) => return WatchEnd::Failed(format!("watching {}: {e}", self.res.what())),
        };
        let mut stream = std::pin::pin!(stream.into_stream());
        loop {
            let ev = match stream.try_next().await {
                Ok(Some(ev)) => ev,
                Ok(None) => return WatchEnd::Closed,
                // A line that does not decode as a watch event (kube-rs reports it as a serde error, or as an API
                // error when it reads as a Status): nothing of it is applied; list again to know the truth.
                Err(kube::Error::SerdeError(e)) => return WatchEnd::Relist(format!("an event did not decode: {e}")),
                Err(kube::Error::Api(s)) => return WatchEnd::Relist(format!("the watch stream carried an error or an undecodable event: {s:?}")),
                Err(e) => return WatchEnd::Failed(format!("watching {}: {e}", self.res.what())),
            };
            let (obj, deleted) = match ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                WatchEvent::Deleted(o) => (o, true),
                WatchEvent::Bookmark(b) => {
                    *rv = Some(b.metadata.resource_version.clone());
                    self.update(|s| {
                        s.bookmarks += 1;
                        s.resource_version = rv.clone();
                    });
                    continue;
                }
                WatchEvent::Error(e) if e.code == 410 => return WatchEnd::Relist(format!("410 Gone: {}", e.message)),
                WatchEvent::Error(e) => return WatchEnd::Failed(format!("watch error {}: {}", e.code, e.message)),
            };
            let applied = if deleted { self.delete(&obj).await } else { self.put(&obj).await };
            if let Err(e) = applied {
                // Not applied, and the resourceVersion not moved on: the next watch replays it (after the backoff).
                return WatchEnd::Failed(format!("applying an event of {}: {e}", self.res.what()));
            }
            if let Some(v) = obj.metadata.resource_version.clone() {
                *rv = Some(v);
            }
            self.update(|s| {
                s.events += 1;
                s.resource_version = rv.clone();
                s.last_error = None;
            });
        }
    }
}
