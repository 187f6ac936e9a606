//! The lab's web console: node 0's agent serves it (and the API, plain HTTP) on a loopback port of the
//! host's namespace (`--insecure-listen ... --insecure-listen-host`), and `lab up` reports its URL and a login
//! token (an admin token named `console`, also written to `<lab dir>/console.token`, mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::AgentApi;
use crate::error::{LabError, Result};

/// A free loopback port for the console (0: let the kernel pick one now).
pub fn pick_port(requested: u16) -> Result<u16> {
    if requested != 0 {
        return Ok(requested);
    }
    let what = "finding a free loopback port for the console";
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(LabError::io(what))?;
    Ok(l.local_addr().map_err(LabError::io(what))?.port())
}

/// Node 0's extra agent arguments.
pub fn agent_args(port: u16) -> Vec<String> {
    vec!["--insecure-listen".into(), format!("127.0.0.1:{port}"), "--insecure-listen-host".into()]
}

/// The console's URL and a fresh login token.
#[derive(Debug, Clone)]
pub struct ConsoleLogin {
    pub url: String,
    pub token: String,
    pub token_file: PathBuf,
}

/// Create the login token through the agent's socket and write it next to the lab's state.
pub fn login(api: &dyn AgentApi, socket: &Path, lab_dir: &Path, port: u16) -> Result<ConsoleLogin> {
    let v = api.post(socket, "/porin/v1/tokens", json!({"name": "console", "role": "admin", "rotate": true})).map_err(LabError::Api)?;
    let token = v["token"]
        .as_str()
        .ok_or_else(|| LabError::NotReady(format!("the agent created no console token: {v}")))?
        .to_string();
    let token_file = lab_dir.join("console.token");
    let what = format!("writing {}", token_file.display());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&token_file)
        .map_err(LabError::io(what.clone()))?;
    writeln!(f, "{token}").map_err(LabError::io(what))?;
    Ok(ConsoleLogin { url: format!("http://127.0.0.1:{port}/ui/"), token, token_file })
}

/// The login `up` created ([`login`]), read back from `<lab dir>/console.token`.
pub fn written(lab_dir: &Path, port: u16) -> Result<ConsoleLogin> {
    let token_file = lab_dir.join("console.token");
    let token = std::fs::read_to_string(&token_file)
        .map_err(LabError::io(format!("reading {}", token_file.display())))?
        .trim()
        .to_string();
    Ok(ConsoleLogin { url: format!("http://127.0.0.1:{port}/ui/"), token, token_file })
}
