//! `porin demo`: the microservice shop (examples/shop) in a kernel lab, first open, then zero-trust.
//!
//! 1. `porin lab up` with the workloads only; probe with real packets and print the matrix (BEFORE).
//! 2. Apply the platform tier and the shop policies through the agent's API; wait until the kernel
//!    enforces them; probe again (AFTER). Both observed matrices are compared with `porin matrix`.
//! 3. Explain one denied pair with `porin trace`.
//! 4. Keep the lab up until Ctrl-C (or tear it down at once with `--exit`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hyper::Method;
use porin_lab::{ObservedMatrices, Proto};
use porin_model::Protocol;
use porin_policy::{Cluster, Variant};

use porin_lab::cluster::{self, ControlPlane};

use super::lab::{self, LabCommon, SocketApi};
use crate::client::{Client, ClientArgs, block_on};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The example: a directory whose `00-*.yaml` holds the workloads and the other files the policies.
    #[arg(long, default_value = "examples/shop")]
    pub dir: PathBuf,
    /// Tear the lab down and exit after the walkthrough (CI).
    #[arg(long)]
    pub exit: bool,
    /// How many lab nodes (agents) to spread the pods over.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// The web console's port on the host's loopback (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub console_port: u16,
    #[command(flatten)]
    pub common: LabCommon,
}

fn find_dir(d: &Path) -> Result<PathBuf> {
    if d.is_dir() {
        return Ok(d.to_path_buf());
    }
    // Run from elsewhere: look next to the binary's repository (target/<profile>/porin).
    if d.is_relative()
        && let Ok(exe) = std::env::current_exe()
    {
        for up in exe.ancestors().skip(1).take(4) {
            if up.join(d).is_dir() {
                return Ok(up.join(d));
            }
        }
    }
    bail!("{}: no such directory (run from the repository root or pass --dir)", d.display())
}

fn expected(files: &[PathBuf], ports: &[(u16, Proto)]) -> Result<serde_json::Value> {
    let docs = porin_model::load_paths(files)
        .map_err(|e| anyhow::anyhow!("{}", e.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("\n")))?;
    let c = Cluster::build(docs.iter().map(|d| &d.resource)).context("building the policy model")?;
    let ms: Vec<serde_json::Value> = ports
        .iter()
        .map(|(port, proto)| {
            let p = match proto {
                Proto::Tcp => Protocol::Tcp,
                Proto::Udp => Protocol::Udp,
                Proto::Sctp => Protocol::Sctp,
            };
            serde_json::to_value(c.matrix(Variant::Enforced, p, *port).to_json()).expect("json")
        })
        .collect();
    Ok(serde_json::json!({ "matrices": ms }))
}

fn compare(observed: &ObservedMatrices, files: &[PathBuf], ports: &[(u16, Proto)]) -> Result<bool> {
    let o = serde_json::to_value(observed)?;
    let e = expected(files, ports)?;
    if o == e {
        println!("   kernel matches porin matrix ({} port(s), real packets)", ports.len());
        Ok(true)
    } else {
        println!("   MISMATCH: the kernel differs from porin matrix");
        println!("   observed: {o}\n   expected: {e}");
        Ok(false)
    }
}

pub fn demo(a: DemoArgs) -> Result<ExitCode> {
    let dir = find_dir(&a.dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let (workloads, policies): (Vec<PathBuf>, Vec<PathBuf>) =
        files.iter().cloned().partition(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("00-")));
    if workloads.is_empty() {
        bail!("{}: no 00-*.yaml workloads file", dir.display());
    }
    let name = a.common.name.clone().unwrap_or_else(|| "demo".into());
    let state_dir = a.common.state_dir.clone();

    println!("== porin demo: {} in a kernel lab ({} node(s))", dir.display(), a.nodes);
    let opts = lab::lab_options(&state_dir)?;
    let _ = cluster::down(&name, &opts);
    let t0 = Instant::now();
    let console_port = cluster::pick_port(a.console_port)?;
    let up = lab::up_options(&name, &state_dir, workloads.clone(), a.nodes, Duration::from_secs(60))?;
    let meta = cluster::up(&cluster::UpOptions { console_port: Some(console_port), ..up }, &SocketApi)?;
    println!(
        "   lab {name} up in {:.1}s: one network namespace per pod, one porin agent per node, eBPF on every pod veth",
        t0.elapsed().as_secs_f64()
    );
    let result = walkthrough(&a, &name, &state_dir, &meta, &workloads, &files, &policies);
    if a.exit || result.is_err() {
        let _ = cluster::down(&name, &opts);
        return result;
    }
    println!();
    println!("The lab stays up. Try, in another shell:");
    println!("   export PORIN_SERVER={}", meta.server.display());
    println!("   porin status                       # agent, dataplane, drops by reason");
    println!("   porin lab probe --port 9000        # who reaches whom, on real packets");
    println!("   porin trace -f {} --from shop/cart --to shop/db --port 5432", dir.display());
    println!("   porin apply -f ...; porin lab wait  # change policy, then probe again");
    println!("   porin lab exec shop/frontend -- ip addr");
    match cluster::console_written(&meta.dir, console_port) {
        Ok(c) => {
            println!("Web console (live service graph, flows, policies): open {}", c.url);
            println!("   and sign in with the token {}   (also in {})", c.token, c.token_file.display());
        }
        Err(e) => println!("   (the web console is unavailable: {e:#})"),
    }
    println!("Ctrl-C tears the lab down.");
    block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    })?;
    println!("\ntearing down lab {name}");
    cluster::down(&name, &opts)?;
    result
}

