//! Loads arbitrary bytes as a manifest stream and validates what loads: no panic, and every error names the
//! input, the document (unless the whole input failed to parse) and is worded in user terms. The check itself
//! is shared with porin-model's stable `fuzz_manifests` test, which runs it over the committed corpus
//! (`fuzz/seeds/manifest_load`) and seeded mutations of it.

#![no_main]

#[path = "../../crates/model/tests/common/manifest_check.rs"]
mod manifest_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    manifest_check::check_manifest(data);
});
