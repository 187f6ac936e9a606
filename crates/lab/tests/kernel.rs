//! Kernel tests: real namespaces, veths, servers and probes. They need root; without root they
//! fail unless `PORIN_SKIP_KERNEL_TESTS=1`. Every test uses its own lab name and state directory,
//! so they can run in parallel (and alongside other people's labs).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use porin_lab::netns::{self, list_netns, netns_exists};
use porin_lab::state::{LabState, Phase, ProcRef};
use porin_lab::{Family, HostSpec, Lab, LabOptions, LabSpec, PodSpec, ProbeOptions, Proto, ServerMode};

const TIMEOUT: Duration = Duration::from_millis(1500);

fn kernel_tests_enabled() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("PORIN_SKIP_KERNEL_TESTS").as_deref() == Ok("1") {
        eprintln!("skipping kernel test: not root and PORIN_SKIP_KERNEL_TESTS=1");
        return false;
    }
    panic!("porin-lab kernel tests need root (network namespaces, veths, raw sockets); run as root or set PORIN_SKIP_KERNEL_TESTS=1 to skip them");
}

/// A unique, short lab name: `t<pid><tag>`.
fn lab_name(tag: &str) -> String {
    let name = format!("t{}{tag}", std::process::id());
    assert!(name.len() <= porin_lab::spec::MAX_LAB_NAME);
    name
}

struct Fixture {
    name: String,
    opts: LabOptions,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let opts = LabOptions {
            state_dir: dir.path().to_path_buf(),
            servers: ServerMode::Spawn { program: PathBuf::from(env!("CARGO_BIN_EXE_porin-lab-serve")), args: vec![] },
            ready_timeout: Duration::from_secs(20),
        };
        Fixture { name: lab_name(tag), opts, _dir: dir }
    }

    fn lab_netns(&self) -> Vec<String> {
        list_netns().into_iter().filter(|n| porin_lab::spec::is_lab_netns(&self.name, n)).collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = porin_lab::down(&self.name, &self.opts);
    }
}

fn ports() -> Vec<(u16, Proto)> {
    vec![(80, Proto::Tcp), (53, Proto::Udp), (9, Proto::Sctp)]
}

fn four_pods(name: &str, nodes: u32) -> LabSpec {
    let mut spec = LabSpec::new(name, nodes);
    for (i, (ns, pod)) in [("x", "a"), ("x", "b"), ("y", "a"), ("y", "b")].into_iter().enumerate() {
        spec.pods.push(PodSpec::new(ns, pod, i as u32 % nodes).with_ports(&ports()));
    }
    spec
}

