//! The audit trail: one append-only record per accepted change request, written in the same store
//! transaction as the change (so a change without its record, or a record without its change, cannot exist).
//! Key: `audit/<nanoseconds since epoch, 24 digits>-<4 random hex>`; keys sort by time.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// `created`, `configured` or `deleted`.
    pub action: String,
    pub kind: String,
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// One accepted request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339, UTC.
    pub time: String,
    /// Seconds since the epoch (for filtering).
    pub timestamp: i64,
    /// `token:<name>` or `uid:<n>`.
    pub user: String,
    /// The id of the token used ([`crate::auth::token_id`]), when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// `apply`, `create`, `update`, `delete`, `token-create`.
    pub verb: String,
    /// The node whose API server accepted the request.
    pub node: String,
    pub entries: Vec<AuditEntry>,
}

pub fn new_key() -> String {
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    format!("{}{:024}-{:02x}{:02x}", crate::registry::keys::AUDIT, crate::timefmt::now_nanos(), r[0], r[1])
}
