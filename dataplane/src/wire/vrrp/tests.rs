use super::*;
use proptest::prelude::*;

const SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// Scapy's IP(src=SRC, dst=224.0.0.18)/VRRPv3(vrid=51, priority=200,
/// addrlist=["203.0.113.100"], adv=10): the VRRP part, checksum included.
const V3: [u8; 12] = [0x31, 0x33, 0xc8, 0x01, 0x00, 0x0a, 0xbf, 0x96, 0xcb, 0x00, 0x71, 0x64];

/// Scapy's VRRP (version 2, vrid 51, priority 100, two addresses,
/// authtype 1 with "secret", adv 1 s).
const V2: [u8; 24] = [
    0x21, 0x33, 0x64, 0x02, 0x01, 0x01, 0xc4, 0xb1, 0xcb, 0x00, 0x71, 0x64, 0xcb, 0x00, 0x71, 0x65, 0x73, 0x65, 0x63, 0x72, 0x65,
    0x74, 0x00, 0x00,
];

#[test]
fn deconstructs_scapys_v3_advertisement() {
    let p = VrrpPacket::new_checked(&V3[..]).unwrap();
    assert_eq!((p.version(), p.kind(), p.vrid(), p.priority(), p.address_count()), (3, ADVERTISEMENT, 51, 200, 1));
    assert_eq!(p.interval_cs(), 10);
    assert_eq!(p.address(0), Some(Ipv4Addr::new(203, 0, 113, 100)));
    assert_eq!(p.address(1), None);
    assert!(p.verify_checksum(SRC, MULTICAST), "RFC 5798 §5.2.8: pseudo header included");
    assert!(!p.verify_checksum(Ipv4Addr::new(198, 51, 100, 3), MULTICAST), "another source: another checksum");
    assert!(p.auth_data().is_empty());
}

#[test]
fn deconstructs_scapys_v2_advertisement_with_a_password() {
    let p = VrrpPacket::new_checked(&V2[..]).unwrap();
    assert_eq!((p.version(), p.vrid(), p.priority(), p.address_count(), p.auth_type()), (2, 51, 100, 2, AUTH_PASSWORD));
    assert_eq!(p.interval_cs(), 100);
    assert_eq!(p.address(1), Some(Ipv4Addr::new(203, 0, 113, 101)));
    assert_eq!(p.auth_data(), b"secret\0\0");
    assert!(p.verify_checksum(SRC, MULTICAST));
    assert!(p.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED), "RFC 3768 §5.3.8: the message alone");
}

#[test]
fn constructs_the_same_bytes() {
    for bytes in [&V3[..], &V2[..]] {
        let repr = VrrpRepr::parse(&VrrpPacket::new_checked(bytes).unwrap());
        let mut out = vec![0xeeu8; repr.buffer_len() + 3];
        assert_eq!(repr.emit(&mut out, SRC, MULTICAST), Some(bytes.len()));
        assert_eq!(&out[..bytes.len()], bytes);
    }
}

#[test]
fn refuses_what_it_cannot_read() {
    assert_eq!(VrrpPacket::new_checked(&V3[..7]).err(), Some(WireError::Truncated));
    assert_eq!(VrrpPacket::new_checked(&V3[..11]).err(), Some(WireError::Truncated), "the address is cut");
    assert_eq!(VrrpPacket::new_checked(&V2[..20]).err(), Some(WireError::Truncated), "the authentication data is cut");
    let mut v4 = V3;
    v4[0] = 0x41;
    assert_eq!(VrrpPacket::new_checked(&v4[..]).err(), Some(WireError::Unsupported));
    let mut t2 = V3;
    t2[0] = 0x32;
    assert_eq!(VrrpPacket::new_checked(&t2[..]).err(), Some(WireError::Unsupported));
    let repr = VrrpRepr { version: 3, vrid: 1, priority: 100, interval_cs: 100, addresses: vec![SRC; 2], password: None };
    assert_eq!(repr.emit(&mut [0u8; 15], SRC, MULTICAST), None, "no room");
}

proptest! {
    #[test]
    fn round_trips(version in 2u8..=3, vrid in any::<u8>(), priority in any::<u8>(), interval in 1u16..=4095, n in 0usize..8, seed in any::<u32>(), pw in proptest::option::of(any::<[u8; 8]>())) {
        let addresses: Vec<Ipv4Addr> = (0..n as u32).map(|i| Ipv4Addr::from(seed.wrapping_add(i))).collect();
        let interval_cs = if version == 2 { (interval % 255 + 1) * 100 } else { interval };
        let password = if version == 2 { pw } else { None };
        let repr = VrrpRepr { version, vrid, priority, interval_cs, addresses, password };
        let mut buf = vec![0u8; repr.buffer_len()];
        prop_assert_eq!(repr.emit(&mut buf, SRC, MULTICAST), Some(buf.len()));
        let p = VrrpPacket::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum(SRC, MULTICAST));
        prop_assert_eq!(VrrpRepr::parse(&p), repr);
    }
}
