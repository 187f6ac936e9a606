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
        porin_flow::codec::encode_dict_block(rs, &mut b);
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
    assert_eq!(r.open_table(META).unwrap().get("format").unwrap().unwrap().value(), 4, "upgraded on open");
    let t = r.open_table(FLOWS).unwrap();
    let tags: Vec<u8> = t.iter().unwrap().map(|x| x.unwrap().1.value()[0]).collect();
    assert_eq!(tags, [b'{', b'{', porin_flow::codec::TAG_DICT_BLOCK]);
    drop((t, r, db));
    let s = FlowStore::open(&old, FlowStoreOptions::default()).unwrap();
    assert_eq!(s.stats().unwrap().records, 4, "records counted across formats");
    drop(s);

    let newer = dir.path().join("newer.redb");
    write_old(&newer, 5);
    let err = FlowStore::open(&newer, FlowStoreOptions::default()).unwrap_err();
    assert!(matches!(err, porin_flow::Error::Corrupt { .. }) && err.to_string().contains("format 5"), "{err}");
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

/// Random events of every kind (both directions, v4 and v6, TCP/UDP/ICMP, closes from either side, revocations,
/// progress, unknown endpoints, identities and rules), fed to a pipeline round by round.
fn random_rounds(seed: u64, rounds: usize) -> Vec<Vec<porin_abi::Event>> {
    use EventType::*;
    let mut seed = seed;
    let mut r = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let eps = [WEB1, WEB2, DB, 99];
    let peers = [(ID_DB, "10.0.0.13", "fd00::13"), (ID_WEB1, "10.0.0.11", "fd00::11"), (ID_WEB2, "10.0.0.12", "fd00::12"), (ID_WORLD, "8.8.8.8", "2001:db8::8"), (7777, "10.9.9.9", "fd00::99")];
    let rules = [RULE_ALLOW_DB, RULE_DENY_WORLD, RULE_DEFAULT_DENY, 555];
    let mut open: Vec<porin_abi::Event> = Vec::new();
    let mut out = Vec::new();
    for round in 0..rounds {
        let mut evs = Vec::new();
        let t0 = round as f64 * 10.0;
        for _ in 0..300 {
            let ts = t0 + r(10) as f64 + [0.0, 0.5][r(2) as usize];
            let pick = r(10);
            if pick < 3 && !open.is_empty() {
                let i = r(open.len() as u64) as usize;
                let mut c = if r(4) == 0 { open[i].clone() } else { open.swap_remove(i) };
                c.kind = [Close, Close, Revoked, Progress][r(4) as usize];
                c.ts_ns = (ts * SEC as f64) as u64;
                c.first_ts_ns = c.ts_ns;
                c.packets = 1 + r(20);
                c.bytes = c.packets * 100;
                if r(2) == 0 {
                    // seen from the reply side
                    std::mem::swap(&mut c.src, &mut c.dst);
                    std::mem::swap(&mut c.sport, &mut c.dport);
                    c.dir = if c.dir == Direction::Egress { Direction::Ingress } else { Direction::Egress };
                }
                evs.push(c);
                continue;
            }
            let ep = eps[r(eps.len() as u64) as usize];
            let (peer, p4, p6) = peers[r(peers.len() as u64) as usize];
            let local4 = format!("10.0.0.{}", ep % 100);
            let local6 = format!("fd00::{}", ep % 100);
            let v6 = r(4) == 0;
            let (l, p) = if v6 { (local6.as_str(), p6) } else { (local4.as_str(), p4) };
            let dir = if r(2) == 0 { Direction::Egress } else { Direction::Ingress };
            let kind = if pick < 7 { NewAllowed } else { Denied };
            let rule = rules[r(rules.len() as u64) as usize];
            let sport = 40000 + r(6) as u16;
            let dport = [53, 443, 5432][r(3) as usize];
            let (src, dst) = if dir == Direction::Egress { (l, p) } else { (p, l) };
            let mut e = ev(kind, dir, ts, ep, peer, rule, src, sport, dst, dport);
            match r(6) {
                0 => e.proto = 17,
                1 => {
                    e.proto = if v6 { 58 } else { 1 };
                    e.sport = 0;
                    e.dport = 8 << 8;
                }
                _ => {}
            }
            if kind == Denied {
                e.packets = 1 + r(3);
                e.first_ts_ns = e.ts_ns.saturating_sub(r(2) * SEC);
            } else {
                open.push(e.clone());
            }
            evs.push(e);
        }
        out.push(evs);
    }
    out
}

