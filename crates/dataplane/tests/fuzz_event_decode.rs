//! The flow-event decoder against hostile input, on stable and in bounded time: the committed
//! corpus (fuzz/seeds/flow_event_decode, also the cargo-fuzz target's seeds), then seeded random
//! buffers and seeded mutations of valid records. See support/event_decode_check.rs for what is
//! checked.

#[path = "support/event_decode_check.rs"]
mod event_decode_check;

use event_decode_check::check_event_decode;
use porin_dataplane::abi::RawEvent;
use porin_dataplane::{Event, EventType};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/flow_event_decode");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn corpus_passes_and_covers_accepted_and_refused_records() {
    let c = corpus();
    assert!(c.len() >= 10, "corpus has {} files", c.len());
    let mut accepted = 0;
    for (name, data) in &c {
        eprintln!("{name}");
        check_event_decode(data);
        accepted += usize::from(Event::decode(data).is_ok());
    }
    // the corpus must exercise both sides of the decoder
    assert!(accepted >= 4 && accepted < c.len(), "{accepted} of {} accepted", c.len());
}

#[test]
fn seeded_random_and_mutated_records() {
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, d)| d).filter(|d| Event::decode(d).is_ok()).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut kinds) = (0u32, std::collections::BTreeSet::new());
    for i in 0..20_000 {
        let data = if i % 4 == 0 {
            // random bytes of random length around the record size
            let n = rng.below(std::mem::size_of::<RawEvent>() * 2);
            (0..n).map(|_| rng.next() as u8).collect::<Vec<u8>>()
        } else {
            // a valid record with 1-4 bytes changed, sometimes truncated or extended
            let mut d = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(d.len());
                d[at] = match rng.below(3) {
                    0 => rng.next() as u8,
                    1 => d[at] ^ (1 << rng.below(8)),
                    _ => [0, 1, 2, 3, 4, 5, 6, 16, 28, 255][rng.below(10)],
                };
            }
            match rng.below(8) {
                0 => d.truncate(rng.below(d.len())),
                1 => d.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
                _ => {}
            }
            d
        };
        check_event_decode(&data);
        if let Ok(e) = Event::decode(&data) {
            accepted += 1;
            kinds.insert(e.kind as u8);
        }
    }
    // the mutations keep enough records valid to test the accepted path for every kind
    assert!(accepted > 2_000, "{accepted}");
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), [EventType::NewAllowed as u8, 2, 3, 4]);
}
