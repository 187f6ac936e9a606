//! The loader: null where Kubernetes accepts null, YAML flow mappings, every error of a document at once in
//! user terms, no follow-on errors from a failed Tier, and inputs that must not hang or exhaust memory.

use std::collections::BTreeSet;

use porin_model::k8s::K8sNetworkPolicySpec;
use porin_model::load::MAX_INPUT_BYTES;
use porin_model::{ManifestError, Resource, load_paths, load_paths_partial, parse_documents, validate_set};

fn render(e: &[ManifestError]) -> Vec<String> {
    e.iter().map(|e| e.to_string()).collect()
}

/// Parse (partial) and validate what parsed, as `porin validate` does; every error rendered.
fn all_errors(file: &str, text: &str) -> Vec<String> {
    let (docs, mut errors) = porin_model::parse_documents_partial(file, text);
    if let Err(e) = validate_set(&docs, &BTreeSet::new()) {
        errors.extend(e);
    }
    render(&errors)
}

fn k8s_spec(text: &str) -> K8sNetworkPolicySpec {
    let docs = parse_documents("n.yaml", text).unwrap_or_else(|e| panic!("{:#?}", render(&e)));
    validate_set(&docs, &BTreeSet::new()).unwrap_or_else(|e| panic!("{:#?}", render(&e)));
    match &docs[0].resource {
        Resource::K8sNetworkPolicy(p) => p.spec.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn null_is_accepted_where_kubernetes_accepts_it() {
    // The "deny traffic from other namespaces" recipe as it is usually written: `matchLabels:` with no value.
    let spec = k8s_spec(
        "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata:\n  namespace: default\n  name: deny-from-other-namespaces\n  labels:\n  annotations:\nspec:\n  podSelector:\n    matchLabels:\n  ingress:\n  - from:\n    - podSelector: {}\n",
    );
    assert!(spec.pod_selector.match_labels.is_empty());
    assert_eq!(spec.ingress.as_ref().map(Vec::len), Some(1));
    // matchExpressions, ipBlock.except, ports, from, ingress and egress as null: each means "not set".
    let spec = k8s_spec(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: default}\nspec:\n  podSelector: {matchLabels: null, matchExpressions: null}\n  policyTypes: [Ingress, Egress]\n  ingress:\n  - from: null\n    ports: null\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/8, except: null}\n",
    );
    let ingress = spec.ingress.unwrap();
    assert!(ingress[0].from.is_none() && ingress[0].ports.is_none(), "null from/ports = every peer, every port");
    assert!(spec.egress.unwrap()[0].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap().except.is_empty());
    let spec = k8s_spec(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: default}\nspec:\n  podSelector: {}\n  ingress:\n  egress: null\n",
    );
    assert_eq!((spec.ingress, spec.egress), (None, None));
    // `values: null` on an Exists requirement, as `kubectl get -o yaml` can print it.
    let spec = k8s_spec(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: default}\nspec:\n  podSelector:\n    matchExpressions: [{key: app, operator: Exists, values: null}]\n",
    );
    assert_eq!(spec.pod_selector.to_selector().unwrap().to_string(), "has(app)");
    // A label *value* of null is not "not set": Kubernetes cannot read it either, and dropping it would widen a
    // selector. It is an error naming the key.
    let e = all_errors(
        "n.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: default}\nspec:\n  podSelector: {matchLabels: {app: null}}\n",
    );
    assert_eq!(e, ["n.yaml doc 1: spec.podSelector.matchLabels.app: invalid type: null, expected a string"]);
    // A null list item is not an empty rule (which would allow everything): an error.
    let e = all_errors(
        "n.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: default}\nspec:\n  podSelector: {}\n  ingress: [null]\n",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("n.yaml doc 1: spec.ingress[0]: invalid type: null, expected an ingress rule"), "{e:#?}");
}

#[test]
fn a_yaml_flow_mapping_is_yaml_not_broken_json() {
    let docs = parse_documents("ns.yaml", "{kind: Namespace, apiVersion: v1, metadata: {name: shop, labels: {team: a}}}\n")
        .unwrap_or_else(|e| panic!("{:#?}", render(&e)));
    assert_eq!(docs[0].resource.name(), "shop");
    // A stream of flow mappings.
    let docs = parse_documents("ns.yaml", "{kind: Namespace, apiVersion: v1, metadata: {name: a}}\n---\n{kind: Namespace, apiVersion: v1, metadata: {name: b}}\n").unwrap();
    assert_eq!(docs.len(), 2);
    // Real JSON still loads as JSON (a stream of objects, a top-level list).
    let docs = parse_documents("a.json", r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"a"}}
{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"b"}}"#)
    .unwrap_or_else(|e| panic!("{:#?}", render(&e)));
    assert_eq!(docs.len(), 2);
    // Broken JSON in a .json file gets the JSON error.
    let e = parse_documents("a.json", r#"{"kind": "Namespace", "apiVersion": }"#).unwrap_err();
    assert!(e[0].message.starts_with("invalid JSON"), "{e:#?}");
}

