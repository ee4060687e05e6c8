//! TCP segments (RFC 9293 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! |       |       |R|E|G|K|H|T|N|N|                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           [Options]                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The checksum covers the IPv4 pseudo header (RFC 9293 §3.1) and the
//! whole segment. This view treats its whole buffer as the segment: hand it
//! exactly the IP payload ([`Ipv4Packet::payload`](super::Ipv4Packet::payload)).

use super::{be16, be32, checksum, len16, set_be16, set_be32, WireError};
use crate::wire::ipv4::protocol;
use core::net::Ipv4Addr;

/// Control bits, byte 13 (RFC 9293 §3.1; ECE and CWR from RFC 3168).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS_START: usize = 20;
}

/// Length of a TCP header without options (data offset 5).
pub const MIN_HEADER_LEN: usize = 20;

/// A view of a TCP segment.
#[derive(Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer already known to hold a whole header.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes: `Truncated` if shorter than 20 bytes,
    /// `BadHeaderLength` if the data offset is below 5 or the header runs
    /// past the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = usize::from(b[field::DATA_OFF] >> 4) * 4;
        if header_len < MIN_HEADER_LEN || header_len > b.len() {
            return Err(WireError::BadHeaderLength);
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

    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// The header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The control bits (byte 13); test with the [`flags`] constants.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// The option bytes, between the fixed header and `header_len`.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS_START..self.header_len()]
    }

    /// Everything after the header, to the end of the buffer.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum is right over the pseudo header for `src` →
    /// `dst` and the whole buffer as the segment (its length is the TCP
    /// length of the pseudo header).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u16::try_from(b.len()) else {
            return false;
        };
        let ph = checksum::pseudo_header(src, dst, protocol::TCP, len);
        checksum::fold(checksum::sum(b, ph)) == 0xffff
    }
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    pub fn set_seq_number(&mut self, v: u32) {
        set_be32(self.buffer.as_mut(), field::SEQ_NUM, v);
    }

    pub fn set_ack_number(&mut self, v: u32) {
        set_be32(self.buffer.as_mut(), field::ACK_NUM, v);
    }

    /// Writes the data offset; `header_len` is in bytes, a multiple of 4
    /// from 20 to 60. Clears the 4 reserved bits of the same byte, which
    /// senders must send as zero (RFC 9293 §3.1).
    pub fn set_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = (((header_len / 4) & 0x0f) as u8) << 4;
    }

    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    pub fn set_window_len(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::WIN_SIZE, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_urgent_at(&mut self, v: u16) {
        set_be16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// Zeroes the checksum field, then writes the checksum over the pseudo
    /// header and the whole buffer as the segment.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header(src, dst, protocol::TCP, len16(b.len()));
        let c = !checksum::fold(checksum::sum(b, ph));
        self.set_checksum(c);
    }

    /// The option bytes, mutable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS_START..end]
    }

    /// Everything after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// Option kinds (RFC 9293 §3.2; window scale and timestamps RFC 7323;
/// SACK permitted RFC 2018).
pub mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// The options a SYN negotiates, as read from a segment's option bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// Window scale shift as sent (RFC 7323 §2.3: a receiver uses at most 14).
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

