//! `porin test`: connectivity assertions as code. Reads `ConnectivityTest` documents, evaluates every case
//! against the policy model (manifests given with `-f`, or the live agent's objects with `--live`), and reports
//! a table, JSON or JUnit XML. Exit 0 when every case passes, 1 when any fails, 2 on input errors.
//!
//! A case whose peer stands for several endpoints or addresses (a selector, a CIDR, a network set) holds only
//! when it holds for every one of them. A CIDR is checked exactly: verdicts for addresses can only change at
//! the boundaries of the CIDRs that policies and network sets mention and at pod addresses, so one address per
//! interval between those boundaries stands for the whole interval.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use ipnet::IpNet;
use porin_model::conntest::{ConnectivityTestSpec, Expect, PeerRef, PeerSpec, TestCase};
use porin_model::load::join_path;
use porin_model::{Document, ManifestError, Object, Resource, load_paths_partial, validate_set};
use porin_policy::{Cluster, Packet, Peer};
use porin_selector::Selector;
use serde_json::{Value, json};

use super::offline::Output;
use crate::client::{Client, ClientArgs};
use crate::printers;

#[derive(Args, Debug)]
pub struct TestArgs {
    /// ConnectivityTest documents and (without --live) the cluster's manifests, mixed freely. Repeatable.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Evaluate against the live agent's objects (read through the API) instead of manifests. Without -f, the
    /// ConnectivityTests stored in the agent are run.
    #[arg(long)]
    pub live: bool,
    /// Check the cases on real packets in this kernel lab (`porin lab up`): the model comes from the lab's
    /// agent, and every pod-to-pod pair is also sent for real; a case passes only when the packets agree.
    #[arg(long, value_name = "NAME", conflicts_with = "live")]
    pub lab: Option<String>,
    /// Directory of lab state (with --lab).
    #[arg(long, env = super::lab::STATE_DIR_ENV, default_value = porin_lab::DEFAULT_STATE_DIR)]
    pub lab_state_dir: PathBuf,
    /// Per-probe timeout in milliseconds (with --lab).
    #[arg(long, default_value_t = 500)]
    pub probe_timeout_ms: u64,
    /// Also write the results as JUnit XML to FILE (for CI systems).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Output format: table (default) or json (one object with every case and its verdicts).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Input problems: printed with file, document and field path; exit code 2.
struct InputErrors(Vec<ManifestError>);

const INPUT_ERROR: u8 = 2;
/// Traces printed per failing case; the count of the rest is given.
const MAX_TRACES: usize = 10;

pub fn test(a: TestArgs) -> Result<ExitCode> {
    match run(&a) {
        Ok(code) => Ok(code),
        Err(Failure::Input(InputErrors(mut errors))) => {
            errors.sort_by(|a, b| (&a.input, a.doc, &a.path).cmp(&(&b.input, b.doc, &b.path)));
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{} input error(s); no case was evaluated", errors.len());
            Ok(ExitCode::from(INPUT_ERROR))
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(INPUT_ERROR))
        }
    }
}

