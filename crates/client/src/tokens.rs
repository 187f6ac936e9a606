//! `porin token`: the request that creates a token, and the table of the tokens the agent lists.

use serde_json::Value;

use crate::Result;

/// What `porin token create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub name: String,
    /// `admin`, `read-only`, `scoped` or `cni`.
    pub role: String,
    pub namespaces: Vec<String>,
    pub tiers: Vec<String>,
    /// A duration like 30m, 24h or 7d, as typed.
    pub ttl: Option<String>,
    pub rotate: bool,
}

/// The body of `POST /porin/v1/tokens`; the TTL must parse as a duration.
pub fn create_body(t: &NewToken) -> Result<Vec<u8>> {
    let ttl = match &t.ttl {
        Some(s) => Some(
            porin_agent::timefmt::parse_duration(s)
                .ok_or_else(|| invalid!("--ttl {s:?}: expected a duration like 30m, 24h or 7d"))?
                .as_secs(),
        ),
        None => None,
    };
    let body = serde_json::json!({"name": t.name, "role": t.role, "namespaces": t.namespaces, "tiers": t.tiers,
        "ttlSeconds": ttl, "rotate": t.rotate});
    Ok(serde_json::to_vec(&body).expect("json"))
}

/// `porin token list`'s table: name, id, role, namespaces, tiers, creation and expiry of each token.
pub fn table(v: &Value) -> String {
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    let j = |x: &Value| {
        let v: Vec<String> = x.as_array().into_iter().flatten().filter_map(|y| y.as_str().map(str::to_string)).collect();
        if v.is_empty() { "-".to_string() } else { v.join(",") }
    };
    let mut out = format!("{:<24} {:<13} {:<10} {:<16} {:<16} {:<21} EXPIRES\n", "NAME", "ID", "ROLE", "NAMESPACES", "TIERS", "CREATED");
    for t in v["items"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<24} {:<13} {:<10} {:<16} {:<16} {:<21} {}\n",
            s(&t["name"]),
            s(&t["id"]),
            s(&t["role"]),
            j(&t["namespaces"]),
            j(&t["tiers"]),
            s(&t["created"]),
            if t["expires"].is_null() { "never".to_string() } else { s(&t["expires"]) }
        ));
    }
    out
}
