//! Threat feeds and alerts on real packets: a kernel lab with an external ("internet") host, the example
//! security tier, a GlobalThreatFeed read from a file listing the host's address, then
//! * the feed's GlobalNetworkSet appears, the pod's connections to the host are denied, flows to it are enriched
//!   as the feed's network set (as world before), and an alert names the pod, the feed, the verdict and the trace;
//! * a webhook receiver on the node's loopback, started only after the alert was raised, still receives it;
//! * a namespace-scoped token sees its own namespace's alerts and not the others';
//! * a broken feed (bad content, a missing file, an unreachable URL) keeps the last good set and its status
//!   says why;
//! * `porin threatfeed push` replaces the set (and an empty push or a scoped caller changes nothing);
//! * `/metrics` counts the alerts and the webhook's failures and deliveries;
//! * the alert log survives an agent restart.
//!
//! Needs root, like kernel_lab.rs; not root → fails, unless PORIN_SKIP_KERNEL_TESTS=1.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use porin_lab::Proto;
use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_porin")
}

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel).display().to_string()
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

struct Lab {
    name: &'static str,
    state: tempfile::TempDir,
    server: Option<String>,
}

impl Lab {
    fn porin_as(&self, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
        let mut c = Command::new(bin());
        c.args(args).env("PORIN_LAB_STATE_DIR", self.state.path()).env_remove("PORIN_TOKEN");
        if let Some(t) = token {
            c.env("PORIN_TOKEN", t);
        }
        match &self.server {
            Some(s) => c.env("PORIN_SERVER", s),
            None => c.env_remove("PORIN_SERVER"),
        };
        let out = c.output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }
    fn porin(&self, args: &[&str]) -> (i32, String, String) {
        self.porin_as(None, args)
    }
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.porin(args);
        assert_eq!(code, 0, "porin {args:?}: {out}{err}");
        out
    }
    fn path(&self, name: &str) -> PathBuf {
        self.state.path().join(name)
    }
    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.path(name), text).unwrap();
        self.path(name).to_str().unwrap().to_string()
    }
    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
    fn alerts(&self, token: Option<&str>) -> Vec<Value> {
        let (code, out, err) = self.porin_as(token, &["alerts", "-o", "json"]);
        assert_eq!(code, 0, "{out}{err}");
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
    fn feed_status(&self) -> Value {
        self.json(&["get", "globalthreatfeed", "feodo", "-o", "json"])["status"].clone()
    }
    fn set_nets(&self) -> Vec<String> {
        let v = self.json(&["get", "globalnetworkset", "threatfeed.feodo", "-o", "json"]);
        v["spec"]["nets"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.porin(&["lab", "--name", self.name, "down"]);
    }
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A webhook receiver: a tiny HTTP/1.1 server on 127.0.0.1:`port` inside network namespace `netns` (the node's
/// loopback, where the agent lives); every POSTed body is kept.
struct Receiver {
    got: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(netns: &str, port: u16) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s, ns) = (got.clone(), stop.clone(), netns.to_string());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            porin_lab::netns::enter_netns(&ns).unwrap();
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !s.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let body = loop {
                    let n = c.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                };
                if let Some(b) = body {
                    if let Ok(v) = serde_json::from_slice::<Value>(&b) {
                        g.lock().unwrap().push(v);
                    }
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("webhook receiver bound");
        Receiver { got, stop }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn threat_feed_denies_the_c2_host_alerts_name_the_pod_webhook_catches_up_and_broken_feeds_keep_the_set() {
    if !kernel_ok() {
        return;
    }
    let state = tempfile::Builder::new().prefix("porin-lab-tf").tempdir().unwrap();
    let port = 20000 + (std::process::id() % 20000) as u16;
    let hook = format!("http://127.0.0.1:{port}/hook");
    let mut lab = Lab { name: "tfeed", state, server: None };
    // Fast paths for the test: feeds checked every second, failures retried after a second, webhook backoff
    // capped at a second; one alert per (workload, feed, address, verdict) for the whole test.
    let agent_args = format!(
        "--threatfeed-check-seconds 1 --threatfeed-retry-seconds 1 --alert-webhook {hook} --alert-webhook-max-backoff-seconds 1 --alert-dedup-seconds 600"
    );
    let out = Command::new(bin())
        .args(["lab", "--name", lab.name, "up", "-f", &repo("examples/shop/00-workloads.yaml"), "-f", &repo("examples/threatfeed/10-security-tier.yaml")])
        .args(["--host", "name=c2,port=443"])
        .env("PORIN_LAB_STATE_DIR", lab.state.path())
        .env("PORIN_LAB_AGENT_ARGS", &agent_args)
        .env_remove("PORIN_SERVER")
        .output()
        .unwrap();
    assert!(out.status.success(), "lab up: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&std::fs::read(lab.path("tfeed.json")).unwrap()).unwrap();
    lab.server = Some(meta["control"]["server"].as_str().unwrap().to_string());
    let ops_token = lab.ok(&["token", "create", "ops-team", "--role", "scoped", "--namespace", "ops"]).trim().to_string();
    let opts = porin_lab::LabOptions { state_dir: lab.state.path().to_path_buf(), ..Default::default() };
    let plab = porin_lab::Lab::open(lab.name, &opts).unwrap();
    let c2 = plab.host("c2").unwrap().clone();
    let c2ip = IpAddr::V4(c2.ipv4);
    let node_ns = plab.nodes()[0].netns.clone();
    let reach = |from: &str| plab.probe_addr(from, c2ip, 443, Proto::Tcp, Duration::from_millis(700)).unwrap();

    // 1. No feed yet: the pods reach the internet host, and its flows are enriched as world.
    assert!(reach("shop/frontend"), "before the feed, shop/frontend reaches c2");
    let world = wait_for("a flow to c2 enriched as world", 15, || {
        let out = lab.ok(&["observe", "--since", "5m", "-o", "json"]);
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|r| r["dst"]["ip"] == c2ip.to_string())
    });
    assert_eq!(world["dst"]["kind"], "world", "{world:#}");

    // 2. The feed: a file listing c2's address.
    let feed_file = lab.write("feodo.txt", &std::fs::read_to_string(repo("examples/threatfeed/feodo-ipblocklist.txt")).unwrap());
    let feed_yaml = std::fs::read_to_string(repo("examples/threatfeed/20-feodo-feed.yaml"))
        .unwrap()
        .replace("https://feodotracker.abuse.ch/downloads/ipblocklist.txt", &format!("file://{feed_file}"));
    lab.ok(&["apply", "-f", &lab.write("feed.yaml", &feed_yaml)]);
    let nets = wait_for("the set threatfeed.feodo", 20, || {
        let (code, out, _) = lab.porin(&["get", "globalnetworkset", "threatfeed.feodo", "-o", "json"]);
        (code == 0).then(|| serde_json::from_str::<Value>(&out).unwrap())
    });
    assert_eq!(nets["metadata"]["labels"]["threatfeed"], "feodo");
    assert!(lab.set_nets().contains(&format!("{c2ip}/32")), "{:?}", lab.set_nets());
    let st = lab.feed_status();
    assert_eq!((st["entries"].as_u64(), st["lastAttemptOk"].as_bool()), (Some(3), Some(true)), "{st:#}");
    let audit = lab.ok(&["audit"]);
    assert!(audit.contains("system:threatfeed"), "the sync is audited as the system: {audit}");

    // 3. Enforced: connections to c2 are denied, from both namespaces.
    wait_for("shop/frontend denied to c2", 20, || (!reach("shop/frontend")).then_some(()));
    assert!(!reach("ops/loadgen"), "every workload is covered by the security tier");
    let denied = wait_for("a flow to c2 enriched as the feed's network set", 15, || {
        let out = lab.ok(&["observe", "--since", "1m", "--verdict", "denied", "-o", "json"]);
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|r| r["dst"]["ip"] == c2ip.to_string())
    });
    assert_eq!((denied["dst"]["kind"].as_str(), denied["dst"]["network_set"].as_str()), (Some("network_set"), Some("threatfeed.feodo")), "{denied:#}");

    // 4. Alerts name the workload, the feed, the verdict and the trace.
    let is_hit = |a: &Value, ns: &str, pod: &str, verdict: &str| {
        a["kind"] == "threat_feed" && a["name"] == "feodo" && a["verdict"] == verdict && a["src"]["namespace"] == ns && a["src"]["pod"] == pod
    };
    let alert = wait_for("a denied threat_feed alert naming shop/frontend", 20, || {
        lab.alerts(None).into_iter().find(|a| is_hit(a, "shop", "frontend", "denied"))
    });
    assert_eq!(alert["addresses"][0], c2ip.to_string());
    assert!(alert["trace"].as_array().unwrap().iter().any(|t| t.as_str().unwrap().starts_with("security|block-feodo|")), "{alert:#}");
    assert!(alert["description"].as_str().unwrap().contains("shop/frontend"), "{alert:#}");
    // The allowed connection of step 1 happened before the feed existed: no alert for it.
    assert!(!lab.alerts(None).iter().any(|a| a["verdict"] == "allowed"), "{:#?}", lab.alerts(None));
    let table = lab.ok(&["alerts", "--kind", "threat_feed"]);
    assert!(table.starts_with("TIME") && table.contains("shop/frontend connected to"), "{table}");
    let (code, _, err) = lab.porin(&["alerts", "--kind", "nonsense"]);
    assert!(code != 0 && err.contains("kind="), "{err}");

    // 5. Tenant scoping: the ops token sees ops/loadgen's alert, not shop/frontend's.
    wait_for("the ops/loadgen alert", 20, || lab.alerts(None).into_iter().find(|a| is_hit(a, "ops", "loadgen", "denied")));
    let scoped = lab.alerts(Some(&ops_token));
    assert!(scoped.iter().any(|a| is_hit(a, "ops", "loadgen", "denied")), "{scoped:#?}");
    assert!(!scoped.iter().any(|a| a["src"]["namespace"] == "shop" || a["dst"]["namespace"] == "shop"), "{scoped:#?}");

    // 6. The webhook receiver comes up only now; the alerts raised while it was down still reach it.
    let receiver = Receiver::start(&node_ns, port);
    wait_for("the webhook to receive the shop/frontend alert", 20, || {
        receiver.got.lock().unwrap().iter().any(|a| is_hit(a, "shop", "frontend", "denied")).then_some(())
    });
    let metrics = String::from_utf8(
        Command::new("curl").args(["-sf", "--unix-socket", lab.server.as_deref().unwrap(), "http://porin/metrics"]).output().unwrap().stdout,
    )
    .unwrap();
    assert!(metric(&metrics, "porin_alerts_raised_total{kind=\"threat_feed\"}") >= 2, "{metrics}");
    let url = format!("{{url=\"{hook}\"}}");
    assert!(metric(&metrics, &format!("porin_alert_webhook_failures_total{url}")) >= 1, "{metrics}");
    assert!(metric(&metrics, &format!("porin_alert_webhook_deliveries_total{url}")) >= 2, "{metrics}");
    assert!(metric(&metrics, &format!("porin_alert_webhook_retries_total{url}")) >= 1, "{metrics}");

    // The alert log survives an agent restart (and numbering continues after it).
    let before: Vec<Value> = lab.alerts(None);
    lab.ok(&["lab", "--name", lab.name, "agent", "stop", "--node", "0"]);
    lab.ok(&["lab", "--name", lab.name, "agent", "start", "--node", "0"]);
    let after = lab.alerts(None);
    assert_eq!(after, before, "the alerts kept across the restart");
    let max_id = before.iter().filter_map(|a| a["id"].as_u64()).max().unwrap();
    assert!(!reach("shop/cart"));
    let cart = wait_for("an alert for shop/cart after the restart", 20, || lab.alerts(None).into_iter().find(|a| is_hit(a, "shop", "cart", "denied")));
    assert!(cart["id"].as_u64().unwrap() > max_id, "{cart:#} after ids up to {max_id}");

    // 7. Broken feeds keep the last good set, and the status says why.
    let good = lab.set_nets();
    let conditions = |lab: &Lab| lab.feed_status()["errorConditions"].as_array().cloned().unwrap_or_default();
    std::fs::write(&feed_file, "<html>502 Bad Gateway</html>\n").unwrap();
    lab.ok(&["label", "globalthreatfeed", "feodo", "round=bad-content"]);
    let c = wait_for("a ParseFailed condition", 15, || conditions(&lab).into_iter().find(|c| c["type"] == "ParseFailed"));
    assert!(c["message"].as_str().unwrap().contains("no address"), "{c:#}");
    assert_eq!(lab.set_nets(), good, "a bad feed must not change the set");
    assert_eq!(lab.feed_status()["lastAttemptOk"], false);
    std::fs::remove_file(&feed_file).unwrap();
    lab.ok(&["label", "globalthreatfeed", "feodo", "round=missing-file", "--overwrite"]);
    let c = wait_for("a PullFailed condition for the missing file", 15, || conditions(&lab).into_iter().find(|c| c["type"] == "PullFailed"));
    assert!(c["message"].as_str().unwrap().contains("feodo.txt"), "{c:#}");
    assert_eq!(lab.set_nets(), good);
    let unreachable = feed_yaml.replace(&format!("file://{feed_file}"), "http://127.0.0.1:9/ipblocklist.txt");
    lab.ok(&["apply", "-f", &lab.write("feed-unreachable.yaml", &unreachable)]);
    let c = wait_for("a PullFailed condition for the unreachable URL", 15, || {
        conditions(&lab).into_iter().find(|c| c["type"] == "PullFailed" && c["message"].as_str().unwrap().contains("127.0.0.1:9"))
    });
    assert!(c["message"].as_str().unwrap().contains("last good set is kept"), "{c:#}");
    assert_eq!(lab.set_nets(), good);
    assert!(!reach("shop/frontend"), "still denied with the last good set");

    // 8. Push: replaces the set (audited as the caller); an empty push and a scoped caller change nothing.
    let empty = lab.write("empty.txt", "# nothing today\n");
    let (code, _, err) = lab.porin(&["threatfeed", "push", "feodo", "-f", &empty]);
    assert!(code != 0 && err.contains("no address"), "{err}");
    let other = lab.write("push.txt", "198.51.100.99\n");
    let (code, _, err) = lab.porin_as(Some(&ops_token), &["threatfeed", "push", "feodo", "-f", &other]);
    assert!(code != 0 && err.contains("admin only"), "{err}");
    assert_eq!(lab.set_nets(), good);
    let out = lab.ok(&["threatfeed", "push", "feodo", "-f", &other]);
    assert!(out.contains("holds 1 entries"), "{out}");
    assert_eq!(lab.set_nets(), vec!["198.51.100.99/32".to_string()]);
    assert!(lab.feed_status()["source"].as_str().unwrap().starts_with("push by"), "{:#}", lab.feed_status());
    wait_for("shop/frontend reaching c2 again once it left the set", 20, || reach("shop/frontend").then_some(()));
    drop(receiver);
}
