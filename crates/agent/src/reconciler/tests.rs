//! The node reconciler against the in-memory datapath: its order (no window opens) and its failure handling,
//! without root.

use std::sync::{Arc, Mutex};

use porin_dataplane::{EndpointPolicy, Error, MapOpError};
use porin_model::Resource;

use super::*;
use crate::engine::{Lockdown, PolicySnapshot};

const NETNS: NetnsId = NetnsId { dev: 1, ino: 1 };

fn pod(name: &str, ip: &str, app: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: s, labels: {{app: {app}}}}}\nstatus: {{podIP: {ip}}}\n---\n")
}

fn wep(name: &str, node: &str, ifname: &str, ip: &str) -> String {
    format!(
        "apiVersion: porin.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: s}}\n\
         spec: {{node: {node}, pod: {name}, interfaceName: {ifname}, ipNetworks: ['{ip}/32']}}\n---\n"
    )
}

/// Pods of app `a` accept only app `b`.
const A_FROM_B: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a-from-b, namespace: s}\n\
    spec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Ingress], ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]}\n---\n";

fn snapshot(revision: u64, y: &str) -> PolicySnapshot {
    let docs = porin_model::parse_documents("t", y).unwrap();
    let rs: Vec<Resource> = docs.into_iter().map(|d| d.resource).collect();
    PolicySnapshot {
        revision,
        cluster: Arc::new(porin_policy::Cluster::build(rs.iter()).unwrap()),
        bindings: Arc::new(bindings(&rs)),
        changed_at: None,
        built_at: None,
        lockdown: Arc::new(Lockdown::default()),
    }
}

fn state<'a>(r: &'a ReconcileReport, ifname: &str) -> &'a str {
    r.endpoints.iter().find(|e| e.interface == ifname).map(|e| e.state.as_str()).unwrap_or("absent")
}

fn position(log: &[Op], op: &Op) -> usize {
    log.iter().position(|o| o == op).unwrap_or_else(|| panic!("{op:?} not in {log:?}"))
}

fn map_full(ifindex: u32) -> Error {
    Error::PolicyMapFull {
        map: "porin_policy",
        endpoint_id: 1,
        ifindex,
        source: MapOpError::new("porin_policy", "update", std::io::Error::from_raw_os_error(28 /* ENOSPC */)),
    }
}

