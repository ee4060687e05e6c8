//! [`fuzz_parse`]: one frame through every view, for the fuzz target
//! (`dataplane/fuzz`) and the random-input tests below.
//!
//! Everything reachable from untrusted bytes is exercised the way the
//! worker will: checked constructors, every getter, checksum verification,
//! and in-place rewrites with incremental checksum updates (TTL decrement,
//! address and port rewrite, ICMP-error quote rewrite). Invariants that
//! must hold for any input are `debug_assert!`ed (on in tests and in
//! cargo-fuzz builds), so the fuzzer finds wrong answers, not only panics.

use super::arp::{ArpPacket, ArpRepr};
use super::checksum::{update16, update32};
use super::ethernet::{parse_l2, EtherType, EthernetFrame};
use super::checksum::{fold, sum};
use super::icmp::{IcmpPacket, IcmpRepr};
use super::icmpv6::{self, Icmpv6Packet};
use super::ipv4::{protocol, Ipv4Packet, Ipv4Repr};
use super::ipv6::{self, next_header, Ipv6Packet};
use super::tcp::{TcpPacket, TcpRepr};
use super::udp::{UdpPacket, UdpRepr};
use core::hint::black_box;
use core::net::{Ipv4Addr, Ipv6Addr};

/// Which layers a walk reached (for tests that check their inputs get
/// somewhere).
pub(crate) mod reached {
    pub const ETHERNET: u32 = 1 << 0;
    pub const VLAN: u32 = 1 << 1;
    pub const ARP: u32 = 1 << 2;
    pub const IPV4: u32 = 1 << 3;
    pub const IPV4_OPTIONS: u32 = 1 << 4;
    pub const FRAGMENT: u32 = 1 << 5;
    pub const TCP: u32 = 1 << 6;
    pub const UDP: u32 = 1 << 7;
    pub const ICMP: u32 = 1 << 8;
    pub const ICMP_ERROR_QUOTE: u32 = 1 << 9;
    pub const GOOD_IPV4_CHECKSUM: u32 = 1 << 10;
    pub const GOOD_L4_CHECKSUM: u32 = 1 << 11;
    pub const IPV6: u32 = 1 << 12;
    /// At least one extension header walked.
    pub const IPV6_CHAIN: u32 = 1 << 13;
    pub const ICMPV6: u32 = 1 << 14;
    /// An ICMPv6 error's quoted packet.
    pub const ICMPV6_QUOTE: u32 = 1 << 15;
}

/// Walks `frame` through every view: Ethernet and one VLAN tag, ARP,
/// IPv4, TCP, UDP, ICMP and the datagram an ICMP error quotes; calls every
/// getter, verifies checksums, and rewrites fields in place (so `frame` is
/// changed). Never panics, whatever the bytes; allocates nothing.
pub fn fuzz_parse(frame: &mut [u8]) {
    black_box(walk(frame));
}

/// A stand-in rewrite target: any address other than `a` will do.
fn other_addr(a: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a).rotate_left(8) ^ 0x0a00_0001)
}

pub(crate) fn walk(frame: &mut [u8]) -> u32 {
    let mut r = 0;
    if let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) {
        r |= reached::ETHERNET;
        let (dst, src) = (eth.dst_addr(), eth.src_addr());
        black_box((dst.is_broadcast(), dst.is_multicast(), eth.ethertype(), eth.payload()));
        // Turn the frame around, as a reply would, and back.
        eth.set_dst_addr(src);
        eth.set_src_addr(dst);
        eth.set_dst_addr(dst);
        eth.set_src_addr(src);
        let t = eth.ethertype();
        eth.set_ethertype(t);
        black_box(eth.payload_mut().len());
    }
    let Ok(l2) = parse_l2(frame) else {
        return r;
    };
    if l2.vlan.is_some() {
        r |= reached::VLAN;
    }
    let Some(l3) = frame.get_mut(l2.l3_offset..) else {
        return r;
    };
    match l2.ethertype {
        EtherType::Arp => r |= walk_arp(l3),
        EtherType::Ipv4 => r |= walk_ipv4(l3),
        EtherType::Ipv6 => r |= walk_ipv6(l3),
        _ => {}
    }
    r
}

