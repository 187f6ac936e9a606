//! Incident response and decoys: `Quarantine` (system-owned, namespaced, named after the quarantined pod),
//! `Honeypod` (namespaced decoy workloads), and the reserved names the engine and the API's write path share.
//!
//! A quarantine is its own record, joined to the pod by the engine (which gives the endpoint the reserved label
//! [`LABEL_QUARANTINED`]): re-applying the pod's manifest cannot remove it. Only `porin quarantine` /
//! `porin release` write these records, the `porin-quarantine` tier and its policy; only `porin block` /
//! `porin unblock` write the `porin-blocklist` GlobalNetworkSet and the `porin-block` tier (see
//! docs/design/respond.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Protocol;

/// The tier `porin quarantine` creates; evaluated before every other tier.
pub const TIER_QUARANTINE: &str = "porin-quarantine";
/// The tier `porin block` creates; evaluated right after the quarantine tier.
pub const TIER_BLOCK: &str = "porin-block";
/// The tier the engine adds for decoys (never stored); after quarantine and block, before every user tier.
pub const TIER_HONEYPOD: &str = "porin-honeypod";
/// System tiers in evaluation order: they precede every user tier whatever the users' orders.
pub const SYSTEM_TIERS: [&str; 3] = [TIER_QUARANTINE, TIER_BLOCK, TIER_HONEYPOD];
/// The quarantine tier's one policy (a GlobalNetworkPolicy).
pub const POLICY_QUARANTINE: &str = "porin-quarantine.isolate";
/// The block tier's one policy (a GlobalNetworkPolicy).
pub const POLICY_BLOCK: &str = "porin-block.blocklist";
/// The GlobalNetworkSet holding the blocked ranges.
pub const BLOCKLIST_SET: &str = "porin-blocklist";
/// Label of [`BLOCKLIST_SET`] (value `true`); the block policy selects it.
pub const LABEL_BLOCKLIST: &str = "porin.io/blocklist";
/// Label the engine gives a quarantined endpoint (value `true`), never taken from a manifest.
pub const LABEL_QUARANTINED: &str = "porin.io/quarantined";
/// Label the engine gives a decoy endpoint (value: the Honeypod's name), never taken from a manifest.
pub const LABEL_HONEYPOD: &str = "porin.io/honeypod";
/// Labels only the engine sets on endpoints: a manifest's value is ignored (and refused by the API).
pub const RESERVED_ENDPOINT_LABELS: [&str; 2] = [LABEL_QUARANTINED, LABEL_HONEYPOD];
/// Default selector of the cluster DNS a quarantined workload may still reach (UDP/TCP 53).
pub const DEFAULT_DNS_SELECTOR: &str = "k8s-app == 'kube-dns'";
/// Default selector of the monitoring workloads that may still reach a quarantined workload.
pub const DEFAULT_MONITORING_SELECTOR: &str = "porin.io/role == 'monitoring'";

/// Is `tier` one of the system tiers (reserved names)?
pub fn is_system_tier(tier: &str) -> bool {
    SYSTEM_TIERS.contains(&tier)
}

/// `Quarantine`: `metadata.name` is the pod's name, `metadata.namespace` its namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuarantineSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who quarantined it (the API's caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// RFC 3339 time of the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// `Honeypod`: a decoy workload. The kernel lab creates a pod `metadata.name` in `metadata.namespace` with
/// `spec.labels`, whose server answers on `spec.ports`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoneypodSpec {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<HoneypodPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoneypodPort {
    pub port: u16,
    /// TCP (default), UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// Problems of a Honeypod spec: (field path, message).
pub fn check_honeypod(s: &HoneypodSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if s.ports.is_empty() {
        out.push(("spec.ports".to_string(), "a decoy needs at least one port to answer on".to_string()));
    }
    for (i, p) in s.ports.iter().enumerate() {
        if p.port == 0 {
            out.push((format!("spec.ports[{i}].port"), "port must be 1-65535".to_string()));
        }
    }
    for k in s.labels.keys() {
        if RESERVED_ENDPOINT_LABELS.contains(&k.as_str()) {
            out.push((format!("spec.labels.{k}"), format!("label {k:?} is reserved (set by Porin)")));
        }
    }
    out
}
