//! `porin test` end to end with the built binary: the shop's assertions pass (golden table and JSON), a flipped
//! expectation fails with exit 1 and the trace of the actual verdict, JUnit output parses and its counts add
//! up, input errors exit 2 with file, document and field path, CIDRs and network sets are checked for every
//! address, and — differentially — ConnectivityTests generated from `porin matrix` on the upstream e2e
//! scenarios pass, and fail when one expectation is flipped. Regenerate goldens with `PORIN_BLESS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn porin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_porin")).args(args).current_dir(root()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn golden(name: &str, actual: &str) {
    let path = root().join("crates/porin/tests/golden").join(name);
    if std::env::var_os("PORIN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(actual, want, "output differs from {} (PORIN_BLESS=1 regenerates)", path.display());
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn the_shop_assertions_pass_table_and_json() {
    let (code, out, err) = porin(&["test", "-f", "examples/shop", "-f", "examples/shop-tests"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.ends_with("12 passed, 0 failed\n"), "{out}");
    golden("test-shop.txt", &out);
    let (code, out, _) = porin(&["test", "-f", "examples/shop-tests", "examples/shop", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["passed"].as_u64(), v["failed"].as_u64()), (Some(12), Some(0)));
    // The selector case stands for every matching pod: the 5 shop pods other than checkout, minus payment itself.
    let only = v["cases"].as_array().unwrap().iter().find(|c| c["case"] == "only checkout reaches payment").unwrap();
    assert_eq!(only["pairs"], 4);
    golden("test-shop.json", &out);
}

const FLIPPED: &str = "\
apiVersion: porin.io/v1
kind: ConnectivityTest
metadata: {name: flipped}
spec:
  cases:
    - {name: frontend calls cart, from: shop/frontend, to: shop/cart, port: 9000, expect: Allow}
    - {name: frontend reaches payment, from: shop/frontend, to: shop/payment, port: 9000, expect: Allow}
";

#[test]
fn a_flipped_expectation_fails_with_the_trace_of_the_actual_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "flipped.yaml", FLIPPED);
    let (code, out, _) = porin(&["test", "-f", "examples/shop", "-f", &t]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--- FAIL flipped frontend reaches payment: expected Allow, got Deny"), "{out}");
    // The trace names the tier, policy, rule and action that decided, at both ends.
    assert!(out.contains("INGRESS at shop/payment: DENIED"), "{out}");
    assert!(out.contains("hit:    platform|pci-isolation|1|deny"), "{out}");
    assert!(out.contains("EGRESS at shop/frontend: DENIED"), "{out}");
    assert!(out.contains("hit:    default|shop/knp.frontend|-1|deny"), "{out}");
    assert!(out.ends_with("1 passed, 1 failed\n"), "{out}");
    golden("test-flipped.txt", &out.replace(&t, "flipped.yaml"));
    let (code, out, _) = porin(&["test", "-f", "examples/shop", "-f", &t, "-o", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let f = &v["cases"][1]["failures"][0];
    assert_eq!(
        (f["actual"].as_str(), f["trace"]["enforced_trace"][1].as_str()),
        (Some("Deny"), Some("platform|pci-isolation|1|deny"))
    );
}

#[test]
fn expect_pending_checks_the_staged_verdict() {
    let (code, out, _) = porin(&[
        "test",
        "-f",
        "examples/shop",
        "tests/fixtures/cli/staged.yaml",
        "tests/fixtures/cli/staged-test.yaml",
    ]);
    assert_eq!(code, 0, "{out}");
    // Without the staged policy, the pending verdict equals the enforced one and the case fails.
    let (code, out, _) = porin(&["test", "-f", "examples/shop", "tests/fixtures/cli/staged-test.yaml"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("expected Allow, pending Deny, got Allow, pending Allow"), "{out}");
}

// ---- JUnit ----

/// A minimal XML reader, enough to check what CI systems need: well-formed nesting, quoted attributes, only
/// the predefined entities, no raw `<` or `&` in text. Returns the elements as (name, attributes, text).
#[derive(Debug)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn attr(&self, k: &str) -> &str {
        self.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("<{}> has no {k}", self.name))
    }
    fn all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        for c in &self.children {
            if c.name == name {
                out.push(c);
            }
            c.all(name, out);
        }
    }
    fn count(&self, name: &str) -> usize {
        let mut v = Vec::new();
        self.all(name, &mut v);
        v.len()
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';').expect("unterminated entity") + i;
        out.push_str(match &rest[i + 1..end] {
            "amp" => "&",
            "lt" => "<",
            "gt" => ">",
            "quot" => "\"",
            "apos" => "'",
            e => panic!("unknown entity &{e};"),
        });
        rest = &rest[end + 1..];
    }
    assert!(!rest.contains('<'), "raw < in text");
    out.push_str(rest);
    out
}

