//! The embedded backend: one redb file in a data directory.
//!
//! Tables (layouts in [`codec`]):
//!
//! * `kv`: key → record (create revision, mod revision, value).
//! * `changelog`: (revision, index) → change (put or delete, with the previous value). Bounded: the
//!   newest [`EmbeddedOptions::changelog_retention`] revisions are kept, older ones are compacted
//!   away in the same transaction that adds new ones.
//! * `meta`: `revision` (the latest change) and `compact_revision` (the oldest revision whose
//!   changes are still in the changelog), plus a format number.
//!
//! A change, its changelog entries and the new revision are committed in one redb write
//! transaction with [`redb::Durability::Immediate`], i.e. fsync-ed before it is acknowledged, so
//! an acknowledged write survives `kill -9` and power loss, and the file is never left half
//! written. All writes run on one [writer](writer) thread (group commit); reads are MVCC
//! snapshots on tokio's blocking pool.
//!
//! A watch subscribes to the writer's broadcast first, then reads the changelog after the
//! requested revision, then follows the broadcast, skipping what the changelog already gave it.
//! A watcher too slow for the broadcast buffer catches up from the changelog; if the changelog no
//! longer reaches back far enough it gets [`StoreError::Compacted`] — never a silent gap.

mod codec;
mod writer;

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use futures::stream;
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;

use self::codec::{CodecError, decode_change, decode_record};
use self::writer::{Applied, Cmd, TxnRequest, meta_get};
use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::types::{
    Condition, Deleted, KeyValue, Op, TxnResult, WatchEvent, WatchStream, validate_key, validate_txn,
};

const KV: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<'_, (u64, u32), &[u8]> = TableDefinition::new("changelog");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACT: &str = "compact_revision";
const META_FORMAT: &str = "format";
const FORMAT: u64 = 1;

/// Name of the database file inside the data directory.
pub const DATA_FILE: &str = "porin-store.redb";

/// The events of one group commit, in revision order, as broadcast to live watchers.
type Batch = Arc<Vec<WatchEvent>>;

/// Tuning for [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many of the newest revisions the changelog keeps for watch-from-revision (min 1).
    /// A watcher resuming from further back gets [`StoreError::Compacted`] and must relist.
    pub changelog_retention: u64,
    /// How many commits the live broadcast buffers per watcher before a slow watcher has to
    /// catch up from the changelog.
    pub watch_buffer: usize,
    /// Largest transaction accepted (operations or conditions).
    pub max_txn_ops: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self { changelog_retention: 10_000, watch_buffer: 1024, max_txn_ops: 10_000 }
    }
}

/// The embedded, crash-safe backend. Cheap to clone; the database closes when the last clone
/// (and the last watch stream) is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    cmds: Option<mpsc::Sender<Cmd>>,
    events: broadcast::Sender<Batch>,
    writer: Option<JoinHandle<()>>,
}

