//! Differential fuzzing of the BPF program against a model.
//!
//! `Model` is a small, deliberately plain re-statement of what the program
//! must decide for one packet given the maps' content: parse (drop malformed),
//! anti-spoofing both ways, fragments, ICMP errors (RELATED), conntrack and
//! the policy lookup. It keeps its own copy of the conntrack and fragment
//! state. Random and mutated packets (valid and malformed: truncated headers,
//! bad IHL/version/lengths, fragments, IPv6 extension headers, ICMP errors with
//! inner packets, VLAN, ARP, unknown ethertypes) run through the real program
//! with `BPF_PROG_TEST_RUN`; the verdict (pass/drop) and the reason (the one
//! counter that moved) must equal the model's.
//!
//! Bounded for CI: a fixed seed and iteration count (override with
//! `PORIN_FUZZ_SEED` / `PORIN_FUZZ_ITERS`), a few seconds. The committed corpus
//! `tests/bpf_corpus.txt` (one `dir ingress_ifindex hex` per line) is replayed
//! first; a mismatch prints the packet in that format so it can be added.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::*;
use porin_dataplane::{Action, Dataplane, DataplaneOptions, Direction, EndpointPolicy, PolicyEntry, Reason};

const IFX: u32 = 1; // lo
const PEER_IFX: u32 = 77; // a second local endpoint (key only)
const EP: u32 = 7;
const POD: &str = "10.0.0.1";
const PEER: &str = "10.0.0.2";
const WORLD: &str = "8.8.8.8";
const OTHER: &str = "10.0.0.9";
const POD6: &str = "fd00::1";
const PEER6: &str = "fd00::2";
const WORLD6: &str = "2001:db8::8";
const DEFAULT_SEED: u64 = 0x0005_eed0_fb0f;
const POD_ID: u32 = 50;
const PEER_ID: u32 = 100;
const WORLD_ID: u32 = 2;

#[path = "bpf_model/model.rs"]
mod model;
use model::*;

// ---------------------------------------------------------------------------
// The program side
// ---------------------------------------------------------------------------

fn entry(identity: Option<u32>, proto: Option<u8>, port: Option<u16>, action: Action) -> (PolicyEntry, Entry) {
    (
        PolicyEntry { identity, proto, port_prefix: port.map(|p| (p, 16)), action, rule_id: 1 },
        Entry { identity, proto, port, action },
    )
}

struct Rig {
    dp: Dataplane,
    ev: porin_dataplane::EventReader,
    model: Model,
    _fs: Bpffs,
}

fn rig() -> Option<Rig> {
    if !kernel_tests_enabled() {
        return None;
    }
    let fs = Bpffs::new();
    let opts = DataplaneOptions { ct_budget: 1 << 30, ct_sweep_every: None, ..Default::default() };
    let mut dp = Dataplane::open(&fs.pin_dir(), &opts).unwrap();
    let ipc: Vec<(ipnet::IpNet, u32)> = [
        ("0.0.0.0/0", WORLD_ID),
        ("::/0", WORLD_ID),
        ("10.0.0.2/32", PEER_ID),
        ("fd00::2/128", PEER_ID),
        ("10.0.0.1/32", POD_ID),
        ("fd00::1/128", POD_ID),
    ]
    .iter()
    .map(|(n, i)| (n.parse().unwrap(), *i))
    .collect();
    dp.set_ipcache(ipc).unwrap();
    let ((ing, _), (eg, _)) = rig_policy();
    let addrs = |a: &str, b: &str| vec![a.parse().unwrap(), b.parse().unwrap()];
    dp.set_endpoint(IFX, EndpointPolicy { endpoint_id: EP, ingress: ing, egress: eg, addrs: addrs(POD, POD6) })
        .unwrap();
    dp.set_endpoint(
        PEER_IFX,
        EndpointPolicy { endpoint_id: 8, ingress: vec![], egress: vec![], addrs: addrs(PEER, PEER6) },
    )
    .unwrap();
    let ev = dp.events().unwrap();
    let model = rig_model();
    Some(Rig { dp, ev, model, _fs: fs })
}

/// The rig's policy, as kernel entries and as model entries.
/// One direction's policy: kernel entries and the model's.
type DirPolicy = (Vec<PolicyEntry>, Vec<Entry>);