fn parse_xml(s: &str) -> Element {
    let s = s.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>").expect("XML declaration");
    let mut stack: Vec<Element> =
        vec![Element { name: String::new(), attrs: vec![], children: vec![], text: String::new() }];
    let mut rest = s;
    while !rest.is_empty() {
        let lt = rest.find('<').unwrap_or(rest.len());
        let text = unescape(&rest[..lt]);
        stack.last_mut().unwrap().text.push_str(&text);
        rest = &rest[lt..];
        if rest.is_empty() {
            break;
        }
        let gt = rest.find('>').expect("unterminated tag");
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let e = stack.pop().unwrap();
            assert_eq!(e.name, name, "mismatched closing tag");
            stack.last_mut().unwrap().children.push(e);
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut a) = tag.split_once(' ').unwrap_or((tag, ""));
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()), "bad tag name {name:?}");
        let mut attrs = Vec::new();
        loop {
            a = a.trim_start();
            if a.is_empty() {
                break;
            }
            let (k, v) = a.split_once("=\"").expect("attribute without a quoted value");
            let end = v.find('"').expect("unterminated attribute");
            assert!(!attrs.iter().any(|(x, _): &(String, String)| x == k), "duplicate attribute {k}");
            attrs.push((k.to_string(), unescape(&v[..end])));
            a = &v[end + 1..];
        }
        let e = Element { name: name.to_string(), attrs, children: vec![], text: String::new() };
        if self_closing {
            stack.last_mut().unwrap().children.push(e);
        } else {
            stack.push(e);
        }
    }
    assert_eq!(stack.len(), 1, "unclosed elements");
    let mut doc = stack.pop().unwrap();
    assert!(doc.text.trim().is_empty(), "text outside the root element");
    assert_eq!(doc.children.len(), 1, "exactly one root element");
    doc.children.pop().unwrap()
}

