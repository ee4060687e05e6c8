//! IPv6 (RFC 8200 §3) and the walk over its extension headers to the
//! upper layer (RFC 8200 §4).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Source Address (128 bits)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |               Destination Address (128 bits)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The traffic class is the DSCP (RFC 2474) and ECN (RFC 3168) byte, as
//! IPv4's former type of service. There is no header checksum: the upper
//! layers' checksums cover the addresses through the pseudo header
//! (RFC 8200 §8.1, [`pseudo_header`]), and a UDP checksum of zero is not
//! allowed (§8.1: "IPv6 receivers must discard UDP packets containing a
//! zero checksum").

use super::{be16, be32, set_be16, set_be32, WireError};
use core::net::Ipv6Addr;

/// Next Header values this module knows (IANA "Assigned Internet Protocol
/// Numbers" and "IPv6 Extension Header Types").
pub mod next_header {
    /// Hop-by-Hop Options (RFC 8200 §4.3): only right after the header.
    pub const HOP_BY_HOP: u8 = 0;
    /// IPv4 in IPv6 (RFC 2473).
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    /// IPv6 in IPv6 (RFC 2473).
    pub const IPV6: u8 = 41;
    /// Routing (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// Fragment (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    pub const GRE: u8 = 47;
    /// Encapsulating Security Payload (RFC 4303): opaque, the walk ends.
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302): its length counts 4-byte words.
    pub const AH: u8 = 51;
    /// ICMPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// No Next Header (RFC 8200 §4.7).
    pub const NO_NEXT: u8 = 59;
    /// Destination Options (RFC 8200 §4.6).
    pub const DEST_OPTS: u8 = 60;
    /// Extension headers of the registry the box does not walk: Mobility
    /// (RFC 6275), HIP (RFC 7401), Shim6 (RFC 5533), and the two for
    /// experiments (RFC 3692).
    pub const NOT_WALKED: [u8; 5] = [135, 139, 140, 253, 254];
}

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: usize = 8;
    pub const DST_ADDR: usize = 24;
}

/// The fixed header's length.
pub const HEADER_LEN: usize = 40;

/// Bytes of the original packet's payload an ICMPv6 error about it must
/// carry for the box to use it: the ports of TCP and UDP (and TCP's
/// sequence number), the type, code and echo identifier of ICMPv6.
pub const EMBEDDED_PAYLOAD_LEN: usize = 8;

