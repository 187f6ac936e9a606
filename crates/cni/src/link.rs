//! Interfaces, addresses and routes, through `ip` (iproute2): in the plugin's own network namespace (the
//! node's: the runtime runs the plugin there) and, through `nsenter --net=<path>`, in the sandbox's. A
//! fresh program is exec'd for every change: this process never enters another namespace itself.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::error::{self, CniError, Result};

/// Calico's link-local gateway: the pod's default route points at it, the host side answers for it.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

fn hash_hex(container_id: &str, ifname: &str, n: usize) -> String {
    let d = Sha256::digest(format!("{container_id}/{ifname}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect::<String>()[..n].to_string()
}

/// The host-side veth of an attachment: `porin` + 10 hex digits of SHA-256(containerID/ifname), 15
/// characters (the kernel's limit). Deterministic, so DEL and GC find it without any state.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    format!("porin{}", hash_hex(container_id, ifname, 10))
}

/// The temporary name of the sandbox side while it is still in the node's namespace.
pub fn temp_peer_name(container_id: &str, ifname: &str) -> String {
    format!("porinp{}", hash_hex(container_id, ifname, 9))
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CniError::new(error::INTERFACE_SETUP, format!("{what}: running {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(CniError::new(error::INTERFACE_SETUP, format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS` in this (the node's) namespace.
pub fn ip(args: &[&str]) -> Result<String> {
    let mut c = Command::new("ip");
    c.args(args);
    run(c, &format!("ip {}", args.join(" ")))
}

/// `ip ARGS` in the network namespace at `netns` (a path).
pub fn ip_in(netns: &str, args: &[&str]) -> Result<String> {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={netns}")).arg("ip").args(args);
    run(c, &format!("in {netns}: ip {}", args.join(" ")))
}

/// (ifindex, MAC) of `name` in this namespace; None when it does not exist.
pub fn link_info(name: &str) -> Result<Option<(u32, String)>> {
    link_info_with(ip, name)
}

/// (ifindex, MAC) of `name` in the namespace at `netns`.
pub fn link_info_in(netns: &str, name: &str) -> Result<Option<(u32, String)>> {
    link_info_with(|args| ip_in(netns, args), name)
}

fn link_info_with(f: impl Fn(&[&str]) -> Result<String>, name: &str) -> Result<Option<(u32, String)>> {
    match f(&["-j", "link", "show", "dev", name]) {
        Ok(out) => {
            let v: serde_json::Value = serde_json::from_str(&out)
                .map_err(|e| CniError::new(error::INTERFACE_SETUP, format!("ip -j link show {name}: {e}")))?;
            let l = &v[0];
            match (l["ifindex"].as_u64(), l["address"].as_str()) {
                (Some(i), Some(m)) => Ok(Some((i as u32, m.to_string()))),
                _ => Ok(None),
            }
        }
        Err(e) if e.msg.contains("does not exist") || e.msg.contains("Cannot find device") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes `name` (and so its veth peer) when it exists; true when something was deleted.
pub fn delete_if_exists(name: &str) -> Result<bool> {
    match ip(&["link", "del", "dev", name]) {
        Ok(_) => Ok(true),
        Err(e) if e.msg.contains("does not exist") || e.msg.contains("Cannot find device") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes a per-interface sysctl of this namespace (`/proc/sys/net/...` follows the caller's namespace).
pub fn sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), value)
        .map_err(|e| CniError::new(error::INTERFACE_SETUP, format!("writing {value} to /proc/sys/{path}: {e}")))
}

/// Host routes (`ip -j route show`) that go out of `dev`.
pub fn routes_via(dev: &str) -> Result<Vec<String>> {
    let out = ip(&["-j", "route", "show", "dev", dev]).or_else(|e| {
        if e.msg.contains("does not exist") || e.msg.contains("Cannot find device") { Ok("[]".into()) } else { Err(e) }
    })?;
    let v: serde_json::Value = serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })
        .map_err(|e| CniError::new(error::INTERFACE_SETUP, format!("ip -j route show dev {dev}: {e}")))?;
    Ok(v.as_array().map(|a| a.iter().filter_map(|r| r["dst"].as_str().map(str::to_string)).collect()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_short_and_prefixed() {
        let a = host_veth_name("porin-t-a", "eth0");
        assert_eq!(a, host_veth_name("porin-t-a", "eth0"));
        assert_ne!(a, host_veth_name("porin-t-a", "eth1"));
        assert_ne!(a, host_veth_name("porin-t-b", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("porin"));
        let t = temp_peer_name("porin-t-a", "eth0");
        assert_eq!(t.len(), 15);
        assert_ne!(t, a);
    }
}
