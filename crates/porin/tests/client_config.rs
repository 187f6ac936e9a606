//! `porin config` contexts: commands find server and token through the current context; flags and
//! environment win over it; a context's token is never sent to a server that a flag names instead; a broken
//! config file is an error naming the file.

#[path = "control_plane/common.rs"]
mod common;

use std::process::Command;

use common::*;

/// `porin ARGS` with only the config file to go by (no PORIN_SERVER/TOKEN/CA/CONTEXT).
fn run(cfg: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("PORIN_SERVER")
        .env_remove("PORIN_TOKEN")
        .env_remove("PORIN_CA")
        .env_remove("PORIN_CONTEXT")
        .env("PORIN_CONFIG", cfg)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn contexts_choose_server_and_token() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let sock = a.socket.to_str().unwrap().to_string();
    let cfg = tmp.path().join("cfg/config.yaml");
    let ro = a.ok(&["token", "create", "viewer", "--role", "read-only"]).trim().to_string();
    let ro_file = a.write("viewer.token", &ro);
    a.ok(&["apply", "-f", &a.write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n")]);

    // A context for the agent with a read-only token: reads work, writes are refused as that token.
    let (code, out, err) = run(&cfg, &["config", "set-context", "ro", "--server", &sock, "--token-file", &ro_file]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(run(&cfg, &["config", "current-context"]).1.trim(), "ro");
    let (code, _, err) = run(&cfg, &["get", "ns"]);
    assert_eq!(code, 0, "{err}");
    let label = ["label", "ns", "team", "team=a", "--overwrite"];
    let (code, _, err) = run(&cfg, &label);
    assert_ne!(code, 0, "a read-only context must not write");
    assert!(err.contains("Forbidden"), "{err}");

    // A context without token (peer credentials: root is admin) can write; switching is one command.
    run(&cfg, &["config", "set-context", "root", "--server", &sock]);
    let (code, out, _) = run(&cfg, &["config", "get-contexts"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with('*') && l.contains(" ro ")), "{out}");
    assert_eq!(run(&cfg, &["--help"]).0, 0);
    let (code, _, err) = run(&cfg, &[&label[..], &["--context", "root"]].concat());
    assert_eq!(code, 0, "{err}");
    run(&cfg, &["config", "use-context", "root"]);
    assert_eq!(run(&cfg, &label).0, 0);

    // The ro context's token stays with its server: naming another server by flag drops it (here the same
    // socket spelled differently, so the request runs as root and may write).
    run(&cfg, &["config", "use-context", "ro"]);
    let other = format!("unix:{sock}");
    let (code, _, err) = run(&cfg, &[&label[..], &["--server", &other]].concat());
    assert_eq!(code, 0, "the context token was sent to a server named by --server: {err}");

    // `config view` masks inline tokens; a broken file or unknown context is named.
    run(&cfg, &["config", "set-context", "inline", "--server", &sock, "--token", "s3cret"]);
    let (_, view, _) = run(&cfg, &["config", "view"]);
    assert!(!view.contains("s3cret") && view.contains("REDACTED"), "{view}");
    let (code, _, err) = run(&cfg, &["get", "ns", "--context", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("\"nope\"") && err.contains("config.yaml"), "{err}");
    std::fs::write(&cfg, "contexts: [{name: x, sever: y}]\n").unwrap();
    let (code, _, err) = run(&cfg, &["get", "ns"]);
    assert_ne!(code, 0);
    assert!(err.contains("config.yaml") && err.contains("sever"), "{err}");
}