#[test]
fn every_error_of_a_document_is_reported_in_user_terms() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: default}\nspec:\n  podSelector:\n    matchExpressions: [{key: app, operator: Inn, values: [a]}]\n  policyTypes: [Ingres, Egress, Egres]\n  ingress:\n  - ports: [{port: 70000}]\n";
    let e = all_errors("m.yaml", text);
    assert_eq!(
        e,
        [
            "m.yaml doc 1: spec.ingress[0].ports[0].port: 70000 is not a port (1-65535)",
            "m.yaml doc 1: spec.podSelector.matchExpressions[0].operator: \"Inn\" is not a valid operator (expected In, NotIn, Exists or DoesNotExist)",
            "m.yaml doc 1: spec.policyTypes[0]: unknown value `Ingres`, expected one of Ingress, Egress",
            "m.yaml doc 1: spec.policyTypes[2]: unknown value `Egres`, expected one of Ingress, Egress",
        ]
        .map(str::to_string)
        .to_vec(),
    );
    // The same errors come from the strict entry point (the API's), not only from `porin validate`.
    assert_eq!(parse_documents("m.yaml", text).unwrap_err().len(), 4);
}

#[test]
fn messages_name_no_rust_types_and_enums_list_their_values() {
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\nspec:\n  podSelector: 5\n",
            "n.yaml doc 1: spec.podSelector: invalid type: integer `5`, expected a label selector (an object with matchLabels/matchExpressions)",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\nspec:\n  ingress: [{ports: [{protocol: tcp}]}]\n",
            "n.yaml doc 1: spec.ingress[0].ports[0].protocol: unknown value `tcp`, expected one of TCP, UDP, SCTP",
        ),
        (
            "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: n}\nspec:\n  types: [ingress]\n",
            "n.yaml doc 1: spec.types[0]: unknown value `ingress`, expected one of Ingress, Egress",
        ),
        (
            "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: n}\nspec:\n  ingress: [{action: Allow, protocol: [TCP]}]\n",
            "n.yaml doc 1: spec.ingress[0].protocol: expected a protocol: a name (TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite) or a number 1-255",
        ),
        (
            "apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: t}\nspec: {order: high, defaultAction: Allow}\n",
            "n.yaml doc 1: spec.defaultAction: unknown value `Allow`, expected one of Deny, Pass",
        ),
        (
            "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: n}\nspec:\n  ingress: [{action: Allow, protocol: TPC, notProtocol: 300}]\n",
            "n.yaml doc 1: spec.ingress[0].protocol: \"TPC\" is not a protocol (TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or 1-255)",
        ),
        (
            "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: n}\nspec:\n  ingress: [{action: Allow, protocol: TPC, notProtocol: 300}]\n",
            "n.yaml doc 1: spec.ingress[0].notProtocol: 300 is not a protocol (TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or 1-255)",
        ),
        (
            "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: n}\nspec:\n  ingress: [{action: Allow, ipVersion: 300}]\n",
            "n.yaml doc 1: spec.ingress[0].ipVersion: invalid value: integer `300`, expected 4 or 6",
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: shop\n",
            "n.yaml doc 1: metadata: invalid type: string \"shop\", expected object metadata (an object with name, namespace, labels, annotations)",
        ),
    ];
    for (text, want) in cases {
        let e = all_errors("n.yaml", text);
        assert!(e.iter().any(|x| x == want), "want {want:?} in {e:#?}");
        for x in &e {
            for rust in ["struct ", "enum ", "variant", "u8", "u16", "i64", "f64", "sequence", "a map", "Name(", "Number("] {
                assert!(!x.contains(rust), "{x:?} mentions {rust:?}");
            }
        }
    }
}

