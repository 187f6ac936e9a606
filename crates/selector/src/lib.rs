//! Porin's label-selector language: parser, canonical printer and matcher.
//!
//! A selector is a boolean expression over an endpoint's labels (a map from
//! label name to value). It is the same language Calico uses.
//!
//! ```
//! use std::collections::BTreeMap;
//! use porin_selector::Selector;
//!
//! let sel: Selector = r#"app == 'web' && tier in {"fe", "be"} && !has(quarantine)"#.parse()?;
//! assert_eq!(sel.to_string(), r#"app == "web" && tier in {"be", "fe"} && !has(quarantine)"#);
//!
//! let pod: BTreeMap<String, String> =
//!     [("app", "web"), ("tier", "fe")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
//! assert!(sel.matches(&pod));
//!
//! let err = Selector::parse("app == web").unwrap_err();
//! assert_eq!(err.to_string(), "column 8: expected a quoted string after '=='");
//! # Ok::<(), porin_selector::SelectorError>(())
//! ```
//!
//! # Grammar
//!
//! Precedence from loosest to tightest: `||`, `&&`, `!`, then parentheses and
//! terms.
//!
//! ```text
//! selector := <blank> | or                 blank means all()
//! or       := and ( "||" and )*
//! and      := unary ( "&&" unary )*
//! unary    := "!"* atom                     an even number of '!' cancels out
//! atom     := "(" or ")" | "all()" | "global()" | "has(" LABEL ")"
//!           | LABEL ( "==" | "!=" | "contains" | "starts with" | "ends with" ) STRING
//!           | LABEL ( "in" | "not in" ) "{" [ STRING ( "," STRING )* ] "}"
//! LABEL    := [A-Za-z0-9_./-]+                at most 512 characters
//! STRING   := '"' any but '"' '"' | "'" any but "'" "'"     no escapes
//! ```
//!
//! * Blanks are spaces and tabs only; they may appear between any tokens,
//!   including inside `has( a )`, `all( )` and `global( )`.
//! * The words of `starts with`, `ends with` and `not in` may be glued
//!   (`startswith`, `notin`) or separated by any run of blanks. A keyword
//!   operator must end at a word boundary (`a inf "x"` is an error), but a
//!   quote or brace may follow it directly (`a contains"x"`).
//! * Operators are recognised only right after a label, so
//!   `contains contains "contains"` compares the label `contains`.
//! * `!` negates the whole term that follows: `!a == "x"` is `!(a == "x")`.
//!
//! # Meaning
//!
//! | term | label absent | label present with value `x` |
//! |---|---|---|
//! | `has(k)` | false | true |
//! | `k == "v"`, `k != "v"` | false, **true** | `x == v`, `x != v` |
//! | `k in {..}`, `k not in {..}` | false, **true** | `x ∈ set`, `x ∉ set` |
//! | `k contains/starts with/ends with "s"` | false | substring, prefix, suffix |
//!
//! So `k in {}` never matches and `k not in {}` always does. `all()` matches
//! everything; `global()` evaluates as true here (where it may be used is for
//! the model layer to check, see [`Selector::uses_global`]).
//!
//! # Canonical form
//!
//! [`Selector`]'s `Display` prints one canonical text per selector, which
//! parses back to an equal selector: `all()` for the blank selector, single
//! spaces around binary operators, parentheses only where precedence needs
//! them, `in` sets sorted and de-duplicated, and values in double quotes unless
//! they contain a double quote (then single quotes).
//!
//! # Matching
//!
//! [`Selector::matches`] runs a compiled branching program (see the private
//! `program` module): no recursion and no allocation per call. [`Expr::matches`]
//! is the plain tree-walking reference; tests check the two agree.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ast;
mod error;
mod label_selector;
pub mod labelsel;
mod parser;
mod program;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::str::FromStr;

pub use ast::{Expr, MAX_LABEL_LEN, MAX_NESTING};
pub use error::SelectorError;
pub use label_selector::LabelSelectorRequirement;

use program::Program;

