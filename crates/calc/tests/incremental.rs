//! Incremental compiles must equal from-scratch compiles with a **fresh** state (entry for entry, up to the
//! numbering of identities and rule ids), under sequences of random cluster edits; a change must cost work only
//! where it matters; and the state must not grow with history.

#[path = "support/synth.rs"]
mod synth;

use std::collections::BTreeMap;
use std::path::PathBuf;

use porin_calc::{Compiled, State, compile};
use porin_model::porin::Action;
use porin_model::{PortMatch, load_paths, validate_set};
use porin_policy::eval::Direction;
use porin_policy::ir::{Cluster, K8sPeer, RuleMatch};
use rand::{Rng, SeedableRng};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cluster(paths: &[PathBuf]) -> Cluster {
    let docs = load_paths(paths).unwrap_or_else(|e| panic!("{paths:?}: {e:?}"));
    validate_set(&docs, &Default::default()).unwrap_or_else(|e| panic!("{paths:?}: {e:?}"));
    Cluster::build(docs.iter().map(|d| &d.resource)).unwrap()
}

/// A compile with ids replaced by what they stand for: identities by their kind and members, rule ids by
/// (allow, trace). Entries sorted, so two compiles that differ only in numbering compare equal.
type Canon = (Vec<String>, Vec<String>, BTreeMap<String, (Vec<String>, Vec<String>)>);

fn canonical(out: &Compiled, state: &State) -> Canon {
    let ident: BTreeMap<u32, String> = out
        .identities
        .iter()
        .map(|i| (i.id, serde_json::to_string(&(&i.kind, &i.members)).unwrap()))
        .collect();
    let name = |id: u32| ident.get(&id).cloned().unwrap_or_else(|| panic!("identity {id} is not in the table"));
    let rule = |id: u32| {
        let m = state.rule_meta(id).unwrap_or_else(|| panic!("rule id {id} is not known"));
        format!("{}:{}", m.allow, m.trace.join(","))
    };
    let entries = |v: &[porin_calc::Entry]| {
        let mut out: Vec<String> = v
            .iter()
            .map(|e| format!("{:?} {:?} {:?} {} {}", e.identity.map(name), e.proto, e.ports, e.allow, rule(e.rule_id)))
            .collect();
        out.sort();
        out
    };
    let mut idents: Vec<String> = ident.values().cloned().collect();
    idents.sort();
    let mut ipcache: Vec<String> = out.ipcache.iter().map(|(n, id)| format!("{n} {}", name(*id))).collect();
    ipcache.sort();
    let eps = out.endpoints.iter().map(|p| (p.endpoint.clone(), (entries(&p.ingress), entries(&p.egress)))).collect();
    (idents, ipcache, eps)
}