#[test]
fn a_failed_tier_does_not_add_tier_does_not_exist_to_its_policies() {
    let text = "apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: platform}\nspec: {order: first}\n---\napiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\nspec: {tier: platform, selector: all()}\n---\napiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: b}\nspec: {tier: nosuch, selector: all()}\n";
    let e = all_errors("t.yaml", text);
    assert_eq!(
        e,
        [
            "t.yaml doc 1: spec.order: invalid type: string \"first\", expected a number",
            "t.yaml doc 3: spec.tier: tier \"nosuch\" does not exist (define it with a Tier object)",
        ]
    );
    // The stand-in never makes the set valid.
    assert!(parse_documents("t.yaml", text).is_err());
    // A Tier that fails because it is given a namespace: the same.
    let text = "apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: platform, namespace: x}\n---\napiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\nspec: {tier: platform}\n";
    assert_eq!(all_errors("t.yaml", text), ["t.yaml doc 1: metadata.namespace: Tier is cluster-scoped and takes no namespace"]);
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("porin-load").tempdir().unwrap()
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";

#[test]
fn a_fifo_is_refused_not_waited_on() {
    let d = tmp();
    let fifo = d.path().join("pipe.yaml");
    let st = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    std::fs::write(d.path().join("ok.yaml"), NS).unwrap();
    // Named directly and found in a directory: both refused, quickly, naming the path. (No writer ever
    // opens the FIFO: a blocking read would hang this test.)
    let e = load_paths(std::slice::from_ref(&fifo)).unwrap_err();
    assert_eq!(render(&e), [format!("{}: is a FIFO (named pipe); only regular files are read (use - for stdin)", fifo.display())]);
    let (docs, e) = load_paths_partial(&[d.path()]);
    assert_eq!(docs.len(), 1, "the regular file still loads");
    assert_eq!(e.len(), 1);
    assert!(e[0].input.ends_with("pipe.yaml") && e[0].message.contains("FIFO"), "{e:#?}");
}

#[test]
fn a_device_behind_a_manifest_name_is_refused() {
    let d = tmp();
    let z = d.path().join("z.yaml");
    std::os::unix::fs::symlink("/dev/zero", &z).unwrap();
    let e = load_paths(&[d.path()]).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].input, z.display().to_string());
    assert!(e[0].message.starts_with("is a character device"), "{e:#?}");
}

#[test]
fn a_symlink_loop_is_reported_and_its_files_read_once() {
    let d = tmp();
    let sub = d.path().join("a");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("ns.yaml"), NS).unwrap();
    std::os::unix::fs::symlink("..", sub.join("up")).unwrap();
    std::os::unix::fs::symlink(".", sub.join("self")).unwrap();
    let (docs, e) = load_paths_partial(&[d.path()]);
    assert_eq!(docs.len(), 1, "read once, not once per loop");
    let e = render(&e);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e.iter().all(|x| x.contains("directory loop")), "{e:#?}");
    assert!(e.iter().any(|x| x.contains("a/self")) && e.iter().any(|x| x.contains("a/up")), "{e:#?}");
    // Two links to one directory (no loop): read once, no error.
    let d2 = tmp();
    let real = d2.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("ns.yaml"), NS).unwrap();
    std::os::unix::fs::symlink(&real, d2.path().join("link")).unwrap();
    let docs = load_paths(&[d2.path()]).unwrap_or_else(|e| panic!("{:#?}", render(&e)));
    assert_eq!(docs.len(), 1);
}

#[test]
fn an_input_over_the_byte_budget_is_refused() {
    let d = tmp();
    let big = d.path().join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_INPUT_BYTES + 1).unwrap(); // sparse: no disk used
    let e = load_paths(&[big.as_path()]).unwrap_err();
    assert_eq!(render(&e), [format!("{}: is larger than 64 MiB; refusing to read it", big.display())]);
    // Exactly the budget is allowed (it is not valid text here, which is a different error).
    let ok = d.path().join("edge.yaml");
    std::fs::File::create(&ok).unwrap().set_len(MAX_INPUT_BYTES).unwrap();
    let e = load_paths(&[ok.as_path()]).unwrap_err();
    assert!(!e[0].message.contains("larger"), "{e:#?}");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [1_000, 100_000] {
        let yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\nspec: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let (_, e) = porin_model::parse_documents_partial("deep.yaml", &yaml);
        assert!(!e.is_empty(), "depth {depth}");
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let (_, e) = porin_model::parse_documents_partial("deep.json", &json);
        assert!(!e.is_empty(), "depth {depth}");
        let block = (0..depth.min(5_000)).map(|i| format!("{}- ", "  ".repeat(i))).collect::<Vec<_>>().join("\n");
        let (_, e) = porin_model::parse_documents_partial("deep.yaml", &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\nspec:\n{block}x\n"));
        assert!(!e.is_empty(), "block depth {depth}");
    }
}
