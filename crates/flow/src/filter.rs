//! Flow filters for `porin observe`, with the rules of `hubble observe`:
//!
//! * values of the **same** flag are OR-ed (`--pod a --pod b`: either);
//! * **different** flags are AND-ed (`--namespace prod --port 443`: both);
//! * `--not` negates the **next** filter flag; negated values of one flag form their own group,
//!   which excludes a flow if any of them matches (`--not --pod a --not --pod b`: neither a nor b).
//!
//! Formally: terms are grouped by (flag, negated); a flow passes if every positive group has a
//! matching term and no negated group has one.
//!
//! [`FilterArgs`] defines the flags once (clap derive: `#[command(flatten)]` it into the CLI's
//! `observe` command); since clap does not keep the order of different flags, the order needed
//! for `--not` is recovered from [`clap::ArgMatches::indices_of`] by
//! [`FilterArgs::query_from_matches`]. [`parse_args`] does both for a plain argument list.

use std::net::IpAddr;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser};
use ipnet::IpNet;
use porin_selector::Selector;

use crate::record::{FlowDirection, FlowEndpoint, FlowRecord, PendingVerdict, Verdict, protocol_name, protocol_number};
use crate::time::{TimeError, UnixNanos, parse_time_arg};

/// A bad filter argument.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("--{flag} {value:?}: {why}")]
    Value { flag: &'static str, value: String, why: String },
    #[error("--not must be followed by a filter flag (it was followed by {next})")]
    DanglingNot { next: String },
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("{0}")]
    Args(String),
}

/// `[namespace/]pod-name-prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPattern {
    pub namespace: Option<String>,
    pub prefix: String,
}

impl PodPattern {
    pub fn parse(s: &str) -> Self {
        match s.split_once('/') {
            Some((ns, p)) => Self { namespace: Some(ns.into()), prefix: p.into() },
            None => Self { namespace: None, prefix: s.into() },
        }
    }

    fn matches(&self, ep: &FlowEndpoint) -> bool {
        if let Some(ns) = &self.namespace
            && ep.namespace.as_deref() != Some(ns)
        {
            return false;
        }
        match ep.pod.as_deref().or(ep.workload.as_deref()) {
            Some(name) => name.starts_with(&self.prefix),
            None => false,
        }
    }
}

impl std::fmt::Display for PodPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.prefix),
            None => f.write_str(&self.prefix),
        }
    }
}

/// `--verdict` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictMatch {
    Enforced(Verdict),
    Pending(PendingVerdict),
}

impl VerdictMatch {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "allowed" | "allow" | "forwarded" => Self::Enforced(Verdict::Allowed),
            "denied" | "deny" | "dropped" => Self::Enforced(Verdict::Denied),
            "would-allow" => Self::Pending(PendingVerdict::WouldAllow),
            "would-deny" => Self::Pending(PendingVerdict::WouldDeny),
            _ => return None,
        })
    }
}

/// One filter value.
#[derive(Clone, Debug)]
pub enum FilterTerm {
    /// Either end in this namespace.
    Namespace(String),
    FromNamespace(String),
    ToNamespace(String),
    /// Either end is a pod matching `[ns/]prefix`.
    Pod(PodPattern),
    FromPod(PodPattern),
    ToPod(PodPattern),
    /// Either end's labels match the selector.
    Label(Selector),
    FromLabel(Selector),
    ToLabel(Selector),
    /// Either end's address is in the CIDR.
    Ip(IpNet),
    FromIp(IpNet),
    ToIp(IpNet),
    /// Either port.
    Port(u16),
    FromPort(u16),
    ToPort(u16),
    Protocol(u8),
    Verdict(VerdictMatch),
    /// Substring of an enforced or pending trace entry, or exactly `tier/policy`.
    Policy(String),
    /// The reporting node's name; `*` matches any run of characters.
    Node(String),
    /// Either end's dataplane security identity.
    Identity(u32),
    FromIdentity(u32),
    ToIdentity(u32),
    TrafficDirection(FlowDirection),
    /// Hubble event type: `drop` (denied), `trace` (forwarded) or `policy-verdict` (every record).
    Type(EventTypeMatch),
}

