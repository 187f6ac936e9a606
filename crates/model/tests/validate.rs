//! Every class of bad input is rejected with `FILE doc N: FIELD.PATH: problem`, every problem of a set is
//! reported at once, and nothing is returned for a set with any error.

use std::collections::BTreeSet;

use porin_model::{ManifestError, load_paths, parse_documents, validate_set};

/// Parse and validate `text` as file `file`; the rendered errors, or an empty list when it is valid.
fn errors(file: &str, text: &str) -> Vec<String> {
    let docs = match parse_documents(file, text) {
        Ok(d) => d,
        Err(e) => return render(&e),
    };
    match validate_set(&docs, &BTreeSet::new()) {
        Ok(()) => vec![],
        Err(e) => render(&e),
    }
}

fn render(e: &[ManifestError]) -> Vec<String> {
    e.iter().map(|e| e.to_string()).collect()
}

fn one(file: &str, text: &str) -> String {
    let e = errors(file, text);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:#?}");
    e.into_iter().next().unwrap()
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";

fn k8s_policy(spec: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n{spec}")
}

fn porin_policy(spec: &str) -> String {
    format!("apiVersion: porin.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: shop}}\nspec:\n{spec}")
}

#[test]
fn valid_input_has_no_errors() {
    let text = format!(
        "{NS}---\n{}---\n{}",
        k8s_policy("  podSelector: {}\n  ingress:\n    - ports:\n        - {port: 8080, endPort: 8090}\n"),
        porin_policy("  selector: app == 'x'\n  ingress:\n    - action: Allow\n      protocol: TCP\n      destination: {ports: [80, \"81:90\", http]}\n")
    );
    assert_eq!(errors("ok.yaml", &text), Vec::<String>::new());
}

#[test]
fn end_port_below_port_names_doc_and_path() {
    let text = format!(
        "{NS}---\n{NS}---\n{}",
        k8s_policy(
            "  podSelector: {}\n  ingress:\n    - ports:\n        - port: 80\n        - port: 8080\n          endPort: 80\n"
        )
    );
    // The second Namespace is a duplicate; the endPort error is on doc 3.
    let e = errors("policy.yaml", &text);
    assert!(e.contains(&"policy.yaml doc 3: spec.ingress[0].ports[1].endPort: 80 is below port 8080".to_string()), "{e:#?}");
    assert!(
        e.contains(&"policy.yaml doc 2: metadata.name: duplicate Namespace \"shop\": also defined at policy.yaml doc 1".to_string()),
        "{e:#?}"
    );
    assert_eq!(e.len(), 2);
}

#[test]
fn malformed_yaml() {
    let e = one("broken.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: [unclosed\n");
    assert!(e.starts_with("broken.yaml: invalid YAML: "), "{e}");
}

#[test]
fn malformed_json() {
    let e = one("broken.json", "{\"apiVersion\": \"v1\", \"kind\": ");
    assert!(e.starts_with("broken.json doc 1: invalid JSON: "), "{e}");
}

#[test]
fn unknown_kind_and_wrong_group() {
    let e = one("k.yaml", "apiVersion: porin.io/v1\nkind: Gadget\nmetadata: {name: g}\n");
    assert_eq!(e, "k.yaml doc 1: kind: unknown kind \"Gadget\" in apiVersion \"porin.io/v1\"");
    let e = one("k.yaml", "apiVersion: porin.io/v1\nkind: Pod\nmetadata: {name: g}\n");
    assert_eq!(e, "k.yaml doc 1: kind: unknown kind \"Pod\" in apiVersion \"porin.io/v1\" (this kind is served as v1)");
    let e = one("k.yaml", "kind: Pod\nmetadata: {name: g}\n");
    assert_eq!(e, "k.yaml doc 1: apiVersion: missing");
}

#[test]
fn unknown_field_typo() {
    let e = one("typo.yaml", &format!("{NS}---\n{}", k8s_policy("  podSelectr: {}\n")));
    assert!(e.starts_with("typo.yaml doc 2: spec.podSelectr: unknown field `podSelectr`, expected one of `podSelector`"), "{e}");
    let e = one(
        "typo.yaml",
        &porin_policy("  ingress:\n    - action: Allow\n      destination: {port: [80]}\n"),
    );
    assert!(e.starts_with("typo.yaml doc 1: spec.ingress[0].destination.port: unknown field `port`"), "{e}");
}

#[test]
fn wrong_value_type_and_enum() {
    let e = one("t.yaml", &porin_policy("  ingress:\n    - action: Accept\n"));
    assert_eq!(e, "t.yaml doc 1: spec.ingress[0].action: unknown value `Accept`, expected one of Allow, Deny, Pass, Log");
}

#[test]
fn invalid_selector_shows_the_column() {
    let e = one("sel.yaml", &porin_policy("  selector: app == 'x' && && b == 'y'\n"));
    assert!(e.starts_with("sel.yaml doc 1: spec.selector: invalid selector \"app == 'x' && && b == 'y'\": column 15: expected an expression after '&&', found '&&'"), "{e}");
    let e = one(
        "sel.yaml",
        &porin_policy("  ingress:\n    - action: Allow\n      source: {selector: \"has(a\"}\n"),
    );
    assert!(e.starts_with("sel.yaml doc 1: spec.ingress[0].source.selector: invalid selector \"has(a\": column "), "{e}");
    // global() only in a rule's namespaceSelector.
    let e = one("sel.yaml", &porin_policy("  selector: global()\n"));
    assert_eq!(e, "sel.yaml doc 1: spec.selector: global() is only allowed in a rule's namespaceSelector");
}

#[test]
fn invalid_cidr_and_except_outside_cidr() {
    let e = one(
        "cidr.yaml",
        &porin_policy("  ingress:\n    - action: Allow\n      source: {nets: [10.0.0.0/8, 10.0.0.300/32]}\n"),
    );
    assert_eq!(e, "cidr.yaml doc 1: spec.ingress[0].source.nets[1]: \"10.0.0.300/32\" is not a CIDR");
    let e = one(
        "cidr.yaml",
        &k8s_policy(
            "  podSelector: {}\n  egress:\n    - to:\n        - ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 10.1.0.0/24]}\n",
        ),
    );
    assert_eq!(e, "cidr.yaml doc 1: spec.egress[0].to[0].ipBlock.except[1]: 10.1.0.0/24 is not strictly inside cidr 10.0.0.0/16");
    let e = one("cidr.yaml", &k8s_policy("  podSelector: {}\n  egress:\n    - to:\n        - ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}\n"));
    assert!(e.ends_with("except[0]: 10.0.0.0/16 is not strictly inside cidr 10.0.0.0/16"), "{e}");
}

#[test]
fn missing_tier() {
    let e = one("tier.yaml", &porin_policy("  tier: security\n  selector: all()\n"));
    assert_eq!(e, "tier.yaml doc 1: spec.tier: tier \"security\" does not exist (define it with a Tier object)");
    // A tier known outside the set (the store) is fine.
    let docs = parse_documents("tier.yaml", &porin_policy("  tier: security\n")).unwrap();
    assert!(validate_set(&docs, &BTreeSet::from(["security".to_string()])).is_ok());
}

#[test]
fn source_ports_are_rejected() {
    let e = errors(
        "sp.yaml",
        &porin_policy(
            "  ingress:\n    - action: Allow\n      protocol: TCP\n      source: {ports: [1024]}\n  egress:\n    - action: Deny\n      protocol: UDP\n      source: {notPorts: [\"1:1023\"]}\n      destination: {ports: [53]}\n",
        ),
    );
    assert_eq!(
        e,
        [
            "sp.yaml doc 1: spec.ingress[0].source.ports: source ports are not supported by Porin yet",
            "sp.yaml doc 1: spec.egress[0].source.notPorts: source ports are not supported by Porin yet",
        ]
    );
}

#[test]
fn ports_need_a_port_protocol() {
    let e = one("p.yaml", &porin_policy("  ingress:\n    - action: Allow\n      destination: {ports: [80]}\n"));
    assert_eq!(
        e,
        "p.yaml doc 1: spec.ingress[0].destination.ports: numeric ports and port ranges require protocol TCP, UDP or \
         SCTP (named ports alone need none)"
    );
    let e = one("p.yaml", &porin_policy("  ingress:\n    - action: Allow\n      protocol: ICMP\n      destination: {ports: [http]}\n"));
    assert_eq!(e, "p.yaml doc 1: spec.ingress[0].destination.ports: ports require protocol TCP, UDP or SCTP");
    // Calico (libcalico-go lib/validator/v3/validator.go, validateRule): without a protocol, a list of named
    // ports only is valid (numorstring.AllPortsAreNamed).
    assert_eq!(errors("p.yaml", &porin_policy("  ingress:\n    - action: Allow\n      destination: {ports: [http, metrics], notPorts: [admin]}\n")), Vec::<String>::new());
    let e = one("p.yaml", &porin_policy("  ingress:\n    - action: Allow\n      destination: {ports: [http, 8080]}\n"));
    assert!(e.contains("numeric ports and port ranges require protocol"), "{e}");
    // Calico (validator.go, validatePort): port numbers are 1-65535; 0 is not a port.
    let e = one("p.yaml", &porin_policy("  ingress:\n    - action: Allow\n      protocol: TCP\n      destination: {ports: [0]}\n"));
    assert_eq!(e, "p.yaml doc 1: spec.ingress[0].destination.ports[0]: 0 is not a port (1-65535)");
    let e = one("p.yaml", &porin_policy("  ingress:\n    - action: Allow\n      protocol: TCP\n      destination: {ports: [\"90:80\"]}\n"));
    assert_eq!(e, "p.yaml doc 1: spec.ingress[0].destination.ports[0]: \"90:80\": range end 80 is below its start 90");
}

#[test]
fn unsupported_calico_fields_are_named() {
    let e = one("u.yaml", &porin_policy("  ingress:\n    - action: Allow\n      http: {methods: [GET]}\n"));
    assert_eq!(e, "u.yaml doc 1: spec.ingress[0].http: HTTP (L7) rules are not supported by Porin yet");
    let e = one("u.yaml", &porin_policy("  egress:\n    - action: Allow\n      destination: {domains: [example.com]}\n"));
    assert_eq!(e, "u.yaml doc 1: spec.egress[0].destination.domains: domain (FQDN) matches are not supported by Porin yet");
}

#[test]
fn duplicate_names_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, format!("{NS}---\n{}", porin_policy("  selector: all()\n"))).unwrap();
    std::fs::write(&b, format!("# again\n{}", porin_policy("  selector: app == 'x'\n"))).unwrap();
    let docs = load_paths(&[dir.path()]).unwrap();
    let e = render(&validate_set(&docs, &BTreeSet::new()).unwrap_err());
    assert_eq!(
        e,
        [format!(
            "{} doc 1: metadata.name: duplicate NetworkPolicy \"shop/p\": also defined at {} doc 2",
            b.display(),
            a.display()
        )]
    );
    // The same name in another namespace, or of another kind, is not a duplicate.
    std::fs::write(&b, porin_policy("  selector: all()\n").replace("namespace: shop", "namespace: other")).unwrap();
    let docs = load_paths(&[dir.path()]).unwrap();
    assert!(validate_set(&docs, &BTreeSet::new()).is_ok());
}

