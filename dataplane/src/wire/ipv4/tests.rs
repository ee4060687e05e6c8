use super::*;
use proptest::prelude::*;

/// Scapy: IP(src="192.0.2.1", dst="198.51.100.10", ttl=64, id=0,
/// flags="DF")/TCP(sport=40000, dport=80, seq=0x01020304, flags="S",
/// window=64240, options=[("MSS", 1460)])
pub(crate) const TCP_SYN: [u8; 44] = [
    0x45, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x4e, 0x8d, 0xc0, 0x00, 0x02,
    0x01, 0xc6, 0x33, 0x64, 0x0a, 0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00,
    0x00, 0x00, 0x60, 0x02, 0xfa, 0xf0, 0x10, 0x60, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
];

/// Scapy: IP(src="192.0.2.1", dst="198.51.100.10", ttl=1, id=0x4242,
/// flags="MF", frag=185, tos=0xb8, proto=17,
/// options=[IPOption_Router_Alert()])/Raw(b"\0" * 8)
const OPTIONS_FRAG: [u8; 32] = [
    0x46, 0xb8, 0x00, 0x20, 0x42, 0x42, 0x20, 0xb9, 0x01, 0x11, 0xd4, 0xd6, 0xc0, 0x00, 0x02,
    0x01, 0xc6, 0x33, 0x64, 0x0a, 0x94, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00,
];

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

#[test]
fn deconstruct() {
    let p = Ipv4Packet::new_checked(&TCP_SYN[..]).unwrap();
    assert_eq!(p.version(), 4);
    assert_eq!(p.header_len(), 20);
    assert_eq!(p.dscp_ecn(), 0);
    assert_eq!(p.total_len(), 44);
    assert_eq!(p.ident(), 0);
    assert!(p.dont_frag());
    assert!(!p.more_frags());
    assert_eq!(p.frag_offset(), 0);
    assert!(!p.is_fragment());
    assert_eq!(p.ttl(), 64);
    assert_eq!(p.protocol(), protocol::TCP);
    assert_eq!(p.checksum(), 0x4e8d);
    assert_eq!(p.src_addr(), A);
    assert_eq!(p.dst_addr(), B);
    assert!(p.verify_checksum());
    assert_eq!(p.options(), &[] as &[u8]);
    assert_eq!(p.payload(), &TCP_SYN[20..]);
}

#[test]
fn deconstruct_options_and_fragment() {
    let p = Ipv4Packet::new_checked(&OPTIONS_FRAG[..]).unwrap();
    assert_eq!(p.header_len(), 24);
    assert_eq!(p.dscp_ecn(), 0xb8);
    assert_eq!(p.ident(), 0x4242);
    assert!(!p.dont_frag());
    assert!(p.more_frags());
    assert_eq!(p.frag_offset(), 1480);
    assert!(p.is_fragment());
    assert_eq!(p.ttl(), 1);
    assert_eq!(p.protocol(), protocol::UDP);
    assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
    assert_eq!(p.payload(), &[0u8; 8]);
    assert!(p.verify_checksum(), "the checksum covers the options");
    let mut bad = OPTIONS_FRAG;
    bad[22] = 1; // an option byte
    assert!(!Ipv4Packet::new_checked(&bad[..]).unwrap().verify_checksum());
}

#[test]
fn last_fragment_is_a_fragment() {
    let mut b = TCP_SYN;
    b[6] = 0x00;
    b[7] = 0x10; // offset 16 units, MF clear
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert!(!p.more_frags());
    assert_eq!(p.frag_offset(), 128);
    assert!(p.is_fragment());
}

#[test]
fn construct_with_setters() {
    let mut buf = [0xa5u8; 32];
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
    p.set_version_ihl(4, 24);
    p.set_dscp_ecn(0xb8);
    p.set_total_len(32);
    p.set_ident(0x4242);
    p.set_flags_frag(false, true, 1480);
    p.set_ttl(1);
    p.set_protocol(protocol::UDP);
    p.set_src_addr(A);
    p.set_dst_addr(B);
    p.options_mut().copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
    p.payload_mut().fill(0);
    p.fill_checksum();
    assert_eq!(buf, OPTIONS_FRAG);
}

#[test]
fn repr_emit() {
    let repr = Ipv4Repr {
        src_addr: A,
        dst_addr: B,
        protocol: protocol::TCP,
        payload_len: 24,
        ttl: 64,
        dscp_ecn: 0,
    };
    let mut buf = [0xa5u8; 44];
    buf[20..].copy_from_slice(&TCP_SYN[20..]);
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
    assert_eq!(buf, TCP_SYN);
    let p = Ipv4Packet::new_checked(&TCP_SYN[..]).unwrap();
    assert_eq!(Ipv4Repr::parse(&p), repr);
    assert_eq!(repr.header_len(), 20);
    assert_eq!(repr.buffer_len(), 44);
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut b = [0u8; 60];
    b[..44].copy_from_slice(&TCP_SYN);
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.payload(), &TCP_SYN[20..]);
    assert!(p.verify_checksum());
}

