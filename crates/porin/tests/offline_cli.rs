//! Golden-file tests for the offline commands (`validate`, `trace`, `matrix`, `diff`): the exact text a
//! person reads and the exact JSON a program reads. Regenerate with `PORIN_BLESS=1 cargo test -p porin`.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Run `porin ARGS` from the repository root; returns (exit code, stdout, stderr).
fn porin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_porin")).args(args).current_dir(root()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
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

#[test]
fn validate_accepts_the_shop_example() {
    let (code, out, err) = porin(&["validate", "-f", "examples/shop"]);
    assert_eq!((code, err.as_str()), (0, ""));
    golden("validate-ok.txt", &out);
}

#[test]
fn validate_reports_every_error_with_document_and_field_path() {
    let (code, out, err) = porin(&["validate", "-f", "tests/fixtures/cli/bad.yaml"]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    golden("validate-bad.txt", &err);
}

#[test]
fn trace_explains_a_platform_tier_deny() {
    let (code, out, _) =
        porin(&["trace", "-f", "examples/shop", "--from", "shop/frontend", "--to", "shop/payment", "--port", "9000"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("VERDICT  DENIED\n"));
    golden("trace-frontend-payment.txt", &out);
}

#[test]
fn trace_json_carries_enforced_and_pending_traces() {
    let (code, out, _) = porin(&[
        "trace", "-f", "examples/shop", "-f", "tests/fixtures/cli/staged.yaml", "--from", "shop/checkout", "--to",
        "shop/payment", "--port", "9000", "-o", "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allowed"], true);
    assert_eq!(v["enforced_trace"], serde_json::json!(["default|shop/knp.checkout|0|allow", "platform|pci-isolation|0|pass", "default|shop/knp.payment|0|allow"]));
    golden("trace-checkout-payment.json", &out);
}

#[test]
fn trace_shows_what_a_staged_policy_would_change() {
    let (code, out, _) = porin(&[
        "trace", "-f", "examples/shop", "tests/fixtures/cli/staged.yaml", "--from", "10.10.1.10", "--to",
        "shop/frontend", "--port", "8080",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("VERDICT  ALLOWED\n"), "{out}");
    assert!(out.contains("PENDING (staged policies applied): DENIED"), "{out}");
    assert!(out.contains("platform|staged:block-loadgen|0|deny"), "{out}");
    golden("trace-staged.txt", &out);
}

#[test]
fn trace_from_an_external_ip_checks_only_ingress() {
    let (code, out, _) =
        porin(&["trace", "-f", "examples/shop", "--from", "192.0.2.7", "--to", "shop/frontend", "--port", "8080"]);
    assert_eq!(code, 0);
    assert!(out.contains("EGRESS: not checked (192.0.2.7 is not a pod)"), "{out}");
    assert!(out.starts_with("VERDICT  DENIED\n"), "{out}");
}

#[test]
fn trace_rejects_unknown_pods_and_missing_ports() {
    let (code, _, err) = porin(&["trace", "-f", "examples/shop", "--from", "shop/nope", "--to", "shop/db", "--port", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("--from \"shop/nope\": no such pod"), "{err}");
    let (code, _, err) = porin(&["trace", "-f", "examples/shop", "--from", "shop/cart", "--to", "shop/db"]);
    assert_eq!(code, 1);
    assert!(err.contains("--port is required for TCP"), "{err}");
}

#[test]
fn matrix_table_for_one_port() {
    let (code, out, _) = porin(&["matrix", "-f", "examples/shop", "--port", "9000"]);
    assert_eq!(code, 0);
    golden("matrix-shop-9000.txt", &out);
}

#[test]
fn matrix_json_has_the_documented_shape() {
    let (code, out, _) = porin(&[
        "matrix", "-f", "tests/fixtures/netpol-e2e/cluster.yaml", "tests/fixtures/netpol-e2e/allow-from-namespace-y.yaml",
        "--port", "80", "--protocol", "TCP", "-o", "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m = &v["matrices"][0];
    assert_eq!(m["port"], 80);
    assert_eq!(m["protocol"], "TCP");
    assert_eq!(m["pods"].as_array().unwrap().len(), 9);
    let allowed = m["allowed"].as_array().unwrap();
    // 72 ordered pairs, of which the 6 into x/a from outside namespace y are denied.
    assert_eq!(allowed.len(), 72 - 5);
    assert!(allowed.contains(&serde_json::json!(["y/b", "x/a"])));
    assert!(!allowed.contains(&serde_json::json!(["x/b", "x/a"])));
    golden("matrix-e2e-80.json", &out);
}

#[test]
fn matrix_defaults_to_every_declared_port() {
    let (code, out, _) = porin(&["matrix", "-f", "examples/shop", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ports: Vec<u64> = v["matrices"].as_array().unwrap().iter().map(|m| m["port"].as_u64().unwrap()).collect();
    assert_eq!(ports, vec![5432, 8080, 9000, 9090]);
}

#[test]
fn diff_lists_what_a_change_opens_and_closes() {
    let (code, out, _) = porin(&["diff", "-f", "examples/shop", "--against", "tests/fixtures/cli/new-shop"]);
    assert_eq!(code, 0);
    golden("diff-shop.txt", &out);
    let (code, out, _) = porin(&["diff", "-f", "examples/shop", "--against", "examples/shop"]);
    assert_eq!((code, out.as_str()), (0, "no change in reachability\n"));
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    // Like `porin matrix ... | head -1`: the reader goes away after one line, long before the output (far
    // more than a pipe buffer: 300 pods) is written.
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::new();
    for i in 0..300 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: pod-{i}, namespace: ns, labels: {{app: a{i}}}}}\n\
             spec: {{containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}\nstatus: {{podIP: 10.9.{}.{}}}\n",
            i / 200,
            i % 200 + 1
        ));
    }
    let file = dir.path().join("pods.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_porin"))
        .args(["matrix", "-f"])
        .arg(&file)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(first.starts_with("TCP/"), "{first}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success() || out.status.signal() == Some(13), "{:?}", out.status);
}

#[test]
fn api_resources_lists_every_kind_as_get_accepts_it() {
    let (code, out, err) = porin(&["api-resources"]);
    assert_eq!(code, 0, "{err}");
    golden("api-resources.txt", &out);
    let (_, names, _) = porin(&["api-resources", "-o", "name"]);
    assert_eq!(names.lines().count() + 1, out.lines().count());
    let (_, cluster, _) = porin(&["api-resources", "--namespaced=false", "--no-headers"]);
    assert!(cluster.lines().all(|l| l.contains(" false ")), "{cluster}");
    assert!(cluster.contains("globalnetworkpolicies") && !cluster.contains("pods"), "{cluster}");
    let (_, k8s, _) = porin(&["api-resources", "--api-group", "networking.k8s.io", "-o", "name"]);
    assert_eq!(k8s, "networkpolicies.networking.k8s.io\n");
    // Every name printed is one `porin get` understands (the server is not needed to reject an unknown kind).
    for n in names.lines() {
        let (_, _, err) = porin(&["get", n, "--server", "/nonexistent/porin.sock"]);
        assert!(!err.contains("doesn't have a resource type"), "{n}: {err}");
    }
}
