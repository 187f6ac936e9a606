//! Tenant tokens against a real `porin agent`: every known way a namespace-scoped token reached beyond its
//! scope is attempted through the API, and each must be refused with 403 and leave the store untouched.

#[path = "control_plane/common.rs"]
mod common;

use common::*;

const WORLD: &str = r#"apiVersion: porin.io/v1
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
metadata: {name: shop, labels: {tenant: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {tenant: ops}}
---
apiVersion: v1
kind: Pod
metadata: {name: payment, namespace: shop, labels: {app: payment, pci: "true"}}
status: {podIP: 10.0.0.14}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: shop, labels: {app: frontend}}
status: {podIP: 10.0.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: ops, labels: {app: db}}
status: {podIP: 10.0.1.5}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: pci-isolation}
spec:
  tier: platform
  order: 10
  selector: pci == 'true'
  ingress:
  - {action: Allow, source: {selector: app == 'checkout'}}
  - {action: Deny}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: db-trusts-backup, namespace: ops}
spec:
  tier: app
  selector: app == 'db'
  ingress:
  - {action: Allow, source: {selector: role == 'backup', namespaceSelector: all()}}
  - {action: Deny}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: shop-own, namespace: shop}
spec:
  tier: app
  selector: all()
  ingress: [{action: Allow, source: {selector: app == 'frontend'}}]
"#;

const KINDS: [&str; 11] = ["tiers", "ns", "pods", "gnp", "sgnp", "gns", "netpol", "pnp", "snp", "sknp", "netset"];

/// Everything stored (every kind, every namespace) and the number of audit records.
fn state(a: &Agent) -> (Vec<String>, usize) {
    let objs = KINDS.iter().map(|k| a.ok(&["get", k, "-A", "-o", "json"])).collect();
    let audit: serde_json::Value = serde_json::from_str(&a.ok(&["audit", "-o", "json"])).unwrap();
    (objs, audit.as_array().expect("porin audit -o json is an array").len())
}

fn refused(a: &Agent, token: &str, args: &[&str], needles: &[&str]) {
    let (code, out, err) = a.porin_as(Some(token), args);
    assert!(code != 0 && err.contains("Forbidden"), "porin {args:?} was not refused: {out}{err}");
    for n in needles {
        assert!(err.contains(n), "porin {args:?}: the 403 should mention {n:?}: {err}");
    }
}

