//! Selector index: which policies can select an endpoint, without testing every policy.
//!
//! Each policy is filed under its namespace restriction (or none) and under the label pairs its endpoint
//! selector *requires*: a selector that can only match when label `k` has one of the values `v1…vn` is filed
//! under `(k, v1)…(k, vn)`; a selector that requires nothing this simple (`all()`, `has(k)`, `!…`, `k != v`, …)
//! is filed under "any labels". An endpoint's candidates are the policies filed under its namespace or none,
//! and under one of its own label pairs or "any labels": a superset of the policies that select it. The
//! engine's exact test ([`Cluster::policy_selects`](crate::Cluster::policy_selects)) still decides every
//! candidate, so indexed evaluation gives exactly the linear scan's answer (checked by
//! `tests/selector_index.rs` on random policies and labels).
//!
//! Lookups cost (label pairs of the endpoint + 1) × (1 or 2 namespaces) hash probes plus the candidates, not
//! the policy count.

use std::collections::HashMap;

use porin_selector::Expr;

use crate::ir::{Endpoint, IrPolicy, IrTier};

/// (tier index, position in the tier, policy index): sorts in evaluation order.
type At = (u32, u32, u32);

/// The policies of one namespace restriction (or of none).
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Policies whose selector requires no label pair.
    any: Vec<At>,
    /// label key → label value → policies that require that pair (among others).
    by_label: HashMap<String, HashMap<String, Vec<At>>>,
}

impl Bucket {
    fn collect(&self, labels: &std::collections::BTreeMap<String, String>, out: &mut Vec<At>) {
        out.extend_from_slice(&self.any);
        if self.by_label.is_empty() {
            return;
        }
        for (k, v) in labels {
            if let Some(vals) = self.by_label.get(k.as_str())
                && let Some(list) = vals.get(v.as_str())
            {
                out.extend_from_slice(list);
            }
        }
    }
}

/// The index of one policy set (enforced or pending).
#[derive(Debug, Clone, Default)]
pub struct PolicySetIndex {
    /// Policies without a namespace restriction.
    cluster: Bucket,
    /// Policies restricted to one namespace.
    by_namespace: HashMap<String, Bucket>,
    /// The number of policies indexed: a cluster whose policy list no longer has this length was changed
    /// after [`SelectorIndex::build`] and is evaluated linearly.
    policies: usize,
    built: bool,
}

/// Indices of both policy sets of a [`Cluster`](crate::Cluster), built by [`Cluster::build`](crate::Cluster::build).
#[derive(Debug, Clone, Default)]
pub struct SelectorIndex {
    pub(crate) enforced: PolicySetIndex,
    pub(crate) pending: PolicySetIndex,
}

impl SelectorIndex {
    pub fn build(policies: &[IrPolicy], tiers: &[IrTier], pending: &[IrPolicy], pending_tiers: &[IrTier]) -> SelectorIndex {
        SelectorIndex { enforced: PolicySetIndex::build(policies, tiers), pending: PolicySetIndex::build(pending, pending_tiers) }
    }
}

/// The label pairs a selector requires (one of them must be present), or None when it requires no such pair.
/// `Some(vec![])` means the selector can never match.
pub(crate) fn required_pairs(e: &Expr) -> Option<Vec<(String, String)>> {
    match e {
        Expr::Eq(k, v) => Some(vec![(k.clone(), v.clone())]),
        Expr::In(k, set) => Some(set.iter().map(|v| (k.clone(), v.clone())).collect()),
        // A conjunction needs every operand: the most selective one that requires pairs will do.
        Expr::And(items) => items.iter().filter_map(required_pairs).min_by_key(Vec::len),
        // A disjunction needs one operand: only indexable when every operand is.
        Expr::Or(items) => {
            let mut all = Vec::new();
            for i in items {
                all.extend(required_pairs(i)?);
            }
            all.sort();
            all.dedup();
            Some(all)
        }
        _ => None,
    }
}

impl PolicySetIndex {
    fn build(policies: &[IrPolicy], tiers: &[IrTier]) -> PolicySetIndex {
        let mut idx = PolicySetIndex { policies: policies.len(), built: true, ..PolicySetIndex::default() };
        for (ti, t) in tiers.iter().enumerate() {
            for (pos, &pi) in t.policies.iter().enumerate() {
                let Some(p) = policies.get(pi) else { continue };
                let at = (ti as u32, pos as u32, pi as u32);
                let bucket = match &p.namespace {
                    Some(ns) => idx.by_namespace.entry(ns.clone()).or_default(),
                    None => &mut idx.cluster,
                };
                match required_pairs(p.selector.expr()) {
                    Some(pairs) => {
                        for (k, v) in pairs {
                            bucket.by_label.entry(k).or_default().entry(v).or_default().push(at);
                        }
                    }
                    None => bucket.any.push(at),
                }
            }
        }
        idx
    }

    /// Whether the index describes this policy list (else the caller scans linearly).
    pub(crate) fn usable(&self, policies: &[IrPolicy]) -> bool {
        self.built && self.policies == policies.len()
    }

    /// Candidate policies for `e`, in evaluation order: (tier index, policy index). A superset of the policies
    /// whose endpoint selector and namespace restriction match `e`.
    pub(crate) fn candidates(&self, e: &Endpoint) -> Vec<(usize, usize)> {
        let mut out: Vec<At> = Vec::new();
        self.cluster.collect(&e.labels, &mut out);
        if let Some(b) = self.by_namespace.get(e.namespace.as_str()) {
            b.collect(&e.labels, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out.into_iter().map(|(ti, _, pi)| (ti as usize, pi as usize)).collect()
    }
}