enum Failure {
    Input(InputErrors),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

fn input(e: Vec<ManifestError>) -> Failure {
    Failure::Input(InputErrors(e))
}

fn run(a: &TestArgs) -> Result<ExitCode, Failure> {
    let remote = a.live || a.lab.is_some();
    if a.files.is_empty() && !remote {
        return Err(anyhow::anyhow!("give -f PATH (tests and manifests), --live or --lab NAME").into());
    }
    let (docs, mut errors) = if a.files.is_empty() { (vec![], vec![]) } else { load_paths_partial(&a.files) };
    if let Err(e) = validate_set(&docs, &Default::default()) {
        errors.extend(e);
    }
    if !errors.is_empty() {
        return Err(input(errors));
    }
    let (mut tests, mut model): (Vec<Document>, Vec<Document>) =
        docs.into_iter().partition(|d| matches!(d.resource, Resource::ConnectivityTest(_)));
    let lab = match &a.lab {
        None => None,
        Some(name) => {
            // As `porin lab` opens its labs.
            let opts = porin_lab::LabOptions {
                state_dir: std::path::absolute(&a.lab_state_dir).context("--lab-state-dir")?,
                servers: porin_lab::ServerMode::current_exe(&["lab-serve"]).map_err(anyhow::Error::from)?,
                ready_timeout: std::time::Duration::from_secs(15),
            };
            Some(porin_lab::Lab::open(name, &opts).with_context(|| format!("opening lab {name} (is it up?)"))?)
        }
    };
    if remote {
        if !model.is_empty() {
            let errors = model
                .iter()
                .map(|d| {
                    ManifestError::new(
                        &d.source,
                        Some(d.doc),
                        join_path(&d.prefix, "kind"),
                        format!(
                            "{} {:?}: with --live the cluster comes from the agent; pass only ConnectivityTests",
                            d.resource.kind(),
                            d.resource.qualified_name()
                        ),
                    )
                })
                .collect();
            return Err(input(errors));
        }
        let client = match &a.lab {
            Some(name) => {
                let meta = porin_lab::cluster::control(&porin_lab::LabOptions::with_state_dir(&a.lab_state_dir), name)
                    .map_err(anyhow::Error::from)?
                    .ok_or_else(|| anyhow::anyhow!("lab {name} is not up"))?;
                Client::new(&ClientArgs::socket(meta.server.display().to_string()))
            }
            None => Client::new(&a.client),
        };
        let live = super::live::fetch_live(&client)?;
        for d in live {
            if matches!(d.resource, Resource::ConnectivityTest(_)) {
                if a.files.is_empty() {
                    tests.push(d);
                }
            } else {
                model.push(d);
            }
        }
    }
    let has_guards = model.iter().any(|d| matches!(d.resource, Resource::ReachabilityGuard(_)));
    if tests.is_empty() && !has_guards {
        return Err(anyhow::anyhow!("no ConnectivityTest or ReachabilityGuard found in the inputs").into());
    }
    let cluster = Cluster::build(model.iter().map(|d| &d.resource)).context("building the policy model")?;
    // Guards are checked against the model (as the API checks them on every write), also with --lab.
    let guards: Vec<GuardResult<'_>> = super::guards::check(&cluster, &model)
        .into_iter()
        .map(|(d, violation)| GuardResult { name: d.resource.name().to_string(), doc: d, violation })
        .collect();
    let plans = plan(&cluster, &tests)?;
    let probe = match &lab {
        Some(l) => {
            check_probeable(l, &tests, &plans)?;
            Some((l, std::time::Duration::from_millis(a.probe_timeout_ms)))
        }
        None => None,
    };
    let results: Vec<CaseResult> = plans.iter().map(|p| evaluate(&cluster, p, probe)).collect::<Result<_>>()?;
    if let Some(path) = &a.junit {
        std::fs::write(path, junit(&results, &guards)).with_context(|| format!("writing {}", path.display()))?;
    }
    match a.output {
        Output::Table => print!("{}", table(&results, &guards)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&to_json(&results, &guards)).expect("json")),
    }
    let all_pass = results.iter().all(|r| r.passed()) && guards.iter().all(|g| g.violation.is_none());
    Ok(if all_pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// One case, with its peers resolved to concrete endpoints and addresses.
struct Plan<'c> {
    test: String,
    index: usize,
    case: TestCase,
    sources: Vec<Peer<'c>>,
    destinations: Vec<Peer<'c>>,
}

fn plan<'c>(c: &'c Cluster, tests: &[Document]) -> Result<Vec<Plan<'c>>, Failure> {
    let bounds = boundaries(c);
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for d in tests {
        let Resource::ConnectivityTest(Object::<ConnectivityTestSpec> { metadata, spec, .. }) = &d.resource else {
            continue;
        };
        for (i, case) in spec.cases.iter().enumerate() {
            let err = |field: &str, msg: String| {
                ManifestError::new(
                    &d.source,
                    Some(d.doc),
                    join_path(&d.prefix, &format!("spec.cases[{i}].{field}")),
                    msg,
                )
            };
            let from = expand(c, &bounds, &case.from).map_err(|m| err("from", m));
            let to = expand(c, &bounds, &case.to).map_err(|m| err("to", m));
            match (from, to) {
                (Ok(sources), Ok(destinations)) => {
                    let pairs = sources.iter().flat_map(|s| destinations.iter().map(move |t| (s, t)));
                    if pairs.filter(|(s, t)| !same(s, t)).count() == 0 {
                        errors.push(err("to", "every destination is the source itself: nothing to check".into()));
                        continue;
                    }
                    plans.push(Plan {
                        test: metadata.name.clone(),
                        index: i,
                        case: case.clone(),
                        sources,
                        destinations,
                    });
                }
                (f, t) => {
                    errors.extend(f.err());
                    errors.extend(t.err());
                }
            }
        }
    }
    if errors.is_empty() { Ok(plans) } else { Err(input(errors)) }
}

