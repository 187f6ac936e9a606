//! Each rule field (namespace selectors, service accounts, network sets, nets, selectors, ports, protocols, ICMP, IP version), Calico semantics.

use super::*;

#[test]
fn global_policy_with_namespace_selector() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: prod-no-dev}
spec:
  namespaceSelector: env == 'prod'
  ingress:
    - action: Deny
      source: {namespaceSelector: env == 'dev'}
    - action: Allow
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: db-by-name}
spec:
  order: 1
  namespaceSelector: projectcalico.org/name == 'db'
  ingress:
    - action: Log
"#,
    );
    assert_eq!(ih(&tcp(&c, "dev/tool", "app/api", 9090)), s(&["default|prod-no-dev|0|deny"]));
    assert_eq!(ih(&tcp(&c, "app/web", "app/api", 9090)), s(&["default|prod-no-dev|1|allow"]));
    assert_eq!(
        ih(&tcp(&c, "dev/tool", "db/pg", 5432)),
        s(&["default|db-by-name|0|log", "default|prod-no-dev|0|deny"])
    );
    // tool's namespace is not prod: not selected.
    let v = tcp(&c, "app/web", "dev/tool", 80);
    assert!(v.allowed && ih(&v).is_empty());
}

#[test]
fn service_account_selector_and_service_account_rules() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: sa-pol, namespace: app}
spec:
  serviceAccountSelector: projectcalico.org/name == 'api'
  ingress:
    - action: Allow
      source:
        serviceAccounts: {names: [web]}
"#,
    );
    // Selected by service account: api, not web.
    let v = tcp(&c, "app/api", "app/web", 8080);
    assert!(v.allowed && ih(&v).is_empty());
    assert_eq!(ih(&tcp(&c, "app/web", "app/api", 9090)), s(&["default|app/sa-pol|0|allow"]));
    // dev/tool also runs as a service account named `web`, but in another namespace: a namespaced policy's
    // serviceAccounts match is scoped to its own namespace (Calico ANDs it with the namespace selector).
    assert_eq!(ih(&tcp(&c, "dev/tool", "app/api", 9090)), s(&["default|app/sa-pol|-1|deny"]));
    // An IP has no service account.
    assert_eq!(ih(&tcp(&c, "192.0.2.10", "app/api", 9090)), s(&["default|app/sa-pol|-1|deny"]));

    // The same rule in a GlobalNetworkPolicy matches the account in every namespace; with a namespaceSelector,
    // only in those namespaces.
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: sa-any}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source:
        serviceAccounts: {names: [web]}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: sa-dev}
spec:
  selector: app == 'pg'
  ingress:
    - action: Allow
      source:
        namespaceSelector: env == 'dev'
        serviceAccounts: {selector: projectcalico.org/name == 'web'}
"#,
    );
    assert!(tcp(&c, "app/web", "app/api", 9090).allowed);
    assert!(tcp(&c, "dev/tool", "app/api", 9090).allowed);
    assert!(!tcp(&c, "db/pg", "app/api", 9090).allowed);
    assert!(tcp(&c, "dev/tool", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "app/web", "db/pg", 5432).allowed);
}

#[test]
fn network_sets_as_peers() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: ext-global}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {selector: role == 'external', namespaceSelector: global()}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: ext-same-ns, namespace: db}
spec:
  selector: app == 'pg'
  ingress:
    - action: Allow
      source: {selector: role == 'external'}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: ext-any}
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
      source: {selector: role == 'external'}
---
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: ext-team-b, namespace: dev}
spec:
  selector: app == 'tool'
  ingress:
    - action: Allow
      source: {selector: role == 'external', namespaceSelector: team == 'b'}
