//! Shared builders for the flow tests: raw events and a small cluster for the enricher.
#![allow(dead_code)]

use std::net::IpAddr;

use porin_abi::RawEvent;
use porin_abi::{Direction, Event, EventType, Reason};
use porin_flow::record::TcpFlags;
use porin_flow::{AggregationLevel, AggregatorConfig, EndpointMeta, MapEnricher, PendingVerdict, TimeBase};

pub const SEC: u64 = 1_000_000_000;
/// Unix time of monotonic 0 in these tests: 2024-05-06T07:00:00Z.
pub const EPOCH: u64 = 1_714_978_800 * SEC;

pub const WEB1: u32 = 11; // prod/web-7d9f-abcde, 10.0.0.11
pub const WEB2: u32 = 12; // prod/web-7d9f-fghij, 10.0.0.12
pub const DB: u32 = 13; // prod/db-0, 10.0.0.13
pub const ID_DB: u32 = 1013;
pub const ID_WEB1: u32 = 1011;
pub const ID_WEB2: u32 = 1012;
pub const ID_WORLD: u32 = 2;
pub const RULE_ALLOW_DB: u32 = 100;
pub const RULE_DENY_WORLD: u32 = 101;
pub const RULE_DEFAULT_DENY: u32 = 102;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn cfg(level: AggregationLevel) -> AggregatorConfig {
    AggregatorConfig { level, node: "node-1".into(), time_base: TimeBase::from_offset(i128::from(EPOCH)), ..Default::default() }
}

pub fn enricher() -> MapEnricher {
    let web = |pod: &str| EndpointMeta::pod("prod", pod, Some("web"), &[("app", "web"), ("pod-template-hash", pod)]);
    let db = EndpointMeta::pod("prod", "db-0", Some("db"), &[("app", "db"), ("tier", "data")]);
    MapEnricher::default()
        .with_endpoint(WEB1, web("web-7d9f-abcde"))
        .with_endpoint(WEB2, web("web-7d9f-fghij"))
        .with_endpoint(DB, db.clone())
        .with_identity(ID_DB, db)
        .with_identity(ID_WEB1, web("web-7d9f-abcde"))
        .with_identity(ID_WEB2, web("web-7d9f-fghij"))
        .with_identity(ID_WORLD, EndpointMeta::world())
        .with_rule(RULE_ALLOW_DB, &["security|prod.allow-web-db|0|pass", "default|prod/knp.default.db|1|allow"])
        .with_rule(RULE_DENY_WORLD, &["security|global.no-egress|2|deny"])
        .with_rule(RULE_DEFAULT_DENY, &["default|prod/knp.default.db|-1|deny"])
        .with_pending(WEB1, ID_WORLD, 0, PendingVerdict::WouldAllow, &["staged:security|global.allow-dns|0|allow"])
}

/// An event as the dataplane decodes it.
#[allow(clippy::too_many_arguments)]
pub fn ev(kind: EventType, dir: Direction, ts_s: f64, ep: u32, peer: u32, rule: u32, src: &str, sport: u16, dst: &str, dport: u16) -> Event {
    let reason = match kind {
        EventType::NewAllowed => Reason::AllowNew,
        EventType::Denied => Reason::DropPolicyDeny,
        EventType::Close | EventType::Progress => Reason::AllowEstablished,
        EventType::Revoked => Reason::DropRevoked,
    };
    Event {
        ts_ns: (ts_s * SEC as f64) as u64,
        kind,
        dir,
        reason,
        proto: 6,
        tcp_flags: match kind {
            EventType::NewAllowed | EventType::Denied => TcpFlags::SYN,
            EventType::Close => TcpFlags::FIN | TcpFlags::ACK,
            EventType::Revoked | EventType::Progress => TcpFlags::ACK,
        },
        endpoint_id: ep,
        peer_identity: peer,
        rule_id: rule,
        policy_rev: 1,
        ifindex: 7,
        src: Some(ip(src)),
        dst: Some(ip(dst)),
        sport,
        dport,
        packets: 1,
        bytes: 60,
        first_ts_ns: (ts_s * SEC as f64) as u64,
    }
}

/// The ring-buffer bytes of an event (the BPF program's layout).
pub fn raw(e: &Event) -> Vec<u8> {
    let addr = |a: Option<IpAddr>| {
        let mut b = [0u8; 16];
        match a {
            Some(IpAddr::V4(v)) => b[..4].copy_from_slice(&v.octets()),
            Some(IpAddr::V6(v)) => b = v.octets(),
            None => {}
        }
        b
    };
    let r = RawEvent {
        ts_ns: e.ts_ns,
        packets: e.packets,
        bytes: e.bytes,
        endpoint_id: e.endpoint_id,
        peer_identity: e.peer_identity,
        rule_id: e.rule_id,
        ifindex: e.ifindex,
        policy_rev: e.policy_rev,
        r#type: e.kind as u8,
        dir: e.dir as u8,
        family: match e.src {
            Some(IpAddr::V4(_)) => 4,
            Some(IpAddr::V6(_)) => 6,
            None => 0,
        },
        proto: e.proto,
        reason: e.reason as u8,
        tcp_flags: e.tcp_flags,
        src: addr(e.src),
        dst: addr(e.dst),
        sport: e.sport,
        dport: e.dport,
        ..Default::default()
    };
    r.as_bytes().to_vec()
}

/// web-1 (egress) opens to db:5432, db replies; web-1's close arrives from the reply side.
pub fn web_to_db_connection(sport: u16, t0: f64) -> Vec<Event> {
    use Direction::*;
    use EventType::*;
    let mut close = ev(Close, Ingress, t0 + 2.0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.13", 5432, "10.0.0.11", sport);
    close.packets = 8; // reply-direction totals of the conntrack entry
    close.bytes = 4000;
    vec![ev(NewAllowed, Egress, t0, WEB1, ID_DB, RULE_ALLOW_DB, "10.0.0.11", sport, "10.0.0.13", 5432), close]
}
