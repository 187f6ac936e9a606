//! The engine's internal representation: every policy kind normalised into one shape, endpoints with their
//! selector-visible labels, tiers sorted. Built once from validated resources; evaluation never looks at the
//! manifests again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use porin_model::k8s::{IntOrString, K8sNetworkPolicySpec};
use porin_model::porin::{
    Action, DefaultEndpointAction, EntityRule, PolicySpec, StagedAction, TierDefaultAction,
};
use porin_model::respond;
use porin_model::validate::DEFAULT_TIER;
use porin_model::{PortMatch, Protocol, Resource, parse_cidr, parse_port_spec};
use porin_selector::{Labels, Selector};

use crate::EngineError;
use crate::Shared;

mod convert;
use convert::*;

/// Label keys Porin adds to every endpoint, as Calico does, so selectors can name them.
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
pub const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
/// Label keys every namespace carries.
pub const NS_LABEL_NAME: &str = "kubernetes.io/metadata.name";
pub const NS_LABEL_CALICO_NAME: &str = "projectcalico.org/name";

/// Kubernetes NetworkPolicies sit in the default tier at this order.
pub const K8S_POLICY_ORDER: f64 = 1000.0;
/// The default tier's order.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// A workload endpoint (a Pod).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub namespace: String,
    pub name: String,
    /// The pod's labels plus the Porin-added keys (namespace, service account, orchestrator).
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    /// What a service-account selector sees: the ServiceAccount object's labels plus `projectcalico.org/name`
    /// (its name), or only the name label when no such ServiceAccount exists (see [`sa_labels`]).
    pub sa_labels: BTreeMap<String, String>,
    pub ips: Vec<IpAddr>,
    /// Named container ports: (name, protocol, port).
    pub named_ports: Vec<(String, Protocol, u16)>,
    /// Every declared container port.
    pub ports: Vec<(Protocol, u16)>,
}

impl Endpoint {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    /// The address used for a connection of the given family.
    pub fn ip_of_family(&self, v6: bool) -> Option<IpAddr> {
        self.ips.iter().copied().find(|ip| ip.is_ipv6() == v6)
    }
    pub fn resolve_named_port(&self, name: &str, proto: Protocol) -> Option<u16> {
        self.named_ports.iter().find(|(n, p, _)| n == name && *p == proto).map(|(_, _, port)| *port)
    }
}

/// A labelled CIDR list (NetworkSet or GlobalNetworkSet).
#[derive(Debug, Clone, PartialEq)]
pub struct NetSet {
    /// None for a GlobalNetworkSet.
    pub namespace: Option<String>,
    pub name: String,
    /// The set's own labels; selectors see [`NetSet::selector_labels`].
    pub labels: BTreeMap<String, String>,
    pub nets: Vec<IpNet>,
}

impl NetSet {
    /// The labels rule selectors see: a namespaced NetworkSet also carries its namespace as
    /// `projectcalico.org/namespace`, which wins over an own label of that name, as on endpoints (libcalico-go
    /// updateprocessors/networksetprocessor.go, convertNetworkSetV2ToV1Value); a GlobalNetworkSet only its own
    /// labels (globalnetworksetprocessor.go).
    pub fn selector_labels(&self) -> NetSetLabels<'_> {
        NetSetLabels(self)
    }
}

/// See [`NetSet::selector_labels`].
pub struct NetSetLabels<'a>(&'a NetSet);
impl Labels for NetSetLabels<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match (&self.0.namespace, key) {
            (Some(ns), LABEL_NAMESPACE) => Some(ns),
            _ => self.0.labels.get(key).map(String::as_str),
        }
    }
}

/// Which family of policy a policy came from; part of its identity and of how it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    K8s,
    Namespaced,
    Global,
}

/// Identity of a policy: kind family, namespace, name, and whether it is the staged variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    pub kind: PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
    pub staged: bool,
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let staged = if self.staged { "staged:" } else { "" };
        match (&self.kind, &self.namespace) {
            (PolicyKind::K8s, Some(ns)) => write!(f, "{ns}/{staged}knp.{}", self.name),
            (_, Some(ns)) => write!(f, "{ns}/{staged}{}", self.name),
            (_, None) => write!(f, "{staged}{}", self.name),
        }
    }
}

