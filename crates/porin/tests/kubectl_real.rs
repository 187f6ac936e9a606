//! The real `kubectl` against a real `porin agent --listen`, through a kubeconfig that `porin kubeconfig`
//! writes: discovery, apply (create, configure, unchanged, a removed field), get (server-side tables), label,
//! patch, get -w, explain, delete, server dry-run, validation errors; read-only and scoped tokens refused where
//! they must be. The store is checked through Porin's own CLI after each step.
//!
//! kubectl is `$PORIN_KUBECTL` or `kubectl` on PATH (scripts/setup.sh installs Debian's kubernetes-client);
//! without it the test fails, or is skipped with PORIN_SKIP_KUBECTL=1.

#[path = "control_plane/common.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

fn kubectl_bin() -> Option<String> {
    let bin = std::env::var("PORIN_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    if Command::new(&bin).args(["version", "--client"]).output().is_ok_and(|o| o.status.success()) {
        return Some(bin);
    }
    if std::env::var_os("PORIN_SKIP_KUBECTL").is_some() {
        return None;
    }
    panic!("kubectl is not installed (apt-get install kubernetes-client, or set PORIN_KUBECTL); PORIN_SKIP_KUBECTL=1 skips");
}

struct Kubectl {
    bin: String,
    config: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        // A private HOME: kubectl's discovery cache must not leak between agents (same address, new CA).
        c.args(args).env("KUBECONFIG", &self.config).env("HOME", &self.dir).current_dir(&self.dir);
        c
    }
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    }
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "kubectl {args:?} failed: {err}{out}");
        out
    }
    /// Must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_ne!(code, 0, "kubectl {args:?} succeeded: {out}");
        err
    }
}

/// A running `kubectl get -w`, read line by line.
struct Watch {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(k: &Kubectl, args: &[&str]) -> Watch {
        let mut child = k.cmd(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines: rx }
    }

    /// Skip to the next line whose first cells are `want`.
    fn next(&mut self, want: &[&str]) -> String {
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("no watch line with {want:?}"));
            let r: Vec<&str> = line.split_whitespace().collect();
            if r.len() >= want.len() && r.iter().zip(want).all(|(a, b)| a == b) {
                return line;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of a table, each split on whitespace (kubectl pads columns).
fn rows(table: &str) -> Vec<Vec<String>> {
    table.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

fn has_row(table: &str, want: &[&str]) -> bool {
    rows(table).iter().any(|r| r.len() >= want.len() && r.iter().zip(want).all(|(a, b)| a == b))
}

/// `porin get KIND NAME -o json` over the socket (admin): the stored object, or None when it does not exist.
fn stored(a: &Agent, kind: &str, name: &str, ns: Option<&str>) -> Option<serde_json::Value> {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let (code, out, err) = a.porin(&args);
    if code != 0 {
        assert!(err.contains("NotFound"), "{err}");
        return None;
    }
    Some(serde_json::from_str(&out).unwrap())
}

fn kubeconfig(a: &Agent, server: &str, file: &Path, token_args: &[&str]) {
    let ca = a.dir.join("data/tls/ca.crt");
    let mut args = vec!["kubeconfig", "--kube-server", server, "--ca", ca.to_str().unwrap(), "-o", file.to_str().unwrap()];
    args.extend(token_args);
    a.ok(&args);
}

const V1: &str = r#"apiVersion: porin.io/v1
kind: Tier
metadata: {name: platform}
spec: {order: 100}
---
apiVersion: porin.io/v1
kind: Tier
metadata: {name: app}
spec: {order: 500}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: deny-pci}
spec:
  tier: platform
  order: 10
  selector: pci == 'true'
  namespaceSelector: all()
  ingress: [{action: Deny}]
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: team-a}
spec:
  tier: app
  selector: app == 'web'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [80]}}
  - {action: Allow, protocol: TCP, destination: {ports: [443]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: team-a, labels: {owner: a}}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-in, namespace: team-b}
spec:
  podSelector: {}
"#;

