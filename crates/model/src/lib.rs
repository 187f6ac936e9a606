//! Porin's resource model: the Kubernetes kinds policy depends on (Namespace, Pod, NetworkPolicy) and Porin's
//! tiered-policy kinds (`porin.io/v1`, also accepted unchanged as `projectcalico.org/v3`).
//!
//! Owns: the resource types, the kind table, loading and validation. Never: policy semantics, the store, the network.
//!
//! Pure: no I/O besides [`load`], which reads the files and streams it is pointed at. Everything that comes in
//! goes through [`load::parse_documents`] and [`validate`]; an input set with any error is rejected whole, and
//! every error names the source, the document, the field path and the problem.

#![forbid(unsafe_code)]

pub mod calico_export;
pub mod conntest;
pub mod guard;
pub mod endpoint;
pub mod k8s;
pub mod kind;
pub mod load;
pub mod meta;
pub mod porin;
pub mod capture;
pub mod recscope;
pub mod report;
pub mod schema;
pub mod respond;
pub mod threatfeed;
pub mod validate;

use serde::{Deserialize, Serialize};

pub use kind::{Kind, KindInfo};
pub use load::{Document, ManifestError, load_paths, load_paths_partial, parse_documents, parse_documents_partial};
pub use meta::{LabelSelector, ObjectMeta};
pub use validate::{ValidationError, parse_cidr, parse_port_spec, PortMatch, validate_set};

/// Policy direction / `policyTypes` / `types` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

/// L4 protocols that carry ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
    pub fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }
    pub fn from_name(s: &str) -> Option<Protocol> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed object: apiVersion, kind, metadata, spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: S,
    /// Accepted (kubectl writes it) and ignored, except for Pods.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

/// A Pod: like [`Object`] but with a typed status (pod IPs) and tolerant of every field Porin does not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: k8s::PodSpec,
    #[serde(default)]
    pub status: k8s::PodStatus,
}

/// A Namespace: tolerant of spec/status fields (finalizers, phase) Porin does not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// A ServiceAccount: only its metadata matters (its labels are what service-account selectors match);
/// `secrets`, `imagePullSecrets` and `automountServiceAccountToken` are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// Every kind Porin understands, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    Namespace(Namespace),
    Pod(Pod),
    ServiceAccount(ServiceAccount),
    K8sNetworkPolicy(Object<k8s::K8sNetworkPolicySpec>),
    Tier(Object<porin::TierSpec>),
    NetworkPolicy(Object<porin::PolicySpec>),
    GlobalNetworkPolicy(Object<porin::PolicySpec>),
    StagedNetworkPolicy(Object<porin::PolicySpec>),
    StagedGlobalNetworkPolicy(Object<porin::PolicySpec>),
    StagedKubernetesNetworkPolicy(Object<porin::StagedK8sSpec>),
    NetworkSet(Object<porin::NetworkSetSpec>),
    GlobalNetworkSet(Object<porin::NetworkSetSpec>),
    ClusterSettings(Object<porin::ClusterSettingsSpec>),
    /// Boxed: its spec is much larger than the other kinds'.
    WorkloadEndpoint(Box<Object<porin::WorkloadEndpointSpec>>),
    ConnectivityTest(Object<conntest::ConnectivityTestSpec>),
    ReachabilityGuard(Object<guard::ReachabilityGuardSpec>),
    GlobalReport(Object<report::GlobalReportSpec>),
    GlobalThreatFeed(Object<threatfeed::GlobalThreatFeedSpec>),
    Quarantine(Object<respond::QuarantineSpec>),
    Honeypod(Object<respond::HoneypodSpec>),
    PacketCapture(Object<capture::PacketCaptureSpec>),
    RecommendationScope(Object<recscope::RecommendationScopeSpec>),
}

