//! Real-kernel tests of the whole product: `porin lab up` builds namespaces and veths, real agents
//! program the eBPF dataplane, and `porin lab probe` sends real TCP/UDP/SCTP packets. The observed
//! matrix must equal `porin matrix` (the reference evaluator) for every upstream NetworkPolicy scenario,
//! tiers with Pass/Deny, and the shop; policy updates, agent kill -9/restart, fragments and a full
//! policy map are checked on live connections.
//!
//! Needs root (CI runs it as root). Not root → fails, unless PORIN_SKIP_KERNEL_TESTS=1.
//! The tests share the machine's CPU and their probes have timeouts, so they run one at a time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_porin")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(rel: &str) -> String {
    root().join(rel).display().to_string()
}

/// Returns false (skip) only when PORIN_SKIP_KERNEL_TESTS=1; panics when not root otherwise.
fn kernel_ok() -> bool {
    if std::env::var("PORIN_SKIP_KERNEL_TESTS").as_deref() == Ok("1") {
        eprintln!("PORIN_SKIP_KERNEL_TESTS=1: skipping a kernel test");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "kernel lab tests need root (network namespaces, eBPF); run as root or set PORIN_SKIP_KERNEL_TESTS=1"
    );
    true
}

/// A lab driven through the CLI, taken down on drop.
struct TestLab {
    name: String,
    state_dir: tempfile::TempDir,
    server: String,
}

impl TestLab {
    fn up(name: &str, nodes: u32, files: &[String], agent_args: Option<&str>) -> TestLab {
        let state_dir = tempfile::Builder::new().prefix("porin-lab-test").tempdir().unwrap();
        let mut args: Vec<String> = vec!["lab".into(), "--name".into(), name.into(), "up".into(), "--nodes".into(), nodes.to_string()];
        for f in files {
            args.push("-f".into());
            args.push(f.clone());
        }
        let mut c = Command::new(bin());
        c.args(&args).env("PORIN_LAB_STATE_DIR", state_dir.path()).env_remove("PORIN_SERVER");
        if let Some(a) = agent_args {
            c.env("PORIN_LAB_AGENT_ARGS", a);
        }
        let t0 = Instant::now();
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let lab = TestLab {
            name: name.into(),
            server: stdout.trim().strip_prefix("export PORIN_SERVER=").unwrap_or("").to_string(),
            state_dir,
        };
        assert!(out.status.success(), "porin lab up failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
        eprintln!("lab {name} ({nodes} node(s)) up in {:.2}s", t0.elapsed().as_secs_f64());
        lab
    }

    fn porin(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(bin())
            .args(args)
            .env("PORIN_LAB_STATE_DIR", self.state_dir.path())
            .env("PORIN_SERVER", &self.server)
            .env_remove("PORIN_TOKEN")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.porin(args);
        assert!(ok, "porin {args:?} failed: {err}{out}");
        out
    }

    fn lab_ok(&self, args: &[&str]) -> String {
        let mut a = vec!["lab", "--name", &self.name];
        a.extend_from_slice(args);
        self.ok(&a)
    }

    /// Apply and wait until every agent enforces it.
    fn apply(&self, files: &[&str]) {
        let mut a = vec!["apply"];
        for f in files {
            a.extend_from_slice(&["-f", f]);
        }
        self.ok(&a);
        self.lab_ok(&["wait"]);
    }

    fn delete(&self, files: &[&str]) {
        let mut a = vec!["delete"];
        for f in files {
            a.extend_from_slice(&["-f", f]);
        }
        self.ok(&a);
        self.lab_ok(&["wait"]);
    }

    fn probe(&self, extra: &[&str]) -> Value {
        let mut a = vec!["probe", "-o", "json"];
        a.extend_from_slice(extra);
        serde_json::from_str(&self.lab_ok(&a)).unwrap()
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "-o", "json"])).unwrap()
    }

    fn lab(&self) -> porin_lab::Lab {
        porin_lab::Lab::open(&self.name, &porin_lab::LabOptions::with_state_dir(self.state_dir.path())).unwrap()
    }

    fn netns(&self, pod: &str) -> String {
        self.lab().pod(pod).unwrap().netns.clone()
    }

    fn ip(&self, pod: &str) -> std::net::Ipv4Addr {
        self.lab().pod(pod).unwrap().ipv4
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = Command::new(bin())
            .args(["lab", "--name", &self.name, "down"])
            .env("PORIN_LAB_STATE_DIR", self.state_dir.path())
            .output();
    }
}

