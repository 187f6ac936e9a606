use super::*;
use crate::abi::{Action, Direction};
use crate::entries::{EndpointPolicy, PolicyEntry};

fn allow(identity: u32, proto: u8, port: u16, rule_id: u32) -> PolicyEntry {
    PolicyEntry { identity: Some(identity), proto: Some(proto), port_prefix: Some((port, 16)), action: Action::Allow, rule_id }
}

fn pol(id: u32, ingress: Vec<PolicyEntry>) -> EndpointPolicy {
    EndpointPolicy { endpoint_id: id, ingress, egress: vec![PolicyEntry::default_action(Action::Allow, 1)], addrs: vec![] }
}

fn gen_entries(m: &FakeMaps, endpoint_id: u32, generation: u32) -> BTreeMap<PolicyKey, PolicyValue> {
    m.policy.iter().filter(|(k, _)| k.endpoint_id() == endpoint_id && k.generation() == generation).map(|(k, v)| (*k, *v)).collect()
}

#[test]
fn new_endpoint_then_double_buffered_update() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    let p1 = pol(7, vec![allow(100, 6, 80, 1)]);
    let s = e.set_endpoint(&mut m, 3, &p1).unwrap();
    assert_eq!((s.inserted, s.flips, s.barriers), (2, 1, 0));
    let v = m.endpoints[&3];
    assert_eq!((v.endpoint_id, v.active_gen, v.policy_rev, v.flags), (7, 0, 1, 0));
    assert_eq!(gen_entries(&m, 7, 0), entries::compile(&p1, 0).unwrap());

    // Update: only the inactive generation is written, after a grace period.
    let p2 = pol(7, vec![allow(100, 6, 80, 1), allow(101, 17, 53, 2)]);
    m.log.clear();
    let s = e.set_endpoint(&mut m, 3, &p2).unwrap();
    assert_eq!((s.inserted, s.deleted, s.flips, s.barriers), (3, 0, 1, 1));
    assert_eq!(m.log.first().map(String::as_str), Some("barrier"));
    assert!(m.log.last().unwrap().starts_with("ep 3 gen=1 rev=2"), "{:?}", m.log);
    // gen 0 (now inactive) still holds exactly the old policy.
    assert_eq!(gen_entries(&m, 7, 0), entries::compile(&p1, 0).unwrap());
    assert_eq!(gen_entries(&m, 7, 1), entries::compile(&p2, 1).unwrap());

    // Third update diffs against gen 0 (= p1): p3 differs from p1 by one entry.
    let p3 = pol(7, vec![allow(100, 6, 80, 1), allow(102, 6, 443, 3)]);
    let s = e.set_endpoint(&mut m, 3, &p3).unwrap();
    assert_eq!((s.inserted, s.updated, s.deleted, s.flips), (1, 0, 0, 1));
    assert_eq!(m.endpoints[&3].active_gen, 0);
    assert_eq!(gen_entries(&m, 7, 1), entries::compile(&p2, 1).unwrap());
}

#[test]
fn no_op_update_changes_nothing() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    let p = pol(1, vec![allow(5, 6, 22, 1)]);
    e.set_endpoint(&mut m, 9, &p).unwrap();
    let before = m.endpoints[&9];
    assert_eq!(e.set_endpoint(&mut m, 9, &p).unwrap(), SyncStats::default());
    assert_eq!(m.endpoints[&9], before);
}

#[test]
fn back_to_back_updates_wait_once_each() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    for (i, ifx) in [1u32, 2, 3].iter().enumerate() {
        e.set_endpoint(&mut m, *ifx, &pol(i as u32 + 1, vec![])).unwrap();
    }
    assert_eq!(m.barriers, 0, "new endpoints need no grace period");
    // Updating three endpoints in a row: the first waits, which covers the others'
    // earlier flips too.
    for (i, ifx) in [1u32, 2, 3].iter().enumerate() {
        e.set_endpoint(&mut m, *ifx, &pol(i as u32 + 1, vec![allow(9, 6, 1, 1)])).unwrap();
    }
    assert_eq!(m.barriers, 1);
}

