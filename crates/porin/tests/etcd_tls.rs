//! The agent against a real etcd that serves TLS only and demands client certificates
//! (`--client-cert-auth`): it works with `--etcd-ca/--etcd-cert/--etcd-key`, and is refused without a
//! client certificate or with the wrong CA. Certificates are made with the openssl CLI for this test.

#[path = "control_plane/common.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (the CLI) is needed to make test certificates");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A CA named `name`, and a certificate `leaf` signed by it with `ext` (an openssl extension line).
fn ca(dir: &Path, name: &str) {
    openssl(dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &format!("{name}.key"), "-out", &format!("{name}.crt"), "-days", "1", "-subj", &format!("/CN=porin-test-{name}")]);
}

fn leaf(dir: &Path, ca: &str, leaf: &str, ext: &str) {
    std::fs::write(dir.join(format!("{leaf}.ext")), ext).unwrap();
    openssl(dir, &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &format!("{leaf}.key"), "-out", &format!("{leaf}.csr"), "-subj", &format!("/CN=porin-test-{leaf}")]);
    openssl(dir, &["x509", "-req", "-in", &format!("{leaf}.csr"), "-CA", &format!("{ca}.crt"), "-CAkey", &format!("{ca}.key"), "-CAcreateserial", "-out", &format!("{leaf}.crt"), "-days", "1", "-extfile", &format!("{leaf}.ext")]);
}

struct TlsEtcd(Child);
impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent_args(dir: &Path, url: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["agent", "--dataplane", "none", "--datastore", "etcd", "--etcd-endpoints", url, "--node", "n"].iter().map(|s| s.to_string()).collect();
    v.extend(["--data-dir".into(), dir.join("data").display().to_string(), "--socket".into(), dir.join("porin.sock").display().to_string()]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Runs an agent that must not get to a synced datastore: it exits with an error, or stays unsynced.
fn refused(dir: &Path, url: &str, extra: &[&str]) -> String {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    let mut c = Command::new(bin()).args(agent_args(dir, url, extra)).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) {
        if let Some(st) = c.try_wait().unwrap() {
            assert!(!st.success());
            return std::fs::read_to_string(dir.join("agent.log")).unwrap();
        }
        let o = Command::new(bin()).args(["status", "-o", "json", "--server"]).arg(dir.join("porin.sock")).output().unwrap();
        assert!(!String::from_utf8_lossy(&o.stdout).contains("\"synced\": true"), "synced with etcd despite {extra:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = c.kill();
    let _ = c.wait();
    std::fs::read_to_string(dir.join("agent.log")).unwrap()
}

#[test]
fn agent_uses_etcd_over_tls_with_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ca(d, "ca");
    ca(d, "other-ca");
    leaf(d, "ca", "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    leaf(d, "ca", "client", "extendedKeyUsage=clientAuth\n");
    leaf(d, "other-ca", "stranger", "extendedKeyUsage=clientAuth\n");
    let (cport, pport) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{cport}");
    let peer = format!("http://127.0.0.1:{pport}");
    let elog = std::fs::File::create(d.join("etcd.log")).unwrap();
    let etcd = Command::new("etcd")
        .args(["--name", "porin-tls", "--data-dir"])
        .arg(d.join("etcd"))
        .args(["--listen-client-urls", &url, "--advertise-client-urls", &url, "--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("porin-tls={peer}"), "--client-cert-auth", "--trusted-ca-file", "ca.crt", "--cert-file", "server.crt", "--key-file", "server.key"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(elog)
        .spawn()
        .expect("etcd is installed (scripts/setup.sh)");
    let _etcd = TlsEtcd(etcd);
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", cport)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "etcd did not start: {}", std::fs::read_to_string(d.join("etcd.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    let p = |f: &str| d.join(f).display().to_string();

    // With the CA and a client certificate: the agent syncs, writes and reads through etcd.
    let ad = d.join("good");
    std::fs::create_dir_all(&ad).unwrap();
    let a = Agent::start(&ad, &["--datastore", "etcd", "--etcd-endpoints", &url, "--dataplane", "none", "--etcd-ca", &p("ca.crt"), "--etcd-cert", &p("client.crt"), "--etcd-key", &p("client.key")]);
    a.ok(&["apply", "-f", &a.write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: tls-works}\n")]);
    assert!(a.ok(&["get", "namespaces"]).contains("tls-works"));
    let ctl = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &url, "--cacert", &p("ca.crt"), "--cert", &p("client.crt"), "--key", &p("client.key"), "get", "--prefix", "--keys-only", "/porin/"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ctl.stdout).contains("tls-works"), "stored in etcd: {}", String::from_utf8_lossy(&ctl.stdout));
    drop(a);

    // Refused: no client certificate; a certificate of another CA; the wrong CA for the server.
    let log = refused(&d.join("nocert"), &url, &["--etcd-ca", &p("ca.crt")]);
    assert!(log.contains(&format!("datastore at {url}")), "{log}");
    refused(&d.join("stranger"), &url, &["--etcd-ca", &p("ca.crt"), "--etcd-cert", &p("stranger.crt"), "--etcd-key", &p("stranger.key")]);
    refused(&d.join("wrongca"), &url, &["--etcd-ca", &p("other-ca.crt"), "--etcd-cert", &p("client.crt"), "--etcd-key", &p("client.key")]);

    // Flag mistakes are named before anything connects.
    for (extra, want) in [
        (vec!["--etcd-ca", &p("ca.crt"), "--etcd-cert", &p("client.crt")], "--etcd-cert and --etcd-key go together"),
        (vec![], "need --etcd-ca"),
        (vec!["--etcd-ca", &p("client.ext"), "--etcd-cert", &p("client.crt"), "--etcd-key", &p("client.key")], "not a PEM file"),
    ] {
        let o = Command::new(bin()).args(agent_args(&d.join("flags"), &url, &extra)).env("PORIN_LOG", "warn").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{extra:?}: {err}");
    }
    let o = Command::new(bin()).args(agent_args(&d.join("flags"), &format!("http://127.0.0.1:{cport}"), &["--etcd-ca", &p("ca.crt")])).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("not https://"));
}
