//! Incident response and decoys on real packets, in a 2-node kernel lab (two agents sharing etcd):
//! `porin quarantine` / `porin release` / `porin block` / `porin unblock` cut long-lived TCP connections on
//! both nodes (the time from the command's return to the cut is measured and printed), and a scan of a
//! Honeypod raises an alert naming the scanner. Attacks: a re-applied pod manifest, a scoped token, an
//! allow-all tier placed as early as users can place one, direct writes to the reserved objects.
//!
//! Needs root (network namespaces, eBPF). Not root → fails, unless PORIN_SKIP_KERNEL_TESTS=1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use porin_lab::Proto;
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_porin")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/respond").join(name).display().to_string()
}

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

struct TestLab {
    name: String,
    state_dir: tempfile::TempDir,
    server: String,
}

impl TestLab {
    fn up(name: &str, nodes: u32, files: &[String], extra: &[&str]) -> TestLab {
        let state_dir = tempfile::Builder::new().prefix("porin-lab-test").tempdir().unwrap();
        let mut args: Vec<String> = vec!["lab".into(), "--name".into(), name.into(), "up".into(), "--nodes".into(), nodes.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        for f in files {
            args.extend(["-f".to_string(), f.clone()]);
        }
        let out = Command::new(bin()).args(&args).env("PORIN_LAB_STATE_DIR", state_dir.path()).env_remove("PORIN_SERVER").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let lab = TestLab {
            name: name.into(),
            server: stdout.trim().strip_prefix("export PORIN_SERVER=").unwrap_or("").to_string(),
            state_dir,
        };
        assert!(out.status.success(), "porin lab up failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
        lab
    }

    fn porin_as(&self, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
        let mut c = Command::new(bin());
        c.args(args).env("PORIN_LAB_STATE_DIR", self.state_dir.path()).env("PORIN_SERVER", &self.server).env_remove("PORIN_TOKEN");
        if let Some(t) = token {
            c.env("PORIN_TOKEN", t);
        }
        let out = c.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.porin_as(None, args);
        assert!(ok, "porin {args:?} failed: {err}{out}");
        out
    }

    fn refused(&self, token: Option<&str>, args: &[&str]) -> String {
        let (ok, out, err) = self.porin_as(token, args);
        assert!(!ok, "porin {args:?} should have been refused: {out}");
        err
    }

    fn lab(&self) -> porin_lab::Lab {
        porin_lab::Lab::open(&self.name, &porin_lab::LabOptions::with_state_dir(self.state_dir.path())).unwrap()
    }

    fn wait(&self) {
        self.ok(&["lab", "--name", &self.name, "wait"]);
    }

    fn netns(&self, pod: &str) -> String {
        self.lab().pod(pod).unwrap().netns.clone()
    }

    fn ip(&self, pod: &str) -> std::net::Ipv4Addr {
        self.lab().pod(pod).unwrap().ipv4
    }

    fn node_of(&self, pod: &str) -> u32 {
        self.lab().pod(pod).unwrap().node
    }

    fn probe(&self, from: &str, to: &str, port: u16, proto: Proto) -> bool {
        self.lab().probe_one(from, to, port, proto, Duration::from_millis(500)).unwrap()
    }

    fn agent_log(&self, node: &str) -> String {
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
        let path = find(self.state_dir.path(), &format!("{node}.log")).expect("the lab agent's log");
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
        plain
    }
}

impl TestLab {
    /// Alerts of `kind` through `porin alerts -o json` (every agent of the lab).
    fn alerts(&self, kind: &str) -> Vec<Value> {
        let out = self.ok(&["alerts", "--kind", kind, "-o", "json"]);
        out.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = Command::new(bin()).args(["lab", "--name", &self.name, "down"]).env("PORIN_LAB_STATE_DIR", self.state_dir.path()).output();
    }
}

/// A TCP echo server inside `netns` on `port` (threads of this process).
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
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Send a byte and expect it back within the read timeout.
fn echoes(s: &mut TcpStream) -> bool {
    if s.write_all(b"p").is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    s.read_exact(&mut b).is_ok() && b[0] == b'p'
}

/// A connection kept busy by a thread: one byte echoed every 5 ms; remembers when the last echo came back.
struct Pinger {
    name: &'static str,
    last_ok: std::sync::Arc<Mutex<Instant>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stream: TcpStream,
}

fn pinger(name: &'static str, mut s: TcpStream) -> Pinger {
    assert!(echoes(&mut s), "{name}: fresh connection");
    let last_ok = std::sync::Arc::new(Mutex::new(Instant::now()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = s.try_clone().unwrap();
    let (l, st) = (last_ok.clone(), stop.clone());
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            if s.write_all(b"p").is_err() {
                return;
            }
            let mut b = [0u8; 1];
            // A lost echo (cut) times out; a late one is read by the next round (still a sign of life).
            if s.read_exact(&mut b).is_ok() {
                *l.lock().unwrap() = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    Pinger { name, last_ok, stop, stream }
}

/// Waits until no echo came back on any connection for 1 s; returns, per connection, when its last echo came
/// back relative to `since` (zero if before). Panics when a connection still echoes after `limit`.
fn time_to_cut(conns: &[Pinger], since: Instant, limit: Duration) -> Vec<Duration> {
    loop {
        let quiet = conns.iter().all(|c| c.last_ok.lock().unwrap().elapsed() > Duration::from_secs(1));
        if quiet {
            break;
        }
        assert!(since.elapsed() < limit, "connections still echo {limit:?} after the command: {:?}",
            conns.iter().filter(|c| c.last_ok.lock().unwrap().elapsed() <= Duration::from_secs(1)).map(|c| c.name).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(20));
    }
    conns
        .iter()
        .map(|c| {
            c.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = c.stream.shutdown(std::net::Shutdown::Read);
            c.last_ok.lock().unwrap().saturating_duration_since(since)
        })
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn quarantine_and_block_cut_long_connections_on_both_nodes_and_resist_reapply_scoped_tokens_and_allow_all() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let manifest = example("cluster.yaml");
    let lab = TestLab::up("krsp", 2, std::slice::from_ref(&manifest), &["--host", "name=c2,port=80,node=0", "--host", "name=c3,port=80,node=1"]);
    assert_eq!((lab.node_of("app/client"), lab.node_of("app/local"), lab.node_of("app/server"), lab.node_of("app/worker")), (0, 0, 1, 1));
    // Tokens before any further resource change (a token write moves the store revision without a resource).
    let scoped = lab.ok(&["token", "create", "team-app", "--role", "scoped", "--namespace", "app", "--tier", "default"]).trim().to_string();

    echo_server(&lab.netns("app/server"), 7777);
    echo_server(&lab.netns("app/client"), 7777);
    let server = SocketAddr::from((lab.ip("app/server"), 7777));
    let client = SocketAddr::from((lab.ip("app/client"), 7777));
    let conns = vec![
        pinger("client(n0) -> server(n1)", connect(&lab.netns("app/client"), server)),
        pinger("worker(n1) -> client(n0)", connect(&lab.netns("app/worker"), client)),
        pinger("local(n0) -> client(n0)", connect(&lab.netns("app/local"), client)),
    ];
    std::thread::sleep(Duration::from_millis(300));
    assert!(lab.probe("app/client", "app/server", 80, Proto::Tcp), "the platform tier allows everything");

    // Quarantine: every connection of the quarantined workload is cut, on both nodes' peers.
    let t0 = Instant::now();
    lab.ok(&["quarantine", "app/client", "--reason", "beaconing to a C2"]);
    let returned = Instant::now();
    let cuts = time_to_cut(&conns, t0, Duration::from_secs(5));
    eprintln!(
        "RESULT quarantine: command returned after {} ; last echo after the command started: {}",
        ms(returned - t0),
        conns.iter().zip(&cuts).map(|(c, d)| format!("{} {}", c.name, ms(*d))).collect::<Vec<_>>().join(", ")
    );
    lab.wait();
    // New connections: denied both ways, despite the allow-all tier ordered before every other user tier.
    assert!(!lab.probe("app/client", "app/server", 80, Proto::Tcp), "quarantined client still connects out");
    assert!(!lab.probe("app/worker", "app/client", 80, Proto::Tcp), "quarantined client still accepts connections");
    assert!(!lab.probe("app/client", "kube-system/dns", 80, Proto::Tcp), "only port 53 of the DNS is open");
    // DNS and monitoring stay open.
    assert!(lab.probe("app/client", "kube-system/dns", 53, Proto::Udp), "DNS over UDP denied to the quarantined client");
    assert!(lab.probe("app/client", "kube-system/dns", 53, Proto::Tcp), "DNS over TCP denied to the quarantined client");
    assert!(lab.probe("monitoring/prometheus", "app/client", 80, Proto::Tcp), "monitoring cannot reach the quarantined client");
    // Others are untouched.
    assert!(lab.probe("app/worker", "app/server", 80, Proto::Tcp));

    // Attack: re-applying the pod's manifest (without the quarantine) does not release it.
    lab.ok(&["apply", "-f", &manifest]);
    lab.wait();
    assert!(!lab.probe("app/client", "app/server", 80, Proto::Tcp), "re-applying the manifest released the quarantine");
    // Attack: a pod manifest may not carry the engine's quarantine or decoy labels.
    let dir = tempfile::tempdir().unwrap();
    let forged = dir.path().join("forged.yaml");
    std::fs::write(&forged, "apiVersion: v1\nkind: Pod\nmetadata: {name: local, namespace: app, labels: {app: local, porin.io/quarantined: \"false\"}}\n").unwrap();
    let e = lab.refused(None, &["apply", "-f", forged.to_str().unwrap()]);
    assert!(e.contains("porin.io/quarantined"), "{e}");
    // Attack: the scoped token of the quarantined pod's namespace cannot release it, by command or by deleting
    // the record, cannot quarantine elsewhere, cannot put a policy into the quarantine tier.
    let e = lab.refused(Some(&scoped), &["release", "app/client"]);
    assert!(e.contains("admin only"), "{e}");
    let e = lab.refused(Some(&scoped), &["delete", "quarantine", "client", "-n", "app"]);
    assert!(e.contains("porin release"), "{e}");
    let e = lab.refused(Some(&scoped), &["quarantine", "monitoring/prometheus"]);
    assert!(e.contains("only its own namespaces"), "{e}");
    let sneaky = dir.path().join("sneaky.yaml");
    std::fs::write(&sneaky, "apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {name: porin-quarantine.let-me-out, namespace: app}\nspec: {tier: porin-quarantine, selector: all(), types: [Egress], egress: [{action: Allow}]}\n").unwrap();
    lab.refused(Some(&scoped), &["apply", "-f", sneaky.to_str().unwrap()]);
    let e = lab.refused(None, &["apply", "-f", sneaky.to_str().unwrap()]);
    assert!(e.contains("reserved"), "even an admin cannot add to the quarantine tier: {e}");
    let e = lab.refused(None, &["delete", "tier", "porin-quarantine"]);
    assert!(e.contains("reserved"), "{e}");
    assert!(!lab.probe("app/client", "app/server", 80, Proto::Tcp));
    // Visible and audited.
    let got = lab.ok(&["get", "quarantines", "-n", "app"]);
    assert!(got.contains("client") && got.contains("beaconing"), "{got}");
    let q = lab.alerts("quarantine");
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["name"], "app/client");
    assert_eq!(q[0]["actor"], "uid:0");
    assert_eq!(q[0]["detail"]["reason"], "beaconing to a C2");
    let audit = lab.ok(&["audit", "-o", "json"]);
    assert!(audit.contains("\"quarantine\""), "no audit record of the quarantine: {audit}");

    // Release (admin): connections open again.
    lab.ok(&["release", "app/client"]);
    lab.wait();
    assert!(lab.probe("app/client", "app/server", 80, Proto::Tcp), "released client still isolated");
    assert!(lab.probe("app/worker", "app/client", 80, Proto::Tcp));

    // Block the server's address: connections to it from both nodes are cut.
    let conns = vec![
        pinger("client(n0) -> server(n1)", connect(&lab.netns("app/client"), server)),
        pinger("worker(n1) -> server(n1)", connect(&lab.netns("app/worker"), server)),
    ];
    std::thread::sleep(Duration::from_millis(300));
    let blocked = format!("{}/32", lab.ip("app/server"));
    lab.refused(Some(&scoped), &["block", &blocked]);
    let t0 = Instant::now();
    lab.ok(&["block", &blocked, "--reason", "abusive miner"]);
    let returned = Instant::now();
    let cuts = time_to_cut(&conns, t0, Duration::from_secs(5));
    eprintln!(
        "RESULT block: command returned after {} ; last echo after the command started: {}",
        ms(returned - t0),
        conns.iter().zip(&cuts).map(|(c, d)| format!("{} {}", c.name, ms(*d))).collect::<Vec<_>>().join(", ")
    );
    lab.wait();
    assert!(!lab.probe("app/client", "app/server", 80, Proto::Tcp));
    assert!(!lab.probe("app/worker", "app/server", 80, Proto::Tcp));
    assert!(!lab.probe("app/server", "app/worker", 80, Proto::Tcp), "the blocked address still connects out");
    assert!(lab.probe("app/client", "app/worker", 80, Proto::Tcp), "an unblocked pair is denied");
    let b = lab.alerts("block");
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["addresses"], serde_json::json!([blocked]));
    assert_eq!(b[0]["detail"]["reason"], "abusive miner");
    let list = lab.ok(&["block", "list"]);
    assert!(list.contains(&blocked), "{list}");
    let gns = lab.ok(&["get", "globalnetworksets", "porin-blocklist", "-o", "json"]);
    assert!(gns.contains(&blocked), "{gns}");
    let e = lab.refused(None, &["delete", "globalnetworkset", "porin-blocklist"]);
    assert!(e.contains("porin unblock"), "{e}");

    // External ("internet") addresses: blocking the first gives the block list's identity to its prefix; a
    // second one added later changes no endpoint's policy (that identity is denied already), only the
    // ipcache: its connections must be cut all the same, on both nodes.
    let (c2, c3) = (lab.lab().host("c2").unwrap().clone(), lab.lab().host("c3").unwrap().clone());
    echo_server(&c2.netns, 7777);
    echo_server(&c3.netns, 7777);
    let conns = vec![pinger("client(n0) -> c2", connect(&lab.netns("app/client"), SocketAddr::from((c2.ipv4, 7777))))];
    std::thread::sleep(Duration::from_millis(300));
    let first = format!("{}/32", c2.ipv4);
    let t0 = Instant::now();
    lab.ok(&["block", &first]);
    let returned = Instant::now();
    let cuts = time_to_cut(&conns, t0, Duration::from_secs(5));
    eprintln!("RESULT block (external address): command returned after {} ; last echo after the command started: {}", ms(returned - t0), ms(cuts[0]));
    let conns = vec![
        pinger("client(n0) -> c3", connect(&lab.netns("app/client"), SocketAddr::from((c3.ipv4, 7777)))),
        pinger("worker(n1) -> c3", connect(&lab.netns("app/worker"), SocketAddr::from((c3.ipv4, 7777)))),
    ];
    std::thread::sleep(Duration::from_millis(300));
    let second = format!("{}/32", c3.ipv4);
    let t0 = Instant::now();
    lab.ok(&["block", &second]);
    let returned = Instant::now();
    let cuts = time_to_cut(&conns, t0, Duration::from_secs(5));
    eprintln!(
        "RESULT block (second external address): command returned after {} ; last echo after the command started: {}",
        ms(returned - t0),
        conns.iter().zip(&cuts).map(|(c, d)| format!("{} {}", c.name, ms(*d))).collect::<Vec<_>>().join(", ")
    );
    lab.wait();
    let l = lab.lab();
    assert!(!l.probe_addr("app/worker", c3.ipv4.into(), 80, Proto::Tcp, Duration::from_millis(500)).unwrap());
    lab.ok(&["unblock", &first, &second]);
    lab.wait();
    assert!(l.probe_addr("app/worker", c3.ipv4.into(), 80, Proto::Tcp, Duration::from_millis(500)).unwrap(), "unblocked host still denied");
    lab.ok(&["unblock", &blocked]);
    lab.wait();
    assert!(lab.probe("app/client", "app/server", 80, Proto::Tcp), "unblocked address still denied");
    assert_eq!(lab.alerts("release").len(), 1);
    assert_eq!(lab.alerts("unblock").len(), 2);
    let v: Value = serde_json::from_str(&lab.ok(&["block", "list", "-o", "json"])).unwrap();
    assert_eq!(v["items"].as_array().map(Vec::len), Some(0), "{v}");
}

#[test]
fn a_scan_of_a_honeypod_raises_an_alert_naming_the_scanner_within_a_second() {
    if !kernel_ok() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = TestLab::up("krhp", 2, &[example("honeypods.yaml")], &[]);
    let decoy = "shop/mysql-backup";
    assert_ne!(lab.node_of("shop/scanner"), lab.node_of(decoy), "scanner and decoy on different nodes");
    let decoy_node = format!("n{}", lab.node_of(decoy));
    assert!(!lab.agent_log(&decoy_node).contains("honeypod contacted"));
    // Ordinary traffic is not an alert.
    assert!(lab.probe("shop/scanner", "shop/db", 80, Proto::Tcp));

    // The scan starts: the first contact must be alerted at once (before the flow pipeline's 1 s flush).
    let t0 = Instant::now();
    assert!(lab.probe("shop/scanner", decoy, 22, Proto::Tcp), "the decoy answers on its ports");
    let line = loop {
        let log = lab.agent_log(&decoy_node);
        if let Some(l) = log.lines().find(|l| l.contains("honeypod contacted")) {
            break l.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no honeypod alert 5 s after the first contact");
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("RESULT honeypod: alert {} after the first contact: {line}", ms(t0.elapsed()));
    assert!(line.contains("source=shop/scanner"), "the alert names the scanner: {line}");
    assert!(line.contains(&format!("decoy={decoy}")), "{line}");
    // The same alert through the API (`porin alerts`), with the scanner's workload context.
    let al = loop {
        if let Some(a) = lab.alerts("honeypod").into_iter().next() {
            break a;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no honeypod alert from porin alerts 5 s after the first contact");
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("RESULT honeypod: in porin alerts {} after the first contact", ms(t0.elapsed()));
    assert_eq!(al["name"], decoy, "{al}");
    assert_eq!((al["src"]["namespace"].as_str(), al["src"]["pod"].as_str()), (Some("shop"), Some("scanner")), "{al}");
    assert_eq!(al["src"]["labels"]["app"], "web", "{al}");
    assert_eq!(al["dst"]["port"], 22, "{al}");
    // The rest of the scan. The decoy answers on its ports only, although the app team's policy allows all.
    let answered: Vec<bool> = [3306u16, 80, 8080].iter().map(|p| lab.probe("shop/scanner", decoy, *p, Proto::Tcp)).collect();
    assert_eq!(answered, vec![true, false, false]);
    // A scan is one alert, not one per port.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lab.agent_log(&decoy_node).matches("honeypod contacted").count(), 1);
    assert_eq!(lab.alerts("honeypod").len(), 1, "a scan is one alert");
    // The decoy reaches nothing, even though the app team's policy allows all egress.
    assert!(!lab.probe(decoy, "shop/db", 80, Proto::Tcp), "a decoy can connect out");
}
