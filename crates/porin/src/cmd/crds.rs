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
