//! `porin label KIND NAME k=v k- [-n NS] [--overwrite]`: read, change labels, write back with the read
//! resourceVersion (a concurrent change is a 409, not a lost update).

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use hyper::Method;
use porin_model::Kind;
use serde_json::Value;

use crate::client::{Client, ClientArgs, block_on, collection_path, type_name};

#[derive(Args, Debug)]
pub struct LabelArgs {
    /// Kind: plural, singular or short name (`pods`, `netpol`, `gnp`).
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// `key=value` to set, `key-` to remove.
    #[arg(required = true)]
    pub labels: Vec<String>,
    /// Namespace of the object (namespaced kinds) [default: default].
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Allow replacing an existing value.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn label(a: LabelArgs) -> Result<ExitCode> {
    let kind = Kind::from_cli(&a.kind).ok_or_else(|| anyhow!("unknown kind {:?}", a.kind))?;
    let c = Client::new(&a.client);
    block_on(async {
        let path = format!("{}/{}", collection_path(kind, Some(a.namespace.as_deref().unwrap_or("default"))), a.name);
        let mut obj = c.call(Method::GET, &path, None).await?;
        let meta = obj["metadata"].as_object_mut().ok_or_else(|| anyhow!("object without metadata"))?;
        let labels = meta.entry("labels").or_insert_with(|| Value::Object(Default::default()));
        let labels = labels.as_object_mut().ok_or_else(|| anyhow!("metadata.labels is not a map"))?;
        let before = labels.clone();
        for l in &a.labels {
            if let Some(k) = l.strip_suffix('-') {
                labels.remove(k);
            } else if let Some((k, v)) = l.split_once('=') {
                if let Some(old) = labels.get(k).and_then(Value::as_str)
                    && old != v
                    && !a.overwrite
                {
                    bail!("'{k}' already has a value ({old}), and --overwrite is false");
                }
                labels.insert(k.to_string(), Value::String(v.to_string()));
            } else {
                bail!("{l:?}: expected key=value or key-");
            }
        }
        let changed = *labels != before;
        if changed {
            c.call(Method::PUT, &path, Some(serde_json::to_vec(&obj)?)).await?;
        }
        println!("{}/{} {}", type_name(kind), a.name, if changed { "labeled" } else { "not labeled" });
        Ok(ExitCode::SUCCESS)
    })?
}
