//! Incident response: `porin quarantine NS/POD`, `porin release NS/POD`, `porin block CIDR...`,
//! `porin unblock CIDR...`, `porin block list` (docs/design/respond.md).

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use hyper::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, block_on};

#[derive(Args, Debug)]
pub struct QuarantineArgs {
    /// The workload, as NAMESPACE/POD.
    pub pod: String,
    /// Why (kept in the Quarantine record, the audit trail and the alert).
    #[arg(long)]
    pub reason: Option<String>,
    /// Selector of the cluster DNS the workload may still query on UDP/TCP 53
    /// (default: the one in use, else `k8s-app == 'kube-dns'`).
    #[arg(long)]
    pub dns_selector: Option<String>,
    /// Selector of the monitoring workloads that may still reach it
    /// (default: the one in use, else `porin.io/role == 'monitoring'`).
    #[arg(long)]
    pub monitoring_selector: Option<String>,
    /// TCP port the monitoring workloads may reach (repeatable; default: the ones in use, else every port).
    #[arg(long = "monitoring-port")]
    pub monitoring_ports: Vec<u16>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The workload, as NAMESPACE/POD.
    pub pod: String,
    /// Why (kept in the audit trail and the alert).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct BlockArgs {
    /// Addresses or CIDRs to deny cluster-wide, both directions; `list` prints the block list.
    #[arg(required = true)]
    pub cidrs: Vec<String>,
    /// Why (kept in the audit trail and the alert).
    #[arg(long)]
    pub reason: Option<String>,
    /// For `block list`: `table` or `json`.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn split_pod(s: &str) -> Result<(&str, &str)> {
    match s.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => Ok((ns, pod)),
        _ => bail!("{s:?}: expected NAMESPACE/POD"),
    }
}

fn post(client: &ClientArgs, path: &str, body: &Value) -> Result<Value> {
    let c = Client::new(client);
    Ok(block_on(c.call(Method::POST, path, Some(serde_json::to_vec(body)?)))??)
}

pub fn quarantine(a: QuarantineArgs) -> Result<ExitCode> {
    let (ns, pod) = split_pod(&a.pod)?;
    let mut body = json!({"namespace": ns, "pod": pod, "reason": a.reason,
        "dnsSelector": a.dns_selector, "monitoringSelector": a.monitoring_selector});
    if !a.monitoring_ports.is_empty() {
        body["monitoringPorts"] = json!(a.monitoring_ports);
    }
    let v = post(&a.client, "/porin/v1/quarantine", &body)?;
    println!("{ns}/{pod} quarantined (revision {})", v["revision"]);
    Ok(ExitCode::SUCCESS)
}

pub fn release(a: ReleaseArgs) -> Result<ExitCode> {
    let (ns, pod) = split_pod(&a.pod)?;
    let v = post(&a.client, "/porin/v1/release", &json!({"namespace": ns, "pod": pod, "reason": a.reason}))?;
    println!("{ns}/{pod} released (revision {})", v["revision"]);
    Ok(ExitCode::SUCCESS)
}

pub fn block(a: BlockArgs) -> Result<ExitCode> {
    if a.cidrs == ["list"] {
        let c = Client::new(&a.client);
        let v = block_on(c.call(Method::GET, "/porin/v1/block", None))??;
        if a.output == "json" {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!("{:<40} {:<21} ACTOR", "CIDR", "SINCE");
        for i in v["items"].as_array().into_iter().flatten() {
            let s = |k: &str| i[k].as_str().filter(|s| !s.is_empty()).unwrap_or("-").to_string();
            println!("{:<40} {:<21} {}", s("cidr"), s("since"), s("actor"));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let v = post(&a.client, "/porin/v1/block", &json!({"cidrs": a.cidrs, "reason": a.reason}))?;
    println!("blocked {} (revision {})", a.cidrs.join(", "), v["revision"]);
    Ok(ExitCode::SUCCESS)
}

pub fn unblock(a: BlockArgs) -> Result<ExitCode> {
    let v = post(&a.client, "/porin/v1/unblock", &json!({"cidrs": a.cidrs, "reason": a.reason}))?;
    println!("unblocked {} (revision {})", a.cidrs.join(", "), v["revision"]);
    Ok(ExitCode::SUCCESS)
}
