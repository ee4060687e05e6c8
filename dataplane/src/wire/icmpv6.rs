//! ICMPv6 (RFC 4443) and the Neighbor Discovery messages a box that
//! neither routes by advertisement nor is a router needs (RFC 4861 §4.3,
//! §4.4, §4.6).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Message body                              |
//! ```
//!
//! Unlike ICMP for IPv4, the checksum covers the IPv6 pseudo header
//! (RFC 4443 §2.3, next header 58). Errors carry as much of the invoking
//! packet as fits in the minimum MTU of 1280 (§2.4 (c)); Packet Too Big
//! carries the next hop's MTU as 32 bits (§3.2). A Neighbor Solicitation
//! and Advertisement carry a target address and options of 8-byte units
//! (RFC 4861 §4.6), the link-layer address among them.

use super::ethernet::EthernetAddress;
use super::ipv6::{self, Ipv6Packet};
use super::{be16, be32, checksum, set_be16, set_be32, WireError};
use core::net::Ipv6Addr;

/// Message types (RFC 4443 §2.1, RFC 4861 §4, RFC 3810 §5).
pub mod kind {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const MLD_QUERY: u8 = 130;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
    /// MLDv2 report (RFC 3810 §5.2).
    pub const MLD2_REPORT: u8 = 143;
}

/// Destination-unreachable codes (RFC 4443 §3.1).
pub mod unreachable {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDRESS: u8 = 3;
    pub const PORT: u8 = 4;
}

/// Neighbor Discovery option types (RFC 4861 §4.6).
pub mod option {
    pub const SOURCE_LL: u8 = 1;
    pub const TARGET_LL: u8 = 2;
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    /// Packet Too Big's MTU, Parameter Problem's pointer.
    pub const WORD: usize = 4;
    /// Error messages' invoking packet, echo data.
    pub const DATA: usize = 8;
    /// NS / NA: the flags word (NA: R, S, O), then the target.
    pub const ND_FLAGS: usize = 4;
    pub const ND_TARGET: usize = 8;
    pub const ND_OPTIONS: usize = 24;
}

/// Length of the header every message has: type, code, checksum and the
/// first 32 bits of the body.
pub const HEADER_LEN: usize = field::DATA;
/// The shortest NS or NA: header, target (RFC 4861 §7.1.1: "ICMP length
/// is 24 or more octets").
pub const ND_LEN: usize = field::ND_OPTIONS;
/// The hop limit every Neighbor Discovery message is sent with and must
/// arrive with (RFC 4861 §7.1.1): an off-link sender cannot forge it.
pub const ND_HOP_LIMIT: u8 = 255;

/// NA flags (RFC 4861 §4.4).
pub const NA_ROUTER: u32 = 1 << 31;
pub const NA_SOLICITED: u32 = 1 << 30;
pub const NA_OVERRIDE: u32 = 1 << 29;

/// A view of an ICMPv6 message.
#[derive(Debug)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
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

    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref().get(field::TYPE).copied().unwrap_or(0)
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref().get(field::CODE).copied().unwrap_or(0)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Packet Too Big: the next hop's MTU (RFC 4443 §3.2).
    pub fn mtu(&self) -> u32 {
        be32(self.buffer.as_ref(), field::WORD)
    }

    /// Parameter Problem: the offset of the error in the invoking packet.
    pub fn pointer(&self) -> u32 {
        be32(self.buffer.as_ref(), field::WORD)
    }

    /// What follows the first 8 bytes: an error's invoking packet, an
    /// echo's data.
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(field::DATA..).unwrap_or_default()
    }

    /// An error message (types 0-127, RFC 4443 §2.1).
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// Whether the checksum is right for a message from `src` to `dst`
    /// (the buffer is the whole message).
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else { return false };
        checksum::fold(checksum::sum(b, ipv6::pseudo_header(src, dst, ipv6::next_header::ICMPV6, len))) == 0xffff
    }

    /// An error's invoking packet (`Ipv6Packet::new_embedded`).
    pub fn embedded_ipv6(&self) -> Result<Ipv6Packet<&[u8]>, WireError> {
        if !self.is_error() {
            return Err(WireError::Unsupported);
        }
        Ipv6Packet::new_embedded(self.data())
    }

    /// NS / NA: the target address (`UNSPECIFIED` when shorter than 24).
    pub fn nd_target(&self) -> Ipv6Addr {
        match self.buffer.as_ref().get(field::ND_TARGET..field::ND_OPTIONS).and_then(|s| <[u8; 16]>::try_from(s).ok()) {
            Some(o) => Ipv6Addr::from(o),
            None => Ipv6Addr::UNSPECIFIED,
        }
    }

    /// NA: the R, S and O flags (`NA_*`).
    pub fn na_flags(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ND_FLAGS) & (NA_ROUTER | NA_SOLICITED | NA_OVERRIDE)
    }

    /// NS / NA: the link-layer address option of type `kind`
    /// (`option::SOURCE_LL` or `TARGET_LL`), when the options are valid
    /// and one is there; `Err` when an option has length zero or runs past
    /// the message (RFC 4861 §4.6: the packet is then discarded).
    pub fn nd_link_addr(&self, kind: u8) -> Result<Option<EthernetAddress>, WireError> {
        let mut opts = self.buffer.as_ref().get(field::ND_OPTIONS..).ok_or(WireError::Truncated)?;
        let mut found = None;
        while let &[t, units, ..] = opts {
            let len = usize::from(units) * 8;
            if len == 0 {
                return Err(WireError::BadLength);
            }
            let opt = opts.get(..len).ok_or(WireError::BadLength)?;
            if t == kind && found.is_none() {
                found = opt.get(2..8).and_then(|m| <[u8; 6]>::try_from(m).ok()).map(EthernetAddress);
            }
            opts = opts.get(len..).unwrap_or_default();
        }
        if !opts.is_empty() {
            return Err(WireError::BadLength);
        }
        Ok(found)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        if let Some(f) = self.buffer.as_mut().get_mut(field::TYPE) {
            *f = v;
        }
    }

    pub fn set_msg_code(&mut self, v: u8) {
        if let Some(f) = self.buffer.as_mut().get_mut(field::CODE) {
            *f = v;
        }
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

    /// Packet Too Big's MTU, or the first body word of another message.
    pub fn set_mtu(&mut self, v: u32) {
        set_be32(self.buffer.as_mut(), field::WORD, v);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(field::DATA..).unwrap_or_default()
    }

    /// Computes and writes the checksum for a message from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let c = !checksum::fold(checksum::sum(b, ipv6::pseudo_header(src, dst, ipv6::next_header::ICMPV6, len)));
        self.set_checksum(c);
    }
}

