//! [`StoreError`]: everything a datastore operation can fail with.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a datastore operation failed.
///
/// A write that returned an error was not acknowledged. For [`Unavailable`](Self::Unavailable)
/// and I/O errors raised while committing, the outcome is unknown (as with any remote or
/// fsync-ed write): read the key back before retrying a non-idempotent change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key does not exist.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key.
        key: String,
    },

    /// Optimistic concurrency failed: the key's `mod_revision` was not the expected one.
    #[error(
        "conflict on key {key:?}: expected mod_revision {expected}{}, found {actual}{}",
        if *expected == 0 { " (absent)" } else { "" },
        if *actual == 0 { " (absent)" } else { "" }
    )]
    Conflict {
        /// The key.
        key: String,
        /// The `mod_revision` the caller expected (0 = absent).
        expected: u64,
        /// The `mod_revision` the key has (0 = absent).
        actual: u64,
    },

    /// A watch asked for history that has been compacted away. The caller must relist and watch
    /// from the listing's revision ([`Reflector`](crate::Reflector) does this).
    #[error(
        "cannot watch after revision {requested}: history before revision {compact_revision} \
         has been compacted; relist and watch again"
    )]
    Compacted {
        /// The revision the watch wanted to continue after.
        requested: u64,
        /// The oldest revision whose changes are still kept.
        compact_revision: u64,
    },

    /// The datastore cannot be reached (etcd down, partitioned, or not answering in time).
    #[error("datastore at {endpoints} is unavailable")]
    Unavailable {
        /// The etcd endpoints, comma-separated.
        endpoints: String,
        /// What went wrong.
        #[source]
        source: UnavailableCause,
    },

    /// The disk is full (or a file-size/quota limit was hit). The write was not committed.
    #[error("no space left for the datastore at {}", path.display())]
    Full {
        /// The data file or directory.
        path: PathBuf,
        /// The underlying error (ENOSPC, EFBIG, EDQUOT).
        #[source]
        source: io::Error,
    },

    /// Reading or writing the data directory failed (unwritable, not a directory, I/O error).
    #[error("datastore I/O error at {}", path.display())]
    Io {
        /// The data file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Another process (or another handle in this one) has the data directory open.
    #[error("datastore {} is already open by another process", path.display())]
    Locked {
        /// The data file.
        path: PathBuf,
    },

    /// The data file contains something this version cannot decode.
    #[error("datastore {} is corrupt: {detail}", path.display())]
    Corrupt {
        /// The data file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// Any other error from the embedded database engine.
    #[error("embedded datastore {} failed", path.display())]
    Embedded {
        /// The data file.
        path: PathBuf,
        /// The redb error.
        #[source]
        source: redb::Error,
    },

    /// A transaction has more operations (or conditions) than the backend accepts.
    #[error(
        "transaction has {ops} operations but the datastore accepts {} \
         (for etcd raise --max-txn-ops and EtcdConfig::max_txn_ops)",
        match max { Some(m) => format!("at most {m}"), None => "fewer".to_owned() }
    )]
    TooManyOps {
        /// Operations (or conditions, whichever is more) in the transaction.
        ops: usize,
        /// The configured limit; `None` when etcd itself rejected the transaction (its
        /// `--max-txn-ops` is lower than [`EtcdConfig::max_txn_ops`](crate::EtcdConfig)).
        max: Option<usize>,
    },

    /// The same key is written twice in one transaction.
    #[error("key {key:?} is written more than once in one transaction")]
    DuplicateKey {
        /// The key.
        key: String,
    },

    /// The key is not acceptable.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key (lossily decoded if it was not UTF-8).
        key: String,
        /// Why.
        reason: &'static str,
    },

    /// etcd canceled a watch for a reason other than compaction.
    #[error("etcd canceled the watch: {reason}")]
    WatchCanceled {
        /// etcd's cancel reason.
        reason: String,
    },

    /// etcd rejected a request.
    #[error("etcd request failed")]
    Etcd {
        /// The client error.
        #[source]
        source: etcd_client::Error,
    },

    /// The store has been closed (its last handle dropped) while a watch was running, or its
    /// writer thread is gone.
    #[error("the datastore has been closed")]
    Closed,
}

/// Why an etcd datastore is [`StoreError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnavailableCause {
    /// The request did not complete in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed or was lost.
    #[error(transparent)]
    Connection(etcd_client::Error),
    /// The server closed a watch stream.
    #[error("the watch stream was closed by the server")]
    StreamClosed,
}

impl StoreError {
    /// True for errors after which retrying the same call later may succeed (etcd down).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
