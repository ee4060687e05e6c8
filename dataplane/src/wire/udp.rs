//! UDP datagrams (RFC 768).
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |     Source      |   Destination   |
//! |      Port       |      Port       |
//! +--------+--------+--------+--------+
//! |                 |                 |
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! |          data octets ...
//! +---------------- ...
//! ```
//!
//! The length field covers header and data; the checksum covers the IPv4
//! pseudo header and the datagram, and is optional over IPv4: 0 means none
//! was computed, so a computed 0 is sent as 0xffff (RFC 768).

use super::{be16, checksum, len16, set_be16, WireError};
use crate::wire::ipv4::protocol;
use core::net::Ipv4Addr;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer already known to hold a header.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes: `Truncated` if shorter than 8 bytes,
    /// `BadLength` if the length field is below 8 or beyond the buffer.
    /// The buffer may be longer than the length field says.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(be16(b, field::LENGTH));
        if len < HEADER_LEN || len > b.len() {
            return Err(WireError::BadLength);
        }
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header and data, in bytes.
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the length field says there is no data.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram as the length field bounds it (clamped to the buffer).
    fn datagram_end(&self) -> usize {
        let b = self.buffer.as_ref();
        usize::from(self.len()).clamp(HEADER_LEN.min(b.len()), b.len())
    }

    /// The data: bytes 8 up to the length field.
    pub fn payload(&self) -> &[u8] {
        let end = self.datagram_end();
        &self.buffer.as_ref()[HEADER_LEN..end]
    }

    /// Whether the checksum is right over the pseudo header for `src` →
    /// `dst` and the datagram (as long as the length field says); true when
    /// the field is 0, "no checksum" (RFC 768).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let end = self.datagram_end();
        let ph = checksum::pseudo_header(src, dst, protocol::UDP, len16(end));
        checksum::fold(checksum::sum(&self.buffer.as_ref()[..end], ph)) == 0xffff
    }
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Writes the length field (header and data, in bytes).
    pub fn set_len(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Zeroes the checksum field, then writes the checksum over the pseudo
    /// header and the datagram (as long as the length field says); a
    /// computed 0 is written as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let end = self.datagram_end();
        let ph = checksum::pseudo_header(src, dst, protocol::UDP, len16(end));
        let c = !checksum::fold(checksum::sum(&self.buffer.as_ref()[..end], ph));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// The data (bytes 8 up to the length field), mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.datagram_end();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Owned form of a UDP header, for control code and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    /// Reads a datagram (from [`UdpPacket::new_checked`]); the checksum is
    /// not kept.
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Self {
        Self { src_port: p.src_port(), dst_port: p.dst_port(), payload_len: p.payload().len() }
    }

    /// Header plus payload: the length field [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the 8-byte header (length 8 + `payload_len`) at the start of
    /// `p`'s buffer, which must hold at least that many bytes, then fills
    /// the checksum for `src` → `dst`. Copy the payload in (at `[8..]`)
    /// before calling this, or call [`UdpPacket::fill_checksum`] again
    /// after.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len16(self.buffer_len()));
        p.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

    /// The UDP part of Scapy's IP(src=A, dst=B)/UDP(sport=5353,
    /// dport=53)/b"abcd".
    const DGRAM: [u8; 12] =
        [0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x39, 0xb2, b'a', b'b', b'c', b'd'];

    #[test]
    fn deconstruct() {
        let p = UdpPacket::new_checked(&DGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 5353);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert!(!p.is_empty());
        assert_eq!(p.checksum(), 0x39b2);
        assert_eq!(p.payload(), b"abcd");
        assert!(p.verify_checksum(A, B));
        assert!(!p.verify_checksum(B, B));
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 12];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(5353);
        p.set_dst_port(53);
        p.set_len(12);
        p.payload_mut().copy_from_slice(b"abcd");
        p.fill_checksum(A, B);
        assert_eq!(buf, DGRAM);

        let mut buf = [0xa5u8; 12];
        buf[8..].copy_from_slice(b"abcd");
        let repr = UdpRepr { src_port: 5353, dst_port: 53, payload_len: 4 };
        repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), A, B);
        assert_eq!(buf, DGRAM);
        assert_eq!(UdpRepr::parse(&UdpPacket::new_checked(&DGRAM[..]).unwrap()), repr);
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut b = DGRAM;
        b[6] = 0;
        b[7] = 0;
        b[8] = b'X';
        assert!(UdpPacket::new_checked(&b[..]).unwrap().verify_checksum(A, B));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Pick a payload word making the sum 0xffff, so the checksum is 0.
        let mut b = [0u8; 10];
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_len(10);
        p.set_checksum(0);
        let partial = checksum::fold(checksum::sum(
            &[0, 1, 0, 2, 0, 10, 0, 0],
            checksum::pseudo_header(A, B, 17, 10),
        ));
        p.payload_mut().copy_from_slice(&(!partial).to_be_bytes());
        p.fill_checksum(A, B);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(A, B));
    }

    #[test]
    fn trailing_bytes_are_not_the_datagram() {
        let mut b = [0u8; 16];
        b[..12].copy_from_slice(&DGRAM);
        b[12..].copy_from_slice(&[1, 2, 3, 4]);
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), b"abcd");
        assert!(p.verify_checksum(A, B));
    }

    #[test]
    fn refusals() {
        assert_eq!(UdpPacket::new_checked(&DGRAM[..7]).err(), Some(WireError::Truncated));
        assert_eq!(UdpPacket::new_checked(&DGRAM[..11]).err(), Some(WireError::BadLength));
        let mut b = DGRAM;
        b[5] = 7;
        assert_eq!(UdpPacket::new_checked(&b[..]).err(), Some(WireError::BadLength));
        b[5] = 8;
        assert_eq!(UdpPacket::new_checked(&b[..]).map(|p| p.is_empty()), Ok(true));
    }

    proptest! {
        #[test]
        fn repr_round_trip(sp in any::<u16>(), dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..600),
                           src in any::<u32>(), dst in any::<u32>(), extra in 0usize..8) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let repr = UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() };
            let mut buf = vec![0x5a; repr.buffer_len() + extra];
            buf[8..8 + payload.len()].copy_from_slice(&payload);
            repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), src, dst);
            let p = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_ne!(p.checksum(), 0);
            prop_assert!(p.verify_checksum(src, dst));
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(UdpRepr::parse(&p), repr);
        }
    }
}
