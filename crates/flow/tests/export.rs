//! JSON-lines export: size-based rotation, N files kept, lines never split.

mod common;

use common::*;
use porin_abi::{Direction, EventType};
use porin_flow::{AggregationLevel, FlowRecord, JsonlExporter, JsonlOptions, Pipeline};

fn record(i: u16) -> FlowRecord {
    let mut p = Pipeline::new(cfg(AggregationLevel::FiveTuple), enricher());
    p.push(&ev(EventType::NewAllowed, Direction::Egress, 1.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", 30000 + i, "10.0.0.13", 5432));
    p.flush(2 * SEC).remove(0)
}

#[test]
fn rotates_by_size_and_keeps_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let line = serde_json::to_vec(&record(0)).unwrap().len() as u64 + 1;
    // Two lines fit, the third rotates.
    let opts = JsonlOptions { max_bytes: 2 * line, keep: 2, ..JsonlOptions::new(dir.path()) };
    let mut x = JsonlExporter::open(opts.clone()).unwrap();
    for i in 0..7 {
        x.append(&[record(i)]).unwrap();
    }
    // 7 lines: current has line 6; .1 has 4,5; .2 has 2,3; 0,1 were deleted.
    let read = |name: &str| -> Vec<u16> {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<FlowRecord>(l).unwrap().src.port.unwrap() - 30000)
            .collect()
    };
    assert_eq!(read("flows.jsonl"), [6]);
    assert_eq!(read("flows.jsonl.1"), [4, 5]);
    assert_eq!(read("flows.jsonl.2"), [2, 3]);
    assert!(!dir.path().join("flows.jsonl.3").exists());
    assert_eq!(x.files().len(), 3);
    // A batch larger than the limit is written whole to a fresh file.
    x.append(&[record(7), record(8), record(9)]).unwrap();
    assert_eq!(read("flows.jsonl"), [7, 8, 9]);
    assert_eq!(read("flows.jsonl.1"), [6]);
    // Reopening appends to the current file.
    drop(x);
    let mut x = JsonlExporter::open(opts).unwrap();
    x.append(&[record(10)]).unwrap();
    assert_eq!(read("flows.jsonl"), [10]);
    assert_eq!(read("flows.jsonl.1"), [7, 8, 9]);
}
