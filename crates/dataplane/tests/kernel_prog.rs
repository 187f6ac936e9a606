//! BPF_PROG_TEST_RUN tests: build packets, set up maps through the public
//! API, run the real programs in the kernel, check verdicts, counters, events.
//! Needs root (see common::kernel_tests_enabled).

mod common;

use common::*;
use porin_dataplane::{
    Action, Dataplane, DataplaneOptions, Direction, EndpointPolicy, Error, Event, EventReader, EventType, PolicyEntry,
    Reason, port_range_to_prefixes,
};

const IFX: u32 = 1; // lo: BPF_PROG_TEST_RUN's default device
const EP: u32 = 7;
const POD: &str = "10.0.0.1";
const PEER: &str = "10.0.0.2";
const WORLD: &str = "8.8.8.8";
const POD6: &str = "fd00::1";
const PEER6: &str = "fd00::2";
const POD_ID: u32 = 50;
const PEER_ID: u32 = 100;
const WORLD_ID: u32 = 2;

use Direction::{Egress, Ingress};

/// The endpoint's own addresses (every crafted packet from the pod uses one).
fn pod_addrs() -> Vec<std::net::IpAddr> {
    vec![POD.parse().unwrap(), POD6.parse().unwrap()]
}

struct H {
    dp: Dataplane,
    ev: EventReader,
    _fs: Bpffs,
}

fn ipcache() -> Vec<(ipnet::IpNet, u32)> {
    [
        ("0.0.0.0/0", WORLD_ID),
        ("::/0", WORLD_ID),
        ("10.0.0.2/32", PEER_ID),
        ("fd00::2/128", PEER_ID),
        ("10.0.0.1/32", POD_ID),
        ("fd00::1/128", POD_ID),
    ]
    .iter()
    .map(|(n, i)| (n.parse().unwrap(), *i))
    .collect()
}

fn allow(identity: u32, proto: u8, port: u16) -> PolicyEntry {
    PolicyEntry { identity: Some(identity), proto: Some(proto), port_prefix: Some((port, 16)), action: Action::Allow, rule_id: u32::from(port) }
}

fn deny(identity: u32, proto: u8, port: u16) -> PolicyEntry {
    PolicyEntry { action: Action::Deny, ..allow(identity, proto, port) }
}

impl H {
    fn new(opts: DataplaneOptions) -> Option<H> {
        if !kernel_tests_enabled() {
            return None;
        }
        let fs = Bpffs::new();
        let mut dp = Dataplane::open(&fs.pin_dir(), &opts).expect("open dataplane");
        dp.set_ipcache(ipcache()).expect("ipcache");
        let ev = dp.events().expect("events");
        Some(H { dp, ev, _fs: fs })
    }

    fn std() -> Option<H> {
        Self::new(DataplaneOptions::default())
    }

    fn policy(&mut self, ingress: Vec<PolicyEntry>, egress: Vec<PolicyEntry>) {
        self.dp.set_endpoint(IFX, EndpointPolicy { endpoint_id: EP, ingress, egress, addrs: pod_addrs() }).expect("set_endpoint");
    }

    fn pass(&self, dir: Direction, f: &[u8]) {
        let r = self.dp.test_run(dir, f, IFX, 1).expect("test_run");
        assert!(r.passed(), "expected pass, got retval {} for {dir:?} frame {:02x?}", r.retval, &f[..f.len().min(64)]);
    }

    fn drop_(&self, dir: Direction, f: &[u8]) {
        let r = self.dp.test_run(dir, f, IFX, 1).unwrap_or_else(|e| panic!("test_run {e} frame {f:02x?}"));
        assert!(r.dropped(), "expected drop, got retval {} for {dir:?}", r.retval);
    }

    fn ctr(&self, r: Reason) -> u64 {
        self.dp.counters().unwrap().get(r)
    }

    fn events(&mut self) -> Vec<Event> {
        self.ev.drain().into_iter().map(|e| e.expect("decodes")).collect()
    }
}

fn syn(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    frame(src, dst, TCP, &tcp(sport, dport, SYN))
}

#[test]
fn interface_without_endpoint_drops_everything() {
    let Some(mut h) = H::std() else { return };
    h.drop_(Egress, &syn(POD, PEER, 1000, 80));
    h.drop_(Ingress, &eth(0x0806, &[0u8; 28])); // even ARP: no endpoint, no opinion
    assert_eq!(h.ctr(Reason::DropNoEndpoint), 2);
    let ev = h.events();
    assert_eq!(ev.len(), 2);
    assert_eq!((ev[0].kind, ev[0].reason, ev[0].endpoint_id), (EventType::Denied, Reason::DropNoEndpoint, 0));
}

#[test]
fn tcp_policy_levels_and_replies() {
    let Some(mut h) = H::std() else { return };
    h.policy(
        vec![],
        vec![allow(PEER_ID, TCP, 80), deny(PEER_ID, TCP, 81), PolicyEntry { identity: Some(WORLD_ID), proto: None, port_prefix: None, action: Action::Allow, rule_id: 9 }],
    );
    // allowed new flow, then its reply passes on the other hook via conntrack
    h.pass(Egress, &syn(POD, PEER, 40000, 80));
    h.pass(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40000, SYN | ACK)));
    h.pass(Egress, &frame(POD, PEER, TCP, &tcp(40000, 80, ACK)));
    assert_eq!(h.ctr(Reason::AllowNew), 1);
    assert_eq!(h.ctr(Reason::AllowEstablished), 2);
    // explicit deny, no matching entry
    h.drop_(Egress, &syn(POD, PEER, 40001, 81));
    h.drop_(Egress, &syn(POD, PEER, 40002, 82));
    assert_eq!(h.ctr(Reason::DropPolicyDeny), 1);
    assert_eq!(h.ctr(Reason::DropNoPolicy), 1);
    // identity-level entry: everything to world
    h.pass(Egress, &frame(POD, WORLD, UDP, &udp(5000, 53, b"q")));
    h.pass(Egress, &syn(POD, WORLD, 40003, 443));
    // ingress has no entries at all: a new inbound flow drops
    h.drop_(Ingress, &syn(PEER, POD, 50000, 22));
    // a spoofed "reply" for a tuple that was never opened drops
    h.drop_(Ingress, &frame(PEER, POD, TCP, &tcp(80, 40009, ACK)));

    let ev = h.events();
    let new: Vec<&Event> = ev.iter().filter(|e| e.kind == EventType::NewAllowed).collect();
    assert_eq!(new.len(), 3);
    let e = new[0];
    assert_eq!((e.dir, e.endpoint_id, e.peer_identity, e.rule_id, e.proto), (Egress, EP, PEER_ID, 80, TCP));
    assert_eq!((e.src, e.dst, e.sport, e.dport), (Some(POD.parse().unwrap()), Some(PEER.parse().unwrap()), 40000, 80));
    assert_eq!(e.tcp_flags, SYN);
    let denied: Vec<&Event> = ev.iter().filter(|e| e.kind == EventType::Denied).collect();
    assert_eq!(denied.len(), 4);
    assert_eq!((denied[0].reason, denied[0].rule_id, denied[0].dport), (Reason::DropPolicyDeny, 81, 81));
}