fn matrix(files: &[String]) -> Value {
    let mut args = vec!["matrix".to_string(), "-o".into(), "json".into()];
    for f in files {
        args.push("-f".into());
        args.push(f.clone());
    }
    let out = Command::new(bin()).args(&args).output().unwrap();
    assert!(out.status.success(), "porin matrix: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Matrices keyed by (port, protocol).
fn by_key(v: &Value) -> BTreeMap<(u64, String), Value> {
    v["matrices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ((m["port"].as_u64().unwrap(), m["protocol"].as_str().unwrap().to_string()), m.clone()))
        .collect()
}

fn assert_same(what: &str, observed: &Value, expected: &Value) {
    let (o, e) = (by_key(observed), by_key(expected));
    assert_eq!(o.keys().collect::<Vec<_>>(), e.keys().collect::<Vec<_>>(), "{what}: matrices");
    for (k, em) in &e {
        let om = &o[k];
        if om != em {
            let set = |m: &Value| -> std::collections::BTreeSet<String> {
                m["allowed"].as_array().unwrap().iter().map(|p| format!("{}->{}", p[0].as_str().unwrap(), p[1].as_str().unwrap())).collect()
            };
            let (so, se) = (set(om), set(em));
            panic!(
                "{what} {k:?}: kernel differs from porin matrix\n  allowed by the kernel only: {:?}\n  allowed by the matrix only: {:?}",
                so.difference(&se).collect::<Vec<_>>(),
                se.difference(&so).collect::<Vec<_>>()
            );
        }
    }
}

fn scenarios() -> Vec<String> {
    let dir = root().join("tests/fixtures/netpol-e2e");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml") && p.file_name().unwrap() != "cluster.yaml")
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

fn run_scenarios(lab: &TestLab, list: &[String]) {
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    for s in list {
        let t0 = Instant::now();
        lab.apply(&[s]);
        let observed = lab.probe(&[]);
        let expected = matrix(&[cluster.clone(), s.clone()]);
        assert_same(s, &observed, &expected);
        lab.delete(&[s]);
        eprintln!("  {} ok in {:.2}s", Path::new(s).file_name().unwrap().to_string_lossy(), t0.elapsed().as_secs_f64());
    }
}

#[test]
fn netpol_e2e_scenarios_one_node() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let lab = TestLab::up("kt1", 1, std::slice::from_ref(&cluster), None);
    // Open cluster first: every pod reaches every pod on every port.
    assert_same("no policy", &lab.probe(&[]), &matrix(std::slice::from_ref(&cluster)));
    let list = scenarios();
    assert!(list.len() >= 30, "netpol-e2e fixtures missing");
    run_scenarios(&lab, &list);
    eprintln!("{} scenarios on 1 node in {:.1}s", list.len(), t0.elapsed().as_secs_f64());
}

#[test]
fn netpol_e2e_scenarios_two_nodes() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let lab = TestLab::up("kt2", 2, std::slice::from_ref(&cluster), None);
    let st = lab.ok(&["lab", "--name", "kt2", "status", "-o", "json"]);
    let st: Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["agents"].as_array().unwrap().len(), 2, "{st}");
    let subset: Vec<String> = scenarios()
        .into_iter()
        .filter(|s| {
            [
                "default-deny-all",
                "allow-from-namespace-y",
                "podselector-and-namespaceselector",
                "named-port-ingress",
                "egress-cidr-except",
                "sctp-not-tcp",
                "udp-only",
                "client-side-egress-deny-wins",
                "endport-ingress-single",
            ]
            .iter()
            .any(|n| s.ends_with(&format!("/{n}.yaml")))
        })
        .collect();
    assert_eq!(subset.len(), 9);
    run_scenarios(&lab, &subset);
    eprintln!("{} scenarios on 2 nodes in {:.1}s", subset.len(), t0.elapsed().as_secs_f64());
}

#[test]
fn tiers_pass_deny_and_shop() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tiers = [fixture("tests/fixtures/tiers/cluster.yaml"), fixture("tests/fixtures/tiers/platform-app.yaml")];
    {
        let lab = TestLab::up("ktt", 1, &tiers, None);
        assert_same("tiers", &lab.probe(&[]), &matrix(&tiers));
    }
    let shop = [
        fixture("examples/shop/00-workloads.yaml"),
        fixture("examples/shop/10-platform-tier.yaml"),
        fixture("examples/shop/20-shop-policies.yaml"),
    ];
    let lab = TestLab::up("kts", 2, &shop[..1], None);
    assert_same("shop, no policy", &lab.probe(&[]), &matrix(&shop[..1]));
    lab.apply(&[&shop[1], &shop[2]]);
    assert_same("shop, zero trust", &lab.probe(&[]), &matrix(&shop));
}

