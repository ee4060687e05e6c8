//! `dsr-tunnel`: the client's packet, untouched, inside an outer IPv4
//! header to the server (seed 003's L3 DSR by tunnelling, IPVS's TUN mode,
//! Katran): IPIP (RFC 2003), GRE (RFC 2784, the 4-byte header with no
//! options) or GUE variant 1 (draft-ietf-intarea-gue §4: the UDP payload
//! is the inner IPv4 packet itself, as Katran sends it).
//!
//! The outer header varies per flow so that a server's NIC spreads the
//! tunnels over its queues (RSS hashes the outer addresses and ports): the
//! outer source comes from a prefix (`tunnel_source`) and, for GUE, the UDP
//! source port from the ephemeral range (RFC 8086 §3.2.1's rule for
//! GRE-in-UDP), both from a hash of the client's address and port, so one
//! flow always looks the same, on either box of an HA pair and after a
//! restart. The hash is unkeyed (`flow_hash`): it only spreads RSS, and a
//! keyed hash would show the servers' side keyed outputs for inputs a
//! client chose (the flow-table key must stay unknown, `crate::hash`).

use super::nat::{put16, put32, IP_CHECK, IP_DST, IP_SRC, IP_TOTAL_LEN, IP_TTL};
use crate::wire::checksum;
use crate::wire::ethernet::HEADER_LEN as ETH_LEN;
use crate::wire::ipv4::protocol;
pub use crate::wire::tunnel::TunnelKind;
use crate::wire::tunnel::{OUTER_IP, UDP_LEN};

/// TTL of the outer header: the box originates it (RFC 2003 §3.1: "a value
/// appropriate for delivery of the encapsulated datagram to the tunnel exit
/// point"); Linux's default.
const OUTER_TTL: u8 = 64;
/// The ephemeral port range the GUE source port is drawn in (RFC 8086
/// §3.2.1, RFC 6335).
const EPHEMERAL_BASE: u16 = 49152;
const EPHEMERAL_MASK: u16 = 0x3fff;

/// The outer header of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    pub kind: TunnelKind,
    pub src: u32,
    pub dst: u32,
    /// GUE: the UDP ports (source from `entropy`, destination the
    /// servers' GUE port). Unused otherwise.
    pub sport: u16,
    pub dport: u16,
}

/// The public salt of `flow_hash` ("TUNNEL\0\0").
const FLOW_SALT: u64 = 0x5455_4e4e_454c_0000;

/// The flow hash the outer header varies by: the client's address, port
/// and protocol mixed (`crate::hash::keyed64`'s fold) under a public salt,
/// not under the flow-table key. Its only job is to spread the tunnels
/// over the servers' RSS queues.
#[inline(always)]
pub fn flow_hash(client_ip: u32, client_port: u16, proto: u8) -> u64 {
    crate::hash::keyed64(u64::from(client_ip) << 24 | u64::from(client_port) << 8 | u64::from(proto), FLOW_SALT)
}

/// `flow_hash` of an IPv6 client: its address folded to 64 bits with
/// the port and protocol, under the same public salt.
#[inline(always)]
pub fn flow_hash6(client_ip: u128, client_port: u16, proto: u8) -> u64 {
    let folded = (client_ip as u64) ^ ((client_ip >> 64) as u64).rotate_left(29);
    crate::hash::keyed64(folded ^ (u64::from(client_port) << 8 | u64::from(proto)), FLOW_SALT)
}

/// One flow's outer source address within `net` (host order) whose host
/// bits are `host_mask` (0: always `net`), and GUE source port, from the
/// flow hash `h` (`flow_hash`).
#[inline(always)]
pub fn entropy(h: u64, net: u32, host_mask: u32) -> (u32, u16) {
    let src = (net & !host_mask) | (h as u32 & host_mask);
    let sport = EPHEMERAL_BASE | ((h >> 32) as u16 & EPHEMERAL_MASK);
    (src, sport)
}