#[test]
fn default_level_and_no_identity() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![PolicyEntry::default_action(Action::Allow, 1)], vec![PolicyEntry::default_action(Action::Deny, 2)]);
    h.pass(Ingress, &syn(PEER, POD, 1234, 9999));
    h.drop_(Egress, &syn(POD, PEER, 1234, 9999));
    assert_eq!(h.ctr(Reason::DropPolicyDeny), 1);
    // without the world prefix an unknown peer has no identity
    h.dp.set_ipcache(ipcache().into_iter().filter(|(n, _)| n.prefix_len() != 0).collect()).unwrap();
    h.drop_(Ingress, &syn(WORLD, POD, 1234, 9999));
    assert_eq!(h.ctr(Reason::DropNoIdentity), 1);
    let _ = h.events();
}

#[test]
fn udp_sctp_port_ranges() {
    let Some(mut h) = H::std() else { return };
    let mut egress = Vec::new();
    for (v, bits) in port_range_to_prefixes(1000, 1999) {
        egress.push(PolicyEntry { identity: Some(PEER_ID), proto: Some(UDP), port_prefix: Some((v, bits)), action: Action::Allow, rule_id: 5 });
    }
    egress.push(allow(PEER_ID, SCTP, 3868));
    h.policy(vec![], egress);
    for (port, ok) in [(999, false), (1000, true), (1500, true), (1999, true), (2000, false)] {
        let f = frame(POD, PEER, UDP, &udp(7000 + port, port, b"x"));
        if ok { h.pass(Egress, &f) } else { h.drop_(Egress, &f) }
    }
    h.pass(Egress, &frame(POD, PEER, SCTP, &sctp(5000, 3868)));
    h.pass(Ingress, &frame(PEER, POD, SCTP, &sctp(3868, 5000)));
    h.drop_(Egress, &frame(POD, PEER, SCTP, &sctp(5000, 3869)));
    // UDP over IPv6 with the same policy
    h.pass(Egress, &frame(POD6, PEER6, UDP, &udp(7000, 1200, b"x")));
    h.drop_(Egress, &frame(POD6, PEER6, UDP, &udp(7000, 2200, b"x")));
    let _ = h.events();
}

#[test]
fn other_protocols_use_port_zero() {
    let Some(mut h) = H::std() else { return };
    // GRE (47): allowed by a proto-level entry, no ports
    h.policy(vec![], vec![PolicyEntry { identity: Some(PEER_ID), proto: Some(47), port_prefix: None, action: Action::Allow, rule_id: 1 }]);
    h.pass(Egress, &frame(POD, PEER, 47, &[0u8; 8]));
    h.drop_(Egress, &frame(POD, PEER, 50, &[0u8; 8]));
}

#[test]
fn icmp_echo_nd_and_type_code_policy() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![], vec![allow(PEER_ID, ICMP, 8 << 8), allow(PEER_ID, ICMPV6, 128 << 8)]);
    h.pass(Egress, &frame(POD, PEER, ICMP, &echo(8, 77)));
    h.pass(Ingress, &frame(PEER, POD, ICMP, &echo(0, 77))); // reply via CT (same id)
    h.drop_(Ingress, &frame(PEER, POD, ICMP, &echo(0, 78))); // unsolicited reply
    h.drop_(Egress, &frame(POD, PEER, ICMP, &icmp(13, 0, [0; 4], &[0; 12]))); // timestamp: no policy
    h.pass(Egress, &frame(POD6, PEER6, ICMPV6, &echo(128, 5)));
    h.pass(Ingress, &frame(PEER6, POD6, ICMPV6, &echo(129, 5)));
    // neighbour discovery passes without policy
    for t in 133..=137 {
        h.pass(Ingress, &frame(PEER6, POD6, ICMPV6, &icmp(t, 0, [0; 4], &[0; 16])));
    }
    assert_eq!(h.ctr(Reason::AllowInfra), 5);
    // ARP passes, other ethertypes drop
    h.pass(Ingress, &eth(0x0806, &[0u8; 28]));
    h.drop_(Ingress, &eth(0x88cc, &[0u8; 46]));
    assert_eq!(h.ctr(Reason::DropUnsupportedL3), 1);
    let ev = h.events();
    let e = ev.iter().find(|e| e.kind == EventType::NewAllowed).unwrap();
    assert_eq!((e.proto, e.sport, e.dport), (ICMP, 0, 8 << 8));
}

#[test]
fn icmp_errors_need_a_tracked_inner_tuple() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![], vec![allow(PEER_ID, UDP, 53), allow(PEER_ID, TCP, 80)]);
    h.pass(Egress, &frame(POD, PEER, UDP, &udp(3333, 53, b"q")));
    // port unreachable from the peer about our datagram
    let inner = ip_packet(POD, PEER, UDP, &udp(3333, 53, b"q"));
    h.pass(Ingress, &frame(PEER, POD, ICMP, &icmp(3, 3, [0; 4], &inner)));
    // time exceeded from a router (world) about the same datagram
    h.pass(Ingress, &frame(WORLD, POD, ICMP, &icmp(11, 0, [0; 4], &inner)));
    // about a flow that does not exist
    let other = ip_packet(POD, PEER, UDP, &udp(3334, 53, b"q"));
    h.drop_(Ingress, &frame(PEER, POD, ICMP, &icmp(3, 3, [0; 4], &other)));
    // truncated inner packet
    h.drop_(Ingress, &frame(PEER, POD, ICMP, &icmp(3, 3, [0; 4], &inner[..10])));
    assert_eq!(h.ctr(Reason::AllowRelated), 2);
    assert_eq!(h.ctr(Reason::DropIcmpUnrelated), 2);
    // IPv6 packet-too-big about a TCP flow
    h.pass(Egress, &syn(POD6, PEER6, 4444, 80));
    let inner6 = ip_packet(POD6, PEER6, TCP, &tcp(4444, 80, ACK));
    h.pass(Ingress, &frame(PEER6, POD6, ICMPV6, &icmp(2, 0, [0, 0, 5, 0], &inner6)));
    let inner6x = ip_packet(POD6, PEER6, TCP, &tcp(4445, 80, ACK));
    h.drop_(Ingress, &frame(PEER6, POD6, ICMPV6, &icmp(2, 0, [0, 0, 5, 0], &inner6x)));
    let _ = h.events();
}

