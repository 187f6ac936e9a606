//! Just enough SCTP (RFC 9260) to answer and send an association handshake's first step over raw
//! IP sockets (protocol 132): this kernel has no SCTP, so pod servers answer INIT with INIT-ACK
//! themselves and probes send INIT and wait for INIT-ACK. Pure: building, parsing, CRC32c.

/// IP protocol number of SCTP.
pub const IPPROTO_SCTP: u8 = 132;

/// Chunk types used here.
pub const CHUNK_INIT: u8 = 1;
pub const CHUNK_INIT_ACK: u8 = 2;
pub const CHUNK_ABORT: u8 = 6;
pub const CHUNK_COOKIE_ECHO: u8 = 10;
pub const CHUNK_DATA: u8 = 0;
pub const CHUNK_HEARTBEAT: u8 = 4;

/// The ABORT "T" flag: the verification tag is reflected.
pub const ABORT_FLAG_T: u8 = 0x01;

const COMMON_HEADER: usize = 12;

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), as SCTP uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    const fn table() -> [u32; 256] {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    }
    static TABLE: [u32; 256] = table();
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The first chunk of a packet, with the common header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src_port: u16,
    pub dst_port: u16,
    pub vtag: u32,
    pub chunk_type: u8,
    pub chunk_flags: u8,
    /// For INIT and INIT-ACK: the Initiate Tag. Otherwise 0.
    pub initiate_tag: u32,
}

/// Why a packet was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Short,
    BadChecksum,
    BadChunkLength,
}

/// Parse an SCTP packet (starting at the common header) and check its checksum.
pub fn parse(buf: &[u8]) -> Result<Packet, ParseError> {
    if buf.len() < COMMON_HEADER + 4 {
        return Err(ParseError::Short);
    }
    let got = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let mut copy = buf.to_vec();
    copy[8..12].fill(0);
    if crc32c(&copy) != got {
        return Err(ParseError::BadChecksum);
    }
    let be16 = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let chunk_type = buf[12];
    let chunk_len = usize::from(be16(14));
    if chunk_len < 4 || COMMON_HEADER + chunk_len > buf.len() {
        return Err(ParseError::BadChunkLength);
    }
    let initiate_tag = if chunk_type == CHUNK_INIT || chunk_type == CHUNK_INIT_ACK {
        if chunk_len < 20 {
            return Err(ParseError::BadChunkLength);
        }
        be32(16)
    } else {
        0
    };
    Ok(Packet { src_port: be16(0), dst_port: be16(2), vtag: be32(4), chunk_type, chunk_flags: buf[13], initiate_tag })
}

fn finish(mut pkt: Vec<u8>) -> Vec<u8> {
    while !pkt.len().is_multiple_of(4) {
        pkt.push(0);
    }
    let crc = crc32c(&pkt);
    pkt[8..12].copy_from_slice(&crc.to_le_bytes());
    pkt
}

fn header(src_port: u16, dst_port: u16, vtag: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p
}

fn init_body(p: &mut Vec<u8>, initiate_tag: u32, initial_tsn: u32) {
    p.extend_from_slice(&initiate_tag.to_be_bytes());
    p.extend_from_slice(&65_535u32.to_be_bytes()); // a_rwnd
    p.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    p.extend_from_slice(&1u16.to_be_bytes()); // max inbound streams
    p.extend_from_slice(&initial_tsn.to_be_bytes());
}

/// An INIT from `src_port` to `dst_port` (verification tag 0).
pub fn build_init(src_port: u16, dst_port: u16, initiate_tag: u32) -> Vec<u8> {
    let mut p = header(src_port, dst_port, 0);
    p.extend_from_slice(&[CHUNK_INIT, 0]);
    p.extend_from_slice(&20u16.to_be_bytes());
    init_body(&mut p, initiate_tag, initiate_tag);
    finish(p)
}

