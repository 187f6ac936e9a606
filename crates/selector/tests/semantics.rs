//! Matching semantics (missing labels, operators, negation, precedence), the
//! Kubernetes LabelSelector conversion and the helper methods.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use porin_selector::{Expr, LabelSelectorRequirement, Selector};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// Checks the compiled matcher, the reference evaluator and the selector
/// re-parsed from its canonical form all give `want`.
#[track_caller]
fn check(s: &str, pairs: &[(&str, &str)], want: bool) {
    let selector = sel(s);
    let l = labels(pairs);
    assert_eq!(selector.matches(&l), want, "{s:?} on {pairs:?} (compiled)");
    assert_eq!(
        selector.expr().matches(&l),
        want,
        "{s:?} on {pairs:?} (reference)"
    );
    assert_eq!(
        sel(&selector.to_string()).matches(&l),
        want,
        "{s:?} on {pairs:?} (canonical)"
    );
}

#[test]
fn missing_label_table() {
    let absent: &[(&str, &str)] = &[("other", "v")];
    // (selector, when k is absent, when k = "v", when k = "w")
    let table = [
        (r#"k == "v""#, false, true, false),
        (r#"k != "v""#, true, false, true),
        (r#"k in {"v", "x"}"#, false, true, false),
        (r#"k not in {"v", "x"}"#, true, false, true),
        (r#"k in {"v"}"#, false, true, false),
        (r#"k not in {"v"}"#, true, false, true),
        (r#"k in {}"#, false, false, false),
        (r#"k not in {}"#, true, true, true),
        (r#"k contains "v""#, false, true, false),
        (r#"k starts with "v""#, false, true, false),
        (r#"k ends with "v""#, false, true, false),
        ("has(k)", false, true, true),
        ("!has(k)", true, false, false),
        (r#"!k == "v""#, true, false, true),
        (r#"!k != "v""#, false, true, false),
        (r#"!k in {"v"}"#, true, false, true),
        (r#"!k not in {"v"}"#, false, true, false),
        (r#"k contains """#, false, true, true),
    ];
    for (s, when_absent, when_v, when_w) in table {
        check(s, absent, when_absent);
        check(s, &[], when_absent);
        check(s, &[("k", "v")], when_v);
        check(s, &[("k", "w")], when_w);
    }
}

#[test]
fn string_operators() {
    check(r#"a contains "a""#, &[("a", "bab")], true);
    check(r#"a contains "a""#, &[("a", "b")], false);
    check(r#"a contains "a""#, &[("b", "aaa")], false);
    check(r#"a starts with "a""#, &[("a", "abb")], true);
    check(r#"a starts with "a""#, &[("a", "baa")], false);
    check(r#"a ends with "a""#, &[("a", "bba")], true);
    check(r#"a ends with "a""#, &[("a", "aab")], false);
    check(r#"a == """#, &[("a", "")], true);
    check(r#"a == """#, &[], false);
    check(r#"a starts with "ab""#, &[("a", "a")], false);
}

#[test]
fn sets_with_quotes() {
    let s = r#"a in {"'", '"', "c"}"#;
    for v in ["c", "\"", "'"] {
        check(s, &[("a", v)], true);
    }
    check(s, &[("a", "e")], false);
    check(s, &[], false);
    let s = r#"a not in {"'", '"', "c"}"#;
    for v in ["c", "\"", "'"] {
        check(s, &[("a", v)], false);
    }
    check(s, &[("a", "e")], true);
    check(s, &[], true);
}

#[test]
fn many_element_sets_use_exact_membership() {
    let s = r#"a in {"a1", "a10", "a2", "b", "z", ""}"#;
    for v in ["a1", "a10", "a2", "b", "z", ""] {
        check(s, &[("a", v)], true);
    }
    for v in ["a", "a3", "a100", "c", "Z", " "] {
        check(s, &[("a", v)], false);
    }
}

#[test]
fn boolean_structure() {
    let both = &[("a", "a1"), ("b", "b1")];
    check(r#"a == 'a1' && b == 'b1'"#, both, true);
    check(r#"a == 'a1' && b != 'b1'"#, both, false);
    check(r#"a != 'a1' && !b == 'b1'"#, both, false);
    check(r#"!a == 'a1' && b == 'b1'"#, both, false);
    check(r#"a == 'a1' || b != 'b1'"#, both, true);
    check(r#"a != 'a1' || b != 'b1'"#, both, false);
    check(r#"! a == 'a1' || ! b == 'b1'"#, both, false);
    check("has(a) && !has(b)", &[("a", "a")], true);
    check("!(!has(a) || has(b))", &[("a", "a")], true);
    check("!(has(b) || !has(a))", &[("a", "a")], true);
    check("!(has(b) || !has(a))", &[("a", "a"), ("b", "")], false);
}

#[test]
fn precedence_changes_the_verdict() {
    // a || (b && c): true when only a holds; (a || b) && c would be false.
    let only_a = &[("a", "1")];
    check(r#"a == "1" || b == "2" && c == "3""#, only_a, true);
    check(r#"(a == "1" || b == "2") && c == "3""#, only_a, false);
    // (a && b) || c: true when only c holds; a && (b || c) would be false.
    let only_c = &[("c", "3")];
    check(r#"a == "1" && b == "2" || c == "3""#, only_c, true);
    check(r#"a == "1" && (b == "2" || c == "3")"#, only_c, false);
    // ! binds tighter than &&: (!a) && b, not !(a && b).
    check(r#"!a == "1" && b == "2""#, &[("a", "0")], false);
    check(r#"!(a == "1" && b == "2")"#, &[("a", "0")], true);
}

#[test]
fn negation_scope() {
    // "!a in {"a"}" is "!(a in {"a"})", so it matches {a: b}.
    check(r#"!a in {"a"}"#, &[("a", "b")], true);
    check(r#"!a in {"a"}"#, &[("a", "a")], false);
    check("!!has(b)", &[("a", "b")], false);
    check("!! ! has(a)", &[("a", "b")], false);
    check("!!!has(a)", &[("b", "b")], true);
}

#[test]
fn all_global_and_blank() {
    for s in ["", " ", "all()", " all()", "global()", "all() && global()"] {
        check(s, &[], true);
        check(s, &[("a", "b")], true);
    }
    check("!all()", &[], false);
    check("!global()", &[("a", "b")], false);
}

#[test]
fn label_sources() {
    let s = sel(r#"app == "web" && !has(x)"#);
    let mut h: HashMap<String, String> = HashMap::new();
    h.insert("app".into(), "web".into());
    assert!(s.matches(&h));
    assert!(s.matches(&&h));
    let b: BTreeMap<&str, &str> = [("app", "web"), ("x", "1")].into_iter().collect();
    assert!(!s.matches(&b));
    let dynamic: &dyn porin_selector::Labels = &h;
    assert!(s.matches(dynamic));
}

// ---- helpers ----------------------------------------------------------

#[test]
fn is_all() {
    assert!(Selector::all().is_all());
    assert!(sel("").is_all());
    assert!(sel(" ( all( ) ) ").is_all());
    assert!(Selector::default().is_all());
    assert!(!sel("global()").is_all());
    assert!(!sel("!all()").is_all());
    assert!(!sel("has(a)").is_all());
    assert!(!sel("all() && all()").is_all());
}

#[test]
fn uses_global() {
    assert!(sel("global()").uses_global());
    assert!(sel(r#"a == "b" || !(has(c) && global())"#).uses_global());
    assert!(!sel(r#"a == "b" || !(has(c) && all())"#).uses_global());
    assert!(!sel(r#"global == "x""#).uses_global());
    assert!(!Selector::all().uses_global());
}

#[test]
fn and_helper() {
    let a = sel(r#"a == "1""#);
    let b = sel(r#"b == "2" || c == "3""#);
    assert_eq!(Selector::all().and(a.clone()), a);
    assert_eq!(a.clone().and(Selector::all()), a);
    assert_eq!(Selector::all().and(Selector::all()), Selector::all());
    let ab = a.clone().and(b.clone());
    assert_eq!(ab.to_string(), r#"a == "1" && (b == "2" || c == "3")"#);
    assert_eq!(sel(&ab.to_string()), ab);
    // Conjunctions flatten.
    let abc = ab.clone().and(sel(r#"d == "4" && e == "5""#));
    assert!(matches!(abc.expr(), Expr::And(items) if items.len() == 4));
    assert!(abc.matches(&labels(&[("a", "1"), ("c", "3"), ("d", "4"), ("e", "5")])));
    assert!(!abc.matches(&labels(&[("a", "1"), ("c", "3"), ("d", "4")])));
}

#[test]
fn label_keys() {
    let s = sel(
        r#"a == "1" && (b in {"x"} || !has(c)) && d not in {} || e contains "k" || a != "2" || global()"#,
    );
    let want: BTreeSet<&str> = ["a", "b", "c", "d", "e"].into_iter().collect();
    assert_eq!(s.label_keys(), want);
    assert!(Selector::all().label_keys().is_empty());
}

#[test]
fn equality_and_hash_follow_the_canonical_form() {
    use std::collections::HashSet;
    let set: HashSet<Selector> = [
        r#"a in {"y", "x", "x"}"#,
        r#"a in {"x","y"}"#,
        r#"(a in {'x', 'y'})"#,
        r#"!!a in {"x", "y"}"#,
    ]
    .iter()
    .map(|s| sel(s))
    .collect();
    assert_eq!(set.len(), 1);
    assert_ne!(
        sel(r#"a == "1" && b == "2""#),
        sel(r#"b == "2" && a == "1""#)
    );
}

#[test]
fn from_expr_normalises_and_validates() {
    let e = Expr::And(vec![
        Expr::And(vec![Expr::Has("a".into())]),
        Expr::Not(Box::new(Expr::Not(Box::new(Expr::Has("b".into()))))),
    ]);
    let s = Selector::from_expr(e).unwrap();
    assert_eq!(
        s.expr(),
        &Expr::And(vec![Expr::Has("a".into()), Expr::Has("b".into())])
    );
    assert_eq!(s.to_string(), "has(a) && has(b)");

    assert_eq!(
        Selector::from_expr(Expr::Or(vec![])).unwrap().to_string(),
        "!all()"
    );
    assert!(Selector::from_expr(Expr::And(vec![])).unwrap().is_all());

    let bad_key = Selector::from_expr(Expr::Has("a b".into())).unwrap_err();
    assert_eq!(bad_key.column, 0);
    assert!(
        bad_key
            .to_string()
            .starts_with(r#"label "a b": character ' '"#),
        "{bad_key}"
    );
    assert!(Selector::from_expr(Expr::Has(String::new())).is_err());
    assert!(Selector::from_expr(Expr::Has("k".repeat(513))).is_err());
    let both_quotes = Expr::Eq("a".into(), r#"it's "x""#.into());
    assert!(
        Selector::from_expr(both_quotes)
            .unwrap_err()
            .message
            .contains("both ' and \"")
    );

    // Alternating And/Or: each Or under an And costs one pair of parentheses.
    let nested = |levels: usize| {
        let mut e = Expr::Has("a".into());
        for i in 0..levels {
            e = if i % 2 == 0 {
                Expr::And(vec![e, Expr::Has("b".into())])
            } else {
                Expr::Or(vec![e, Expr::Has("c".into())])
            };
        }
        e
    };
    let max_parens = |s: &str| {
        // Grouping parentheses only: drop the has(..) terms first.
        s.replace("has(a)", "a")
            .replace("has(b)", "b")
            .replace("has(c)", "c")
            .chars()
            .scan(0i32, |d, c| {
                *d += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                Some(*d)
            })
            .max()
            .unwrap_or(0)
    };
    let at_limit = Selector::from_expr(nested(201)).unwrap();
    assert_eq!(max_parens(&at_limit.to_string()), 100);
    assert_eq!(Selector::parse(&at_limit.to_string()).unwrap(), at_limit);
    let over = Selector::from_expr(nested(203)).unwrap_err();
    assert!(
        over.message
            .contains("nests 101 parentheses deep; at most 100"),
        "{over}"
    );
}

#[test]
fn serde_uses_the_canonical_text() {
    let s = sel(r#"a   in {"y","x"}"#);
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        r#""a in {\"x\", \"y\"}""#
    );
    let back: Selector = serde_json::from_str(r#""a in {\"x\", \"y\"}""#).unwrap();
    assert_eq!(back, s);
    let err = serde_json::from_str::<Selector>(r#""a ==""#).unwrap_err();
    assert!(
        err.to_string()
            .contains("column 5: expected a quoted string after '=='"),
        "{err}"
    );
}

// ---- Kubernetes LabelSelector -------------------------------------------

fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn ls(
    match_labels: &[(&str, &str)],
    exprs: &[LabelSelectorRequirement],
) -> Result<Selector, porin_selector::SelectorError> {
    Selector::from_label_selector(&labels(match_labels), exprs)
}

#[test]
fn label_selector_conversion() {
    assert!(ls(&[], &[]).unwrap().is_all());
    assert_eq!(
        ls(&[("app", "web")], &[]).unwrap().to_string(),
        r#"app == "web""#
    );
    let s = ls(
        &[("tier", "fe"), ("app", "web")],
        &[
            req("env", "In", &["prod", "dev", "prod"]),
            req("team", "NotIn", &["x"]),
            req("canary", "Exists", &[]),
            req("legacy", "DoesNotExist", &[]),
        ],
    )
    .unwrap();
    assert_eq!(
        s.to_string(),
        r#"app == "web" && tier == "fe" && env in {"dev", "prod"} && team not in {"x"} && has(canary) && !has(legacy)"#
    );
    assert_eq!(sel(&s.to_string()), s);
    let base = [
        ("app", "web"),
        ("tier", "fe"),
        ("env", "prod"),
        ("canary", ""),
    ];
    assert!(s.matches(&labels(&base)));
    // NotIn matches when the label is absent, as in Kubernetes.
    assert!(!s.matches(&labels(&[
        ("app", "web"),
        ("tier", "fe"),
        ("env", "prod"),
        ("canary", ""),
        ("team", "x")
    ])));
    assert!(s.matches(&labels(&[
        ("app", "web"),
        ("tier", "fe"),
        ("env", "prod"),
        ("canary", ""),
        ("team", "y")
    ])));
    assert!(!s.matches(&labels(&[
        ("app", "web"),
        ("tier", "fe"),
        ("env", "prod"),
        ("canary", ""),
        ("legacy", "1")
    ])));
    assert!(!s.matches(&labels(&[
        ("app", "web"),
        ("tier", "fe"),
        ("env", "qa"),
        ("canary", "")
    ])));
    assert!(!s.matches(&labels(&[("app", "web"), ("tier", "fe"), ("env", "prod")])));
    assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("canary", "")])));
}

#[test]
fn label_selector_errors() {
    let cases = [
        (
            req("a", "In", &[]),
            "matchExpressions[0].values: must be non-empty when operator is In",
        ),
        (
            req("a", "NotIn", &[]),
            "matchExpressions[0].values: must be non-empty when operator is NotIn",
        ),
        (
            req("a", "Exists", &["x"]),
            "matchExpressions[0].values: must be empty when operator is Exists",
        ),
        (
            req("a", "DoesNotExist", &["x"]),
            "matchExpressions[0].values: must be empty when operator is DoesNotExist",
        ),
        (
            req("a", "in", &["x"]),
            r#"matchExpressions[0].operator: "in" is not a valid operator"#,
        ),
        (
            req("a", "Gt", &["1"]),
            r#"matchExpressions[0].operator: "Gt" is not a valid operator"#,
        ),
        (
            req("", "Exists", &[]),
            r#"matchExpressions[0]: key "": a label name cannot be empty"#,
        ),
        (
            req("a b", "Exists", &[]),
            r#"matchExpressions[0]: key "a b": character ' '"#,
        ),
        (
            req("a", "In", &[r#"'""#]),
            "matchExpressions[0].values: value",
        ),
    ];
    for (r, want) in cases {
        let err = ls(&[], std::slice::from_ref(&r)).unwrap_err();
        assert_eq!(err.column, 0);
        assert!(
            err.to_string().starts_with(want),
            "{r:?}: got {err}, wanted {want}"
        );
    }
    let err = ls(&[], &[req("a", "Exists", &[]), req("b", "In", &[])]).unwrap_err();
    assert!(
        err.message.starts_with("matchExpressions[1].values"),
        "{err}"
    );
    let err = ls(&[("bad key", "v")], &[]).unwrap_err();
    assert!(
        err.message.starts_with(r#"matchLabels["bad key"]: key"#),
        "{err}"
    );
}

#[test]
fn label_selector_requirement_serde() {
    let r: LabelSelectorRequirement =
        serde_json::from_str(r#"{"key": "app", "operator": "In", "values": ["a", "b"]}"#).unwrap();
    assert_eq!(r, req("app", "In", &["a", "b"]));
    let r: LabelSelectorRequirement =
        serde_json::from_str(r#"{"key": "app", "operator": "Exists"}"#).unwrap();
    assert_eq!(r, req("app", "Exists", &[]));
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"key":"app","operator":"Exists"}"#
    );
    assert_eq!(
        serde_json::to_string(&req("k", "NotIn", &["v"])).unwrap(),
        r#"{"key":"k","operator":"NotIn","values":["v"]}"#
    );
}