/// Red-team finding "ICMP errors as a covert egress channel": with one
/// allowed flow open, a pod sent ~1 KB ICMP "errors" quoting that flow to an
/// address its egress policy denies, and they passed as RELATED.
#[test]
fn icmp_errors_are_related_only_back_to_the_quoted_sender_and_small() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![allow(PEER_ID, UDP, 53)], vec![allow(PEER_ID, UDP, 53), allow(PEER_ID, TCP, 80)]);
    // one allowed egress flow: POD:3333 -> PEER:53 (reply tracked at the ingress hook)
    h.pass(Egress, &frame(POD, PEER, UDP, &udp(3333, 53, b"q")));
    let quoted_reply = ip_packet(PEER, POD, UDP, &udp(53, 3333, b"a"));
    let big = [quoted_reply.clone(), vec![0x55; 1000]].concat();

    // the attack: errors quoting the allowed flow, sent to a denied address
    h.drop_(Egress, &frame(POD, WORLD, ICMP, &icmp(3, 3, [0; 4], &big)));
    h.drop_(Egress, &frame(POD, WORLD, ICMP, &icmp(3, 3, [0; 4], &quoted_reply)));
    h.drop_(Egress, &frame(POD, WORLD, ICMP, &icmp(11, 0, [0; 4], &quoted_reply)));
    // ... and even to the quoted sender, 1 KB of "error" is a payload channel
    h.drop_(Egress, &frame(POD, PEER, ICMP, &icmp(3, 3, [0; 4], &big)));
    // ... and a fragmented error
    let frag_err = eth(0x0800, &ipv4_raw([10, 0, 0, 1], [10, 0, 0, 2], ICMP, 9, 0x2000, &[], &icmp(3, 3, [0; 4], &quoted_reply)));
    h.drop_(Egress, &frag_err);
    assert_eq!(h.ctr(Reason::DropIcmpUnrelated), 5);
    // control: a real-sized port unreachable back to the sender passes
    h.pass(Egress, &frame(POD, PEER, ICMP, &icmp(3, 3, [0; 4], &quoted_reply)));
    assert_eq!(h.ctr(Reason::AllowRelated), 1);

    // A workload is a host, not a router: its error must come from the quoted
    // packet's destination. A flow to another address at the pod's hook:
    h.pass(Ingress, &frame(PEER, "10.0.0.9", UDP, &udp(5555, 53, b"q")));
    let quoted_other = ip_packet(PEER, "10.0.0.9", UDP, &udp(5555, 53, b"q"));
    h.drop_(Egress, &frame(POD, PEER, ICMP, &icmp(3, 3, [0; 4], &quoted_other)));
    // the workload's own inbound flow: its port unreachable passes
    h.pass(Ingress, &frame(PEER, POD, UDP, &udp(5556, 53, b"q")));
    h.pass(Egress, &frame(POD, PEER, ICMP, &icmp(3, 3, [0; 4], &ip_packet(PEER, POD, UDP, &udp(5556, 53, b"q")))));

    // Towards the workload: any router may report (time exceeded, frag
    // needed), but only to the quoted packet's sender and only error-sized.
    let quoted = ip_packet(POD, PEER, UDP, &udp(3333, 53, b"q"));
    h.pass(Ingress, &frame(WORLD, POD, ICMP, &icmp(3, 4, [0, 0, 5, 0xdc], &quoted))); // frag needed
    h.pass(Ingress, &frame(WORLD, POD, ICMP, &icmp(11, 0, [0; 4], &quoted)));
    h.drop_(Ingress, &frame(WORLD, "10.0.0.9", ICMP, &icmp(3, 4, [0; 4], &quoted)));
    let padded = |n: usize| [quoted.clone(), vec![0; n]].concat();
    // 20 (outer IP) + 8 (ICMP) + quoted + pad: exactly 576 passes, 577 drops
    let fit = 576 - 28 - quoted.len();
    h.pass(Ingress, &frame(PEER, POD, ICMP, &icmp(3, 3, [0; 4], &padded(fit))));
    h.drop_(Ingress, &frame(PEER, POD, ICMP, &icmp(3, 3, [0; 4], &padded(fit + 1))));

    // IPv6: packet too big is capped at the minimum MTU (1280)
    h.pass(Egress, &syn(POD6, PEER6, 4444, 80));
    let inner6 = ip_packet(POD6, PEER6, TCP, &tcp(4444, 80, ACK));
    let fit6 = 1280 - 48 - inner6.len();
    let ptb = |n: usize| icmp(2, 0, [0, 0, 5, 0], &[inner6.clone(), vec![0; n]].concat());
    h.pass(Ingress, &frame("fd00::99", POD6, ICMPV6, &ptb(fit6)));
    h.drop_(Ingress, &frame("fd00::99", POD6, ICMPV6, &ptb(fit6 + 1)));
    h.drop_(Ingress, &frame("fd00::99", "fd00::9", ICMPV6, &ptb(0)));
    // the v6 covert channel: a pod's error quoting its reply, to a stranger
    let reply6 = ip_packet(PEER6, POD6, TCP, &tcp(80, 4444, SYN | ACK));
    h.drop_(Egress, &frame(POD6, "fd00::99", ICMPV6, &icmp(1, 4, [0; 4], &reply6)));
    h.pass(Egress, &frame(POD6, PEER6, ICMPV6, &icmp(1, 4, [0; 4], &reply6)));
    assert_eq!(h.ctr(Reason::DropIcmpUnrelated), 5 + 1 + 2 + 2 + 1);
    let _ = h.events();
}

