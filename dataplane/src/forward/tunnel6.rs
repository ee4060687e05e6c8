//! `dsr-tunnel` over IPv6: the client's IPv6 packet, untouched, inside an
//! outer IPv6 header to the server (RFC 2473, generic packet tunnelling in
//! IPv6): IPv6 in IPv6 (`ipip`, next header 41), GRE (RFC 2784 over IPv6,
//! RFC 7676: protocol type 0x86DD) or GUE variant 1 over UDP (the UDP
//! payload is the inner IPv6 packet). The outer flow label carries the
//! flow's hash (RFC 6438: tunnel endpoints set it so that ECMP and LAG
//! spread tunnels), as GUE's source port does; the outer source is the
//! self address of the link towards the server.
//!
//! And the tunnel entry's Packet Too Big (RFC 2473 §7.1, RFC 4443 §3.2): a
//! packet that its encapsulation would take past the link's MTU is
//! answered from the VIP with the tunnel's MTU, never fragmented.

use super::nat::put16;
use crate::wire::checksum;
use crate::wire::ethernet::{EthernetAddress, HEADER_LEN as ETH_LEN};
use crate::wire::ipv6::{next_header, pseudo_header};
use crate::wire::tunnel::{TunnelKind, OUTER_IP6};

/// Hop limit of the outer header (RFC 2473 §6.3: the tunnel entry point's
/// default; Linux's 64).
const OUTER_HOPS: u8 = 64;
/// The IPv6 minimum MTU (RFC 8200 §5): an ICMPv6 error is never longer.
pub const MIN_MTU: usize = 1280;
/// IPv6 and ICMPv6 headers of a Packet Too Big.
const PTB_HEADERS: usize = OUTER_IP6 + 8;

/// The outer header of one IPv6 tunnel packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer6 {
    pub kind: TunnelKind,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The flow's hash (`tunnel::flow_hash` folded): the low 20 bits are the
    /// flow label, and GUE's source port comes from it.
    pub hash: u32,
    /// GUE: the servers' UDP port.
    pub dport: u16,
}

/// Writes the EtherType and the outer headers in front of the inner IPv6
/// packet of `inner_len` bytes that starts at `ETH_LEN + kind.overhead6()`
/// in `frame` (the caller moved it there and set the Ethernet addresses).
/// Outer IPv6: the inner traffic class (RFC 2473 §6.5), the flow label
/// from the hash, hop limit 64. GUE's UDP checksum is computed over the
/// whole datagram (RFC 8200 §8.1: zero is invalid over IPv6). Returns the
/// frame length, or `None` (frame untouched) when `frame` is shorter.
#[allow(clippy::indexing_slicing, reason = "every offset is below `at`, and the frame is at least `at + 40` long: checked on entry")]
pub fn encapsulate6(frame: &mut [u8], inner_len: usize, o: &Outer6) -> Option<usize> {
    let at = ETH_LEN + o.kind.overhead6();
    let total = at + inner_len;
    if inner_len < OUTER_IP6 || frame.len() < total {
        return None;
    }
    let tc = (frame[at] & 0x0f) << 4 | frame[at + 1] >> 4;
    frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let payload = (o.kind.overhead6() - OUTER_IP6 + inner_len) as u16;
    let nh = match o.kind {
        TunnelKind::Ipip => next_header::IPV6,
        TunnelKind::Gre => next_header::GRE,
        TunnelKind::Gue => next_header::UDP,
    };
    let word = 6u32 << 28 | u32::from(tc) << 20 | (o.hash & 0xf_ffff);
    let h = &mut frame[ETH_LEN..ETH_LEN + OUTER_IP6];
    h[0..4].copy_from_slice(&word.to_be_bytes());
    put16(h, 4, payload);
    h[6] = nh;
    h[7] = OUTER_HOPS;
    h[8..24].copy_from_slice(&o.src);
    h[24..40].copy_from_slice(&o.dst);
    let t = &mut frame[ETH_LEN + OUTER_IP6..total];
    match o.kind {
        TunnelKind::Ipip => {}
        TunnelKind::Gre => {
            put16(t, 0, 0);
            put16(t, 2, 0x86dd);
        }
        TunnelKind::Gue => {
            put16(t, 0, 0xc000 | (o.hash >> 18) as u16 & 0x3fff);
            put16(t, 2, o.dport);
            put16(t, 4, payload);
            put16(t, 6, 0);
            let ph = pseudo_header(o.src.into(), o.dst.into(), next_header::UDP, u32::from(payload));
            let c = !checksum::fold(checksum::sum(t, ph));
            // RFC 768: a computed zero is sent as all ones.
            put16(t, 6, if c == 0 { 0xffff } else { c });
        }
    }
    Some(total)
}

/// Frame length of `build_packet_too_big6`'s answer to an IPv6 packet of
/// `ip_len` bytes at `l3`: the headers and as much of the packet as fits
/// in the minimum MTU (RFC 4443 §2.4 (c)).
#[inline]
pub fn packet_too_big6_len(l3: usize, ip_len: usize) -> usize {
    l3 + PTB_HEADERS + ip_len.min(MIN_MTU - PTB_HEADERS)
}

/// Turns an IPv6 packet (at `l3`, `ip_len` bytes, validated) too big for
/// the next hop into ICMPv6 Packet Too Big (RFC 4443 §3.2) carrying
/// `mtu`, in place: from the packet's destination (the VIP) back to its
/// source, hop limit 64, the packet quoted as far as 1280 bytes allow; at
/// L2 back to the frame's source from `port_mac`, a VLAN tag kept. The
/// frame must hold `packet_too_big6_len` bytes (a packet too big for a
/// tunnel is longer than its quote and headers: the tunnel's MTU is at
/// least 1280); `None`, untouched, otherwise. Returns the frame length.
#[allow(clippy::indexing_slicing, reason = "every offset is below `len`, and the frame is at least that long: checked on entry")]
pub fn build_packet_too_big6(frame: &mut [u8], l3: usize, ip_len: usize, mtu: u32, port_mac: EthernetAddress) -> Option<usize> {
    let len = packet_too_big6_len(l3, ip_len);
    if ip_len < OUTER_IP6 || l3 < ETH_LEN || frame.len() < len.max(l3 + ip_len) {
        return None;
    }
    let quote = len - l3 - PTB_HEADERS;
    let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
    src.copy_from_slice(&frame[l3 + 24..l3 + 40]);
    dst.copy_from_slice(&frame[l3 + 8..l3 + 24]);
    frame.copy_within(l3..l3 + quote, l3 + PTB_HEADERS);
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&port_mac.0);
    let payload = (8 + quote) as u16;
    let h = &mut frame[l3..l3 + OUTER_IP6];
    h[0..4].copy_from_slice(&(6u32 << 28).to_be_bytes());
    put16(h, 4, payload);
    h[6] = next_header::ICMPV6;
    h[7] = OUTER_HOPS;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    let m = &mut frame[l3 + OUTER_IP6..len];
    m[0] = crate::wire::icmpv6::kind::PACKET_TOO_BIG;
    m[1] = 0;
    put16(m, 2, 0);
    m[4..8].copy_from_slice(&mtu.to_be_bytes());
    let ph = pseudo_header(src.into(), dst.into(), next_header::ICMPV6, u32::from(payload));
    put16(m, 2, !checksum::fold(checksum::sum(m, ph)));
    Some(len)
}

#[cfg(test)]
mod tests;
