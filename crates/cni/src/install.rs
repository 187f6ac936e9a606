//! What `porin install-cni` writes: the conflist, the plugin binary and the `cni` token file. Every file
//! is written next to its destination and renamed into place, so a runtime never reads half a file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The conflist's file name.
pub const CONFLIST: &str = "10-porin.conflist";
/// The token file's name (next to the conflist, mode 0600).
pub const TOKEN_FILE: &str = "porin-cni.token";

#[derive(Debug, Clone)]
pub struct Options {
    /// The runtime's configuration directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// The runtime's plugin directory (`/opt/cni/bin`).
    pub bin_dir: PathBuf,
    /// The `porin-cni` binary to copy.
    pub binary: PathBuf,
    pub network: String,
    /// `cniVersion` of the list; `cniVersions` lists 1.0.0 and 1.1.0 so 1.1 runtimes pick 1.1.0.
    pub cni_version: String,
    pub agent_socket: PathBuf,
    pub data_dir: PathBuf,
    pub pod_namespace: String,
    /// The pod range handed to host-local.
    pub subnet: ipnet::Ipv4Net,
    /// host-local's lease directory (its default when None).
    pub ipam_data_dir: Option<PathBuf>,
    pub timeout_seconds: u64,
}

pub fn conflist(o: &Options) -> Value {
    let mut ipam = json!({"type": "host-local", "ranges": [[{"subnet": o.subnet.trunc().to_string()}]]});
    if let Some(d) = &o.ipam_data_dir {
        ipam["dataDir"] = json!(d);
    }
    json!({
        "cniVersion": o.cni_version,
        "cniVersions": crate::config::SUPPORTED_VERSIONS,
        "name": o.network,
        "plugins": [{
            "type": "porin-cni",
            "agentSocket": o.agent_socket,
            "tokenFile": o.conf_dir.join(TOKEN_FILE),
            "dataDir": o.data_dir,
            "podNamespace": o.pod_namespace,
            "timeoutSeconds": o.timeout_seconds,
            "ipam": ipam,
        }],
    })
}

fn put(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(".{}.porin-tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("x")));
    std::fs::write(&tmp, bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}

/// Writes the token, the binary and then the conflist (last: a runtime that sees it finds the rest).
/// Returns the paths written.
pub fn install(o: &Options, token: &str) -> std::io::Result<Vec<PathBuf>> {
    let ctx = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    for d in [&o.conf_dir, &o.bin_dir] {
        std::fs::create_dir_all(d).map_err(ctx(d))?;
    }
    let token_path = o.conf_dir.join(TOKEN_FILE);
    put(&token_path, format!("{}\n", token.trim()).as_bytes(), 0o600).map_err(ctx(&token_path))?;
    let bin = o.bin_dir.join("porin-cni");
    let bytes = std::fs::read(&o.binary).map_err(ctx(&o.binary))?;
    put(&bin, &bytes, 0o755).map_err(ctx(&bin))?;
    let list = o.conf_dir.join(CONFLIST);
    let mut text = serde_json::to_string_pretty(&conflist(o)).unwrap_or_default();
    text.push('\n');
    put(&list, text.as_bytes(), 0o644).map_err(ctx(&list))?;
    Ok(vec![token_path, bin, list])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_conflist_the_plugin_accepts() {
        let tmp = tempfile::tempdir().unwrap();
        let fake_bin = tmp.path().join("src-bin");
        std::fs::write(&fake_bin, b"#!/bin/sh\n").unwrap();
        let o = Options {
            conf_dir: tmp.path().join("net.d"),
            bin_dir: tmp.path().join("bin"),
            binary: fake_bin,
            network: "porin".into(),
            cni_version: "1.0.0".into(),
            agent_socket: "/run/porin/porin.sock".into(),
            data_dir: tmp.path().join("data"),
            pod_namespace: "default".into(),
            subnet: "10.77.0.9/24".parse().unwrap(),
            ipam_data_dir: None,
            timeout_seconds: 30,
        };
        let written = install(&o, "porin_tok").unwrap();
        assert_eq!(written.len(), 3);
        let tok = &written[0];
        assert_eq!(std::fs::read_to_string(tok).unwrap(), "porin_tok\n");
        assert_eq!(std::fs::metadata(tok).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&written[1]).unwrap().permissions().mode() & 0o777, 0o755);
        let list: Value = serde_json::from_slice(&std::fs::read(&written[2]).unwrap()).unwrap();
        assert_eq!(list["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.77.0.0/24");
        // What a runtime hands the plugin: the entry with name and cniVersion of the list.
        let mut entry = list["plugins"][0].clone();
        entry["name"] = list["name"].clone();
        entry["cniVersion"] = list["cniVersion"].clone();
        let conf = crate::config::parse(entry.to_string().as_bytes()).unwrap();
        assert_eq!(conf.token_file.unwrap(), o.conf_dir.join(TOKEN_FILE));
        assert!(!tmp.path().join("net.d").read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("porin-tmp")));
    }
}