/// A view of an IPv6 packet.
#[derive(Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Checks length and version: what both checked constructors need.
fn check_header(b: &[u8]) -> Result<(), WireError> {
    if b.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if b.first().copied().unwrap_or(0) >> 4 != 6 {
        return Err(WireError::BadVersion);
    }
    Ok(())
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer already known to hold a whole header.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes: `Truncated` if shorter than 40 bytes,
    /// `BadVersion` if the version is not 6, `BadTotalLength` if the
    /// payload length runs past the buffer. The buffer may be longer
    /// (Ethernet padding): [`payload`](Self::payload) ends at the payload
    /// length. A payload length of 0 is an empty payload (a jumbogram,
    /// RFC 2675, cannot cross an Ethernet link).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_header(b)?;
        if HEADER_LEN + usize::from(be16(b, field::PAYLOAD_LEN)) > b.len() {
            return Err(WireError::BadTotalLength);
        }
        Ok(Self { buffer })
    }

    /// Wraps the original packet quoted in an ICMPv6 error (RFC 4443 §2.4
    /// (c): as much of it as fits in the minimum MTU, so cut short by
    /// design): the header checked as by [`new_checked`](Self::new_checked)
    /// but for the length, at least 8 bytes of payload present
    /// (`Truncated` if not) and a payload length of at least 8
    /// (`BadTotalLength` if not). The payload length may exceed the
    /// buffer; [`payload`](Self::payload) is clamped to it.
    pub fn new_embedded(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_header(b)?;
        if HEADER_LEN + EMBEDDED_PAYLOAD_LEN > b.len() {
            return Err(WireError::Truncated);
        }
        if usize::from(be16(b, field::PAYLOAD_LEN)) < EMBEDDED_PAYLOAD_LEN {
            return Err(WireError::BadTotalLength);
        }
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref().first().copied().unwrap_or(0) >> 4
    }

    /// DSCP (upper 6 bits) and ECN (lower 2 bits).
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) & 0xff) as u8
    }

    /// The 20-bit flow label (RFC 6437).
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Bytes after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref().get(field::NEXT_HEADER).copied().unwrap_or(0)
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref().get(field::HOP_LIMIT).copied().unwrap_or(0)
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// What follows the fixed header up to the payload length (clamped
    /// to the buffer for an embedded view).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = (HEADER_LEN + usize::from(self.payload_len())).min(b.len());
        b.get(HEADER_LEN..end).unwrap_or_default()
    }

    /// Walks the extension headers from the fixed header to the upper
    /// layer (RFC 8200 §4), within the payload: see [`Chain`] and
    /// [`ChainError`].
    pub fn walk(&self) -> Result<Chain, ChainError> {
        walk(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = self.buffer.as_mut();
        let w = be16(b, field::VER_TC_FLOW);
        set_be16(b, field::VER_TC_FLOW, (w & 0xf00f) | (u16::from(tc) << 4));
    }

    pub fn set_flow_label(&mut self, label: u32) {
        let b = self.buffer.as_mut();
        let w = be32(b, field::VER_TC_FLOW);
        set_be32(b, field::VER_TC_FLOW, (w & 0xfff0_0000) | (label & 0x000f_ffff));
    }

    pub fn set_payload_len(&mut self, len: u16) {
        set_be16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    pub fn set_next_header(&mut self, nh: u8) {
        if let Some(f) = self.buffer.as_mut().get_mut(field::NEXT_HEADER) {
            *f = nh;
        }
    }

    pub fn set_hop_limit(&mut self, hl: u8) {
        if let Some(f) = self.buffer.as_mut().get_mut(field::HOP_LIMIT) {
            *f = hl;
        }
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        set_addr_at(self.buffer.as_mut(), field::SRC_ADDR, a);
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        set_addr_at(self.buffer.as_mut(), field::DST_ADDR, a);
    }

    /// The payload, writable (up to the payload length, clamped to the
    /// buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.payload_len());
        let b = self.buffer.as_mut();
        let end = (HEADER_LEN + len).min(b.len());
        b.get_mut(HEADER_LEN..end).unwrap_or_default()
    }
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    match b.get(at..at + 16).and_then(|s| <[u8; 16]>::try_from(s).ok()) {
        Some(o) => Ipv6Addr::from(o),
        None => Ipv6Addr::UNSPECIFIED,
    }
}

fn set_addr_at(b: &mut [u8], at: usize, a: Ipv6Addr) {
    if let Some(f) = b.get_mut(at..at + 16) {
        f.copy_from_slice(&a.octets());
    }
}

/// A Fragment header's fields (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// The fragment's offset in bytes (the field counts 8-byte units).
    pub offset: u16,
    /// The M flag: more fragments follow.
    pub more: bool,
    pub ident: u32,
}

impl Fragment {
    /// An atomic fragment (offset 0, M clear: RFC 6946): the whole packet,
    /// to be processed as such.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

/// Where the walk over a packet's extension headers ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// The upper-layer protocol, or the header the walk stops at: ESP and
    /// No Next Header (nothing to walk), or what follows a fragment header
    /// of a non-first fragment (not in this packet).
    pub proto: u8,
    /// Its offset in the payload (from the end of the fixed header).
    pub offset: usize,
    /// The fragment header, when there is one.
    pub fragment: Option<Fragment>,
    /// The last routing header's Segments Left (RFC 8200 §4.4): nonzero
    /// asks this node to forward the packet on to another address.
    pub segments_left: u8,
    /// Extension headers walked.
    pub headers: u8,
}