"#,
    );
    let allowed = |from: &str, to: &str| tcp(&c, from, to, 80).allowed;
    // global(): only the GlobalNetworkSet.
    assert_eq!(ih(&tcp(&c, "192.0.2.10", "app/api", 80)), s(&["default|ext-global|0|allow"]));
    assert!(!allowed("198.51.100.7", "app/api"));
    assert!(!allowed("100.64.0.5", "app/api"));
    assert!(!allowed("203.0.113.5", "app/api"));
    // A namespaced policy without namespaceSelector: sets of its own namespace only.
    assert!(allowed("100.64.0.5", "db/pg"));
    assert!(!allowed("198.51.100.7", "db/pg"));
    assert!(!allowed("192.0.2.10", "db/pg"));
    // A global policy without namespaceSelector: every set.
    assert!(allowed("192.0.2.10", "app/web"));
    assert!(allowed("198.51.100.7", "app/web"));
    assert!(allowed("100.64.0.5", "app/web"));
    assert!(!allowed("203.0.113.5", "app/web"));
    // A namespaceSelector picks the namespaced sets of those namespaces (db has team=b), not global ones.
    assert!(allowed("100.64.0.5", "dev/tool"));
    assert!(!allowed("198.51.100.7", "dev/tool"));
    assert!(!allowed("192.0.2.10", "dev/tool"));
    // The selector matches the set's labels; pods carry no role=external label.
    assert!(!allowed("app/web", "app/api"));
}

#[test]
fn nets_and_not_nets() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: nets, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {nets: [10.0.0.0/8], notNets: [10.3.0.0/16]}
"#,
    );
    assert!(tcp(&c, "app/web", "app/api", 9090).allowed);
    assert!(tcp(&c, "db/pg", "app/api", 9090).allowed);
    assert!(!tcp(&c, "dev/tool", "app/api", 9090).allowed);
    assert!(!tcp(&c, "192.0.2.10", "app/api", 9090).allowed);
    assert!(tcp(&c, "10.200.0.1", "app/api", 9090).allowed);
}

#[test]
fn selector_and_not_selector() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: not-web, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      source: {notSelector: app == 'web'}
---
apiVersion: porin.io/v1
kind: GlobalNetworkPolicy
metadata: {name: has-app-not-web}
spec:
  selector: app == 'pg'
  ingress:
    - action: Allow
      source: {selector: has(app), notSelector: app == 'web'}
"#,
    );
    // notSelector alone (namespaced policy): Calico scopes the rule to the policy's namespace as soon as
    // notSelector is used (libcalico-go updateprocessors/rules.go, getEndpointSelector), and folds notSelector
    // into that positive selector (felix calc/rule_scanner.go, combineMatchesIfPossible): objects of `app`
    // other than web match, a NetworkSet of `app` included; other namespaces and plain IPs do not.
    assert!(!tcp(&c, "app/web", "app/api", 9090).allowed);
    assert!(!tcp(&c, "db/pg", "app/api", 9090).allowed);
    assert!(!tcp(&c, "dev/tool", "app/api", 9090).allowed);
    assert!(!tcp(&c, "203.0.113.5", "app/api", 9090).allowed);
    assert!(tcp(&c, "198.51.100.1", "app/api", 9090).allowed, "app/monitoring is in app and not app=web");
    assert!(!tcp(&c, "192.0.2.1", "app/api", 9090).allowed, "a global set is in no namespace");
    // selector + notSelector: endpoints with `app`, except web; an IP has no labels.
    assert!(tcp(&c, "app/api", "db/pg", 5432).allowed);
    assert!(tcp(&c, "dev/tool", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "app/web", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "203.0.113.5", "db/pg", 5432).allowed);
}

#[test]
fn ports_not_ports_and_ranges() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: ports, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: ["9000:9100", 7000], notPorts: [9091]}
"#,
    );
    let ok = |port| tcp(&c, "app/web", "app/api", port).allowed;
    assert!(ok(9000) && ok(9090) && ok(9100) && ok(7000));
    assert!(!ok(9091) && !ok(8999) && !ok(9101) && !ok(7001));
    // The rule says TCP: UDP on an allowed port does not match.
    assert!(!udp(&c, "app/web", "app/api", 9090).allowed);
}

