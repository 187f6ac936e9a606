//! Reachability probes between pods, run from inside the source pod's namespace.
//!
//! * TCP: non-blocking `connect`; allowed when the handshake completes (SYN-ACK seen). An RST
//!   (`ECONNREFUSED`), an ICMP error or the timeout means blocked. The socket is closed with
//!   `SO_LINGER=0` (RST), so probes leave no TIME-WAIT behind.
//! * UDP: a connected socket sends a datagram with a random nonce; allowed when the same bytes come
//!   back. ICMP port-unreachable or the timeout means blocked.
//! * SCTP: an INIT with a random Initiate Tag goes out over a raw IP socket (protocol 132);
//!   allowed when an INIT-ACK carrying that tag comes back from the target, blocked on ABORT or
//!   timeout.
//!
//! UDP datagrams and SCTP INITs are re-sent every [`RESEND_INTERVAL`] until answered (the servers
//! are stateless, so duplicates are harmless); TCP relies on the kernel's SYN (its first
//! retransmission comes only after 1 s).
//!
//! Concurrency: one OS thread per source pod joins that pod's namespace and drives all of that
//! pod's probes with `poll(2)`, so a whole matrix costs about one timeout however many probes are
//! dropped. Per thread at most [`MAX_INFLIGHT`] probes are in flight; more are run in waves.
//! [`probe_pairs`] raises the soft `RLIMIT_NOFILE` of the process to its hard limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, connect, getsockopt, setsockopt, socket, sockopt};
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns;
use crate::sctp;
use crate::server::{Rng, raw_recv, raw_send, raw_sctp_socket};
use crate::spec::Proto;

/// Default probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Re-send interval for UDP and SCTP probes.
pub const RESEND_INTERVAL: Duration = Duration::from_millis(150);
/// Maximum probes in flight per source pod.
pub const MAX_INFLIGHT: usize = 512;

/// Observed reachability for every probed port, as JSON:
/// `{"matrices":[{"port":80,"protocol":"TCP","pods":["x/a",...],"allowed":[["x/a","x/b"],...]}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObservedMatrices {
    pub matrices: Vec<ObservedMatrix>,
}

/// Reachability on one port: `allowed` lists every ordered pair (from, to) of distinct pods whose
/// probe succeeded, sorted; `pods` lists all pods (`namespace/name`), sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedMatrix {
    pub port: u16,
    pub protocol: Proto,
    pub pods: Vec<String>,
    pub allowed: Vec<(String, String)>,
}

impl ObservedMatrices {
    /// The matrix of one port, if probed.
    pub fn get(&self, port: u16, protocol: Proto) -> Option<&ObservedMatrix> {
        self.matrices.iter().find(|m| m.port == port && m.protocol == protocol)
    }
}

impl ObservedMatrix {
    /// Was `from -> to` allowed?
    pub fn is_allowed(&self, from: &str, to: &str) -> bool {
        self.allowed.iter().any(|(f, t)| f == from && t == to)
    }
}

/// Which address of the target to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 (every pod has one).
    #[default]
    V4,
    /// IPv6; a pair where either pod lacks IPv6 is reported blocked.
    V6,
}

/// Probe settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// How long to wait for each probe's answer.
    pub timeout: Duration,
    pub family: Family,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions { timeout: DEFAULT_TIMEOUT, family: Family::V4 }
    }
}

impl Lab {
    /// [`probe`] on this lab.
    pub fn probe(&self, ports: &[(u16, Proto)], timeout: Duration) -> Result<ObservedMatrices> {
        probe(self, ports, timeout)
    }

    /// [`probe_addr`] on this lab.
    pub fn probe_addr(&self, from: &str, dst: IpAddr, port: u16, proto: Proto, timeout: Duration) -> Result<bool> {
        probe_addr(self, from, dst, port, proto, timeout)
    }

    /// [`probe_one`] on this lab.
    pub fn probe_one(&self, from: &str, to: &str, port: u16, proto: Proto, timeout: Duration) -> Result<bool> {
        probe_one(self, from, to, port, proto, timeout)
    }

    /// The ports to probe: `port` and `proto` if both are given; `port` on every protocol a pod serves it on
    /// (TCP if none does); else every port a pod serves (on `proto` only, if given). Empty: no pod serves one.
    pub fn probe_ports(&self, port: Option<u16>, proto: Option<Proto>) -> Vec<(u16, Proto)> {
        let declared: BTreeSet<(Proto, u16)> = self.pods().iter().flat_map(|p| p.ports.iter().map(|(n, pr)| (*pr, *n))).collect();
        let mut out: Vec<(u16, Proto)> = match (port, proto) {
            (Some(p), Some(pr)) => vec![(p, pr)],
            (Some(p), None) => {
                let d: Vec<_> = declared.iter().filter(|(_, n)| *n == p).map(|(pr, n)| (*n, *pr)).collect();
                if d.is_empty() { vec![(p, Proto::Tcp)] } else { d }
            }
            (None, pr) => declared.iter().filter(|(x, _)| pr.is_none_or(|pr| pr == *x)).map(|(pr, n)| (*n, *pr)).collect(),
        };
        out.dedup();
        out
    }
}