fn rig_policy() -> (DirPolicy, DirPolicy) {
    let ing = [
        entry(Some(PEER_ID), Some(TCP), Some(22), Action::Allow),
        entry(Some(PEER_ID), Some(UDP), None, Action::Allow),
        entry(Some(WORLD_ID), Some(TCP), Some(22), Action::Deny),
        entry(Some(WORLD_ID), Some(ICMP), Some(8 << 8), Action::Allow),
    ]
    .into_iter()
    .unzip();
    let eg = [
        entry(Some(PEER_ID), Some(TCP), Some(80), Action::Allow),
        entry(Some(PEER_ID), Some(TCP), Some(81), Action::Deny),
        entry(Some(PEER_ID), Some(UDP), Some(53), Action::Allow),
        entry(Some(PEER_ID), Some(ICMP), Some(8 << 8), Action::Allow),
        entry(Some(PEER_ID), Some(ICMPV6), Some(128 << 8), Action::Allow),
        entry(Some(PEER_ID), Some(SCTP), None, Action::Allow),
        entry(Some(WORLD_ID), Some(UDP), None, Action::Allow),
        entry(Some(WORLD_ID), Some(TCP), None, Action::Allow),
        entry(Some(PEER_ID), Some(ICMP), Some(3 << 8 | 3), Action::Allow),
        entry(Some(PEER_ID), Some(ICMPV6), Some(1 << 8 | 4), Action::Deny),
        entry(Some(WORLD_ID), Some(47), None, Action::Deny),
    ]
    .into_iter()
    .unzip();
    (ing, eg)
}

/// The model of the rig's maps (fresh conntrack and fragment state).
fn rig_model() -> Model {
    let ((_, ing_m), (_, eg_m)) = rig_policy();
    let mut model = Model {
        ct: BTreeMap::new(),
        frags: BTreeMap::new(),
        policy: [ing_m, eg_m],
        own: BTreeMap::new(),
        ipcache: BTreeMap::new(),
    };
    for (a, i) in [(POD, IFX), (POD6, IFX), (PEER, PEER_IFX), (PEER6, PEER_IFX)] {
        model.own.insert(a16(a), i);
    }
    for (a, i) in [(POD, POD_ID), (POD6, POD_ID), (PEER, PEER_ID), (PEER6, PEER_ID)] {
        model.ipcache.insert(a16(a), i);
    }
    model
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Rig {
    /// Runs one packet through program and model; panics on a difference.
    /// `None`: the kernel's test harness refuses the frame (it needs the
    /// fixed L3 header of the ethertype to be present), so it is not a test.
    fn check(&mut self, dir: Direction, f: &[u8], ingress_ifindex: u32, n: usize) -> Option<Reason> {
        let before = self.dp.counters().unwrap();
        let out = match self.dp.test_run_from(dir, f, IFX, ingress_ifindex, 1) {
            Ok(o) => o,
            Err(_) if f.len() < 14 + 40 => return None,
            Err(e) => panic!("packet #{n} ({} bytes, ingress {ingress_ifindex}): {e:?}", f.len()),
        };
        let after = self.dp.counters().unwrap();
        let moved: Vec<Reason> = Reason::ALL
            .iter()
            .copied()
            .filter(|r| *r != Reason::RingbufFull && after.get(*r) != before.get(*r))
            .collect();
        let want = self.model.run(dir, f, ingress_ifindex);
        let line =
            format!("{} {} {}", if dir == Direction::Egress { "egress" } else { "ingress" }, ingress_ifindex, hex(f));
        assert_eq!(
            moved,
            vec![want],
            "packet #{n}: program counted {moved:?}, model says {want:?}\ncorpus line: {line}"
        );
        assert_eq!(
            out.dropped(),
            want.is_drop(),
            "packet #{n}: retval {} vs model {want:?}\ncorpus line: {line}",
            out.retval
        );
        assert!(out.passed() || out.dropped(), "packet #{n}: unexpected retval {}", out.retval);
        if n.is_multiple_of(256) {
            let _ = self.ev.drain();
        }
        Some(want)
    }
}

// ---------------------------------------------------------------------------
// Packet generator (seeded, no external crate)
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
}