/// `--type` values: the Hubble event types a Porin record can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventTypeMatch {
    Drop,
    Trace,
    PolicyVerdict,
}

impl EventTypeMatch {
    pub fn parse(s: &str) -> Option<Self> {
        // hubble accepts TYPE[:SUBTYPE]; Porin has no subtypes to select by.
        let t = s.split(':').next().unwrap_or("");
        Some(match t.to_ascii_lowercase().as_str() {
            "drop" => Self::Drop,
            "trace" => Self::Trace,
            "policy-verdict" | "policyverdict" => Self::PolicyVerdict,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Trace => "trace",
            Self::PolicyVerdict => "policy-verdict",
        }
    }
}

/// `*`-wildcard match (hubble's node-name patterns).
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl FilterTerm {
    /// The flag this term comes from (its group).
    pub fn flag(&self) -> &'static str {
        match self {
            Self::Namespace(_) => "namespace",
            Self::FromNamespace(_) => "from-namespace",
            Self::ToNamespace(_) => "to-namespace",
            Self::Pod(_) => "pod",
            Self::FromPod(_) => "from-pod",
            Self::ToPod(_) => "to-pod",
            Self::Label(_) => "label",
            Self::FromLabel(_) => "from-label",
            Self::ToLabel(_) => "to-label",
            Self::Ip(_) => "ip",
            Self::FromIp(_) => "from-ip",
            Self::ToIp(_) => "to-ip",
            Self::Port(_) => "port",
            Self::FromPort(_) => "from-port",
            Self::ToPort(_) => "to-port",
            Self::Protocol(_) => "protocol",
            Self::Verdict(_) => "verdict",
            Self::Policy(_) => "policy",
            Self::Node(_) => "node",
            Self::Identity(_) => "identity",
            Self::FromIdentity(_) => "from-identity",
            Self::ToIdentity(_) => "to-identity",
            Self::TrafficDirection(_) => "traffic-direction",
            Self::Type(_) => "type",
        }
    }

