//! `porin report run TYPE|NAME`: a compliance report over an interval, computed from the agent's objects,
//! audit trail and flow records (see `porin_report`), written as JSON, CSV or a self-contained HTML page.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::BodyExt;
use hyper::Method;
use porin_model::{Kind, Resource};
use porin_report::{AuditRecordView, History, ReportType, Scope, render};
use porin_selector::Selector;

use crate::client::{Client, ClientArgs, block_on, collection_path, enc};

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Compute a report now: TYPE (inventory, network-access, policy-audit) or the NAME of a GlobalReport.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Csv,
    Html,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// inventory, network-access, policy-audit, or the name of a stored GlobalReport (its type and scope).
    pub report: String,
    /// Start of the interval: a duration ago (24h, 7d) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// End of the interval [default: now].
    #[arg(long)]
    pub until: Option<String>,
    /// Only endpoints in these namespaces (repeatable) [default: the GlobalReport's, else all].
    #[arg(short = 'n', long = "namespace")]
    pub namespaces: Vec<String>,
    /// Only endpoints whose labels match this Calico selector [default: the GlobalReport's, else all].
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// json (everything), csv (one row per endpoint or change) or html (a page with charts).
    #[arg(short = 'o', long = "output", value_enum, default_value = "json")]
    pub output: Format,
    /// Write to FILE instead of standard output.
    #[arg(long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_time(flag: &str, s: &str) -> Result<i64> {
    if s == "now" {
        return Ok(porin_agent::timefmt::now_secs());
    }
    porin_agent::timefmt::parse_since(s).ok_or_else(|| anyhow!("{flag} {s:?}: expected a duration like 24h or an RFC 3339 time"))
}

/// The type and scope of a stored GlobalReport.
fn stored(c: &Client, name: &str) -> Result<(ReportType, Scope, Vec<String>)> {
    let v = block_on(c.call(Method::GET, &format!("{}/{}", collection_path(Kind::GlobalReport, None), enc(name)), None))??;
    let r = porin_model::load::to_resource(Kind::GlobalReport, v).map_err(|(p, m)| anyhow!("GlobalReport {name:?}: {p}: {m}"))?;
    let Resource::GlobalReport(o) = r else { unreachable!("decoded as GlobalReport") };
    let t = ReportType::parse(&o.spec.report_type).ok_or_else(|| anyhow!("GlobalReport {name:?}: spec.reportType {:?}", o.spec.report_type))?;
    let mut scope = Scope::default();
    let mut ns_selectors = Vec::new();
    if let Some(e) = &o.spec.endpoints {
        if let Some(s) = &e.selector {
            scope.selector = Some(Selector::parse(s).map_err(|e| anyhow!("GlobalReport {name:?}: spec.endpoints.selector: {e}"))?);
        }
        if let Some(n) = &e.namespaces {
            scope.namespaces.extend(n.names.iter().cloned());
            ns_selectors.extend(n.selector.clone());
        }
    }
    Ok((t, scope, ns_selectors))
}

pub fn report(a: ReportArgs) -> Result<ExitCode> {
    let ReportCommand::Run(a) = a.command;
    let c = Client::new(&a.client);
    let start = parse_time("--since", &a.since)?;
    let end = match &a.until {
        Some(u) => parse_time("--until", u)?,
        None => porin_agent::timefmt::now_secs(),
    };
    if start >= end {
        bail!("--since {} is not before --until ({} >= {})", a.since, porin_agent::timefmt::rfc3339(start), porin_agent::timefmt::rfc3339(end));
    }
    let (kind, mut scope, ns_selectors, name) = match ReportType::parse(&a.report) {
        Some(t) => (t, Scope::default(), Vec::new(), t.as_str().to_string()),
        None => {
            let (t, s, n) = stored(&c, &a.report)?;
            (t, s, n, a.report.clone())
        }
    };
    if !a.namespaces.is_empty() {
        scope.namespaces = a.namespaces.iter().cloned().collect();
    }
    if let Some(s) = &a.selector {
        scope.selector = Some(Selector::parse(s).map_err(|e| anyhow!("--selector {s:?}: {e}"))?);
    }
    let objects: Vec<Resource> = super::live::fetch_live(&c)?.into_iter().map(|d| d.resource).collect();
    // A namespace selector picks namespaces by their labels now.
    for sel in &ns_selectors {
        let s = Selector::parse(sel).map_err(|e| anyhow!("spec.endpoints.namespaces.selector: {e}"))?;
        for r in &objects {
            if let Resource::Namespace(n) = r
                && s.matches(&n.metadata.labels)
            {
                scope.namespaces.insert(n.metadata.name.clone());
            }
        }
    }
    let audit = block_on(c.call(Method::GET, &format!("/porin/v1/audit?since={start}"), None))??;
    let records: Vec<AuditRecordView> =
        serde_json::from_value(audit["items"].clone()).context("reading the audit trail the agent returned")?;
    let flows = if kind == ReportType::NetworkAccess { fetch_flows(&c, start, end)? } else { Vec::new() };
    let history = History::new(&objects, records);
    let mut r = porin_report::compute(kind, &name, &scope, &history, &flows, start, end)?;
    r.generated_by = format!("porin {} report run", env!("CARGO_PKG_VERSION"));
    let text = match a.output {
        Format::Json => render::json(&r) + "\n",
        Format::Csv => render::csv(&r),
        Format::Html => render::html(&r),
    };
    match &a.out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn fetch_flows(c: &Client, start: i64, end: i64) -> Result<Vec<porin_flow::FlowRecord>> {
    let (s, e) = (porin_agent::timefmt::rfc3339(start), porin_agent::timefmt::rfc3339(end));
    let path = format!("/porin/v1/flows?arg=--since&arg={}&arg=--until&arg={}", enc(&s), enc(&e));
    block_on(async {
        let resp = c.send(Method::GET, &path, None).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("reading flows: {status}: {}", String::from_utf8_lossy(&body));
        }
        let mut out = Vec::new();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.trim_ascii().is_empty()) {
            match serde_json::from_slice::<porin_flow::FlowRecord>(line) {
                Ok(r) => out.push(r),
                // A `{"lagged": N}` notice or anything else that is not a record: reported, never guessed.
                Err(_) => eprintln!("warning: skipped a line of the flow answer that is not a record: {}", String::from_utf8_lossy(line)),
            }
        }
        Ok(out)
    })?
}