/// Which namespaces a peer selector looks in.
#[derive(Debug, Clone, PartialEq)]
pub enum NsScope {
    /// Only this namespace (a namespaced policy without namespaceSelector).
    Same(String),
    /// Namespaces whose labels match.
    Selected(Selector),
    /// Every namespace, plus global network sets (a global policy without namespaceSelector).
    Any,
    /// `global()`: only non-namespaced things (global network sets).
    Global,
}

/// A Calico-style entity rule (source or destination).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entity {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    /// (selector, notSelector) applied within `scope`; None = no constraint.
    pub selector: Option<Selector>,
    pub not_selector: Option<Selector>,
    pub scope: Option<NsScope>,
    pub sa_names: Vec<String>,
    pub sa_selector: Option<Selector>,
    pub ports: Vec<PortMatch>,
    pub not_ports: Vec<PortMatch>,
}

/// A Kubernetes peer.
#[derive(Debug, Clone, PartialEq)]
pub enum K8sPeer {
    /// Pods matching `pods` in namespaces matching `namespaces` (None = the policy's own namespace).
    Pods { pods: Selector, namespaces: Option<Selector> },
    IpBlock { cidr: IpNet, except: Vec<IpNet> },
}

/// A Kubernetes port entry: protocol plus an optional port (number range or name).
#[derive(Debug, Clone, PartialEq)]
pub struct K8sPortIr {
    pub protocol: Protocol,
    pub port: Option<PortMatch>,
}

