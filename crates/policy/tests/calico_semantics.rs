//! Calico semantics the engine must match exactly. Every expected verdict comes from Calico's own source (cited
//! per test: libcalico-go's v3 validator and rule conversion, felix's calc-graph rule scanner), not from
//! Porin's engine. The cluster is `tests/fixtures/tiers/cluster.yaml` (see its header for pods, IPs, labels,
//! named ports and network sets).

mod common;

use common::*;

/// Calico: a rule with only named ports and no protocol is valid (libcalico-go lib/validator/v3/validator.go,
/// validateRule: `rule.Protocol == nil` only requires `numorstring.AllPortsAreNamed`). Felix renders such a
/// named port as an IP set of (IP, protocol, port) members whose protocol is the container port's own: with no
/// rule protocol it builds the set with `ipsetmember.ProtocolAny` (felix calc/rule_scanner.go,
/// ruleToParsedRule / namedPortsToIPSets).
#[test]
fn named_ports_without_protocol_take_the_container_ports_protocol() {
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: named, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      destination: {ports: [metrics, dns]}
"#,
    );
    // api: metrics=9091 (TCP by default), dns=5353/UDP, http=9090/TCP.
    assert!(tcp(&c, "app/web", "app/api", 9091).allowed);
    assert_eq!(ih(&tcp(&c, "app/web", "app/api", 9091)), ["default|app/named|0|allow"]);
    assert!(udp(&c, "app/web", "app/api", 5353).allowed);
    // The name fixes the protocol: TCP to the UDP port, UDP to the TCP port, and unnamed ports do not match.
    assert!(!tcp(&c, "app/web", "app/api", 5353).allowed);
    assert!(!udp(&c, "app/web", "app/api", 9091).allowed);
    assert!(!tcp(&c, "app/web", "app/api", 9090).allowed);
    assert_eq!(ih(&tcp(&c, "app/web", "app/api", 9090)), ["default|app/named|-1|deny"]);
    // Egress with a named destination port resolves on the destination pod.
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: out, namespace: dev}
spec:
  selector: all()
  egress:
    - action: Allow
      destination: {ports: [pg]}
"#,
    );
    assert!(tcp(&c, "dev/tool", "db/pg", 5432).allowed);
    assert!(!udp(&c, "dev/tool", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "dev/tool", "app/api", 5432).allowed, "api has no port named pg");
}

/// Calico: in a namespaced policy a rule that uses only `notSelector` is still limited to the policy's
/// namespace: getEndpointSelector (libcalico-go lib/backend/syncersv1/updateprocessors/rules.go) adds
/// `projectcalico.org/namespace == '<ns>'` as the positive selector "as soon as _any_ of the selector fields
/// are used, including NotSelector"; felix then folds the notSelector into it (calc/rule_scanner.go,
/// combineMatchesIfPossible).
#[test]
fn not_selector_alone_in_a_namespaced_policy_stays_in_the_namespace() {
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: not-frontend, namespace: db}
spec:
  selector: app == 'pg'
  ingress:
    - action: Allow
      source: {notSelector: role == 'frontend'}
"#,
    );
    // The policy is in db: app/api (not a frontend, but in app) does not match, nor does dev/tool or an IP.
    for from in ["app/api", "app/web", "dev/tool", "203.0.113.5", "192.0.2.1", "198.51.100.1"] {
        let v = tcp(&c, from, "db/pg", 5432);
        assert!(!v.allowed, "{from}");
        assert_eq!(ih(&v), ["default|db/not-frontend|-1|deny"], "{from}");
    }
    // db/backup (a NetworkSet in db, role=external) is in the namespace and not a frontend.
    assert!(tcp(&c, "100.64.0.1", "db/pg", 5432).allowed);
    // In a GlobalNetworkPolicy the same rule has no positive selector: everything but frontends matches.
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: not-frontend}
spec:
  selector: app == 'pg'
  ingress:
    - action: Allow
      source: {notSelector: role == 'frontend'}
"#,
    );
    for from in ["app/api", "dev/tool", "203.0.113.5", "192.0.2.1", "100.64.0.1"] {
        assert!(tcp(&c, from, "db/pg", 5432).allowed, "{from}");
    }
    assert!(!tcp(&c, "app/web", "db/pg", 5432).allowed);
}

/// A GlobalNetworkSet labelled `role=blocked` that holds web's IP (10.1.0.10).
const BLOCKED_SET: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: blocked
  labels: {role: blocked}
spec:
  nets: [10.1.0.10/32, 203.0.113.0/24]
"#;

