//! Translation between the families (RFC 7915, the stateful form of RFC
//! 6146 at a full-NAT virtual server): an IPv6 packet becomes IPv4 and
//! the other way round, in place, with the new addresses and ports.
//!
//! The IPv4 side of a translated connection is held as IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), which never appear on
//! the wire (`pipeline::classify6` drops them). The one's-complement sum of
//! a mapped address equals its IPv4 address's (0xffff is zero), and both
//! pseudo headers carry the same length and protocol, so the TCP/UDP
//! checksum is updated as for a NAT rewrite, from the old addresses (as
//! 128-bit words) to the new (RFC 1624), and stays right for the other
//! family's header. IPv4 UDP without a checksum gets a full one (RFC 7915
//! §4.5: zero is invalid over IPv6).
//!
//! Headers: IPv6 to IPv4 (§5.1) writes a 20-byte header with the traffic
//! class as TOS, TTL from the hop limit less one, ID 0 and DF (RFC 6864
//! §4.1's atomic datagram: the box never fragments, and its path MTU
//! discovery across the translation relies on the errors being translated,
//! `ptb_from_frag_needed`); IPv4 to IPv6 (§4.1) writes the 40-byte header
//! with TOS as traffic class, flow label 0 and the hop limit from TTL less
//! one. IPv4 options are not translated: such a packet is refused by the
//! caller (`xlate-ipv4-options`).

use super::nat::{get16, get32, put16, put32, L4_DPORT, L4_SPORT, TCP_CHECK, UDP_CHECK};
use crate::wire::checksum::{self, update16, update32};
use crate::wire::ipv4::protocol;
use crate::wire::ipv6::{next_header, pseudo_header};

/// The IPv4-mapped form of an IPv4 address (RFC 4291 §2.5.5.2).
#[inline(always)]
pub const fn mapped(a: u32) -> u128 {
    0xffff_u128 << 32 | a as u128
}

/// The IPv4 address of a mapped one.
#[inline(always)]
pub const fn unmapped(a: u128) -> Option<u32> {
    if a >> 32 == 0xffff { Some(a as u32) } else { None }
}

/// Bytes an IPv4 header (no options) is shorter than IPv6's.
pub const DELTA: usize = 20;

/// The L4 ports and checksum of `seg` (TCP or UDP) from the packet's old
/// addresses to `src`/`dst` (addresses as 128-bit, mapped for IPv4).
/// `None` when the segment is too short for its checksum.
#[inline]
fn l4(seg: &mut [u8], proto: u8, old: (u128, u128), src: (u128, u16), dst: (u128, u16)) -> Option<()> {
    let at = match proto {
        protocol::TCP => TCP_CHECK,
        protocol::UDP => UDP_CHECK,
        _ => return None,
    };
    if seg.len() < at + 2 {
        return None;
    }
    let mut check = get16(seg, at);
    for (old, new) in [(old.0, src.0), (old.1, dst.0)] {
        for i in 0..4 {
            check = update32(check, (old >> (96 - 32 * i)) as u32, (new >> (96 - 32 * i)) as u32);
        }
    }
    for (port_at, new) in [(L4_SPORT, src.1), (L4_DPORT, dst.1)] {
        check = update16(check, get16(seg, port_at), new);
        put16(seg, port_at, new);
    }
    if proto == protocol::UDP && check == 0 {
        check = 0xffff;
    }
    put16(seg, at, check);
    Some(())
}

