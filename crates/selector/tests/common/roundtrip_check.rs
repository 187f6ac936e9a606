// The check shared by the cargo-fuzz target (fuzz/fuzz_targets/selector_parse.rs)
// and the stable `fuzz_seeds` test, which includes this file by path.
//
// For any input that parses: the canonical text must parse back to an equal
// selector, print identically, and the compiled matcher must agree with the
// reference tree walk on label maps built from the selector's own keys and
// values (so that the interesting branches are reached).

use std::collections::BTreeMap;

use porin_selector::{Expr, Selector};

/// Panics if `data` is UTF-8 that parses but violates an invariant.
pub fn check_parse_round_trip(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sel) = Selector::parse(text) else {
        return;
    };
    let canon = sel.to_string();
    let again = match Selector::parse(&canon) {
        Ok(s) => s,
        Err(e) => panic!("canonical form {canon:?} of {text:?} does not parse: {e}"),
    };
    assert_eq!(
        sel, again,
        "round trip changed the tree; canonical {canon:?}"
    );
    assert_eq!(again.to_string(), canon, "canonical form is not stable");

    let keys: Vec<String> = sel.label_keys().into_iter().map(str::to_owned).collect();
    let mut values: Vec<String> = vec![String::new()];
    sel.expr().visit(&mut |e| match e {
        Expr::Eq(_, v)
        | Expr::Ne(_, v)
        | Expr::Contains(_, v)
        | Expr::StartsWith(_, v)
        | Expr::EndsWith(_, v) => values.push(v.clone()),
        Expr::In(_, set) | Expr::NotIn(_, set) => values.extend(set.iter().cloned()),
        _ => {}
    });
    values.truncate(16);
    let mut maps = vec![BTreeMap::new()];
    for (i, v) in values.iter().enumerate() {
        // All keys set to one value, and every other key dropped.
        let all: BTreeMap<String, String> = keys.iter().map(|k| (k.clone(), v.clone())).collect();
        let some = keys
            .iter()
            .enumerate()
            .filter(|(j, _)| (i + j) % 2 == 0)
            .map(|(_, k)| (k.clone(), v.clone()))
            .collect();
        maps.push(all);
        maps.push(some);
    }
    for m in &maps {
        assert_eq!(
            sel.matches(m),
            sel.expr().matches(m),
            "compiled and reference matchers disagree on {canon:?} with {m:?}"
        );
        assert_eq!(sel.matches(m), again.matches(m));
    }
}
