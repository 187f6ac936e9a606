//! `porin get KIND [NAME] [-n NS | -A] [-l SELECTOR] [-o table|wide|yaml|json] [--watch]`.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Args, ValueEnum};
use http_body_util::BodyExt;
use hyper::Method;
use porin_model::Kind;

use crate::client::{Client, ClientArgs, block_on, collection_path, enc};
use crate::printers;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum GetOutput {
    #[default]
    Table,
    Wide,
    Yaml,
    Json,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Kind: plural, singular or short name (`pods`, `netpol`, `gnp`, `networkpolicies.porin.io`).
    pub kind: String,
    pub name: Option<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// kubectl label selector: `app=web,tier!=db,env in (a,b),!legacy`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: GetOutput,
    /// Stream changes (one JSON event per line) after printing nothing.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With --watch: start after this revision (default: now).
    #[arg(long)]
    pub resource_version: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn get(a: GetArgs) -> Result<ExitCode> {
    let kind = Kind::from_cli(&a.kind).ok_or_else(|| {
        anyhow!("the server doesn't have a resource type {:?} (try `pods`, `netpol`, `gnp`, `tiers`, ...)", a.kind)
    })?;
    let c = Client::new(&a.client);
    let ns = if a.all_namespaces { None } else { Some(a.namespace.clone().unwrap_or_else(|| "default".into())) };
    let mut path = collection_path(kind, ns.as_deref());
    if let Some(n) = &a.name {
        path = format!("{path}/{n}");
    }
    let mut q = Vec::new();
    if let Some(s) = &a.selector {
        crate::labelsel::parse(s).map_err(|e| anyhow!("invalid selector: {e}"))?;
        q.push(format!("labelSelector={}", enc(s)));
    }
    block_on(async {
        if a.watch {
            q.push("watch=true".into());
            if let Some(rv) = a.resource_version {
                q.push(format!("resourceVersion={rv}"));
            }
            let resp = c.send(Method::GET, &format!("{path}?{}", q.join("&")), None).await?;
            if !resp.status().is_success() {
                let b = resp.into_body().collect().await?.to_bytes();
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                anyhow::bail!("Error from server ({}): {}", v["reason"].as_str().unwrap_or("?"), v["message"].as_str().unwrap_or("?"));
            }
            let mut body = resp.into_body();
            use std::io::Write;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    std::io::stdout().write_all(&data)?;
                    std::io::stdout().flush()?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        let full = if q.is_empty() { path } else { format!("{path}?{}", q.join("&")) };
        let v = c.call(Method::GET, &full, None).await?;
        let items: Vec<serde_json::Value> = if a.name.is_some() { vec![v.clone()] } else { v["items"].as_array().cloned().unwrap_or_default() };
        match a.output {
            GetOutput::Json => println!("{}", serde_json::to_string_pretty(&v)?),
            GetOutput::Yaml => print!("{}", serde_saphyr::to_string(&v)?),
            GetOutput::Table | GetOutput::Wide => {
                if items.is_empty() {
                    match &ns {
                        Some(ns) if kind.info().namespaced => eprintln!("No resources found in {ns} namespace."),
                        _ => eprintln!("No resources found"),
                    }
                } else {
                    print!("{}", printers::resource_table(kind, &items, a.all_namespaces, a.output == GetOutput::Wide));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })?
}