#[test]
fn junit_output_is_well_formed_and_its_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    // A name with markup characters: it must come back unchanged through escaping.
    let tricky = FLIPPED.replace("name: frontend calls cart,", "name: \"a <b> & 'c' \\\"d\\\"\",");
    let t = write(dir.path(), "flipped.yaml", &tricky);
    let xml_path = dir.path().join("report.xml");
    let (code, _, _) = porin(&[
        "test",
        "-f",
        "examples/shop",
        "-f",
        &t,
        "-f",
        "examples/shop-tests",
        "--junit",
        xml_path.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    let root = parse_xml(&std::fs::read_to_string(&xml_path).unwrap());
    assert_eq!(root.name, "testsuites");
    assert_eq!((root.attr("tests"), root.attr("failures")), ("14", "1"));
    assert_eq!(root.count("testcase"), 14);
    assert_eq!(root.count("failure"), 1);
    let mut suites = Vec::new();
    root.all("testsuite", &mut suites);
    assert_eq!(suites.iter().map(|s| s.attr("name")).collect::<Vec<_>>(), ["flipped", "shop", "monitoring"]);
    for s in &suites {
        assert_eq!(s.attr("tests").parse::<usize>().unwrap(), s.count("testcase"), "suite {}", s.attr("name"));
        assert_eq!(s.attr("failures").parse::<usize>().unwrap(), s.count("failure"), "suite {}", s.attr("name"));
    }
    let mut cases = Vec::new();
    root.all("testcase", &mut cases);
    assert!(cases[0].attr("name").starts_with("a <b> & 'c' \"d\": shop/frontend -> shop/cart"), "{:?}", cases[0].attrs);
    let mut failures = Vec::new();
    root.all("failure", &mut failures);
    assert_eq!(failures[0].attr("message"), "expected Allow, got Deny");
    assert!(failures[0].text.contains("platform|pci-isolation|1|deny"), "{}", failures[0].text);
}

#[test]
fn the_xml_checker_rejects_broken_documents() {
    for bad in [
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a><b></a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a x=\"1 & 2\"></a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>x < y</a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a></a><a></a>",
    ] {
        assert!(std::panic::catch_unwind(|| parse_xml(bad)).is_err(), "accepted {bad}");
    }
}

// ---- input errors ----

#[test]
fn input_errors_exit_2_with_file_document_and_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: porin.io/v1
kind: ConnectivityTest
metadata: {name: ok-syntax}
spec:
  cases:
    - {from: shop/nope, to: shop/cart, port: 9000, expect: Allow}
    - {from: {namespace: shop, selector: app == \"ghost\"}, to: shop/cart, port: 9000, expect: Deny}
    - {from: {networkSet: ops/none}, to: shop/cart, port: 9000, expect: Deny}
    - {from: shop/cart, to: shop/cart, port: 9000, expect: Deny}
---
apiVersion: porin.io/v1
kind: ConnectivityTest
metadata: {name: bad-syntax}
spec:
  cases:
    - {from: cart, to: shop/cart, port: 70000, expect: Allow}
    - {from: shop/cart, to: shop/db, protocol: GRE, expect: Allow}
    - {from: shop/cart, to: shop/db, expect: Allow}
",
    );
    let (code, out, err) = porin(&["test", "-f", "examples/shop", "-f", &t]);
    let err = err.replace(&t, "bad.yaml");
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(out, "");
    // Syntax first (like `porin validate`): every problem of document 2.
    assert!(err.contains("bad.yaml doc 2: spec.cases[0].from: \"cart\": expected NAMESPACE/POD"), "{err}");
    assert!(err.contains("bad.yaml doc 2: spec.cases[0].port: 70000 is not a port"), "{err}");
    assert!(err.contains("bad.yaml doc 2: spec.cases[1].protocol: \"GRE\""), "{err}");
    assert!(err.contains("bad.yaml doc 2: spec.cases[2].port: missing"), "{err}");
    // Document 1 is well-formed but names what the model does not have.
    let only1 = write(dir.path(), "bad1.yaml", std::fs::read_to_string(&t).unwrap().split("---").next().unwrap());
    let (code, out, err) = porin(&["test", "-f", "examples/shop", "-f", &only1]);
    let err = err.replace(&only1, "bad1.yaml");
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("bad1.yaml doc 1: spec.cases[0].from: no pod shop/nope in the model"), "{err}");
    assert!(
        err.contains(
            "bad1.yaml doc 1: spec.cases[1].from: selector \"app == \\\"ghost\\\"\" matches no pod in namespace shop"
        ),
        "{err}"
    );
    assert!(err.contains("bad1.yaml doc 1: spec.cases[2].from: no NetworkSet ops/none in the model"), "{err}");
    assert!(err.contains("bad1.yaml doc 1: spec.cases[3].to: every destination is the source itself"), "{err}");
    assert!(err.ends_with("4 input error(s); no case was evaluated\n"), "{err}");
    // Type errors name the field too.
    let typo = write(
        dir.path(),
        "typo.yaml",
        "apiVersion: porin.io/v1\nkind: ConnectivityTest\nmetadata: {name: t}\nspec:\n  cases:\n    - {from: {namespace: shop, selectr: all()}, to: shop/cart, port: 9000, expect: Allow}\n---\napiVersion: porin.io/v1\nkind: ConnectivityTest\nmetadata: {name: u}\nspec:\n  cases:\n    - {from: shop/cart, to: shop/db, port: 5432, expect: allow}\n",
    );
    let (code, _, err) = porin(&["test", "-f", "examples/shop", "-f", &typo]);
    let err = err.replace(&typo, "typo.yaml");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("typo.yaml doc 1: spec.cases[0].from: unknown field `selectr`"), "{err}");
    assert!(err.contains("typo.yaml doc 2: spec.cases[0].expect: unknown value `allow`, expected one of Allow, Deny"), "{err}");
    // No test at all is an input error too.
    let (code, _, err) = porin(&["test", "-f", "examples/shop"]);
    assert_eq!(code, 2);
    assert!(err.contains("no ConnectivityTest"), "{err}");
}

// ---- addresses: every address of a CIDR or network set ----

const NETS: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: app, labels: {app: web}}
spec: {containers: [{name: w, ports: [{containerPort: 80}]}]}
status: {podIP: 10.9.0.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: app}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: 10.1.0.0/16, except: [10.1.7.0/24]}}]
---
apiVersion: porin.io/v1
kind: GlobalNetworkSet
metadata: {name: partners}
spec: {nets: [10.1.2.0/24, 10.1.3.0/24]}
---
apiVersion: porin.io/v1
kind: NetworkSet
metadata: {name: mixed, namespace: app}
spec: {nets: [10.1.2.0/24, 10.2.0.0/16]}
";

fn one_case(dir: &Path, from: &str, expect: &str) -> i32 {
    let t = write(
        dir,
        "t.yaml",
        &format!(
            "apiVersion: porin.io/v1\nkind: ConnectivityTest\nmetadata: {{name: t}}\nspec:\n  cases:\n    - {{from: {from}, to: app/web, port: 80, expect: {expect}}}\n"
        ),
    );
    let m = write(dir, "m.yaml", NETS);
    porin(&["test", "-f", &m, &t]).0
}

