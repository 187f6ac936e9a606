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
    (objs, audit["items"].as_array().map_or(0, |v| v.len()))
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
    let new_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: sneaky, namespace: shop, labels: {role: backup}}\nstatus: {podIP: 10.0.0.99}\n";
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
