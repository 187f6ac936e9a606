//! Shared helpers of the kernel tests: root check, a private bpffs mount,
//! and packet builders.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Kernel tests must run (CI is root). Returns false only when the caller
/// explicitly opted out with PORIN_SKIP_KERNEL_TESTS=1.
pub fn kernel_tests_enabled() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("PORIN_SKIP_KERNEL_TESTS").as_deref() == Ok("1") {
        eprintln!("PORIN_SKIP_KERNEL_TESTS=1: skipping a kernel test (not root)");
        return false;
    }
    panic!(
        "porin-dataplane kernel tests need root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN). \
         Run as root, or set PORIN_SKIP_KERNEL_TESTS=1 to skip them explicitly."
    );
}

/// A private bpffs mounted on a temp dir; unmounted on drop.
pub struct Bpffs {
    dir: tempfile::TempDir,
}

impl Bpffs {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("porin-bpffs-").tempdir().expect("tempdir");
        assert!(porin_dataplane::sys::ensure_bpffs(dir.path()).expect("mount bpffs"), "fresh dir must be mounted");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pin_dir(&self) -> PathBuf {
        self.dir.path().join("porin").join("node")
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const SCTP: u8 = 132;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&1024u16.to_be_bytes());
    h
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn sctp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = vec![0u8; 12 + 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    h[12] = 1; // INIT chunk
    h[14..16].copy_from_slice(&20u16.to_be_bytes());
    h
}

/// ICMP/ICMPv6 header: type, code, checksum 0, then 4 bytes (`rest`), then payload.
pub fn icmp(typ: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut h = vec![typ, code, 0, 0];
    h.extend_from_slice(&rest);
    h.extend_from_slice(payload);
    h
}

pub fn echo(typ: u8, id: u16) -> Vec<u8> {
    let b = id.to_be_bytes();
    icmp(typ, 0, [b[0], b[1], 0, 1], &[0u8; 16])
}

pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 header + payload (no options unless `options` is non-empty).
pub fn ipv4_raw(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, frag_field: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = (20 + options.len()) / 4;
    let mut h = vec![0u8; 20];
    h[0] = 0x40 | ihl as u8;
    h[2..4].copy_from_slice(&((ihl * 4 + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&frag_field.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    h.extend_from_slice(options);
    h.extend_from_slice(payload);
    h
}

/// IPv6 header + already-built extension headers/payload.
pub fn ipv6_raw(src: [u8; 16], dst: [u8; 16], next: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(rest.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h.extend_from_slice(rest);
    h
}

/// An 8-byte IPv6 option-style extension header (hop-by-hop 0, dest opts 60,
/// routing 43) carrying `next`.
pub fn v6_opt_hdr(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// IPv6 fragment header.
pub fn v6_frag_hdr(next: u8, offset_units: u16, more: bool, id: u32) -> Vec<u8> {
    let fo = (offset_units << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&fo.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

fn v4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => panic!("expected v4"),
    }
}
fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => panic!("expected v6"),
    }
}

/// A whole Ethernet frame for `src → dst` carrying `l4` as protocol `proto`.
pub fn frame(src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    match s {
        IpAddr::V4(_) => eth(0x0800, &ipv4_raw(v4(s), v4(d), proto, 1, 0, &[], l4)),
        IpAddr::V6(_) => eth(0x86dd, &ipv6_raw(v6(s), v6(d), proto, l4)),
    }
}

/// The IP packet part (no Ethernet) of `frame(..)`, for embedding in ICMP errors.
pub fn ip_packet(src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    frame(src, dst, proto, l4)[14..].to_vec()
}

pub fn v4frag(src: &str, dst: &str, proto: u8, id: u16, offset_units: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let field = offset_units | if more { 0x2000 } else { 0 };
    eth(0x0800, &ipv4_raw(v4(s), v4(d), proto, id, field, &[], payload))
}

pub fn v6frame(src: &str, dst: &str, first_next: u8, rest: &[u8]) -> Vec<u8> {
    let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    eth(0x86dd, &ipv6_raw(v6(s), v6(d), first_next, rest))
}