/// A TCP echo server inside `netns` on `port` (a thread of this process).
fn echo_server(netns: &str, port: u16) {
    let l: TcpListener = porin_lab::netns::in_netns(netns, || Ok(TcpListener::bind(("0.0.0.0", port)).unwrap())).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

fn connect(netns: &str, to: SocketAddr) -> TcpStream {
    let s = porin_lab::netns::in_netns(netns, || Ok(TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap())).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    s
}

/// Send a line and expect it back.
fn echoes(s: &mut TcpStream) -> bool {
    let msg = b"ping\n";
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).is_ok() && &buf == msg
}

const DENY_Y_INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-y, namespace: y}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
const DENY_Z_INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-z, namespace: z}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
const ALLOW_X_A_EGRESS_80: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: unrelated, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: c}}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: 80}]}]\n";

#[test]
fn long_connection_survives_unrelated_change_and_agent_restart_and_is_cut_by_revocation() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let lab = TestLab::up("ktc", 1, std::slice::from_ref(&cluster), None);
    let dir = tempfile::tempdir().unwrap();
    let write = |n: &str, t: &str| {
        let p = dir.path().join(n);
        std::fs::write(&p, t).unwrap();
        p.display().to_string()
    };
    let (deny_y, deny_z, unrelated) = (write("deny-y.yaml", DENY_Y_INGRESS), write("deny-z.yaml", DENY_Z_INGRESS), write("unrelated.yaml", ALLOW_X_A_EGRESS_80));

    echo_server(&lab.netns("y/b"), 7777);
    let mut conn = connect(&lab.netns("x/a"), SocketAddr::from((lab.ip("y/b"), 7777)));
    assert!(echoes(&mut conn), "fresh connection");

    // Unrelated change: the connection survives.
    lab.apply(&[&unrelated]);
    assert!(echoes(&mut conn), "connection cut by an unrelated policy change");

    // Deny into z, then kill -9 the agent: enforcement continues, the connection survives.
    lab.apply(&[&deny_z]);
    let l = lab.lab();
    let to = |from: &str, to: &str| l.probe_one(from, to, 80, porin_lab::Proto::Tcp, Duration::from_millis(500)).unwrap();
    assert!(!to("x/a", "z/a") && to("x/a", "y/a"));
    lab.lab_ok(&["agent", "stop"]);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        assert!(echoes(&mut conn), "established connection dropped while the agent is down");
        assert!(!to("x/b", "z/b"), "denied traffic passes while the agent is down");
        assert!(to("x/b", "y/c"), "allowed traffic blocked while the agent is down");
    }
    lab.lab_ok(&["agent", "start"]);
    assert!(echoes(&mut conn), "established connection dropped by the agent restart");
    assert!(!to("x/a", "z/a") && to("x/a", "y/a"), "enforcement after restart");
    let st = lab.status();
    assert_eq!(st["dataplane"]["readBack"]["endpoints"], 9, "restart read the pinned state back: {st}");
    assert_eq!(st["dataplane"]["lastWrites"], 0, "a restart with unchanged policy writes nothing: {st}");

    // Revoking change: the connection is cut (bytes are dropped, no echo within the timeout).
    lab.apply(&[&deny_y]);
    let t0 = Instant::now();
    let mut cut = false;
    while t0.elapsed() < Duration::from_secs(5) {
        if !echoes(&mut conn) {
            cut = true;
            break;
        }
    }
    assert!(cut, "a revoked connection still echoes");
}