/// An ICMP error that is not RELATED is a flow of its own, subject to policy
/// (type << 8 | code as the port): denied unless policy allows that ICMP.
#[test]
fn unrelated_icmp_errors_follow_policy() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![allow(WORLD_ID, ICMP, 3 << 8 | 4)], vec![allow(WORLD_ID, ICMP, 3 << 8 | 3)]);
    let junk = ip_packet(PEER, WORLD, UDP, &udp(1, 2, b"not tracked"));
    // allowed by policy: passes as a new flow (whatever its size), then established
    let big = [junk.clone(), vec![0; 1000]].concat();
    h.pass(Egress, &frame(POD, WORLD, ICMP, &icmp(3, 3, [0; 4], &big)));
    h.pass(Egress, &frame(POD, WORLD, ICMP, &icmp(3, 3, [0; 4], &junk)));
    assert_eq!((h.ctr(Reason::AllowNew), h.ctr(Reason::AllowEstablished)), (1, 1));
    // another type/code is another flow: no policy, dropped as unrelated
    h.drop_(Egress, &frame(POD, WORLD, ICMP, &icmp(3, 1, [0; 4], &junk)));
    h.drop_(Egress, &frame(POD, WORLD, ICMP, &icmp(11, 0, [0; 4], &junk)));
    // towards the pod: frag needed from the world allowed by policy, other errors not
    h.pass(Ingress, &frame(WORLD, POD, ICMP, &icmp(3, 4, [0; 4], &junk)));
    h.drop_(Ingress, &frame(WORLD, POD, ICMP, &icmp(3, 3, [0; 4], &junk)));
    assert_eq!(h.ctr(Reason::DropIcmpUnrelated), 3);
    let ev = h.events();
    assert!(ev.iter().any(|e| e.kind == porin_dataplane::EventType::NewAllowed && e.proto == ICMP && e.dport == (3 << 8 | 3)), "{ev:?}");
}

/// Red-team finding "spoofed pod addresses from the node's network": a
/// packet carrying a local pod's source address was admitted towards another
/// pod whatever interface it came from.
#[test]
fn a_local_endpoints_address_must_come_through_its_own_interface() {
    let Some(mut h) = H::std() else { return };
    const PEER_IFX: u32 = 77; // the peer's host veth (only a key here)
    h.policy(vec![allow(PEER_ID, TCP, 22), allow(PEER_ID, UDP, 53)], vec![]);
    h.dp.set_endpoint(PEER_IFX, EndpointPolicy { endpoint_id: 8, ingress: vec![], egress: vec![], addrs: vec![PEER.parse().unwrap(), PEER6.parse().unwrap()] })
        .unwrap();
    let run = |h: &H, f: &[u8], from: u32| h.dp.test_run_from(Ingress, f, IFX, from, 1).unwrap();
    // from the node itself (0) or another interface (the uplink, 5): dropped
    assert!(run(&h, &syn(PEER, POD, 1000, 22), 0).dropped());
    assert!(run(&h, &syn(PEER, POD, 1000, 22), 5).dropped());
    assert!(run(&h, &frame(PEER6, POD6, UDP, &udp(1000, 53, b"x")), 0).dropped());
    assert_eq!(h.ctr(Reason::DropSpoofedIngress), 3);
    // through the peer's own veth: policy decides as before
    assert!(run(&h, &syn(PEER, POD, 1000, 22), PEER_IFX).passed());
    assert!(run(&h, &frame(PEER6, POD6, UDP, &udp(1000, 53, b"x")), PEER_IFX).passed());
    // an established flow cannot be injected into from elsewhere either
    assert!(run(&h, &frame(PEER, POD, TCP, &tcp(1000, 22, ACK)), PEER_IFX).passed());
    assert!(run(&h, &frame(PEER, POD, TCP, &tcp(1000, 22, ACK | RST)), 0).dropped());
    assert_eq!(h.ctr(Reason::DropSpoofedIngress), 4);
    // addresses of no local endpoint are not affected (policy decides)
    assert!(run(&h, &syn(WORLD, POD, 1000, 22), 0).dropped());
    assert_eq!(h.ctr(Reason::DropNoPolicy), 1);
    // once the peer endpoint is gone, its address is an ordinary remote one
    h.dp.remove_endpoint(PEER_IFX).unwrap();
    assert!(run(&h, &syn(PEER, POD, 1001, 22), 0).passed());
    assert_eq!(h.ctr(Reason::DropSpoofedIngress), 4);
    let _ = h.events();
}

/// Runs `f` on a thread in a fresh network namespace holding a veth pair
/// `porind1`/`porind2`, so test runs can use several endpoints (interfaces).
/// Nothing outside that namespace is touched; it goes with the thread.
fn in_private_netns<T: Send + 'static>(f: impl FnOnce(u32, u32) -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
        let st = std::process::Command::new("ip")
            .args(["link", "add", "porind1", "type", "veth", "peer", "name", "porind2"])
            .status()
            .expect("ip");
        assert!(st.success(), "ip link add porind1");
        let idx: Vec<u32> = ["porind1", "porind2"].iter().map(|n| porin_dataplane::sys::ifindex(n).expect("ifindex")).collect();
        f(idx[0], idx[1])
    })
    .join()
    .expect("netns thread")
}

