//! Flow store: time-range queries, filters, eviction by age and size, reopen.

mod common;

use std::time::Duration;

use common::*;
use porin_abi::{Direction, EventType};
use porin_flow::filter::parse_args;
use porin_flow::{AggregationLevel, FlowRecord, FlowStore, FlowStoreOptions, Pipeline, Query};

/// `n` records ending at EPOCH + i seconds (i = 0..n), alternating allowed/denied.
fn records(n: usize) -> Vec<FlowRecord> {
    use Direction::*;
    use EventType::*;
    let mut p = Pipeline::new(cfg(AggregationLevel::FiveTuple), enricher());
    for i in 0..n {
        let (kind, peer, rule, dst) =
            if i % 2 == 0 { (NewAllowed, ID_DB, RULE_ALLOW_DB, "10.0.0.13") } else { (Denied, ID_WORLD, RULE_DENY_WORLD, "8.8.8.8") };
        p.push(&ev(kind, Egress, i as f64, WEB1, peer, rule, "10.0.0.11", 30000 + i as u16, dst, 443));
    }
    let mut recs = p.flush(0);
    recs.sort_by_key(|r| r.end_time);
    recs
}

fn ports(recs: &[FlowRecord]) -> Vec<u16> {
    recs.iter().map(|r| r.src.port.unwrap() - 30000).collect()
}

#[test]
fn time_range_last_first_and_filter() {
    let mut s = FlowStore::in_memory(FlowStoreOptions::default()).unwrap();
    let recs = records(10);
    s.append_at(&recs[..5], EPOCH + 10 * SEC).unwrap();
    s.append_at(&recs[5..], EPOCH + 10 * SEC).unwrap();
    let all = s.query(&Query::default()).unwrap();
    assert_eq!(all, recs);
    let range = Query { since: Some(EPOCH + 2 * SEC), until: Some(EPOCH + 5 * SEC), ..Default::default() };
    assert_eq!(ports(&s.query(&range).unwrap()), [2, 3, 4, 5]);
    assert_eq!(ports(&s.query(&Query { last: Some(3), ..Default::default() }).unwrap()), [7, 8, 9]);
    assert_eq!(ports(&s.query(&Query { first: Some(2), ..Default::default() }).unwrap()), [0, 1]);
    let q = parse_args(["--verdict", "denied", "--last", "2", "--until", "2024-05-06T07:00:06Z"], EPOCH).unwrap();
    assert_eq!(ports(&s.query(&q).unwrap()), [3, 5]);
    let st = s.stats().unwrap();
    assert_eq!((st.records, st.oldest_end_time, st.newest_end_time), (10, Some(EPOCH), Some(EPOCH + 9 * SEC)));
}

#[test]
fn evicts_by_age() {
    let opts = FlowStoreOptions { max_age: Duration::from_secs(5), ..Default::default() };
    let mut s = FlowStore::in_memory(opts).unwrap();
    let recs = records(10);
    // One append (one block) per record: eviction is by block.
    for r in &recs[..9] {
        s.append_at(std::slice::from_ref(r), 0).unwrap();
    }
    // now = EPOCH + 9 s: records ending before EPOCH + 4 s are too old.
    assert_eq!(s.append_at(&recs[9..], EPOCH + 9 * SEC).unwrap(), 4);
    assert_eq!(ports(&s.query(&Query::default()).unwrap()), [4, 5, 6, 7, 8, 9]);
    assert_eq!(s.maintain(EPOCH + 12 * SEC).unwrap(), 3);
    assert_eq!(ports(&s.query(&Query::default()).unwrap()), [7, 8, 9]);
    assert_eq!(s.stats().unwrap().evicted, 7);
}

#[test]
fn evicts_oldest_by_size_and_accounts_bytes_exactly() {
    let recs = records(20);
    // Blocks of 3 records (one append each): eviction removes whole blocks, oldest first.
    let size = |rs: &[FlowRecord]| {
        let mut b = Vec::new();
        porin_flow::codec::encode_block(rs.iter(), &mut b);
        16 + b.len() as u64
    };
    let budget: u64 = recs.chunks(3).skip(5).map(size).sum();
    let mut s = FlowStore::in_memory(FlowStoreOptions { max_bytes: budget, ..Default::default() }).unwrap();
    for chunk in recs.chunks(3) {
        s.append_at(chunk, EPOCH).unwrap();
        assert!(s.stats().unwrap().bytes <= budget);
    }
    let kept = s.query(&Query::default()).unwrap();
    assert_eq!(ports(&kept), [15, 16, 17, 18, 19]);
    assert_eq!(s.stats().unwrap().bytes, budget);
    assert_eq!(s.stats().unwrap().records, 5);
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows").join("flows.redb");
    let recs = records(6);
    {
        let mut s = FlowStore::open(&path, FlowStoreOptions::default()).unwrap();
        s.append_at(&recs[..3], EPOCH).unwrap();
        // A second handle in the same process is refused while the first is open.
        assert!(matches!(FlowStore::open(&path, FlowStoreOptions::default()), Err(porin_flow::Error::StoreLocked { .. })));
    }
    let mut s = FlowStore::open(&path, FlowStoreOptions::default()).unwrap();
    let st = s.stats().unwrap();
    assert_eq!(st.records, 3);
    assert!(st.bytes > 0 && st.file_bytes > 0);
    s.append_at(&recs[3..], EPOCH).unwrap();
    assert_eq!(s.query(&Query::default()).unwrap(), recs);
    drop(s);
    let s = FlowStore::open(&path, FlowStoreOptions::default()).unwrap();
    assert_eq!(s.stats().unwrap().records, 6);
}

