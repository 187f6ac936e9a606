//! `porin report run TYPE|NAME`: a compliance report over an interval, computed from the agent's objects,
//! audit trail and flow records (see `porin_report`), written as JSON, CSV or a self-contained HTML page.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use porin_client::report;
use porin_report::render;

use crate::client::{Client, ClientArgs, block_on, enc};

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
    match report::list_table(&v) {
        Some(t) => print!("{t}"),
        None => eprintln!("No archived reports."),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn report(a: ReportArgs) -> Result<ExitCode> {
    let (r, format, out) = match a.command {
        ReportCommand::Run(a) => {
            let o = report::RunOptions {
                report: a.report,
                since: a.since,
                until: a.until,
                namespaces: a.namespaces,
                selector: a.selector,
                archive: a.archive,
            };
            (report::run(&Client::new(&a.client), &o, &mut std::io::stderr())?, a.output, a.out)
        }
        ReportCommand::List(a) => return list(a),
        ReportCommand::Get(a) => (report::archived(&Client::new(&a.client), &a.name, &a.end)?, a.output, a.out),
    };
    write_out(&r, format, out.as_ref())?;
    Ok(ExitCode::SUCCESS)
}
