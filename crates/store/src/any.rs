//! [`AnyStore`]: pick a backend at run time.

use std::path::PathBuf;

use crate::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::error::Result;
use crate::etcd::{EtcdConfig, EtcdStore};
use crate::store::Store;
use crate::types::{Condition, Deleted, KeyValue, Op, TxnResult, WatchStream};

/// Which backend to open.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// The embedded store in a data directory (the default for a single node).
    Embedded {
        /// The data directory (created if missing).
        dir: PathBuf,
        /// Tuning.
        options: EmbeddedOptions,
    },
    /// An etcd cluster.
    Etcd(EtcdConfig),
}

impl StoreConfig {
    /// The embedded store in `dir` with default options.
    pub fn embedded(dir: impl Into<PathBuf>) -> Self {
        StoreConfig::Embedded { dir: dir.into(), options: EmbeddedOptions::default() }
    }
}

/// Either backend, chosen at run time. Implements [`Store`] by delegating.
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// The embedded backend.
    Embedded(EmbeddedStore),
    /// The etcd backend.
    Etcd(EtcdStore),
}

impl AnyStore {
    /// Opens the configured backend.
    pub async fn open(config: StoreConfig) -> Result<Self> {
        Ok(match config {
            StoreConfig::Embedded { dir, options } => AnyStore::Embedded(EmbeddedStore::open(dir, options)?),
            StoreConfig::Etcd(cfg) => AnyStore::Etcd(EtcdStore::connect(cfg).await?),
        })
    }

    /// Compacts the backend's history before `revision` (see [`EmbeddedStore::compact`] and
    /// [`EtcdStore::compact`]).
    pub async fn compact(&self, revision: u64) -> Result<()> {
        match self {
            AnyStore::Embedded(s) => s.compact(revision).await.map(|_| ()),
            AnyStore::Etcd(s) => s.compact(revision).await,
        }
    }
}

impl From<EmbeddedStore> for AnyStore {
    fn from(s: EmbeddedStore) -> Self {
        AnyStore::Embedded(s)
    }
}

impl From<EtcdStore> for AnyStore {
    fn from(s: EtcdStore) -> Self {
        AnyStore::Etcd(s)
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Embedded($s) => $call.await,
            AnyStore::Etcd($s) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        delegate!(self, s => s.get(key))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64)> {
        delegate!(self, s => s.list(prefix))
    }

    async fn put(&self, key: &str, value: Vec<u8>, expected: Option<u64>) -> Result<u64> {
        delegate!(self, s => s.put(key, value, expected))
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<Deleted> {
        delegate!(self, s => s.delete(key, expected))
    }

    async fn txn(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<TxnResult> {
        delegate!(self, s => s.txn(conditions, ops))
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        delegate!(self, s => s.watch(prefix, after))
    }

    async fn revision(&self) -> Result<u64> {
        delegate!(self, s => s.revision())
    }
}
