//! The API over TCP: HTTPS with the agent's own CA (or a given certificate), bearer tokens mandatory, plain
//! HTTP only on loopback with --insecure-listen.

#[path = "control_plane/common.rs"]
mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn https_with_the_agents_own_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut a = Agent::start(tmp.path(), &["--listen", &listen]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let tls = tmp.path().join("data/tls");
    let ca = tls.join("ca.crt");
    let ca_s = ca.to_str().unwrap();
    // The agent says where its CA is; keys are private.
    let log = a.log();
    assert!(log.contains(&format!("https://{listen}")) && log.contains(ca_s), "{log}");
    assert_eq!(mode(&tls.join("ca.key")), 0o600);
    assert_eq!(mode(&tls.join("server.key")), 0o600);
    assert_eq!(mode(&tls), 0o700);
    let admin = std::fs::read_to_string(tmp.path().join("data/admin.token")).unwrap().trim().to_string();
    let server = format!("https://{listen}");

    // --ca and a token: works; PORIN_CA works the same.
    let (code, out, err) = a.porin_env(&[("PORIN_TOKEN", &admin)], &["get", "pods", "-n", "team-a", "--server", &server, "--ca", ca_s]);
    assert!(code == 0 && out.contains("web") && out.contains("db"), "{err}{out}");
    let (code, out, err) = a.porin_env(&[("PORIN_SERVER", &server), ("PORIN_CA", ca_s), ("PORIN_TOKEN", &admin)], &["status"]);
    assert!(code == 0 && out.contains("Health"), "{err}");
    // localhost is in the certificate too.
    let (code, _, err) = a.porin_env(&[("PORIN_TOKEN", &admin)], &["get", "tiers", "--server", &format!("https://localhost:{port}"), "--ca", ca_s]);
    assert_eq!(code, 0, "{err}");
    // Writes over TLS, with a scoped token.
    let scoped = a.ok(&["token", "create", "team-a", "--role", "scoped", "--namespace", "team-a", "--tier", "app"]).trim().to_string();
    let f = a.write("p.yaml", &app_policy("over-tls", "team-a", "app"));
    let (code, out, err) = a.porin_env(&[("PORIN_TOKEN", &scoped), ("PORIN_CA", ca_s)], &["apply", "-f", &f, "--server", &server]);
    assert_eq!((code, out.as_str()), (0, "networkpolicy.porin.io/over-tls created\n"), "{err}");

    // No token over TCP: 401, even as root (there are no peer credentials on TCP).
    let (code, _, err) = a.porin_env(&[("PORIN_CA", ca_s)], &["get", "pods", "--server", &server]);
    assert!(code != 0 && err.contains("Unauthorized") && err.contains("bearer token"), "{err}");
    // No CA: a clear error (this machine's /var/lib/porin may hold another agent's CA: then it fails to verify).
    let (code, _, err) = a.porin_env(&[("PORIN_TOKEN", &admin)], &["get", "pods", "--server", &server]);
    assert!(code != 0 && (err.contains("--ca") || err.contains("certificate")), "{err}");
    // Another CA: the handshake fails (the token was never sent).
    let other = tempfile::tempdir().unwrap();
    let b = Agent::start(other.path(), &["--listen", &format!("127.0.0.1:{}", free_port())]);
    let other_ca = other.path().join("data/tls/ca.crt");
    let (code, _, err) = a.porin_env(&[("PORIN_TOKEN", &admin)], &["get", "pods", "--server", &server, "--ca", other_ca.to_str().unwrap()]);
    assert!(code != 0 && err.contains("TLS with") && err.contains("certificate"), "{err}");
    drop(b);
    // Plain HTTP against the TLS port gets no HTTP answer.
    let (code, _, err) = a.porin_env(&[("PORIN_TOKEN", &admin)], &["get", "pods", "--server", &format!("http://{listen}")]);
    assert!(code != 0, "{err}");
    let mut s = std::net::TcpStream::connect(&listen).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /porin/v1/status HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"), "plain HTTP answered on the TLS port");

    // A restart keeps the CA: clients holding ca.crt keep working.
    let before = std::fs::read(&ca).unwrap();
    a.crash_and_restart();
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    let (code, out, err) = a.porin_env(&[("PORIN_TOKEN", &admin)], &["get", "pnp", "-n", "team-a", "--server", &server, "--ca", ca_s]);
    assert!(code == 0 && out.contains("over-tls"), "{err}");
}

#[test]
fn a_given_certificate_and_insecure_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    // Material from a first agent serves as "the operator's certificate" for a second one.
    let (d1, d2) = (tmp.path().join("one"), tmp.path().join("two"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let a = Agent::start(&d1, &["--listen", &format!("127.0.0.1:{}", free_port())]);
    let tls = d1.join("data/tls");
    drop(a);
    let port = free_port();
    let plain = free_port();
    let b = Agent::start(
        &d2,
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
            tls.join("server.crt").to_str().unwrap(),
            "--tls-key",
            tls.join("server.key").to_str().unwrap(),
            "--insecure-listen",
            &format!("127.0.0.1:{plain}"),
        ],
    );
    assert!(!d2.join("data/tls").exists(), "no CA is generated when a certificate is given");
    let admin = std::fs::read_to_string(d2.join("data/admin.token")).unwrap().trim().to_string();
    let ca = tls.join("ca.crt");
    let (code, out, err) = b.porin_env(&[("PORIN_TOKEN", &admin), ("PORIN_CA", ca.to_str().unwrap())], &["status", "--server", &format!("https://127.0.0.1:{port}")]);
    assert!(code == 0 && out.contains("Health"), "{err}");
    // Plain HTTP on loopback, still with a token.
    let http = format!("http://127.0.0.1:{plain}");
    let (code, _, err) = b.porin_env(&[("PORIN_TOKEN", &admin)], &["get", "tiers", "--server", &http]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = b.porin_env(&[], &["get", "tiers", "--server", &http]);
    assert!(code != 0 && err.contains("Unauthorized"), "{err}");
    drop(b);

    // Plain HTTP off loopback is refused at start.
    let out = Command::new(bin())
        .args(["serve", "--data-dir", d2.join("data").to_str().unwrap(), "--socket", d2.join("s.sock").to_str().unwrap()])
        .args(["--insecure-listen", &format!("0.0.0.0:{}", free_port())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("loopback"), "{err}");
    // --tls-cert without --tls-key is a usage error.
    let out = Command::new(bin()).args(["agent", "--listen", "127.0.0.1:1", "--tls-cert", "x.pem"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}