/// One random edit that keeps every index valid: a rule's action, a rule removed, added (a copy of another) or
/// moved, a rule's port, a rule's peer (a new or an existing /32), a pod's labels, a pod added or removed, a
/// namespace's labels, a network set's nets or labels, the default action.
fn random_edit(c: &mut Cluster, rng: &mut impl Rng) -> String {
    for _ in 0..50 {
        match rng.random_range(0..13) {
            0..=3 if !c.policies.is_empty() => {
                let pi = rng.random_range(0..c.policies.len());
                let p = &mut c.policies[pi];
                let ingress = rng.random_bool(0.5);
                let rules = if ingress { &mut p.ingress } else { &mut p.egress };
                if rules.is_empty() {
                    continue;
                }
                let ri = rng.random_range(0..rules.len());
                let what = rng.random_range(0..4);
                let net: ipnet::IpNet = format!("10.{}.0.{}/32", rng.random_range(97..100), rng.random_range(1..40))
                    .parse()
                    .unwrap();
                match what {
                    0 => rules[ri].action = [Action::Allow, Action::Deny, Action::Pass, Action::Log][rng.random_range(0..4)],
                    1 => {
                        rules.remove(ri);
                    }
                    2 => {
                        let lo = rng.random_range(0..9100u16);
                        let m = PortMatch::Range(lo, lo + rng.random_range(0..200u16));
                        match &mut rules[ri].matcher {
                            RuleMatch::K8s { ports, .. } => match ports.first_mut() {
                                Some(pm) => pm.port = Some(m),
                                None => continue,
                            },
                            RuleMatch::Calico { destination, .. } => destination.ports = vec![m],
                        }
                    }
                    _ => match &mut rules[ri].matcher {
                        RuleMatch::K8s { peers, .. } => match peers.first_mut() {
                            Some(peer) => *peer = K8sPeer::IpBlock { cidr: net, except: vec![] },
                            None => peers.push(K8sPeer::IpBlock { cidr: net, except: vec![] }),
                        },
                        RuleMatch::Calico { source, destination, .. } => {
                            if ingress { source.nets = vec![net] } else { destination.nets = vec![net] }
                        }
                    },
                }
                return format!("policy {} {} rule {ri} edit {what}", p.id, if ingress { "ingress" } else { "egress" });
            }
            4 | 5 if !c.endpoints.is_empty() => {
                let ei = rng.random_range(0..c.endpoints.len());
                let e = &mut c.endpoints[ei];
                let keys: Vec<String> = e.labels.keys().filter(|k| !k.contains('/')).cloned().collect();
                if keys.is_empty() || rng.random_bool(0.5) {
                    let k = ["pod", "app", "role"][rng.random_range(0..3)];
                    e.labels.insert(k.into(), ["a", "b", "c", "x", "g1", "g2", "server"][rng.random_range(0..7)].into());
                } else {
                    let k = &keys[rng.random_range(0..keys.len())];
                    e.labels.remove(k);
                }
                return format!("labels of {}", e.id());
            }
            6 if !c.endpoints.is_empty() => {
                let ei = rng.random_range(0..c.endpoints.len());
                let mut twin = c.endpoints[ei].clone();
                twin.name = format!("{}-t{}", twin.name, rng.random_range(0..1000));
                if c.endpoint(&twin.id()).is_some() {
                    continue;
                }
                twin.ips = vec![format!("10.{}.0.{}", rng.random_range(97..100), rng.random_range(1..40)).parse().unwrap()];
                if c.endpoint_by_ip(twin.ips[0]).is_some() {
                    continue;
                }
                let id = twin.id();
                c.endpoints.push(twin);
                return format!("pod {id} added");
            }
            7 if c.endpoints.len() > 1 => {
                let at = rng.random_range(0..c.endpoints.len());
                let e = c.endpoints.remove(at);
                return format!("pod {} removed", e.id());
            }
            8 => {
                c.default_allow = !c.default_allow;
                return "default action".into();
            }
            9 if !c.namespaces.is_empty() => {
                let names: Vec<String> = c.namespaces.keys().cloned().collect();
                let ns = &names[rng.random_range(0..names.len())];
                let labels = c.namespaces.get_mut(ns).expect("listed");
                let k = ["team", "env", "app"][rng.random_range(0..3)];
                if labels.contains_key(k) && rng.random_bool(0.5) {
                    labels.remove(k);
                } else {
                    labels.insert(k.into(), ["x", "y", "prod", "dev", "a"][rng.random_range(0..5)].into());
                }
                return format!("labels of namespace {ns}");
            }
            10 if !c.net_sets.is_empty() => {
                let si = rng.random_range(0..c.net_sets.len());
                let s = &mut c.net_sets[si];
                let net: ipnet::IpNet =
                    format!("10.{}.0.0/{}", rng.random_range(97..100), [16, 24, 30][rng.random_range(0..3)]).parse().unwrap();
                match rng.random_range(0..3) {
                    0 => s.nets.push(net.trunc()),
                    1 if !s.nets.is_empty() => {
                        s.nets.remove(rng.random_range(0..s.nets.len()));
                    }
                    _ => {
                        s.labels.insert("role".into(), ["a", "b", "x"][rng.random_range(0..3)].into());
                    }
                }
                return format!("network set {}", s.name);
            }
            11 | 12 if !c.policies.is_empty() => {
                let pi = rng.random_range(0..c.policies.len());
                let p = &mut c.policies[pi];
                let ingress = rng.random_bool(0.5);
                let rules = if ingress { &mut p.ingress } else { &mut p.egress };
                if rules.is_empty() {
                    continue;
                }
                let from = rng.random_range(0..rules.len());
                let to = rng.random_range(0..=rules.len());
                if rng.random_bool(0.5) {
                    let copy = rules[from].clone();
                    rules.insert(to, copy);
                    return format!("policy {} rule {from} copied to {to}", p.id);
                }
                let r = rules.remove(from);
                let to = to.min(rules.len());
                rules.insert(to, r);
                return format!("policy {} rule {from} moved to {to}", p.id);
            }
            _ => {}
        }
    }
    "nothing".into()
}

