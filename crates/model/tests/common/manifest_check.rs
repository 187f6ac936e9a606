//! The manifest loader's fuzz check, shared by the cargo-fuzz target `manifest_load` (nightly) and the stable
//! `fuzz_manifests` test: for any bytes, loading and validating never panics, terminates, and every error is
//! located (the input's name; a document number unless the whole input failed to parse) and worded in user
//! terms, and none twice. A set with any error yields nothing (the strict entry point returns only errors).

use std::collections::BTreeSet;

/// The input name the check loads under.
pub const SOURCE: &str = "fuzz.yaml";

/// Messages that describe a whole input rather than one document.
fn whole_input(message: &str) -> bool {
    message.starts_with("invalid YAML") || message.starts_with("invalid JSON")
}

pub fn check_manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check_text(text);
}

pub fn check_text(text: &str) {
    let (docs, errors) = porin_model::parse_documents_partial(SOURCE, text);
    let validation = porin_model::validate_set(&docs, &BTreeSet::new()).err().unwrap_or_default();
    for e in errors.iter().chain(validation.iter()) {
        assert_eq!(e.input, SOURCE, "{e}");
        assert!(!e.message.is_empty(), "{e:?}");
        if e.doc.is_none() {
            assert!(whole_input(&e.message), "an error of one document must name it: {e}");
        }
        for rust in ["struct ", "untagged enum", "unknown variant", "variant identifier"] {
            assert!(!e.message.contains(rust), "Rust terms in {e}");
        }
    }
    // No error is reported twice (a decoding error and a validation error of the same field, a failed Tier
    // and its stand-in).
    let mut seen = std::collections::BTreeSet::new();
    for e in errors.iter().chain(validation.iter()) {
        assert!(seen.insert(e.to_string()), "reported twice: {e}");
    }
    for d in &docs {
        assert_eq!(d.source, SOURCE);
        assert!(d.doc >= 1);
    }
    // The strict entry point agrees: errors exactly when the partial one had any.
    match porin_model::parse_documents(SOURCE, text) {
        Ok(strict) => {
            assert!(errors.is_empty());
            assert_eq!(strict.len(), docs.len());
        }
        Err(e) => assert_eq!(e.len(), errors.len()),
    }
}