/// Writes `rounds` of records as a format-3 build did (blocks of 96 version-1 records, `codec::encode_block`).
fn write_format_3(path: &std::path::Path, rounds: &[Vec<FlowRecord>]) {
    use redb::{Database, TableDefinition};
    const FLOWS: TableDefinition<'_, [u8; 16], &[u8]> = TableDefinition::new("flows");
    const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
    let db = Database::create(path).unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(FLOWS).unwrap();
        let (mut bytes, mut seq, mut span, mut records) = (0u64, 0u64, 0u64, 0u64);
        for recs in rounds {
            let mut order: Vec<&FlowRecord> = recs.iter().collect();
            order.sort_by_key(|r| r.end_time);
            for block in order.chunks(96) {
                let mut v = Vec::new();
                porin_flow::codec::encode_block(block.iter().copied(), &mut v);
                let last = block[block.len() - 1].end_time;
                span = span.max(last - block[0].end_time);
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&last.to_be_bytes());
                k[8..].copy_from_slice(&seq.to_be_bytes());
                seq += 1;
                bytes += 16 + v.len() as u64;
                records += block.len() as u64;
                t.insert(k, v.as_slice()).unwrap();
            }
        }
        let mut m = w.open_table(META).unwrap();
        for (k, v) in [("format", 3), ("bytes", bytes), ("next_seq", seq), ("span", span), ("records", records)] {
            m.insert(k, v).unwrap();
        }
    }
    w.commit().unwrap();
}

