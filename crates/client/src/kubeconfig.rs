//! A kubeconfig for `kubectl` against the agent's API: one cluster, user and context of the same name.

use base64::Engine as _;
use serde_json::{Value, json};

/// Standard base64 (RFC 4648, padded), for `certificate-authority-data`.
pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The kubeconfig: cluster `server` (with the CA's PEM embedded when given), a user with the bearer `token`, a
/// context (with `namespace` as its default) that is the current one.
pub fn document(name: &str, server: &str, ca_pem: Option<&[u8]>, token: &str, namespace: Option<&str>) -> Value {
    let mut cluster = serde_json::Map::new();
    cluster.insert("server".into(), json!(server));
    if let Some(pem) = ca_pem {
        cluster.insert("certificate-authority-data".into(), json!(base64(pem)));
    }
    let mut context = json!({"cluster": name, "user": name});
    if let Some(ns) = namespace {
        context["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
