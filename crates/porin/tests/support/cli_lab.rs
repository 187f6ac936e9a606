//! The CLI side of a kernel-lab test: the built `porin` binary run against one lab (its own state directory and,
//! once the lab is up, its agent's server), the repository's files, and the root check every kernel test makes.
//! Shared by the lab tests through `#[path = "support/cli_lab.rs"] mod cli_lab;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_porin")
}

/// A path in the repository, absolute.
pub fn repo(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel);
    p.canonicalize().unwrap_or(p).display().to_string()
}

/// Kernel tests need root; without it they fail, unless `PORIN_SKIP_KERNEL_TESTS=1` says to skip them.
pub fn kernel_ok() -> bool {
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

/// One lab, taken down when dropped.
pub struct Lab {
    pub name: &'static str,
    pub state: tempfile::TempDir,
    pub server: Option<String>,
}

impl Lab {
    pub fn porin(&self, args: &[&str]) -> (i32, String, String) {
        let mut c = Command::new(bin());
        c.args(args).env("PORIN_LAB_STATE_DIR", self.state.path()).env_remove("PORIN_TOKEN");
        match &self.server {
            Some(s) => c.env("PORIN_SERVER", s),
            None => c.env_remove("PORIN_SERVER"),
        };
        let out = c.output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.porin(args);
        assert_eq!(code, 0, "porin {args:?}: {out}{err}");
        out
    }
    pub fn write(&self, name: &str, text: &str) -> String {
        let p: PathBuf = self.state.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.porin(&["lab", "--name", self.name, "down"]);
    }
}
