//! `porin agent --datastore kubernetes` against Porin's own API server (no kube-apiserver can be installed
//! here; docs/kubernetes.md says what this proves and what it does not): a second agent follows the first
//! through a kubeconfig written by `porin kubeconfig` with a read-only token (list and watch only), keeps the
//! last state while the first is down, catches up when it is back, and refuses writes to the kinds that belong
//! to the API server.

#[path = "control_plane/common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

/// `kind/name` of every object of `kinds` on agent `a` (its own socket).
fn names(a: &Agent, kinds: &str) -> Vec<String> {
    let (code, out, err) = a.porin(&["get", kinds, "-A", "-o", "name"]);
    assert_eq!(code, 0, "{err}");
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const KINDS: &str = "ns,pods,sa,tiers,pnp,netpol,gnp";

#[test]
fn an_agent_follows_porins_api_as_a_kubernetes_datasource() {
    let src_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut src = Agent::start(src_dir.path(), &["--listen", &format!("127.0.0.1:{port}")]);
    let kc = src_dir.path().join("mirror.kubeconfig");
    let ca = src_dir.path().join("data/tls/ca.crt");
    src.ok(&[
        "kubeconfig",
        "--kube-server",
        &format!("https://127.0.0.1:{port}"),
        "--ca",
        ca.to_str().unwrap(),
        "--create-token",
        "mirror",
        "--role",
        "read-only",
        "-o",
        kc.to_str().unwrap(),
    ]);
    src.ok(&["apply", "-f", &src.write("base.yaml", BASE)]);

    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Agent::start(dst_dir.path(), &["--datastore", "kubernetes", "--kubeconfig", kc.to_str().unwrap(), "--dataplane", "none"]);
    let want = names(&src, KINDS);
    assert!(want.len() >= 7, "{want:?}");
    wait_until("the mirror has the source's objects", || names(&dst, KINDS) == want);
    // The objects themselves, not only their names.
    let spec = |a: &Agent| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&a.ok(&["get", "pnp", "platform-guard", "-n", "team-a", "-o", "json"])).unwrap();
        v["spec"].clone()
    };
    assert_eq!(spec(&dst), spec(&src));
    let status = dst.ok(&["status"]);
    assert!(status.contains("kubernetes"), "{status}");

    // Changes follow: a new object, a label, a delete.
    src.ok(&["apply", "-f", &src.write("gnp.yaml", "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: deny-pci}\nspec: {tier: platform, order: 1, selector: pci == 'true', ingress: [{action: Deny}]}\n")]);
    src.ok(&["label", "pod", "web", "-n", "team-a", "zone=z1"]);
    // ServiceAccounts are followed too: service-account selectors match their labels.
    src.ok(&["apply", "-f", &src.write("sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: team-a, labels: {role: frontend}}\n")]);
    src.ok(&["delete", "netpol", "web-in", "-n", "team-a"]);
    let want = names(&src, KINDS);
    assert!(want.contains(&"globalnetworkpolicy.porin.io/deny-pci".to_string()) && !want.iter().any(|n| n.ends_with("/web-in")));
    wait_until("the mirror follows changes", || names(&dst, KINDS) == want);
    wait_until("the label arrives", || dst.ok(&["get", "pod", "web", "-n", "team-a", "--show-labels"]).contains("zone=z1"));
    assert!(want.contains(&"serviceaccount/web".to_string()), "{want:?}");
    wait_until("the ServiceAccount's label arrives", || dst.ok(&["get", "sa", "web", "-n", "team-a", "--show-labels"]).contains("role=frontend"));
    src.ok(&["label", "sa", "web", "-n", "team-a", "role=backend", "--overwrite"]);
    wait_until("the ServiceAccount's new label arrives", || dst.ok(&["get", "sa", "web", "-n", "team-a", "--show-labels"]).contains("role=backend"));

    // The mirror refuses writes to what the API server owns, and nothing is written.
    let (code, _, err) = dst.porin(&["apply", "-f", &dst.write("p.yaml", &app_policy("local", "team-a", "app"))]);
    assert!(code != 0 && err.contains("belongs to the Kubernetes API server"), "{err}");
    let (code, _, err) = dst.porin(&["delete", "gnp", "deny-pci"]);
    assert!(code != 0 && err.contains("belongs to the Kubernetes API server"), "{err}");
    assert!(names(&dst, "gnp").contains(&"globalnetworkpolicy.porin.io/deny-pci".to_string()));
    // Its own local state (tokens) still works.
    dst.ok(&["token", "create", "local-viewer", "--role", "read-only"]);

    // The source goes away: the mirror keeps the last state.
    let before = names(&dst, KINDS);
    src.child.kill().unwrap();
    src.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(names(&dst, KINDS), before, "the mirror lost state while its API server was down");
    // It comes back (same data, CA and port) with a change made meanwhile in its store: the mirror catches up.
    src.crash_and_restart();
    src.ok(&["delete", "gnp", "deny-pci"]);
    let want = names(&src, KINDS);
    wait_until("the mirror catches up after the outage", || names(&dst, KINDS) == want);
}