    /// Parses the value of flag `flag` (long name without dashes).
    pub fn parse(flag: &str, value: &str) -> Result<Self, FilterError> {
        let (flag, err) = match FILTER_FLAGS.iter().find(|f| **f == flag) {
            Some(f) => (*f, |f: &'static str, why: String| FilterError::Value { flag: f, value: value.into(), why }),
            None => return Err(FilterError::Args(format!("unknown filter flag --{flag}"))),
        };
        let sel = || Selector::parse(value).map_err(|e| err(flag, e.to_string()));
        let net = || parse_net(value).ok_or_else(|| err(flag, "expected an IP address or CIDR".into()));
        let port = || value.parse::<u16>().map_err(|_| err(flag, "expected a port number 0-65535".into()));
        let identity = || value.parse::<u32>().map_err(|_| err(flag, "expected a numeric identity".into()));
        Ok(match flag {
            "namespace" => Self::Namespace(value.into()),
            "from-namespace" => Self::FromNamespace(value.into()),
            "to-namespace" => Self::ToNamespace(value.into()),
            "pod" => Self::Pod(PodPattern::parse(value)),
            "from-pod" => Self::FromPod(PodPattern::parse(value)),
            "to-pod" => Self::ToPod(PodPattern::parse(value)),
            "label" => Self::Label(sel()?),
            "from-label" => Self::FromLabel(sel()?),
            "to-label" => Self::ToLabel(sel()?),
            "ip" => Self::Ip(net()?),
            "from-ip" => Self::FromIp(net()?),
            "to-ip" => Self::ToIp(net()?),
            "port" => Self::Port(port()?),
            "from-port" => Self::FromPort(port()?),
            "to-port" => Self::ToPort(port()?),
            "protocol" => {
                Self::Protocol(protocol_number(value).ok_or_else(|| err(flag, "expected tcp, udp, icmp, icmpv6, sctp or a number".into()))?)
            }
            "verdict" => Self::Verdict(
                VerdictMatch::parse(value).ok_or_else(|| err(flag, "expected allowed, denied, would-allow or would-deny".into()))?,
            ),
            "policy" => Self::Policy(value.into()),
            "node" => Self::Node(value.into()),
            "identity" => Self::Identity(identity()?),
            "from-identity" => Self::FromIdentity(identity()?),
            "to-identity" => Self::ToIdentity(identity()?),
            "traffic-direction" => Self::TrafficDirection(match value.to_ascii_lowercase().as_str() {
                "ingress" => FlowDirection::Ingress,
                "egress" => FlowDirection::Egress,
                _ => return Err(err(flag, "expected ingress or egress".into())),
            }),
            "type" => Self::Type(EventTypeMatch::parse(value).ok_or_else(|| err(flag, "expected drop, trace or policy-verdict".into()))?),
            _ => unreachable!("FILTER_FLAGS covers every flag"),
        })
    }

    /// Whether `r` matches this term (ignoring negation).
    pub fn matches(&self, r: &FlowRecord) -> bool {
        fn ns(n: &str, e: &FlowEndpoint) -> bool {
            e.namespace.as_deref() == Some(n)
        }
        fn ip(n: &IpNet, e: &FlowEndpoint) -> bool {
            e.ip.is_some_and(|a| n.contains(&a))
        }
        fn port(p: u16, e: &FlowEndpoint) -> bool {
            e.port == Some(p)
        }
        let either = |f: &dyn Fn(&FlowEndpoint) -> bool| f(&r.src) || f(&r.dst);
        match self {
            Self::Namespace(n) => either(&|e| ns(n, e)),
            Self::FromNamespace(n) => ns(n, &r.src),
            Self::ToNamespace(n) => ns(n, &r.dst),
            Self::Pod(p) => either(&|e| p.matches(e)),
            Self::FromPod(p) => p.matches(&r.src),
            Self::ToPod(p) => p.matches(&r.dst),
            Self::Label(s) => either(&|e| s.matches(&e.labels)),
            Self::FromLabel(s) => s.matches(&r.src.labels),
            Self::ToLabel(s) => s.matches(&r.dst.labels),
            Self::Ip(n) => either(&|e| ip(n, e)),
            Self::FromIp(n) => ip(n, &r.src),
            Self::ToIp(n) => ip(n, &r.dst),
            Self::Port(p) => either(&|e| port(*p, e)),
            Self::FromPort(p) => port(*p, &r.src),
            Self::ToPort(p) => port(*p, &r.dst),
            Self::Protocol(p) => r.protocol == protocol_name(*p),
            Self::Verdict(VerdictMatch::Enforced(v)) => r.verdict == *v,
            Self::Verdict(VerdictMatch::Pending(v)) => r.pending_verdict == Some(*v),
            Self::Node(n) => glob(n, &r.node),
            Self::Identity(i) => r.src.identity == Some(*i) || r.dst.identity == Some(*i),
            Self::FromIdentity(i) => r.src.identity == Some(*i),
            Self::ToIdentity(i) => r.dst.identity == Some(*i),
            Self::TrafficDirection(d) => r.direction == *d,
            Self::Type(EventTypeMatch::Drop) => r.verdict == Verdict::Denied,
            Self::Type(EventTypeMatch::Trace) => r.verdict == Verdict::Allowed,
            Self::Type(EventTypeMatch::PolicyVerdict) => true,
            Self::Policy(s) => {
                let tier_policy = s.split_once('/');
                r.enforced_trace.iter().chain(&r.pending_trace).any(|h| {
                    h.contains(s.as_str())
                        || tier_policy.is_some_and(|(t, p)| {
                            let mut parts = h.split('|');
                            parts.next() == Some(t) && parts.next() == Some(p)
                        })
                })
            }
        }
    }
}

impl std::fmt::Display for FilterTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = match self {
            Self::Namespace(s) | Self::FromNamespace(s) | Self::ToNamespace(s) | Self::Policy(s) | Self::Node(s) => s.clone(),
            Self::Identity(i) | Self::FromIdentity(i) | Self::ToIdentity(i) => i.to_string(),
            Self::TrafficDirection(d) => d.as_str().into(),
            Self::Type(t) => t.as_str().into(),
            Self::Pod(p) | Self::FromPod(p) | Self::ToPod(p) => p.to_string(),
            Self::Label(s) | Self::FromLabel(s) | Self::ToLabel(s) => s.to_string(),
            Self::Ip(n) | Self::FromIp(n) | Self::ToIp(n) => n.to_string(),
            Self::Port(p) | Self::FromPort(p) | Self::ToPort(p) => p.to_string(),
            Self::Protocol(p) => protocol_name(*p).into_owned(),
            Self::Verdict(VerdictMatch::Enforced(v)) => v.as_str().into(),
            Self::Verdict(VerdictMatch::Pending(v)) => v.as_str().replace('_', "-"),
        };
        write!(f, "--{} {v:?}", self.flag())
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Every filter flag, by long name.
pub const FILTER_FLAGS: &[&str] = &[
    "namespace",
    "from-namespace",
    "to-namespace",
    "pod",
    "from-pod",
    "to-pod",
    "label",
    "from-label",
    "to-label",
    "ip",
    "from-ip",
    "to-ip",
    "port",
    "from-port",
    "to-port",
    "protocol",
    "verdict",
    "policy",
    "node",
    "identity",
    "from-identity",
    "to-identity",
    "traffic-direction",
    "type",
];

#[derive(Clone, Debug)]
struct Group {
    flag: &'static str,
    negated: bool,
    terms: Vec<FilterTerm>,
}

/// A set of filter terms with the OR/AND/NOT rules of the module docs. Empty: matches all.
#[derive(Clone, Debug, Default)]
pub struct FlowFilter {
    groups: Vec<Group>,
}

impl FlowFilter {
    /// From `(negated, term)` pairs in command-line order.
    pub fn new(terms: impl IntoIterator<Item = (bool, FilterTerm)>) -> Self {
        let mut groups: Vec<Group> = Vec::new();
        for (negated, t) in terms {
            let flag = t.flag();
            match groups.iter_mut().find(|g| g.flag == flag && g.negated == negated) {
                Some(g) => g.terms.push(t),
                None => groups.push(Group { flag, negated, terms: vec![t] }),
            }
        }
        Self { groups }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn matches(&self, r: &FlowRecord) -> bool {
        self.groups.iter().all(|g| g.terms.iter().any(|t| t.matches(r)) != g.negated)
    }

    /// The terms as flags, in group order (`--not --pod "a"` …); for `--print-raw-filters`.
    pub fn describe(&self) -> Vec<String> {
        self.groups
            .iter()
            .flat_map(|g| g.terms.iter().map(move |t| if g.negated { format!("--not {t}") } else { t.to_string() }))
            .collect()
    }
}

/// A flow-store query: time range, count and filter.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Records ending at or after this time.
    pub since: Option<UnixNanos>,
    /// Records ending at or before this time.
    pub until: Option<UnixNanos>,
    /// Only the newest N matches.
    pub last: Option<usize>,
    /// Only the oldest N matches (ignored with `last`).
    pub first: Option<usize>,
    pub filter: FlowFilter,
}

/// The `porin observe` filter and selection flags. Flatten into the CLI command and turn the
/// matches into a [`Query`] with [`FilterArgs::query_from_matches`] (which sees the flag order
/// that `--not` needs).
#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Negate the next filter flag.
    // Append with no value (not Count): clap then records the index of every occurrence.
    #[arg(long = "not", num_args = 0, default_missing_value = "true", action = clap::ArgAction::Append, help_heading = "Filters")]
    pub not: Vec<String>,
    /// Flows with either end in NAMESPACE.
    #[arg(short = 'n', long, value_name = "NAMESPACE", help_heading = "Filters")]
    pub namespace: Vec<String>,
    /// Flows from NAMESPACE.
    #[arg(long, value_name = "NAMESPACE", help_heading = "Filters")]
    pub from_namespace: Vec<String>,
    /// Flows to NAMESPACE.
    #[arg(long, value_name = "NAMESPACE", help_heading = "Filters")]
    pub to_namespace: Vec<String>,
    /// Flows with either end a pod named [NAMESPACE/]PREFIX*.
    #[arg(long, value_name = "[NS/]POD", help_heading = "Filters")]
    pub pod: Vec<String>,
    /// Flows from pod [NAMESPACE/]PREFIX*.
    #[arg(long, value_name = "[NS/]POD", help_heading = "Filters")]
    pub from_pod: Vec<String>,
    /// Flows to pod [NAMESPACE/]PREFIX*.
    #[arg(long, value_name = "[NS/]POD", help_heading = "Filters")]
    pub to_pod: Vec<String>,
    /// Flows with either end's labels matching SELECTOR (e.g. "app == 'web'").
    #[arg(short = 'l', long, value_name = "SELECTOR", help_heading = "Filters")]
    pub label: Vec<String>,
    /// Flows whose source labels match SELECTOR.
    #[arg(long, value_name = "SELECTOR", help_heading = "Filters")]
    pub from_label: Vec<String>,
    /// Flows whose destination labels match SELECTOR.
    #[arg(long, value_name = "SELECTOR", help_heading = "Filters")]
    pub to_label: Vec<String>,
    /// Flows with either address in CIDR (or equal to IP).
    #[arg(long, value_name = "CIDR", help_heading = "Filters")]
    pub ip: Vec<String>,
    /// Flows from an address in CIDR.
    #[arg(long, value_name = "CIDR", help_heading = "Filters")]
    pub from_ip: Vec<String>,
    /// Flows to an address in CIDR.
    #[arg(long, value_name = "CIDR", help_heading = "Filters")]
    pub to_ip: Vec<String>,
    /// Flows with either port PORT.
    #[arg(long, value_name = "PORT", help_heading = "Filters")]
    pub port: Vec<String>,
    /// Flows from source port PORT.
    #[arg(long, value_name = "PORT", help_heading = "Filters")]
    pub from_port: Vec<String>,
    /// Flows to destination port PORT.
    #[arg(long, value_name = "PORT", help_heading = "Filters")]
    pub to_port: Vec<String>,
    /// tcp, udp, icmp, icmpv6, sctp or a protocol number.
    #[arg(long, value_name = "PROTO", help_heading = "Filters")]
    pub protocol: Vec<String>,
    /// allowed, denied, would-allow or would-deny (staged policies).
    #[arg(long, value_name = "VERDICT", help_heading = "Filters")]
    pub verdict: Vec<String>,
    /// Flows whose policy trace has an entry containing TEXT, or from TIER/POLICY.
    #[arg(long, value_name = "TEXT|TIER/POLICY", help_heading = "Filters")]
    pub policy: Vec<String>,
    /// Flows reported by node NAME (`*` is a wildcard).
    #[arg(long, visible_alias = "node-name", value_name = "NAME", help_heading = "Filters")]
    pub node: Vec<String>,
    /// Flows with either end's security identity ID.
    #[arg(long, value_name = "ID", help_heading = "Filters")]
    pub identity: Vec<String>,
    /// Flows whose source has security identity ID.
    #[arg(long, value_name = "ID", help_heading = "Filters")]
    pub from_identity: Vec<String>,
    /// Flows whose destination has security identity ID.
    #[arg(long, value_name = "ID", help_heading = "Filters")]
    pub to_identity: Vec<String>,
    /// ingress or egress: the direction the policy was enforced in.
    #[arg(long, value_name = "DIR", help_heading = "Filters")]
    pub traffic_direction: Vec<String>,
    /// Hubble event type: drop (denied), trace (forwarded) or policy-verdict (all).
    #[arg(short = 't', long = "type", value_name = "TYPE", help_heading = "Filters")]
    pub event_type: Vec<String>,
    /// Flows that ended at or after TIME (RFC 3339, or a duration ago like 5m).
    #[arg(long, value_name = "TIME", help_heading = "Selection")]
    pub since: Option<String>,
    /// Flows that ended at or before TIME (RFC 3339, or a duration ago).
    #[arg(long, value_name = "TIME", help_heading = "Selection")]
    pub until: Option<String>,
    /// Only the newest N flows.
    #[arg(long, value_name = "N", help_heading = "Selection")]
    pub last: Option<usize>,
    /// Only the oldest N flows.
    #[arg(long, value_name = "N", help_heading = "Selection", conflicts_with = "last")]
    pub first: Option<usize>,
}

