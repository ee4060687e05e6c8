//! ICMP error translation (RFC 5508 §4; RFC 792): an error about a packet
//! of a tracked connection is rewritten for the other side, outer header
//! and the embedded (quoted) header alike, as a NAT must.

use super::nat::{rewrite_addrs, rewrite_ports};
use crate::wire::checksum;
use crate::wire::icmp;

/// Where the headers of an ICMP error sit in its frame, and what each
/// address and port becomes. `None` keeps an outer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpXlate {
    /// Offset of the outer IPv4 header, its length and the datagram's.
    pub l3: usize,
    pub hl: usize,
    pub ip_len: usize,
    /// Length of the embedded IPv4 header.
    pub inner_hl: usize,
    pub outer_src: Option<u32>,
    pub outer_dst: Option<u32>,
    /// The embedded datagram's new source and destination.
    pub inner_src: (u32, u16),
    pub inner_dst: (u32, u16),
}

/// Rewrites the embedded header (addresses with its checksum, ports), the
/// ICMP checksum and the outer header (addresses, TTL decremented, its
/// checksum), every checksum by RFC 1624's incremental update over the
/// words that changed: an error that arrived with a wrong checksum would
/// still leave with one (the caller verifies it first: `verify`). False,
/// with the frame untouched, when the lengths do not fit the frame.
pub fn translate_icmp_error(frame: &mut [u8], x: &IcmpXlate) -> bool {
    let (msg_at, end) = (x.l3 + x.hl, x.l3 + x.ip_len);
    let inner_at = msg_at + icmp::HEADER_LEN;
    if end > frame.len() || inner_at + x.inner_hl + 4 > end || x.hl < 20 || x.inner_hl < 20 {
        return false;
    }
    // The embedded words that change, before and after: addresses and
    // header checksum of the IPv4 header, then the ports (all at even
    // offsets from the ICMP header, as the checksum's words are).
    let words = |inner: &[u8]| -> [u16; 7] {
        let w = |at: usize| crate::wire::be16(inner, at);
        [w(12), w(14), w(16), w(18), w(10), w(x.inner_hl), w(x.inner_hl + 2)]
    };
    let Some(inner) = frame.get_mut(inner_at..end) else { return false };
    let before = words(inner);
    {
        let (hdr, l4) = inner.split_at_mut(x.inner_hl.min(inner.len()));
        rewrite_addrs(hdr, Some(x.inner_src.0), Some(x.inner_dst.0), false);
        rewrite_ports(l4, Some(x.inner_src.1), Some(x.inner_dst.1));
    }
    let after = words(inner);
    if let Some(m) = frame.get_mut(msg_at..end) {
        let mut c = crate::wire::be16(m, 2);
        for (old, new) in before.iter().zip(after.iter()) {
            c = checksum::update16(c, *old, *new);
        }
        crate::wire::set_be16(m, 2, c);
    }
    if let Some(h) = frame.get_mut(x.l3..msg_at) {
        rewrite_addrs(h, x.outer_src, x.outer_dst, true);
    }
    true
}

/// Whether an ICMP message (`msg`, from its type to the end of the IP
/// datagram) has a right checksum (RFC 792: the one's complement sum of
/// the message is all ones).
#[inline]
pub fn verify(msg: &[u8]) -> bool {
    checksum::checksum(msg) == 0
}

/// SYN proxy: moves the sequence number of a quoted TCP segment (the
/// error's embedded datagram, placed as `x` says) by `delta`, back from
/// the client's view (`synproxy::to_client` took `delta` off) into the
/// server's, with the ICMP checksum by RFC 1624's update (the quoted TCP
/// checksum is left, as `translate_icmp_error` leaves it). False, the
/// frame untouched, when the quote is shorter than the 8 TCP bytes RFC
/// 792 promises.
pub fn shift_quoted_seq(frame: &mut [u8], x: &IcmpXlate, delta: u32) -> bool {
    let (msg_at, end) = (x.l3 + x.hl, x.l3 + x.ip_len);
    // The TCP header's offset in the ICMP message: even (8 + a multiple
    // of 4), as the checksum's words are.
    let seq_at = icmp::HEADER_LEN + x.inner_hl + 4;
    let Some(m) = frame.get_mut(msg_at..end) else { return false };
    if seq_at + 4 > m.len() {
        return false;
    }
    let old = crate::wire::be32(m, seq_at);
    let new = old.wrapping_add(delta);
    crate::wire::set_be32(m, seq_at, new);
    let c = checksum::update32(crate::wire::be16(m, 2), old, new);
    crate::wire::set_be16(m, 2, c);
    true
}