/// What a rule matches. (The Calico variant is larger; rules are few and built once, so it is not boxed.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RuleMatch {
    /// Upstream semantics: peer in any of `peers` (empty = any peer), port in any of `ports` (empty = any).
    K8s { peers: Vec<K8sPeer>, ports: Vec<K8sPortIr> },
    Calico {
        ip_version: Option<u8>,
        protocol: Option<u8>,
        not_protocol: Option<u8>,
        icmp: Option<(Option<u8>, Option<u8>)>,
        not_icmp: Option<(Option<u8>, Option<u8>)>,
        source: Entity,
        destination: Entity,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct IrRule {
    pub action: Action,
    pub matcher: RuleMatch,
}

/// A policy in normalised form.
#[derive(Debug, Clone, PartialEq)]
pub struct IrPolicy {
    pub id: PolicyId,
    pub tier: String,
    /// None sorts last.
    pub order: Option<f64>,
    /// Endpoint selection: namespace restriction, label selector, namespace-label selector, service accounts.
    pub namespace: Option<String>,
    pub selector: Selector,
    pub namespace_selector: Option<Selector>,
    pub sa_selector: Option<Selector>,
    pub ingress_type: bool,
    pub egress_type: bool,
    /// Shared with the model's copy of this policy (and with the next revision's when the policy did not change).
    pub ingress: Shared<Vec<IrRule>>,
    pub egress: Shared<Vec<IrRule>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IrTier {
    pub name: String,
    pub order: Option<f64>,
    pub default_action: TierDefaultAction,
    /// Indices into [`Cluster::policies`] / [`Cluster::pending_policies`], sorted by order then name.
    pub policies: Vec<usize>,
}

/// Everything the engine evaluates: endpoints, namespaces, network sets, tiers and policies, in two variants —
/// enforced, and pending (staged policies applied).
#[derive(Debug, Clone, Default)]
///
/// Cloning is cheap where it matters: the endpoint side (namespaces, service accounts, endpoints) and every
/// policy's rules are [`Shared`], so consecutive revisions share what did not change.
pub struct Cluster {
    pub namespaces: Shared<BTreeMap<String, BTreeMap<String, String>>>,
    /// Every ServiceAccount object's labels as service-account selectors see them ([`sa_labels`]), by
    /// (namespace, name). A service account with no object is not here: it has only its name label.
    pub service_accounts: Shared<BTreeMap<(String, String), BTreeMap<String, String>>>,
    pub endpoints: Shared<Vec<Endpoint>>,
    pub net_sets: Vec<NetSet>,
    pub default_allow: bool,
    pub policies: Vec<IrPolicy>,
    pub tiers: Vec<IrTier>,
    pub pending_policies: Vec<IrPolicy>,
    pub pending_tiers: Vec<IrTier>,
    /// True when at least one staged policy exists (pending differs from enforced).
    pub has_staged: bool,
    /// Which policies can select which endpoints, by namespace and required label pairs (built by
    /// [`Cluster::build`]; a hand-built cluster, or one whose policy lists changed length since, is scanned
    /// linearly). Evaluation gives the same answers with or without it.
    pub selector_index: std::sync::Arc<crate::index::SelectorIndex>,
}

/// An endpoint's labels as selectors see them.
pub struct NsLabels<'a>(pub &'a BTreeMap<String, String>);
impl Labels for NsLabels<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

fn ns_labels(name: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = labels.clone();
    l.insert(NS_LABEL_NAME.into(), name.into());
    l.insert(NS_LABEL_CALICO_NAME.into(), name.into());
    l
}

/// The labels a service-account selector sees for service account `name` whose object carries `labels` (empty
/// when the object does not exist): as Calico's `ksa.<namespace>.<name>` profile, the object's labels plus
/// `projectcalico.org/name` = the name, which overrides a label of that key on the object.
pub fn sa_labels(name: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = labels.clone();
    l.insert(SA_LABEL_NAME.into(), name.into());
    l
}

/// The label that carries a service account's name for service-account selectors.
pub const SA_LABEL_NAME: &str = "projectcalico.org/name";

/// One stored object's contribution to the model, converted on its own: the engine keeps these by key and
/// revision so that a batch of changes converts only the objects it changed ([`Cluster::assemble`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ModelPart {
    /// A namespace and its labels (with the name labels every namespace carries).
    Namespace { name: String, labels: BTreeMap<String, String> },
    /// A ServiceAccount: the labels its selectors see ([`sa_labels`]); joined to its pods at assembly.
    ServiceAccount { namespace: String, name: String, labels: BTreeMap<String, String> },
    Tier { name: String, order: Option<f64>, default_action: TierDefaultAction },
    /// ClusterSettings: the default endpoint action.
    Settings { default_allow: bool },
    NetSet(NetSet),
    Endpoint(Endpoint),
    /// An enforced policy.
    Policy(IrPolicy),
    /// A staged policy; `delete`: it stages the deletion of the same-named policy.
    Staged { policy: IrPolicy, delete: bool },
    /// A quarantine record (`porin quarantine`): labels its pod [`respond::LABEL_QUARANTINED`] at assembly.
    Quarantine { namespace: String, name: String },
    /// A decoy: labels its pod [`respond::LABEL_HONEYPOD`] at assembly, with the engine's policy for it.
    Honeypod { namespace: String, name: String, policy: Box<IrPolicy> },
    /// Nothing the model looks at (WorkloadEndpoints, reports, ...).
    Other,
}

