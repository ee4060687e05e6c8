//! IPv4 (RFC 791 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  | DSCP    |ECN|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The type-of-service byte is the DSCP (RFC 2474) and ECN (RFC 3168)
//! byte; it is handled as one byte here.

use super::{be16, checksum, ipv4_at, len16, set_be16, WireError};
use core::net::Ipv4Addr;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
pub mod protocol {
    /// RFC 792.
    pub const ICMP: u8 = 1;
    /// IPv4 in IPv4 (RFC 2003).
    pub const IPIP: u8 = 4;
    /// RFC 9293.
    pub const TCP: u8 = 6;
    /// RFC 768.
    pub const UDP: u8 = 17;
    /// Generic Routing Encapsulation (RFC 2784).
    pub const GRE: u8 = 47;
    /// VRRP (RFC 5798 §5.1.1.4).
    pub const VRRP: u8 = 112;
}

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: usize = 12;
    pub const DST_ADDR: usize = 16;
    pub const OPTIONS_START: usize = 20;
    pub const SRC_ADDR_RANGE: Range<usize> = 12..16;
    pub const DST_ADDR_RANGE: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options (IHL = 5).
pub const MIN_HEADER_LEN: usize = 20;

/// Bytes of the original datagram's payload that an ICMP error must carry
/// past its IP header (RFC 792: "the first 64 bits of the original data
/// datagram's data").
pub const EMBEDDED_PAYLOAD_LEN: usize = 8;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Checks version and IHL: what both checked constructors need.
fn check_header(b: &[u8]) -> Result<usize, WireError> {
    if b.len() < MIN_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let ver_ihl = b.get(field::VER_IHL).copied().unwrap_or(0);
    if ver_ihl >> 4 != 4 {
        return Err(WireError::BadVersion);
    }
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    if header_len < MIN_HEADER_LEN || header_len > b.len() {
        return Err(WireError::BadHeaderLength);
    }
    Ok(header_len)
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer already known to hold a whole header.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes: `Truncated` if shorter than 20 bytes,
    /// `BadVersion` if the version is not 4, `BadHeaderLength` if IHL < 5
    /// or the header runs past the buffer, `BadTotalLength` if the total
    /// length is shorter than the header or longer than the buffer. The
    /// buffer may be longer than the total length (Ethernet padding):
    /// [`payload`](Self::payload) ends at the total length.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        let header_len = check_header(b)?;
        let total_len = usize::from(be16(b, field::LENGTH));
        if total_len < header_len || total_len > b.len() {
            return Err(WireError::BadTotalLength);
        }
        Ok(Self { buffer })
    }

    /// Wraps the original datagram quoted in an ICMP error (RFC 792, RFC
    /// 1812 §4.3.2.3): an IP header and at least the first 8 bytes of its
    /// payload, cut short by design. Checks version and IHL as
    /// [`new_checked`](Self::new_checked) does (`Truncated`, `BadVersion`,
    /// `BadHeaderLength`), then that 8 payload bytes follow the header
    /// (`Truncated` if not) and that the total length is at least header +
    /// 8 (`BadTotalLength` if not: no TCP, UDP or ICMP datagram is
    /// shorter). The total length may exceed the buffer: it describes the
    /// datagram as it was sent, and [`payload`](Self::payload) is clamped
    /// to the buffer. So `payload().len() >= 8` for every view this
    /// returns: enough for the ports of TCP and UDP (and TCP's sequence
    /// number), the type, code and echo identifier of ICMP.
    pub fn new_embedded(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        let header_len = check_header(b)?;
        if header_len + EMBEDDED_PAYLOAD_LEN > b.len() {
            return Err(WireError::Truncated);
        }
        if usize::from(be16(b, field::LENGTH)) < header_len + EMBEDDED_PAYLOAD_LEN {
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
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The former type-of-service byte: DSCP (upper 6 bits, RFC 2474) and
    /// ECN (lower 2 bits, RFC 3168).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Header and payload length in bytes.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// The DF ("don't fragment") flag.
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// The MF ("more fragments") flag.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// The fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment of a larger datagram (MF set or a
    /// nonzero offset): only the first fragment carries the L4 header.
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Whether the header checksum is right, over all `header_len` bytes,
    /// options included (RFC 791 §3.1, RFC 1071).
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The option bytes, between the fixed header and `header_len`.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS_START..self.header_len()]
    }

    fn payload_range(&self) -> core::ops::Range<usize> {
        let len = self.buffer.as_ref().len();
        let start = self.header_len().min(len);
        let end = usize::from(self.total_len()).clamp(start, len);
        start..end
    }

    /// The payload: `header_len..total_len`, clamped to the buffer (which
    /// only matters for [`new_embedded`](Self::new_embedded) views).
    pub fn payload(&self) -> &[u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Writes version and IHL; `header_len` is in bytes, a multiple of 4
    /// from 20 to 60.
    pub fn set_version_ihl(&mut self, version: u8, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ihl;
    }

    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Writes the flags and fragment offset word; `offset` is in bytes, a
    /// multiple of 8 (the low 3 bits are dropped). The reserved flag is
    /// cleared.
    pub fn set_flags_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        set_be16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR_RANGE].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR_RANGE].copy_from_slice(&a.octets());
    }

    /// Zeroes the checksum field, then writes the checksum of the
    /// `header_len` header bytes.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(c);
    }

    /// The option bytes, mutable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS_START..end]
    }

    /// The payload (`header_len..total_len`, clamped to the buffer),
    /// mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }
}

/// Owned form of an option-less IPv4 header, for control code and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    /// Bytes after the header: `total_len - header_len`.
    pub payload_len: usize,
    pub ttl: u8,
    pub dscp_ecn: u8,
}

impl Ipv4Repr {
    /// Reads a packet (from [`Ipv4Packet::new_checked`]); options,
    /// identification, flags and the checksum are not kept: check
    /// [`Ipv4Packet::verify_checksum`] and [`Ipv4Packet::is_fragment`]
    /// first where they matter.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Self {
        Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()).saturating_sub(p.header_len()),
            ttl: p.ttl(),
            dscp_ecn: p.dscp_ecn(),
        }
    }

    /// The emitted header's length: always 20 (no options).
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header at the start of `p`'s buffer (which must
    /// hold at least 20 bytes): version 4, IHL 5, total length
    /// 20 + `payload_len` (saturating at 65535), identification 0, DF set
    /// (RFC 6864 §4.1: atomic datagrams may use any ident), no offset, and
    /// the checksum. The payload is the caller's to write.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv4Packet<T>) {
        p.set_version_ihl(4, MIN_HEADER_LEN);
        p.set_dscp_ecn(self.dscp_ecn);
        p.set_total_len(len16(self.buffer_len()));
        p.set_ident(0);
        p.set_flags_frag(true, false, 0);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests;
