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

// ---- Flow visibility: records with policy context, observe, follow, metrics, loss accounting ----

/// Flow records of `porin observe -o json ARGS`.
fn observe(lab: &TestLab, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["observe", "-o", "json"];
    a.extend_from_slice(args);
    lab.ok(&a).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `ns/pod` of a record end.
fn who(e: &Value) -> String {
    format!("{}/{}", e["namespace"].as_str().unwrap_or("?"), e["pod"].as_str().unwrap_or("?"))
}

/// The records of `from -> to:port` reported at `direction`, waiting (flush interval) up to 5 s for one.
fn wait_records(lab: &TestLab, from: &str, to: &str, port: u16, direction: &str) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let recs: Vec<Value> = observe(lab, &["--from-pod", from, "--to-pod", to, "--to-port", &port.to_string(), "--protocol", "tcp", "--last", "1000"])
            .into_iter()
            .filter(|r| r["direction"] == direction && who(&r["src"]) == from && who(&r["dst"]) == to)
            .collect();
        if !recs.is_empty() || t0.elapsed() > Duration::from_secs(5) {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET /metrics from the agent's `--metrics-listen 127.0.0.1:PORT` (inside the node's netns).
fn scrape(lab: &TestLab, port: u16) -> String {
    let ns = lab.lab().nodes()[0].netns.clone();
    porin_lab::netns::in_netns(&ns, move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        Ok(out)
    })
    .unwrap()
}

