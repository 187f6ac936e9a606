//! `porin-bench`: the dataplane benchmarks B1, B2, B4 and B5 of "Kernel enforcement", on real traffic
//! between two lab pods on one node (see `scripts/bench-dataplane.sh` and docs/benchmarks.md).
//!
//! Every variant runs in the same process on the same machine, interleaved per repetition, so the
//! results are ratios to the no-policy variant measured next to them. Hygiene: everything happens inside
//! the lab's namespaces (`porin-*`); iptables/nft rules only inside the lab's node netns; the lab is taken
//! down on exit (guard) and stale labs are removed at start.
#![forbid(unsafe_code)]

mod agent;
mod dp;
mod report;
mod synth;
mod traffic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use porin_lab::{LabOptions, LabSpec, PodSpec, Proto, ServerMode};
use serde::Serialize;

use dp::{EndpointSlot, Porin};
use synth::Synth;
use traffic::{Prober, Servers, netns_path, ns_exec};

#[derive(Parser, Debug, Clone)]
#[command(about = "Porin dataplane benchmarks (B1 throughput + RR, B2 connections/s, B4 time to enforce, B5 programming cost)")]
struct Args {
    /// A few seconds of everything, small rule counts; fails if a variant produced no number or deny did not deny.
    #[arg(long)]
    smoke: bool,
    /// Repetitions of every B1/B2 variant (interleaved).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Seconds of iperf3 per measurement.
    #[arg(long, default_value_t = 3)]
    stream_secs: u32,
    /// Seconds of the RR and CRR loops per measurement.
    #[arg(long, default_value_t = 2.0)]
    loop_secs: f64,
    /// Client threads of the connect/close loop.
    #[arg(long, default_value_t = 4)]
    crr_threads: usize,
    /// Rule counts.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10usize, 1000, 10000])]
    rules: Vec<usize>,
    /// Benchmarks to run.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["b1".to_string(), "b4".into(), "b4agent".into(), "b5".into()])]
    only: Vec<String>,
    /// B4: endpoints programmed in the maps (2 real pods, the rest fake interfaces).
    #[arg(long, default_value_t = 1000)]
    b4_endpoints: usize,
    /// B4: rules on the probed server.
    #[arg(long, default_value_t = 10000)]
    b4_rules: usize,
    /// B4: enforce/revoke pairs per mode.
    #[arg(long, default_value_t = 20)]
    b4_trials: usize,
    /// B4: pairs with a full compile per change (each costs the compile time at b4_rules).
    #[arg(long, default_value_t = 8)]
    b4_full_trials: usize,
    /// B4 through `porin apply` → agent → kernel: the `porin` binary (default: next to this one).
    #[arg(long)]
    porin_bin: Option<PathBuf>,
    /// B4 agent path: rule counts.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1000usize, 10000])]
    agent_rules: Vec<usize>,
    /// B4 agent path: enforce/revoke pairs per rule count.
    #[arg(long, default_value_t = 5)]
    agent_trials: usize,
    /// B4 agent path, after the trials: policy changes over which the agent's RSS is sampled (0: none).
    #[arg(long, default_value_t = 0)]
    agent_rss_changes: usize,
    /// B4 agent path, before the RSS changes: pods (no interfaces) added to the store.
    #[arg(long, default_value_t = 0)]
    agent_pods: usize,
    /// Write all results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "rules")]
enum Variant {
    /// (a) no programs, no rules.
    None,
    /// (b) Porin: calc + BPF maps, programs on both host veths.
    Porin(usize),
    /// (c) iptables linear chain, conntrack ESTABLISHED accept first.
    Iptables(usize),
    /// (c') the same chain without the conntrack shortcut: every packet to the server walks it.
    IptablesStateless(usize),
    /// (d) nftables concatenated-set lookup.
    NftSet(usize),
}

impl Variant {
    fn label(&self) -> String {
        match self {
            Variant::None => "(a) no policy".into(),
            Variant::Porin(n) => format!("(b) Porin, {n} rules"),
            Variant::Iptables(n) => format!("(c) iptables chain, {n} rules"),
            Variant::IptablesStateless(n) => format!("(c') iptables chain, no ct shortcut, {n} rules"),
            Variant::NftSet(n) => format!("(d) nft set, {n} rules"),
        }
    }
    fn enforces(&self) -> bool {
        *self != Variant::None
    }
}

#[derive(Clone, Debug, Default, Serialize)]
struct Sample {
    rep: usize,
    gbps: f64,
    rr_per_s: f64,
    rr_stalls: u32,
    crr_per_s: f64,
    crr_errors: u64,
    denied_port_reachable: bool,
    setup_ms: f64,
}

#[derive(Debug, Default, Serialize)]
struct Results {
    pid: u32,
    machine: report::Machine,
    args: String,
    b1b2: Vec<(Variant, Vec<Sample>)>,
    b4: Vec<report::B4Row>,
    b5: Vec<report::B5Row>,
    rss: Vec<agent::RssRow>,
    ack: Vec<agent::AckRow>,
    failures: Vec<String>,
}

struct Ctx {
    lab: porin_lab::LabGuard,
    node_ns: String,
    client_ns: PathBuf,
    server: porin_lab::PodInfo,
    client: porin_lab::PodInfo,
}

fn main() {
    let mut args = Args::parse();
    if args.smoke {
        args.reps = 1;
        args.stream_secs = 1;
        args.loop_secs = 0.3;
        args.crr_threads = 2;
        args.rules = vec![10, 200];
        args.only = vec!["b1".into(), "b4".into(), "b5".into()];
        args.b4_endpoints = 20;
        args.b4_rules = 200;
        args.b4_trials = 2;
        args.agent_rules = vec![10];
        args.agent_trials = 1;
    }
    match run(&args) {
        Ok(failures) if failures.is_empty() => {}
        Ok(failures) => {
            for f in failures {
                eprintln!("porin-bench: FAILED: {f}");
            }
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("porin-bench: error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(args: &Args) -> Result<Vec<String>> {
    ensure!(nix::unistd::geteuid().is_root(), "porin-bench needs root (netns, BPF, iptables in the lab's node netns)");
    let opts = LabOptions { servers: ServerMode::None, ..LabOptions::default() };
    let removed = porin_lab::cleanup_stale(&opts).context("cleanup_stale")?;
    if !removed.is_empty() {
        eprintln!("removed stale lab namespaces: {removed:?}");
    }
    let name = format!("pbench-{}", std::process::id());
    let spec = LabSpec::new(&name, 1)
        .pod(PodSpec::new(synth::NS, "client", 0))
        .pod(PodSpec::new(synth::NS, "server", 0));
    let lab = porin_lab::up(&spec, &opts).context("lab up")?.guard();
    let client = lab.pod("bench/client")?.clone();
    let server = lab.pod("bench/server")?.clone();
    let ctx = Ctx {
        node_ns: server.node_netns.clone(),
        client_ns: client.netns_path.clone(),
        lab,
        server,
        client,
    };
    let _servers = Servers::start(&ctx.server.netns_path, 7001, &[7002, synth::DENIED_PORT, 7004])?;
    let mut res = Results {
        pid: std::process::id(),
        machine: report::Machine::probe(),
        args: format!("{args:?}"),
        ..Default::default()
    };
    eprintln!("load before: {}", res.machine.load_before);

    if args.only.iter().any(|o| o == "b1" || o == "b2") {
        res.b1b2 = bench_b1b2(args, &ctx, &mut res.failures)?;
    }
    if args.only.iter().any(|o| o == "b5") {
        res.b5 = bench_b5(args, &ctx)?;
    }
    if args.only.iter().any(|o| o == "b4") {
        res.b4 = bench_b4(args, &ctx, &mut res.failures)?;
    }
    if args.only.iter().any(|o| o == "b4agent") {
        let bin = match &args.porin_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("porin"),
        };
        let has_lab = std::process::Command::new(&bin).args(["lab", "--help"]).output().map(|o| o.status.success()).unwrap_or(false);
        if has_lab {
            for &n in &args.agent_rules {
                res.b4.extend(agent::bench(&bin, n, args.agent_trials, args.agent_pods, args.agent_rss_changes, &mut res.rss, &mut res.ack, &mut res.failures)?);
            }
        } else {
            eprintln!("B4 agent path skipped: {} has no `lab` subcommand (cargo build --release -p porin)", bin.display());
        }
    }
    res.machine.load_after = report::loadavg();
    let mut md = report::render(&res.b1b2, &res.b4, &res.b5, &res.machine);
    if !res.rss.is_empty() {
        md.push_str("\nAgent RSS over policy changes (VmRSS):\n\n| rules | extra pods | changes | RSS MiB |\n|---|---|---|---|\n");
        for r in &res.rss {
            md.push_str(&format!("| {} | {} | {} | {:.1} |\n", r.rules, r.extra_pods, r.changes, r.rss_kib as f64 / 1024.0));
        }
    }
    if !res.ack.is_empty() {
        md.push_str(&report::render_ack(&res.ack));
    }
    println!("{md}");
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_vec_pretty(&res)?).with_context(|| format!("writing {}", p.display()))?;
    }
    drop(ctx);
    Ok(res.failures)
}

fn synth_for(ctx: &Ctx, rules: usize, fillers: usize, client_allowed: bool) -> Synth {
    Synth { rules, client_ip: ctx.client.ipv4, server_ip: ctx.server.ipv4, fillers, client_allowed }
}

fn flush_firewall(ctx: &Ctx) -> Result<()> {
    ns_exec(&ctx.node_ns, &["nft", "flush", "ruleset"], None).map(|_| ())
}

fn bench_b1b2(args: &Args, ctx: &Ctx, failures: &mut Vec<String>) -> Result<Vec<(Variant, Vec<Sample>)>> {
    let mut variants = vec![Variant::None];
    for &n in &args.rules {
        variants.push(Variant::Porin(n));
        variants.push(Variant::Iptables(n));
        variants.push(Variant::NftSet(n));
    }
    if let Some(&max) = args.rules.iter().max() {
        variants.push(Variant::IptablesStateless(max));
    }
    // Clusters are built once per rule count (B5 measures building and compiling).
    let clusters: std::collections::BTreeMap<usize, porin_policy::Cluster> = args
        .rules
        .iter()
        .map(|&n| synth_for(ctx, n, 0, true).cluster().map(|c| (n, c)))
        .collect::<Result<_>>()?;
    let slots = vec![
        EndpointSlot { key: ctx.client.key.clone(), ifindex: ctx.client.host_ifindex, endpoint_id: 1 },
        EndpointSlot { key: ctx.server.key.clone(), ifindex: ctx.server.host_ifindex, endpoint_id: 2 },
    ];
    let mut porin = Porin::open(slots, None)?;
    // Compiled once per rule count: B1/B2 time the packets, B5 the compiler.
    let keys: std::collections::BTreeSet<String> = porin.slots.iter().map(|s| s.key.clone()).collect();
    let compiled: std::collections::BTreeMap<usize, porin_calc::Compiled> = clusters
        .iter()
        .map(|(n, c)| (*n, porin_calc::compile(c, &mut porin.state, &|e| keys.contains(&e.id()))))
        .collect();
    let node_path = netns_path(&ctx.node_ns);
    let mut out: Vec<(Variant, Vec<Sample>)> = variants.iter().map(|v| (v.clone(), vec![])).collect();
    let srv = |port: u16| SocketAddr::from((ctx.server.ipv4, port));
    for rep in 0..args.reps {
        for (vi, v) in variants.iter().enumerate() {
            eprintln!("rep {}/{} {}", rep + 1, args.reps, v.label());
            let t0 = Instant::now();
            match v {
                Variant::None => {}
                Variant::Porin(n) => {
                    porin.write(&compiled[n])?;
                    porin.attach(&node_path, &ctx.server.host_ifname)?;
                    porin.attach(&node_path, &ctx.client.host_ifname)?;
                }
                Variant::Iptables(n) | Variant::IptablesStateless(n) => {
                    let stateful = matches!(v, Variant::Iptables(_));
                    let rules = synth_for(ctx, *n, 0, true).iptables_restore(&ctx.server.host_ifname, stateful);
                    ns_exec(&ctx.node_ns, &["iptables-restore"], Some(&rules))?;
                }
                Variant::NftSet(n) => {
                    let rs = synth_for(ctx, *n, 0, true).nft_ruleset(&ctx.server.host_ifname);
                    ns_exec(&ctx.node_ns, &["nft", "-f", "-"], Some(&rs))?;
                }
            }
            let setup_ms = t0.elapsed().as_secs_f64() * 1e3;
            let measured = (|| -> Result<Sample> {
                let denied = ctx.lab.probe_one(&ctx.client.key, &ctx.server.key, synth::DENIED_PORT, Proto::Tcp, Duration::from_millis(300))?;
                let allowed = ctx.lab.probe_one(&ctx.client.key, &ctx.server.key, 7002, Proto::Tcp, Duration::from_millis(1000))?;
                ensure!(allowed, "{}: the allowed port 7002 is not reachable", v.label());
                let gbps = traffic::iperf3(&ctx.client.netns, &ctx.server.netns, ctx.server.ipv4, args.stream_secs)?;
                let loop_d = Duration::from_secs_f64(args.loop_secs);
                // A stalled RR connection (no answer within 2 s) is counted and the measurement retried once.
                let mut rr_stalls = 0;
                let rr = match traffic::tcp_rr(&ctx.client_ns, srv(7001), loop_d) {
                    Ok(v) => v,
                    Err(e) => {
                        eprintln!("  RR stalled ({e:#}), retrying once");
                        rr_stalls += 1;
                        traffic::tcp_rr(&ctx.client_ns, srv(7001), loop_d)?
                    }
                };
                let (crr, errs) = traffic::tcp_crr(&ctx.client_ns, srv(7002), args.crr_threads, loop_d)?;
                Ok(Sample { rep, gbps, rr_per_s: rr, rr_stalls, crr_per_s: crr, crr_errors: errs, denied_port_reachable: denied, setup_ms })
            })();
            // Tear down before judging, so a failure leaves nothing behind.
            match v {
                Variant::None => {}
                Variant::Porin(_) => porin.detach_all()?,
                _ => flush_firewall(ctx)?,
            }
            let s = measured?;
            if v.enforces() && s.denied_port_reachable {
                failures.push(format!("{}: the denied port {} was reachable", v.label(), synth::DENIED_PORT));
            }
            if !v.enforces() && !s.denied_port_reachable {
                failures.push(format!("{}: port {} unreachable without policy (lab broken?)", v.label(), synth::DENIED_PORT));
            }
            for (what, x) in [("iperf3", s.gbps), ("RR", s.rr_per_s), ("CRR", s.crr_per_s)] {
                if !(x.is_finite() && x > 0.0) {
                    failures.push(format!("{}: {what} produced no number", v.label()));
                }
            }
            eprintln!("  {:.2} Gbit/s, RR {:.0}/s, CRR {:.0}/s ({} errors), setup {:.0} ms", s.gbps, s.rr_per_s, s.crr_per_s, s.crr_errors, s.setup_ms);
            out[vi].1.push(s);
        }
    }
    Ok(out)
}

fn b5_synth(ctx: &Ctx, rules: usize) -> Synth {
    synth_for(ctx, rules, 0, true)
}

fn bench_b5(args: &Args, ctx: &Ctx) -> Result<Vec<report::B5Row>> {
    let mut rows = Vec::new();
    let reps = if args.smoke { 1 } else { 5 };
    let changes = if args.smoke { 3 } else { 11 };
    for &n in &args.rules {
        let slots = || {
            vec![
                EndpointSlot { key: ctx.client.key.clone(), ifindex: ctx.client.host_ifindex, endpoint_id: 1 },
                EndpointSlot { key: ctx.server.key.clone(), ifindex: ctx.server.host_ifindex, endpoint_id: 2 },
            ]
        };
        let s = b5_synth(ctx, n);
        let t = Instant::now();
        let base = s.cluster()?;
        let build = t.elapsed();
        // One-rule changes: the first filler rule's port moves to 29000 + k (a new value every time, so the
        // double buffer's inactive generation really differs); with a single rule, the client's allow goes.
        let changed: Vec<porin_policy::Cluster> = (0..changes)
            .map(|k| -> Result<porin_policy::Cluster> {
                if n < 2 {
                    return synth_for(ctx, n, 0, k % 2 == 1).cluster();
                }
                let mut docs = s.documents();
                docs.as_array_mut().expect("array")[3]["spec"]["ingress"][0]["destination"]["ports"][0] =
                    serde_json::json!(29000 + k);
                let text = serde_json::to_string(&docs)?;
                let d = porin_model::parse_documents("changed", &text).map_err(|e| anyhow::anyhow!("{e:?}"))?;
                Ok(porin_policy::Cluster::build(d.iter().map(|d| &d.resource))?)
            })
            .collect::<Result<_>>()?;
        for rep in 0..reps {
            let mut p = Porin::open(slots(), None)?;
            let full = p.program(&base)?;
            rows.push(report::B5Row::new(n, "from scratch", rep, build, &full));
            if rep == 0 {
                for (k, c) in changed.iter().enumerate() {
                    let t = p.program(c)?;
                    if k == 0 {
                        // Warm-up: the first change after a from-scratch load fills the empty second generation.
                        continue;
                    }
                    rows.push(report::B5Row::new(n, "one rule changed", k, Duration::ZERO, &t));
                }
                let t = p.program(changed.last().unwrap_or(&base))?;
                rows.push(report::B5Row::new(n, "no change (re-push)", 0, Duration::ZERO, &t));
            }
        }
    }
    Ok(rows)
}

fn bench_b4(args: &Args, ctx: &Ctx, failures: &mut Vec<String>) -> Result<Vec<report::B4Row>> {
    let fillers = args.b4_endpoints.saturating_sub(2);
    let allow = synth_for(ctx, args.b4_rules, fillers, true).cluster()?;
    let deny = synth_for(ctx, args.b4_rules, fillers, false).cluster()?;
    let mut slots = vec![
        EndpointSlot { key: ctx.client.key.clone(), ifindex: ctx.client.host_ifindex, endpoint_id: 1 },
        EndpointSlot { key: ctx.server.key.clone(), ifindex: ctx.server.host_ifindex, endpoint_id: 2 },
    ];
    for i in 0..fillers {
        // Interfaces that do not exist: their entries are programmed like any other, no packet uses them.
        slots.push(EndpointSlot { key: format!("{}/filler-{i}", synth::NS), ifindex: 1_000_000 + i as u32, endpoint_id: 3 + i as u32 });
    }
    let mut porin = Porin::open(slots, None)?;
    let initial = porin.program(&allow)?;
    eprintln!("B4: {} endpoints, {} policy entries programmed in {:?} (compile {:?})", args.b4_endpoints, initial.policy_entries, initial.total(), initial.compile);
    let node_path = netns_path(&ctx.node_ns);
    porin.attach(&node_path, &ctx.server.host_ifname)?;
    porin.attach(&node_path, &ctx.client.host_ifname)?;
    let dst = SocketAddr::from((ctx.server.ipv4, 7004));
    ensure!(traffic::try_connect(&ctx.client_ns, dst, Duration::from_millis(500))?, "B4: allowed probe port not reachable before the first change");

    let mut rows = Vec::new();
    // "full": calc compiles all endpoints, then the maps are written (what an agent does today);
    // "precompiled": both states compiled beforehand, only the map writes are timed (the dataplane's share).
    let mut precompiled = std::collections::BTreeMap::new();
    for (allowed, c) in [(true, &allow), (false, &deny)] {
        let keys: std::collections::BTreeSet<String> = porin.slots.iter().map(|s| s.key.clone()).collect();
        precompiled.insert(allowed, porin_calc::compile(c, &mut porin.state, &|e| keys.contains(&e.id())));
    }
    for mode in ["full", "precompiled"] {
        let trials = if mode == "full" { args.b4_full_trials.min(args.b4_trials) } else { args.b4_trials };
        let epoch = Instant::now();
        let prober = Prober::start(&ctx.client_ns, dst, Duration::from_millis(1), epoch);
        std::thread::sleep(Duration::from_millis(100));
        let mut changes: Vec<(bool, Duration, dp::ProgramTiming)> = Vec::new();
        for k in 0..trials * 2 {
            let enforce = k % 2 == 1; // start allowed: revoke first
            let c = if enforce { &allow } else { &deny };
            let t0 = Instant::now();
            let t = if mode == "full" { porin.program(c)? } else { porin.write(&precompiled[&enforce])? };
            changes.push((enforce, t0 - epoch, t));
            // Let the prober see the new state for a while.
            std::thread::sleep(Duration::from_millis(60));
        }
        let probes = prober.finish()?;
        let ats: Vec<Duration> = changes.iter().map(|c| c.1).collect();
        for (i, (enforce, at, t)) in changes.into_iter().enumerate() {
            let until = ats.get(i + 1).copied().unwrap_or(Duration::MAX);
            let lat = traffic::change_latency(&probes, at, until, enforce);
            match lat {
                Some(l) => rows.push(report::B4Row {
                    mode: mode.into(),
                    enforce,
                    latency_ms: l.as_secs_f64() * 1e3,
                    compile_ms: t.compile.as_secs_f64() * 1e3,
                    maps_ms: t.maps().as_secs_f64() * 1e3,
                    barriers: t.barriers,
                }),
                None => failures.push(format!(
                    "B4 {mode}: {} at {at:?} never observed by the prober",
                    if enforce { "enforce" } else { "revoke" }
                )),
            }
        }
    }
    // Revoked state must really deny.
    porin.program(&deny)?;
    if traffic::try_connect(&ctx.client_ns, dst, Duration::from_millis(300))? {
        failures.push("B4: revoked probe port still reachable".into());
    }
    porin.detach_all()?;
    if args.smoke {
        bail_if_empty(&rows, failures);
    }
    Ok(rows)
}

fn bail_if_empty(rows: &[report::B4Row], failures: &mut Vec<String>) {
    if rows.is_empty() {
        failures.push("B4 produced no measurement".into());
    }
}
