//! [`Reflector`]: a local, always-readable copy of one prefix, kept in sync with the store.
//!
//! The protocol (the same one Kubernetes informers and Calico's syncers use):
//!
//! 1. `list(prefix)` → the items and the revision R they are consistent with.
//! 2. `watch(prefix, R)` → apply every change after R, remembering the last revision seen.
//! 3. If the watch breaks (store unavailable, closed), wait with exponential backoff and watch
//!    again after the last revision seen; the cache keeps serving the last known state meanwhile.
//! 4. If the store says that history is compacted, go back to 1 and *diff* the new listing
//!    against the cache: changed keys become puts, and keys that vanished become synthesised
//!    deletes — so a delete that happened while we were away is never missed.
//!
//! The reflector is pull-driven and owned by one task: call [`Reflector::next`] in a loop, and
//! read [`Reflector::items`] between calls. It spawns nothing and takes no locks. `next` is
//! cancellation-safe (it can be used in `tokio::select!`): nothing is lost if its future is
//! dropped. The cache always equals exactly what the caller has been told through `next`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::error::StoreError;
use crate::store::Store;
use crate::types::{KeyValue, WatchEvent, WatchStream};

/// Displays an error with its sources, `a: b: c`.
struct Chain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Reconnect tuning for a [`Reflector`].
#[derive(Clone, Debug)]
pub struct ReflectorOptions {
    /// First retry delay after a failure. Default 100 ms.
    pub min_backoff: Duration,
    /// Largest retry delay (the delay doubles per consecutive failure). Default 5 s.
    pub max_backoff: Duration,
}

impl Default for ReflectorOptions {
    fn default() -> Self {
        Self { min_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(5) }
    }
}