fn walk_arp(l3: &mut [u8]) -> u32 {
    let Ok(mut arp) = ArpPacket::new_checked(l3) else {
        return 0;
    };
    black_box((arp.operation(), arp.source_hardware_addr(), arp.target_hardware_addr()));
    black_box((arp.source_protocol_addr(), arp.target_protocol_addr()));
    let repr = ArpRepr::parse(&arp);
    repr.emit(&mut arp);
    debug_assert_eq!(ArpRepr::parse(&arp), repr);
    reached::ARP
}

fn walk_ipv4(l3: &mut [u8]) -> u32 {
    // The lenient constructor must accept whatever the strict one does,
    // given 8 payload bytes.
    let embedded_ok = Ipv4Packet::new_embedded(&*l3).is_ok();
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *l3) else {
        return 0;
    };
    let mut r = reached::IPV4;
    debug_assert!(embedded_ok || ip.payload().len() < 8);
    black_box((ip.version(), ip.header_len(), ip.dscp_ecn(), ip.total_len(), ip.ident()));
    black_box((ip.dont_frag(), ip.more_frags(), ip.frag_offset(), ip.ttl(), ip.checksum()));
    black_box((ip.options(), ip.payload(), Ipv4Repr::parse(&ip)));
    debug_assert_eq!(ip.payload().len(), usize::from(ip.total_len()) - ip.header_len());
    let ok = ip.verify_checksum();
    if ok {
        r |= reached::GOOD_IPV4_CHECKSUM;
    }
    if !ip.options().is_empty() {
        r |= reached::IPV4_OPTIONS;
    }
    if ip.is_fragment() {
        r |= reached::FRAGMENT;
    }
    let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());

    // Only the first fragment carries the transport header.
    if ip.frag_offset() == 0 {
        let payload = ip.payload_mut();
        r |= match proto {
            protocol::TCP => walk_tcp(payload, src, dst),
            protocol::UDP => walk_udp(payload, src, dst),
            protocol::ICMP => walk_icmp(payload),
            _ => 0,
        };
    }

    // Forwarding: TTL decrement, incrementally (RFC 1624; RFC 1812 §5.3.1).
    let ttl = ip.ttl();
    let old = u16::from_be_bytes([ttl, proto]);
    ip.set_ttl(ttl.wrapping_sub(1));
    ip.set_checksum(update16(ip.checksum(), old, u16::from_be_bytes([ip.ttl(), proto])));
    debug_assert!(!ok || ip.verify_checksum());
    // Destination rewrite, incrementally.
    let new_dst = other_addr(dst);
    ip.set_checksum(update32(ip.checksum(), u32::from(dst), u32::from(new_dst)));
    ip.set_dst_addr(new_dst);
    debug_assert!(!ok || ip.verify_checksum());
    // Every setter, with the values it has.
    let (hl, df, mf, off) = (ip.header_len(), ip.dont_frag(), ip.more_frags(), ip.frag_offset());
    ip.set_version_ihl(4, hl);
    ip.set_flags_frag(df, mf, off);
    ip.set_dscp_ecn(ip.dscp_ecn());
    ip.set_total_len(ip.total_len());
    ip.set_ident(ip.ident());
    ip.set_protocol(proto);
    ip.set_src_addr(src);
    let opts = ip.options_mut();
    opts.reverse();
    opts.reverse();
    ip.fill_checksum();
    debug_assert!(ip.verify_checksum());
    // And the Repr, which drops options: still a valid packet.
    let repr = Ipv4Repr::parse(&ip);
    repr.emit(&mut ip);
    debug_assert!(ip.verify_checksum());
    debug_assert_eq!(Ipv4Packet::new_checked(ip.as_bytes()).map(|p| Ipv4Repr::parse(&p)), Ok(repr));
    r
}

