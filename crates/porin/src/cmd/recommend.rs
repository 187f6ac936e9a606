//! `porin recommend [--since 24h] [--namespace NS]... [--tier-order N] [-o yaml|json]`: one
//! StagedNetworkPolicy per namespace from the traffic the agent observed (its flow store), plus the tier when
//! it is missing; printed, never written (`porin apply -f` what you keep, `porin preview`, `porin promote`).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use hyper::Method;

use crate::client::{Client, ClientArgs, block_on, enc};

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum RecommendOutput {
    /// YAML documents, ready for `porin apply -f`.
    #[default]
    Yaml,
    /// One JSON List, with the counts of records read and flows left out.
    Json,
}

#[derive(Args, Debug)]
pub struct RecommendArgs {
    /// How far back to read the flow store: a duration (`90m`, `24h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Only this namespace (repeatable); default every namespace except kube-*, calico-*, tigera-*.
    #[arg(short = 'n', long = "namespace")]
    pub namespaces: Vec<String>,
    /// Order of the tier `namespace-isolation` when it has to be created.
    #[arg(long, default_value_t = 10_000.0)]
    pub tier_order: f64,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: RecommendOutput,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn recommend(a: RecommendArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    let mut q = vec![format!("since={}", enc(&a.since)), format!("tierOrder={}", a.tier_order)];
    q.extend(a.namespaces.iter().map(|n| format!("namespace={}", enc(n))));
    let v = block_on(c.call(Method::GET, &format!("/porin/v1/recommend?{}", q.join("&")), None))??;
    match a.output {
        RecommendOutput::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        RecommendOutput::Yaml => {
            for item in v["items"].as_array().into_iter().flatten() {
                print!("---\n{}", serde_saphyr::to_string(item)?);
            }
            eprintln!(
                "# from {} flow records; {} flows already allowed by explicit policies and {} denied flows left out",
                v["records"], v["alreadyAllowedFlows"], v["deniedFlows"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