fn all_pairs(lab: &Lab) -> Vec<(String, String)> {
    let mut keys: Vec<String> = lab.pods().iter().map(|p| p.key.clone()).collect();
    keys.sort();
    let mut out = Vec::new();
    for a in &keys {
        for b in &keys {
            if a != b {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

/// What the lab could conceivably leak into the root namespace: its interfaces, routes to its
/// CIDRs, forwarding. (Other people's objects may come and go meanwhile; they are not compared.)
fn root_snapshot() -> (Vec<String>, String, String) {
    let links = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    let ours = |name: &str| {
        name.starts_with("porinp") || name.starts_with("porin-eth") || name.starts_with("porinu") || name.starts_with("porinh")
            || name.starts_with("porinn") || name.starts_with("porinbr")
    };
    let names: Vec<String> = String::from_utf8_lossy(&links.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().split('@').next().unwrap_or("").to_string()))
        .filter(|n| ours(n))
        .collect();
    let routes = Command::new("ip").args(["route", "show", "table", "all"]).output().unwrap();
    let routes: String = String::from_utf8_lossy(&routes.stdout)
        .lines()
        .filter(|l| l.contains("10.244.") || l.contains("10.242.") || l.contains("169.254.1.1") || l.contains("203.0.113."))
        .collect();
    let fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    (names, routes, fwd)
}

#[test]
fn single_node_lab_everything_reachable_and_unserved_port_blocked() {
    if !kernel_tests_enabled() {
        return;
    }
    let fx = Fixture::new("s");
    let before = root_snapshot();
    assert!(before.0.is_empty(), "lab interfaces in the root netns before the test: {:?}", before.0);
    let t0 = Instant::now();
    let lab = porin_lab::up(&four_pods(&fx.name, 1), &fx.opts).unwrap();
    eprintln!("up (1 node, 4 pods): {:?}", t0.elapsed());
    assert_eq!(root_snapshot(), before, "the root namespace must not change");

    // Topology as promised.
    assert_eq!(lab.nodes().len(), 1);
    assert!(lab.underlay_netns().is_none());
    for p in lab.pods() {
        assert!(netns_exists(&p.netns) && p.netns_path.exists() && p.node_netns_path.exists());
        assert_eq!(p.node_netns, format!("porin-{}-n0", fx.name));
        assert!(p.host_ifname.starts_with("porin") && p.host_ifname.len() <= 15);
        let idx = netns::link_indexes(&p.node_netns).unwrap();
        assert!(idx.contains(&(p.host_ifname.clone(), p.host_ifindex)), "{idx:?}");
        assert_eq!(p.pod_ifname, "porin-eth0");
        assert_eq!(p.ipv4.octets()[..3], [10, 244, 0]);
    }
    assert_eq!(netns::read_sysctl(&lab.nodes()[0].netns, "net/ipv4/ip_forward").unwrap(), "1");
    let via_exec = Command::new("ip")
        .args(["netns", "exec", &lab.nodes()[0].netns, "sysctl", "-n", "net.ipv4.ip_forward"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&via_exec.stdout).trim(), "1");

    let status = porin_lab::status(&fx.name, &fx.opts).unwrap();
    assert!(status.alive && status.phase == Some(Phase::Up));
    assert!(status.namespaces.iter().all(|(_, exists)| *exists));

    // Everything reachable with no policy; port 81 has no server anywhere.
    let mut probe_ports = ports();
    probe_ports.extend([(81, Proto::Tcp), (81, Proto::Udp), (81, Proto::Sctp)]);
    let t0 = Instant::now();
    let m = lab.probe(&probe_ports, TIMEOUT).unwrap();
    eprintln!("probe 4 pods x 6 ports (3 unserved): {:?}", t0.elapsed());
    let all = all_pairs(&lab);
    for (port, proto) in ports() {
        assert_eq!(m.get(port, proto).unwrap().allowed, all, "{port}/{proto}");
    }
    for proto in Proto::ALL {
        assert!(m.get(81, proto).unwrap().allowed.is_empty(), "81/{proto} has no server");
    }
    // Refused probes are answered, not timed out.
    assert!(t0.elapsed() < TIMEOUT, "RST / ICMP / ABORT should decide quickly");

    // JSON shape.
    let json = serde_json::to_value(&m).unwrap();
    let first = &json["matrices"][0];
    assert_eq!(first["port"], 80);
    assert_eq!(first["protocol"], "TCP");
    assert_eq!(first["pods"], serde_json::json!(["x/a", "x/b", "y/a", "y/b"]));
    assert_eq!(first["allowed"][0], serde_json::json!(["x/a", "x/b"]));
    assert_eq!(first.as_object().unwrap().keys().collect::<Vec<_>>(), ["port", "protocol", "pods", "allowed"]);

    assert!(lab.probe_one("x/a", "y/b", 9, Proto::Sctp, TIMEOUT).unwrap());
    for proto in Proto::ALL {
        let port = ports().into_iter().find(|p| p.1 == proto).unwrap().0;
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(lab.probe_one("x/a", "y/b", port, proto, TIMEOUT).unwrap());
        }
        eprintln!("probe_one {proto}: {:?} each", t0.elapsed() / 20);
    }
    assert!(!lab.probe_one("x/a", "y/b", 10, Proto::Sctp, TIMEOUT).unwrap());
    assert!(lab.probe_one("nope/x", "y/b", 9, Proto::Sctp, TIMEOUT).is_err());

    // exec runs inside the pod.
    let out = lab.exec("x/b", &["ip", "-o", "-4", "addr", "show", "dev", "porin-eth0"]).unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&lab.pod("x/b").unwrap().ipv4.to_string()));

    // A second up of a live lab is refused.
    assert!(matches!(porin_lab::up(&four_pods(&fx.name, 1), &fx.opts), Err(porin_lab::LabError::AlreadyUp { .. })));

    let server = lab.state().servers[0];
    let report = porin_lab::down(&fx.name, &fx.opts).unwrap();
    assert_eq!(report.removed_netns.len(), 5, "{report:?}");
    assert!(fx.lab_netns().is_empty());
    assert!(!server.is_alive());
    assert!(!fx.opts.state_dir.join(format!("{}.json", fx.name)).exists());
    assert_eq!(root_snapshot(), before, "the root namespace must not change");
}

