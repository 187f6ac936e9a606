//! Helpers shared by the tiered-policy tests: build a cluster from the fixture plus inline YAML, ask for a
//! verdict, and print hits as `tier|policy|rule|action`.

#![allow(dead_code)]

use std::path::PathBuf;

use porin_model::{Protocol, parse_documents, validate_set};
use porin_policy::{Cluster, Packet, Peer, SideVerdict, Verdict};

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(rel)
}

/// The `tiers/cluster.yaml` fixture plus `extra` (a YAML stream), validated and built.
pub fn build(extra: &str) -> Cluster {
    let base = std::fs::read_to_string(fixture("tiers/cluster.yaml")).unwrap();
    build_text(&format!("{base}\n---\n{extra}"))
}

pub fn build_text(text: &str) -> Cluster {
    let docs = parse_documents("test.yaml", text).unwrap_or_else(|e| panic!("parse: {e:#?}"));
    validate_set(&docs, &Default::default()).unwrap_or_else(|e| panic!("validate: {e:#?}"));
    Cluster::build(docs.iter().map(|d| &d.resource)).unwrap()
}

/// `ns/name` is a pod, anything else an IP address.
pub fn peer<'a>(c: &'a Cluster, s: &str) -> Peer<'a> {
    match c.endpoint(s) {
        Some(i) => Peer::Endpoint(&c.endpoints[i]),
        None => Peer::Ip(s.parse().unwrap_or_else(|_| panic!("{s} is neither a pod nor an IP"))),
    }
}

pub fn verdict(c: &Cluster, from: &str, to: &str, pkt: Packet) -> Verdict {
    c.verdict(peer(c, from), peer(c, to), &pkt)
}

pub fn tcp(c: &Cluster, from: &str, to: &str, port: u16) -> Verdict {
    verdict(c, from, to, Packet::l4(Protocol::Tcp, port))
}

pub fn udp(c: &Cluster, from: &str, to: &str, port: u16) -> Verdict {
    verdict(c, from, to, Packet::l4(Protocol::Udp, port))
}

pub fn hits(s: &SideVerdict) -> Vec<String> {
    s.hits.iter().map(|h| h.to_string()).collect()
}

/// Enforced ingress side at the destination.
pub fn ingress(v: &Verdict) -> &SideVerdict {
    v.enforced.ingress.as_ref().expect("destination is a pod")
}

/// Enforced egress side at the source.
pub fn egress(v: &Verdict) -> &SideVerdict {
    v.enforced.egress.as_ref().expect("source is a pod")
}

pub fn pending_ingress(v: &Verdict) -> &SideVerdict {
    v.pending.ingress.as_ref().expect("destination is a pod")
}

/// Enforced ingress hits as strings.
pub fn ih(v: &Verdict) -> Vec<String> {
    hits(ingress(v))
}

/// Enforced egress hits as strings.
pub fn eh(v: &Verdict) -> Vec<String> {
    hits(egress(v))
}
