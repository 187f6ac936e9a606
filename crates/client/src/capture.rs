//! A PacketCapture's files on the nodes: which nodes hold files, and their download.

use std::collections::BTreeMap;

use crate::Result;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

use crate::client::{Client, ServerError};

pub async fn download(c: &Client, path: &str) -> Result<Vec<u8>> {
    let resp = c.send(Method::GET, path, None).await?;
    let st = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if !st.is_success() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        return Err(ServerError::from_body(st, &v).into());
    }
    Ok(bytes.to_vec())
}

/// The nodes whose status lists files (so an agent of theirs must be reached).
pub fn nodes_with_files(nodes: &[Value]) -> BTreeMap<String, usize> {
    nodes
        .iter()
        .filter_map(|n| {
            let k = n["fileNames"].as_array().map_or(0, Vec::len);
            (k > 0).then(|| (n["node"].as_str().unwrap_or("").to_string(), k))
        })
        .collect()
}
