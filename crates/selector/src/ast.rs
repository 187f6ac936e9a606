//! The selector syntax tree: normalising constructors, the canonical printer
//! and the reference evaluator.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use crate::{Labels, SelectorError};

/// Longest label name the language accepts, in bytes (all label bytes are ASCII).
pub const MAX_LABEL_LEN: usize = 512;

/// Deepest parenthesis nesting a selector may have, in its source text and in
/// its canonical form. It bounds recursion in the parser, printer and matcher.
pub const MAX_NESTING: usize = 100;

/// One node of a selector.
///
/// Build trees with the normalising constructors ([`Expr::negate`],
/// [`Expr::conjunction`], [`Expr::disjunction`]) or hand a raw tree to
/// [`Selector::from_expr`](crate::Selector::from_expr), which normalises it.
/// A normalised tree has no `Not(Not(_))`, no `And` directly inside an `And`,
/// no `Or` directly inside an `Or`, and no `And`/`Or` with fewer than two
/// children. The parser produces exactly these trees, so
/// `parse(tree.to_string()) == tree` holds for every normalised tree.
///
/// `Display` prints the canonical form (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    /// `all()`: matches everything.
    All,
    /// `global()`: evaluates as true; where it is allowed is the model's business.
    Global,
    /// `has(k)`: the label is present.
    Has(String),
    /// `k == "v"`: present with exactly this value.
    Eq(String, String),
    /// `k != "v"`: absent, or present with another value.
    Ne(String, String),
    /// `k in {...}`: present with one of these values. Never matches when empty.
    In(String, BTreeSet<String>),
    /// `k not in {...}`: absent, or present with none of these values.
    /// Always matches when empty.
    NotIn(String, BTreeSet<String>),
    /// `k contains "s"`: present and the value contains the substring.
    Contains(String, String),
    /// `k starts with "s"`: present and the value has the prefix.
    StartsWith(String, String),
    /// `k ends with "s"`: present and the value has the suffix.
    EndsWith(String, String),
    /// `!e`: negation of the whole operand.
    Not(Box<Expr>),
    /// `a && b && ...`: all operands match (the empty conjunction matches).
    And(Vec<Expr>),
    /// `a || b || ...`: some operand matches (the empty disjunction does not).
    Or(Vec<Expr>),
}

