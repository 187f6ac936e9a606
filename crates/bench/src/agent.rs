//! B4 through the product: `porin apply` / `porin delete` → API → store → agent (calc + dataplane) → kernel,
//! observed by the same 1 ms connect prober. The lab is the CLI's (`porin lab up`: one agent per node netns);
//! it is taken down on drop. Only the two probed pods exist (the agent programs pods with real interfaces).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::report::B4Row;
use crate::synth::{self, Synth};
use crate::traffic::Prober;

const PROBE_PORT: u16 = 7004;

struct CliLab {
    bin: PathBuf,
    name: String,
    state_dir: tempfile::TempDir,
    server: String,
}

impl CliLab {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("PORIN_LAB_STATE_DIR", self.state_dir.path())
            .env("PORIN_SERVER", &self.server)
            .env_remove("PORIN_TOKEN");
        c
    }
    fn ok(&self, args: &[&str]) -> Result<String> {
        let o = self.cmd(args).output().with_context(|| format!("porin {}", args.join(" ")))?;
        if !o.status.success() {
            bail!("porin {} failed: {}{}", args.join(" "), String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for CliLab {
    fn drop(&mut self) {
        let _ = self.cmd(&["lab", "--name", &self.name, "down"]).output();
    }
}

/// The base manifests (pods as written; `porin lab up` binds them with WorkloadEndpoints; the filler rules) and the
/// client's allow as its own policy, last in evaluation order.
fn manifests(rules: usize) -> (Value, Value) {
    let s = Synth {
        rules: rules + 1, // n-1 fillers + the client's slot, which we leave out here
        client_ip: Ipv4Addr::new(10, 244, 0, 10),
        server_ip: Ipv4Addr::new(10, 244, 0, 11),
        fillers: 0,
        client_allowed: false,
    };
    let mut docs = s.documents();
    for d in docs.as_array_mut().expect("array") {
        if d["kind"] == "Pod" {
            d["spec"]["containers"][0]["ports"] = json!([{"containerPort": PROBE_PORT, "protocol": "TCP"}]);
        }
    }
    let allow = json!([{
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "zz-client-allow", "namespace": synth::NS},
        "spec": {"selector": "app == 'server'", "order": 1_000_000, "types": ["Ingress"],
                 "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'client'"},
                              "destination": {"ports": [PROBE_PORT]}}]}
    }]);
    (docs, allow)
}

/// The agent's resident set, in KiB (`VmRSS` of `/proc/<pid>/status`).
fn rss_kib(pid: i32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("agent pid {pid}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        .context("no VmRSS")
}

/// The pid of the lab's (only) agent, from the lab's state.
fn agent_pid(state_dir: &Path, name: &str) -> Result<i32> {
    let p = state_dir.join(format!("{name}.json"));
    let v: Value = serde_json::from_slice(&std::fs::read(&p).with_context(|| p.display().to_string())?)?;
    v["control"]["agents"][0]["proc"]["pid"].as_i64().map(|p| p as i32).context("no agent pid in the lab state")
}

/// The log file of the lab's (only) agent, from the lab's state.
fn agent_log(state_dir: &Path, name: &str) -> Result<PathBuf> {
    let p = state_dir.join(format!("{name}.json"));
    let v: Value = serde_json::from_slice(&std::fs::read(&p).with_context(|| p.display().to_string())?)?;
    v["control"]["agents"][0]["log"].as_str().map(PathBuf::from).context("no agent log in the lab state")
}

/// One acknowledged write's way to the kernel, as the agent measured it (its `revision latency` log line):
/// milliseconds from the API's ack to the engine seeing the change, the model built, the compile done and the
/// kernel maps written.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AckRow {
    pub rules: usize,
    pub extra_pods: usize,
    /// `enforce`, `revoke` (the B4 trials) or `churn` (the RSS changes).
    pub what: String,
    pub seen_ms: f64,
    pub built_ms: f64,
    pub compiled_ms: f64,
    pub programmed_ms: f64,
}

/// Reads the `revision latency` lines the agent appended since the last call.
struct LatencyLog {
    path: PathBuf,
    pos: usize,
}