#[test]
fn two_node_lab_routes_between_nodes_v4_and_v6() {
    if !kernel_tests_enabled() {
        return;
    }
    let fx = Fixture::new("m");
    let mut spec = four_pods(&fx.name, 2);
    spec.ipv6 = true;
    let t0 = Instant::now();
    let lab = porin_lab::up(&spec, &fx.opts).unwrap();
    eprintln!("up (2 nodes, 4 pods, dual stack): {:?}", t0.elapsed());
    assert_eq!(lab.underlay_netns(), Some(format!("porin-{}-u", fx.name).as_str()));
    assert_eq!(lab.pod("x/b").unwrap().node, 1);
    assert_eq!(lab.pod("x/b").unwrap().ipv4.octets()[..3], [10, 244, 1]);
    assert!(lab.pod("x/b").unwrap().ipv6.unwrap().to_string().starts_with("fd00:244:1::"));

    let all = all_pairs(&lab);
    for family in [Family::V4, Family::V6] {
        let t0 = Instant::now();
        let m = porin_lab::probe_with(&lab, &ports(), &ProbeOptions { timeout: TIMEOUT, family }).unwrap();
        eprintln!("probe 2 nodes {family:?}: {:?}", t0.elapsed());
        for mx in &m.matrices {
            assert_eq!(mx.allowed, all, "{family:?} {}/{}", mx.port, mx.protocol);
        }
    }
    lab.down().unwrap();
    assert!(fx.lab_netns().is_empty());
}

fn nft_in(netns: &str, ruleset: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft is installed");
    child.stdin.take().unwrap().write_all(ruleset.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft failed in {netns}:\n{ruleset}");
}

#[test]
fn drop_rule_in_node_netns_blocks_exactly_the_expected_pairs() {
    if !kernel_tests_enabled() {
        return;
    }
    let fx = Fixture::new("d");
    let lab = porin_lab::up(&four_pods(&fx.name, 1), &fx.opts).unwrap();
    let node = lab.nodes()[0].netns.clone();
    let xb = lab.pod("x/b").unwrap().ipv4;
    let ya = lab.pod("y/a").unwrap().ipv4;
    let yb = lab.pod("y/b").unwrap().ipv4;
    // Inside the node netns only: TCP 80 to x/b, UDP 53 from y/a, SCTP to y/b from x/a.
    let xa = lab.pod("x/a").unwrap().ipv4;
    nft_in(
        &node,
        &format!(
            "table inet porin_test {{ chain porin_fwd {{ type filter hook forward priority 0; policy accept;
               ip daddr {xb} tcp dport 80 drop
               ip saddr {ya} udp dport 53 drop
               ip saddr {xa} ip daddr {yb} sctp dport 9 drop
            }}
            }}"
        ),
    );
    let t0 = Instant::now();
    let m = lab.probe(&ports(), Duration::from_millis(500)).unwrap();
    let took = t0.elapsed();
    eprintln!("probe with drops (timeout 500ms): {took:?}");
    let all = all_pairs(&lab);
    let expect = |blocked: &dyn Fn(&str, &str) -> bool| -> Vec<(String, String)> {
        all.iter().filter(|(a, b)| !blocked(a, b)).cloned().collect()
    };
    assert_eq!(m.get(80, Proto::Tcp).unwrap().allowed, expect(&|_, b| b == "x/b"));
    assert_eq!(m.get(53, Proto::Udp).unwrap().allowed, expect(&|a, _| a == "y/a"));
    assert_eq!(m.get(9, Proto::Sctp).unwrap().allowed, expect(&|a, b| a == "x/a" && b == "y/b"));
    assert!(took < Duration::from_millis(3000), "dropped probes must time out together, took {took:?}");

    // Removing the rule restores everything.
    nft_in(&node, "delete table inet porin_test");
    let m = lab.probe(&ports(), TIMEOUT).unwrap();
    assert!(m.matrices.iter().all(|mx| mx.allowed == all));
}

