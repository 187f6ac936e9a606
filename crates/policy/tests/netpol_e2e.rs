//! The upstream Kubernetes NetworkPolicy e2e scenarios (namespaces x, y, z; pods a, b, c; ports 80 and 81 on
//! TCP, UDP and SCTP) as engine tests. Each scenario states its expected truth table independently of the
//! engine, as a function of (from, to, port, protocol); every cell of every matrix is compared, and the fast
//! matrix is also compared with the reference evaluator.

use std::path::PathBuf;

use porin_model::{Protocol, load_paths, validate_set};
use porin_policy::{Cluster, Variant};

type Pod<'a> = (&'a str, &'a str);
type Expect = fn(Pod<'_>, Pod<'_>, u16, Protocol) -> bool;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/netpol-e2e")
}

fn x_a(p: Pod<'_>) -> bool {
    p == ("x", "a")
}

fn scenarios() -> Vec<(&'static str, Expect)> {
    vec![
        ("default-deny-ingress", |_, to, _, _| to.0 != "x"),
        ("default-deny-all", |from, to, _, _| from.0 != "x" && to.0 != "x"),
        ("allow-from-podselector-same-ns", |from, to, _, _| !x_a(to) || from == ("x", "b")),
        ("allow-all-ingress-target", |_, to, _, _| to.0 != "x" || x_a(to)),
        ("allow-from-all-namespaces", |_, _, _, _| true),
        ("allow-from-namespace-y", |from, to, _, _| !x_a(to) || from.0 == "y"),
        ("podselector-matchexpressions", |from, to, _, _| !x_a(to) || from == ("x", "b")),
        ("namespaceselector-matchexpressions", |from, to, _, _| !x_a(to) || from.0 == "y"),
        ("podselector-or-namespaceselector", |from, to, _, _| {
            !x_a(to) || (from.0 == "x" && from.1 != "a") || from.0 == "y"
        }),
        ("podselector-and-namespaceselector", |from, to, _, _| {
            !x_a(to) || (from.1 == "b" && (from.0 == "y" || from.0 == "z"))
        }),
        ("multiple-podselectors-and-namespaceselectors", |from, to, _, _| {
            !x_a(to) || (from.0 != "x" && (from.1 == "b" || from.1 == "c"))
        }),
        ("any-podselectors", |from, to, _, _| !x_a(to) || (from.0 == "x" && from.1 != "a")),
        ("ports-from-namespace", |from, to, port, proto| {
            !x_a(to) || (from.0 == "y" && port == 81 && proto == Protocol::Tcp)
        }),
        ("stacked-policies-overlapping", |from, to, _, proto| {
            !x_a(to) || (from.0 == "y" && proto == Protocol::Tcp)
        }),
        ("allow-all", |_, _, _, _| true),
        ("named-port-ingress", |_, to, port, proto| to.0 != "x" || (port == 81 && proto == Protocol::Tcp)),
        ("named-port-ingress-from-namespace", |from, to, port, proto| {
            !x_a(to) || (from.0 == "y" && port == 80 && proto == Protocol::Tcp)
        }),
        ("named-port-egress", |from, _, port, proto| {
            !x_a(from) || (port == 80 && matches!(proto, Protocol::Tcp | Protocol::Udp))
        }),
        ("deny-ingress-other-namespaces", |from, to, _, _| to.0 != "x" || from.0 == "x"),
        ("deny-egress-podselector", |from, _, _, _| !x_a(from)),
        ("deny-egress-namespace", |from, _, _, _| from.0 != "x"),
        ("client-side-egress-deny-wins", |from, to, _, _| !x_a(from) || to.0 == "y"),
        ("egress-to-pod-in-namespace", |from, to, _, _| !x_a(from) || to == ("y", "a")),
        ("ingress-any-port-protocol", |_, to, _, proto| !x_a(to) || proto == Protocol::Tcp),
        ("ingress-allow-all-precedence", |_, _, _, _| true),
        ("egress-allow-all-precedence", |_, _, _, _| true),
        ("egress-cidr", |from, to, _, _| !x_a(from) || to == ("y", "b")),
        ("egress-cidr-except", |from, to, _, _| !x_a(from) || to != ("y", "b")),
        ("cidr-and-except-overlap", |_, _, _, _| true),
        ("ingress-egress-independent", |from, to, _, _| !x_a(from) && (to != ("x", "b") || x_a(from))),
        ("sctp-not-tcp", |_, to, port, proto| !x_a(to) || (port == 80 && proto == Protocol::Sctp)),
        ("udp-only", |_, to, port, proto| !x_a(to) || (port == 81 && proto == Protocol::Udp)),
        ("default-ns-label", |from, to, _, _| !x_a(to) || from.0 == "y"),
        ("endport-egress", |from, _, _, proto| !x_a(from) || proto == Protocol::Tcp),
        ("endport-ingress-single", |_, to, port, proto| !x_a(to) || (port == 80 && proto == Protocol::Tcp)),
        // Without policyTypes, Ingress always applies: x/a is also isolated for ingress, with no ingress rules.
        ("egress-implicit-types", |from, to, _, _| !x_a(to) && (!x_a(from) || to.0 == "z")),
    ]
}

#[test]
fn every_fixture_has_a_scenario_and_back() {
    let mut files: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "cluster.yaml")
        .map(|n| n.trim_end_matches(".yaml").to_string())
        .collect();
    files.sort();
    let mut names: Vec<String> = scenarios().iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(files, names);
}

#[test]
fn upstream_netpol_scenarios_match_expected_matrices() {
    let mut failures = Vec::new();
    for (name, expect) in scenarios() {
        let docs = load_paths(&[fixtures().join("cluster.yaml"), fixtures().join(format!("{name}.yaml"))])
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        validate_set(&docs, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let cluster = Cluster::build(docs.iter().map(|d| &d.resource)).unwrap();
        assert_eq!(cluster.endpoints.len(), 9);
        for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            for port in [80u16, 81] {
                let m = cluster.matrix(Variant::Enforced, proto, port);
                let r = cluster.matrix_reference(Variant::Enforced, proto, port);
                assert_eq!(m, r, "{name} {proto}/{port}: fast matrix differs from the reference evaluator");
                for (i, from) in m.pods.iter().enumerate() {
                    for (j, to) in m.pods.iter().enumerate() {
                        if i == j {
                            continue;
                        }
                        let f = from.split_once('/').unwrap();
                        let t = to.split_once('/').unwrap();
                        let want = expect(f, t, port, proto);
                        if m.allowed(i, j) != want {
                            failures.push(format!("{name}: {from} -> {to} {proto}/{port}: want {want}"));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} wrong cells:\n{}", failures.len(), failures.join("\n"));
}
