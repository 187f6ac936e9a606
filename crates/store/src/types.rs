//! Values that cross the [`Store`](crate::Store) boundary, shared by both backends.

use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::BoxStream;

use crate::error::{Result, StoreError};

/// One stored key with its value and revisions.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, relative to the store's root (etcd) or data directory (embedded).
    pub key: String,
    /// The value, opaque bytes (Porin stores JSON documents).
    pub value: Vec<u8>,
    /// Revision of the change that created this key (since it last did not exist).
    pub create_revision: u64,
    /// Revision of the change that last modified this key. Compare-and-swap compares this.
    pub mod_revision: u64,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("KeyValue");
        d.field("key", &self.key);
        match std::str::from_utf8(&self.value) {
            Ok(s) if s.len() <= 64 => d.field("value", &s),
            _ => d.field("value_len", &self.value.len()),
        };
        d.field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// A precondition of a [`Store::txn`](crate::Store::txn): `key` must currently have
/// `mod_revision` (0 = the key must not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The key to check.
    pub key: String,
    /// The required `mod_revision`; 0 means "absent".
    pub mod_revision: u64,
}

impl Condition {
    /// The key must not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Self { key: key.into(), mod_revision: 0 }
    }

    /// The key must exist and have been last modified at `mod_revision` (0 = must not exist).
    pub fn mod_revision(key: impl Into<String>, mod_revision: u64) -> Self {
        Self { key: key.into(), mod_revision }
    }
}

/// A write inside a [`Store::txn`](crate::Store::txn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create or replace `key`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Delete `key`; deleting a missing key is not an error and produces no event.
    Delete {
        /// The key.
        key: String,
    },
}

impl Op {
    /// A put.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put { key: key.into(), value: value.into() }
    }

    /// A delete.
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }

    /// The key this operation writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// A condition of a transaction that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionFailure {
    /// The key.
    pub key: String,
    /// The `mod_revision` the condition required (0 = absent).
    pub expected: u64,
    /// The `mod_revision` the key actually had (0 = absent).
    pub actual: u64,
}

/// Outcome of [`Store::txn`](crate::Store::txn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnResult {
    /// Every condition held and every operation was committed atomically, at `revision`. If the
    /// operations changed nothing (none, or only deletes of missing keys), `revision` is the
    /// unchanged current revision.
    Committed {
        /// The store revision after the commit.
        revision: u64,
    },
    /// At least one condition failed; nothing was written. Lists every failed condition.
    Failed {
        /// The conditions that did not hold, in the order they were given.
        failures: Vec<ConditionFailure>,
    },
}

impl TxnResult {
    /// True if the transaction committed.
    pub fn is_committed(&self) -> bool {
        matches!(self, TxnResult::Committed { .. })
    }

    /// The commit revision, if it committed.
    pub fn revision(&self) -> Option<u64> {
        match self {
            TxnResult::Committed { revision } => Some(*revision),
            TxnResult::Failed { .. } => None,
        }
    }
}

/// A successful [`Store::delete`](crate::Store::delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the delete.
    pub revision: u64,
    /// The value the key had.
    pub prev: KeyValue,
}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or modified; `kv.mod_revision` is the change's revision.
    Put {
        /// The new value.
        kv: KeyValue,
        /// The previous value, if the key existed (etcd may omit it if already compacted).
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`.
    Delete {
        /// The key.
        key: String,
        /// The revision of the delete.
        revision: u64,
        /// The value before the delete (etcd may omit it if already compacted).
        prev: Option<KeyValue>,
    },
}

impl WatchEvent {
    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { kv, .. } => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// The stream returned by [`Store::watch`](crate::Store::watch).
///
/// Yields events oldest first. It ends after yielding one `Err` (compaction, disconnect, store
/// closed); it never skips an event. Dropping it cancels the watch.
pub struct WatchStream {
    inner: BoxStream<'static, Result<WatchEvent>>,
}

impl WatchStream {
    pub(crate) fn new(inner: BoxStream<'static, Result<WatchEvent>>) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Rejects empty keys.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey { key: key.to_owned(), reason: "keys must not be empty" });
    }
    Ok(())
}

/// Checks a transaction before it is sent: key syntax, size limit, no key written twice.
pub(crate) fn validate_txn(conditions: &[Condition], ops: &[Op], max_ops: usize) -> Result<()> {
    let count = ops.len().max(conditions.len());
    if count > max_ops {
        return Err(StoreError::TooManyOps { ops: count, max: Some(max_ops) });
    }
    for c in conditions {
        validate_key(&c.key)?;
    }
    let mut seen = HashSet::with_capacity(ops.len());
    for op in ops {
        validate_key(op.key())?;
        if !seen.insert(op.key()) {
            return Err(StoreError::DuplicateKey { key: op.key().to_owned() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_validation() {
        let ops = vec![Op::put("a", "1"), Op::delete("b")];
        validate_txn(&[Condition::absent("a")], &ops, 2).unwrap();
        assert!(matches!(
            validate_txn(&[], &ops, 1),
            Err(StoreError::TooManyOps { ops: 2, max: Some(1) })
        ));
        let dup = vec![Op::put("a", "1"), Op::delete("a")];
        assert!(matches!(validate_txn(&[], &dup, 8), Err(StoreError::DuplicateKey { key }) if key == "a"));
        assert!(matches!(
            validate_txn(&[Condition::absent("")], &[], 8),
            Err(StoreError::InvalidKey { .. })
        ));
    }

    #[test]
    fn debug_elides_large_values() {
        let kv = KeyValue { key: "k".into(), value: vec![0xff; 100], create_revision: 1, mod_revision: 2 };
        let s = format!("{kv:?}");
        assert!(s.contains("value_len: 100"), "{s}");
    }
}
