//! `porin observe [FILTERS] [-f] [-o compact|json|table]`: flow records from the agent's flow store,
//! like `hubble observe`.
//!
//! The filter flags are `porin_flow::FilterArgs` (defined once); they are validated here and shipped
//! to the agent in canonical form, which evaluates them next to the store (`GET /porin/v1/flows`).
//! Without `--since/--until/--last/--first` the newest 20 flows are shown; `--follow` then streams new
//! ones as they are stored (only new ones, unless a selection flag asks for history too).
//!
//! In a `porin lab` with several nodes (the server is a lab agent's socket), every node's agent is
//! asked and the answers merged by end time; `--server` with any other address asks that one agent
//! (`porin_client::observe`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{ArgMatches, Args, ValueEnum};
use porin_client::observe::ObserveOptions;
use porin_flow::{FilterArgs, OutputFormat, Printer};

use crate::client::ClientArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorWhen {
    /// When standard output is a terminal (compact output only).
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug)]
pub struct ObserveArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Keep running and print new flows as the agent stores them.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// compact (one line per flow), json (one record per line), table, or hubble (Hubble's
    /// GetFlowsResponse JSON, one per line, for scripts written for `hubble observe -o json`).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Start compact lines with the name of the node that reported the flow.
    #[arg(long)]
    pub print_node_name: bool,
    /// Colour the verdicts of compact output: auto (on a terminal), always or never.
    #[arg(long, value_enum, default_value_t)]
    pub color: ColorWhen,
    /// Ask only the agent --server names, even when it belongs to a multi-node lab.
    #[arg(long)]
    pub one_node: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn observe(a: ObserveArgs, m: &ArgMatches) -> Result<ExitCode> {
    if a.follow && a.output == OutputFormat::Table {
        bail!("-o table needs the whole result; use -o compact or -o json with --follow");
    }
    let f = &a.filter;
    let o = ObserveOptions {
        argv: f.to_argv(m).map_err(|e| anyhow!("{e}"))?,
        follow: a.follow,
        last: f.last,
        first: f.first,
        window: f.since.is_some() || f.until.is_some(),
        one_node: a.one_node,
    };
    let color = match a.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => std::io::stdout().is_terminal() && a.output == OutputFormat::Compact,
    };
    let printer = Printer::new(std::io::stdout().lock(), a.output, color).print_node_name(a.print_node_name);
    porin_client::observe::observe(&a.client, &o, printer, &mut std::io::stderr())?;
    Ok(ExitCode::SUCCESS)
}