fn walk_tcp(seg: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
    let Ok(mut tcp) = TcpPacket::new_checked(seg) else {
        return 0;
    };
    let mut r = reached::TCP;
    black_box((tcp.src_port(), tcp.dst_port(), tcp.seq_number(), tcp.ack_number()));
    black_box((tcp.header_len(), tcp.flags(), tcp.window_len(), tcp.checksum(), tcp.urgent_at()));
    black_box((tcp.options(), tcp.payload(), TcpRepr::parse(&tcp)));
    let ok = tcp.verify_checksum(src, dst);
    if ok {
        r |= reached::GOOD_L4_CHECKSUM;
    }
    // NAT: destination address (in the pseudo header) and port.
    let new_dst = other_addr(dst);
    let (port, new_port) = (tcp.dst_port(), tcp.dst_port().rotate_left(3));
    let c = update32(tcp.checksum(), u32::from(dst), u32::from(new_dst));
    tcp.set_checksum(update16(c, port, new_port));
    tcp.set_dst_port(new_port);
    debug_assert!(!ok || tcp.verify_checksum(src, new_dst));
    // Sequence number rewrite (a SYN proxy's), incrementally.
    let (seq, new_seq) = (tcp.seq_number(), tcp.seq_number().wrapping_add(0x0101_0101));
    tcp.set_checksum(update32(tcp.checksum(), seq, new_seq));
    tcp.set_seq_number(new_seq);
    debug_assert!(!ok || tcp.verify_checksum(src, new_dst));
    let hl = tcp.header_len();
    tcp.set_header_len(hl);
    tcp.set_src_port(tcp.src_port());
    tcp.set_ack_number(tcp.ack_number());
    tcp.set_flags(tcp.flags());
    tcp.set_window_len(tcp.window_len());
    tcp.set_urgent_at(tcp.urgent_at());
    tcp.options_mut().reverse();
    black_box(tcp.payload_mut().len());
    tcp.fill_checksum(src, new_dst);
    debug_assert!(tcp.verify_checksum(src, new_dst));
    let repr = TcpRepr::parse(&tcp);
    repr.emit(&mut tcp, src, dst);
    debug_assert!(tcp.verify_checksum(src, dst));
    r
}

fn walk_udp(dgram: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
    let Ok(mut udp) = UdpPacket::new_checked(dgram) else {
        return 0;
    };
    let mut r = reached::UDP;
    black_box((udp.src_port(), udp.dst_port(), udp.len(), udp.is_empty(), udp.checksum()));
    black_box((udp.payload(), UdpRepr::parse(&udp)));
    let ok = udp.verify_checksum(src, dst);
    if ok && udp.checksum() != 0 {
        r |= reached::GOOD_L4_CHECKSUM;
    }
    // NAT, keeping "no checksum" as it is and a computed 0 as 0xffff.
    let new_dst = other_addr(dst);
    let (port, new_port) = (udp.dst_port(), udp.dst_port().rotate_left(3));
    if udp.checksum() != 0 {
        let c = update32(udp.checksum(), u32::from(dst), u32::from(new_dst));
        let c = update16(c, port, new_port);
        udp.set_checksum(if c == 0 { 0xffff } else { c });
    }
    udp.set_dst_port(new_port);
    debug_assert!(!ok || udp.verify_checksum(src, new_dst));
    udp.set_src_port(udp.src_port());
    udp.set_len(udp.len());
    black_box(udp.payload_mut().len());
    udp.fill_checksum(src, new_dst);
    debug_assert!(udp.checksum() != 0 && udp.verify_checksum(src, new_dst));
    let repr = UdpRepr::parse(&udp);
    repr.emit(&mut udp, src, dst);
    debug_assert!(udp.verify_checksum(src, dst));
    r
}

