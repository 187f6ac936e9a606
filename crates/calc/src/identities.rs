//! The identity table: which peers policy cannot tell apart, and the ipcache that names them.
//!
//! Work is near-linear in (endpoints + CIDRs): an address's containing CIDRs are found by one hash lookup per
//! prefix length in use, and a prefix's representative (its lowest address no longer CIDR and no pod address
//! covers) by one sweep over the sorted prefixes and pod addresses inside it.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use porin_policy::Shared;
use porin_policy::ir::Cluster;

use crate::{IDENTITY_WORLD_V4, IDENTITY_WORLD_V6, Identity, IdentityKind, State};

/// Who stands for an identity in a tier walk.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rep {
    /// Index into [`Cluster::endpoints`].
    Endpoint(usize),
    Ip(IpAddr),
}

#[derive(Debug, Clone)]
pub(crate) struct Info {
    pub rep: Rep,
    pub v6: bool,
    /// Unique per allocation of the identity's key (never reused, unlike ids): memo key for its functions.
    pub serial: u64,
}

/// The identity table of one compile.
#[derive(Debug)]
pub(crate) struct Table {
    /// Sorted by id.
    /// Shared with every [`crate::Compiled`] of this table.
    pub identities: Shared<Vec<Identity>>,
    /// Parallel to `identities`.
    pub info: Vec<Info>,
    pub ipcache: Shared<Vec<(IpNet, u32)>>,
    /// Per endpoint: its class (namespace, labels, service account, named ports, and per family the CIDRs
    /// containing its address, or none),
    /// everything a rule can look at on the local side.
    pub classes: Vec<String>,
    /// Every CIDR any rule or set mentions → the identities (indices) whose addresses it contains.
    pub by_cidr: HashMap<IpNet, Vec<u32>>,
    /// Indices of pod identities.
    pub pods: Vec<u32>,
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn addr(v6: bool, b: u128) -> IpAddr {
    if v6 { IpAddr::V6(Ipv6Addr::from(b)) } else { IpAddr::V4(Ipv4Addr::from(b as u32)) }
}

/// The CIDRs of a compile, for containment queries.
struct Cidrs {
    /// Truncated prefix → the CIDRs as written (normally one).
    by_net: HashMap<IpNet, Vec<IpNet>>,
    /// Prefix lengths in use, per family.
    lens: [Vec<u8>; 2],
}

impl Cidrs {
    fn new(cidrs: &BTreeSet<IpNet>) -> Cidrs {
        let mut by_net: HashMap<IpNet, Vec<IpNet>> = HashMap::new();
        let mut lens: [BTreeSet<u8>; 2] = [BTreeSet::new(), BTreeSet::new()];
        for n in cidrs {
            by_net.entry(n.trunc()).or_default().push(*n);
            lens[usize::from(matches!(n, IpNet::V6(_)))].insert(n.prefix_len());
        }
        Cidrs { by_net, lens: lens.map(|l| l.into_iter().collect()) }
    }
    /// Every CIDR containing `net` (prefix lengths up to `net`'s own), shortest first.
    fn containing(&self, net: IpNet) -> Vec<IpNet> {
        let v6 = matches!(net, IpNet::V6(_));
        let mut out = Vec::new();
        for &len in &self.lens[usize::from(v6)] {
            if len > net.prefix_len() {
                break;
            }
            let Ok(n) = IpNet::new(net.network(), len) else { continue };
            if let Some(v) = self.by_net.get(&n.trunc()) {
                out.extend(v.iter().copied());
            }
        }
        out
    }
}

/// One prefix or pod address, as an address range, for the representative sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    v6: bool,
    start: u128,
    len: u8,
    end: u128,
    pod: bool,
}

fn item(n: IpNet, pod: bool) -> Item {
    Item { v6: matches!(n, IpNet::V6(_)), start: bits(n.network()), len: n.prefix_len(), end: bits(n.broadcast()), pod }
}

/// The lowest address of `p` that no strictly longer prefix and no pod address covers.
fn representative(p: IpNet, items: &[Item]) -> Option<IpAddr> {
    let me = item(p, false);
    let mut cursor = me.start;
    let first = items.partition_point(|i| (i.v6, i.start) < (me.v6, me.start));
    for i in &items[first..] {
        if i.v6 != me.v6 || i.start > me.end {
            break;
        }
        if !i.pod && i.len <= me.len {
            continue; // p itself (or the same prefix written differently)
        }
        if i.start > cursor {
            return Some(addr(me.v6, cursor));
        }
        if i.end >= cursor {
            if i.end >= me.end {
                return None;
            }
            cursor = i.end + 1;
        }
    }
    (cursor <= me.end).then(|| addr(me.v6, cursor))
}

