//! Guards offline: `porin validate` and `porin test` check every ReachabilityGuard among their inputs against
//! the model the other inputs build (golden outputs; a change that opens pci fails both, naming the file,
//! document, guard, witness and rule). Regenerate goldens with `PORIN_BLESS=1`.

use std::path::PathBuf;
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

const OPEN_PCI: &str = "\
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: open-pci}
spec:
  tier: platform
  order: 5
  selector: pci == \"true\" || app == \"frontend\"
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      source: {selector: app == \"frontend\"}
  egress:
    - action: Allow
      destination: {selector: pci == \"true\"}
";

#[test]
fn the_shop_keeps_its_guards() {
    let (code, out, err) = porin(&["validate", "-f", "examples/shop", "-f", "examples/shop-guards"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let (code, out, err) = porin(&["test", "-f", "examples/shop", "-f", "examples/shop-guards"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    golden("test-guards-ok.txt", &out);
}

#[test]
fn a_change_that_opens_pci_fails_validate_and_test() {
    let tmp = tempfile::tempdir().unwrap();
    let open = tmp.path().join("open.yaml");
    std::fs::write(&open, OPEN_PCI).unwrap();
    let open = open.to_str().unwrap();

    let (code, out, err) = porin(&["validate", "-f", "examples/shop", "-f", "examples/shop-guards", "-f", open]);
    assert_eq!(code, 1, "{out}{err}");
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with("examples/shop-guards/guards.yaml doc 1") && first.contains("spec.expect"),
        "the error names the guard's file, document and field: {err}"
    );
    for needle in ["pci-only-checkout", "shop/frontend -> shop/payment", "platform|open-pci|0|allow", "1 guard(s) violated"] {
        assert!(err.contains(needle), "{needle:?} missing: {err}");
    }

    let (code, out, err) = porin(&["test", "-f", "examples/shop", "-f", "examples/shop-guards", "-f", open]);
    assert_eq!(code, 1, "{out}{err}");
    golden("test-guards-violated.txt", &out.replace(open, "open.yaml"));

    let junit = tmp.path().join("junit.xml");
    let (code, out, err) =
        porin(&["test", "-f", "examples/shop", "-f", "examples/shop-guards", "-f", open, "-o", "json", "--junit", junit.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["passed"].as_u64(), v["failed"].as_u64()), (Some(1), Some(1)), "{v:#}");
    let g = &v["guards"][0];
    assert_eq!((g["name"].as_str(), g["passed"].as_bool()), (Some("pci-only-checkout"), Some(false)), "{v:#}");
    assert_eq!((g["violation"]["from"].as_str(), g["violation"]["to"].as_str()), (Some("shop/frontend"), Some("shop/payment")));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuites name=\"porin test\" tests=\"2\" failures=\"1\"")
            && xml.contains("<testsuite name=\"ReachabilityGuards\" tests=\"2\" failures=\"1\"")
            && xml.contains("type=\"GuardViolated\""),
        "{xml}"
    );
}
