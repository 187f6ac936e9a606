//! The compiler's benchmarks: `cargo bench -p porin-calc --bench compile` (release profile).
//!
//! * **cold**: a fresh [`State`] compiles the synthetic cluster (one server selected by N rules, 200 filler pods
//!   in 20 label groups), N = 100, 1k, 10k, 100k, for distinct peers (one /32 and one port per rule, every
//!   tenth rule a pod selector) and for shared peers (100 /32 peers shared by all rules). Median of several runs.
//! * **one change** at 10k distinct-peer rules: a warmed state recompiles after (a) one rule's port changed,
//!   (b) one rule's peer changed to a new /32 (a new identity, an old one released), (c) one filler pod's labels
//!   changed. Median and max of 50 changes each.
//! * **memory** over 1,000 changes at 10k rules (kind (b), alternating between fresh addresses): live heap bytes
//!   (a counting global allocator), RSS, rule ids and identities held, after change 10 and after change 1,000.
//!
//! `PORIN_CALC_BENCH_MAX=N` caps the cold scan (default 100000); `PORIN_CALC_BENCH_ONLY=cold|change|memory`
//! runs one part; `PORIN_CALC_BENCH_CHANGE=port|peer|label` one kind of change. Timings are medians on whatever machine runs them: compare ratios, not absolute values.

#[path = "../tests/support/synth.rs"]
mod synth;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use porin_calc::{State, compile};
use porin_model::PortMatch;
use porin_policy::ir::{Cluster, K8sPeer, RuleMatch};
use synth::Peers;

/// Live heap bytes, counted at every allocation and release.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 4
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const FILLERS: usize = 200;

fn cold(max: usize) {
    println!("## cold compile (fresh state), {FILLERS} filler pods");
    println!("| peers | rules | median ms | runs | identities | entries | walks |");
    println!("|---|---|---|---|---|---|---|");
    for peers in [Peers::Distinct, Peers::Shared] {
        for n in [100usize, 1_000, 10_000, 100_000] {
            if n > max {
                continue;
            }
            let c = synth::cluster(n, FILLERS, peers, 0);
            let runs = if n >= 100_000 { 3 } else { 5 };
            let mut times = Vec::new();
            let mut shape = (0, 0, 0);
            for _ in 0..runs {
                let mut state = State::new();
                let t = Instant::now();
                let out = compile(&c, &mut state, &|_| true);
                times.push(t.elapsed());
                let entries: usize = out.endpoints.iter().map(|e| e.ingress.len() + e.egress.len()).sum();
                shape = (out.identities.len(), entries, state.stats.walks);
            }
            println!("| {peers:?} | {n} | {:.1} | {runs} | {} | {} | {} |", ms(median(times)), shape.0, shape.1, shape.2);
        }
    }
}

/// Kinds of one change on the distinct-peer cluster.
#[derive(Debug, Clone, Copy)]
enum Change {
    Port,
    Peer,
    Label,
}

/// Apply change number `k` of `kind` to the cluster, in place.
fn change(c: &mut Cluster, kind: Change, k: usize) {
    match kind {
        Change::Port | Change::Peer => {
            // Rule 0 of policy 0 (Calico) and rule 0 of policy 1 (Kubernetes), alternately.
            let pi = k % 2;
            let r = &mut c.policies.iter_mut().find(|p| p.id.name == format!("rules-{pi:05}")).expect("policy").ingress[0];
            let port = 40000 + (k % 1000) as u16;
            let net: ipnet::IpNet = format!("10.98.{}.{}/32", (k / 250) % 256, k % 250 + 1).parse().expect("valid");
            match &mut r.matcher {
                RuleMatch::Calico { source, destination, .. } => match kind {
                    Change::Port => destination.ports = vec![PortMatch::Range(port, port)],
                    _ => source.nets = vec![net],
                },
                RuleMatch::K8s { peers, ports } => match kind {
                    Change::Port => ports[0].port = Some(PortMatch::Range(port, port)),
                    _ => peers[0] = K8sPeer::IpBlock { cidr: net, except: vec![] },
                },
            }
        }
        Change::Label => {
            let e = c.endpoints.iter_mut().find(|e| e.name == format!("filler-{}", k % FILLERS)).expect("filler");
            e.labels.insert("app".into(), format!("g{}", (k * 7) % 20));
        }
    }
}

fn one_change() {
    let n = 10_000;
    println!("## one change at {n} distinct-peer rules, {FILLERS} filler pods (warm state)");
    println!("| change | median ms | max ms | changes | per-identity functions computed (median) | (endpoint, direction) recompiled (median) |");
    println!("|---|---|---|---|---|---|");
    let pick = std::env::var("PORIN_CALC_BENCH_CHANGE").unwrap_or_default().to_lowercase();
    for kind in [Change::Port, Change::Peer, Change::Label] {
        if !pick.is_empty() && format!("{kind:?}").to_lowercase() != pick {
            continue;
        }
        let mut c = synth::cluster(n, FILLERS, Peers::Distinct, 0);
        let mut state = State::new();
        compile(&c, &mut state, &|_| true);
        let mut times = Vec::new();
        let mut funcs = Vec::new();
        let mut dirs = Vec::new();
        for k in 0..50 {
            change(&mut c, kind, k);
            let t = Instant::now();
            compile(&c, &mut state, &|_| true);
            times.push(t.elapsed());
            funcs.push(state.stats.functions);
            dirs.push(state.stats.computed.len());
        }
        let max = *times.iter().max().expect("runs");
        funcs.sort();
        dirs.sort();
        println!("| {kind:?} | {:.2} | {:.2} | {} | {} | {} |", ms(median(times)), ms(max), funcs.len(), funcs[25], dirs[25]);
    }
}

fn memory() {
    let n = 10_000;
    let changes = 1_000;
    println!("## memory over {changes} changes at {n} distinct-peer rules (each change: a rule's peer moves to a new /32)");
    let mut c = synth::cluster(n, FILLERS, Peers::Distinct, 0);
    let mut state = State::new();
    compile(&c, &mut state, &|_| true);
    let mut at = Vec::new();
    for k in 0..changes {
        change(&mut c, Change::Peer, k);
        let out = compile(&c, &mut state, &|_| true);
        drop(out);
        if k + 1 == 10 || k + 1 == changes {
            at.push((k + 1, LIVE.load(Ordering::Relaxed), rss_kib(), state.rule_count(), state.identity_count(), state.rules.len()));
        }
    }
    println!("| after change | live heap bytes | RSS KiB | rule ids held | identities held | rule table length |");
    println!("|---|---|---|---|---|---|");
    for (k, heap, rss, rules, idents, len) in &at {
        println!("| {k} | {heap} | {rss} | {rules} | {idents} | {len} |");
    }
    let (a, b) = (at[0].1 as f64, at[1].1 as f64);
    println!("live heap change from change 10 to change {changes}: {:+.2} %", (b - a) / a * 100.0);
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let max: usize = std::env::var("PORIN_CALC_BENCH_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let only = std::env::var("PORIN_CALC_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "cold" {
        cold(max);
    }
    if only.is_empty() || only == "change" {
        one_change();
    }
    if only.is_empty() || only == "memory" {
        memory();
    }
}