#[test]
fn a_set_with_several_errors_reports_all_and_returns_nothing() {
    let text = format!(
        "{}---\n{}---\n{}",
        porin_policy("  selector: app = 'x'\n  tier: nope\n"),
        k8s_policy("  podSelector: {}\n  ingress:\n    - ports:\n        - {port: 70000}\n"),
        "apiVersion: porin.io/v1\nkind: GlobalNetworkSet\nmetadata: {name: Bad_Name}\nspec: {nets: [not-a-net]}\n"
    );
    let docs = parse_documents("many.yaml", &text).unwrap();
    let r = validate_set(&docs, &BTreeSet::new());
    let e = render(&r.unwrap_err());
    let paths: Vec<&str> = e.iter().map(|m| m.split(": ").next().unwrap()).collect();
    assert!(e.iter().any(|m| m.starts_with("many.yaml doc 1: spec.tier: ")), "{e:#?}");
    assert!(e.iter().any(|m| m.starts_with("many.yaml doc 1: spec.selector: invalid selector")), "{e:#?}");
    assert!(e.contains(&"many.yaml doc 2: spec.ingress[0].ports[0].port: 70000 is not a port (1-65535)".to_string()), "{e:#?}");
    assert!(e.iter().any(|m| m.starts_with("many.yaml doc 3: metadata.name: \"Bad_Name\" ")), "{e:#?}");
    assert!(e.contains(&"many.yaml doc 3: spec.nets[0]: \"not-a-net\" is not a CIDR".to_string()), "{e:#?}");
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(paths.iter().all(|p| p.starts_with("many.yaml doc ")));

    // Parse errors are also collected across documents (one per bad document).
    let text = "apiVersion: v1\nkind: Nope\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\napiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: t}\nspec: {ordr: 1}\n";
    let e = render(&parse_documents("p.yaml", text).unwrap_err());
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e[0].starts_with("p.yaml doc 1: kind: unknown kind \"Nope\""));
    assert!(e[1].starts_with("p.yaml doc 3: spec.ordr: unknown field `ordr`"));
}

