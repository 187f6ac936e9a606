//! Compliance reports for auditors (Calico's GlobalReport types): which workloads were protected by ingress
//! and egress policy over an interval, who could reach them from the internet and other namespaces, and which
//! policy changes touched them.
//!
//! Owns: the report computation, from three inputs the caller reads from the agent — the objects as they are
//! now, the audit trail (every accepted change with the object before and after), and flow records. The
//! policy model at any instant of the interval is reconstructed from the current objects by undoing the audited
//! changes made after it ([`history`]); that is how "protected for the whole interval" is established.
//! Must never: do I/O, read clocks, or guess: a state it cannot reconstruct is reported, not assumed.

#![forbid(unsafe_code)]

pub mod history;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use porin_flow::{EndpointKind, FlowRecord, Verdict};
use porin_model::{Kind, Resource};
use porin_policy::{Cluster, Direction, PolicyId, PolicyKind, Variant};
use porin_selector::Selector;
use serde::Serialize;

pub use history::{AuditEntryView, AuditRecordView, History, HistoryError, State};

/// The report types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportType {
    /// Endpoints, namespaces and service accounts in scope; ingress/egress protection over the interval.
    Inventory,
    /// Inventory plus, per endpoint, traffic from/to the internet and other namespaces (from flows).
    NetworkAccess,
    /// Policy changes in the interval that affect in-scope endpoints.
    PolicyAudit,
}

impl ReportType {
    pub fn parse(s: &str) -> Option<ReportType> {
        Some(match s {
            "inventory" => ReportType::Inventory,
            "network-access" => ReportType::NetworkAccess,
            "policy-audit" => ReportType::PolicyAudit,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReportType::Inventory => "inventory",
            ReportType::NetworkAccess => "network-access",
            ReportType::PolicyAudit => "policy-audit",
        }
    }
}

/// Which endpoints a report covers: namespaces (empty: all) and an endpoint selector (Calico syntax).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub namespaces: BTreeSet<String>,
    pub selector: Option<Selector>,
}

impl Scope {
    pub fn contains(&self, ep: &porin_policy::Endpoint) -> bool {
        (self.namespaces.is_empty() || self.namespaces.contains(&ep.namespace))
            && self.selector.as_ref().is_none_or(|s| s.matches(&ep.labels))
    }
}

/// One endpoint of an inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointEntry {
    pub namespace: String,
    pub pod: String,
    pub service_account: String,
    /// Protected for ingress at every instant of the interval at which the endpoint existed.
    pub ingress_protected: bool,
    pub egress_protected: bool,
    /// Seconds since the epoch: the part of the interval in which the endpoint existed.
    pub first_seen: i64,
    pub last_seen: i64,
    /// Seconds of the interval without ingress / egress protection (0 when protected throughout).
    pub ingress_unprotected_seconds: i64,
    pub egress_unprotected_seconds: i64,
    /// Policies that select it for ingress / egress at the end of the interval (`tier|policy`).
    pub ingress_policies: Vec<String>,
    pub egress_policies: Vec<String>,
    /// Flow facts (network-access reports only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// What flows show about one endpoint (network-access).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    pub ingress_from_internet: bool,
    pub egress_to_internet: bool,
    pub ingress_from_other_namespaces: BTreeSet<String>,
    pub egress_to_other_namespaces: BTreeSet<String>,
    /// Flow records (connections in an interval) seen, allowed and denied, in each direction.
    pub ingress_allowed: u64,
    pub ingress_denied: u64,
    pub egress_allowed: u64,
    pub egress_denied: u64,
}

/// Counts for the summary and the chart.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub endpoints: usize,
    pub ingress_protected: usize,
    pub egress_protected: usize,
    pub namespaces: usize,
    /// Namespaces all of whose in-scope endpoints were protected both ways for the whole interval.
    pub namespaces_fully_protected: usize,
    pub service_accounts: usize,
    pub ingress_from_internet: usize,
    pub egress_to_internet: usize,
    pub policy_changes: usize,
}

/// One audited policy change that touched in-scope endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyChange {
    pub time: String,
    pub timestamp: i64,
    pub user: String,
    pub verb: String,
    pub action: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// In-scope endpoints the policy selected before or after the change (`ns/pod`).
    pub affected_endpoints: Vec<String>,
}

/// A finished report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub report_type: ReportType,
    /// The GlobalReport's name, or the type for an ad-hoc run.
    pub name: String,
    pub start: i64,
    pub end: i64,
    pub generated_by: String,
    /// How protection was established: the number of policy-model states evaluated, and from when the
    /// audit trail reaches back.
    pub method: String,
    pub summary: Summary,
    pub namespaces: Vec<String>,
    pub service_accounts: Vec<String>,
    pub endpoints: Vec<EndpointEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_changes: Vec<PolicyChange>,
}

/// Errors computing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("the policy model at {time} does not build: {error}")]
    Model { time: i64, error: String },
    #[error("the interval is empty: start {start} is not before end {end}")]
    EmptyInterval { start: i64, end: i64 },
}

