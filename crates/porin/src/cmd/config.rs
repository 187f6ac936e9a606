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
        ConfigCommand::View => print!("{}", cfg.redacted_yaml()?),
        ConfigCommand::GetContexts => print!("{}", cfg.contexts_table()),
        ConfigCommand::CurrentContext => match &cfg.current_context {
            Some(c) => println!("{c}"),
            None => bail!("current-context is not set"),
        },
        ConfigCommand::UseContext { name } => {
            cfg.use_context(&name, &path)?;
            cfg.save(&path)?;
            println!("Switched to context {name:?}.");
        }
        ConfigCommand::SetContext(s) => {
            let name = s.name.clone();
            let u = ContextEntry { name: s.name, server: s.server, ca: s.ca, token: s.token, token_file: s.token_file };
            cfg.set_context(u, s.current)?;
            cfg.save(&path)?;
            println!("Context {name:?} set.");
        }
        ConfigCommand::DeleteContext { name } => {
            cfg.delete_context(&name, &path)?;
            cfg.save(&path)?;
            println!("Deleted context {name:?}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
