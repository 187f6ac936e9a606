//! `porin delete KIND NAME... [-n NS]`, `porin delete KIND -l SELECTOR | --all [-n NS]` or
//! `porin delete -f PATH...`. A selector or `--all` lists the matches, then deletes them in one transaction
//! (all or none, like `-f`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use hyper::Method;
use porin_model::{Kind, load_paths};

use crate::client::{Client, ClientArgs, block_on, collection_path, enc, type_name};

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// `KIND NAME...`, or `KIND` with -l or --all. A kind is a plural, singular or short name (`pods`, `netpol`).
    #[arg(value_name = "KIND|NAME")]
    pub args: Vec<String>,
    /// Namespace of the objects (namespaced kinds) [default: default].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Delete every object of KIND whose labels match SELECTOR: kubectl syntax (`app=web,!legacy`) or Calico's
    /// (`app == 'web' && !has(legacy)`).
    #[arg(short = 'l', long, conflicts_with_all = ["all", "files"])]
    pub selector: Option<String>,
    /// Delete every object of KIND in the namespace (cluster-wide for cluster-scoped kinds).
    #[arg(long, conflicts_with = "files")]
    pub all: bool,
    /// Delete the objects these manifests name (files or directories, `-` for stdin), atomically. Repeatable.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn delete(a: DeleteArgs) -> Result<ExitCode> {
    let c = Client::new(&a.client);
    block_on(async {
        if !a.files.is_empty() {
            if !a.args.is_empty() {
                bail!("give either -f PATH or KIND NAME, not both");
            }
            let docs = match load_paths(&a.files) {
                Ok(d) => d,
                Err(errors) => {
                    errors.iter().for_each(|e| eprintln!("{e}"));
                    return Ok(ExitCode::from(1));
                }
            };
            let result = c.call(Method::POST, "/porin/v1/delete", Some(porin_client::apply::list_body(&docs))).await?;
            print!("{}", porin_client::apply::outcomes(&result, ""));
            return Ok(ExitCode::SUCCESS);
        }
        const USAGE: &str = "usage: porin delete KIND NAME... | KIND -l SELECTOR | KIND --all [-n NS] | -f PATH";
        let [kind, names @ ..] = a.args.as_slice() else { bail!(USAGE) };
        let kind = Kind::from_cli(kind).ok_or_else(|| anyhow!("unknown kind {kind:?}"))?;
        let ns = a.namespace.as_deref().unwrap_or("default");
        if a.selector.is_some() || a.all {
            if !names.is_empty() {
                bail!("give either names or {}, not both", if a.all { "--all" } else { "-l SELECTOR" });
            }
            return delete_matching(&c, kind, ns, a.selector.as_deref()).await;
        }
        if names.is_empty() {
            bail!(USAGE);
        }
        for name in names {
            c.call(Method::DELETE, &format!("{}/{name}", collection_path(kind, Some(ns))), None).await?;
            println!("{} \"{name}\" deleted", type_name(kind));
        }
        Ok(ExitCode::SUCCESS)
    })?
}

/// List KIND in `ns` (matching `selector`, if any), then delete exactly those objects in one transaction. An
/// object changed or deleted in between makes the whole delete fail rather than remove something unseen.
async fn delete_matching(c: &Client, kind: Kind, ns: &str, selector: Option<&str>) -> Result<ExitCode> {
    let mut path = collection_path(kind, Some(ns));
    if let Some(s) = selector {
        porin_selector::labelsel::parse_any(s).map_err(|e| anyhow!("invalid selector: {e}"))?;
        path = format!("{path}?labelSelector={}", enc(s));
    }
    let list = c.call(Method::GET, &path, None).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        if kind.info().namespaced {
            eprintln!("No resources found in {ns} namespace.");
        } else {
            eprintln!("No resources found");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let body = serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))?;
    let result = c.call(Method::POST, "/porin/v1/delete", Some(body)).await?;
    for it in result["items"].as_array().into_iter().flatten() {
        println!("{} \"{}\" {}", type_name(kind), it["name"].as_str().unwrap_or(""), it["action"].as_str().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}