#[test]
fn a_tenant_token_cannot_change_another_tenants_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &["--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("world.yaml", WORLD)]);
    let shop = a.ok(&["token", "create", "shop", "--role", "scoped", "--namespace", "shop", "--tier", "app"]).trim().to_string();
    let before = state(&a);

    // 1. Cluster-scoped objects, whatever their tier: a GNP in tier default (or app) that opens ops to anyone.
    let open_gnp = |tier: &str| {
        format!(
            "apiVersion: porin.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: open-{tier}}}\nspec:\n  tier: {tier}\n  selector: all()\n  ingress: [{{action: Allow}}]\n"
        )
    };
    for (name, text) in [
        ("gnp-default.yaml", open_gnp("default")),
        ("gnp-app.yaml", open_gnp("app")),
        ("sgnp.yaml", open_gnp("app").replace("kind: GlobalNetworkPolicy", "kind: StagedGlobalNetworkPolicy")),
        ("gns.yaml", "apiVersion: porin.io/v1\nkind: GlobalNetworkSet\nmetadata: {name: g, labels: {role: backup}}\nspec: {nets: [0.0.0.0/0]}\n".into()),
        ("tier.yaml", "apiVersion: porin.io/v1\nkind: Tier\nmetadata: {name: app}\nspec: {order: 1}\n".into()),
        ("cs.yaml", "apiVersion: porin.io/v1\nkind: ClusterSettings\nmetadata: {name: default}\nspec: {defaultEndpointAction: Allow}\n".into()),
        ("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {tenant: ops}}\n".into()),
    ] {
        refused(&a, &shop, &["apply", "-f", &a.write(name, &text)], &["cluster-scoped"]);
    }
    refused(&a, &shop, &["label", "ns", "shop", "tenant=ops", "--overwrite"], &["cluster-scoped"]);
    refused(&a, &shop, &["delete", "gnp", "pci-isolation"], &["cluster-scoped"]);
    // Deleting what does not exist is a 403 too when the token could not have deleted it.
    refused(&a, &shop, &["delete", "gnp", "nothing-here"], &["cluster-scoped"]);

    // 2. Labels that a policy outside the token's scope reads are a privilege.
    refused(&a, &shop, &["label", "pod", "-n", "shop", "payment", "pci-"], &["pci-isolation", "platform", "no longer"]);
    refused(&a, &shop, &["label", "pod", "-n", "shop", "frontend", "app=checkout", "--overwrite"], &["pci-isolation", "newly"]);
    refused(&a, &shop, &["label", "pod", "-n", "shop", "frontend", "role=backup"], &["ops/db-trusts-backup"]);
    let new_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: sneaky, namespace: shop, labels: {role: backup}}\n";
    refused(&a, &shop, &["apply", "-f", &a.write("pod.yaml", new_pod)], &["db-trusts-backup"]);
    refused(&a, &shop, &["delete", "pod", "-n", "shop", "payment"], &["pci-isolation", "delete"]);
    let set = "apiVersion: porin.io/v1\nkind: NetworkSet\nmetadata: {name: backups, namespace: shop, labels: {role: backup}}\nspec: {nets: [0.0.0.0/0]}\n";
    refused(&a, &shop, &["apply", "-f", &a.write("set.yaml", set)], &["db-trusts-backup"]);

    // 3. Kubernetes policies sit in tier default, which this token does not hold; staged forms too.
    let knp = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: shop}\nspec: {podSelector: {}, ingress: [{}]}\n";
    refused(&a, &shop, &["apply", "-f", &a.write("knp.yaml", knp)], &["tier \"default\""]);
    let sknp = knp.replace("networking.k8s.io/v1\nkind: NetworkPolicy", "porin.io/v1\nkind: StagedKubernetesNetworkPolicy");
    refused(&a, &shop, &["apply", "-f", &a.write("sknp.yaml", &sknp)], &["tier \"default\""]);
    refused(&a, &shop, &["apply", "-f", &a.write("snp.yaml", &app_policy("s", "shop", "platform").replace("kind: NetworkPolicy", "kind: StagedNetworkPolicy"))], &["platform"]);

    // 4. Moving its own policy into another tier by update; another namespace's policy.
    refused(&a, &shop, &["apply", "-f", &a.write("move.yaml", &app_policy("shop-own", "shop", "platform"))], &["platform"]);
    refused(&a, &shop, &["delete", "pnp", "-n", "ops", "db-trusts-backup"], &["namespace \"ops\""]);

    // 5. A `kind: List` mixing an allowed change with a forbidden one: all refused, nothing written.
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "frontend", "namespace": "shop", "labels": {"app": "frontend", "team": "web"}}, "status": {"podIP": "10.0.0.10"}},
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "payment", "namespace": "shop", "labels": {"app": "payment"}}, "status": {"podIP": "10.0.0.14"}}]}"#;
    refused(&a, &shop, &["apply", "-f", &a.write("list.json", list)], &["pci-isolation"]);

    assert_eq!(state(&a), before, "a refused request changed the store (or the audit trail)");

    // What the token may do still works: labels nobody outside its scope reads, its own tier and namespace.
    assert_eq!(a.porin_as(Some(&shop), &["label", "pod", "-n", "shop", "frontend", "team=web"]).0, 0);
    assert_eq!(a.porin_as(Some(&shop), &["label", "pod", "-n", "shop", "payment", "owner=pay"]).0, 0);
    let (code, _, err) = a.porin_as(Some(&shop), &["apply", "-f", &a.write("mine.yaml", &app_policy("mine", "shop", "app"))]);
    assert_eq!(code, 0, "{err}");
    let ok_set = "apiVersion: porin.io/v1\nkind: NetworkSet\nmetadata: {name: partners, namespace: shop, labels: {role: partner}}\nspec: {nets: [192.0.2.0/24]}\n";
    let (code, _, err) = a.porin_as(Some(&shop), &["apply", "-f", &a.write("ok-set.yaml", ok_set)]);
    assert_eq!(code, 0, "{err}");
    let pods = a.ok(&["get", "pods", "-n", "shop", "-o", "json"]);
    assert!(pods.contains("\"pci\": \"true\"") && pods.contains("\"team\": \"web\""), "{pods}");
}