#[test]
fn revisions_unique_across_endpoints_and_persisted() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    e.set_endpoint(&mut m, 1, &pol(1, vec![])).unwrap();
    e.set_endpoint(&mut m, 2, &pol(2, vec![])).unwrap();
    e.set_endpoint(&mut m, 1, &pol(1, vec![allow(1, 6, 1, 1)])).unwrap();
    let revs: Vec<u32> = m.endpoints.values().map(|v| v.policy_rev).collect();
    assert_eq!(revs, vec![3, 2]);
    assert_eq!(m.meta.rev_high_water, 3);
    assert_eq!(m.meta.abi_version, crate::abi::ABI_VERSION);
}

#[test]
fn policy_map_full_locks_endpoint_down() {
    let mut m = FakeMaps { policy_capacity: Some(6), ..Default::default() };
    let mut e = Engine::default();
    e.set_endpoint(&mut m, 4, &pol(2, vec![allow(1, 6, 80, 1)])).unwrap(); // 2 entries
    let big = pol(2, (0..10).map(|i| allow(i, 6, 80, i)).collect());
    let err = e.set_endpoint(&mut m, 4, &big).unwrap_err();
    match &err {
        Error::PolicyMapFull { map, endpoint_id, ifindex, .. } => {
            assert_eq!((*map, *endpoint_id, *ifindex), ("porin_pol_v1", 2, 4));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("porin_pol_v1") && err.to_string().contains("endpoint 2"));
    let v = m.endpoints[&4];
    assert_eq!(v.flags, crate::abi::EP_F_LOCKDOWN);
    assert_eq!(v.active_gen, 1);
    // The active generation holds only deny-all defaults.
    let active = gen_entries(&m, 2, 1);
    assert_eq!(active.len(), 2);
    assert!(active.iter().all(|(k, v)| k.prefixlen == 32 && v.action == Action::Deny as u8));
    // A policy that fits heals it.
    e.set_endpoint(&mut m, 4, &pol(2, vec![allow(3, 6, 80, 1)])).unwrap();
    assert_eq!(m.endpoints[&4].flags, 0);
    assert_eq!(gen_entries(&m, 2, m.endpoints[&4].active_gen), entries::compile(&pol(2, vec![allow(3, 6, 80, 1)]), 0).unwrap().into_iter().map(|(mut k, v)| { k.policy_id |= (m.endpoints[&4].active_gen) << 1; (k, v) }).collect());
}

#[test]
fn policy_map_full_for_new_endpoint_still_denies() {
    let mut m = FakeMaps { policy_capacity: Some(0), ..Default::default() };
    let mut e = Engine::default();
    let err = e.set_endpoint(&mut m, 4, &pol(2, vec![allow(1, 6, 80, 1)])).unwrap_err();
    assert!(matches!(err, Error::PolicyMapFull { .. }));
    // Not even the deny defaults fit, but the endpoint entry carries LOCKDOWN.
    assert_eq!(m.endpoints[&4].flags, crate::abi::EP_F_LOCKDOWN);
    assert!(m.policy.is_empty());
}

#[test]
fn remove_endpoint_deletes_entry_first_then_waits() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    e.set_endpoint(&mut m, 4, &pol(2, vec![allow(1, 6, 80, 1)])).unwrap();
    e.set_endpoint(&mut m, 4, &pol(2, vec![allow(1, 6, 81, 1)])).unwrap();
    m.log.clear();
    let s = e.remove_endpoint(&mut m, 4).unwrap();
    assert_eq!(s.deleted, 4);
    assert_eq!(&m.log[..2], &["ep- 4".to_string(), "barrier".to_string()]);
    assert!(m.policy.is_empty() && m.endpoints.is_empty());
    assert_eq!(e.remove_endpoint(&mut m, 4).unwrap(), SyncStats::default());
}

#[test]
fn changing_endpoint_id_on_an_interface() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    e.set_endpoint(&mut m, 4, &pol(2, vec![allow(1, 6, 80, 1)])).unwrap();
    e.set_endpoint(&mut m, 4, &pol(3, vec![allow(1, 6, 80, 1)])).unwrap();
    assert_eq!(m.endpoints[&4].endpoint_id, 3);
    assert!(m.policy.keys().all(|k| k.endpoint_id() == 3));
    // id 2 is free again
    e.set_endpoint(&mut m, 5, &pol(2, vec![])).unwrap();
    let err = e.set_endpoint(&mut m, 6, &pol(3, vec![])).unwrap_err();
    assert!(matches!(err, Error::EndpointIdInUse { endpoint_id: 3, ifindex: 6, other_ifindex: 4 }));
}