/// IPv6: the header's fields and setters, the extension-header walk,
/// then TCP or UDP (checksums over the v6 pseudo header, a port rewritten
/// with an incremental update) or ICMPv6.
fn walk_ipv6(l3: &mut [u8]) -> u32 {
    let Ok(mut ip) = Ipv6Packet::new_checked(&mut *l3) else {
        return 0;
    };
    let mut r = reached::IPV6;
    let (tc, fl, hl) = (ip.traffic_class(), ip.flow_label(), ip.hop_limit());
    black_box((ip.version(), ip.payload_len(), ip.next_header()));
    ip.set_traffic_class(tc ^ 0xfc);
    ip.set_hop_limit(hl.wrapping_sub(1));
    ip.set_traffic_class(tc);
    ip.set_flow_label(fl);
    ip.set_hop_limit(hl);
    debug_assert!(ip.version() == 6 && ip.traffic_class() == tc && ip.flow_label() == fl && ip.hop_limit() == hl);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let Ok(chain) = ip.walk() else {
        return r;
    };
    debug_assert!(chain.offset <= ip.payload().len() && chain.headers <= 6);
    if chain.headers > 0 {
        r |= reached::IPV6_CHAIN;
    }
    if chain.is_fragment() {
        return r;
    }
    let Some(l4) = ip.payload_mut().get_mut(chain.offset..) else {
        return r;
    };
    match chain.proto {
        next_header::TCP | next_header::UDP => r | walk_l4_v6(l4, chain.proto, src, dst),
        next_header::ICMPV6 => r | walk_icmpv6(l4, src, dst),
        _ => r,
    }
}

/// TCP or UDP over IPv6: the checksum, and the destination port rewritten
/// with an incremental update that keeps a right checksum right (a UDP
/// checksum of 0 is not one: RFC 8200 §8.1).
fn walk_l4_v6(seg: &mut [u8], proto: u8, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
    let Ok(len) = u32::try_from(seg.len()) else { return 0 };
    let ok = |b: &[u8]| fold(sum(b, ipv6::pseudo_header(src, dst, proto, len))) == 0xffff;
    let before = ok(seg);
    if proto == next_header::TCP {
        let Ok(mut t) = TcpPacket::new_checked(&mut *seg) else { return 0 };
        let (port, new_port) = (t.dst_port(), t.dst_port().rotate_left(3));
        t.set_checksum(update16(t.checksum(), port, new_port));
        t.set_dst_port(new_port);
    } else {
        let Ok(mut u) = UdpPacket::new_checked(&mut *seg) else { return 0 };
        if u.checksum() == 0 {
            return reached::UDP;
        }
        let (port, new_port) = (u.dst_port(), u.dst_port().rotate_left(3));
        u.set_checksum(update16(u.checksum(), port, new_port));
        u.set_dst_port(new_port);
    }
    debug_assert!(!before || ok(seg), "an incremental update broke a right checksum");
    let layer = if proto == next_header::TCP { reached::TCP } else { reached::UDP };
    layer | if before { reached::GOOD_L4_CHECKSUM } else { 0 }
}

/// ICMPv6: every getter, the checksum, Neighbor Discovery's target and
/// options, an error's quoted packet and its chain; refilled, right.
fn walk_icmpv6(msg: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
    let Ok(mut m) = Icmpv6Packet::new_checked(&mut *msg) else {
        return 0;
    };
    let mut r = reached::ICMPV6;
    black_box((m.msg_type(), m.msg_code(), m.echo_ident(), m.echo_seq(), m.pointer(), m.data().len()));
    let _ = black_box((m.nd_target(), m.na_flags(), m.nd_link_addr(icmpv6::option::SOURCE_LL), m.nd_link_addr(icmpv6::option::TARGET_LL)));
    if m.verify_checksum(src, dst) {
        r |= reached::GOOD_L4_CHECKSUM;
    }
    if let Ok(quote) = m.embedded_ipv6() {
        r |= reached::ICMPV6_QUOTE;
        debug_assert!(quote.payload().len() >= 8);
        let _ = black_box((quote.src_addr(), quote.dst_addr(), quote.walk()));
    }
    let mtu = m.mtu();
    m.set_mtu(mtu ^ 0x55);
    m.set_mtu(mtu);
    m.fill_checksum(src, dst);
    debug_assert!(m.verify_checksum(src, dst));
    r
}