/// Send a request head (and then `body`, ignoring a server that stops reading) on the agent's socket; return
/// the response's status code and text. A server that waits for a body it was not sent times out: a failure.
/// What a tenant may read: its namespaces' objects, its namespaces, the tiers and global network sets; not
/// another tenant's pods or policies, not the platform's global policies, not the audit of others' changes.
#[test]
fn a_tenant_token_reads_only_its_namespaces_and_tiers() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &["--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("world.yaml", WORLD)]);
    let shop = a.ok(&["token", "create", "shop", "--role", "scoped", "--namespace", "shop", "--tier", "app"]).trim().to_string();
    let as_shop = |args: &[&str]| {
        let (code, out, err) = a.porin_as(Some(&shop), args);
        assert_eq!(code, 0, "porin {args:?} as shop failed: {err}");
        out
    };
    let names = |out: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        let items = v.get("items").and_then(|i| i.as_array()).cloned().unwrap_or_else(|| v.as_array().cloned().unwrap_or_default());
        let mut n: Vec<String> = items
            .iter()
            .map(|o| match o["metadata"]["namespace"].as_str() {
                Some(ns) => format!("{ns}/{}", o["metadata"]["name"].as_str().unwrap()),
                None => o["metadata"]["name"].as_str().unwrap().to_string(),
            })
            .collect();
        n.sort();
        n
    };
    // The admin sees everything; the tenant its own.
    assert_eq!(names(&a.ok(&["get", "pods", "-A", "-o", "json"])), ["ops/db", "shop/frontend", "shop/payment"]);
    assert_eq!(names(&as_shop(&["get", "pods", "-A", "-o", "json"])), ["shop/frontend", "shop/payment"]);
    assert_eq!(names(&as_shop(&["get", "pnp", "-A", "-o", "json"])), ["shop/shop-own"]);
    assert_eq!(names(&as_shop(&["get", "ns", "-o", "json"])), ["shop"]);
    assert_eq!(names(&as_shop(&["get", "tiers", "-o", "json"])), ["app", "platform"]);
    // The platform's global policies are not the tenant's to read: listing them is a 403, not an empty list.
    refused(&a, &shop, &["get", "gnp"], &["may not list"]);
    refused(&a, &shop, &["get", "guard"], &["may not list"]);
    // `get all` leaves out what the tenant may not list.
    let all = as_shop(&["get", "all", "-A", "-o", "name"]);
    assert!(all.contains("pod/payment") && !all.contains("db") && !all.contains("pci-isolation"), "{all}");
    // By name: 403, whether it exists or not.
    refused(&a, &shop, &["get", "pod", "db", "-n", "ops"], &["ops/db"]);
    refused(&a, &shop, &["get", "netpol", "db-trusts-backup", "-n", "ops"], &["outside its namespaces"]);
    refused(&a, &shop, &["get", "gnp", "pci-isolation"], &["pci-isolation"]);
    // The audit trail: the world's apply shows only the tenant's objects.
    let audit: serde_json::Value = serde_json::from_str(&as_shop(&["audit", "-o", "json"])).unwrap();
    let seen: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["entries"].as_array().unwrap().iter().map(|e| format!("{}:{}", e["kind"].as_str().unwrap(), e["name"].as_str().unwrap())))
        .collect();
    assert!(!seen.is_empty(), "the tenant sees the changes to its own objects");
    for forbidden in ["Pod:db", "GlobalNetworkPolicy:pci-isolation", "NetworkPolicy:db-trusts-backup", "Namespace:ops", "Token:shop"] {
        assert!(!seen.iter().any(|s| s == forbidden), "the tenant read {forbidden} in the audit trail: {seen:?}");
    }
    assert!(seen.iter().any(|s| s == "Pod:payment"), "{seen:?}");
}