macro_rules! each_resource {
    ($self:expr, $o:ident => $e:expr) => {
        match $self {
            Resource::Namespace($o) => $e,
            Resource::Pod($o) => $e,
            Resource::ServiceAccount($o) => $e,
            Resource::K8sNetworkPolicy($o) => $e,
            Resource::Tier($o) => $e,
            Resource::NetworkPolicy($o) => $e,
            Resource::GlobalNetworkPolicy($o) => $e,
            Resource::StagedNetworkPolicy($o) => $e,
            Resource::StagedGlobalNetworkPolicy($o) => $e,
            Resource::StagedKubernetesNetworkPolicy($o) => $e,
            Resource::NetworkSet($o) => $e,
            Resource::GlobalNetworkSet($o) => $e,
            Resource::ClusterSettings($o) => $e,
            Resource::WorkloadEndpoint($o) => $e,
            Resource::ConnectivityTest($o) => $e,
            Resource::ReachabilityGuard($o) => $e,
            Resource::GlobalReport($o) => $e,
            Resource::GlobalThreatFeed($o) => $e,
            Resource::Quarantine($o) => $e,
            Resource::Honeypod($o) => $e,
            Resource::PacketCapture($o) => $e,
            Resource::RecommendationScope($o) => $e,
        }
    };
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Namespace(_) => Kind::Namespace,
            Resource::Pod(_) => Kind::Pod,
            Resource::ServiceAccount(_) => Kind::ServiceAccount,
            Resource::K8sNetworkPolicy(_) => Kind::K8sNetworkPolicy,
            Resource::Tier(_) => Kind::Tier,
            Resource::NetworkPolicy(_) => Kind::NetworkPolicy,
            Resource::GlobalNetworkPolicy(_) => Kind::GlobalNetworkPolicy,
            Resource::StagedNetworkPolicy(_) => Kind::StagedNetworkPolicy,
            Resource::StagedGlobalNetworkPolicy(_) => Kind::StagedGlobalNetworkPolicy,
            Resource::StagedKubernetesNetworkPolicy(_) => Kind::StagedKubernetesNetworkPolicy,
            Resource::NetworkSet(_) => Kind::NetworkSet,
            Resource::GlobalNetworkSet(_) => Kind::GlobalNetworkSet,
            Resource::ClusterSettings(_) => Kind::ClusterSettings,
            Resource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Resource::ConnectivityTest(_) => Kind::ConnectivityTest,
            Resource::ReachabilityGuard(_) => Kind::ReachabilityGuard,
            Resource::GlobalReport(_) => Kind::GlobalReport,
            Resource::GlobalThreatFeed(_) => Kind::GlobalThreatFeed,
            Resource::Quarantine(_) => Kind::Quarantine,
            Resource::Honeypod(_) => Kind::Honeypod,
            Resource::PacketCapture(_) => Kind::PacketCapture,
            Resource::RecommendationScope(_) => Kind::RecommendationScope,
        }
    }
    pub fn metadata(&self) -> &ObjectMeta {
        each_resource!(self, o => &o.metadata)
    }
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each_resource!(self, o => &mut o.metadata)
    }
    pub fn api_version(&self) -> &str {
        each_resource!(self, o => &o.api_version)
    }
    pub fn name(&self) -> &str {
        &self.metadata().name
    }
    /// The namespace for namespaced kinds (never empty after loading), None for cluster-scoped kinds.
    pub fn namespace(&self) -> Option<&str> {
        if self.kind().info().namespaced { self.metadata().namespace.as_deref() } else { None }
    }
    /// `namespace/name` or `name`, as used in messages and keys.
    pub fn qualified_name(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{ns}/{}", self.name()),
            None => self.name().to_string(),
        }
    }
    /// The object as JSON, exactly as it would be written back (apiVersion, kind, metadata, spec).
    pub fn to_json(&self) -> serde_json::Value {
        each_resource!(self, o => serde_json::to_value(o).expect("model types always serialize"))
    }
}

impl Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        each_resource!(self, o => o.serialize(s))
    }
}
