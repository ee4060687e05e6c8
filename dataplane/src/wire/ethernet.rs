//! Ethernet II frames (IEEE 802.3, DIX framing), with at most one IEEE
//! 802.1Q VLAN tag or 802.1ad service tag ([`parse_l2`]).

use super::{be16, set_be16, WireError};
use core::fmt;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: Self = Self([0xff; 6]);

    /// The first six bytes of `b` (zeros where `b` is shorter).
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut a = [0u8; 6];
        for (d, s) in a.iter_mut().zip(b) {
            *d = *s;
        }
        Self(a)
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// EtherType values Furiwake dispatches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherType {
    Ipv4,
    Arp,
    /// IEEE 802.1Q customer VLAN tag (C-tag), 0x8100.
    Vlan,
    Ipv6,
    /// IEEE 802.1ad service VLAN tag (S-tag, "QinQ"), 0x88a8.
    QinQ,
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => Self::Ipv4,
            0x0806 => Self::Arp,
            0x8100 => Self::Vlan,
            0x86dd => Self::Ipv6,
            0x88a8 => Self::QinQ,
            other => Self::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::Ipv6 => 0x86dd,
            EtherType::QinQ => 0x88a8,
            EtherType::Unknown(v) => v,
        }
    }
}

mod field {
    use core::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of an Ethernet II frame.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer already known to hold at least a header.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes, refusing runts.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buffer })
    }

    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

#[allow(clippy::indexing_slicing, reason = "field offsets lie within the length `new_checked` verified; `new_unchecked` callers promise the same (smoltcp's contract)")]
impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&a.0);
    }

    pub fn set_src_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&a.0);
    }

    pub fn set_ethertype(&mut self, t: EtherType) {
        set_be16(self.buffer.as_mut(), field::ETHERTYPE, t.into());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// Length of an IEEE 802.1Q / 802.1ad tag: TPID (the outer EtherType) is
/// counted in [`HEADER_LEN`], so a tag adds its TCI and the inner EtherType.
pub const VLAN_TAG_LEN: usize = 4;

/// Where a frame's layer 3 starts, past the Ethernet header and at most one
/// VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2 {
    /// The EtherType of the layer-3 payload (the inner one for a tagged
    /// frame). A second tag (double-tagged QinQ) shows here as
    /// [`EtherType::Vlan`] or [`EtherType::QinQ`]: only one is parsed.
    pub ethertype: EtherType,
    /// Offset of the layer-3 header in the frame: 14, or 18 when tagged.
    /// Never more than the frame's length.
    pub l3_offset: usize,
    /// The 12-bit VLAN identifier of the tag, if the frame has one.
    pub vlan: Option<u16>,
}

/// Parses the Ethernet II header and at most one IEEE 802.1Q (TPID 0x8100)
/// or 802.1ad (TPID 0x88a8) tag (IEEE 802.1Q-2018 §9.6: TPID, then the
/// tag control information PCP:3 DEI:1 VID:12, then the inner EtherType).
///
/// `Err(Truncated)` when the frame is shorter than the header(s).
pub fn parse_l2(frame: &[u8]) -> Result<L2, WireError> {
    if frame.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let outer = EtherType::from(be16(frame, field::ETHERTYPE));
    match outer {
        EtherType::Vlan | EtherType::QinQ => {
            if frame.len() < HEADER_LEN + VLAN_TAG_LEN {
                return Err(WireError::Truncated);
            }
            let tci = be16(frame, field::PAYLOAD);
            Ok(L2 {
                ethertype: EtherType::from(be16(frame, field::PAYLOAD + 2)),
                l3_offset: HEADER_LEN + VLAN_TAG_LEN,
                vlan: Some(tci & 0x0fff),
            })
        }
        ethertype => Ok(L2 { ethertype, l3_offset: HEADER_LEN, vlan: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x06, // ARP
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    #[test]
    fn deconstruct() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert_eq!(f.src_addr(), EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn construct_round_trip() {
        let mut buf = [0u8; 18];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(EthernetAddress::BROADCAST);
        f.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, 1]));
        f.set_ethertype(EtherType::Arp);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn runt_refused() {
        assert_eq!(EthernetFrame::new_checked(&FRAME[..13]).err(), Some(WireError::Truncated));
    }

    #[test]
    fn ethertype_round_trip() {
        for v in [0x0800u16, 0x0806, 0x8100, 0x86dd, 0x88a8, 0x1234] {
            assert_eq!(u16::from(EtherType::from(v)), v);
        }
    }
    const MACS: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

    fn with_macs(rest: &[u8]) -> Vec<u8> {
        let mut v = MACS.to_vec();
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn l2_untagged() {
        let f = with_macs(&[0x08, 0x00, 0x45]);
        assert_eq!(parse_l2(&f), Ok(L2 { ethertype: EtherType::Ipv4, l3_offset: 14, vlan: None }));
        // A header and nothing else is fine: the L3 view refuses it later.
        let f = with_macs(&[0x08, 0x06]);
        assert_eq!(parse_l2(&f).map(|l| l.l3_offset), Ok(14));
    }

    #[test]
    fn l2_dot1q() {
        // Scapy: Ether()/Dot1Q(vlan=100, prio=5)/IP(): TCI 0xa064.
        let f = with_macs(&[0x81, 0x00, 0xa0, 0x64, 0x08, 0x00, 0x45]);
        assert_eq!(
            parse_l2(&f),
            Ok(L2 { ethertype: EtherType::Ipv4, l3_offset: 18, vlan: Some(100) })
        );
    }

    #[test]
    fn l2_dot1ad() {
        // Scapy: Ether(type=0x88a8)/Dot1Q(vlan=0xabc)/IP(); DEI set too.
        let f = with_macs(&[0x88, 0xa8, 0x1a, 0xbc, 0x08, 0x00]);
        assert_eq!(
            parse_l2(&f),
            Ok(L2 { ethertype: EtherType::Ipv4, l3_offset: 18, vlan: Some(0xabc) })
        );
        // Double tag: only the outer one is parsed.
        let f = with_macs(&[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x00]);
        assert_eq!(
            parse_l2(&f),
            Ok(L2 { ethertype: EtherType::Vlan, l3_offset: 18, vlan: Some(10) })
        );
    }

    #[test]
    fn l2_truncated() {
        assert_eq!(parse_l2(&FRAME[..13]), Err(WireError::Truncated));
        assert_eq!(parse_l2(&[]), Err(WireError::Truncated));
        let f = with_macs(&[0x81, 0x00, 0x00, 0x64, 0x08]);
        assert_eq!(parse_l2(&f), Err(WireError::Truncated));
        let f = with_macs(&[0x88, 0xa8]);
        assert_eq!(parse_l2(&f), Err(WireError::Truncated));
    }
}
