//! The kernel seam: `ip` invocations and work inside a network namespace.
//!
//! Two rules from experience: a process that runs Rust code must never fork into a namespace (use
//! `ip -n`/`ip netns exec`, which exec a fresh program), and `setns` happens only on a dedicated OS
//! thread that is thrown away afterwards ([`in_netns`]). Sockets keep the namespace they were
//! created in, so a thread can create its sockets and keep serving them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::sched::{CloneFlags, setns};

use crate::error::{LabError, Result};

/// Where `ip netns` keeps its bind mounts.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Prefix of the loopback alias that marks a namespace as created by the lab; the rest is the
/// absolute path of the owning state file.
pub const MARKER_PREFIX: &str = "porin-lab state=";

/// The bind-mount path of a named namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Does the named namespace exist?
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Names of all namespaces in [`NETNS_RUN_DIR`], sorted.
pub fn list_netns() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(NETNS_RUN_DIR)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn render(program: &str, args: &[String]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        if a.is_empty() || a.contains(' ') {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(a);
        }
    }
    s
}

/// Run a command to completion; on a non-zero exit, the error carries the command line and stderr.
pub fn run(program: &str, args: &[String]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn { command: render(program, args), source })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            command: render(program, args),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `ip <args>` (in the caller's namespace: only for `netns add/del`).
pub fn ip(args: &[&str]) -> Result<Output> {
    run("ip", &args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

/// `ip -n <netns> <args>`.
pub fn ip_in(netns: &str, args: &[String]) -> Result<Output> {
    let mut full = vec!["-n".to_string(), netns.to_string()];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Run several commands in one namespace with a single `ip -n <netns> -batch -`. On failure the
/// error names the command that failed (arguments must not contain whitespace).
pub fn ip_batch(netns: &str, cmds: &[Vec<String>]) -> Result<()> {
    use std::io::Write;
    if cmds.len() == 1 {
        return ip_in(netns, &cmds[0]).map(|_| ());
    }
    let script: String = cmds.iter().map(|c| c.join(" ") + "\n").collect();
    let command = format!("ip -n {netns} -batch -");
    let mut child = Command::new("ip")
        .args(["-n", netns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let written = stdin.write_all(script.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(|source| LabError::Spawn { command: command.clone(), source })?;
    if out.status.success() {
        return written.map_err(|source| LabError::Spawn { command, source });
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // iproute2 reports "Command failed -:<line>".
    let failed = stderr
        .rsplit_once("Command failed -:")
        .and_then(|(_, n)| n.trim().split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
        .and_then(|n| cmds.get(n.checked_sub(1)?));
    Err(LabError::Command {
        command: match failed {
            Some(c) => format!("ip -n {netns} {} (in a batch of {})", c.join(" "), cmds.len()),
            None => command,
        },
        status: out.status.to_string(),
        stderr,
    })
}

/// Create a named namespace, bring its loopback up and mark it with `marker` (the lo alias).
pub fn create_netns(name: &str, marker: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    ip_in(name, &["link".into(), "set".into(), "dev".into(), "lo".into(), "alias".into(), marker.into()])?;
    ip_in(name, &["link".into(), "set".into(), "dev".into(), "lo".into(), "up".into()])?;
    Ok(())
}

/// Delete a named namespace (ok if it is already gone).
pub fn delete_netns(name: &str) -> Result<()> {
    if !netns_exists(name) {
        return Ok(());
    }
    match ip(&["netns", "del", name]) {
        Ok(_) => Ok(()),
        Err(_) if !netns_exists(name) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The lab marker of a namespace (its loopback alias), if it has one.
pub fn read_marker(name: &str) -> Option<String> {
    let out = ip_in(name, &["-j".into(), "link".into(), "show".into(), "dev".into(), "lo".into()]).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let alias = v.get(0)?.get("ifalias")?.as_str()?;
    alias.strip_prefix(MARKER_PREFIX).map(str::to_string)
}

/// `ifname -> ifindex` of every link in a namespace.
pub fn link_indexes(netns: &str) -> Result<Vec<(String, u32)>> {
    let out = ip_in(netns, &["-j".into(), "link".into(), "show".into()])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| LabError::Command {
        command: format!("ip -n {netns} -j link show"),
        status: "unparsable output".into(),
        stderr: e.to_string(),
    })?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| Some((l.get("ifname")?.as_str()?.to_string(), u32::try_from(l.get("ifindex")?.as_u64()?).ok()?)))
        .collect())
}

/// Run `f` on a fresh OS thread that has joined the named namespace; the thread ends with `f`.
pub fn in_netns<T, F>(netns: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name(format!("netns-{netns}"))
            .spawn_scoped(s, || {
                enter_netns(netns)?;
                f()
            })
            .map_err(|e| LabError::netns(netns, "spawn thread", e))?
            .join()
            .unwrap_or_else(|_| Err(LabError::netns(netns, "thread", std::io::Error::other("panicked"))))
    })
}

/// Move the *calling thread* into the named namespace. Only call this on a dedicated thread.
pub fn enter_netns(netns: &str) -> Result<()> {
    let f = File::open(netns_path(netns)).map_err(|e| LabError::netns(netns, "open", e))?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| LabError::netns(netns, "setns", e.into()))
}

/// Write sysctls (`net/ipv4/ip_forward` style keys under `/proc/sys`) inside a namespace.
pub fn write_sysctls(netns: &str, kv: &[(String, String)]) -> Result<()> {
    in_netns(netns, || {
        for (k, v) in kv {
            let path = Path::new("/proc/sys").join(k);
            match std::fs::write(&path, v) {
                Ok(()) => {}
                // A kernel without IPv6 has no net/ipv6: IPv4-only labs still work there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && k.starts_with("net/ipv6/") => {
                    tracing::debug!(netns, key = %k, "no such sysctl; skipped");
                }
                Err(e) => return Err(LabError::netns(netns, format!("sysctl {k}={v}"), e)),
            }
        }
        Ok(())
    })
}

/// Read a sysctl inside a namespace (trimmed).
pub fn read_sysctl(netns: &str, key: &str) -> Result<String> {
    in_netns(netns, || {
        std::fs::read_to_string(Path::new("/proc/sys").join(key))
            .map(|s| s.trim().to_string())
            .map_err(|e| LabError::netns(netns, format!("read sysctl {key}"), e))
    })
}
