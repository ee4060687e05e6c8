use super::*;
use crate::testkit::{checksums_ok, ipv4_frame, ipv6_frame, tcp_header, udp_datagram};
use crate::wire::ethernet::EthernetAddress;
use crate::wire::ipv4::Ipv4Packet;

const CLIENT6: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0010;
const VIP6: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0100;
const LOCAL4: u32 = 0xc633_6401; // 198.51.100.1
const SERVER4: u32 = 0xc633_640b; // 198.51.100.11
const A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

/// The TCP/UDP checksum of an IPv6 frame at 14 (no extension headers).
fn l4_ok6(f: &[u8]) -> bool {
    let a = |at: usize| u128::from_be_bytes(f[at..at + 16].try_into().unwrap());
    let ps = pseudo_header(a(22).into(), a(38).into(), f[20], (f.len() - 54) as u32);
    checksum::fold(checksum::sum(&f[54..], ps)) == 0xffff
}

fn v6_segment(proto: u8, payload: &[u8]) -> Vec<u8> {
    let l4 = if proto == protocol::TCP {
        let mut t = tcp_header(41000, 80, 0x18, 5000);
        t.extend_from_slice(payload);
        t
    } else {
        udp_datagram(41000, 80, payload)
    };
    let mut f = ipv6_frame(A, B, CLIENT6, VIP6, proto, 64, &l4);
    f[14] = 0x6b; // traffic class 0xb8
    f[15] = 0x80;
    f
}

