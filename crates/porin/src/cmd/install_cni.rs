//! `porin install-cni`: puts porin-cni where a container runtime finds it — the conflist
//! (`<conf-dir>/10-porin.conflist`), the plugin binary (`<bin-dir>/porin-cni`) and a `cni` token file
//! (`<conf-dir>/porin-cni.token`, mode 0600; created through the agent's API unless `--token` is given).
//! The DaemonSet's init step runs it; tests point `--conf-dir`/`--bin-dir` at their own directories.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use hyper::Method;

use crate::client::{Client, ClientArgs, block_on};

#[derive(Args, Debug)]
pub struct InstallCniArgs {
    /// Where the runtime reads network configurations.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub conf_dir: PathBuf,
    /// Where the runtime looks for plugin binaries (CNI_PATH).
    #[arg(long, default_value = "/opt/cni/bin", value_name = "DIR")]
    pub bin_dir: PathBuf,
    /// The porin-cni binary to install [default: porin-cni next to this porin binary].
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// The network's name in the conflist.
    #[arg(long, default_value = "porin")]
    pub network: String,
    /// The pod address range handed to host-local (one node's range).
    #[arg(long, value_name = "CIDR")]
    pub subnet: ipnet::Ipv4Net,
    /// host-local's lease directory [default: host-local's own, /var/lib/cni/networks].
    #[arg(long, value_name = "DIR")]
    pub ipam_data_dir: Option<PathBuf>,
    /// The conflist's cniVersion (it also lists 1.0.0 and 1.1.0 in cniVersions). 1.0.0 by default: older
    /// runtimes (containerd 1.6's libcni) refuse 1.1.0.
    #[arg(long, default_value = "1.0.0", value_parser = ["1.0.0", "1.1.0"])]
    pub cni_version: String,
    /// The agent's Unix socket, as the plugin reaches it.
    #[arg(long, default_value = crate::client::DEFAULT_SOCKET, value_name = "PATH")]
    pub agent_socket: PathBuf,
    /// Where the plugin records what it created.
    #[arg(long, default_value = porin_cni::config::DEFAULT_DATA_DIR, value_name = "DIR")]
    pub cni_data_dir: PathBuf,
    /// The namespace of pods named by container id (runtimes that pass no K8S_POD_NAMESPACE).
    #[arg(long, default_value = "default")]
    pub pod_namespace: String,
    /// How long ADD waits for the pod's policy to be in the kernel.
    #[arg(long, default_value_t = porin_cni::config::DEFAULT_TIMEOUT_SECONDS)]
    pub timeout_seconds: u64,
    /// Use this cni token instead of creating one (`porin token create NAME --role cni`).
    #[arg(long, env = "PORIN_CNI_TOKEN", hide_env_values = true)]
    pub cni_token: Option<String>,
    /// The name of the token to create (rotated when it exists).
    #[arg(long, default_value = "porin-cni")]
    pub token_name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn install_cni(a: InstallCniArgs) -> Result<ExitCode> {
    let binary = match a.binary {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("porin-cni"),
    };
    if !binary.is_file() {
        bail!("porin-cni binary {} not found (build it with `cargo build -p porin-cni`, or pass --binary)", binary.display());
    }
    let token = match a.cni_token.filter(|t| !t.trim().is_empty()) {
        Some(t) => t,
        None => {
            let c = Client::new(&a.client);
            let body = serde_json::json!({"name": a.token_name, "role": "cni", "rotate": true});
            let v = block_on(c.call(Method::POST, "/porin/v1/tokens", Some(serde_json::to_vec(&body)?)))?
                .context("creating the cni token through the agent (or pass --cni-token)")?;
            v["token"].as_str().map(str::to_string).context("the agent's token answer has no token")?
        }
    };
    let o = porin_cni::install::Options {
        conf_dir: a.conf_dir,
        bin_dir: a.bin_dir,
        binary,
        network: a.network,
        cni_version: a.cni_version,
        agent_socket: a.agent_socket,
        data_dir: a.cni_data_dir,
        pod_namespace: a.pod_namespace,
        subnet: a.subnet,
        ipam_data_dir: a.ipam_data_dir,
        timeout_seconds: a.timeout_seconds,
    };
    for p in porin_cni::install::install(&o, &token)? {
        println!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
