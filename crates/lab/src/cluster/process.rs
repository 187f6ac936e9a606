//! Detached processes of the control plane (agents, etcd): start, stop, wait for etcd, release bpffs mounts.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::state::ProcRef;

/// Start `argv` detached (own process group, stdio to `log`), outside any runtime.
pub(crate) fn spawn_detached(argv: &[String], log: &Path) -> Result<ProcRef> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(LabError::io(format!("opening {}", log.display())))?;
    let out = f.try_clone().map_err(LabError::io(format!("opening {}", log.display())))?;
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(f)
        .env("PORIN_LOG", std::env::var("PORIN_LOG").unwrap_or_else(|_| "info".into()))
        .process_group(0)
        .spawn()
        .map_err(LabError::io(format!("starting {}", argv.join(" "))))?;
    let pid = child.id() as i32;
    // Not waited for: it outlives this process. A reaper thread collects it if it dies while we run.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    ProcRef::of(pid).ok_or_else(|| LabError::NotReady(format!("{} exited at once; see {}", argv[0], log.display())))
}

/// SIGKILL, then wait (up to 5 s) until it is gone.
pub(crate) fn kill_hard(p: &ProcRef) {
    if !p.is_alive() {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(p.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let t0 = Instant::now();
    while p.is_alive() && t0.elapsed() < Duration::from_secs(5) {
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM, 3 s to exit, then SIGKILL. Returns whether it was running.
pub(crate) fn stop(p: &ProcRef) -> bool {
    if !p.is_alive() {
        return false;
    }
    let pid = nix::unistd::Pid::from_raw(p.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let t0 = Instant::now();
    while p.is_alive() && t0.elapsed() < Duration::from_secs(3) {
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_hard(p);
    true
}

/// Wait until `etcdctl endpoint health` (run inside `netns`) succeeds.
pub(crate) fn wait_etcd(netns: &str, url: &str, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let ok = Command::new("ip")
            .args(["netns", "exec", netns, "etcdctl", "--endpoints", url, "endpoint", "health"])
            .env("ETCDCTL_API", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if t0.elapsed() > timeout {
            return Err(LabError::NotReady(format!("etcd at {url} (in {netns}) not healthy after {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Unmount every mount under `dir` (the agents' bpffs pins), deepest first.
pub(crate) fn release_mounts(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut mounts: Vec<PathBuf> =
        info.lines().filter_map(|l| l.split(' ').nth(4)).map(PathBuf::from).filter(|m| m.starts_with(dir)).collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}
