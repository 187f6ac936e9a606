//! The registry: where each kind's objects live in the store ([`keys`]) and how stored values decode into
//! resources and encode back ([`decode`], [`stored_json`], [`object_out`]). The engine and the API both use it;
//! it knows neither of them, and it never talks to the store itself.

pub mod keys;

use std::collections::BTreeMap;

use porin_model::{Kind, Resource};
use porin_store::KeyValue;
use serde_json::Value;

/// Why a stored value is not a resource.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the key names no known kind")]
    UnknownKey,
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("{}", if path.is_empty() { message.clone() } else { format!("{path}: {message}") })]
    Invalid { path: String, message: String },
}

/// A stored object that does not decode, and what it locks down.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Undecodable {
    pub key: String,
    pub error: String,
    /// The namespace whose endpoints deny; None: every endpoint.
    pub namespace: Option<String>,
}

/// The resource a stored value of `kind` holds.
pub fn decode(kind: Kind, kv: &KeyValue) -> Result<Resource, DecodeError> {
    let v: Value = serde_json::from_slice(&kv.value).map_err(DecodeError::Json)?;
    porin_model::load::to_resource(kind, v).map_err(|(path, message)| DecodeError::Invalid { path, message })
}

/// Every stored resource that decodes, and every one that does not (never silently dropped).
pub fn decode_all(items: &BTreeMap<String, KeyValue>) -> (Vec<Resource>, Vec<Undecodable>) {
    let mut ok = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for kv in items.values() {
        let parsed = keys::parse_key(&kv.key);
        let res = match &parsed {
            Some((kind, _, _)) => decode(*kind, kv),
            None => Err(DecodeError::UnknownKey),
        };
        match res {
            Ok(r) => ok.push(r),
            Err(e) => bad.push(Undecodable {
                key: kv.key.clone(),
                error: e.to_string(),
                namespace: parsed.and_then(|(_, ns, _)| ns),
            }),
        }
    }
    (ok, bad)
}

/// An object as it is stored: its JSON without `metadata.resourceVersion` (that is the key's mod revision).
pub fn stored_json(r: &Resource) -> Value {
    let mut v = r.to_json();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

/// An object as the API returns it: stored JSON + `metadata.resourceVersion` = the key's mod revision.
pub fn object_out(kv: &KeyValue) -> Value {
    let mut v: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(kv.mod_revision.to_string()));
    }
    v
}