fn map_failed(ifindex: u32) -> Error {
    Error::EndpointMap {
        endpoint_id: 1,
        ifindex,
        source: MapOpError::new("porin_endpoints", "update", std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
    }
}

/// Every packet a policy would deny is dropped at every step: an attached interface carries either no entry
/// (drop) or exactly the policy wanted for it, and the ipcache only maps identities after the policies naming
/// them are in place.
#[test]
fn no_window_opens_on_attach_policy_change_and_unbind() {
    let mut dp = FakeDatapath::new();
    dp.add_interface("porin-v1", 11);
    // Every intermediate state the reconciler leaves, recorded for the checks below.
    type Seen = Vec<(Op, Option<Option<EndpointPolicy>>, usize)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s2 = seen.clone();
    dp.observe = Some(Box::new(move |op, dp| {
        s2.lock().unwrap().push((op.clone(), dp.enforcement(11).map(|e| e.cloned()), dp.ipcache.len()));
    }));
    let mut r = NodeReconciler::new("n0");

    // Revision 1: pod a on this node (porin-v1), pod b elsewhere; a accepts only b.
    let y1 = format!("{}{}{}{}{A_FROM_B}", pod("a", "10.0.0.1", "a"), pod("b", "10.0.0.2", "b"), wep("a", "n0", "porin-v1", "10.0.0.1"), wep("b", "n1", "porin-v9", "10.0.0.2"));
    let rep = r.reconcile(&mut dp, &snapshot(1, &y1), NETNS);
    assert_eq!(state(&rep, "porin-v1"), "programmed", "{rep:?}");
    assert!(rep.writes > 0);
    let log = dp.log.clone();
    // Attached first (no entry yet: drop), then the policy, then the ipcache, then the sweep.
    let (attach, set, ipc) = (position(&log, &Op::Attach("porin-v1".into())), position(&log, &Op::SetEndpoint(11)), position(&log, &Op::SetIpcache));
    assert!(attach < set && set < ipc, "{log:?}");
    assert!(position(&log, &Op::Sweep) > ipc, "{log:?}");
    let wanted = dp.endpoints.get(&11).cloned().expect("programmed");
    for (op, enf, _) in seen.lock().unwrap().iter() {
        match enf {
            None => assert_eq!(*op, Op::DetachGone, "porin-v1 unattached after {op:?}"),
            Some(None) => assert!(matches!(op, Op::Attach(_)), "attached without entry only right after attaching, not after {op:?}"),
            Some(Some(p)) => assert_eq!(p, &wanted, "after {op:?}"),
        }
    }
    let ingress_v1 = wanted.ingress.clone();

    // Revision 2: a second allowed peer (a new identity): its policy lands before the ipcache maps it.
    seen.lock().unwrap().clear();
    dp.log.clear();
    let ipcache_before = dp.ipcache.len();
    let y2 = y1.replace("matchLabels: {app: b}}}]}]}", "matchExpressions: [{key: app, operator: In, values: [b, c]}]}}]}]}")
        + &pod("c", "10.0.0.3", "c")
        + &wep("c", "n1", "porin-v8", "10.0.0.3");
    let rep = r.reconcile(&mut dp, &snapshot(2, &y2), NETNS);
    assert_eq!(state(&rep, "porin-v1"), "programmed");
    assert_eq!(dp.log, vec![Op::SetEndpoint(11), Op::SetIpcache], "no re-attach, no sweep the second time");
    assert_ne!(dp.endpoints[&11].ingress, ingress_v1, "the policy changed");
    let seen2 = seen.lock().unwrap().clone();
    assert_eq!(seen2[0].2, ipcache_before, "the ipcache is unchanged while the new policy is written");
    assert!(seen2[1].2 > ipcache_before, "then it maps the new peer: {seen2:?}");

    // Revision 3: a's WorkloadEndpoint goes: the interface stays attached and loses its entry (drop). (A pod
    // appears too, so that the ipcache changes: an unchanged one is not written again.)
    dp.log.clear();
    let y3 = y2.replace(&wep("a", "n0", "porin-v1", "10.0.0.1"), "") + &pod("d", "10.0.0.4", "d");
    let rep = r.reconcile(&mut dp, &snapshot(3, &y3), NETNS);
    assert_eq!(state(&rep, "porin-v1"), "unbound");
    assert_eq!(dp.enforcement(11), Some(None), "attached, no entry: drops everything");
    assert!(position(&dp.log, &Op::SetIpcache) < position(&dp.log, &Op::RemoveEndpoint(11)), "removals last: {:?}", dp.log);
    // Never detached while the interface exists; forgotten once it is gone.
    let (gone, failures) = r.forget_gone(&mut dp);
    assert!(gone.is_empty() && failures == 0 && dp.attached.contains(&11));
    dp.interfaces.remove("porin-v1");
    let (gone, _) = r.forget_gone(&mut dp);
    assert_eq!(gone, vec!["porin-v1".to_string()]);
    assert!(!dp.attached.contains(&11));
}

#[test]
fn a_refused_binding_is_attached_and_drops() {
    let mut dp = FakeDatapath::new();
    dp.add_interface("porin-v1", 11);
    let mut r = NodeReconciler::new("n0");
    // The WorkloadEndpoint names an address the pod does not have.
    let y = format!("{}{}", pod("a", "10.0.0.1", "a"), wep("a", "n0", "porin-v1", "10.0.0.7"));
    let rep = r.reconcile(&mut dp, &snapshot(1, &y), NETNS);
    assert_eq!(state(&rep, "porin-v1"), "denied");
    assert_eq!(dp.enforcement(11), Some(None));
    assert!(matches!(r.problems().get("porin-v1"), Some(Problem::Refused(m)) if m.contains("until they agree")));
}

#[test]
fn a_policy_that_does_not_fit_is_locked_down_and_others_still_program() {
    let mut dp = FakeDatapath::new();
    dp.add_interface("porin-v1", 11);
    dp.add_interface("porin-v2", 12);
    dp.inject = Some(Box::new(|op| (*op == Op::SetEndpoint(11)).then(|| map_full(11))));
    let mut r = NodeReconciler::new("n0");
    let y = format!("{}{}{}{}{A_FROM_B}", pod("a", "10.0.0.1", "a"), pod("b", "10.0.0.2", "b"), wep("a", "n0", "porin-v1", "10.0.0.1"), wep("b", "n0", "porin-v2", "10.0.0.2"));
    let rep = r.reconcile(&mut dp, &snapshot(1, &y), NETNS);
    assert_eq!(state(&rep, "porin-v1"), "locked-down", "{rep:?}");
    assert_eq!(state(&rep, "porin-v2"), "programmed");
    assert!(matches!(r.problems().get("porin-v1"), Some(Problem::LockedDown(_))));
    assert_eq!(dp.enforcement(11), Some(None), "a new endpoint whose policy failed has no entry: drops");
    assert!(dp.log.contains(&Op::SetIpcache), "the ipcache is still programmed");
}

#[test]
fn other_failures_are_reported_as_errors_and_retried() {
    let mut dp = FakeDatapath::new();
    dp.add_interface("porin-v1", 11);
    dp.add_interface("porin-v2", 12);
    let fail = Arc::new(Mutex::new(true));
    let f2 = fail.clone();
    dp.inject = Some(Box::new(move |op| {
        let on = *f2.lock().unwrap();
        match op {
            Op::SetEndpoint(11) if on => Some(map_failed(11)),
            Op::Attach(n) if on && n == "porin-v2" => Some(Error::Interface { ifname: n.clone(), source: std::io::Error::from(std::io::ErrorKind::PermissionDenied) }),
            _ => None,
        }
    }));
    let mut r = NodeReconciler::new("n0");
    let y = format!("{}{}{}{}", pod("a", "10.0.0.1", "a"), pod("b", "10.0.0.2", "b"), wep("a", "n0", "porin-v1", "10.0.0.1"), wep("b", "n0", "porin-v2", "10.0.0.2"));
    let s = snapshot(1, &y);
    let rep = r.reconcile(&mut dp, &s, NETNS);
    assert_eq!(state(&rep, "porin-v1"), "error");
    assert_eq!(state(&rep, "porin-v2"), "error");
    assert!(matches!(r.problems().get("porin-v2"), Some(Problem::Failed(m)) if m.starts_with("attaching to porin-v2")));
    assert!(!dp.log.contains(&Op::SetEndpoint(12)), "no policy for an interface that is not attached");
    assert_eq!(dp.enforcement(11), Some(None), "drops until programmed");
    assert!(r.has_problems());
    // The retry (same revision) succeeds once the dataplane does.
    *fail.lock().unwrap() = false;
    let rep = r.reconcile(&mut dp, &s, NETNS);
    assert_eq!((state(&rep, "porin-v1"), state(&rep, "porin-v2")), ("programmed", "programmed"));
    assert!(!r.has_problems());
}

#[test]
fn failed_cleanups_are_counted_not_swallowed() {
    let mut dp = FakeDatapath::new();
    dp.add_interface("porin-v1", 11);
    let mut r = NodeReconciler::new("n0");
    let y = format!("{}{}", pod("a", "10.0.0.1", "a"), wep("a", "n0", "porin-v1", "10.0.0.1"));
    r.reconcile(&mut dp, &snapshot(1, &y), NETNS);
    dp.inject = Some(Box::new(|op| matches!(op, Op::RemoveEndpoint(_)).then(|| map_failed(11))));
    let rep = r.reconcile(&mut dp, &snapshot(2, &pod("a", "10.0.0.1", "a")), NETNS);
    assert_eq!(rep.cleanup_failures, 1, "{rep:?}");
    assert_eq!(state(&rep, "porin-v1"), "unbound");
    assert_eq!(dp.log.iter().filter(|o| matches!(o, Op::RemoveEndpoint(_))).count(), 1, "{:?}", dp.log);
}

/// Incident response: the connections of a newly quarantined local endpoint, and those with a newly blocked
/// prefix, are cut once, after the revision's policy and ipcache are written; a failed cut is tried again.
#[test]
fn quarantine_and_block_cut_connections_once_after_programming() {
    let mut dp = FakeDatapath::new();
    dp.add_interface("porin-v1", 11);
    let mut r = NodeReconciler::new("n0");
    let base = format!("{}{}{}", pod("a", "10.0.0.1", "a"), pod("b", "10.0.0.2", "b"), wep("a", "n0", "porin-v1", "10.0.0.1"));
    r.reconcile(&mut dp, &snapshot(1, &base), NETNS);
    assert!(!dp.log.iter().any(|o| matches!(o, Op::CutConnections(..))), "nothing to cut: {:?}", dp.log);
    let id = dp.endpoints[&11].endpoint_id;

    // Quarantine a (the record; the tier and policy are what `porin quarantine` writes).
    let q = "apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: porin-quarantine}\nspec: {defaultAction: Deny}\n---\n\
        apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: porin-quarantine.isolate}\n\
        spec: {tier: porin-quarantine, selector: \"porin.io/quarantined == 'true'\", types: [Ingress, Egress], ingress: [{action: Deny}], egress: [{action: Deny}]}\n---\n\
        apiVersion: porin.io/v1\nkind: Quarantine\nmetadata: {name: a, namespace: s}\n---\n";
    let y2 = format!("{base}{q}");
    dp.log.clear();
    r.reconcile(&mut dp, &snapshot(2, &y2), NETNS);
    let cut = position(&dp.log, &Op::CutConnections(vec![id], vec![]));
    assert!(position(&dp.log, &Op::SetEndpoint(11)) < cut && position(&dp.log, &Op::SetIpcache) < cut, "cut after programming: {:?}", dp.log);
    // The same revision again (a retry), or an unrelated one: no second cut.
    dp.log.clear();
    r.reconcile(&mut dp, &snapshot(3, &format!("{y2}{}", pod("c", "10.0.0.3", "c"))), NETNS);
    assert!(!dp.log.iter().any(|o| matches!(o, Op::CutConnections(..))), "{:?}", dp.log);

    // A block list: its prefixes are cut; a failed cut is tried again with the next reconcile.
    let set = |nets: &str| format!("apiVersion: porin.io/v1\nkind: GlobalNetworkSet\nmetadata: {{name: porin-blocklist, labels: {{porin.io/blocklist: 'true'}}}}\nspec: {{nets: [{nets}]}}\n---\n");
    let fail = Arc::new(Mutex::new(true));
    let f2 = fail.clone();
    dp.inject = Some(Box::new(move |op| (matches!(op, Op::CutConnections(..)) && *f2.lock().unwrap()).then(|| map_failed(11))));
    let y4 = format!("{y2}{}", set("203.0.113.0/24"));
    let net: ipnet::IpNet = "203.0.113.0/24".parse().unwrap();
    r.reconcile(&mut dp, &snapshot(4, &y4), NETNS);
    *fail.lock().unwrap() = false;
    dp.log.clear();
    r.reconcile(&mut dp, &snapshot(4, &y4), NETNS);
    assert!(dp.log.contains(&Op::CutConnections(vec![], vec![net])), "retried: {:?}", dp.log);
    // A second prefix: only the new one is cut.
    dp.log.clear();
    r.reconcile(&mut dp, &snapshot(5, &format!("{y2}{}", set("203.0.113.0/24, 198.51.100.7/32"))), NETNS);
    assert!(dp.log.contains(&Op::CutConnections(vec![], vec!["198.51.100.7/32".parse().unwrap()])), "{:?}", dp.log);
    // Released and re-quarantined: cut again.
    r.reconcile(&mut dp, &snapshot(6, &base), NETNS);
    dp.log.clear();
    r.reconcile(&mut dp, &snapshot(7, &y2), NETNS);
    assert!(dp.log.contains(&Op::CutConnections(vec![id], vec![])), "{:?}", dp.log);
}

/// The ipcache the datapath holds: the compiled one, numbered by the reconciler.
fn expected_ipcache(r: &NodeReconciler, rep: &ReconcileReport) -> std::collections::BTreeMap<ipnet::IpNet, u32> {
    rep.compiled.ipcache.iter().map(|(p, id)| (p.trunc(), r.node_identity(*id))).collect()
}

/// A revision that changes only a policy keeps the compiler's identity table, so the ipcache is neither
/// renumbered nor diffed nor written again, and still equals the compiled one. A new identity, a failed
/// write and a reopened datapath each write it again.
#[test]
fn an_unchanged_identity_table_is_not_written_again() {
    let base = format!(
        "{}{}{}{A_FROM_B}",
        pod("a", "10.0.0.1", "a"),
        pod("b", "10.0.0.2", "b"),
        wep("a", "n0", "porin-v1", "10.0.0.1")
    );
    let mut dp = FakeDatapath::new();
    dp.add_interface("porin-v1", 11);
    let mut r = NodeReconciler::new("n0");
    let rep = r.reconcile(&mut dp, &snapshot(1, &base), NETNS);
    assert!(dp.log.contains(&Op::SetIpcache));
    assert_eq!(dp.ipcache, expected_ipcache(&r, &rep));
    assert!(dp.ipcache.len() >= 2, "{:?}", dp.ipcache);

    // Only the policy changes (a port): the endpoint is rewritten, the ipcache is not.
    dp.log.clear();
    let ported = base.replace("ingress: [{from:", "ingress: [{ports: [{port: 80}], from:");
    assert_ne!(ported, base);
    let rep = r.reconcile(&mut dp, &snapshot(2, &ported), NETNS);
    assert!(dp.log.contains(&Op::SetEndpoint(11)), "{:?}", dp.log);
    assert!(!dp.log.contains(&Op::SetIpcache), "{:?}", dp.log);
    assert_eq!(rep.ipcache_error, None);
    assert_eq!(dp.ipcache, expected_ipcache(&r, &rep));

    // A new pod is a new identity: written.
    dp.log.clear();
    let more = format!("{ported}{}", pod("c", "10.0.0.3", "c"));
    let rep = r.reconcile(&mut dp, &snapshot(3, &more), NETNS);
    assert!(dp.log.contains(&Op::SetIpcache), "{:?}", dp.log);
    assert_eq!(dp.ipcache, expected_ipcache(&r, &rep));
    assert!(dp.ipcache.keys().any(|p| p.to_string() == "10.0.0.3/32"), "{:?}", dp.ipcache);

    // A failed write is not taken as written: the same revision writes it again.
    let fail = Arc::new(Mutex::new(true));
    let f2 = fail.clone();
    dp.inject = Some(Box::new(move |op| {
        (*f2.lock().unwrap() && *op == Op::SetIpcache).then(|| map_failed(0))
    }));
    let less = ported.clone();
    let rep = r.reconcile(&mut dp, &snapshot(4, &less), NETNS);
    assert!(rep.ipcache_error.is_some());
    *fail.lock().unwrap() = false;
    dp.log.clear();
    let rep = r.reconcile(&mut dp, &snapshot(4, &less), NETNS);
    assert!(dp.log.contains(&Op::SetIpcache), "{:?}", dp.log);
    assert_eq!(rep.ipcache_error, None);
    assert_eq!(dp.ipcache, expected_ipcache(&r, &rep));
    assert!(!dp.ipcache.keys().any(|p| p.to_string() == "10.0.0.3/32"), "{:?}", dp.ipcache);

    // A reopened datapath (whatever it holds) is written again.
    dp.ipcache.clear();
    r.reset_sweep();
    dp.log.clear();
    let rep = r.reconcile(&mut dp, &snapshot(4, &less), NETNS);
    assert!(dp.log.contains(&Op::SetIpcache), "{:?}", dp.log);
    assert_eq!(dp.ipcache, expected_ipcache(&r, &rep));
}
