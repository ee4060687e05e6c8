use super::*;
use crate::wire::checksum;
use proptest::prelude::*;

/// Scapy: IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0xb8,
/// fl=0x12345, hlim=64)/IPv6ExtHdrHopByHop()/IPv6ExtHdrDestOpt()/
/// IPv6ExtHdrRouting(segleft=0)/IPv6ExtHdrFragment(offset=0, m=0,
/// id=0x01020304)/TCP(sport=40000, dport=80, flags="S", seq=1000,
/// window=65535)
const CHAIN: [u8; 92] = [
    0x6b, 0x81, 0x23, 0x45, 0x00, 0x34, 0x00, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x3c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xff,
    0xff, 0xb3, 0xf5, 0x00, 0x00,
];

/// Scapy: IPv6(src="2001:db8::1", dst="2001:db8::2")/
/// IPv6ExtHdrFragment(offset=185, m=1, id=0x4242, nh=17)/Raw(b"\0" * 8)
const LATER_FRAGMENT: [u8; 56] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x10, 0x2c, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x11, 0x00, 0x05, 0xc9, 0x00, 0x00, 0x42, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// Scapy: IPv6(src="2001:db8::1", dst="2001:db8::2")/UDP(sport=1234,
/// dport=53)/b"hello": UDP checksum 0x5b86.
const UDP_HELLO: &str = "60000000000d114020010db800000000000000000000000120010db800000000000000000000000204d20035000d5b8668656c6c6f";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const A1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const A2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

#[test]
fn the_fixed_header_reads_as_scapy_wrote_it() {
    let p = Ipv6Packet::new_checked(&CHAIN[..]).unwrap();
    assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0xb8, 0x12345));
    assert_eq!((p.payload_len(), p.next_header(), p.hop_limit()), (52, next_header::HOP_BY_HOP, 64));
    assert_eq!((p.src_addr(), p.dst_addr()), (A1, A2));
    assert_eq!(p.payload(), &CHAIN[40..]);
}

#[test]
fn every_extension_header_is_walked_to_the_upper_layer() {
    let p = Ipv6Packet::new_checked(&CHAIN[..]).unwrap();
    let c = p.walk().unwrap();
    assert_eq!((c.proto, c.offset, c.headers, c.segments_left), (next_header::TCP, 32, 4, 0));
    assert_eq!(c.fragment, Some(Fragment { offset: 0, more: false, ident: 0x0102_0304 }));
    assert!(c.fragment.unwrap().is_atomic() && !c.is_fragment(), "an atomic fragment is a whole packet (RFC 6946)");
    // The TCP header where the walk says, its checksum right over the
    // pseudo header (upper-layer length 20).
    let tcp = &p.payload()[c.offset..];
    assert_eq!(&tcp[..4], &[0x9c, 0x40, 0x00, 0x50]);
    assert_eq!(checksum::fold(checksum::sum(tcp, pseudo_header(A1, A2, next_header::TCP, 20))), 0xffff);
}

#[test]
fn the_pseudo_header_gives_scapys_udp_checksum() {
    let b = hex(UDP_HELLO);
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    let mut udp = p.payload().to_vec();
    assert_eq!(p.walk().unwrap(), Chain { proto: next_header::UDP, offset: 0, fragment: None, segments_left: 0, headers: 0 });
    udp[6..8].copy_from_slice(&[0, 0]);
    let sum = !checksum::fold(checksum::sum(&udp, pseudo_header(A1, A2, next_header::UDP, udp.len() as u32)));
    assert_eq!(sum, 0x5b86);
}

#[test]
fn a_later_fragment_ends_the_walk_at_its_fragment_header() {
    let p = Ipv6Packet::new_checked(&LATER_FRAGMENT[..]).unwrap();
    let c = p.walk().unwrap();
    assert_eq!((c.proto, c.offset, c.headers), (next_header::UDP, 8, 1));
    assert_eq!(c.fragment, Some(Fragment { offset: 1480, more: true, ident: 0x4242 }));
    assert!(c.is_fragment());
}

#[test]
fn hop_by_hop_options_are_only_taken_first() {
    // The destination options header of CHAIN says hop-by-hop next.
    let mut b = CHAIN;
    b[48] = next_header::HOP_BY_HOP;
    assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().walk(), Err(ChainError::HopByHopNotFirst));
}

