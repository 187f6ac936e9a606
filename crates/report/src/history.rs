//! The policy model over time: the objects as they are now, with the audited changes undone back to any
//! instant. Every accepted change is audited in the same store transaction as the change, with the object
//! before and after, so undoing the records after `t` gives exactly the objects at `t` (as far back as the
//! audit trail reaches: before its first record, the store held nothing).

use std::collections::BTreeMap;

use porin_model::{Kind, Resource};
use serde::Deserialize;
use serde_json::Value;

/// The fields of one audited object change that history needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView {
    pub action: String,
    pub kind: String,
    pub api_version: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default)]
    pub before: Option<Value>,
    #[serde(default)]
    pub after: Option<Value>,
}

/// The fields of one audit record (one accepted request) that history needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecordView {
    pub time: String,
    pub timestamp: i64,
    pub user: String,
    pub verb: String,
    pub entries: Vec<AuditEntryView>,
}

/// A stored object the history cannot use.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("audit record of {time}: {kind} {name:?} ({which}) does not decode: {path}: {message}")]
    Undecodable { time: String, kind: String, name: String, which: &'static str, path: String, message: String },
}

type Key = (Kind, Option<String>, String);

/// The objects from `from` (seconds since the epoch) until the next state.
#[derive(Debug, Clone)]
pub struct State {
    pub from: i64,
    pub objects: Vec<Resource>,
}

/// Objects now plus the audit trail, able to produce the objects at any instant.
#[derive(Debug, Clone)]
pub struct History {
    /// The objects before the first audit record.
    initial: BTreeMap<Key, Value>,
    records: Vec<AuditRecordView>,
}

fn model_kind(e: &AuditEntryView) -> Option<Kind> {
    Kind::from_manifest(&e.api_version, &e.kind).filter(|k| k.is_model())
}

trait IsModel {
    fn is_model(self) -> bool;
}

impl IsModel for Kind {
    /// Kinds the policy model reads.
    fn is_model(self) -> bool {
        matches!(
            self,
            Kind::Namespace
                | Kind::Pod
                | Kind::ServiceAccount
                | Kind::K8sNetworkPolicy
                | Kind::Tier
                | Kind::NetworkPolicy
                | Kind::GlobalNetworkPolicy
                | Kind::StagedNetworkPolicy
                | Kind::StagedGlobalNetworkPolicy
                | Kind::StagedKubernetesNetworkPolicy
                | Kind::NetworkSet
                | Kind::GlobalNetworkSet
                | Kind::ClusterSettings
        )
    }
}

fn key(k: Kind, e: &AuditEntryView) -> Key {
    (k, e.namespace.clone(), e.name.clone())
}

fn apply(state: &mut BTreeMap<Key, Value>, rec: &AuditRecordView, forward: bool) {
    let entries: Box<dyn Iterator<Item = &AuditEntryView>> =
        if forward { Box::new(rec.entries.iter()) } else { Box::new(rec.entries.iter().rev()) };
    for e in entries {
        let Some(k) = model_kind(e) else { continue };
        let v = if forward { &e.after } else { &e.before };
        match v {
            Some(v) => state.insert(key(k, e), v.clone()),
            None => state.remove(&key(k, e)),
        };
    }
}

impl History {
    /// `current`: every model object now; `records`: the audit trail (any order).
    pub fn new(current: &[Resource], mut records: Vec<AuditRecordView>) -> History {
        records.sort_by_key(|r| r.timestamp);
        let mut state: BTreeMap<Key, Value> = current
            .iter()
            .filter(|r| r.kind().is_model())
            .map(|r| ((r.kind(), r.namespace().map(str::to_string), r.name().to_string()), r.to_json()))
            .collect();
        for rec in records.iter().rev() {
            apply(&mut state, rec, false);
        }
        History { initial: state, records }
    }

    pub fn records(&self) -> &[AuditRecordView] {
        &self.records
    }

    /// When the audit trail starts (RFC 3339), if it has any record.
    pub fn audit_since(&self) -> Option<&str> {
        self.records.first().map(|r| r.time.as_str())
    }

    fn decode(map: &BTreeMap<Key, Value>, time: &str) -> Result<Vec<Resource>, HistoryError> {
        map.iter()
            .map(|((k, _, name), v)| {
                let mut v = v.clone();
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                porin_model::load::to_resource(*k, v).map_err(|(path, message)| HistoryError::Undecodable {
                    time: time.to_string(),
                    kind: k.to_string(),
                    name: name.clone(),
                    which: "stored state",
                    path,
                    message,
                })
            })
            .collect()
    }

    /// The states covering `[start, end]`: the objects at `start`, then after every audited model change in
    /// `(start, end]`.
    pub fn states_in(&self, start: i64, end: i64) -> Result<Vec<State>, HistoryError> {
        let mut state = self.initial.clone();
        let mut out = Vec::new();
        let mut emitted_start = false;
        for rec in &self.records {
            if rec.timestamp > start && !emitted_start {
                out.push(State { from: start, objects: Self::decode(&state, &rec.time)? });
                emitted_start = true;
            }
            if rec.timestamp > end {
                break;
            }
            let touches = rec.entries.iter().any(|e| model_kind(e).is_some());
            apply(&mut state, rec, true);
            if rec.timestamp > start && touches {
                out.push(State { from: rec.timestamp, objects: Self::decode(&state, &rec.time)? });
            }
        }
        if !emitted_start {
            out.push(State { from: start, objects: Self::decode(&state, "now")? });
        }
        Ok(out)
    }

    /// The objects just before record `i` was applied.
    pub fn state_before_record(&self, i: usize) -> Result<Vec<Resource>, HistoryError> {
        let mut state = self.initial.clone();
        for rec in &self.records[..i] {
            apply(&mut state, rec, true);
        }
        Self::decode(&state, &self.records[i].time)
    }

    /// The objects just after record `i` was applied.
    pub fn state_after_record(&self, i: usize) -> Result<Vec<Resource>, HistoryError> {
        let mut state = self.initial.clone();
        for rec in &self.records[..=i] {
            apply(&mut state, rec, true);
        }
        Self::decode(&state, &self.records[i].time)
    }
}