/// Read access to an endpoint's labels.
pub trait Labels {
    /// The value of label `key`, if the endpoint has it.
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    #[inline]
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl Labels for BTreeMap<&str, &str> {
    #[inline]
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).copied()
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    #[inline]
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl<T: Labels + ?Sized> Labels for &T {
    #[inline]
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}

/// A parsed, normalised selector, ready to match.
///
/// Equality, ordering and hashing compare the syntax tree, which is normalised
/// (see [`Expr`]): two selectors are equal exactly when their canonical texts
/// are.
#[derive(Clone)]
pub struct Selector {
    root: Expr,
    program: Program,
}

impl Selector {
    /// Parses selector text. Blank text (spaces and tabs only) is `all()`.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        parser::parse(s).map(Selector::from_normalized)
    }

    /// The selector that matches everything.
    pub fn all() -> Selector {
        Selector::from_normalized(Expr::All)
    }

    /// Builds a selector from a syntax tree, normalising it.
    ///
    /// Fails (with `column == 0`) when the tree cannot be written as selector
    /// text: an invalid label name, a value holding both quote characters, or
    /// nesting deeper than [`MAX_NESTING`].
    pub fn from_expr(expr: Expr) -> Result<Selector, SelectorError> {
        let root = expr.normalize();
        root.validate()?;
        Ok(Selector::from_normalized(root))
    }

    fn from_normalized(root: Expr) -> Selector {
        let program = Program::compile(&root);
        Selector { root, program }
    }

    /// Converts a Kubernetes `LabelSelector`.
    ///
    /// Each `matchLabels` entry `k: v` becomes `k == "v"`; `matchExpressions`
    /// with `In`, `NotIn`, `Exists` and `DoesNotExist` become `in`, `not in`,
    /// `has()` and `!has()`; all terms are joined with `&&` (labels first, in
    /// key order, then expressions in order). With no terms the result is
    /// `all()`. As in Kubernetes validation, `In`/`NotIn` need values,
    /// `Exists`/`DoesNotExist` must have none, and other operators are errors.
    /// Keys must also be valid selector label names. Errors have `column == 0`
    /// and name the offending field.
    pub fn from_label_selector(
        match_labels: &BTreeMap<String, String>,
        match_expressions: &[LabelSelectorRequirement],
    ) -> Result<Selector, SelectorError> {
        label_selector::convert(match_labels, match_expressions)
    }

    /// The normalised syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.root
    }

    /// Whether the endpoint with these labels is selected.
    #[inline]
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.program.matches(labels)
    }

    /// Whether this is `all()` (which includes the blank selector).
    pub fn is_all(&self) -> bool {
        self.root == Expr::All
    }

    /// Whether `global()` appears anywhere in the selector.
    pub fn uses_global(&self) -> bool {
        let mut found = false;
        self.root.visit(&mut |e| found |= *e == Expr::Global);
        found
    }

    /// `self && other`; `all()` on either side is the identity.
    ///
    /// The result may nest one parenthesis deeper than the deeper operand (an
    /// `||` operand gains parentheses), so conjoining a selector that is
    /// already at [`MAX_NESTING`] gives one whose text does not parse back.
    #[must_use]
    pub fn and(self, other: Selector) -> Selector {
        if self.is_all() {
            return other;
        }
        if other.is_all() {
            return self;
        }
        Selector::from_normalized(Expr::conjunction([self.root, other.root]))
    }

    /// Every label key the selector refers to.
    pub fn label_keys(&self) -> BTreeSet<&str> {
        let mut keys = BTreeSet::new();
        self.root.visit(&mut |e| {
            if let Some(k) = e.label_key() {
                keys.insert(k);
            }
        });
        keys
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::all()
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl TryFrom<&str> for Selector {
    type Error = SelectorError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.root, f)
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({:?})", self.to_string())
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Eq for Selector {}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.root.hash(state);
    }
}

impl PartialOrd for Selector {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Selector {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.root.cmp(&other.root)
    }
}

/// Serialises as the canonical text.
impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Deserialises from selector text, reporting parse errors.
impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Selector::parse(&s).map_err(serde::de::Error::custom)
    }
}