/// Writes a Neighbor Advertisement for `target` at `mac` into `buf`
/// (`NA_LEN` bytes: the header, the target and a target link-layer
/// address option), flags `flags` (`NA_*`), its checksum for `src` to
/// `dst`. Returns the bytes written, 0 when `buf` is too short.
pub fn write_neighbor_advert(buf: &mut [u8], target: Ipv6Addr, mac: EthernetAddress, flags: u32, src: Ipv6Addr, dst: Ipv6Addr) -> usize {
    let Some(b) = buf.get_mut(..NA_LEN) else { return 0 };
    b.fill(0);
    if let Some(t) = b.get_mut(field::TYPE) {
        *t = kind::NEIGHBOR_ADVERT;
    }
    set_be32(b, field::ND_FLAGS, flags & (NA_ROUTER | NA_SOLICITED | NA_OVERRIDE));
    write_target_and_ll(b, target, option::TARGET_LL, mac);
    Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(src, dst);
    NA_LEN
}

/// Writes a Neighbor Solicitation for `target` from `mac` (a source
/// link-layer address option) into `buf` (`NS_LEN` bytes), its checksum
/// for `src` to `dst`. Returns the bytes written, 0 when `buf` is too
/// short.
pub fn write_neighbor_solicit(buf: &mut [u8], target: Ipv6Addr, mac: EthernetAddress, src: Ipv6Addr, dst: Ipv6Addr) -> usize {
    let Some(b) = buf.get_mut(..NS_LEN) else { return 0 };
    b.fill(0);
    if let Some(t) = b.get_mut(field::TYPE) {
        *t = kind::NEIGHBOR_SOLICIT;
    }
    write_target_and_ll(b, target, option::SOURCE_LL, mac);
    Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(src, dst);
    NS_LEN
}

/// An NA with its target link-layer address option.
pub const NA_LEN: usize = ND_LEN + 8;
/// An NS with its source link-layer address option.
pub const NS_LEN: usize = ND_LEN + 8;

fn write_target_and_ll(b: &mut [u8], target: Ipv6Addr, kind: u8, mac: EthernetAddress) {
    if let Some(t) = b.get_mut(field::ND_TARGET..field::ND_OPTIONS) {
        t.copy_from_slice(&target.octets());
    }
    let m = mac.0;
    if let Some(o) = b.get_mut(field::ND_OPTIONS..field::ND_OPTIONS + 8) {
        o.copy_from_slice(&[kind, 1, m[0], m[1], m[2], m[3], m[4], m[5]]);
    }
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1):
/// ff02::1:ff00:0/104 and the address's low 24 bits. A Neighbor
/// Solicitation for `addr` is sent there.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

/// The Ethernet address an IPv6 multicast address is sent to (RFC 2464
/// §7): 33:33 and its low 32 bits.
pub fn multicast_mac(group: Ipv6Addr) -> EthernetAddress {
    let o = group.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

#[cfg(test)]
mod tests;
