//! `porin crds`: the CustomResourceDefinitions of the porin.io kinds, generated from the model (schemas and
//! printer columns of `porin_model::schema`), as one YAML stream for `kubectl apply -f -`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use porin_model::Kind;

#[derive(Args, Debug)]
pub struct CrdsArgs {
    /// `yaml` (a stream of documents) or `json` (a List).
    #[arg(short = 'o', long = "output", default_value = "yaml", value_parser = ["yaml", "json"])]
    pub output: String,
}

pub fn crds(a: CrdsArgs) -> Result<ExitCode> {
    let crds: Vec<serde_json::Value> = Kind::ALL.into_iter().filter_map(porin_model::schema::crd).collect();
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": crds}))?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for c in &crds {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(c)?);
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use porin_model::Kind;

    use crate::printers::{TableOptions, resource_rows};

    /// The columns kubectl shows (server-side tables, CRD printer columns: `porin_model::schema::columns`) are
    /// the columns `porin get` prints: the two tables must not drift apart.
    #[test]
    fn kubectl_columns_are_porin_gets_columns() {
        for kind in Kind::ALL {
            let header = |wide: bool| -> Vec<String> {
                let o = TableOptions { wide, ..Default::default() };
                resource_rows(kind, &[], &[], &o).remove(0)
            };
            let skip = ["NAME", "AGE", "RESOURCE-VERSION", "LABELS"];
            let plain: Vec<String> = header(false).into_iter().filter(|h| !skip.contains(&h.as_str())).collect();
            let wide: Vec<String> = header(true).into_iter().filter(|h| !skip.contains(&h.as_str()) && !plain.contains(h)).collect();
            let cols = porin_model::schema::columns(kind);
            let of = |p: u8| -> Vec<String> { cols.iter().filter(|c| c.priority == p).map(|c| c.name.to_uppercase()).collect() };
            assert_eq!(of(0), plain, "{kind:?}");
            assert_eq!(of(1), wide, "{kind:?} (-o wide)");
        }
    }
}