fn sets() -> Vec<(String, Cluster)> {
    let mut out = Vec::new();
    let e2e = root().join("tests/fixtures/netpol-e2e");
    for f in ["cidr-and-except-overlap.yaml", "named-port-egress.yaml", "named-port-ingress.yaml", "egress-cidr-except.yaml", "podselector-or-namespaceselector.yaml", "stacked-policies-overlapping.yaml"] {
        let p = e2e.join(f);
        if p.exists() {
            out.push((f.to_string(), cluster(&[e2e.join("cluster.yaml"), p])));
        }
    }
    out.push(("examples/shop".into(), cluster(&[root().join("examples/shop")])));
    for dir in ["tests/fixtures/tiers", "tests/fixtures/calico-v3"] {
        let d = root().join(dir);
        if let Ok(docs) = load_paths(std::slice::from_ref(&d))
            && validate_set(&docs, &Default::default()).is_ok()
        {
            out.push((dir.into(), cluster(&[d])));
        }
    }
    out.push(("synthetic distinct peers".into(), synth::cluster(300, 20, synth::Peers::Distinct, 0)));
    out.push(("synthetic shared peers".into(), synth::cluster(300, 20, synth::Peers::Shared, 0)));
    out
}

#[test]
fn incremental_equals_a_fresh_state_under_random_edit_sequences() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let sets = sets();
    assert!(sets.len() >= 10, "fixtures went missing: {}", sets.len());
    for (name, mut c) in sets {
        let mut state = State::new();
        compile(&c, &mut state, &|_| true);
        let mut log = Vec::new();
        for round in 0..12 {
            log.push(random_edit(&mut c, &mut rng));
            let incremental = compile(&c, &mut state, &|_| true);
            let mut fresh = State::new();
            let scratch = compile(&c, &mut fresh, &|_| true);
            assert_eq!(incremental.endpoints.len(), scratch.endpoints.len());
            assert!(
                canonical(&incremental, &state) == canonical(&scratch, &fresh),
                "{name} round {round}: incremental differs from a fresh compile after {log:?}"
            );
        }
    }
}

#[test]
fn a_one_rule_change_recomputes_only_the_identities_that_rule_can_match() {
    let mut c = synth::cluster(1000, 20, synth::Peers::Distinct, 0);
    let mut state = State::new();
    compile(&c, &mut state, &|_| true);
    let cold = state.stats.walks;
    assert!(state.stats.functions > 900, "the cold compile computed {} functions", state.stats.functions);
    // Rule 0 of the first policy names one /32: only that identity's function at the server is recomputed.
    let p = c.policies.iter_mut().find(|p| p.id.name == "rules-00000").unwrap();
    let RuleMatch::Calico { destination, .. } = &mut p.ingress[0].matcher else { panic!("a Calico rule") };
    destination.ports = vec![PortMatch::Range(41000, 41000)];
    compile(&c, &mut state, &|_| true);
    assert_eq!(state.stats.computed, vec![("bench/server".to_string(), Direction::Ingress)]);
    assert_eq!(state.stats.functions, 1);
    let walks = state.stats.walks - cold;
    assert!(walks < 20, "{walks} walks for one rule");
    // A new peer: one new identity (a function at every class that can see it), the old one released later.
    let p = c.policies.iter_mut().find(|p| p.id.name == "rules-00000").unwrap();
    let RuleMatch::Calico { source, .. } = &mut p.ingress[0].matcher else { panic!("a Calico rule") };
    source.nets = vec!["10.98.0.1/32".parse().unwrap()];
    let before = state.stats.walks;
    compile(&c, &mut state, &|_| true);
    assert_eq!(state.stats.functions, 1, "only the server's function for the new identity");
    assert!(state.stats.walks - before < 20);
    // Nothing changed: nothing computed.
    compile(&c, &mut state, &|_| true);
    assert_eq!((state.stats.functions, state.stats.computed.len()), (0, 0));
}

