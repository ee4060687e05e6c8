//! The PROXY protocol header (HAProxy's "The PROXY protocol", version 2,
//! §2.2) a `full-nat` TCP virtual server with `proxy_protocol = "v2"`
//! puts at the start of each connection's client stream, so the server
//! learns the client's address and port after source NAT; and the
//! sequence-space work that follows from it, as pure functions over the
//! TCP segment's bytes.
//!
//! The header occupies the client's sequence numbers `P .. P + LEN` in the
//! server's view (`P`: the client's ISN + 1), so everything the client
//! sends after it moves up by `LEN` on its way to the server, and every
//! ACK and SACK edge of the server's moves down by `LEN` on its way back.
//! The box never retransmits: every client segment that starts at `P`
//! while the server has not acknowledged the header carries it (the
//! handshake's last ACK first, then a first data segment, or the client's
//! duplicate ACK when the server's SYN-ACK comes again), the same bytes
//! each time, so an overlap is a retransmission the server trims (RFC
//! 9293 §3.10.7.4). The server's SYN-ACK announces an MSS `LEN` smaller,
//! so a full first segment still fits with the header before it.

use super::nat::{get16, get32, put16, put32};
use crate::wire::checksum;
use crate::wire::tcp;

/// The header's length for TCP over IPv4: 16 bytes of preamble, 12 of
/// addresses and ports.
pub const LEN: u32 = 28;

/// The v2 signature (§2.2).
const SIGNATURE: [u8; 12] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/// The header for a connection from `client:cport` to `vip:vport`:
/// version 2, PROXY command, TCP over IPv4.
pub fn v2(client: u32, cport: u16, vip: u32, vport: u16) -> [u8; LEN as usize] {
    let mut h = [0u8; LEN as usize];
    h[..12].copy_from_slice(&SIGNATURE);
    h[12] = 0x21; // version 2, PROXY
    h[13] = 0x11; // AF_INET, STREAM
    h[14..16].copy_from_slice(&12u16.to_be_bytes());
    h[16..20].copy_from_slice(&client.to_be_bytes());
    h[20..24].copy_from_slice(&vip.to_be_bytes());
    h[24..26].copy_from_slice(&cport.to_be_bytes());
    h[26..28].copy_from_slice(&vport.to_be_bytes());
    h
}

/// Is `a` after `b` in sequence space (RFC 9293 §3.4)?
#[inline]
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// A sequence or ACK number of the server's view in the client's: past
/// the header, `LEN` less; inside it, `p`. Once the server has
/// acknowledged the header (`acked`) every number it sends is past it:
/// `LEN` less, with no comparison (one would turn after 2 GiB).
#[inline]
pub fn client_view(n: u32, p: u32, acked: bool) -> u32 {
    if acked {
        n.wrapping_sub(LEN)
    } else {
        unshift(n, p)
    }
}

/// `client_view` before the header is acknowledged: its numbers are
/// within 2^31 of `p`.
#[inline]
pub fn unshift(n: u32, p: u32) -> u32 {
    if after(n, p.wrapping_add(LEN)) || n == p.wrapping_add(LEN) {
        n.wrapping_sub(LEN)
    } else if after(n, p) {
        p
    } else {
        n
    }
}

/// A client segment (`seg`: TCP header and payload) past `p`: its
/// sequence number up by `LEN`, the checksum updated (RFC 1624).
pub fn shift_seq(seg: &mut [u8]) {
    let old = get32(seg, 4);
    let new = old.wrapping_add(LEN);
    put32(seg, 4, new);
    let c = checksum::update32(get16(seg, 16), old, new);
    put16(seg, 16, c);
}

/// A server segment to the client (`seg`): its ACK number and SACK edges
/// (RFC 2018) into the client's view (`client_view`); a SYN-ACK's MSS
/// `LEN` smaller. The checksum is updated (RFC 1624). Whether its ACK
/// covers the header.
pub fn to_client(seg: &mut [u8], p: u32, was_acked: bool) -> bool {
    let Some(&flags) = seg.get(13) else { return false };
    let mut c = get16(seg, 16);
    // SACK edges lie above the ACK: past the header once it covers it.
    let mut acked = was_acked;
    if flags & tcp::flags::ACK != 0 {
        let old = get32(seg, 8);
        let new = client_view(old, p, was_acked);
        acked = was_acked || !after(p.wrapping_add(LEN), old);
        put32(seg, 8, new);
        c = checksum::update32(c, old, new);
    }
    let hl = seg.get(12).map_or(20, |b| usize::from(b >> 4) * 4).max(20);
    super::synproxy::walk_options(seg, hl, |seg, kind, at, len| match kind {
        tcp::option::SACK if len >= 10 && (len - 2) % 8 == 0 => {
            let mut i = at + 2;
            while i + 4 <= at + len {
                let old = get32(seg, i);
                let new = client_view(old, p, acked);
                put32(seg, i, new);
                c = checksum::update32(c, old, new);
                i += 4;
            }
        }
        tcp::option::MSS if len == 4 && flags & tcp::flags::SYN != 0 => {
            let old = get16(seg, at + 2);
            let new = old.saturating_sub(LEN as u16).max(1);
            put16(seg, at + 2, new);
            c = checksum::update16(c, old, new);
        }
        _ => {}
    });
    put16(seg, 16, c);
    acked
}

