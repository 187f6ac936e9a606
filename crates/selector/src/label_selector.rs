//! Conversion from a Kubernetes `LabelSelector` (`matchLabels` +
//! `matchExpressions`) to a selector.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ast::{check_label, is_quotable};
use crate::{Expr, Selector, SelectorError};

/// One entry of a Kubernetes `LabelSelector.matchExpressions`.
///
/// Serialises with the Kubernetes field names `key`, `operator` and `values`;
/// `values` may be omitted (as it is for `Exists`/`DoesNotExist`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist` (case-sensitive).
    pub operator: String,
    /// The values for `In`/`NotIn`; must be empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

pub(crate) fn convert(
    match_labels: &BTreeMap<String, String>,
    match_expressions: &[LabelSelectorRequirement],
) -> Result<Selector, SelectorError> {
    let mut terms = Vec::with_capacity(match_labels.len() + match_expressions.len());
    for (k, v) in match_labels {
        let field = format!("matchLabels[{k:?}]");
        key(&field, k)?;
        value(&field, v)?;
        terms.push(Expr::Eq(k.clone(), v.clone()));
    }
    for (i, req) in match_expressions.iter().enumerate() {
        let field = format!("matchExpressions[{i}]");
        key(&field, &req.key)?;
        let k = req.key.clone();
        let term = match req.operator.as_str() {
            op @ ("In" | "NotIn") => {
                if req.values.is_empty() {
                    return Err(SelectorError::unpositioned(format!(
                        "{field}.values: must be non-empty when operator is {op}"
                    )));
                }
                for v in &req.values {
                    value(&format!("{field}.values"), v)?;
                }
                let set: BTreeSet<String> = req.values.iter().cloned().collect();
                if op == "In" {
                    Expr::In(k, set)
                } else {
                    Expr::NotIn(k, set)
                }
            }
            op @ ("Exists" | "DoesNotExist") => {
                if !req.values.is_empty() {
                    return Err(SelectorError::unpositioned(format!(
                        "{field}.values: must be empty when operator is {op}"
                    )));
                }
                if op == "Exists" {
                    Expr::Has(k)
                } else {
                    Expr::Not(Box::new(Expr::Has(k)))
                }
            }
            other => {
                return Err(SelectorError::unpositioned(format!(
                    "{field}.operator: {other:?} is not a valid operator \
                     (expected In, NotIn, Exists or DoesNotExist)"
                )));
            }
        };
        terms.push(term);
    }
    Selector::from_expr(Expr::conjunction(terms))
}

fn key(field: &str, k: &str) -> Result<(), SelectorError> {
    check_label(k).map_err(|why| SelectorError::unpositioned(format!("{field}: key {k:?}: {why}")))
}

fn value(field: &str, v: &str) -> Result<(), SelectorError> {
    if is_quotable(v) {
        Ok(())
    } else {
        Err(SelectorError::unpositioned(format!(
            "{field}: value {v:?} contains both ' and \", which a selector cannot express"
        )))
    }
}
