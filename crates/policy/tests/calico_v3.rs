//! Calico `projectcalico.org/v3` manifests (tests/fixtures/calico-v3) load unchanged and evaluate as Calico
//! would; Calico features Porin does not implement are rejected, each named by document and field path.

mod common;

use std::collections::BTreeSet;

use common::*;
use porin_model::{Kind, Protocol, load_paths, validate_set};
use porin_policy::{Cluster, Packet, Variant};

fn files() -> Vec<std::path::PathBuf> {
    ["namespaces.yaml", "pods-list.yaml", "tiers.yaml", "networksets.yaml", "policies.yaml"]
        .iter()
        .map(|f| fixture("calico-v3").join(f))
        .collect()
}

fn cluster() -> Cluster {
    let docs = load_paths(&files()).unwrap_or_else(|e| panic!("{e:#?}"));
    validate_set(&docs, &BTreeSet::new()).unwrap_or_else(|e| panic!("{e:#?}"));
    Cluster::build(docs.iter().map(|d| &d.resource)).unwrap()
}

const FRONTEND: &str = "storefront/frontend-6d4cf56db6-x7k2p";
const BACKEND: &str = "storefront/backend-7f9b8c-q2w3e";
const REDIS: &str = "database/redis-0";
const DNS: &str = "kube-system/coredns-5d78c9869d-abcde";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn calico_v3_kinds_load_unchanged() {
    let docs = load_paths(&files()).unwrap();
    let calico: Vec<_> = docs.iter().filter(|d| d.resource.api_version() == "projectcalico.org/v3").collect();
    let kinds: BTreeSet<Kind> = calico.iter().map(|d| d.resource.kind()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([Kind::Tier, Kind::NetworkPolicy, Kind::GlobalNetworkPolicy, Kind::GlobalNetworkSet, Kind::NetworkSet])
    );
    assert_eq!(calico.len(), 9);
    // Written back, the object is what was read: same apiVersion, kind and names.
    let gnp = calico.iter().find(|d| d.resource.name() == "security.quarantine").unwrap();
    let json = gnp.resource.to_json();
    assert_eq!(json["apiVersion"], "projectcalico.org/v3");
    assert_eq!(json["kind"], "GlobalNetworkPolicy");
    assert_eq!(json["spec"]["ingress"][0]["source"]["namespaceSelector"], "global()");
}

