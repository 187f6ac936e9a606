//! `porin delete KIND NAME [-n NS]` or `porin delete -f PATH...` (all named objects atomically).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use hyper::Method;
use porin_model::{Kind, load_paths};

use crate::client::{Client, ClientArgs, block_on, collection_path, type_name};

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// KIND NAME...
    pub args: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
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
            let result = c.call(Method::POST, "/porin/v1/delete", Some(super::apply::list_body(&docs))).await?;
            super::apply::print_outcomes(&result);
            return Ok(ExitCode::SUCCESS);
        }
        let [kind, names @ ..] = a.args.as_slice() else { bail!("usage: porin delete KIND NAME... [-n NS] | -f PATH") };
        if names.is_empty() {
            bail!("usage: porin delete KIND NAME... [-n NS] | -f PATH");
        }
        let kind = Kind::from_cli(kind).ok_or_else(|| anyhow!("unknown kind {kind:?}"))?;
        let ns = a.namespace.as_deref().unwrap_or("default");
        for name in names {
            c.call(Method::DELETE, &format!("{}/{name}", collection_path(kind, Some(ns))), None).await?;
            println!("{} \"{name}\" deleted", type_name(kind));
        }
        Ok(ExitCode::SUCCESS)
    })?
}
