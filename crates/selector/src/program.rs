//! The compiled matcher behind [`Selector::matches`](crate::Selector::matches).
//!
//! A selector compiles to a branching program: a flat list of leaf tests, each
//! naming the instruction to run next when it passes and when it fails (or a
//! final verdict). `&&`, `||` and `!` disappear into those jump targets — `!`
//! swaps them, `&&` chains passes, `||` chains failures — so matching is one
//! loop with no recursion, no stack and no allocation, and every leaf is
//! evaluated at most once. `all()`/`global()` fold away; `!=` and `not in`
//! reuse the `==`/`in` tests with swapped targets; `in` sets are sorted boxed
//! slices, and one-element sets become `==`.

use crate::{Expr, Labels};

/// Jump target meaning "the selector matches".
const ACCEPT: u32 = u32::MAX;
/// Jump target meaning "the selector does not match".
const REJECT: u32 = u32::MAX - 1;

#[derive(Clone)]
pub(crate) struct Program {
    entry: u32,
    insns: Box<[Insn]>,
}

#[derive(Clone)]
struct Insn {
    test: Test,
    on_true: u32,
    on_false: u32,
}

#[derive(Clone)]
enum Test {
    Has(Box<str>),
    Eq(Box<str>, Box<str>),
    /// Sorted, deduplicated, at least two values.
    In(Box<str>, Box<[Box<str>]>),
    Contains(Box<str>, Box<str>),
    StartsWith(Box<str>, Box<str>),
    EndsWith(Box<str>, Box<str>),
}

impl Test {
    #[inline]
    fn eval<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Test::Has(k) => labels.get(k).is_some(),
            Test::Eq(k, v) => labels.get(k) == Some(&**v),
            Test::In(k, vs) => labels
                .get(k)
                .is_some_and(|x| vs.binary_search_by(|v| (**v).cmp(x)).is_ok()),
            Test::Contains(k, s) => labels.get(k).is_some_and(|x| x.contains(&**s)),
            Test::StartsWith(k, s) => labels.get(k).is_some_and(|x| x.starts_with(&**s)),
            Test::EndsWith(k, s) => labels.get(k).is_some_and(|x| x.ends_with(&**s)),
        }
    }
}

impl Program {
    pub(crate) fn compile(e: &Expr) -> Program {
        let mut c = Compiler { insns: Vec::new() };
        let entry = c.emit(e, ACCEPT, REJECT);
        // Instructions were emitted last-operand first; reverse them so that
        // the program runs front to back and every jump goes forward.
        let n = c.insns.len() as u32;
        let remap = |t: u32| if t >= REJECT { t } else { n - 1 - t };
        let insns = c
            .insns
            .into_iter()
            .rev()
            .map(|i| Insn {
                test: i.test,
                on_true: remap(i.on_true),
                on_false: remap(i.on_false),
            })
            .collect();
        Program {
            entry: remap(entry),
            insns,
        }
    }

    #[inline]
    pub(crate) fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let mut pc = self.entry;
        while pc < REJECT {
            let insn = &self.insns[pc as usize];
            pc = if insn.test.eval(labels) {
                insn.on_true
            } else {
                insn.on_false
            };
        }
        pc == ACCEPT
    }
}

struct Compiler {
    insns: Vec<Insn>,
}

impl Compiler {
    /// Emits code for `e` that continues at `t` when `e` holds and at `f`
    /// when it does not; returns where that code starts.
    fn emit(&mut self, e: &Expr, t: u32, f: u32) -> u32 {
        match e {
            Expr::All | Expr::Global => t,
            Expr::Not(inner) => self.emit(inner, f, t),
            Expr::And(items) => items.iter().rev().fold(t, |next, e| self.emit(e, next, f)),
            Expr::Or(items) => items.iter().rev().fold(f, |next, e| self.emit(e, t, next)),
            Expr::Has(k) => self.push(Test::Has(k.as_str().into()), t, f),
            Expr::Eq(k, v) => self.push(Test::Eq(k.as_str().into(), v.as_str().into()), t, f),
            Expr::Ne(k, v) => self.push(Test::Eq(k.as_str().into(), v.as_str().into()), f, t),
            Expr::In(k, set) => self.set(k, set, t, f),
            Expr::NotIn(k, set) => self.set(k, set, f, t),
            Expr::Contains(k, s) => {
                self.push(Test::Contains(k.as_str().into(), s.as_str().into()), t, f)
            }
            Expr::StartsWith(k, s) => {
                self.push(Test::StartsWith(k.as_str().into(), s.as_str().into()), t, f)
            }
            Expr::EndsWith(k, s) => {
                self.push(Test::EndsWith(k.as_str().into(), s.as_str().into()), t, f)
            }
        }
    }

    fn set(&mut self, k: &str, set: &std::collections::BTreeSet<String>, t: u32, f: u32) -> u32 {
        let mut values = set.iter();
        match (values.next(), values.next()) {
            (None, _) => f,
            (Some(v), None) => self.push(Test::Eq(k.into(), v.as_str().into()), t, f),
            _ => {
                // BTreeSet iterates in ascending byte order: already sorted.
                let vs = set.iter().map(|v| v.as_str().into()).collect();
                self.push(Test::In(k.into(), vs), t, f)
            }
        }
    }

    fn push(&mut self, test: Test, on_true: u32, on_false: u32) -> u32 {
        let at = self.insns.len() as u32;
        assert!(at < REJECT, "selector has too many terms to compile");
        self.insns.push(Insn {
            test,
            on_true,
            on_false,
        });
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Selector;

    fn program(s: &str) -> Program {
        Program::compile(Selector::parse(s).unwrap().expr())
    }

    #[test]
    fn constants_fold_away() {
        assert_eq!(program("all()").insns.len(), 0);
        assert_eq!(program("all()").entry, ACCEPT);
        assert_eq!(program("!all()").entry, REJECT);
        assert_eq!(program("global() && all()").entry, ACCEPT);
        assert_eq!(program("a in {}").entry, REJECT);
        assert_eq!(program("a not in {}").entry, ACCEPT);
        assert_eq!(program("a in {} || has(b)").insns.len(), 1);
    }

    #[test]
    fn each_leaf_compiles_once_and_jumps_forward() {
        let p =
            program(r#"(a == "1" || !b in {"x", "y"}) && !(c != "2" && has(d)) || e contains "z""#);
        assert_eq!(p.insns.len(), 5);
        assert_eq!(p.entry, 0);
        for (i, insn) in p.insns.iter().enumerate() {
            for t in [insn.on_true, insn.on_false] {
                assert!(
                    t >= REJECT || t as usize > i,
                    "jump from {i} to {t} is not forward"
                );
            }
        }
    }

    #[test]
    fn singleton_set_becomes_equality() {
        let p = program(r#"a in {"x"}"#);
        assert!(matches!(p.insns[0].test, Test::Eq(..)));
        let p = program(r#"a in {"x", "y"}"#);
        assert!(matches!(p.insns[0].test, Test::In(..)));
    }
}
