//! Staged policies: StagedNetworkPolicy, StagedGlobalNetworkPolicy and StagedKubernetesNetworkPolicy.
//! `stagedAction: Set` replaces (or adds) the same-named policy of the same family in the pending pass,
//! `Delete` removes it. The enforced verdict never changes; pending hits name `staged:` policies.

mod common;

use common::*;
use porin_model::Protocol;
use porin_policy::{Cluster, Variant, Verdict};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn pih(v: &Verdict) -> Vec<String> {
    hits(pending_ingress(v))
}

const ENFORCED: &str = r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: api-ingress, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {selector: app == 'web'}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: deny-dev}
spec:
  order: 10
  selector: app == 'pg'
  ingress:
    - action: Deny
      source: {namespaceSelector: env == 'dev'}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-api, namespace: app}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from:
        - podSelector: {matchLabels: {app: api}}
"#;

const STAGED: &str = r#"
# Set: replace app/api-ingress with a version that only admits pg.
apiVersion: porin.io/v1
kind: StagedNetworkPolicy
metadata: {name: api-ingress, namespace: app}
spec:
  stagedAction: Set
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {selector: app == 'pg', namespaceSelector: all()}
---
# Set (default action) with a new name: added to the pending pass, in a tier of its own.
apiVersion: porin.io/v1
kind: Tier
metadata: {name: sec}
spec: {order: 10}
---
apiVersion: porin.io/v1
kind: StagedNetworkPolicy
metadata: {name: no-tool, namespace: dev}
spec:
  tier: sec
  selector: app == 'tool'
  types: [Egress]
  egress:
    - action: Deny
      destination: {nets: [10.1.0.0/16]}
    - action: Pass
---
# Delete: the GlobalNetworkPolicy deny-dev goes away.
apiVersion: porin.io/v1
kind: StagedGlobalNetworkPolicy
metadata: {name: deny-dev}
spec:
  tier: default
  stagedAction: Delete
---
# Set: the K8s policy web-from-api would admit pg instead.
apiVersion: porin.io/v1
kind: StagedKubernetesNetworkPolicy
metadata: {name: web-from-api, namespace: app}
spec:
  stagedAction: Set
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {team: b}}
"#;

fn both() -> (Cluster, Cluster) {
    (build(ENFORCED), build(&format!("{ENFORCED}\n---\n{STAGED}")))
}

#[test]
fn enforced_verdicts_are_unchanged_by_staged_policies() {
    let (plain, staged) = both();
    assert!(!plain.has_staged && staged.has_staged);
    for from in ["app/web", "app/api", "db/pg", "dev/tool", "192.0.2.10"] {
        for to in ["app/web", "app/api", "db/pg", "dev/tool"] {
            for port in [80, 8080, 9090, 5432] {
                let a = tcp(&plain, from, to, port);
                let b = tcp(&staged, from, to, port);
                assert_eq!(a.enforced, b.enforced, "{from} -> {to}:{port}");
                assert_eq!(b.allowed, b.enforced.allowed);
                // Without staged policies, pending is enforced.
                assert_eq!(a.pending, a.enforced);
            }
        }
    }
    for port in [8080, 9090, 5432] {
        assert_eq!(
            plain.matrix(Variant::Enforced, Protocol::Tcp, port),
            staged.matrix(Variant::Enforced, Protocol::Tcp, port)
        );
    }
}

#[test]
fn staged_set_replaces_the_same_named_policy_in_pending() {
    let (_, c) = both();
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed && v.enforced.allowed && !v.pending.allowed);
    assert_eq!(ih(&v), s(&["default|app/api-ingress|0|allow"]));
    assert_eq!(pih(&v), s(&["default|app/staged:api-ingress|-1|deny"]));
    let v = tcp(&c, "db/pg", "app/api", 9090);
    assert!(!v.allowed && v.pending.allowed);
    assert_eq!(ih(&v), s(&["default|app/api-ingress|-1|deny"]));
    assert_eq!(pih(&v), s(&["default|app/staged:api-ingress|0|allow"]));
}