#[test]
fn cleanup_stale_removes_a_crashed_lab() {
    if !kernel_tests_enabled() {
        return;
    }
    // Crash 1: the server process dies; the state file and namespaces stay behind.
    let fx = Fixture::new("c");
    let lab = porin_lab::up(&four_pods(&fx.name, 2), &fx.opts).unwrap();
    assert_eq!(fx.lab_netns().len(), 7);
    let server = lab.state().servers[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(server.pid), None);
    assert!(!porin_lab::status(&fx.name, &fx.opts).unwrap().alive);
    let removed = porin_lab::cleanup_stale(&fx.opts).unwrap();
    // (Parallel tests' dead labs may be swept too; count only ours.)
    let ours = removed.iter().filter(|n| porin_lab::spec::is_lab_netns(&fx.name, n)).count();
    assert_eq!(ours, 7, "{removed:?}");
    assert!(fx.lab_netns().is_empty());
    assert!(porin_lab::list(&fx.opts).is_empty());

    // Crash 2: the servers die and the state file is lost too: the namespace markers suffice,
    // even from another state directory.
    let fx2 = Fixture::new("e");
    let lab = porin_lab::up(&four_pods(&fx2.name, 1), &fx2.opts).unwrap();
    let server = lab.state().servers[0];
    std::fs::remove_file(lab.state_path()).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(server.pid), None);
    let other_dir = tempfile::tempdir().unwrap();
    porin_lab::cleanup_stale(&LabOptions::with_state_dir(other_dir.path())).unwrap();
    assert!(fx2.lab_netns().is_empty(), "{:?}", fx2.lab_netns());

    // Crash 3: `up` itself died half-way (phase creating, creator dead, one namespace made).
    let fx3 = Fixture::new("h");
    let mut child = Command::new("true").spawn().unwrap();
    let dead = ProcRef::of(child.id() as i32).unwrap_or(ProcRef { pid: child.id() as i32, start_time: 1 });
    child.wait().unwrap();
    let ns = format!("porin-{}-n0", fx3.name);
    let st = LabState {
        version: 1,
        name: fx3.name.clone(),
        phase: Phase::Creating,
        spec: LabSpec::new(fx3.name.clone(), 1),
        creator: dead,
        creator_owns: true,
        servers: vec![],
        namespaces: vec![ns.clone(), format!("porin-{}-p0", fx3.name)],
        underlay_netns: None,
        nodes: vec![],
        pods: vec![],
        hosts: vec![],
        server_log: None,
        control: None,
    };
    let path = fx3.opts.state_dir.join(format!("{}.json", fx3.name));
    porin_lab::state::save(&path, &st).unwrap();
    netns::ip(&["netns", "add", &ns]).unwrap();
    let removed = porin_lab::cleanup_stale(&fx3.opts).unwrap();
    assert!(removed.contains(&ns), "{removed:?}");
    assert!(!netns_exists(&ns) && !path.exists());
}

#[test]
fn up_after_crash_replaces_the_dead_lab_and_in_process_servers_work() {
    if !kernel_tests_enabled() {
        return;
    }
    let fx = Fixture::new("r");
    let lab = porin_lab::up(&four_pods(&fx.name, 1), &fx.opts).unwrap();
    let server = lab.state().servers[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(server.pid), None);
    // The next start cleans up after the crash by itself; this time servers run in-process.
    let opts = LabOptions { servers: ServerMode::InProcess, ..fx.opts.clone() };
    let lab = porin_lab::up(&four_pods(&fx.name, 1), &opts).unwrap().guard();
    assert!(lab.state().servers.is_empty() && lab.state().creator_owns);
    let keys: BTreeSet<&str> = lab.pods().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys.len(), 4);
    assert!(lab.probe_one("y/b", "x/a", 80, Proto::Tcp, TIMEOUT).unwrap());
    assert!(lab.probe_one("y/b", "x/a", 53, Proto::Udp, TIMEOUT).unwrap());
    assert!(lab.probe_one("y/b", "x/a", 9, Proto::Sctp, TIMEOUT).unwrap());
    drop(lab);
    assert!(fx.lab_netns().is_empty());
    assert!(porin_lab::list(&fx.opts).is_empty());
}