/// A reader queries while the owner appends, from another thread.
#[test]
fn reader_sees_committed_appends() {
    let mut s = FlowStore::in_memory(FlowStoreOptions::default()).unwrap();
    let r = s.reader();
    let all = porin_flow::Query::default();
    assert!(r.query(&all).unwrap().is_empty());
    s.append_at(&records(5), 0).unwrap();
    let n = std::thread::spawn(move || r.query(&all).unwrap().len()).join().unwrap();
    assert_eq!(n, 5);
}

/// A store written by a build of format 1 (JSON values) opens, reads, takes new (binary) records and is
/// upgraded; a store of an unknown newer format is refused, not misread.
#[test]
fn reads_and_upgrades_format_1_and_refuses_newer_formats() {
    use redb::{Database, TableDefinition};
    const FLOWS: TableDefinition<'_, [u8; 16], &[u8]> = TableDefinition::new("flows");
    const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
    let dir = tempfile::tempdir().unwrap();
    let recs = records(4);
    let write_old = |path: &std::path::Path, format: u64| {
        let db = Database::create(path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(FLOWS).unwrap();
            let mut bytes = 0;
            for (seq, r) in recs[..2].iter().enumerate() {
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&r.end_time.to_be_bytes());
                k[8..].copy_from_slice(&(seq as u64).to_be_bytes());
                let v = serde_json::to_vec(r).unwrap();
                bytes += 16 + v.len() as u64;
                t.insert(k, v.as_slice()).unwrap();
            }
            let mut m = w.open_table(META).unwrap();
            m.insert("format", format).unwrap();
            m.insert("bytes", bytes).unwrap();
            m.insert("next_seq", 2).unwrap();
        }
        w.commit().unwrap();
    };
    let old = dir.path().join("old.redb");
    write_old(&old, 1);
    {
        let mut s = FlowStore::open(&old, FlowStoreOptions::default()).unwrap();
        assert_eq!(s.query(&Query::default()).unwrap(), recs[..2]);
        s.append_at(&recs[2..], EPOCH).unwrap();
        assert_eq!(s.query(&Query::default()).unwrap(), recs, "JSON and binary values side by side");
    }
    let db = Database::open(&old).unwrap();
    let r = db.begin_read().unwrap();
    use redb::{ReadableDatabase, ReadableTable};
    assert_eq!(r.open_table(META).unwrap().get("format").unwrap().unwrap().value(), 3, "upgraded on open");
    let t = r.open_table(FLOWS).unwrap();
    let tags: Vec<u8> = t.iter().unwrap().map(|x| x.unwrap().1.value()[0]).collect();
    assert_eq!(tags, [b'{', b'{', porin_flow::codec::TAG_BLOCK]);
    drop((t, r, db));
    let s = FlowStore::open(&old, FlowStoreOptions::default()).unwrap();
    assert_eq!(s.stats().unwrap().records, 4, "records counted across formats");
    drop(s);

    let newer = dir.path().join("newer.redb");
    write_old(&newer, 4);
    let err = FlowStore::open(&newer, FlowStoreOptions::default()).unwrap_err();
    assert!(matches!(err, porin_flow::Error::Corrupt { .. }) && err.to_string().contains("format 4"), "{err}");
}

/// Blocks are exact: appends whose records end out of order and overlap in time (so blocks overlap), queried
/// by time range, `--first`, `--last` and a filter, give what a sort of every record by (end time, append
/// order) gives.
#[test]
fn blocks_answer_like_one_record_per_key() {
    let base = records(40);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut r = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut s = FlowStore::in_memory(FlowStoreOptions::default()).unwrap();
    let mut all: Vec<FlowRecord> = Vec::new();
    for _ in 0..8 {
        // 1 to 300 records (up to three blocks), end times spread over 60 s with ties.
        let n = 1 + r(300) as usize;
        let batch: Vec<FlowRecord> = (0..n)
            .map(|_| {
                let mut x = base[r(base.len() as u64) as usize].clone();
                x.end_time = EPOCH + r(60) * SEC;
                x
            })
            .collect();
        s.append_at(&batch, 0).unwrap();
        all.extend(batch);
    }
    // The reference: stable sort by end time keeps the append order of ties.
    all.sort_by_key(|x| x.end_time);
    assert_eq!(s.query(&Query::default()).unwrap(), all);
    assert_eq!(s.stats().unwrap().records, all.len() as u64);
    assert_eq!(s.stats().unwrap().oldest_end_time, all.first().map(|x| x.end_time));
    let denied = parse_args(["--verdict", "denied"], EPOCH).unwrap().filter;
    for _ in 0..60 {
        let since = EPOCH + r(70) * SEC;
        let until = since + r(30) * SEC;
        let n = r(50) as usize;
        let filtered = r(2) == 0;
        let want: Vec<FlowRecord> = all
            .iter()
            .filter(|x| x.end_time >= since && x.end_time <= until && (!filtered || denied.matches(x)))
            .cloned()
            .collect();
        let filter = if filtered { denied.clone() } else { Default::default() };
        let q = Query { since: Some(since), until: Some(until), filter: filter.clone(), ..Default::default() };
        assert_eq!(s.query(&q).unwrap(), want);
        let first = Query { first: Some(n), ..q.clone() };
        assert_eq!(s.query(&first).unwrap(), want[..n.min(want.len())]);
        let last = Query { last: Some(n), ..q };
        assert_eq!(s.query(&last).unwrap(), want[want.len() - n.min(want.len())..]);
    }
}