/// Red-team finding "capacity shared fairly": one namespace filled the
/// node-wide conntrack map, after which other namespaces' new flows dropped.
#[test]
fn one_endpoints_flood_uses_only_its_own_conntrack_budget() {
    if !kernel_tests_enabled() {
        return;
    }
    const SECOND: &str = "10.0.0.3";
    let flood = |budget: u32| {
        in_private_netns(move |ifa, ifb| {
            let fs = Bpffs::new();
            let opts = DataplaneOptions { max_conntrack: Some(64), ct_budget: budget, ct_sweep_every: None, ..Default::default() };
            let mut dp = Dataplane::open(&fs.pin_dir(), &opts).unwrap();
            let mut ipc = ipcache();
            ipc.push(("10.0.0.3/32".parse().unwrap(), 51));
            dp.set_ipcache(ipc).unwrap();
            let world = PolicyEntry { identity: Some(WORLD_ID), proto: None, port_prefix: None, action: Action::Allow, rule_id: 1 };
            dp.set_endpoint(ifa, EndpointPolicy { endpoint_id: EP, ingress: vec![], egress: vec![world], addrs: pod_addrs() }).unwrap();
            dp.set_endpoint(ifb, EndpointPolicy { endpoint_id: 9, ingress: vec![], egress: vec![world], addrs: vec![SECOND.parse().unwrap()] }).unwrap();
            let run = |dp: &Dataplane, ifx, src: &str, sport: u16| {
                dp.test_run(Egress, &frame(src, WORLD, UDP, &udp(sport, 53, b"q")), ifx, 1).unwrap().passed()
            };
            // endpoint A floods: 100 new flows
            let a_passed = (0..100).filter(|i| run(&dp, ifa, POD, 10_000 + i)).count();
            // then endpoint B opens new flows
            let b_passed = (0..5).filter(|i| run(&dp, ifb, SECOND, 20_000 + i)).count();
            (dp, ifa, ifb, a_passed, b_passed, fs)
        })
    };

    // Control: with a budget larger than the map, A's flood fills the map and
    // B's new flows drop: the attack as found.
    // (One entry per flow: 64 flows fill the 64-entry map.)
    let (dp, _, _, a, b, _fs) = flood(1000);
    assert_eq!((a, b), (64, 0), "without a budget the flood starves B");
    assert_eq!(dp.counters().unwrap().get(Reason::DropCtFull), 36 + 5);
    drop(dp);

    // With a budget of 20 entries (20 flows) per endpoint, A gets 20 flows,
    // B all of its 5.
    let (mut dp, ifa, _ifb, a, b, _fs) = flood(20);
    assert_eq!((a, b), (20, 5));
    let c = dp.counters().unwrap();
    assert_eq!((c.get(Reason::DropCtBudget), c.get(Reason::DropCtFull)), (80, 0));
    assert_eq!((dp.conntrack_usage(EP).unwrap(), dp.conntrack_usage(9).unwrap()), (20, 5));
    assert_eq!(dp.conntrack_entries().unwrap().iter().filter(|(k, _)| k.endpoint_id == EP).count(), 20);

    // Exact accounting on the delete paths. Userspace expiry sweep: nothing
    // is idle now; 200 s later every UDP entry is, and the slots come back.
    let now = porin_dataplane::ct::ktime_now_ns();
    assert_eq!(dp.sweep_conntrack_at(now).unwrap().deleted, 0);
    assert_eq!(dp.sweep_conntrack_at(now + 200_000_000_000).unwrap().deleted, 25);
    assert_eq!((dp.conntrack_usage(EP).unwrap(), dp.conntrack_usage(9).unwrap()), (0, 0));
    // BPF deletes (revocation) give slots back too
    let f = frame(POD, WORLD, UDP, &udp(30_000, 53, b"q"));
    assert!(dp.test_run(Egress, &f, ifa, 1).unwrap().passed());
    assert_eq!(dp.conntrack_usage(EP).unwrap(), 1);
    dp.set_endpoint(ifa, EndpointPolicy { endpoint_id: EP, ingress: vec![], egress: vec![], addrs: pod_addrs() }).unwrap();
    assert!(dp.test_run(Egress, &f, ifa, 1).unwrap().dropped());
    assert_eq!(dp.counters().unwrap().get(Reason::DropRevoked), 1);
    assert_eq!(dp.conntrack_usage(EP).unwrap(), 0);
    // removing an endpoint purges its entries and counters
    let world = PolicyEntry { identity: Some(WORLD_ID), proto: None, port_prefix: None, action: Action::Allow, rule_id: 1 };
    dp.set_endpoint(ifa, EndpointPolicy { endpoint_id: EP, ingress: vec![], egress: vec![world], addrs: pod_addrs() }).unwrap();
    assert!(dp.test_run(Egress, &f, ifa, 1).unwrap().passed());
    dp.remove_endpoint(ifa).unwrap();
    assert_eq!(dp.conntrack_usage(EP).unwrap(), 0);
    assert!(dp.conntrack_entries().unwrap().iter().all(|(k, _)| k.endpoint_id != EP));
}

/// An error about a flow whose entry was not revalidated since the last policy
/// change is not RELATED (the flow may be revoked); the next packet of the flow
/// revalidates it and errors about it pass again.
#[test]
fn icmp_errors_about_a_flow_need_its_current_policy() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![], vec![allow(PEER_ID, UDP, 53), allow(PEER_ID, UDP, 54)]);
    h.pass(Egress, &frame(POD, PEER, UDP, &udp(3333, 53, b"q")));
    let err = frame(PEER, POD, ICMP, &icmp(3, 3, [0; 4], &ip_packet(POD, PEER, UDP, &udp(3333, 53, b"q"))));
    h.pass(Ingress, &err);
    // revoked: the flow's entry still exists (no packet since), the error drops
    h.policy(vec![], vec![allow(PEER_ID, UDP, 54)]);
    h.drop_(Ingress, &err);
    // allowed again (a new revision): the next packet revalidates, then errors pass
    h.policy(vec![], vec![allow(PEER_ID, UDP, 53)]);
    h.drop_(Ingress, &err);
    h.pass(Egress, &frame(POD, PEER, UDP, &udp(3333, 53, b"q")));
    h.pass(Ingress, &err);
    assert_eq!((h.ctr(Reason::AllowRelated), h.ctr(Reason::DropIcmpUnrelated)), (2, 2));
    let _ = h.events();
}

/// The conntrack map of an older build (`porin_ct_v1`, LRU, or `porin_ct_v2`, hash: two entries per flow)
/// is converted into `porin_ct_v3` (one entry per flow with both directions' counters; established flows
/// survive the upgrade, counted against their endpoints) and its pin removed.
#[test]
fn an_old_conntrack_pin_is_converted_and_removed() {
    if !kernel_tests_enabled() {
        return;
    }
    for (name, kind) in [(porin_dataplane::abi::map_names::CONNTRACK_V1, "lru_hash"), (porin_dataplane::abi::map_names::CONNTRACK_V2, "hash")] {
        old_conntrack_pin_is_converted(name, kind);
    }
}

