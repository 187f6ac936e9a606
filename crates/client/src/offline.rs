//! Questions to the policy model as the offline commands ask them (`trace`, `matrix`, `diff`): protocols, peers and
//! ports named on the command line, resolved against a [`Cluster`].

use std::net::IpAddr;

use crate::Result;
use porin_model::Protocol;
use porin_policy::{Cluster, Peer};

pub fn parse_l4(s: &str) -> Result<Protocol> {
    Protocol::from_name(s).ok_or_else(|| invalid!("--protocol {s:?}: expected TCP, UDP or SCTP"))
}

pub fn parse_protocol_number(s: &str) -> Result<u8> {
    match s.to_ascii_uppercase().as_str() {
        "ICMP" => Ok(1),
        "ICMPV6" => Ok(58),
        other => match Protocol::from_name(other) {
            Some(p) => Ok(p.number()),
            None => other
                .parse::<u8>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid!("--protocol {s:?}: expected TCP, UDP, SCTP, ICMP, ICMPv6 or 1-255")),
        },
    }
}

pub fn peer<'a>(c: &'a Cluster, s: &str, flag: &str) -> Result<Peer<'a>> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(match c.endpoint_by_ip(ip) {
            Some(i) => Peer::Endpoint(&c.endpoints[i]),
            None => Peer::Ip(ip),
        });
    }
    if !s.contains('/') {
        bail!("{flag} {s:?}: expected NAMESPACE/POD or an IP address");
    }
    match c.endpoint(s) {
        Some(i) => Ok(Peer::Endpoint(&c.endpoints[i])),
        None => bail!("{flag} {s:?}: no such pod in the model"),
    }
}

pub fn port_filter(c: &Cluster, port: Option<u16>, protocol: Option<&str>) -> Result<Vec<(Protocol, u16)>> {
    let proto = protocol.map(parse_l4).transpose()?;
    Ok(match (port, proto) {
        (Some(p), Some(pr)) => vec![(pr, p)],
        (Some(p), None) => {
            let declared: Vec<_> = c.declared_ports().into_iter().filter(|(_, q)| *q == p).collect();
            if declared.is_empty() { vec![(Protocol::Tcp, p)] } else { declared }
        }
        (None, pr) => c.declared_ports().into_iter().filter(|(x, _)| pr.is_none_or(|pr| pr == *x)).collect(),
    })
}
