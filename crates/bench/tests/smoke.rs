//! CI smoke test of the benchmark harness: `porin-bench --smoke` on the real kernel (a lab, BPF, iptables
//! and nft inside the lab's node netns), a few seconds. No timing is asserted: only that every variant
//! produced a number and that the denied port was really denied (the binary exits non-zero otherwise).
//! Needs root; fails without it unless PORIN_SKIP_KERNEL_TESTS=1.

use std::process::Command;

#[test]
fn smoke_every_variant_measures_and_deny_denies() {
    if !nix::unistd::geteuid().is_root() {
        assert_eq!(
            std::env::var("PORIN_SKIP_KERNEL_TESTS").as_deref(),
            Ok("1"),
            "porin-bench smoke test needs root; set PORIN_SKIP_KERNEL_TESTS=1 to skip it explicitly"
        );
        eprintln!("PORIN_SKIP_KERNEL_TESTS=1: skipping the porin-bench smoke test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("smoke.json");
    let out = Command::new(env!("CARGO_BIN_EXE_porin-bench")).args(["--smoke", "--json"]).arg(&json).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "porin-bench --smoke failed:\n{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["failures"].as_array().unwrap().len(), 0, "{stderr}");

    let b1 = v["b1b2"].as_array().unwrap();
    let kinds: Vec<&str> = b1.iter().map(|x| x[0]["kind"].as_str().unwrap()).collect();
    for k in ["None", "Porin", "Iptables", "IptablesStateless", "NftSet"] {
        assert!(kinds.contains(&k), "variant {k} missing: {kinds:?}");
    }
    for x in b1 {
        let samples = x[1].as_array().unwrap();
        assert!(!samples.is_empty(), "{x}");
        for s in samples {
            for f in ["gbps", "rr_per_s", "crr_per_s"] {
                assert!(s[f].as_f64().unwrap() > 0.0, "{f} of {}", x[0]);
            }
            // Deny really denies: the port no rule allows is blocked by every enforcing variant.
            let enforcing = x[0]["kind"] != "None";
            assert_eq!(s["denied_port_reachable"].as_bool().unwrap(), !enforcing, "{}", x[0]);
        }
    }
    let b4 = v["b4"].as_array().unwrap();
    for mode in ["full", "precompiled"] {
        for enforce in [true, false] {
            assert!(b4.iter().any(|r| r["mode"] == mode && r["enforce"] == enforce), "B4 {mode} enforce={enforce} missing");
        }
    }
    let b5 = v["b5"].as_array().unwrap();
    for what in ["from scratch", "one rule changed"] {
        assert!(b5.iter().any(|r| r["what"] == what && r["compile_ms"].as_f64().unwrap() > 0.0), "B5 {what} missing");
    }
    // Nothing of ours is left behind: the lab's namespaces are gone.
    let pid = v["pid"].as_u64().unwrap();
    let left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!left.iter().any(|n| n.contains(&format!("pbench-{pid}-"))), "left behind: {left:?}");
}
