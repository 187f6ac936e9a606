//! Parser: accepted and rejected inputs, canonical forms, tree shapes and
//! error positions. Cases marked "spec" come from the selector-language spec.

use std::collections::BTreeSet;

use porin_selector::{Expr, MAX_LABEL_LEN, MAX_NESTING, Selector};

fn canon(s: &str) -> String {
    match Selector::parse(s) {
        Ok(sel) => sel.to_string(),
        Err(e) => panic!("{s:?} should parse, got {e}"),
    }
}

fn tree(s: &str) -> Expr {
    Selector::parse(s)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .expr()
        .clone()
}

/// Asserts `s` is rejected at `column` with a message containing `needle`.
#[track_caller]
fn rejects(s: &str, column: usize, needle: &str) {
    match Selector::parse(s) {
        Ok(sel) => panic!("{s:?} should be rejected, parsed as {sel}"),
        Err(e) => {
            assert_eq!(e.column, column, "column for {s:?}: {e}");
            assert!(
                e.message.contains(needle),
                "message for {s:?} is {:?}, wanted {needle:?}",
                e.message
            );
            assert_eq!(e.to_string(), format!("column {column}: {}", e.message));
        }
    }
}

fn eq(k: &str, v: &str) -> Expr {
    Expr::Eq(k.into(), v.into())
}

fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

fn set(vs: &[&str]) -> BTreeSet<String> {
    vs.iter().map(|v| v.to_string()).collect()
}

