//! The compiled entries, looked up the way the kernel does (ipcache LPM, then the policy LPM), must give the
//! engine's verdict and trace for every packet. Checked on every fixture set in the repository: the upstream
//! NetworkPolicy scenarios, the tiered and Calico v3 fixtures and the shop example, for every local endpoint,
//! direction, peer (each pod and random external addresses), protocol and a spread of ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use porin_calc::{Compiled, State, compile, lookup, lookup_identity};
use porin_model::{load_paths, validate_set};
use porin_policy::eval::{Direction, Packet, Peer, Variant};
use porin_policy::ir::Cluster;
use rand::{Rng, SeedableRng};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cluster(paths: &[PathBuf]) -> Cluster {
    let docs = load_paths(paths).unwrap_or_else(|e| panic!("{paths:?}: {e:?}"));
    validate_set(&docs, &Default::default()).unwrap_or_else(|e| panic!("{paths:?}: {e:?}"));
    Cluster::build(docs.iter().map(|d| &d.resource)).unwrap()
}

fn fixture_sets() -> Vec<(String, Vec<PathBuf>)> {
    let mut sets = Vec::new();
    let e2e = root().join("tests/fixtures/netpol-e2e");
    let mut names: Vec<_> = std::fs::read_dir(&e2e).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names.iter().filter(|p| !p.ends_with("cluster.yaml")) {
        sets.push((p.display().to_string(), vec![e2e.join("cluster.yaml"), p.clone()]));
    }
    sets.push(("examples/shop".into(), vec![root().join("examples/shop")]));
    sets.push(("shop+staged".into(), vec![root().join("examples/shop"), root().join("tests/fixtures/cli/staged.yaml")]));
    for dir in ["tests/fixtures/tiers", "tests/fixtures/calico-v3"] {
        let d = root().join(dir);
        if d.is_dir() && only_valid(&d) {
            sets.push((dir.into(), vec![d]));
        }
    }
    sets
}

fn only_valid(d: &Path) -> bool {
    match load_paths(&[d]) {
        Ok(docs) => validate_set(&docs, &Default::default()).is_ok(),
        Err(_) => false,
    }
}

const PORTS: [u16; 14] = [0, 1, 53, 79, 80, 81, 82, 443, 5432, 8080, 8081, 9000, 9090, 65535];

fn packets(rng: &mut impl Rng, v6: bool) -> Vec<Packet> {
    let mut out = Vec::new();
    for proto in [6u8, 17, 132] {
        for port in PORTS.into_iter().chain((0..6).map(|_| rng.random::<u16>())) {
            out.push(Packet { protocol: proto, port: Some(port), icmp: None, v6 });
        }
    }
    for (t, c) in [(0u8, 0u8), (8, 0), (3, 1), (128, 0), (129, 0)] {
        out.push(Packet { protocol: if v6 { 58 } else { 1 }, port: None, icmp: Some((t, Some(c))), v6 });
    }
    for proto in [47u8, 2, 253] {
        out.push(Packet { protocol: proto, port: None, icmp: None, v6 });
    }
    out
}

fn kernel_value(pkt: &Packet) -> u16 {
    match (pkt.port, pkt.icmp) {
        (Some(p), _) => p,
        (None, Some((t, c))) => u16::from(t) << 8 | u16::from(c.unwrap_or(0)),
        (None, None) => 0,
    }
}

