//! `porin test --lab`: connectivity assertions checked on real packets in a kernel lab (network namespaces,
//! real agents, eBPF). Needs root, like kernel_lab.rs; not root → fails, unless PORIN_SKIP_KERNEL_TESTS=1.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_porin")
}

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel).display().to_string()
}

fn kernel_ok() -> bool {
    if std::env::var("PORIN_SKIP_KERNEL_TESTS").as_deref() == Ok("1") {
        eprintln!("PORIN_SKIP_KERNEL_TESTS=1: skipping a kernel test");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "kernel lab tests need root (network namespaces, eBPF); run as root or set PORIN_SKIP_KERNEL_TESTS=1"
    );
    true
}

struct Lab {
    name: &'static str,
    state: tempfile::TempDir,
}

impl Lab {
    fn porin(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin())
            .args(args)
            .env("PORIN_LAB_STATE_DIR", self.state.path())
            .env_remove("PORIN_SERVER")
            .env_remove("PORIN_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.porin(&["lab", "--name", self.name, "down"]);
    }
}

const CASES: &str = "\
apiVersion: porin.io/v1
kind: ConnectivityTest
metadata: {name: shop-packets}
spec:
  cases:
    - {from: shop/frontend, to: shop/cart, port: 9000, expect: Allow}
    - {from: shop/frontend, to: shop/payment, port: 9000, expect: Deny}
    - {from: shop/checkout, to: shop/payment, port: 9000, expect: Allow}
    - {from: {namespace: shop, selector: app != \"checkout\"}, to: shop/payment, port: 9000, expect: Deny}
    - {from: ops/loadgen, to: shop/frontend, port: 8080, expect: Allow}
    - {from: ops/loadgen, to: shop/cart, port: 9000, expect: Deny}
    - {from: ops/monitoring, to: {namespace: shop, selector: all()}, port: 9090, expect: Allow}
";

#[test]
fn connectivity_tests_hold_on_real_packets() {
    if !kernel_ok() {
        return;
    }
    let state = tempfile::Builder::new().prefix("porin-lab-test").tempdir().unwrap();
    let lab = Lab { name: "ctl", state };
    let (code, out, err) = lab.porin(&[
        "lab",
        "--name",
        lab.name,
        "up",
        "-f",
        &repo("examples/shop/00-workloads.yaml"),
        "-f",
        &repo("examples/shop/10-platform-tier.yaml"),
        "-f",
        &repo("examples/shop/20-shop-policies.yaml"),
    ]);
    assert_eq!(code, 0, "lab up: {out}{err}");
    let dir = lab.state.path().to_path_buf();
    let cases: PathBuf = dir.join("cases.yaml");
    std::fs::write(&cases, CASES).unwrap();
    let (code, out, err) = lab.porin(&["test", "--lab", lab.name, "-f", cases.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("7 passed, 0 failed\n"), "{out}");

    // A flipped expectation fails on the packets, with the model's trace and what the packets did.
    let flipped = dir.join("flipped.yaml");
    std::fs::write(
        &flipped,
        CASES.replace("to: shop/payment, port: 9000, expect: Deny}", "to: shop/payment, port: 9000, expect: Allow}"),
    )
    .unwrap();
    let (code, out, _) = lab.porin(&["test", "--lab", lab.name, "-f", flipped.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["failed"], 2, "{out}");
    let f = &v["cases"][1]["failures"][0];
    assert_eq!((f["actual"].as_str(), f["trace"]["observed"].as_bool()), (Some("Deny"), Some(false)), "{f}");
    // The selector case stands for 4 source pods; each one is denied on the wire, so each one fails.
    assert_eq!(v["cases"][3]["failures"].as_array().unwrap().len(), 4, "{out}");

    // Addresses cannot be sent from a lab pod: an input error, not a silent pass.
    let (code, _, err) = lab.porin(&["test", "--lab", lab.name, "-f", &repo("examples/shop-tests")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("spec.cases[8].from: 192.0.2.0 is not a pod"), "{err}");
}