#[test]
fn fragmented_udp_follows_policy_and_full_policy_map_denies() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    {
        let lab = TestLab::up("ktf", 1, std::slice::from_ref(&cluster), None);
        let to = SocketAddr::from((lab.ip("y/b"), 80));
        let sock: UdpSocket = porin_lab::netns::in_netns(&lab.netns("x/a"), || Ok(UdpSocket::bind("0.0.0.0:0").unwrap())).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        let big = vec![0x5au8; 4000]; // > 1500 MTU: three fragments each way
        let roundtrip = |s: &UdpSocket| {
            (0..3).any(|_| {
                s.send_to(&big, to).unwrap();
                let mut buf = vec![0u8; 8192];
                matches!(s.recv_from(&mut buf), Ok((n, _)) if n == big.len())
            })
        };
        assert!(roundtrip(&sock), "fragmented datagram allowed by policy did not come back");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deny-y.yaml");
        std::fs::write(&p, DENY_Y_INGRESS).unwrap();
        lab.apply(&[p.to_str().unwrap()]);
        let fresh: UdpSocket = porin_lab::netns::in_netns(&lab.netns("x/a"), || Ok(UdpSocket::bind("0.0.0.0:0").unwrap())).unwrap();
        fresh.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        assert!(!roundtrip(&fresh), "fragmented datagram denied by policy came back");
        let c = &lab.status()["dataplane"]["counters"];
        assert!(c["drop_policy_deny"].as_u64().unwrap_or(0) + c["drop_frag"].as_u64().unwrap_or(0) > 0, "{c}");
    }

    // A policy map too small for 9 endpoints: the ones that do not fit deny everything, status says so.
    let lab = TestLab::up("ktm", 1, std::slice::from_ref(&cluster), Some("--dp-max-policy 12"));
    let st = lab.status();
    let eps = st["dataplane"]["endpoints"].as_array().unwrap().clone();
    let locked: Vec<String> =
        eps.iter().filter(|e| e["state"] == "locked-down").map(|e| e["pod"].as_str().unwrap().to_string()).collect();
    assert!(!locked.is_empty(), "no endpoint reported locked down: {st}");
    assert!(!st["dataplane"]["errors"].as_array().unwrap().is_empty(), "{st}");
    assert!(st["health"].as_str().unwrap().contains("dataplane"), "{st}");
    let observed = lab.probe(&["--port", "80", "--protocol", "TCP"]);
    let pairs: Vec<(String, String)> = observed["matrices"][0]["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
        .collect();
    for (a, b) in &pairs {
        assert!(!locked.contains(a) && !locked.contains(b), "{a} -> {b} allowed though an end is locked down");
    }
    assert!(!pairs.is_empty(), "endpoints that fit lost their (allow-all) policy");
}

#[test]
fn demo_exit_smoke() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["demo", "--exit", "--name", "ktdemo"])
        .env("PORIN_LAB_STATE_DIR", state.path())
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "porin demo --exit: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("BEFORE") && stdout.contains("AFTER"), "{stdout}");
    assert!(stdout.contains("kernel matches porin matrix"), "{stdout}");
    assert!(!Path::new("/var/run/netns/porin-ktdemo-n0").exists(), "demo --exit left its lab up");
}

#[path = "kernel_lab/flows.rs"]
mod flows;

#[path = "kernel_lab/bindings.rs"]
mod bindings;