fn arg_id(flag: &str) -> String {
    match flag {
        "type" => "event_type".to_string(),
        _ => flag.replace('-', "_"),
    }
}

impl FilterArgs {
    /// Builds the query from the matches of a command into which `FilterArgs` was flattened,
    /// at wall-clock time `now` (for relative `--since/--until`).
    pub fn query_from_matches(&self, m: &ArgMatches, now: UnixNanos) -> Result<Query, FilterError> {
        let mut terms = Vec::new();
        for (negated, flag, v) in ordered_terms(m)? {
            terms.push((negated, FilterTerm::parse(flag, &v)?));
        }
        Ok(Query {
            since: self.since.as_deref().map(|s| parse_time_arg(s, now)).transpose()?,
            until: self.until.as_deref().map(|s| parse_time_arg(s, now)).transpose()?,
            last: self.last,
            first: self.first,
            filter: FlowFilter::new(terms),
        })
    }

    /// The same filter and selection as a canonical argument list (`--not --pod a --since 5m …`, in
    /// command-line order) that [`parse_args`] turns back into the same [`Query`]: how a client ships
    /// a query to the agent, which evaluates it. Validates every value first.
    pub fn to_argv(&self, m: &ArgMatches) -> Result<Vec<String>, FilterError> {
        self.query_from_matches(m, 0)?;
        let mut out = Vec::new();
        for (negated, flag, v) in ordered_terms(m)? {
            if negated {
                out.push("--not".to_string());
            }
            out.push(format!("--{flag}"));
            out.push(v);
        }
        for (flag, v) in [("since", self.since.clone()), ("until", self.until.clone())] {
            if let Some(v) = v {
                out.extend([format!("--{flag}"), v]);
            }
        }
        for (flag, v) in [("last", self.last), ("first", self.first)] {
            if let Some(v) = v {
                out.extend([format!("--{flag}"), v.to_string()]);
            }
        }
        Ok(out)
    }
}

