//! Real-traffic tests: a "node" namespace with two "pod" namespaces behind
//! veth pairs; Porin attaches to the host side of each veth inside the node
//! namespace. Traffic is real TCP/UDP between the pod namespaces. Nothing in
//! the root namespace is touched (interfaces are created inside the test
//! namespaces; only /var/run/netns entries are added and removed).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use porin_dataplane::{Action, Dataplane, DataplaneOptions, EndpointPolicy, EventType, PolicyEntry, Reason};

const A_IP: &str = "10.77.1.2";
const B_IP: &str = "10.77.2.2";
const A_ID: u32 = 1001;
const B_ID: u32 = 1002;
const HOST_ID: u32 = 1;
const WORLD_ID: u32 = 2;
const TIMEOUT: Duration = Duration::from_millis(700);
/// Not pod A's address: a "trusted" workload's, which pod A forges.
const TRUSTED_IP: &str = "10.77.3.2";
const TRUSTED_ID: u32 = 1003;

fn addr(a: &str) -> Vec<std::net::IpAddr> {
    vec![a.parse().unwrap()]
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn ns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// Removes namespaces left by earlier runs whose process is gone.
fn remove_stale_namespaces() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(rd) = std::fs::read_dir("/var/run/netns") else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("porin-dpt-") else { continue };
            let pid: i32 = rest.split('-').next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let alive = pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists();
            if !alive || pid == std::process::id() as i32 {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
    });
}