fn raw(a: &Agent, head: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&a.socket).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for chunk in body.chunks(64 << 10) {
        if s.write_all(chunk).is_err() {
            break; // the server answered and closed: what we want
        }
    }
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(i) = text.find("\r\n\r\n")
                    && text[i..].contains('}')
                {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no response to {head:?}: {e} (got {:?})", String::from_utf8_lossy(&buf)),
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

fn head(method: &str, path: &str, token: &str, len: Option<usize>) -> String {
    let len = match len {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".into(),
    };
    format!("{method} {path} HTTP/1.1\r\nHost: porin\r\nAuthorization: Bearer {token}\r\nContent-Type: application/yaml\r\n{len}\r\n")
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 18 MB of a plausible manifest stream.
fn big_body(n: usize) -> Vec<u8> {
    let doc = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop, labels: {a: b}}\n---\n";
    doc.repeat(n / doc.len() + 1).into_bytes()
}

#[test]
fn permissions_and_budgets_come_before_the_body() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &["--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("world.yaml", WORLD)]);
    let ro = a.ok(&["token", "create", "viewer", "--role", "read-only"]).trim().to_string();
    let shop = a.ok(&["token", "create", "shop", "--role", "scoped", "--namespace", "shop", "--tier", "app"]).trim().to_string();
    let before = state(&a);

    // Announced but never sent: the answer cannot depend on the body.
    let (code, text) = raw(&a, &head("POST", "/porin/v1/apply", &ro, Some(18_000_000)), b"");
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("read-only"), "{text}");
    let (code, text) = raw(&a, &head("PUT", "/api/v1/namespaces/shop/pods/payment", &ro, Some(18_000_000)), b"");
    assert_eq!(code, 403, "{text}");
    let (code, text) = raw(&a, &head("POST", "/porin/v1/tokens", &shop, Some(1_000_000)), b"");
    assert_eq!(code, 403, "{text}");
    let (code, text) = raw(&a, &head("POST", "/porin/v1/apply", &shop, Some(9 << 20)), b"");
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("RequestEntityTooLarge") && text.contains("8388608"), "{text}");
    // A GET carries no body.
    let (code, text) = raw(&a, &head("GET", "/api/v1/pods", &ro, Some(1000)), b"");
    assert_eq!(code, 413, "{text}");

    // Really sent: the read-only token's bodies are never buffered, so the agent's memory does not move
    // (buffering even one of them would add 18 MB; parsing it, far more).
    let pid = a.child.id();
    let body = big_body(18_000_000);
    let rss0 = rss_kib(pid);
    for _ in 0..3 {
        let (code, text) = raw(&a, &head("POST", "/porin/v1/apply", &ro, Some(body.len())), &body);
        assert_eq!(code, 403, "{text}");
    }
    let grown = rss_kib(pid).saturating_sub(rss0);
    assert!(grown < 12 << 10, "the agent's RSS grew by {grown} KiB on refused bodies");

    // A scoped token streaming (chunked, no length) past its budget: 413 once the budget is exceeded.
    let mut chunked = Vec::new();
    for c in big_body(9 << 20).chunks(1 << 20) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (code, text) = raw(&a, &head("POST", "/porin/v1/apply", &shop, None), &chunked);
    assert_eq!(code, 413, "{text}");

    // Within the byte budget but over the document budget: 413 before validation or commit.
    let docs: String = (0..2001).map(|i| app_policy(&format!("p{i}"), "shop", "app") + "---\n").collect();
    let (code, text) = raw(&a, &head("POST", "/porin/v1/apply", &shop, Some(docs.len())), docs.as_bytes());
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("2001 documents"), "{text}");

    assert_eq!(state(&a), before, "a refused request changed the store");
    // The budgets do not get in the way of ordinary work.
    let (code, _, err) = a.porin_as(Some(&shop), &["apply", "-f", &a.write("mine.yaml", &app_policy("mine", "shop", "app"))]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn tokens_expire_rotate_and_revoke_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &["--dataplane", "none"]);
    a.ok(&["apply", "-f", &a.write("world.yaml", WORLD)]);
    let t1 = a.ok(&["token", "create", "shop", "--role", "scoped", "--namespace", "shop", "--tier", "app"]).trim().to_string();
    assert_eq!(a.porin_as(Some(&t1), &["get", "pods", "-n", "shop"]).0, 0);
    // Names are unique unless rotated.
    let (code, _, err) = a.porin(&["token", "create", "shop", "--role", "admin"]);
    assert!(code != 0 && err.contains("AlreadyExists") && err.contains("--rotate"), "{err}");
    assert_eq!(a.porin_as(Some(&t1), &["get", "pods", "-n", "shop"]).0, 0, "a refused create must not touch the existing token");
    let t2 = a.ok(&["token", "create", "shop", "--role", "scoped", "--namespace", "shop", "--tier", "app", "--rotate"]).trim().to_string();
    let (code, _, err) = a.porin_as(Some(&t1), &["get", "pods", "-n", "shop"]);
    assert!(code != 0 && err.contains("Unauthorized"), "the rotated-out token still works: {err}");
    let (code, _, err) = a.porin_as(Some(&t2), &["label", "pod", "-n", "shop", "frontend", "team=web"]);
    assert_eq!(code, 0, "{err}");
    // list: names and ids, never the tokens; admin only.
    let list = a.ok(&["token", "list", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let shop: Vec<&serde_json::Value> = v["items"].as_array().unwrap().iter().filter(|t| t["name"] == "shop").collect();
    assert_eq!(shop.len(), 1, "{list}");
    let id = shop[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 12);
    assert!(!list.contains(&t2) && !list.contains(&t1), "{list}");
    assert!(a.ok(&["token", "list"]).lines().any(|l| l.starts_with("shop ") && l.contains(&id) && l.contains("never")));
    let (code, _, err) = a.porin_as(Some(&t2), &["token", "list"]);
    assert!(code != 0 && err.contains("Forbidden"), "{err}");
    // The audit trail names the token's id with its name.
    let audit: serde_json::Value = serde_json::from_str(&a.ok(&["audit", "-o", "json"])).unwrap();
    assert!(
        audit.as_array().unwrap().iter().any(|r| r["user"] == "token:shop" && r["tokenId"] == id.as_str() && r["verb"] == "update"),
        "{audit:#}"
    );
    // Revoked: refused on the very next request.
    let out = a.ok(&["token", "revoke", "shop"]);
    assert!(out.contains(&id), "{out}");
    let (code, _, err) = a.porin_as(Some(&t2), &["get", "pods", "-n", "shop"]);
    assert!(code != 0 && err.contains("Unauthorized"), "{err}");
    let (code, _, err) = a.porin(&["token", "revoke", "shop"]);
    assert!(code != 0 && err.contains("NotFound"), "{err}");
    // The name is free again; a token with a lifetime is refused once it is over.
    let t3 = a.ok(&["token", "create", "shop", "--role", "read-only", "--ttl", "2s"]).trim().to_string();
    assert_eq!(a.porin_as(Some(&t3), &["get", "pods", "-n", "shop"]).0, 0);
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let (code, _, err) = a.porin_as(Some(&t3), &["get", "pods", "-n", "shop"]);
    assert!(code != 0 && err.contains("Unauthorized") && err.contains("expired"), "{err}");
}

/// ServiceAccount labels are what service-account selectors read: a tenant may not relabel, delete or create an
/// account (or a pod of one) so that a policy outside its scope sees it differently.
#[test]
fn a_tenant_token_cannot_change_what_service_account_selectors_see() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Agent::start(tmp.path(), &["--dataplane", "none"]);
    let world = r#"apiVersion: porin.io/v1
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
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: api, namespace: shop, labels: {role: backend}}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: shop, labels: {app: api}}
spec: {serviceAccountName: api}
status: {podIP: 10.0.0.20}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: backend-closed}
spec:
  tier: platform
  selector: all()
  serviceAccountSelector: role == 'backend'
  ingress: [{action: Deny}]
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: ops-trusts-frontends, namespace: ops}
spec:
  tier: app
  selector: all()
  ingress: [{action: Allow, source: {namespaceSelector: all(), serviceAccounts: {selector: role == 'frontend'}}}]
