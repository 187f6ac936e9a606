//! The flow store: one redb file of flow records, bounded by size and age, ordered by end time.
//!
//! * Key: `end_time` (Unix ns) and a sequence number, both big-endian in a 16-byte array, so a
//!   time range is one B-tree range scan and the oldest record is the first key.
//! * Value: the record in the binary encoding of [`crate::codec`] (store format 2), whose first
//!   byte names the encoding; values of format 1 (the record's JSON) are still read, so a store
//!   written by an older build opens and is upgraded in place (new records binary, old ones JSON
//!   until evicted). A store of a newer format is refused, never misread.
//! * `meta` table: `bytes` (sum of key + value sizes of the stored records), `next_seq`,
//!   `format`. The byte budget counts these logical bytes; the file itself is somewhat larger
//!   (B-tree pages) and does not shrink, but freed pages are reused, so it stays near the budget.
//! * Every append is one write transaction (a flush interval's batch) that also evicts: first
//!   records older than `max_age`, then the oldest records until the total fits `max_bytes`.
//! * Reopening the file continues where the last committed append left off.
//!
//! Queries scan the time range and apply the [`FlowFilter`](crate::FlowFilter) to each record
//! (no secondary indexes: a filter costs a scan of the range).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::Error;
use crate::filter::Query;
use crate::pipeline::FlowSink;
use crate::record::FlowRecord;
use crate::time::UnixNanos;

const FLOWS: TableDefinition<'_, [u8; 16], &[u8]> = TableDefinition::new("flows");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const META_BYTES: &str = "bytes";
const META_SEQ: &str = "next_seq";
const META_FORMAT: &str = "format";
/// 2: binary values ([`crate::codec`]), JSON values of format 1 still readable.
const FORMAT: u64 = 2;
/// Formats this build reads (and upgrades to [`FORMAT`] on open).
const READS_FORMATS: [u64; 2] = [1, 2];
const KEY_LEN: u64 = 16;

type Row<'a> = (redb::AccessGuard<'a, [u8; 16]>, redb::AccessGuard<'a, &'static [u8]>);

/// Store limits.
#[derive(Clone, Debug)]
pub struct FlowStoreOptions {
    /// Budget for stored records (keys + encoded values). Default 1 GiB.
    pub max_bytes: u64,
    /// Records whose end time is older than this are evicted. Default 24 h.
    pub max_age: Duration,
    /// fsync every append (default `true`). With `false` a crash may lose the last appends.
    pub fsync: bool,
}

impl Default for FlowStoreOptions {
    fn default() -> Self {
        Self { max_bytes: 1 << 30, max_age: Duration::from_secs(24 * 3600), fsync: true }
    }
}

/// What the store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub records: u64,
    /// Logical bytes (keys + values), the quantity `max_bytes` bounds.
    pub bytes: u64,
    /// Size of the database file (0 in memory).
    pub file_bytes: u64,
    /// Records evicted since open (age or size).
    pub evicted: u64,
    pub oldest_end_time: Option<UnixNanos>,
    pub newest_end_time: Option<UnixNanos>,
}

/// The embedded flow store (see the module docs).
pub struct FlowStore {
    db: Arc<Database>,
    path: PathBuf,
    opts: FlowStoreOptions,
    bytes: u64,
    next_seq: u64,
    evicted: u64,
}

impl std::fmt::Debug for FlowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowStore").field("path", &self.path).field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

