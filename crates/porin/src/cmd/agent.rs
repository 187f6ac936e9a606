//! `porin agent` and `porin serve`: parse the flags into a [`porin_agent::AgentConfig`] and run the agent.

use std::process::ExitCode;

use anyhow::Result;
use porin_agent::{Agent, AgentConfig, Mode};

pub fn agent(config: AgentConfig) -> Result<ExitCode> {
    run(AgentConfig { mode: Mode::Agent, ..config })
}

pub fn serve(config: AgentConfig) -> Result<ExitCode> {
    run(AgentConfig { mode: Mode::ApiOnly, ..config })
}

fn run(config: AgentConfig) -> Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PORIN_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .try_init();
    Agent::run(config)?;
    Ok(ExitCode::SUCCESS)
}