#[test]
fn kubectl_manages_porin_objects() {
    let Some(bin) = kubectl_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let a = Agent::start(tmp.path(), &["--listen", &format!("127.0.0.1:{port}")]);
    let server = format!("https://127.0.0.1:{port}");
    // Tokens first (a token write after the last resource change would make nothing to wait for).
    let admin_cfg = tmp.path().join("admin.kubeconfig");
    kubeconfig(&a, &server, &admin_cfg, &["--create-token", "kubectl", "--role", "admin"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&admin_cfg).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600, "a kubeconfig holds a token");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let k = Kubectl { bin, config: admin_cfg, dir: home };

    // Version and discovery.
    let v = k.ok(&["version"]);
    assert!(v.contains("Server Version") && v.contains("porin"), "{v}");
    let res = k.ok(&["api-resources"]);
    assert!(has_row(&res, &["globalnetworkpolicies", "gnp", "porin.io/v1", "false", "GlobalNetworkPolicy"]), "{res}");
    assert!(has_row(&res, &["networkpolicies", "pnp,cnp", "porin.io/v1", "true", "NetworkPolicy"]), "{res}");
    assert!(has_row(&res, &["networkpolicies", "netpol,knp", "networking.k8s.io/v1", "true", "NetworkPolicy"]), "{res}");
    assert!(has_row(&res, &["tiers", "porin.io/v1", "false", "Tier"]), "{res}");
    let porin_kinds = k.ok(&["api-resources", "--api-group", "porin.io", "-o", "name"]);
    assert!(porin_kinds.lines().any(|l| l == "globalnetworkpolicies.porin.io"), "{porin_kinds}");

    // apply: create.
    let f = a.write("v1.yaml", V1);
    let out = k.ok(&["apply", "-f", &f]);
    for line in [
        "tier.porin.io/platform created",
        "namespace/team-a created",
        "globalnetworkpolicy.porin.io/deny-pci created",
        "networkpolicy.porin.io/web created",
        "networkpolicy.networking.k8s.io/web-in created",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing in:\n{out}");
    }
    let gnp = stored(&a, "gnp", "deny-pci", None).expect("created in the store");
    assert_eq!(gnp["spec"]["order"], 10.0);
    assert!(
        gnp["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().is_some(),
        "client-side apply keeps its annotation: {gnp}"
    );
    // Again: nothing changes.
    let out = k.ok(&["apply", "-f", &f]);
    assert!(out.lines().all(|l| l.ends_with(" unchanged")), "{out}");

    // get: server-side tables with the columns of `porin get`.
    let t = k.ok(&["get", "gnp"]);
    assert_eq!(rows(&t)[0], ["NAME", "TIER", "ORDER", "AGE"], "{t}");
    assert!(has_row(&t, &["deny-pci", "platform", "10"]), "{t}");
    let t = k.ok(&["get", "pnp", "-A"]);
    assert!(has_row(&t, &["team-a", "web", "app", "<none>"]), "{t}");
    let t = k.ok(&["get", "netpol", "-n", "team-a", "-o", "wide", "--show-labels"]);
    assert_eq!(rows(&t)[0], ["NAME", "POD-SELECTOR", "AGE", "LABELS"], "{t}");
    assert!(has_row(&t, &["web-in", "app=web"]) && t.contains("owner=a"), "{t}");
    let names = k.ok(&["get", "networkpolicies.porin.io,networkpolicies.networking.k8s.io", "-A", "-o", "name"]);
    assert_eq!(
        names,
        "networkpolicy.porin.io/web\nnetworkpolicy.networking.k8s.io/web-in\nnetworkpolicy.networking.k8s.io/b-in\n"
    );
    let y = k.ok(&["get", "gnp", "deny-pci", "-o", "jsonpath={.spec.selector}"]);
    assert_eq!(y, "pci == 'true'");
    assert!(k.fails(&["get", "gnp", "nope"]).contains("NotFound"));

    // apply: configure, including a field removed from the manifest (the three-way merge with last-applied).
    let v2 = V1.replace("  order: 10\n", "  order: 20\n").replace("  namespaceSelector: all()\n", "").replace(
        "  - {action: Allow, protocol: TCP, destination: {ports: [443]}}\n",
        "",
    );
    let f2 = a.write("v2.yaml", &v2);
    let out = k.ok(&["apply", "-f", &f2]);
    assert!(out.contains("globalnetworkpolicy.porin.io/deny-pci configured"), "{out}");
    assert!(out.contains("networkpolicy.porin.io/web configured"), "{out}");
    assert!(out.contains("networkpolicy.networking.k8s.io/web-in unchanged"), "{out}");
    let gnp = stored(&a, "gnp", "deny-pci", None).unwrap();
    assert_eq!(gnp["spec"]["order"], 20.0);
    assert!(gnp["spec"].get("namespaceSelector").is_none(), "a field removed from the manifest stays removed: {gnp}");
    let web = stored(&a, "pnp", "web", Some("team-a")).unwrap();
    assert_eq!(web["spec"]["ingress"].as_array().unwrap().len(), 1, "{web}");

    // label (merge patch for porin.io kinds, strategic merge patch for networking.k8s.io) and patch.
    assert_eq!(k.ok(&["label", "gnp", "deny-pci", "owner=platform"]), "globalnetworkpolicy.porin.io/deny-pci labeled\n");
    assert_eq!(stored(&a, "gnp", "deny-pci", None).unwrap()["metadata"]["labels"]["owner"], "platform");
    k.ok(&["label", "netpol", "web-in", "-n", "team-a", "owner-", "reviewed=yes"]);
    let np = stored(&a, "netpol", "web-in", Some("team-a")).unwrap();
    assert_eq!(np["metadata"]["labels"], serde_json::json!({"reviewed": "yes"}));
    let err = k.fails(&["label", "netpol", "web-in", "-n", "team-a", "reviewed=no"]);
    assert!(err.contains("--overwrite"), "{err}");
    k.ok(&["patch", "gnp", "deny-pci", "--type", "json", "-p", r#"[{"op":"replace","path":"/spec/order","value":30}]"#]);
    k.ok(&["patch", "pnp", "web", "-n", "team-a", "--type", "merge", "-p", r#"{"spec":{"order":5}}"#]);
    assert_eq!(stored(&a, "gnp", "deny-pci", None).unwrap()["spec"]["order"], 30.0);
    assert_eq!(stored(&a, "pnp", "web", Some("team-a")).unwrap()["spec"]["order"], 5.0);
    // A patch that breaks the object is refused by Porin's validation, with the field path; nothing is written.
    let err = k.fails(&["patch", "gnp", "deny-pci", "--type", "merge", "-p", r#"{"spec":{"selector":"pci ==="}}"#]);
    assert!(err.contains("invalid") && err.contains("spec.selector"), "{err}");
    assert_eq!(stored(&a, "gnp", "deny-pci", None).unwrap()["spec"]["selector"], "pci == 'true'");

    // A ReachabilityGuard binds kubectl's writes as it binds `porin apply`: a policy that breaks it is refused
    // (422 naming the guard) and nothing is written.
    a.ok(&["apply", "-f", &a.write("guard.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: team-a, labels: {app: web}}\n\
        status: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: team-a, labels: {app: client}}\n\
        status: {podIP: 10.0.0.9}\n---\napiVersion: porin.io/v1\nkind: ReachabilityGuard\nmetadata: {name: web-reachable}\n\
        spec: {from: {selector: app == 'client'}, to: {selector: app == 'web'}, ports: [80], expect: Allow}\n")]);
    let block = a.write("block.yaml", "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: block-web}\n\
        spec: {tier: platform, order: 1, selector: app == 'web', ingress: [{action: Deny}]}\n");
    let err = k.fails(&["apply", "-f", &block]);
    assert!(err.contains("web-reachable"), "{err}");
    assert!(stored(&a, "gnp", "block-web", None).is_none());

    // Server dry run: every check, nothing written.
    let extra = a.write("extra.yaml", "apiVersion: porin.io/v1\nkind: GlobalNetworkSet\nmetadata: {name: blocked}\nspec: {nets: [198.51.100.0/24]}\n");
    let out = k.ok(&["apply", "--dry-run=server", "-f", &extra]);
    assert!(out.contains("globalnetworkset.porin.io/blocked created (server dry run)"), "{out}");
    assert!(stored(&a, "gns", "blocked", None).is_none(), "a dry run wrote");

    // get -w: the current row, then one per change, with the event type; for each of the three policy kinds.
    // A change made through Porin's own CLI shows up in kubectl's watch.
    let mut w = Watch::start(&k, &["get", "pnp", "-n", "team-a", "-w", "--output-watch-events"]);
    w.next(&["ADDED", "web", "app", "5"]);
    a.ok(&["label", "pnp", "web", "-n", "team-a", "watched=yes"]);
    w.next(&["MODIFIED", "web", "app", "5"]);
    drop(w);
    let mut w = Watch::start(&k, &["get", "netpol", "-n", "team-a", "-w", "--output-watch-events"]);
    w.next(&["ADDED", "web-in"]);
    k.ok(&["label", "netpol", "web-in", "-n", "team-a", "watched=yes"]);
    w.next(&["MODIFIED", "web-in"]);
    drop(w);
    let mut w = Watch::start(&k, &["get", "gnp", "-w", "--output-watch-events"]);
    w.next(&["ADDED", "deny-pci", "platform", "30"]);
    a.ok(&["label", "gnp", "deny-pci", "watched=yes"]);
    w.next(&["MODIFIED", "deny-pci", "platform", "30"]);
    assert_eq!(k.ok(&["delete", "gnp", "deny-pci"]), "globalnetworkpolicy.porin.io \"deny-pci\" deleted\n");
    w.next(&["DELETED", "deny-pci"]);
    drop(w);
    assert!(stored(&a, "gnp", "deny-pci", None).is_none());

    // explain, from the server's OpenAPI.
    let e = k.ok(&["explain", "gnp.spec.ingress"]);
    assert!(e.contains("GlobalNetworkPolicy") && e.contains("action") && e.contains("What a matching packet gets"), "{e}");
    let e = k.ok(&["explain", "netpol.spec"]);
    assert!(e.contains("podSelector") && e.contains("policyTypes"), "{e}");
    let e = k.ok(&["explain", "pnp.spec.tier"]);
    assert!(e.contains("NetworkPolicy") && e.contains("porin.io") && e.contains("The tier the policy belongs to"), "{e}");
    let e = k.ok(&["explain", "tiers"]);
    assert!(e.contains("An ordered group of policies"), "{e}");
    // The newer kinds are described field by field too (not an open spec).
    let e = k.ok(&["explain", "packetcaptures.spec.filters"]);
    assert!(e.contains("PacketCapture") && e.contains("ports") && e.contains("filters are ORed"), "{e}");
    let e = k.ok(&["explain", "globalthreatfeeds.spec.pull.http"]);
    assert!(e.contains("GlobalThreatFeed") && e.contains("url") && e.contains("Request headers"), "{e}");

    // delete -f: every object of the file, one request each (with a guard in place, deleting a tier before its
    // policies would leave a model that does not build, which guards refuse: the guard goes first).
    assert_eq!(k.ok(&["delete", "guard", "web-reachable"]), "reachabilityguard.porin.io \"web-reachable\" deleted\n");
    k.ok(&["apply", "-f", &f2]);
    let out = k.ok(&["delete", "-f", &f2]);
    assert!(out.contains("networkpolicy.networking.k8s.io \"web-in\" deleted"), "{out}");
    assert!(stored(&a, "netpol", "web-in", Some("team-a")).is_none());
    assert!(stored(&a, "tier", "app", None).is_none());

    // Every kubectl write went through the audited write path, under the kubectl token's name.
    let audit = a.ok(&["audit"]);
    assert!(rows(&audit).iter().any(|r| r.contains(&"token:kubectl".to_string()) && r.contains(&"patch".to_string())), "{audit}");
    assert!(rows(&audit).iter().any(|r| r.contains(&"token:kubectl".to_string()) && r.contains(&"delete".to_string())), "{audit}");
}

#[test]
fn kubectl_with_read_only_and_scoped_tokens_is_refused_where_it_must_be() {
    let Some(bin) = kubectl_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let a = Agent::start(tmp.path(), &["--listen", &format!("127.0.0.1:{port}")]);
    let server = format!("https://127.0.0.1:{port}");
    let ro_cfg = tmp.path().join("ro.kubeconfig");
    kubeconfig(&a, &server, &ro_cfg, &["--create-token", "viewer", "--role", "read-only"]);
    let scoped_cfg = tmp.path().join("scoped.kubeconfig");
    kubeconfig(&a, &server, &scoped_cfg, &["--create-token", "team-a", "--role", "scoped", "-n", "team-a", "--tier", "app"]);
    a.ok(&["apply", "-f", &a.write("v1.yaml", V1)]);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let ro = Kubectl { bin: bin.clone(), config: ro_cfg, dir: home.clone() };
    let scoped = Kubectl { bin, config: scoped_cfg.clone(), dir: home };
    let before = a.ok(&["get", "gnp,pnp,netpol", "-A", "-o", "json"]);

    // Read-only: reads work, every write is 403.
    assert!(has_row(&ro.ok(&["get", "gnp"]), &["deny-pci", "platform", "10"]));
    for args in [
        vec!["delete", "gnp", "deny-pci"],
        vec!["label", "gnp", "deny-pci", "x=y"],
        vec!["patch", "pnp", "web", "-n", "team-a", "--type", "merge", "-p", r#"{"spec":{"order":1}}"#],
        vec!["delete", "netpol", "web-in", "-n", "team-a"],
    ] {
        let err = ro.fails(&args);
        assert!(err.contains("Error from server (Forbidden)") && err.contains("read-only"), "{args:?}: {err}");
    }
    let f = a.write("ro-new.yaml", &app_policy("ro-new", "team-a", "app"));
    let err = ro.fails(&["apply", "-f", &f]);
    assert!(err.contains("Forbidden"), "{err}");

    // Scoped to namespace team-a and tier app: its own namespace and tier only.
    let out = scoped.ok(&["apply", "-f", &f]);
    assert_eq!(out, "networkpolicy.porin.io/ro-new created\n");
    scoped.ok(&["label", "pnp", "web", "-n", "team-a", "reviewed=yes"]);
    for args in [
        vec!["label", "gnp", "deny-pci", "x=y"],
        vec!["delete", "gnp", "deny-pci"],
        vec!["delete", "netpol", "b-in", "-n", "team-b"],
        vec!["label", "netpol", "b-in", "-n", "team-b", "x=y"],
    ] {
        let err = scoped.fails(&args);
        assert!(err.contains("Error from server (Forbidden)"), "{args:?}: {err}");
    }
    // Moving its policy into a tier it does not hold is refused, whichever way it is written.
    let err = scoped.fails(&["patch", "pnp", "web", "-n", "team-a", "--type", "merge", "-p", r#"{"spec":{"tier":"platform"}}"#]);
    assert!(err.contains("Forbidden"), "{err}");
    let err = scoped.fails(&["patch", "pnp", "web", "-n", "team-a", "--type", "json", "-p", r#"[{"op":"replace","path":"/metadata/namespace","value":"team-b"}]"#]);
    assert!(err.contains("Error from server"), "{err}");
    let err = scoped.fails(&["apply", "-f", &a.write("p.yaml", &app_policy("sneaky", "team-a", "platform"))]);
    assert!(err.contains("Forbidden"), "{err}");
    let err = scoped.fails(&["apply", "-f", &a.write("b.yaml", &app_policy("sneaky", "team-b", "app"))]);
    assert!(err.contains("Forbidden"), "{err}");

    // Nothing but the two allowed changes reached the store.
    let after: serde_json::Value = serde_json::from_str(&a.ok(&["get", "gnp,pnp,netpol", "-A", "-o", "json"])).unwrap();
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"])).collect()
    };
    let mut want = names(&before);
    want.push("\"NetworkPolicy\"/\"ro-new\"".into());
    let mut got = names(&after);
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(stored(&a, "gnp", "deny-pci", None).unwrap()["metadata"].get("labels"), None);
    assert_eq!(stored(&a, "pnp", "web", Some("team-a")).unwrap()["spec"]["tier"], "app");
}