#[test]
fn state_is_bounded_by_the_policy_not_by_its_history() {
    let mut c = synth::cluster(300, 20, synth::Peers::Distinct, 0);
    let mut state = State::new();
    compile(&c, &mut state, &|_| true);
    let p = c.policies.iter().position(|p| p.id.name == "rules-00000").unwrap();
    for k in 0..300u16 {
        let RuleMatch::Calico { source, destination, .. } = &mut c.policies[p].ingress[0].matcher else { panic!() };
        source.nets = vec![format!("10.98.{}.{}/32", k / 200, k % 200 + 1).parse().unwrap()];
        destination.ports = vec![PortMatch::Range(30000 + k, 30000 + k)];
        compile(&c, &mut state, &|_| true);
    }
    let out = compile(&c, &mut state, &|_| true);
    let mut fresh = State::new();
    compile(&c, &mut fresh, &|_| true);
    // One compile of grace: the previous compile's ids are still held; nothing older.
    assert!(state.identity_count() <= fresh.identity_count() + 1, "{} vs {}", state.identity_count(), fresh.identity_count());
    assert!(state.rule_count() <= fresh.rule_count() + 2, "{} vs {}", state.rule_count(), fresh.rule_count());
    assert!(state.rules.len() <= fresh.rules.len() + 2 + 1);
    let max_identity = out.identities.iter().map(|i| i.id).max().unwrap();
    assert!(max_identity < porin_calc::FIRST_DYNAMIC_IDENTITY + fresh.identity_count() as u32 + 2, "ids are recycled");
    // Every id the output uses resolves.
    for e in &out.endpoints {
        for x in e.ingress.iter().chain(e.egress.iter()) {
            assert!(state.rule_meta(x.rule_id).is_some());
        }
    }
}

#[test]
fn ids_of_unchanged_rules_and_identities_stay_put_across_unrelated_changes() {
    let mut c = synth::cluster(300, 20, synth::Peers::Distinct, 0);
    let mut state = State::new();
    let a = compile(&c, &mut state, &|_| true);
    let p = c.policies.iter().position(|p| p.id.name == "rules-00001").unwrap();
    c.policies[p].ingress.pop();
    let b = compile(&c, &mut state, &|_| true);
    let ids = |x: &Compiled| x.identities.iter().map(|i| (serde_json::to_string(&i.kind).unwrap(), i.id)).collect::<BTreeMap<_, _>>();
    let (ia, ib) = (ids(&a), ids(&b));
    for (k, id) in &ib {
        if let Some(old) = ia.get(k) {
            assert_eq!(old, id, "identity {k} was renumbered");
        }
    }
    let server = |x: &Compiled| x.endpoint("bench/server").unwrap().ingress.clone();
    let before: std::collections::HashSet<_> = server(&a).into_iter().collect();
    let after = server(&b);
    let changed = after.iter().filter(|e| !before.contains(e)).count();
    assert!(changed <= 3, "{changed} server entries changed for one removed rule");
}

#[test]
fn the_state_can_move_between_threads() {
    // The agent keeps the state in a task that may run on any thread.
    fn send_sync<T: Send + Sync>() {}
    send_sync::<State>();
}

