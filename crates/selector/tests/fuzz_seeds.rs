//! Runs the fuzz target's check over the committed regression seeds, so that
//! stable CI exercises them without cargo-fuzz or nightly.

#[path = "common/roundtrip_check.rs"]
mod roundtrip_check;

use std::path::Path;

#[test]
fn fuzz_seeds_pass_the_round_trip_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/selector_parse");
    let mut seen = 0;
    let mut parsed = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| roundtrip_check::check_parse_round_trip(&data));
        assert!(result.is_ok(), "seed {} failed the check", path.display());
        seen += 1;
        if std::str::from_utf8(&data).is_ok_and(|s| porin_selector::Selector::parse(s).is_ok()) {
            parsed += 1;
        }
    }
    // Guard against the directory moving or emptying, which would make this
    // test pass vacuously; and keep both accepted and rejected inputs in it.
    assert!(seen >= 10, "only {seen} seeds found in {}", dir.display());
    assert!(
        parsed >= 5 && parsed < seen,
        "{parsed} of {seen} seeds parse"
    );
}