/// Translates the IPv6 packet at `l3` (no extension headers, `ip_len`
/// bytes, TCP or UDP, hop limit at least 2) into IPv4 from `src` to `dst`:
/// the IPv4 header is written at `l3 + DELTA`, and the link-layer header
/// (`l3` bytes: MACs and any VLAN tag, the EtherType set to IPv4) moves up
/// to end there. The caller then takes `DELTA` bytes off the head
/// (`Packet::adj`). `None`, nothing changed, when the frame is shorter
/// than its headers.
pub fn v6_to_v4(frame: &mut [u8], l3: usize, ip_len: usize, src: (u32, u16), dst: (u32, u16)) -> Option<()> {
    if l3 < 14 || ip_len < 40 || frame.len() < l3 + ip_len {
        return None;
    }
    let h6 = frame.get(l3..l3 + 40)?;
    let old = (u128::from_be_bytes(h6.get(8..24)?.try_into().ok()?), u128::from_be_bytes(h6.get(24..40)?.try_into().ok()?));
    let (tc, proto, hops) = (get16(h6, 0) >> 4 & 0xff, h6.get(6).copied()?, h6.get(7).copied()?);
    l4(frame.get_mut(l3 + 40..l3 + ip_len)?, proto, old, (mapped(src.0), src.1), (mapped(dst.0), dst.1))?;
    let h = frame.get_mut(l3 + DELTA..l3 + 40)?;
    h.copy_from_slice(&[0x45, tc as u8, 0, 0, 0, 0, 0x40, 0, hops.saturating_sub(1), proto, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    put16(h, 2, (ip_len - DELTA) as u16);
    put32(h, 12, src.0);
    put32(h, 16, dst.0);
    put16(h, 10, checksum::checksum(h));
    frame.copy_within(0..l3, DELTA);
    put16(frame, DELTA + l3 - 2, 0x0800);
    Some(())
}

/// Translates the IPv4 packet (a 20-byte header, `ip_len` bytes, TCP or
/// UDP, TTL at least 2) into IPv6 from `src` to `dst`. The caller has
/// grown the frame by `DELTA` at its head (`Packet::prepend`), so the
/// packet's link-layer header now starts at `DELTA` and its IPv4 header at
/// `l3 + DELTA`; the link-layer header moves back to 0 (EtherType IPv6)
/// and the IPv6 header takes `l3..l3 + 40`. `None`, nothing changed, when
/// the frame is shorter than its headers.
#[allow(clippy::indexing_slicing, reason = "`h` is the 40 bytes taken just above")]
pub fn v4_to_v6(frame: &mut [u8], l3: usize, ip_len: usize, src: (u128, u16), dst: (u128, u16)) -> Option<()> {
    if l3 < 14 || ip_len < 20 || frame.len() < l3 + DELTA + ip_len {
        return None;
    }
    let h4 = frame.get(l3 + DELTA..l3 + 40)?;
    let (tos, ttl, proto) = (h4.get(1).copied()?, h4.get(8).copied()?, h4.get(9).copied()?);
    let old = (mapped(get32(h4, 12)), mapped(get32(h4, 16)));
    let payload = ip_len - 20;
    let zero_udp = proto == protocol::UDP && frame.get(l3 + 40 + UDP_CHECK..l3 + 40 + UDP_CHECK + 2) == Some(&[0, 0][..]);
    l4(frame.get_mut(l3 + 40..l3 + 40 + payload)?, proto, old, src, dst)?;
    frame.copy_within(DELTA..DELTA + l3, 0);
    put16(frame, l3 - 2, 0x86dd);
    let h = frame.get_mut(l3..l3 + 40)?;
    put32(h, 0, 6 << 28 | u32::from(tos) << 20);
    put16(h, 4, payload as u16);
    h[6] = proto;
    h[7] = ttl.saturating_sub(1);
    h[8..24].copy_from_slice(&src.0.to_be_bytes());
    h[24..40].copy_from_slice(&dst.0.to_be_bytes());
    if zero_udp {
        // RFC 7915 §4.5: computed over the IPv6 pseudo header.
        let seg = frame.get_mut(l3 + 40..l3 + 40 + payload)?;
        put16(seg, UDP_CHECK, 0);
        let c = !checksum::fold(checksum::sum(seg, pseudo_header(src.0.into(), dst.0.into(), next_header::UDP, payload as u32)));
        put16(seg, UDP_CHECK, if c == 0 { 0xffff } else { c });
    }
    Some(())
}

/// Bytes an ICMPv4 fragmentation needed (outer header `hl_o`, quoted
/// header `hl_q`) grows by as the Packet Too Big it is translated into:
/// both headers become IPv6's. `None` when their options make them longer
/// than that (the caller refuses such an error).
#[inline]
pub const fn ptb_growth(hl_o: usize, hl_q: usize) -> Option<usize> {
    80usize.checked_sub(hl_o + hl_q)
}

/// The addresses of a translated error: the outer header's, and the
/// quoted packet's as its sender wrote them.
#[derive(Debug, Clone, Copy)]
pub struct ErrorAddrs {
    pub outer: (u128, u128),
    pub quoted_src: (u128, u16),
    pub quoted_dst: (u128, u16),
}

/// Turns an ICMPv4 fragmentation needed (RFC 792, RFC 1191) about a
/// translated packet into ICMPv6 Packet Too Big (RFC 7915 §4.2: type 3
/// code 4 becomes type 2 code 0, the MTU `mtu6`, already adjusted by the
/// caller for the headers' difference), in place: the caller has grown
/// the frame at its head by `ptb_growth(hl_o, hl_q)`, so the error's
/// link-layer header starts there and the quoted transport bytes (`n` of
/// them) already sit where the Packet Too Big wants them, after its IPv6,
/// ICMPv6 and quoted IPv6 headers. The quoted packet is rewritten as its
/// IPv6 sender sent it (addresses, ports, its checksum updated when
/// quoted), the whole kept within IPv6's minimum MTU (RFC 4443 §2.4 (c)).
/// Returns the frame's new length; `None`, the frame unchanged, when it
/// is shorter than its headers.
#[allow(clippy::indexing_slicing, reason = "every offset is below `end`, and the frame is at least that long: checked on entry")]
pub fn ptb_from_frag_needed(frame: &mut [u8], l3: usize, (hl_o, hl_q): (usize, usize), n: usize, mtu6: u32, a: &ErrorAddrs) -> Option<usize> {
    let d = ptb_growth(hl_o, hl_q)?;
    let n = n.min(super::tunnel6::MIN_MTU - 88);
    let end = l3 + 88 + n;
    if l3 < 14 || hl_o < 20 || hl_q < 20 || frame.len() < end.max(d + l3 + hl_o + 8 + hl_q) {
        return None;
    }
    let q = d + l3 + hl_o + 8;
    let (q_tos, q_ttl, q_proto, q_total) = (frame[q + 1], frame[q + 8], frame[q + 9], usize::from(get16(frame, q + 2)));
    let q_old = (mapped(get32(frame, q + 12)), mapped(get32(frame, q + 16)));
    frame.copy_within(d..d + l3, 0);
    put16(frame, l3 - 2, 0x86dd);
    let icmp_len = 48 + n;
    let h = &mut frame[l3..l3 + 40];
    put32(h, 0, 6 << 28);
    put16(h, 4, icmp_len as u16);
    h[6] = next_header::ICMPV6;
    h[7] = 64;
    h[8..24].copy_from_slice(&a.outer.0.to_be_bytes());
    h[24..40].copy_from_slice(&a.outer.1.to_be_bytes());
    let m = &mut frame[l3 + 40..l3 + 48];
    m.copy_from_slice(&[crate::wire::icmpv6::kind::PACKET_TOO_BIG, 0, 0, 0, 0, 0, 0, 0]);
    put32(m, 4, mtu6);
    let qh = &mut frame[l3 + 48..l3 + 88];
    put32(qh, 0, 6 << 28 | u32::from(q_tos) << 20);
    put16(qh, 4, q_total.saturating_sub(hl_q) as u16);
    qh[6] = q_proto;
    qh[7] = q_ttl;
    qh[8..24].copy_from_slice(&a.quoted_src.0.to_be_bytes());
    qh[24..40].copy_from_slice(&a.quoted_dst.0.to_be_bytes());
    let seg = &mut frame[l3 + 88..end];
    if l4(seg, q_proto, q_old, a.quoted_src, a.quoted_dst).is_none() && seg.len() >= 4 {
        // Too short a quote for its checksum: the ports alone.
        put16(seg, L4_SPORT, a.quoted_src.1);
        put16(seg, L4_DPORT, a.quoted_dst.1);
    }
    let ps = pseudo_header(a.outer.0.into(), a.outer.1.into(), next_header::ICMPV6, icmp_len as u32);
    let c = !checksum::fold(checksum::sum(&frame[l3 + 40..end], ps));
    put16(frame, l3 + 42, c);
    Some(end)
}

/// Bytes an ICMPv6 Packet Too Big shrinks by as the fragmentation needed
/// it is translated into (both headers become IPv4's).
pub const PTB_SHRINK: usize = 40;

/// The addresses of an error translated for an IPv4 client.
#[derive(Debug, Clone, Copy)]
pub struct ErrorAddrs4 {
    pub outer: (u32, u32),
    pub quoted_src: (u32, u16),
    pub quoted_dst: (u32, u16),
}

/// Turns an ICMPv6 Packet Too Big (RFC 4443 §3.2; the outer and quoted
/// IPv6 headers without extension headers, `n` transport bytes quoted)
/// about a translated packet into ICMPv4 fragmentation needed (RFC 7915
/// §5.2: type 3 code 4, `mtu` already adjusted by the caller) for the
/// IPv4 client, in place: written from `PTB_SHRINK` on (the caller then
/// takes that many bytes off the head, `Packet::adj`), so the quoted
/// transport bytes stay where they are; the quoted packet as the client
/// sent it (its IPv4 header rebuilt, addresses, ports and checksum
/// restored), the whole within 576 bytes (RFC 1812 §4.3.2.3). Returns the
/// length of the frame that starts at `PTB_SHRINK`; `None`, the frame
/// unchanged, when it is shorter than its headers.
#[allow(clippy::indexing_slicing, reason = "every offset is below `PTB_SHRINK + end`, and the frame is at least `l3 + 88` long and holds the quoted bytes: checked on entry")]
pub fn frag_needed_from_ptb(frame: &mut [u8], l3: usize, n: usize, mtu: u16, a: &ErrorAddrs4) -> Option<usize> {
    let n = n.min(576 - 48).min(frame.len().saturating_sub(l3 + 88));
    let end = l3 + 48 + n;
    if l3 < 14 || frame.len() < l3 + 88 + n {
        return None;
    }
    let q = l3 + 48;
    let (tc, q_payload, q_proto, q_hops) = ((get16(frame, q) >> 4) as u8, usize::from(get16(frame, q + 4)), frame[q + 6], frame[q + 7]);
    let old = (u128::from_be_bytes(frame[q + 8..q + 24].try_into().ok()?), u128::from_be_bytes(frame[q + 24..q + 40].try_into().ok()?));
    let b = PTB_SHRINK;
    frame.copy_within(0..l3, b);
    put16(frame, b + l3 - 2, 0x0800);
    let o = b + l3;
    let h = &mut frame[o..o + 20];
    h.copy_from_slice(&[0x45, 0xc0, 0, 0, 0, 0, 0x40, 0, 64, protocol::ICMP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    put16(h, 2, (28 + 20 + n) as u16);
    put32(h, 12, a.outer.0);
    put32(h, 16, a.outer.1);
    put16(h, 10, checksum::checksum(h));
    let qh = &mut frame[o + 28..o + 48];
    qh.copy_from_slice(&[0x45, tc, 0, 0, 0, 0, 0x40, 0, q_hops, q_proto, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    put16(qh, 2, (20 + q_payload) as u16);
    put32(qh, 12, a.quoted_src.0);
    put32(qh, 16, a.quoted_dst.0);
    put16(qh, 10, checksum::checksum(qh));
    let seg = &mut frame[o + 48..b + end];
    let (src, dst) = ((mapped(a.quoted_src.0), a.quoted_src.1), (mapped(a.quoted_dst.0), a.quoted_dst.1));
    if l4(seg, q_proto, old, src, dst).is_none() && seg.len() >= 4 {
        put16(seg, L4_SPORT, src.1);
        put16(seg, L4_DPORT, dst.1);
    }
    let m = &mut frame[o + 20..b + end];
    m[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    put16(m, 6, mtu);
    put16(m, 2, checksum::checksum(m));
    Some(end)
}

#[cfg(test)]
mod tests;
