//! `porin alerts [-f] [-o table|wide|json] [--kind K] [--since D]`: the agent's alerts (threat-feed hits,
//! honeypod contacts, quarantine and block actions), oldest first, from `GET /porin/v1/alerts`. `-f` keeps
//! running and prints each new alert as it is raised. `-o json` prints one alert per line (the webhook body).
//!
//! Alerts live on the agent that raised them: in a multi-node lab (the server is a lab agent's socket) every
//! node's agent is asked and the lists merged by time.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

use crate::client::{Client, ClientArgs, block_on, enc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AlertOutput {
    /// One line per alert: time, kind, name, verdict, description.
    #[default]
    Table,
    /// Also the id, node, both endpoints, protocol and trace.
    Wide,
    /// One JSON object per line.
    Json,
}

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

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// How an endpoint of an alert reads: `ns/pod`, `netset:name`, `world:ip`, the address, or `-`.
fn endpoint(e: &Value) -> String {
    if e.is_null() {
        return "-".into();
    }
    let ip = e["ip"].as_str();
    let port = e["port"].as_u64().map(|p| format!(":{p}")).unwrap_or_default();
    let name = match (e["namespace"].as_str(), e["pod"].as_str().or(e["workload"].as_str()), e["network_set"].as_str()) {
        (Some(ns), Some(p), _) => format!("{ns}/{p}"),
        (_, _, Some(n)) => format!("netset:{n}{}", ip.map(|i| format!("({i})")).unwrap_or_default()),
        _ => match (e["kind"].as_str(), ip) {
            (Some("world"), Some(ip)) => format!("world:{ip}"),
            (_, Some(ip)) => ip.to_string(),
            _ => "(hidden)".into(),
        },
    };
    format!("{name}{port}")
}

/// The header line of a table.
pub fn header(o: AlertOutput) -> String {
    match o {
        AlertOutput::Wide => format!(
            "{:<6} {:<20} {:<8} {:<12} {:<20} {:<28} {:<28} {:<6} {:<8} {:<36} DESCRIPTION",
            "ID", "TIME", "NODE", "KIND", "NAME", "SOURCE", "DESTINATION", "PROTO", "VERDICT", "TRACE"
        ),
        _ => format!("{:<20} {:<12} {:<20} {:<8} DESCRIPTION", "TIME", "KIND", "NAME", "VERDICT"),
    }
}

/// `2026-12-03T16:23:56Z` (no fraction) for tables.
fn time(a: &Value) -> String {
    let t = s(a, "time");
    match (t.find('.'), t.ends_with('Z')) {
        (Some(i), true) => format!("{}Z", &t[..i]),
        _ => t.to_string(),
    }
}

/// One alert as a table row (`table` or `wide`) or a JSON line.
pub fn row(a: &Value, o: AlertOutput) -> String {
    let verdict = a["verdict"].as_str().unwrap_or("-");
    match o {
        AlertOutput::Json => serde_json::to_string(a).unwrap_or_default(),
        AlertOutput::Table => format!("{:<20} {:<12} {:<20} {:<8} {}", time(a), s(a, "kind"), s(a, "name"), verdict, s(a, "description")),
        AlertOutput::Wide => {
            let trace: Vec<&str> = a["trace"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            format!(
                "{:<6} {:<20} {:<8} {:<12} {:<20} {:<28} {:<28} {:<6} {:<8} {:<36} {}",
                a["id"].as_u64().unwrap_or(0),
                time(a),
                s(a, "node"),
                s(a, "kind"),
                s(a, "name"),
                endpoint(&a["src"]),
                endpoint(&a["dst"]),
                a["protocol"].as_str().unwrap_or("-"),
                verdict,
                if trace.is_empty() { "-".to_string() } else { trace.join(",") },
                s(a, "description")
            )
        }
    }
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
    let servers = super::observe::lab_servers(&server).unwrap_or_else(|| vec![server.clone()]);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
        if std::env::var_os("PORIN_BLESS").is_some() {
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
        assert_eq!(actual, want, "output differs from {} (PORIN_BLESS=1 regenerates)", path.display());
    }

    #[test]
    fn table_and_wide_rows() {
        let alerts: Vec<Value> = [
            r#"{"id":1,"time":"2026-12-03T16:20:01.123456789Z","node":"n0","kind":"threat_feed","name":"feodo",
                "description":"shop/frontend connected to 203.0.113.10:443/tcp, an address of threat feed feodo: denied",
                "src":{"kind":"pod","namespace":"shop","pod":"frontend","ip":"10.10.0.10","port":50714},
                "dst":{"kind":"network_set","network_set":"threatfeed.feodo","ip":"203.0.113.10","port":443},
                "protocol":"tcp","verdict":"denied","trace":["security|block-feodo|egress[0]|deny"],"addresses":["203.0.113.10"]}"#,
            r#"{"id":2,"time":"2026-12-03T16:21:00Z","node":"n1","kind":"block","name":"198.51.100.0/24",
                "description":"uid:0 blocked 198.51.100.0/24 cluster-wide","actor":"uid:0"}"#,
        ]
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
        for (o, file) in [(AlertOutput::Table, "alerts-table.txt"), (AlertOutput::Wide, "alerts-wide.txt")] {
            let mut text = header(o) + "\n";
            for a in &alerts {
                text += &(row(a, o) + "\n");
            }
            golden(file, &text);
        }
        assert_eq!(row(&alerts[1], AlertOutput::Json), serde_json::to_string(&alerts[1]).unwrap());
    }
}
