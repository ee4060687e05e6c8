//! Test support shared by the dataplane's tests, the platform tests and the
//! benchmarks (feature `testkit`): a deterministic RNG and builders of
//! valid frames. Not part of the appliance.
#![allow(clippy::indexing_slicing, reason = "builds frames of known sizes; test support")]

use crate::wire::checksum;
use crate::wire::ethernet::EthernetAddress;
use core::net::Ipv4Addr;

/// xorshift64* (Vigna): small, deterministic, no dependency, so every run
/// of a test or benchmark sees the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An index below `n` (`n` > 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `0..n` by Lemire's multiply-shift (no division).
    pub fn below_u32(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// Offset of the IPv4 header in the frames built here (untagged).
pub const L3: usize = 14;
/// Offset of the L4 header (IPv4 without options).
pub const L4: usize = 34;

/// An Ethernet + IPv4 frame (TTL 64, flags and offset 0) around `l4`, with
/// a valid header
/// checksum; the TCP/UDP checksum is filled when `fill_l4`.
pub fn ipv4_frame(src_mac: EthernetAddress, dst_mac: EthernetAddress, src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8], fill_l4: bool) -> Vec<u8> {
    let mut f = vec![0u8; L4 + l4.len()];
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = proto;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    let c = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[L4..].copy_from_slice(l4);
    if fill_l4 {
        fill_l4_checksum(&mut f);
    }
    f
}

/// Offset of what follows the IPv6 header in a frame of `ipv6_frame`.
pub const L4_V6: usize = 54;

/// An Ethernet + IPv6 frame (hop limit `hops`) around `payload`, whose
/// first header is `next`. When `next` is ICMPv6, TCP or UDP, its
/// checksum is filled over the pseudo header (RFC 8200 §8.1).
pub fn ipv6_frame(src_mac: EthernetAddress, dst_mac: EthernetAddress, src: u128, dst: u128, next: u8, hops: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; L4_V6 + payload.len()];
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    f[20] = next;
    f[21] = hops;
    f[22..38].copy_from_slice(&src.to_be_bytes());
    f[38..54].copy_from_slice(&dst.to_be_bytes());
    f[L4_V6..].copy_from_slice(payload);
    let at = match next {
        58 => 2,
        6 => 16,
        17 => 6,
        _ => return f,
    };
    if f.len() >= L4_V6 + at + 2 {
        f[L4_V6 + at] = 0;
        f[L4_V6 + at + 1] = 0;
        let ps = crate::wire::ipv6::pseudo_header(src.into(), dst.into(), next, payload.len() as u32);
        let c = !checksum::fold(checksum::sum(&f[L4_V6..], ps));
        // UDP sends a computed 0 as all ones (RFC 768, RFC 8200 §8.1).
        let c = if next == 17 && c == 0 { 0xffff } else { c };
        f[L4_V6 + at..L4_V6 + at + 2].copy_from_slice(&c.to_be_bytes());
    }
    f
}

/// Recomputes the TCP or UDP checksum of a frame built by `ipv4_frame`.
pub fn fill_l4_checksum(f: &mut [u8]) {
    let proto = f[23];
    let at = L4 + if proto == 6 { 16 } else { 6 };
    f[at] = 0;
    f[at + 1] = 0;
    let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
    let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    let ps = checksum::pseudo_header(src, dst, proto, (f.len() - L4) as u16);
    let c = !checksum::fold(checksum::sum(&f[L4..], ps));
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A 20-byte TCP header: sequence 1000, window `window`, no options.
pub fn tcp_header(sport: u16, dport: u16, flags: u8, window: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    // Both sides' ISN is 1000: a SYN carries it, later segments the next
    // byte, and an ACK acknowledges the other side's SYN (so sequence
    // tracking sees a consistent exchange).
    let seq: u32 = if flags & 0x02 != 0 { 1000 } else { 1001 };
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    if flags & 0x10 != 0 {
        t[8..12].copy_from_slice(&1001u32.to_be_bytes());
    }
    t[12] = 0x50;
    t[13] = flags;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    t
}

/// A UDP header and `payload` (checksum left 0: `ipv4_frame` fills it).
pub fn udp_datagram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// True when the frame's IPv4 header checksum and TCP/UDP checksum are
/// right (by recomputation).
pub fn checksums_ok(f: &[u8]) -> bool {
    let mut g = f.to_vec();
    fill_l4_checksum(&mut g);
    checksum::checksum(&f[L3..L4]) == 0 && g == f
}
