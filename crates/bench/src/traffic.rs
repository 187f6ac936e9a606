//! Load generators and servers, each on threads that joined a lab namespace (sockets belong to the
//! namespace they were created in). Nothing here runs in the root namespace.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// CPU every load-generating and serving thread runs on: one core does the whole exchange (client,
/// server and the softirq work they trigger), the other is left to the harness and the rest of the VM.
pub const BENCH_CPU: usize = 0;

/// Pins the calling thread to [`BENCH_CPU`] (best effort).
pub fn pin() {
    let mut set = nix::sched::CpuSet::new();
    if set.set(BENCH_CPU).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Runs `f` on a new OS thread inside the namespace at `netns`.
pub fn spawn_in<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    let path = netns.to_path_buf();
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(f())
    })
}

pub fn run_in<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    spawn_in(netns, f).join().map_err(|_| anyhow!("netns thread panicked"))?
}

/// Bench servers in the server pod: RR echo, CRR accept-and-close, the denied port and the B4 probe port.
pub struct Servers {
    stop: Arc<AtomicBool>,
}

impl Servers {
    pub fn start(server_netns: &Path, rr: u16, crr: &[u16]) -> Result<Servers> {
        let ports: Vec<u16> = std::iter::once(rr).chain(crr.iter().copied()).collect();
        let listeners = run_in(server_netns, move || -> std::io::Result<Vec<TcpListener>> {
            ports.iter().map(|p| TcpListener::bind(("0.0.0.0", *p))).collect()
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        let mut it = listeners.into_iter();
        let rr_l = it.next().expect("rr listener");
        std::thread::spawn(move || {
            for s in rr_l.incoming().flatten() {
                std::thread::spawn(move || {
                    pin();
                    echo(s)
                });
            }
        });
        for l in it {
            // Two acceptors per port: the server side must not be the bottleneck of a connect/close loop.
            for _ in 0..2 {
                let l = l.try_clone()?;
                std::thread::spawn(move || {
                    pin();
                    for s in l.incoming() {
                        drop(s);
                    }
                });
            }
        }
        Ok(Servers { stop })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&b[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// 1-byte TCP request/response over one connection for `dur`: transactions per second.
pub fn tcp_rr(client_netns: &Path, dst: SocketAddr, dur: Duration) -> Result<f64> {
    run_in(client_netns, move || -> Result<f64> {
        pin();
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(2)).context("RR connect")?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut b = [0u8; 1];
        // warm-up
        for _ in 0..100 {
            s.write_all(b"x")?;
            s.read_exact(&mut b)?;
        }
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < dur {
            for _ in 0..64 {
                s.write_all(b"x")?;
                s.read_exact(&mut b)?;
            }
            n += 64;
        }
        Ok(n as f64 / t0.elapsed().as_secs_f64())
    })?
}

/// New connections per second: `threads` clients each connect, wait for the server's close, close.
pub fn tcp_crr(client_netns: &Path, dst: SocketAddr, threads: usize, dur: Duration) -> Result<(f64, u64)> {
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (count, errors) = (count.clone(), errors.clone());
            spawn_in(client_netns, move || {
                pin();
                let mut b = [0u8; 1];
                while t0.elapsed() < dur {
                    match TcpStream::connect_timeout(&dst, Duration::from_millis(500)) {
                        Ok(mut s) => {
                            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                            match s.read(&mut b) {
                                Ok(0) => {
                                    count.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().map_err(|_| anyhow!("CRR thread panicked"))??;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok((count.load(Ordering::Relaxed) as f64 / secs, errors.load(Ordering::Relaxed)))
}

/// One connect attempt from inside `client_netns` with a deadline: true when the handshake completed.
/// (Never connect from the calling thread: it is in the root namespace.)
pub fn try_connect(client_netns: &Path, dst: SocketAddr, timeout: Duration) -> Result<bool> {
    run_in(client_netns, move || TcpStream::connect_timeout(&dst, timeout).is_ok())
}

/// iperf3, one TCP stream for `secs` seconds; Gbit/s received. Retried (up to 3 attempts) when a run
/// fails or hangs: every process has a deadline and is killed when it passes.
pub fn iperf3(client_netns_name: &str, server_netns_name: &str, server_ip: Ipv4Addr, secs: u32) -> Result<f64> {
    let mut last = anyhow!("no attempt");
    for _ in 0..3 {
        match iperf3_once(client_netns_name, server_netns_name, server_ip, secs) {
            Ok(v) => return Ok(v),
            Err(e) => {
                eprintln!("  iperf3 attempt failed: {e:#}");
                last = e;
            }
        }
    }
    Err(last)
}

fn wait_deadline(child: &mut std::process::Child, deadline: Duration) -> Result<bool> {
    let t0 = Instant::now();
    while t0.elapsed() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(false)
}

fn iperf3_once(client_netns_name: &str, server_netns_name: &str, server_ip: Ipv4Addr, secs: u32) -> Result<f64> {
    use std::io::BufRead;
    let cpu = BENCH_CPU.to_string();
    let mut srv = Command::new("ip")
        .args(["netns", "exec", server_netns_name, "iperf3", "-s", "-1", "--forceflush", "-p", "5201", "-A", &cpu])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning iperf3 -s (is iperf3 installed? scripts/setup.sh)")?;
    // Ready when it says it listens.
    let stdout = srv.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if line.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(5)).is_err() {
        let _ = srv.kill();
        let _ = srv.wait();
        bail!("iperf3 server did not start listening");
    }
    let mut cli = Command::new("ip")
        .args(["netns", "exec", client_netns_name, "iperf3", "-c", &server_ip.to_string(), "-p", "5201", "-A", &cpu])
        .args(["--connect-timeout", "2000", "-t", &secs.to_string(), "-J"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut cout = cli.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = cout.read_to_end(&mut v);
        v
    });
    let finished = wait_deadline(&mut cli, Duration::from_secs(u64::from(secs) + 10))?;
    let _ = wait_deadline(&mut srv, Duration::from_secs(2))?;
    let out = reader.join().map_err(|_| anyhow!("reader panicked"))?;
    if !finished {
        bail!("iperf3 client hung (killed after {}s)", secs + 10);
    }
    let v: serde_json::Value = serde_json::from_slice(&out).context("iperf3 -J output")?;
    if let Some(e) = v.get("error") {
        bail!("iperf3: {e}");
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| anyhow!("iperf3 JSON without end.sum_received"))
}

/// One probe: (sent, finished, handshake completed), relative to the prober's epoch.
pub type Probe = (Duration, Duration, bool);

/// How long after a change started (`at`) the kernel showed it, from the probes before the next change
/// (`until`): enforcing an allow = the first handshake that completed after `at`; revoking = the first SYN sent
/// after `at` that got no answer. None if the window shows no effect.
pub fn change_latency(probes: &[Probe], at: Duration, until: Duration, enforce: bool) -> Option<Duration> {
    let mut window = probes.iter().filter(|p| p.0 < until);
    if enforce {
        window.find(|p| p.2 && p.1 > at).map(|p| p.1 - at)
    } else {
        window.find(|p| !p.2 && p.0 >= at).map(|p| p.0 - at)
    }
}

/// A prober: a connect attempt every `spacing` (each with a `spacing` deadline) until stopped.
/// Records (start, end, ok) relative to `epoch`.
pub struct Prober {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<Vec<Probe>>>>,
}

impl Prober {
    pub fn start(client_netns: &Path, dst: SocketAddr, spacing: Duration, epoch: Instant) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = spawn_in(client_netns, move || {
            let mut v = Vec::with_capacity(1 << 14);
            while !s2.load(Ordering::Relaxed) {
                let start = Instant::now();
                let ok = connect_nb(dst, spacing);
                v.push((start - epoch, start.elapsed() + (start - epoch), ok));
                if let Some(rest) = spacing.checked_sub(start.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            v
        });
        Prober { stop, handle: Some(handle) }
    }

    pub fn finish(mut self) -> Result<Vec<Probe>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().expect("running").join().map_err(|_| anyhow!("prober panicked"))?
    }
}

/// Non-blocking connect with a poll deadline (a dropped SYN is abandoned after `timeout`).
fn connect_nb(dst: SocketAddr, timeout: Duration) -> bool {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, connect, socket};
    let Ok(fd) = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
    else {
        return false;
    };
    let SocketAddr::V4(v4) = dst else { return false };
    match connect(fd.as_raw_fd(), &SockaddrIn::from(v4)) {
        Ok(()) => return true,
        Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(_) => return false,
    }
    let mut pfd = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&fd), nix::poll::PollFlags::POLLOUT)];
    let ms = timeout.as_millis().clamp(1, 60_000) as u16;
    match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)) {
        Ok(1) => matches!(nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SocketError), Ok(0)),
        _ => false,
    }
}

/// `ip netns exec <netns> <argv...>` with stdin from `input`; fails on a non-zero exit.
pub fn ns_exec(netns: &str, argv: &[&str], input: Option<&str>) -> Result<String> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]).args(argv);
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawn {}", argv.join(" ")))?;
    if let Some(i) = input {
        child.stdin.take().expect("piped").write_all(i.as_bytes())?;
    }
    let o = child.wait_with_output()?;
    if !o.status.success() {
        bail!("ip netns exec {netns} {}: {}", argv.join(" "), String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

pub use porin_lab::netns::netns_path;
