//! Desired-vs-actual synchronisation of the endpoint, policy and ipcache maps.
//!
//! The engine keeps the *actual* content of the maps it owns (read back from
//! the pinned maps at start, then updated after every successful syscall) and
//! applies only differences. All kernel access goes through [`MapOps`], so the
//! logic is unit-tested against an in-memory fake ([`FakeMaps`]).
//!
//! Policy updates are double-buffered: every endpoint has two generations of
//! policy entries (the `gen` bit of `policy_id`). An update rewrites the
//! INACTIVE generation (diff only), then flips `active_gen` and bumps
//! `policy_rev` in ONE endpoints-map update. Every flip records the
//! grace-period epoch ([`MapOps::gp_epoch`]) read right after the write and
//! asks for a grace period in the background. Before the inactive generation
//! is touched, the engine checks that a grace period which started after that
//! flip has completed; only if none has does it wait — for one covering every
//! flip so far, so a batch of updates waits at most once. No packet that read
//! the old `active_gen` can still be reading the generation being rewritten.
//! An update whose [`EndpointPolicy`] equals the last one written (and whose
//! flags are unchanged) returns before compiling anything.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::abi::{self, Action, Direction, EndpointValue, Meta, OwnKey, OwnValue, PolicyKey, PolicyValue};
use crate::entries::{self, EndpointAddrs, EndpointPolicy};
use crate::error::{Error, MapOpError, Result};

/// The kernel seam: every map operation the engine performs.
pub trait MapOps {
    fn policy_put(&mut self, key: &PolicyKey, value: &PolicyValue) -> Result<(), MapOpError>;
    fn policy_delete(&mut self, key: &PolicyKey) -> Result<(), MapOpError>;
    fn endpoint_put(&mut self, ifindex: u32, value: &EndpointValue) -> Result<(), MapOpError>;
    fn endpoint_delete(&mut self, ifindex: u32) -> Result<(), MapOpError>;
    fn ipcache_put(&mut self, net: &IpNet, identity: u32) -> Result<(), MapOpError>;
    fn ipcache_delete(&mut self, net: &IpNet) -> Result<(), MapOpError>;
    fn meta_get(&self) -> Result<Meta, MapOpError>;
    fn meta_put(&mut self, meta: &Meta) -> Result<(), MapOpError>;
    fn dump_endpoints(&self) -> Result<Vec<(u32, EndpointValue)>, MapOpError>;
    fn dump_policy(&self) -> Result<Vec<(PolicyKey, PolicyValue)>, MapOpError>;
    fn dump_ipcache(&self) -> Result<Vec<(IpNet, u32)>, MapOpError>;
    /// `porin_own_v1`: which local endpoint owns an address.
    fn own_put(&mut self, key: &OwnKey, value: &OwnValue) -> Result<(), MapOpError>;
    fn own_delete(&mut self, key: &OwnKey) -> Result<(), MapOpError>;
    fn dump_own(&self) -> Result<Vec<(OwnKey, OwnValue)>, MapOpError>;
    /// The grace-period epoch, read right after a write that unpublishes
    /// something (a flip, an endpoint delete).
    fn gp_epoch(&self) -> u64;
    /// True once an RCU grace period that started after the write whose
    /// caller read `epoch` has completed (no BPF program that could have seen
    /// the state before that write still runs). Never blocks.
    fn gp_elapsed(&self, epoch: u64) -> bool;
    /// Asks for such a grace period in the background (never blocks).
    fn gp_request(&mut self, epoch: u64);
    /// Returns once `gp_elapsed(epoch)`.
    fn wait_for_readers(&mut self, epoch: u64) -> Result<(), MapOpError>;
}

/// What a sync call changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub inserted: u32,
    pub updated: u32,
    pub deleted: u32,
    /// Endpoint-map writes (generation flips and flag/rev changes).
    pub flips: u32,
    /// RCU grace periods waited for.
    pub barriers: u32,
}

/// What [`Engine::read_back`] found in the pinned maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadBack {
    pub endpoints: usize,
    pub policy_entries: usize,
    /// Policy entries of endpoint ids no endpoint uses (swept by `sweep`).
    pub orphan_policy_entries: usize,
    pub ipcache_entries: usize,
    pub rev_high_water: u32,
}