/// State shared by the handle, the writer thread and watch streams.
struct Shared {
    db: Database,
    path: PathBuf,
    opts: EmbeddedOptions,
    /// Latest committed revision.
    revision: AtomicU64,
    /// Oldest revision still in the changelog.
    compact_revision: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the command channel stops the writer after its current commit; wait for it so
        // that a store reopened right after this drop finds the file unlocked.
        self.cmds.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.shared.path)
            .field("revision", &self.inner.shared.revision.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in data directory `dir`. Fails with
    /// [`StoreError::Locked`] if another process has it open, and with [`StoreError::Io`] naming
    /// the path if the directory cannot be created or written.
    pub fn open(dir: impl AsRef<Path>, opts: EmbeddedOptions) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let path = dir.join(DATA_FILE);
        let db = redb::Builder::new().create(&path).map_err(|e| map_redb(&path, e.into()))?;
        Self::start(db, path, opts)
    }

    /// A store that lives in memory only (for tests of code that needs a [`Store`]).
    pub fn in_memory(opts: EmbeddedOptions) -> Result<Self> {
        let path = PathBuf::from("<memory>");
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| map_redb(&path, e.into()))?;
        Self::start(db, path, opts)
    }

    fn start(db: Database, path: PathBuf, opts: EmbeddedOptions) -> Result<Self> {
        let e = |err: redb::Error| map_redb(&path, err);
        let (revision, compact_revision);
        {
            let wtx = db.begin_write().map_err(|x| e(x.into()))?;
            {
                wtx.open_table(KV).map_err(|x| e(x.into()))?;
                wtx.open_table(LOG).map_err(|x| e(x.into()))?;
                let mut meta = wtx.open_table(META).map_err(|x| e(x.into()))?;
                match meta_get(&meta, META_FORMAT).map_err(e)? {
                    None => {
                        meta.insert(META_FORMAT, FORMAT).map_err(|x| e(x.into()))?;
                    }
                    Some(FORMAT) => {}
                    Some(other) => {
                        return Err(StoreError::Corrupt {
                            path,
                            detail: format!("unsupported format {other} (this build reads {FORMAT})"),
                        });
                    }
                }
                revision = meta_get(&meta, META_REVISION).map_err(e)?.unwrap_or(0);
                compact_revision = meta_get(&meta, META_COMPACT).map_err(e)?.unwrap_or(1);
            }
            wtx.commit().map_err(|x| e(x.into()))?;
        }
        let shared = Arc::new(Shared {
            db,
            path,
            opts: opts.clone(),
            revision: AtomicU64::new(revision),
            compact_revision: AtomicU64::new(compact_revision),
        });
        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        let (tx, rx) = mpsc::channel();
        let writer = {
            let (shared, events) = (shared.clone(), events.clone());
            std::thread::Builder::new()
                .name("porin-store-writer".into())
                .spawn(move || writer::run(shared, rx, events))
        }
        .map_err(|err| io_error(&shared.path, err))?;
        Ok(Self {
            inner: Arc::new(Inner { shared, cmds: Some(tx), events, writer: Some(writer) }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    /// The oldest revision whose changes the changelog still holds; `watch(prefix, after)` works
    /// for `after >= compact_revision() - 1`.
    pub fn compact_revision(&self) -> u64 {
        self.inner.shared.compact_revision.load(Ordering::SeqCst)
    }

    /// Drops changes older than `revision` from the changelog (clamped to one past the current
    /// revision) and returns the resulting compact revision. Normally not needed: the changelog
    /// compacts itself to [`EmbeddedOptions::changelog_retention`].
    pub async fn compact(&self, revision: u64) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Compact { revision, reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn send(&self, cmd: Cmd) -> Result<()> {
        self.inner
            .cmds
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(cmd)
            .map_err(|_| StoreError::Closed)
    }

    async fn submit(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<Applied> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Txn(TxnRequest { conditions, ops, reply }))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        blocking(self.inner.shared.clone(), f).await
    }
}

async fn blocking<T: Send + 'static>(
    shared: Arc<Shared>,
    f: impl FnOnce(&Shared) -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(move || f(&shared)).await {
        Ok(r) => r,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => Err(StoreError::Closed),
    }
}

impl Shared {
    fn map_err(&self, err: redb::Error) -> StoreError {
        map_redb(&self.path, err)
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), detail }
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let e = |err: redb::Error| self.map_err(err);
        let rtx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let kv = rtx.open_table(KV).map_err(|x| e(x.into()))?;
        let found = kv.get(key).map_err(|x| e(x.into()))?;
        found
            .map(|g| decode_record(key, g.value()).map_err(|c| self.corrupt_record(key, c)))
            .transpose()
    }

    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64)> {
        let e = |err: redb::Error| self.map_err(err);
        let rtx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let meta = rtx.open_table(META).map_err(|x| e(x.into()))?;
        let revision = meta_get(&meta, META_REVISION).map_err(e)?.unwrap_or(0);
        let kv = rtx.open_table(KV).map_err(|x| e(x.into()))?;
        let mut out = Vec::new();
        for item in kv.range::<&str>(prefix..).map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push(decode_record(key, v.value()).map_err(|c| self.corrupt_record(key, c))?);
        }
        Ok((out, revision))
    }

    /// Changes under `prefix` after revision `after`, and the revision they are complete up to.
    fn changes_after(&self, prefix: &str, after: u64) -> Result<(Vec<WatchEvent>, u64)> {
        let e = |err: redb::Error| self.map_err(err);
        let rtx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let meta = rtx.open_table(META).map_err(|x| e(x.into()))?;
        let revision = meta_get(&meta, META_REVISION).map_err(e)?.unwrap_or(0);
        let compact_revision = meta_get(&meta, META_COMPACT).map_err(e)?.unwrap_or(1);
        if after.saturating_add(1) < compact_revision {
            return Err(StoreError::Compacted { requested: after, compact_revision });
        }
        let mut out = Vec::new();
        if after < revision {
            let log = rtx.open_table(LOG).map_err(|x| e(x.into()))?;
            for item in log.range((after + 1, 0u32)..).map_err(|x| e(x.into()))? {
                let (k, v) = item.map_err(|x| e(x.into()))?;
                let (rev, _) = k.value();
                let ev = decode_change(rev, v.value())
                    .map_err(|c| self.corrupt(format!("changelog entry at revision {rev}: {}", c.0)))?;
                if ev.key().starts_with(prefix) {
                    out.push(ev);
                }
            }
        }
        Ok((out, revision))
    }

    fn corrupt_record(&self, key: &str, c: CodecError) -> StoreError {
        self.corrupt(format!("record {key:?}: {}", c.0))
    }
}