#[test]
fn invalid_entries_touch_nothing() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    let bad = PolicyEntry { identity: None, proto: Some(6), port_prefix: None, action: Action::Allow, rule_id: 1 };
    let err = e.set_endpoint(&mut m, 1, &pol(1, vec![bad])).unwrap_err();
    assert!(matches!(err, Error::InvalidEntry { .. }), "{err}");
    assert!(m.policy.is_empty() && m.endpoints.is_empty());
    assert!(matches!(
        e.set_endpoint(&mut m, 1, &pol(1 << 30, vec![])).unwrap_err(),
        Error::EndpointIdRange { .. }
    ));
}

#[test]
fn read_back_then_resync_is_free_and_sweep_removes_stale() {
    let mut m = FakeMaps::default();
    let mut a = Engine::default();
    let p1 = pol(1, vec![allow(1, 6, 80, 1)]);
    let p2 = pol(2, vec![allow(1, 6, 81, 1)]);
    a.set_endpoint(&mut m, 10, &p1).unwrap();
    a.set_endpoint(&mut m, 10, &pol(1, vec![])).unwrap();
    a.set_endpoint(&mut m, 10, &p1).unwrap();
    a.set_endpoint(&mut m, 20, &p2).unwrap();
    let ipc: Vec<(IpNet, u32)> = vec![("0.0.0.0/0".parse().unwrap(), 2), ("10.0.0.1/32".parse().unwrap(), 100)];
    a.set_ipcache(&mut m, &ipc).unwrap();
    // an orphan entry (endpoint id 99 has no endpoint)
    let (k, v) = deny_default(99, 0, Direction::Ingress);
    m.policy.insert(k, v);
    drop(a);

    let mut b = Engine::default();
    let rb = b.read_back(&mut m).unwrap();
    assert_eq!((rb.endpoints, rb.orphan_policy_entries, rb.ipcache_entries, rb.rev_high_water), (2, 1, 2, 4));
    m.log.clear();
    assert_eq!(b.set_endpoint(&mut m, 10, &p1).unwrap(), SyncStats::default());
    assert_eq!(b.set_ipcache(&mut m, &ipc).unwrap(), SyncStats::default());
    assert!(m.log.is_empty(), "{:?}", m.log);
    // After a restart the first real update waits for a grace period first
    // (the previous process may have flipped just before it died).
    b.set_endpoint(&mut m, 10, &pol(1, vec![])).unwrap();
    assert_eq!(m.log.first().map(String::as_str), Some("barrier"));
    let s = b.sweep(&mut m).unwrap();
    assert_eq!(s.deleted, 3); // endpoint 20's two entries + orphan
    assert_eq!(m.endpoints.keys().copied().collect::<Vec<_>>(), vec![10]);
    assert!(m.policy.keys().all(|k| k.endpoint_id() == 1));
}