fn key(end_time: UnixNanos, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&end_time.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn key_time(k: &[u8; 16]) -> UnixNanos {
    u64::from_be_bytes(k[..8].try_into().expect("8 bytes"))
}

impl FlowStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: impl AsRef<Path>, opts: FlowStoreOptions) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { what: "creating directory", path: dir.into(), source })?;
        }
        let db = Database::create(&path).map_err(|e| map_redb(&path, e.into()))?;
        Self::start(db, path, opts)
    }

    /// A store in memory (tests).
    pub fn in_memory(opts: FlowStoreOptions) -> Result<Self, Error> {
        let path = PathBuf::from("<memory>");
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| map_redb(&path, e.into()))?;
        Self::start(db, path, opts)
    }

    fn start(db: Database, path: PathBuf, opts: FlowStoreOptions) -> Result<Self, Error> {
        let e = |x: redb::Error| map_redb(&path, x);
        let wtx = db.begin_write().map_err(|x| e(x.into()))?;
        let (bytes, next_seq);
        {
            wtx.open_table(FLOWS).map_err(|x| e(x.into()))?;
            let mut meta = wtx.open_table(META).map_err(|x| e(x.into()))?;
            let get = |m: &redb::Table<'_, &str, u64>, k| m.get(k).map(|v| v.map(|g| g.value()));
            match get(&meta, META_FORMAT).map_err(|x| e(x.into()))? {
                Some(FORMAT) => {}
                None => {
                    meta.insert(META_FORMAT, FORMAT).map_err(|x| e(x.into()))?;
                }
                // an older format: its values still decode, new ones are written in this format
                Some(old) if READS_FORMATS.contains(&old) => {
                    meta.insert(META_FORMAT, FORMAT).map_err(|x| e(x.into()))?;
                }
                Some(other) => {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        key: META_FORMAT.into(),
                        detail: format!("format {other}, this build reads {FORMAT}"),
                    });
                }
            }
            bytes = get(&meta, META_BYTES).map_err(|x| e(x.into()))?.unwrap_or(0);
            next_seq = get(&meta, META_SEQ).map_err(|x| e(x.into()))?.unwrap_or(0);
        }
        wtx.commit().map_err(|x| e(x.into()))?;
        Ok(Self { db: Arc::new(db), path, opts, bytes, next_seq, evicted: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> &FlowStoreOptions {
        &self.opts
    }

    fn err(&self, x: redb::Error) -> Error {
        map_redb(&self.path, x)
    }

    /// Appends `records` in one transaction and evicts what is older than `max_age` before `now`
    /// or over `max_bytes`. Returns how many records were evicted.
    pub fn append_at(&mut self, records: &[FlowRecord], now: UnixNanos) -> Result<u64, Error> {
        let mut wtx = self.db.begin_write().map_err(|x| self.err(x.into()))?;
        wtx.set_durability(if self.opts.fsync { Durability::Immediate } else { Durability::None })
            .map_err(|x| self.err(x.into()))?;
        let (mut bytes, mut seq) = (self.bytes, self.next_seq);
        let evicted;
        {
            let mut t = wtx.open_table(FLOWS).map_err(|x| self.err(x.into()))?;
            let mut buf = Vec::with_capacity(1024);
            for r in records {
                buf.clear();
                crate::codec::encode(r, &mut buf);
                let k = key(r.end_time, seq);
                seq += 1;
                if let Some(old) = t.insert(k, buf.as_slice()).map_err(|x| self.err(x.into()))? {
                    bytes = bytes.saturating_sub(KEY_LEN + old.value().len() as u64);
                }
                bytes += KEY_LEN + buf.len() as u64;
            }
            evicted = self.evict_in(&mut t, &mut bytes, now)?;
            let mut meta = wtx.open_table(META).map_err(|x| self.err(x.into()))?;
            meta.insert(META_BYTES, bytes).map_err(|x| self.err(x.into()))?;
            meta.insert(META_SEQ, seq).map_err(|x| self.err(x.into()))?;
        }
        wtx.commit().map_err(|x| self.err(x.into()))?;
        self.bytes = bytes;
        self.next_seq = seq;
        self.evicted += evicted;
        Ok(evicted)
    }

    /// Evicts by age (relative to `now`) and size without appending. Returns the count evicted.
    pub fn maintain(&mut self, now: UnixNanos) -> Result<u64, Error> {
        self.append_at(&[], now)
    }

    fn evict_in(&self, t: &mut redb::Table<'_, [u8; 16], &[u8]>, bytes: &mut u64, now: UnixNanos) -> Result<u64, Error> {
        let cutoff = now.saturating_sub(self.opts.max_age.as_nanos().min(u128::from(u64::MAX)) as u64);
        let mut n = 0;
        loop {
            let first = t.first().map_err(|x| self.err(x.into()))?.map(|(k, v)| (k.value(), v.value().len() as u64));
            let Some((k, vlen)) = first else { break };
            if key_time(&k) >= cutoff && *bytes <= self.opts.max_bytes {
                break;
            }
            t.remove(k).map_err(|x| self.err(x.into()))?;
            *bytes = bytes.saturating_sub(KEY_LEN + vlen);
            n += 1;
        }
        Ok(n)
    }

    /// Records matching `q`, oldest first. With `q.last = Some(n)`: the newest `n` matches; with
    /// `q.first = Some(n)`: the oldest `n`.
    pub fn query(&self, q: &Query) -> Result<Vec<FlowRecord>, Error> {
        query_db(&self.db, &self.path, q)
    }

    /// A read-only handle that queries without borrowing the store, from any thread, while the
    /// owner keeps appending (redb readers see the last committed append and never block it).
    pub fn reader(&self) -> FlowStoreReader {
        FlowStoreReader { db: self.db.clone(), path: self.path.clone() }
    }

    /// Counts and bounds.
    pub fn stats(&self) -> Result<StoreStats, Error> {
        let rtx = self.db.begin_read().map_err(|x| self.err(x.into()))?;
        let t = rtx.open_table(FLOWS).map_err(|x| self.err(x.into()))?;
        let records = t.len().map_err(|x| self.err(x.into()))?;
        let oldest = t.first().map_err(|x| self.err(x.into()))?.map(|(k, _)| key_time(&k.value()));
        let newest = t.last().map_err(|x| self.err(x.into()))?.map(|(k, _)| key_time(&k.value()));
        let file_bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(StoreStats { records, bytes: self.bytes, file_bytes, evicted: self.evicted, oldest_end_time: oldest, newest_end_time: newest })
    }
}

/// A cloneable read-only handle on a [`FlowStore`] (see [`FlowStore::reader`]).
#[derive(Clone)]
pub struct FlowStoreReader {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for FlowStoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowStoreReader").field("path", &self.path).finish_non_exhaustive()
    }
}