/// deploy/kubernetes/crds.yaml is what `porin crds` prints (regenerate: see the file's first line).
#[test]
fn shipped_crds_are_the_generated_ones() {
    let out = std::process::Command::new(bin()).arg("crds").output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/crds.yaml");
    let shipped = std::fs::read_to_string(&path).unwrap();
    let shipped: String = shipped.lines().skip_while(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    assert_eq!(shipped, generated, "{} is stale: regenerate it with `porin crds`", path.display());
    let json = std::process::Command::new(bin()).args(["crds", "-o", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let names: Vec<&str> = v["items"].as_array().unwrap().iter().map(|c| c["metadata"]["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"globalnetworkpolicies.porin.io") && names.contains(&"networkpolicies.porin.io"), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".k8s.io") || !n.ends_with(".porin.io")), "{names:?}");
}

/// A fake API server answering every LIST (empty, except GlobalNetworkPolicies: one object that is a valid
/// Kubernetes object but not a valid policy) and holding every WATCH open.
fn fake_api_with_an_invalid_policy() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in l.incoming() {
            let Ok(mut sock) = sock else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                if target.contains("watch=true") {
                    let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
                    std::thread::sleep(Duration::from_secs(120));
                    return;
                }
                let items = if target.starts_with("/apis/porin.io/v1/globalnetworkpolicies") {
                    serde_json::json!([{"apiVersion": "porin.io/v1", "kind": "GlobalNetworkPolicy",
                        "metadata": {"name": "broken", "resourceVersion": "5"},
                        "spec": {"selector": "all()", "ingress": [{"action": "Sometimes"}]}}])
                } else {
                    serde_json::json!([])
                };
                let body = serde_json::json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": items}).to_string();
                let _ = sock.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                        .as_bytes(),
                );
            });
        }
    });
    port
}

/// An invalid policy from the Kubernetes API does not silently disappear: the agent stores it as written and
/// its engine fails closed on it, as it does for an undecodable object in etcd (every endpoint locked down,
/// named in `porin status`).
#[test]
fn an_invalid_policy_from_kubernetes_fails_closed() {
    let port = fake_api_with_an_invalid_policy();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("fake.kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    let a = Agent::start(dir.path(), &["--datastore", "kubernetes", "--kubeconfig", kc.to_str().unwrap(), "--dataplane", "none"]);
    let t0 = Instant::now();
    loop {
        let (_, out, _) = a.porin(&["status", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let named = v["undecodable"].as_array().is_some_and(|u| {
            u.iter().any(|x| x["key"].as_str().is_some_and(|k| k.ends_with("globalnetworkpolicies/_/broken")))
        });
        if named {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the invalid policy is not named in porin status: {out}\n{:?}\n{}",
            a.porin(&["get", "gnp", "-o", "json"]),
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = a.ok(&["status"]);
    assert!(status.contains("Undecodable") && status.contains("every endpoint locked down"), "{status}");
}