/// Calico: with a positive selector, `notSelector` is folded into it and evaluated per object, `(selector) &&
/// !(notSelector)` (felix calc/rule_scanner.go, combineMatchesIfPossible: "use them to filter down the positive
/// selector"); without one it is its own IP set, excluding every IP any matching object holds ("the negative
/// match criteria should match packets that come from outside the set of known endpoints too"). So a network
/// set that matches notSelector and holds a pod's IP excludes that pod only in the second case.
#[test]
fn not_selector_is_folded_per_object_with_a_selector_and_an_ip_set_without() {
    let c = build(&format!(
        r#"{BLOCKED_SET}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: folded}}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {{selector: has(app), notSelector: role == 'blocked'}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: ip-set}}
spec:
  selector: app == 'pg'
  ingress:
    - action: Allow
      source: {{notSelector: role == 'blocked'}}
"#
    ));
    // Folded: web has `app` and is not itself role=blocked, so it is in the positive set; the network set
    // holding its IP does not matter. 203.0.113.5 belongs to no object with `app`.
    let v = tcp(&c, "app/web", "app/api", 9090);
    assert!(v.allowed);
    assert_eq!(ih(&v), ["default|folded|0|allow"]);
    assert!(!tcp(&c, "203.0.113.5", "app/api", 9090).allowed);
    // IP set: web's IP is in the `role=blocked` set, so web is excluded, as is every IP of the set; any other
    // source matches, known or not.
    let v = tcp(&c, "app/web", "db/pg", 5432);
    assert!(!v.allowed);
    assert_eq!(ih(&v), ["default|ip-set|-1|deny"]);
    assert!(!tcp(&c, "203.0.113.5", "db/pg", 5432).allowed);
    assert!(tcp(&c, "dev/tool", "db/pg", 5432).allowed);
    assert!(tcp(&c, "198.18.0.1", "db/pg", 5432).allowed);
}

/// Calico: a rule's namespaceSelector is rewritten with the `pcns.` prefix and evaluated on the labels each
/// object inherits from its namespace (getEndpointSelector in libcalico-go updateprocessors/rules.go,
/// parseSelectorAttachPrefix). A GlobalNetworkSet has no namespace profile (globalnetworksetprocessor.go sets
/// only its own labels), so `env != 'dev'` is true for it; a namespaced NetworkSet inherits its namespace's
/// labels (networksetprocessor.go: ProfileIDs `kns.<ns>`, label projectcalico.org/namespace).
#[test]
fn namespace_selector_not_equal_matches_global_network_sets() {
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: not-dev}
spec:
  selector: app == 'pg'
  ingress:
    - action: Allow
      source: {namespaceSelector: env != 'dev'}
"#,
    );
    // Pods of app (env=prod), app/monitoring (198.51.100.1, in app), db/backup, and the global set partners.
    for from in ["app/web", "app/api", "198.51.100.1", "100.64.0.1", "192.0.2.1"] {
        assert!(tcp(&c, from, "db/pg", 5432).allowed, "{from}");
    }
    // dev's pod, and an IP in no set.
    assert!(!tcp(&c, "dev/tool", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "203.0.113.5", "db/pg", 5432).allowed);
}

/// Calico: in a rule's namespaceSelector `global()` becomes `!has(projectcalico.org/namespace)` and `all()`
/// becomes `has(projectcalico.org/namespace)` (libcalico-go updateprocessors/rules.go, getEndpointSelector):
/// global() selects only global network sets, all() every namespaced object (pods and NetworkSets) and no
/// global set. A namespaced NetworkSet carries projectcalico.org/namespace (networksetprocessor.go), so a
/// global policy's selector can name it.
#[test]
fn global_and_all_in_a_namespace_selector() {
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: only-global}
spec:
  selector: app == 'pg'
  ingress:
    - action: Allow
      source: {namespaceSelector: global(), selector: role == 'external'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: all-namespaces}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {namespaceSelector: all(), selector: role == 'external'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: by-namespace-label}
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
      source: {selector: projectcalico.org/namespace == 'db'}
"#,
    );
    assert!(tcp(&c, "192.0.2.1", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "198.51.100.1", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "100.64.0.1", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "app/web", "db/pg", 5432).allowed);

    assert!(!tcp(&c, "192.0.2.1", "app/api", 9090).allowed);
    assert!(tcp(&c, "198.51.100.1", "app/api", 9090).allowed);
    assert!(tcp(&c, "100.64.0.1", "app/api", 9090).allowed);

    assert!(tcp(&c, "100.64.0.1", "app/web", 8080).allowed, "db/backup is labelled with its namespace");
    assert!(tcp(&c, "db/pg", "app/web", 8080).allowed);
    assert!(!tcp(&c, "198.51.100.1", "app/web", 8080).allowed);
    assert!(!tcp(&c, "192.0.2.1", "app/web", 8080).allowed);
    // A namespaced policy's namespaceSelector on a NetworkSet: the set's namespace labels decide.
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: team-b, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {namespaceSelector: team == 'b'}
"#,
    );
    assert!(tcp(&c, "100.64.0.1", "app/api", 9090).allowed);
    assert!(tcp(&c, "db/pg", "app/api", 9090).allowed);
    assert!(!tcp(&c, "198.51.100.1", "app/api", 9090).allowed);
    assert!(!tcp(&c, "192.0.2.1", "app/api", 9090).allowed, "a global set has no team label");
}

