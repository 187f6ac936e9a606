//! The flow store: one redb file of flow records, bounded by size and age, ordered by end time.
//!
//! * Value: a **dictionary block** of records of one append in end-time order (store format 4,
//!   [`crate::codec::BlockEncoder`]): the metadata the records share (names, labels, traces) once per block,
//!   ~45 bytes per record, up to [`BLOCK_TARGET_BYTES`] or [`BLOCK_MAX_RECORDS`] per block, with a checksum. A
//!   flush is encoded straight from the aggregator's entries ([`FlowStore::append_batch_at`]), without building a
//!   [`FlowRecord`] per record. Values of formats 1 (one record's JSON), 2 (one binary record) and 3 (blocks of
//!   96 binary records) are still read, so a store written by an older build opens and is upgraded in place (new
//!   appends in format 4, old values until evicted). A store of a newer format is refused, never misread.
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
use crate::aggregate::FlowBatch;
use crate::codec::BlockEncoder;
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
/// 4: dictionary blocks ([`crate::codec::TAG_DICT_BLOCK`]); values of formats 1 (JSON), 2 (one binary record)
/// and 3 (blocks of binary records, [`crate::codec::TAG_BLOCK`]) still readable.
const FORMAT: u64 = 4;
/// Formats this build reads (and upgrades to [`FORMAT`] on open).
const READS_FORMATS: [u64; 4] = [1, 2, 3, 4];
/// A block is closed once its encoding reaches this size. redb gives a large value a power-of-two run of pages, so
/// blocks are kept under 64 KiB with room for the record that crosses the mark (format 3's 128-record blocks of
/// ~34 KB took 64 KiB each and doubled the file, measured with the pipeline bench).
pub const BLOCK_TARGET_BYTES: usize = 56 * 1024;
/// At most this many records per block (bounds what a query decodes to find a few records).
pub const BLOCK_MAX_RECORDS: usize = 2048;
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
    scratch: Scratch,
}

/// An append's buffers, kept for the next one.
#[derive(Default)]
struct Scratch {
    order: Vec<(UnixNanos, u32)>,
    buf: Vec<u8>,
    enc: BlockEncoder,
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

/// How many records a stored value holds (a block's count; one for formats 1 and 2), without decoding it.
fn value_records(v: &[u8]) -> u64 {
    if v.first() == Some(&crate::codec::TAG_DICT_BLOCK) {
        return crate::codec::dict_block_records(v).unwrap_or(0);
    }
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
                        detail: format!("format {other}, this build reads formats 1 to {FORMAT}"),
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
        Ok(Self { db: Arc::new(db), path, opts, bytes, records, span, next_seq, evicted: 0, scratch: Scratch::default() })
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
        self.append_with(records.len(), |i| records[i].end_time, |i, enc| enc.push_record(&records[i]), now)
    }

    /// As [`Self::append_at`] with a flush's entries, encoded without building their records: the store then
    /// holds exactly what `append_at(&batch.to_records(), now)` would store.
    pub fn append_batch_at(&mut self, batch: &FlowBatch, now: UnixNanos) -> Result<u64, Error> {
        self.append_with(batch.len(), |i| batch.end_time(i), |i, enc| batch.encode(i, enc), now)
    }

    /// Appends `n` records, record `i` ending at `end_time(i)` and encoded by `encode(i, _)`, in end-time order
    /// (stable: equal end times keep the order of `i`), in blocks.
    fn append_with(
        &mut self,
        n: usize,
        end_time: impl Fn(usize) -> UnixNanos,
        mut encode: impl FnMut(usize, &mut BlockEncoder),
        now: UnixNanos,
    ) -> Result<u64, Error> {
        // Buffers reused from append to append.
        let Scratch { mut order, mut buf, mut enc } = std::mem::take(&mut self.scratch);
        order.clear();
        buf.clear();
        order.extend((0..n).map(|i| (end_time(i), i as u32)));
        order.sort_unstable();
        // Encode first, then one transaction.
        let mut blocks: Vec<(std::ops::Range<usize>, crate::codec::BlockInfo)> = Vec::new();
        let mut start = 0;
        for (k, &(_, i)) in order.iter().enumerate() {
            encode(i as usize, &mut enc);
            if enc.size() >= BLOCK_TARGET_BYTES || enc.len() >= BLOCK_MAX_RECORDS || k + 1 == order.len() {
                let info = enc.finish(&mut buf).expect("a record was pushed");
                blocks.push((start..buf.len(), info));
                start = buf.len();
            }
        }
        let mut wtx = self.db.begin_write().map_err(|x| self.err(x.into()))?;
        wtx.set_durability(if self.opts.fsync { Durability::Immediate } else { Durability::None })
            .map_err(|x| self.err(x.into()))?;
        let (mut bytes, mut count, mut span, mut seq) = (self.bytes, self.records, self.span, self.next_seq);
        let evicted;
        {
            let mut t = wtx.open_table(FLOWS).map_err(|x| self.err(x.into()))?;
            for (range, info) in blocks {
                let v = &buf[range];
                span = span.max(info.last_end.saturating_sub(info.first_end));
                let k = key(info.last_end, seq);
                seq += 1;
                if let Some(old) = t.insert(k, v).map_err(|x| self.err(x.into()))? {
                    bytes = bytes.saturating_sub(KEY_LEN + old.value().len() as u64);
                    count = count.saturating_sub(value_records(old.value()));
                }
                bytes += KEY_LEN + v.len() as u64;
                count += info.records;
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
        if buf.capacity() > 4 * buf.len().max(1 << 20) {
            buf.shrink_to(buf.len());
            order.shrink_to(order.len());
        }
        self.scratch = Scratch { order, buf, enc };
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

    /// Appends the batch, encoded without its records (the same stored records as [`Self::write`]).
    fn write_flush(&mut self, batch: &FlowBatch, _records: &[FlowRecord]) -> Result<(), Error> {
        self.append_batch_at(batch, crate::time::now_unix()).map(drop)
    }
}

fn map_redb(path: &Path, e: redb::Error) -> Error {
    match e {
        redb::Error::DatabaseAlreadyOpen => Error::StoreLocked { path: path.to_path_buf() },
        other => Error::Store { path: path.to_path_buf(), source: Box::new(other) },
    }
}