#[test]
fn a_cidr_or_network_set_holds_only_if_it_holds_for_every_address() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    for (from, allow, deny) in [
        ("10.1.2.0/24", 0, 1),
        ("10.1.0.0/16", 1, 1), // 10.1.7.0/24 is excepted: neither expectation holds for all of it
        ("10.1.7.9", 1, 0),
        ("10.1.6.255", 0, 1),
        ("10.0.0.0/8", 1, 1),
        ("10.1.8.0/21", 0, 1),
        ("\"{globalNetworkSet: partners}\"", 2, 2), // a string, not a network-set reference: input error
        ("{globalNetworkSet: partners}", 0, 1),
        ("{networkSet: app/mixed}", 1, 1),
    ] {
        assert_eq!(one_case(d, from, "Allow"), allow, "{from} Allow");
        assert_eq!(one_case(d, from, "Deny"), deny, "{from} Deny");
    }
}

// ---- differential: generated from the matrix of the upstream e2e scenarios ----

fn e2e() -> PathBuf {
    root().join("tests/fixtures/netpol-e2e")
}

/// One ConnectivityTest asserting every cell of every matrix `porin matrix -o json` computed.
fn tests_from_matrix(name: &str, matrix: &serde_json::Value) -> (String, usize) {
    let mut cases = String::new();
    let mut n = 0;
    for m in matrix["matrices"].as_array().unwrap() {
        let pods: Vec<&str> = m["pods"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        let allowed: Vec<(String, String)> = m["allowed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
            .collect();
        for from in &pods {
            for to in &pods {
                if from == to {
                    continue;
                }
                let expect = if allowed.contains(&(from.to_string(), to.to_string())) { "Allow" } else { "Deny" };
                cases.push_str(&format!(
                    "    - {{from: {from}, to: {to}, port: {}, protocol: {}, expect: {expect}}}\n",
                    m["port"],
                    m["protocol"].as_str().unwrap()
                ));
                n += 1;
            }
        }
    }
    (
        format!(
            "apiVersion: porin.io/v1\nkind: ConnectivityTest\nmetadata: {{name: {name}}}\nspec:\n  cases:\n{cases}"
        ),
        n,
    )
}

#[test]
fn differential_tests_generated_from_the_e2e_matrices_pass_and_a_flip_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(e2e())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "cluster.yaml")
        .collect();
    names.sort();
    assert!(names.len() >= 30, "{names:?}");
    for (k, file) in names.iter().enumerate() {
        let cluster = e2e().join("cluster.yaml");
        let scenario = e2e().join(file);
        let (cl, sc) = (cluster.to_str().unwrap(), scenario.to_str().unwrap());
        let (code, out, err) = porin(&["matrix", "-f", cl, sc, "-o", "json"]);
        assert_eq!(code, 0, "{file}: {err}");
        let matrix: serde_json::Value = serde_json::from_str(&out).unwrap();
        let name = file.trim_end_matches(".yaml");
        let (text, n) = tests_from_matrix(name, &matrix);
        assert!(n > 0, "{file}");
        let t = write(dir.path(), "gen.yaml", &text);
        let (code, out, err) = porin(&["test", "-f", cl, sc, &t, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{file}: {err}"));
        assert_eq!((code, v["passed"].as_u64(), v["failed"].as_u64()), (0, Some(n as u64), Some(0)), "{file}: {err}");
        // Flip one expectation (a different case for each scenario): exactly that case fails.
        let lines: Vec<&str> = text.lines().collect();
        let case_lines: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].starts_with("    - ")).collect();
        let which = case_lines[(k * 37) % case_lines.len()];
        let mut flipped: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        flipped[which] = if flipped[which].contains("expect: Allow") {
            flipped[which].replace("expect: Allow", "expect: Deny")
        } else {
            flipped[which].replace("expect: Deny", "expect: Allow")
        };
        let t = write(dir.path(), "gen.yaml", &(flipped.join("\n") + "\n"));
        let (code, out, _) = porin(&["test", "-f", cl, sc, &t, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!((code, v["failed"].as_u64()), (1, Some(1)), "{file}: flipped {}", flipped[which]);
        let failed: Vec<&serde_json::Value> =
            v["cases"].as_array().unwrap().iter().filter(|c| c["passed"] == false).collect();
        assert_eq!(failed[0]["index"].as_u64(), Some((case_lines.iter().position(|l| *l == which).unwrap()) as u64));
        let want_actual = if flipped[which].contains("expect: Allow") { "Deny" } else { "Allow" };
        assert_eq!(failed[0]["failures"][0]["actual"].as_str(), Some(want_actual), "{file}");
        assert_eq!(failed[0]["failures"][0]["trace"]["allowed"].as_bool(), Some(want_actual == "Allow"), "{file}");
    }
}
