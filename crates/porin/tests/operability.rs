//! What a DaemonSet needs from the agent: unauthenticated probes (`/livez`, `/healthz`, `/readyz`) with
//! readiness that waits for the datastore and the first programming, and logs a collector can read
//! (`--log-format json`; no ANSI escapes when stderr is not a terminal).

#[path = "control_plane/common.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A plain HTTP/1.0 GET on 127.0.0.1:port without credentials: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut b = String::new();
    s.read_to_string(&mut b).ok()?;
    let status = b.split_whitespace().nth(1)?.parse().ok()?;
    let body = b.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    Some((status, body))
}

#[test]
fn probes_need_no_token_and_logs_are_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let a = Agent::start(tmp.path(), &["--dataplane", "none", "--insecure-listen", &listen, "--log-format", "json", "--log-level", "info"]);
    for p in ["/livez", "/healthz", "/readyz"] {
        assert_eq!(get(port, p), Some((200, "ok\n".to_string())), "{p}");
    }
    let (code, body) = get(port, "/readyz?verbose").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("[+]datastore-synced ok") && body.contains("[+]dataplane-programmed ok") && body.ends_with("readyz check passed\n"), "{body}");
    // Everything else still needs a token.
    let (code, body) = get(port, "/porin/v1/status").unwrap();
    assert_eq!(code, 401, "{body}");
    let (code, _) = get(port, "/api/v1/namespaces").unwrap();
    assert_eq!(code, 401);
    // The log: one JSON object per line, with a level; no escape sequences.
    a.ok(&["apply", "-f", &a.write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")]);
    let log = a.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines: {log}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a JSON log");
}

#[test]
fn text_logs_have_no_ansi_escapes_when_not_a_terminal_and_a_bad_level_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &["--dataplane", "none", "--log-level", "debug"]);
    a.ok(&["apply", "-f", &a.write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")]);
    let log = a.log();
    assert!(log.contains("INFO") || log.contains("DEBUG"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log written to a file:\n{log}");
    let out = Command::new(bin()).args(["agent", "--log-level", "info,=bogus[", "--data-dir"]).arg(tmp.path().join("d2")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--log-level"), "{err}");
}

/// Readiness follows the datastore: ready while etcd answers, 503 naming it while it does not, ready again
/// once it is back; liveness stays 200 throughout.
#[test]
fn readyz_follows_the_datastore() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut etcd) = Etcd::start(tmp.path()) else { return };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _a = Agent::start(tmp.path(), &["--datastore", "etcd", "--etcd-endpoints", &etcd.url, "--dataplane", "none", "--insecure-listen", &listen]);
    assert_eq!(get(port, "/readyz").map(|r| r.0), Some(200));
    etcd.kill();
    let wait = |want: u16| {
        let t0 = Instant::now();
        loop {
            let r = get(port, "/readyz").unwrap();
            if r.0 == want {
                return r.1;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "readyz stayed {} ({}), want {want}", r.0, r.1);
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let body = wait(503);
    assert!(body.contains("not ready") && body.contains("unreachable") && body.contains("etcd"), "{body}");
    assert_eq!(get(port, "/livez").map(|r| r.0), Some(200), "live while the datastore is down");
    etcd.restart();
    wait(200);
}
