//! The control plane end to end: a real `porin agent` process, driven through the CLI.

#[path = "control_plane/common.rs"]
mod common;

use common::*;

#[test]
fn apply_get_label_delete_and_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let f = a.write("base.yaml", BASE);
    let out = a.ok(&["apply", "-f", &f]);
    assert_eq!(
        out,
        "tier.porin.io/platform created\ntier.porin.io/app created\nnamespace/team-a created\npod/web created\npod/db created\n\
         networkpolicy.porin.io/platform-guard created\nnetworkpolicy.networking.k8s.io/web-in created\n"
    );
    let out = a.ok(&["apply", "-f", &f]);
    assert!(out.lines().all(|l| l.ends_with(" unchanged")), "{out}");
    golden("get-pods-table.txt", &a.ok(&["get", "pods", "-n", "team-a"]));
    golden("get-pnp-wide.txt", &a.ok(&["get", "pnp", "-A", "-o", "wide"]));
    golden("get-netpol-yaml.txt", &a.ok(&["get", "netpol", "web-in", "-n", "team-a", "-o", "yaml"]));
    // Selectors, short names, JSON.
    let out = a.ok(&["get", "po", "-n", "team-a", "-l", "app in (db),!gone", "-o", "json"]);
    assert!(out.contains("\"db\"") && !out.contains("\"web\""), "{out}");
    let (code, _, err) = a.porin(&["get", "po", "-l", "app in db"]);
    assert!(code != 0 && err.contains("selector"), "{err}");
    let (code, _, err) = a.porin(&["get", "bogus"]);
    assert!(code != 0 && err.contains("bogus"), "{err}");
    // Label, then the change is visible and audited.
    assert_eq!(a.ok(&["label", "pod", "web", "-n", "team-a", "env=prod"]), "pod/web labeled\n");
    let (code, _, err) = a.porin(&["label", "pod", "web", "-n", "team-a", "env=dev"]);
    assert!(code != 0 && err.contains("--overwrite"), "{err}");
    a.ok(&["label", "pod", "web", "-n", "team-a", "env=dev", "--overwrite"]);
    assert!(a.ok(&["get", "pods", "-n", "team-a", "-l", "env=dev"]).contains("web"));
    a.ok(&["label", "pod", "web", "-n", "team-a", "env-"]);
    assert_eq!(a.ok(&["delete", "pod", "db", "-n", "team-a"]), "pod \"db\" deleted\n");
    let (code, _, err) = a.porin(&["delete", "pod", "db", "-n", "team-a"]);
    assert!(code != 0 && err.contains("NotFound"), "{err}");
    let audit = a.ok(&["audit", "--since", "10m"]);
    assert!(audit.contains("uid:0") && audit.contains("apply") && audit.contains("platform-guard"), "{audit}");
    assert!(audit.lines().any(|l| l.contains("update") && l.contains("Pod") && l.contains("web")), "{audit}");
    assert!(audit.lines().any(|l| l.contains("delete") && l.contains("deleted") && l.contains("db")), "{audit}");
    let only = a.ok(&["audit", "--kind", "tier", "-o", "json"]);
    assert!(only.contains("\"platform\"") && !only.contains("web-in"), "{only}");
    let status = a.ok(&["status"]);
    assert!(status.contains("embedded") && status.contains("Endpoints        1") && status.contains("Health           ok"), "{status}");
    // delete -f removes every object named, atomically.
    let f = a.write("np.yaml", &app_policy("x", "team-a", "app"));
    a.ok(&["apply", "-f", &f]);
    assert_eq!(a.ok(&["delete", "-f", &f]), "networkpolicy.porin.io/x deleted\n");
}