#[test]
fn list_items_are_located() {
    let text = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Namespace\n    metadata: {name: ok}\n  - apiVersion: v1\n    kind: Namespace\n    metadata: {name: Not_OK}\n";
    let e = one("list.yaml", text);
    assert!(e.starts_with("list.yaml doc 1: items[1].metadata.name: \"Not_OK\" "), "{e}");
}

#[test]
fn cluster_scoped_kinds_take_no_namespace() {
    let e = one("gnp.yaml", "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g, namespace: x}\n");
    assert_eq!(e, "gnp.yaml doc 1: metadata.namespace: GlobalNetworkPolicy is cluster-scoped and takes no namespace");
}

#[test]
fn staged_delete_takes_no_spec() {
    let e = one(
        "s.yaml",
        "apiVersion: porin.io/v1\nkind: StagedNetworkPolicy\nmetadata: {name: s, namespace: shop}\nspec: {stagedAction: Delete, selector: all()}\n",
    );
    assert_eq!(e, "s.yaml doc 1: spec: stagedAction Delete takes no spec fields other than tier");
}

fn wep(name: &str, pod: &str, ifname: &str, nets: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: shop}}\n\
         spec: {{node: n0, pod: {pod}, interfaceName: {ifname}, ipNetworks: {nets}, orchestrator: k8s, \
         containerID: abc, endpoint: eth0, workload: '', profiles: [kns.shop], mac: 'aa:bb:cc:dd:ee:ff', \
         ports: [{{name: http, protocol: TCP, port: 80}}], serviceAccountName: default}}\n"
    )
}

