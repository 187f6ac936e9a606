//! kubectl-style label selectors (`-l app=web,tier!=db,env in (a,b),!legacy`), compiled to the shared
//! selector AST through `matchLabels`/`matchExpressions` so matching has one implementation.

use std::collections::BTreeMap;

use crate::{LabelSelectorRequirement, Selector, SelectorError};

/// Why a kubectl label selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelSelectorError {
    /// Two commas in a row, or a trailing comma.
    #[error("{selector:?}: empty term")]
    EmptyTerm {
        /// The whole selector.
        selector: String,
    },
    /// `key in x` without parentheses.
    #[error("{term:?}: expected a parenthesised value list")]
    ValueList {
        /// The term.
        term: String,
    },
    /// A term of no known form.
    #[error("{term:?}: expected key, !key, key=value, key!=value, key in (..) or key notin (..)")]
    Syntax {
        /// The term.
        term: String,
    },
    /// A key whose prefix is not a DNS subdomain.
    #[error("{selector:?}: {key:?} is not a label key (its prefix must be a DNS subdomain)")]
    KeyPrefix {
        /// The whole selector.
        selector: String,
        /// The key.
        key: String,
    },
    /// A key that is not a Kubernetes label key.
    #[error("{selector:?}: {key:?} is not a label key")]
    Key {
        /// The whole selector.
        selector: String,
        /// The key.
        key: String,
    },
    /// A value that is not a Kubernetes label value.
    #[error("{selector:?}: {value:?} is not a label value")]
    Value {
        /// The whole selector.
        selector: String,
        /// The value.
        value: String,
    },
    /// The terms do not make a valid selector (a bad key or value).
    #[error("{selector:?}: {source}")]
    Invalid {
        /// The whole selector.
        selector: String,
        /// What is wrong with it.
        source: SelectorError,
    },
}

fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn req(key: &str, op: &str, values: Vec<String>) -> LabelSelectorRequirement {
    LabelSelectorRequirement { key: key.trim().to_string(), operator: op.to_string(), values }
}

fn set_values(rest: &str, term: &str) -> Result<Vec<String>, LabelSelectorError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| LabelSelectorError::ValueList { term: term.to_string() })?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label key as Kubernetes allows it: `[prefix/]name`.
fn check_key(k: &str, term: &str) -> Result<(), LabelSelectorError> {
    let name = match k.rsplit_once('/') {
        Some((prefix, name)) => {
            let dns = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            if !dns {
                return Err(LabelSelectorError::KeyPrefix { selector: term.to_string(), key: k.to_string() });
            }
            name
        }
        None => k,
    };
    if name_ok(name) { Ok(()) } else { Err(LabelSelectorError::Key { selector: term.to_string(), key: k.to_string() }) }
}

fn check_value(v: &str, term: &str) -> Result<(), LabelSelectorError> {
    if v.is_empty() || name_ok(v) { Ok(()) } else { Err(LabelSelectorError::Value { selector: term.to_string(), value: v.to_string() }) }
}

/// Parse a kubectl label selector. The empty string selects everything. Keys and values must be valid
/// Kubernetes label keys and values (so that a mistyped Calico selector is not taken for a kubectl one).
pub fn parse(s: &str) -> Result<Selector, LabelSelectorError> {
    let mut labels = BTreeMap::new();
    let mut exprs = Vec::new();
    if s.trim().is_empty() {
        return Ok(Selector::all());
    }
    for term in split_terms(s) {
        let t = term.trim();
        if t.is_empty() {
            return Err(LabelSelectorError::EmptyTerm { selector: s.to_string() });
        }
        if let Some(k) = t.strip_prefix('!') {
            exprs.push(req(k, "DoesNotExist", vec![]));
        } else if let Some((k, v)) = t.split_once("!=") {
            exprs.push(req(k, "NotIn", vec![v.trim().to_string()]));
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            labels.insert(k.trim().to_string(), v.trim().to_string());
        } else if let Some((k, rest)) = t.split_once(" notin ") {
            exprs.push(req(k, "NotIn", set_values(rest, t)?));
        } else if let Some((k, rest)) = t.split_once(" in ") {
            exprs.push(req(k, "In", set_values(rest, t)?));
        } else if t.contains(' ') || t.contains('(') {
            return Err(LabelSelectorError::Syntax { term: t.to_string() });
        } else {
            exprs.push(req(t, "Exists", vec![]));
        }
    }
    for (k, v) in &labels {
        check_key(k, s)?;
        check_value(v, s)?;
    }
    for r in &exprs {
        check_key(&r.key, s)?;
        for v in &r.values {
            check_value(v, s)?;
        }
    }
    Selector::from_label_selector(&labels, &exprs).map_err(|source| LabelSelectorError::Invalid { selector: s.to_string(), source })
}

