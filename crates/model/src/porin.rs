//! Porin's own kinds (`porin.io/v1`), which are also accepted as `projectcalico.org/v3` with the same shape.
//!
//! Fields Calico has and Porin does not implement are listed explicitly (as `Unsupported`) so a manifest that
//! uses them is rejected with a clear message instead of being half-applied; every other unknown field is a
//! plain "unknown field" error.

use serde::{Deserialize, Serialize};

use crate::{PolicyType, Protocol};

/// Tier spec: `order` (lower first; missing = last) and the action when no rule of a selecting policy matched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<TierDefaultAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TierDefaultAction {
    Deny,
    Pass,
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Deny,
    Pass,
    Log,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
            Action::Log => "Log",
        })
    }
}

/// Spec of NetworkPolicy and GlobalNetworkPolicy (and their staged twins, which add `stagedAction`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// GlobalNetworkPolicy only: selects endpoints by their namespace's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<PolicyType>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Staged kinds only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<StagedAction>,
    /// Accepted for Calico compatibility; never changes enforcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_hints: Option<Vec<String>>,
    /// Host-endpoint flags: Porin has no host endpoints yet, so `true` is rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_not_track: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "preDNAT")]
    pub pre_dnat: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_on_forward: Option<bool>,
}

impl PolicySpec {
    /// Calico defaulting of `types`: from the rules present; no rules at all means Ingress.
    pub fn effective_types(&self) -> (bool, bool) {
        match &self.types {
            Some(t) if !t.is_empty() => (t.contains(&PolicyType::Ingress), t.contains(&PolicyType::Egress)),
            _ => {
                let (i, e) = (!self.ingress.is_empty(), !self.egress.is_empty());
                if !i && !e { (true, false) } else { (i, e) }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StagedAction {
    Set,
    Delete,
    Learn,
    Ignore,
}

/// One ordered rule. All criteria are ANDed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ProtocolSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<ProtocolSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "notICMP")]
    pub not_icmp: Option<IcmpMatch>,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    /// L7 HTTP match: not implemented; rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Protocol by name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or number 1-255.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProtocolSpec {
    Number(i64),
    Name(String),
}

impl ProtocolSpec {
    /// The IP protocol number, or None for an unknown name.
    pub fn number(&self) -> Option<u8> {
        match self {
            ProtocolSpec::Number(n) => u8::try_from(*n).ok().filter(|n| *n >= 1),
            ProtocolSpec::Name(s) => Protocol::from_name(s).map(|p| p.number()).or_else(|| {
                match s.to_ascii_lowercase().as_str() {
                    "icmp" => Some(1),
                    "icmpv6" => Some(58),
                    "udplite" => Some(136),
                    _ => s.parse::<u8>().ok().filter(|n| *n >= 1),
                }
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpMatch {
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub icmp_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

/// Source or destination of a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
    /// Kubernetes Service match: not implemented; rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<serde_json::Value>,
    /// Domain (FQDN) match: not implemented; rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<PortSpec>,
}

impl EntityRule {
    pub fn is_empty(&self) -> bool {
        self == &EntityRule::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// A port entry: a number, a `"lo:hi"` range, or a named port (resolved on the destination endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    Number(i64),
    Text(String),
}

/// NetworkSet / GlobalNetworkSet: a labelled list of CIDRs, selectable as a rule peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// Enterprise-only egress domains: not implemented; rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_egress_domains: Option<serde_json::Value>,
}

/// Cluster-wide settings. `defaultEndpointAction: Deny` is zero-trust mode: a workload no policy selects is
/// denied instead of allowed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSettingsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_action: Option<DefaultEndpointAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DefaultEndpointAction {
    Allow,
    Deny,
}

/// StagedKubernetesNetworkPolicy: an upstream NetworkPolicy spec plus `stagedAction`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedK8sSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<StagedAction>,
    #[serde(default)]
    pub pod_selector: crate::meta::LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<PolicyType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<crate::k8s::K8sIngressRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<crate::k8s::K8sEgressRule>>,
}

impl StagedK8sSpec {
    pub fn as_k8s(&self) -> crate::k8s::K8sNetworkPolicySpec {
        crate::k8s::K8sNetworkPolicySpec {
            pod_selector: self.pod_selector.clone(),
            policy_types: self.policy_types.clone(),
            ingress: self.ingress.clone(),
            egress: self.egress.clone(),
        }
    }
}

/// WorkloadEndpoint (`porin.io/v1`, or Calico's `projectcalico.org/v3` shape): binds a pod to its host-side
/// interface and its addresses. System-owned: written by the CNI path (a `cni` token) or an admin, never by
/// tenants. The agent of `node` attaches to `interfaceName` **in its own network namespace** (there is no
/// way to name another one) and enforces the policy of pod `metadata.namespace`/`pod` there.
///
/// Accepted and not used yet (documented, never changes enforcement): `containerID`, `endpoint`,
/// `orchestrator`, `workload`, `mac`, `ports`, `serviceAccountName`, `profiles`, `ipv4Gateway`,
/// `ipv6Gateway`. Calico fields that would change enforcement and are not implemented (`ipNATs`,
/// `allowSpoofedSourcePrefixes`, `qosControls`) are rejected by validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    /// The node whose agent enforces this endpoint (`porin agent --node`).
    #[serde(default)]
    pub node: String,
    /// The pod's name, in the WorkloadEndpoint's namespace.
    #[serde(default)]
    pub pod: String,
    /// The host-side interface (veth) in the node's network namespace.
    #[serde(default)]
    pub interface_name: String,
    /// The pod's addresses, one host prefix each (`/32`, `/128`); at most one IPv4 and one IPv6.
    #[serde(default, rename = "ipNetworks", skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    #[serde(default, rename = "containerID", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadEndpointPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway: Option<String>,
    /// Not implemented; rejected by validation.
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Option::is_none")]
    pub ip_nats: Option<serde_json::Value>,
    /// Not implemented; rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_spoofed_source_prefixes: Option<serde_json::Value>,
    /// Not implemented; rejected by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_controls: Option<serde_json::Value>,
}

/// A named port of a WorkloadEndpoint (Calico's `WorkloadEndpointPort`); accepted, not used yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointPort {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ProtocolSpec>,
    #[serde(default)]
    pub port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

impl WorkloadEndpointSpec {
    /// The addresses of `ipNetworks` that parse as host prefixes (validation rejects the others).
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        self.ip_networks
            .iter()
            .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
            .filter(|n| n.prefix_len() == n.max_prefix_len())
            .map(|n| n.addr())
            .collect()
    }
}
