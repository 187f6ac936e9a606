//! The flow store: one redb file of flow records, bounded by size and age, ordered by end time.
//!
//! * Value: a **block** of up to [`BLOCK_RECORDS`] records of one append in end-time order, in the binary
//!   encoding of [`crate::codec`] (store format 3: one B-tree insert per block, not per record). Values of
//!   formats 1 (one record's JSON) and 2 (one binary record) are still read, so a store written by an older
//!   build opens and is upgraded in place (new appends in blocks, old values until evicted). A store of a
//!   newer format is refused, never misread.
//! * Key: the block's newest `end_time` (Unix ns) and a sequence number, both big-endian in a 16-byte
//!   array. A block holds records ending in `[key − span, key]`, where `span` (meta) is the widest block
//!   written, so a time range `[since, until]` is one B-tree range scan from `since` to `until + span`;
//!   results are ordered by (end time, append order), as when every record had its own key.
//! * `meta` table: `bytes` (sum of key + value sizes of the stored blocks), `records`, `span`, `next_seq`,
//!   `format`. The byte budget counts these logical bytes; the file itself is somewhat larger
//!   (B-tree pages) and does not shrink, but freed pages are reused, so it stays near the budget.
//! * Every append is one write transaction (a flush interval's batch) that also evicts, a block at a time:
//!   first blocks whose newest record is older than `max_age` (a record may outlive `max_age` by its block's
//!   span: at most one flush interval), then the oldest blocks until the total fits `max_bytes`.
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
const META_RECORDS: &str = "records";
const META_SPAN: &str = "span";
/// 3: blocks of binary records ([`crate::codec::TAG_BLOCK`]); single records of formats 1 (JSON) and 2
/// (binary) still readable.
const FORMAT: u64 = 3;
/// Formats this build reads (and upgrades to [`FORMAT`] on open).
const READS_FORMATS: [u64; 3] = [1, 2, 3];
/// Records per stored block (the last block of an append may hold fewer). 96 records of ~270 B stay under
/// 32 KiB: redb gives a large value a power-of-two run of pages, and 128-record blocks (~34 KB) took 64 KiB each,
/// which doubled the file for the same records (measured with the pipeline bench).
pub const BLOCK_RECORDS: usize = 96;
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
    records: u64,
    span: u64,
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

fn key_seq(k: &[u8; 16]) -> u64 {
    u64::from_be_bytes(k[8..].try_into().expect("8 bytes"))
}

