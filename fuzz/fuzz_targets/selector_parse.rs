//! Parses arbitrary bytes as a selector; whatever parses must round-trip
//! through its canonical form, and the compiled matcher must agree with the
//! reference evaluator. The check itself is shared with the selector crate's
//! stable `fuzz_seeds` test.

#![no_main]

#[path = "../../crates/selector/tests/common/roundtrip_check.rs"]
mod roundtrip_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roundtrip_check::check_parse_round_trip(data);
});