/// node + pod A + pod B namespaces; deleted on drop.
struct Lab {
    node: String,
    a: String,
    b: String,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        remove_stale_namespaces();
        let pid = std::process::id();
        let lab = Lab {
            node: format!("porin-dpt-{pid}-{tag}-n"),
            a: format!("porin-dpt-{pid}-{tag}-a"),
            b: format!("porin-dpt-{pid}-{tag}-b"),
        };
        for n in [&lab.node, &lab.a, &lab.b] {
            ip(&["netns", "add", n]);
        }
        let (node, a, b) = (lab.node.as_str(), lab.a.as_str(), lab.b.as_str());
        // veth pairs created INSIDE the node namespace, peers moved to the pods
        ip(&["-n", node, "link", "add", "porinha", "type", "veth", "peer", "name", "porinpa", "netns", a]);
        ip(&["-n", node, "link", "add", "porinhb", "type", "veth", "peer", "name", "porinpb", "netns", b]);
        ip(&["-n", node, "addr", "add", "10.77.1.1/24", "dev", "porinha"]);
        ip(&["-n", node, "addr", "add", "10.77.2.1/24", "dev", "porinhb"]);
        for (ns, dev, addr, gw) in [(a, "porinpa", "10.77.1.2/24", "10.77.1.1"), (b, "porinpb", "10.77.2.2/24", "10.77.2.1")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "route", "add", "default", "via", gw]);
        }
        for dev in ["porinha", "porinhb", "lo"] {
            ip(&["-n", node, "link", "set", dev, "up"]);
        }
        let out = Command::new("ip")
            .args(["netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .output()
            .expect("sysctl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        lab
    }

    fn node_ns(&self) -> PathBuf {
        ns_path(&self.node)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in [&self.node, &self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Runs `f` on a new thread inside namespace `ns`.
fn spawn_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let path = ns_path(ns);
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

fn run_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in(ns, f).join().expect("thread")
}

/// Echo servers in pod B: TCP on the given ports and UDP on the given ports.
struct Servers {
    stop: Arc<AtomicBool>,
}

impl Servers {
    fn start(ns: &str, tcp_ports: &[u16], udp_ports: &[u16]) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        for &p in tcp_ports {
            let (stop, tx) = (stop.clone(), tx.clone());
            spawn_in(ns, move || {
                let l = TcpListener::bind(("0.0.0.0", p)).expect("bind tcp");
                l.set_nonblocking(true).unwrap();
                tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 1024];
                                while let Ok(n) = s.read(&mut buf) {
                                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        for &p in udp_ports {
            let (stop, tx) = (stop.clone(), tx.clone());
            spawn_in(ns, move || {
                let s = UdpSocket::bind(("0.0.0.0", p)).expect("bind udp");
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                tx.send(()).unwrap();
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(&buf[..n], from);
                    }
                }
            });
        }
        for _ in 0..tcp_ports.len() + udp_ports.len() {
            rx.recv().unwrap();
        }
        Servers { stop }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn tcp_echo_once(ns: &str, dst: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{dst}:{port}").parse().unwrap();
    run_in(ns, move || {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, TIMEOUT) else { return false };
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        if s.write_all(b"ping").is_err() {
            return false;
        }
        let mut b = [0u8; 4];
        s.read_exact(&mut b).is_ok() && &b == b"ping"
    })
}

fn udp_echo_once(ns: &str, dst: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{dst}:{port}").parse().unwrap();
    run_in(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        for _ in 0..2 {
            s.send_to(b"hello", addr).unwrap();
            let mut b = [0u8; 16];
            if let Ok((5, _)) = s.recv_from(&mut b) {
                return true;
            }
        }
        false
    })
}

fn allow(identity: u32, proto: u8, port: u16) -> PolicyEntry {
    PolicyEntry { identity: Some(identity), proto: Some(proto), port_prefix: Some((port, 16)), action: Action::Allow, rule_id: u32::from(port) }
}

fn ipcache() -> Vec<(ipnet::IpNet, u32)> {
    [("0.0.0.0/0", WORLD_ID), ("10.77.1.2/32", A_ID), ("10.77.2.2/32", B_ID), ("10.77.3.2/32", TRUSTED_ID), ("10.77.1.1/32", HOST_ID), ("10.77.2.1/32", HOST_ID)]
        .iter()
        .map(|(n, i)| (n.parse().unwrap(), *i))
        .collect()
}

struct Setup {
    dp: Dataplane,
    ifa: u32,
    ifb: u32,
}

fn setup(lab: &Lab, fs: &Bpffs, b_ingress: Vec<PolicyEntry>) -> Setup {
    let mut dp = Dataplane::open(&fs.pin_dir(), &DataplaneOptions::default()).expect("open");
    let node = lab.node_ns();
    let ifa = dp.attach(Some(&node), "porinha").expect("attach a");
    let ifb = dp.attach(Some(&node), "porinhb").expect("attach b");
    dp.set_ipcache(ipcache()).unwrap();
    dp.set_endpoint(ifa, EndpointPolicy { endpoint_id: 1, ingress: vec![], egress: vec![allow(B_ID, TCP, 8080), allow(B_ID, TCP, 8081), allow(B_ID, UDP, 5353), allow(B_ID, UDP, 5354)], addrs: addr(A_IP) })
        .unwrap();
    dp.set_endpoint(ifb, EndpointPolicy { endpoint_id: 2, ingress: b_ingress, egress: vec![], addrs: addr(B_IP) }).unwrap();
    Setup { dp, ifa, ifb }
}

#[test]
fn real_traffic_allowed_and_denied() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new("ad");
    let fs = Bpffs::new();
    let mut s = setup(&lab, &fs, vec![allow(A_ID, TCP, 8080), allow(A_ID, UDP, 5353)]);
    let _srv = Servers::start(&lab.b, &[8080, 8081], &[5353, 5354]);
    let mut ev = s.dp.events().unwrap();

    assert!(tcp_echo_once(&lab.a, B_IP, 8080), "tcp/8080 allowed both sides");
    assert!(!tcp_echo_once(&lab.a, B_IP, 8081), "tcp/8081 not in B's ingress policy");
    assert!(udp_echo_once(&lab.a, B_IP, 5353), "udp/5353 allowed");
    assert!(!udp_echo_once(&lab.a, B_IP, 5354), "udp/5354 denied");
    // B may not open connections to A at all
    let _srv_a = Servers::start(&lab.a, &[9090], &[]);
    assert!(!tcp_echo_once(&lab.b, A_IP, 9090));

    let c = s.dp.counters().unwrap();
    assert!(c.get(Reason::AllowNew) >= 4, "{c:?}");
    assert!(c.get(Reason::AllowEstablished) > 0);
    assert!(c.get(Reason::DropNoPolicy) >= 3, "{c:?}");
    assert!(c.get(Reason::AllowInfra) > 0, "ARP passed");
    let evs: Vec<_> = ev.drain().into_iter().map(Result::unwrap).collect();
    assert!(evs.iter().any(|e| e.kind == EventType::Denied && e.dport == 8081 && e.endpoint_id == 2 && e.peer_identity == A_ID));
    assert!(evs.iter().any(|e| e.kind == EventType::NewAllowed && e.dport == 8080 && e.ifindex == s.ifa));
    assert!(evs.iter().any(|e| e.kind == EventType::Close && e.dport == 8080));
    // The live UDP flow's conntrack entries read back as progress events whose tuples are the ones the
    // ring-buffer events carry (same byte order and direction), so the flow pipeline can match them.
    let opened = evs.iter().find(|e| e.kind == EventType::NewAllowed && e.proto == 17 && e.dport == 5353 && e.endpoint_id == 1).unwrap();
    let mut progress = Vec::new();
    assert!(ev.conntrack_progress(&mut progress).unwrap() > 0);
    let fwd = progress
        .iter()
        .find(|p| p.endpoint_id == 1 && p.dir == opened.dir && p.src == opened.src && p.dst == opened.dst && p.sport == opened.sport && p.dport == 5353)
        .unwrap_or_else(|| panic!("no progress entry for {opened:?} in {progress:?}"));
    assert!(fwd.kind == EventType::Progress && fwd.packets >= 1 && fwd.bytes > 0, "{fwd:?}");
    assert!(
        progress.iter().any(|p| p.endpoint_id == 1 && p.dir != opened.dir && p.src == opened.dst && p.sport == 5353 && p.dport == opened.sport && p.packets >= 1),
        "the reply direction's entry: {progress:?}"
    );
    assert_eq!(s.dp.attachments().unwrap().len(), 4);
    let _ = s.ifb;
}

#[test]
fn established_tcp_survives_unrelated_change_and_is_cut_by_revocation() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new("rv");
    let fs = Bpffs::new();
    let mut s = setup(&lab, &fs, vec![allow(A_ID, TCP, 8080)]);
    let _srv = Servers::start(&lab.b, &[8080], &[]);
    let (to_client, from_test) = std::sync::mpsc::channel::<Option<()>>();
    let (to_test, results) = std::sync::mpsc::channel::<bool>();
    let client = spawn_in(&lab.a, move || {
        let addr: SocketAddr = format!("{B_IP}:8080").parse().unwrap();
        let mut c = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        while let Ok(Some(())) = from_test.recv() {
            let ok = c.write_all(b"data").is_ok() && {
                let mut b = [0u8; 4];
                c.read_exact(&mut b).is_ok()
            };
            to_test.send(ok).unwrap();
        }
    });
    let exchange = || {
        to_client.send(Some(())).unwrap();
        results.recv().unwrap()
    };
    assert!(exchange(), "connection works");
    // unrelated change to B's ingress policy (and to A's egress)
    s.dp.set_endpoint(s.ifb, EndpointPolicy { endpoint_id: 2, ingress: vec![allow(A_ID, TCP, 8080), allow(A_ID, UDP, 53)], egress: vec![], addrs: addr(B_IP) })
        .unwrap();
    assert!(exchange(), "unrelated change keeps the connection");
    assert!(exchange());
    assert!(s.dp.counters().unwrap().get(Reason::Revalidated) >= 1);
    // revoking change: B no longer accepts A on 8080
    s.dp.set_endpoint(s.ifb, EndpointPolicy { endpoint_id: 2, ingress: vec![allow(A_ID, UDP, 53)], egress: vec![], addrs: addr(B_IP) }).unwrap();
    assert!(!exchange(), "revoked connection is cut");
    to_client.send(None).unwrap();
    client.join().unwrap();
    assert!(s.dp.counters().unwrap().get(Reason::DropRevoked) >= 1);
    let mut ev = s.dp.events().unwrap();
    let evs: Vec<_> = ev.drain().into_iter().map(Result::unwrap).collect();
    assert!(evs.iter().any(|e| e.kind == EventType::Revoked && e.endpoint_id == 2 && e.dport == 8080), "{evs:?}");
}

#[test]
fn enforcement_outlives_the_handle_and_is_read_back() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new("pn");
    let fs = Bpffs::new();
    let _srv = Servers::start(&lab.b, &[8080, 8081], &[]);
    let (ifa, ifb) = {
        let s = setup(&lab, &fs, vec![allow(A_ID, TCP, 8080)]);
        assert!(tcp_echo_once(&lab.a, B_IP, 8080));
        assert!(!tcp_echo_once(&lab.a, B_IP, 8081));
        (s.ifa, s.ifb)
        // Dataplane dropped here: programs stay attached through pinned links
    };
    assert!(tcp_echo_once(&lab.a, B_IP, 8080), "still allowed with no process");
    assert!(!tcp_echo_once(&lab.a, B_IP, 8081), "still denied with no process");

    let mut dp = Dataplane::open(&fs.pin_dir(), &DataplaneOptions::default()).unwrap();
    let rb = dp.last_read_back();
    assert_eq!(rb.endpoints, 2);
    assert_eq!(dp.engine().endpoint_ifindexes(), vec![ifa.min(ifb), ifa.max(ifb)]);
    let atts = dp.attachments().unwrap();
    assert_eq!(atts.iter().map(|a| (a.ifname.as_str(), a.hook.as_str())).collect::<Vec<_>>(), vec![
        ("porinha", "egress"),
        ("porinha", "ingress"),
        ("porinhb", "egress"),
        ("porinhb", "ingress"),
    ]);
    // re-attach swaps the programs under the pinned links; still enforcing
    let node = lab.node_ns();
    assert_eq!(dp.attach(Some(&node), "porinha").unwrap(), ifa);
    assert_eq!(dp.attach(Some(&node), "porinhb").unwrap(), ifb);
    assert!(tcp_echo_once(&lab.a, B_IP, 8080));
    assert!(!tcp_echo_once(&lab.a, B_IP, 8081));
    assert_eq!(dp.sweep_links(Some(&node)).unwrap(), 0);
    // the new handle can change policy
    dp.set_endpoint(ifb, EndpointPolicy { endpoint_id: 2, ingress: vec![allow(A_ID, TCP, 8081)], egress: vec![], addrs: addr(B_IP) }).unwrap();
    assert!(tcp_echo_once(&lab.a, B_IP, 8081));
    assert!(!tcp_echo_once(&lab.a, B_IP, 8080));
    // detaching removes enforcement from that interface
    assert_eq!(dp.detach(Some(&node), "porinhb").unwrap(), 2);
    assert!(tcp_echo_once(&lab.a, B_IP, 8080), "B no longer enforced, A's egress allows 8080");
    assert_eq!(dp.attachments().unwrap().len(), 2);
}

