//! [`MapOps`] on the real (pinned) BPF maps, through aya.

use std::net::IpAddr;

use aya::maps::{Array, HashMap, LpmTrie, MapData, MapError, lpm_trie::Key};
use ipnet::IpNet;

use crate::abi::{EndpointValue, IpcacheValue, Meta, OwnKey, OwnValue, PolicyKey, PolicyValue, map_names as names};
use crate::error::MapOpError;
use crate::sync::MapOps;

fn io_of(e: MapError) -> std::io::Error {
    match e {
        MapError::SyscallError(s) => s.io_error,
        MapError::KeyNotFound => std::io::Error::from_raw_os_error(libc::ENOENT),
        other => std::io::Error::other(other.to_string()),
    }
}

fn err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> MapOpError {
    move |e| MapOpError::new(map, op, io_of(e))
}

/// The maps the sync engine writes.
pub struct KernelMaps {
    pub(crate) endpoints: HashMap<MapData, u32, EndpointValue>,
    pub(crate) policy: LpmTrie<MapData, [u8; 12], PolicyValue>,
    pub(crate) ipc4: LpmTrie<MapData, [u8; 4], IpcacheValue>,
    pub(crate) ipc6: LpmTrie<MapData, [u8; 16], IpcacheValue>,
    pub(crate) meta: Array<MapData, Meta>,
    pub(crate) own: HashMap<MapData, OwnKey, OwnValue>,
    /// Background `membarrier` thread shared by every wait.
    pub(crate) grace: crate::grace::GraceClock,
}

impl MapOps for KernelMaps {
    fn policy_put(&mut self, key: &PolicyKey, value: &PolicyValue) -> Result<(), MapOpError> {
        self.policy
            .insert(&Key::new(key.prefixlen, key.data_bytes()), *value, 0)
            .map_err(err(names::POLICY, "update"))
    }

    fn policy_delete(&mut self, key: &PolicyKey) -> Result<(), MapOpError> {
        self.policy.remove(&Key::new(key.prefixlen, key.data_bytes())).map_err(err(names::POLICY, "delete"))
    }

    fn endpoint_put(&mut self, ifindex: u32, value: &EndpointValue) -> Result<(), MapOpError> {
        self.endpoints.insert(ifindex, *value, 0).map_err(err(names::ENDPOINTS, "update"))
    }

    fn endpoint_delete(&mut self, ifindex: u32) -> Result<(), MapOpError> {
        self.endpoints.remove(&ifindex).map_err(err(names::ENDPOINTS, "delete"))
    }

    fn ipcache_put(&mut self, net: &IpNet, identity: u32) -> Result<(), MapOpError> {
        let v = IpcacheValue { identity };
        match net {
            IpNet::V4(n) => self
                .ipc4
                .insert(&Key::new(u32::from(n.prefix_len()), n.network().octets()), v, 0)
                .map_err(err(names::IPCACHE_V4, "update")),
            IpNet::V6(n) => self
                .ipc6
                .insert(&Key::new(u32::from(n.prefix_len()), n.network().octets()), v, 0)
                .map_err(err(names::IPCACHE_V6, "update")),
        }
    }

    fn ipcache_delete(&mut self, net: &IpNet) -> Result<(), MapOpError> {
        match net {
            IpNet::V4(n) => self
                .ipc4
                .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                .map_err(err(names::IPCACHE_V4, "delete")),
            IpNet::V6(n) => self
                .ipc6
                .remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                .map_err(err(names::IPCACHE_V6, "delete")),
        }
    }

    fn own_put(&mut self, key: &OwnKey, value: &OwnValue) -> Result<(), MapOpError> {
        self.own.insert(*key, *value, 0).map_err(err(names::OWN, "update"))
    }

    fn own_delete(&mut self, key: &OwnKey) -> Result<(), MapOpError> {
        self.own.remove(key).map_err(err(names::OWN, "delete"))
    }

    fn dump_own(&self) -> Result<Vec<(OwnKey, OwnValue)>, MapOpError> {
        self.own.iter().map(|r| r.map_err(err(names::OWN, "dump"))).collect()
    }

    fn meta_get(&self) -> Result<Meta, MapOpError> {
        self.meta.get(&0, 0).map_err(err(names::META, "lookup"))
    }

    fn meta_put(&mut self, meta: &Meta) -> Result<(), MapOpError> {
        self.meta.set(0, *meta, 0).map_err(err(names::META, "update"))
    }

    fn dump_endpoints(&self) -> Result<Vec<(u32, EndpointValue)>, MapOpError> {
        self.endpoints.iter().map(|r| r.map_err(err(names::ENDPOINTS, "dump"))).collect()
    }

    fn dump_policy(&self) -> Result<Vec<(PolicyKey, PolicyValue)>, MapOpError> {
        self.policy
            .iter()
            .map(|r| {
                r.map(|(k, v)| (PolicyKey::from_parts(k.prefix_len(), &k.data()), v))
                    .map_err(err(names::POLICY, "dump"))
            })
            .collect()
    }

    fn dump_ipcache(&self) -> Result<Vec<(IpNet, u32)>, MapOpError> {
        let mut out = Vec::new();
        for r in self.ipc4.iter() {
            let (k, v) = r.map_err(err(names::IPCACHE_V4, "dump"))?;
            let net = IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8)
                .map_err(|e| MapOpError::new(names::IPCACHE_V4, "dump", std::io::Error::other(e.to_string())))?;
            out.push((net, v.identity));
        }
        for r in self.ipc6.iter() {
            let (k, v) = r.map_err(err(names::IPCACHE_V6, "dump"))?;
            let net = IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8)
                .map_err(|e| MapOpError::new(names::IPCACHE_V6, "dump", std::io::Error::other(e.to_string())))?;
            out.push((net, v.identity));
        }
        Ok(out)
    }

    fn gp_epoch(&self) -> u64 {
        self.grace.epoch()
    }

    fn gp_elapsed(&self, epoch: u64) -> bool {
        self.grace.elapsed(epoch)
    }

    fn gp_request(&mut self, epoch: u64) {
        self.grace.request(epoch)
    }

    fn wait_for_readers(&mut self, epoch: u64) -> Result<(), MapOpError> {
        self.grace.wait(epoch).map_err(|e| MapOpError::new("(membarrier)", "synchronize_rcu", e))
    }
}
