//! `porin config`: named contexts for server, CA and token (see `crate::config` for the file and the
//! precedence of flags, environment and context).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};

use crate::config::{Config, ContextEntry};

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the config file (tokens masked).
    View,
    /// List the contexts; `*` marks the current one.
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Make NAME the current context.
    UseContext {
        /// A context of the config file.
        name: String,
    },
    /// Create or update context NAME; flags not given keep their value.
    SetContext(SetContextArgs),
    /// Remove context NAME.
    DeleteContext {
        /// A context of the config file.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct SetContextArgs {
    /// The context's name.
    pub name: String,
    /// API server: Unix socket path, https://HOST:PORT or http://HOST:PORT.
    #[arg(long)]
    pub server: Option<String>,
    /// CA certificates (PEM) the https:// server must chain to.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A file holding the bearer token (preferred: the config file then holds no secret).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself (stored in the config file, mode 0600).
    #[arg(long)]
    pub token: Option<String>,
    /// Also make it the current context.
    #[arg(long)]
    pub current: bool,
}

fn file() -> Result<PathBuf> {
    crate::config::path().ok_or_else(|| anyhow!("no config file location: set PORIN_CONFIG or HOME"))
}

pub fn config(a: ConfigArgs) -> Result<ExitCode> {
    let path = file()?;
    let mut cfg = Config::load(&path)?;
    match a.command {
        ConfigCommand::View => {
            let mut shown = cfg.clone();
            for c in &mut shown.contexts {
                if c.token.is_some() {
                    c.token = Some("REDACTED".into());
                }
            }
            print!("{}", serde_saphyr::to_string(&shown)?);
        }
        ConfigCommand::GetContexts => {
            let rows: Vec<[String; 4]> = cfg
                .contexts
                .iter()
                .map(|c| {
                    let cur = if cfg.current_context.as_deref() == Some(c.name.as_str()) { "*" } else { "" };
                    let auth = match (&c.token, &c.token_file) {
                        (Some(_), _) => "token".to_string(),
                        (None, Some(f)) => format!("token-file {}", f.display()),
                        (None, None) => "peer credentials".to_string(),
                    };
                    [cur.to_string(), c.name.clone(), c.server.clone().unwrap_or_else(|| "-".into()), auth]
                })
                .collect();
            let header = ["CURRENT", "NAME", "SERVER", "AUTH"].map(String::from);
            let mut w = [0usize; 4];
            for r in std::iter::once(&header).chain(&rows) {
                for (i, c) in r.iter().enumerate() {
                    w[i] = w[i].max(c.len());
                }
            }
            for r in std::iter::once(&header).chain(&rows) {
                let line = format!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3], w0 = w[0], w1 = w[1], w2 = w[2]);
                println!("{}", line.trim_end());
            }
        }
        ConfigCommand::CurrentContext => match &cfg.current_context {
            Some(c) => println!("{c}"),
            None => bail!("current-context is not set"),
        },
        ConfigCommand::UseContext { name } => {
            if cfg.context(&name).is_none() {
                bail!("no context named {name:?} in {}", path.display());
            }
            cfg.current_context = Some(name.clone());
            cfg.save(&path)?;
            println!("Switched to context {name:?}.");
        }
        ConfigCommand::SetContext(s) => {
            let idx = match cfg.contexts.iter().position(|c| c.name == s.name) {
                Some(i) => i,
                None => {
                    cfg.contexts.push(ContextEntry { name: s.name.clone(), ..Default::default() });
                    cfg.contexts.len() - 1
                }
            };
            let c = &mut cfg.contexts[idx];
            if let Some(v) = s.server {
                c.server = Some(v);
            }
            if let Some(v) = s.ca {
                c.ca = Some(std::path::absolute(&v)?);
            }
            if let Some(v) = s.token_file {
                c.token_file = Some(std::path::absolute(&v)?);
                c.token = None;
            }
            if let Some(v) = s.token {
                c.token = Some(v);
                c.token_file = None;
            }
            if s.current || cfg.current_context.is_none() {
                cfg.current_context = Some(s.name.clone());
            }
            cfg.save(&path)?;
            println!("Context {:?} set.", s.name);
        }
        ConfigCommand::DeleteContext { name } => {
            let before = cfg.contexts.len();
            cfg.contexts.retain(|c| c.name != name);
            if cfg.contexts.len() == before {
                bail!("no context named {name:?} in {}", path.display());
            }
            if cfg.current_context.as_deref() == Some(name.as_str()) {
                cfg.current_context = None;
            }
            cfg.save(&path)?;
            println!("Deleted context {name:?}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