/// Whether an address is on the public internet (not private, loopback, link-local, CGNAT or ULA).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            !(v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_multicast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            !(v.is_loopback() || v.is_unspecified() || v.is_multicast() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

fn protected(c: &Cluster, ep: &porin_policy::Endpoint, dir: Direction) -> bool {
    !c.default_allow || !c.applicable(Variant::Enforced, ep, dir).is_empty()
}

fn policy_names(c: &Cluster, ep: &porin_policy::Endpoint, dir: Direction) -> Vec<String> {
    c.applicable(Variant::Enforced, ep, dir)
        .into_iter()
        .flat_map(|(ti, ps)| ps.into_iter().map(move |pi| format!("{}|{}", c.tiers[ti].name, c.policies[pi].id)))
        .collect()
}

struct Acc {
    entry: EndpointEntry,
}

/// Computes a report over `[start, end]` (seconds since the epoch) from the reconstructed `history`, the
/// flow records of the interval (network-access), for the endpoints in `scope`.
pub fn compute(
    kind: ReportType,
    name: &str,
    scope: &Scope,
    history: &History,
    flows: &[FlowRecord],
    start: i64,
    end: i64,
) -> Result<Report, ReportError> {
    if start >= end {
        return Err(ReportError::EmptyInterval { start, end });
    }
    let states = history.states_in(start, end)?;
    let mut clusters = Vec::with_capacity(states.len());
    for (i, s) in states.iter().enumerate() {
        let c = Cluster::build(s.objects.iter()).map_err(|e| ReportError::Model { time: s.from, error: e.to_string() })?;
        let until = states.get(i + 1).map_or(end, |n| n.from);
        clusters.push((s.from.max(start), until, c));
    }
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    for (from, until, c) in &clusters {
        let span = (until - from).max(0);
        for ep in c.endpoints.iter().filter(|e| scope.contains(e)) {
            let a = acc.entry(ep.id()).or_insert_with(|| Acc {
                entry: EndpointEntry {
                    namespace: ep.namespace.clone(),
                    pod: ep.name.clone(),
                    service_account: ep.service_account.clone(),
                    ingress_protected: true,
                    egress_protected: true,
                    first_seen: *from,
                    last_seen: *until,
                    ingress_unprotected_seconds: 0,
                    egress_unprotected_seconds: 0,
                    ingress_policies: Vec::new(),
                    egress_policies: Vec::new(),
                    access: None,
                },
            });
            a.entry.last_seen = *until;
            if !protected(c, ep, Direction::Ingress) {
                a.entry.ingress_protected = false;
                a.entry.ingress_unprotected_seconds += span;
            }
            if !protected(c, ep, Direction::Egress) {
                a.entry.egress_protected = false;
                a.entry.egress_unprotected_seconds += span;
            }
            a.entry.ingress_policies = policy_names(c, ep, Direction::Ingress);
            a.entry.egress_policies = policy_names(c, ep, Direction::Egress);
        }
    }
    if kind == ReportType::NetworkAccess {
        for a in acc.values_mut() {
            a.entry.access = Some(Access::default());
        }
        for r in flows.iter().filter(|r| r.end_time_secs() >= start && r.start_time_secs() <= end) {
            let id = |e: &porin_flow::FlowEndpoint| match (&e.namespace, &e.pod) {
                (Some(ns), Some(p)) => Some(format!("{ns}/{p}")),
                _ => None,
            };
            let outside = |e: &porin_flow::FlowEndpoint| {
                matches!(e.kind, EndpointKind::World | EndpointKind::NetworkSet | EndpointKind::Unknown)
                    && e.ip.is_some_and(is_public)
            };
            let allowed = r.verdict == Verdict::Allowed;
            if let Some(a) = id(&r.dst).and_then(|k| acc.get_mut(&k)).and_then(|a| a.entry.access.as_mut()) {
                a.ingress_from_internet |= outside(&r.src);
                if let Some(ns) = &r.src.namespace
                    && Some(ns) != r.dst.namespace.as_ref()
                    && r.src.kind == EndpointKind::Pod
                {
                    a.ingress_from_other_namespaces.insert(ns.clone());
                }
                if allowed { a.ingress_allowed += 1 } else { a.ingress_denied += 1 }
            }
            if let Some(a) = id(&r.src).and_then(|k| acc.get_mut(&k)).and_then(|a| a.entry.access.as_mut()) {
                a.egress_to_internet |= outside(&r.dst);
                if let Some(ns) = &r.dst.namespace
                    && Some(ns) != r.src.namespace.as_ref()
                    && r.dst.kind == EndpointKind::Pod
                {
                    a.egress_to_other_namespaces.insert(ns.clone());
                }
                if allowed { a.egress_allowed += 1 } else { a.egress_denied += 1 }
            }
        }
    }
    let policy_changes = if kind == ReportType::PolicyAudit { policy_changes(scope, history, start, end)? } else { Vec::new() };
    let endpoints: Vec<EndpointEntry> = acc.into_values().map(|a| a.entry).collect();
    let namespaces: BTreeSet<String> = endpoints.iter().map(|e| e.namespace.clone()).collect();
    let service_accounts: BTreeSet<String> = endpoints.iter().map(|e| format!("{}/{}", e.namespace, e.service_account)).collect();
    let fully = namespaces
        .iter()
        .filter(|ns| endpoints.iter().filter(|e| &e.namespace == *ns).all(|e| e.ingress_protected && e.egress_protected))
        .count();
    let summary = Summary {
        endpoints: endpoints.len(),
        ingress_protected: endpoints.iter().filter(|e| e.ingress_protected).count(),
        egress_protected: endpoints.iter().filter(|e| e.egress_protected).count(),
        namespaces: namespaces.len(),
        namespaces_fully_protected: fully,
        service_accounts: service_accounts.len(),
        ingress_from_internet: endpoints.iter().filter(|e| e.access.as_ref().is_some_and(|a| a.ingress_from_internet)).count(),
        egress_to_internet: endpoints.iter().filter(|e| e.access.as_ref().is_some_and(|a| a.egress_to_internet)).count(),
        policy_changes: policy_changes.len(),
    };
    let method = format!(
        "{} policy-model state(s) evaluated over the interval, reconstructed from the current objects and the audit trail{}",
        clusters.len(),
        match history.audit_since() {
            Some(t) => format!(" (audited changes since {t})"),
            None => " (no audited change yet)".to_string(),
        }
    );
    Ok(Report {
        report_type: kind,
        name: name.to_string(),
        start,
        end,
        generated_by: String::new(),
        method,
        summary,
        namespaces: namespaces.into_iter().collect(),
        service_accounts: service_accounts.into_iter().collect(),
        endpoints,
        policy_changes,
    })
}

