//! Service-account selectors see the ServiceAccount object's labels. Calico turns each Kubernetes
//! ServiceAccount into a profile `ksa.<namespace>.<name>` whose labels are the object's labels plus
//! `projectcalico.org/name` = the account's name (libcalico-go lib/backend/k8s/conversion/conversion.go,
//! ServiceAccountToProfile, keys prefixed `pcsa.`); a policy's `serviceAccountSelector` and a rule's
//! `serviceAccounts.selector` are rewritten onto those `pcsa.` keys (libcalico-go
//! lib/backend/syncersv1/updateprocessors: prefixAndAppendSelector, parseServiceAccounts), so they match a pod
//! through the account of the pod's own namespace, and never through the pod's labels.

use porin_model::Protocol;
use porin_policy::{Cluster, Variant};

mod common;
use common::*;

fn pod(ns: &str, name: &str, sa: &str, app: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}
spec:
  serviceAccountName: {sa}
  containers: [{{name: c, image: x, ports: [{{containerPort: 5432}}]}}]
status: {{podIP: {ip}}}
"
    )
}

fn sa(ns: &str, name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\n")
}

const POLICIES: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: backend-closed}
spec:
  selector: all()
  serviceAccountSelector: role == 'backend'
  types: [Ingress]
  ingress:
    - action: Deny
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db-from-frontend}
spec:
  selector: app == 'db'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      source: {serviceAccounts: {selector: role == 'frontend'}}
      destination: {ports: [5432]}
"#;

/// The cluster with shop/web's ServiceAccount labelled `web_labels`.
fn cluster(web_labels: &str) -> Cluster {
    let docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n".to_string(),
        // secrets and automountServiceAccountToken are accepted and ignored.
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: api, namespace: shop, labels: {role: backend}}\n\
         secrets: [{name: api-token}]\nautomountServiceAccountToken: false\n"
            .to_string(),
        sa("shop", "web", web_labels),
        sa("shop", "batch", "role: batch"),
        // Same name as shop/api, other namespace, no role: a pod in `other` never borrows shop's labels.
        sa("other", "api", ""),
        // Claims another account's name through a label: the name label is always the account's own.
        sa("shop", "spoof", "projectcalico.org/name: web, role: spoof"),
        pod("shop", "api-1", "api", "api", "10.0.0.1"),
        pod("shop", "api-2", "api", "api", "10.0.0.2"),
        pod("shop", "web-a", "web", "web", "10.0.0.3"),
        pod("shop", "web-b", "batch", "web", "10.0.0.4"),
        pod("shop", "web-s", "spoof", "web", "10.0.0.5"),
        // No ServiceAccount object: only the name label.
        pod("shop", "db", "db", "db", "10.0.0.6"),
        pod("other", "api-1", "api", "api", "10.0.1.1"),
        POLICIES.to_string(),
    ];
    build_text(&docs.join("---\n"))
}

fn matrix_agrees(c: &Cluster) {
    for v in [Variant::Enforced, Variant::Pending] {
        for port in [5432, 80] {
            assert_eq!(c.matrix(v, Protocol::Tcp, port), c.matrix_reference(v, Protocol::Tcp, port), "{v:?} TCP {port}");
        }
    }
}