impl Chain {
    /// A fragment of a larger packet (not an atomic one): only the first
    /// carries the upper-layer header.
    pub fn is_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| !f.is_atomic())
    }
}

/// Why a chain of extension headers was refused (each a named drop in the
/// pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainError {
    /// A header runs past the payload: the chain is incomplete (RFC 7112:
    /// a first fragment must hold the whole chain).
    Truncated,
    /// A Hop-by-Hop Options header anywhere but right after the fixed
    /// header (RFC 8200 §4.3).
    HopByHopNotFirst,
    /// An extension header of the registry the box does not walk
    /// (`next_header::NOT_WALKED`).
    NotWalked(u8),
    /// A header more times than RFC 8200 §4.1 allows a packet to carry
    /// it (each once, Destination Options twice): a second Fragment
    /// header could disguise a fragment as a whole packet, a second
    /// Routing header hide its segments. This also bounds a chain to six
    /// headers (RFC 9098 §3: long chains are dropped by many networks),
    /// each a dependent read for the worker.
    Repeated(u8),
}

/// Walks the chain that starts with header `first` at the start of
/// `payload` (the bytes after the fixed header).
pub fn walk(first: u8, payload: &[u8]) -> Result<Chain, ChainError> {
    use next_header as nh;
    let mut chain = Chain { proto: first, offset: 0, fragment: None, segments_left: 0, headers: 0 };
    // Headers seen: routing, fragment, AH once each; destination options
    // twice (RFC 8200 §4.1's order allows one before the routing header
    // and one before the upper layer).
    let (mut once, mut dest_opts) = (0u8, 0u8);
    loop {
        let at = chain.offset;
        let len = match chain.proto {
            nh::HOP_BY_HOP if chain.headers > 0 => return Err(ChainError::HopByHopNotFirst),
            nh::HOP_BY_HOP | nh::ROUTING | nh::DEST_OPTS => (usize::from(*payload.get(at + 1).ok_or(ChainError::Truncated)?) + 1) * 8,
            nh::FRAGMENT => 8,
            // RFC 4302 §2.2: the length in 4-byte words, minus 2.
            nh::AH => (usize::from(*payload.get(at + 1).ok_or(ChainError::Truncated)?) + 2) * 4,
            p if nh::NOT_WALKED.contains(&p) => return Err(ChainError::NotWalked(p)),
            _ => return Ok(chain),
        };
        let bit = match chain.proto {
            nh::ROUTING => 1,
            nh::FRAGMENT => 2,
            nh::AH => 4,
            _ => 0,
        };
        dest_opts += u8::from(chain.proto == nh::DEST_OPTS);
        if once & bit != 0 || dest_opts > 2 {
            return Err(ChainError::Repeated(chain.proto));
        }
        once |= bit;
        let header = payload.get(at..at + len).ok_or(ChainError::Truncated)?;
        let next = header.first().copied().unwrap_or(nh::NO_NEXT);
        if chain.proto == nh::ROUTING {
            chain.segments_left = header.get(3).copied().unwrap_or(0);
        }
        let was = chain.proto;
        chain.proto = next;
        chain.offset = at + len;
        chain.headers += 1;
        if was == nh::FRAGMENT {
            let off_m = be16(header, 2);
            let f = Fragment { offset: off_m & 0xfff8, more: off_m & 1 != 0, ident: be32(header, 4) };
            chain.fragment = Some(f);
            if f.offset != 0 {
                // The rest of the chain is in the first fragment.
                return Ok(chain);
            }
        }
    }
}

/// The partial sum of the IPv6 pseudo header of the upper-layer checksums
/// (RFC 8200 §8.1): source address, destination address (the final one),
/// the upper-layer packet length as 32 bits, three zero bytes and the next
/// header value of the upper layer.
pub fn pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let words = |a: Ipv6Addr| a.segments().iter().map(|&w| u32::from(w)).sum::<u32>();
    words(src) + words(dst) + (length >> 16) + (length & 0xffff) + u32::from(next_header)
}

#[cfg(test)]
mod tests;