/// The policy id an audited object has in the engine, if it is a policy.
fn policy_id(kind: Kind, namespace: Option<&str>, name: &str) -> Option<PolicyId> {
    let (k, staged) = match kind {
        Kind::K8sNetworkPolicy => (PolicyKind::K8s, false),
        Kind::NetworkPolicy => (PolicyKind::Namespaced, false),
        Kind::GlobalNetworkPolicy => (PolicyKind::Global, false),
        Kind::StagedKubernetesNetworkPolicy => (PolicyKind::K8s, true),
        Kind::StagedNetworkPolicy => (PolicyKind::Namespaced, true),
        Kind::StagedGlobalNetworkPolicy => (PolicyKind::Global, true),
        _ => return None,
    };
    Some(PolicyId { kind: k, namespace: namespace.map(str::to_string), name: name.to_string(), staged })
}

fn selected_by(c: &Cluster, id: &PolicyId, scope: &Scope) -> BTreeSet<String> {
    let policies = if id.staged { &c.pending_policies } else { &c.policies };
    let Some(p) = policies.iter().find(|p| &p.id == id) else { return BTreeSet::new() };
    c.endpoints.iter().filter(|e| scope.contains(e) && c.policy_selects(p, e)).map(|e| e.id()).collect()
}

fn policy_changes(scope: &Scope, history: &History, start: i64, end: i64) -> Result<Vec<PolicyChange>, ReportError> {
    let mut out = Vec::new();
    for (i, rec) in history.records().iter().enumerate() {
        if rec.timestamp <= start || rec.timestamp > end {
            continue;
        }
        let entries: Vec<(&AuditEntryView, PolicyId)> = rec
            .entries
            .iter()
            .filter_map(|e| {
                let k = Kind::from_manifest(&e.api_version, &e.kind)?;
                Some((e, policy_id(k, e.namespace.as_deref(), &e.name)?))
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        let before = history.state_before_record(i)?;
        let after = history.state_after_record(i)?;
        let build = |objs: &[Resource]| {
            Cluster::build(objs.iter()).map_err(|e| ReportError::Model { time: rec.timestamp, error: e.to_string() })
        };
        let (cb, ca) = (build(&before)?, build(&after)?);
        for (e, id) in entries {
            let mut affected = selected_by(&cb, &id, scope);
            affected.extend(selected_by(&ca, &id, scope));
            if affected.is_empty() {
                continue;
            }
            out.push(PolicyChange {
                time: rec.time.clone(),
                timestamp: rec.timestamp,
                user: rec.user.clone(),
                verb: rec.verb.clone(),
                action: e.action.clone(),
                kind: e.kind.clone(),
                namespace: e.namespace.clone(),
                name: e.name.clone(),
                affected_endpoints: affected.into_iter().collect(),
            });
        }
    }
    Ok(out)
}

/// Seconds of a flow record's times (the record keeps nanoseconds).
trait Secs {
    fn start_time_secs(&self) -> i64;
    fn end_time_secs(&self) -> i64;
}

impl Secs for FlowRecord {
    fn start_time_secs(&self) -> i64 {
        (self.start_time / 1_000_000_000) as i64
    }
    fn end_time_secs(&self) -> i64 {
        (self.end_time / 1_000_000_000) as i64
    }
}
