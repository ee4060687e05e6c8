//! ICMP for IPv4 (RFC 792).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Rest of header                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Data: for errors, the original IP header + 64 bits ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-
//! ```
//!
//! The rest of the header is identifier and sequence number for echo
//! (types 0, 8), unused + next-hop MTU for "fragmentation needed" (type 3
//! code 4, RFC 1191 §4), the gateway for redirect, a pointer for parameter
//! problem. The checksum covers the whole ICMP message.

use super::ipv4::Ipv4Packet;
use super::{be16, be32, checksum, set_be16, set_be32, WireError};

/// Message types (RFC 792).
pub mod kind {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// Destination-unreachable codes Furiwake emits or reads (RFC 792, RFC
/// 1191, RFC 1812 §5.2.7.1).
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    /// "Fragmentation needed and DF set": carries the next-hop MTU.
    pub const FRAG_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

pub(crate) mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const NEXT_HOP_MTU: usize = 6;
    pub const DATA: usize = 8;
}

/// Length of the ICMP header: type, code, checksum, rest of header.
pub const HEADER_LEN: usize = field::DATA;

/// A view of an ICMP message.
#[derive(Debug)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps a buffer already known to hold a header.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes: `Truncated` if shorter than 8 bytes.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo request/reply identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo request/reply sequence number.
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Next-hop MTU of "fragmentation needed" (type 3 code 4, RFC 1191 §4);
    /// 0 from routers that predate RFC 1191.
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Bytes 4..8, whatever the type makes of them.
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST)
    }

    /// Everything after the 8-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// Whether this is an error message (destination unreachable, source
    /// quench, redirect, time exceeded, parameter problem), which quotes
    /// the datagram that caused it.
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            kind::DEST_UNREACHABLE
                | kind::SOURCE_QUENCH
                | kind::REDIRECT
                | kind::TIME_EXCEEDED
                | kind::PARAMETER_PROBLEM
        )
    }

    /// Whether the checksum over the whole buffer is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }

    /// The original datagram an error message quotes: its IP header and at
    /// least 8 bytes of its payload (RFC 792), checked by
    /// [`Ipv4Packet::new_embedded`] (total length not held to the buffer:
    /// the quote is cut short by design). `Err(Unsupported)` for messages
    /// that are not errors.
    pub fn embedded_ipv4(&self) -> Result<Ipv4Packet<&[u8]>, WireError> {
        if !self.is_error() {
            return Err(WireError::Unsupported);
        }
        Ipv4Packet::new_embedded(self.payload())
    }
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_echo_ident(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    pub fn set_echo_seq(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::ECHO_SEQ, v);
    }

    /// Writes the next-hop MTU (bytes 6..8) of "fragmentation needed";
    /// bytes 4..6 are the caller's to zero (RFC 1191 §4: unused).
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::NEXT_HOP_MTU, v);
    }

    pub fn set_rest_of_header(&mut self, v: u32) {
        set_be32(self.buffer.as_mut(), field::REST, v);
    }

    /// Zeroes the checksum field, then writes the checksum over the whole
    /// buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Everything after the 8-byte header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// [`embedded_ipv4`](IcmpPacket::embedded_ipv4), mutable: for
    /// rewriting the quoted addresses and ports of an error passing through
    /// a NAT (RFC 5508 §4.2).
    pub fn embedded_ipv4_mut(&mut self) -> Result<Ipv4Packet<&mut [u8]>, WireError> {
        if !self.is_error() {
            return Err(WireError::Unsupported);
        }
        Ipv4Packet::new_embedded(self.payload_mut())
    }
}

/// Owned form of an ICMP header, for control code and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpRepr {
    pub msg_type: u8,
    pub msg_code: u8,
    /// Bytes 4..8: echo identifier and sequence, next-hop MTU, ...
    pub rest_of_header: u32,
    pub payload_len: usize,
}

impl IcmpRepr {
    /// Reads a message (from [`IcmpPacket::new_checked`]); the checksum is
    /// not kept.
    pub fn parse<T: AsRef<[u8]>>(p: &IcmpPacket<T>) -> Self {
        Self {
            msg_type: p.msg_type(),
            msg_code: p.msg_code(),
            rest_of_header: p.rest_of_header(),
            payload_len: p.payload().len(),
        }
    }

