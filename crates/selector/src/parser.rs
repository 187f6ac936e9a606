//! Recursive-descent parser. The lexer is folded in because the language is
//! context sensitive: `contains`, `in`, `not in`, `starts with` and
//! `ends with` are operators only straight after a label, and label names
//! elsewhere.

use std::collections::BTreeSet;

use crate::SelectorError;
use crate::ast::{Expr, MAX_LABEL_LEN, MAX_NESTING, is_label_byte};

/// Parses selector text into a normalised tree. Blank text is `all()`.
pub(crate) fn parse(src: &str) -> Result<Expr, SelectorError> {
    let mut p = Parser {
        src,
        b: src.as_bytes(),
        pos: 0,
        nesting: 0,
    };
    p.skip_ws();
    if p.pos == p.b.len() {
        return Ok(Expr::All);
    }
    let e = p.or_expr("the start of the selector")?;
    p.skip_ws();
    match p.peek() {
        None => Ok(e),
        Some(b')') => Err(p.err_here("unmatched ')'")),
        Some(_) => Err(p.err_here(format!(
            "expected '&&', '||' or the end of the selector, found {}",
            p.found()
        ))),
    }
}

struct Parser<'a> {
    src: &'a str,
    b: &'a [u8],
    /// Byte offset of the next unread byte; always on a char boundary.
    pos: usize,
    /// Open parentheses around `pos`.
    nesting: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.b.get(self.pos + ahead).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        self.b[self.pos..].starts_with(s.as_bytes())
    }

    /// 1-based character column of a byte offset.
    fn column(&self, byte: usize) -> usize {
        self.src[..byte].chars().count() + 1
    }

    fn err_at(&self, byte: usize, msg: impl Into<String>) -> SelectorError {
        SelectorError::at(self.column(byte), msg)
    }

    fn err_here(&self, msg: impl Into<String>) -> SelectorError {
        self.err_at(self.pos, msg)
    }

    /// A short description of the token at `pos`, for error messages.
    fn found(&self) -> String {
        let rest = &self.src[self.pos..];
        match rest.chars().next() {
            None => "the end of the selector".into(),
            Some('"' | '\'') => "a quoted string".into(),
            Some(c) if c.is_ascii() && is_label_byte(c as u8) => {
                let word: String = rest
                    .bytes()
                    .take_while(|&b| is_label_byte(b))
                    .take(32)
                    .map(char::from)
                    .collect();
                format!("'{word}'")
            }
            Some(c) if c.is_ascii_graphic() => {
                let two = rest.get(..2).unwrap_or("");
                if matches!(two, "&&" | "||" | "==" | "!=") {
                    format!("'{two}'")
                } else {
                    format!("'{c}'")
                }
            }
            Some(c) => format!("character {c:?}"),
        }
    }

    /// `or := and ( "||" and )*`
    fn or_expr(&mut self, after: &str) -> Result<Expr, SelectorError> {
        let mut items = vec![self.and_expr(after)?];
        loop {
            self.skip_ws();
            if self.starts_with("||") {
                self.pos += 2;
                items.push(self.and_expr("'||'")?);
            } else if self.peek() == Some(b'|') {
                return Err(self.err_here("expected '||' (a single '|' is not an operator)"));
            } else {
                return Ok(Expr::disjunction(items));
            }
        }
    }

    /// `and := unary ( "&&" unary )*`
    fn and_expr(&mut self, after: &str) -> Result<Expr, SelectorError> {
        let mut items = vec![self.unary(after)?];
        loop {
            self.skip_ws();
            if self.starts_with("&&") {
                self.pos += 2;
                items.push(self.unary("'&&'")?);
            } else if self.peek() == Some(b'&') {
                return Err(self.err_here("expected '&&' (a single '&' is not an operator)"));
            } else {
                return Ok(Expr::conjunction(items));
            }
        }
    }

    /// `unary := "!"* atom`; an even number of `!` cancels out.
    fn unary(&mut self, mut after: &str) -> Result<Expr, SelectorError> {
        let mut negate = false;
        loop {
            self.skip_ws();
            if self.peek() == Some(b'!') && self.peek_at(1) != Some(b'=') {
                self.pos += 1;
                negate = !negate;
                after = "'!'";
            } else {
                break;
            }
        }
        let e = self.atom(after)?;
        Ok(if negate { Expr::negate(e) } else { e })
    }

    /// `atom := "(" or ")" | all() | global() | has(LABEL) | LABEL operation`
    fn atom(&mut self, after: &str) -> Result<Expr, SelectorError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(b'(') => {
                if self.nesting == MAX_NESTING {
                    return Err(
                        self.err_here(format!("parentheses nest deeper than {MAX_NESTING} levels"))
                    );
                }
                self.pos += 1;
                self.nesting += 1;
                let e = self.or_expr("'('")?;
                self.skip_ws();
                if self.peek() != Some(b')') {
                    return Err(self.err_here(format!(
                        "expected ')' to close the '(' at column {}, found {}",
                        self.column(start),
                        self.found()
                    )));
                }
                self.pos += 1;
                self.nesting -= 1;
                Ok(e)
            }
            Some(b) if is_label_byte(b) => {
                if self.starts_with("has(") {
                    self.pos += 4;
                    self.skip_ws();
                    if !self.peek().is_some_and(is_label_byte) {
                        return Err(self.err_here(format!(
                            "expected a label name after 'has(', found {}",
                            self.found()
                        )));
                    }
                    let key = self.label()?;
                    self.close_paren("the label in 'has('")?;
                    Ok(Expr::Has(key.to_owned()))
                } else if self.starts_with("all(") {
                    self.pos += 4;
                    self.close_paren("'all('")?;
                    Ok(Expr::All)
                } else if self.starts_with("global(") {
                    self.pos += 7;
                    self.close_paren("'global('")?;
                    Ok(Expr::Global)
                } else {
                    let key = self.label()?;
                    self.operation(key)
                }
            }
            _ => {
                let hint = if matches!(self.peek(), Some(b'"' | b'\'')) {
                    "; a string can only follow an operator such as '=='"
                } else {
                    ""
                };
                Err(self.err_here(format!(
                    "expected an expression after {after}, found {}{hint}",
                    self.found()
                )))
            }
        }
    }

    fn close_paren(&mut self, after: &str) -> Result<(), SelectorError> {
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err_here(format!(
                "expected ')' after {after}, found {}",
                self.found()
            )))
        }
    }

    /// `LABEL := [A-Za-z0-9_./-]+`, at most [`MAX_LABEL_LEN`] bytes.
    fn label(&mut self) -> Result<&'a str, SelectorError> {
        let start = self.pos;
        while self.peek().is_some_and(is_label_byte) {
            self.pos += 1;
        }
        if self.pos - start > MAX_LABEL_LEN {
            return Err(self.err_at(
                start,
                format!("label name is longer than {MAX_LABEL_LEN} characters"),
            ));
        }
        Ok(&self.src[start..self.pos])
    }

    /// Consumes the words of a keyword operator, with optional blanks between
    /// them (so `startswith` and `starts  with` both work) and a word boundary
    /// after the last. Leaves `pos` alone when they are not there.
    fn keyword(&mut self, words: &[&str]) -> bool {
        let save = self.pos;
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                self.skip_ws();
            }
            if !self.starts_with(w) {
                self.pos = save;
                return false;
            }
            self.pos += w.len();
        }
        if self.peek().is_some_and(is_label_byte) {
            self.pos = save;
            return false;
        }
        true
    }

    /// What follows a label: a comparison with a string or a set.
    fn operation(&mut self, key: &str) -> Result<Expr, SelectorError> {
        self.skip_ws();
        let k = key.to_owned();
        if self.starts_with("==") {
            self.pos += 2;
            Ok(Expr::Eq(k, self.string("'=='")?))
        } else if self.starts_with("!=") {
            self.pos += 2;
            Ok(Expr::Ne(k, self.string("'!='")?))
        } else if self.peek() == Some(b'=') {
            Err(self.err_here("expected '==' (a single '=' is not an operator)"))
        } else if self.keyword(&["contains"]) {
            Ok(Expr::Contains(k, self.string("'contains'")?))
        } else if self.keyword(&["starts", "with"]) {
            Ok(Expr::StartsWith(k, self.string("'starts with'")?))
        } else if self.keyword(&["ends", "with"]) {
            Ok(Expr::EndsWith(k, self.string("'ends with'")?))
        } else if self.keyword(&["not", "in"]) {
            Ok(Expr::NotIn(k, self.set("'not in'")?))
        } else if self.keyword(&["in"]) {
            Ok(Expr::In(k, self.set("'in'")?))
        } else {
            Err(self.err_here(format!(
                "expected an operator (==, !=, in, not in, contains, starts with, ends with) \
                 after label '{key}', found {}",
                self.found()
            )))
        }
    }

    /// `STRING := "..." | '...'` with no escapes.
    fn string(&mut self, after: &str) -> Result<String, SelectorError> {
        self.skip_ws();
        let start = self.pos;
        let Some(q @ (b'"' | b'\'')) = self.peek() else {
            return Err(self.err_here(format!("expected a quoted string after {after}")));
        };
        let body = start + 1;
        match self.b[body..].iter().position(|&c| c == q) {
            Some(len) => {
                self.pos = body + len + 1;
                Ok(self.src[body..body + len].to_owned())
            }
            None => Err(self.err_at(
                start,
                format!("unterminated string: no closing {}", char::from(q)),
            )),
        }
    }

    /// `"{" [ STRING ("," STRING)* ] "}"`
    fn set(&mut self, after: &str) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_ws();
        if self.peek() != Some(b'{') {
            return Err(self.err_here(format!("expected '{{' to open a set after {after}")));
        }
        self.pos += 1;
        let mut set = BTreeSet::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(set);
        }
        set.insert(self.string("'{'")?);
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    set.insert(self.string("','")?);
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(set);
                }
                _ => {
                    return Err(self.err_here(format!(
                        "expected ',' or '}}' in set, found {}",
                        self.found()
                    )));
                }
            }
        }
    }
}
