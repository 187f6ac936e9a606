//! The embedded store's single writer thread.
//!
//! Every change goes through this thread, which makes revisions, the changelog and the broadcast
//! to live watchers trivially ordered. It group-commits: requests that queue up while a commit is
//! being fsync-ed are applied together in the next write transaction (each still gets its own
//! revision and its own conditions check), and acknowledged only after that transaction is
//! durable. If a group fails on I/O, every request in it gets that error; if it fails otherwise,
//! its requests are retried one by one so each gets its own outcome.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use redb::{Durability, ReadableTable, Table};
use tokio::sync::{broadcast, oneshot};

use super::codec::{decode_record, encode_change, encode_record, record_mod_revision};
use super::{Batch, KV, LOG, META, META_COMPACT, META_REVISION, Shared};
use crate::error::{Result, StoreError};
use crate::types::{Condition, ConditionFailure, KeyValue, Op, TxnResult, WatchEvent};

/// At most this many requests share one write transaction.
const MAX_GROUP: usize = 256;

/// What the writer thread is asked to do.
pub(super) enum Cmd {
    Txn(TxnRequest),
    Compact { revision: u64, reply: oneshot::Sender<Result<u64>> },
}

pub(super) struct TxnRequest {
    pub(super) conditions: Vec<Condition>,
    pub(super) ops: Vec<Op>,
    pub(super) reply: oneshot::Sender<Result<Applied>>,
}

/// The outcome of one transaction and the events it produced (for `delete`'s previous value).
pub(super) struct Applied {
    pub(super) result: TxnResult,
    pub(super) events: Vec<WatchEvent>,
}

/// The first commit that failed on I/O. redb then refuses every write with an opaque "previous I/O
/// error" until the database is reopened; later requests are told this cause instead.
struct Failure {
    full: bool,
    kind: std::io::ErrorKind,
    message: String,
}

/// The writer loop; returns when every command sender is gone.
pub(super) fn run(shared: Arc<Shared>, rx: mpsc::Receiver<Cmd>, events: broadcast::Sender<Batch>) {
    let mut failure = None;
    while let Ok(first) = rx.recv() {
        let mut cmds = vec![first];
        while cmds.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(c) => cmds.push(c),
                Err(_) => break,
            }
        }
        let mut group = Vec::new();
        for cmd in cmds {
            match cmd {
                Cmd::Txn(req) => group.push(req),
                Cmd::Compact { revision, reply } => {
                    process_group(&shared, &events, &mut failure, std::mem::take(&mut group));
                    let _ = reply.send(compact(&shared, revision).map_err(|e| explain(&mut failure, &shared.path, e)));
                }
            }
        }
        process_group(&shared, &events, &mut failure, group);
    }
}

/// Remember the first I/O failure, and explain redb's later "previous I/O error" with it.
fn explain(failure: &mut Option<Failure>, path: &std::path::Path, e: StoreError) -> StoreError {
    match (&e, &*failure) {
        (StoreError::Full { source, .. } | StoreError::Io { source, .. }, None) => {
            *failure = Some(Failure { full: matches!(e, StoreError::Full { .. }), kind: source.kind(), message: source.to_string() });
            e
        }
        (StoreError::Embedded { source: redb::Error::PreviousIo, .. }, Some(f)) => {
            let source = std::io::Error::new(
                f.kind,
                format!("{} (an earlier commit failed; the store accepts writes again once it is reopened)", f.message),
            );
            let path = path.to_owned();
            if f.full { StoreError::Full { path, source } } else { StoreError::Io { path, source } }
        }
        _ => e,
    }
}