const V4_ADDRS: [&str; 5] = [POD, PEER, WORLD, OTHER, "10.0.0.1"];
const V6_ADDRS: [&str; 7] = [POD6, PEER6, WORLD6, "fe80::1", "::", "ff02::1", "ff02::16"];
const PORTS: [u16; 6] = [22, 53, 80, 81, 1000, 40000];

struct Gen {
    rng: Rng,
    /// Frames sent so far that passed: their replies exercise conntrack, and
    /// they are quoted by ICMP errors.
    history: Vec<(Direction, Vec<u8>)>,
    /// The packet the last generated ICMP error quotes.
    quoted: Option<Vec<u8>>,
}

/// Swaps the addresses and ports of an IPv4/IPv6 frame (no extension headers).
fn reverse(f: &[u8]) -> Option<Vec<u8>> {
    let mut g = f.to_vec();
    match be16(f, 12) {
        0x0800 if f.len() >= 34 => {
            let (s, d) = (f[26..30].to_vec(), f[30..34].to_vec());
            g[26..30].copy_from_slice(&d);
            g[30..34].copy_from_slice(&s);
            let l4 = 14 + usize::from(f[14] & 15) * 4;
            if matches!(f[23], 6 | 17 | 132) && f.len() >= l4 + 4 {
                g[l4..l4 + 2].copy_from_slice(&f[l4 + 2..l4 + 4]);
                g[l4 + 2..l4 + 4].copy_from_slice(&f[l4..l4 + 2]);
            }
            if f[23] == 1 && f.len() > l4 {
                g[l4] = match f[l4] {
                    8 => 0,
                    0 => 8,
                    t => t,
                };
            }
        }
        0x86dd if f.len() >= 54 => {
            let (s, d) = (f[22..38].to_vec(), f[38..54].to_vec());
            g[22..38].copy_from_slice(&d);
            g[38..54].copy_from_slice(&s);
            if matches!(f[20], 6 | 17 | 132) && f.len() >= 58 {
                g[54..56].copy_from_slice(&f[56..58]);
                g[56..58].copy_from_slice(&f[54..56]);
            }
            if f[20] == 58 && f.len() > 54 {
                g[54] = match f[54] {
                    128 => 129,
                    129 => 128,
                    t => t,
                };
            }
        }
        _ => return None,
    }
    Some(g)
}

impl Gen {
    fn l4(&mut self, proto: u8, v4: bool) -> Vec<u8> {
        let r = &mut self.rng;
        let (sp, dp) = (r.pick(&PORTS), r.pick(&PORTS));
        match proto {
            6 => tcp(sp, dp, r.pick(&[SYN, SYN | ACK, ACK, FIN | ACK, RST, RST | ACK, SYN | FIN])),
            17 => udp(sp, dp, b"payload"),
            132 => sctp(sp, dp),
            1 | 58 => {
                let types: &[u8] =
                    if v4 { &[0, 8, 3, 11, 12, 13, 5] } else { &[128, 129, 1, 2, 3, 4, 133, 135, 136, 143, 130, 140] };
                let t = r.pick(types);
                let is_err = if v4 { matches!(t, 3 | 11 | 12) } else { matches!(t, 1..=4) };
                if is_err && !self.history.is_empty() && self.rng.chance(80) {
                    // quote a packet seen before (often its reverse)
                    let (_, q) = self.history[self.rng.below(self.history.len())].clone();
                    let q = if self.rng.chance(50) { reverse(&q).unwrap_or(q) } else { q };
                    let mut inner = q[14..].to_vec();
                    if self.rng.chance(20) {
                        inner.truncate(self.rng.below(inner.len() + 1));
                    }
                    if self.rng.chance(15) {
                        inner.extend(std::iter::repeat_n(0x55, self.rng.pick(&[100, 600, 1300])));
                    }
                    self.quoted = Some(inner.clone());
                    return icmp(t, self.rng.below(5) as u8, [0; 4], &inner);
                }
                let id = self.rng.pick(&[1u16, 2, 77]).to_be_bytes();
                icmp(t, 0, [id[0], id[1], 0, 1], &[0u8; 16])
            }
            _ => vec![0u8; 8],
        }
    }