/// `cidrs`: every CIDR any rule or network set mentions ([`porin_policy::ir::all_cidrs`]).
pub(crate) fn build(c: &Cluster, state: &mut State, cidrs: BTreeSet<IpNet>) -> Table {
    let mut cidrs = cidrs;
    cidrs.insert("0.0.0.0/0".parse().expect("valid"));
    cidrs.insert("::/0".parse().expect("valid"));
    let index = Cidrs::new(&cidrs);

    struct Building {
        identity: Identity,
        info: Info,
        containing: Vec<IpNet>,
    }
    let mut built: Vec<Building> = Vec::new();
    let mut by_id: HashMap<u32, usize> = HashMap::new();
    let mut ipcache: Vec<(IpNet, u32)> = Vec::new();
    let mut classes: Vec<String> = Vec::with_capacity(c.endpoints.len());
    let mut items: Vec<Item> = cidrs.iter().map(|n| item(*n, false)).collect();
    for (ei, e) in c.endpoints.iter().enumerate() {
        let mut mine: [Option<Vec<IpNet>>; 2] = [None, None];
        let named: Vec<_> = e.named_ports.iter().map(|(n, p, port)| (n, p.number(), port)).collect();
        for v6 in [false, true] {
            let Some(ip) = e.ip_of_family(v6) else { continue };
            let sig = index.containing(IpNet::from(ip));
            // The account's labels too: service-account selectors read them, and relabelling the account alone
            // must give a new identity (and so recompile what can see it).
            let key = serde_json::to_string(&("pod", &e.namespace, &e.labels, &e.service_account, &e.sa_labels, &named, v6, &sig))
                .expect("serialisable");
            let (id, serial) = state.identity(key);
            let k = *by_id.entry(id).or_insert_with(|| {
                built.push(Building {
                    identity: Identity { id, kind: IdentityKind::Pods { rep: e.id(), v6 }, members: vec![] },
                    info: Info { rep: Rep::Endpoint(ei), v6, serial },
                    containing: sig.clone(),
                });
                built.len() - 1
            });
            built[k].identity.members.push(e.id());
            ipcache.push((IpNet::from(ip), id));
            mine[usize::from(v6)] = Some(sig);
        }
        classes.push(
            serde_json::to_string(&(&e.namespace, &e.labels, &e.service_account, &e.sa_labels, &named, &mine))
                .expect("serialisable"),
        );
        for ip in &e.ips {
            items.push(item(IpNet::from(*ip), true));
        }
    }
    items.sort_unstable();
    for prefix in &cidrs {
        let Some(rep) = representative(*prefix, &items) else { continue };
        let v6 = rep.is_ipv6();
        let (id, serial) = match prefix.prefix_len() {
            0 => (if v6 { IDENTITY_WORLD_V6 } else { IDENTITY_WORLD_V4 }, if v6 { 1 } else { 0 }),
            _ => state.identity(format!("cidr:{prefix}")),
        };
        built.push(Building {
            identity: Identity { id, kind: IdentityKind::Cidr { prefix: *prefix, rep }, members: vec![] },
            info: Info { rep: Rep::Ip(rep), v6, serial },
            containing: index.containing(*prefix),
        });
        ipcache.push((*prefix, id));
    }
    built.sort_by_key(|b| b.identity.id);
    ipcache.sort();
    let mut by_cidr: HashMap<IpNet, Vec<u32>> = HashMap::new();
    let mut pods = Vec::new();
    let mut identities = Vec::with_capacity(built.len());
    let mut info = Vec::with_capacity(built.len());
    for (k, b) in built.into_iter().enumerate() {
        for n in b.containing {
            by_cidr.entry(n).or_default().push(k as u32);
        }
        if matches!(b.info.rep, Rep::Endpoint(_)) {
            pods.push(k as u32);
        }
        identities.push(b.identity);
        info.push(b.info);
    }
    Table { identities: identities.into(), info, ipcache: ipcache.into(), classes, by_cidr, pods }
}