/// The value of one series (exact name with labels) in OpenMetrics text; 0 when absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' '))).map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[test]
fn flow_records_carry_verdicts_traces_and_staged_verdicts_observe_follows_metrics_agree() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let lab = TestLab::up("ktfl", 1, std::slice::from_ref(&cluster), Some("--flow-flush-interval 200ms --metrics-listen 127.0.0.1:19464"));
    lab.apply(&[&fixture("tests/fixtures/flows/guard-z.yaml")]);
    let l = lab.lab();
    let tcp = |from: &str, to: &str, port: u16| l.probe_one(from, to, port, porin_lab::Proto::Tcp, Duration::from_millis(500)).unwrap();
    // One attempt each (500 ms: before the first SYN retransmission, so one 5-tuple per attempt).
    assert!(tcp("y/a", "z/a", 80), "y -> z:80 must be allowed");
    assert!(!tcp("x/a", "z/a", 80), "x -> z must be denied");
    assert!(!tcp("y/a", "z/a", 81), "y -> z:81 must be denied (end of tier)");
    assert!(tcp("y/a", "z/c", 80), "y/a -> z/c:80 is allowed (the deny is only staged)");

    // (a) allowed: the ingress record at z/a names the allowing rule; the egress record at y/a has no policy.
    let r = wait_records(&lab, "y/a", "z/a", 80, "ingress");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["verdict"], "allowed");
    assert_eq!(r[0]["enforced_trace"], serde_json::json!(["security|guard-z|1|allow"]));
    assert!(r[0].get("pending_verdict").is_none(), "no staged policy applies to z/a: {}", r[0]);
    assert_eq!((r[0]["src"]["labels"]["pod"].as_str(), r[0]["dst"]["labels"]["pod"].as_str()), (Some("a"), Some("a")));
    assert_eq!(r[0]["flows_started"], 1);
    let e = wait_records(&lab, "y/a", "z/a", 80, "egress");
    assert_eq!((e.len(), &e[0]["verdict"], &e[0]["enforced_trace"]), (1, &Value::from("allowed"), &serde_json::json!([])), "{e:#?}");

    // (b) denied by the explicit Deny rule.
    let r = wait_records(&lab, "x/a", "z/a", 80, "ingress");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!((r[0]["verdict"].as_str(), r[0]["drop_reason"].as_str()), (Some("denied"), Some("drop_policy_deny")));
    assert_eq!(r[0]["enforced_trace"], serde_json::json!(["security|guard-z|0|deny"]));
    assert_eq!(r[0]["flows_started"], 1);

    // (c) denied at the end of the tier.
    let r = wait_records(&lab, "y/a", "z/a", 81, "ingress");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["verdict"], "denied");
    assert_eq!(r[0]["enforced_trace"], serde_json::json!(["security|guard-z|-1|deny"]));

    // (d) staged: enforced allowed, pending would-deny with the staged policy's trace.
    let r = wait_records(&lab, "y/a", "z/c", 80, "ingress");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["verdict"], "allowed");
    assert_eq!(r[0]["enforced_trace"], serde_json::json!(["security|guard-z|1|allow"]));
    assert_eq!(r[0]["pending_verdict"], "would_deny", "{}", r[0]);
    assert_eq!(r[0]["pending_trace"], serde_json::json!(["security|staged:lockdown-c|0|deny"]));
    let staged = observe(&lab, &["--verdict", "would-deny", "--last", "100"]);
    assert!(staged.iter().all(|r| r["pending_verdict"] == "would_deny") && staged.iter().any(|r| who(&r["dst"]) == "z/c"), "{staged:#?}");

    // A namespace-scoped token reads only flows with an end in its namespace, the other end and foreign trace
    // entries hidden; its filters cannot find hidden endpoints.
    let scoped = lab.ok(&["token", "create", "team-y", "--role", "scoped", "--namespace", "y", "--tier", "app"]).trim().to_string();
    let as_scoped = |args: &[&str]| -> Vec<Value> {
        let out = Command::new(bin())
            .args(["observe", "-o", "json"])
            .args(args)
            .env("PORIN_LAB_STATE_DIR", lab.state_dir.path())
            .env("PORIN_SERVER", &lab.server)
            .env("PORIN_TOKEN", &scoped)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let mine = as_scoped(&["--last", "1000"]);
    assert!(!mine.is_empty());
    for r in &mine {
        let ns = |e: &Value| e["namespace"].as_str().map(str::to_string);
        assert!(ns(&r["src"]).as_deref() == Some("y") || ns(&r["dst"]).as_deref() == Some("y"), "out of scope: {r}");
        assert!(who(&r["src"]) != "x/a" && who(&r["dst"]) != "z/a" && who(&r["dst"]) != "z/c", "a hidden end is named: {r}");
        for t in r["enforced_trace"].as_array().into_iter().flatten() {
            assert!(!t.as_str().unwrap().contains("guard-z"), "a foreign tier's policy is named: {r}");
        }
    }
    assert!(as_scoped(&["--from-pod", "x/a", "--last", "1000"]).is_empty(), "a filter found a hidden endpoint");
    assert!(as_scoped(&["--to-pod", "z/a", "--last", "1000"]).is_empty(), "a filter found a hidden endpoint");

    // `--verdict denied` shows exactly the denied ones.
    let denied = observe(&lab, &["--verdict", "denied", "--last", "1000"]);
    assert!(denied.iter().all(|r| r["verdict"] == "denied"), "{denied:#?}");
    let into_z: std::collections::BTreeSet<(String, String, u64)> = observe(&lab, &["--verdict", "denied", "--to-namespace", "z", "--protocol", "tcp", "--last", "1000"])
        .iter()
        .map(|r| (who(&r["src"]), who(&r["dst"]), r["dst"]["port"].as_u64().unwrap()))
        .collect();
    let want: std::collections::BTreeSet<(String, String, u64)> =
        [("x/a", "z/a", 80), ("y/a", "z/a", 81)].iter().map(|(a, b, p)| (a.to_string(), b.to_string(), *p)).collect();
    assert_eq!(into_z, want);

    // --follow: a new denied connection shows up live.
    let mut child = std::process::Command::new(bin())
        .args(["observe", "-f", "-o", "json", "--verdict", "denied", "--from-pod", "x/b"])
        .env("PORIN_SERVER", &lab.server)
        .env("PORIN_LAB_STATE_DIR", lab.state_dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let t_conn = Instant::now();
    assert!(!tcp("x/b", "z/b", 80));
    let got = rx.recv_timeout(Duration::from_secs(3));
    let latency = t_conn.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let line = got.expect("observe --follow printed nothing within 3 s of a denied connection");
    let r: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((who(&r["src"]), who(&r["dst"]), r["verdict"].as_str()), ("x/b".into(), "z/b".into(), Some("denied")), "{r}");
    eprintln!("observe --follow: denied connection shown {:.0} ms after the attempt", latency.as_secs_f64() * 1e3);

    // /metrics agrees with what the test generated: two connections denied by rule 0 (x/a, x/b -> z).
    // Flow records flush every flush interval and the dataplane's drop counters refresh every 2 s: wait for
    // both to have caught up (bounded), then assert exact values.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&lab, 19464);
        let caught_up = metric(&m, r#"porin_dataplane_drops_total{reason="drop_policy_deny"}"#) >= 3
            && metric(&m, r#"porin_policy_rule_connections_total{tier="security",policy="guard-z",rule="0"}"#) >= 2;
        if caught_up || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(metric(&m, r#"porin_policy_rule_connections_total{tier="security",policy="guard-z",rule="0"}"#), 2, "{m}");
    // End of tier: the TCP attempt to :81, plus whatever else reaches z (IPv6 neighbour discovery, …):
    // exactly what the store holds under that rule.
    let end_of_tier = observe(&lab, &["--policy", "security|guard-z|-1|deny", "--last", "100000"]);
    let n: u64 = end_of_tier.iter().map(|r| r["flows_started"].as_u64().unwrap()).sum();
    assert!(end_of_tier.iter().filter(|r| r["protocol"] == "tcp").count() == 1, "{end_of_tier:#?}");
    assert_eq!(metric(&m, r#"porin_policy_rule_connections_total{tier="security",policy="guard-z",rule="-1"}"#), n, "{m}");
    // y/a -> z/a:80 and y/a -> z/c:80 were allowed by rule 1 (ingress records).
    assert_eq!(metric(&m, r#"porin_policy_rule_connections_total{tier="security",policy="guard-z",rule="1"}"#), 2, "{m}");
    let denied_ingress: u64 = observe(&lab, &["--verdict", "denied", "--last", "100000"])
        .iter()
        .filter(|r| r["direction"] == "ingress")
        .map(|r| r["flows_started"].as_u64().unwrap())
        .sum();
    assert_eq!(metric(&m, r#"porin_flow_flows_total{verdict="denied",direction="ingress"}"#), denied_ingress, "{m}");
    assert!(denied_ingress >= 3, "{denied_ingress}");
    assert!(metric(&m, r#"porin_dataplane_drops_total{reason="drop_policy_deny"}"#) >= 3, "{m}");
    assert_eq!(metric(&m, "porin_dataplane_endpoints"), 9, "{m}");
    assert!(metric(&m, "porin_policy_programming_latency_seconds_count") >= 2, "{m}");
    assert_eq!(metric(&m, r#"porin_flow_lost_events_total{stage="ringbuf"}"#), 0, "{m}");
    // The API serves the same text (authenticated); status shows the pipeline.
    let st = lab.status();
    assert_eq!(st["flows"]["lostTotal"], 0, "{st}");
    assert!(st["flows"]["counters"]["records_stored"].as_u64().unwrap() > 0, "{st}");
    assert!(st["flows"]["storeStats"]["records"].as_u64().unwrap() > 0, "{st}");
    let table = lab.ok(&["status"]);
    assert!(table.contains("Flow events lost 0"), "{table}");
}

#[test]
fn flow_loss_is_counted_when_the_ring_buffer_overflows() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    // A one-page ring buffer (~39 events) and a flood of denied datagrams. Denied packets are summed per
    // flow in the kernel (here: 64 flows between two drains, then they go to the ring one by one); every
    // datagram comes from its own source port, so the aggregates fill up and the ring overflows.
    let lab = TestLab::up(
        "ktfr",
        1,
        std::slice::from_ref(&cluster),
        Some("--dp-ringbuf-bytes 4096 --dp-denied-aggregates 64 --flow-flush-interval 200ms"),
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deny-y.yaml");
    std::fs::write(&p, DENY_Y_INGRESS).unwrap();
    lab.apply(&[p.to_str().unwrap()]);
    let to = SocketAddr::from((lab.ip("y/b"), 81));
    const N: u64 = 20_000;
    porin_lab::netns::in_netns(&lab.netns("x/a"), || {
        for i in 0..N {
            let s = UdpSocket::bind(("0.0.0.0", 20_000 + i as u16)).unwrap();
            s.send_to(b"flood", to).unwrap();
        }
        Ok(())
    })
    .unwrap();
    // Every datagram is in a record or counted as lost (the kernel refreshes its counters every 2 s).
    let t0 = Instant::now();
    let (mut recorded, mut st);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        recorded = observe(&lab, &["--from-pod", "x/a", "--to-pod", "y/b", "--protocol", "udp", "--verdict", "denied", "--first", "100000"])
            .iter()
            .map(|r| r["packets_src_to_dst"].as_u64().unwrap())
            .sum::<u64>();
        st = lab.status();
        let lost = st["flows"]["lostTotal"].as_u64().unwrap();
        if recorded + lost >= N || t0.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let f = &st["flows"];
    let ringbuf = f["lostByStage"]["ringbuf"].as_u64().unwrap();
    eprintln!("flood of {N}: {recorded} recorded, lost {}", f["lostByStage"]);
    assert!(ringbuf > 0, "a 4 KiB ring buffer did not overflow: {f}");
    assert_eq!(st["dataplane"]["counters"]["ringbuf_full"].as_u64().unwrap(), ringbuf, "{st}");
    assert!(recorded + f["lostTotal"].as_u64().unwrap() >= N, "silent loss: {recorded} recorded + {} lost < {N} sent", f["lostTotal"]);
    assert!(recorded > 0 && recorded < N, "{recorded}");
    assert!(f["counters"]["denied_aggregated_packets"].as_u64().unwrap() > 0, "the kernel aggregated denied packets: {f}");
    let table = lab.ok(&["status"]);
    assert!(table.contains(&format!("ringbuf={ringbuf}")), "{table}");
    assert!(table.contains("Denied, summed"), "{table}");
}

// ---- Bindings: WorkloadEndpoints, not pod annotations, decide what the kernel enforces where. ----

/// x/a accepts ingress only from namespace y, on TCP 81.
const X_A_FROM_Y_81: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x-a-from-y-81, namespace: x}\n\
spec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]\n    ports: [{protocol: TCP, port: 81}]\n";

/// x/a accepts ingress only from pods labelled access=yes (any namespace).
const X_A_FROM_ACCESS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x-a-from-access, namespace: x}\n\
spec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {access: 'yes'}}}]\n";

fn tmp_write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn endpoints_by_state(st: &Value) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in st["dataplane"]["endpoints"].as_array().unwrap() {
        *m.entry(e["state"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    m
}

#[test]
fn reapplying_pod_manifests_as_written_changes_no_enforcement() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let dir = tempfile::tempdir().unwrap();
    let policy = tmp_write(dir.path(), "policy.yaml", X_A_FROM_Y_81);
    let lab = TestLab::up("ktr", 1, std::slice::from_ref(&cluster), None);
    let l = lab.lab();
    let to = |from: &str, to: &str, port: u16| l.probe_one(from, to, port, porin_lab::Proto::Tcp, Duration::from_millis(500)).unwrap();
    let reapply = |step: &str| {
        let out = lab.ok(&["apply", "-f", &cluster]);
        assert!(out.lines().all(|l| l.ends_with(" unchanged")), "{step}: re-applying the pods as written changed something:\n{out}");
        lab.lab_ok(&["wait"]);
        let st = lab.status();
        assert_eq!(endpoints_by_state(&st), BTreeMap::from([("programmed".to_string(), 9)]), "{step}: {st}");
    };
    let wep_list = lab.ok(&["get", "wep", "-A"]);
    assert_eq!(wep_list.lines().count(), 10, "one WorkloadEndpoint per pod:\n{wep_list}");
    assert!(wep_list.contains("n0-k8s-a-eth0"), "{wep_list}");

    // Step 1, open cluster: re-apply, still everything open.
    reapply("open");
    assert!(to("x/b", "x/a", 81) && to("z/c", "x/a", 80));

    // Step 2, x/a isolated: re-apply at once and again later; the kernel must equal the engine each time.
    lab.apply(&[&policy]);
    let expected = matrix(&[cluster.clone(), policy.clone()]);
    let probe81 = || lab.probe(&["--port", "81", "--protocol", "tcp"]);
    let expected81 = {
        let mut e = expected.clone();
        e["matrices"].as_array_mut().unwrap().retain(|m| m["port"] == 81 && m["protocol"] == "TCP");
        e
    };
    assert_same("isolated", &probe81(), &expected81);
    for step in ["isolated, first re-apply", "isolated, second re-apply"] {
        reapply(step);
        assert_same(step, &probe81(), &expected81);
        assert!(!to("x/b", "x/a", 81) && !to("z/c", "x/a", 81) && !to("y/a", "x/a", 80) && to("y/b", "x/a", 81), "{step}");
    }

    // Step 3, the old hijack: a pod naming x/a's veth in the old annotations, created and deleted as admin
    // (tenants are refused outright). Annotations bind nothing, so x/a stays enforced throughout.
    let victim = l.pod("x/a").unwrap().clone();
    let hijack = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: zz-hijack\n  namespace: y\n  annotations: {{porin.io/interface: {}, porin.io/netns: {}}}\n",
        victim.host_ifname, victim.node_netns
    );
    let hijack = tmp_write(dir.path(), "hijack.yaml", &hijack);
    lab.apply(&[&hijack]);
    assert!(!to("x/b", "x/a", 81) && to("y/b", "x/a", 81), "after the hijack pod was created");
    lab.delete(&[&hijack]);
    assert!(!to("x/b", "x/a", 81) && !to("z/a", "x/a", 81) && to("y/b", "x/a", 81), "after the hijack pod was deleted");
    reapply("after the hijack");
    assert_same("after the hijack", &probe81(), &expected81);
}

#[test]
fn a_lost_binding_drops_and_stays_attached_until_bound_again() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let dir = tempfile::tempdir().unwrap();
    let lab = TestLab::up("ktl", 1, std::slice::from_ref(&cluster), None);
    let l = lab.lab();
    let to = |from: &str, to: &str| l.probe_one(from, to, 80, porin_lab::Proto::Tcp, Duration::from_millis(500)).unwrap();
    assert!(to("x/a", "y/a") && to("y/a", "x/a"), "open cluster");
    let victim = l.pod("x/a").unwrap().clone();
    // Keep the objects as stored, to put them back later.
    let stored = |args: &[&str]| -> String {
        let mut v: Value = serde_json::from_str(&lab.ok(args)).unwrap();
        v["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        serde_json::to_string(&v).unwrap()
    };
    let pod = tmp_write(dir.path(), "pod.json", &stored(&["get", "pod", "a", "-n", "x", "-o", "json"]));
    let wep = tmp_write(dir.path(), "wep.json", &stored(&["get", "wep", "n0-k8s-a-eth0", "-n", "x", "-o", "json"]));
    let state_of = |ifname: &str| -> Value {
        let st = lab.status();
        st["dataplane"]["endpoints"].as_array().unwrap().iter().find(|e| e["interface"] == ifname).cloned().unwrap_or(Value::Null)
    };

    // The WorkloadEndpoint goes: x/a's interface stays attached and drops both ways; nothing else changes.
    lab.ok(&["delete", "wep", "n0-k8s-a-eth0", "-n", "x"]);
    lab.lab_ok(&["wait"]);
    assert!(!to("x/a", "y/a") && !to("y/a", "x/a") && !to("x/b", "x/a"), "an unbound interface passes traffic");
    assert!(to("y/a", "x/b") && to("x/b", "y/a"), "other pods are affected");
    let e = state_of(&victim.host_ifname);
    assert_eq!(e["state"], "unbound", "{e}");
    assert_eq!(e["ifindex"], victim.host_ifindex, "{e}");
    // Then the pod as well: still dropping.
    lab.ok(&["delete", "pod", "a", "-n", "x"]);
    lab.lab_ok(&["wait"]);
    assert!(!to("x/a", "y/a") && !to("y/a", "x/a"), "dropped after the pod is deleted too");
    // The binding comes back before its pod: denied (reported), still nothing passes.
    lab.apply(&[&wep]);
    let e = state_of(&victim.host_ifname);
    assert_eq!(e["state"], "denied", "{e}");
    assert!(e["error"].as_str().unwrap().contains("does not exist"), "{e}");
    assert!(lab.status()["health"].as_str().unwrap().starts_with("degraded"), "health must show the denied endpoint");
    assert!(!to("x/a", "y/a") && !to("y/a", "x/a"), "a WorkloadEndpoint without its pod opened traffic");
    // The pod comes back: bound, open again.
    lab.apply(&[&pod]);
    assert_eq!(state_of(&victim.host_ifname)["state"], "programmed");
    assert!(to("x/a", "y/a") && to("y/a", "x/a"), "re-bound endpoint is open again");
    assert_eq!(lab.status()["health"], "ok");

    // An unbound interface that goes away takes its state and pinned links with it (refresh tick).
    let other = l.pod("x/b").unwrap().clone();
    lab.ok(&["delete", "wep", "n0-k8s-b-eth0", "-n", "x"]);
    lab.lab_ok(&["wait"]);
    assert_eq!(state_of(&other.host_ifname)["state"], "unbound");
    let links = Path::new(lab.status()["dataplane"]["pinDir"].as_str().unwrap()).join("links");
    let pins = || {
        std::fs::read_dir(&links)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{}_", other.host_ifname)))
            .count()
    };
    assert!(pins() > 0, "the unbound interface lost its links while it exists");
    let out = Command::new("ip").args(["netns", "exec", &other.node_netns, "ip", "link", "del", &other.host_ifname]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t0 = Instant::now();
    while !(state_of(&other.host_ifname).is_null() && pins() == 0) {
        assert!(t0.elapsed() < Duration::from_secs(15), "state of a deleted interface kept: {} ({} pins)", state_of(&other.host_ifname), pins());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn duplicate_address_forced_into_etcd_denies_its_claimants_and_label_changes_still_reach_the_kernel() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let dir = tempfile::tempdir().unwrap();
    let policy = tmp_write(dir.path(), "policy.yaml", X_A_FROM_ACCESS);
    let lab = TestLab::up("ktd", 2, std::slice::from_ref(&cluster), None);
    let l = lab.lab();
    let to = |from: &str, to: &str| l.probe_one(from, to, 80, porin_lab::Proto::Tcp, Duration::from_millis(500)).unwrap();
    lab.apply(&[&policy]);
    lab.ok(&["label", "pod", "b", "-n", "y", "access=yes"]);
    lab.lab_ok(&["wait"]);
    assert!(to("y/b", "x/a") && !to("y/c", "x/a"), "policy before the conflict");

    // A pod claiming an existing pod's address, written straight into etcd (the API refuses it).
    let victim = l.pods().iter().find(|p| p.node == 0 && !["x/a", "y/b", "y/c", "y/a", "x/b"].contains(&p.key.as_str())).unwrap().clone();
    let node0 = &l.nodes()[0];
    let etcd = format!("http://{}:2379", node0.underlay_ipv4.unwrap());
    let etcdctl = |args: &[&str]| {
        let out = Command::new("ip").args(["netns", "exec", &node0.netns, "etcdctl", "--endpoints", &etcd]).args(args).output().unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let dup = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dup", "namespace": "x", "labels": {"access": "yes"}},
                                 "spec": {}, "status": {"podIP": victim.ipv4.to_string()}});
    let victim_state = || -> Value {
        let st = lab.status();
        st["dataplane"]["endpoints"].as_array().unwrap().iter().find(|e| e["pod"] == victim.key.as_str()).cloned().unwrap()
    };
    let until = |want: &str| {
        let t0 = Instant::now();
        while victim_state()["state"] != want {
            assert!(t0.elapsed() < Duration::from_secs(20), "{} never became {want}: {}", victim.key, victim_state());
            std::thread::sleep(Duration::from_millis(100));
        }
        lab.lab_ok(&["wait"]);
    };
    etcdctl(&["put", "/porin/resources/core/pods/x/dup", &dup.to_string()]);
    until("denied");
    // The claimant on this node denies, visibly.
    let st = lab.status();
    let e = victim_state();
    assert!(e["error"].as_str().unwrap().contains("duplicate address"), "{e}");
    assert!(st["health"].as_str().unwrap().starts_with("degraded"), "{st}");
    assert!(!to(&victim.key, "y/a") && !to("y/a", &victim.key), "a conflicting endpoint passes traffic");

    // Label changes after the conflict still reach the kernel: revoke y/b, grant y/c.
    lab.ok(&["label", "pod", "b", "-n", "y", "access-"]);
    lab.ok(&["label", "pod", "c", "-n", "y", "access=yes"]);
    lab.lab_ok(&["wait"]);
    assert!(!to("y/b", "x/a"), "revoked pair still connected: the label change did not reach the kernel");
    assert!(to("y/c", "x/a"), "granted pair not connected: the label change did not reach the kernel");
    assert!(to("x/b", "y/a") && to("y/a", "x/b"), "unaffected pairs");
    assert!(lab.status()["dataplane"]["errors"].as_array().unwrap().iter().all(|e| !e.as_str().unwrap().starts_with("ipcache")), "ipcache sync failed");

    // The conflict resolved: the victim is bound again.
    etcdctl(&["del", "/porin/resources/core/pods/x/dup"]);
    until("programmed");
    assert!(to(&victim.key, "y/a") && to("y/a", &victim.key), "the victim stays denied after the conflict is gone");
    assert_eq!(lab.status()["health"], "ok");
}

/// Pairs allowed on TCP/80 as observed on real packets.
fn allowed_pairs(lab: &TestLab) -> Vec<(String, String)> {
    let observed = lab.probe(&["--port", "80", "--protocol", "TCP"]);
    observed["matrices"][0]["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn an_undecodable_stored_policy_locks_its_namespace_down_on_real_packets() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    // Two nodes: the agents share a real etcd (in node 0's namespace), where a stray writer can leave bytes
    // no agent can decode.
    let lab = TestLab::up("ktu", 2, std::slice::from_ref(&cluster), None);
    let open = allowed_pairs(&lab);
    assert!(open.iter().any(|(a, b)| a == "x/a" && b == "y/b"), "no policy: x/a -> y/b should be open: {open:?}");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(lab.state_dir.path().join("ktu.json")).unwrap()).unwrap();
    let (url, netns) = (meta["control"]["etcd"]["url"].as_str().unwrap().to_string(), meta["control"]["agents"][0]["netns"].as_str().unwrap().to_string());
    let etcdctl = |args: &[&str]| {
        let out = Command::new("ip").args(["netns", "exec", &netns, "etcdctl", "--endpoints", &url]).args(args).output().unwrap();
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let key = "/porin/resources/porin.io/networkpolicies/y/isolate-y";
    etcdctl(&["put", key, "{\"apiVersion\": \"porin.io/v1\", \"kind\": \"NetworkPolicy\", \"spec\": ["]);
    let t0 = Instant::now();
    while !lab.status()["health"].as_str().unwrap_or("").contains("do not decode") {
        assert!(t0.elapsed() < Duration::from_secs(15), "the agent did not report the undecodable object: {}", lab.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.lab_ok(&["wait"]);
    let locked = allowed_pairs(&lab);
    for (a, b) in &locked {
        assert!(!a.starts_with("y/") && !b.starts_with("y/"), "{a} -> {b} allowed though namespace y is locked down");
    }
    assert!(locked.iter().any(|(a, b)| a == "x/a" && b == "z/c"), "endpoints outside y lost their traffic: {locked:?}");
    let eps = lab.status()["dataplane"]["endpoints"].clone();
    assert!(eps.as_array().unwrap().iter().any(|e| e["pod"].as_str().unwrap().starts_with("y/") && e["state"] == "locked-down"), "{eps}");
    // Deleting the bad object lifts the lockdown.
    etcdctl(&["del", key]);
    let t0 = Instant::now();
    while lab.status()["health"] != "ok" {
        assert!(t0.elapsed() < Duration::from_secs(15), "still degraded: {}", lab.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.lab_ok(&["wait"]);
    assert_eq!(allowed_pairs(&lab), open, "the lockdown did not clear");
}

/// Lines of a lab agent's log, without terminal colour codes.
fn agent_log(lab: &TestLab, node: &str) -> Vec<String> {
    fn find(dir: &Path, name: &str) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(f) = find(&p, name) {
                    return Some(f);
                }
            } else if e.file_name() == name {
                return Some(p);
            }
        }
        None
    }
    let path = find(lab.state_dir.path(), &format!("{node}.log")).expect("the lab agent's log");
    let text = std::fs::read_to_string(path).unwrap();
    let mut plain = String::with_capacity(text.len());
    let mut esc = false;
    for c in text.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain.lines().map(str::to_string).collect()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split_whitespace().next()
}

#[test]
fn a_new_interface_is_attached_only_once_its_policy_is_compiled_and_drops_until_its_entry_is_written() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixture("tests/fixtures/netpol-e2e/cluster.yaml");
    let lab = TestLab::up("kat", 1, std::slice::from_ref(&cluster), None);
    let pods = lab.lab().pods().len();
    assert!(pods >= 2, "the fixture has pods");
    let log = agent_log(&lab, "n0");
    let pos = |pred: &dyn Fn(&str) -> bool| log.iter().position(|l| pred(l));
    let attached: Vec<(usize, String, String)> = log
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("dataplane attached"))
        .map(|(i, l)| (i, field(l, "revision").unwrap().to_string(), field(l, "interface").unwrap().to_string()))
        .collect();
    assert_eq!(attached.len(), pods, "one attach per pod interface:\n{}", log.join("\n"));
    for (at, rev, ifname) in &attached {
        // The revision's policy was compiled (for this interface's pod too) before the attach ...
        let compiled = pos(&|l| l.contains("dataplane compiled") && field(l, "revision") == Some(rev.as_str()));
        assert!(compiled.is_some_and(|c| c < *at), "{ifname} attached before revision {rev} was compiled:\n{}", log.join("\n"));
        // ... and its entry was written right after, in the same programming, with no compile in between.
        let programmed = log.iter().enumerate().skip(at + 1).find(|(_, l)| l.contains("dataplane endpoint programmed after attach") && field(l, "interface") == Some(ifname.as_str()));
        let (p, line) = programmed.unwrap_or_else(|| panic!("{ifname}: no entry written after its attach:\n{}", log.join("\n")));
        assert_eq!(field(line, "revision"), Some(rev.as_str()), "{line}");
        assert!(!log[*at..p].iter().any(|l| l.contains("dataplane compiled")), "a compile ran while {ifname} was attached without its entry");
        assert!(
            !log[at + 1..p].iter().any(|l| l.contains("dataplane attached")),
            "another interface was attached while {ifname} waited for its entry:\n{}",
            log[*at..=p].join("\n")
        );
        let ms: f64 = field(line, "dropped_millis").unwrap().parse().unwrap();
        eprintln!("{ifname}: attached without its entry (dropping) for {ms:.3} ms");
    }
    // That an attached interface without its entry drops every packet (never passes) is shown on real
    // packets by a_lost_binding_drops_and_stays_attached_until_bound_again (the same state: attached, no entry).
}
