//! `porin get KIND[,KIND...] [NAME...] | KIND/NAME... [-n NS | -A] [-l SELECTOR] [-o FORMAT] [--watch]`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use porin_client::get::GetOptions;

use crate::client::{Client, ClientArgs};
use crate::getfmt::{GetOutput, parse_output};

#[derive(Args, Debug)]
pub struct GetArgs {
    /// What to get: `KIND [NAME...]`, `KIND1,KIND2` or `KIND/NAME...`. A kind is a plural, singular or short name
    /// (`pods`, `netpol`, `gnp`, `networkpolicies.porin.io`); `all` is pods, tiers, every policy kind and the
    /// network sets.
    #[arg(required = true, value_name = "KIND[/NAME]")]
    pub targets: Vec<String>,
    /// Namespace of namespaced kinds [default: default].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Label selector, kubectl syntax (`app=web,tier!=db,env in (a,b),!legacy`) or Calico's
    /// (`app == 'web' && tier != 'db'`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format: table, wide, yaml, json, name (`kind/name`), `jsonpath=TEMPLATE` (like
    /// `{.items[*].metadata.name}`), `custom-columns=HEADER:PATH,...` (like `NAME:.metadata.name`).
    #[arg(short = 'o', long = "output", default_value = "table", value_parser = parse_output, value_name = "FORMAT")]
    pub output: GetOutput,
    /// With -o yaml|json: print the objects as this API version. `projectcalico.org/v3` gives Calico v3
    /// manifests (policies in a non-default tier named TIER.NAME, server-set metadata dropped).
    #[arg(long, value_name = "GROUP/VERSION", value_parser = ["projectcalico.org/v3"])]
    pub api_version: Option<String>,
    /// A LABELS column at the end of the table.
    #[arg(long)]
    pub show_labels: bool,
    /// Tables and custom columns without their header line.
    #[arg(long)]
    pub no_headers: bool,
    /// After the current state, print each change as it happens: a table row (or the chosen format) per change;
    /// with `-o json` the raw events, one JSON object a line.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With --watch: an EVENT column (ADDED, MODIFIED, DELETED) before each row.
    #[arg(long, requires = "watch")]
    pub output_watch_events: bool,
    /// With --watch: only changes after this revision (no initial listing).
    #[arg(long, requires = "watch")]
    pub resource_version: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn get(a: GetArgs) -> Result<ExitCode> {
    let o = GetOptions {
        targets: a.targets,
        namespace: a.namespace,
        all_namespaces: a.all_namespaces,
        selector: a.selector,
        output: a.output,
        api_version: a.api_version,
        show_labels: a.show_labels,
        no_headers: a.no_headers,
        watch: a.watch,
        output_watch_events: a.output_watch_events,
        resource_version: a.resource_version,
    };
    porin_client::get::get(&Client::new(&a.client), &o, &mut std::io::stdout(), &mut std::io::stderr())?;
    Ok(ExitCode::SUCCESS)
}