#[test]
fn ipcache_diff_conflict_and_overflow_lockdown() {
    let mut m = FakeMaps { ipcache_capacity: Some(2), ..Default::default() };
    let mut e = Engine::default();
    e.set_endpoint(&mut m, 1, &pol(1, vec![])).unwrap();
    let n = |s: &str| -> IpNet { s.parse().unwrap() };
    let s = e.set_ipcache(&mut m, &[(n("0.0.0.0/0"), 2), (n("10.1.2.3/24"), 5)]).unwrap();
    assert_eq!(s.inserted, 2);
    assert_eq!(m.ipcache.get(&n("10.1.2.0/24")), Some(&5), "prefix normalised");
    let s = e.set_ipcache(&mut m, &[(n("0.0.0.0/0"), 2), (n("10.1.2.0/24"), 6)]).unwrap();
    assert_eq!((s.updated, s.inserted, s.deleted), (1, 0, 0));
    assert!(matches!(
        e.set_ipcache(&mut m, &[(n("10.0.0.0/8"), 1), (n("10.0.0.0/8"), 2)]).unwrap_err(),
        Error::IpcacheConflict { .. }
    ));
    // Overflow: every endpoint goes into lockdown.
    let err = e.set_ipcache(&mut m, &[(n("0.0.0.0/0"), 2), (n("10.1.2.0/24"), 6), (n("10.9.9.9/32"), 7)]).unwrap_err();
    assert!(matches!(err, Error::IpcacheFull { .. }), "{err}");
    assert_eq!(m.endpoints[&1].flags, crate::abi::EP_F_LOCKDOWN);
    assert_eq!(m.meta.flags, crate::abi::META_F_IPCACHE_DEGRADED);
    // Setting an endpoint while degraded keeps it locked down.
    e.set_endpoint(&mut m, 1, &pol(1, vec![allow(1, 6, 1, 1)])).unwrap();
    assert_eq!(m.endpoints[&1].flags, crate::abi::EP_F_LOCKDOWN);
    // A fitting ipcache heals.
    let rev = m.endpoints[&1].policy_rev;
    e.set_ipcache(&mut m, &[(n("0.0.0.0/0"), 2)]).unwrap();
    assert_eq!(m.endpoints[&1].flags, 0);
    assert!(m.endpoints[&1].policy_rev > rev);
    assert_eq!(m.meta.flags, 0);
}

fn with_addrs(mut p: EndpointPolicy, addrs: &[&str]) -> EndpointPolicy {
    p.addrs = addrs.iter().map(|a| a.parse().unwrap()).collect();
    p
}

#[test]
fn addresses_travel_with_the_flip_and_are_read_back() {
    use crate::abi::{EP_F_HAS_V4, EP_F_HAS_V6, EP_F_LOCKDOWN};
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    let p = with_addrs(pol(7, vec![allow(100, 6, 80, 1)]), &["10.0.0.7", "fd00::7"]);
    let s = e.set_endpoint(&mut m, 3, &p).unwrap();
    assert_eq!(s.flips, 1);
    let v = m.endpoints[&3];
    assert_eq!((v.flags, v.addr4, v.addr6[15]), (EP_F_HAS_V4 | EP_F_HAS_V6, [10, 0, 0, 7], 7));
    assert_eq!(e.set_endpoint(&mut m, 3, &p).unwrap(), SyncStats::default(), "unchanged: no write");

    // Only the address changes: one endpoint write (with a flip and a new rev), same entries.
    m.log.clear();
    let p2 = with_addrs(pol(7, vec![allow(100, 6, 80, 1)]), &["10.0.0.8"]);
    let s = e.set_endpoint(&mut m, 3, &p2).unwrap();
    assert_eq!(s.flips, 1);
    assert_eq!(m.log.iter().filter(|l| l.starts_with("ep ")).count(), 1, "{:?}", m.log);
    let v2 = m.endpoints[&3];
    assert_eq!((v2.flags, v2.addr4, v2.addr6), (EP_F_HAS_V4, [10, 0, 0, 8], [0; 16]));
    assert_ne!(v2.active_gen, v.active_gen);
    assert!(v2.policy_rev > v.policy_rev);

    // Lockdown keeps the addresses; healing keeps them too.
    let mut small = FakeMaps { policy_capacity: Some(2), ..Default::default() };
    let mut e2 = Engine::default();
    e2.set_endpoint(&mut small, 4, &with_addrs(pol(2, vec![]), &["10.0.0.2"])).unwrap();
    assert!(e2.set_endpoint(&mut small, 4, &with_addrs(pol(2, (0..5).map(|i| allow(i, 6, 80, i)).collect()), &["10.0.0.2"])).is_err());
    assert_eq!(small.endpoints[&4].flags, EP_F_LOCKDOWN | EP_F_HAS_V4);
    assert_eq!(small.endpoints[&4].addr4, [10, 0, 0, 2]);

    // Read back after a restart: addresses recovered, re-pushing is free.
    let mut b = Engine::default();
    b.read_back(&mut m).unwrap();
    assert_eq!(b.endpoint(3).unwrap().addrs(), p2.addrs);
    m.log.clear();
    assert_eq!(b.set_endpoint(&mut m, 3, &p2).unwrap(), SyncStats::default());
    assert!(m.log.is_empty(), "{:?}", m.log);
    // ... and a different address after the restart is a change.
    assert_eq!(b.set_endpoint(&mut m, 3, &with_addrs(pol(7, vec![allow(100, 6, 80, 1)]), &["10.0.0.9"])).unwrap().flips, 1);
    assert_eq!(m.endpoints[&3].addr4, [10, 0, 0, 9]);
}