/// Calico rejects global() combined with anything else in a namespaceSelector (libcalico-go
/// validator.go, validateEntityRule: "If the namespaceSelector contains global(), then it should be the only
/// selector").
#[test]
fn global_must_be_the_whole_namespace_selector() {
    let text = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: mixed}
spec:
  ingress:
    - action: Allow
      source: {namespaceSelector: global() || env == 'dev'}
"#;
    let docs = porin_model::parse_documents("m.yaml", text).unwrap();
    let e = porin_model::validate_set(&docs, &Default::default()).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "spec.ingress[0].source.namespaceSelector");
}

/// Calico renders a named port as an IP set of the endpoints that match the rule's positive selector and
/// carry the port (felix calc/rule_scanner.go, ruleToParsedRule / namedPortsToIPSets: "if there's a selector
/// for the relevant direction, we filter the named port by the selector"). A network set that matches the
/// selector and holds a pod's IP puts the IP in the selector's IP set, so a numeric port matches; but the pod
/// itself does not match, so its named port is not in the named-port set.
#[test]
fn a_named_port_resolves_only_on_an_endpoint_that_matches_by_itself() {
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: web-mirror
  labels: {mirror: web}
spec:
  nets: [10.1.0.10/32]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: by-name}
spec:
  selector: app == 'tool'
  types: [Egress]
  egress:
    - action: Allow
      destination: {selector: mirror == 'web', ports: [http]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: by-number}
spec:
  selector: app == 'pg'
  types: [Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination: {selector: mirror == 'web', ports: [8080]}
"#,
    );
    let v = tcp(&c, "dev/tool", "app/web", 8080);
    assert!(!v.allowed);
    assert_eq!(eh(&v), ["default|by-name|-1|deny"]);
    let v = tcp(&c, "db/pg", "app/web", 8080);
    assert!(v.allowed);
    assert_eq!(eh(&v), ["default|by-number|0|allow"]);
}

/// Calico compares every selector field with "" and treats an empty one as not given (libcalico-go
/// updateprocessors/rules.go, getEndpointSelector; NotSrcSelector/NotDstSelector are copied as they are and
/// felix renders no IP set for ""); `serviceAccounts: {}` yields no selector (parseServiceAccounts). So
/// `notSelector: ""` excludes nothing (a Deny rule with it still denies everything) and `selector: ""` does
/// not limit a rule to known endpoints.
#[test]
fn empty_selector_strings_are_not_given() {
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-all-but, namespace: db}
spec:
  selector: app == 'pg'
  ingress:
    - action: Deny
      source: {notSelector: "", serviceAccounts: {}}
    - action: Allow
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: open}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {selector: "", namespaceSelector: ""}
"#,
    );
    for from in ["app/web", "db/pg", "203.0.113.5"] {
        let v = tcp(&c, from, "db/pg", 5432);
        assert!(!v.allowed, "{from}");
        assert_eq!(ih(&v), ["default|db/deny-all-but|0|deny"], "{from}");
    }
    assert!(tcp(&c, "203.0.113.5", "app/api", 9090).allowed, "an external IP matches a rule with no selector");
}

/// `all()` is replaced inside any namespaceSelector expression, not only alone (libcalico-go
/// updateprocessors/rules.go, getEndpointSelector: `strings.Replace(nsSelector, "all()", ...)`): `!all()`
/// selects what has no namespace (global sets), `all() && team == 'b'` namespaced objects of team b only.
#[test]
fn all_inside_a_namespace_selector_expression() {
    let c = build(
        r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: not-all}
spec:
  selector: app == 'pg'
  ingress:
    - action: Allow
      source: {namespaceSelector: "!all()"}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: all-and-team}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {namespaceSelector: "all() && team != 'a'"}
"#,
    );
    assert!(tcp(&c, "192.0.2.1", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "100.64.0.1", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "app/web", "db/pg", 5432).allowed);
    // team != 'a': db (team b) and dev (no team) and their sets, not app, and not the global set.
    assert!(tcp(&c, "db/pg", "app/api", 9090).allowed);
    assert!(tcp(&c, "dev/tool", "app/api", 9090).allowed);
    assert!(tcp(&c, "100.64.0.1", "app/api", 9090).allowed);
    assert!(!tcp(&c, "app/web", "app/api", 9090).allowed);
    assert!(!tcp(&c, "192.0.2.1", "app/api", 9090).allowed, "all() is false for a global set");
}