fn old_conntrack_pin_is_converted(name: &str, kind: &str) {
    use porin_dataplane::abi::{CT_F_REPLY, CtKey, CtValueV2, FAMILY_V4};
    let fs = Bpffs::new();
    let pin = fs.pin_dir();
    std::fs::create_dir_all(&pin).unwrap();
    let old = pin.join(name);
    let old_s = old.to_str().unwrap().to_string();
    let bpftool = |args: &[String]| {
        let out = std::process::Command::new("bpftool").args(args).output().expect("run bpftool");
        assert!(out.status.success(), "bpftool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (ks, vs) = (std::mem::size_of::<CtKey>().to_string(), std::mem::size_of::<CtValueV2>().to_string());
    bpftool(&s(&["map", "create", &old_s, "type", kind, "key", &ks, "value", &vs, "entries", "64", "name", name]));
    // an egress TCP flow POD:1234 -> PEER:80 of endpoint EP, as the old build kept it: 3 packets out, 2 in
    let a = |x: &str| {
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&x.parse::<std::net::Ipv4Addr>().unwrap().octets());
        o
    };
    let fwd = CtKey { endpoint_id: EP, family: FAMILY_V4, proto: TCP, dir: 1, pad: 0, src: a(POD), dst: a(PEER), sport: 1234u16.to_be(), dport: 80u16.to_be() };
    let rev = CtKey { dir: 0, src: fwd.dst, dst: fwd.src, sport: fwd.dport, dport: fwd.sport, ..fwd };
    let now = porin_dataplane::ct::ktime_now_ns();
    let val = CtValueV2 { last_seen_ns: now, policy_rev: 0, dir_of_origin: 1, pol_port: 80u16.to_be(), packets: 3, bytes: 300, ..Default::default() };
    let rval = CtValueV2 { flags: CT_F_REPLY, packets: 2, bytes: 120, ..val };
    for (k, v) in [(fwd, val), (rev, rval)] {
        let mut args = s(&["map", "update", "pinned", &old_s, "key", "hex"]);
        args.extend(k.as_bytes().iter().map(|b| format!("{b:02x}")));
        args.push("value".into());
        args.push("hex".into());
        args.extend(v.as_bytes().iter().map(|b| format!("{b:02x}")));
        bpftool(&args);
    }

    let opts = DataplaneOptions { ct_sweep_every: None, ..Default::default() };
    let mut dp = Dataplane::open(&pin, &opts).expect("open next to an old conntrack map");
    assert!(std::fs::symlink_metadata(&old).is_err(), "old pin removed ({name})");
    let ct = dp.conntrack_entries().unwrap();
    assert_eq!(ct.len(), 1, "{name}: one entry per flow: {ct:?}");
    assert_eq!((ct[0].0.src, ct[0].0.dst, u16::from_be(ct[0].0.sport), u16::from_be(ct[0].0.dport)), (a(POD), a(PEER), 1234, 80));
    assert_eq!((ct[0].1.packets, ct[0].1.bytes, ct[0].1.packets_reply, ct[0].1.bytes_reply), (3, 300, 2, 120));
    assert_eq!(dp.conntrack_usage(EP).unwrap(), 1, "converted entries count against the endpoint");
    dp.set_ipcache(ipcache()).unwrap();
    dp.set_endpoint(IFX, EndpointPolicy { endpoint_id: EP, ingress: vec![], egress: vec![allow(PEER_ID, TCP, 80)], addrs: pod_addrs() }).unwrap();
    // the peer's reply is established (revalidated against the policy), not a new inbound flow
    assert!(dp.test_run(Ingress, &frame(PEER, POD, TCP, &tcp(80, 1234, ACK)), IFX, 1).unwrap().passed());
    let c = dp.counters().unwrap();
    assert_eq!((c.get(Reason::AllowEstablished), c.get(Reason::Revalidated)), (1, 1));
    // the counters go on from the converted ones
    assert_eq!(dp.conntrack_entries().unwrap()[0].1.packets_reply, 3);
    // removing the endpoint purges them, and the count
    dp.remove_endpoint(IFX).unwrap();
    assert_eq!(dp.conntrack_entries().unwrap().len(), 0);
    assert_eq!(dp.conntrack_usage(EP).unwrap(), 0);
}

#[test]
fn ipv6_extension_headers() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![], vec![allow(PEER_ID, TCP, 80)]);
    // hop-by-hop -> dest opts -> routing -> TCP
    let mut rest = v6_opt_hdr(60);
    rest.extend(v6_opt_hdr(43));
    rest.extend(v6_opt_hdr(TCP));
    rest.extend(tcp(1111, 80, SYN));
    h.pass(Egress, &v6frame(POD6, PEER6, 0, &rest));
    let mut rest = v6_opt_hdr(TCP);
    rest.extend(tcp(1112, 81, SYN));
    h.drop_(Egress, &v6frame(POD6, PEER6, 60, &rest));
    assert_eq!(h.ctr(Reason::DropNoPolicy), 1);
    // more extension headers than the walker allows: cannot decide
    let mut rest = Vec::new();
    for _ in 0..9 {
        rest.extend(v6_opt_hdr(60));
    }
    rest.extend(tcp(1113, 80, SYN));
    h.drop_(Egress, &v6frame(POD6, PEER6, 60, &rest));
    assert_eq!(h.ctr(Reason::DropMalformed), 1);
    let _ = h.events();
}

#[test]
fn fragments_follow_the_first_fragment() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![], vec![allow(PEER_ID, UDP, 53)]);
    // allowed datagram: first fragment carries the UDP header
    h.pass(Egress, &v4frag(POD, PEER, UDP, 0x1111, 0, true, &udp(1000, 53, &[0u8; 16])));
    h.pass(Egress, &v4frag(POD, PEER, UDP, 0x1111, 3, true, &[0u8; 24]));
    h.pass(Egress, &v4frag(POD, PEER, UDP, 0x1111, 6, false, &[0u8; 8]));
    assert_eq!(h.ctr(Reason::AllowFrag), 2);
    // denied datagram: its later fragments drop too
    h.drop_(Egress, &v4frag(POD, PEER, UDP, 0x2222, 0, true, &udp(1000, 54, &[0u8; 16])));
    h.drop_(Egress, &v4frag(POD, PEER, UDP, 0x2222, 3, false, &[0u8; 8]));
    // a later fragment without any first fragment
    h.drop_(Egress, &v4frag(POD, PEER, UDP, 0x3333, 3, false, &[0u8; 8]));
    assert_eq!(h.ctr(Reason::DropFrag), 2);
    // a first fragment too short for the L4 header: malformed
    h.drop_(Egress, &v4frag(POD, PEER, TCP, 0x4444, 0, true, &[0u8; 8]));
    assert_eq!(h.ctr(Reason::DropMalformed), 1);
    // IPv6 fragment header
    let mut first = v6_frag_hdr(UDP, 0, true, 0xabcdef);
    first.extend(udp(1000, 53, &[0u8; 16]));
    h.pass(Egress, &v6frame(POD6, PEER6, 44, &first));
    let mut later = v6_frag_hdr(UDP, 3, false, 0xabcdef);
    later.extend([0u8; 8]);
    h.pass(Egress, &v6frame(POD6, PEER6, 44, &later));
    let mut stray = v6_frag_hdr(UDP, 3, false, 0x999);
    stray.extend([0u8; 8]);
    h.drop_(Egress, &v6frame(POD6, PEER6, 44, &stray));
    // an atomic fragment (offset 0, M=0) is a whole datagram
    let mut atomic = v6_frag_hdr(UDP, 0, false, 0x77);
    atomic.extend(udp(1001, 53, b"x"));
    h.pass(Egress, &v6frame(POD6, PEER6, 44, &atomic));
    let _ = h.events();
}

