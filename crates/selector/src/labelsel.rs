//! kubectl-style label selectors (`-l app=web,tier!=db,env in (a,b),!legacy`), compiled to the shared
//! selector AST through `matchLabels`/`matchExpressions` so matching has one implementation.

use std::collections::BTreeMap;

use crate::{LabelSelectorRequirement, Selector};

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

fn set_values(rest: &str, term: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("{term:?}: expected a parenthesised value list"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

/// Parse a kubectl label selector. The empty string selects everything.
pub fn parse(s: &str) -> Result<Selector, String> {
    let mut labels = BTreeMap::new();
    let mut exprs = Vec::new();
    if s.trim().is_empty() {
        return Ok(Selector::all());
    }
    for term in split_terms(s) {
        let t = term.trim();
        if t.is_empty() {
            return Err(format!("{s:?}: empty term"));
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
            return Err(format!("{t:?}: expected key, !key, key=value, key!=value, key in (..) or key notin (..)"));
        } else {
            exprs.push(req(t, "Exists", vec![]));
        }
    }
    Selector::from_label_selector(&labels, &exprs).map_err(|e| format!("{s:?}: {e}"))
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
    }
}
