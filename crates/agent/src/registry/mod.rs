//! The registry: where each kind's objects live in the store ([`keys`]) and how stored values decode into
//! resources and encode back ([`decode`], [`stored_json`], [`object_out`]). The engine and the API both use it;
//! it knows neither of them, and it never talks to the store itself.

pub mod keys;
mod kube;
pub use kube::{kube_owned, kube_resources};

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

/// One stored value, decoded (or why not, and what that locks down).
pub fn decode_kv(kv: &KeyValue) -> Result<Resource, Undecodable> {
    let parsed = keys::parse_key(&kv.key);
    let res = match &parsed {
        Some((kind, _, _)) => decode(*kind, kv),
        None => Err(DecodeError::UnknownKey),
    };
    res.map_err(|e| Undecodable { key: kv.key.clone(), error: e.to_string(), namespace: parsed.and_then(|(_, ns, _)| ns) })
}

/// Every stored resource that decodes, and every one that does not (never silently dropped).
pub fn decode_all(items: &BTreeMap<String, KeyValue>) -> (Vec<Resource>, Vec<Undecodable>) {
    let mut ok = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for kv in items.values() {
        match decode_kv(kv) {
            Ok(r) => ok.push(r),
            Err(u) => bad.push(u),
        }
    }
    (ok, bad)
}

/// The decoded form of every stored value, by key, with the revision it was decoded at: a batch of changes
/// decodes only the values it changed (a key's `mod_revision` names one exact value), so one change among
/// 10k stored objects does not re-parse the other 10k. Equal to [`decode_all`] of the same items.
#[derive(Debug, Default)]
pub struct DecodeCache {
    by_key: std::collections::HashMap<String, (u64, Result<Resource, Undecodable>)>,
}

impl DecodeCache {
    /// Every stored resource that decodes, and every one that does not (never silently dropped), in key order.
    pub fn decode<'a>(&'a mut self, items: &BTreeMap<String, KeyValue>) -> (Vec<&'a Resource>, Vec<Undecodable>) {
        for kv in items.values() {
            match self.by_key.get(&kv.key) {
                Some((rev, _)) if *rev == kv.mod_revision => {}
                _ => {
                    self.by_key.insert(kv.key.clone(), (kv.mod_revision, decode_kv(kv)));
                }
            }
        }
        // Every current key is cached now, so more cached keys than items means deleted keys to forget.
        if self.by_key.len() > items.len() {
            self.by_key.retain(|k, _| items.contains_key(k));
        }
        let mut ok = Vec::with_capacity(items.len());
        let mut bad = Vec::new();
        for k in items.keys() {
            match &self.by_key[k].1 {
                Ok(r) => ok.push(r),
                Err(u) => bad.push(u.clone()),
            }
        }
        (ok, bad)
    }
}

impl DecodeCache {
    /// [`DecodeCache::decode`] of a store listing: each stored object by key, or the first one that does not
    /// decode.
    pub fn decode_list<'a>(&'a mut self, items: &[KeyValue]) -> Result<Vec<(&'a str, &'a Resource)>, Undecodable> {
        for kv in items {
            match self.by_key.get(&kv.key) {
                Some((rev, _)) if *rev == kv.mod_revision => {}
                _ => {
                    self.by_key.insert(kv.key.clone(), (kv.mod_revision, decode_kv(kv)));
                }
            }
        }
        if self.by_key.len() > items.len() {
            let current: std::collections::HashSet<&str> = items.iter().map(|kv| kv.key.as_str()).collect();
            self.by_key.retain(|k, _| current.contains(k.as_str()));
        }
        let mut out = Vec::with_capacity(items.len());
        for kv in items {
            let (k, (_, r)) = self.by_key.get_key_value(&kv.key).expect("cached above");
            match r {
                Ok(r) => out.push((k.as_str(), r)),
                Err(u) => return Err(u.clone()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn kv(key: &str, rev: u64, value: &str) -> (String, KeyValue) {
        (key.to_string(), KeyValue { key: key.into(), value: value.as_bytes().to_vec(), create_revision: 1, mod_revision: rev })
    }

    #[test]
    fn the_decode_cache_equals_a_full_decode_across_puts_deletes_and_breakage() {
        let pod = |name: &str, app: &str| {
            format!("{{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {{\"name\": \"{name}\", \"namespace\": \"shop\", \"labels\": {{\"app\": \"{app}\"}}}}}}")
        };
        let mut items: BTreeMap<String, KeyValue> =
            [kv("resources/core/pods/shop/a", 1, &pod("a", "x")), kv("resources/core/pods/shop/b", 2, &pod("b", "x"))].into_iter().collect();
        let mut cache = DecodeCache::default();
        let check = |cache: &mut DecodeCache, items: &BTreeMap<String, KeyValue>| {
            let (ok, bad) = cache.decode(items);
            let ok: Vec<Resource> = ok.into_iter().cloned().collect();
            assert_eq!((ok, bad), decode_all(items));
        };
        check(&mut cache, &items);
        // A put (new revision) is re-decoded: the cached old value must not survive.
        items.extend([kv("resources/core/pods/shop/a", 3, &pod("a", "y"))]);
        check(&mut cache, &items);
        // A value that stops decoding is reported, not served from the cache.
        items.extend([kv("resources/core/pods/shop/b", 4, "not json")]);
        check(&mut cache, &items);
        assert_eq!(cache.decode(&items).1.len(), 1);
        // A delete, and a re-create under the same key at a new revision.
        items.remove("resources/core/pods/shop/a");
        check(&mut cache, &items);
        items.extend([kv("resources/core/pods/shop/a", 5, &pod("a", "z")), kv("resources/core/pods/shop/c", 6, &pod("c", "z"))]);
        check(&mut cache, &items);
        // A listing with an undecodable value is refused naming it; without it, it equals a full decode.
        let list: Vec<KeyValue> = items.values().cloned().collect();
        assert_eq!(cache.decode_list(&list).unwrap_err().key, "resources/core/pods/shop/b");
        items.remove("resources/core/pods/shop/b");
        let list: Vec<KeyValue> = items.values().cloned().collect();
        let listed: Vec<(String, Resource)> =
            cache.decode_list(&list).unwrap().into_iter().map(|(k, r)| (k.to_string(), r.clone())).collect();
        assert_eq!(listed.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(), decode_all(&items).0);
        assert_eq!(listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), items.keys().map(String::as_str).collect::<Vec<_>>());
        items.remove("resources/core/pods/shop/c");
        items.extend([kv("resources/core/pods/shop/d", 7, &pod("d", "z"))]);
        check(&mut cache, &items);
    }
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