/// One probe: from pod index `from` to pod index `to` (indexes into [`Lab::pods`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    pub from: usize,
    pub to: usize,
    pub port: u16,
    pub proto: Proto,
}

/// Probe every ordered pair of distinct pods on every port, concurrently, over IPv4.
pub fn probe(lab: &Lab, ports: &[(u16, Proto)], timeout: Duration) -> Result<ObservedMatrices> {
    probe_with(lab, ports, &ProbeOptions { timeout, ..ProbeOptions::default() })
}

/// [`probe`] with options.
pub fn probe_with(lab: &Lab, ports: &[(u16, Proto)], opts: &ProbeOptions) -> Result<ObservedMatrices> {
    let mut seen = BTreeSet::new();
    let ports: Vec<(u16, Proto)> = ports.iter().copied().filter(|p| seen.insert(*p)).collect();
    let n = lab.pods().len();
    let mut specs = Vec::new();
    for &(port, proto) in &ports {
        for from in 0..n {
            for to in (0..n).filter(|&t| t != from) {
                specs.push(ProbeSpec { from, to, port, proto });
            }
        }
    }
    let results = probe_pairs(lab, &specs, opts)?;
    let mut pods: Vec<String> = lab.pods().iter().map(|p| p.key.clone()).collect();
    pods.sort();
    let mut allowed: BTreeMap<(u16, Proto), BTreeSet<(String, String)>> = BTreeMap::new();
    for (s, ok) in specs.iter().zip(&results) {
        if *ok {
            allowed
                .entry((s.port, s.proto))
                .or_default()
                .insert((lab.pods()[s.from].key.clone(), lab.pods()[s.to].key.clone()));
        }
    }
    Ok(ObservedMatrices {
        matrices: ports
            .iter()
            .map(|&(port, protocol)| ObservedMatrix {
                port,
                protocol,
                pods: pods.clone(),
                allowed: allowed.remove(&(port, protocol)).unwrap_or_default().into_iter().collect(),
            })
            .collect(),
    })
}

/// Probe one pair: `from` and `to` are pod keys (`namespace/name`).
pub fn probe_one(lab: &Lab, from: &str, to: &str, port: u16, proto: Proto, timeout: Duration) -> Result<bool> {
    let idx = |key: &str| {
        lab.pods()
            .iter()
            .position(|p| p.key == key)
            .ok_or_else(|| LabError::UnknownPod { lab: lab.name().to_string(), pod: key.to_string() })
    };
    let spec = ProbeSpec { from: idx(from)?, to: idx(to)?, port, proto };
    Ok(probe_pairs(lab, &[spec], &ProbeOptions { timeout, ..ProbeOptions::default() })?[0])
}

/// Probe any address from a pod (`namespace/name`) or an external host (its name): pods to external hosts
/// (north-south egress), external hosts to pods (ingress from the internet), or anything to anything.
pub fn probe_addr(lab: &Lab, from: &str, dst: IpAddr, port: u16, proto: Proto, timeout: Duration) -> Result<bool> {
    raise_nofile_limit();
    let ns = lab.netns_of(from)?.to_string();
    let job = Job { slot: 0, dst, port, proto };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(format!("probe-{ns}"))
            .spawn_scoped(scope, || {
                netns::enter_netns(&ns)?;
                Ok(run_wave(&ns, &[job], timeout)?.first().copied().unwrap_or(false))
            })
            .map_err(|e| LabError::netns("-", "spawn probe thread", e))?
            .join()
            .unwrap_or_else(|_| Err(LabError::netns("-", "probe thread", std::io::Error::other("panicked"))))
    })
}

#[derive(Debug, Clone, Copy)]
struct Job {
    slot: usize,
    dst: IpAddr,
    port: u16,
    proto: Proto,
}