/// The synthetic clusters at scale, looked up like the kernel, give the engine's verdict and trace (sampled:
/// every rule's own peer and port, pods, random addresses and ports), before and after random edits.
#[test]
fn synthetic_clusters_equal_the_engine_when_looked_up_like_the_kernel() {
    use porin_calc::{lookup, lookup_identity};
    use porin_policy::eval::{Packet, Peer, Variant};
    use std::net::IpAddr;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for peers in [synth::Peers::Distinct, synth::Peers::Shared] {
        let mut c = synth::cluster(400, 20, peers, 0);
        let mut state = State::new();
        for round in 0..3 {
            if round > 0 {
                for _ in 0..5 {
                    random_edit(&mut c, &mut rng);
                }
            }
            let out = compile(&c, &mut state, &|_| true);
            let mut addrs: Vec<IpAddr> = (0..400).map(|i| synth::distinct_peer(i).parse::<ipnet::IpNet>().unwrap().addr()).collect();
            addrs.extend((0..100).map(|i| format!("10.250.0.{i}").parse::<IpAddr>().unwrap()));
            addrs.extend((0..20).map(|_| IpAddr::from(rng.random::<[u8; 4]>())));
            addrs.push("10.98.0.1".parse().unwrap());
            let mut checked = 0;
            for prog in &out.endpoints {
                let local = &c.endpoints[c.endpoint(&prog.endpoint).unwrap()];
                let mut peers: Vec<(Peer<'_>, IpAddr)> = addrs
                    .iter()
                    .filter(|ip| c.endpoint_by_ip(**ip).is_none())
                    .map(|ip| (Peer::Ip(*ip), *ip))
                    .collect();
                peers.extend(c.endpoints.iter().step_by(3).map(|e| (Peer::Endpoint(e), e.ips[0])));
                let heavy = prog.endpoint == "bench/server";
                for (dir, entries) in [(Direction::Ingress, &prog.ingress), (Direction::Egress, &prog.egress)] {
                    for (k, (peer, ip)) in peers.iter().enumerate() {
                        if !heavy && k % 7 != 0 {
                            continue;
                        }
                        let identity = lookup_identity(&out.ipcache, *ip).unwrap();
                        let mut pkts: Vec<Packet> = vec![
                            Packet { protocol: 6, port: Some(20000 + (k % 400) as u16), icmp: None, v6: false },
                            Packet { protocol: 6, port: Some(8080), icmp: None, v6: false },
                            Packet { protocol: 6, port: Some(rng.random()), icmp: None, v6: false },
                            Packet { protocol: 17, port: Some(20000 + (k % 400) as u16), icmp: None, v6: false },
                            Packet { protocol: 1, port: None, icmp: Some((8, Some(0))), v6: false },
                            Packet { protocol: 47, port: None, icmp: None, v6: false },
                            // Shared peers: ports 20000 + i / 100.
                            Packet { protocol: 6, port: Some(20000 + rng.random_range(0..5u16)), icmp: None, v6: false },
                        ];
                        for pkt in pkts.drain(..) {
                            let want = c.side(Variant::Enforced, local, dir, *peer, &pkt);
                            let value = pkt.port.unwrap_or_else(|| pkt.icmp.map_or(0, |(t, c)| u16::from(t) << 8 | u16::from(c.unwrap_or(0))));
                            let got = lookup(entries, identity, pkt.protocol, value).unwrap();
                            let trace: Vec<String> = want.hits.iter().map(|h| h.to_string()).collect();
                            assert_eq!(
                                (got.allow, &state.rule_meta(got.rule_id).unwrap().trace),
                                (want.allowed, &trace),
                                "{peers:?} round {round}: {} {dir} from {ip} {pkt:?}",
                                prog.endpoint
                            );
                            checked += 1;
                        }
                    }
                }
            }
            assert!(checked > 5_000, "only {checked} packets checked");
        }
    }
}

/// A ServiceAccount's labels are read by service-account selectors: relabelling the account alone (no pod or
/// policy changes) must recompile what it changes, as a fresh compile would.
#[test]
fn relabelling_a_service_account_recompiles_its_pods() {
    let text = |role: &str| {
        format!(
            r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: api, namespace: shop, labels: {{role: {role}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: api-1, namespace: shop, labels: {{app: api}}}}
spec: {{serviceAccountName: api}}
status: {{podIP: 10.0.0.1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web-1, namespace: shop, labels: {{app: web}}}}
status: {{podIP: 10.0.0.2}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: backend-closed}}
spec:
  selector: all()
  serviceAccountSelector: role == 'backend'
  types: [Ingress]
  ingress: [{{action: Deny}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: web-to-frontends}}
spec:
  selector: app == 'web'
  types: [Egress]
  egress: [{{action: Allow, destination: {{serviceAccounts: {{selector: role == 'frontend'}}}}}}, {{action: Deny}}]
"#
        )
    };
    let build = |role: &str| {
        let docs = porin_model::parse_documents("sa.yaml", &text(role)).unwrap();
        validate_set(&docs, &Default::default()).unwrap();
        Cluster::build(docs.iter().map(|d| &d.resource)).unwrap()
    };
    let mut state = State::new();
    compile(&build("backend"), &mut state, &|_| true);
    for role in ["frontend", "backend", "none"] {
        let c = build(role);
        let incremental = compile(&c, &mut state, &|_| true);
        let mut fresh = State::new();
        let scratch = compile(&c, &mut fresh, &|_| true);
        assert!(canonical(&incremental, &state) == canonical(&scratch, &fresh), "after relabelling the account role={role}");
    }
    // And it matters for web-1 too, whose own class never changes: its egress to api-1's identity differs.
    let (mut f0, mut f1) = (State::new(), State::new());
    let (b, f) = (compile(&build("backend"), &mut f0, &|_| true), compile(&build("frontend"), &mut f1, &|_| true));
    let web = |out: &Compiled, st: &State| canonical(out, st).2.get("shop/web-1").cloned().unwrap();
    assert!(web(&b, &f0) != web(&f, &f1), "the account's labels change web-1's program");
}
