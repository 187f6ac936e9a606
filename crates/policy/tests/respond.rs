//! Incident response and decoys in the engine (docs/design/respond.md): a Quarantine record, not a label of
//! the pod's manifest, isolates a pod; the system tiers precede every user tier whatever its order; a decoy
//! answers only on its ports and reaches nothing, whatever an app team's policy allows. Expectations are
//! written from those rules, not read off the engine.

mod common;

use common::*;

fn example() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/respond/cluster.yaml");
    std::fs::read_to_string(p).unwrap()
}

/// What `porin quarantine app/client` stores: the tier, its policy, the record.
const QUARANTINE: &str = r#"
apiVersion: porin.io/v1
kind: Tier
metadata: {name: porin-quarantine}
spec: {defaultAction: Deny}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: porin-quarantine.isolate}
spec:
  tier: porin-quarantine
  order: 0
  selector: porin.io/quarantined == 'true'
  types: [Ingress, Egress]
  ingress: [{action: Pass, source: {selector: "porin.io/role == 'monitoring'"}}, {action: Deny}]
  egress:
    - {action: Pass, protocol: UDP, destination: {selector: "k8s-app == 'kube-dns'", ports: [53]}}
    - {action: Pass, protocol: TCP, destination: {selector: "k8s-app == 'kube-dns'", ports: [53]}}
    - {action: Deny}
"#;

const RECORD: &str = r#"
apiVersion: porin.io/v1
kind: Quarantine
metadata: {name: client, namespace: app}
spec: {reason: test}
"#;

fn with_ips(text: &str) -> String {
    // Pod addresses, as the lab or the CNI would set them.
    let mut out = String::new();
    for (i, doc) in text.split("\n---\n").enumerate() {
        out.push_str(doc);
        if doc.contains("kind: Pod") {
            out.push_str(&format!("\nstatus: {{podIP: 10.0.0.{}}}", i + 1));
        }
        out.push_str("\n---\n");
    }
    out
}

#[test]
fn a_quarantine_record_isolates_its_pod_before_every_user_tier_but_passes_dns_and_monitoring() {
    let c = build_text(&with_ips(&format!("{}\n---\n{QUARANTINE}\n---\n{RECORD}", example())));
    let v = tcp(&c, "app/client", "app/server", 80);
    assert!(!v.allowed, "the platform tier (order -1e9, allow all) must not beat the quarantine");
    assert_eq!(hits(egress(&v)), vec!["porin-quarantine|porin-quarantine.isolate|2|deny"]);
    let v = tcp(&c, "app/worker", "app/client", 80);
    assert!(!v.allowed);
    assert_eq!(hits(ingress(&v)), vec!["porin-quarantine|porin-quarantine.isolate|1|deny"]);
    // DNS and monitoring are passed on to the user tiers (which allow them here).
    let v = udp(&c, "app/client", "kube-system/dns", 53);
    assert!(v.allowed);
    assert_eq!(hits(egress(&v))[0], "porin-quarantine|porin-quarantine.isolate|0|pass");
    assert!(tcp(&c, "app/client", "kube-system/dns", 53).allowed);
    assert!(!tcp(&c, "app/client", "kube-system/dns", 80).allowed);
    assert!(tcp(&c, "monitoring/prometheus", "app/client", 9090).allowed);
    // Others are not selected by the quarantine.
    assert!(tcp(&c, "app/worker", "app/server", 80).allowed);
}

#[test]
fn only_the_record_quarantines_a_manifest_label_neither_quarantines_nor_releases() {
    // The tier and policy exist, no record: the client is free, even if its manifest claims the label.
    let forged = example().replace("labels: {app: client}", "labels: {app: client, porin.io/quarantined: \"true\"}");
    let c = build_text(&with_ips(&format!("{forged}\n---\n{QUARANTINE}")));
    assert!(tcp(&c, "app/client", "app/server", 80).allowed, "a manifest's label is not a quarantine");
    // With the record, a manifest saying otherwise does not release it.
    let denied = example().replace("labels: {app: client}", "labels: {app: client, porin.io/quarantined: \"false\"}");
    let c = build_text(&with_ips(&format!("{denied}\n---\n{QUARANTINE}\n---\n{RECORD}")));
    assert!(!tcp(&c, "app/client", "app/server", 80).allowed, "a manifest's label released the quarantine");
    assert_eq!(c.endpoints[c.endpoint("app/client").unwrap()].labels["porin.io/quarantined"], "true");
}

#[test]
fn system_tiers_come_first_in_their_fixed_order() {
    let c = build_text(&format!("{}\n---\n{QUARANTINE}\n---\napiVersion: porin.io/v1\nkind: Tier\nmetadata: {{name: porin-block}}\nspec: {{defaultAction: Pass}}\n", example()));
    let names: Vec<&str> = c.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(&names[..3], &["porin-quarantine", "porin-block", "platform"], "{names:?}");
}

const HONEYPOD: &str = r#"
apiVersion: porin.io/v1
kind: Honeypod
metadata: {name: mysql-backup, namespace: shop}
spec: {labels: {app: db}, ports: [{port: 3306}, {port: 53, protocol: UDP}]}
"#;

const DECOY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: scanner, namespace: shop, labels: {app: web}}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
status: {podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: mysql-backup, namespace: shop, labels: {app: db}}
status: {podIP: 10.1.0.3}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: shop}
spec: {selector: all(), types: [Ingress, Egress], ingress: [{action: Allow}], egress: [{action: Allow}]}
"#;

#[test]
fn a_decoy_answers_on_its_ports_only_and_reaches_nothing_whatever_the_app_policy_allows() {
    let c = build_text(&format!("{DECOY}\n---\n{HONEYPOD}"));
    let v = tcp(&c, "shop/scanner", "shop/mysql-backup", 3306);
    assert!(v.allowed);
    assert_eq!(hits(ingress(&v)), vec!["porin-honeypod|porin-honeypod.shop.mysql-backup|0|allow"]);
    assert!(udp(&c, "shop/scanner", "shop/mysql-backup", 53).allowed);
    assert!(!tcp(&c, "shop/scanner", "shop/mysql-backup", 80).allowed, "allow-all opened a decoy port");
    assert!(!tcp(&c, "shop/mysql-backup", "shop/db", 80).allowed, "a decoy reached a workload");
    assert!(!tcp(&c, "shop/mysql-backup", "10.9.9.9", 443).allowed, "a decoy reached the world");
    // The real db, with the same app labels, is untouched.
    assert!(tcp(&c, "shop/scanner", "shop/db", 80).allowed);
    // Without the Honeypod, the pod is an ordinary workload.
    let c = build_text(DECOY);
    assert!(tcp(&c, "shop/scanner", "shop/mysql-backup", 80).allowed);
}