/// The INIT-ACK answering `init` (ports swapped, verification tag = the INIT's Initiate Tag),
/// carrying a State Cookie that names the association (it is never checked: no COOKIE-ECHO is
/// ever accepted).
pub fn build_init_ack(init: &Packet, my_tag: u32) -> Vec<u8> {
    let mut cookie = Vec::with_capacity(16);
    cookie.extend_from_slice(b"porn");
    cookie.extend_from_slice(&init.initiate_tag.to_be_bytes());
    cookie.extend_from_slice(&my_tag.to_be_bytes());
    cookie.extend_from_slice(&init.src_port.to_be_bytes());
    cookie.extend_from_slice(&init.dst_port.to_be_bytes());
    let param_len = 4 + cookie.len();
    let chunk_len = 20 + param_len;
    let mut p = header(init.dst_port, init.src_port, init.initiate_tag);
    p.extend_from_slice(&[CHUNK_INIT_ACK, 0]);
    p.extend_from_slice(&(chunk_len as u16).to_be_bytes());
    init_body(&mut p, my_tag, my_tag);
    p.extend_from_slice(&7u16.to_be_bytes()); // State Cookie
    p.extend_from_slice(&(param_len as u16).to_be_bytes());
    p.extend_from_slice(&cookie);
    finish(p)
}

/// The ABORT answering `pkt`: to an INIT, with the Initiate Tag as verification tag; to anything
/// else (out of the blue), with the received tag reflected and the T flag set.
pub fn build_abort(pkt: &Packet) -> Vec<u8> {
    let (vtag, flags) = if pkt.chunk_type == CHUNK_INIT { (pkt.initiate_tag, 0) } else { (pkt.vtag, ABORT_FLAG_T) };
    let mut p = header(pkt.dst_port, pkt.src_port, vtag);
    p.extend_from_slice(&[CHUNK_ABORT, flags]);
    p.extend_from_slice(&4u16.to_be_bytes());
    finish(p)
}

/// The SCTP payload of a packet read from an IPv4 raw socket (which includes the IP header), with
/// the IPv4 source address; `None` when it is not a well-formed unfragmented SCTP packet.
pub fn strip_ipv4(buf: &[u8]) -> Option<(std::net::Ipv4Addr, &[u8])> {
    if buf.len() < 20 || buf[0] >> 4 != 4 || buf[9] != IPPROTO_SCTP {
        return None;
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    let frag = u16::from_be_bytes([buf[6], buf[7]]) & 0x3fff;
    if ihl < 20 || buf.len() < ihl || frag != 0 {
        return None;
    }
    let src = std::net::Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
    Some((src, &buf[ihl..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_vectors() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        // RFC 3720 B.4: 32 bytes of zeroes -> bytes aa 36 91 8a on the wire (little-endian).
        assert_eq!(crc32c(&[0u8; 32]).to_le_bytes(), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(crc32c(&[0xffu8; 32]).to_le_bytes(), [0x43, 0xab, 0xa8, 0x62]);
    }

    #[test]
    fn init_roundtrip_and_ack() {
        let init = build_init(40000, 9, 0xdead_beef);
        assert_eq!(init.len(), 32);
        let p = parse(&init).unwrap();
        assert_eq!((p.src_port, p.dst_port, p.vtag, p.chunk_type, p.initiate_tag), (40000, 9, 0, CHUNK_INIT, 0xdead_beef));
        let ack = build_init_ack(&p, 0x1234_5678);
        let a = parse(&ack).unwrap();
        assert_eq!((a.src_port, a.dst_port, a.vtag, a.chunk_type, a.initiate_tag), (9, 40000, 0xdead_beef, CHUNK_INIT_ACK, 0x1234_5678));
        assert_eq!(ack.len() % 4, 0);
        let ab = parse(&build_abort(&p)).unwrap();
        assert_eq!((ab.chunk_type, ab.chunk_flags, ab.vtag, ab.dst_port), (CHUNK_ABORT, 0, 0xdead_beef, 40000));
        let ab2 = parse(&build_abort(&a)).unwrap();
        assert_eq!((ab2.chunk_flags, ab2.vtag), (ABORT_FLAG_T, 0xdead_beef));
    }

    #[test]
    fn corrupt_packets_are_rejected() {
        let mut init = build_init(1, 2, 3);
        init[20] ^= 1;
        assert_eq!(parse(&init), Err(ParseError::BadChecksum));
        assert_eq!(parse(&init[..10]), Err(ParseError::Short));
        let mut ip = vec![0x45, 0, 0, 52, 0, 0, 0x40, 0, 64, 132, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        ip.extend_from_slice(&build_init(1, 2, 3));
        let (src, sctp) = strip_ipv4(&ip).unwrap();
        assert_eq!(src, std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(parse(sctp).unwrap().initiate_tag, 3);
        ip[9] = 6;
        assert!(strip_ipv4(&ip).is_none());
    }
}
