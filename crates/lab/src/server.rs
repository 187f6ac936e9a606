//! Pod servers: answer on every declared port of a pod, from sockets created inside its netns.
//!
//! * TCP: accept, write a one-line banner (`porin-lab <netns> tcp/<port>`), close.
//! * UDP: echo every datagram back to its sender.
//! * SCTP: the kernel has no SCTP, so one raw IP socket (protocol 132) per address family sees
//!   every SCTP packet reaching the pod: an INIT to a declared port gets an INIT-ACK, an INIT to
//!   any other port an ABORT (what a real stack does for a closed port), DATA / COOKIE-ECHO /
//!   HEARTBEAT an out-of-the-blue ABORT; everything else (INIT-ACKs for the pod's own probes,
//!   ABORTs) is ignored.
//!
//! Sockets listen on `[::]` with `IPV6_V6ONLY=0`, so one socket serves IPv4 and IPv6.
//!
//! One thread per pod: it `setns`es into the pod netns, binds, reports readiness, then polls its
//! sockets. It exits when the pod namespace's name disappears from `/run/netns` (the lab was taken
//! down), so servers never outlive their lab by more than a fraction of a second.
//!
//! [`run_servers`] is the body of the detached server process (`porin lab-serve ...` in the CLI,
//! `porin-lab-serve` in this crate); [`spawn_server_threads`] runs the same servers inside the
//! calling process.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddrV4, SocketAddrV6, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage, bind,
    listen, recvfrom, sendto, setsockopt, socket, sockopt,
};

use crate::error::{LabError, Result};
use crate::netns;
use crate::sctp;
use crate::spec::{Proto, format_ports, parse_ports};

/// The ports one pod serves, by namespace name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodServe {
    pub netns: String,
    pub ports: Vec<(u16, Proto)>,
}

/// What one server process (or thread group) serves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServeConfig {
    pub pods: Vec<PodServe>,
}

/// The line a server process prints on stdout once every socket is bound.
pub const READY_LINE: &str = "porin-lab-serve ready";

impl ServeConfig {
    /// Command-line form: `--netns <ns> --ports 80/tcp,53/udp [--netns <ns> --ports ...]`.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.pods {
            out.extend(["--netns".to_string(), p.netns.clone(), "--ports".to_string(), format_ports(&p.ports)]);
        }
        out
    }

    /// Parse the form produced by [`ServeConfig::to_args`] (`--ports` may be omitted or empty).
    pub fn from_args<I, S>(args: I) -> Result<ServeConfig>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut pods: Vec<PodServe> = Vec::new();
        let mut it = args.into_iter().map(Into::into);
        while let Some(flag) = it.next() {
            let (flag, inline) = match flag.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (flag, None),
            };
            let mut value = || {
                inline.clone().or_else(|| it.next()).ok_or_else(|| LabError::ServeArgs(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--netns" => {
                    let ns = value()?;
                    if !ns.starts_with("porin") || ns.contains('/') {
                        return Err(LabError::ServeArgs(format!("--netns {ns:?}: not a porin namespace name")));
                    }
                    pods.push(PodServe { netns: ns, ports: Vec::new() });
                }
                "--ports" => {
                    let v = value()?;
                    let pod = pods.last_mut().ok_or_else(|| LabError::ServeArgs("--ports before --netns".into()))?;
                    pod.ports = parse_ports(&v).map_err(|e| LabError::ServeArgs(format!("--ports {v:?}: {e}")))?;
                }
                other => return Err(LabError::ServeArgs(format!("unknown argument {other:?}"))),
            }
        }
        Ok(ServeConfig { pods })
    }
}