#[test]
fn nine_pods_three_nodes_mostly_dropped_probe_finishes_in_about_one_timeout() {
    if !kernel_tests_enabled() {
        return;
    }
    let fx = Fixture::new("n");
    let mut spec = LabSpec::new(fx.name.clone(), 3);
    let two_ports = [(80, Proto::Tcp), (443, Proto::Tcp), (53, Proto::Udp), (5353, Proto::Udp), (9, Proto::Sctp), (10, Proto::Sctp)];
    for k in 0..9u32 {
        spec.pods.push(PodSpec::new(format!("ns{}", k % 3), format!("pod{k}"), k % 3).with_ports(&two_ports));
    }
    let t0 = Instant::now();
    let lab = porin_lab::up(&spec, &fx.opts).unwrap();
    eprintln!("up (3 nodes, 9 pods): {:?}", t0.elapsed());
    // Node 0 forwards nothing: its pods are cut off; pods on nodes 1 and 2 still talk.
    nft_in(
        &lab.nodes()[0].netns,
        "table inet porin_test { chain porin_fwd { type filter hook forward priority 0; policy drop; }\n}",
    );
    let t0 = Instant::now();
    let m = lab.probe(&two_ports, Duration::from_millis(500)).unwrap();
    let took = t0.elapsed();
    eprintln!("probe 9 pods x 2 ports x 3 protocols (432 probes, 252 dropped, timeout 500ms): {took:?}");
    let on_node0 = |key: &str| lab.pod(key).unwrap().node == 0;
    let expected: Vec<(String, String)> =
        all_pairs(&lab).into_iter().filter(|(a, b)| !on_node0(a) && !on_node0(b)).collect();
    assert_eq!(expected.len(), 30);
    for mx in &m.matrices {
        assert_eq!(mx.allowed, expected, "{}/{}", mx.port, mx.protocol);
    }
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// External hosts: outside the pod CIDRs, behind one node; every pod on every node reaches their served ports
/// (and not the others), the hosts reach the pods back, a node forwards but the root namespace sees nothing,
/// and `down` removes the host namespaces too.
#[test]
fn external_hosts_are_reachable_through_their_node_from_every_node() {
    if !kernel_tests_enabled() {
        return;
    }
    let fx = Fixture::new("x");
    let before = root_snapshot();
    let mut spec = four_pods(&fx.name, 2);
    spec.ipv6 = true;
    spec.hosts.push(HostSpec { ports: vec![(443, Proto::Tcp), (53, Proto::Udp)], ..HostSpec::new("c2") });
    spec.hosts.push(HostSpec { node: 1, ipv4: Some("198.51.100.7".parse().unwrap()), ports: vec![(80, Proto::Tcp)], ..HostSpec::new("web") });
    let lab = porin_lab::up(&spec, &fx.opts).unwrap();
    let c2 = lab.host("c2").unwrap().clone();
    let web = lab.host("web").unwrap().clone();
    assert_eq!(c2.ipv4, std::net::Ipv4Addr::new(203, 0, 113, 10));
    assert_eq!(c2.netns, format!("porin-{}-h0", fx.name));
    assert_eq!(web.node_netns, format!("porin-{}-n1", fx.name));
    assert!(netns_exists(&c2.netns) && netns_exists(&web.netns));
    for pod in lab.pods() {
        for (host, port, proto, served) in
            [(&c2, 443, Proto::Tcp, true), (&c2, 53, Proto::Udp, true), (&c2, 80, Proto::Tcp, false), (&web, 80, Proto::Tcp, true)]
        {
            let ok = lab.probe_addr(&pod.key, host.ipv4.into(), port, proto, TIMEOUT).unwrap();
            assert_eq!(ok, served, "{} -> {} {}:{port}/{proto}", pod.key, host.name, host.ipv4);
        }
        let v6 = c2.ipv6.expect("ipv6 lab gives hosts IPv6");
        assert!(lab.probe_addr(&pod.key, v6.into(), 443, Proto::Tcp, TIMEOUT).unwrap(), "{} -> c2 over IPv6", pod.key);
        // The internet reaches the pods too (ingress from outside the cluster).
        assert!(lab.probe_addr("web", pod.ipv4.into(), 80, Proto::Tcp, TIMEOUT).unwrap(), "web -> {}", pod.key);
    }
    // Hosts are not pods: probes among pods do not include them, and hosts see each other only through nodes.
    assert_eq!(lab.pods().len(), 4);
    assert!(lab.probe_addr("c2", web.ipv4.into(), 80, Proto::Tcp, TIMEOUT).unwrap());
    let out = lab.exec("c2", &["ip", "-4", "-o", "addr", "show", "dev", "porin-eth0"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("203.0.113.10/32"), "{out:?}");
    assert_eq!(root_snapshot(), before, "the lab changed the root namespace");
    let report = lab.down().unwrap();
    assert!(!netns_exists(&c2.netns) && !netns_exists(&web.netns), "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(fx.lab_netns().is_empty(), "{:?}", fx.lab_netns());
}