fn check(name: &str, c: &Cluster, compiled: &Compiled, state: &State, rng: &mut impl Rng) -> usize {
    let mut checked = 0;
    let mut external: Vec<IpAddr> = Vec::new();
    for _ in 0..12 {
        external.push(IpAddr::V4(Ipv4Addr::from(rng.random::<u32>())));
    }
    for _ in 0..4 {
        external.push(IpAddr::V6(Ipv6Addr::from(rng.random::<u128>())));
    }
    // Addresses near every prefix boundary the policies mention.
    for (net, _) in &compiled.ipcache {
        external.push(net.network());
        external.push(net.broadcast());
    }
    external.retain(|ip| c.endpoint_by_ip(*ip).is_none());
    for prog in &compiled.endpoints {
        let local = &c.endpoints[c.endpoint(&prog.endpoint).unwrap()];
        for (dir, entries) in [(Direction::Ingress, &prog.ingress), (Direction::Egress, &prog.egress)] {
            let mut peers: Vec<(Peer<'_>, IpAddr)> = Vec::new();
            for e in &c.endpoints {
                for ip in &e.ips {
                    peers.push((Peer::Endpoint(e), *ip));
                }
            }
            peers.extend(external.iter().map(|ip| (Peer::Ip(*ip), *ip)));
            for (peer, ip) in peers {
                let identity = lookup_identity(&compiled.ipcache, ip)
                    .unwrap_or_else(|| panic!("{name}: {ip} has no identity"));
                for pkt in packets(rng, ip.is_ipv6()) {
                    let want = c.side(Variant::Enforced, local, dir, peer, &pkt);
                    let got = lookup(entries, identity, pkt.protocol, kernel_value(&pkt))
                        .unwrap_or_else(|| panic!("{name}: no entry matches"));
                    let trace: Vec<String> = want.hits.iter().map(|h| h.to_string()).collect();
                    let meta = state.rule_meta(got.rule_id).expect("rule id is known");
                    assert_eq!(
                        (got.allow, &meta.trace),
                        (want.allowed, &trace),
                        "{name}: {} {dir} peer {} ({ip}, identity {identity}) {:?}",
                        prog.endpoint,
                        peer.describe(),
                        pkt
                    );
                    checked += 1;
                }
            }
        }
    }
    checked
}

#[test]
fn compiled_entries_equal_the_engine_on_every_fixture() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut total = 0;
    let sets = fixture_sets();
    assert!(sets.len() >= 38, "fixture sets went missing: {}", sets.len());
    for (name, paths) in sets {
        let c = cluster(&paths);
        let mut state = State::new();
        let compiled = compile(&c, &mut state, &|_| true);
        assert_eq!(compiled.endpoints.len(), c.endpoints.len());
        total += check(&name, &c, &compiled, &state, &mut rng);
    }
    assert!(total > 100_000, "only {total} packets checked");
}

#[test]
fn identities_and_rule_ids_are_stable_across_recompiles() {
    let c = cluster(&[root().join("examples/shop")]);
    let mut state = State::new();
    let a = compile(&c, &mut state, &|_| true);
    let b = compile(&c, &mut state, &|_| true);
    assert_eq!(a, b);
}

#[test]
fn pods_policy_cannot_tell_apart_share_an_identity() {
    let c = cluster(&[root().join("tests/fixtures/netpol-e2e/cluster.yaml"), root().join("tests/fixtures/netpol-e2e/default-deny-all.yaml")]);
    let mut state = State::new();
    let compiled = compile(&c, &mut state, &|_| true);
    // Pods differ by namespace and by the `pod` label: nine pod identities, plus world for each family.
    let pods = compiled.identities.iter().filter(|i| !i.members.is_empty()).count();
    assert_eq!(pods, 9);
    // default-deny-all in x: every x pod denies every peer with one default entry per direction.
    let xa = compiled.endpoint("x/a").unwrap();
    assert_eq!(xa.ingress.len(), 1);
    assert!(!xa.ingress[0].allow);
    // y/a has no policy: one default-allow entry.
    let ya = compiled.endpoint("y/a").unwrap();
    assert_eq!(ya.ingress.len(), 1);
    assert!(ya.ingress[0].allow);
}

#[test]
fn only_local_endpoints_are_compiled() {
    let c = cluster(&[root().join("examples/shop")]);
    let mut state = State::new();
    let compiled = compile(&c, &mut state, &|e| e.namespace == "ops");
    let names: Vec<&str> = compiled.endpoints.iter().map(|e| e.endpoint.as_str()).collect();
    assert_eq!(names, vec!["ops/loadgen", "ops/monitoring"]);
    // ...but every pod has an identity, so remote peers resolve.
    assert!(compiled.identities.iter().any(|i| i.members.contains(&"shop/db".to_string())));
}

// ---- Incremental compilation: the cache must be invisible. ----

use porin_model::PortMatch;
use porin_model::porin::Action;
use porin_policy::ir::RuleMatch;

/// A from-scratch compile with the same identity and rule-id tables (ids are allocation history, not policy).
fn from_scratch(c: &Cluster, state: &State) -> Compiled {
    let mut fresh = state.clone();
    fresh.clear_cache();
    compile(c, &mut fresh, &|_| true)
}