#[test]
fn named_ports_resolve_on_the_destination_pod() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: egress-http, namespace: dev}
spec:
  selector: app == 'tool'
  types: [Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination: {ports: [http]}
    - action: Allow
      protocol: UDP
      destination: {ports: [dns]}
"#,
    );
    // `http` is 9090 on api and 8080 on web.
    assert_eq!(eh(&tcp(&c, "dev/tool", "app/api", 9090)), s(&["default|dev/egress-http|0|allow"]));
    assert!(!tcp(&c, "dev/tool", "app/api", 8080).allowed);
    assert!(tcp(&c, "dev/tool", "app/web", 8080).allowed);
    assert!(!tcp(&c, "dev/tool", "app/web", 9090).allowed);
    // pg has no port named http; a bare IP has no named ports at all.
    assert!(!tcp(&c, "dev/tool", "db/pg", 5432).allowed);
    assert!(!tcp(&c, "dev/tool", "192.0.2.10", 8080).allowed);
    // `dns` is UDP 5353 on api only; the name is looked up with the packet's protocol.
    assert_eq!(eh(&udp(&c, "dev/tool", "app/api", 5353)), s(&["default|dev/egress-http|1|allow"]));
    assert!(!tcp(&c, "dev/tool", "app/api", 5353).allowed);
}

#[test]
fn protocol_and_not_protocol() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: proto, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Deny
      notProtocol: UDP
      source: {nets: [10.3.0.0/16]}
    - action: Allow
      protocol: 17
    - action: Allow
      protocol: SCTP
"#,
    );
    let v = |from: &str, proto: Protocol| verdict(&c, from, "app/api", Packet::l4(proto, 9090));
    assert_eq!(ih(&v("dev/tool", Protocol::Tcp)), s(&["default|app/proto|0|deny"]));
    assert_eq!(ih(&v("dev/tool", Protocol::Udp)), s(&["default|app/proto|1|allow"]));
    assert_eq!(ih(&v("app/web", Protocol::Sctp)), s(&["default|app/proto|2|allow"]));
    assert_eq!(ih(&v("app/web", Protocol::Tcp)), s(&["default|app/proto|-1|deny"]));
}

#[test]
fn icmp_type_and_code() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: icmp, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      protocol: ICMP
      icmp: {type: 8, code: 0}
    - action: Allow
      protocol: ICMP
      notICMP: {type: 3}
      source: {nets: [10.2.0.0/16]}
"#,
    );
    let ping = |from: &str, t: u8, code: Option<u8>| {
        verdict(&c, from, "app/api", Packet { protocol: 1, port: None, icmp: Some((t, code)), v6: false })
    };
    assert_eq!(ih(&ping("app/web", 8, Some(0))), s(&["default|app/icmp|0|allow"]));
    assert!(!ping("app/web", 8, Some(1)).allowed);
    assert!(!ping("app/web", 0, Some(0)).allowed);
    // notICMP type 3: everything but destination-unreachable, from pg only.
    assert_eq!(ih(&ping("db/pg", 0, Some(0))), s(&["default|app/icmp|1|allow"]));
    assert!(!ping("db/pg", 3, Some(1)).allowed);
    assert!(!ping("app/web", 0, None).allowed);
    // Not ICMP at all: neither rule matches.
    assert!(!tcp(&c, "app/web", "app/api", 9090).allowed);
}

#[test]
fn ip_version() {
    let c = build(
        r#"
apiVersion: porin.io/v1
kind: NetworkPolicy
metadata: {name: v6-only, namespace: app}
spec:
  selector: app == 'api'
  ingress:
    - action: Allow
      ipVersion: 6
      source: {nets: ["fd00::/64"]}
    - action: Allow
      ipVersion: 4
      source: {nets: [10.3.0.0/16]}
"#,
    );
    let v6 = Packet { protocol: 6, port: Some(9090), icmp: None, v6: true };
    let v4 = Packet::l4(Protocol::Tcp, 9090);
    assert_eq!(ih(&verdict(&c, "dev/tool", "app/api", v6)), s(&["default|app/v6-only|0|allow"]));
    assert_eq!(ih(&verdict(&c, "dev/tool", "app/api", v4)), s(&["default|app/v6-only|1|allow"]));
    // web has no IPv6 address: the v6 rule's nets cannot match it; its v4 address is outside 10.3/16.
    assert!(!verdict(&c, "app/web", "app/api", v6).allowed);
    assert!(!verdict(&c, "app/web", "app/api", v4).allowed);
}
