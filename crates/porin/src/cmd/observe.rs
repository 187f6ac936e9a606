//! `porin observe [FILTERS] [-f] [-o compact|json|table]`: flow records from the agent's flow store,
//! like `hubble observe`.
//!
//! The filter flags are `porin_flow::FilterArgs` (defined once); they are validated here and shipped
//! to the agent in canonical form, which evaluates them next to the store (`GET /porin/v1/flows`).
//! Without `--since/--until/--last/--first` the newest 20 flows are shown; `--follow` then streams new
//! ones as they are stored (only new ones, unless a selection flag asks for history too).
//!
//! In a `porin lab` with several nodes (the server is a lab agent's socket), every node's agent is
//! asked and the answers merged by end time; `--server` with any other address asks that one agent.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{ArgMatches, Args, ValueEnum};
use http_body_util::BodyExt;
use hyper::Method;
use porin_flow::{FilterArgs, FlowRecord, OutputFormat, Printer};

use crate::client::{Client, ClientArgs, block_on, enc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorWhen {
    /// When standard output is a terminal (compact output only).
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug)]
pub struct ObserveArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Keep running and print new flows as the agent stores them.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// compact (one line per flow), json (one record per line), table, or hubble (Hubble's
    /// GetFlowsResponse JSON, one per line, for scripts written for `hubble observe -o json`).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
    /// Start compact lines with the name of the node that reported the flow.
    #[arg(long)]
    pub print_node_name: bool,
    /// Colour the verdicts of compact output: auto (on a terminal), always or never.
    #[arg(long, value_enum, default_value_t)]
    pub color: ColorWhen,
    /// Ask only the agent --server names, even when it belongs to a multi-node lab.
    #[arg(long)]
    pub one_node: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Every agent of the lab `server` belongs to (from the lab's state file), if more than one.
pub(crate) fn lab_servers(server: &str) -> Option<Vec<String>> {
    if server.starts_with("http://") {
        return None;
    }
    let path = std::fs::canonicalize(server.strip_prefix("unix:").unwrap_or(server)).ok()?;
    let meta = porin_lab::cluster::control_of_socket(&path)?;
    let socks: Vec<PathBuf> = meta.agents.iter().map(|a| a.socket.clone()).collect();
    (socks.len() > 1 && socks.iter().any(|s| Path::new(s) == path)).then(|| socks.iter().map(|s| s.display().to_string()).collect())
}

fn decode_line(line: &[u8], server: &str, multi: bool) -> Option<FlowRecord> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    match serde_json::from_slice::<FlowRecord>(line) {
        Ok(r) => Some(r),
        Err(_) => {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
            if let Some(n) = v["lagged"].as_u64() {
                let from = if multi { format!(" from {server}") } else { String::new() };
                eprintln!("warning: {n} batches of flows skipped{from} (this reader was too slow; they are in the store)");
            } else {
                eprintln!("warning: unreadable flow record from {server}: {}", String::from_utf8_lossy(line));
            }
            None
        }
    }
}

async fn open(c: &Client, path: &str) -> Result<hyper::body::Incoming> {
    let resp = c.send(Method::GET, path, None).await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let b = resp.into_body().collect().await?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        bail!("Error from server ({}): {}", v["reason"].as_str().unwrap_or(status.as_str()), v["message"].as_str().unwrap_or("?"));
    }
    Ok(resp.into_body())
}

pub fn observe(a: ObserveArgs, m: &ArgMatches) -> Result<ExitCode> {
    if a.follow && a.output == OutputFormat::Table {
        bail!("-o table needs the whole result; use -o compact or -o json with --follow");
    }
    let mut argv = a.filter.to_argv(m).map_err(|e| anyhow!("{e}"))?;
    let f = &a.filter;
    if !a.follow && f.since.is_none() && f.until.is_none() && f.last.is_none() && f.first.is_none() {
        argv.extend(["--last".to_string(), "20".to_string()]);
    }
    let mut path = String::from("/porin/v1/flows?");
    path.push_str(&argv.iter().map(|v| format!("arg={}", enc(v))).collect::<Vec<_>>().join("&"));
    if a.follow {
        path.push_str("&follow=true");
    }
    let client = a.client.resolved()?;
    let server = client.server.clone().unwrap_or_default();
    let servers = if a.one_node { None } else { lab_servers(&server) }.unwrap_or_else(|| vec![server.clone()]);
    let multi = servers.len() > 1;
    let color = match a.color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => std::io::stdout().is_terminal() && a.output == OutputFormat::Compact,
    };
    let mut printer = Printer::new(std::io::stdout().lock(), a.output, color).print_node_name(a.print_node_name);
    block_on(async {
        let clients: Vec<(String, Client)> =
            servers.iter().map(|s| (s.clone(), Client::new(&ClientArgs { server: Some(s.clone()), ..client.clone() }))).collect();
        if !a.follow {
            let mut all = Vec::new();
            for (s, c) in &clients {
                let body = open(c, &path).await?.collect().await?.to_bytes();
                all.extend(body.split(|b| *b == b'\n').filter_map(|l| decode_line(l, s, multi)));
            }
            if multi {
                all.sort_by_key(|r| (r.end_time, r.start_time));
                if let Some(n) = f.last {
                    all.drain(..all.len().saturating_sub(n));
                } else if let Some(n) = f.first {
                    all.truncate(n);
                } else if f.since.is_none() && f.until.is_none() {
                    all.drain(..all.len().saturating_sub(20));
                }
            }
            for r in &all {
                printer.print(r)?;
            }
            drop(printer.finish()?);
            return anyhow::Ok(ExitCode::SUCCESS);
        }
        // Follow: one stream per agent, lines printed as they arrive.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<FlowRecord, anyhow::Error>>(1024);
        for (s, c) in clients {
            let body = open(&c, &path).await?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut body = body;
                let mut buf: Vec<u8> = Vec::new();
                loop {
                    match body.frame().await {
                        None => {
                            let _ = tx.send(Err(anyhow!("{s}: the agent closed the stream"))).await;
                            return;
                        }
                        Some(Err(e)) => {
                            let _ = tx.send(Err(anyhow!("{s}: {e}"))).await;
                            return;
                        }
                        Some(Ok(fr)) => {
                            let Ok(data) = fr.into_data() else { continue };
                            buf.extend_from_slice(&data);
                            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = buf.drain(..=i).collect();
                                if let Some(r) = decode_line(&line, &s, multi)
                                    && tx.send(Ok(r)).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
        drop(tx);
        while let Some(r) = rx.recv().await {
            printer.print(&r?)?;
        }
        Ok(ExitCode::SUCCESS)
    })?
}
