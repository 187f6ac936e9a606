//! `porin-cni`: the CNI plugin (spec 1.0.0 and 1.1.0: ADD, DEL, CHECK, VERSION, STATUS, GC) that puts a
//! pod on a node under Porin's enforcement. See [`plugin`] for what ADD does and in which order, and
//! `docs/cni.md` for the configuration.

pub mod agent;
pub mod config;
pub mod error;
pub mod install;
pub mod ipam;
pub mod link;
pub mod plugin;

use serde_json::Value;

/// One invocation: `CNI_COMMAND` from `get`, the configuration from `stdin`. Returns the exit code and
/// what to print on stdout (a result, or the spec's error object).
pub fn main_with(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> (i32, Option<Value>) {
    let cmd_name = get("CNI_COMMAND").unwrap_or_default();
    let Some(cmd) = config::Command::parse(&cmd_name) else {
        let e = error::CniError::new(error::INVALID_ENV, format!("CNI_COMMAND {cmd_name:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"));
        return (1, Some(e.to_json(config::LATEST_VERSION)));
    };
    if cmd == config::Command::Version {
        return (0, Some(plugin::version()));
    }
    // The error carries the configuration's version when it is one we speak.
    let version = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .filter(|v| config::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| config::LATEST_VERSION.to_string());
    let out = config::parse(stdin).and_then(|conf| {
        let env = config::env(cmd, get)?;
        plugin::run(cmd, &conf, &env)
    });
    match out {
        Ok(v) => (0, v),
        Err(e) => (1, Some(e.to_json(&version))),
    }
}