impl ModelPart {
    /// Convert one resource that passed validation. Errors only on things validation cannot see in one document.
    pub fn of(r: &Resource) -> Result<ModelPart, EngineError> {
        Ok(match r {
            Resource::Namespace(n) => {
                ModelPart::Namespace { name: n.metadata.name.clone(), labels: ns_labels(&n.metadata.name, &n.metadata.labels) }
            }
            Resource::ServiceAccount(a) => ModelPart::ServiceAccount {
                namespace: a.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
                name: a.metadata.name.clone(),
                labels: sa_labels(&a.metadata.name, &a.metadata.labels),
            },
            Resource::Tier(t) => {
                let (order, default_action) = if t.metadata.name == DEFAULT_TIER {
                    (Some(DEFAULT_TIER_ORDER), TierDefaultAction::Deny)
                } else {
                    (t.spec.order, t.spec.default_action.unwrap_or(TierDefaultAction::Deny))
                };
                ModelPart::Tier { name: t.metadata.name.clone(), order, default_action }
            }
            Resource::ClusterSettings(s) => {
                ModelPart::Settings { default_allow: s.spec.default_endpoint_action != Some(DefaultEndpointAction::Deny) }
            }
            Resource::NetworkSet(s) | Resource::GlobalNetworkSet(s) => {
                let nets = s.spec.nets.iter().map(|n| parse_cidr(n)).collect::<Result<Vec<_>, _>>()
                    .map_err(|m| EngineError::Invalid(format!("{} {}: {m}", r.kind(), r.qualified_name())))?;
                ModelPart::NetSet(NetSet {
                    namespace: r.namespace().map(str::to_string),
                    name: s.metadata.name.clone(),
                    labels: s.metadata.labels.clone(),
                    nets,
                })
            }
            Resource::Pod(p) => {
                let ns = p.metadata.namespace.clone().unwrap_or_else(|| "default".into());
                let sa = p
                    .spec
                    .service_account_name
                    .clone()
                    .or_else(|| p.spec.service_account.clone())
                    .unwrap_or_else(|| "default".into());
                let mut labels = p.metadata.labels.clone();
                // System-owned labels (docs/design/respond.md) come from the joins at assembly, never from a manifest.
                for k in respond::RESERVED_ENDPOINT_LABELS {
                    labels.remove(k);
                }
                labels.insert(LABEL_NAMESPACE.into(), ns.clone());
                labels.insert(LABEL_SERVICE_ACCOUNT.into(), sa.clone());
                labels.insert(LABEL_ORCHESTRATOR.into(), "k8s".into());
                let mut ips: Vec<IpAddr> = Vec::new();
                for s in p.status.pod_ip.iter().chain(p.status.pod_ips.iter().map(|i| &i.ip)) {
                    if let Ok(ip) = s.parse::<IpAddr>()
                        && !ips.contains(&ip) {
                            ips.push(ip);
                        }
                }
                let mut named_ports = Vec::new();
                let mut ports = Vec::new();
                for ctr in &p.spec.containers {
                    for cp in &ctr.ports {
                        let proto = cp.protocol.unwrap_or(Protocol::Tcp);
                        let Ok(port) = u16::try_from(cp.container_port) else { continue };
                        if !ports.contains(&(proto, port)) {
                            ports.push((proto, port));
                        }
                        if let Some(n) = &cp.name {
                            named_ports.push((n.clone(), proto, port));
                        }
                    }
                }
                ModelPart::Endpoint(Endpoint {
                    namespace: ns,
                    name: p.metadata.name.clone(),
                    labels,
                    // The pod's service account is looked up in its own namespace at assembly.
                    sa_labels: sa_labels(&sa, &BTreeMap::new()),
                    service_account: sa,
                    ips,
                    named_ports,
                    ports,
                })
            }
            Resource::K8sNetworkPolicy(o) => ModelPart::Policy(k8s_policy(r, &o.spec, false)?),
            Resource::StagedKubernetesNetworkPolicy(o) => ModelPart::Staged {
                policy: k8s_policy(r, &o.spec.as_k8s(), true)?,
                delete: o.spec.staged_action == Some(StagedAction::Delete),
            },
            Resource::NetworkPolicy(o) => ModelPart::Policy(calico_policy(r, &o.spec, PolicyKind::Namespaced, false)?),
            Resource::GlobalNetworkPolicy(o) => ModelPart::Policy(calico_policy(r, &o.spec, PolicyKind::Global, false)?),
            // A dismissed recommendation (stagedAction Ignore) proposes nothing.
            Resource::StagedNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o)
                if o.spec.staged_action == Some(StagedAction::Ignore) =>
            {
                ModelPart::Other
            }
            Resource::Quarantine(_) => ModelPart::Quarantine {
                namespace: r.namespace().unwrap_or("default").to_string(),
                name: r.name().to_string(),
            },
            Resource::Honeypod(h) => ModelPart::Honeypod {
                namespace: r.namespace().unwrap_or("default").to_string(),
                name: r.name().to_string(),
                policy: Box::new(honeypod_policy(r, &h.spec)?),
            },
            Resource::StagedNetworkPolicy(o) => ModelPart::Staged {
                policy: calico_policy(r, &o.spec, PolicyKind::Namespaced, true)?,
                delete: o.spec.staged_action == Some(StagedAction::Delete),
            },
            Resource::StagedGlobalNetworkPolicy(o) => ModelPart::Staged {
                policy: calico_policy(r, &o.spec, PolicyKind::Global, true)?,
                delete: o.spec.staged_action == Some(StagedAction::Delete),
            },
            _ => ModelPart::Other,
        })
    }
}

