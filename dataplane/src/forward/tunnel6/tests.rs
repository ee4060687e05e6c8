use super::*;
use crate::testkit::{ipv6_frame, tcp_header};
use crate::wire::icmpv6::Icmpv6Packet;
use crate::wire::ipv6::Ipv6Packet;

const CLIENT: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0010;
const VIP: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0100;
const SELF: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_0001;
const SERVER: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_0011;
const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

/// A client's SYN, traffic class 0xb8, flow label 0x12345.
fn inner() -> Vec<u8> {
    let mut f = ipv6_frame(EthernetAddress([2, 0, 0, 0, 0, 9]), MAC, CLIENT, VIP, next_header::TCP, 63, &tcp_header(41000, 80, 0x02, 64240));
    f[14] = 0x6b;
    f[15] = 0x81;
    f[16..18].copy_from_slice(&[0x23, 0x45]);
    f[ETH_LEN..].to_vec()
}

fn outer(kind: TunnelKind) -> Outer6 {
    Outer6 { kind, src: SELF.to_be_bytes(), dst: SERVER.to_be_bytes(), hash: 0xdead_beef, dport: 6080 }
}

#[test]
fn each_kind_wraps_the_inner_packet_untouched_in_an_outer_ipv6_header() {
    let inner = inner();
    for (kind, nh, tail_len) in [(TunnelKind::Ipip, next_header::IPV6, 0), (TunnelKind::Gre, next_header::GRE, 4), (TunnelKind::Gue, next_header::UDP, 8)] {
        let mut f = vec![0xaau8; ETH_LEN + kind.overhead6()];
        f[..12].copy_from_slice(&[1; 12]);
        f.extend_from_slice(&inner);
        let len = encapsulate6(&mut f, inner.len(), &outer(kind)).unwrap();
        assert_eq!(len, f.len());
        assert_eq!(&f[..12], &[1; 12], "{kind:?}: MACs are the caller's");
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let ip = Ipv6Packet::new_checked(&f[ETH_LEN..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.next_header(), nh, "{kind:?}");
        assert_eq!(ip.traffic_class(), 0xb8, "{kind:?}: the inner traffic class (RFC 2473 §6.5)");
        assert_eq!(ip.flow_label(), 0xdead_beef & 0xf_ffff, "{kind:?}: the flow's hash in the label");
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(usize::from(ip.payload_len()), tail_len + inner.len());
        assert_eq!((u128::from(ip.src_addr()), u128::from(ip.dst_addr())), (SELF, SERVER));
        assert_eq!(&f[ETH_LEN + kind.overhead6()..], &inner[..], "{kind:?}: the inner packet byte for byte");
        let t = &f[ETH_LEN + 40..ETH_LEN + kind.overhead6()];
        match kind {
            TunnelKind::Ipip => {}
            TunnelKind::Gre => assert_eq!(t, &[0, 0, 0x86, 0xdd]),
            TunnelKind::Gue => {
                let sport = u16::from_be_bytes([t[0], t[1]]);
                assert!(sport >= 0xc000, "an ephemeral source port: {sport}");
                assert_eq!(u16::from_be_bytes([t[2], t[3]]), 6080);
                assert_eq!(usize::from(u16::from_be_bytes([t[4], t[5]])), 8 + inner.len());
                assert_ne!(&t[6..8], &[0, 0], "a UDP checksum over IPv6 (RFC 8200 §8.1)");
                let ph = pseudo_header(SELF.into(), SERVER.into(), next_header::UDP, (8 + inner.len()) as u32);
                assert_eq!(!checksum::fold(checksum::sum(&f[ETH_LEN + 40..], ph)), 0, "the UDP checksum verifies");
            }
        }
    }
}

#[test]
fn a_frame_too_short_is_left_untouched() {
    let inner = inner();
    let mut f = vec![0u8; ETH_LEN + 40 + inner.len() - 1];
    let before = f.clone();
    assert_eq!(encapsulate6(&mut f, inner.len(), &outer(TunnelKind::Ipip)), None);
    assert_eq!(f, before);
}

#[test]
fn packet_too_big_goes_back_from_the_vip_with_the_mtu_and_a_quote_within_1280_bytes() {
    for size in [1400usize, 9000] {
        let payload = vec![0x5a; size - 40 - 20];
        let mut seg = tcp_header(41000, 80, 0x10, 64240);
        seg.extend_from_slice(&payload);
        let client_mac = EthernetAddress([2, 0, 0, 0, 0, 9]);
        let mut f = ipv6_frame(client_mac, MAC, CLIENT, VIP, next_header::TCP, 63, &seg);
        let original = f[ETH_LEN..].to_vec();
        let len = build_packet_too_big6(&mut f, ETH_LEN, size, 1460, MAC).unwrap();
        assert_eq!(len, packet_too_big6_len(ETH_LEN, size));
        assert_eq!(len - ETH_LEN, MIN_MTU, "{size}: as long as the minimum MTU allows (RFC 4443 §2.4 (c))");
        let f = &f[..len];
        assert_eq!((&f[0..6], &f[6..12]), (&client_mac.0[..], &MAC.0[..]), "back to the client from the port");
        let ip = Ipv6Packet::new_checked(&f[ETH_LEN..]).unwrap();
        assert_eq!((u128::from(ip.src_addr()), u128::from(ip.dst_addr())), (VIP, CLIENT));
        assert_eq!(ip.next_header(), next_header::ICMPV6);
        assert_eq!(usize::from(ip.payload_len()), len - ETH_LEN - 40);
        let m = Icmpv6Packet::new_checked(&f[ETH_LEN + 40..]).unwrap();
        assert_eq!((m.msg_type(), m.msg_code(), m.mtu()), (2, 0, 1460));
        assert!(m.verify_checksum(VIP.into(), CLIENT.into()));
        assert_eq!(&f[ETH_LEN + 48..], &original[..MIN_MTU - 48], "the packet quoted from its start");
    }
}

#[test]
fn a_packet_too_short_for_its_quote_gets_no_answer() {
    let mut f = vec![0u8; ETH_LEN + 39];
    assert_eq!(build_packet_too_big6(&mut f, ETH_LEN, 39, 1280, MAC), None);
}
