//! The offline commands (`validate`, `trace`, `matrix`, `diff`) on manifest files, on the live agent's objects, or
//! on the live objects with files applied on top: loading and validating (every error to the caller's writer),
//! the protocols, peers and ports named on the command line resolved against a [`Cluster`], and the answers
//! rendered as tables or JSON.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::client::{Client, ClientArgs};
use crate::live::{fetch_live, overlay};
use crate::{Error, Result, cluster, pretty_json, printers};
use porin_model::{Document, Protocol, load_paths_partial, validate_set};
use porin_policy::{Cluster, Packet, Peer, Variant};

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

/// Load and validate manifests; on failure write every error (sorted by file, document, path) and the count to
/// `err` and return None: nothing is accepted.
pub fn load(files: &[PathBuf], err: &mut dyn Write) -> Result<Option<Vec<Document>>> {
    // Parse everything, validate what parsed, and report every problem of both kinds at once.
    let (docs, mut errors) = load_paths_partial(files);
    if let Err(e) = validate_set(&docs, &Default::default()) {
        errors.extend(e);
    }
    if errors.is_empty() {
        return Ok(Some(docs));
    }
    errors.sort_by(|a, b| (&a.input, a.doc, &a.path).cmp(&(&b.input, b.doc, &b.path)));
    for e in &errors {
        writeln!(err, "{e}").map_err(Error::write)?;
    }
    writeln!(err, "{} error(s); nothing was accepted", errors.len()).map_err(Error::write)?;
    Ok(None)
}

/// [`load`], then the policy model of what loaded.
pub fn build(files: &[PathBuf], err: &mut dyn Write) -> Result<Option<Cluster>> {
    let Some(docs) = load(files, err)? else { return Ok(None) };
    cluster(&docs).map(Some)
}

/// The live agent's objects with `changes` (validated files, may be empty) applied on top; None after
/// writing the errors to `err`.
pub fn live_docs(client: &ClientArgs, changes: &[PathBuf], err: &mut dyn Write) -> Result<Option<Vec<Document>>> {
    let changes = if changes.is_empty() {
        Vec::new()
    } else {
        let (docs, errors) = load_paths_partial(changes);
        if !errors.is_empty() {
            for e in &errors {
                writeln!(err, "{e}").map_err(Error::write)?;
            }
            writeln!(err, "{} error(s); nothing was accepted", errors.len()).map_err(Error::write)?;
            return Ok(None);
        }
        docs
    };
    let live = fetch_live(&Client::new(client))?;
    let docs = overlay(live, changes);
    if let Err(errors) = validate_set(&docs, &Default::default()) {
        for e in &errors {
            writeln!(err, "{e}").map_err(Error::write)?;
        }
        writeln!(err, "{} error(s) in the live objects with the changes applied", errors.len()).map_err(Error::write)?;
        return Ok(None);
    }
    Ok(Some(docs))
}

/// The model `trace` and `matrix` evaluate: files, or the live objects (plus files with `live`).
pub fn model(files: &[PathBuf], live: bool, client: &ClientArgs, err: &mut dyn Write) -> Result<Option<Cluster>> {
    if live || files.is_empty() {
        let Some(docs) = live_docs(client, files, err)? else { return Ok(None) };
        return cluster(&docs).map(Some);
    }
    build(files, err)
}

/// One connection `porin trace` explains: peers as NAMESPACE/POD or an address, the protocol by name or number.
#[derive(Debug, Clone)]
pub struct TraceQuery {
    pub from: String,
    pub to: String,
    pub port: Option<u16>,
    pub protocol: String,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

/// `porin trace`: the verdict for one connection and the tier, policy and rule that decided, as a table or JSON.
pub fn trace(c: &Cluster, q: &TraceQuery, json: bool) -> Result<String> {
    let src = peer(c, &q.from, "--from")?;
    let dst = peer(c, &q.to, "--to")?;
    let protocol = parse_protocol_number(&q.protocol)?;
    let ports = Protocol::from_number(protocol).is_some();
    if ports && q.port.is_none() {
        bail!("--port is required for {}", q.protocol.to_ascii_uppercase());
    }
    if !ports && q.port.is_some() {
        bail!("--port only applies to TCP, UDP and SCTP");
    }
    if q.icmp_type.is_some() && protocol != 1 && protocol != 58 {
        bail!("--icmp-type only applies to ICMP and ICMPv6");
    }
    let v6 = match (src, dst) {
        (Peer::Ip(ip), _) | (_, Peer::Ip(ip)) => ip.is_ipv6(),
        (Peer::Endpoint(s), Peer::Endpoint(d)) => {
            s.ip_of_family(false).is_none() || d.ip_of_family(false).is_none()
        }
    };
    let pkt = Packet { protocol, port: q.port, icmp: q.icmp_type.map(|t| (t, q.icmp_code)), v6 };
    let verdict = c.verdict(src, dst, &pkt);
    if json {
        return pretty_json(&printers::trace_json(&src, &dst, &pkt, &verdict));
    }
    Ok(printers::trace_table(&src, &dst, &pkt, &verdict))
}

/// `porin matrix`: who reaches whom per port (every declared port, or the one asked), grids or JSON.
pub fn matrix(c: &Cluster, port: Option<u16>, protocol: Option<&str>, staged: bool, json: bool) -> Result<String> {
    let ports = port_filter(c, port, protocol)?;
    if ports.is_empty() {
        bail!("no pod declares a containerPort: pass --port (and --protocol)");
    }
    let variant = if staged { Variant::Pending } else { Variant::Enforced };
    let matrices: Vec<_> = ports.iter().map(|(pr, p)| c.matrix(variant, *pr, *p)).collect();
    if json {
        return pretty_json(&serde_json::json!({ "matrices": matrices.iter().map(|m| m.to_json()).collect::<Vec<_>>() }));
    }
    Ok(matrices.iter().map(printers::matrix_table).collect::<Vec<_>>().join("\n"))
}

/// `porin diff`: the (from, to, port) pairs a change opens and closes, a list or JSON; a warning to `err` when
/// neither side holds a pod.
pub fn diff(old: &Cluster, new: &Cluster, port: Option<u16>, protocol: Option<&str>, json: bool, err: &mut dyn Write) -> Result<String> {
    let ports = match (port, protocol) {
        (None, None) => None,
        _ => {
            let mut p = port_filter(old, port, protocol)?;
            p.extend(port_filter(new, port, protocol)?);
            p.sort();
            p.dedup();
            Some(p)
        }
    };
    if old.endpoints.is_empty() && new.endpoints.is_empty() {
        writeln!(err, "warning: neither side holds a pod, so no reachability between pods can change; pass the pods' manifests too")
            .map_err(Error::write)?;
    }
    let d = porin_policy::diff::diff(old, new, ports.as_deref());
    if json {
        return pretty_json(&d);
    }
    Ok(printers::diff_table(&d))
}
