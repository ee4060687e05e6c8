//! Address and port rewriting with incremental checksum updates
//! (RFC 1624): the header work of NAT and full-NAT, and of the ICMP error
//! translation.

use crate::wire::checksum::{update16, update32};
use crate::wire::ipv4::protocol;

// Byte offsets inside the IPv4 header (RFC 791 §3.1).
pub(super) const IP_TOTAL_LEN: usize = 2;
pub(super) const IP_TTL: usize = 8;
pub(super) const IP_CHECK: usize = 10;
pub(super) const IP_SRC: usize = 12;
pub(super) const IP_DST: usize = 16;
// Inside the IPv6 header (RFC 8200 §3).
const IP6_HOP_LIMIT: usize = 7;
const IP6_SRC: usize = 8;
const IP6_DST: usize = 24;
// Inside TCP (RFC 9293 §3.1) and UDP (RFC 768) headers.
pub(super) const L4_SPORT: usize = 0;
pub(super) const L4_DPORT: usize = 2;
pub(super) const TCP_SEQ: usize = 4;
pub(super) const TCP_ACK: usize = 8;
pub(super) const TCP_DOFF: usize = 12;
pub(super) const TCP_FLAGS: usize = 13;
pub(super) const TCP_CHECK: usize = 16;
pub(super) const UDP_CHECK: usize = 6;

#[inline(always)]
pub(super) fn get16(b: &[u8], at: usize) -> u16 {
    crate::wire::be16(b, at)
}

#[inline(always)]
pub(super) fn put16(b: &mut [u8], at: usize, v: u16) {
    crate::wire::set_be16(b, at, v)
}

#[inline(always)]
pub(super) fn get32(b: &[u8], at: usize) -> u32 {
    crate::wire::be32(b, at)
}

#[inline(always)]
pub(super) fn put32(b: &mut [u8], at: usize, v: u32) {
    crate::wire::set_be32(b, at, v)
}

/// Where the L4 checksum lives, if the segment carries one we must keep
/// right: TCP always; UDP unless it is 0 ("no checksum", RFC 768).
#[inline(always)]
fn l4_check_at(proto: u8, l4: &[u8]) -> Option<usize> {
    match proto {
        protocol::TCP if l4.len() >= TCP_CHECK + 2 => Some(TCP_CHECK),
        protocol::UDP if l4.len() >= UDP_CHECK + 2 && get16(l4, UDP_CHECK) != 0 => Some(UDP_CHECK),
        _ => None,
    }
}

/// Rewrites the addresses and ports of an IPv4 TCP/UDP packet in place and
/// updates the IPv4 header checksum and the L4 checksum incrementally.
/// `ip` is the IPv4 header and payload (from the IP header on), `hl` the
/// header length; `src`/`dst` are the new (address, port), `None` to keep.
/// With `decrement_ttl`, TTL drops by one (RFC 1812 §5.3.1; the caller
/// refused TTL <= 1). The caller validated the header lengths.
#[inline]
pub fn rewrite(ip: &mut [u8], hl: usize, proto: u8, src: Option<(u32, u16)>, dst: Option<(u32, u16)>, decrement_ttl: bool) {
    let mut ip_check = get16(ip, IP_CHECK);
    let Some((hdr, l4)) = ip.split_at_mut_checked(hl) else { return };
    let l4_at = l4_check_at(proto, l4);
    let mut l4_check = l4_at.map_or(0, |at| get16(l4, at));
    if let Some((addr, port)) = src {
        let old = get32(hdr, IP_SRC);
        put32(hdr, IP_SRC, addr);
        ip_check = update32(ip_check, old, addr);
        // The pseudo header covers the addresses (RFC 9293 §3.1, RFC 768).
        l4_check = update32(l4_check, old, addr);
        let oldp = get16(l4, L4_SPORT);
        put16(l4, L4_SPORT, port);
        l4_check = update16(l4_check, oldp, port);
    }
    if let Some((addr, port)) = dst {
        let old = get32(hdr, IP_DST);
        put32(hdr, IP_DST, addr);
        ip_check = update32(ip_check, old, addr);
        l4_check = update32(l4_check, old, addr);
        let oldp = get16(l4, L4_DPORT);
        put16(l4, L4_DPORT, port);
        l4_check = update16(l4_check, oldp, port);
    }
    if decrement_ttl {
        // TTL shares a 16-bit word with the protocol field.
        let old = get16(hdr, IP_TTL);
        put16(hdr, IP_TTL, old.wrapping_sub(0x100));
        ip_check = update16(ip_check, old, get16(hdr, IP_TTL));
    }
    put16(hdr, IP_CHECK, ip_check);
    if let Some(at) = l4_at {
        // A computed UDP checksum of 0 goes out as 0xffff (RFC 768).
        if proto == protocol::UDP && l4_check == 0 {
            l4_check = 0xffff;
        }
        put16(l4, at, l4_check);
    }
}