/// `(negated, flag, value)` for every filter value, in command-line order.
fn ordered_terms(m: &ArgMatches) -> Result<Vec<(bool, &'static str, String)>, FilterError> {
    // (index of the value, flag, value)
    let mut items: Vec<(usize, &'static str, String)> = Vec::new();
    for flag in FILTER_FLAGS {
        let id = arg_id(flag);
        let (Some(idx), Some(vals)) = (m.indices_of(&id), m.get_many::<String>(&id)) else { continue };
        items.extend(idx.zip(vals).map(|(i, v)| (i, *flag, v.clone())));
    }
    items.sort_by_key(|(i, ..)| *i);
    let nots: Vec<usize> = if m.value_source("not") == Some(clap::parser::ValueSource::CommandLine) {
        m.indices_of("not").map(Iterator::collect).unwrap_or_default()
    } else {
        Vec::new()
    };
    // The flag token sits right before its value (clap counts `--flag=value` as two indices),
    // and a `--not` right before the flag.
    for n in &nots {
        if !items.iter().any(|(i, ..)| *i == n + 2) {
            let next = FILTER_FLAGS
                .iter()
                .chain(["since", "until", "last", "first"].iter())
                .find(|f| m.indices_of(arg_id(f).as_str()).is_some_and(|mut it| it.any(|i| i == n + 2)))
                .map(|f| format!("--{f}"))
                .unwrap_or_else(|| "nothing".into());
            return Err(FilterError::DanglingNot { next });
        }
    }
    Ok(items.into_iter().map(|(i, flag, v)| (i.checked_sub(2).is_some_and(|f| nots.contains(&f)), flag, v)).collect())
}

#[derive(Parser, Debug)]
#[command(name = "observe", no_binary_name = true, disable_help_flag = true)]
struct Standalone {
    #[command(flatten)]
    args: FilterArgs,
}

/// Parses filter and selection flags from a plain argument list (no program name).
pub fn parse_args<I, S>(args: I, now: UnixNanos) -> Result<Query, FilterError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let m = Standalone::command().try_get_matches_from(args).map_err(|e| FilterError::Args(e.render().to_string()))?;
    let s = Standalone::from_arg_matches(&m).map_err(|e| FilterError::Args(e.to_string()))?;
    s.args.query_from_matches(&m, now)
}