#[test]
fn a_bad_document_means_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let before = a.ok(&["get", "pnp", "-A", "-o", "json"]);
    // Second document is invalid (bad selector) — the first must not land either.
    let bad = format!("{}---\n{}", app_policy("good", "team-a", "app"), app_policy("bad", "team-a", "app").replace("app == 'web'", "app == web"));
    let (code, out, err) = a.porin(&["apply", "-f", &a.write("bad.yaml", &bad)]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("bad.yaml doc 2") && err.contains("spec.selector"), "{err}");
    // Unknown tier, duplicate names, malformed YAML, unknown kind.
    for (name, text, needle) in [
        ("tier.yaml", app_policy("p", "team-a", "nope"), "tier"),
        ("dup.yaml", format!("{}---\n{}", app_policy("d", "team-a", "app"), app_policy("d", "team-a", "app")), "duplicate"),
        ("broken.yaml", "apiVersion: v1\nkind: [\n".to_string(), "YAML"),
        ("kind.yaml", "apiVersion: porin.io/v1\nkind: Gadget\nmetadata: {name: g}\n".to_string(), "unknown kind"),
    ] {
        let (code, _, err) = a.porin(&["apply", "-f", &a.write(name, &text)]);
        assert!(code != 0 && err.contains(needle), "{name}: {err}");
    }
    assert_eq!(a.ok(&["get", "pnp", "-A", "-o", "json"]), before);
    // The server validates too (a client that skips local checks gets 422 with field paths).
    let (code, _, err) = a.porin(&["delete", "pnp", "missing", "-n", "team-a"]);
    assert!(code != 0 && err.contains("NotFound"), "{err}");
}

#[test]
fn stale_resource_version_is_a_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let y = a.ok(&["get", "netpol", "web-in", "-n", "team-a", "-o", "yaml"]);
    a.ok(&["label", "netpol", "web-in", "-n", "team-a", "x=1"]);
    // Re-applying the old copy (with its old resourceVersion) must fail and change nothing.
    let (code, _, err) = a.porin(&["apply", "-f", &a.write("old.yaml", &y.replace("owner: a", "owner: b"))]);
    assert!(code != 0 && err.contains("Conflict"), "{err}");
    let now = a.ok(&["get", "netpol", "web-in", "-n", "team-a", "-o", "json"]);
    assert!(now.contains("\"owner\": \"a\"") && now.contains("\"x\": \"1\""), "{now}");
}