/// Run arbitrary probes; `result[i]` answers `specs[i]`.
pub fn probe_pairs(lab: &Lab, specs: &[ProbeSpec], opts: &ProbeOptions) -> Result<Vec<bool>> {
    raise_nofile_limit();
    let pods = lab.pods();
    let mut results = vec![false; specs.len()];
    let mut by_source: BTreeMap<usize, Vec<Job>> = BTreeMap::new();
    for (slot, s) in specs.iter().enumerate() {
        for i in [s.from, s.to] {
            if i >= pods.len() {
                return Err(LabError::UnknownPod { lab: lab.name().to_string(), pod: format!("#{i}") });
            }
        }
        let dst = match opts.family {
            Family::V4 => Some(IpAddr::V4(pods[s.to].ipv4)),
            Family::V6 => pods[s.from].ipv6.and(pods[s.to].ipv6).map(IpAddr::V6),
        };
        if let Some(dst) = dst {
            by_source.entry(s.from).or_default().push(Job { slot, dst, port: s.port, proto: s.proto });
        }
    }
    let outcome: Vec<Result<Vec<(usize, bool)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = by_source
            .iter()
            .map(|(&from, jobs)| {
                let ns = pods[from].netns.clone();
                let timeout = opts.timeout;
                std::thread::Builder::new()
                    .name(format!("probe-{ns}"))
                    .spawn_scoped(scope, move || {
                        netns::enter_netns(&ns)?;
                        let mut out = Vec::with_capacity(jobs.len());
                        for wave in jobs.chunks(MAX_INFLIGHT) {
                            let ok = run_wave(&ns, wave, timeout)?;
                            out.extend(wave.iter().zip(ok).map(|(j, ok)| (j.slot, ok)));
                        }
                        Ok(out)
                    })
                    .map_err(|e| LabError::netns("-", "spawn probe thread", e))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h?.join()
                    .unwrap_or_else(|_| Err(LabError::netns("-", "probe thread", std::io::Error::other("panicked"))))
            })
            .collect()
    });
    for r in outcome {
        for (slot, ok) in r? {
            results[slot] = ok;
        }
    }
    Ok(results)
}

fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

enum Pending {
    Tcp(OwnedFd),
    Udp(UdpSocket, [u8; 24]),
    Sctp { sport: u16, tag: u32 },
}