fn pod(name: &str, ip: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\nstatus: {{podIP: {ip}}}\n")
}

#[test]
fn workload_endpoints_load_in_both_groups_and_bad_fields_are_named() {
    assert!(errors("w.yaml", &wep("a", "a", "porin-v1", "['10.0.0.1/32', 'fd00::1/128']")).is_empty());
    let porin = wep("a", "a", "porin-v1", "['10.0.0.1/32']").replace("projectcalico.org/v3", "porin.io/v1");
    assert!(errors("w.yaml", &porin).is_empty());
    assert_eq!(
        one("w.yaml", &wep("a", "a", "porin-v1", "['10.0.0.0/24']")),
        "w.yaml doc 1: spec.ipNetworks[0]: \"10.0.0.0/24\" is not a single address: only /32 and /128 are supported"
    );
    assert_eq!(
        one("w.yaml", &wep("a", "a", "porin-v1", "['10.0.0.1/32', '10.0.0.2/32']")),
        "w.yaml doc 1: spec.ipNetworks[1]: a second address of one family (10.0.0.1 and 10.0.0.2); at most one IPv4 and one IPv6"
    );
    assert!(one("w.yaml", &wep("a", "a", "/var/run/netns/x", "['10.0.0.1/32']")).starts_with("w.yaml doc 1: spec.interfaceName: "));
    assert!(one("w.yaml", &wep("a", "a", "porin-v1", "[]")).starts_with("w.yaml doc 1: spec.ipNetworks: missing"));
    // There is no field to name a network namespace: the agent's own is the only one.
    let netns = wep("a", "a", "porin-v1", "['10.0.0.1/32']").replace("node: n0,", "node: n0, netns: /proc/1/ns/net,");
    assert!(one("w.yaml", &netns).contains("unknown field `netns`"), "{}", one("w.yaml", &netns));
    let nat = wep("a", "a", "porin-v1", "['10.0.0.1/32']").replace("node: n0,", "node: n0, ipNATs: [{internalIP: 10.0.0.1, externalIP: 1.2.3.4}],");
    assert_eq!(one("w.yaml", &nat), "w.yaml doc 1: spec.ipNATs: is not supported by Porin yet");
}

#[test]
fn duplicate_addresses_and_interfaces_are_reported_naming_both_objects() {
    // A pod and its own endpoint share the address: fine.
    let ok = format!("{}---\n{}", pod("a", "10.0.0.1"), wep("a", "a", "porin-v1", "['10.0.0.1/32']"));
    assert!(errors("s.yaml", &ok).is_empty(), "{:?}", errors("s.yaml", &ok));
    // Another pod claiming it: refused, naming both.
    let dup = format!("{}---\n{}", pod("a", "10.0.0.1"), pod("b", "10.0.0.1"));
    assert_eq!(
        one("s.yaml", &dup),
        "s.yaml doc 2: status.podIP: address 10.0.0.1 is already held by Pod shop/a (workload shop/a); Pod shop/b may not claim it"
    );
    let dup_wep = format!("{}---\n{}", pod("a", "10.0.0.1"), wep("b", "b", "porin-v2", "['10.0.0.1/32']"));
    assert!(one("s.yaml", &dup_wep).contains("WorkloadEndpoint shop/b may not claim it"));
    let same_if = format!("{}---\n{}", wep("a", "a", "porin-v1", "['10.0.0.1/32']"), wep("b", "b", "porin-v1", "['10.0.0.2/32']"));
    assert_eq!(
        one("s.yaml", &same_if),
        "s.yaml doc 2: spec.interfaceName: interface \"porin-v1\" on node \"n0\" is already bound by WorkloadEndpoint shop/a (workload shop/a)"
    );
    let two = format!("{}---\n{}", wep("a", "a", "porin-v1", "['10.0.0.1/32']"), wep("a2", "a", "porin-v2", "['10.0.0.1/32']"));
    assert!(one("s.yaml", &two).contains("already has a WorkloadEndpoint"));
}