fn process_group(shared: &Shared, events: &broadcast::Sender<Batch>, failure: &mut Option<Failure>, group: Vec<TxnRequest>) {
    if group.is_empty() {
        return;
    }
    match commit_group(shared, &group).map_err(|e| explain(failure, &shared.path, e)) {
        Ok((applied, committed)) => {
            if let Some((revision, compact_revision, batch)) = committed {
                shared.revision.store(revision, Ordering::SeqCst);
                shared.compact_revision.store(compact_revision, Ordering::SeqCst);
                if !batch.is_empty() {
                    // No receivers is fine: nobody is watching.
                    let _ = events.send(Arc::new(batch));
                }
            }
            for (req, applied) in group.into_iter().zip(applied) {
                let _ = req.reply.send(Ok(applied));
            }
        }
        Err(e) if group.len() == 1 => {
            let req = group.into_iter().next().expect("one request");
            let _ = req.reply.send(Err(e));
        }
        // The disk failed: every request in the group gets the same verdict (retrying would only
        // meet redb's "previous I/O error" state and hide the real cause).
        Err(StoreError::Full { path, source }) => {
            for req in group {
                let source = std::io::Error::new(source.kind(), source.to_string());
                let _ = req.reply.send(Err(StoreError::Full { path: path.clone(), source }));
            }
        }
        Err(StoreError::Io { path, source }) => {
            for req in group {
                let source = std::io::Error::new(source.kind(), source.to_string());
                let _ = req.reply.send(Err(StoreError::Io { path: path.clone(), source }));
            }
        }
        // Anything else may be caused by one request (e.g. an undecodable record): retry them one
        // by one so each gets its own outcome.
        Err(e) => {
            tracing::debug!(error = %e, requests = group.len(), "group commit failed; retrying requests one by one");
            for req in group {
                process_group(shared, events, failure, vec![req]);
            }
        }
    }
}

type Committed = Option<(u64, u64, Vec<WatchEvent>)>;

/// Applies `group` in one durable write transaction. Returns each request's outcome and, if
/// anything changed, the new revision, compact revision and all events.
fn commit_group(shared: &Shared, group: &[TxnRequest]) -> Result<(Vec<Applied>, Committed)> {
    let e = |err: redb::Error| shared.map_err(err);
    let mut wtx = shared.db.begin_write().map_err(|x| e(x.into()))?;
    wtx.set_durability(Durability::Immediate).map_err(|x| e(x.into()))?;
    let mut applied = Vec::with_capacity(group.len());
    let mut all = Vec::new();
    let (start, revision, compact_revision);
    {
        let mut kv = wtx.open_table(KV).map_err(|x| e(x.into()))?;
        let mut log = wtx.open_table(LOG).map_err(|x| e(x.into()))?;
        let mut meta = wtx.open_table(META).map_err(|x| e(x.into()))?;
        start = meta_get(&meta, META_REVISION).map_err(e)?.unwrap_or(0);
        let mut rev = start;
        for req in group {
            let a = apply(shared, &mut kv, &mut log, &mut rev, &req.conditions, &req.ops)?;
            all.extend(a.events.iter().cloned());
            applied.push(a);
        }
        revision = rev;
        let mut compact = meta_get(&meta, META_COMPACT).map_err(e)?.unwrap_or(1);
        if revision != start {
            meta.insert(META_REVISION, revision).map_err(|x| e(x.into()))?;
            // Keep the changes of the newest `retention` revisions.
            let retention = shared.opts.changelog_retention.max(1);
            let keep_from = revision.saturating_sub(retention) + 1;
            if keep_from > compact {
                log.retain_in(..(keep_from, 0u32), |_, _| false).map_err(|x| e(x.into()))?;
                meta.insert(META_COMPACT, keep_from).map_err(|x| e(x.into()))?;
                compact = keep_from;
            }
        }
        compact_revision = compact;
    }
    if revision == start {
        // Nothing changed (failed conditions, deletes of missing keys): no commit, no fsync.
        wtx.abort().map_err(|x| e(x.into()))?;
        return Ok((applied, None));
    }
    wtx.commit().map_err(|x| e(x.into()))?;
    Ok((applied, Some((revision, compact_revision, all))))
}

