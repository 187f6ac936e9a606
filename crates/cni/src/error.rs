//! CNI errors: the spec's well-known codes (0-99) and Porin's own (100+), printed on stdout as
//! `{"cniVersion", "code", "msg", "details"}` with a non-zero exit.

use serde::Serialize;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration (the message names the field).
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables (the message names them).
pub const INVALID_ENV: u32 = 4;
/// I/O failure.
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content.
pub const DECODE_FAILURE: u32 = 6;
/// Invalid network configuration.
pub const INVALID_CONFIG: u32 = 7;
/// Try again later (a transient condition: the agent is unreachable or busy).
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin is not available (no new container may be added).
pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
/// STATUS: not available, and existing containers may be limited.
pub const PLUGIN_NOT_AVAILABLE_LIMITED: u32 = 51;

/// Porin: the agent refused the binding (403, 409, 422: its message says why).
pub const AGENT_REFUSED: u32 = 100;
/// Porin: the pod is not known to the datastore (the orchestrator must create it first).
pub const UNKNOWN_POD: u32 = 101;
/// Porin: the pod's policy did not reach the kernel in time; nothing was left open (the pod was never
/// reachable) and what ADD created was removed.
pub const NOT_PROGRAMMED: u32 = 102;
/// Porin: creating or configuring the interfaces or routes failed.
pub const INTERFACE_SETUP: u32 = 103;
/// Porin: the delegated IPAM plugin failed (its code and message are in `details`).
pub const IPAM_FAILURE: u32 = 104;

/// One CNI error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("CNI error {code}: {msg}{}", details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: None }
    }

    pub fn with_details(mut self, d: impl Into<String>) -> CniError {
        self.details = Some(d.into());
        self
    }

    /// The JSON the spec wants on stdout.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut v = serde_json::json!({"cniVersion": cni_version, "code": self.code, "msg": self.msg});
        if let Some(d) = &self.details {
            v["details"] = serde_json::Value::String(d.clone());
        }
        v
    }
}

pub type Result<T> = std::result::Result<T, CniError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_shape() {
        let e = CniError::new(INVALID_CONFIG, "bad").with_details("field ipam.type: missing");
        let v = e.to_json("1.1.0");
        assert_eq!(v, serde_json::json!({"cniVersion": "1.1.0", "code": 7, "msg": "bad", "details": "field ipam.type: missing"}));
        let v = CniError::new(TRY_AGAIN_LATER, "x").to_json("1.0.0");
        assert!(v.get("details").is_none());
        assert_eq!(v["code"], 11);
    }
}