#[test]
fn kubectl_list_of_pods_with_noise_loads() {
    let docs = load_paths(&[fixture("calico-v3/pods-list.yaml")]).unwrap();
    assert_eq!(docs.len(), 4);
    assert!(docs.iter().all(|d| d.resource.kind() == Kind::Pod && d.doc == 1));
    assert_eq!(docs[2].prefix, "items[2]");
    validate_set(&docs, &BTreeSet::new()).unwrap();
    let c = Cluster::build(docs.iter().map(|d| &d.resource)).unwrap();
    let fe = &c.endpoints[c.endpoint(FRONTEND).unwrap()];
    assert_eq!(fe.ips, vec!["10.48.0.10".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(fe.service_account, "default");
    assert_eq!(fe.labels.get("app").map(String::as_str), Some("frontend"));
    let dns = &c.endpoints[c.endpoint(DNS).unwrap()];
    assert_eq!(dns.resolve_named_port("dns", Protocol::Udp), Some(53));
    assert_eq!(dns.resolve_named_port("dns", Protocol::Tcp), None);
}

#[test]
fn calico_v3_policies_evaluate_as_expected() {
    let c = cluster();
    let names: Vec<&str> = c.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["security", "platform", "default"]);

    // frontend -> backend on the backend's named port `http` (8080).
    let v = tcp(&c, FRONTEND, BACKEND, 8080);
    assert!(v.allowed);
    assert_eq!(eh(&v), s(&["security|security.quarantine|1|pass", "platform|platform.allow-dns|-1|pass"]));
    assert_eq!(
        ih(&v),
        s(&["security|security.quarantine|1|pass", "default|storefront/allow-frontend-to-backend|0|allow"])
    );
    assert!(!tcp(&c, FRONTEND, BACKEND, 8081).allowed);
    // backend -> redis, logged by the first rule, allowed by the second.
    let v = tcp(&c, BACKEND, REDIS, 6379);
    assert!(v.allowed);
    assert_eq!(
        ih(&v),
        s(&[
            "security|security.quarantine|1|pass",
            "default|database/allow-backend-to-redis|0|log",
            "default|database/allow-backend-to-redis|1|allow",
        ])
    );
    // frontend -> redis: logged, then end of the default tier.
    let v = tcp(&c, FRONTEND, REDIS, 6379);
    assert!(!v.allowed);
    assert_eq!(ih(&v)[2], "default|database/allow-backend-to-redis|-1|deny");
    // Office addresses (a NetworkSet in storefront) reach the frontend on 80 and 443-444 only.
    assert!(tcp(&c, "203.0.113.9", FRONTEND, 80).allowed);
    assert!(tcp(&c, "203.0.113.9", FRONTEND, 444).allowed);
    assert!(!tcp(&c, "203.0.113.9", FRONTEND, 8080).allowed);
    assert!(!tcp(&c, "192.0.2.1", FRONTEND, 80).allowed);
    assert!(!tcp(&c, BACKEND, FRONTEND, 80).allowed);
    // The threat feed is denied both ways by the security tier, whatever lower tiers say.
    let v = tcp(&c, "198.51.100.5", FRONTEND, 80);
    assert!(!v.allowed);
    assert_eq!(ih(&v), s(&["security|security.quarantine|0|deny"]));
    let v = tcp(&c, BACKEND, "198.51.100.5", 443);
    assert_eq!(eh(&v), s(&["security|security.quarantine|0|deny"]));
    // Everyone may resolve names over UDP; kube-dns itself is selected only by the security tier.
    let v = udp(&c, REDIS, DNS, 53);
    assert!(v.allowed);
    assert_eq!(eh(&v), s(&["security|security.quarantine|1|pass", "platform|platform.allow-dns|0|allow"]));
    assert_eq!(ih(&v), s(&["security|security.quarantine|1|pass"]));
    // IPv6 packet to an address in the feed's v6 range.
    let v6 = Packet { protocol: 6, port: Some(443), icmp: None, v6: true };
    assert!(!verdict(&c, "2001:db8:bad::1", FRONTEND, v6).allowed);

    for port in [53, 80, 6379, 8080] {
        for proto in [Protocol::Tcp, Protocol::Udp] {
            assert_eq!(c.matrix(Variant::Enforced, proto, port), c.matrix_reference(Variant::Enforced, proto, port));
        }
    }
}

#[test]
fn unsupported_calico_fields_are_rejected_by_doc_and_path() {
    let path = fixture("calico-v3/unsupported/unsupported.yaml");
    let docs = load_paths(&[&path]).unwrap();
    let errors: Vec<String> = validate_set(&docs, &BTreeSet::new()).unwrap_err().iter().map(|e| e.to_string()).collect();
    let f = path.display().to_string();
    let want: Vec<String> = [
        "doc 1: spec.ingress[0].http: HTTP (L7) rules are not supported by Porin yet",
        "doc 2: spec.egress[0].destination.services: Service matches are not supported by Porin yet",
        "doc 3: spec.egress[0].destination.domains: domain (FQDN) matches are not supported by Porin yet",
        "doc 4: spec.doNotTrack: host-endpoint policy is not supported by Porin yet",
        "doc 4: spec.applyOnForward: host-endpoint policy is not supported by Porin yet",
        "doc 5: spec.preDNAT: host-endpoint policy is not supported by Porin yet",
        "doc 5: spec.applyOnForward: host-endpoint policy is not supported by Porin yet",
        "doc 6: spec.ingress[0].source.ports: source ports are not supported by Porin yet",
        "doc 7: spec.allowedEgressDomains: domain-based network sets are not supported by Porin yet",
        "doc 8: spec.stagedAction: Learn is not supported (Set or Delete)",
    ]
    .iter()
    .map(|e| format!("{f} {e}"))
    .collect();
    assert_eq!(errors, want);
}
