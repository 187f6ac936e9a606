//! Delegation to the configuration's IPAM plugin (`ipam.type`, found in `CNI_PATH`), as the spec's
//! delegation rules say: same environment, same configuration, `CNI_COMMAND` set per call. An IPAM
//! plugin that predates the configuration's version is called with the newest version both support
//! (host-local of containernetworking-plugins 1.1 speaks 1.0.0, not 1.1.0); GC and STATUS are forwarded
//! only to plugins that support 1.1.0.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::config::{Env, NetConf, semver};
use crate::error::{self, CniError, Result};

pub struct Ipam {
    pub bin: PathBuf,
    /// The version to call it with (`None`: it supports none of ours).
    pub version: Option<String>,
    pub supports_1_1: bool,
}

/// Finds the IPAM binary in `CNI_PATH` and asks it which versions it speaks.
pub fn find(conf: &NetConf, env: &Env) -> Result<Ipam> {
    let ty = conf.ipam["type"].as_str().unwrap_or_default();
    let bin = env
        .path
        .iter()
        .map(|d| d.join(ty))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(error::INVALID_CONFIG, format!("ipam.type {ty:?}: no such plugin in CNI_PATH ({})", join(&env.path)))
        })?;
    let v = exec(&bin, "VERSION", env, &serde_json::json!({"cniVersion": conf.cni_version}))?;
    let supported: Vec<String> = v["supportedVersions"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default();
    let want = semver(&conf.cni_version);
    let version = if supported.contains(&conf.cni_version) {
        Some(conf.cni_version.clone())
    } else {
        supported.iter().filter(|s| semver(s).is_some_and(|x| x.0 == 1 && Some(x) <= want)).max_by_key(|s| semver(s)).cloned()
    };
    Ok(Ipam { supports_1_1: supported.iter().any(|s| s == "1.1.0"), bin, version })
}

fn join(p: &[PathBuf]) -> String {
    p.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
}

impl Ipam {
    /// Runs `command` with the network configuration (its `cniVersion` set to what the plugin speaks).
    pub fn call(&self, command: &str, conf: &NetConf, env: &Env) -> Result<Value> {
        let Some(v) = &self.version else {
            return Err(CniError::new(
                error::IPAM_FAILURE,
                format!("IPAM plugin {} supports no CNI version porin-cni can use with {}", self.bin.display(), conf.cni_version),
            ));
        };
        let mut stdin = conf.raw.clone();
        stdin["cniVersion"] = Value::String(v.clone());
        if let Some(o) = stdin.as_object_mut() {
            o.remove("prevResult");
        }
        exec(&self.bin, command, env, &stdin)
    }
}

fn exec(bin: &Path, command: &str, env: &Env, stdin: &Value) -> Result<Value> {
    let mut c = Command::new(bin);
    c.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_PATH", join(&env.path))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("IPAM plugin {} {command}", bin.display());
    let mut child = c.spawn().map_err(|e| CniError::new(error::IPAM_FAILURE, format!("{what}: {e}")))?;
    if let Some(mut i) = child.stdin.take() {
        // A plugin may exit without reading its stdin (host-local answers VERSION that way): a broken pipe is
        // not a failure, its exit status and answer below are what count.
        match i.write_all(stdin.to_string().as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(CniError::new(error::IPAM_FAILURE, format!("{what}: writing stdin: {e}"))),
        }
    }
    let out = child.wait_with_output().map_err(|e| CniError::new(error::IPAM_FAILURE, format!("{what}: {e}")))?;
    let body: Value = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).map_err(|e| {
            CniError::new(error::IPAM_FAILURE, format!("{what}: answer is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
        })?
    };
    if !out.status.success() {
        // The delegate's own code is kept when it is a well-known one (for example 11: try again).
        let code = body["code"].as_u64().map(|c| c as u32).filter(|c| *c > 0 && *c < 100).unwrap_or(error::IPAM_FAILURE);
        return Err(CniError::new(code, format!("{what} failed: {}", body["msg"].as_str().unwrap_or("no message")))
            .with_details(format!("{} {}", body["details"].as_str().unwrap_or_default(), String::from_utf8_lossy(&out.stderr).trim()).trim().to_string()));
    }
    Ok(body)
}

/// The IPv4 addresses of an IPAM result (`ips[].address`, prefix dropped). IPv6 is refused (code 7):
/// porin-cni routes IPv4 only so far.
pub fn ipv4_addresses(result: &Value) -> Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for (i, ip) in result["ips"].as_array().into_iter().flatten().enumerate() {
        let a = ip["address"].as_str().unwrap_or_default();
        let net: ipnet::IpNet = a
            .parse()
            .map_err(|_| CniError::new(error::IPAM_FAILURE, format!("IPAM result ips[{i}].address {a:?} is not an address with a prefix")))?;
        match net.addr() {
            std::net::IpAddr::V4(v4) => out.push(v4),
            std::net::IpAddr::V6(_) => {
                return Err(CniError::new(error::INVALID_CONFIG, format!("IPAM returned IPv6 address {a}: porin-cni supports IPv4 only; configure an IPv4 range")));
            }
        }
    }
    if out.is_empty() {
        return Err(CniError::new(error::IPAM_FAILURE, format!("IPAM result has no address: {result}")));
    }
    if out.len() > 1 {
        return Err(CniError::new(error::INVALID_CONFIG, format!("IPAM returned {} IPv4 addresses; a pod has one per family", out.len())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ipam_results() {
        let r = serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.77.0.5/24", "gateway": "10.77.0.1"}]});
        assert_eq!(ipv4_addresses(&r).unwrap(), vec![Ipv4Addr::new(10, 77, 0, 5)]);
        let v6 = serde_json::json!({"ips": [{"address": "fd00::5/64"}]});
        assert_eq!(ipv4_addresses(&v6).unwrap_err().code, error::INVALID_CONFIG);
        assert_eq!(ipv4_addresses(&serde_json::json!({"ips": []})).unwrap_err().code, error::IPAM_FAILURE);
        assert_eq!(ipv4_addresses(&serde_json::json!({"ips": [{"address": "10.0.0.1"}]})).unwrap_err().code, error::IPAM_FAILURE);
    }
}
