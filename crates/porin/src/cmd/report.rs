//! `porin report run TYPE|NAME`: a compliance report over an interval, computed from the agent's objects,
//! audit trail and flow records (see `porin_report`), written as JSON, CSV or a self-contained HTML page.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use porin_model::Resource;
use porin_report::{AuditRecordView, History, ReportType, Scope, render};
use porin_selector::Selector;

use crate::client::{Client, ClientArgs, block_on, enc};
use porin_client::report::{fetch_flows, parse_time, stored_spec};

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Compute a report now: TYPE (inventory, network-access, policy-audit) or the NAME of a GlobalReport.
    Run(RunArgs),
    /// List archived reports (scheduled runs of GlobalReports, and `run NAME --archive`).
    List(ListArgs),
    /// Print an archived report.
    Get(GetArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only the archives of this GlobalReport.
    pub name: Option<String>,
    /// table or json.
    #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// The GlobalReport's name.
    pub name: String,
    /// Which archive: its end time (seconds since the epoch, as `report list` prints) or `latest`.
    #[arg(default_value = "latest")]
    pub end: String,
    /// json, csv or html.
    #[arg(short = 'o', long = "output", value_enum, default_value = "json")]
    pub output: Format,
    /// Write to FILE instead of standard output.
    #[arg(long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
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
    /// Run a GlobalReport NAME in the agent and archive the result in the store (admin).
    #[arg(long)]
    pub archive: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn write_out(r: &porin_report::Report, format: Format, out: Option<&PathBuf>) -> Result<()> {
    let text = match format {
        Format::Json => render::json(r) + "\n",
        Format::Csv => render::csv(r),
        Format::Html => render::html(r),
    };
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    let q = a.name.as_deref().map(|n| format!("?name={}", enc(n))).unwrap_or_default();
    let v = block_on(c.call(Method::GET, &format!("/porin/v1/reports{q}"), None))??;
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&v["items"])?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![["NAME", "TYPE", "START", "END", "END (EPOCH)", "ENDPOINTS", "INGRESS-PROTECTED", "EGRESS-PROTECTED"].map(String::from).to_vec()];
    for it in v["items"].as_array().into_iter().flatten() {
        let t = |k: &str| it[k].as_i64().map(porin_agent::timefmt::rfc3339).unwrap_or_default();
        let n = |k: &str| it[k].as_u64().map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        rows.push(vec![
            it["name"].as_str().unwrap_or("").to_string(),
            it["reportType"].as_str().unwrap_or("").to_string(),
            t("start"),
            t("end"),
            n("end"),
            n("endpoints"),
            n("ingressProtected"),
            n("egressProtected"),
        ]);
    }
    if rows.len() == 1 {
        eprintln!("No archived reports.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut w = vec![0; rows[0].len()];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    for r in &rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn get(a: GetArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    let v = block_on(c.call(Method::GET, &format!("/porin/v1/reports/{}/{}", enc(&a.name), enc(&a.end)), None))??;
    let r: porin_report::Report = serde_json::from_value(v).context("reading the archived report")?;
    write_out(&r, a.output, a.out.as_ref())?;
    Ok(ExitCode::SUCCESS)
}

pub fn report(a: ReportArgs) -> Result<ExitCode> {
    let a = match a.command {
        ReportCommand::Run(a) => a,
        ReportCommand::List(a) => return list(a),
        ReportCommand::Get(a) => return get(a),
    };
    let c = Client::new(&a.client);
    let start = parse_time("--since", &a.since)?;
    let end = match &a.until {
        Some(u) => parse_time("--until", u)?,
        None => porin_agent::timefmt::now_secs(),
    };
    if start >= end {
        bail!("--since {} is not before --until ({} >= {})", a.since, porin_agent::timefmt::rfc3339(start), porin_agent::timefmt::rfc3339(end));
    }
    if a.archive {
        if ReportType::parse(&a.report).is_some() {
            bail!("--archive runs a stored GlobalReport: give its NAME, not a report type");
        }
        if !a.namespaces.is_empty() || a.selector.is_some() {
            bail!("--archive runs the GlobalReport as stored: --namespace and --selector do not apply");
        }
        let v = block_on(c.call(
            Method::POST,
            &format!("/porin/v1/reports/{}/run?start={start}&end={end}&archive=true", enc(&a.report)),
            None,
        ))??;
        let r: porin_report::Report = serde_json::from_value(v).context("reading the report")?;
        write_out(&r, a.output, a.out.as_ref())?;
        return Ok(ExitCode::SUCCESS);
    }
    let objects: Vec<Resource> = super::live::fetch_live(&c)?.into_iter().map(|d| d.resource).collect();
    // A GlobalReport's type and scope as the agent's scheduler reads them (namespace selectors against the
    // namespaces' labels now); --namespace and --selector replace its scope.
    let (kind, mut scope, name) = match ReportType::parse(&a.report) {
        Some(t) => (t, Scope::default(), t.as_str().to_string()),
        None => {
            let spec = stored_spec(&c, &a.report)?;
            let (t, s) = porin_agent::reports::scope_of(&a.report, &spec, &objects)?;
            (t, s, a.report.clone())
        }
    };
    if !a.namespaces.is_empty() {
        scope.namespaces = a.namespaces.iter().cloned().collect();
    }
    if let Some(s) = &a.selector {
        scope.selector = Some(Selector::parse(s).map_err(|e| anyhow!("--selector {s:?}: {e}"))?);
    }
    let audit = block_on(c.call(Method::GET, &format!("/porin/v1/audit?since={start}"), None))??;
    let records: Vec<AuditRecordView> =
        serde_json::from_value(audit["items"].clone()).context("reading the audit trail the agent returned")?;
    let flows = if kind == ReportType::NetworkAccess {
        let (flows, skipped) = fetch_flows(&c, start, end)?;
        for line in skipped {
            eprintln!("warning: skipped a line of the flow answer that is not a record: {line}");
        }
        flows
    } else {
        Vec::new()
    };
    let history = History::new(&objects, records);
    let mut r = porin_report::compute(kind, &name, &scope, &history, &flows, start, end)?;
    r.generated_by = format!("porin {} report run", env!("CARGO_PKG_VERSION"));
    write_out(&r, a.output, a.out.as_ref())?;
    Ok(ExitCode::SUCCESS)
}