impl LatencyLog {
    fn new(path: PathBuf) -> LatencyLog {
        let pos = std::fs::metadata(&path).map(|m| m.len() as usize).unwrap_or(0);
        LatencyLog { path, pos }
    }
    fn take(&mut self, rules: usize, extra_pods: usize, what: &str) -> Vec<AckRow> {
        let Ok(all) = std::fs::read(&self.path) else { return vec![] };
        let new = String::from_utf8_lossy(all.get(self.pos..).unwrap_or_default()).into_owned();
        self.pos = all.len();
        let field = |line: &str, k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        new.lines()
            .filter(|l| l.contains("revision latency"))
            .map(|l| AckRow {
                rules,
                extra_pods,
                what: what.to_string(),
                seen_ms: field(l, "ack_to_seen_ms"),
                built_ms: field(l, "ack_to_built_ms"),
                compiled_ms: field(l, "ack_to_compiled_ms"),
                programmed_ms: field(l, "ack_to_programmed_ms"),
            })
            .collect()
    }
}

/// `n` pods without interfaces (policy peers only; no WorkloadEndpoint binds them), in the fillers' label groups.
fn extra_pods(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": format!("filler-{i}"), "namespace": synth::NS,
                                    "labels": {"app": format!("filler-{}", i % 10), "role": "filler"}},
                       "spec": {"containers": [{"name": "c", "image": "bench"}]},
                       "status": {"podIP": synth::filler_ip(i).to_string()}})
            })
            .collect(),
    )
}

/// A policy on the server whose one rule's port is `port`: each change is new rule content (new rule id).
fn churn_policy(port: u16) -> Value {
    json!([{
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "zz-churn", "namespace": synth::NS},
        "spec": {"selector": "app == 'server'", "order": 999_999, "types": ["Ingress"],
                 "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'client'"},
                              "destination": {"ports": [port]}}]}
    }])
}

/// Agent RSS after `changes` policy changes, sampled every `every` changes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RssRow {
    pub rules: usize,
    pub extra_pods: usize,
    pub changes: usize,
    pub rss_kib: u64,
}

