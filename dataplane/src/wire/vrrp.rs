//! VRRP advertisements over IPv4: version 3 (RFC 5798 §5.1) and version 2
//! (RFC 3768 §5.1), IP protocol 112.
//!
//! ```text
//! version 3                              version 2
//!  0       8      16      24      32      0       8      16      24      32
//! +---+---+-------+-------+-------+      +---+---+-------+-------+-------+
//! |Ver|Typ| VRID  | Prio  | Count |      |Ver|Typ| VRID  | Prio  | Count |
//! +---+---+-------+-------+-------+      +---+---+-------+-------+-------+
//! |Rsv|Max Adver Int| Checksum    |      |Auth T |AdvInt | Checksum      |
//! +---+-----------+---------------+      +-------+-------+---------------+
//! |  IPv4 address(es) ...         |      |  IPv4 address(es) ...         |
//! +-------------------------------+      +-------------------------------+
//!                                        |  Authentication data (8)      |
//!                                        +-------------------------------+
//! ```
//!
//! Version 3's interval is in centiseconds (12 bits) and its checksum
//! covers the IPv4 pseudo header (RFC 5798 §5.2.8); version 2's interval is
//! in seconds and its checksum covers the VRRP message alone (RFC 3768
//! §5.3.8), which carries 8 bytes of authentication data (type 1: a
//! plain-text password, as keepalived sends it).

use super::{be16, checksum, set_be16, WireError};
use core::net::Ipv4Addr;

/// IP protocol number of VRRP (IANA).
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group advertisements go to (RFC 5798 §5.1.1.2).
pub const MULTICAST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The only message type (RFC 5798 §5.2.2).
pub const ADVERTISEMENT: u8 = 1;
/// Version 2 authentication type of a plain-text password (RFC 2338 §5.3.6).
pub const AUTH_PASSWORD: u8 = 1;

mod field {
    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// Version 3: reserved (4 bits) and max advertisement interval (12).
    pub const INTERVAL_V3: usize = 4;
    /// Version 2: authentication type, then interval in seconds.
    pub const AUTH_TYPE: usize = 4;
    pub const INTERVAL_V2: usize = 5;
    pub const CHECKSUM: usize = 6;
    pub const ADDRESSES: usize = 8;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 8;
/// Version 2's authentication data.
pub const AUTH_LEN: usize = 8;

/// A view of a VRRP advertisement.
#[derive(Debug)]
pub struct VrrpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]>> VrrpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes: `Truncated` when shorter than the header, its
    /// addresses (and version 2's authentication data); `Unsupported` for a
    /// version other than 2 or 3 or a type other than advertisement.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let p = Self { buffer };
        if !matches!(p.version(), 2 | 3) || p.kind() != ADVERTISEMENT {
            return Err(WireError::Unsupported);
        }
        if p.buffer.as_ref().len() < p.message_len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    /// 255: the address owner; 0: the master is leaving (RFC 5798 §5.2.4).
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    pub fn address_count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// The advertisement interval in centiseconds (version 2's seconds
    /// times 100).
    pub fn interval_cs(&self) -> u16 {
        match self.version() {
            2 => u16::from(self.buffer.as_ref()[field::INTERVAL_V2]) * 100,
            _ => be16(self.buffer.as_ref(), field::INTERVAL_V3) & 0x0fff,
        }
    }

    /// Version 2's authentication type (0 for version 3).
    pub fn auth_type(&self) -> u8 {
        if self.version() == 2 {
            self.buffer.as_ref()[field::AUTH_TYPE]
        } else {
            0
        }
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The `i`th virtual address.
    pub fn address(&self, i: u8) -> Option<Ipv4Addr> {
        (i < self.address_count()).then(|| super::ipv4_at(self.buffer.as_ref(), field::ADDRESSES + 4 * usize::from(i)))
    }

    /// Version 2's authentication data (empty for version 3).
    pub fn auth_data(&self) -> &[u8] {
        if self.version() != 2 {
            return &[];
        }
        let at = field::ADDRESSES + 4 * usize::from(self.address_count());
        &self.buffer.as_ref()[at..at + AUTH_LEN]
    }

    /// Header, addresses and (version 2) authentication data.
    pub fn message_len(&self) -> usize {
        HEADER_LEN + 4 * usize::from(self.address_count()) + if self.version() == 2 { AUTH_LEN } else { 0 }
    }

    fn sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let msg = &self.buffer.as_ref()[..self.message_len()];
        let initial = if self.version() == 3 { checksum::pseudo_header(src, dst, PROTOCOL, super::len16(msg.len())) } else { 0 };
        checksum::fold(checksum::sum(msg, initial))
    }

    /// Whether the checksum is right for a datagram from `src` to `dst`
    /// (version 2 ignores the addresses).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.sum(src, dst) == 0xffff
    }
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]> + AsMut<[u8]>> VrrpPacket<T> {
    /// Computes and writes the checksum for a datagram from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let c = !self.sum(src, dst);
        set_be16(self.buffer.as_mut(), field::CHECKSUM, c);
    }
}