#[test]
fn ipv6_becomes_ipv4_with_right_checksums_and_back() {
    for proto in [protocol::TCP, protocol::UDP] {
        let sent = v6_segment(proto, b"hello, translated world");
        let mut f = sent.clone();
        let n = f.len() - 14;
        v6_to_v4(&mut f, 14, n, (LOCAL4, 2000), (SERVER4, 8080)).unwrap();
        let f4 = f[DELTA..].to_vec();
        assert_eq!(&f4[..12], &sent[..12], "MACs kept");
        assert_eq!(&f4[12..14], &[8, 0]);
        let ip = Ipv4Packet::new_checked(&f4[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((u32::from(ip.src_addr()), u32::from(ip.dst_addr())), (LOCAL4, SERVER4));
        assert_eq!((ip.protocol(), ip.ttl(), ip.dscp_ecn()), (proto, 63, 0xb8), "TTL from the hop limit less one, TOS from the traffic class");
        assert_eq!(usize::from(ip.total_len()), sent.len() - 14 - DELTA);
        assert_eq!(f4[20], 0x40, "DF");
        assert!(checksums_ok(&f4), "{proto}: the L4 checksum is right for IPv4");
        assert_eq!((get16(&f4, 34), get16(&f4, 36)), (2000, 8080));
        let hdr = if proto == protocol::TCP { 20 } else { 8 };
        assert_eq!(&f4[34 + hdr..], &sent[54 + hdr..], "the payload untouched");
        // Back: the server's answer, IPv4 to IPv6.
        let mut back = vec![0u8; DELTA];
        back.extend_from_slice(&f4);
        v4_to_v6(&mut back, 14, f4.len() - 14, (VIP6, 80), (CLIENT6, 41000)).unwrap();
        assert_eq!(&back[12..14], &[0x86, 0xdd]);
        assert_eq!(back[20], proto);
        assert_eq!(back[21], 62, "hop limit from TTL less one");
        assert_eq!((back[14], back[15] >> 4), (0x6b, 0x8), "traffic class from TOS");
        assert!(l4_ok6(&back), "{proto}: the L4 checksum is right for IPv6");
        assert_eq!(&back[22..54], &[VIP6.to_be_bytes(), CLIENT6.to_be_bytes()].concat()[..]);
    }
}

#[test]
fn ipv4_udp_without_a_checksum_gets_one_over_ipv6() {
    let mut f = ipv4_frame(A, B, [198, 51, 100, 11], [198, 51, 100, 1], protocol::UDP, &udp_datagram(8080, 2000, b"no checksum"), false);
    assert_eq!(&f[40..42], &[0, 0]);
    let len = f.len() - 14;
    let mut g = vec![0u8; DELTA];
    g.append(&mut f);
    v4_to_v6(&mut g, 14, len, (VIP6, 80), (CLIENT6, 41000)).unwrap();
    assert_ne!(&g[60..62], &[0, 0]);
    assert!(l4_ok6(&g));
}

#[test]
fn mapped_addresses_round_trip() {
    assert_eq!(unmapped(mapped(SERVER4)), Some(SERVER4));
    assert_eq!(unmapped(VIP6), None);
    assert_eq!(mapped(0xc000_0201), 0xffff_c000_0201);
}

#[test]
fn a_frame_shorter_than_its_headers_is_left_alone() {
    let mut f = vec![0u8; 14 + 39];
    assert_eq!(v6_to_v4(&mut f, 14, 39, (LOCAL4, 1), (SERVER4, 2)), None);
    let mut g = vec![0u8; 14 + 19];
    assert_eq!(v4_to_v6(&mut g, 14, 19, (VIP6, 1), (CLIENT6, 2)), None);
}

/// A router's fragmentation needed about the translated IPv4 packet
/// (local -> server) becomes Packet Too Big from the VIP to the client,
/// quoting the packet as the client sent it.
#[test]
fn fragmentation_needed_becomes_packet_too_big_quoting_the_ipv6_packet() {
    let sent = v6_segment(protocol::TCP, &[0x5a; 1400]);
    let mut f = sent.clone();
    let n = f.len() - 14;
    v6_to_v4(&mut f, 14, n, (LOCAL4, 2000), (SERVER4, 80)).unwrap();
    let out4 = f[DELTA..].to_vec();
    // The router's error: from 198.51.100.254 to the local address,
    // quoting the header and 520 bytes (as Linux quotes up to 576).
    let mut icmp = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&out4[14..14 + 20 + 520]);
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let err = ipv4_frame(B, A, [198, 51, 100, 254], [198, 51, 100, 1], 1, &icmp, false);
    let grow = ptb_growth(20, 20).unwrap();
    let mut g = vec![0u8; grow];
    g.extend_from_slice(&err);
    let addrs = ErrorAddrs { outer: (VIP6, CLIENT6), quoted_src: (CLIENT6, 41000), quoted_dst: (VIP6, 80) };
    let len = ptb_from_frag_needed(&mut g, 14, (20, 20), 520, 1400 + 20, &addrs).unwrap();
    let g = &g[..len];
    assert_eq!(len, 14 + 88 + 520);
    assert_eq!(&g[..12], &err[..12], "the MACs as they were (the caller sets them)");
    assert_eq!(&g[12..14], &[0x86, 0xdd]);
    let m = crate::wire::icmpv6::Icmpv6Packet::new_checked(&g[54..]).unwrap();
    assert_eq!((m.msg_type(), m.msg_code(), m.mtu()), (2, 0, 1420));
    assert!(m.verify_checksum(VIP6.into(), CLIENT6.into()));
    assert_eq!(&g[22..54], &[VIP6.to_be_bytes(), CLIENT6.to_be_bytes()].concat()[..]);
    // The quote: the client's IPv6 header and segment as it sent them.
    assert_eq!(&g[62..62 + 4], &sent[14..18], "version and traffic class");
    assert_eq!(&g[62 + 4..62 + 7], &sent[18..21], "payload length, next header");
    assert_eq!(g[62 + 7], sent[21] - 1, "the hop limit the packet had where it met the error");
    assert_eq!(&g[62 + 8..62 + 40], &sent[22..54], "the addresses");
    assert_eq!(&g[102..102 + 520], &sent[54..54 + 520], "the segment, its checksum back to the client's");
}

#[test]
fn a_long_quote_is_cut_to_the_minimum_mtu() {
    let mut g = vec![0u8; 60 + 14 + 28 + 20 + 1400];
    g[60 + 14 + 28 + 9] = protocol::UDP;
    let addrs = ErrorAddrs { outer: (VIP6, CLIENT6), quoted_src: (CLIENT6, 1), quoted_dst: (VIP6, 2) };
    let len = ptb_from_frag_needed(&mut g, 14, (20, 20), 1400, 1280, &addrs).unwrap();
    assert_eq!(len - 14, 1280);
}

/// The reverse: an IPv6 router's Packet Too Big about the translated IPv6
/// packet (local -> server) becomes fragmentation needed from the IPv4
/// VIP to the IPv4 client, quoting the client's IPv4 packet.
#[test]
fn packet_too_big_becomes_fragmentation_needed_quoting_the_ipv4_packet() {
    const LOCAL6: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_0001;
    const SERVER6: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_0011;
    let mut seg = tcp_header(41000, 80, 0x10, 5000);
    seg.extend_from_slice(&[0x5a; 1400]);
    let sent = ipv4_frame(A, B, [192, 0, 2, 10], [192, 0, 2, 100], protocol::TCP, &seg, true);
    let mut f = vec![0u8; DELTA];
    f.extend_from_slice(&sent);
    let n = sent.len() - 14;
    v4_to_v6(&mut f, 14, n, (LOCAL6, 2000), (SERVER6, 8080)).unwrap();
    // The router's error quotes 1232 bytes of it.
    let mut m = vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x00];
    m.extend_from_slice(&f[14..14 + 1232]);
    let router: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_00fe;
    let err = ipv6_frame(B, A, router, LOCAL6, 58, 64, &m);
    let mut g = err.clone();
    let a = ErrorAddrs4 { outer: (0xc000_0264, 0xc000_020a), quoted_src: (0xc000_020a, 41000), quoted_dst: (0xc000_0264, 80) };
    let len = frag_needed_from_ptb(&mut g, 14, 1232 - 40, 1280 - 20, &a).unwrap();
    let g = &g[PTB_SHRINK..PTB_SHRINK + len];
    assert_eq!(len, 14 + 48 + 528, "within 576 bytes");
    assert_eq!(&g[..12], &err[..12]);
    assert_eq!(&g[12..14], &[8, 0]);
    let ip = Ipv4Packet::new_checked(&g[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.protocol(), usize::from(ip.total_len())), (1, len - 14));
    assert_eq!((&g[26..30], &g[30..34]), (&[192, 0, 2, 100][..], &[192, 0, 2, 10][..]), "from the VIP to the client");
    assert_eq!((g[34], g[35], get16(g, 40)), (3, 4, 1260), "fragmentation needed, the MTU");
    assert_eq!(checksum::checksum(&g[34..]), 0, "ICMP checksum");
    let q = Ipv4Packet::new_unchecked(&g[42..62]);
    assert!(q.verify_checksum());
    assert_eq!(&g[42 + 12..42 + 20], &sent[26..34], "the client's addresses");
    assert_eq!(&g[62..62 + 4], &sent[34..38], "its ports");
    assert_eq!(&g[62 + 16..62 + 18], &sent[50..52], "and its checksum as it sent it");
}

#[test]
fn headers_with_options_longer_than_ipv6_s_give_no_growth() {
    assert_eq!(ptb_growth(20, 20), Some(40));
    assert_eq!(ptb_growth(60, 20), Some(0));
    assert_eq!(ptb_growth(60, 24), None);
    assert_eq!(ptb_growth(60, 60), None);
    let mut g = vec![0u8; 300];
    let a = ErrorAddrs { outer: (VIP6, CLIENT6), quoted_src: (CLIENT6, 1), quoted_dst: (VIP6, 2) };
    assert_eq!(ptb_from_frag_needed(&mut g, 14, (60, 24), 8, 1280, &a), None);
}