#[derive(Clone, Debug)]
struct EpState {
    /// The value in the endpoints map.
    value: EndpointValue,
    /// Actual entries of each generation (keys carry their gen bit).
    gens: [BTreeMap<PolicyKey, PolicyValue>; 2],
    /// [`MapOps::gp_epoch`] right after the last flip: until
    /// `gp_elapsed(flip_epoch)`, in-flight packets may still read the
    /// now-inactive generation.
    flip_epoch: u64,
    /// Locked down because its policy did not fit.
    overflow: bool,
    /// The policy whose entries the ACTIVE generation holds, with the
    /// addresses in the endpoint value; `None` when unknown (read back,
    /// locked down, or a failed update). Equal desired policy + same flags
    /// = nothing to do, without compiling or diffing.
    written: Option<EndpointPolicy>,
}

/// The desired-vs-actual state of the maps Porin owns.
#[derive(Debug, Default)]
pub struct Engine {
    endpoints: BTreeMap<u32, EpState>,
    by_id: BTreeMap<u32, u32>,
    orphans: BTreeMap<PolicyKey, PolicyValue>,
    ipcache: BTreeMap<IpNet, u32>,
    ipcache_degraded: bool,
    rev_high_water: u32,
    /// The highest epoch recorded by any flip/delete: a wait for it covers
    /// every generation deactivated so far.
    last_flip_epoch: u64,
    seen_endpoints: BTreeSet<u32>,
    /// Actual content of `porin_own_v1` (address -> owning endpoint).
    own: BTreeMap<OwnKey, OwnValue>,
    /// Most policy entries one endpoint may have per generation (both
    /// directions); `None` = no quota. Over it, the endpoint is locked down.
    policy_quota: Option<usize>,
}

/// Why an endpoint is locked down.
enum LockdownCause {
    /// The policy map refused an insert.
    Full(MapOpError),
    /// The endpoint's policy has more entries than its quota.
    Quota { entries: usize, quota: usize },
}

/// The addresses of an [`EndpointAddrs`], as [`OwnKey`]s.
fn own_keys(a: &EndpointAddrs) -> Vec<OwnKey> {
    let mut out = Vec::new();
    if a.flags & abi::EP_F_HAS_V4 != 0 {
        out.push(OwnKey::of(std::net::IpAddr::from(a.addr4)));
    }
    if a.flags & abi::EP_F_HAS_V6 != 0 {
        out.push(OwnKey::of(std::net::IpAddr::from(a.addr6)));
    }
    out
}

fn deny_default(endpoint_id: u32, generation: u32, dir: Direction) -> (PolicyKey, PolicyValue) {
    let e = entries::PolicyEntry::default_action(Action::Deny, 0);
    (e.key(endpoint_id, generation, dir).expect("default entry is valid"), e.value())
}