fn same(a: &Peer<'_>, b: &Peer<'_>) -> bool {
    match (a, b) {
        (Peer::Endpoint(x), Peer::Endpoint(y)) => x.id() == y.id(),
        (Peer::Ip(x), Peer::Ip(y)) => x == y,
        _ => false,
    }
}

/// Addresses at which a verdict may change: starts and ends+1 of every CIDR policies and network sets mention,
/// and every pod address and the one after it.
fn boundaries(c: &Cluster) -> BTreeSet<(bool, u128)> {
    let mut out = BTreeSet::new();
    for n in porin_policy::ir::all_cidrs(c) {
        let (v6, lo, hi) = range(&n);
        out.insert((v6, lo));
        if let Some(next) = hi.checked_add(1) {
            out.insert((v6, next));
        }
    }
    for e in &c.endpoints {
        for ip in &e.ips {
            let (v6, x) = num(*ip);
            out.insert((v6, x));
            out.insert((v6, x + 1));
        }
    }
    out
}

fn num(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn range(n: &IpNet) -> (bool, u128, u128) {
    let (v6, lo) = num(n.network());
    let (_, hi) = num(n.broadcast());
    (v6, lo, hi)
}

fn addr(v6: bool, x: u128) -> IpAddr {
    if v6 { IpAddr::V6(x.into()) } else { IpAddr::V4(u32::try_from(x).expect("an IPv4 address").into()) }
}

/// One representative address per interval of constant verdict inside `n`.
fn points(bounds: &BTreeSet<(bool, u128)>, n: &IpNet, out: &mut Vec<IpAddr>) {
    let (v6, lo, hi) = range(n);
    out.push(addr(v6, lo));
    if lo < hi {
        out.extend(bounds.range((v6, lo + 1)..=(v6, hi)).map(|(_, x)| addr(v6, *x)));
    }
}

fn at<'c>(c: &'c Cluster, ip: IpAddr) -> Peer<'c> {
    match c.endpoint_by_ip(ip) {
        Some(i) => Peer::Endpoint(&c.endpoints[i]),
        None => Peer::Ip(ip),
    }
}

