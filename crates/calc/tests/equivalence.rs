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
