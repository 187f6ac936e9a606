//! `porin recommend [--since 24h] [--namespace NS]... [--tier-order N] [-o yaml|json]`: one
//! StagedNetworkPolicy per namespace from the traffic the agent observed (its flow store), plus the tier when
//! it is missing; printed, never written (`porin apply -f` what you keep, `porin preview`, `porin promote`).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
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
#[command(args_conflicts_with_subcommands = true)]
pub struct RecommendArgs {
    /// Continuous recommendations (a RecommendationScope): list them, or decide one.
    #[command(subcommand)]
    pub action: Option<RecommendAction>,
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

/// What to do with the agent's continuous recommendation of a namespace.
#[derive(Subcommand, Debug)]
pub enum RecommendAction {
    /// The namespaces' recommendations and their status (Learning, Stabilizing, Stable, Dismissed).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Enforce it: promote it to a NetworkPolicy (one audited transaction; guards checked).
    Accept {
        /// The namespace whose recommendation to enforce.
        namespace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Dismiss it (stagedAction Ignore): no longer evaluated or refreshed.
    Dismiss {
        /// The namespace whose recommendation to dismiss.
        namespace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send it back to learning (stagedAction Learn, status Learning).
    Relearn {
        /// The namespace whose recommendation learns again.
        namespace: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn act(action: RecommendAction) -> Result<ExitCode> {
    let (verb, ns, client) = match action {
        RecommendAction::List { client } => {
            let v = block_on(Client::new(&client).call(Method::GET, "/porin/v1/recommendations", None))??;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no recommendations (apply a RecommendationScope named default with namespaceSpec.recStatus: Enabled)");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<20} {:<12} {:<22} {:>7} {:>6}  NAME", "NAMESPACE", "STATUS", "LAST CHANGE", "INGRESS", "EGRESS");
            for i in items {
                println!(
                    "{:<20} {:<12} {:<22} {:>7} {:>6}  {}",
                    i["namespace"].as_str().unwrap_or(""),
                    i["status"].as_str().unwrap_or(""),
                    i["lastUpdated"].as_str().unwrap_or("-"),
                    i["ingressRules"],
                    i["egressRules"],
                    i["name"].as_str().unwrap_or("")
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        RecommendAction::Accept { namespace, client } => ("accept", namespace, client),
        RecommendAction::Dismiss { namespace, client } => ("dismiss", namespace, client),
        RecommendAction::Relearn { namespace, client } => ("relearn", namespace, client),
    };
    let path = format!("/porin/v1/recommendations/{}/{verb}", enc(&ns));
    block_on(Client::new(&client).call(Method::POST, &path, None))??;
    let done = match verb {
        "accept" => "accepted: enforced as a NetworkPolicy",
        "dismiss" => "dismissed",
        _ => "sent back to learning",
    };
    println!("recommendation of namespace {ns} {done}");
    Ok(ExitCode::SUCCESS)
}

pub fn recommend(a: RecommendArgs) -> Result<ExitCode> {
    if let Some(action) = a.action {
        return act(action);
    }
    let c = Client::new(&a.client);
    let mut q = vec![format!("since={}", enc(&a.since)), format!("tierOrder={}", a.tier_order)];
    q.extend(a.namespaces.iter().map(|n| format!("namespace={}", enc(n))));
    let v = block_on(c.call(Method::GET, &format!("/porin/v1/recommend?{}", q.join("&")), None))??;
    if let Some(missing) = v["missingNodes"].as_array().filter(|m| !m.is_empty()) {
        let names: Vec<&str> = missing.iter().filter_map(serde_json::Value::as_str).collect();
        eprintln!(
            "warning: the traffic of node(s) {} is missing (no recent observations published; enable a RecommendationScope so every node publishes them): their pods' connections are not in this recommendation",
            names.join(", ")
        );
    }
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