    /// Header plus payload: the buffer [`emit`](Self::emit) expects.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the 8-byte header at the start of `p`'s buffer, which must be
    /// exactly the message ([`buffer_len`](Self::buffer_len) bytes), then
    /// fills the checksum over all of it. Copy the payload in (at `[8..]`)
    /// before calling this, or call [`IcmpPacket::fill_checksum`] again
    /// after.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut IcmpPacket<T>) {
        p.set_msg_type(self.msg_type);
        p.set_msg_code(self.msg_code);
        p.set_rest_of_header(self.rest_of_header);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ipv4, TcpPacket, UdpPacket};
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

    /// The ICMP part of Scapy's IP(src=A, dst=B)/ICMP(type=8, id=0x1234,
    /// seq=1)/b"pingdata".
    const ECHO: [u8; 16] = [
        0x08, 0x00, 0x2e, 0x37, 0x12, 0x34, 0x00, 0x01, b'p', b'i', b'n', b'g', b'd', b'a', b't',
        b'a',
    ];

    /// The ICMP part of Scapy's IP(src=B, dst=A)/ICMP(type=3, code=3)/
    /// bytes(IP(src=A, dst=B)/UDP(sport=5353, dport=53)/b"abcd")[:28].
    const PORT_UNREACH: [u8; 36] = [
        0x03, 0x03, 0xae, 0x20, 0x00, 0x00, 0x00, 0x00, // ICMP
        0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x4e, 0x8e, // IP
        0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x0a, //
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x39, 0xb2, // UDP
    ];

    /// The ICMP part of Scapy's IP(src=B, dst=A)/ICMP(type=3, code=4,
    /// nexthopmtu=1400)/bytes(<the TCP SYN of the tcp tests>)[:28].
    const FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0x56, 0xed, 0x00, 0x00, 0x05, 0x78, // ICMP
        0x45, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x4e, 0x8d, // IP
        0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x0a, //
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, // TCP, first 8 bytes
    ];

    #[test]
    fn deconstruct_echo() {
        let p = IcmpPacket::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), kind::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x2e37);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq(), 1);
        assert_eq!(p.rest_of_header(), 0x1234_0001);
        assert_eq!(p.payload(), b"pingdata");
        assert!(!p.is_error());
        assert!(p.verify_checksum());
        assert_eq!(p.embedded_ipv4().err(), Some(WireError::Unsupported));
    }

    #[test]
    fn construct_echo_reply() {
        // Answer the echo in place, as a responder does.
        let mut b = ECHO;
        let mut p = IcmpPacket::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(kind::ECHO_REPLY);
        p.fill_checksum();
        assert!(p.verify_checksum());
        // Type 8 → 0 changes the first word by 0x0800: RFC 1624.
        assert_eq!(p.checksum(), checksum::update16(0x2e37, 0x0800, 0x0000));
        assert_eq!(p.checksum(), 0x3637);

        let mut buf = [0xa5u8; 16];
        let mut p = IcmpPacket::new_unchecked(&mut buf[..]);
        p.set_msg_type(kind::ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq(1);
        p.payload_mut().copy_from_slice(b"pingdata");
        p.fill_checksum();
        assert_eq!(buf, ECHO);
    }

    #[test]
    fn deconstruct_port_unreachable() {
        let p = IcmpPacket::new_checked(&PORT_UNREACH[..]).unwrap();
        assert_eq!(p.msg_type(), kind::DEST_UNREACHABLE);
        assert_eq!(p.msg_code(), unreachable::PORT);
        assert!(p.is_error());
        assert!(p.verify_checksum());
        let ip = p.embedded_ipv4().unwrap();
        assert_eq!(ip.src_addr(), A);
        assert_eq!(ip.dst_addr(), B);
        assert_eq!(ip.protocol(), ipv4::protocol::UDP);
        assert_eq!(ip.total_len(), 32, "the original length, past the quote");
        assert!(ip.verify_checksum());
        assert_eq!(ip.payload().len(), 8);
        let udp = UdpPacket::new_unchecked(ip.payload());
        assert_eq!((udp.src_port(), udp.dst_port()), (5353, 53));
    }

    #[test]
    fn deconstruct_frag_needed() {
        let p = IcmpPacket::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert_eq!(p.msg_code(), unreachable::FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert!(p.verify_checksum());
        let ip = p.embedded_ipv4().unwrap();
        assert_eq!(ip.protocol(), ipv4::protocol::TCP);
        assert_eq!(ip.total_len(), 44);
        // Only 8 bytes of the TCP header: ports and sequence number.
        assert_eq!(TcpPacket::new_checked(ip.payload()).err(), Some(WireError::Truncated));
        let tcp = TcpPacket::new_unchecked(ip.payload());
        assert_eq!((tcp.src_port(), tcp.dst_port(), tcp.seq_number()), (40000, 80, 0x0102_0304));
    }

    #[test]
    fn construct_frag_needed() {
        let mut buf = [0xa5u8; 36];
        buf[8..].copy_from_slice(&FRAG_NEEDED[8..]);
        let mut p = IcmpPacket::new_unchecked(&mut buf[..]);
        p.set_msg_type(kind::DEST_UNREACHABLE);
        p.set_msg_code(unreachable::FRAG_NEEDED);
        p.set_rest_of_header(0);
        p.set_next_hop_mtu(1400);
        p.fill_checksum();
        assert_eq!(buf, FRAG_NEEDED);
        let repr = IcmpRepr { msg_type: 3, msg_code: 4, rest_of_header: 1400, payload_len: 28 };
        assert_eq!(IcmpRepr::parse(&IcmpPacket::new_checked(&FRAG_NEEDED[..]).unwrap()), repr);
        let mut buf2 = [0u8; 36];
        buf2[8..].copy_from_slice(&FRAG_NEEDED[8..]);
        repr.emit(&mut IcmpPacket::new_unchecked(&mut buf2[..]));
        assert_eq!(buf2, FRAG_NEEDED);
    }

    #[test]
    fn embedded_rewrite() {
        // A NAT rewrites the quoted source back: address, IP checksum, port;
        // then the ICMP checksum, which covers the quote.
        let mut b = PORT_UNREACH;
        let mut p = IcmpPacket::new_checked(&mut b[..]).unwrap();
        let vip = Ipv4Addr::new(203, 0, 113, 5);
        {
            let mut ip = p.embedded_ipv4_mut().unwrap();
            let c = checksum::update32(ip.checksum(), u32::from(ip.src_addr()), u32::from(vip));
            ip.set_src_addr(vip);
            ip.set_checksum(c);
            assert!(ip.verify_checksum());
            let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
            udp.set_src_port(5354);
        }
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.embedded_ipv4().map(|ip| ip.src_addr()), Ok(vip));
        assert_eq!(&b[20..24], &vip.octets());
        assert_eq!(&b[28..30], &5354u16.to_be_bytes());
    }

    #[test]
    fn refusals() {
        assert_eq!(IcmpPacket::new_checked(&ECHO[..7]).err(), Some(WireError::Truncated));
        assert!(IcmpPacket::new_checked(&ECHO[..8]).is_ok());
        // Quote too short for header + 8 bytes.
        let p = IcmpPacket::new_checked(&PORT_UNREACH[..35]).unwrap();
        assert_eq!(p.embedded_ipv4().err(), Some(WireError::Truncated));
        let p = IcmpPacket::new_checked(&PORT_UNREACH[..27]).unwrap();
        assert_eq!(p.embedded_ipv4().err(), Some(WireError::Truncated));
        let mut v6 = PORT_UNREACH;
        v6[8] = 0x60;
        let mut p = IcmpPacket::new_checked(&mut v6[..]).unwrap();
        assert_eq!(p.embedded_ipv4().err(), Some(WireError::BadVersion));
        assert_eq!(p.embedded_ipv4_mut().err(), Some(WireError::BadVersion));
        let mut ihl = PORT_UNREACH;
        ihl[8] = 0x42;
        let p = IcmpPacket::new_checked(&ihl[..]).unwrap();
        assert_eq!(p.embedded_ipv4().err(), Some(WireError::BadHeaderLength));
        let mut echo = ECHO;
        let mut p = IcmpPacket::new_checked(&mut echo[..]).unwrap();
        assert_eq!(p.embedded_ipv4_mut().err(), Some(WireError::Unsupported));
    }

    #[test]
    fn error_kinds() {
        let mut b = [0u8; 8];
        for t in 0..=255u8 {
            b[0] = t;
            let p = IcmpPacket::new_checked(&b[..]).unwrap();
            assert_eq!(p.is_error(), matches!(t, 3 | 4 | 5 | 11 | 12), "type {t}");
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip(t in any::<u8>(), c in any::<u8>(), rest in any::<u32>(),
                           payload in proptest::collection::vec(any::<u8>(), 0..600)) {
            let repr = IcmpRepr { msg_type: t, msg_code: c, rest_of_header: rest, payload_len: payload.len() };
            let mut buf = vec![0u8; repr.buffer_len()];
            buf[8..].copy_from_slice(&payload);
            repr.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]));
            let p = IcmpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(IcmpRepr::parse(&p), repr);
        }
    }
}