#[test]
fn tokens_scope_what_callers_may_change() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let admin = std::fs::read_to_string(tmp.path().join("data/admin.token")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(tmp.path().join("data/admin.token")).unwrap().permissions().mode() & 0o777, 0o600);
    let scoped = a.ok(&["token", "create", "team-a", "--role", "scoped", "--namespace", "team-a", "--tier", "app"]).trim().to_string();
    let ro = a.ok(&["token", "create", "viewer", "--role", "read-only"]).trim().to_string();
    let before = a.ok(&["get", "pnp", "-A", "-o", "json"]);

    // Scoped: may not touch the platform tier (nor, in the same batch, anything else).
    let batch = format!("{}---\n{}", app_policy("mine", "team-a", "app"), app_policy("sneaky", "team-a", "platform"));
    let (code, _, err) = a.porin_as(Some(&scoped), &["apply", "-f", &a.write("batch.yaml", &batch)]);
    assert!(code != 0 && err.contains("Forbidden") && err.contains("platform"), "{err}");
    let (code, _, err) = a.porin_as(Some(&scoped), &["delete", "pnp", "platform-guard", "-n", "team-a"]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    let (code, _, err) = a.porin_as(Some(&scoped), &["apply", "-f", &a.write("other.yaml", &app_policy("x", "team-b", "app"))]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    let tier = "apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: app}\nspec: {order: 1}\n";
    let (code, _, err) = a.porin_as(Some(&scoped), &["apply", "-f", &a.write("tier.yaml", tier)]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    let (code, _, err) = a.porin_as(Some(&scoped), &["token", "create", "x", "--role", "admin"]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    assert_eq!(a.ok(&["get", "pnp", "-A", "-o", "json"]), before);
    // ...but may write its own namespace and tier.
    let (code, out, err) = a.porin_as(Some(&scoped), &["apply", "-f", &a.write("mine.yaml", &app_policy("mine", "team-a", "app"))]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "networkpolicy.porin.io/mine created\n");

    // Read-only: reads, never writes.
    let (code, out, _) = a.porin_as(Some(&ro), &["get", "pnp", "-n", "team-a"]);
    assert!(code == 0 && out.contains("mine"));
    let (code, _, err) = a.porin_as(Some(&ro), &["delete", "pnp", "mine", "-n", "team-a"]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    let (code, _, err) = a.porin_as(Some("porin_not-a-token"), &["get", "pods"]);
    assert!(code != 0 && err.contains("Unauthorized"), "{err}");
    // The admin token file works as a token.
    let (code, _, err) = a.porin_as(Some(admin.trim()), &["delete", "pnp", "mine", "-n", "team-a"]);
    assert_eq!(code, 0, "{err}");

    let audit = a.ok(&["audit", "-o", "json"]);
    assert!(audit.contains("\"token:team-a\"") && audit.contains("\"token-create\"") && audit.contains("admin@test-node"), "{audit}");
    assert!(!audit.contains(&scoped), "tokens must never be stored or echoed in the audit trail");
}

#[test]
fn watch_streams_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &[]);
    let (mut child, mut lines) = a.watch("pnp");
    std::thread::sleep(std::time::Duration::from_millis(300));
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    let ev: serde_json::Value = serde_json::from_str(&read_line(&mut lines)).unwrap();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["name"], "platform-guard");
    let rv: u64 = ev["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    a.ok(&["delete", "pnp", "platform-guard", "-n", "team-a"]);
    let ev: serde_json::Value = serde_json::from_str(&read_line(&mut lines)).unwrap();
    assert_eq!(ev["type"], "DELETED");
    assert!(ev["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() > rv);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn acknowledged_applies_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Agent::start(tmp.path(), &[]);
    a.ok(&["apply", "-f", &a.write("base.yaml", BASE)]);
    for i in 0..20 {
        a.ok(&["apply", "-f", &a.write("p.yaml", &app_policy(&format!("p{i}"), "team-a", "app"))]);
    }
    a.crash_and_restart();
    let out = a.ok(&["get", "pnp", "-n", "team-a"]);
    for i in 0..20 {
        assert!(out.contains(&format!("p{i} ")), "p{i} lost after kill -9:\n{out}");
    }
    assert!(a.ok(&["audit"]).lines().count() >= 27);
    // The admin token survives too (same file, same store record).
    let admin = std::fs::read_to_string(tmp.path().join("data/admin.token")).unwrap();
    assert_eq!(a.porin_as(Some(admin.trim()), &["get", "tiers"]).0, 0);
}

#[test]
fn two_agents_on_one_etcd_see_each_others_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(etcd) = Etcd::start(tmp.path()) else { return };
    let url = etcd.url.clone();
    let (d1, d2) = (tmp.path().join("n1"), tmp.path().join("n2"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let a1 = Agent::start(&d1, &["--datastore", "etcd", "--etcd-endpoints", &url]);
    let a2 = Agent::start(&d2, &["--datastore", "etcd", "--etcd-endpoints", &url]);
    a1.ok(&["apply", "-f", &a1.write("base.yaml", BASE)]);
    assert!(a2.ok(&["get", "pnp", "-n", "team-a"]).contains("platform-guard"));
    a2.ok(&["apply", "-f", &a2.write("p.yaml", &app_policy("from-2", "team-a", "app"))]);
    assert!(a1.ok(&["get", "pnp", "-n", "team-a"]).contains("from-2"));
    // Both engines converge on the same store revision and counts.
    let t0 = std::time::Instant::now();
    loop {
        let (s1, s2) = (a1.ok(&["status", "-o", "json"]), a2.ok(&["status", "-o", "json"]));
        let (v1, v2): (serde_json::Value, serde_json::Value) = (serde_json::from_str(&s1).unwrap(), serde_json::from_str(&s2).unwrap());
        if v1["policyRevision"] == v2["policyRevision"] && v1["policyRevision"] == v1["storeRevision"] && v1["policies"] == v2["policies"] && v1["store"] == "etcd" {
            break;
        }
        assert!(t0.elapsed().as_secs() < 10, "{s1}\n{s2}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let audit = a1.ok(&["audit"]);
    assert!(audit.contains("test-node") && audit.contains("from-2"), "{audit}");
}