#[test]
fn ipcache_lockdown_and_heal_keep_addresses() {
    use crate::abi::{EP_F_HAS_V6, EP_F_LOCKDOWN};
    let mut m = FakeMaps { ipcache_capacity: Some(1), ..Default::default() };
    let mut e = Engine::default();
    e.set_endpoint(&mut m, 1, &with_addrs(pol(1, vec![]), &["fd00::1"])).unwrap();
    let n = |s: &str| -> IpNet { s.parse().unwrap() };
    assert!(e.set_ipcache(&mut m, &[(n("0.0.0.0/0"), 2), (n("::/0"), 3)]).is_err());
    assert_eq!(m.endpoints[&1].flags, EP_F_LOCKDOWN | EP_F_HAS_V6);
    e.set_ipcache(&mut m, &[(n("::/0"), 3)]).unwrap();
    assert_eq!(m.endpoints[&1].flags, EP_F_HAS_V6);
    assert_eq!(m.endpoints[&1].addrs(), vec!["fd00::1".parse::<std::net::IpAddr>().unwrap()]);
}

#[test]
fn two_addresses_of_one_family_are_refused_naming_the_endpoint() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    let err = e.set_endpoint(&mut m, 5, &with_addrs(pol(9, vec![]), &["10.0.0.1", "10.0.0.2"])).unwrap_err();
    assert!(matches!(err, Error::InvalidAddrs { endpoint_id: 9, ifindex: 5, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("endpoint 9") && msg.contains("10.0.0.1") && msg.contains("10.0.0.2"), "{msg}");
    assert!(m.endpoints.is_empty() && m.policy.is_empty(), "nothing touched");
    // one of each family is fine, and repeats of one address too
    e.set_endpoint(&mut m, 5, &with_addrs(pol(9, vec![]), &["10.0.0.1", "fd00::1", "10.0.0.1"])).unwrap();
}

#[test]
fn rewrite_right_after_a_flip_waits_for_a_grace_period() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    e.set_endpoint(&mut m, 1, &pol(1, vec![allow(1, 6, 80, 1)])).unwrap();
    e.set_endpoint(&mut m, 1, &pol(1, vec![allow(1, 6, 81, 1)])).unwrap(); // flip 0 -> 1
    let flip = m.gp_epoch;
    assert_eq!(m.gp_requested, Some(flip), "a background grace period is requested after the flip");
    m.log.clear();
    m.barriers = 0;
    // Gen 0 was active until just now: no grace period since, so the rewrite waits first.
    let s = e.set_endpoint(&mut m, 1, &pol(1, vec![allow(1, 6, 82, 1)])).unwrap();
    assert_eq!((s.barriers, m.barriers), (1, 1));
    assert_eq!(m.log.first().map(String::as_str), Some("barrier"), "{:?}", m.log);
    assert!(m.gp_completed > flip, "the wait covered the flip");
}

#[test]
fn rewrite_after_a_completed_grace_period_does_not_wait() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    e.set_endpoint(&mut m, 1, &pol(1, vec![allow(1, 6, 80, 1)])).unwrap();
    e.set_endpoint(&mut m, 1, &pol(1, vec![allow(1, 6, 81, 1)])).unwrap();
    m.barriers = 0;
    // The background thread completes a grace period that started after the flip.
    m.complete_grace_period();
    let s = e.set_endpoint(&mut m, 1, &pol(1, vec![allow(1, 6, 82, 1)])).unwrap();
    assert_eq!((s.barriers, m.barriers, s.flips), (0, 0, 1));
    // A grace period that started BEFORE the flip does not count.
    let mut m2 = FakeMaps::default();
    let mut e2 = Engine::default();
    e2.set_endpoint(&mut m2, 1, &pol(1, vec![allow(1, 6, 80, 1)])).unwrap();
    let started_before = m2.gp_epoch;
    m2.gp_epoch += 1; // a grace period starts (epoch advanced) ...
    e2.set_endpoint(&mut m2, 1, &pol(1, vec![allow(1, 6, 81, 1)])).unwrap(); // ... the flip happens during it
    m2.gp_completed = started_before + 1; // ... and it ends
    m2.barriers = 0;
    let s = e2.set_endpoint(&mut m2, 1, &pol(1, vec![allow(1, 6, 82, 1)])).unwrap();
    assert_eq!(s.barriers, 1, "a grace period in flight at the flip does not cover it");
}

