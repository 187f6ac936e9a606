//! `porin agent` and `porin serve`: parse the flags into a [`porin_agent::AgentConfig`] and run the agent.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use porin_agent::{Agent, AgentConfig, Mode};

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    pub config: AgentConfig,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (colours only when stderr is a terminal and NO_COLOR is unset).
    Text,
    /// One JSON object per line: timestamp, level, target, fields (for log collectors).
    Json,
}

/// Logging of the agent (on stderr).
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// What to log: a level (error, warn, info, debug, trace) or a tracing filter such as
    /// `info,porin_agent::reconciler=debug`.
    #[arg(long, env = "PORIN_LOG", default_value = "info", value_name = "FILTER", help_heading = "Logging")]
    pub log_level: String,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value = "text", help_heading = "Logging")]
    pub log_format: LogFormat,
}

pub fn agent(a: AgentArgs) -> Result<ExitCode> {
    run(AgentConfig { mode: Mode::Agent, ..a.config }, &a.log)
}

pub fn serve(a: AgentArgs) -> Result<ExitCode> {
    run(AgentConfig { mode: Mode::ApiOnly, ..a.config }, &a.log)
}

fn init_logging(l: &LogArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&l.log_level)
        .map_err(|e| anyhow::anyhow!("--log-level {:?}: {e} (a level such as info, or a filter such as info,porin_agent=debug)", l.log_level))?;
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match l.log_format {
        LogFormat::Json => {
            // Start-up lines become log events too: every line on stderr is JSON.
            porin_agent::set_announce_as_log(true);
            b.json().with_ansi(false).try_init()
        }
        LogFormat::Text => b.with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()).try_init(),
    };
    Ok(())
}

fn run(config: AgentConfig, log: &LogArgs) -> Result<ExitCode> {
    init_logging(log)?;
    Agent::run(config)?;
    Ok(ExitCode::SUCCESS)
}
