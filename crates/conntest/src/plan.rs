//! A case's peers resolved to concrete endpoints and addresses. A peer that stands for several endpoints or
//! addresses (a selector, a CIDR, a network set) is expanded to all of them; a CIDR to one address per interval
//! between the boundaries where a verdict may change.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use porin_model::conntest::{ConnectivityTestSpec, PeerRef, PeerSpec, TestCase};
use porin_model::load::join_path;
use porin_model::{Document, ManifestError, Object, Resource};
use porin_policy::{Cluster, Peer};
use porin_selector::Selector;

/// One case, with its peers resolved to concrete endpoints and addresses.
pub(crate) struct Plan<'c> {
    pub(crate) test: String,
    pub(crate) index: usize,
    pub(crate) case: TestCase,
    pub(crate) sources: Vec<Peer<'c>>,
    pub(crate) destinations: Vec<Peer<'c>>,
}

pub(crate) fn plan<'c>(c: &'c Cluster, tests: &[Document]) -> Result<Vec<Plan<'c>>, Vec<ManifestError>> {
    let bounds = boundaries(c);
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for d in tests {
        let Resource::ConnectivityTest(Object::<ConnectivityTestSpec> { metadata, spec, .. }) = &d.resource else {
            continue;
        };
        for (i, case) in spec.cases.iter().enumerate() {
            let err = |field: &str, msg: String| {
                ManifestError::new(
                    &d.source,
                    Some(d.doc),
                    join_path(&d.prefix, &format!("spec.cases[{i}].{field}")),
                    msg,
                )
            };
            let from = expand(c, &bounds, &case.from).map_err(|m| err("from", m));
            let to = expand(c, &bounds, &case.to).map_err(|m| err("to", m));
            match (from, to) {
                (Ok(sources), Ok(destinations)) => {
                    let pairs = sources.iter().flat_map(|s| destinations.iter().map(move |t| (s, t)));
                    if pairs.filter(|(s, t)| !same(s, t)).count() == 0 {
                        errors.push(err("to", "every destination is the source itself: nothing to check".into()));
                        continue;
                    }
                    plans.push(Plan {
                        test: metadata.name.clone(),
                        index: i,
                        case: case.clone(),
                        sources,
                        destinations,
                    });
                }
                (f, t) => {
                    errors.extend(f.err());
                    errors.extend(t.err());
                }
            }
        }
    }
    if errors.is_empty() { Ok(plans) } else { Err(errors) }
}

pub(crate) fn same(a: &Peer<'_>, b: &Peer<'_>) -> bool {
    match (a, b) {
        (Peer::Endpoint(x), Peer::Endpoint(y)) => x.id() == y.id(),
        (Peer::Ip(x), Peer::Ip(y)) => x == y,
        _ => false,
    }
}

/// Addresses at which a verdict may change: starts and ends+1 of every CIDR policies and network sets mention,
/// and every pod address and the one after it.
fn boundaries(c: &Cluster) -> BTreeSet<(bool, u128)> {
    let mut out = BTreeSet::new();
    for n in porin_policy::ir::all_cidrs(c) {
        let (v6, lo, hi) = range(&n);
        out.insert((v6, lo));
        if let Some(next) = hi.checked_add(1) {
            out.insert((v6, next));
        }
    }
    for e in &c.endpoints {
        for ip in &e.ips {
            let (v6, x) = num(*ip);
            out.insert((v6, x));
            out.insert((v6, x + 1));
        }
    }
    out
}