#[test]
fn a_batch_of_changed_endpoints_waits_at_most_once() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    let n = 20u32;
    for round in 0..4u16 {
        m.barriers = 0;
        let mut waited = 0;
        for i in 1..=n {
            let s = e.set_endpoint(&mut m, i, &pol(i, vec![allow(i, 6, 80 + round, 1)])).unwrap();
            assert_eq!(s.flips, 1);
            waited += s.barriers;
            if round == 1 && i == n / 2 {
                // A background grace period completes in the middle of a batch.
                m.complete_grace_period();
            }
        }
        assert!(m.barriers <= 1 && waited == m.barriers, "round {round}: {} waits", m.barriers);
        if round == 0 {
            assert_eq!(m.barriers, 0, "new endpoints need no grace period");
        }
    }
}

#[test]
fn unchanged_endpoints_do_no_map_writes() {
    let (mut m, mut e) = (FakeMaps::default(), Engine::default());
    let big = pol(3, (0..500).map(|i| allow(i, 6, 80, i)).collect());
    e.set_endpoint(&mut m, 3, &big).unwrap();
    e.set_endpoint(&mut m, 3, &pol(3, vec![])).unwrap();
    e.set_endpoint(&mut m, 3, &big).unwrap();
    let before = (m.endpoints.clone(), m.policy.clone(), m.meta, m.barriers);
    m.log.clear();
    for _ in 0..3 {
        assert_eq!(e.set_endpoint(&mut m, 3, &big).unwrap(), SyncStats::default());
    }
    assert!(m.log.is_empty(), "{:?}", m.log);
    assert_eq!((m.endpoints.clone(), m.policy.clone(), m.meta, m.barriers), before);
    // Same entries from a policy that is not byte-identical (order differs): still no writes.
    let mut shuffled = big.clone();
    shuffled.ingress.reverse();
    assert_eq!(e.set_endpoint(&mut m, 3, &shuffled).unwrap(), SyncStats::default());
    assert!(m.log.is_empty(), "{:?}", m.log);
    // After a read-back (nothing known to be written) the diff finds nothing either.
    let mut e2 = Engine::default();
    e2.read_back(&mut m).unwrap();
    assert_eq!(e2.set_endpoint(&mut m, 3, &big).unwrap(), SyncStats::default());
    assert!(m.log.is_empty(), "{:?}", m.log);
    // A lockdown flag change is not hidden by the fast path.
    e2.ipcache_degraded = true;
    let s = e2.set_endpoint(&mut m, 3, &big).unwrap();
    assert_eq!(s.flips, 1);
    assert_eq!(m.endpoints[&3].flags & crate::abi::EP_F_LOCKDOWN, crate::abi::EP_F_LOCKDOWN);
}

