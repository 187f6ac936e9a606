//! Property tests: canonical-form round trip, agreement between the compiled
//! matcher and the reference evaluator, and a parser that never panics.

#[path = "common/roundtrip_check.rs"]
mod roundtrip_check;

use std::collections::{BTreeMap, BTreeSet};

use porin_selector::{Expr, Selector};
use proptest::prelude::*;

/// A few keys, so random label maps often hit the ones the selector tests.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "app", "k8s.io/name", "x-y_z", "in", "not", "contains", "has", "all"])
            .prop_map(str::to_owned),
        1 => "[A-Za-z0-9_./-]{1,12}",
    ]
}

/// Values, including quotes of either kind (never both), blanks, operators
/// and non-ASCII text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["", "v", "w", "web", "a b", "x\ty", "é", "&&", "||", "(", "}", ",", "\\"])
            .prop_map(str::to_owned),
        1 => "[a-z (){},!&|=\\\\]{0,6}\"?[a-z ]{0,3}",
        1 => "[a-z '(){},]{0,6}",
    ]
}

fn value_set() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(value(), 0..4)
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        key().prop_map(Expr::Has),
        (key(), value()).prop_map(|(k, v)| Expr::Eq(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::Ne(k, v)),
        (key(), value_set()).prop_map(|(k, s)| Expr::In(k, s)),
        (key(), value_set()).prop_map(|(k, s)| Expr::NotIn(k, s)),
        (key(), value()).prop_map(|(k, v)| Expr::Contains(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
        (key(), value()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
    ]
}

/// Raw (not normalised) trees: nested And/Or of the same kind, double
/// negations and empty or single-operand groups all occur.
fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::And),
            prop::collection::vec(inner, 0..4).prop_map(Expr::Or),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), value(), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonical_form_round_trips(e in expr()) {
        let sel = Selector::from_expr(e).unwrap();
        let text = sel.to_string();
        let parsed = Selector::parse(&text);
        prop_assert!(parsed.is_ok(), "{text:?} does not parse: {}", parsed.unwrap_err());
        let parsed = parsed.unwrap();
        prop_assert_eq!(&parsed, &sel, "text {:?}", text);
        prop_assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn parsed_compiled_and_reference_agree(e in expr(), maps in prop::collection::vec(label_map(), 1..8)) {
        let sel = Selector::from_expr(e.clone()).unwrap();
        let parsed = Selector::parse(&sel.to_string()).unwrap();
        for m in &maps {
            let want = e.matches(m); // the raw, un-normalised tree
            prop_assert_eq!(sel.expr().matches(m), want, "normalised tree, {:?}", m);
            prop_assert_eq!(sel.matches(m), want, "compiled, {} on {:?}", sel, m);
            prop_assert_eq!(parsed.matches(m), want, "parsed, {} on {:?}", sel, m);
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(s in any::<String>()) {
        let _ = Selector::parse(&s);
    }

    #[test]
    fn parser_never_panics_on_selector_like_text(
        s in "[ \t!&|(){},=\"'a-c]{0,24}|(has|all|global|in|not|contains|starts|ends|with|[ab]|[ !&|(){},=\"'])*"
    ) {
        roundtrip_check::check_parse_round_trip(s.as_bytes());
    }

    #[test]
    fn errors_point_inside_the_input(s in "[ a-c!&|(){}=\"']{0,20}") {
        if let Err(e) = Selector::parse(&s) {
            prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1, "{e} for {s:?}");
        }
    }

    #[test]
    fn and_is_conjunction(a in expr(), b in expr(), m in label_map()) {
        let (sa, sb) = (Selector::from_expr(a).unwrap(), Selector::from_expr(b).unwrap());
        let want = sa.matches(&m) && sb.matches(&m);
        let both = sa.and(sb);
        prop_assert_eq!(both.matches(&m), want);
        prop_assert_eq!(Selector::parse(&both.to_string()).unwrap(), both);
    }
}
