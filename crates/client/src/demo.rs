//! `porin demo`'s walkthrough of an example (examples/shop) in a kernel lab that is up: probe with real packets
//! (BEFORE), apply the policies through the agent's API and wait for the kernel, probe again (AFTER), compare both
//! with the model's matrices, and explain one denied pair. The CLI brings the lab up and down; the story is
//! written to the caller's writers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::Method;
use porin_lab::cluster::{self, ControlPlane};
use porin_lab::{LabOptions, ObservedMatrices, Proto};
use porin_model::Protocol;
use porin_policy::{Cluster, Variant};

use crate::apply::{list_body, load_valid, outcomes};
use crate::client::{Client, ClientArgs, block_on};
use crate::labapi::SocketApi;
use crate::{Error, Result, cluster as model_of, printers};

/// The example's directory: `d`, or (run from elsewhere) `d` next to the binary's repository
/// (target/<profile>/porin).
pub fn find_dir(d: &Path) -> Result<PathBuf> {
    if d.is_dir() {
        return Ok(d.to_path_buf());
    }
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

/// The example's manifests, sorted: (all, the `00-*` workloads, the policies).
pub type ExampleFiles = (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>);

/// The YAML files of `dir` split into the workloads (`00-*.yaml`, at least one) and the policies.
pub fn example_files(dir: &Path) -> Result<ExampleFiles> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(format!("reading {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let (workloads, policies): (Vec<PathBuf>, Vec<PathBuf>) =
        files.iter().cloned().partition(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("00-")));
    if workloads.is_empty() {
        bail!("{}: no 00-*.yaml workloads file", dir.display());
    }
    Ok((files, workloads, policies))
}

fn expected(files: &[PathBuf], ports: &[(u16, Proto)]) -> Result<serde_json::Value> {
    let docs = porin_model::load_paths(files)
        .map_err(|e| Error::Invalid(e.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("\n")))?;
    let c = model_of(&docs)?;
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

fn compare(observed: &ObservedMatrices, files: &[PathBuf], ports: &[(u16, Proto)], out: &mut dyn Write) -> Result<bool> {
    let o = serde_json::to_value(observed).map_err(|e| invalid!("encoding the observed matrices: {e}"))?;
    let e = expected(files, ports)?;
    let same = o == e;
    if same {
        writeln!(out, "   kernel matches porin matrix ({} port(s), real packets)", ports.len()).map_err(Error::write)?;
    } else {
        writeln!(out, "   MISMATCH: the kernel differs from porin matrix").map_err(Error::write)?;
        writeln!(out, "   observed: {o}\n   expected: {e}").map_err(Error::write)?;
    }
    Ok(same)
}

/// Where the walkthrough runs: the lab, its control plane, the options `wait` opens it with, the example's files.
pub struct Walkthrough<'a> {
    pub name: &'a str,
    pub state_dir: &'a Path,
    pub meta: &'a ControlPlane,
    /// The options the lab's control plane is reached with (to wait for enforcement).
    pub wait_opts: &'a LabOptions,
    pub workloads: &'a [PathBuf],
    pub all: &'a [PathBuf],
    pub policies: &'a [PathBuf],
}

/// The walkthrough; true when the kernel matched the model before and after the policies.
pub fn walkthrough(w: &Walkthrough<'_>, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool> {
    let lab_opts = LabOptions::with_state_dir(w.state_dir);
    let l = porin_lab::Lab::open(w.name, &lab_opts)?;
    let mut ports: Vec<(u16, Proto)> = l.pods().iter().flat_map(|p| p.ports.iter().copied()).collect();
    ports.sort_by_key(|(p, pr)| (*pr, *p));
    ports.dedup();
    let timeout = Duration::from_millis(500);

    writeln!(out).map_err(Error::write)?;
    writeln!(out, "== BEFORE: workloads only, no policy. Observed on real packets (rows: from, columns: to)").map_err(Error::write)?;
    let before = l.probe(&ports, timeout)?;
    write!(out, "{}", crate::labfmt::observed_tables(&before)).map_err(Error::write)?;
    let ok1 = compare(&before, w.workloads, &ports, out)?;

    writeln!(out).map_err(Error::write)?;
    writeln!(out, "== applying zero-trust policy through the agent's API:").map_err(Error::write)?;
    for p in w.policies {
        writeln!(out, "   {}", p.display()).map_err(Error::write)?;
    }
    let c = Client::new(&ClientArgs::socket(w.meta.server.display().to_string()));
    let t0 = Instant::now();
    block_on(async {
        let Some(docs) = load_valid(&c, w.policies, err).await? else { bail!("the policies do not validate") };
        let r = c.call(Method::POST, "/porin/v1/apply", Some(list_body(&docs))).await?;
        write!(out, "{}", outcomes(&r, "")).map_err(Error::write)
    })??;
    cluster::wait_current(&SocketApi, w.name, w.wait_opts, Duration::from_secs(30))?;
    writeln!(out, "   enforced by the kernel {:.0} ms after the apply", t0.elapsed().as_secs_f64() * 1e3).map_err(Error::write)?;

    writeln!(out).map_err(Error::write)?;
    writeln!(out, "== AFTER: platform tier (monitoring, PCI isolation) above the shop's default-deny + per-service allows")
        .map_err(Error::write)?;
    let after = l.probe(&ports, timeout)?;
    write!(out, "{}", crate::labfmt::observed_tables(&after)).map_err(Error::write)?;
    let ok2 = compare(&after, w.all, &ports, out)?;

    // What closed.
    let mut closed = Vec::new();
    for (b, a) in before.matrices.iter().zip(&after.matrices) {
        for pair in &b.allowed {
            if !a.allowed.contains(pair) {
                closed.push(format!("{} -> {} {}/{}", pair.0, pair.1, b.protocol, b.port));
            }
        }
    }
    writeln!(out).map_err(Error::write)?;
    writeln!(out, "== {} connection(s) closed by the policy, e.g.:", closed.len()).map_err(Error::write)?;
    for c in closed.iter().take(5) {
        writeln!(out, "   {c}").map_err(Error::write)?;
    }

    writeln!(out).map_err(Error::write)?;
    writeln!(out, "== why is shop/frontend -> shop/payment:9000 denied?  porin trace -f <shop> --from shop/frontend --to shop/payment --port 9000")
        .map_err(Error::write)?;
    let docs = porin_model::load_paths(w.all).map_err(|e| invalid!("{}", e.len()))?;
    let cl = Cluster::build(docs.iter().map(|d| &d.resource))?;
    let (Some(fi), Some(pi)) = (cl.endpoint("shop/frontend"), cl.endpoint("shop/payment")) else {
        bail!("the example has no shop/frontend or shop/payment")
    };
    let (src, dst) = (porin_policy::Peer::Endpoint(&cl.endpoints[fi]), porin_policy::Peer::Endpoint(&cl.endpoints[pi]));
    let pkt = porin_policy::Packet { protocol: 6, port: Some(9000), icmp: None, v6: false };
    let v = cl.verdict(src, dst, &pkt);
    write!(out, "{}", printers::trace_table(&src, &dst, &pkt, &v)).map_err(Error::write)?;
    let kernel = l.probe_one("shop/frontend", "shop/payment", 9000, Proto::Tcp, timeout)?;
    writeln!(out, "   kernel: {}", if kernel { "ALLOWED" } else { "denied (a real SYN was dropped)" }).map_err(Error::write)?;
    Ok(ok1 && ok2)
}

/// What the demo prints when it keeps the lab up: commands to try, and the web console's address and token.
pub fn epilogue(dir: &Path, meta: &ControlPlane, console_port: u16) -> String {
    let mut s = String::new();
    s.push_str("\nThe lab stays up. Try, in another shell:\n");
    s.push_str(&format!("   export PORIN_SERVER={}\n", meta.server.display()));
    s.push_str("   porin status                       # agent, dataplane, drops by reason\n");
    s.push_str("   porin lab probe --port 9000        # who reaches whom, on real packets\n");
    s.push_str(&format!("   porin trace -f {} --from shop/cart --to shop/db --port 5432\n", dir.display()));
    s.push_str("   porin apply -f ...; porin lab wait  # change policy, then probe again\n");
    s.push_str("   porin lab exec shop/frontend -- ip addr\n");
    match cluster::console_written(&meta.dir, console_port) {
        Ok(c) => {
            s.push_str(&format!("Web console (live service graph, flows, policies): open {}\n", c.url));
            s.push_str(&format!("   and sign in with the token {}   (also in {})\n", c.token, c.token_file.display()));
        }
        Err(e) => s.push_str(&format!("   (the web console is unavailable: {e:#})\n")),
    }
    s.push_str("Ctrl-C tears the lab down.\n");
    s
}
