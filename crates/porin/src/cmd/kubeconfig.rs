//! `porin kubeconfig [-o FILE] [--context NAME] [--kube-server URL] [--create-token NAME --role ROLE ...]`: a
//! kubeconfig for `kubectl` against the agent's API (`porin agent --listen`): the https server, the agent's CA
//! (embedded) and a bearer token, either the one this CLI uses (flag, environment, context) or a new one made
//! with the token API.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use hyper::Method;
use serde_json::json;

use crate::client::{Client, ClientArgs, DEFAULT_DATA_DIR, block_on};
use crate::cmd::token::RoleArg;

#[derive(Args, Debug)]
pub struct KubeconfigArgs {
    /// Write the kubeconfig to FILE (mode 0600) instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Name of the context, cluster and user in the kubeconfig [default: --context, else porin].
    #[arg(long = "kube-context", value_name = "NAME")]
    pub kube_context: Option<String>,
    /// The server kubectl should use [default: --server when it is https:// or http://].
    #[arg(long, value_name = "URL")]
    pub kube_server: Option<String>,
    /// Create a token of this name for kubectl (admin only) instead of writing the one this CLI uses.
    #[arg(long, value_name = "NAME", requires = "role")]
    pub create_token: Option<String>,
    /// Role of the created token (with --create-token).
    #[arg(long, value_enum, requires = "create_token")]
    pub role: Option<RoleArg>,
    /// Namespaces of a scoped token (repeatable); the first is the context's default namespace.
    #[arg(long = "namespace", short = 'n')]
    pub namespaces: Vec<String>,
    /// Tiers a scoped token may write policies in (repeatable).
    #[arg(long = "tier", requires = "create_token")]
    pub tiers: Vec<String>,
    /// Lifetime of the created token (30m, 24h, 7d).
    #[arg(long, requires = "create_token")]
    pub ttl: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn kubeconfig(a: KubeconfigArgs) -> Result<ExitCode> {
    let resolved = a.client.resolved()?;
    let server = match (&a.kube_server, &resolved.server) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) if s.starts_with("https://") || s.starts_with("http://") => s.clone(),
        _ => bail!(
            "kubectl reaches the agent over TCP: pass --kube-server https://HOST:PORT (the agent's --listen address), \
             or --server https://HOST:PORT"
        ),
    };
    if !server.starts_with("https://") && !server.starts_with("http://") {
        bail!("--kube-server {server:?}: expected https://HOST:PORT");
    }
    let token = match &a.create_token {
        Some(name) => {
            let role = match a.role {
                Some(RoleArg::Admin) => "admin",
                Some(RoleArg::ReadOnly) => "read-only",
                Some(RoleArg::Scoped) => "scoped",
                Some(RoleArg::Cni) => "cni",
                None => bail!("--create-token needs --role"),
            };
            let ttl = match &a.ttl {
                Some(t) => Some(
                    porin_agent::timefmt::parse_duration(t)
                        .ok_or_else(|| anyhow!("--ttl {t:?}: expected a duration like 30m, 24h or 7d"))?
                        .as_secs(),
                ),
                None => None,
            };
            let body = json!({"name": name, "role": role, "namespaces": a.namespaces, "tiers": a.tiers, "ttlSeconds": ttl});
            let c = Client::new(&a.client);
            let v = block_on(c.call(Method::POST, "/porin/v1/tokens", Some(serde_json::to_vec(&body)?)))??;
            v["token"].as_str().ok_or_else(|| anyhow!("the server returned no token"))?.to_string()
        }
        None => resolved.token.clone().ok_or_else(|| {
            anyhow!("no token to write: pass --token (or PORIN_TOKEN, or a context with one), or --create-token NAME --role ROLE")
        })?,
    };
    let ca_pem = if server.starts_with("https://") {
        let ca = match &resolved.ca {
            Some(p) => p.clone(),
            None => std::path::Path::new(DEFAULT_DATA_DIR).join("tls/ca.crt"),
        };
        Some(std::fs::read(&ca).with_context(|| {
            format!("reading the agent's CA {} (pass --ca FILE: the agent's <data-dir>/tls/ca.crt)", ca.display())
        })?)
    } else {
        None
    };
    let name = a.kube_context.as_deref().or(a.client.context.as_deref()).unwrap_or("porin");
    let doc = porin_client::kubeconfig::document(name, &server, ca_pem.as_deref(), &token, a.namespaces.first().map(String::as_str));
    let text = serde_saphyr::to_string(&doc)?;
    match &a.output {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("writing {}", path.display()))?;
            f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("kubeconfig written to {} (context {name:?}): export KUBECONFIG={}", path.display(), path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