#[test]
fn refusals() {
    assert_eq!(Ipv4Packet::new_checked(&TCP_SYN[..19]).err(), Some(WireError::Truncated));
    assert_eq!(Ipv4Packet::new_checked(&[][..]).err(), Some(WireError::Truncated));

    let mut v6 = TCP_SYN;
    v6[0] = 0x65;
    assert_eq!(Ipv4Packet::new_checked(&v6[..]).err(), Some(WireError::BadVersion));

    let mut ihl4 = TCP_SYN;
    ihl4[0] = 0x44;
    assert_eq!(Ipv4Packet::new_checked(&ihl4[..]).err(), Some(WireError::BadHeaderLength));
    let mut ihl15 = TCP_SYN;
    ihl15[0] = 0x4f; // 60 bytes > 44
    assert_eq!(Ipv4Packet::new_checked(&ihl15[..]).err(), Some(WireError::BadHeaderLength));

    let mut short = TCP_SYN;
    short[3] = 19; // total length below the header
    assert_eq!(Ipv4Packet::new_checked(&short[..]).err(), Some(WireError::BadTotalLength));
    assert_eq!(Ipv4Packet::new_checked(&TCP_SYN[..43]).err(), Some(WireError::BadTotalLength));
    let mut long = TCP_SYN;
    long[2] = 0xff;
    assert_eq!(Ipv4Packet::new_checked(&long[..]).err(), Some(WireError::BadTotalLength));
    // Exactly a header is fine.
    let mut bare = [0u8; 20];
    bare.copy_from_slice(&TCP_SYN[..20]);
    bare[3] = 20;
    assert_eq!(Ipv4Packet::new_checked(&bare[..]).map(|p| p.payload().len()), Ok(0));
}

#[test]
fn embedded() {
    // The first 28 bytes of the SYN, as an ICMP error quotes them.
    let q = &TCP_SYN[..28];
    assert_eq!(Ipv4Packet::new_checked(q).err(), Some(WireError::BadTotalLength));
    let p = Ipv4Packet::new_embedded(q).unwrap();
    assert_eq!(p.total_len(), 44);
    assert_eq!(p.payload(), &TCP_SYN[20..28]);
    assert!(p.verify_checksum());
    assert_eq!(Ipv4Packet::new_embedded(&TCP_SYN[..27]).err(), Some(WireError::Truncated));
    assert_eq!(Ipv4Packet::new_embedded(&TCP_SYN[..19]).err(), Some(WireError::Truncated));
    let mut v = [0u8; 28];
    v.copy_from_slice(q);
    v[0] = 0x55;
    assert_eq!(Ipv4Packet::new_embedded(&v[..]).err(), Some(WireError::BadVersion));
    v[0] = 0x43;
    assert_eq!(Ipv4Packet::new_embedded(&v[..]).err(), Some(WireError::BadHeaderLength));
    v[0] = 0x48; // 32-byte header, 28-byte buffer
    assert_eq!(Ipv4Packet::new_embedded(&v[..]).err(), Some(WireError::BadHeaderLength));
    v[0] = 0x46; // 24-byte header, 4 payload bytes
    assert_eq!(Ipv4Packet::new_embedded(&v[..]).err(), Some(WireError::Truncated));
    // A total length leaving less than 8 payload bytes.
    v[0] = 0x45;
    v[2] = 0;
    v[3] = 27;
    assert_eq!(Ipv4Packet::new_embedded(&v[..]).err(), Some(WireError::BadTotalLength));
    v[3] = 28;
    assert_eq!(Ipv4Packet::new_embedded(&v[..]).map(|p| p.payload().len()), Ok(8));
    // Longer than the quote: clamped.
    v[2] = 0xff;
    assert_eq!(Ipv4Packet::new_embedded(&v[..]).map(|p| p.payload().len()), Ok(8));
}

#[test]
fn ttl_decrement_incremental() {
    let mut b = TCP_SYN;
    let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
    let old = u16::from_be_bytes([p.ttl(), p.protocol()]);
    p.set_ttl(p.ttl() - 1);
    let new = u16::from_be_bytes([p.ttl(), p.protocol()]);
    p.set_checksum(checksum::update16(p.checksum(), old, new));
    assert!(p.verify_checksum());
    let inc = p.checksum();
    p.fill_checksum();
    assert_eq!(p.checksum(), inc);
}

fn arb_repr() -> impl Strategy<Value = Ipv4Repr> {
    (any::<u32>(), any::<u32>(), any::<u8>(), 0usize..=(65535 - 20), any::<u8>(), any::<u8>())
        .prop_map(|(s, d, protocol, payload_len, ttl, dscp_ecn)| Ipv4Repr {
            src_addr: Ipv4Addr::from(s),
            dst_addr: Ipv4Addr::from(d),
            protocol,
            payload_len,
            ttl,
            dscp_ecn,
        })
}

proptest! {
    #[test]
    fn repr_round_trip(repr in arb_repr(), fill in any::<u8>()) {
        let mut buf = vec![fill; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert!(p.dont_frag());
        prop_assert!(!p.is_fragment());
        prop_assert_eq!(p.payload().len(), repr.payload_len);
        prop_assert_eq!(Ipv4Repr::parse(&p), repr);
    }

    #[test]
    fn address_rewrite_incremental(repr in arb_repr(), new_dst in any::<u32>()) {
        let repr = Ipv4Repr { payload_len: repr.payload_len % 64, ..repr };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        let old = u32::from(p.dst_addr());
        p.set_dst_addr(Ipv4Addr::from(new_dst));
        p.set_checksum(checksum::update32(p.checksum(), old, new_dst));
        prop_assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        prop_assert_eq!(p.checksum(), inc);
    }
}
