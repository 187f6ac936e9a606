//! The live agent's policy model, read through the API: what `trace`, `matrix`, `diff` and `test`
//! evaluate when they are given `--live` (or no `-f`).

use crate::{Error, Result};
use hyper::Method;
use porin_model::{Document, Kind};
use serde_json::Value;

use crate::client::{Client, block_on, collection_path};

/// Every object the agent serves (except WorkloadEndpoints, which the policy model does not read).
pub fn fetch_live(c: &Client) -> Result<Vec<Document>> {
    block_on(async {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            if kind == Kind::WorkloadEndpoint {
                continue;
            }
            let path = collection_path(kind, None);
            let list = c.call(Method::GET, &path, None).await.map_err(Error::context(format!("listing {path}")))?;
            for (i, item) in list["items"].as_array().into_iter().flatten().enumerate() {
                let mut item = item.clone();
                if let Some(m) = item.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                let resource = porin_model::load::to_resource(kind, item)
                    .map_err(|(p, m)| invalid!("{path} items[{i}]: {p}: {m}"))?;
                out.push(Document { source: format!("server {path}"), doc: i + 1, prefix: String::new(), resource });
            }
        }
        Ok(out)
    })?
}

/// `base` with every object of `changes` put in place of the one with the same kind, namespace and name
/// (or added): the cluster as it would be after `porin apply -f CHANGES`.
pub fn overlay(base: Vec<Document>, changes: Vec<Document>) -> Vec<Document> {
    let key = |d: &Document| (d.resource.kind(), d.resource.namespace().map(str::to_string), d.resource.name().to_string());
    let replaced: std::collections::BTreeSet<_> = changes.iter().map(key).collect();
    base.into_iter().filter(|d| !replaced.contains(&key(d))).chain(changes).collect()
}