/// Applies `desired` to one generation: deletes first (frees space), then
/// inserts/updates. `actual` tracks every successful operation.
fn apply_gen(
    m: &mut dyn MapOps,
    actual: &mut BTreeMap<PolicyKey, PolicyValue>,
    desired: &BTreeMap<PolicyKey, PolicyValue>,
    stats: &mut SyncStats,
) -> Result<(), MapOpError> {
    // One merge walk over both sorted maps (no per-key lookups).
    let mut stale: Vec<PolicyKey> = Vec::new();
    let mut puts: Vec<(PolicyKey, PolicyValue, bool)> = Vec::new();
    let (mut a, mut d) = (actual.iter().peekable(), desired.iter().peekable());
    loop {
        match (a.peek(), d.peek()) {
            (Some((ka, va)), Some((kd, vd))) => match ka.cmp(kd) {
                std::cmp::Ordering::Less => {
                    stale.push(**ka);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    puts.push((**kd, **vd, false));
                    d.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vd {
                        puts.push((**kd, **vd, true));
                    }
                    a.next();
                    d.next();
                }
            },
            (Some((ka, _)), None) => {
                stale.push(**ka);
                a.next();
            }
            (None, Some((kd, vd))) => {
                puts.push((**kd, **vd, false));
                d.next();
            }
            (None, None) => break,
        }
    }
    for k in stale {
        match m.policy_delete(&k) {
            Ok(()) => stats.deleted += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        actual.remove(&k);
    }
    for (k, v, existed) in puts {
        m.policy_put(&k, &v)?;
        if existed {
            stats.updated += 1;
        } else {
            stats.inserted += 1;
        }
        actual.insert(k, v);
    }
    Ok(())
}

impl Engine {
    /// The lockdown flag an endpoint should carry (address flags come from
    /// [`EndpointAddrs`]).
    fn flags_for(&self, overflow: bool) -> u32 {
        if overflow || self.ipcache_degraded { abi::EP_F_LOCKDOWN } else { 0 }
    }

    fn meta(&self) -> Meta {
        Meta {
            abi_version: abi::ABI_VERSION,
            rev_high_water: self.rev_high_water,
            flags: if self.ipcache_degraded { abi::META_F_IPCACHE_DEGRADED } else { 0 },
            pad: 0,
        }
    }

    /// A node-wide unique revision, persisted before use so that a restart
    /// never hands out a revision a stale conntrack entry could carry.
    fn next_rev(&mut self, m: &mut dyn MapOps) -> Result<u32, MapOpError> {
        let mut r = self.rev_high_water.wrapping_add(1);
        if r == 0 {
            r = 1;
        }
        let prev = self.rev_high_water;
        self.rev_high_water = r;
        if let Err(e) = m.meta_put(&self.meta()) {
            self.rev_high_water = prev;
            return Err(e);
        }
        Ok(r)
    }

    /// Records an unpublishing write that just completed; returns its epoch
    /// and asks for a grace period in the background.
    fn unpublished(&mut self, m: &mut dyn MapOps) -> u64 {
        let e = m.gp_epoch();
        self.last_flip_epoch = self.last_flip_epoch.max(e);
        m.gp_request(e);
        e
    }

    /// Returns once a grace period has completed since the write that read
    /// `epoch`. If one already has, returns at once; else waits for one
    /// covering every write so far (`last_flip_epoch`), so the next endpoints
    /// of the same batch (all deactivated before this call) need no wait.
    fn barrier(&mut self, m: &mut dyn MapOps, epoch: u64, stats: &mut SyncStats) -> Result<(), MapOpError> {
        if m.gp_elapsed(epoch) {
            return Ok(());
        }
        m.wait_for_readers(self.last_flip_epoch.max(epoch))?;
        stats.barriers += 1;
        Ok(())
    }

    /// Writes the endpoint value (one atomic map update): generation,
    /// revision, lockdown `flags` and the endpoint's own addresses together.
    #[allow(clippy::too_many_arguments)]
    fn write_endpoint(
        &mut self,
        m: &mut dyn MapOps,
        ifindex: u32,
        generation: u32,
        flags: u32,
        addrs: EndpointAddrs,
        stats: &mut SyncStats,
    ) -> Result<(), MapOpError> {
        let rev = self.next_rev(m)?;
        let ep = self.endpoints.get_mut(&ifindex).expect("endpoint state exists");
        let value = EndpointValue {
            endpoint_id: ep.value.endpoint_id,
            active_gen: generation,
            policy_rev: rev,
            flags: (flags & !abi::EP_F_ADDRS) | addrs.flags,
            addr4: addrs.addr4,
            addr6: addrs.addr6,
        };
        m.endpoint_put(ifindex, &value)?;
        let old_addrs = EndpointAddrs::of(&ep.value);
        let gen_changed = ep.value.active_gen != generation || ep.value.policy_rev == 0;
        ep.value = value;
        if gen_changed {
            let e = self.unpublished(m);
            self.endpoints.get_mut(&ifindex).expect("endpoint state exists").flip_epoch = e;
        }
        stats.flips += 1;
        // After the endpoint entry (enforcement first; a failure here is
        // reported and retried by the next set_endpoint, see `own_in_sync`).
        self.own_sync(m, ifindex, value.endpoint_id, &old_addrs, &addrs)
    }

    /// Makes `porin_own_v1` map `new` to this endpoint and drops the
    /// addresses of `old` that it no longer has (only while this endpoint
    /// still owns them: an address that moved to another endpoint is kept).
    fn own_sync(
        &mut self,
        m: &mut dyn MapOps,
        ifindex: u32,
        endpoint_id: u32,
        old: &EndpointAddrs,
        new: &EndpointAddrs,
    ) -> Result<(), MapOpError> {
        let want = OwnValue { ifindex, endpoint_id };
        let new_keys = own_keys(new);
        for k in &new_keys {
            if self.own.get(k) != Some(&want) {
                m.own_put(k, &want)?;
                self.own.insert(*k, want);
            }
        }
        for k in own_keys(old) {
            if !new_keys.contains(&k) {
                self.own_release(m, &k, ifindex)?;
            }
        }
        Ok(())
    }

    /// Deletes the `porin_own_v1` entry of `k` if `ifindex` owns it.
    fn own_release(&mut self, m: &mut dyn MapOps, k: &OwnKey, ifindex: u32) -> Result<(), MapOpError> {
        if self.own.get(k).is_some_and(|v| v.ifindex == ifindex) {
            match m.own_delete(k) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            self.own.remove(k);
        }
        Ok(())
    }

    /// True if every address of `addrs` is mapped to this endpoint.
    fn own_in_sync(&self, ifindex: u32, endpoint_id: u32, addrs: &EndpointAddrs) -> bool {
        let want = OwnValue { ifindex, endpoint_id };
        own_keys(addrs).iter().all(|k| self.own.get(k) == Some(&want))
    }

    /// Sets the per-endpoint policy quota (entries per generation, both
    /// directions); `None` = none.
    pub fn set_policy_quota(&mut self, quota: Option<usize>) {
        self.policy_quota = quota;
    }

    /// The content of `porin_own_v1` as last written (or read back).
    pub fn own_addresses(&self) -> &BTreeMap<OwnKey, OwnValue> {
        &self.own
    }

    /// The policy did not fit: make generation `gen` deny-all, flip to it with
    /// the LOCKDOWN flag (the BPF program drops on the flag even if the deny
    /// entries could not be written either), and report the cause.
    fn lockdown(
        &mut self,
        m: &mut dyn MapOps,
        ifindex: u32,
        generation: u32,
        cause: LockdownCause,
        addrs: EndpointAddrs,
        mut stats: SyncStats,
    ) -> Result<SyncStats> {
        let ep = self.endpoints.get_mut(&ifindex).expect("endpoint state exists");
        let endpoint_id = ep.value.endpoint_id;
        let mut desired = BTreeMap::new();
        for dir in [Direction::Ingress, Direction::Egress] {
            let (k, v) = deny_default(endpoint_id, generation, dir);
            desired.insert(k, v);
        }
        if let Err(e) = apply_gen(m, &mut ep.gens[generation as usize], &desired, &mut stats) {
            tracing::error!(endpoint_id, ifindex, error = %e, "could not write deny-all defaults; relying on the lockdown flag");
        }
        ep.overflow = true;
        ep.written = None;
        if let Err(e) = self.write_endpoint(m, ifindex, generation, abi::EP_F_LOCKDOWN, addrs, &mut stats) {
            tracing::error!(endpoint_id, ifindex, error = %e, "could not flip endpoint into lockdown");
        }
        match cause {
            LockdownCause::Full(cause) => {
                tracing::error!(endpoint_id, ifindex, map = cause.map, "policy map full: endpoint locked down");
                Err(Error::PolicyMapFull { map: cause.map, endpoint_id, ifindex, source: cause })
            }
            LockdownCause::Quota { entries, quota } => {
                tracing::error!(endpoint_id, ifindex, entries, quota, "policy over the endpoint's quota: endpoint locked down");
                Err(Error::PolicyOverQuota { map: abi::map_names::POLICY, endpoint_id, ifindex, entries, quota })
            }
        }
    }

    /// Makes the endpoint on `ifindex` enforce `policy` (see module docs).
    pub fn set_endpoint(&mut self, m: &mut dyn MapOps, ifindex: u32, policy: &EndpointPolicy) -> Result<SyncStats> {
        let id = policy.endpoint_id;
        if id > abi::MAX_ENDPOINT_ID {
            return Err(Error::EndpointIdRange { endpoint_id: id, ifindex });
        }
        if let Some(&other) = self.by_id.get(&id)
            && other != ifindex
        {
            return Err(Error::EndpointIdInUse { endpoint_id: id, ifindex, other_ifindex: other });
        }
        let invalid = |source| Error::InvalidEntry { endpoint_id: id, ifindex, source };
        let mut stats = SyncStats::default();
        let flags = self.flags_for(false);
        // Same policy as last written, same flags: nothing to compile or diff.
        if let Some(ep) = self.endpoints.get(&ifindex)
            && ep.value.endpoint_id == id
            && !ep.overflow
            && ep.value.flags & !abi::EP_F_ADDRS == flags
            && ep.written.as_ref() == Some(policy)
        {
            self.seen_endpoints.insert(ifindex);
            return Ok(stats);
        }
        // Validate before touching anything.
        let addrs = EndpointAddrs::new(&policy.addrs)
            .map_err(|source| Error::InvalidAddrs { endpoint_id: id, ifindex, source })?;

        if let Some(ep) = self.endpoints.get(&ifindex)
            && ep.value.endpoint_id == id
        {
            let active = ep.value.active_gen & 1;
            let inactive = active ^ 1;
            // Only the generation to write is compiled; the no-op check
            // compares it with the active one modulo the generation bit.
            let desired_inactive = entries::compile(policy, inactive).map_err(invalid)?;
            self.seen_endpoints.insert(ifindex);
            let cur = &ep.gens[active as usize];
            // An address change alone is a change too: it is written with a
            // flip like any other (same single endpoint-map update).
            // Keys of one endpoint differ from the other generation's only in
            // the gen bit of `policy_id`, which preserves their order: zip.
            if cur.len() == desired_inactive.len()
                && cur.iter().zip(&desired_inactive).all(|((ka, va), (kd, vd))| {
                    let mut k = *kd;
                    k.policy_id ^= 2;
                    k == *ka && va == vd
                })
                && ep.value.flags & !abi::EP_F_ADDRS == flags
                && EndpointAddrs::of(&ep.value) == addrs
                && !ep.overflow
                && self.own_in_sync(ifindex, id, &addrs)
            {
                self.endpoints.get_mut(&ifindex).expect("checked above").written = Some(policy.clone());
                return Ok(stats);
            }
            let flip_epoch = ep.flip_epoch;
            self.barrier(m, flip_epoch, &mut stats)?;
            if let Some(quota) = self.policy_quota
                && desired_inactive.len() > quota
            {
                let cause = LockdownCause::Quota { entries: desired_inactive.len(), quota };
                return self.lockdown(m, ifindex, inactive, cause, addrs, stats);
            }
            let ep = self.endpoints.get_mut(&ifindex).expect("checked above");
            ep.written = None;
            if let Err(e) = apply_gen(m, &mut ep.gens[inactive as usize], &desired_inactive, &mut stats) {
                if e.is_full() {
                    return self.lockdown(m, ifindex, inactive, LockdownCause::Full(e), addrs, stats);
                }
                // The inactive generation is half written but not in use: the
                // endpoint still enforces the whole previous policy.
                return Err(Error::EndpointMap { endpoint_id: id, ifindex, source: e });
            }
            self.write_endpoint(m, ifindex, inactive, flags, addrs, &mut stats)
                .map_err(|source| Error::EndpointMap { endpoint_id: id, ifindex, source })?;
            let ep = self.endpoints.get_mut(&ifindex).expect("exists");
            ep.overflow = false;
            ep.written = Some(policy.clone());
            return Ok(stats);
        }
        let desired0 = entries::compile(policy, 0).map_err(invalid)?;
        self.seen_endpoints.insert(ifindex);

        // A new endpoint id on this interface. Entries of this id left from a
        // previous run are its actual state; nothing references them yet, so
        // generation 0 can be written without waiting.
        let mut gens: [BTreeMap<PolicyKey, PolicyValue>; 2] = Default::default();
        let mine: Vec<PolicyKey> = self.orphans.keys().filter(|k| k.endpoint_id() == id).copied().collect();
        for k in mine {
            let v = self.orphans.remove(&k).expect("listed");
            gens[k.generation() as usize].insert(k, v);
        }
        let old = self.endpoints.insert(
            ifindex,
            EpState {
                value: EndpointValue { endpoint_id: id, ..Default::default() },
                gens,
                flip_epoch: 0,
                overflow: false,
                written: None,
            },
        );
        if let Some(old) = &old {
            self.by_id.remove(&old.value.endpoint_id);
        }
        self.by_id.insert(id, ifindex);
        let over_quota = self.policy_quota.filter(|q| desired0.len() > *q);
        let ep = self.endpoints.get_mut(&ifindex).expect("just inserted");
        let result = match over_quota {
            Some(quota) => self.lockdown(m, ifindex, 0, LockdownCause::Quota { entries: desired0.len(), quota }, addrs, stats),
            None => match apply_gen(m, &mut ep.gens[0], &desired0, &mut stats) {
            Err(e) if e.is_full() => self.lockdown(m, ifindex, 0, LockdownCause::Full(e), addrs, stats),
            Err(e) => Err(Error::EndpointMap { endpoint_id: id, ifindex, source: e }),
            Ok(()) => self
                .write_endpoint(m, ifindex, 0, flags, addrs, &mut stats)
                .map(|()| stats)
                .map_err(|source| Error::EndpointMap { endpoint_id: id, ifindex, source }),
            },
        };
        if result.is_err() && self.endpoints.get(&ifindex).is_some_and(|e| e.value.policy_rev == 0) {
            // Never written to the endpoints map: the interface has no entry
            // (packets drop). Keep what was written as orphans for the sweep.
            let ep = self.endpoints.remove(&ifindex).expect("present");
            self.by_id.remove(&id);
            for g in ep.gens {
                self.orphans.extend(g);
            }
            if let Some(old) = old {
                // The old value is still in the map (the write failed).
                self.by_id.insert(old.value.endpoint_id, ifindex);
                self.endpoints.insert(ifindex, old);
            }
            return result;
        }
        if let Some(old) = old {
            // The old endpoint id is no longer referenced; in-flight packets
            // may still read its entries until a grace period has passed.
            let mut st = result.as_ref().map(|s| *s).unwrap_or_default();
            // Unreferenced since the flip to the new id just written (or
            // the failed lockdown flip, which still replaced the entry).
            let e = self.unpublished(m);
            self.barrier(m, e, &mut st)?;
            for g in old.gens {
                for (k, v) in g {
                    match m.policy_delete(&k) {
                        Ok(()) => st.deleted += 1,
                        Err(e) if e.is_not_found() => {}
                        Err(_) => {
                            self.orphans.insert(k, v);
                        }
                    }
                }
            }
            return result.map(|_| st);
        }
        result
    }

    /// Removes the endpoint: its entry first (its traffic then drops), then,
    /// after a grace period, its policy entries.
    pub fn remove_endpoint(&mut self, m: &mut dyn MapOps, ifindex: u32) -> Result<SyncStats> {
        self.seen_endpoints.remove(&ifindex);
        let mut stats = SyncStats::default();
        let Some(ep) = self.endpoints.get(&ifindex) else {
            return Ok(stats);
        };
        let endpoint_id = ep.value.endpoint_id;
        match m.endpoint_delete(ifindex) {
            Ok(()) => stats.flips += 1,
            Err(e) if e.is_not_found() => {}
            Err(source) => return Err(Error::EndpointMap { endpoint_id, ifindex, source }),
        }
        let ep = self.endpoints.remove(&ifindex).expect("present");
        self.by_id.remove(&endpoint_id);
        for k in own_keys(&EndpointAddrs::of(&ep.value)) {
            self.own_release(m, &k, ifindex).map_err(|source| Error::EndpointMap { endpoint_id, ifindex, source })?;
        }
        for g in ep.gens {
            self.orphans.extend(g);
        }
        let e = self.unpublished(m);
        self.barrier(m, e, &mut stats)?;
        self.delete_orphans(m, |k| k.endpoint_id() == endpoint_id, &mut stats)?;
        Ok(stats)
    }

    fn delete_orphans(
        &mut self,
        m: &mut dyn MapOps,
        pred: impl Fn(&PolicyKey) -> bool,
        stats: &mut SyncStats,
    ) -> Result<(), MapOpError> {
        let keys: Vec<PolicyKey> = self.orphans.keys().filter(|k| pred(k)).copied().collect();
        for k in keys {
            match m.policy_delete(&k) {
                Ok(()) => stats.deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            self.orphans.remove(&k);
        }
        Ok(())
    }

    /// Makes the ipcache equal `entries` (prefixes are normalised).
    pub fn set_ipcache(&mut self, m: &mut dyn MapOps, entries: &[(IpNet, u32)]) -> Result<SyncStats> {
        let mut desired: BTreeMap<IpNet, u32> = BTreeMap::new();
        for (net, id) in entries {
            let n = net.trunc();
            if let Some(prev) = desired.insert(n, *id)
                && prev != *id
            {
                return Err(Error::IpcacheConflict { prefix: n, first: prev, second: *id });
            }
        }
        let mut stats = SyncStats::default();
        let stale: Vec<IpNet> = self.ipcache.keys().filter(|n| !desired.contains_key(n)).copied().collect();
        for n in stale {
            match m.ipcache_delete(&n) {
                Ok(()) => stats.deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(source) => return Err(Error::IpcacheMap { prefix: n, source }),
            }
            self.ipcache.remove(&n);
        }
        for (n, id) in &desired {
            let prev = self.ipcache.get(n).copied();
            if prev == Some(*id) {
                continue;
            }
            if let Err(source) = m.ipcache_put(n, *id) {
                if source.is_full() {
                    // A missing specific prefix would resolve to a broader one
                    // (e.g. world) and could be allowed: lock everything down.
                    self.ipcache_degraded = true;
                    if let Err(e) = self.refresh_flags(m, &mut stats) {
                        tracing::error!(error = %e, "could not lock down all endpoints after ipcache overflow");
                    }
                    return Err(Error::IpcacheFull { map: source.map, prefix: *n, source });
                }
                return Err(Error::IpcacheMap { prefix: *n, source });
            }
            if prev.is_some() {
                stats.updated += 1;
            } else {
                stats.inserted += 1;
            }
            self.ipcache.insert(*n, *id);
        }
        if self.ipcache_degraded {
            self.ipcache_degraded = false;
            self.refresh_flags(m, &mut stats)?;
        }
        Ok(stats)
    }

    /// Rewrites every endpoint whose flags differ from what they should be
    /// (same generation, new revision so established flows are re-checked).
    fn refresh_flags(&mut self, m: &mut dyn MapOps, stats: &mut SyncStats) -> Result<(), MapOpError> {
        m.meta_put(&self.meta())?;
        let todo: Vec<(u32, u32, u32, EndpointAddrs)> = self
            .endpoints
            .iter()
            .filter_map(|(ifx, ep)| {
                let want = self.flags_for(ep.overflow);
                (ep.value.flags & !abi::EP_F_ADDRS != want).then_some((
                    *ifx,
                    ep.value.active_gen,
                    want,
                    EndpointAddrs::of(&ep.value),
                ))
            })
            .collect();
        for (ifx, generation, flags, addrs) in todo {
            self.write_endpoint(m, ifx, generation, flags, addrs, stats)?;
        }
        Ok(())
    }

    /// Replaces the actual state with what the maps hold (after a restart).
    /// Forgets which endpoints were "seen": call `set_endpoint` for every
    /// desired endpoint, then [`Engine::sweep`].
    pub fn read_back(&mut self, m: &mut dyn MapOps) -> Result<ReadBack> {
        let eps = m.dump_endpoints()?;
        let pol = m.dump_policy()?;
        let ipc = m.dump_ipcache()?;
        let own = m.dump_own()?;
        let meta = m.meta_get()?;
        self.endpoints.clear();
        self.by_id.clear();
        self.orphans.clear();
        self.seen_endpoints.clear();
        // Whatever was flipped last (before this process started, so before
        // this read) may still be read: wait before touching it.
        let epoch = self.unpublished(m);
        let mut rb = ReadBack::default();
        let mut hw = meta.rev_high_water;
        for (ifindex, value) in eps {
            hw = hw.max(value.policy_rev);
            if let Some(other) = self.by_id.insert(value.endpoint_id, ifindex) {
                tracing::warn!(endpoint_id = value.endpoint_id, ifindex, other, "endpoint id used twice in pinned map");
            }
            self.endpoints.insert(
                ifindex,
                EpState {
                    value,
                    gens: Default::default(),
                    flip_epoch: epoch,
                    overflow: value.flags & abi::EP_F_LOCKDOWN != 0,
                    written: None,
                },
            );
        }
        rb.endpoints = self.endpoints.len();
        for (k, v) in pol {
            rb.policy_entries += 1;
            match self.by_id.get(&k.endpoint_id()).and_then(|ifx| self.endpoints.get_mut(ifx)) {
                Some(ep) => {
                    ep.gens[k.generation() as usize].insert(k, v);
                }
                None => {
                    self.orphans.insert(k, v);
                }
            }
        }
        rb.orphan_policy_entries = self.orphans.len();
        self.ipcache = ipc.into_iter().collect();
        rb.ipcache_entries = self.ipcache.len();
        self.own = own.into_iter().collect();
        self.ipcache_degraded = meta.flags & abi::META_F_IPCACHE_DEGRADED != 0;
        self.rev_high_water = hw;
        rb.rev_high_water = hw;
        Ok(rb)
    }

    /// Removes endpoints not set since the last read-back, and orphaned policy
    /// entries. Call once the desired state has been fully pushed.
    pub fn sweep(&mut self, m: &mut dyn MapOps) -> Result<SyncStats> {
        let mut stats = SyncStats::default();
        let stale: Vec<u32> = self.endpoints.keys().filter(|i| !self.seen_endpoints.contains(i)).copied().collect();
        for ifindex in stale {
            let s = self.remove_endpoint(m, ifindex)?;
            stats.deleted += s.deleted;
            stats.flips += s.flips;
            stats.barriers += s.barriers;
        }
        // Orphans are referenced by no endpoint entry: no grace period needed
        // beyond the one remove_endpoint already waited for. Orphans found at
        // read-back were unreferenced before this process started.
        self.delete_orphans(m, |_| true, &mut stats)?;
        // Address ownerships no endpoint claims (e.g. left by a crash).
        let stale: Vec<(OwnKey, u32)> = self
            .own
            .iter()
            .filter(|(k, v)| {
                !self.endpoints.get(&v.ifindex).is_some_and(|ep| {
                    ep.value.endpoint_id == v.endpoint_id && own_keys(&EndpointAddrs::of(&ep.value)).contains(k)
                })
            })
            .map(|(k, v)| (*k, v.ifindex))
            .collect();
        for (k, ifindex) in stale {
            self.own_release(m, &k, ifindex)?;
            stats.deleted += 1;
        }
        Ok(stats)
    }

    /// The endpoint value as last written (or read back).
    pub fn endpoint(&self, ifindex: u32) -> Option<EndpointValue> {
        self.endpoints.get(&ifindex).map(|e| e.value)
    }

    /// Interfaces with an endpoint entry.
    pub fn endpoint_ifindexes(&self) -> Vec<u32> {
        self.endpoints.keys().copied().collect()
    }

    /// Entries of the ACTIVE generation of an endpoint.
    pub fn active_entries(&self, ifindex: u32) -> Option<&BTreeMap<PolicyKey, PolicyValue>> {
        self.endpoints.get(&ifindex).map(|e| &e.gens[(e.value.active_gen & 1) as usize])
    }

    /// Number of policy entries Porin believes are in the map.
    pub fn policy_len(&self) -> usize {
        self.endpoints.values().map(|e| e.gens[0].len() + e.gens[1].len()).sum::<usize>() + self.orphans.len()
    }

    pub fn ipcache(&self) -> &BTreeMap<IpNet, u32> {
        &self.ipcache
    }

    pub fn ipcache_degraded(&self) -> bool {
        self.ipcache_degraded
    }
}

mod fake;
pub use fake::FakeMaps;

#[cfg(test)]
mod tests;