fn walkthrough(
    _a: &DemoArgs,
    name: &str,
    state_dir: &Path,
    meta: &ControlPlane,
    workloads: &[PathBuf],
    all: &[PathBuf],
    policies: &[PathBuf],
) -> Result<ExitCode> {
    let lab_opts = porin_lab::LabOptions::with_state_dir(state_dir);
    let l = porin_lab::Lab::open(name, &lab_opts)?;
    let mut ports: Vec<(u16, Proto)> = l.pods().iter().flat_map(|p| p.ports.iter().copied()).collect();
    ports.sort_by_key(|(p, pr)| (*pr, *p));
    ports.dedup();
    let timeout = Duration::from_millis(500);

    println!();
    println!("== BEFORE: workloads only, no policy. Observed on real packets (rows: from, columns: to)");
    let before = l.probe(&ports, timeout)?;
    print!("{}", porin_client::labfmt::observed_tables(&before));
    let ok1 = compare(&before, workloads, &ports)?;

    println!();
    println!("== applying zero-trust policy through the agent's API:");
    for p in policies {
        println!("   {}", p.display());
    }
    let c = Client::new(&ClientArgs::socket(meta.server.display().to_string()));
    let t0 = Instant::now();
    block_on(async {
        let Some(docs) = super::apply::load_valid(&c, policies).await? else { bail!("the policies do not validate") };
        let r = c.call(Method::POST, "/porin/v1/apply", Some(super::apply::list_body(&docs))).await?;
        super::apply::print_outcomes(&r);
        anyhow::Ok(())
    })??;
    cluster::wait_current(&SocketApi, name, &lab::lab_options(state_dir)?, Duration::from_secs(30))?;
    println!("   enforced by the kernel {:.0} ms after the apply", t0.elapsed().as_secs_f64() * 1e3);

    println!();
    println!("== AFTER: platform tier (monitoring, PCI isolation) above the shop's default-deny + per-service allows");
    let after = l.probe(&ports, timeout)?;
    print!("{}", porin_client::labfmt::observed_tables(&after));
    let ok2 = compare(&after, all, &ports)?;

    // What closed.
    let mut closed = Vec::new();
    for (b, a) in before.matrices.iter().zip(&after.matrices) {
        for pair in &b.allowed {
            if !a.allowed.contains(pair) {
                closed.push(format!("{} -> {} {}/{}", pair.0, pair.1, b.protocol, b.port));
            }
        }
    }
    println!();
    println!("== {} connection(s) closed by the policy, e.g.:", closed.len());
    for c in closed.iter().take(5) {
        println!("   {c}");
    }

    println!();
    println!("== why is shop/frontend -> shop/payment:9000 denied?  porin trace -f <shop> --from shop/frontend --to shop/payment --port 9000");
    let docs = porin_model::load_paths(all).map_err(|e| anyhow::anyhow!("{}", e.len()))?;
    let cl = Cluster::build(docs.iter().map(|d| &d.resource))?;
    let (Some(fi), Some(pi)) = (cl.endpoint("shop/frontend"), cl.endpoint("shop/payment")) else {
        bail!("the example has no shop/frontend or shop/payment")
    };
    let (src, dst) = (porin_policy::Peer::Endpoint(&cl.endpoints[fi]), porin_policy::Peer::Endpoint(&cl.endpoints[pi]));
    let pkt = porin_policy::Packet { protocol: 6, port: Some(9000), icmp: None, v6: false };
    let v = cl.verdict(src, dst, &pkt);
    print!("{}", crate::printers::trace_table(&src, &dst, &pkt, &v));
    let kernel = l.probe_one("shop/frontend", "shop/payment", 9000, Proto::Tcp, timeout)?;
    println!("   kernel: {}", if kernel { "ALLOWED" } else { "denied (a real SYN was dropped)" });
    Ok(if ok1 && ok2 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
