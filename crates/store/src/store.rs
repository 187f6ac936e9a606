//! The [`Store`] trait.

use std::future::Future;

use crate::error::Result;
use crate::types::{Condition, Deleted, KeyValue, Op, TxnResult, WatchStream};

/// A revisioned key-value datastore with watches (see the [crate docs](crate)).
///
/// Keys are non-empty UTF-8 strings; Porin uses `/`-separated paths and lists and watches by
/// prefix. Values are opaque bytes. The futures are `Send`, so generic callers can spawn them.
///
/// Write futures are not cancellation points: once a write has been handed to the backend,
/// dropping the future does not undo it.
pub trait Store: Send + Sync {
    /// Reads one key.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>>> + Send;

    /// Reads every key starting with `prefix` (`""` = everything), sorted by key, together with
    /// the store revision the listing is consistent with. Watch from that revision to follow on.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<(Vec<KeyValue>, u64)>> + Send;

    /// Creates or replaces `key` and returns the new revision.
    ///
    /// With `expected = Some(rev)` the write only happens if the key's `mod_revision` is `rev`
    /// (`Some(0)`: only if the key does not exist); otherwise [`StoreError::Conflict`].
    ///
    /// [`StoreError::Conflict`]: crate::StoreError::Conflict
    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Deletes `key`, returning the delete's revision and the old value;
    /// [`StoreError::NotFound`] if it did not exist. With `expected = Some(rev)` the delete only
    /// happens if the key's `mod_revision` is `rev`, otherwise [`StoreError::Conflict`].
    ///
    /// [`StoreError::NotFound`]: crate::StoreError::NotFound
    /// [`StoreError::Conflict`]: crate::StoreError::Conflict
    fn delete(&self, key: &str, expected: Option<u64>) -> impl Future<Output = Result<Deleted>> + Send;

    /// Atomically: if every condition holds, applies every operation at one new revision;
    /// otherwise applies nothing and reports every failed condition. A key may be written at
    /// most once per transaction.
    fn txn(
        &self,
        conditions: Vec<Condition>,
        ops: Vec<Op>,
    ) -> impl Future<Output = Result<TxnResult>> + Send;

    /// Follows changes under `prefix` with a revision greater than `after`, oldest first.
    ///
    /// `after = 0` replays all retained history; pass the revision from [`list`](Self::list) or
    /// the last event seen to resume. If that history is gone the call, or the stream's last item,
    /// is [`StoreError::Compacted`](crate::StoreError::Compacted).
    fn watch(&self, prefix: &str, after: u64) -> impl Future<Output = Result<WatchStream>> + Send;

    /// The current store revision (the revision of the latest change).
    fn revision(&self) -> impl Future<Output = Result<u64>> + Send;
}