#[test]
fn a_chain_past_the_payload_or_repeated_is_refused() {
    // Routing header's length says 256 bytes.
    let mut b = CHAIN;
    b[57] = 31;
    assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().walk(), Err(ChainError::Truncated));
    // The payload length cuts the routing header.
    let mut b = CHAIN;
    b[5] = 20;
    assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().walk(), Err(ChainError::Truncated));
    // Three destination options headers (8 bytes each) before TCP.
    let mut payload = Vec::new();
    for _ in 0..3 {
        payload.extend_from_slice(&[next_header::DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
    }
    payload[2 * 8] = next_header::TCP;
    assert_eq!(walk(next_header::DEST_OPTS, &payload), Err(ChainError::Repeated(next_header::DEST_OPTS)));
    // The longest chain allowed: hop-by-hop, destination options,
    // routing, fragment, AH (16 bytes), destination options: six.
    let chain = [next_header::HOP_BY_HOP, next_header::DEST_OPTS, next_header::ROUTING, next_header::FRAGMENT, next_header::AH, next_header::DEST_OPTS, next_header::TCP];
    let mut bytes = Vec::new();
    for w in chain.windows(2) {
        // AH's length counts 4-byte words minus 2: 2 for 16 bytes.
        let (len, size) = if w[0] == next_header::AH { (2, 16) } else { (0, 8) };
        bytes.extend_from_slice(&[w[1], len]);
        bytes.resize(bytes.len() + size - 2, 0);
    }
    assert_eq!(walk(chain[0], &bytes).map(|c| (c.proto, c.offset, c.headers)), Ok((next_header::TCP, 56, 6)));
}

/// RFC 8200 §4.1: a second Fragment header would let an "atomic" one
/// disguise a fragment as a whole packet; a second Routing header would
/// hide segments; both refused.
#[test]
fn a_repeated_fragment_or_routing_header_is_refused() {
    // A first fragment (offset 0, more follow) then an atomic one.
    let frag = [next_header::FRAGMENT, 0, 0, 1, 0, 0, 0, 7, next_header::TCP, 0, 0, 0, 0, 0, 0, 8];
    assert_eq!(walk(next_header::FRAGMENT, &frag), Err(ChainError::Repeated(next_header::FRAGMENT)));
    let routing = [next_header::ROUTING, 0, 0, 0, 0, 0, 0, 0, next_header::TCP, 0, 0, 2, 0, 0, 0, 0];
    assert_eq!(walk(next_header::ROUTING, &routing), Err(ChainError::Repeated(next_header::ROUTING)));
    // Two destination options headers are allowed.
    let two = [next_header::DEST_OPTS, 0, 1, 4, 0, 0, 0, 0, next_header::TCP, 0, 1, 4, 0, 0, 0, 0];
    assert_eq!(walk(next_header::DEST_OPTS, &two).map(|c| (c.proto, c.offset)), Ok((next_header::TCP, 16)));
}

#[test]
fn routing_headers_report_segments_left_and_unwalked_ones_are_named() {
    let mut b = CHAIN;
    b[59] = 2;
    assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().walk().map(|c| c.segments_left), Ok(2));
    let mut b = CHAIN;
    b[56] = 135;
    assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().walk(), Err(ChainError::NotWalked(135)));
    // ESP and No Next Header end the walk where they are.
    assert_eq!(walk(next_header::ESP, &[0; 16]).map(|c| (c.proto, c.offset)), Ok((next_header::ESP, 0)));
    // AH: (2 + 2) * 4 = 16 bytes, then UDP.
    let mut ah = [0u8; 24];
    ah[0] = next_header::UDP;
    ah[1] = 2;
    assert_eq!(walk(next_header::AH, &ah).map(|c| (c.proto, c.offset)), Ok((next_header::UDP, 16)));
}

#[test]
fn untrusted_buffers_are_checked() {
    assert_eq!(Ipv6Packet::new_checked(&CHAIN[..39]).err(), Some(WireError::Truncated));
    let mut v4 = CHAIN;
    v4[0] = 0x45;
    assert_eq!(Ipv6Packet::new_checked(&v4[..]).err(), Some(WireError::BadVersion));
    assert_eq!(Ipv6Packet::new_checked(&CHAIN[..91]).err(), Some(WireError::BadTotalLength));
    // Ethernet padding after the payload is not payload.
    let mut padded = CHAIN.to_vec();
    padded.extend_from_slice(&[0xee; 6]);
    assert_eq!(Ipv6Packet::new_checked(&padded[..]).unwrap().payload(), &CHAIN[40..]);
    // An ICMPv6 error's quote: cut short, 8 payload bytes at least.
    let quoted = Ipv6Packet::new_embedded(&CHAIN[..48]).unwrap();
    assert_eq!(quoted.payload(), &CHAIN[40..48]);
    assert_eq!(Ipv6Packet::new_embedded(&CHAIN[..47]).err(), Some(WireError::Truncated));
}

#[test]
fn setters_write_their_fields_only() {
    let mut b = CHAIN;
    let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
    p.set_traffic_class(0x2e);
    p.set_flow_label(0xfedcb);
    p.set_hop_limit(3);
    p.set_src_addr(A2);
    p.set_dst_addr(A1);
    p.set_next_header(next_header::TCP);
    p.set_payload_len(20);
    assert_eq!((p.version(), p.traffic_class(), p.flow_label(), p.hop_limit()), (6, 0x2e, 0xfedcb, 3));
    assert_eq!((p.src_addr(), p.dst_addr(), p.next_header(), p.payload_len()), (A2, A1, next_header::TCP, 20));
    assert_eq!(p.payload_mut().len(), 20);
    assert_eq!(&b[40..], &CHAIN[40..], "the payload untouched");
}

proptest! {
    /// Any bytes: the views and the walk return, never panic, and a walk
    /// that succeeds ends inside the payload.
    #[test]
    fn any_bytes_are_refused_or_walked_inside_the_payload(bytes in proptest::collection::vec(any::<u8>(), 0..200), first in any::<u8>()) {
        if let Ok(p) = Ipv6Packet::new_checked(&bytes[..]) {
            if let Ok(c) = p.walk() {
                prop_assert!(c.offset <= p.payload().len());
                prop_assert!(c.headers <= 6, "RFC 8200 §4.1's headers, each as often as allowed");
            }
        }
        let _ = Ipv6Packet::new_embedded(&bytes[..]).map(|p| p.payload().len());
        if let Ok(c) = walk(first, &bytes) {
            prop_assert!(c.offset <= bytes.len());
        }
    }
}
