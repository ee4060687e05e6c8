//! Wire formats as typed views over byte buffers, after smoltcp's `wire`:
//! `View<T: AsRef<[u8]>>` with a private `field` module of byte ranges,
//! getters for every field, setters where `T: AsMut<[u8]>`, and
//! `new_checked` wherever untrusted bytes enter.

pub mod arp;
pub mod checksum;
pub mod ethernet;
mod fuzz;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod tunnel;
pub mod udp;
pub mod vrrp;
pub mod vrrp6;

pub use arp::{ArpOperation, ArpPacket};
pub use ethernet::{parse_l2, EtherType, EthernetAddress, EthernetFrame, L2};
pub use fuzz::fuzz_parse;
pub use icmp::IcmpPacket;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use tcp::TcpPacket;
pub use udp::UdpPacket;
pub use vrrp::VrrpPacket;

/// Why a view refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the fixed header.
    Truncated,
    /// A field holds a value this view does not handle.
    Unsupported,
    /// IPv4: the version field is not 4.
    BadVersion,
    /// IPv4 IHL or TCP data offset below the minimum (5 words) or past the
    /// end of the buffer.
    BadHeaderLength,
    /// IPv4 total length shorter than the header or longer than the buffer.
    BadTotalLength,
    /// UDP length field shorter than the UDP header or longer than the
    /// buffer.
    BadLength,
}

// Field accessors that cannot panic: a field beyond the buffer reads as 0
// and is not written (the views check lengths before they get here).

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at.wrapping_add(2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

pub(crate) fn set_be16(b: &mut [u8], at: usize, v: u16) {
    if let Some(f) = b.get_mut(at..at.wrapping_add(2)) {
        f.copy_from_slice(&v.to_be_bytes());
    }
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at.wrapping_add(4)) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

pub(crate) fn set_be32(b: &mut [u8], at: usize, v: u32) {
    if let Some(f) = b.get_mut(at..at.wrapping_add(4)) {
        f.copy_from_slice(&v.to_be_bytes());
    }
}

pub(crate) fn ipv4_at(b: &[u8], at: usize) -> core::net::Ipv4Addr {
    core::net::Ipv4Addr::from(be32(b, at))
}

/// A length as the 16-bit field of a pseudo header or length field;
/// lengths that do not fit (never the case for an IPv4 datagram) saturate.
pub(crate) fn len16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}