fn sockaddr_connect(fd: &OwnedFd, dst: SocketAddr) -> nix::Result<()> {
    match dst {
        SocketAddr::V4(a) => connect(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => connect(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 }
}

/// Start a probe. `Ok(None)` = in flight; `Ok(Some(v))` = already decided.
fn start(job: &Job, rng: &mut Rng, used_sports: &mut BTreeSet<u16>) -> std::io::Result<(Option<bool>, Option<Pending>)> {
    let dst = SocketAddr::new(job.dst, job.port);
    match job.proto {
        Proto::Tcp => {
            let fd = socket(family_of(job.dst), SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
            setsockopt(&fd, sockopt::Linger, &libc::linger { l_onoff: 1, l_linger: 0 })?;
            match sockaddr_connect(&fd, dst) {
                Ok(()) => Ok((Some(true), None)),
                Err(Errno::EINPROGRESS) | Err(Errno::EINTR) => Ok((None, Some(Pending::Tcp(fd)))),
                Err(Errno::EMFILE) | Err(Errno::ENFILE) | Err(Errno::ENOBUFS) | Err(Errno::ENOMEM) => {
                    Err(std::io::Error::from(Errno::EMFILE))
                }
                Err(_) => Ok((Some(false), None)),
            }
        }
        Proto::Udp => {
            let any: SocketAddr = if job.dst.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = UdpSocket::bind(any)?;
            s.set_nonblocking(true)?;
            if s.connect(dst).is_err() {
                return Ok((Some(false), None));
            }
            let mut nonce = [0u8; 24];
            nonce[..8].copy_from_slice(b"porinprb");
            nonce[8..16].copy_from_slice(&rng.next_u64().to_be_bytes());
            nonce[16..].copy_from_slice(&rng.next_u64().to_be_bytes());
            let _ = s.send(&nonce);
            Ok((None, Some(Pending::Udp(s, nonce))))
        }
        Proto::Sctp => {
            let sport = loop {
                let p = 32_768 + (rng.next_u64() % 28_000) as u16;
                if used_sports.insert(p) {
                    break p;
                }
            };
            Ok((None, Some(Pending::Sctp { sport, tag: rng.tag() })))
        }
    }
}

/// Run up to [`MAX_INFLIGHT`] probes from the current thread's namespace.
fn run_wave(ns: &str, jobs: &[Job], timeout: Duration) -> Result<Vec<bool>> {
    let mut rng = Rng::new();
    let mut done: Vec<Option<bool>> = vec![None; jobs.len()];
    let mut pending: Vec<Option<Pending>> = Vec::with_capacity(jobs.len());
    let mut used_sports = BTreeSet::new();
    let deadline = Instant::now() + timeout;

    let need4 = jobs.iter().any(|j| j.proto == Proto::Sctp && j.dst.is_ipv4());
    let need6 = jobs.iter().any(|j| j.proto == Proto::Sctp && j.dst.is_ipv6());
    let raw4 = if need4 {
        Some(raw_sctp_socket(AddressFamily::Inet).map_err(|e| LabError::netns(ns, "raw socket ipv4/132", e.into()))?)
    } else {
        None
    };
    let raw6 = if need6 {
        Some(raw_sctp_socket(AddressFamily::Inet6).map_err(|e| LabError::netns(ns, "raw socket ipv6/132", e.into()))?)
    } else {
        None
    };

    // (target address, target port, our source port) -> job index
    let mut sctp_index: HashMap<(IpAddr, u16, u16), usize> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let (d, p) = start(job, &mut rng, &mut used_sports)
            .map_err(|e| LabError::netns(ns, format!("probe socket {}/{} -> {}", job.port, job.proto, job.dst), e))?;
        done[i] = d;
        if let Some(Pending::Sctp { sport, .. }) = &p {
            sctp_index.insert((job.dst, job.port, *sport), i);
        }
        pending.push(p);
    }

    let send_sctp = |job: &Job, p: &Pending| {
        if let Pending::Sctp { sport, tag } = p {
            let raw = if job.dst.is_ipv4() { &raw4 } else { &raw6 };
            if let Some(raw) = raw {
                let _ = raw_send(raw, job.dst, &sctp::build_init(*sport, job.port, *tag));
            }
        }
    };
    for (job, p) in jobs.iter().zip(&pending) {
        if let Some(p) = p {
            send_sctp(job, p);
        }
    }
    let mut next_resend = Instant::now() + RESEND_INTERVAL;
    let mut buf = vec![0u8; 65_536];

    loop {
        let open: Vec<usize> = (0..jobs.len()).filter(|&i| done[i].is_none()).collect();
        if open.is_empty() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_resend {
            for &i in &open {
                match &pending[i] {
                    Some(Pending::Udp(s, nonce)) => {
                        let _ = s.send(nonce);
                    }
                    Some(p @ Pending::Sctp { .. }) => send_sctp(&jobs[i], p),
                    _ => {}
                }
            }
            next_resend = now + RESEND_INTERVAL;
        }
        let wait = deadline.min(next_resend).saturating_duration_since(Instant::now());
        let wait_ms = u16::try_from(wait.as_millis().clamp(1, 10_000)).unwrap_or(10_000);

        let mut fds: Vec<PollFd<'_>> = Vec::new();
        let mut owners: Vec<Option<usize>> = Vec::new(); // job index, None = a raw socket
        for &i in &open {
            match &pending[i] {
                Some(Pending::Tcp(fd)) => {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                    owners.push(Some(i));
                }
                Some(Pending::Udp(s, _)) => {
                    fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                    owners.push(Some(i));
                }
                _ => {}
            }
        }
        let raws: Vec<(&OwnedFd, bool)> =
            [(&raw4, false), (&raw6, true)].into_iter().filter_map(|(r, v6)| r.as_ref().map(|r| (r, v6))).collect();
        for (r, _) in &raws {
            fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            owners.push(None);
        }
        match poll(&mut fds, PollTimeout::from(wait_ms)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(LabError::netns(ns, "poll", e.into())),
        }
        let ready: Vec<(Option<usize>, PollFlags)> =
            fds.iter().zip(&owners).map(|(f, o)| (*o, f.revents().unwrap_or(PollFlags::empty()))).collect();
        drop(fds);

        let mut raw_ready = false;
        for (owner, rev) in ready {
            if rev.is_empty() {
                continue;
            }
            let Some(i) = owner else {
                raw_ready = true;
                continue;
            };
            match &pending[i] {
                Some(Pending::Tcp(fd)) => {
                    done[i] = Some(matches!(getsockopt(fd, sockopt::SocketError), Ok(0)));
                }
                Some(Pending::Udp(s, nonce)) => {
                    let mut b = [0u8; 64];
                    loop {
                        match s.recv(&mut b) {
                            Ok(n) if b[..n] == nonce[..] => {
                                done[i] = Some(true);
                                break;
                            }
                            Ok(_) => continue,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            Err(_) => {
                                done[i] = Some(false); // ECONNREFUSED: ICMP port unreachable
                                break;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if raw_ready {
            for (raw, v6) in &raws {
                loop {
                    let (src, range) = match raw_recv(raw, *v6, &mut buf) {
                        Ok(Some(x)) => x,
                        Ok(None) => continue,
                        Err(Errno::EINTR) => continue,
                        Err(_) => break,
                    };
                    let Ok(pkt) = sctp::parse(&buf[range]) else { continue };
                    let Some(&i) = sctp_index.get(&(src, pkt.src_port, pkt.dst_port)) else { continue };
                    let Some(Pending::Sctp { tag, .. }) = &pending[i] else { continue };
                    if done[i].is_some() || pkt.vtag != *tag {
                        continue;
                    }
                    match pkt.chunk_type {
                        sctp::CHUNK_INIT_ACK => done[i] = Some(true),
                        sctp::CHUNK_ABORT => done[i] = Some(false),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(done.into_iter().map(|d| d.unwrap_or(false)).collect())
}