/// Maps a redb error, naming the file.
fn map_redb(path: &Path, err: redb::Error) -> StoreError {
    match err {
        redb::Error::Io(e) => io_error(path, e),
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked { path: path.to_owned() },
        redb::Error::Corrupted(detail) => StoreError::Corrupt { path: path.to_owned(), detail },
        other => StoreError::Embedded { path: path.to_owned(), source: other },
    }
}

/// An I/O error naming `path`; out-of-space errors become [`StoreError::Full`].
fn io_error(path: &Path, e: io::Error) -> StoreError {
    use io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    match e.kind() {
        StorageFull | FileTooLarge | QuotaExceeded => StoreError::Full { path: path.to_owned(), source: e },
        _ => StoreError::Io { path: path.to_owned(), source: e },
    }
}

fn conflict(failures: Vec<crate::types::ConditionFailure>) -> StoreError {
    let f = failures.into_iter().next().expect("a failed transaction has a failure");
    StoreError::Conflict { key: f.key, expected: f.expected, actual: f.actual }
}

impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        let key = key.to_owned();
        self.read(move |s| s.get(&key)).await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64)> {
        let prefix = prefix.to_owned();
        self.read(move |s| s.list(&prefix)).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, expected: Option<u64>) -> Result<u64> {
        validate_key(key)?;
        let conditions = expected.map(|r| Condition::mod_revision(key, r)).into_iter().collect();
        match self.submit(conditions, vec![Op::put(key, value)]).await?.result {
            TxnResult::Committed { revision } => Ok(revision),
            TxnResult::Failed { failures } => Err(conflict(failures)),
        }
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Deleted> {
        validate_key(key)?;
        let conditions = expected.map(|r| Condition::mod_revision(key, r)).into_iter().collect();
        let applied = self.submit(conditions, vec![Op::delete(key)]).await?;
        match applied.result {
            TxnResult::Failed { failures } => Err(conflict(failures)),
            TxnResult::Committed { revision } => match applied.events.into_iter().next() {
                Some(WatchEvent::Delete { prev: Some(prev), .. }) => Ok(Deleted { revision, prev }),
                _ => Err(StoreError::NotFound { key: key.to_owned() }),
            },
        }
    }

    async fn txn(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<TxnResult> {
        validate_txn(&conditions, &ops, self.inner.shared.opts.max_txn_ops)?;
        Ok(self.submit(conditions, ops).await?.result)
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        // Subscribe before reading the changelog so nothing committed in between is missed.
        let rx = self.inner.events.subscribe();
        let p = prefix.to_owned();
        let (backlog, snapshot) = self.read(move |s| s.changes_after(&p, after)).await?;
        let state = WatchState {
            shared: self.inner.shared.clone(),
            prefix: prefix.to_owned(),
            rx,
            pending: backlog.into(),
            delivered: snapshot.max(after),
            done: false,
        };
        Ok(WatchStream::new(Box::pin(stream::unfold(state, WatchState::next))))
    }

    async fn revision(&self) -> Result<u64> {
        Ok(self.inner.shared.revision.load(Ordering::SeqCst))
    }
}

struct WatchState {
    shared: Arc<Shared>,
    prefix: String,
    rx: broadcast::Receiver<Batch>,
    pending: VecDeque<WatchEvent>,
    /// Every change up to this revision has been queued (or filtered out).
    delivered: u64,
    done: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some((Ok(ev), self));
            }
            if self.done {
                return None;
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    for ev in batch.iter() {
                        if ev.revision() > self.delivered && ev.key().starts_with(&self.prefix) {
                            self.pending.push_back(ev.clone());
                        }
                    }
                    if let Some(last) = batch.last() {
                        self.delivered = self.delivered.max(last.revision());
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, after = self.delivered, "watcher lagged; catching up from the changelog");
                    let (prefix, after) = (self.prefix.clone(), self.delivered);
                    match blocking(self.shared.clone(), move |s| s.changes_after(&prefix, after)).await {
                        Ok((events, snapshot)) => {
                            self.pending.extend(events);
                            self.delivered = self.delivered.max(snapshot);
                        }
                        Err(e) => {
                            self.done = true;
                            return Some((Err(e), self));
                        }
                    }
                }
                Err(RecvError::Closed) => {
                    self.done = true;
                    return Some((Err(StoreError::Closed), self));
                }
            }
        }
    }
}