/// Body of a server process: bind every pod's sockets, print [`READY_LINE`] on stdout, then serve
/// until every pod namespace is gone. Returns an error (before printing the ready line) if any
/// socket cannot be bound.
pub fn run_servers(cfg: &ServeConfig) -> Result<()> {
    let handles = spawn_server_threads(cfg)?;
    {
        let mut out = std::io::stdout().lock();
        // The parent may have gone away already; nothing is written to stdout after this.
        let _ = writeln!(out, "{READY_LINE} pid={}", std::process::id());
        let _ = out.flush();
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// CLI entry: parse `args` ([`ServeConfig::from_args`]) and [`run_servers`].
pub fn serve_main<I, S>(args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    run_servers(&ServeConfig::from_args(args)?)
}

/// Start one server thread per pod in this process; returns once every socket is bound. The
/// threads end by themselves when their pod namespace is deleted.
pub fn spawn_server_threads(cfg: &ServeConfig) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    let mut readies = Vec::new();
    for pod in &cfg.pods {
        let (tx, rx) = mpsc::channel::<Result<()>>();
        let pod = pod.clone();
        let name = format!("serve-{}", pod.netns);
        let h = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let bound = netns::enter_netns(&pod.netns).and_then(|()| PodServer::bind(&pod));
                match bound {
                    Ok(srv) => {
                        let _ = tx.send(Ok(()));
                        srv.serve();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| LabError::netns("-", "spawn server thread", e))?;
        handles.push(h);
        readies.push(rx);
    }
    for rx in readies {
        rx.recv().unwrap_or_else(|_| Err(LabError::netns("-", "server thread", std::io::Error::other("died"))))?;
    }
    Ok(handles)
}

/// A tiny non-cryptographic generator for tags and ports (splitmix64).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let tid = format!("{:?}", std::thread::current().id());
        let mut seed = (t as u64) ^ (u64::from(std::process::id()) << 32);
        for b in tid.bytes() {
            seed = seed.rotate_left(5) ^ u64::from(b);
        }
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A non-zero u32 (SCTP tags must not be zero).
    pub(crate) fn tag(&mut self) -> u32 {
        loop {
            let v = self.next_u64() as u32;
            if v != 0 {
                return v;
            }
        }
    }
}

/// Open a raw SCTP socket of the given family (non-blocking) in the current netns.
pub(crate) fn raw_sctp_socket(family: AddressFamily) -> nix::Result<OwnedFd> {
    socket(family, SockType::Raw, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, SockProtocol::Sctp)
}

/// Send an SCTP packet to `dst` over a raw socket.
pub(crate) fn raw_send(fd: &OwnedFd, dst: IpAddr, pkt: &[u8]) -> nix::Result<usize> {
    match dst {
        IpAddr::V4(v4) => sendto(fd.as_raw_fd(), pkt, &SockaddrIn::from(SocketAddrV4::new(v4, 0)), MsgFlags::empty()),
        IpAddr::V6(v6) => sendto(fd.as_raw_fd(), pkt, &SockaddrIn6::from(SocketAddrV6::new(v6, 0, 0, 0)), MsgFlags::empty()),
    }
}

/// Receive one SCTP packet from a raw socket: (source address, SCTP bytes). `Ok(None)` when the
/// packet is not SCTP-over-IP we can read; `Err(EAGAIN)` when the queue is empty.
pub(crate) fn raw_recv(fd: &OwnedFd, v6: bool, buf: &mut [u8]) -> nix::Result<Option<(IpAddr, std::ops::Range<usize>)>> {
    let (n, from) = recvfrom::<SockaddrStorage>(fd.as_raw_fd(), buf)?;
    if v6 {
        let Some(src) = from.as_ref().and_then(|a| a.as_sockaddr_in6()).map(|a| a.ip()) else { return Ok(None) };
        Ok(Some((IpAddr::V6(src), 0..n)))
    } else {
        let Some((src, payload)) = sctp::strip_ipv4(&buf[..n]) else { return Ok(None) };
        let start = n - payload.len();
        Ok(Some((IpAddr::V4(src), start..n)))
    }
}

fn dual_stack_socket(ty: SockType, port: u16) -> std::io::Result<OwnedFd> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    match socket(AddressFamily::Inet6, ty, flags, None) {
        Ok(fd) => {
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
            bind(fd.as_raw_fd(), &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)))?;
            Ok(fd)
        }
        Err(nix::errno::Errno::EAFNOSUPPORT) => {
            let fd = socket(AddressFamily::Inet, ty, flags, None)?;
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port)))?;
            Ok(fd)
        }
        Err(e) => Err(e.into()),
    }
}

struct PodServer {
    netns: String,
    tcp: Vec<(u16, TcpListener)>,
    udp: Vec<UdpSocket>,
    sctp_ports: BTreeSet<u16>,
    sctp4: Option<OwnedFd>,
    sctp6: Option<OwnedFd>,
}

impl PodServer {
    /// Bind every socket; the calling thread must already be in the pod netns.
    fn bind(pod: &PodServe) -> Result<PodServer> {
        let ns = pod.netns.as_str();
        let mut srv = PodServer {
            netns: pod.netns.clone(),
            tcp: Vec::new(),
            udp: Vec::new(),
            sctp_ports: BTreeSet::new(),
            sctp4: None,
            sctp6: None,
        };
        for &(port, proto) in &pod.ports {
            match proto {
                Proto::Tcp => {
                    let fd = dual_stack_socket(SockType::Stream, port)
                        .map_err(|e| LabError::netns(ns, format!("bind tcp/{port}"), e))?;
                    listen(&fd, Backlog::new(256).expect("valid backlog"))
                        .map_err(|e| LabError::netns(ns, format!("listen tcp/{port}"), e.into()))?;
                    srv.tcp.push((port, TcpListener::from(fd)));
                }
                Proto::Udp => {
                    let fd = dual_stack_socket(SockType::Datagram, port)
                        .map_err(|e| LabError::netns(ns, format!("bind udp/{port}"), e))?;
                    srv.udp.push(UdpSocket::from(fd));
                }
                Proto::Sctp => {
                    srv.sctp_ports.insert(port);
                }
            }
        }
        if !srv.sctp_ports.is_empty() {
            srv.sctp4 = Some(
                raw_sctp_socket(AddressFamily::Inet).map_err(|e| LabError::netns(ns, "raw socket ipv4/132", e.into()))?,
            );
            // IPv6 may be unavailable; SCTP over IPv4 still works then.
            srv.sctp6 = raw_sctp_socket(AddressFamily::Inet6).ok();
        }
        Ok(srv)
    }

