//! A PacketCapture's files on the nodes (`porin capture status|copy|clean`): which nodes hold files, the status
//! table, and the copy and clean that reach every agent they know (the connected one, and a lab's agents).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

use crate::client::{Client, ClientArgs, ServerError, block_on, enc};

pub async fn download(c: &Client, path: &str) -> Result<Vec<u8>> {
    let resp = c.send(Method::GET, path, None).await?;
    let st = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if !st.is_success() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        return Err(ServerError::from_body(st, &v).into());
    }
    Ok(bytes.to_vec())
}

/// The nodes whose status lists files (so an agent of theirs must be reached).
pub fn nodes_with_files(nodes: &[Value]) -> BTreeMap<String, usize> {
    nodes
        .iter()
        .filter_map(|n| {
            let k = n["fileNames"].as_array().map_or(0, Vec::len);
            (k > 0).then(|| (n["node"].as_str().unwrap_or("").to_string(), k))
        })
        .collect()
}

/// A PacketCapture and the agents to reach for its files: the connected one, and every agent of a kernel lab.
#[derive(Debug, Clone)]
pub struct CaptureTarget {
    pub name: String,
    /// Its namespace [default: default].
    pub namespace: Option<String>,
    /// Also reach every agent of this kernel lab.
    pub lab: Option<String>,
    /// Directory of lab state (with `lab`).
    pub lab_state_dir: PathBuf,
    pub client: ClientArgs,
}

impl CaptureTarget {
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
    fn path(&self) -> String {
        format!("/porin/v1/captures/{}/{}", enc(self.ns()), enc(&self.name))
    }
    /// The connected agent, then the lab's agents.
    fn clients(&self) -> Result<Vec<Client>> {
        let mut out = vec![Client::new(&self.client)];
        if let Some(lab) = &self.lab {
            let meta = porin_lab::cluster::control(&porin_lab::LabOptions::with_state_dir(&self.lab_state_dir), lab)?
                .ok_or_else(|| invalid!("no lab {lab:?} in {}", self.lab_state_dir.display()))?;
            for ag in meta.agents {
                out.push(Client::new(&ClientArgs::socket(ag.socket.display().to_string())));
            }
        }
        Ok(out)
    }

    /// Every node's status entry (from the connected agent).
    pub fn node_statuses(&self) -> Result<Vec<Value>> {
        self.node_statuses_of(&Client::new(&self.client))
    }

    fn node_statuses_of(&self, c: &Client) -> Result<Vec<Value>> {
        let v = block_on(c.call(Method::GET, &self.path(), None))??;
        Ok(v["files"].as_array().cloned().unwrap_or_default())
    }

    /// Copy every node's files into `dest` (one line per file to `out`); the number copied. A node whose status
    /// lists files but whose agent was not reached is an error, never a silently incomplete copy.
    pub fn copy(&self, dest: &Path, out: &mut dyn Write) -> Result<usize> {
        let clients = self.clients()?;
        let mut expected = nodes_with_files(&self.node_statuses_of(&clients[0])?);
        std::fs::create_dir_all(dest).map_err(Error::io(format!("creating {}", dest.display())))?;
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut copied = 0usize;
        let mut reached = std::collections::BTreeSet::new();
        for c in &clients {
            let v = block_on(c.call(Method::GET, &format!("{}/files", self.path()), None))??;
            let node = v["node"].as_str().unwrap_or("").to_string();
            if !reached.insert(node.clone()) {
                continue; // the connected agent is also one of the lab's
            }
            expected.remove(&node);
            for f in v["files"].as_array().into_iter().flatten() {
                let name = f["name"].as_str().ok_or_else(|| invalid!("node {node}: a file without a name"))?;
                if name.contains('/') || name.starts_with('.') {
                    bail!("node {node}: refusing file name {name:?}");
                }
                if let Some(other) = seen.insert(name.to_string(), node.clone()) {
                    bail!("file {name} exists on nodes {other} and {node}");
                }
                let bytes = block_on(download(c, &format!("{}/files/{}", self.path(), enc(name))))??;
                let to = dest.join(name);
                std::fs::write(&to, &bytes).map_err(Error::io(format!("writing {}", to.display())))?;
                writeln!(out, "{node}: {name} ({} bytes) -> {}", bytes.len(), to.display()).map_err(Error::write)?;
                copied += 1;
            }
        }
        if !expected.is_empty() {
            let missing: Vec<String> = expected.iter().map(|(n, k)| format!("{n} ({k} files)")).collect();
            bail!(
                "copied {copied} file(s), but no agent of node(s) {} was reached: run the command against that node's \
                 agent (--server), or with --lab for a kernel lab",
                missing.join(", ")
            );
        }
        Ok(copied)
    }

    /// Remove every node's files (one line per node to `out`); an error names the nodes not reached.
    pub fn clean(&self, out: &mut dyn Write) -> Result<()> {
        let clients = self.clients()?;
        let mut expected = nodes_with_files(&self.node_statuses_of(&clients[0])?);
        let mut reached = std::collections::BTreeSet::new();
        for c in &clients {
            let v = block_on(c.call(Method::DELETE, &format!("{}/files", self.path()), None))??;
            let node = v["node"].as_str().unwrap_or("").to_string();
            if !reached.insert(node.clone()) {
                continue;
            }
            expected.remove(&node);
            let n = v["removed"].as_array().map_or(0, Vec::len);
            writeln!(out, "{node}: removed {n} file(s)").map_err(Error::write)?;
        }
        if !expected.is_empty() {
            let missing: Vec<String> = expected.keys().cloned().collect();
            bail!("no agent of node(s) {} was reached: their files remain (use --server or --lab)", missing.join(", "));
        }
        Ok(())
    }
}

/// `porin capture status`'s table: per node its state, packets, lost packets and files.
pub fn status_table(nodes: &[Value]) -> String {
    let mut rows = vec![["NODE", "STATE", "PACKETS", "LOST", "FILES"].map(String::from).to_vec()];
    for n in nodes {
        let files: Vec<&str> = n["fileNames"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mut state = n["state"].as_str().unwrap_or("").to_string();
        if let Some(e) = n["error"].as_str() {
            state = format!("{state} ({e})");
        }
        rows.push(vec![
            n["node"].as_str().unwrap_or("").to_string(),
            state,
            n["packets"].as_u64().unwrap_or(0).to_string(),
            n["lost"].as_u64().unwrap_or(0).to_string(),
            if files.is_empty() { "-".into() } else { files.join(",") },
        ]);
    }
    let mut w = vec![0; rows[0].len()];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}
