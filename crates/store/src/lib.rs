//! Porin's control-plane datastore.
//!
//! Owns: durable resources and their revisions (redb or etcd) and the reflector. Never: resource semantics (values are
//! bytes).
//!
//! One small async trait, [`Store`], with the operations the control plane needs: `get`, `list`,
//! `put`, `delete`, an atomic multi-key [`Store::txn`], and [`Store::watch`]. Every change gets a
//! store-wide, monotonically increasing **revision**; every key remembers the revision that
//! created it and the one that last modified it (`mod_revision`), which is what optimistic
//! concurrency compares against.
//!
//! Two backends implement it:
//!
//! * [`EmbeddedStore`] (the default): a single redb file in a data directory, fsync on every
//!   commit, with etcd-like watch semantics built on top — the revision counter is stored in the
//!   same write transaction as the data, a bounded changelog table answers "watch from revision
//!   N", and a `tokio::sync::broadcast` channel feeds live watchers. Only one process may open a
//!   data directory at a time (the agent owns it; everything else talks to the agent).
//! * [`EtcdStore`]: etcd v3 for clusters. Several clients on one etcd see the same data and the
//!   same events.
//!
//! [`AnyStore`] wraps either one so a binary can choose at run time from a [`StoreConfig`].
//!
//! Consumers that want "the current state of a prefix, kept up to date" should use a
//! [`Reflector`] rather than a raw watch: it lists, watches from the list revision, reconnects
//! with backoff, and when the store reports that the history it needs has been compacted it
//! relists and synthesises deletes for keys that vanished in between. Its cache stays readable
//! while the datastore is down.
//!
//! ```
//! use porin_store::{Condition, EmbeddedOptions, EmbeddedStore, Op, Reflector, Store, SyncEvent};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), porin_store::StoreError> {
//! let store = EmbeddedStore::in_memory(EmbeddedOptions::default())?; // or EmbeddedStore::open(dir, ..)
//! let rev = store.put("policies/default/allow-dns", br#"{"kind":"NetworkPolicy"}"#.to_vec(), Some(0)).await?;
//! // `porin apply`: every document or none.
//! let result = store
//!     .txn(
//!         vec![Condition::mod_revision("policies/default/allow-dns", rev), Condition::absent("policies/default/deny-all")],
//!         vec![Op::put("policies/default/allow-dns", "{}"), Op::put("policies/default/deny-all", "{}")],
//!     )
//!     .await?;
//! assert!(result.is_committed());
//!
//! let mut reflector = Reflector::new(store.clone(), "policies/", Default::default());
//! loop {
//!     if let SyncEvent::InSync { .. } = reflector.next().await {
//!         break;
//!     }
//! }
//! assert_eq!(reflector.items().len(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Revisions and watches
//!
//! `watch(prefix, after)` delivers every change under `prefix` with a revision strictly greater
//! than `after`, oldest first; pass the revision returned by `list` to continue from a listing.
//! All events of one revision (one transaction) are delivered together, before any error. A watch
//! stream never silently drops events: when it cannot continue it yields one final `Err` —
//! [`StoreError::Compacted`] if the history it needs is gone (relist), or
//! [`StoreError::Unavailable`]/[`StoreError::Closed`] if the connection or the store went away
//! (watch again from the last revision seen).
//!
//! # etcd requirements
//!
//! etcd limits the number of operations in one transaction (`--max-txn-ops`, default 128). A
//! `porin apply` of many documents is one transaction, so run etcd with a larger value (Porin's
//! tests use 1024) and set [`EtcdConfig::max_txn_ops`] to match; a larger transaction fails with
//! [`StoreError::TooManyOps`] before anything is written.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod any;
mod embedded;
mod error;
mod etcd;
mod reflector;
mod store;
mod types;

pub use any::{AnyStore, StoreConfig};
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::{Result, StoreError, UnavailableCause};
pub use etcd::{EtcdConfig, EtcdStore, EtcdTls};
pub use reflector::{Reflector, ReflectorOptions, SyncEvent};
pub use store::Store;
pub use types::{
    Condition, ConditionFailure, Deleted, KeyValue, Op, TxnResult, WatchEvent, WatchStream,
};
