//! `porin promote KIND NAME... [-n NS]` or `porin promote --all [-n NS]`: staged policies become enforced, and
//! the staged objects go away, in one audited transaction on the agent (`POST /porin/v1/promote`); all or
//! nothing. `--dry-run` prints the resulting objects and writes nothing.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use hyper::Method;
use porin_model::Kind;
use serde_json::json;

use crate::client::{Client, ClientArgs, block_on, collection_path};
use porin_client::promote::dry_run_text;

const STAGED: [Kind; 3] =
    [Kind::StagedNetworkPolicy, Kind::StagedGlobalNetworkPolicy, Kind::StagedKubernetesNetworkPolicy];

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// KIND NAME... (KIND: snp, sgnp, sknp or the full kind name).
    pub args: Vec<String>,
    /// Namespace of namespaced staged kinds (default: default; with --all: every namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Promote every staged policy (in -n NS only, when given; cluster-scoped ones always).
    #[arg(long)]
    pub all: bool,
    /// Print the objects that would be written or deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn promote(a: PromoteArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    block_on(async {
        let mut items = Vec::new();
        if a.all {
            if !a.args.is_empty() {
                bail!("give either --all or KIND NAME..., not both");
            }
            for kind in STAGED {
                let ns = if kind.info().namespaced { a.namespace.as_deref() } else { None };
                let list = c.call(Method::GET, &collection_path(kind, ns), None).await?;
                for it in list["items"].as_array().into_iter().flatten() {
                    items.push(json!({"kind": kind.info().kind, "namespace": it["metadata"]["namespace"], "name": it["metadata"]["name"]}));
                }
            }
            if items.is_empty() {
                eprintln!("no staged policies to promote");
                return Ok(ExitCode::SUCCESS);
            }
        } else {
            let [kind, names @ ..] = a.args.as_slice() else {
                bail!("usage: porin promote KIND NAME... [-n NS] | --all")
            };
            if names.is_empty() {
                bail!("usage: porin promote KIND NAME... [-n NS] | --all");
            }
            let kind = Kind::from_cli(kind).ok_or_else(|| anyhow!("unknown kind {kind:?}"))?;
            if !STAGED.contains(&kind) {
                bail!(
                    "{kind} is not a staged policy kind (StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy)"
                );
            }
            let ns = if kind.info().namespaced {
                Some(a.namespace.clone().unwrap_or_else(|| "default".into()))
            } else {
                None
            };
            for name in names {
                items.push(json!({"kind": kind.info().kind, "namespace": ns, "name": name}));
            }
        }
        let body = serde_json::to_vec(&json!({"items": items, "dryRun": a.dry_run}))?;
        let result = c.call(Method::POST, "/porin/v1/promote", Some(body)).await?;
        if a.dry_run {
            print!("{}", dry_run_text(&result)?);
        } else {
            print!("{}", porin_client::apply::outcomes(&result, ""));
        }
        Ok(ExitCode::SUCCESS)
    })?
}