#[test]
fn malformed_headers_drop() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![PolicyEntry::default_action(Action::Allow, 1)], vec![PolicyEntry::default_action(Action::Allow, 1)]);
    let src = [10, 0, 0, 1];
    let dst = [10, 0, 0, 2];
    // truncated TCP header (IP total length covers it, but it is only 10 bytes)
    h.drop_(Egress, &eth(0x0800, &ipv4_raw(src, dst, TCP, 1, 0, &[], &[0u8; 10])));
    // IHL < 5
    let mut bad = ipv4_raw(src, dst, UDP, 1, 0, &[], &udp(1, 2, b""));
    bad[0] = 0x44;
    h.drop_(Egress, &eth(0x0800, &bad));
    // total length beyond the frame
    let mut long = ipv4_raw(src, dst, UDP, 1, 0, &[], &udp(1, 2, b""));
    long[2..4].copy_from_slice(&200u16.to_be_bytes());
    h.drop_(Egress, &eth(0x0800, &long));
    // wrong version nibble in an IPv4 ethertype
    let mut ver = ipv4_raw(src, dst, UDP, 1, 0, &[], &udp(1, 2, b""));
    ver[0] = 0x65;
    h.drop_(Egress, &eth(0x0800, &ver));
    // (A frame too short for an IPv4/IPv6 header cannot be tested here:
    // BPF_PROG_TEST_RUN itself rejects it with EINVAL.)
    // IPv6 payload length beyond the frame
    let mut v6 = frame(POD6, PEER6, UDP, &udp(1, 2, b""))[14..].to_vec();
    v6[4..6].copy_from_slice(&500u16.to_be_bytes());
    h.drop_(Egress, &eth(0x86dd, &v6));
    assert_eq!(h.ctr(Reason::DropMalformed), 5);
    // IPv4 with options still parses
    h.pass(Egress, &eth(0x0800, &ipv4_raw(src, dst, UDP, 1, 0, &[1, 1, 1, 0], &udp(1, 2, b"x"))));
    let ev = h.events();
    assert!(ev.iter().filter(|e| e.reason == Reason::DropMalformed).count() == 5);
}

#[path = "kernel_prog/lifecycle.rs"]
mod lifecycle;

#[test]
fn source_must_be_the_endpoints_own_address() {
    let Some(mut h) = H::std() else { return };
    h.policy(vec![allow(PEER_ID, UDP, 53)], vec![allow(PEER_ID, UDP, 53), allow(PEER_ID, TCP, 80)]);
    const FORGED: &str = "10.0.0.9";
    const FORGED6: &str = "fd00::9";
    // own source: policy as before, and the reply comes back through conntrack
    h.pass(Egress, &frame(POD, PEER, UDP, &udp(1000, 53, b"q")));
    h.pass(Ingress, &frame(PEER, POD, UDP, &udp(53, 1000, b"a")));
    h.drop_(Egress, &frame(POD, PEER, UDP, &udp(1000, 54, b"q"))); // not in policy
    assert_eq!((h.ctr(Reason::AllowNew), h.ctr(Reason::AllowEstablished), h.ctr(Reason::DropNoPolicy)), (1, 1, 1));
    // another pod's address (the peer's, whose identity the receiver trusts), or any other
    h.drop_(Egress, &frame(PEER, PEER, UDP, &udp(1000, 53, b"q")));
    h.drop_(Egress, &frame(FORGED, PEER, UDP, &udp(1000, 53, b"q")));
    h.drop_(Egress, &syn(FORGED, PEER, 1001, 80));
    // a later fragment with a forged source is a spoof, not a fragment question
    h.drop_(Egress, &v4frag(FORGED, PEER, UDP, 0x1111, 3, false, &[0u8; 8]));
    assert_eq!(h.ctr(Reason::DropSpoofed), 4);
    // IPv6: own passes, others drop
    h.pass(Egress, &frame(POD6, PEER6, UDP, &udp(1000, 53, b"q")));
    h.drop_(Egress, &frame(FORGED6, PEER6, UDP, &udp(1000, 53, b"q")));
    h.drop_(Egress, &frame(PEER6, PEER6, UDP, &udp(1000, 53, b"q")));
    // link-local / unspecified sources: only neighbour discovery
    h.pass(Egress, &frame("fe80::1", "ff02::2", ICMPV6, &icmp(133, 0, [0; 4], &[0; 16]))); // RS
    h.pass(Egress, &frame("::", "ff02::1:ff00:1", ICMPV6, &icmp(135, 0, [0; 4], &[0; 16]))); // DAD NS
    h.pass(Egress, &frame(POD6, PEER6, ICMPV6, &icmp(136, 0, [0; 4], &[0; 16]))); // NA from its own address
    h.drop_(Egress, &frame("fe80::1", PEER6, UDP, &udp(1000, 53, b"q")));
    h.drop_(Egress, &frame("fe80::1", PEER6, ICMPV6, &echo(128, 9)));
    // MLD reports to a link-scope group are link control like ND; MLD anywhere else is not
    h.pass(Egress, &frame("fe80::1", "ff02::16", ICMPV6, &icmp(143, 0, [0; 4], &[0; 16])));
    h.drop_(Egress, &frame("fe80::1", PEER6, ICMPV6, &icmp(143, 0, [0; 4], &[0; 16])));
    h.drop_(Egress, &frame(FORGED6, "ff02::1", ICMPV6, &icmp(136, 0, [0; 4], &[0; 16]))); // NA, forged global source
    assert_eq!(h.ctr(Reason::DropSpoofed), 10);
    assert_eq!(h.ctr(Reason::AllowInfra), 4);
    // to the workload, the source is a peer: not compared with the endpoint's addresses
    h.pass(Ingress, &frame(PEER, POD, UDP, &udp(2000, 53, b"q")));
    h.pass(Ingress, &frame(PEER6, POD6, UDP, &udp(2000, 53, b"q")));
    h.drop_(Ingress, &frame(PEER, POD, UDP, &udp(2000, 54, b"q")));
    assert_eq!(h.ctr(Reason::DropSpoofed), 10);
    // nothing forged reached conntrack
    assert!(h.dp.conntrack_entries().unwrap().iter().all(|(k, _)| {
        let forged: [&str; 3] = [FORGED, FORGED6, "fe80::1"];
        forged.iter().all(|f| {
            let a: std::net::IpAddr = f.parse().unwrap();
            let b = match a { std::net::IpAddr::V4(v) => v.octets().to_vec(), std::net::IpAddr::V6(v) => v.octets().to_vec() };
            k.src[..b.len()] != b[..] && k.dst[..b.len()] != b[..]
        })
    }));

    let ev = h.events();
    let spoofed: Vec<&Event> = ev.iter().filter(|e| e.reason == Reason::DropSpoofed).collect();
    assert_eq!(spoofed.len(), 10, "{ev:?}");
    let e = spoofed[1];
    assert_eq!((e.kind, e.dir, e.endpoint_id, e.proto, e.dport), (EventType::Denied, Egress, EP, UDP, 53));
    assert_eq!((e.src, e.dst), (Some(FORGED.parse().unwrap()), Some(PEER.parse().unwrap())));
}