/// Owned form of an advertisement, for the control plane and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpRepr {
    /// 2 or 3.
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds; version 2 carries whole seconds (1 to 255).
    pub interval_cs: u16,
    pub addresses: Vec<Ipv4Addr>,
    /// Version 2's plain-text password (at most 8 bytes, zero-padded);
    /// `None`: no authentication.
    pub password: Option<[u8; AUTH_LEN]>,
}

impl VrrpRepr {
    /// Reads a checked advertisement.
    pub fn parse<T: AsRef<[u8]>>(p: &VrrpPacket<T>) -> Self {
        let password = (p.version() == 2 && p.auth_type() == AUTH_PASSWORD).then(|| {
            let mut pw = [0u8; AUTH_LEN];
            for (d, s) in pw.iter_mut().zip(p.auth_data()) {
                *d = *s;
            }
            pw
        });
        VrrpRepr {
            version: p.version(),
            vrid: p.vrid(),
            priority: p.priority(),
            interval_cs: p.interval_cs(),
            addresses: (0..p.address_count()).filter_map(|i| p.address(i)).collect(),
            password,
        }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + 4 * self.addresses.len() + if self.version == 2 { AUTH_LEN } else { 0 }
    }

    /// Writes the advertisement into `buf` (at least `buffer_len()` bytes)
    /// with its checksum for `src` -> `dst`. `None` when `buf` is short or
    /// the addresses do not fit the count field.
    pub fn emit(&self, buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Option<usize> {
        let len = self.buffer_len();
        let count = u8::try_from(self.addresses.len()).ok()?;
        let b = buf.get_mut(..len)?;
        b.fill(0);
        let (head, rest) = b.split_at_mut(HEADER_LEN);
        let [ver_type, vrid, priority, n, i0, i1, _, _] = head else { return None };
        *ver_type = self.version << 4 | ADVERTISEMENT;
        *vrid = self.vrid;
        *priority = self.priority;
        *n = count;
        if self.version == 2 {
            *i0 = if self.password.is_some() { AUTH_PASSWORD } else { 0 };
            *i1 = u8::try_from(self.interval_cs / 100).unwrap_or(u8::MAX).max(1);
        } else {
            let [hi, lo] = (self.interval_cs & 0x0fff).to_be_bytes();
            (*i0, *i1) = (hi, lo);
        }
        let (addrs, auth) = rest.split_at_mut(4 * self.addresses.len());
        for (chunk, a) in addrs.chunks_exact_mut(4).zip(&self.addresses) {
            chunk.copy_from_slice(&a.octets());
        }
        if let (2, Some(pw)) = (self.version, self.password) {
            auth.copy_from_slice(&pw);
        }
        VrrpPacket::new_unchecked(&mut *b).fill_checksum(src, dst);
        Some(len)
    }
}

#[cfg(test)]
mod tests;