fn apply(
    shared: &Shared,
    kv: &mut Table<'_, &'static str, &'static [u8]>,
    log: &mut Table<'_, (u64, u32), &'static [u8]>,
    rev: &mut u64,
    conditions: &[Condition],
    ops: &[Op],
) -> Result<Applied> {
    let e = |err: redb::Error| shared.map_err(err);
    let corrupt = |key: &str, c: super::codec::CodecError| shared.corrupt(format!("record {key:?}: {}", c.0));
    let mut failures = Vec::new();
    for c in conditions {
        let actual = match kv.get(c.key.as_str()).map_err(|x| e(x.into()))? {
            Some(g) => record_mod_revision(g.value()).map_err(|x| corrupt(&c.key, x))?,
            None => 0,
        };
        if actual != c.mod_revision {
            failures.push(ConditionFailure { key: c.key.clone(), expected: c.mod_revision, actual });
        }
    }
    if !failures.is_empty() {
        return Ok(Applied { result: TxnResult::Failed { failures }, events: Vec::new() });
    }
    let new_rev = *rev + 1;
    let mut events = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Put { key, value } => {
                let prev = match kv.get(key.as_str()).map_err(|x| e(x.into()))? {
                    Some(g) => Some(decode_record(key, g.value()).map_err(|x| corrupt(key, x))?),
                    None => None,
                };
                let create_revision = prev.as_ref().map_or(new_rev, |p| p.create_revision);
                let record = encode_record(create_revision, new_rev, value);
                kv.insert(key.as_str(), record.as_slice()).map_err(|x| e(x.into()))?;
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision,
                    mod_revision: new_rev,
                };
                events.push(WatchEvent::Put { kv, prev });
            }
            Op::Delete { key } => {
                let prev = match kv.remove(key.as_str()).map_err(|x| e(x.into()))? {
                    Some(g) => Some(decode_record(key, g.value()).map_err(|x| corrupt(key, x))?),
                    None => None,
                };
                if prev.is_some() {
                    events.push(WatchEvent::Delete { key: key.clone(), revision: new_rev, prev });
                }
            }
        }
    }
    for (i, ev) in events.iter().enumerate() {
        let idx = u32::try_from(i).map_err(|_| StoreError::TooManyOps { ops: ops.len(), max: Some(u32::MAX as usize) })?;
        log.insert((new_rev, idx), encode_change(ev).as_slice()).map_err(|x| e(x.into()))?;
    }
    if !events.is_empty() {
        *rev = new_rev;
    }
    Ok(Applied { result: TxnResult::Committed { revision: *rev }, events })
}

/// Drops changes older than `revision` from the changelog (like etcd's compact: watches after
/// `revision - 1` and later still work). Clamped to `current + 1`. Returns the compact revision.
fn compact(shared: &Shared, revision: u64) -> Result<u64> {
    let e = |err: redb::Error| shared.map_err(err);
    let mut wtx = shared.db.begin_write().map_err(|x| e(x.into()))?;
    wtx.set_durability(Durability::Immediate).map_err(|x| e(x.into()))?;
    let target;
    {
        let mut log = wtx.open_table(LOG).map_err(|x| e(x.into()))?;
        let mut meta = wtx.open_table(META).map_err(|x| e(x.into()))?;
        let current = meta_get(&meta, META_REVISION).map_err(e)?.unwrap_or(0);
        let compact = meta_get(&meta, META_COMPACT).map_err(e)?.unwrap_or(1);
        target = revision.min(current + 1);
        if target <= compact {
            drop((log, meta));
            wtx.abort().map_err(|x| e(x.into()))?;
            return Ok(compact);
        }
        log.retain_in(..(target, 0u32), |_, _| false).map_err(|x| e(x.into()))?;
        meta.insert(META_COMPACT, target).map_err(|x| e(x.into()))?;
    }
    wtx.commit().map_err(|x| e(x.into()))?;
    shared.compact_revision.store(target, Ordering::SeqCst);
    Ok(target)
}

pub(super) fn meta_get(
    meta: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<Option<u64>, redb::Error> {
    Ok(meta.get(name)?.map(|g| g.value()))
}