#[test]
fn policy_over_the_endpoint_quota_locks_only_that_endpoint_down() {
    let mut m = FakeMaps::default();
    let mut e = Engine::default();
    e.set_policy_quota(Some(4));
    // endpoint 3 has a small policy, endpoint 2 a fitting one first
    e.set_endpoint(&mut m, 5, &pol(3, vec![allow(1, 6, 80, 1)])).unwrap();
    e.set_endpoint(&mut m, 4, &pol(2, vec![allow(1, 6, 80, 1)])).unwrap(); // 2 entries + default egress
    let big = pol(2, (0..10).map(|i| allow(i, 6, 80, i)).collect());
    let err = e.set_endpoint(&mut m, 4, &big).unwrap_err();
    match &err {
        Error::PolicyOverQuota { map, endpoint_id, ifindex, entries, quota } => {
            assert_eq!((*map, *endpoint_id, *ifindex, *quota), ("porin_pol_v1", 2, 4, 4));
            assert!(*entries > 4);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("endpoint 2") && err.to_string().contains("quota of 4"), "{err}");
    // locked down on deny-all defaults; nothing of the big policy was written
    let v = m.endpoints[&4];
    assert_eq!(v.flags, crate::abi::EP_F_LOCKDOWN);
    let active = gen_entries(&m, 2, v.active_gen);
    assert!(active.iter().all(|(k, v)| k.prefixlen == 32 && v.action == Action::Deny as u8), "{active:?}");
    assert!(m.policy.len() <= 2 * 4 + 2 * 2, "{}", m.policy.len());
    // the other endpoint is untouched
    assert_eq!(m.endpoints[&5].flags, 0);
    // a new endpoint over quota is locked down from the start
    let err = e.set_endpoint(&mut m, 6, &pol(9, (0..10).map(|i| allow(i, 6, 80, i)).collect())).unwrap_err();
    assert!(matches!(err, Error::PolicyOverQuota { endpoint_id: 9, .. }), "{err}");
    assert_eq!(m.endpoints[&6].flags, crate::abi::EP_F_LOCKDOWN);
    // a policy within the quota lifts it
    e.set_endpoint(&mut m, 4, &pol(2, vec![allow(3, 6, 80, 1)])).unwrap();
    assert_eq!(m.endpoints[&4].flags, 0);
}

#[test]
fn own_addresses_follow_endpoints_and_are_released_only_by_their_owner() {
    let a: std::net::IpAddr = "10.1.0.1".parse().unwrap();
    let b: std::net::IpAddr = "10.1.0.2".parse().unwrap();
    let mut m = FakeMaps::default();
    let mut e = Engine::default();
    let with = |id, addrs: Vec<std::net::IpAddr>| EndpointPolicy { addrs, ..pol(id, vec![]) };
    e.set_endpoint(&mut m, 4, &with(2, vec![a])).unwrap();
    assert_eq!(m.own.get(&OwnKey::of(a)), Some(&OwnValue { ifindex: 4, endpoint_id: 2 }));
    // address change: new one owned, old one released
    e.set_endpoint(&mut m, 4, &with(2, vec![b])).unwrap();
    assert_eq!(m.own.get(&OwnKey::of(b)), Some(&OwnValue { ifindex: 4, endpoint_id: 2 }));
    assert!(!m.own.contains_key(&OwnKey::of(a)));
    // the address moves to a new endpoint before the old one is removed:
    // removing the old one must not release the new owner's entry
    e.set_endpoint(&mut m, 7, &with(3, vec![b])).unwrap();
    assert_eq!(m.own.get(&OwnKey::of(b)), Some(&OwnValue { ifindex: 7, endpoint_id: 3 }));
    e.remove_endpoint(&mut m, 4).unwrap();
    assert_eq!(m.own.get(&OwnKey::of(b)), Some(&OwnValue { ifindex: 7, endpoint_id: 3 }));
    e.remove_endpoint(&mut m, 7).unwrap();
    assert!(m.own.is_empty());
    // a failed own write is retried by the next identical set_endpoint
    e.set_endpoint(&mut m, 4, &with(2, vec![a])).unwrap();
    m.own.clear();
    e.own.clear();
    e.set_endpoint(&mut m, 4, &with(2, vec![a])).unwrap();
    assert_eq!(m.own.get(&OwnKey::of(a)), Some(&OwnValue { ifindex: 4, endpoint_id: 2 }));
    // read-back + sweep removes ownerships no endpoint claims
    m.own.insert(OwnKey::of(b), OwnValue { ifindex: 99, endpoint_id: 99 });
    let mut e2 = Engine::default();
    e2.read_back(&mut m).unwrap();
    e2.set_endpoint(&mut m, 4, &with(2, vec![a])).unwrap();
    e2.sweep(&mut m).unwrap();
    assert_eq!(m.own.len(), 1);
    assert!(m.own.contains_key(&OwnKey::of(a)));
}
