//! Decodes arbitrary bytes as a flow-event ring-buffer record; whatever decodes
//! must re-encode canonically and decode to the same event. The check is shared
//! with the dataplane crate's stable `fuzz_event_decode` test.
//!
//!   cargo +nightly fuzz run flow_event_decode fuzz/seeds/flow_event_decode

#![no_main]

#[path = "../../crates/dataplane/tests/support/event_decode_check.rs"]
mod event_decode_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    event_decode_check::check_event_decode(data);
});