impl Expr {
    /// `!e`, cancelling a double negation.
    pub fn negate(e: Expr) -> Expr {
        match e {
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// `a && b && ...`, splicing nested conjunctions. One operand is returned
    /// as is; no operands give `all()`.
    pub fn conjunction(items: impl IntoIterator<Item = Expr>) -> Expr {
        let mut out = Vec::new();
        for item in items {
            match item {
                Expr::And(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Expr::All,
            1 => out.pop().unwrap_or(Expr::All),
            _ => Expr::And(out),
        }
    }

    /// `a || b || ...`, splicing nested disjunctions. One operand is returned
    /// as is; no operands give `!all()` (matches nothing).
    pub fn disjunction(items: impl IntoIterator<Item = Expr>) -> Expr {
        let mut out = Vec::new();
        for item in items {
            match item {
                Expr::Or(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => Expr::Not(Box::new(Expr::All)),
            1 => out.pop().unwrap_or(Expr::All),
            _ => Expr::Or(out),
        }
    }

    /// The same expression in normal form (see the type docs).
    pub fn normalize(self) -> Expr {
        match self {
            Expr::Not(inner) => Expr::negate(inner.normalize()),
            Expr::And(items) => Expr::conjunction(items.into_iter().map(Expr::normalize)),
            Expr::Or(items) => Expr::disjunction(items.into_iter().map(Expr::normalize)),
            leaf => leaf,
        }
    }

    /// Reference evaluator: a direct walk of the tree.
    ///
    /// [`Selector::matches`](crate::Selector::matches) runs a compiled form
    /// instead; this one exists to be obviously right, and tests check that
    /// the two agree.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(k) => labels.get(k).is_some(),
            Expr::Eq(k, v) => labels.get(k) == Some(v.as_str()),
            Expr::Ne(k, v) => labels.get(k) != Some(v.as_str()),
            Expr::In(k, set) => labels.get(k).is_some_and(|x| set.contains(x)),
            Expr::NotIn(k, set) => !labels.get(k).is_some_and(|x| set.contains(x)),
            Expr::Contains(k, s) => labels.get(k).is_some_and(|x| x.contains(s.as_str())),
            Expr::StartsWith(k, s) => labels.get(k).is_some_and(|x| x.starts_with(s.as_str())),
            Expr::EndsWith(k, s) => labels.get(k).is_some_and(|x| x.ends_with(s.as_str())),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(items) => items.iter().all(|e| e.matches(labels)),
            Expr::Or(items) => items.iter().any(|e| e.matches(labels)),
        }
    }

    /// The label key of a leaf, if it has one.
    pub fn label_key(&self) -> Option<&str> {
        match self {
            Expr::Has(k)
            | Expr::Eq(k, _)
            | Expr::Ne(k, _)
            | Expr::In(k, _)
            | Expr::NotIn(k, _)
            | Expr::Contains(k, _)
            | Expr::StartsWith(k, _)
            | Expr::EndsWith(k, _) => Some(k),
            _ => None,
        }
    }

    /// Calls `f` on this node and every node below it, parents first.
    pub fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Not(e) => e.visit(f),
            Expr::And(items) | Expr::Or(items) => items.iter().for_each(|e| e.visit(f)),
            _ => {}
        }
    }

    /// Checks that the canonical form of this tree parses back to it: label
    /// names are valid, no value holds both quote characters, and the nesting
    /// stays within [`MAX_NESTING`].
    pub(crate) fn validate(&self) -> Result<(), SelectorError> {
        let mut err = None;
        self.visit(&mut |e| {
            if err.is_some() {
                return;
            }
            if let Some(k) = e.label_key()
                && let Err(why) = check_label(k)
            {
                err = Some(SelectorError::unpositioned(format!("label {k:?}: {why}")));
                return;
            }
            let bad_value = match e {
                Expr::Eq(_, v)
                | Expr::Ne(_, v)
                | Expr::Contains(_, v)
                | Expr::StartsWith(_, v)
                | Expr::EndsWith(_, v) => (!is_quotable(v)).then_some(v),
                Expr::In(_, set) | Expr::NotIn(_, set) => set.iter().find(|v| !is_quotable(v)),
                _ => None,
            };
            if let Some(v) = bad_value {
                err = Some(SelectorError::unpositioned(format!(
                    "value {v:?} contains both ' and \", which the selector language cannot quote"
                )));
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let depth = self.paren_depth(Prec::Or);
        if depth > MAX_NESTING {
            return Err(SelectorError::unpositioned(format!(
                "selector nests {depth} parentheses deep; at most {MAX_NESTING} are allowed"
            )));
        }
        Ok(())
    }

    /// How deeply the canonical form nests parentheses, printed in context `ctx`.
    /// Must agree with [`Expr::fmt_in`].
    fn paren_depth(&self, ctx: Prec) -> usize {
        match self {
            Expr::And(items) | Expr::Or(items) if items.is_empty() => 0,
            Expr::Or(items) => {
                usize::from(ctx > Prec::Or)
                    + items
                        .iter()
                        .map(|e| e.paren_depth(Prec::And))
                        .max()
                        .unwrap_or(0)
            }
            Expr::And(items) => {
                usize::from(ctx > Prec::And)
                    + items
                        .iter()
                        .map(|e| e.paren_depth(Prec::Unary))
                        .max()
                        .unwrap_or(0)
            }
            Expr::Not(e) => e.paren_depth(Prec::Unary),
            _ => 0,
        }
    }

    /// Prints `self` in a context that binds at least as tightly as `ctx`,
    /// adding parentheses only where precedence needs them.
    fn fmt_in(&self, f: &mut fmt::Formatter<'_>, ctx: Prec) -> fmt::Result {
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => binary(f, k, "==", v),
            Expr::Ne(k, v) => binary(f, k, "!=", v),
            Expr::Contains(k, v) => binary(f, k, "contains", v),
            Expr::StartsWith(k, v) => binary(f, k, "starts with", v),
            Expr::EndsWith(k, v) => binary(f, k, "ends with", v),
            Expr::In(k, set) => set_op(f, k, "in", set),
            Expr::NotIn(k, set) => set_op(f, k, "not in", set),
            Expr::Not(e) => {
                f.write_char('!')?;
                e.fmt_in(f, Prec::Unary)
            }
            Expr::And(items) if items.is_empty() => f.write_str("all()"),
            Expr::Or(items) if items.is_empty() => f.write_str("!all()"),
            Expr::And(items) => join(f, items, " && ", ctx > Prec::And, Prec::Unary),
            Expr::Or(items) => join(f, items, " || ", ctx > Prec::Or, Prec::And),
        }
    }
}

/// Binding strength of the context an expression is printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Or,
    And,
    Unary,
}

fn join(
    f: &mut fmt::Formatter<'_>,
    items: &[Expr],
    sep: &str,
    parens: bool,
    child_ctx: Prec,
) -> fmt::Result {
    if parens {
        f.write_char('(')?;
    }
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        e.fmt_in(f, child_ctx)?;
    }
    if parens {
        f.write_char(')')?;
    }
    Ok(())
}

fn binary(f: &mut fmt::Formatter<'_>, key: &str, op: &str, value: &str) -> fmt::Result {
    write!(f, "{key} {op} ")?;
    quoted(f, value)
}

fn set_op(f: &mut fmt::Formatter<'_>, key: &str, op: &str, set: &BTreeSet<String>) -> fmt::Result {
    write!(f, "{key} {op} {{")?;
    for (i, v) in set.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        quoted(f, v)?;
    }
    f.write_char('}')
}

/// Double quotes, unless the value holds one: then single quotes.
fn quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let q = if value.contains('"') { '\'' } else { '"' };
    f.write_char(q)?;
    f.write_str(value)?;
    f.write_char(q)
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_in(f, Prec::Or)
    }
}

/// Whether a byte may appear in a label name: `[A-Za-z0-9_./-]`.
#[inline]
pub(crate) fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// Whether `k` is a label name the language can spell.
pub(crate) fn check_label(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("a label name cannot be empty".into());
    }
    if k.len() > MAX_LABEL_LEN {
        return Err(format!(
            "a label name is at most {MAX_LABEL_LEN} characters"
        ));
    }
    if let Some(c) = k
        .chars()
        .find(|&c| !c.is_ascii() || !is_label_byte(c as u8))
    {
        return Err(format!(
            "character {c:?} is not allowed in a label name (allowed: A-Z a-z 0-9 _ . / -)"
        ));
    }
    Ok(())
}

/// Whether a value can be written as a string literal (no escapes exist).
pub(crate) fn is_quotable(v: &str) -> bool {
    !(v.contains('"') && v.contains('\''))
}