impl Cluster {
    /// Build from resources that passed validation. Errors only on things validation cannot see in one
    /// document (they are reported, not guessed around).
    pub fn build<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Result<Cluster, EngineError> {
        // Conversion errors in the order the two passes of the model meet them: network sets first.
        let resources: Vec<&Resource> = resources.into_iter().collect();
        let mut parts: Vec<Option<ModelPart>> = vec![None; resources.len()];
        for (i, r) in resources.iter().enumerate() {
            if matches!(r, Resource::NetworkSet(_) | Resource::GlobalNetworkSet(_)) {
                parts[i] = Some(ModelPart::of(r)?);
            }
        }
        for (i, r) in resources.iter().enumerate() {
            if parts[i].is_none() {
                parts[i] = Some(ModelPart::of(r)?);
            }
        }
        Cluster::assemble(parts.iter().flatten())
    }

    /// The model of converted parts, in the order of their objects (the same model as [`Cluster::build`] of
    /// those objects in that order).
    pub fn assemble<'a>(parts: impl IntoIterator<Item = &'a ModelPart>) -> Result<Cluster, EngineError> {
        Cluster::assemble_reusing(parts, None)
    }

    /// [`Cluster::assemble`], taking the endpoint side (namespaces, service accounts and endpoints) from
    /// `endpoint_side` instead of assembling it, shared, not copied. The caller guarantees that `endpoint_side`
    /// was assembled from the same namespace, service account, pod, quarantine and honeypod parts as `parts`
    /// holds (only policies, tiers, network sets or settings changed since); the result is then the same.
    pub fn assemble_reusing<'a>(
        parts: impl IntoIterator<Item = &'a ModelPart>,
        endpoint_side: Option<&Cluster>,
    ) -> Result<Cluster, EngineError> {
        let parts: Vec<&ModelPart> = parts.into_iter().collect();
        let mut c = Cluster { default_allow: true, ..Default::default() };
        if let Some(e) = endpoint_side {
            c.namespaces = e.namespaces.clone();
            c.service_accounts = e.service_accounts.clone();
            c.endpoints = e.endpoints.clone();
        }
        let reuse = endpoint_side.is_some();
        let mut tier_specs: BTreeMap<String, (Option<f64>, TierDefaultAction)> = BTreeMap::new();
        tier_specs.insert(DEFAULT_TIER.into(), (Some(DEFAULT_TIER_ORDER), TierDefaultAction::Deny));
        let mut enforced: Vec<IrPolicy> = Vec::new();
        let mut staged: Vec<(&IrPolicy, bool /*delete*/)> = Vec::new();
        // System-owned joins (docs/design/respond.md): quarantine records and decoys label their pods; decoys
        // get the engine's own honeypod tier.
        let mut quarantined: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut decoys: BTreeSet<(&str, &str)> = BTreeSet::new();
        for p in &parts {
            match p {
                ModelPart::Quarantine { namespace, name } => {
                    quarantined.insert((namespace, name));
                }
                ModelPart::Honeypod { namespace, name, policy } => {
                    decoys.insert((namespace, name));
                    enforced.push((**policy).clone());
                }
                _ => {}
            }
        }
        if !decoys.is_empty() {
            tier_specs.insert(respond::TIER_HONEYPOD.into(), (Some(f64::MIN), TierDefaultAction::Deny));
        }
        for p in &parts {
            match p {
                ModelPart::Namespace { name, labels } if !reuse => {
                    c.namespaces.insert(name.clone(), labels.clone());
                }
                ModelPart::ServiceAccount { namespace, name, labels } if !reuse => {
                    c.service_accounts.insert((namespace.clone(), name.clone()), labels.clone());
                }
                ModelPart::Tier { name, order, default_action } => {
                    tier_specs.insert(name.clone(), (*order, *default_action));
                }
                ModelPart::Settings { default_allow } => c.default_allow = *default_allow,
                ModelPart::NetSet(s) => c.net_sets.push(s.clone()),
                _ => {}
            }
        }
        for p in &parts {
            match p {
                ModelPart::Endpoint(e) if !reuse => {
                    if !c.namespaces.contains_key(&e.namespace) {
                        c.namespaces.insert(e.namespace.clone(), ns_labels(&e.namespace, &BTreeMap::new()));
                    }
                    let key = (e.namespace.as_str(), e.name.as_str());
                    let (q, d) = (quarantined.contains(&key), decoys.contains(&key));
                    let mut e = e.clone();
                    if q {
                        e.labels.insert(respond::LABEL_QUARANTINED.into(), "true".into());
                    }
                    if d {
                        e.labels.insert(respond::LABEL_HONEYPOD.into(), e.name.clone());
                    }
                    if let Some(l) = c.service_accounts.get(&(e.namespace.clone(), e.service_account.clone())) {
                        e.sa_labels = l.clone();
                    }
                    c.endpoints.push(e);
                }
                ModelPart::Policy(p) => enforced.push(p.clone()),
                ModelPart::Staged { policy, delete } => staged.push((policy, *delete)),
                _ => {}
            }
        }
        if !reuse {
            c.endpoints.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        }
        c.has_staged = !staged.is_empty();
        // Pending = enforced with every staged policy applied: Set replaces (or adds) the same-named policy of
        // the same family, Delete removes it.
        let mut pending = enforced.clone();
        for (p, delete) in staged {
            let same = |q: &IrPolicy| {
                q.id.kind == p.id.kind && q.id.namespace == p.id.namespace && q.id.name == p.id.name
            };
            pending.retain(|q| !same(q));
            if !delete {
                pending.push(p.clone());
            }
        }
        c.tiers = sort_tiers(&tier_specs, &enforced)?;
        c.pending_tiers = sort_tiers(&tier_specs, &pending)?;
        c.policies = enforced;
        c.pending_policies = pending;
        c.reindex();
        Ok(c)
    }

    /// Rebuild [`Cluster::selector_index`] after changing the policies or tiers by hand.
    pub fn reindex(&mut self) {
        self.selector_index = std::sync::Arc::new(crate::index::SelectorIndex::build(
            &self.policies,
            &self.tiers,
            &self.pending_policies,
            &self.pending_tiers,
        ));
    }

    pub fn endpoint(&self, id: &str) -> Option<usize> {
        let (ns, name) = id.split_once('/')?;
        self.endpoints.iter().position(|e| e.namespace == ns && e.name == name)
    }

    pub fn endpoint_by_ip(&self, ip: IpAddr) -> Option<usize> {
        self.endpoints.iter().position(|e| e.ips.contains(&ip))
    }

    /// Does `sel` match namespace `ns`'s labels (with its name labels)? No copy of the labels is made.
    pub fn namespace_matches(&self, sel: &Selector, ns: &str) -> bool {
        match self.namespaces.get(ns) {
            Some(labels) => sel.matches(labels),
            None => sel.matches(&ns_labels(ns, &BTreeMap::new())),
        }
    }

    /// The labels a service-account selector sees for service account `name` of namespace `ns`.
    pub fn service_account_labels(&self, ns: &str, name: &str) -> BTreeMap<String, String> {
        match self.service_accounts.get(&(ns.to_string(), name.to_string())) {
            Some(l) => l.clone(),
            None => sa_labels(name, &BTreeMap::new()),
        }
    }

    pub fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.namespaces.get(ns).cloned().unwrap_or_else(|| ns_labels(ns, &BTreeMap::new()))
    }
}