#[test]
fn a_family_without_an_address_is_dropped_from_the_workload() {
    let Some(mut h) = H::std() else { return };
    let pol = |addrs: Vec<&str>| EndpointPolicy {
        endpoint_id: EP,
        ingress: vec![allow(PEER_ID, UDP, 53)],
        egress: vec![allow(PEER_ID, UDP, 53)],
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
    };
    h.dp.set_endpoint(IFX, pol(vec![POD])).unwrap();
    h.pass(Egress, &frame(POD, PEER, UDP, &udp(1000, 53, b"q")));
    h.drop_(Egress, &frame(POD6, PEER6, UDP, &udp(1000, 53, b"q")));
    assert_eq!(h.ctr(Reason::DropSpoofed), 1);
    // ND still works, and v6 to the workload is its ingress policy's business
    h.pass(Egress, &frame("fe80::1", "ff02::2", ICMPV6, &icmp(133, 0, [0; 4], &[0; 16])));
    h.pass(Ingress, &frame(PEER6, POD6, UDP, &udp(2000, 53, b"q")));
    // ... but the workload cannot answer it from an address it does not have
    h.drop_(Egress, &frame(POD6, PEER6, UDP, &udp(53, 2000, b"a")));
    assert_eq!(h.ctr(Reason::DropSpoofed), 2);

    // no address at all: no IP packet leaves the workload; ARP still passes
    let st = h.dp.set_endpoint(IFX, pol(vec![])).unwrap();
    assert_eq!(st.flips, 1, "an address change alone is written");
    h.drop_(Egress, &frame(POD, PEER, UDP, &udp(1000, 53, b"q")));
    h.pass(Egress, &eth(0x0806, &[0u8; 28]));
    assert_eq!(h.ctr(Reason::DropSpoofed), 3);
    // v6 only
    h.dp.set_endpoint(IFX, pol(vec![POD6])).unwrap();
    h.drop_(Egress, &frame(POD, PEER, UDP, &udp(1001, 53, b"q")));
    h.pass(Egress, &frame(POD6, PEER6, UDP, &udp(1001, 53, b"q")));
    assert_eq!(h.dp.engine().endpoint(IFX).unwrap().addrs(), vec![POD6.parse::<std::net::IpAddr>().unwrap()]);
    // an unchanged policy with unchanged addresses writes nothing
    assert_eq!(h.dp.set_endpoint(IFX, pol(vec![POD6])).unwrap(), Default::default());
    // two addresses of one family: refused, naming the endpoint; the old state stays
    let err = h.dp.set_endpoint(IFX, pol(vec![POD, PEER])).unwrap_err();
    assert!(matches!(err, Error::InvalidAddrs { endpoint_id: EP, ifindex: IFX, .. }), "{err}");
    assert!(err.to_string().contains("endpoint 7"), "{err}");
    h.pass(Egress, &frame(POD6, PEER6, UDP, &udp(1002, 53, b"q")));
    let _ = h.events();
}

#[test]
fn an_old_v1_endpoints_pin_is_removed_not_reused() {
    if !kernel_tests_enabled() {
        return;
    }
    let fs = Bpffs::new();
    let pin = fs.pin_dir();
    std::fs::create_dir_all(&pin).unwrap();
    let old = pin.join(porin_dataplane::abi::map_names::ENDPOINTS_V1);
    // what a previous build pinned: ifindex -> {endpoint_id, active_gen, policy_rev, flags}
    let bpftool = |args: &[&str]| {
        let out = std::process::Command::new("bpftool").args(args).output().expect("run bpftool");
        assert!(out.status.success(), "bpftool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let old_s = old.to_str().unwrap();
    bpftool(&["map", "create", old_s, "type", "hash", "key", "4", "value", "16", "entries", "64", "name", "porin_ep_v1", "flags", "1"]);
    let mut upd = vec!["map", "update", "pinned", old_s, "key", "1", "0", "0", "0", "value", "7", "0", "0", "0", "0", "0", "0", "0", "5", "0", "0", "0", "0", "0", "0", "0"];
    bpftool(&upd);
    upd[5] = "2";
    bpftool(&upd);

    let mut dp = Dataplane::open(&pin, &DataplaneOptions::default()).expect("open next to an old endpoints map");
    assert!(std::fs::symlink_metadata(&old).is_err(), "old pin removed");
    assert!(pin.join(porin_dataplane::abi::map_names::ENDPOINTS).exists());
    assert_eq!(dp.last_read_back().endpoints, 0, "nothing read from the old layout");
    // its endpoints are unknown until set again: fail closed
    dp.set_ipcache(ipcache()).unwrap();
    assert!(dp.test_run(Egress, &syn(POD, PEER, 1, 80), IFX, 1).unwrap().dropped());
    dp.set_endpoint(IFX, EndpointPolicy { endpoint_id: EP, ingress: vec![], egress: vec![allow(PEER_ID, TCP, 80)], addrs: pod_addrs() }).unwrap();
    assert!(dp.test_run(Egress, &syn(POD, PEER, 1, 80), IFX, 1).unwrap().passed());
    drop(dp);
    // a second open finds no old map and reads the new one back
    let dp = Dataplane::open(&pin, &DataplaneOptions::default()).unwrap();
    assert_eq!(dp.last_read_back().endpoints, 1);
}

#[path = "kernel_prog/aggregate_capture.rs"]
mod aggregate_capture;