/// The endpoints or addresses a peer stands for; an empty set is an input error.
fn expand<'c>(c: &'c Cluster, bounds: &BTreeSet<(bool, u128)>, p: &PeerSpec) -> Result<Vec<Peer<'c>>, String> {
    let r = p.resolve()?;
    let mut ips = Vec::new();
    match &r {
        PeerRef::Pod { namespace, name } => {
            let id = format!("{namespace}/{name}");
            return match c.endpoint(&id) {
                Some(i) => Ok(vec![Peer::Endpoint(&c.endpoints[i])]),
                None => Err(format!("no pod {id} in the model")),
            };
        }
        PeerRef::Selector { namespace, selector } => {
            let sel = Selector::parse(selector).map_err(|e| format!("selector {selector:?}: {e}"))?;
            let found: Vec<Peer<'c>> = c
                .endpoints
                .iter()
                .filter(|e| namespace.as_ref().is_none_or(|ns| *ns == e.namespace) && sel.matches(&e.labels))
                .map(Peer::Endpoint)
                .collect();
            if found.is_empty() {
                let scope = namespace.as_ref().map_or("any namespace".to_string(), |ns| format!("namespace {ns}"));
                return Err(format!("selector {selector:?} matches no pod in {scope}"));
            }
            return Ok(found);
        }
        PeerRef::Net(n) => points(bounds, n, &mut ips),
        PeerRef::NetworkSet { namespace, name } => {
            let s = c
                .net_sets
                .iter()
                .find(|s| s.namespace.as_deref() == Some(namespace.as_str()) && s.name == *name)
                .ok_or_else(|| format!("no NetworkSet {namespace}/{name} in the model"))?;
            if s.nets.is_empty() {
                return Err(format!("NetworkSet {namespace}/{name} has no nets"));
            }
            s.nets.iter().for_each(|n| points(bounds, n, &mut ips));
        }
        PeerRef::GlobalNetworkSet(name) => {
            let s = c
                .net_sets
                .iter()
                .find(|s| s.namespace.is_none() && s.name == *name)
                .ok_or_else(|| format!("no GlobalNetworkSet {name} in the model"))?;
            if s.nets.is_empty() {
                return Err(format!("GlobalNetworkSet {name} has no nets"));
            }
            s.nets.iter().for_each(|n| points(bounds, n, &mut ips));
        }
    }
    ips.sort();
    ips.dedup();
    Ok(ips.into_iter().map(|ip| at(c, ip)).collect())
}

/// One pair whose verdict differs from the expectation.
struct PairFailure {
    from: String,
    to: String,
    actual: Expect,
    actual_pending: Expect,
    trace_text: String,
    trace_json: Value,
}

struct CaseResult {
    test: String,
    index: usize,
    case: TestCase,
    packet: String,
    pairs: usize,
    failures: Vec<PairFailure>,
}

impl CaseResult {
    fn passed(&self) -> bool {
        self.failures.is_empty()
    }
    fn label(&self) -> String {
        match &self.case.name {
            Some(n) => n.clone(),
            None => format!("cases[{}]", self.index),
        }
    }
    fn expected(&self) -> String {
        match self.case.expect_pending {
            Some(p) => format!("{}, pending {p}", self.case.expect),
            None => self.case.expect.to_string(),
        }
    }
    fn actual(&self) -> String {
        match self.failures.first() {
            None => self.expected(),
            Some(f) => {
                let mut s = match self.case.expect_pending {
                    Some(_) => format!("{}, pending {}", f.actual, f.actual_pending),
                    None => f.actual.to_string(),
                };
                if self.pairs > 1 {
                    s.push_str(&format!(" ({} of {} pairs)", self.failures.len(), self.pairs));
                }
                s
            }
        }
    }
}

/// One ReachabilityGuard checked against the model.
struct GuardResult<'d> {
    name: String,
    doc: &'d Document,
    violation: Option<porin_policy::guard::Violation>,
}

impl GuardResult<'_> {
    fn spec(&self) -> Option<&porin_model::guard::ReachabilityGuardSpec> {
        match &self.doc.resource {
            Resource::ReachabilityGuard(o) => Some(&o.spec),
            _ => None,
        }
    }
    fn expect(&self) -> String {
        self.spec().and_then(|s| s.expect).map(|e| e.to_string()).unwrap_or_default()
    }
    fn side(p: &porin_model::guard::GuardPeer) -> String {
        match (&p.cidr, &p.namespace_selector, &p.selector) {
            (Some(c), _, _) => c.clone(),
            (None, ns, sel) => format!(
                "{{namespace: {}, selector: {}}}",
                ns.as_deref().unwrap_or("all()"),
                sel.as_deref().unwrap_or("all()")
            ),
        }
    }
    fn packet(&self) -> String {
        let Some(s) = self.spec() else { return String::new() };
        let proto = s.protocol.clone().unwrap_or_else(|| "TCP".into());
        if s.ports.is_empty() {
            format!("{proto}/any")
        } else {
            format!("{proto}/{}", s.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
        }
    }
    fn actual(&self) -> String {
        match &self.violation {
            None => self.expect(),
            Some(v) => format!(
                "{} ({} -> {} {}/{})",
                if v.expect == Expect::Deny { "Allow" } else { "Deny" },
                v.from,
                v.to,
                v.protocol,
                v.port
            ),
        }
    }
}