/// One random edit of the IR that keeps every index valid: a rule's action, a rule removed, a rule's port
/// range, a pod's labels, the default action.
fn random_edit(c: &mut Cluster, rng: &mut impl Rng) -> String {
    for _ in 0..20 {
        match rng.random_range(0..5) {
            0..=2 if !c.policies.is_empty() => {
                let pi = rng.random_range(0..c.policies.len());
                let p = &mut c.policies[pi];
                let ingress = rng.random_bool(0.5);
                let rules = if ingress { &mut p.ingress } else { &mut p.egress };
                if rules.is_empty() {
                    continue;
                }
                let ri = rng.random_range(0..rules.len());
                let what = rng.random_range(0..3);
                match what {
                    0 => {
                        let actions = [Action::Allow, Action::Deny, Action::Pass, Action::Log];
                        rules[ri].action = actions[rng.random_range(0..4)];
                    }
                    1 => {
                        rules.remove(ri);
                    }
                    _ => {
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
                }
                return format!("policy {} {} rule {ri} edit {what}", p.id, if ingress { "ingress" } else { "egress" });
            }
            3 if !c.endpoints.is_empty() => {
                let ei = rng.random_range(0..c.endpoints.len());
                let e = &mut c.endpoints[ei];
                let keys: Vec<String> = e.labels.keys().filter(|k| !k.contains('/')).cloned().collect();
                if keys.is_empty() || rng.random_bool(0.3) {
                    e.labels.insert("pod".into(), ["a", "b", "c", "x"][rng.random_range(0..4)].into());
                } else {
                    let k = &keys[rng.random_range(0..keys.len())];
                    e.labels.remove(k);
                }
                return format!("labels of {}", e.id());
            }
            4 => {
                c.default_allow = !c.default_allow;
                return "default action".into();
            }
            _ => {}
        }
    }
    "nothing".into()
}

#[test]
fn an_unchanged_cluster_recompiles_without_walking() {
    for (name, paths) in fixture_sets() {
        let c = cluster(&paths);
        let mut state = State::new();
        let a = compile(&c, &mut state, &|_| true);
        let walks = state.stats.walks;
        assert!(walks > 0 || c.endpoints.is_empty(), "{name}");
        let b = compile(&c, &mut state, &|_| true);
        assert_eq!(state.stats.walks, walks, "{name}: the second compile walked");
        assert!(state.stats.computed.is_empty(), "{name}");
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn endpoints_of_one_class_are_compiled_once() {
    // In the upstream cluster every pod label `pod` is distinct within a namespace, so build two equal pods.
    let mut c = cluster(&[root().join("examples/shop")]);
    let mut twin = c.endpoints[0].clone();
    twin.name = format!("{}-twin", twin.name);
    twin.ips = vec!["10.255.255.1".parse().unwrap()];
    c.endpoints.push(twin.clone());
    let mut state = State::new();
    let compiled = compile(&c, &mut state, &|_| true);
    assert!(!state.stats.computed.iter().any(|(e, _)| *e == twin.id()), "the twin was compiled, not reused");
    let a = compiled.endpoint(&c.endpoints[0].id()).unwrap();
    let b = compiled.endpoint(&twin.id()).unwrap();
    assert_eq!((&a.ingress, &a.egress), (&b.ingress, &b.egress));
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    check("shop+twin", &c, &compiled, &state, &mut rng);
}

#[test]
fn changing_one_policy_recompiles_only_what_it_selects() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for (name, paths) in fixture_sets() {
        let mut c = cluster(&paths);
        if c.policies.is_empty() {
            continue;
        }
        let mut state = State::new();
        compile(&c, &mut state, &|_| true);
        let pi = rng.random_range(0..c.policies.len());
        let before = c.clone();
        // Flip the first rule's action (or drop the policy's first rule) without touching protocols or CIDRs.
        let p = &mut c.policies[pi];
        if let Some(r) = p.ingress.first_mut().or(p.egress.first_mut()) {
            r.action = if r.action == Action::Allow { Action::Deny } else { Action::Allow };
        } else {
            continue;
        }
        compile(&c, &mut state, &|_| true);
        let selects = |cl: &Cluster, e: &str, dir: Direction| {
            let ep = &cl.endpoints[cl.endpoint(e).unwrap()];
            let p = &cl.policies[pi];
            cl.policy_selects(p, ep)
                && match dir {
                    Direction::Ingress => p.ingress_type,
                    Direction::Egress => p.egress_type,
                }
        };
        for (e, dir) in &state.stats.computed {
            assert!(
                selects(&before, e, *dir) || selects(&c, e, *dir),
                "{name}: {e} {dir} recompiled though {} does not select it",
                c.policies[pi].id
            );
        }
        assert!(state.stats.reused > 0 || state.stats.computed.len() == 2 * c.endpoints.len(), "{name}");
        assert_eq!(compile(&c, &mut state.clone(), &|_| true), from_scratch(&c, &state), "{name}");
    }
}

#[test]
fn incremental_recompiles_equal_from_scratch_under_random_edits() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for (name, paths) in fixture_sets() {
        let mut c = cluster(&paths);
        let mut state = State::new();
        compile(&c, &mut state, &|_| true);
        for round in 0..4 {
            let what = random_edit(&mut c, &mut rng);
            let incremental = compile(&c, &mut state, &|_| true);
            let scratch = from_scratch(&c, &state);
            assert_eq!(incremental, scratch, "{name} round {round} after {what}");
            // And a fresh state (other ids) gives the same verdicts and traces: the oracle.
            check(&format!("{name} round {round} after {what}"), &c, &incremental, &state, &mut rng);
        }
    }
}