/// How many records a stored value holds (a block's count; one for older formats), without decoding it.
fn value_records(v: &[u8]) -> u64 {
    if v.first() != Some(&crate::codec::TAG_BLOCK) {
        return 1;
    }
    let mut n = 0u64;
    for (i, b) in v[1..].iter().take(10).enumerate() {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    n
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
        let (bytes, next_seq, span, records);
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
            span = get(&meta, META_SPAN).map_err(|x| e(x.into()))?.unwrap_or(0);
            records = match get(&meta, META_RECORDS).map_err(|x| e(x.into()))? {
                Some(n) => n,
                // Formats 1 and 2: one record per value.
                None => {
                    let t = wtx.open_table(FLOWS).map_err(|x| e(x.into()))?;
                    let n = t.len().map_err(|x| e(x.into()))?;
                    meta.insert(META_RECORDS, n).map_err(|x| e(x.into()))?;
                    n
                }
            };
        }
        wtx.commit().map_err(|x| e(x.into()))?;
        Ok(Self { db: Arc::new(db), path, opts, bytes, records, span, next_seq, evicted: 0 })
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

    /// Appends `records` in one transaction (in blocks, see the module docs) and evicts what is older than
    /// `max_age` before `now` or over `max_bytes`. Returns how many records were evicted.
    pub fn append_at(&mut self, records: &[FlowRecord], now: UnixNanos) -> Result<u64, Error> {
        let mut wtx = self.db.begin_write().map_err(|x| self.err(x.into()))?;
        wtx.set_durability(if self.opts.fsync { Durability::Immediate } else { Durability::None })
            .map_err(|x| self.err(x.into()))?;
        let (mut bytes, mut count, mut span, mut seq) = (self.bytes, self.records, self.span, self.next_seq);
        // End-time order (stable: equal end times keep the append order), then blocks.
        let mut order: Vec<&FlowRecord> = records.iter().collect();
        order.sort_by_key(|r| r.end_time);
        let evicted;
        {
            let mut t = wtx.open_table(FLOWS).map_err(|x| self.err(x.into()))?;
            let mut buf = Vec::with_capacity(64 * 1024);
            for block in order.chunks(BLOCK_RECORDS) {
                buf.clear();
                crate::codec::encode_block(block.iter().copied(), &mut buf);
                let (first, last) = (block[0].end_time, block[block.len() - 1].end_time);
                span = span.max(last - first);
                let k = key(last, seq);
                seq += 1;
                if let Some(old) = t.insert(k, buf.as_slice()).map_err(|x| self.err(x.into()))? {
                    bytes = bytes.saturating_sub(KEY_LEN + old.value().len() as u64);
                    count = count.saturating_sub(value_records(old.value()));
                }
                bytes += KEY_LEN + buf.len() as u64;
                count += block.len() as u64;
            }
            evicted = self.evict_in(&mut t, &mut bytes, &mut count, now)?;
            let mut meta = wtx.open_table(META).map_err(|x| self.err(x.into()))?;
            meta.insert(META_BYTES, bytes).map_err(|x| self.err(x.into()))?;
            meta.insert(META_RECORDS, count).map_err(|x| self.err(x.into()))?;
            meta.insert(META_SPAN, span).map_err(|x| self.err(x.into()))?;
            meta.insert(META_SEQ, seq).map_err(|x| self.err(x.into()))?;
        }
        wtx.commit().map_err(|x| self.err(x.into()))?;
        self.bytes = bytes;
        self.records = count;
        self.span = span;
        self.next_seq = seq;
        self.evicted += evicted;
        Ok(evicted)
    }

    /// Evicts by age (relative to `now`) and size without appending. Returns the count evicted.
    pub fn maintain(&mut self, now: UnixNanos) -> Result<u64, Error> {
        self.append_at(&[], now)
    }

    fn evict_in(
        &self,
        t: &mut redb::Table<'_, [u8; 16], &[u8]>,
        bytes: &mut u64,
        count: &mut u64,
        now: UnixNanos,
    ) -> Result<u64, Error> {
        let cutoff = now.saturating_sub(self.opts.max_age.as_nanos().min(u128::from(u64::MAX)) as u64);
        let mut n = 0;
        loop {
            let first = t
                .first()
                .map_err(|x| self.err(x.into()))?
                .map(|(k, v)| (k.value(), v.value().len() as u64, value_records(v.value())));
            let Some((k, vlen, records)) = first else { break };
            if key_time(&k) >= cutoff && *bytes <= self.opts.max_bytes {
                break;
            }
            t.remove(k).map_err(|x| self.err(x.into()))?;
            *bytes = bytes.saturating_sub(KEY_LEN + vlen);
            *count = count.saturating_sub(records);
            n += records;
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
        // The oldest record is in a block whose key is within `span` of the first key.
        let mut oldest: Option<UnixNanos> = None;
        if let Some((k, _)) = t.first().map_err(|x| self.err(x.into()))? {
            let first = key_time(&k.value());
            for item in t.range(key(first, 0)..=key(first.saturating_add(self.span), u64::MAX)).map_err(|x| self.err(x.into()))? {
                let (k, v) = item.map_err(|x| self.err(x.into()))?;
                let recs = decode_value(&self.path, &k.value(), v.value())?;
                oldest = recs.iter().map(|r| r.end_time).chain(oldest).min();
            }
        }
        let newest = t.last().map_err(|x| self.err(x.into()))?.map(|(k, _)| key_time(&k.value()));
        let file_bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(StoreStats { records: self.records, bytes: self.bytes, file_bytes, evicted: self.evicted, oldest_end_time: oldest, newest_end_time: newest })
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

fn decode_value(path: &Path, k: &[u8; 16], v: &[u8]) -> Result<Vec<FlowRecord>, Error> {
    crate::codec::decode_many(v).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        key: format!("{:032x}", u128::from_be_bytes(*k)),
        detail: e.to_string(),
    })
}

fn query_db(db: &Database, path: &Path, q: &Query) -> Result<Vec<FlowRecord>, Error> {
    let err = |x: redb::Error| map_redb(path, x);
    let rtx = db.begin_read().map_err(|x| err(x.into()))?;
    let span = rtx
        .open_table(META)
        .map_err(|x| err(x.into()))?
        .get(META_SPAN)
        .map_err(|x| err(x.into()))?
        .map_or(0, |g| g.value());
    let t = rtx.open_table(FLOWS).map_err(|x| err(x.into()))?;
    let (since, until) = (q.since.unwrap_or(0), q.until.unwrap_or(u64::MAX));
    let lo = key(since, 0);
    let hi = key(until.saturating_add(span), u64::MAX);
    let range = t.range(lo..=hi).map_err(|x| err(x.into()))?;
    // Matches with their order: (end time, block sequence, position in the block) = (end time, append order).
    let mut out: Vec<((UnixNanos, u64, usize), FlowRecord)> = Vec::new();
    let take = |item: Result<Row<'_>, redb::StorageError>, out: &mut Vec<_>| {
        let (k, v) = item.map_err(|x| err(x.into()))?;
        let k = k.value();
        for (i, rec) in decode_value(path, &k, v.value())?.into_iter().enumerate() {
            if rec.end_time >= since && rec.end_time <= until && q.filter.matches(&rec) {
                out.push(((rec.end_time, key_seq(&k), i), rec));
            }
        }
        Ok::<_, Error>(k)
    };
    let by_order = |a: &((UnixNanos, u64, usize), FlowRecord), b: &((UnixNanos, u64, usize), FlowRecord)| a.0.cmp(&b.0);
    match (q.last, q.first) {
        (Some(n), _) => {
            // Newest blocks first; a block whose newest record is older than the n-th newest match found
            // holds nothing newer.
            for item in range.rev() {
                let k = take(item, &mut out)?;
                if out.len() >= n {
                    out.sort_by(by_order);
                    out.drain(..out.len() - n);
                    if n == 0 || key_time(&k) < out[0].0.0 {
                        break;
                    }
                }
            }
            out.sort_by(by_order);
            let extra = out.len().saturating_sub(n);
            out.drain(..extra);
        }
        (None, limit) => {
            let n = limit.unwrap_or(usize::MAX);
            // Oldest blocks first; once the n-th oldest match is older than every record a later block can
            // hold (its key − span), nothing later comes before it.
            for item in range {
                let k = take(item, &mut out)?;
                if out.len() >= n {
                    out.sort_by(by_order);
                    out.truncate(n);
                    if n == 0 || key_time(&k).saturating_sub(span) > out[n - 1].0.0 {
                        break;
                    }
                }
            }
            out.sort_by(by_order);
            out.truncate(n);
        }
    }
    Ok(out.into_iter().map(|(_, r)| r).collect())
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