#[test]
fn service_account_selector_matches_the_service_accounts_labels() {
    let c = cluster("role: frontend");
    // backend-closed selects pods whose ServiceAccount is labelled role=backend, in their own namespace.
    assert!(!tcp(&c, "shop/web-a", "shop/api-1", 5432).allowed);
    assert_eq!(ih(&tcp(&c, "shop/web-a", "shop/api-2", 5432)), ["default|backend-closed|0|deny"]);
    assert!(tcp(&c, "shop/web-a", "other/api-1", 5432).allowed, "other/api has no role label");
    assert!(ih(&tcp(&c, "shop/web-a", "other/api-1", 5432)).is_empty());
    // The pod's own labels are not the account's: app=api is not role=backend and the reverse.
    assert!(tcp(&c, "shop/api-1", "shop/web-a", 5432).allowed);

    // A rule's serviceAccounts.selector: only frontend accounts reach the db.
    assert!(tcp(&c, "shop/web-a", "shop/db", 5432).allowed);
    assert_eq!(ih(&tcp(&c, "shop/web-a", "shop/db", 5432)), ["default|db-from-frontend|0|allow"]);
    for from in ["shop/web-b", "shop/web-s", "shop/api-1", "other/api-1"] {
        assert!(!tcp(&c, from, "shop/db", 5432).allowed, "{from} -> shop/db");
    }

    // The name label: the account's own name, also without an object, and never a label's claim.
    let ep = |id: &str| &c.endpoints[c.endpoint(id).unwrap()];
    assert_eq!(ep("shop/db").sa_labels, [("projectcalico.org/name".to_string(), "db".to_string())].into());
    assert_eq!(ep("shop/web-s").sa_labels.get("projectcalico.org/name").map(String::as_str), Some("spoof"));
    assert_eq!(ep("shop/api-1").sa_labels.get("role").map(String::as_str), Some("backend"));
    assert_eq!(ep("other/api-1").sa_labels.get("role"), None);
    matrix_agrees(&c);
}

#[test]
fn names_match_the_name_label_with_or_without_an_object() {
    let c = build_text(&format!(
        "{}---\n{}---\n{}---\n{}---\n{}",
        pod("shop", "db", "db", "db", "10.0.0.6"),
        pod("shop", "web-a", "web", "web", "10.0.0.3"),
        pod("shop", "web-s", "spoof", "web", "10.0.0.5"),
        sa("shop", "spoof", "projectcalico.org/name: web"),
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: by-name}
spec:
  serviceAccountSelector: projectcalico.org/name in {'db', 'web'}
  types: [Ingress]
  ingress:
    - action: Deny
"#
    ));
    // db and web have no ServiceAccount object: their name label alone selects them.
    assert!(!tcp(&c, "shop/web-s", "shop/db", 5432).allowed);
    assert!(!tcp(&c, "shop/web-s", "shop/web-a", 5432).allowed);
    // spoof's object claims the name `web` through a label; the name label is the account's own.
    assert!(tcp(&c, "shop/db", "shop/web-s", 5432).allowed);
    matrix_agrees(&c);
}

#[test]
fn changing_the_service_accounts_labels_changes_the_verdict() {
    let before = cluster("role: frontend");
    let after = cluster("role: backend");
    assert!(tcp(&before, "shop/web-a", "shop/db", 5432).allowed);
    assert!(!tcp(&after, "shop/web-a", "shop/db", 5432).allowed, "web is no longer a frontend account");
    assert!(tcp(&before, "shop/api-1", "shop/web-a", 5432).allowed);
    assert!(!tcp(&after, "shop/api-1", "shop/web-a", 5432).allowed, "web is now a backend account: closed");
    // No ServiceAccount object at all for web: only its name, so neither frontend nor backend.
    let gone = cluster("");
    assert!(!tcp(&gone, "shop/web-a", "shop/db", 5432).allowed);
    assert!(tcp(&gone, "shop/api-1", "shop/web-a", 5432).allowed);
    matrix_agrees(&after);
    matrix_agrees(&gone);
}

#[test]
fn pods_of_differently_labelled_accounts_never_share_a_class() {
    let c = cluster("role: frontend");
    let classes = c.endpoint_classes(false);
    let class = |id: &str| classes[c.endpoint(id).unwrap()];
    // Same namespace and pod labels, different accounts: a policy tells them apart.
    assert_ne!(class("shop/web-a"), class("shop/web-b"));
    assert_ne!(class("shop/web-a"), class("shop/web-s"));
    // Same account: indistinguishable.
    assert_eq!(class("shop/api-1"), class("shop/api-2"));
    // And the class-shared matrix says what per-pair evaluation says.
    let m = c.matrix(Variant::Enforced, Protocol::Tcp, 5432);
    let pair = |a: &str, b: &str| m.allowed(c.endpoint(a).unwrap(), c.endpoint(b).unwrap());
    assert!(pair("shop/web-a", "shop/db"));
    assert!(!pair("shop/web-b", "shop/db"));
    assert!(!pair("shop/web-s", "shop/db"));
    matrix_agrees(&c);
}