/// Real packets can only be sent between lab pods, on TCP, UDP and SCTP.
fn check_probeable(lab: &porin_lab::Lab, tests: &[Document], plans: &[Plan<'_>]) -> Result<(), Failure> {
    let mut errors = Vec::new();
    for p in plans {
        let d = tests.iter().find(|d| d.resource.name() == p.test).expect("a plan comes from a test");
        let err = |field: &str, msg: String| {
            ManifestError::new(
                &d.source,
                Some(d.doc),
                join_path(&d.prefix, &format!("spec.cases[{}].{field}", p.index)),
                msg,
            )
        };
        if lab_proto(p.case.protocol_number().expect("validated")).is_none() {
            errors.push(err("protocol", "--lab sends TCP, UDP or SCTP only".into()));
        }
        for (field, peers) in [("from", &p.sources), ("to", &p.destinations)] {
            for peer in peers.iter() {
                match peer {
                    Peer::Endpoint(e) if lab.pods().iter().any(|x| x.key == e.id()) => {}
                    Peer::Endpoint(e) => {
                        errors.push(err(field, format!("pod {} is not in lab {}", e.id(), lab.name())))
                    }
                    Peer::Ip(ip) => {
                        errors
                            .push(err(field, format!("{ip} is not a pod: --lab sends real packets between pods only")));
                        break;
                    }
                }
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(input(errors)) }
}

fn lab_proto(n: u8) -> Option<porin_lab::Proto> {
    match n {
        6 => Some(porin_lab::Proto::Tcp),
        17 => Some(porin_lab::Proto::Udp),
        132 => Some(porin_lab::Proto::Sctp),
        _ => None,
    }
}

fn evaluate(c: &Cluster, p: &Plan<'_>, probe: Option<(&porin_lab::Lab, std::time::Duration)>) -> Result<CaseResult> {
    let protocol = p.case.protocol_number().expect("validated");
    let port = p.case.port.map(|x| u16::try_from(x).expect("validated"));
    let packet_of = |s: &Peer<'_>, d: &Peer<'_>| {
        let v6 = match (s, d) {
            (Peer::Ip(ip), _) | (_, Peer::Ip(ip)) => ip.is_ipv6(),
            (Peer::Endpoint(s), Peer::Endpoint(d)) => {
                s.ip_of_family(false).is_none() || d.ip_of_family(false).is_none()
            }
        };
        Packet { protocol, port, icmp: None, v6 }
    };
    let mut pairs = 0;
    let mut failures = Vec::new();
    for s in &p.sources {
        for d in &p.destinations {
            if same(s, d) {
                continue;
            }
            pairs += 1;
            let pkt = packet_of(s, d);
            let v = c.verdict(*s, *d, &pkt);
            let observed = match probe {
                None => None,
                Some((lab, timeout)) => {
                    let proto = lab_proto(protocol).expect("checked");
                    let port = port.expect("checked: TCP, UDP and SCTP carry a port");
                    Some(
                        lab.probe_one(&s.describe(), &d.describe(), port, proto, timeout)
                            .with_context(|| format!("probing {} -> {}", s.describe(), d.describe()))?,
                    )
                }
            };
            // With real packets, what the packets did is the actual verdict; the model's trace explains it.
            let actual = observed.unwrap_or(v.enforced.allowed);
            let ok = actual == p.case.expect.allowed()
                && p.case.expect_pending.is_none_or(|e| v.pending.allowed == e.allowed());
            if !ok {
                let mut trace_text = printers::trace_table(s, d, &pkt, &v);
                let mut trace_json = printers::trace_json(s, d, &pkt, &v);
                if let Some(o) = observed {
                    let _ = writeln!(trace_text, "OBSERVED (real packets): {}", if o { "ALLOWED" } else { "DENIED" });
                    trace_json["observed"] = json!(o);
                }
                failures.push(PairFailure {
                    from: s.describe(),
                    to: d.describe(),
                    actual: Expect::of(actual),
                    actual_pending: Expect::of(v.pending.allowed),
                    trace_text,
                    trace_json,
                });
            }
        }
    }
    let packet = printers::packet_label(&Packet { protocol, port, icmp: None, v6: false });
    Ok(CaseResult { test: p.test.clone(), index: p.index, case: p.case.clone(), packet, pairs, failures })
}

/// A peer as written, on one line.
fn peer_text(p: &PeerSpec) -> String {
    match p {
        PeerSpec::Text(s) => s.clone(),
        PeerSpec::Object(o) => {
            if let Some(n) = &o.network_set {
                format!("networkSet {n}")
            } else if let Some(n) = &o.global_network_set {
                format!("globalNetworkSet {n}")
            } else {
                let sel = o.selector.as_deref().unwrap_or("");
                match &o.namespace {
                    Some(ns) => format!("{ns}: {sel}"),
                    None => format!("*: {sel}"),
                }
            }
        }
    }
}

fn table(results: &[CaseResult], guards: &[GuardResult<'_>]) -> String {
    let mut rows =
        vec![["RESULT", "TEST", "CASE", "FROM", "TO", "PACKET", "EXPECT", "ACTUAL"].map(String::from).to_vec()];
    for r in results {
        rows.push(vec![
            if r.passed() { "PASS" } else { "FAIL" }.to_string(),
            r.test.clone(),
            r.label(),
            peer_text(&r.case.from),
            peer_text(&r.case.to),
            r.packet.clone(),
            r.expected(),
            r.actual(),
        ]);
    }
    for g in guards {
        let (from, to) = g.spec().map(|s| (GuardResult::side(&s.from), GuardResult::side(&s.to))).unwrap_or_default();
        rows.push(vec![
            if g.violation.is_none() { "PASS" } else { "FAIL" }.to_string(),
            format!("ReachabilityGuard/{}", g.name),
            "guard".to_string(),
            from,
            to,
            g.packet(),
            g.expect(),
            g.actual(),
        ]);
    }
    let mut out = printers::render_columns(&rows);
    for (g, v) in guards.iter().filter_map(|g| g.violation.as_ref().map(|v| (g, v))) {
        let _ = writeln!(out);
        let _ = writeln!(out, "--- FAIL ReachabilityGuard/{}: {v}", g.name);
    }
    for r in results.iter().filter(|r| !r.passed()) {
        let _ = writeln!(out);
        let _ = writeln!(out, "--- FAIL {} {}: expected {}, got {}", r.test, r.label(), r.expected(), r.actual());
        for f in r.failures.iter().take(MAX_TRACES) {
            let _ = writeln!(out);
            out.push_str(&f.trace_text);
        }
        if r.failures.len() > MAX_TRACES {
            let _ = writeln!(
                out,
                "\n... and {} more failing pairs (-o json lists them all)",
                r.failures.len() - MAX_TRACES
            );
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count() + guards.iter().filter(|g| g.violation.is_some()).count();
    let _ = writeln!(out);
    let _ = writeln!(out, "{} passed, {failed} failed", results.len() + guards.len() - failed);
    out
}

fn to_json(results: &[CaseResult], guards: &[GuardResult<'_>]) -> Value {
    let failed = results.iter().filter(|r| !r.passed()).count() + guards.iter().filter(|g| g.violation.is_some()).count();
    let cases: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "test": r.test,
                "case": r.label(),
                "index": r.index,
                "from": r.case.from,
                "to": r.case.to,
                "packet": r.packet,
                "expect": r.case.expect,
                "expectPending": r.case.expect_pending,
                "passed": r.passed(),
                "pairs": r.pairs,
                "failures": r.failures.iter().map(|f| json!({
                    "from": f.from,
                    "to": f.to,
                    "actual": f.actual,
                    "actualPending": f.actual_pending,
                    "trace": f.trace_json,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut out = json!({"passed": results.len() + guards.len() - failed, "failed": failed, "cases": cases});
    if !guards.is_empty() {
        out["guards"] = guards
            .iter()
            .map(|g| json!({"name": g.name, "expect": g.expect(), "passed": g.violation.is_none(), "violation": g.violation}))
            .collect();
    }
    out
}

/// Text for XML content and attribute values: the five predefined entities escaped; characters XML 1.0
/// cannot carry at all (most C0 controls) replaced by U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one testsuite per ConnectivityTest, one testcase per case, a failure with the traces.
fn junit(results: &[CaseResult], guards: &[GuardResult<'_>]) -> String {
    let mut suites: Vec<(&str, Vec<&CaseResult>)> = Vec::new();
    for r in results {
        match suites.iter_mut().find(|(n, _)| *n == r.test) {
            Some((_, v)) => v.push(r),
            None => suites.push((&r.test, vec![r])),
        }
    }
    let gfailed = guards.iter().filter(|g| g.violation.is_some()).count();
    let failed = results.iter().filter(|r| !r.passed()).count() + gfailed;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"porin test\" tests=\"{}\" failures=\"{failed}\" errors=\"0\">",
        results.len() + guards.len()
    );
    if !guards.is_empty() {
        let _ = writeln!(
            out,
            "  <testsuite name=\"ReachabilityGuards\" tests=\"{}\" failures=\"{gfailed}\" errors=\"0\" skipped=\"0\">",
            guards.len()
        );
        for g in guards {
            let _ = write!(out, "    <testcase name=\"{}\" classname=\"porin.guards\">", xml_escape(&g.name));
            match &g.violation {
                None => {
                    let _ = writeln!(out, "</testcase>");
                }
                Some(v) => {
                    let _ = writeln!(
                        out,
                        "\n      <failure message=\"{}\" type=\"GuardViolated\">{}</failure>\n    </testcase>",
                        xml_escape(&format!("expected {}, got {}", g.expect(), g.actual())),
                        xml_escape(&v.to_string())
                    );
                }
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    for (name, cases) in suites {
        let f = cases.iter().filter(|r| !r.passed()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" skipped=\"0\">",
            xml_escape(name),
            cases.len()
        );
        for r in cases {
            let title = format!("{} -> {} {}", peer_text(&r.case.from), peer_text(&r.case.to), r.packet);
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"porin.{}\">",
                xml_escape(&format!("{}: {title}", r.label())),
                xml_escape(&r.test)
            );
            if r.passed() {
                let _ = writeln!(out, "</testcase>");
                continue;
            }
            let message = format!("expected {}, got {}", r.expected(), r.actual());
            let mut body = String::new();
            for f in &r.failures {
                body.push_str(&f.trace_text);
                body.push('\n');
            }
            let _ = writeln!(
                out,
                "\n      <failure message=\"{}\" type=\"ConnectivityMismatch\">{}</failure>\n    </testcase>",
                xml_escape(&message),
                xml_escape(&body)
            );
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_covers_markup_and_forbidden_characters() {
        assert_eq!(xml_escape("a<b>&\"c'\u{1}\n"), "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}\n");
    }

    #[test]
    fn a_cidr_is_split_at_every_boundary_inside_it() {
        let mut bounds = BTreeSet::new();
        for n in ["10.0.0.0/24", "10.0.1.0/25"] {
            let (v6, lo, hi) = range(&n.parse().unwrap());
            bounds.insert((v6, lo));
            bounds.insert((v6, hi + 1));
        }
        let mut out = Vec::new();
        points(&bounds, &"10.0.0.0/16".parse().unwrap(), &mut out);
        let want: Vec<IpAddr> = ["10.0.0.0", "10.0.1.0", "10.0.1.128"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(out, want);
        let mut out = Vec::new();
        points(&bounds, &"10.0.1.64/26".parse().unwrap(), &mut out);
        assert_eq!(out, vec!["10.0.1.64".parse::<IpAddr>().unwrap()]);
    }
}