#[test]
fn spec_rejected_inputs() {
    rejects("b == b", 6, "expected a quoted string after '=='");
    rejects("'b1' == b", 1, "found a quoted string");
    rejects("b", 2, "expected an operator");
    rejects(
        "a b",
        3,
        "expected an operator (==, !=, in, not in, contains, starts with, ends with) after label 'a', found 'b'",
    );
    rejects(
        "!",
        2,
        "expected an expression after '!', found the end of the selector",
    );
    rejects("()", 2, "expected an expression after '(', found ')'");
    rejects("(", 2, "expected an expression after '('");
    rejects(")", 1, "found ')'");
    rejects("%", 1, "found '%'");
    rejects(r#"foo == "bar" &"#, 14, "expected '&&'");
    rejects("|", 1, "found '|'");
    rejects(r#"foo == "bar" |"#, 14, "expected '||'");
    rejects(r#"foo in """#, 8, "expected '{' to open a set after 'in'");
    rejects(r#"a == "FOO"#, 6, "unterminated string: no closing \"");
    rejects(r#"a == 'FOO"#, 6, "unterminated string: no closing '");
    rejects(r#"a == "FOO'"#, 6, "unterminated string");
    rejects(r#""FOO"#, 1, "found a quoted string");
    rejects("a ", 3, "expected an operator");
    rejects("has(foo) &&", 12, "expected an expression after '&&'");
    rejects(
        r#"label = "v""#,
        7,
        "expected '==' (a single '=' is not an operator)",
    );
    rejects(r#"label inf "v""#, 7, "expected an operator");
    rejects(r#"label ends withs "v""#, 7, "expected an operator");
    rejects(r#"label squiggles "v""#, 7, "found 'squiggles'");
    rejects("has()", 5, "expected a label name after 'has('");
    rejects("has(foo", 8, "expected ')' after the label in 'has('");
    // The tokenizer accepts this one; the parser then wants braces.
    rejects(
        r#"a notin"bar"&&!has(foo)||b in"c""#,
        8,
        "expected '{' to open a set after 'not in'",
    );
}

#[test]
fn more_rejected_inputs() {
    rejects(
        "b contains b",
        12,
        "expected a quoted string after 'contains'",
    );
    rejects("b starts with b", 15, "after 'starts with'");
    rejects("b ends with b", 13, "after 'ends with'");
    rejects("foo != ||", 8, "expected a quoted string after '!='");
    rejects(
        r#"foo in {"", ||"#,
        13,
        "expected a quoted string after ','",
    );
    rejects(
        r#"(a == "foo""#,
        12,
        "expected ')' to close the '(' at column 1",
    );
    rejects(r#"a == "b" && %"#, 13, "found '%'");
    rejects(r#"a == "b" || %"#, 13, "found '%'");
    rejects(r#"a == "b" )"#, 10, "unmatched ')'");
    rejects(
        r#"a == "b" b == "c""#,
        10,
        "expected '&&', '||' or the end of the selector, found 'b'",
    );
    rejects(r#"a in {"a",}"#, 11, "expected a quoted string after ','");
    rejects(r#"a in {"a" "b"}"#, 11, "expected ',' or '}'");
    rejects(r#"a in {"#, 7, "expected a quoted string after '{'");
    rejects("has (a)", 5, "found '('");
    rejects("all(x)", 5, "expected ')' after 'all('");
    rejects("global(", 8, "expected ')' after 'global('");
    rejects(r#"!= "a""#, 1, "found '!='");
    rejects(
        r#"a startswith"#,
        13,
        "expected a quoted string after 'starts with'",
    );
    rejects(r#"a starts "x""#, 3, "expected an operator");
    rejects(r#"a not "x""#, 3, "expected an operator");
    rejects(r#"a == "b" ||"#, 12, "expected an expression after '||'");
    rejects(r#"a == "b" && && c == "d""#, 13, "found '&&'");
    // Only space and tab are blanks.
    rejects("a == \"b\"\n", 9, "found character '\\n'");
    rejects("\u{a0}a == \"b\"", 1, "found character '\\u{a0}'");
}

#[test]
fn columns_count_characters_not_bytes() {
    // "é" is two bytes but one column.
    rejects(r#"a == "é" && %"#, 13, "found '%'");
    rejects(r#"a == "日本語" b"#, 12, "expected '&&'");
}

#[test]
fn label_length_limit() {
    let ok = "k".repeat(MAX_LABEL_LEN);
    assert_eq!(tree(&format!("has({ok})")), Expr::Has(ok.clone()));
    assert_eq!(tree(&format!("{ok} == \"v\"")), eq(&ok, "v"));
    let long = "k".repeat(MAX_LABEL_LEN + 1);
    rejects(&format!("has({long})"), 5, "longer than 512");
    rejects(
        &format!(r#"a == "x" && {long} == "v""#),
        13,
        "longer than 512",
    );
}

#[test]
fn nesting_limit() {
    let at_limit = format!(
        "{}a == \"b\"{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert_eq!(tree(&at_limit), eq("a", "b"));
    let over = format!(
        "{}a == \"b\"{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    rejects(&over, MAX_NESTING + 1, "nest deeper than 100");
    // Many '!' are not nesting: they are counted, not recursed on.
    let bangs = format!("{}has(a)", "!".repeat(100_001));
    assert_eq!(tree(&bangs), not(Expr::Has("a".into())));
}

#[test]
fn spec_accepted_inputs_and_canonical_forms() {
    let cases = [
        ("!!has(b)", "has(b)"),
        ("!! ! has(a)", "!has(a)"),
        ("! !!has(a)", "!has(a)"),
        ("!!!has(a)", "!has(a)"),
        (r#"a!='"'"#, r#"a != '"'"#),
        (r#"a == "'""#, r#"a == "'""#),
        (r#"a == '"'"#, r#"a == '"'"#),
        (r#"a in {"'", '"', "c"}"#, r#"a in {'"', "'", "c"}"#),
        ("has(calico/k8s_NS-.1/role)", "has(calico/k8s_NS-.1/role)"),
        ("", "all()"),
        (" \t ", "all()"),
        (" all() ", "all()"),
        (" (all() )", "all()"),
        ("all( )", "all()"),
        ("global( )", "global()"),
        ("has( foo )", "has(foo)"),
        ("has(\tfoo\t)", "has(foo)"),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        (r#"! (a == "b"&&! c != "d")"#, r#"!(a == "b" && !c != "d")"#),
        (r#"a contains '"'"#, r#"a contains '"'"#),
        (r#"a startswith '"'"#, r#"a starts with '"'"#),
        (r#"a endswith "'""#, r#"a ends with "'""#),
        (r#"a in {"d", "a", "b"}"#, r#"a in {"a", "b", "d"}"#),
        (
            r#"a in {"z", "z", "x", "y", "x", "a"}"#,
            r#"a in {"a", "x", "y", "z"}"#,
        ),
        (r#"a in {}"#, r#"a in {}"#),
        (r#"a not in { }"#, r#"a not in {}"#),
        (r#"a==''"#, r#"a == """#),
        (
            r#"a == "with space and ünïcödé""#,
            r#"a == "with space and ünïcödé""#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(canon(input), want, "canonical form of {input:?}");
        assert_eq!(
            canon(want),
            want,
            "canonical form of {want:?} is not a fixed point"
        );
    }
}

#[test]
fn glued_and_spaced_operators() {
    let cases = [
        (r#"label contains"value""#, r#"label contains "value""#),
        (
            r#"label startswith "value""#,
            r#"label starts with "value""#,
        ),
        (
            r#"label starts  with "value""#,
            r#"label starts with "value""#,
        ),
        (
            "label starts\twith \"value\"",
            r#"label starts with "value""#,
        ),
        (r#"label endswith "value""#, r#"label ends with "value""#),
        (r#"label ends  with 'value'"#, r#"label ends with "value""#),
        (r#"a notin {"x"}"#, r#"a not in {"x"}"#),
        (r#"a not   in{"x"}"#, r#"a not in {"x"}"#),
        (r#"a in{"x","y"}"#, r#"a in {"x", "y"}"#),
        (
            r#"a=="b"&&c=="d"||!e=="f""#,
            r#"a == "b" && c == "d" || !e == "f""#,
        ),
        (
            r#"a startswith"x"&&b endswith'y'"#,
            r#"a starts with "x" && b ends with "y""#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(canon(input), want, "canonical form of {input:?}");
    }
}

#[test]
fn keywords_are_labels_unless_after_a_label() {
    assert_eq!(
        tree(r#"contains contains "contains""#),
        Expr::Contains("contains".into(), "contains".into())
    );
    assert_eq!(
        tree(r#"startswith starts with "value""#),
        Expr::StartsWith("startswith".into(), "value".into())
    );
    assert_eq!(
        tree(r#"endswith ends with "value""#),
        Expr::EndsWith("endswith".into(), "value".into())
    );
    assert_eq!(tree(r#"in in {"in"}"#), Expr::In("in".into(), set(&["in"])));
    assert_eq!(
        tree(r#"not not in {"a"}"#),
        Expr::NotIn("not".into(), set(&["a"]))
    );
    assert_eq!(tree(r#"has == "x""#), eq("has", "x"));
    assert_eq!(tree(r#"all == "x""#), eq("all", "x"));
    assert_eq!(
        tree(r#"global != "x""#),
        Expr::Ne("global".into(), "x".into())
    );
    assert_eq!(tree("has(has)"), Expr::Has("has".into()));
    assert_eq!(
        tree(r#"1a == "x" && -b == "y" && ./_ == "z""#),
        Expr::And(vec![eq("1a", "x"), eq("-b", "y"), eq("./_", "z")])
    );
}

#[test]
fn precedence_or_below_and_below_not() {
    let (a, b, c) = (eq("a", "1"), eq("b", "2"), eq("c", "3"));
    assert_eq!(
        tree(r#"a == "1" || b == "2" && c == "3""#),
        Expr::Or(vec![a.clone(), Expr::And(vec![b.clone(), c.clone()])])
    );
    assert_eq!(
        tree(r#"a == "1" && b == "2" || c == "3""#),
        Expr::Or(vec![Expr::And(vec![a.clone(), b.clone()]), c.clone()])
    );
    assert_eq!(
        tree(r#"(a == "1" || b == "2") && c == "3""#),
        Expr::And(vec![Expr::Or(vec![a.clone(), b.clone()]), c.clone()])
    );
    assert_eq!(
        canon(r#"(a == "1" || b == "2") && c == "3""#),
        r#"(a == "1" || b == "2") && c == "3""#
    );
    assert_eq!(
        canon(r#"a == "1" || (b == "2" && c == "3")"#),
        r#"a == "1" || b == "2" && c == "3""#
    );
    // Nested groups of the same operator flatten.
    assert_eq!(
        tree(r#"a == "1" && (b == "2" && (c == "3"))"#),
        Expr::And(vec![a.clone(), b.clone(), c.clone()])
    );
    assert_eq!(
        tree(r#"(a == "1" || b == "2") || c == "3""#),
        Expr::Or(vec![a.clone(), b.clone(), c.clone()])
    );
    // all() is kept as written: the tree is syntax, not a simplification.
    assert_eq!(
        tree(r#"all() && a == "1""#),
        Expr::And(vec![Expr::All, a.clone()])
    );
}

#[test]
fn negation_applies_to_the_whole_operation() {
    assert_eq!(tree(r#"!a == "x""#), not(eq("a", "x")));
    assert_eq!(tree(r#"!(a == "x")"#), not(eq("a", "x")));
    assert_eq!(canon(r#"!(a == "x")"#), r#"!a == "x""#);
    assert_eq!(
        tree(r#"!a in {"a"}"#),
        not(Expr::In("a".into(), set(&["a"])))
    );
    assert_eq!(
        tree(r#"!a == "x" && b == "y""#),
        Expr::And(vec![not(eq("a", "x")), eq("b", "y")])
    );
    assert_eq!(
        tree(r#"!(a == "x" && b == "y")"#),
        not(Expr::And(vec![eq("a", "x"), eq("b", "y")]))
    );
    assert_eq!(
        tree(r#"!(a == "x" || b == "y") || c == "z""#),
        Expr::Or(vec![
            not(Expr::Or(vec![eq("a", "x"), eq("b", "y")])),
            eq("c", "z")
        ])
    );
    assert_eq!(tree("!(!has(a))"), Expr::Has("a".into()));
    assert_eq!(tree("!!(!has(a))"), not(Expr::Has("a".into())));
}

#[test]
fn quotes() {
    assert_eq!(tree(r#"a == 'it"s'"#), eq("a", "it\"s"));
    assert_eq!(canon(r#"a == 'it"s'"#), r#"a == 'it"s'"#);
    assert_eq!(tree(r#"a == "it's""#), eq("a", "it's"));
    assert_eq!(canon(r#"a == 'it s'"#), r#"a == "it s""#);
    // No escapes: a backslash is an ordinary character and ends nothing.
    assert_eq!(tree(r#"a == "x\""#), eq("a", "x\\"));
    // Strings may hold operators and parentheses.
    assert_eq!(tree(r#"a == "b && (c || !d)""#), eq("a", "b && (c || !d)"));
}

#[test]
fn from_str_and_try_from_agree_with_parse() {
    let s = r#"a == "1" || has(b)"#;
    let p = Selector::parse(s).unwrap();
    assert_eq!(s.parse::<Selector>().unwrap(), p);
    assert_eq!(Selector::try_from(s).unwrap(), p);
    assert_eq!("a =".parse::<Selector>().unwrap_err().column, 3);
}