/// What [`Reflector::next`] reports. Puts and deletes are relative to the reflector's cache
/// (no-op changes are not reported), and have already been applied to it.
#[derive(Debug)]
pub enum SyncEvent {
    /// A key appeared or changed.
    Put {
        /// The new value.
        kv: KeyValue,
        /// The value the cache had before, if any.
        prev: Option<KeyValue>,
    },
    /// A key disappeared. After a relist, `revision` is the listing's revision (the delete
    /// itself was compacted away, only its effect is known).
    Delete {
        /// The key.
        key: String,
        /// The revision at which the key is known to be gone.
        revision: u64,
        /// The value the cache had.
        prev: KeyValue,
    },
    /// The cache now equals the store's content at `revision`. Sent after the initial listing
    /// and after every relist (following the puts and deletes that brought the cache there).
    InSync {
        /// The listing's revision.
        revision: u64,
    },
    /// A watch is established again after a [`Disconnected`](Self::Disconnected): changes after
    /// `revision` flow again (they follow as puts and deletes). Sent once per recovery, also when
    /// nothing changed while the store was away — the only sign that it is back.
    Reconnected {
        /// The revision the watch continues after.
        revision: u64,
    },
    /// The store could not be reached or the watch broke. The cache is kept (read-only, stale);
    /// the reflector retries after `retry_in`.
    Disconnected {
        /// What failed.
        error: StoreError,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
}

/// A cache change waiting to be handed out; turned into a [`SyncEvent`] against the cache at
/// the moment it is handed out.
enum Change {
    Upsert(KeyValue),
    Remove { key: String, revision: u64 },
    InSync(u64),
    Reconnected(u64),
    Disconnected(StoreError, Duration),
}

enum Phase {
    List,
    Watch,
    Watching(WatchStream),
}

/// A cache of one prefix, kept in sync with a [`Store`] (see the [module docs](self)).
pub struct Reflector<S> {
    store: S,
    prefix: String,
    opts: ReflectorOptions,
    cache: BTreeMap<String, KeyValue>,
    /// Revision of the cache as handed out.
    revision: u64,
    /// Revision up to which changes are queued: the next watch starts after it.
    queued: u64,
    synced: bool,
    /// A listing's changes are queued but its `InSync` has not been handed out yet: the cache is
    /// between two states, so `revision` must not move.
    relisting: bool,
    phase: Phase,
    pending: VecDeque<Change>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// A `Disconnected` was queued and no watch has been established since.
    disconnected: bool,
}

impl<S> std::fmt::Debug for Reflector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reflector")
            .field("prefix", &self.prefix)
            .field("revision", &self.revision)
            .field("items", &self.cache.len())
            .field("synced", &self.synced)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Reflector<S> {
    /// A reflector that starts with a full listing of `prefix`.
    pub fn new(store: S, prefix: impl Into<String>, opts: ReflectorOptions) -> Self {
        Self {
            store,
            prefix: prefix.into(),
            backoff: opts.min_backoff,
            opts,
            cache: BTreeMap::new(),
            revision: 0,
            queued: 0,
            synced: false,
            relisting: false,
            phase: Phase::List,
            pending: VecDeque::new(),
            retry_at: None,
            disconnected: false,
        }
    }

    /// A reflector that resumes from a known state (`items` as of `revision`, e.g. a previous
    /// reflector's [`items`](Self::items) and [`revision`](Self::revision)): it watches from
    /// `revision` and only relists if that history has been compacted.
    pub fn resume(
        store: S,
        prefix: impl Into<String>,
        items: impl IntoIterator<Item = KeyValue>,
        revision: u64,
        opts: ReflectorOptions,
    ) -> Self {
        let mut r = Self::new(store, prefix, opts);
        r.cache = items.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        r.revision = revision;
        r.queued = revision;
        r.synced = true;
        r.phase = Phase::Watch;
        r
    }

    /// The prefix being reflected.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The cached items, as of [`revision`](Self::revision).
    pub fn items(&self) -> &BTreeMap<String, KeyValue> {
        &self.cache
    }

    /// One cached item.
    pub fn get(&self, key: &str) -> Option<&KeyValue> {
        self.cache.get(key)
    }

    /// The store revision the cache reflects (0 before the first listing).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// True once a listing has been applied (the cache is complete, though possibly stale).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Waits for and returns the next change to the cache or status report. Never returns an
    /// error: failures are reported as [`SyncEvent::Disconnected`] and retried.
    pub async fn next(&mut self) -> SyncEvent {
        loop {
            if let Some(change) = self.pending.pop_front() {
                if let Some(ev) = self.apply(change) {
                    return ev;
                }
                continue;
            }
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            match &mut self.phase {
                Phase::List => match self.store.list(&self.prefix).await {
                    Ok((items, revision)) => self.queue_relist(items, revision),
                    Err(e) => self.failed(e),
                },
                Phase::Watch => match self.store.watch(&self.prefix, self.queued).await {
                    Ok(stream) => {
                        self.phase = Phase::Watching(stream);
                        if std::mem::take(&mut self.disconnected) {
                            self.pending.push_back(Change::Reconnected(self.queued));
                        }
                    }
                    Err(e) => self.failed(e),
                },
                Phase::Watching(stream) => match stream.next().await {
                    Some(Ok(ev)) => {
                        self.backoff = self.opts.min_backoff;
                        self.queue_event(ev);
                    }
                    Some(Err(e)) => self.failed(e),
                    None => self.failed(StoreError::Closed),
                },
            }
        }
    }

    /// Waits until the cache reflects at least `revision` (e.g. one's own write), handing every
    /// event in between to `on_event`.
    pub async fn wait_for_revision(&mut self, revision: u64, mut on_event: impl FnMut(&SyncEvent)) {
        while !(self.synced && self.revision >= revision) {
            let ev = self.next().await;
            on_event(&ev);
        }
    }

    fn failed(&mut self, error: StoreError) {
        if let StoreError::Compacted { requested, compact_revision } = error {
            tracing::info!(prefix = %self.prefix, requested, compact_revision, "history compacted; relisting");
            self.phase = Phase::List;
            return;
        }
        let retry_in = self.backoff;
        self.backoff = (self.backoff * 2).min(self.opts.max_backoff);
        tracing::warn!(prefix = %self.prefix, error = %Chain(&error), retry_in_ms = retry_in.as_millis() as u64, "datastore watch interrupted");
        self.retry_at = Some(Instant::now() + retry_in);
        if matches!(self.phase, Phase::Watching(_)) {
            self.phase = Phase::Watch;
        }
        self.pending.push_back(Change::Disconnected(error, retry_in));
        self.disconnected = true;
    }

    fn queue_relist(&mut self, items: Vec<KeyValue>, revision: u64) {
        // `pending` is empty here (it is drained before the store is asked anything), so the
        // cache is the state to diff against.
        let mut listed = BTreeMap::new();
        for kv in items {
            listed.insert(kv.key.clone(), kv);
        }
        for key in self.cache.keys() {
            if !listed.contains_key(key) {
                self.pending.push_back(Change::Remove { key: key.clone(), revision });
            }
        }
        for (_, kv) in listed {
            self.pending.push_back(Change::Upsert(kv));
        }
        self.pending.push_back(Change::InSync(revision));
        self.relisting = true;
        self.queued = revision;
        self.phase = Phase::Watch;
        self.backoff = self.opts.min_backoff;
    }

    fn queue_event(&mut self, ev: WatchEvent) {
        self.queued = self.queued.max(ev.revision());
        self.pending.push_back(match ev {
            WatchEvent::Put { kv, .. } => Change::Upsert(kv),
            WatchEvent::Delete { key, revision, .. } => Change::Remove { key, revision },
        });
    }

    /// Applies one queued change to the cache; `None` if it changes nothing.
    fn apply(&mut self, change: Change) -> Option<SyncEvent> {
        match change {
            Change::Upsert(kv) => {
                let rev = kv.mod_revision;
                if self.cache.get(&kv.key).is_some_and(|old| old.mod_revision == kv.mod_revision) {
                    return None;
                }
                let prev = self.cache.insert(kv.key.clone(), kv.clone());
                if !self.relisting {
                    self.revision = self.revision.max(rev);
                }
                Some(SyncEvent::Put { kv, prev })
            }
            Change::Remove { key, revision } => {
                let prev = self.cache.remove(&key)?;
                if !self.relisting {
                    self.revision = self.revision.max(revision);
                }
                Some(SyncEvent::Delete { key, revision, prev })
            }
            Change::InSync(revision) => {
                self.revision = revision;
                self.synced = true;
                self.relisting = false;
                Some(SyncEvent::InSync { revision })
            }
            Change::Reconnected(revision) => Some(SyncEvent::Reconnected { revision }),
            Change::Disconnected(error, retry_in) => Some(SyncEvent::Disconnected { error, retry_in }),
        }
    }
}