impl TcpOptions {
    /// Reads the options it knows from `opts` (the bytes after the fixed
    /// header), skipping others by their length. A malformed list (a length
    /// below 2 or past the end) ends the walk: what was read so far is
    /// kept, as an endpoint would ignore the rest.
    pub fn parse(opts: &[u8]) -> Self {
        let mut o = TcpOptions::default();
        let mut i = 0;
        while let Some(&kind) = opts.get(i) {
            match kind {
                option::END => break,
                option::NOP => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let Some(&len) = opts.get(i + 1) else { break };
            let len = len as usize;
            let Some(body) = opts.get(i + 2..i + len.max(2)) else { break };
            if len < 2 {
                break;
            }
            match (kind, body.len()) {
                (option::MSS, 2) => o.mss = Some(be16(body, 0)),
                (option::WSCALE, 1) => o.wscale = body.first().copied(),
                (option::SACK_PERM, 0) => o.sack_perm = true,
                (option::TIMESTAMP, 8) => o.timestamp = Some((be32(body, 0), be32(body, 4))),
                _ => {}
            }
            i += len;
        }
        o
    }

    /// Writes the options a SYN or SYN-ACK carries, in Linux's order
    /// (MSS, SACK permitted + timestamps, NOP + window scale), padded with
    /// NOPs to a multiple of 4, into `out`; returns the bytes written (at
    /// most 20), or None when `out` is too short.
    pub fn emit_syn(&self, out: &mut [u8]) -> Option<usize> {
        let mut b = [option::NOP; 20];
        let mut n = 0;
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            b.get_mut(n..n + 4)?.copy_from_slice(&[option::MSS, 4, hi, lo]);
            n += 4;
        }
        match (self.sack_perm, self.timestamp) {
            (sack, Some((val, ecr))) => {
                let head = if sack { [option::SACK_PERM, 2] } else { [option::NOP, option::NOP] };
                b.get_mut(n..n + 2)?.copy_from_slice(&head);
                b.get_mut(n + 2..n + 4)?.copy_from_slice(&[option::TIMESTAMP, 10]);
                b.get_mut(n + 4..n + 8)?.copy_from_slice(&val.to_be_bytes());
                b.get_mut(n + 8..n + 12)?.copy_from_slice(&ecr.to_be_bytes());
                n += 12;
            }
            (true, None) => {
                b.get_mut(n..n + 4)?.copy_from_slice(&[option::NOP, option::NOP, option::SACK_PERM, 2]);
                n += 4;
            }
            (false, None) => {}
        }
        if let Some(ws) = self.wscale {
            b.get_mut(n..n + 4)?.copy_from_slice(&[option::NOP, option::WSCALE, 3, ws]);
            n += 4;
        }
        out.get_mut(..n)?.copy_from_slice(b.get(..n)?);
        Some(n)
    }
}

/// Where the timestamps option's TSval sits in `opts`, if present (for
/// rewriting it in place).
pub fn timestamp_offset(opts: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&kind) = opts.get(i) {
        match kind {
            option::END => return None,
            option::NOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let len = *opts.get(i + 1)? as usize;
        if len < 2 || i + len > opts.len() {
            return None;
        }
        if kind == option::TIMESTAMP && len == 10 {
            return Some(i + 2);
        }
        i += len;
    }
    None
}

/// Owned form of an option-less TCP header, for control code and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload_len: usize,
}

