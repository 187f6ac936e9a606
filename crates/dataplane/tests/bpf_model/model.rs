//! The model: a plain re-statement of what the program must decide for one packet given the maps.

use super::*;

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Frag {
    None,
    First,
    Later,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Icmp {
    Not,
    Plain,
    Error,
    Nd,
}

#[derive(Clone, Debug)]
pub(crate) struct Pkt {
    pub(crate) v4: bool,
    pub(crate) proto: u8,
    pub(crate) src: [u8; 16],
    pub(crate) dst: [u8; 16],
    pub(crate) frag: Frag,
    pub(crate) frag_id: u32,
    pub(crate) l4: usize,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) pol_port: u16,
    pub(crate) tcp_flags: u8,
    pub(crate) icmp: Icmp,
}

pub(crate) enum Parsed {
    Ip(Pkt),
    Arp,
    Malformed,
    Unsupported,
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Bytes `at..at+n` if they are all inside the frame.
pub(crate) fn get(f: &[u8], at: usize, n: usize) -> Option<&[u8]> {
    f.get(at..at.checked_add(n)?)
}

pub(crate) fn addr16(a: &[u8]) -> [u8; 16] {
    let mut o = [0u8; 16];
    o[..a.len()].copy_from_slice(a);
    o
}

pub(crate) fn parse(f: &[u8]) -> Parsed {
    let et = be16(f, 12);
    let mut p = Pkt {
        v4: true,
        proto: 0,
        src: [0; 16],
        dst: [0; 16],
        frag: Frag::None,
        frag_id: 0,
        l4: 0,
        sport: 0,
        dport: 0,
        pol_port: 0,
        tcp_flags: 0,
        icmp: Icmp::Not,
    };
    match et {
        0x0806 => return Parsed::Arp,
        0x0800 => {
            let Some(ip) = get(f, 14, 20) else { return Parsed::Malformed };
            let (ver, ihl) = (ip[0] >> 4, usize::from(ip[0] & 15));
            if ver != 4 || ihl < 5 {
                return Parsed::Malformed;
            }
            let tot = usize::from(be16(ip, 2));
            if tot < ihl * 4 || f.len() < 14 + tot {
                return Parsed::Malformed;
            }
            p.proto = ip[9];
            p.src = addr16(&ip[12..16]);
            p.dst = addr16(&ip[16..20]);
            p.l4 = 14 + ihl * 4;
            let fo = be16(ip, 6);
            if fo & 0x1fff != 0 {
                p.frag = Frag::Later;
                p.frag_id = u32::from(be16(ip, 4));
                return Parsed::Ip(p);
            }
            if fo & 0x2000 != 0 {
                p.frag = Frag::First;
                p.frag_id = u32::from(be16(ip, 4));
            }
        }
        0x86dd => {
            let Some(ip) = get(f, 14, 40) else { return Parsed::Malformed };
            if ip[0] >> 4 != 6 {
                return Parsed::Malformed;
            }
            let plen = usize::from(be16(ip, 4));
            if plen == 0 || f.len() < 54 + plen {
                return Parsed::Malformed;
            }
            p.v4 = false;
            p.src = addr16(&ip[8..24]);
            p.dst = addr16(&ip[24..40]);
            let (mut nh, mut off) = (ip[6], 54usize);
            let mut done = false;
            for _ in 0..8 {
                match nh {
                    0 | 43 | 60 => {
                        let Some(h) = get(f, off, 2) else { return Parsed::Malformed };
                        nh = h[0];
                        off += (usize::from(h[1]) + 1) * 8;
                    }
                    51 => {
                        let Some(h) = get(f, off, 2) else { return Parsed::Malformed };
                        nh = h[0];
                        off += (usize::from(h[1]) + 2) * 4;
                    }
                    44 => {
                        let Some(h) = get(f, off, 8) else { return Parsed::Malformed };
                        let fo = be16(h, 2);
                        let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                        nh = h[0];
                        off += 8;
                        if fo & 0xfff8 != 0 {
                            p.frag = Frag::Later;
                            p.frag_id = id;
                            p.proto = nh;
                            p.l4 = off;
                            return Parsed::Ip(p);
                        }
                        if fo & 1 != 0 {
                            p.frag = Frag::First;
                            p.frag_id = id;
                        }
                    }
                    _ => {
                        p.proto = nh;
                        p.l4 = off;
                        done = true;
                        break;
                    }
                }
                if off > 0xffff {
                    return Parsed::Malformed;
                }
            }
            if !done {
                return Parsed::Malformed;
            }
        }
        _ => return Parsed::Unsupported,
    }
    // L4
    let need = match p.proto {
        6 => 14,
        17 => 8,
        132 => 12,
        1 | 58 => 8,
        _ => 0,
    };
    if p.proto == 1 || p.proto == 58 {
        if (p.proto == 1) != p.v4 {
            return Parsed::Ip(p); // no ports, not classified
        }
        let Some(h) = get(f, p.l4, 8) else { return Parsed::Malformed };
        let (t, c) = (h[0], h[1]);
        p.pol_port = u16::from(t) << 8 | u16::from(c);
        let echo = if p.v4 { t == 8 || t == 0 } else { t == 128 || t == 129 };
        let err = if p.v4 { matches!(t, 3 | 11 | 12) } else { matches!(t, 1..=4) };
        if echo {
            p.sport = be16(h, 4);
            p.dport = p.sport;
            p.icmp = Icmp::Plain;
        } else if err {
            p.dport = p.pol_port;
            p.icmp = Icmp::Error;
        } else if !p.v4
            && ((133..=137).contains(&t)
                || (matches!(t, 130 | 131 | 132 | 143) && p.dst[0] == 0xff && p.dst[1] == 0x02))
        {
            // neighbour discovery, or MLD to a link-scope group
            p.icmp = Icmp::Nd;
        } else {
            p.dport = p.pol_port;
            p.icmp = Icmp::Plain;
        }
        return Parsed::Ip(p);
    }
    if need > 0 {
        let Some(h) = get(f, p.l4, need) else { return Parsed::Malformed };
        p.sport = be16(h, 0);
        p.dport = be16(h, 2);
        p.pol_port = p.dport;
        if p.proto == 6 {
            p.tcp_flags = h[13];
        }
    }
    Parsed::Ip(p)
}

/// A conntrack key: (dir, proto, src, dst, sport, dport); one endpoint, one family per address.
pub(crate) type CtKey = (u8, u8, [u8; 16], [u8; 16], u16, u16);
/// (dir, proto, id, src, dst)
pub(crate) type FragKey = (u8, u8, u32, [u8; 16], [u8; 16]);

pub(crate) struct Entry {
    pub(crate) identity: Option<u32>,
    pub(crate) proto: Option<u8>,
    pub(crate) port: Option<u16>,
    pub(crate) action: Action,
}

pub(crate) struct Model {
    /// Conntrack: key -> (closing, a FIN was seen in this entry's direction).
    pub(crate) ct: BTreeMap<CtKey, (bool, bool)>,
    pub(crate) frags: BTreeMap<FragKey, bool>,
    pub(crate) policy: [Vec<Entry>; 2], // by Direction as usize
    pub(crate) own: BTreeMap<[u8; 16], u32>,
    pub(crate) ipcache: BTreeMap<[u8; 16], u32>,
}

pub(crate) fn a16(s: &str) -> [u8; 16] {
    match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => addr16(&a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

pub(crate) fn dir_u8(d: Direction) -> u8 {
    d as u8
}

impl Model {
    pub(crate) fn identity(&self, a: &[u8; 16]) -> u32 {
        *self.ipcache.get(a).unwrap_or(&WORLD_ID) // the /0 entries: WORLD_ID
    }

    pub(crate) fn policy(&self, dir: Direction, identity: u32, proto: u8, port: u16) -> Reason {
        let mut best: Option<(u32, &Entry)> = None;
        for e in &self.policy[dir as usize] {
            let m = e.identity.is_none_or(|i| i == identity)
                && e.proto.is_none_or(|p| p == proto)
                && e.port.is_none_or(|p| p == port);
            let len = if e.port.is_some() {
                96
            } else if e.proto.is_some() {
                80
            } else if e.identity.is_some() {
                64
            } else {
                32
            };
            if m && best.is_none_or(|(l, _)| len > l) {
                best = Some((len, e));
            }
        }
        match best {
            None => Reason::DropNoPolicy,
            Some((_, e)) if e.action == Action::Allow => Reason::AllowNew,
            Some(_) => Reason::DropPolicyDeny,
        }
    }

    pub(crate) fn same(v4: bool, a: &[u8; 16], b: &[u8; 16]) -> bool {
        if v4 { a[..4] == b[..4] } else { a == b }
    }

    pub(crate) fn related(&self, f: &[u8], p: &Pkt, dir: Direction) -> bool {
        if p.frag != Frag::None || f.len() - 14 > if p.v4 { 576 } else { 1280 } {
            return false;
        }
        let inner = p.l4 + 8;
        let (proto, src, dst, inner_l4) = if p.v4 {
            let Some(ip) = get(f, inner, 20) else { return false };
            if ip[0] >> 4 != 4 || ip[0] & 15 < 5 {
                return false;
            }
            (ip[9], addr16(&ip[12..16]), addr16(&ip[16..20]), inner + usize::from(ip[0] & 15) * 4)
        } else {
            let Some(ip) = get(f, inner, 40) else { return false };
            if ip[0] >> 4 != 6 {
                return false;
            }
            (ip[6], addr16(&ip[8..24]), addr16(&ip[24..40]), inner + 40)
        };
        if !Self::same(p.v4, &p.dst, &src) {
            return false;
        }
        if dir == Direction::Egress && !Self::same(p.v4, &p.src, &dst) {
            return false;
        }
        let (sport, dport) = match proto {
            6 | 17 | 132 => {
                let Some(h) = get(f, inner_l4, 4) else { return false };
                (be16(h, 0), be16(h, 2))
            }
            1 | 58 => {
                if (proto == 1) != p.v4 {
                    return false;
                }
                let Some(h) = get(f, inner_l4, 8) else { return false };
                let echo = if p.v4 { h[0] == 8 || h[0] == 0 } else { h[0] == 128 || h[0] == 129 };
                if !echo {
                    return false;
                }
                (be16(h, 4), be16(h, 4))
            }
            _ => (0, 0),
        };
        self.ct.contains_key(&(dir_u8(dir) ^ 1, proto, src, dst, sport, dport))
    }

    /// The verdict the program must reach, updating the model's state.
    pub(crate) fn run(&mut self, dir: Direction, f: &[u8], ingress_ifindex: u32) -> Reason {
        let p = match parse(f) {
            Parsed::Arp => return Reason::AllowInfra,
            Parsed::Malformed => return Reason::DropMalformed,
            Parsed::Unsupported => return Reason::DropUnsupportedL3,
            Parsed::Ip(p) => p,
        };
        let d = dir_u8(dir);
        if dir == Direction::Egress {
            let own = if p.v4 { a16(POD) } else { a16(POD6) };
            let nd_ok = p.icmp == Icmp::Nd && (p.src == [0; 16] || (p.src[0] == 0xfe && p.src[1] & 0xc0 == 0x80));
            if !nd_ok && !Self::same(p.v4, &p.src, &own) {
                return Reason::DropSpoofed;
            }
        } else if let Some(&owner) = self.own.get(&p.src)
            && owner != ingress_ifindex
        {
            return Reason::DropSpoofedIngress;
        }
        let fk: FragKey = (d, p.proto, p.frag_id, p.src, p.dst);
        if p.frag == Frag::Later {
            return if self.frags.get(&fk) == Some(&true) { Reason::AllowFrag } else { Reason::DropFrag };
        }
        let r = match p.icmp {
            Icmp::Nd => Reason::AllowInfra,
            Icmp::Error => {
                if self.related(f, &p, dir) {
                    Reason::AllowRelated
                } else {
                    // not related: a flow of its own, subject to policy
                    match self.flow(dir, &p) {
                        Reason::DropNoPolicy | Reason::DropPolicyDeny => Reason::DropIcmpUnrelated,
                        r => r,
                    }
                }
            }
            _ => self.flow(dir, &p),
        };
        if p.frag == Frag::First {
            self.frags.insert(fk, !r.is_drop());
        }
        r
    }

    pub(crate) fn flow(&mut self, dir: Direction, p: &Pkt) -> Reason {
        let d = dir_u8(dir);
        let k: CtKey = (d, p.proto, p.src, p.dst, p.sport, p.dport);
        let r: CtKey = (d ^ 1, p.proto, p.dst, p.src, p.dport, p.sport);
        if let Some(&(closing, fin)) = self.ct.get(&k) {
            let reopen = p.proto == 6 && closing && p.tcp_flags & 0x12 == 0x02;
            if !reopen {
                if p.proto == 6 {
                    let fin = fin || p.tcp_flags & 0x01 != 0;
                    self.ct.insert(k, (closing, fin));
                    if p.tcp_flags & 0x05 != 0 && !closing {
                        self.ct.insert(k, (true, fin));
                        if let Some(c) = self.ct.get_mut(&r) {
                            c.0 = true;
                        }
                    } else if closing && fin && p.tcp_flags & 0x17 == 0x10 && self.ct.get(&r).is_some_and(|c| c.1) {
                        // a plain ACK once both directions sent FIN: the close is complete, both entries go
                        self.ct.remove(&k);
                        self.ct.remove(&r);
                    }
                }
                return Reason::AllowEstablished;
            }
            self.ct.remove(&k);
            self.ct.remove(&r);
        }
        let peer = if dir == Direction::Egress { &p.dst } else { &p.src };
        let v = self.policy(dir, self.identity(peer), p.proto, p.pol_port);
        if v == Reason::AllowNew {
            self.ct.insert(k, (false, p.proto == 6 && p.tcp_flags & 0x01 != 0));
            self.ct.insert(r, (false, false));
        }
        v
    }
}