/// Writes the EtherType and the outer headers in front of the inner IPv4
/// packet of `inner_len` bytes that starts at `ETH_LEN + kind.overhead()`
/// in `frame` (the caller moved it there, and set the Ethernet addresses).
/// Outer IPv4 (RFC 2003 §3.1): TOS copied from the inner header, ID 0 and
/// DF (an atomic datagram, RFC 6864 §4.1: the caller never sends one
/// longer than the next hop's MTU), TTL 64, full header checksum. GUE's UDP
/// checksum is 0 (none, RFC 768; RFC 6935 allows it for tunnels). Returns
/// the frame length, or `None` (frame untouched) when `frame` is shorter.
#[allow(clippy::indexing_slicing, reason = "every offset is below `at`, and the frame is at least `at + 20` long: checked on entry")]
pub fn encapsulate(frame: &mut [u8], inner_len: usize, o: &Outer) -> Option<usize> {
    let at = ETH_LEN + o.kind.overhead();
    let total = at + inner_len;
    if inner_len < OUTER_IP || frame.len() < total {
        return None;
    }
    let tos = frame[at + 1];
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let outer_len = (o.kind.overhead() + inner_len) as u16;
    let h = &mut frame[ETH_LEN..ETH_LEN + OUTER_IP];
    h[0] = 0x45;
    h[1] = tos;
    put16(h, IP_TOTAL_LEN, outer_len);
    put16(h, 4, 0);
    put16(h, 6, 0x4000); // DF, offset 0
    h[IP_TTL] = OUTER_TTL;
    h[IP_TTL + 1] = match o.kind {
        TunnelKind::Ipip => protocol::IPIP,
        TunnelKind::Gre => protocol::GRE,
        TunnelKind::Gue => protocol::UDP,
    };
    put16(h, IP_CHECK, 0);
    put32(h, IP_SRC, o.src);
    put32(h, IP_DST, o.dst);
    let c = checksum::checksum(h);
    put16(h, IP_CHECK, c);
    let t = &mut frame[ETH_LEN + OUTER_IP..at];
    match o.kind {
        TunnelKind::Ipip => {}
        // C, K, S, version 0 (RFC 2784 §2.1); the protocol type of the
        // payload.
        TunnelKind::Gre => {
            put16(t, 0, 0);
            put16(t, 2, 0x0800);
        }
        TunnelKind::Gue => {
            put16(t, 0, o.sport);
            put16(t, 2, o.dport);
            put16(t, 4, (UDP_LEN + inner_len) as u16);
            put16(t, 6, 0);
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::nat::tests::syn;
    use crate::wire::ipv4::Ipv4Packet;

    fn framed(kind: TunnelKind, inner: &[u8]) -> Vec<u8> {
        let mut f = vec![0xaau8; ETH_LEN + kind.overhead()];
        f.extend_from_slice(inner);
        f
    }

    #[test]
    fn each_kind_wraps_the_inner_packet_untouched_with_a_valid_outer_header() {
        let inner = syn();
        for (kind, proto, tail) in [
            (TunnelKind::Ipip, protocol::IPIP, vec![]),
            (TunnelKind::Gre, protocol::GRE, vec![0, 0, 0x08, 0x00]),
            (TunnelKind::Gue, protocol::UDP, {
                let mut u = vec![0xc1, 0x23, 0x17, 0xc0];
                u.extend_from_slice(&((8 + inner.len()) as u16).to_be_bytes());
                u.extend_from_slice(&[0, 0]);
                u
            }),
        ] {
            let mut f = framed(kind, &inner);
            f[..12].copy_from_slice(&[1; 12]);
            let o = Outer { kind, src: 0xc633_6405, dst: 0xc633_640c, sport: 0xc123, dport: 6080 };
            let len = encapsulate(&mut f, inner.len(), &o).unwrap();
            assert_eq!(len, f.len());
            assert_eq!(&f[..12], &[1; 12], "{kind:?}: MACs are the caller's");
            assert_eq!(&f[12..14], &[0x08, 0x00]);
            let ip = Ipv4Packet::new_checked(&f[ETH_LEN..]).unwrap();
            assert!(ip.verify_checksum(), "{kind:?}");
            assert_eq!(ip.protocol(), proto);
            assert_eq!(ip.total_len() as usize, kind.overhead() + inner.len());
            assert_eq!(ip.ttl(), OUTER_TTL);
            assert!(!ip.is_fragment());
            assert_eq!(f[ETH_LEN + 6], 0x40, "DF");
            assert_eq!(u32::from(ip.src_addr()), o.src);
            assert_eq!(u32::from(ip.dst_addr()), o.dst);
            assert_eq!(f[ETH_LEN + 1], inner[1], "TOS copied");
            assert_eq!(&f[ETH_LEN + OUTER_IP..ETH_LEN + kind.overhead()], &tail[..], "{kind:?}");
            assert_eq!(&f[ETH_LEN + kind.overhead()..], &inner[..], "{kind:?}: inner untouched");
        }
    }

    #[test]
    fn refuses_a_short_frame_untouched() {
        let inner = syn();
        let mut f = framed(TunnelKind::Gre, &inner);
        f.pop();
        let before = f.clone();
        let o = Outer { kind: TunnelKind::Gre, src: 1, dst: 2, sport: 0, dport: 0 };
        assert_eq!(encapsulate(&mut f, inner.len(), &o), None);
        assert_eq!(f, before);
    }

    #[test]
    fn entropy_stays_in_the_prefix_and_the_ephemeral_range() {
        let net = u32::from_be_bytes([198, 51, 100, 0]);
        let mut srcs = std::collections::BTreeSet::new();
        for i in 0..1000u64 {
            let h = crate::hash::keyed64(i, 7);
            let (src, sport) = entropy(h, net, 0xff);
            assert_eq!(src & 0xffff_ff00, net);
            assert!(sport >= EPHEMERAL_BASE);
            assert_eq!(entropy(h, net, 0xff), (src, sport), "one flow, one outer header");
            srcs.insert(src);
        }
        assert!(srcs.len() > 200, "spread over the /24: {}", srcs.len());
        assert_eq!(entropy(12345, net | 5, 0).0, net | 5, "no prefix: the one address");
    }
}