/// Rewrites the addresses and ports of an IPv6 TCP/UDP packet in place,
/// the L4 checksum updated incrementally over the pseudo header's address
/// words (RFC 8200 §8.1; IPv6 has no header checksum). `ip` is the IPv6
/// header and payload, `l4` the offset of the TCP/UDP header in it (40
/// and the extension headers); `src`/`dst` are the new (address, port),
/// `None` to keep. With `decrement_hops` the hop limit drops by one (RFC
/// 8200 §3; the caller refused a hop limit of 1 or less). A UDP checksum
/// of 0 never reaches here (the parse drops it).
#[inline]
pub fn rewrite6(ip: &mut [u8], l4: usize, proto: u8, src: Option<(u128, u16)>, dst: Option<(u128, u16)>, decrement_hops: bool) {
    let Some((hdr, seg)) = ip.split_at_mut_checked(l4) else { return };
    let at = match proto {
        protocol::TCP if seg.len() >= TCP_CHECK + 2 => TCP_CHECK,
        protocol::UDP if seg.len() >= UDP_CHECK + 2 => UDP_CHECK,
        _ => return,
    };
    let mut check = get16(seg, at);
    let swap = |hdr: &mut [u8], seg: &mut [u8], addr_at: usize, port_at: usize, (addr, port): (u128, u16), check: &mut u16| {
        for i in 0..4 {
            // The i-th 32-bit word of the address, most significant first.
            let new = (addr >> (96 - 32 * i)) as u32;
            let old = get32(hdr, addr_at + 4 * i);
            put32(hdr, addr_at + 4 * i, new);
            *check = update32(*check, old, new);
        }
        let oldp = get16(seg, port_at);
        put16(seg, port_at, port);
        *check = update16(*check, oldp, port);
    };
    if let Some(s) = src {
        swap(hdr, seg, IP6_SRC, L4_SPORT, s, &mut check);
    }
    if let Some(d) = dst {
        swap(hdr, seg, IP6_DST, L4_DPORT, d, &mut check);
    }
    if proto == protocol::UDP && check == 0 {
        check = 0xffff;
    }
    put16(seg, at, check);
    if decrement_hops {
        if let Some(h) = hdr.get_mut(IP6_HOP_LIMIT) {
            *h = h.saturating_sub(1);
        }
    }
}

/// Rewrites only the IPv4 addresses (for the outer header of ICMP errors),
/// with the header checksum; optionally decrements TTL.
#[inline]
pub fn rewrite_addrs(hdr: &mut [u8], src: Option<u32>, dst: Option<u32>, decrement_ttl: bool) {
    let mut check = get16(hdr, IP_CHECK);
    if let Some(a) = src {
        check = update32(check, get32(hdr, IP_SRC), a);
        put32(hdr, IP_SRC, a);
    }
    if let Some(a) = dst {
        check = update32(check, get32(hdr, IP_DST), a);
        put32(hdr, IP_DST, a);
    }
    if decrement_ttl {
        let old = get16(hdr, IP_TTL);
        put16(hdr, IP_TTL, old.wrapping_sub(0x100));
        check = update16(check, old, get16(hdr, IP_TTL));
    }
    put16(hdr, IP_CHECK, check);
}

