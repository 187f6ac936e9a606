//! Compiles the BPF C programs under `bpf/` with clang into `$OUT_DIR/porin_tc.bpf.o`.
//! The object is embedded into the crate with `include_bytes_aligned!`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let bpf_dir = manifest.join("../../bpf");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = bpf_dir.join("porin_tc.bpf.c");
    let obj = out.join("porin_tc.bpf.o");

    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", bpf_dir.join("include/porin/abi.h").display());
    // The program's parts (parsing, ICMP errors, capture), included by porin_tc.bpf.c: a directory is watched whole.
    println!("cargo:rerun-if-changed={}", bpf_dir.join("porin_tc").display());
    println!("cargo:rerun-if-env-changed=PORIN_CLANG");

    let clang = std::env::var("PORIN_CLANG").unwrap_or_else(|_| "clang".to_string());
    let arch_include = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let target_arch = match std::env::consts::ARCH {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => other,
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{target_arch}"))
        .arg(format!("-I{arch_include}"))
        .arg(format!("-I{}", bpf_dir.join("include").display()))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("failed to run {clang} (install clang and libbpf-dev): {e}"));
    assert!(status.success(), "clang failed to compile {}", src.display());
}