#[test]
fn staged_set_with_a_new_name_adds_a_policy() {
    let (_, c) = both();
    let v = tcp(&c, "dev/tool", "app/web", 8080);
    let eg = v.pending.egress.as_ref().unwrap();
    assert_eq!(hits(eg), s(&["sec|dev/staged:no-tool|0|deny"]));
    assert!(eh(&v).is_empty(), "nothing selects tool's egress in the enforced set");
    // Outside 10.1/16 the staged policy passes: no later tier selects tool's egress.
    let v = tcp(&c, "dev/tool", "db/pg", 5432);
    assert_eq!(hits(v.pending.egress.as_ref().unwrap()), s(&["sec|dev/staged:no-tool|1|pass"]));
}

#[test]
fn staged_delete_removes_the_policy_in_pending() {
    let (_, c) = both();
    let v = tcp(&c, "dev/tool", "db/pg", 5432);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["default|deny-dev|0|deny"]));
    assert!(v.pending.allowed);
    assert!(pih(&v).is_empty());
    assert_eq!(pending_ingress(&v).reason, "no policy selects db/pg for ingress: default allow");
}

#[test]
fn staged_kubernetes_policy_set_and_delete() {
    let (_, c) = both();
    let v = tcp(&c, "app/api", "app/web", 8080);
    assert!(v.allowed && !v.pending.allowed);
    assert_eq!(ih(&v), s(&["default|app/knp.web-from-api|0|allow"]));
    assert_eq!(pih(&v), s(&["default|app/staged:knp.web-from-api|-1|deny"]));
    let v = tcp(&c, "db/pg", "app/web", 8080);
    assert!(!v.allowed && v.pending.allowed);
    assert_eq!(pih(&v), s(&["default|app/staged:knp.web-from-api|0|allow"]));

    let c = build(&format!(
        "{ENFORCED}\n---\n{}",
        r#"
apiVersion: porin.io/v1
kind: StagedKubernetesNetworkPolicy
metadata: {name: web-from-api, namespace: app}
spec: {stagedAction: Delete}
"#
    ));
    let v = tcp(&c, "db/pg", "app/web", 8080);
    assert!(!v.allowed && v.pending.allowed);
    assert!(pih(&v).is_empty());
}

#[test]
fn staged_policies_only_replace_their_own_family() {
    // A StagedNetworkPolicy named like the K8s policy is a different policy: it is added, not substituted.
    let c = build(&format!(
        "{ENFORCED}\n---\n{}",
        r#"
apiVersion: porin.io/v1
kind: StagedNetworkPolicy
metadata: {name: web-from-api, namespace: app}
spec:
  order: 1
  selector: app == 'web'
  ingress:
    - action: Log
"#
    ));
    let v = tcp(&c, "app/api", "app/web", 8080);
    assert_eq!(pih(&v), s(&["default|app/staged:web-from-api|0|log", "default|app/knp.web-from-api|0|allow"]));
    // A staged Delete of a name that does not exist changes nothing.
    let c = build(&format!(
        "{ENFORCED}\n---\n{}",
        r#"
apiVersion: porin.io/v1
kind: StagedNetworkPolicy
metadata: {name: nothing-here, namespace: app}
spec: {stagedAction: Delete}
"#
    ));
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert_eq!(v.pending, v.enforced);
}

#[test]
fn pending_matrix_matches_the_reference() {
    let (_, c) = both();
    for v in [Variant::Enforced, Variant::Pending] {
        for port in [8080, 9090, 5432] {
            assert_eq!(c.matrix(v, Protocol::Tcp, port), c.matrix_reference(v, Protocol::Tcp, port));
        }
    }
    assert_ne!(c.matrix(Variant::Enforced, Protocol::Tcp, 9090), c.matrix(Variant::Pending, Protocol::Tcp, 9090));
}