fn num(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn range(n: &IpNet) -> (bool, u128, u128) {
    let (v6, lo) = num(n.network());
    let (_, hi) = num(n.broadcast());
    (v6, lo, hi)
}

fn addr(v6: bool, x: u128) -> IpAddr {
    if v6 { IpAddr::V6(x.into()) } else { IpAddr::V4(u32::try_from(x).expect("an IPv4 address").into()) }
}

/// One representative address per interval of constant verdict inside `n`.
fn points(bounds: &BTreeSet<(bool, u128)>, n: &IpNet, out: &mut Vec<IpAddr>) {
    let (v6, lo, hi) = range(n);
    out.push(addr(v6, lo));
    if lo < hi {
        out.extend(bounds.range((v6, lo + 1)..=(v6, hi)).map(|(_, x)| addr(v6, *x)));
    }
}

fn at<'c>(c: &'c Cluster, ip: IpAddr) -> Peer<'c> {
    match c.endpoint_by_ip(ip) {
        Some(i) => Peer::Endpoint(&c.endpoints[i]),
        None => Peer::Ip(ip),
    }
}

/// The endpoints or addresses a peer stands for; an empty set is an input error.
fn expand<'c>(c: &'c Cluster, bounds: &BTreeSet<(bool, u128)>, p: &PeerSpec) -> Result<Vec<Peer<'c>>, String> {
    let r = p.resolve()?;
    let mut ips = Vec::new();
    match &r {
        PeerRef::Pod { namespace, name } => {
            let id = format!("{namespace}/{name}");
            return match c.endpoint(&id) {
                Some(i) => Ok(vec![Peer::Endpoint(&c.endpoints[i])]),
                None => Err(format!("no pod {id} in the model")),
            };
        }
        PeerRef::Selector { namespace, selector } => {
            let sel = Selector::parse(selector).map_err(|e| format!("selector {selector:?}: {e}"))?;
            let found: Vec<Peer<'c>> = c
                .endpoints
                .iter()
                .filter(|e| namespace.as_ref().is_none_or(|ns| *ns == e.namespace) && sel.matches(&e.labels))
                .map(Peer::Endpoint)
                .collect();
            if found.is_empty() {
                let scope = namespace.as_ref().map_or("any namespace".to_string(), |ns| format!("namespace {ns}"));
                return Err(format!("selector {selector:?} matches no pod in {scope}"));
            }
            return Ok(found);
        }
        PeerRef::Net(n) => points(bounds, n, &mut ips),
        PeerRef::NetworkSet { namespace, name } => {
            let s = c
                .net_sets
                .iter()
                .find(|s| s.namespace.as_deref() == Some(namespace.as_str()) && s.name == *name)
                .ok_or_else(|| format!("no NetworkSet {namespace}/{name} in the model"))?;
            if s.nets.is_empty() {
                return Err(format!("NetworkSet {namespace}/{name} has no nets"));
            }
            s.nets.iter().for_each(|n| points(bounds, n, &mut ips));
        }
        PeerRef::GlobalNetworkSet(name) => {
            let s = c
                .net_sets
                .iter()
                .find(|s| s.namespace.is_none() && s.name == *name)
                .ok_or_else(|| format!("no GlobalNetworkSet {name} in the model"))?;
            if s.nets.is_empty() {
                return Err(format!("GlobalNetworkSet {name} has no nets"));
            }
            s.nets.iter().for_each(|n| points(bounds, n, &mut ips));
        }
    }
    ips.sort();
    ips.dedup();
    Ok(ips.into_iter().map(|ip| at(c, ip)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cidr_is_split_at_every_boundary_inside_it() {
        let mut bounds = BTreeSet::new();
        for n in ["10.0.0.0/24", "10.0.1.0/25"] {
            let (v6, lo, hi) = range(&n.parse().unwrap());
            bounds.insert((v6, lo));
            bounds.insert((v6, hi + 1));
        }
        let mut out = Vec::new();
        points(&bounds, &"10.0.0.0/16".parse().unwrap(), &mut out);
        let want: Vec<IpAddr> = ["10.0.0.0", "10.0.1.0", "10.0.1.128"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(out, want);
        let mut out = Vec::new();
        points(&bounds, &"10.0.1.64/26".parse().unwrap(), &mut out);
        assert_eq!(out, vec!["10.0.1.64".parse::<IpAddr>().unwrap()]);
    }
}
