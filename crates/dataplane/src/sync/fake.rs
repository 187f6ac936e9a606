//! [`FakeMaps`]: the in-memory [`MapOps`] the synchronisation engine is tested against.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::MapOps;
use crate::abi::{self, EndpointValue, Meta, OwnKey, OwnValue, PolicyKey, PolicyValue};
use crate::error::MapOpError;

/// An in-memory [`MapOps`] with optional capacities, for tests.
#[derive(Debug, Default)]
pub struct FakeMaps {
    pub endpoints: BTreeMap<u32, EndpointValue>,
    pub policy: BTreeMap<PolicyKey, PolicyValue>,
    pub ipcache: BTreeMap<IpNet, u32>,
    pub own: BTreeMap<OwnKey, OwnValue>,
    pub meta: Meta,
    pub policy_capacity: Option<usize>,
    pub ipcache_capacity: Option<usize>,
    /// Grace periods waited for synchronously (`wait_for_readers`).
    pub barriers: u32,
    /// Grace periods started / the epoch `completed` (see [`crate::grace`]).
    pub gp_epoch: u64,
    pub gp_completed: u64,
    /// Highest epoch a background grace period was requested for.
    pub gp_requested: Option<u64>,
    /// Every operation in order, for asserting on ordering.
    pub log: Vec<String>,
}

impl FakeMaps {
    fn full(map: &'static str, op: &'static str) -> MapOpError {
        MapOpError::new(map, op, std::io::Error::from_raw_os_error(libc::E2BIG))
    }
    fn missing(map: &'static str, op: &'static str) -> MapOpError {
        MapOpError::new(map, op, std::io::Error::from_raw_os_error(libc::ENOENT))
    }
    /// One whole grace period (what the background thread does).
    pub fn complete_grace_period(&mut self) {
        let start = self.gp_epoch;
        self.gp_epoch = start + 1;
        self.gp_completed = self.gp_completed.max(start + 1);
    }
}

impl MapOps for FakeMaps {
    fn policy_put(&mut self, key: &PolicyKey, value: &PolicyValue) -> Result<(), MapOpError> {
        if !self.policy.contains_key(key) && self.policy_capacity.is_some_and(|c| self.policy.len() >= c) {
            return Err(Self::full(abi::map_names::POLICY, "update"));
        }
        self.log.push(format!("pol+ {:#x}/{}", key.policy_id, key.prefixlen));
        self.policy.insert(*key, *value);
        Ok(())
    }
    fn policy_delete(&mut self, key: &PolicyKey) -> Result<(), MapOpError> {
        self.log.push(format!("pol- {:#x}/{}", key.policy_id, key.prefixlen));
        self.policy.remove(key).map(|_| ()).ok_or_else(|| Self::missing(abi::map_names::POLICY, "delete"))
    }
    fn endpoint_put(&mut self, ifindex: u32, value: &EndpointValue) -> Result<(), MapOpError> {
        self.log.push(format!("ep {ifindex} gen={} rev={} flags={}", value.active_gen, value.policy_rev, value.flags));
        self.endpoints.insert(ifindex, *value);
        Ok(())
    }
    fn endpoint_delete(&mut self, ifindex: u32) -> Result<(), MapOpError> {
        self.log.push(format!("ep- {ifindex}"));
        self.endpoints.remove(&ifindex).map(|_| ()).ok_or_else(|| Self::missing(abi::map_names::ENDPOINTS, "delete"))
    }
    fn ipcache_put(&mut self, net: &IpNet, identity: u32) -> Result<(), MapOpError> {
        if !self.ipcache.contains_key(net) && self.ipcache_capacity.is_some_and(|c| self.ipcache.len() >= c) {
            return Err(Self::full(abi::map_names::IPCACHE_V4, "update"));
        }
        self.ipcache.insert(*net, identity);
        Ok(())
    }
    fn ipcache_delete(&mut self, net: &IpNet) -> Result<(), MapOpError> {
        self.ipcache.remove(net).map(|_| ()).ok_or_else(|| Self::missing(abi::map_names::IPCACHE_V4, "delete"))
    }
    fn own_put(&mut self, key: &OwnKey, value: &OwnValue) -> Result<(), MapOpError> {
        self.log.push(format!("own+ {}", value.ifindex));
        self.own.insert(*key, *value);
        Ok(())
    }
    fn own_delete(&mut self, key: &OwnKey) -> Result<(), MapOpError> {
        self.log.push("own-".to_string());
        self.own.remove(key).map(|_| ()).ok_or_else(|| Self::missing(abi::map_names::OWN, "delete"))
    }
    fn dump_own(&self) -> Result<Vec<(OwnKey, OwnValue)>, MapOpError> {
        Ok(self.own.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn meta_get(&self) -> Result<Meta, MapOpError> {
        Ok(self.meta)
    }
    fn meta_put(&mut self, meta: &Meta) -> Result<(), MapOpError> {
        self.meta = *meta;
        Ok(())
    }
    fn dump_endpoints(&self) -> Result<Vec<(u32, EndpointValue)>, MapOpError> {
        Ok(self.endpoints.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn dump_policy(&self) -> Result<Vec<(PolicyKey, PolicyValue)>, MapOpError> {
        Ok(self.policy.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn dump_ipcache(&self) -> Result<Vec<(IpNet, u32)>, MapOpError> {
        Ok(self.ipcache.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn gp_epoch(&self) -> u64 {
        self.gp_epoch
    }
    fn gp_elapsed(&self, epoch: u64) -> bool {
        self.gp_completed > epoch
    }
    fn gp_request(&mut self, epoch: u64) {
        self.gp_requested = self.gp_requested.max(Some(epoch));
    }
    fn wait_for_readers(&mut self, epoch: u64) -> Result<(), MapOpError> {
        self.barriers += 1;
        self.log.push("barrier".into());
        while self.gp_completed <= epoch {
            self.complete_grace_period();
        }
        Ok(())
    }
}