fn sort_tiers(
    specs: &BTreeMap<String, (Option<f64>, TierDefaultAction)>,
    policies: &[IrPolicy],
) -> Result<Vec<IrTier>, EngineError> {
    let mut tiers: Vec<IrTier> = specs
        .iter()
        .map(|(name, (order, action))| IrTier { name: name.clone(), order: *order, default_action: *action, policies: vec![] })
        .collect();
    // System tiers (quarantine, block, honeypod) come first in their fixed order, whatever any user tier's order.
    let rank = |t: &IrTier| respond::SYSTEM_TIERS.iter().position(|s| *s == t.name).unwrap_or(respond::SYSTEM_TIERS.len());
    tiers.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| cmp_order(a.order, b.order)).then_with(|| a.name.cmp(&b.name)));
    for (i, p) in policies.iter().enumerate() {
        let Some(t) = tiers.iter_mut().find(|t| t.name == p.tier) else {
            return Err(EngineError::UnknownTier { policy: p.id.to_string(), tier: p.tier.clone() });
        };
        t.policies.push(i);
    }
    // The tie-break keys once per policy, not per comparison.
    let keys: Vec<String> = policies.iter().map(policy_sort_key).collect();
    for t in &mut tiers {
        t.policies.sort_by(|&a, &b| {
            let (pa, pb) = (&policies[a], &policies[b]);
            cmp_order(pa.order, pb.order).then_with(|| keys[a].cmp(&keys[b]))
        });
    }
    Ok(tiers)
}

