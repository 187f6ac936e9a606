//! `porin demo`: the microservice shop (examples/shop) in a kernel lab, first open, then zero-trust.
//!
//! 1. `porin lab up` with the workloads only; probe with real packets and print the matrix (BEFORE).
//! 2. Apply the platform tier and the shop policies through the agent's API; wait until the kernel
//!    enforces them; probe again (AFTER). Both observed matrices are compared with `porin matrix`.
//! 3. Explain one denied pair with `porin trace`.
//! 4. Keep the lab up until Ctrl-C (or tear it down at once with `--exit`).
//!
//! The lab's life is here; the walkthrough (2., 3.) is `porin_client::demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use porin_client::demo;
use porin_client::labapi::SocketApi;
use porin_lab::cluster;

use super::lab::{self, LabCommon};
use crate::client::block_on;

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

pub fn demo(a: DemoArgs) -> Result<ExitCode> {
    let dir = demo::find_dir(&a.dir)?;
    let (files, workloads, policies) = demo::example_files(&dir)?;
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
    let w = demo::Walkthrough {
        name: &name,
        state_dir: &state_dir,
        meta: &meta,
        wait_opts: &opts,
        workloads: &workloads,
        all: &files,
        policies: &policies,
    };
    let result = demo::walkthrough(&w, &mut std::io::stdout(), &mut std::io::stderr())
        .map(|ok| if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        .map_err(anyhow::Error::from);
    if a.exit || result.is_err() {
        let _ = cluster::down(&name, &opts);
        return result;
    }
    print!("{}", demo::epilogue(&dir, &meta, console_port));
    block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    })?;
    println!("\ntearing down lab {name}");
    cluster::down(&name, &opts)?;
    result
}
