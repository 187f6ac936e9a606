//! `porin alerts [-f] [-o table|wide|json] [--kind K] [--since D]`: the agent's alerts (threat-feed hits,
//! honeypod contacts, quarantine and block actions), oldest first, from `GET /porin/v1/alerts`. `-f` keeps
//! running and prints each new alert as it is raised. `-o json` prints one alert per line (the webhook body).
//!
//! Alerts live on the agent that raised them: in a multi-node lab (the server is a lab agent's socket) every
//! node's agent is asked and the lists merged by time.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

use porin_client::alerts::{AlertOutput, header, row, s};

use crate::client::{Client, ClientArgs, block_on, enc};

#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// Keep running and print new alerts as they are raised.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// table (time, kind, name, verdict, description), wide (also id, node, endpoints, protocol, trace) or json
    /// (one alert per line).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: AlertOutput,
    /// Only this kind: threat_feed, honeypod, quarantine, release, block, unblock.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only alerts raised since: a duration back from now (10m, 2h) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// One agent's answer, line by line, into `tx` (`Err` ends the command).
async fn stream(c: Client, server: String, path: String, tx: tokio::sync::mpsc::Sender<Result<Value>>) {
    let run = async {
        let resp = c.send(Method::GET, &path, None).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let b = body.collect().await?.to_bytes();
            let v: Value = serde_json::from_slice(&b).unwrap_or_default();
            bail!("Error from server ({}): {}", v["reason"].as_str().unwrap_or(status.as_str()), v["message"].as_str().unwrap_or("?"));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(fr) = body.frame().await {
            let Ok(data) = fr?.into_data() else { continue };
            buf.extend_from_slice(&data);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_slice(line)?;
                if let Some(n) = v["lagged"].as_u64() {
                    eprintln!("warning: {n} alerts skipped by {server} (this reader was too slow; `porin alerts` lists them)");
                    continue;
                }
                if tx.send(Ok(v)).await.is_err() {
                    return Ok(());
                }
            }
        }
        anyhow::Ok(())
    };
    if let Err(e) = run.await {
        let _ = tx.send(Err(e)).await;
    }
}

pub fn alerts(a: AlertsArgs) -> Result<ExitCode> {
    let mut q: Vec<String> = Vec::new();
    if let Some(k) = &a.kind {
        q.push(format!("kind={}", enc(k)));
    }
    if let Some(s) = &a.since {
        q.push(format!("since={}", enc(s)));
    }
    if a.follow {
        q.push("follow=true".into());
    }
    let path = if q.is_empty() { "/porin/v1/alerts".to_string() } else { format!("/porin/v1/alerts?{}", q.join("&")) };
    // Alerts live on the agent that raised them: in a multi-node lab, ask every node's agent.
    let client = a.client.resolved()?;
    let server = client.server.clone().unwrap_or_default();
    let servers = porin_client::observe::lab_servers(&server).unwrap_or_else(|| vec![server.clone()]);
    let o = a.output;
    block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        for s in &servers {
            let c = Client::new(&ClientArgs { server: Some(s.clone()), ..client.clone() });
            tokio::spawn(stream(c, s.clone(), path.clone(), tx.clone()));
        }
        drop(tx);
        let mut out = std::io::stdout().lock();
        let mut printed_header = false;
        let mut print = |v: &Value, out: &mut std::io::StdoutLock<'_>| -> Result<()> {
            if o != AlertOutput::Json && !printed_header {
                writeln!(out, "{}", header(o))?;
                printed_header = true;
            }
            writeln!(out, "{}", row(v, o))?;
            Ok(out.flush()?)
        };
        let mut listed = Vec::new();
        while let Some(v) = rx.recv().await {
            let v = v?;
            if a.follow {
                print(&v, &mut out)?;
            } else {
                listed.push(v);
            }
        }
        // Several agents: one list in time order (RFC 3339 UTC strings of one format sort as times).
        listed.sort_by(|x, y| s(x, "time").cmp(s(y, "time")).then(s(x, "node").cmp(s(y, "node"))));
        for v in &listed {
            print(v, &mut out)?;
        }
        if listed.is_empty() && !a.follow && o != AlertOutput::Json {
            eprintln!("No alerts.");
        }
        anyhow::Ok(())
    })??;
    Ok(ExitCode::SUCCESS)
}
