//! What a policy change opens and closes: matrices before and after, compared pair by pair.

use std::collections::BTreeSet;

use porin_model::Protocol;
use serde::Serialize;

use crate::eval::Variant;
use crate::ir::Cluster;

/// One (from, to, port) pair whose verdict changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Diff {
    /// Denied before, allowed after.
    pub opened: Vec<Change>,
    /// Allowed before, denied after.
    pub closed: Vec<Change>,
}

/// Compare `old` and `new` on every port declared in either (or the given ones), over the pods present in both.
pub fn diff(old: &Cluster, new: &Cluster, ports: Option<&[(Protocol, u16)]>) -> Diff {
    let ports: Vec<(Protocol, u16)> = match ports {
        Some(p) => p.to_vec(),
        None => {
            let set: BTreeSet<(u16, Protocol)> = old
                .declared_ports()
                .into_iter()
                .chain(new.declared_ports())
                .map(|(p, port)| (port, p))
                .collect();
            set.into_iter().map(|(port, p)| (p, port)).collect()
        }
    };
    let mut out = Diff::default();
    for (proto, port) in ports {
        let a = old.matrix(Variant::Enforced, proto, port);
        let b = new.matrix(Variant::Enforced, proto, port);
        let ai: std::collections::HashMap<&str, usize> = a.pods.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
        let common: Vec<(usize, usize)> =
            b.pods.iter().enumerate().filter_map(|(j, p)| ai.get(p.as_str()).map(|&i| (i, j))).collect();
        for &(fi, fj) in &common {
            for &(ti, tj) in &common {
                if fi == ti {
                    continue;
                }
                let (before, after) = (a.allowed(fi, ti), b.allowed(fj, tj));
                if before == after {
                    continue;
                }
                let c = Change { from: a.pods[fi].clone(), to: a.pods[ti].clone(), port, protocol: proto.name().into() };
                if after { out.opened.push(c) } else { out.closed.push(c) }
            }
        }
    }
    out.opened.sort();
    out.closed.sort();
    out
}
