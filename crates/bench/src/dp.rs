//! Porin as the agent would drive it, minus the agent: calc compiles the cluster, the dataplane programs
//! the maps and attaches to the pods' host veths. The dataplane lives on a private bpffs (unmounted on drop),
//! so nothing here touches another process's pins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use porin_calc::{Compiled, Entry, State};
use porin_dataplane::{Action, Dataplane, DataplaneOptions, EndpointPolicy, PolicyEntry, port_range_to_prefixes};
use porin_policy::Cluster;

/// calc entries → dataplane entries (port ranges become prefix covers).
pub fn to_policy_entries(entries: &[Entry]) -> Vec<PolicyEntry> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let action = if e.allow { Action::Allow } else { Action::Deny };
        match (e.identity, e.proto, e.ports) {
            (None, _, _) => out.push(PolicyEntry::default_action(action, e.rule_id)),
            (Some(id), proto, None) => {
                out.push(PolicyEntry { identity: Some(id), proto, port_prefix: None, action, rule_id: e.rule_id })
            }
            (Some(id), proto, Some((lo, hi))) => {
                for p in port_range_to_prefixes(lo, hi) {
                    out.push(PolicyEntry { identity: Some(id), proto, port_prefix: Some(p), action, rule_id: e.rule_id });
                }
            }
        }
    }
    out
}

/// A private bpffs mount; unmounted on drop.
pub struct Bpffs {
    dir: tempfile::TempDir,
}

impl Bpffs {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("porin-bench-bpffs-").tempdir()?;
        porin_dataplane::sys::ensure_bpffs(dir.path()).context("mounting a private bpffs")?;
        Ok(Self { dir })
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Where an endpoint lives: its `namespace/name` and the host-veth ifindex (real or made up).
#[derive(Clone, Debug)]
pub struct EndpointSlot {
    pub key: String,
    pub ifindex: u32,
    pub endpoint_id: u32,
}

/// Timings of one programming pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgramTiming {
    pub compile: Duration,
    pub ipcache: Duration,
    pub endpoints: Duration,
    pub policy_entries: usize,
    pub map_ops: u32,
    pub barriers: u32,
}

impl ProgramTiming {
    pub fn maps(&self) -> Duration {
        self.ipcache + self.endpoints
    }
    pub fn total(&self) -> Duration {
        self.compile + self.maps()
    }
}

/// One node's Porin: a dataplane on a private bpffs plus the compiler state.
pub struct Porin {
    pub dp: Dataplane,
    pub state: State,
    pub slots: Vec<EndpointSlot>,
    attached: Vec<(PathBuf, String)>,
    _fs: Bpffs,
}

impl Porin {
    pub fn open(slots: Vec<EndpointSlot>, max_policy: Option<u32>) -> Result<Self> {
        let fs = Bpffs::new()?;
        let opts = DataplaneOptions { max_policy, max_endpoints: Some(8192), ..Default::default() };
        let dp = Dataplane::open(&fs.path().join("porin"), &opts).context("opening the dataplane")?;
        Ok(Porin { dp, state: State::new(), slots, attached: vec![], _fs: fs })
    }

    /// Compiles `cluster` for every slot and writes the diff to the maps.
    pub fn program(&mut self, cluster: &Cluster) -> Result<ProgramTiming> {
        let t0 = Instant::now();
        let keys: std::collections::BTreeSet<&str> = self.slots.iter().map(|s| s.key.as_str()).collect();
        let compiled = porin_calc::compile(cluster, &mut self.state, &|e| keys.contains(e.id().as_str()));
        let compile = t0.elapsed();
        let mut t = self.write(&compiled)?;
        t.compile = compile;
        Ok(t)
    }

    /// Writes compiled state (ipcache, then endpoints) and times it.
    pub fn write(&mut self, compiled: &Compiled) -> Result<ProgramTiming> {
        let mut t = ProgramTiming::default();
        let t1 = Instant::now();
        let st = self.dp.set_ipcache(compiled.ipcache.to_vec()).context("set_ipcache")?;
        t.map_ops += st.inserted + st.updated + st.deleted;
        t.ipcache = t1.elapsed();
        let by_key: BTreeMap<&str, &porin_calc::EndpointProgram> =
            compiled.endpoints.iter().map(|e| (e.endpoint.as_str(), e)).collect();
        // Own addresses (anti-spoofing) of pods alone in their identity: their host prefixes. Others get none (drop).
        let own: BTreeMap<&str, Vec<std::net::IpAddr>> = compiled.ipcache.iter().filter(|(n, _)| n.prefix_len() == n.max_prefix_len()).filter_map(|(n, id)| compiled.identity(*id).filter(|i| i.members.len() == 1).map(|i| (i.members[0].as_str(), n.addr()))).fold(BTreeMap::new(), |mut m, (k, a)| { m.entry(k).or_insert_with(Vec::new).push(a); m });
        let t2 = Instant::now();
        for s in &self.slots {
            let Some(p) = by_key.get(s.key.as_str()) else { continue };
            let pol = EndpointPolicy {
                endpoint_id: s.endpoint_id,
                ingress: to_policy_entries(&p.ingress),
                egress: to_policy_entries(&p.egress),
                addrs: own.get(s.key.as_str()).cloned().unwrap_or_default(),
            };
            t.policy_entries += pol.ingress.len() + pol.egress.len();
            let st = self.dp.set_endpoint(s.ifindex, pol).with_context(|| format!("set_endpoint {}", s.key))?;
            t.map_ops += st.inserted + st.updated + st.deleted + st.flips;
            t.barriers += st.barriers;
        }
        t.endpoints = t2.elapsed();
        Ok(t)
    }

    /// Attaches to a host veth in a node netns.
    pub fn attach(&mut self, netns: &Path, ifname: &str) -> Result<u32> {
        let idx = self.dp.attach(Some(netns), ifname).with_context(|| format!("attach {ifname}"))?;
        self.attached.push((netns.to_path_buf(), ifname.to_string()));
        Ok(idx)
    }

    pub fn detach_all(&mut self) -> Result<()> {
        for (ns, ifname) in std::mem::take(&mut self.attached) {
            self.dp.detach(Some(&ns), &ifname).with_context(|| format!("detach {ifname}"))?;
        }
        Ok(())
    }
}

impl Drop for Porin {
    fn drop(&mut self) {
        let _ = self.detach_all();
    }
}