pub fn bench(
    bin: &Path,
    rules: usize,
    trials: usize,
    pods: usize,
    rss_changes: usize,
    rss_out: &mut Vec<RssRow>,
    ack_out: &mut Vec<AckRow>,
    failures: &mut Vec<String>,
) -> Result<Vec<B4Row>> {
    let dir = tempfile::Builder::new().prefix("porin-bench-agent").tempdir()?;
    let (base, allow) = manifests(rules);
    let base_f = dir.path().join("base.json");
    let allow_f = dir.path().join("allow.json");
    std::fs::write(&base_f, serde_json::to_vec(&base)?)?;
    std::fs::write(&allow_f, serde_json::to_vec(&allow)?)?;
    let name = format!("pba-{}", std::process::id());
    let mut lab = CliLab {
        bin: bin.to_path_buf(),
        name: name.clone(),
        state_dir: tempfile::Builder::new().prefix("porin-bench-lab").tempdir()?,
        server: String::new(),
    };
    let t = Instant::now();
    let out = lab.ok(&[
        "lab", "--name", &name, "up", "--timeout-secs", "600",
        "-f", base_f.to_str().expect("utf8"), "-f", allow_f.to_str().expect("utf8"),
    ])?;
    lab.server = out.trim().strip_prefix("export PORIN_SERVER=").unwrap_or("").to_string();
    eprintln!("B4 agent: lab with {rules} rules up in {:.1}s", t.elapsed().as_secs_f64());

    let l = porin_lab::Lab::open(&name, &porin_lab::LabOptions::with_state_dir(lab.state_dir.path()))?;
    let client = l.pod("bench/client")?.clone();
    let server = l.pod("bench/server")?.clone();
    let dst = SocketAddr::from((server.ipv4, PROBE_PORT));
    if !crate::traffic::try_connect(&client.netns_path, dst, Duration::from_millis(500))? {
        bail!("B4 agent: the allowed probe port is not reachable after lab up");
    }
    let mut latency = LatencyLog::new(agent_log(lab.state_dir.path(), &name)?);
    let epoch = Instant::now();
    let prober = Prober::start(&client.netns_path, dst, Duration::from_millis(1), epoch);
    std::thread::sleep(Duration::from_millis(100));
    let allow_s = allow_f.to_str().expect("utf8").to_string();
    let mut changes = Vec::new();
    for k in 0..trials * 2 {
        let enforce = k % 2 == 1;
        let t0 = Instant::now();
        let verb = if enforce { "apply" } else { "delete" };
        lab.ok(&[verb, "-f", &allow_s])?;
        let acked = t0.elapsed();
        // Wait until the agents report the revision enforced (also bounds the prober window).
        lab.ok(&["lab", "--name", &name, "wait"])?;
        let waited = t0.elapsed();
        ack_out.extend(latency.take(rules, 0, if enforce { "enforce" } else { "revoke" }));
        changes.push((enforce, t0 - epoch, acked, waited));
        std::thread::sleep(Duration::from_millis(100));
    }
    let probes = prober.finish()?;
    let ats: Vec<Duration> = changes.iter().map(|c| c.1).collect();
    let mut rows = Vec::new();
    for (i, (enforce, at, acked, waited)) in changes.into_iter().enumerate() {
        let until = ats.get(i + 1).copied().unwrap_or(Duration::MAX);
        let lat = crate::traffic::change_latency(&probes, at, until, enforce);
        match lat {
            Some(l) => rows.push(B4Row {
                mode: format!("agent ({rules} rules)"),
                enforce,
                latency_ms: l.as_secs_f64() * 1e3,
                // For this path: the CLI's ack (apply committed) and `porin lab wait` returning.
                compile_ms: acked.as_secs_f64() * 1e3,
                maps_ms: waited.as_secs_f64() * 1e3,
                barriers: 0,
            }),
            None => failures.push(format!("B4 agent: {} at {at:?} never observed", if enforce { "enforce" } else { "revoke" })),
        }
    }
    // The last change re-allowed; make sure a delete really denies.
    lab.ok(&["delete", "-f", &allow_s])?;
    lab.ok(&["lab", "--name", &name, "wait"])?;
    if crate::traffic::try_connect(&client.netns_path, dst, Duration::from_millis(300))? {
        failures.push("B4 agent: revoked probe port still reachable".into());
    }
    if rss_changes > 0 {
        let pid = agent_pid(lab.state_dir.path(), &name)?;
        if pods > 0 {
            let f = dir.path().join("pods.json");
            std::fs::write(&f, serde_json::to_vec(&extra_pods(pods))?)?;
            let t = Instant::now();
            lab.ok(&["apply", "-f", f.to_str().expect("utf8")])?;
            lab.ok(&["lab", "--name", &name, "wait"])?;
            latency.take(rules, pods, "pods");
            eprintln!("B4 agent: {pods} more pods applied and programmed in {:.1}s", t.elapsed().as_secs_f64());
        }
        lab.ok(&["lab", "--name", &name, "wait"])?;
        latency.take(rules, pods, "skip");
        let churn_f = dir.path().join("churn.json");
        let every = (rss_changes / 10).max(1);
        for k in 0..=rss_changes {
            if k % every == 0 {
                let rss = rss_kib(pid)?;
                eprintln!("B4 agent: {rules} rules, {pods} extra pods, after {k} changes: RSS {:.1} MiB", rss as f64 / 1024.0);
                rss_out.push(RssRow { rules, extra_pods: pods, changes: k, rss_kib: rss });
            }
            if k == rss_changes {
                break;
            }
            std::fs::write(&churn_f, serde_json::to_vec(&churn_policy(30000 + (k % 20000) as u16))?)?;
            lab.ok(&["apply", "-f", churn_f.to_str().expect("utf8")])?;
            lab.ok(&["lab", "--name", &name, "wait"])?;
            ack_out.extend(latency.take(rules, pods, "churn"));
        }
    }
    drop(lab);
    Ok(rows)
}