/// A selector in either syntax, as every `-l`/`--label` flag and the API's `labelSelector` accept: Porin's
/// (Calico's) selector language first (`app == 'web' && has(tier)`), else kubectl's (`app=web,tier`). The two
/// cannot be confused: a kubectl selector is never a valid Calico expression (Calico quotes its values), and
/// what Calico parses means the same to both where both accept it.
pub fn parse_any(s: &str) -> Result<Selector, AnySyntaxError> {
    match Selector::parse(s) {
        Ok(sel) => Ok(sel),
        Err(calico) => parse(s).map_err(|kubectl| AnySyntaxError { calico: calico.to_string(), kubectl: kubectl.to_string() }),
    }
}

/// Neither syntax accepted the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a selector in either syntax: as Calico's language: {calico}; as kubectl's: {kubectl}")]
pub struct AnySyntaxError {
    /// Why the Calico-language parser refused it.
    pub calico: String,
    /// Why the kubectl parser refused it.
    pub kubectl: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_forms() {
        let l: BTreeMap<String, String> = [("app", "web"), ("env", "prod")].map(|(k, v)| (k.into(), v.into())).into();
        assert!(parse("app=web").unwrap().matches(&l));
        assert!(parse("app==web,env in (prod, dev)").unwrap().matches(&l));
        assert!(!parse("app!=web").unwrap().matches(&l));
        assert!(parse("!legacy,app").unwrap().matches(&l));
        assert!(!parse("env notin (prod)").unwrap().matches(&l));
        assert!(parse("").unwrap().matches(&l));
        assert!(parse("app in web").is_err());
        assert!(parse("a b").is_err());
        assert_eq!(parse("a,,b").unwrap_err().to_string(), "\"a,,b\": empty term");
        assert_eq!(parse("app in web").unwrap_err().to_string(), "\"app in web\": expected a parenthesised value list");
        assert!(parse("app=we'b").is_err(), "quotes are not label values");
        assert!(parse("app == 'web").is_err());
    }

    #[test]
    fn either_syntax_same_meaning() {
        let l: BTreeMap<String, String> = [("app", "web"), ("env", "prod")].map(|(k, v)| (k.into(), v.into())).into();
        let m: BTreeMap<String, String> = [("app", "db")].map(|(k, v)| (k.into(), v.into())).into();
        for (calico, kubectl) in [
            ("app == 'web'", "app=web"),
            ("app != 'web'", "app!=web"),
            ("has(env)", "env"),
            ("!has(env)", "!env"),
            ("app in {'web', 'db'}", "app in (web, db)"),
            ("app not in {'web'}", "app notin (web)"),
            ("app == 'web' && has(env)", "app=web,env"),
        ] {
            let (a, b) = (parse_any(calico).unwrap(), parse_any(kubectl).unwrap());
            for labels in [&l, &m] {
                assert_eq!(a.matches(labels), b.matches(labels), "{calico} vs {kubectl} on {labels:?}");
            }
        }
        let e = parse_any("app == 'web").unwrap_err().to_string();
        assert!(e.contains("Calico") && e.contains("kubectl"), "{e}");
    }
}