"#;
    a.ok(&["apply", "-f", &a.write("world.yaml", world)]);
    let shop = a.ok(&["token", "create", "shop", "--role", "scoped", "--namespace", "shop", "--tier", "app"]).trim().to_string();
    let before = a.ok(&["get", "sa,pods", "-A", "-o", "json"]);

    refused(&a, &shop, &["label", "sa", "-n", "shop", "api", "role-"], &["backend-closed", "platform", "no longer"]);
    refused(&a, &shop, &["delete", "sa", "-n", "shop", "api"], &["backend-closed", "delete"]);
    let frontend = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: shop, labels: {role: frontend}}\n";
    refused(&a, &shop, &["apply", "-f", &a.write("sa.yaml", frontend)], &["ops/ops-trusts-frontends", "newly"]);
    let api_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: api-2, namespace: shop}\nspec: {serviceAccountName: api}\n";
    refused(&a, &shop, &["apply", "-f", &a.write("pod.yaml", api_pod)], &["backend-closed", "newly"]);
    assert_eq!(a.ok(&["get", "sa,pods", "-A", "-o", "json"]), before, "a refused request changed the store");

    // Labels no outside policy reads are the tenant's.
    assert_eq!(a.porin_as(Some(&shop), &["label", "sa", "-n", "shop", "api", "team=web"]).0, 0);
    let plain = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: batch, namespace: shop, labels: {role: batch}}\n";
    let (code, _, err) = a.porin_as(Some(&shop), &["apply", "-f", &a.write("plain.yaml", plain)]);
    assert_eq!(code, 0, "{err}");
    // An admin may do what the tenant may not.
    a.ok(&["label", "sa", "-n", "shop", "api", "role-"]);
}