/// The store's format-4 path is exact. A random workload runs through two identical pipelines: one builds its
/// records and appends them (`append_at`, the path of earlier formats), the other appends each flush encoded from
/// the aggregator's entries (`append_batch_at`, what the agent's store does). A third store holds the same records
/// as a format-3 build wrote them, and is upgraded on open. All three answer every query (time ranges, `--first`,
/// `--last`, filters) exactly as the reference does: every flushed record, stable-sorted by end time.
#[test]
fn batch_encoding_answers_like_records_and_format_3() {
    let dir = tempfile::tempdir().unwrap();
    for (n, level) in [AggregationLevel::FiveTuple, AggregationLevel::Workload].into_iter().enumerate() {
        let mut pa = Pipeline::new(cfg(level), enricher());
        let mut pb = Pipeline::new(cfg(level), enricher());
        let mut a = FlowStore::in_memory(FlowStoreOptions::default()).unwrap();
        let mut b = FlowStore::in_memory(FlowStoreOptions::default()).unwrap();
        let mut rounds = Vec::new();
        for (i, evs) in random_rounds(0x2545_f491_4f6c_dd1d + n as u64, 6).into_iter().enumerate() {
            for e in &evs {
                pa.push(e);
                pb.push(e);
            }
            let now = (i as u64 + 1) * 10 * SEC;
            let recs = pa.flush(now);
            let batch = pb.flush_batch(now);
            assert_eq!(batch.len(), recs.len());
            assert_eq!(batch.to_records(), recs, "a batch builds the records flush returns");
            a.append_at(&recs, 0).unwrap();
            b.append_batch_at(&batch, 0).unwrap();
            rounds.push(recs);
        }
        let mut all: Vec<FlowRecord> = rounds.iter().flatten().cloned().collect();
        assert!(all.len() > 500, "{} records", all.len());
        assert!(all.iter().any(|r| r.src.kind == porin_flow::EndpointKind::Unknown || r.dst.kind == porin_flow::EndpointKind::Unknown));
        assert!(all.iter().any(|r| r.icmp.is_some()) && all.iter().any(|r| r.ip_family == porin_flow::IpFamily::V6));
        assert!(all.iter().any(|r| r.drop_reason.as_deref() == Some("drop_revoked")));
        all.sort_by_key(|x| x.end_time);
        let old = dir.path().join(format!("format3-{n}.redb"));
        write_format_3(&old, &rounds);
        let c = FlowStore::open(&old, FlowStoreOptions::default()).unwrap();
        for s in [&a, &b, &c] {
            assert_eq!(s.query(&Query::default()).unwrap(), all);
            let st = s.stats().unwrap();
            assert_eq!((st.records, st.oldest_end_time, st.newest_end_time), (all.len() as u64, all.first().map(|x| x.end_time), all.last().map(|x| x.end_time)));
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 + n as u64;
        let mut r = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let filters = [
            vec!["--verdict", "denied"],
            vec!["--from-pod", "prod/web-7d9f-abcde"],
            vec!["--namespace", "prod", "--not", "--verdict", "allowed"],
            vec!["--protocol", "udp"],
            vec!["--label", "app=web"],
        ];
        for _ in 0..80 {
            let since = EPOCH + r(70) * SEC;
            let until = since + r(30) * SEC;
            let filter = match r(filters.len() as u64 + 1) as usize {
                0 => Default::default(),
                i => parse_args(filters[i - 1].iter().copied(), EPOCH).unwrap().filter,
            };
            let want: Vec<FlowRecord> = all.iter().filter(|x| x.end_time >= since && x.end_time <= until && filter.matches(x)).cloned().collect();
            let k = r(40) as usize;
            let q = Query { since: Some(since), until: Some(until), filter, ..Default::default() };
            for s in [&a, &b, &c] {
                assert_eq!(s.query(&q).unwrap(), want);
                assert_eq!(s.query(&Query { first: Some(k), ..q.clone() }).unwrap(), want[..k.min(want.len())]);
                assert_eq!(s.query(&Query { last: Some(k), ..q.clone() }).unwrap(), want[want.len() - k.min(want.len())..]);
            }
        }
        // The upgraded format-3 store takes format-4 blocks next to its old ones and reads both.
        let mut c = c;
        let more: Vec<FlowRecord> = all.iter().take(50).cloned().collect();
        c.append_at(&more, 0).unwrap();
        let mut both = all.clone();
        both.extend(more);
        both.sort_by_key(|x| x.end_time);
        assert_eq!(c.query(&Query::default()).unwrap(), both);
        assert_eq!(c.stats().unwrap().records, both.len() as u64);
    }
}

/// A stored block changed on disk (one byte anywhere in the value) is reported as corrupt by queries, never read as
/// other records.
#[test]
fn a_changed_block_is_an_error_not_other_records() {
    use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
    const FLOWS: TableDefinition<'_, [u8; 16], &[u8]> = TableDefinition::new("flows");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.redb");
    let recs = records(30);
    FlowStore::open(&path, FlowStoreOptions::default()).unwrap().append_at(&recs, 0).unwrap();
    let (k, v) = {
        let db = Database::open(&path).unwrap();
        let r = db.begin_read().unwrap();
        let t = r.open_table(FLOWS).unwrap();
        let (k, v) = t.first().unwrap().unwrap();
        (k.value(), v.value().to_vec())
    };
    assert_eq!(v[0], porin_flow::codec::TAG_DICT_BLOCK);
    for at in [1, v.len() / 3, v.len() / 2, v.len() - 9, v.len() - 1] {
        let mut bad = v.clone();
        bad[at] ^= 0x04;
        {
            let db = Database::open(&path).unwrap();
            let w = db.begin_write().unwrap();
            w.open_table(FLOWS).unwrap().insert(k, bad.as_slice()).unwrap();
            w.commit().unwrap();
        }
        let s = FlowStore::open(&path, FlowStoreOptions::default()).unwrap();
        let err = s.query(&Query::default()).unwrap_err();
        assert!(matches!(err, porin_flow::Error::Corrupt { .. }), "byte {at}: {err}");
    }
}