/// Sets the DSCP of an IPv4 header (RFC 2474 §3: the upper six bits of the
/// former TOS octet; the ECN bits, RFC 3168, are kept), with the header
/// checksum updated (RFC 1624). `dsr-dscp` marks the VIP this way.
#[inline]
pub fn set_dscp(hdr: &mut [u8], dscp: u8) {
    let old = get16(hdr, 0);
    let tos = (dscp << 2) | (old as u8 & 0x03);
    let new = (old & 0xff00) | u16::from(tos);
    put16(hdr, 0, new);
    let check = update16(get16(hdr, IP_CHECK), old, new);
    put16(hdr, IP_CHECK, check);
}

/// Sets the DSCP of an IPv6 header (the traffic class's upper 6 bits,
/// RFC 2474 §3; ECN kept). IPv6 has no header checksum.
#[inline]
pub fn set_dscp6(hdr: &mut [u8], dscp: u8) {
    if hdr.len() < 2 {
        return;
    }
    let word = get16(hdr, 0);
    // Version (4 bits), traffic class (8): DSCP its top 6, ECN the rest.
    let new = (word & 0xf03f) | (u16::from(dscp & 0x3f) << 6);
    put16(hdr, 0, new);
}

/// Rewrites the first 4 bytes (ports) of an embedded TCP/UDP header.
#[inline]
pub fn rewrite_ports(l4: &mut [u8], sport: Option<u16>, dport: Option<u16>) {
    if l4.len() < 4 {
        return;
    }
    if let Some(p) = sport {
        put16(l4, L4_SPORT, p);
    }
    if let Some(p) = dport {
        put16(l4, L4_DPORT, p);
    }
}

// Refusals: a new connection no server can take is answered at once, as a
// host with no listener would (IPVS with no real server, an F5 pool down),
// by turning its first packet into the answer in place.

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::wire::checksum;

    /// IPv4 + TCP SYN 192.0.2.10:40000 -> 192.0.2.100:80 with correct
    /// checksums.
    pub(crate) fn syn() -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[192, 0, 2, 10]);
        p[16..20].copy_from_slice(&[192, 0, 2, 100]);
        let c = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[24..28].copy_from_slice(&1u32.to_be_bytes());
        p[32] = 0x50;
        p[33] = 0x02;
        p[34..36].copy_from_slice(&64240u16.to_be_bytes());
        fill_tcp(&mut p);
        p
    }

    pub(crate) fn fill_tcp(p: &mut [u8]) {
        p[36] = 0;
        p[37] = 0;
        let src = std::net::Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        let dst = std::net::Ipv4Addr::new(p[16], p[17], p[18], p[19]);
        let ps = checksum::pseudo_header(src, dst, 6, (p.len() - 20) as u16);
        let c = !checksum::fold(checksum::sum(&p[20..], ps));
        p[36..38].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn rewrite_keeps_checksums_valid() {
        let mut p = syn();
        let server = u32::from(std::net::Ipv4Addr::new(198, 51, 100, 11));
        let local = u32::from(std::net::Ipv4Addr::new(198, 51, 100, 1));
        rewrite(&mut p, 20, 6, Some((local, 1025)), Some((server, 8080)), true);
        assert_eq!(&p[12..16], &[198, 51, 100, 1]);
        assert_eq!(&p[16..20], &[198, 51, 100, 11]);
        assert_eq!(get16(&p, 20), 1025);
        assert_eq!(get16(&p, 22), 8080);
        assert_eq!(p[8], 63);
        assert_eq!(checksum::checksum(&p[..20]), 0, "IPv4 header checksum valid");
        let mut full = p.clone();
        fill_tcp(&mut full);
        assert_eq!(&p[36..38], &full[36..38], "incremental TCP checksum equals recomputed");
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut p = syn();
        p[9] = 17;
        p[24..26].copy_from_slice(&20u16.to_be_bytes()); // UDP length
        p[26..28].copy_from_slice(&[0, 0]); // no checksum
        let c = checksum::checksum(&{
            let mut h = p[..20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        p[10..12].copy_from_slice(&c.to_be_bytes());
        rewrite(&mut p, 20, 17, None, Some((0x01020304, 53)), false);
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(checksum::checksum(&p[..20]), 0);
    }
}