    fn fresh(&mut self) -> (Direction, Vec<u8>) {
        let dir = if self.rng.chance(50) { Direction::Egress } else { Direction::Ingress };
        let kind = self.rng.below(100);
        if kind < 3 {
            return (dir, eth(0x0806, &[0u8; 28]));
        }
        if kind < 6 {
            // VLAN-tagged IPv4, or an unknown ethertype
            let et = self.rng.pick(&[0x8100u16, 0x88a8, 0x1234]);
            let inner = frame(POD, PEER, UDP, &udp(1, 53, b"v"));
            return (dir, eth(et, &inner[12..]));
        }
        let v4 = self.rng.chance(55);
        let (mine, theirs) = if v4 { (POD, self.rng.pick(&V4_ADDRS)) } else { (POD6, self.rng.pick(&V6_ADDRS)) };
        let other = if v4 { self.rng.pick(&V4_ADDRS) } else { self.rng.pick(&V6_ADDRS) };
        // mostly well-addressed for the direction, sometimes anything
        let (src, dst) = match (dir, self.rng.below(10)) {
            (_, 0) => (other, theirs),
            (Direction::Egress, _) => (mine, theirs),
            (Direction::Ingress, _) => (theirs, mine),
        };
        let protos: &[u8] =
            if v4 { &[TCP, UDP, SCTP, ICMP, 47, ICMPV6] } else { &[TCP, UDP, SCTP, ICMPV6, 47, ICMP, 59] };
        let proto = self.rng.pick(protos);
        self.quoted = None;
        let l4 = self.l4(proto, v4);
        let (mut s, mut d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        // errors mostly go back to the quoted packet's source (from its
        // destination or from a router), so the address checks get exercised
        if let Some(q) = self.quoted.take()
            && self.rng.chance(70)
        {
            let (qs, qd): (Option<IpAddr>, Option<IpAddr>) = match (v4, q.len()) {
                (true, n) if n >= 20 => (Some(addr4(&q[12..16])), Some(addr4(&q[16..20]))),
                (false, n) if n >= 40 => (Some(addr6(&q[8..24])), Some(addr6(&q[24..40]))),
                _ => (None, None),
            };
            if let (Some(qs), Some(qd)) = (qs, qd) {
                d = qs;
                if self.rng.chance(70) {
                    s = qd;
                }
            }
        }
        if v4 {
            let (IpAddr::V4(s), IpAddr::V4(d)) = (s, d) else { unreachable!() };
            let opts: &[u8] = match self.rng.below(10) {
                0 => &[1, 1, 1, 1],
                1 => &[1, 1, 1, 1, 1, 1, 1, 1],
                _ => &[],
            };
            let fragf = match self.rng.below(10) {
                0 => 0x2000,                         // first fragment
                1 => self.rng.pick(&[1u16, 3, 185]), // later, last
                2 => 0x2000 | 2,                     // later, more
                3 => 0x4000,                         // DF
                _ => 0,
            };
            let id = self.rng.pick(&[1u16, 2, 3]);
            (dir, eth(0x0800, &ipv4_raw(s.octets(), d.octets(), proto, id, fragf, opts, &l4)))
        } else {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (s, d) else { unreachable!() };
            // a chain of extension headers
            let mut hdrs: Vec<u8> = Vec::new();
            let n = if self.rng.chance(70) { 0 } else { self.rng.below(10) };
            for _ in 0..n {
                hdrs.push(self.rng.pick(&[0u8, 43, 60, 51, 44]));
            }
            let mut rest = l4;
            let mut next = proto;
            for &h in hdrs.iter().rev() {
                let mut x = match h {
                    44 => {
                        let (off, more) = self.rng.pick(&[(0u16, true), (0, false), (5, false), (5, true)]);
                        v6_frag_hdr(next, off, more, self.rng.pick(&[1u32, 9]))
                    }
                    51 => vec![next, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // AH: (1+2)*4 = 12 bytes
                    _ => v6_opt_hdr(next),
                };
                x.extend_from_slice(&rest);
                rest = x;
                next = h;
            }
            (dir, eth(0x86dd, &ipv6_raw(s.octets(), d.octets(), next, &rest)))
        }
    }

    fn mutate(&mut self, mut f: Vec<u8>) -> Vec<u8> {
        match self.rng.below(6) {
            0 => {
                let n = 14 + self.rng.below(f.len().saturating_sub(14) + 1);
                f.truncate(n);
            }
            1 if f.len() > 14 => {
                let i = 14 + self.rng.below(f.len() - 14);
                f[i] = self.rng.next() as u8;
            }
            2 if f.len() > 15 && be16(&f, 12) == 0x0800 => f[14] = 0x40 | self.rng.pick(&[0u8, 4, 5, 6, 15]), // IHL
            3 if f.len() > 15 => f[14] = (self.rng.pick(&[4u8, 6, 0, 15]) << 4) | (f[14] & 15),               // version
            4 if f.len() > 19 => {
                // an IP length that does not match the frame
                let at = if be16(&f, 12) == 0x0800 { 16 } else { 18 };
                let v = self.rng.pick(&[0u16, 1, 20, 40, 9000]);
                f[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => f.extend(std::iter::repeat_n(0u8, self.rng.below(40))),
        }
        f
    }

    fn next(&mut self) -> (Direction, Vec<u8>, u32) {
        let ingress = self.rng.pick(&[0u32, IFX, PEER_IFX, 5]);
        let (dir, f) = if !self.history.is_empty() && self.rng.chance(30) {
            // a reply (or a repeat) of an earlier passed packet
            let (d, f) = self.history[self.rng.below(self.history.len())].clone();
            match reverse(&f) {
                Some(r) if self.rng.chance(80) => {
                    (if d == Direction::Egress { Direction::Ingress } else { Direction::Egress }, r)
                }
                _ => (d, f),
            }
        } else {
            self.fresh()
        };
        let f = if self.rng.chance(20) { self.mutate(f) } else { f };
        // the peer's own veth most of the time for ingress packets from it
        let ingress = if dir == Direction::Ingress && self.rng.chance(60) { PEER_IFX } else { ingress };
        (dir, f, ingress)
    }
}

fn addr4(b: &[u8]) -> IpAddr {
    IpAddr::from([b[0], b[1], b[2], b[3]])
}

fn addr6(b: &[u8]) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    IpAddr::from(a)
}

fn corpus() -> Vec<(Direction, u32, Vec<u8>)> {
    let text = include_str!("bpf_corpus.txt");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.split_whitespace();
        let dir = match it.next() {
            Some("egress") => Direction::Egress,
            Some("ingress") => Direction::Ingress,
            other => panic!("bpf_corpus.txt line {}: direction {other:?}", i + 1),
        };
        let ifx: u32 =
            it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bpf_corpus.txt line {}: ifindex", i + 1));
        let h = it.next().unwrap_or_else(|| panic!("bpf_corpus.txt line {}: hex", i + 1));
        let bytes = (0..h.len())
            .step_by(2)
            .map(|j| {
                u8::from_str_radix(&h[j..j + 2], 16).unwrap_or_else(|_| panic!("bpf_corpus.txt line {}: hex", i + 1))
            })
            .collect();
        out.push((dir, ifx, bytes));
    }
    out
}

#[test]
fn committed_corpus_matches_the_model() {
    let Some(mut rig) = rig() else { return };
    let c = corpus();
    // the file starts with the regression packets (guards against a stale file)
    let reg = regression_packets();
    assert!(
        c.len() >= reg.len() && c.iter().zip(&reg).all(|(a, b)| a == b),
        "bpf_corpus.txt does not start with regression_packets(); run write_corpus"
    );
    assert!(c.len() >= 20, "corpus too small: {}", c.len());
    for (n, (dir, ifx, f)) in c.iter().enumerate() {
        assert!(rig.check(*dir, f, *ifx, n).is_some() || f.len() < 54, "corpus packet #{n} refused");
    }
}

/// Regression packets of the red-team findings and the parser's edge cases,
/// in order (later ones depend on the conntrack state earlier ones create).
fn regression_packets() -> Vec<(Direction, u32, Vec<u8>)> {
    use Direction::{Egress, Ingress};
    let q = ip_packet(PEER, POD, UDP, &udp(53, 3333, b"a"));
    let out = ip_packet(POD, PEER, UDP, &udp(3333, 53, b"q"));
    let inner6 = ip_packet(POD6, PEER6, TCP, &tcp(4444, 80, ACK));
    vec![
        (Egress, 0, frame(POD, PEER, UDP, &udp(3333, 53, b"q"))),
        (Ingress, PEER_IFX, frame(PEER, POD, UDP, &udp(53, 3333, b"a"))),
        // covert channel: errors quoting the flow, to a stranger / too big / fragmented
        (Egress, 0, frame(POD, WORLD, ICMP, &icmp(3, 3, [0; 4], &q))),
        (Egress, 0, frame(POD, PEER, ICMP, &icmp(3, 3, [0; 4], &[q.clone(), vec![0x55; 1000]].concat()))),
        (
            Egress,
            0,
            eth(0x0800, &ipv4_raw([10, 0, 0, 1], [10, 0, 0, 2], ICMP, 9, 0x2000, &[], &icmp(3, 3, [0; 4], &q))),
        ),
        (Egress, 0, frame(POD, PEER, ICMP, &icmp(3, 3, [0; 4], &q))),
        // a workload is not a router: its error must come from the quoted dst
        (Ingress, PEER_IFX, frame(PEER, OTHER, UDP, &udp(5555, 53, b"q"))),
        (Egress, 0, frame(POD, PEER, ICMP, &icmp(3, 3, [0; 4], &ip_packet(PEER, OTHER, UDP, &udp(5555, 53, b"q"))))),
        // errors towards the pod: from a router, to the right/wrong address, at the cap
        (Ingress, 5, frame(WORLD, POD, ICMP, &icmp(3, 4, [0, 0, 5, 0xdc], &out))),
        (Ingress, 5, frame(WORLD, OTHER, ICMP, &icmp(3, 4, [0; 4], &out))),
        (
            Ingress,
            5,
            frame(WORLD, POD, ICMP, &icmp(11, 0, [0; 4], &[out.clone(), vec![0; 576 - 28 - out.len()]].concat())),
        ),
        (
            Ingress,
            5,
            frame(WORLD, POD, ICMP, &icmp(11, 0, [0; 4], &[out.clone(), vec![0; 577 - 28 - out.len()]].concat())),
        ),
        // spoofed local addresses towards the pod
        (Ingress, 0, frame(PEER, POD, TCP, &tcp(1000, 22, SYN))),
        (Ingress, 5, frame(PEER6, POD6, UDP, &udp(1000, 53, b"x"))),
        (Ingress, PEER_IFX, frame(PEER, POD, TCP, &tcp(1000, 22, SYN))),
        (Ingress, 0, frame(PEER, POD, TCP, &tcp(1000, 22, ACK | RST))),
        (Ingress, IFX, frame(POD, POD, UDP, &udp(1, 53, b"self"))),
        // IPv6 packet too big at and over the minimum MTU
        (Egress, 0, frame(POD6, PEER6, TCP, &tcp(4444, 80, SYN))),
        (
            Ingress,
            5,
            frame(
                WORLD6,
                POD6,
                ICMPV6,
                &icmp(2, 0, [0, 0, 5, 0], &[inner6.clone(), vec![0; 1280 - 48 - inner6.len()]].concat()),
            ),
        ),
        (
            Ingress,
            5,
            frame(
                WORLD6,
                POD6,
                ICMPV6,
                &icmp(2, 0, [0, 0, 5, 0], &[inner6.clone(), vec![0; 1281 - 48 - inner6.len()]].concat()),
            ),
        ),
        // parser edges
        (Egress, 0, eth(0x8100, &frame(POD, PEER, UDP, &udp(1, 53, b"v"))[12..])),
        (Egress, 0, eth(0x0806, &[0u8; 28])),
        (Egress, 0, frame(POD, PEER, UDP, &udp(1, 53, b"v"))[..40].to_vec()),
        (Egress, 0, eth(0x0800, &ipv4_raw([10, 0, 0, 1], [10, 0, 0, 2], UDP, 1, 0, &[1, 1, 1, 1], &udp(7, 53, b"o")))),
        (
            Egress,
            0,
            v6frame(POD6, PEER6, 0, &[v6_opt_hdr(60), v6_opt_hdr(43), v6_opt_hdr(TCP), tcp(5, 80, SYN)].concat()),
        ),
        (
            Egress,
            0,
            v6frame(
                POD6,
                PEER6,
                0,
                &[
                    v6_opt_hdr(0),
                    v6_opt_hdr(0),
                    v6_opt_hdr(0),
                    v6_opt_hdr(0),
                    v6_opt_hdr(0),
                    v6_opt_hdr(0),
                    v6_opt_hdr(0),
                    v6_opt_hdr(0),
                    v6_opt_hdr(TCP),
                    tcp(5, 80, SYN),
                ]
                .concat(),
            ),
        ),
        (Egress, 0, v6frame(POD6, PEER6, 44, &[v6_frag_hdr(UDP, 0, true, 9), udp(6, 53, b"first")].concat())),
        (Egress, 0, v6frame(POD6, PEER6, 44, &[v6_frag_hdr(UDP, 5, false, 9), b"rest".to_vec()].concat())),
        (Egress, 0, v6frame(POD6, PEER6, 44, &[v6_frag_hdr(UDP, 5, false, 10), b"orphan".to_vec()].concat())),
        (Egress, 0, v4frag(POD, PEER, UDP, 3, 0, true, &udp(8, 53, b"first"))),
        (Egress, 0, v4frag(POD, PEER, UDP, 3, 2, false, b"rest")),
        (Egress, 0, frame("fe80::1", "ff02::2", ICMPV6, &icmp(133, 0, [0; 4], &[0; 16]))),
        (Egress, 0, frame("fe80::1", PEER6, ICMPV6, &echo(128, 9))),
    ]
}

/// Rewrites `tests/bpf_corpus.txt`: the regression packets, then the first
/// generated packets of the default seed. `cargo test -p porin-dataplane
/// --test bpf_model -- --ignored write_corpus`.
#[test]
#[ignore]
fn write_corpus() {
    let mut text =
        String::from("# dir ingress_ifindex frame-hex; replayed in order by committed_corpus_matches_the_model\n");
    for (d, i, f) in regression_packets() {
        text.push_str(&format!("{} {i} {}\n", if d == Direction::Egress { "egress" } else { "ingress" }, hex(&f)));
    }
    let mut g = Gen { rng: Rng(DEFAULT_SEED | 1), history: Vec::new(), quoted: None };
    let mut m = rig_model();
    for _ in 0..120 {
        let (d, f, i) = g.next();
        let r = m.run(d, &f, i);
        text.push_str(&format!("{} {i} {}\n", if d == Direction::Egress { "egress" } else { "ingress" }, hex(&f)));
        if !r.is_drop() && g.history.len() < 400 {
            g.history.push((d, f));
        }
    }
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bpf_corpus.txt"), text).unwrap();
}

#[test]
fn random_packets_match_the_model() {
    let Some(mut rig) = rig() else { return };
    let seed: u64 = std::env::var("PORIN_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    let iters: usize = std::env::var("PORIN_FUZZ_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let mut g = Gen { rng: Rng(seed | 1), history: Vec::new(), quoted: None };
    let mut seen: BTreeSet<Reason> = BTreeSet::new();
    let mut skipped = 0usize;
    for n in 0..iters {
        let (dir, f, ifx) = g.next();
        let Some(r) = rig.check(dir, &f, ifx, n) else {
            skipped += 1;
            continue;
        };
        seen.insert(r);
        if !r.is_drop() && g.history.len() < 400 {
            g.history.push((dir, f));
        }
    }
    assert!(skipped < iters / 10, "{skipped} of {iters} frames were refused by the test harness");
    // the generator must reach every interesting outcome
    for r in [
        Reason::AllowNew,
        Reason::AllowEstablished,
        Reason::AllowRelated,
        Reason::AllowInfra,
        Reason::AllowFrag,
        Reason::DropNoPolicy,
        Reason::DropPolicyDeny,
        Reason::DropFrag,
        Reason::DropMalformed,
        Reason::DropUnsupportedL3,
        Reason::DropIcmpUnrelated,
        Reason::DropSpoofed,
        Reason::DropSpoofedIngress,
    ] {
        assert!(seen.contains(&r), "the generator never produced {r:?} (seen {seen:?})");
    }
}
