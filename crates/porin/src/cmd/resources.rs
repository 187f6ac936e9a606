//! `porin api-resources`: the kinds Porin serves, as `kubectl api-resources` lists them.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use porin_model::Kind;

#[derive(Args, Debug)]
pub struct ApiResourcesArgs {
    /// Only namespaced (true) or only cluster-scoped (false) kinds.
    #[arg(long, value_name = "BOOL")]
    pub namespaced: Option<bool>,
    /// Only kinds of this API group (`porin.io`, `networking.k8s.io`, or `""` for the core group).
    #[arg(long, value_name = "GROUP")]
    pub api_group: Option<String>,
    /// Names only, one per line (`plural.group`, as `porin get` accepts them).
    #[arg(short = 'o', long = "output", value_parser = ["name"])]
    pub output: Option<String>,
    /// Without the header line.
    #[arg(long)]
    pub no_headers: bool,
}

/// The table (or names) for these filters.
pub fn render(a: &ApiResourcesArgs) -> String {
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| a.namespaced.is_none_or(|n| k.info().namespaced == n))
        .filter(|k| a.api_group.as_deref().is_none_or(|g| k.info().group == g))
        .collect();
    let mut out = String::new();
    if a.output.is_some() {
        for k in kinds {
            let i = k.info();
            out.push_str(&if i.group.is_empty() { format!("{}\n", i.plural) } else { format!("{}.{}\n", i.plural, i.group) });
        }
        return out;
    }
    let mut rows: Vec<[String; 5]> = kinds
        .iter()
        .map(|k| {
            let i = k.info();
            [i.plural.to_string(), i.short.join(","), k.api_version(), i.namespaced.to_string(), i.kind.to_string()]
        })
        .collect();
    if !a.no_headers {
        rows.insert(0, ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"].map(String::from));
    }
    let mut w = [0usize; 5];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(&format!("{c:<width$}   ", width = w[i]));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn api_resources(a: ApiResourcesArgs) -> Result<ExitCode> {
    print!("{}", render(&a));
    Ok(ExitCode::SUCCESS)
}
