use super::*;
use proptest::prelude::*;

/// Scapy: IPv6(src="2001:db8:1::10", dst="ff02::1:ff00:2", hlim=255)/
/// ICMPv6ND_NS(tgt="2001:db8:1::2")/ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:10")
const NS: [u8; 72] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0xff, 0x02, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x02, 0x87, 0x00, 0x1c, 0x07, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// Scapy: IPv6(src="2001:db8:1::2", dst="2001:db8:1::10", hlim=255)/
/// ICMPv6ND_NA(tgt="2001:db8:1::2", R=0, S=1, O=1)/
/// ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:02")
const NA: [u8; 72] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x88, 0x00, 0x8a, 0x5f, 0x60, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
];

/// Scapy: IPv6(src="2001:db8:2::1", dst="2001:db8:1::2")/
/// ICMPv6PacketTooBig(mtu=1280)/IPv6(src="2001:db8:1::2",
/// dst="2001:db8:2::11")/TCP(sport=40000, dport=80, flags="A", seq=1, ack=1)
const PTB: [u8; 108] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x44, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x36, 0xcf, 0x00, 0x00, 0x05, 0x00, 0x60, 0x00, 0x00, 0x00, 0x00, 0x14, 0x06, 0x40, 0x20, 0x01,
    0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x11, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x50, 0x10, 0x20, 0x00, 0x97, 0xba, 0x00, 0x00,
];

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn a_neighbor_solicitation_reads_as_scapy_wrote_it() {
    let ip = Ipv6Packet::new_checked(&NS[..]).unwrap();
    assert_eq!(ip.hop_limit(), ND_HOP_LIMIT);
    let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((m.msg_type(), m.msg_code(), m.is_error()), (kind::NEIGHBOR_SOLICIT, 0, false));
    assert!(m.verify_checksum(ip.src_addr(), ip.dst_addr()));
    assert!(!m.verify_checksum(ip.src_addr(), Ipv6Addr::LOCALHOST), "the pseudo header counts");
    assert_eq!(m.nd_target(), a("2001:db8:1::2"));
    assert_eq!(m.nd_link_addr(option::SOURCE_LL), Ok(Some(EthernetAddress([2, 0, 0, 0, 0, 0x10]))));
    assert_eq!(m.nd_link_addr(option::TARGET_LL), Ok(None));
    assert_eq!(solicited_node(m.nd_target()), ip.dst_addr(), "sent to the target's solicited-node group");
    assert_eq!(multicast_mac(ip.dst_addr()), EthernetAddress([0x33, 0x33, 0xff, 0, 0, 2]));
}

#[test]
fn advertisements_and_solicitations_are_written_as_scapy_writes_them() {
    let (box_ip, client) = (a("2001:db8:1::2"), a("2001:db8:1::10"));
    let mut buf = [0u8; 64];
    let n = write_neighbor_advert(&mut buf, box_ip, EthernetAddress([2, 0, 0, 0, 0, 2]), NA_SOLICITED | NA_OVERRIDE, box_ip, client);
    assert_eq!(&buf[..n], &NA[40..]);
    let m = Icmpv6Packet::new_checked(&buf[..n]).unwrap();
    assert_eq!(m.na_flags(), NA_SOLICITED | NA_OVERRIDE);
    let n = write_neighbor_solicit(&mut buf, box_ip, EthernetAddress([2, 0, 0, 0, 0, 0x10]), client, solicited_node(box_ip));
    assert_eq!(&buf[..n], &NS[40..]);
    assert_eq!(write_neighbor_advert(&mut buf[..31], box_ip, EthernetAddress([2; 6]), 0, box_ip, client), 0, "no room: nothing");
}

#[test]
fn bad_options_are_refused() {
    let mut ns = NS;
    ns[65] = 0;
    let m = Icmpv6Packet::new_checked(&ns[40..]).unwrap();
    assert_eq!(m.nd_link_addr(option::SOURCE_LL), Err(WireError::BadLength), "RFC 4861 §4.6: a zero-length option");
    let mut ns = NS;
    ns[65] = 2;
    let m = Icmpv6Packet::new_checked(&ns[40..]).unwrap();
    assert_eq!(m.nd_link_addr(option::SOURCE_LL), Err(WireError::BadLength), "past the message");
    let m = Icmpv6Packet::new_checked(&NS[40..70]).unwrap();
    assert_eq!(m.nd_link_addr(option::SOURCE_LL), Err(WireError::BadLength), "an option cut short");
}

#[test]
fn packet_too_big_quotes_the_packet_and_carries_the_mtu() {
    let ip = Ipv6Packet::new_checked(&PTB[..]).unwrap();
    let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(m.verify_checksum(ip.src_addr(), ip.dst_addr()));
    assert_eq!((m.msg_type(), m.mtu(), m.is_error()), (kind::PACKET_TOO_BIG, 1280, true));
    let quoted = m.embedded_ipv6().unwrap();
    assert_eq!((quoted.src_addr(), quoted.dst_addr()), (a("2001:db8:1::2"), a("2001:db8:2::11")));
    let c = quoted.walk().unwrap();
    assert_eq!((c.proto, &quoted.payload()[c.offset..c.offset + 4]), (ipv6::next_header::TCP, &[0x9c, 0x40, 0x00, 0x50][..]));
    // Rewritten (the MTU lowered) and refilled: still right.
    let mut b = ip.payload().to_vec();
    let mut w = Icmpv6Packet::new_unchecked(&mut b[..]);
    w.set_mtu(1232);
    w.fill_checksum(ip.src_addr(), ip.dst_addr());
    assert!(w.verify_checksum(ip.src_addr(), ip.dst_addr()) && w.mtu() == 1232);
    // An echo is no error: nothing embedded.
    let mut echo = [0u8; 16];
    echo[0] = kind::ECHO_REQUEST;
    assert_eq!(Icmpv6Packet::new_checked(&echo[..]).unwrap().embedded_ipv6().err(), Some(WireError::Unsupported));
    assert_eq!(Icmpv6Packet::new_checked(&echo[..7]).err(), Some(WireError::Truncated));
}

proptest! {
    /// Any bytes: every reader returns, and an options walk that succeeds
    /// found an address only inside the message.
    #[test]
    fn any_message_is_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        if let Ok(m) = Icmpv6Packet::new_checked(&bytes[..]) {
            let _ = (m.msg_type(), m.mtu(), m.data().len(), m.nd_target(), m.na_flags(), m.embedded_ipv6().is_ok());
            let _ = m.verify_checksum(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
            let _ = m.nd_link_addr(option::SOURCE_LL);
        }
    }
}
