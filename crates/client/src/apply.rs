//! What `porin apply`, `delete`, `promote` and `demo` share: manifests loaded and validated against the server's
//! tiers, the `List` body the API takes, and the outcome lines it answers with.

use std::io::Write;
use std::path::PathBuf;

use hyper::Method;
use porin_model::{Document, Kind, load_paths, validate_set};

use crate::client::{Client, collection_path, type_name};
use crate::{Error, Result};

/// Load and validate locally (same messages as `porin validate`, with file and document), against the tiers
/// the server has. Writes the errors to `err` and returns None on failure.
pub async fn load_valid(c: &Client, files: &[PathBuf], err: &mut dyn Write) -> Result<Option<Vec<Document>>> {
    let docs = match load_paths(files) {
        Ok(d) => d,
        Err(errors) => {
            errors.iter().try_for_each(|e| writeln!(err, "{e}")).map_err(Error::write)?;
            return Ok(None);
        }
    };
    let tiers = c.call(Method::GET, &collection_path(Kind::Tier, None), None).await?;
    let known = tiers["items"].as_array().into_iter().flatten().filter_map(|t| t["metadata"]["name"].as_str().map(String::from)).collect();
    if let Err(errors) = validate_set(&docs, &known) {
        errors.iter().try_for_each(|e| writeln!(err, "{e}")).map_err(Error::write)?;
        return Ok(None);
    }
    Ok(Some(docs))
}

/// The documents as the `List` the API's apply and delete take.
pub fn list_body(docs: &[Document]) -> Vec<u8> {
    let items: Vec<_> = docs.iter().map(|d| d.resource.to_json()).collect();
    serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})).expect("json")
}

/// The outcome lines of an apply or delete (`type/name action`), each with a kubectl-style suffix
/// (` (dry run)`, ` (server dry run)`, or none).
pub fn outcomes(result: &serde_json::Value, suffix: &str) -> String {
    let mut out = String::new();
    for it in result["items"].as_array().into_iter().flatten() {
        let kind = Kind::from_manifest(it["apiVersion"].as_str().unwrap_or(""), it["kind"].as_str().unwrap_or(""));
        let t = kind.map(type_name).unwrap_or_default();
        out.push_str(&format!("{t}/{} {}{suffix}\n", it["name"].as_str().unwrap_or(""), it["action"].as_str().unwrap_or("")));
    }
    out
}
