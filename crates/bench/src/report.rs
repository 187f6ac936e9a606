//! Medians, ratios and the markdown summary.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::dp::ProgramTiming;
use crate::{Sample, Variant};

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub iptables: String,
    pub nft: String,
    pub iperf3: String,
    pub load_before: String,
    pub load_after: String,
}

fn cmd_line(argv: &[&str]) -> String {
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|_| "not installed".into())
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu_model: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .unwrap_or("")
                .trim()
                .to_string(),
            iptables: cmd_line(&["iptables", "--version"]),
            nft: cmd_line(&["nft", "--version"]),
            iperf3: cmd_line(&["iperf3", "--version"]),
            load_before: loadavg(),
            load_after: String::new(),
        }
    }
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

#[derive(Clone, Debug, Serialize)]
pub struct B4Row {
    pub mode: String,
    pub enforce: bool,
    pub latency_ms: f64,
    pub compile_ms: f64,
    pub maps_ms: f64,
    pub barriers: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct B5Row {
    pub rules: usize,
    pub what: String,
    pub rep: usize,
    pub build_ms: f64,
    pub compile_ms: f64,
    pub ipcache_ms: f64,
    pub endpoints_ms: f64,
    pub policy_entries: usize,
    pub map_ops: u32,
    pub barriers: u32,
}

impl B5Row {
    pub fn new(rules: usize, what: &str, rep: usize, build: Duration, t: &ProgramTiming) -> B5Row {
        B5Row {
            rules,
            what: what.into(),
            rep,
            build_ms: build.as_secs_f64() * 1e3,
            compile_ms: t.compile.as_secs_f64() * 1e3,
            ipcache_ms: t.ipcache.as_secs_f64() * 1e3,
            endpoints_ms: t.endpoints.as_secs_f64() * 1e3,
            policy_entries: t.policy_entries,
            map_ops: t.map_ops,
            barriers: t.barriers,
        }
    }
}

/// Median over repetitions of (variant / no-policy in the same repetition).
fn paired_ratio(s: &[Sample], base: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    let mut r: Vec<f64> = s
        .iter()
        .filter_map(|x| base.iter().find(|b| b.rep == x.rep).map(|b| f(x) / f(b)))
        .filter(|v| v.is_finite())
        .collect();
    median(&mut r)
}

fn med(s: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    let mut v: Vec<f64> = s.iter().map(f).collect();
    median(&mut v)
}

pub fn render(b1: &[(Variant, Vec<Sample>)], b4: &[B4Row], b5: &[B5Row], m: &Machine) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "machine: {} x {}, kernel {}; {}; {}; {}", m.cpus, m.cpu_model, m.kernel, m.iptables, m.nft, m.iperf3);
    let _ = writeln!(o, "load average before: {}  after: {}\n", m.load_before, m.load_after);
    if let Some((_, base)) = b1.iter().find(|(v, _)| *v == Variant::None) {
        let _ = writeln!(o, "### B1/B2: throughput, request/response, new connections (median of {} reps; ratio = median of per-rep ratios to (a))\n", base.len());
        let _ = writeln!(o, "| variant | TCP stream Gbit/s | ratio | TCP RR trans/s | ratio | CRR conn/s | ratio | CRR errors / RR stalls | setup ms | denied port blocked |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
        for (v, s) in b1 {
            let blocked = if v.enforces() { s.iter().all(|x| !x.denied_port_reachable).to_string() } else { "n/a (open)".into() };
            let _ = writeln!(
                o,
                "| {} | {:.2} | {:.3} | {:.0} | {:.3} | {:.0} | {:.3} | {} / {} | {:.0} | {} |",
                v.label(),
                med(s, |x| x.gbps),
                paired_ratio(s, base, |x| x.gbps),
                med(s, |x| x.rr_per_s),
                paired_ratio(s, base, |x| x.rr_per_s),
                med(s, |x| x.crr_per_s),
                paired_ratio(s, base, |x| x.crr_per_s),
                s.iter().map(|x| x.crr_errors).sum::<u64>(),
                s.iter().map(|x| x.rr_stalls).sum::<u32>(),
                med(s, |x| x.setup_ms),
                blocked
            );
        }
        // Porin vs iptables at each rule count.
        let _ = writeln!(o, "\nPorin / iptables chain (same rule count, median of per-rep ratios):\n");
        let _ = writeln!(o, "| rules | stream | RR | CRR |");
        let _ = writeln!(o, "|---|---|---|---|");
        for (v, s) in b1 {
            let Variant::Porin(n) = v else { continue };
            for (label, target) in [("iptables", Variant::Iptables(*n)), ("iptables, no ct shortcut", Variant::IptablesStateless(*n))] {
                if let Some((_, ipt)) = b1.iter().find(|(w, _)| *w == target) {
                    let _ = writeln!(
                        o,
                        "| {n} vs {label} | {:.2}x | {:.2}x | {:.2}x |",
                        paired_ratio(s, ipt, |x| x.gbps),
                        paired_ratio(s, ipt, |x| x.rr_per_s),
                        paired_ratio(s, ipt, |x| x.crr_per_s)
                    );
                }
            }
        }
        o.push('\n');
    }
    if !b5.is_empty() {
        let _ = writeln!(o, "### B5: programming cost (median; ms)\n");
        let _ = writeln!(o, "| rules | what | n | Cluster::build | calc compile | ipcache writes | endpoint/policy writes | maps total | policy entries | map ops | RCU waits |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
        let mut keys: Vec<(usize, String)> = Vec::new();
        for r in b5 {
            if !keys.iter().any(|k| k.0 == r.rules && k.1 == r.what) {
                keys.push((r.rules, r.what.clone()));
            }
        }
        for (n, what) in keys {
            let rows: Vec<&B5Row> = b5.iter().filter(|r| r.rules == n && r.what == what).collect();
            let m = |f: &dyn Fn(&B5Row) -> f64| {
                let mut v: Vec<f64> = rows.iter().map(|r| f(r)).collect();
                median(&mut v)
            };
            let _ = writeln!(
                o,
                "| {n} | {what} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} |",
                rows.len(),
                if what == "from scratch" { format!("{:.1}", m(&|r| r.build_ms)) } else { "–".into() },
                m(&|r| r.compile_ms),
                m(&|r| r.ipcache_ms),
                m(&|r| r.endpoints_ms),
                m(&|r| r.ipcache_ms + r.endpoints_ms),
                m(&|r| r.policy_entries as f64),
                m(&|r| f64::from(r.map_ops)),
                m(&|r| f64::from(r.barriers)),
            );
        }
        o.push('\n');
    }
    if b4.iter().any(|r| !r.mode.starts_with("agent")) {
        let _ = writeln!(o, "### B4: time to enforce / revoke, 1 ms connect prober (ms from the start of compile)\n");
        let _ = writeln!(o, "| mode | change | n | p50 | p99 | max | compile p50 | map writes p50 | p50 − compile | RCU waits/change |");
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    }
    if !b4.is_empty() {
        let mut modes: Vec<&str> = Vec::new();
        for r in b4 {
            if !modes.contains(&r.mode.as_str()) {
                modes.push(&r.mode);
            }
        }
        let mut agent_header = false;
        for mode in modes {
            let agent = mode.starts_with("agent");
            if agent && !agent_header {
                agent_header = true;
                let _ = writeln!(o, "\nThrough the product (`porin apply`/`porin delete` → agent → kernel), ms from spawning the CLI:\n");
                let _ = writeln!(o, "| mode | change | n | p50 | p99 | max | CLI returned p50 | `porin lab wait` returned p50 | p50 − CLI return | – |");
                let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
            }
            for enforce in [true, false] {
                let rows: Vec<&B4Row> = b4.iter().filter(|r| r.mode == mode && r.enforce == enforce).collect();
                if rows.is_empty() {
                    continue;
                }
                let mut lat: Vec<f64> = rows.iter().map(|r| r.latency_ms).collect();
                let mut comp: Vec<f64> = rows.iter().map(|r| r.compile_ms).collect();
                let mut maps: Vec<f64> = rows.iter().map(|r| r.maps_ms).collect();
                let mut after: Vec<f64> = rows.iter().map(|r| r.latency_ms - r.compile_ms).collect();
                let mut bar: Vec<f64> = rows.iter().map(|r| f64::from(r.barriers)).collect();
                let _ = writeln!(
                    o,
                    "| {mode} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
                    if enforce { "enforce (first SYN answered)" } else { "revoke (first SYN dropped)" },
                    rows.len(),
                    median(&mut lat.clone()),
                    percentile(&mut lat, 99.0),
                    lat.iter().cloned().fold(f64::NAN, f64::max),
                    median(&mut comp),
                    median(&mut maps),
                    median(&mut after),
                    median(&mut bar),
                );
            }
        }
    }
    o
}

/// The agent's own timings from the API's acknowledgement to each stage (its `revision latency` lines), per
/// (rules, extra pods, kind of change): p50 / p99 / max in ms.
pub fn render_ack(rows: &[crate::agent::AckRow]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "\nAfter the API's ack (the agent's per-revision timings), ms p50 / p99 / max:\n");
    let _ = writeln!(o, "| rules | extra pods | change | n | ack → seen | ack → model built | ack → compiled | ack → kernel maps written |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    let mut groups: Vec<(usize, usize, String)> = Vec::new();
    for r in rows {
        let g = (r.rules, r.extra_pods, r.what.clone());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    for (rules, pods, what) in groups {
        let sel: Vec<&crate::agent::AckRow> = rows.iter().filter(|r| r.rules == rules && r.extra_pods == pods && r.what == what).collect();
        let stat = |f: &dyn Fn(&crate::agent::AckRow) -> f64| {
            let mut v: Vec<f64> = sel.iter().map(|r| f(r)).filter(|x| x.is_finite()).collect();
            if v.is_empty() {
                return "–".to_string();
            }
            let max = v.iter().copied().fold(f64::MIN, f64::max);
            format!("{:.1} / {:.1} / {:.1}", median(&mut v.clone()), percentile(&mut v, 99.0), max)
        };
        let _ = writeln!(
            o,
            "| {rules} | {pods} | {what} | {} | {} | {} | {} | {} |",
            sel.len(),
            stat(&|r| r.seen_ms),
            stat(&|r| r.built_ms),
            stat(&|r| r.compiled_ms),
            stat(&|r| r.programmed_ms)
        );
    }
    o
}