    fn serve(self) {
        let mut rng = Rng::new();
        let mut buf = vec![0u8; 65_536];
        let mut last_check = Instant::now();
        loop {
            if last_check.elapsed() >= Duration::from_millis(200) {
                if !netns::netns_exists(&self.netns) {
                    tracing::debug!(netns = %self.netns, "pod namespace gone; server exits");
                    return;
                }
                last_check = Instant::now();
            }
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            for (_, l) in &self.tcp {
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            }
            for u in &self.udp {
                fds.push(PollFd::new(u.as_fd(), PollFlags::POLLIN));
            }
            for s in [&self.sctp4, &self.sctp6].into_iter().flatten() {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(netns = %self.netns, error = %e, "poll failed; server exits");
                    return;
                }
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            let mut i = 0;
            for (port, l) in &self.tcp {
                if ready[i] {
                    self.accept_all(*port, l);
                }
                i += 1;
            }
            for u in &self.udp {
                if ready[i] {
                    echo_all(u, &mut buf);
                }
                i += 1;
            }
            for (s, v6) in [(&self.sctp4, false), (&self.sctp6, true)] {
                if let Some(s) = s {
                    if ready[i] {
                        self.answer_sctp(s, v6, &mut buf, &mut rng);
                    }
                    i += 1;
                }
            }
        }
    }

    fn accept_all(&self, port: u16, l: &TcpListener) {
        loop {
            match l.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                    let _ = writeln!(stream, "porin-lab {} tcp/{port}", self.netns);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return, // ECONNABORTED and friends: the peer is gone.
            }
        }
    }

    fn answer_sctp(&self, fd: &OwnedFd, v6: bool, buf: &mut [u8], rng: &mut Rng) {
        loop {
            let (src, range) = match raw_recv(fd, v6, buf) {
                Ok(Some(x)) => x,
                Ok(None) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            };
            let Ok(pkt) = sctp::parse(&buf[range]) else { continue };
            let reply = match pkt.chunk_type {
                sctp::CHUNK_INIT if pkt.vtag == 0 && self.sctp_ports.contains(&pkt.dst_port) => {
                    sctp::build_init_ack(&pkt, rng.tag())
                }
                sctp::CHUNK_INIT => sctp::build_abort(&pkt),
                sctp::CHUNK_DATA | sctp::CHUNK_COOKIE_ECHO | sctp::CHUNK_HEARTBEAT => sctp::build_abort(&pkt),
                _ => continue,
            };
            let _ = raw_send(fd, src, &reply);
        }
    }
}

fn echo_all(u: &UdpSocket, buf: &mut [u8]) {
    loop {
        match u.recv_from(buf) {
            Ok((n, from)) => {
                let _ = u.send_to(&buf[..n], from);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => continue, // ICMP errors from earlier sends surface here; keep draining.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_roundtrip() {
        let cfg = ServeConfig {
            pods: vec![
                PodServe { netns: "porin-a-p0".into(), ports: vec![(80, Proto::Tcp), (9, Proto::Sctp)] },
                PodServe { netns: "porin-a-p1".into(), ports: vec![] },
            ],
        };
        assert_eq!(ServeConfig::from_args(cfg.to_args()).unwrap(), cfg);
        let inline = ServeConfig::from_args(["--netns=porin-a-p0", "--ports=80/tcp,9/sctp"]).unwrap();
        assert_eq!(inline.pods[0], cfg.pods[0]);
        assert!(ServeConfig::from_args(["--ports", "80"]).is_err());
        assert!(ServeConfig::from_args(["--netns", "../etc"]).is_err());
        assert!(ServeConfig::from_args(["--bogus"]).is_err());
    }

    #[test]
    fn rng_tags_are_nonzero_and_vary() {
        let mut r = Rng::new();
        let a: BTreeSet<u32> = (0..100).map(|_| r.tag()).collect();
        assert!(a.len() > 95 && !a.contains(&0));
    }
}