impl TcpRepr {
    /// Reads a segment (from [`TcpPacket::new_checked`]); options, the
    /// urgent pointer and the checksum are not kept.
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> Self {
        Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq_number(),
            ack: p.ack_number(),
            flags: p.flags(),
            window: p.window_len(),
            payload_len: p.payload().len(),
        }
    }

    /// The emitted header's length: always 20 (no options).
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Header plus payload: the buffer [`emit`](Self::emit) expects.
    pub fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header (no options, urgent pointer 0) at the start
    /// of `p`'s buffer, which must be exactly the segment
    /// ([`buffer_len`](Self::buffer_len) bytes), then fills the checksum
    /// for `src` → `dst` over the whole buffer. Copy the payload in (at
    /// `[20..]`) before calling this, or call
    /// [`TcpPacket::fill_checksum`] again after.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut TcpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq);
        p.set_ack_number(self.ack);
        p.set_header_len(MIN_HEADER_LEN);
        p.set_flags(self.flags);
        p.set_window_len(self.window);
        p.set_urgent_at(0);
        p.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

    /// The TCP part of Scapy's IP(src=A, dst=B)/TCP(sport=40000, dport=80,
    /// seq=0x01020304, ack=0, flags="S", window=64240,
    /// options=[("MSS", 1460)]).
    const SYN: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, //
        0x60, 0x02, 0xfa, 0xf0, 0x10, 0x60, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    /// The TCP part of Scapy's IP(src=A, dst=B)/TCP(sport=40000, dport=80,
    /// seq=0x01020305, ack=0xa0b0c0d0, flags="PA", window=502)/b"hello".
    const DATA: [u8; 25] = [
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x05, 0xa0, 0xb0, 0xc0, 0xd0, //
        0x50, 0x18, 0x01, 0xf6, 0x7b, 0xa7, 0x00, 0x00, b'h', b'e', b'l', b'l', b'o',
    ];

    #[test]
    fn deconstruct_syn() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x0102_0304);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), flags::SYN);
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.checksum(), 0x1060);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &[0x02, 0x04, 0x05, 0xb4]);
        assert_eq!(p.payload(), &[] as &[u8]);
        assert!(p.verify_checksum(A, B));
        assert!(!p.verify_checksum(A, Ipv4Addr::new(198, 51, 100, 11)));
    }

    #[test]
    fn deconstruct_data() {
        let p = TcpPacket::new_checked(&DATA[..]).unwrap();
        assert_eq!(p.flags(), flags::PSH | flags::ACK);
        assert_eq!(p.ack_number(), 0xa0b0_c0d0);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum(A, B));
        let mut bad = DATA;
        bad[24] = b'O';
        assert!(!TcpPacket::new_checked(&bad[..]).unwrap().verify_checksum(A, B));
    }

    #[test]
    fn construct_with_setters() {
        let mut buf = [0xa5u8; 24];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(80);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0);
        p.set_header_len(24);
        p.set_flags(flags::SYN);
        p.set_window_len(64240);
        p.set_urgent_at(0);
        p.options_mut().copy_from_slice(&[0x02, 0x04, 0x05, 0xb4]);
        p.fill_checksum(A, B);
        assert_eq!(buf, SYN);
    }

    #[test]
    fn repr_emit_and_parse() {
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 0x0102_0305,
            ack: 0xa0b0_c0d0,
            flags: flags::PSH | flags::ACK,
            window: 502,
            payload_len: 5,
        };
        let mut buf = [0xa5u8; 25];
        buf[20..].copy_from_slice(b"hello");
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), A, B);
        assert_eq!(buf, DATA);
        assert_eq!(TcpRepr::parse(&TcpPacket::new_checked(&DATA[..]).unwrap()), repr);
        assert_eq!(repr.buffer_len(), 25);
    }

    #[test]
    fn refusals() {
        assert_eq!(TcpPacket::new_checked(&SYN[..19]).err(), Some(WireError::Truncated));
        let mut off4 = SYN;
        off4[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&off4[..]).err(), Some(WireError::BadHeaderLength));
        let mut off7 = SYN;
        off7[12] = 0x70; // 28 > 24
        assert_eq!(TcpPacket::new_checked(&off7[..]).err(), Some(WireError::BadHeaderLength));
        assert_eq!(TcpPacket::new_checked(&SYN[..23]).err(), Some(WireError::BadHeaderLength));
        assert!(TcpPacket::new_checked(&SYN[..20]).is_err());
        assert!(TcpPacket::new_checked(&DATA[..20]).is_ok());
    }

    #[test]
    fn nat_rewrite_incremental() {
        // Rewrite the destination (pseudo header) and port, as a NAT does.
        let mut b = DATA;
        let new_dst = Ipv4Addr::new(10, 0, 0, 7);
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        let mut c = checksum::update32(p.checksum(), u32::from(B), u32::from(new_dst));
        c = checksum::update16(c, p.dst_port(), 8080);
        p.set_dst_port(8080);
        p.set_checksum(c);
        assert!(p.verify_checksum(A, new_dst));
        p.fill_checksum(A, new_dst);
        assert_eq!(p.checksum(), c);
    }

    fn arb_repr() -> impl Strategy<Value = TcpRepr> {
        (any::<(u16, u16, u32, u32, u8, u16)>(), 0usize..1500).prop_map(
            |((src_port, dst_port, seq, ack, flags, window), payload_len)| TcpRepr {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window,
                payload_len,
            },
        )
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in arb_repr(), src in any::<u32>(), dst in any::<u32>(), fill in any::<u8>()) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let mut buf = vec![fill; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst);
            let p = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(src, dst));
            prop_assert_eq!(p.payload().len(), repr.payload_len);
            prop_assert_eq!(TcpRepr::parse(&p), repr);
        }
    }
}
