//! `porin observe`: flow records from the agents' flow stores (`GET /porin/v1/flows`), once or followed.
//!
//! In a `porin lab` with several nodes (the server is a lab agent's socket), every node's agent is asked and the
//! answers merged by end time; any other server is asked alone. Records go to the caller's [`Printer`],
//! warnings (skipped batches, unreadable records) to its error writer.

use std::io::Write;
use std::path::{Path, PathBuf};

use http_body_util::BodyExt;
use hyper::Method;
use porin_flow::{FlowRecord, Printer};

use crate::client::{Client, ClientArgs, block_on, enc};
use crate::{Error, Result};

/// What to ask the agents for: the filter flags in canonical form (`porin_flow::FilterArgs::to_argv`) and the
/// selection flags that decide how several agents' answers are merged.
#[derive(Debug, Clone, Default)]
pub struct ObserveOptions {
    pub argv: Vec<String>,
    pub follow: bool,
    pub last: Option<usize>,
    pub first: Option<usize>,
    /// `--since` or `--until` was given.
    pub window: bool,
    /// Ask only the agent the client names, even when it belongs to a multi-node lab.
    pub one_node: bool,
}

/// Every agent of the lab `server` belongs to (from the lab's state file), if more than one.
pub fn lab_servers(server: &str) -> Option<Vec<String>> {
    if server.starts_with("http://") {
        return None;
    }
    let path = std::fs::canonicalize(server.strip_prefix("unix:").unwrap_or(server)).ok()?;
    let meta = porin_lab::cluster::control_of_socket(&path)?;
    let socks: Vec<PathBuf> = meta.agents.iter().map(|a| a.socket.clone()).collect();
    (socks.len() > 1 && socks.iter().any(|s| Path::new(s) == path)).then(|| socks.iter().map(|s| s.display().to_string()).collect())
}

/// One line of the flow stream: a record, a warning for the user, or nothing (a blank line).
fn decode_line(line: &[u8], server: &str, multi: bool) -> Option<Msg> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    Some(match serde_json::from_slice::<FlowRecord>(line) {
        Ok(r) => Msg::Record(Box::new(r)),
        Err(_) => {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
            Msg::Warning(if let Some(n) = v["lagged"].as_u64() {
                let from = if multi { format!(" from {server}") } else { String::new() };
                format!("warning: {n} batches of flows skipped{from} (this reader was too slow; they are in the store)")
            } else {
                format!("warning: unreadable flow record from {server}: {}", String::from_utf8_lossy(line))
            })
        }
    })
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

/// A line of a flow stream decoded, or (from a follower task) why its stream ended.
enum Msg {
    Record(Box<FlowRecord>),
    Warning(String),
    Ended(String),
}

/// Ask the agent(s) and print what they answer; with `follow`, until a stream ends (an error naming the agent).
pub fn observe<W: Write>(client: &ClientArgs, o: &ObserveOptions, mut printer: Printer<W>, err: &mut dyn Write) -> Result<()> {
    let mut argv = o.argv.clone();
    if !o.follow && !o.window && o.last.is_none() && o.first.is_none() {
        argv.extend(["--last".to_string(), "20".to_string()]);
    }
    let mut path = String::from("/porin/v1/flows?");
    path.push_str(&argv.iter().map(|v| format!("arg={}", enc(v))).collect::<Vec<_>>().join("&"));
    if o.follow {
        path.push_str("&follow=true");
    }
    let client = client.resolved()?;
    let server = client.server.clone().unwrap_or_default();
    let servers = if o.one_node { None } else { lab_servers(&server) }.unwrap_or_else(|| vec![server.clone()]);
    let multi = servers.len() > 1;
    block_on(async {
        let clients: Vec<(String, Client)> =
            servers.iter().map(|s| (s.clone(), Client::new(&ClientArgs { server: Some(s.clone()), ..client.clone() }))).collect();
        if !o.follow {
            let mut all = Vec::new();
            for (s, c) in &clients {
                let body = open(c, &path).await?.collect().await?.to_bytes();
                for m in body.split(|b| *b == b'\n').filter_map(|l| decode_line(l, s, multi)) {
                    match m {
                        Msg::Record(r) => all.push(*r),
                        Msg::Warning(w) => writeln!(err, "{w}").map_err(Error::write)?,
                        Msg::Ended(e) => return Err(Error::Invalid(e)),
                    }
                }
            }
            if multi {
                all.sort_by_key(|r| (r.end_time, r.start_time));
                if let Some(n) = o.last {
                    all.drain(..all.len().saturating_sub(n));
                } else if let Some(n) = o.first {
                    all.truncate(n);
                } else if !o.window {
                    all.drain(..all.len().saturating_sub(20));
                }
            }
            for r in &all {
                printer.print(r).map_err(Error::write)?;
            }
            drop(printer.finish().map_err(Error::write)?);
            return Ok(());
        }
        // Follow: one stream per agent, lines printed as they arrive.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(1024);
        for (s, c) in clients {
            let body = open(&c, &path).await?;
            tokio::spawn(follow(s, body, multi, tx.clone()));
        }
        drop(tx);
        while let Some(m) = rx.recv().await {
            match m {
                Msg::Record(r) => printer.print(&r).map_err(Error::write)?,
                Msg::Warning(w) => writeln!(err, "{w}").map_err(Error::write)?,
                Msg::Ended(e) => return Err(Error::Invalid(e)),
            }
        }
        Ok(())
    })?
}

/// One agent's stream of flows, line by line, into `tx` (until the stream ends or the receiver goes away).
async fn follow(s: String, mut body: hyper::body::Incoming, multi: bool, tx: tokio::sync::mpsc::Sender<Msg>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match body.frame().await {
            None => {
                let _ = tx.send(Msg::Ended(format!("{s}: the agent closed the stream"))).await;
                return;
            }
            Some(Err(e)) => {
                let _ = tx.send(Msg::Ended(format!("{s}: {e}"))).await;
                return;
            }
            Some(Ok(fr)) => {
                let Ok(data) = fr.into_data() else { continue };
                buf.extend_from_slice(&data);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let Some(m) = decode_line(&line, &s, multi) else { continue };
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