impl FlowStoreReader {
    /// As [`FlowStore::query`].
    pub fn query(&self, q: &Query) -> Result<Vec<FlowRecord>, Error> {
        query_db(&self.db, &self.path, q)
    }
}

fn query_db(db: &Database, path: &Path, q: &Query) -> Result<Vec<FlowRecord>, Error> {
    let err = |x: redb::Error| map_redb(path, x);
    let rtx = db.begin_read().map_err(|x| err(x.into()))?;
    let t = rtx.open_table(FLOWS).map_err(|x| err(x.into()))?;
    let lo = key(q.since.unwrap_or(0), 0);
    let hi = key(q.until.unwrap_or(u64::MAX), u64::MAX);
    let range = t.range(lo..=hi).map_err(|x| err(x.into()))?;
    let mut out = Vec::new();
    let decode = |item: Result<Row<'_>, redb::StorageError>| {
        let (k, v) = item.map_err(|x| err(x.into()))?;
        let rec: FlowRecord = crate::codec::decode(v.value()).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            key: format!("{:032x}", u128::from_be_bytes(k.value())),
            detail: e.to_string(),
        })?;
        Ok::<_, Error>(q.filter.matches(&rec).then_some(rec))
    };
    match (q.last, q.first) {
        (Some(n), _) => {
            for item in range.rev() {
                if out.len() >= n {
                    break;
                }
                out.extend(decode(item)?);
            }
            out.reverse();
        }
        (None, limit) => {
            let n = limit.unwrap_or(usize::MAX);
            for item in range {
                if out.len() >= n {
                    break;
                }
                out.extend(decode(item)?);
            }
        }
    }
    Ok(out)
}

impl FlowSink for FlowStore {
    /// Appends with the wall clock as `now` for age eviction.
    fn write(&mut self, records: &[FlowRecord]) -> Result<(), Error> {
        self.append_at(records, crate::time::now_unix()).map(drop)
    }
}

fn map_redb(path: &Path, e: redb::Error) -> Error {
    match e {
        redb::Error::DatabaseAlreadyOpen => Error::StoreLocked { path: path.to_path_buf() },
        other => Error::Store { path: path.to_path_buf(), source: Box::new(other) },
    }
}
