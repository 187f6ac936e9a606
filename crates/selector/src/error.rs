//! The one error type of this crate.

use std::fmt;

/// Why a selector could not be built.
///
/// For errors in selector text, `column` is the 1-based column (counted in
/// characters, not bytes) of the offending token, and the message says what was
/// expected there; `Display` renders `column N: message`.
///
/// Errors that do not come from selector text (a Kubernetes `LabelSelector`
/// conversion, or an [`Expr`](crate::Expr) handed to
/// [`Selector::from_expr`](crate::Selector::from_expr)) have `column == 0`;
/// their message names the offending field instead, and `Display` renders the
/// message alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{}", Rendered(self))]
pub struct SelectorError {
    /// 1-based column in the selector text; 0 when the error has no position.
    pub column: usize,
    /// What went wrong and, for parse errors, what was expected.
    pub message: String,
}

impl SelectorError {
    /// An error at a 1-based column of selector text.
    pub(crate) fn at(column: usize, message: impl Into<String>) -> Self {
        SelectorError {
            column,
            message: message.into(),
        }
    }

    /// An error that has no position in selector text.
    pub(crate) fn unpositioned(message: impl Into<String>) -> Self {
        SelectorError {
            column: 0,
            message: message.into(),
        }
    }
}

struct Rendered<'a>(&'a SelectorError);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.column == 0 {
            f.write_str(&self.0.message)
        } else {
            write!(f, "column {}: {}", self.0.column, self.0.message)
        }
    }
}