/// A UDP receiver in `ns` on `port`; returns the sources of the datagrams that
/// arrived within `dur`.
fn udp_sources(ns: &str, port: u16, dur: Duration) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = spawn_in(ns, move || {
        let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        tx.send(()).unwrap();
        let (mut out, t0) = (Vec::new(), std::time::Instant::now());
        let mut buf = [0u8; 64];
        while t0.elapsed() < dur {
            if let Ok((_, from)) = s.recv_from(&mut buf) {
                out.push(from);
            }
        }
        out
    });
    rx.recv().unwrap();
    h
}

/// Sends a few UDP datagrams from `ns`, bound to source `src`.
fn udp_send_from(ns: &str, src: &str, dst: &str, port: u16) {
    let (src, dst): (std::net::IpAddr, SocketAddr) = (src.parse().unwrap(), format!("{dst}:{port}").parse().unwrap());
    run_in(ns, move || {
        let s = UdpSocket::bind((src, 0)).expect("bind source");
        for _ in 0..3 {
            s.send_to(b"forged?", dst).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn a_pod_cannot_send_with_a_forged_source() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new("sp");
    // Pod A owns a second address in its namespace (the trusted workload's) and
    // binds to it. B's ingress trusts that identity on 5354 and A on 5353.
    ip(&["-n", &lab.a, "addr", "add", &format!("{TRUSTED_IP}/32"), "dev", "porinpa"]);
    // The node must not drop the forged packet itself (rp_filter): Porin is what is tested.
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.node, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.porinha.rp_filter=0"])
        .output()
        .expect("sysctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fs = Bpffs::new();
    let mut s = setup(&lab, &fs, vec![allow(A_ID, UDP, 5353), allow(TRUSTED_ID, UDP, 5354)]);
    let mut ev = s.dp.events().unwrap();

    // forged source: dropped at A's host veth, counted, reported
    let rx = udp_sources(&lab.b, 5354, Duration::from_millis(500));
    udp_send_from(&lab.a, TRUSTED_IP, B_IP, 5354);
    assert_eq!(rx.join().unwrap(), vec![], "forged datagrams must not reach B");
    let c = s.dp.counters().unwrap();
    assert!(c.get(Reason::DropSpoofed) >= 3, "{c:?}");
    let evs: Vec<_> = ev.drain().into_iter().map(Result::unwrap).collect();
    // (other spoofed-counted packets may be the pod's own IPv6 MLD reports from its link-local address)
    let forged = evs
        .iter()
        .filter(|e| {
            e.kind == EventType::Denied
                && e.reason == Reason::DropSpoofed
                && e.endpoint_id == 1
                && e.ifindex == s.ifa
                && e.src == Some(TRUSTED_IP.parse().unwrap())
                && e.dport == 5354
        })
        .count();
    assert_eq!(forged, 3, "{evs:?}");
    // its real address still works (same socket API, bound to A's own address)
    let rx = udp_sources(&lab.b, 5353, Duration::from_millis(500));
    udp_send_from(&lab.a, A_IP, B_IP, 5353);
    let got = rx.join().unwrap();
    assert!(!got.is_empty() && got.iter().all(|f| f.ip().to_string() == A_IP), "{got:?}");

    // Control: without Porin on A's interface the same forged datagrams do
    // reach B (whose ingress policy is fooled) — the check above is what stops them.
    assert_eq!(s.dp.detach(Some(&lab.node_ns()), "porinha").unwrap(), 2);
    let rx = udp_sources(&lab.b, 5354, Duration::from_millis(500));
    udp_send_from(&lab.a, TRUSTED_IP, B_IP, 5354);
    let got = rx.join().unwrap();
    assert!(!got.is_empty() && got.iter().all(|f| f.ip().to_string() == TRUSTED_IP), "{got:?}");
}

/// Internet checksum.
fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn v4(a: &str) -> [u8; 4] {
    a.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

/// An IPv4 packet (header checksum filled) carrying `l4` as `proto`.
fn ipv4_packet(src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = ipv4_raw(v4(src), v4(dst), proto, 7, 0, &[], l4);
    let c = csum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// An ICMP message with its checksum filled.
fn icmp_msg(typ: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut m = icmp(typ, code, rest, payload);
    let c = csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Sends a whole IPv4 packet (header included) from namespace `ns` with a raw socket.
fn raw_send(ns: &str, packet: Vec<u8>, count: usize) {
    run_in(ns, move || {
        // SAFETY: plain socket syscalls on a descriptor owned by this closure.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_addr.s_addr = u32::from_ne_bytes([packet[16], packet[17], packet[18], packet[19]]);
            for _ in 0..count {
                let n = libc::sendto(
                    fd,
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                );
                assert_eq!(n, packet.len() as isize, "sendto: {}", std::io::Error::last_os_error());
                std::thread::sleep(Duration::from_millis(10));
            }
            libc::close(fd);
        }
    });
}

/// ICMP messages (source, type, IP length) that arrive in `ns` within `dur`.
fn icmp_arrivals(ns: &str, dur: Duration) -> std::thread::JoinHandle<Vec<(std::net::Ipv4Addr, u8, usize)>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = spawn_in(ns, move || {
        // SAFETY: plain socket syscalls on a descriptor owned by this closure.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
            assert!(fd >= 0, "raw icmp socket: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), std::mem::size_of::<libc::timeval>() as u32);
            tx.send(()).unwrap();
            let (mut out, t0) = (Vec::new(), std::time::Instant::now());
            let mut buf = [0u8; 4096];
            while t0.elapsed() < dur {
                let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                if n >= 28 {
                    let ihl = usize::from(buf[0] & 0xf) * 4;
                    out.push((std::net::Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]), buf[ihl], n as usize));
                }
            }
            libc::close(fd);
            out
        }
    });
    rx.recv().unwrap();
    h
}

/// Red-team finding "ICMP errors as a covert egress channel", on real packets:
/// pod A has one allowed UDP flow to B, then sends 1 KB ICMP "port
/// unreachable" messages quoting that flow to the node (10.77.1.1), which its
/// egress policy does not allow.
#[test]
fn icmp_errors_are_not_a_covert_channel_but_real_errors_still_arrive() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new("ic");
    let fs = Bpffs::new();
    let mut s = setup(&lab, &fs, vec![allow(A_ID, UDP, 5353), allow(A_ID, UDP, 5354)]);
    let _srv = Servers::start(&lab.b, &[], &[5353]);
    // the allowed flow, from a known port
    let ok = run_in(&lab.a, || {
        let u = UdpSocket::bind((A_IP, 40123)).unwrap();
        u.set_read_timeout(Some(TIMEOUT)).unwrap();
        u.send_to(b"hello", (B_IP, 5353)).unwrap();
        let mut b = [0u8; 16];
        u.recv_from(&mut b).is_ok()
    });
    assert!(ok, "the allowed flow works");
    // the quoted packet: B's reply to A (tracked at A's ingress hook)
    let quoted = ipv4_packet(B_IP, A_IP, UDP, &udp(5353, 40123, b"hello"));
    let covert = |payload: usize| {
        let body = [quoted.clone(), vec![0x42; payload]].concat();
        ipv4_packet(A_IP, "10.77.1.1", ICMP, &icmp_msg(3, 3, [0; 4], &body))
    };
    let before = s.dp.counters().unwrap().get(Reason::DropIcmpUnrelated);
    let rx = icmp_arrivals(&lab.node, Duration::from_millis(600));
    raw_send(&lab.a, covert(1000), 10);
    raw_send(&lab.a, covert(0), 10);
    let got: Vec<_> = rx.join().unwrap().into_iter().filter(|(src, t, _)| src.to_string() == A_IP && *t == 3).collect();
    assert_eq!(got, vec![], "no covert ICMP error may leave pod A");
    assert_eq!(s.dp.counters().unwrap().get(Reason::DropIcmpUnrelated) - before, 20);

    // Positive control: a REAL port unreachable (B has no socket on 5354,
    // which both policies allow) reaches A: its connected socket is refused.
    let refused = run_in(&lab.a, || {
        let u = UdpSocket::bind((A_IP, 0)).unwrap();
        u.connect((B_IP, 5354)).unwrap();
        u.set_read_timeout(Some(TIMEOUT)).unwrap();
        let _ = u.send(b"anyone?");
        let mut b = [0u8; 16];
        matches!(u.recv(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(refused, "a real ICMP port unreachable for an allowed flow reaches the workload");
    assert!(s.dp.counters().unwrap().get(Reason::AllowRelated) >= 2, "passed at B's egress and A's ingress hooks");

    // Positive control: a real "fragmentation needed" from the node (a router
    // on the path, MTU 1000 towards B) for A's DF datagram reaches A: the
    // second datagram of that size is refused locally with EMSGSIZE.
    ip(&["-n", &lab.node, "link", "set", "porinhb", "mtu", "1000"]);
    let pmtu_learned = run_in(&lab.a, || {
        let u = UdpSocket::bind((A_IP, 0)).unwrap();
        let on: libc::c_int = libc::IP_PMTUDISC_DO;
        // SAFETY: setsockopt on a socket we own, with a valid int option.
        let rc = unsafe {
            use std::os::fd::AsRawFd;
            libc::setsockopt(u.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, (&on as *const libc::c_int).cast(), 4)
        };
        assert_eq!(rc, 0);
        u.connect((B_IP, 5353)).unwrap();
        let big = vec![0u8; 1400];
        let _ = u.send(&big);
        std::thread::sleep(Duration::from_millis(200));
        matches!(u.send(&big), Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE))
    });
    assert!(pmtu_learned, "a real fragmentation-needed error from a router reaches the workload");

    // Control: without Porin on A's interface the same covert messages do
    // arrive at the node, so the check above is what stops them.
    assert_eq!(s.dp.detach(Some(&lab.node_ns()), "porinha").unwrap(), 2);
    let rx = icmp_arrivals(&lab.node, Duration::from_millis(400));
    raw_send(&lab.a, covert(1000), 3);
    let got = rx.join().unwrap().into_iter().filter(|(src, t, len)| src.to_string() == A_IP && *t == 3 && *len > 1000).count();
    assert!(got >= 1, "the raw covert packets are deliverable without Porin");
    let _ = (s.ifa, s.ifb);
}

/// Red-team finding "spoofed pod addresses from the node's network", on real
/// packets: the node (anything not pod A's veth) sends datagrams with pod A's
/// source address to pod B, whose ingress policy trusts A.
#[test]
fn a_pods_address_from_the_node_side_does_not_reach_another_pod() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new("is");
    let fs = Bpffs::new();
    let mut s = setup(&lab, &fs, vec![allow(A_ID, UDP, 5353)]);
    let forged = ipv4_packet(A_IP, B_IP, UDP, &udp(40000, 5353, b"forged?"));

    let rx = udp_sources(&lab.b, 5353, Duration::from_millis(500));
    raw_send(&lab.node, forged.clone(), 3);
    assert_eq!(rx.join().unwrap(), vec![], "A's address from the node side must not reach B");
    assert!(s.dp.counters().unwrap().get(Reason::DropSpoofedIngress) >= 3);
    let mut ev = s.dp.events().unwrap();
    let evs: Vec<_> = ev.drain().into_iter().map(Result::unwrap).collect();
    assert!(evs.iter().any(|e| e.kind == EventType::Denied && e.reason == Reason::DropSpoofedIngress && e.ifindex == s.ifb && e.dport == 5353));

    // A itself still reaches B (same address, its own veth)
    let rx = udp_sources(&lab.b, 5353, Duration::from_millis(500));
    udp_send_from(&lab.a, A_IP, B_IP, 5353);
    let got = rx.join().unwrap();
    assert!(!got.is_empty() && got.iter().all(|f| f.ip().to_string() == A_IP), "{got:?}");

    // Control: with Porin detached from B the forged datagrams do arrive.
    assert_eq!(s.dp.detach(Some(&lab.node_ns()), "porinhb").unwrap(), 2);
    let rx = udp_sources(&lab.b, 5353, Duration::from_millis(500));
    raw_send(&lab.node, forged, 3);
    assert!(!rx.join().unwrap().is_empty(), "the forged datagrams are deliverable without Porin");
    let _ = s.ifa;
}

/// Red-team finding "capacity shared fairly", on real packets: pod A floods
/// the node with UDP from hundreds of source ports (each a new allowed flow);
/// afterwards pod B must still open a new TCP connection. Control: with a
/// budget larger than the conntrack map, the same flood fills it and B's
/// connection fails.
#[test]
fn a_pods_conntrack_flood_does_not_stop_another_pods_new_connections() {
    if !kernel_tests_enabled() {
        return;
    }
    let run = |tag: &str, budget: u32| -> (bool, usize, porin_dataplane::Counters) {
        let lab = Lab::new(tag);
        let fs = Bpffs::new();
        let opts = DataplaneOptions { max_conntrack: Some(256), ct_budget: budget, ..Default::default() };
        let mut dp = Dataplane::open(&fs.pin_dir(), &opts).expect("open");
        let node = lab.node_ns();
        let ifa = dp.attach(Some(&node), "porinha").expect("attach a");
        let ifb = dp.attach(Some(&node), "porinhb").expect("attach b");
        dp.set_ipcache(ipcache()).unwrap();
        let host_udp = PolicyEntry { identity: Some(HOST_ID), proto: Some(UDP), port_prefix: None, action: Action::Allow, rule_id: 1 };
        dp.set_endpoint(ifa, EndpointPolicy { endpoint_id: 1, ingress: vec![], egress: vec![host_udp], addrs: addr(A_IP) }).unwrap();
        dp.set_endpoint(ifb, EndpointPolicy { endpoint_id: 2, ingress: vec![], egress: vec![allow(HOST_ID, TCP, 7070)], addrs: addr(B_IP) })
            .unwrap();
        let _srv = Servers::start(&lab.node, &[7070], &[]);
        // the flood: 300 new flows from pod A
        run_in(&lab.a, || {
            for _ in 0..300 {
                let s = UdpSocket::bind((A_IP, 0)).unwrap();
                let _ = s.send_to(b"x", ("10.77.1.1", 9999));
            }
        });
        let ok = tcp_echo_once(&lab.b, "10.77.2.1", 7070);
        let a_entries = dp.conntrack_entries().unwrap().iter().filter(|(k, _)| k.endpoint_id == 1).count();
        (ok, a_entries, dp.counters().unwrap())
    };
    let (ok, a_entries, c) = run("cf", 1000);
    assert!(!ok, "control: without a budget the flood fills the map and B cannot connect");
    assert!(a_entries >= 250 && c.get(Reason::DropCtFull) > 0, "{a_entries} {c:?}");

    let (ok, a_entries, c) = run("cb", 64);
    assert!(ok, "with a per-endpoint budget B still connects");
    assert_eq!(a_entries, 64, "A holds exactly its budget");
    assert!(c.get(Reason::DropCtBudget) >= 200 && c.get(Reason::DropCtFull) == 0, "{c:?}");
}