/// The engine's policy for one decoy, in tier [`respond::TIER_HONEYPOD`]: ingress on the decoy's ports is
/// allowed from anywhere (a scanner gets answers), every other packet to or from the decoy is denied. Being in a
/// system tier, it decides every packet of a decoy before any user policy: an app team's `all()` cannot open the
/// decoy further or let it reach anything.
fn honeypod_policy(r: &Resource, h: &respond::HoneypodSpec) -> Result<IrPolicy, EngineError> {
    let ns = r.namespace().unwrap_or("default");
    let name = r.name();
    let mut by_proto: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
    for p in &h.ports {
        let proto = match p.protocol.unwrap_or(Protocol::Tcp) {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        };
        by_proto.entry(proto).or_default().push(p.port);
    }
    let mut ingress: Vec<serde_json::Value> = by_proto
        .iter()
        .map(|(proto, ports)| serde_json::json!({"action": "Allow", "protocol": proto, "destination": {"ports": ports}}))
        .collect();
    ingress.push(serde_json::json!({"action": "Deny"}));
    let v = serde_json::json!({
        "apiVersion": "porin.io/v1",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": format!("{}.{ns}.{name}", respond::TIER_HONEYPOD)},
        "spec": {
            "tier": respond::TIER_HONEYPOD,
            "order": 0,
            "selector": format!("{} == '{name}' && {LABEL_NAMESPACE} == '{ns}'", respond::LABEL_HONEYPOD),
            "types": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": [{"action": "Deny"}],
        }
    });
    let res = porin_model::load::to_resource(porin_model::Kind::GlobalNetworkPolicy, v)
        .map_err(|(p, m)| EngineError::Invalid(format!("Honeypod {ns}/{name}: {p}: {m}")))?;
    let Resource::GlobalNetworkPolicy(o) = &res else { unreachable!("decoded as a GlobalNetworkPolicy") };
    calico_policy(&res, &o.spec, PolicyKind::Global, false)
}

/// Ties on order break on `name/namespace/kind`, compared as a string (as Calico does).
fn policy_sort_key(p: &IrPolicy) -> String {
    format!("{}/{}/{:?}", p.id.name, p.id.namespace.as_deref().unwrap_or(""), p.id.kind)
}

/// Order comparison where None (no order) sorts after every number.
pub fn cmp_order(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// Every CIDR any rule or network set mentions: the boundaries that can change a verdict for an IP.
pub fn all_cidrs(c: &Cluster) -> BTreeSet<IpNet> {
    let mut out = BTreeSet::new();
    for s in &c.net_sets {
        out.extend(s.nets.iter().copied());
    }
    for p in c.policies.iter().chain(c.pending_policies.iter()) {
        for rule in p.ingress.iter().chain(p.egress.iter()) {
            match &rule.matcher {
                RuleMatch::K8s { peers, .. } => {
                    for peer in peers {
                        if let K8sPeer::IpBlock { cidr, except } = peer {
                            out.insert(*cidr);
                            out.extend(except.iter().copied());
                        }
                    }
                }
                RuleMatch::Calico { source, destination, .. } => {
                    for e in [source, destination] {
                        out.extend(e.nets.iter().copied());
                        out.extend(e.not_nets.iter().copied());
                    }
                }
            }
        }
    }
    out
}
