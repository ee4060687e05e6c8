//! VRRP version 3 advertisements over IPv6 (RFC 5798 §5.1.2, §5.2): the
//! header of `wire::vrrp` followed by 16-byte IPv6 addresses, sent from the
//! interface's link-local address to ff02::12 with hop limit 255, the
//! checksum over the IPv6 pseudo header (RFC 8200 §8.1, next header 112).
//! The groundwork of VRRP for IPv6 VIPs (issue 24); the control plane does
//! not run IPv6 instances yet.

use super::checksum;
use super::vrrp::{ADVERTISEMENT, HEADER_LEN, PROTOCOL};
use super::WireError;
use core::net::Ipv6Addr;

/// The IPv6 group advertisements go to (RFC 5798 §5.1.2.2): ff02::12.
pub const MULTICAST6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Its Ethernet address (RFC 2464 §7): 33:33 and the group's low 32 bits.
pub const MULTICAST6_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 0x12];

/// The virtual router MAC of `vrid` for IPv6 (RFC 5798 §7.3):
/// 00-00-5E-00-02-{VRID}.
pub const fn virtual_mac6(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x02, vrid]
}

/// An IPv6 advertisement (version 3 only: RFC 3768's version 2 is IPv4's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrrp6Repr {
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds, 12 bits.
    pub interval_cs: u16,
    pub addresses: Vec<Ipv6Addr>,
}

impl Vrrp6Repr {
    /// Reads an advertisement from `b` (the IPv6 payload): `Truncated`
    /// when shorter than its header and addresses, `Unsupported` for a
    /// version other than 3 or a type other than advertisement.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        let &[ver_type, vrid, priority, count, i0, i1, ..] = b else { return Err(WireError::Truncated) };
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if ver_type != (3 << 4 | ADVERTISEMENT) {
            return Err(WireError::Unsupported);
        }
        let addrs = b.get(HEADER_LEN..HEADER_LEN + 16 * usize::from(count)).ok_or(WireError::Truncated)?;
        let addresses = addrs.chunks_exact(16).filter_map(|c| <[u8; 16]>::try_from(c).ok()).map(Ipv6Addr::from).collect();
        Ok(Vrrp6Repr { vrid, priority, interval_cs: u16::from_be_bytes([i0, i1]) & 0x0fff, addresses })
    }

    /// Bytes of the message: header and addresses.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + 16 * self.addresses.len()
    }

    /// Writes the advertisement into `buf` with its checksum for `src` ->
    /// `dst`. `None` when `buf` is short or the addresses do not fit the
    /// count field.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Option<usize> {
        let len = self.buffer_len();
        let count = u8::try_from(self.addresses.len()).ok()?;
        let b = buf.get_mut(..len)?;
        b.fill(0);
        let (head, rest) = b.split_at_mut(HEADER_LEN);
        let [hi, lo] = (self.interval_cs & 0x0fff).to_be_bytes();
        head.copy_from_slice(&[3 << 4 | ADVERTISEMENT, self.vrid, self.priority, count, hi, lo, 0, 0]);
        for (chunk, a) in rest.chunks_exact_mut(16).zip(&self.addresses) {
            chunk.copy_from_slice(&a.octets());
        }
        let c = !sum(b, src, dst);
        let [c0, c1] = c.to_be_bytes();
        let cs = b.get_mut(6..8)?;
        cs.copy_from_slice(&[c0, c1]);
        Some(len)
    }
}

/// The folded sum of `msg` and its IPv6 pseudo header.
fn sum(msg: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    checksum::fold(checksum::sum(msg, super::ipv6::pseudo_header(src, dst, PROTOCOL, len)))
}

/// Whether the checksum of the advertisement `msg` (exactly its header
/// and addresses) is right for a datagram from `src` to `dst`.
pub fn verify_checksum(msg: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> bool {
    sum(msg, src, dst) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scapy 2.5: `IPv6(src="fe80::1", dst="ff02::12", hlim=255) /
    /// VRRPv3(vrid=51, priority=100, ipcount=1, adv=100,
    /// addrlist=["2001:db8:1::100"])`, the VRRP part.
    const SCAPY: &str = "3133640100643d8e20010db8000100000000000000000100";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn an_advert_is_written_and_read_as_scapy_does() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let r = Vrrp6Repr { vrid: 51, priority: 100, interval_cs: 100, addresses: vec!["2001:db8:1::100".parse().unwrap()] };
        let mut b = vec![0u8; r.buffer_len()];
        assert_eq!(r.emit(&mut b, src, MULTICAST6), Some(24));
        assert_eq!(b, hex(SCAPY), "byte for byte scapy's, checksum included");
        assert!(verify_checksum(&b, src, MULTICAST6));
        assert_eq!(Vrrp6Repr::parse(&b), Ok(r));
        assert!(!verify_checksum(&b, "fe80::2".parse().unwrap(), MULTICAST6), "the pseudo header counts");
    }

    #[test]
    fn short_or_foreign_adverts_are_refused() {
        let b = hex(SCAPY);
        assert_eq!(Vrrp6Repr::parse(&b[..20]), Err(WireError::Truncated));
        assert_eq!(Vrrp6Repr::parse(&b[..5]), Err(WireError::Truncated));
        let mut v2 = b.clone();
        v2[0] = 0x21;
        assert_eq!(Vrrp6Repr::parse(&v2), Err(WireError::Unsupported));
        assert_eq!(virtual_mac6(51), [0, 0, 0x5e, 0, 2, 51]);
        assert_eq!(&MULTICAST6_MAC[2..], &MULTICAST6.octets()[12..]);
    }
}