fn walk_icmp(msg: &mut [u8]) -> u32 {
    let Ok(mut icmp) = IcmpPacket::new_checked(msg) else {
        return 0;
    };
    let mut r = reached::ICMP;
    black_box((icmp.msg_type(), icmp.msg_code(), icmp.checksum(), icmp.echo_ident()));
    black_box((icmp.echo_seq(), icmp.next_hop_mtu(), icmp.rest_of_header(), icmp.is_error()));
    black_box((icmp.payload(), IcmpRepr::parse(&icmp)));
    let ok = icmp.verify_checksum();
    if ok {
        r |= reached::GOOD_L4_CHECKSUM;
    }
    if let Ok(quote) = icmp.embedded_ipv4() {
        r |= reached::ICMP_ERROR_QUOTE;
        debug_assert!(quote.payload().len() >= 8);
        black_box((quote.version(), quote.header_len(), quote.total_len(), quote.protocol()));
        black_box((quote.src_addr(), quote.dst_addr(), quote.is_fragment(), quote.options()));
        black_box((quote.verify_checksum(), quote.payload()));
        // The quoted transport header: 8 bytes, enough for the ports.
        let l4 = UdpPacket::new_unchecked(quote.payload());
        black_box((l4.src_port(), l4.dst_port(), l4.len(), l4.checksum(), l4.payload()));
        let l4 = TcpPacket::new_unchecked(quote.payload());
        black_box((l4.src_port(), l4.dst_port(), l4.seq_number()));
        // Rarely whole: then every view must cope.
        if let Ok(t) = TcpPacket::new_checked(quote.payload()) {
            black_box((
                t.options(),
                t.payload(),
                t.verify_checksum(quote.src_addr(), quote.dst_addr()),
            ));
        }
        if let Ok(u) = UdpPacket::new_checked(quote.payload()) {
            black_box((u.payload(), u.verify_checksum(quote.src_addr(), quote.dst_addr())));
        }
        if let Ok(i) = IcmpPacket::new_checked(quote.payload()) {
            black_box((
                i.echo_ident(),
                i.is_error(),
                i.embedded_ipv4().is_ok(),
                i.verify_checksum(),
            ));
        }
    }
    // Un-NAT the quote (RFC 5508 §4.2): its source address and port, with
    // the quoted IP checksum and the ICMP checksum (which covers the
    // quote) both updated incrementally. All fields sit at even offsets.
    let mut icmp_check = icmp.checksum();
    if let Ok(mut quote) = icmp.embedded_ipv4_mut() {
        let (old_src, old_check) = (quote.src_addr(), quote.checksum());
        let new_src = other_addr(old_src);
        let quote_ok = quote.verify_checksum();
        let new_check = update32(old_check, u32::from(old_src), u32::from(new_src));
        quote.set_src_addr(new_src);
        quote.set_checksum(new_check);
        debug_assert!(!quote_ok || quote.verify_checksum());
        icmp_check = update32(icmp_check, u32::from(old_src), u32::from(new_src));
        icmp_check = update16(icmp_check, old_check, new_check);
        let mut l4 = UdpPacket::new_unchecked(quote.payload_mut());
        let (port, new_port) = (l4.src_port(), l4.src_port().rotate_left(5));
        l4.set_src_port(new_port);
        icmp_check = update16(icmp_check, port, new_port);
    }
    icmp.set_checksum(icmp_check);
    debug_assert!(!ok || icmp.verify_checksum());
    icmp.set_msg_type(icmp.msg_type());
    icmp.set_msg_code(icmp.msg_code());
    icmp.set_echo_ident(icmp.echo_ident());
    icmp.set_echo_seq(icmp.echo_seq());
    icmp.set_next_hop_mtu(icmp.next_hop_mtu());
    icmp.set_rest_of_header(icmp.rest_of_header());
    black_box(icmp.payload_mut().len());
    icmp.fill_checksum();
    debug_assert!(icmp.verify_checksum());
    let repr = IcmpRepr::parse(&icmp);
    repr.emit(&mut icmp);
    debug_assert!(icmp.verify_checksum());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid frames (the fuzz corpus, from Scapy; see the view tests).
    pub(crate) const SEEDS: &[&[u8]] = &[
        // Ether()/IP(src="192.0.2.1", dst="198.51.100.10", flags="DF")/TCP(SYN, MSS 1460)
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
            0x45, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x4e, 0x8d, 0xc0, 0x00,
            0x02, 0x01, 0xc6, 0x33, 0x64, 0x0a, 0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04,
            0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa, 0xf0, 0x10, 0x60, 0x00, 0x00, 0x02, 0x04,
            0x05, 0xb4,
        ],
        // Ether()/IP()/UDP(sport=5353, dport=53)/b"abcd"
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
            0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x4e, 0x8e, 0xc0, 0x00,
            0x02, 0x01, 0xc6, 0x33, 0x64, 0x0a, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x39, 0xb2,
            0x61, 0x62, 0x63, 0x64,
        ],
        // Ether()/IP()/ICMP(type=8, id=0x1234, seq=1)/b"pingdata"
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
            0x45, 0x00, 0x00, 0x24, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0x4e, 0x9a, 0xc0, 0x00,
            0x02, 0x01, 0xc6, 0x33, 0x64, 0x0a, 0x08, 0x00, 0x2e, 0x37, 0x12, 0x34, 0x00, 0x01,
            0x70, 0x69, 0x6e, 0x67, 0x64, 0x61, 0x74, 0x61,
        ],
        // Ether()/IP(tos=0xc0)/ICMP(type=3, code=3)/<the UDP datagram's first 28 bytes>
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
            0x45, 0xc0, 0x00, 0x38, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0x4d, 0xc6, 0xc6, 0x33,
            0x64, 0x0a, 0xc0, 0x00, 0x02, 0x01, 0x03, 0x03, 0xae, 0x20, 0x00, 0x00, 0x00, 0x00,
            0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x4e, 0x8e, 0xc0, 0x00,
            0x02, 0x01, 0xc6, 0x33, 0x64, 0x0a, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x39, 0xb2,
        ],
        // Ether()/Dot1Q(vlan=100, prio=5)/IP()/UDP(sport=5353, dport=53)/b"abcd"
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00,
            0xa0, 0x64, 0x08, 0x00, 0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
            0x4e, 0x8e, 0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x0a, 0x14, 0xe9, 0x00, 0x35,
            0x00, 0x0c, 0x39, 0xb2, 0x61, 0x62, 0x63, 0x64,
        ],
        // Ether()/IP(ttl=1, id=0x4242, MF, frag=185, tos=0xb8, proto=17, Router Alert)/8 zero bytes
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
            0x46, 0xb8, 0x00, 0x20, 0x42, 0x42, 0x20, 0xb9, 0x01, 0x11, 0xd4, 0xd6, 0xc0, 0x00,
            0x02, 0x01, 0xc6, 0x33, 0x64, 0x0a, 0x94, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
        ],
        // Ether()/ARP(who-has 192.0.2.2 tell 192.0.2.1)
        &[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
            192, 0, 2, 1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 0, 2, 2,
        ],
        // Ether()/IPv6(2001:db8::1 > 2001:db8::2, tc 0xb8)/hop-by-hop/
        // destination options/routing/fragment (atomic)/TCP(SYN)
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd,
            0x6b, 0x81, 0x23, 0x45, 0x00, 0x34, 0x00, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x3c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xff,
            0xff, 0xb3, 0xf5, 0x00, 0x00,
        ],
        // Ether()/IPv6(2001:db8:2::1 > 2001:db8:1::2)/ICMPv6PacketTooBig(mtu=1280)/
        // IPv6(2001:db8:1::2 > 2001:db8:2::11)/TCP(ACK)
        &[
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd,
            0x60, 0x00, 0x00, 0x00, 0x00, 0x44, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00,
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x36, 0xcf, 0x00, 0x00, 0x05, 0x00, 0x60, 0x00, 0x00, 0x00, 0x00, 0x14, 0x06, 0x40, 0x20, 0x01,
            0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x11, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x50, 0x10, 0x20, 0x00, 0x97, 0xba, 0x00, 0x00,
        ],
    ];

    use crate::testkit::Rng;

    /// Offsets of fields worth hitting in an untagged frame: version/IHL,
    /// lengths, flags, protocol, the L4 offset byte, ICMP type, quote.
    const HOT: &[usize] = &[12, 13, 14, 16, 17, 20, 21, 23, 34, 38, 39, 46, 42, 44, 45, 58];

    fn mutate(rng: &mut Rng, buf: &mut Vec<u8>) {
        for _ in 0..=rng.index(4) {
            match rng.index(8) {
                0 if !buf.is_empty() => {
                    let i = rng.index(buf.len());
                    buf[i] = rng.next_u64() as u8;
                }
                1 if !buf.is_empty() => {
                    let i = rng.index(buf.len());
                    buf[i] ^= 1 << rng.index(8);
                }
                2 => {
                    let n = rng.index(buf.len() + 1);
                    buf.truncate(n);
                }
                3 => {
                    for _ in 0..rng.index(40) {
                        buf.push(rng.next_u64() as u8);
                    }
                }
                4 => {
                    let i = HOT[rng.index(HOT.len())];
                    if let Some(b) = buf.get_mut(i) {
                        *b = [0, 1, 4, 5, 6, 0x11, 0x40, 0x45, 0x4f, 0xff][rng.index(10)];
                    }
                }
                5 if buf.len() > 2 => {
                    // A plausible length word somewhere.
                    let i = rng.index(buf.len() - 1);
                    let v = (rng.index(buf.len() + 16) as u16).to_be_bytes();
                    buf[i] = v[0];
                    buf[i + 1] = v[1];
                }
                6 => {
                    // Change the L4 protocol, or the ICMP type to an error.
                    if let Some(b) = buf.get_mut(23) {
                        *b = [1, 6, 17][rng.index(3)];
                    }
                    if let Some(b) = buf.get_mut(34) {
                        *b = [0, 3, 5, 8, 11, 12][rng.index(6)];
                    }
                }
                _ => {
                    // Splice a tail of another seed in.
                    let other = SEEDS[rng.index(SEEDS.len())];
                    let from = rng.index(other.len());
                    let at = rng.index(buf.len() + 1);
                    buf.truncate(at);
                    buf.extend_from_slice(&other[from..]);
                }
            }
        }
    }

    #[test]
    fn seeds_reach_their_layers() {
        use reached::*;
        let want = [
            IPV4 | TCP | GOOD_IPV4_CHECKSUM | GOOD_L4_CHECKSUM,
            IPV4 | UDP | GOOD_IPV4_CHECKSUM | GOOD_L4_CHECKSUM,
            IPV4 | ICMP | GOOD_IPV4_CHECKSUM | GOOD_L4_CHECKSUM,
            IPV4 | ICMP | ICMP_ERROR_QUOTE | GOOD_IPV4_CHECKSUM | GOOD_L4_CHECKSUM,
            VLAN | IPV4 | UDP | GOOD_IPV4_CHECKSUM | GOOD_L4_CHECKSUM,
            IPV4 | IPV4_OPTIONS | FRAGMENT | GOOD_IPV4_CHECKSUM,
            ARP,
            IPV6 | IPV6_CHAIN | TCP | GOOD_L4_CHECKSUM,
            IPV6 | ICMPV6 | ICMPV6_QUOTE | GOOD_L4_CHECKSUM,
        ];
        for (seed, want) in SEEDS.iter().zip(want) {
            let mut f = seed.to_vec();
            assert_eq!(walk(&mut f), ETHERNET | want, "{seed:02x?}");
        }
    }

    #[test]
    fn fuzz_corpus_reaches_its_layers() {
        use reached::*;
        macro_rules! corpus {
            ($name:literal) => {
                include_bytes!(concat!("../../fuzz/corpus/parse_frame/", $name)).to_vec()
            };
        }
        let cases = [
            (corpus!("tcp_syn"), TCP | GOOD_L4_CHECKSUM),
            (corpus!("qinq_tcp_syn"), VLAN | TCP | GOOD_L4_CHECKSUM),
            (corpus!("udp"), UDP | GOOD_L4_CHECKSUM),
            (corpus!("vlan_udp"), VLAN | UDP | GOOD_L4_CHECKSUM),
            (corpus!("icmp_echo"), ICMP | GOOD_L4_CHECKSUM),
            (corpus!("icmp_port_unreachable"), ICMP | ICMP_ERROR_QUOTE | GOOD_L4_CHECKSUM),
            (corpus!("icmp_frag_needed"), ICMP | ICMP_ERROR_QUOTE | GOOD_L4_CHECKSUM),
            (corpus!("ipv4_options_fragment"), IPV4_OPTIONS | FRAGMENT),
        ];
        for (mut f, want) in cases {
            assert_eq!(walk(&mut f), ETHERNET | IPV4 | GOOD_IPV4_CHECKSUM | want);
        }
        assert_eq!(walk(&mut corpus!("arp_request")), ETHERNET | ARP);
        assert_eq!(walk(&mut corpus!("ipv6_chain_tcp_syn")), ETHERNET | IPV6 | IPV6_CHAIN | TCP | GOOD_L4_CHECKSUM);
        assert_eq!(walk(&mut corpus!("icmpv6_packet_too_big")), ETHERNET | IPV6 | ICMPV6 | ICMPV6_QUOTE | GOOD_L4_CHECKSUM);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a hundred thousand mutated frames: hours under Miri; the corpus and edge-frame tests cover the same code")]
    fn fuzz_parse_never_panics_on_mutated_frames() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut seen = [0u32; 16];
        let mut buf = Vec::with_capacity(2048);
        for i in 0..20_000 {
            buf.clear();
            if i % 10 == 0 {
                // Pure noise, any length up to a jumbo-ish frame.
                for _ in 0..rng.index(200) {
                    buf.push(rng.next_u64() as u8);
                }
            } else {
                buf.extend_from_slice(SEEDS[rng.index(SEEDS.len())]);
                mutate(&mut rng, &mut buf);
            }
            let r = walk(&mut buf);
            for (bit, n) in seen.iter_mut().enumerate() {
                *n += (r >> bit) & 1;
            }
            fuzz_parse(&mut buf);
        }
        // The mutations must reach every layer often, not just Ethernet.
        for (bit, n) in seen.iter().enumerate() {
            assert!(*n >= 50, "layer bit {bit} reached only {n} times: {seen:?}");
        }
    }

    #[test]
    fn fuzz_parse_never_panics_on_short_and_edge_frames() {
        // Every prefix of every seed, and every seed with each byte set to
        // 0x00 and 0xff.
        for seed in SEEDS {
            for n in 0..=seed.len() {
                let mut f = seed[..n].to_vec();
                fuzz_parse(&mut f);
            }
            for i in 0..seed.len() {
                for v in [0x00, 0xff] {
                    let mut f = seed.to_vec();
                    f[i] = v;
                    fuzz_parse(&mut f);
                }
            }
        }
    }
}