/// Inserts `header` before the payload of the TCP segment in the IPv4
/// packet at `frame[l3..l3 + ip_len]` (`hl`: the IPv4 header's length),
/// which `frame` has room for after it (`LEN` bytes more): the payload
/// moves up, the IPv4 total length, an urgent pointer (relative to the
/// sequence number) and both checksums are updated (RFC 1624: the
/// payload's words keep their alignment, so a checksum that was wrong
/// stays wrong). The sequence number stays (the header takes the place
/// the payload had). False, the frame untouched, when it does not add up.
pub fn insert(frame: &mut [u8], l3: usize, hl: usize, ip_len: usize, header: &[u8; LEN as usize]) -> bool {
    let n = LEN as usize;
    let Some(thl) = frame.get(l3 + hl + 12).map(|b| usize::from(b >> 4) * 4) else { return false };
    let (data, end) = (l3 + hl + thl, l3 + ip_len);
    if thl < 20 || data > end || frame.len() < end + n || ip_len + n > usize::from(u16::MAX) {
        return false;
    }
    frame.copy_within(data..end, data + n);
    let Some(at) = frame.get_mut(data..data + n) else { return false };
    at.copy_from_slice(header);
    let (old_len, new_len) = (ip_len as u16, (ip_len + n) as u16);
    let Some(ip) = frame.get_mut(l3..l3 + ip_len + n) else { return false };
    put16(ip, 2, new_len);
    let ipc = checksum::update16(get16(ip, 10), old_len, new_len);
    put16(ip, 10, ipc);
    let Some(seg) = ip.get_mut(hl..) else { return false };
    // The pseudo-header's TCP length, the urgent pointer, the header's words.
    let (tcp_old, tcp_new) = (old_len - hl as u16, new_len - hl as u16);
    let mut c = checksum::update16(get16(seg, 16), tcp_old, tcp_new);
    if seg.get(13).is_some_and(|f| f & tcp::flags::URG != 0) {
        let (old, new) = (get16(seg, 18), get16(seg, 18).wrapping_add(LEN as u16));
        put16(seg, 18, new);
        c = checksum::update16(c, old, new);
    }
    let c = !checksum::fold(checksum::sum(header, u32::from(!c)));
    put16(seg, 16, c);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_header_is_haproxys() {
        let h = v2(0xc000_020a, 40000, 0xc000_0264, 143);
        assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..24], &[192, 0, 2, 10, 192, 0, 2, 100]);
        assert_eq!(&h[24..], &[0x9c, 0x40, 0, 143]);
    }

    #[test]
    fn numbers_past_the_header_come_back_by_its_length() {
        let p = u32::MAX - 5; // across the wrap
        assert_eq!(unshift(p, p), p);
        assert_eq!(unshift(p.wrapping_add(10), p), p, "inside the header: the client sent nothing there");
        assert_eq!(unshift(p.wrapping_add(LEN), p), p);
        assert_eq!(unshift(p.wrapping_add(LEN + 100), p), p.wrapping_add(100));
        assert_eq!(unshift(p.wrapping_sub(1), p), p.wrapping_sub(1), "the SYN's");
        // Once acknowledged, far past 2 GiB too.
        assert_eq!(client_view(p.wrapping_add(3_000_000_000), p, true), p.wrapping_add(3_000_000_000 - LEN));
    }

    fn ipv4_tcp(flags: u8, seq: u32, ack: u32, opts: &[u8], payload: &[u8], room: usize) -> Vec<u8> {
        let thl = 20 + opts.len();
        let ip_len = 20 + thl + payload.len();
        let mut f = vec![0u8; 14 + ip_len + room];
        let ip = &mut f[14..14 + ip_len];
        ip[0] = 0x45;
        put16(ip, 2, ip_len as u16);
        ip[8] = 64;
        ip[9] = 6;
        put32(ip, 12, 0xc633_640b);
        put32(ip, 16, 0xc633_6401);
        let c = checksum::checksum(&ip[..20]);
        put16(ip, 10, c);
        let seg = &mut ip[20..];
        put16(seg, 0, 80);
        put16(seg, 2, 1024);
        put32(seg, 4, seq);
        put32(seg, 8, ack);
        seg[12] = ((thl / 4) as u8) << 4;
        seg[13] = flags;
        put16(seg, 14, 512);
        seg[20..thl].copy_from_slice(opts);
        seg[thl..].copy_from_slice(payload);
        let ps = checksum::pseudo_header(0xc633_640bu32.into(), 0xc633_6401u32.into(), 6, seg.len() as u16);
        let c = !checksum::fold(checksum::sum(seg, ps));
        put16(seg, 16, c);
        f
    }

    fn tcp_ok(f: &[u8]) -> bool {
        let ip_len = usize::from(get16(&f[14..], 2));
        let seg = &f[34..14 + ip_len];
        let ps = checksum::pseudo_header(0xc633_640bu32.into(), 0xc633_6401u32.into(), 6, seg.len() as u16);
        checksum::checksum(&f[14..34]) == 0 && checksum::fold(checksum::sum(seg, ps)) == 0xffff
    }

    #[test]
    fn the_header_goes_before_the_payload_with_both_checksums_made_again() {
        let h = v2(1, 2, 3, 4);
        let mut f = ipv4_tcp(tcp::flags::ACK | tcp::flags::PSH, 1000, 77, &[1, 1, 1, 1], b"hello", LEN as usize);
        assert!(insert(&mut f, 14, 20, 20 + 24 + 5, &h));
        assert!(tcp_ok(&f));
        assert_eq!(get16(&f[14..], 2), (20 + 24 + 5 + LEN) as u16);
        assert_eq!(&f[14 + 44..14 + 44 + 28], &h);
        assert_eq!(&f[14 + 44 + 28..], b"hello");
        assert_eq!(get32(&f[34..], 4), 1000, "the sequence number stays");
        // A pure ACK (54 bytes, padded to 60 on the wire: the padding is
        // not payload).
        let mut a = ipv4_tcp(tcp::flags::ACK, 1000, 77, &[], &[], LEN as usize + 6);
        assert!(insert(&mut a, 14, 20, 40, &h));
        assert!(tcp_ok(&a));
        assert_eq!(&a[54..82], &h);
        // A segment that came with a wrong checksum leaves with one; an
        // urgent pointer moves with the data.
        let mut bad = ipv4_tcp(tcp::flags::ACK | tcp::flags::URG, 1000, 77, &[], b"hi", LEN as usize);
        put16(&mut bad[34..], 18, 2);
        let c = checksum::update16(get16(&bad[34..], 16), 0, 2);
        put16(&mut bad[34..], 16, c);
        assert!(tcp_ok(&bad));
        bad[34 + 20] ^= 1;
        assert!(insert(&mut bad, 14, 20, 42, &h));
        assert!(!tcp_ok(&bad), "still wrong");
        bad[34 + 20 + LEN as usize] ^= 1;
        assert!(tcp_ok(&bad), "and right once the byte is");
        assert_eq!(get16(&bad[34..], 18), 2 + LEN as u16);
        // No room: untouched.
        let mut small = ipv4_tcp(tcp::flags::ACK, 1000, 77, &[], b"x", 3);
        let before = small.clone();
        assert!(!insert(&mut small, 14, 20, 41, &h));
        assert_eq!(small, before);
    }

    #[test]
    fn server_acks_sack_edges_and_the_syn_acks_mss_come_back() {
        let p = 5000;
        let mut sack = vec![1, 1, 5, 10];
        sack.extend_from_slice(&(p + LEN + 100).to_be_bytes());
        sack.extend_from_slice(&(p + LEN + 200).to_be_bytes());
        let mut f = ipv4_tcp(tcp::flags::ACK, 9, p + LEN + 50, &sack, b"", 0);
        assert!(to_client(&mut f[34..], p, false), "the ACK covers the header");
        assert!(tcp_ok(&f));
        let s = &f[34..];
        assert_eq!(get32(s, 8), p + 50);
        assert_eq!((get32(s, 24), get32(s, 28)), (p + 100, p + 200));
        let mut early = ipv4_tcp(tcp::flags::ACK, 9, p, &[], b"", 0);
        assert!(!to_client(&mut early[34..], p, false), "not yet");
        assert_eq!(get32(&early[34..], 8), p);
        let mut synack = ipv4_tcp(tcp::flags::SYN | tcp::flags::ACK, 9, p, &[2, 4, 0x05, 0xb4], b"", 0);
        to_client(&mut synack[34..], p, false);
        assert!(tcp_ok(&synack));
        assert_eq!(get16(&synack[34..], 22), 1460 - LEN as u16);
        let mut c = ipv4_tcp(tcp::flags::ACK, p + 10, 1, &[], b"data", 0);
        shift_seq(&mut c[34..]);
        assert!(tcp_ok(&c));
        assert_eq!(get32(&c[34..], 4), p + 10 + LEN);
    }
}
