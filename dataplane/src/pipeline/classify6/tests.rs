//! IPv6 frames at the pipeline's door: each malformed or unserved kind
//! dropped under its name, Neighbor Discovery and ICMPv6 for the box
//! punted in their classes, an NS flood policed.

use super::super::police::punt_class;
use super::super::tests::{pkt, snapshot, worker_on, Io, CLIENT_MAC, IN, IN_MAC, OUT, OUT_MAC};
use super::super::{Verdict, Worker, WorkerConfig, DEFAULT_PUNT_RATES};
use crate::state::counters::{DropReason, PuntClass};
use crate::state::neighbor::Neighbors;
use crate::state::rcu::rcu;
use crate::state::snapshot::{PortView6, Snapshot};
use crate::testkit::ipv6_frame;
use crate::wire::icmpv6::Icmpv6Packet;
use crate::wire::ipv6::next_header as nh;
use crate::wire::tcp::flags as tcpf;
use std::sync::Arc;

const SELF6: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0002;
const CLIENT6: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0010;
const ELSEWHERE: u128 = 0x2001_0db8_0009_0000_0000_0000_0000_0001;
/// ff02::1:ff00:2, the solicited-node group of SELF6.
const SOLICITED_SELF: u128 = 0xff02_0000_0000_0000_0000_0001_ff00_0002;

/// The pipeline's fixture with IPv6 on the client-side link.
fn snapshot6() -> Snapshot {
    let mut s = snapshot();
    if let Some(Some(p)) = s.ports.get_mut(OUT as usize) {
        p.v6 = PortView6::new(SELF6, 64, OUT_MAC);
    }
    s.index();
    s
}

fn link_local_out() -> u128 {
    crate::state::snapshot::link_local(OUT_MAC)
}

fn worker6() -> Worker {
    worker_on(snapshot6(), 64, 0, 1, true)
}

/// An NS for `target` (RFC 4861 §4.3) with a source link-layer option.
fn ns(target: u128) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.to_be_bytes());
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&CLIENT_MAC.0);
    m
}

fn echo_request() -> Vec<u8> {
    vec![128, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g']
}

fn v6(src: u128, dst: u128, next: u8, hops: u8, payload: &[u8]) -> Vec<u8> {
    ipv6_frame(CLIENT_MAC, OUT_MAC, src, dst, next, hops, payload)
}

fn verdict(w: &mut Worker, mut f: Vec<u8>, link: u16) -> Verdict {
    w.process(&mut f, link, false)
}

#[test]
fn neighbor_discovery_for_the_link_is_punted_the_rest_refused() {
    let mut w = worker6();
    let ns_self = v6(CLIENT6, SOLICITED_SELF, nh::ICMPV6, 255, &ns(SELF6));
    assert_eq!(verdict(&mut w, ns_self.clone(), OUT), Verdict::Punt, "NS to the self address's solicited-node group");
    assert_eq!(punt_class(&snapshot6(), &ns_self, OUT), Ok(PuntClass::Nd));
    assert_eq!(verdict(&mut w, v6(CLIENT6, SELF6, nh::ICMPV6, 255, &ns(SELF6)), OUT), Verdict::Punt, "unicast NS (unreachability detection)");
    let ll = link_local_out();
    let ll_group = 0xff02_0000_0000_0000_0000_0001_ff00_0000 | (ll & 0x00ff_ffff);
    assert_eq!(verdict(&mut w, v6(CLIENT6, ll_group, nh::ICMPV6, 255, &ns(ll)), OUT), Verdict::Punt, "NS for the link-local address");
    // RFC 4861 §7.1.1: hop limit 255 only (an off-link sender cannot set
    // it), code 0.
    assert_eq!(verdict(&mut w, v6(CLIENT6, SOLICITED_SELF, nh::ICMPV6, 254, &ns(SELF6)), OUT), Verdict::Drop(DropReason::NdInvalid));
    let mut coded = ns(SELF6);
    coded[1] = 1;
    assert_eq!(verdict(&mut w, v6(CLIENT6, SOLICITED_SELF, nh::ICMPV6, 255, &coded), OUT), Verdict::Drop(DropReason::NdInvalid));
    // The group of an address the box does not have, and the right
    // group on a link without IPv6.
    let other_group = 0xff02_0000_0000_0000_0000_0001_ff12_3456;
    assert_eq!(verdict(&mut w, v6(CLIENT6, other_group, nh::ICMPV6, 255, &ns(ELSEWHERE)), OUT), Verdict::Drop(DropReason::NdNotOurs));
    let mut inside = ipv6_frame(CLIENT_MAC, IN_MAC, CLIENT6, SOLICITED_SELF, nh::ICMPV6, 255, &ns(SELF6));
    assert_eq!(w.process(&mut inside, IN, false), Verdict::Drop(DropReason::NdNotOurs));
    // Unsolicited adverts to all-nodes are heard; router messages are not.
    let mut na = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    na.extend_from_slice(&CLIENT6.to_be_bytes());
    assert_eq!(verdict(&mut w, v6(CLIENT6, 0xff02 << 112 | 1, nh::ICMPV6, 255, &na), OUT), Verdict::Punt);
    let ra = [134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(verdict(&mut w, v6(ll, 0xff02 << 112 | 1, nh::ICMPV6, 255, &ra), OUT), Verdict::Drop(DropReason::Icmpv6Ignored));
}

#[test]
fn echo_and_errors_to_the_box_are_punted() {
    let mut w = worker6();
    let echo = v6(CLIENT6, SELF6, nh::ICMPV6, 64, &echo_request());
    assert_eq!(verdict(&mut w, echo.clone(), OUT), Verdict::Punt);
    assert_eq!(punt_class(&snapshot6(), &echo, OUT), Ok(PuntClass::Icmp));
    assert_eq!(verdict(&mut w, v6(CLIENT6, link_local_out(), nh::ICMPV6, 64, &echo_request()), OUT), Verdict::Punt);
    assert_eq!(verdict(&mut w, v6(CLIENT6, ELSEWHERE, nh::ICMPV6, 64, &echo_request()), OUT), Verdict::Drop(DropReason::NoVirtualServer));
    let mut unreachable = vec![1, 4, 0, 0, 0, 0, 0, 0];
    unreachable.extend_from_slice(&v6(SELF6, CLIENT6, nh::UDP, 64, &[0; 12])[14..]);
    assert_eq!(verdict(&mut w, v6(CLIENT6, SELF6, nh::ICMPV6, 64, &unreachable), OUT), Verdict::Punt);
    assert_eq!(verdict(&mut w, v6(CLIENT6, ELSEWHERE, nh::ICMPV6, 64, &unreachable), OUT), Verdict::Drop(DropReason::IcmpNoFlow));
    assert_eq!(verdict(&mut w, v6(CLIENT6, SELF6, nh::ICMPV6, 64, &[128, 0]), OUT), Verdict::Drop(DropReason::IcmpTruncated));
    // TCP to the self address: the `other` class.
    let syn = v6(CLIENT6, SELF6, nh::TCP, 64, &crate::testkit::tcp_header(40000, 22, 2, 65535));
    assert_eq!(verdict(&mut w, syn.clone(), OUT), Verdict::Punt);
    assert_eq!(punt_class(&snapshot6(), &syn, OUT), Ok(PuntClass::Other));
    let to_nobody = v6(CLIENT6, ELSEWHERE, nh::TCP, 64, &crate::testkit::tcp_header(40000, 80, 2, 65535));
    assert_eq!(verdict(&mut w, to_nobody, OUT), Verdict::Drop(DropReason::NoVirtualServer));
}

/// Every malformed kind under its own name (RFC 8200 §4, §8.1; RFC 4291).
#[test]
fn malformed_ipv6_is_dropped_by_name() {
    let mut w = worker6();
    let good = v6(CLIENT6, SELF6, nh::ICMPV6, 64, &echo_request());
    assert_eq!(verdict(&mut w, good[..40].to_vec(), OUT), Verdict::Drop(DropReason::Ipv6Truncated));
    let mut version = good.clone();
    version[14] = 0x40;
    assert_eq!(verdict(&mut w, version, OUT), Verdict::Drop(DropReason::Ipv6BadVersion));
    let mut long = good.clone();
    long[18..20].copy_from_slice(&500u16.to_be_bytes());
    assert_eq!(verdict(&mut w, long, OUT), Verdict::Drop(DropReason::Ipv6BadPayloadLength));
    let multicast_src = v6(0xff02 << 112 | 1, SELF6, nh::ICMPV6, 64, &echo_request());
    assert_eq!(verdict(&mut w, multicast_src, OUT), Verdict::Drop(DropReason::Ipv6BadAddress));
    let mapped = |a: [u8; 4]| 0xffff_u128 << 32 | u128::from(u32::from_be_bytes(a));
    assert_eq!(verdict(&mut w, v6(CLIENT6, mapped([192, 0, 2, 2]), nh::ICMPV6, 64, &echo_request()), OUT), Verdict::Drop(DropReason::Ipv6BadAddress));
    assert_eq!(verdict(&mut w, v6(mapped([192, 0, 2, 10]), SELF6, nh::ICMPV6, 64, &echo_request()), OUT), Verdict::Drop(DropReason::Ipv6BadAddress));
    // UDP with checksum 0.
    let mut udp = crate::testkit::udp_datagram(5000, 53, b"q");
    let zero = v6(CLIENT6, SELF6, 253, 64, &udp);
    let mut zero = zero;
    zero[20] = nh::UDP;
    assert_eq!(verdict(&mut w, zero, OUT), Verdict::Drop(DropReason::UdpZeroChecksum));
    udp.truncate(6);
    assert_eq!(verdict(&mut w, v6(CLIENT6, SELF6, nh::UDP, 64, &udp), OUT), Verdict::Drop(DropReason::UdpTruncated));
}

/// Extension headers: walked to the upper layer; fragments, routing
/// headers with segments left and chains RFC 8200 does not allow are
/// dropped by name.
#[test]
fn extension_headers_are_walked_and_refused_by_name() {
    let mut w = worker6();
    let with = |headers: &[u8], first: u8| {
        let mut p = headers.to_vec();
        p.extend_from_slice(&echo_request());
        let mut f = v6(CLIENT6, SELF6, first, 64, &p);
        // The checksum over the ICMPv6 message alone.
        let at = 54 + headers.len();
        f[at + 2] = 0;
        f[at + 3] = 0;
        let ps = crate::wire::ipv6::pseudo_header(CLIENT6.into(), SELF6.into(), nh::ICMPV6, (f.len() - at) as u32);
        let c = !crate::wire::checksum::fold(crate::wire::checksum::sum(&f[at..], ps));
        f[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
        f
    };
    let hop_by_hop = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
    let dest_opts = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
    let routing = |next: u8, left: u8| vec![next, 0, 4, left, 0, 0, 0, 0];
    let fragment = |next: u8, offset_m: u16| {
        let [a, b] = offset_m.to_be_bytes();
        vec![next, 0, a, b, 0, 0, 0, 7]
    };
    assert_eq!(verdict(&mut w, with(&hop_by_hop(nh::ICMPV6), nh::HOP_BY_HOP), OUT), Verdict::Punt, "hop-by-hop, then ICMPv6");
    let chain: Vec<u8> = [hop_by_hop(nh::DEST_OPTS), dest_opts(nh::ROUTING), routing(nh::ICMPV6, 0)].concat();
    assert_eq!(verdict(&mut w, with(&chain, nh::HOP_BY_HOP), OUT), Verdict::Punt, "a routing header with no segments left");
    assert_eq!(verdict(&mut w, with(&fragment(nh::ICMPV6, 0), nh::FRAGMENT), OUT), Verdict::Punt, "an atomic fragment (RFC 6946)");
    assert_eq!(verdict(&mut w, with(&fragment(nh::ICMPV6, 1), nh::FRAGMENT), OUT), Verdict::Drop(DropReason::Fragment), "a first fragment");
    assert_eq!(verdict(&mut w, with(&fragment(nh::ICMPV6, 8 << 3), nh::FRAGMENT), OUT), Verdict::Drop(DropReason::Fragment), "a later fragment");
    assert_eq!(verdict(&mut w, with(&routing(nh::ICMPV6, 1), nh::ROUTING), OUT), Verdict::Drop(DropReason::Ipv6RoutingHeader));
    let hbh_second: Vec<u8> = [dest_opts(nh::HOP_BY_HOP), hop_by_hop(nh::ICMPV6)].concat();
    assert_eq!(verdict(&mut w, with(&hbh_second, nh::DEST_OPTS), OUT), Verdict::Drop(DropReason::Ipv6BadChain), "hop-by-hop not first");
    // A second fragment header cannot make a fragment look whole.
    let two: Vec<u8> = [fragment(nh::FRAGMENT, 0), fragment(nh::ICMPV6, 1)].concat();
    assert_eq!(verdict(&mut w, with(&two, nh::FRAGMENT), OUT), Verdict::Drop(DropReason::Ipv6BadChain));
    let cut = v6(CLIENT6, SELF6, nh::HOP_BY_HOP, 64, &[nh::ICMPV6, 3, 0, 0]);
    assert_eq!(verdict(&mut w, cut, OUT), Verdict::Drop(DropReason::Ipv6BadChain), "a header past the payload");
}

/// An NS flood (to the box's own group, hop limit 255: what an on-link
/// attacker can send) takes the `nd` class's bucket and no other: ARP
/// and pings still pass.
#[test]
fn an_ns_flood_is_policed_in_its_own_class() {
    let (publisher, mut readers) = rcu(Box::new(snapshot6()), 1);
    std::mem::forget(publisher);
    let mut rates = DEFAULT_PUNT_RATES;
    rates[PuntClass::Nd as usize] = 40; // a burst of 32, 4 a tick
    let mut w = Worker::new(WorkerConfig { flows: 64, punt_rates: rates, ..WorkerConfig::default() }, readers.remove(0), Arc::new(Neighbors::new(4)));
    let mut io = Io::default();
    // From many sources: a source decides nothing.
    for i in 0..100u128 {
        io.rx.push(pkt(v6(CLIENT6 + i, SOLICITED_SELF, nh::ICMPV6, 255, &ns(SELF6))));
    }
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    io.rx.push(pkt(arp));
    io.rx.push(pkt(v6(CLIENT6, SELF6, nh::ICMPV6, 64, &echo_request())));
    while !io.rx.is_empty() {
        w.poll(&mut io, 1);
    }
    let c = w.counters();
    assert_eq!(c.punts(PuntClass::Nd), (32, 68), "the burst, then nothing in the same tick");
    assert_eq!(c.punts(PuntClass::Arp), (1, 0));
    assert_eq!(c.punts(PuntClass::Icmp), (1, 0));
    assert_eq!(io.punted, 34);
    assert_eq!(c.drops(DropReason::PuntLimited), 68);
}

const VIP6: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0100;
const SELF6_IN: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_0001;
const SRV6: [u128; 2] = [0x2001_0db8_0002_0000_0000_0000_0000_0011, 0x2001_0db8_0002_0000_0000_0000_0000_0012];

/// `snapshot6` with two IPv6 services over two IPv6 servers (next-hop
/// slots 0 and 1, on the inside link): NAT on VIP6:80, full-NAT from
/// SELF6_IN on VIP6:81, round robin.
fn snapshot_services6() -> Snapshot {
    let mut s = snapshot6();
    if let Some(Some(p)) = s.ports.get_mut(IN as usize) {
        p.v6 = PortView6::new(SELF6_IN, 64, IN_MAC);
    }
    super::super::fuzz::push_ipv6_services(&mut s, VIP6, &SRV6, IN, SELF6_IN);
    s.index();
    s
}

fn tcp6(src: u128, dst: u128, sport: u16, dport: u16, flags: u8, from: EthernetAddress, to: EthernetAddress) -> Vec<u8> {
    ipv6_frame(from, to, src, dst, nh::TCP, 64, &crate::testkit::tcp_header(sport, dport, flags, 65535))
}

fn a6(f: &[u8], at: usize) -> u128 {
    u128::from_be_bytes(f[at..at + 16].try_into().unwrap())
}

fn port6(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// The TCP/UDP checksum of an IPv6 frame (no extension headers) is right.
fn l4_ok6(f: &[u8]) -> bool {
    let ps = crate::wire::ipv6::pseudo_header(a6(f, 22).into(), a6(f, 38).into(), f[20], (f.len() - 54) as u32);
    crate::wire::checksum::fold(crate::wire::checksum::sum(&f[54..], ps)) == 0xffff
}

use crate::wire::ethernet::EthernetAddress;
use super::super::tests::SERVER_MAC;

#[test]
fn ipv6_nat_rewrites_both_ways_with_right_checksums() {
    let mut w = worker_on(snapshot_services6(), 64, 0, 1, true);
    let mut seen = Vec::new();
    for sport in [40000u16, 40001, 40002, 40003] {
        let mut f = tcp6(CLIENT6, VIP6, sport, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
        let server = a6(&f, 38);
        let i = SRV6.iter().position(|s| *s == server).expect("to a server");
        seen.push(i);
        assert_eq!(&f[0..6], &SERVER_MAC[i].0, "to the server's MAC");
        assert_eq!(&f[6..12], &IN_MAC.0);
        assert_eq!(a6(&f, 22), CLIENT6, "NAT keeps the client's address");
        assert_eq!((port6(&f, 54), port6(&f, 56)), (sport, 8080));
        assert_eq!(f[21], 63, "hop limit down by one");
        assert!(l4_ok6(&f), "TCP checksum over the IPv6 pseudo header");
        // The server's answer, back to the client from the VIP.
        let mut r = tcp6(server, CLIENT6, 8080, sport, tcpf::SYN | tcpf::ACK, SERVER_MAC[i], IN_MAC);
        assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(OUT));
        assert_eq!((a6(&r, 22), port6(&r, 54)), (VIP6, 80));
        assert_eq!((a6(&r, 38), port6(&r, 56)), (CLIENT6, sport));
        assert_eq!(&r[0..6], &CLIENT_MAC.0, "back to the client's MAC");
        assert!(l4_ok6(&r));
        // The answer on the wrong link is not the server's.
        let mut wrong = tcp6(server, CLIENT6, 8080, sport, tcpf::ACK, SERVER_MAC[i], IN_MAC);
        assert_eq!(w.process(&mut wrong, OUT, false), Verdict::Drop(DropReason::ReplyWrongLink));
    }
    assert_eq!(seen, [0, 1, 0, 1], "round robin");
    assert_eq!(w.table6().map(|t| t.len()), Some(4));
    assert_eq!(w.table().len(), 0, "nothing in the IPv4 table");
    assert_eq!(w.counters().flows.get(), 4);
}

#[test]
fn ipv6_full_nat_goes_out_from_a_local_address_and_back() {
    let mut w = worker_on(snapshot_services6(), 64, 0, 1, true);
    let mut f = tcp6(CLIENT6, VIP6, 40000, 81, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(a6(&f, 22), SELF6_IN, "from the local address");
    let (lport, server) = (port6(&f, 54), a6(&f, 38));
    assert!((crate::forward::LOCAL_PORT_MIN..=crate::forward::LOCAL_PORT_MAX).contains(&lport));
    assert!(l4_ok6(&f));
    let i = SRV6.iter().position(|s| *s == server).unwrap();
    let mut r = tcp6(server, SELF6_IN, 8080, lport, tcpf::SYN | tcpf::ACK, SERVER_MAC[i], IN_MAC);
    assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(OUT));
    assert_eq!((a6(&r, 22), port6(&r, 54), a6(&r, 38), port6(&r, 56)), (VIP6, 81, CLIENT6, 40000));
    assert!(l4_ok6(&r));
    // A SYN to a local address's port that no connection holds reaches
    // no server.
    let mut stray = tcp6(server, SELF6_IN, 8080, lport.wrapping_add(1), tcpf::SYN | tcpf::ACK, SERVER_MAC[i], IN_MAC);
    assert_eq!(w.process(&mut stray, IN, false), Verdict::Punt, "the box's own address: the control plane's");
}

/// What the flow path refuses over IPv6 as over IPv4: a bad checksum
/// takes no entry, the hop limit runs out, a VIP's own source.
#[test]
fn ipv6_first_packets_are_checked_before_an_entry() {
    let mut w = worker_on(snapshot_services6(), 64, 0, 1, true);
    let mut bad = tcp6(CLIENT6, VIP6, 40000, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    let last = bad.len() - 1;
    bad[last - 2] ^= 0x40;
    assert_eq!(w.process(&mut bad, OUT, false), Verdict::Drop(DropReason::L4BadChecksum));
    let mut hop1 = ipv6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, nh::TCP, 1, &crate::testkit::tcp_header(40000, 80, tcpf::SYN, 65535));
    assert_eq!(w.process(&mut hop1, OUT, false), Verdict::Drop(DropReason::TtlExceeded));
    let mut own = tcp6(VIP6, VIP6, 40000, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut own, OUT, false), Verdict::Drop(DropReason::OwnSource));
    let mut ack = tcp6(CLIENT6, VIP6, 40000, 80, tcpf::ACK, CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut ack, OUT, false), Verdict::Drop(DropReason::TcpNoFlow), "only a SYN opens");
    let mut other_port = tcp6(CLIENT6, VIP6, 40000, 82, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut other_port, OUT, false), Verdict::Drop(DropReason::NoVirtualServer));
    assert_eq!(w.table6().map_or(0, |t| t.len()), 0);
}

/// IPv6 entries expire as IPv4's do: the sweep takes them and the
/// gauges, and full-NAT's port comes back.
#[test]
fn ipv6_entries_expire() {
    let mut w = worker_on(snapshot_services6(), 64, 0, 1, true);
    let mut f = tcp6(CLIENT6, VIP6, 40000, 81, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(w.counters().flows.get(), 1);
    let mut io = Io::default();
    // Past the SYN timeout (ticks of 100 ms).
    for t in [10_000u32, 10_001] {
        w.poll(&mut io, t);
    }
    assert_eq!(w.table6().map(|t| t.len()), Some(0));
    assert_eq!(w.counters().flows.get(), 0);
}

/// Review (IPv6 stages) 1, 2, 7f, 8: with two workers an IPv6 packet goes
/// to its owner once (a handed-over one is not sent on again); what no
/// IPv6 service, local address or server can match is dropped before it
/// costs a hand-off; link-local and unspecified addresses never take the
/// flow path; ND behind an extension header is refused.
#[test]
fn ipv6_ownership_and_what_never_takes_the_flow_path() {
    let snap = snapshot_services6();
    // A client port whose owner under worker 0's key is worker 1.
    let mut probe = worker_on(snapshot_services6(), 64, 0, 2, true);
    let sport = (40000u16..41000).find(|p| {
        let mut f = tcp6(CLIENT6, VIP6, *p, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
        probe.process(&mut f, OUT, false) == Verdict::Handoff(1)
    });
    let sport = sport.expect("some client port is worker 1's");
    let mut w1 = worker_on(snap, 64, 1, 2, true);
    let mut f = tcp6(CLIENT6, VIP6, sport, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w1.process(&mut f, OUT, true), Verdict::Forward(IN), "handed over: served here");
    let mut w0 = worker_on(snapshot_services6(), 64, 0, 2, true);
    let mut again = tcp6(CLIENT6, VIP6, sport, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w0.process(&mut again, OUT, true), Verdict::Forward(IN), "a handed-over packet is never handed on");
    // Nothing of the box's: dropped, not handed over.
    for _ in 0..64 {
        let mut stray = tcp6(CLIENT6, ELSEWHERE, sport, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
        assert_eq!(w0.process(&mut stray, OUT, false), Verdict::Drop(DropReason::NoVirtualServer));
    }
    let ll_client = 0xfe80_u128 << 112 | 0x10;
    let mut ll = tcp6(ll_client, VIP6, 40000, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w0.process(&mut ll, OUT, false), Verdict::Drop(DropReason::Ipv6BadAddress));
    let mut unspecified = tcp6(0, VIP6, 40000, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w0.process(&mut unspecified, OUT, false), Verdict::Drop(DropReason::Ipv6BadAddress));
    let mut loopback = tcp6(1, VIP6, 40000, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w0.process(&mut loopback, OUT, false), Verdict::Drop(DropReason::Ipv6BadAddress));
    // ND behind a destination options header (RFC 6980 §5).
    let mut p = vec![nh::ICMPV6, 0, 1, 4, 0, 0, 0, 0];
    p.extend_from_slice(&ns(SELF6));
    let behind = v6(CLIENT6, SOLICITED_SELF, nh::DEST_OPTS, 255, &p);
    assert_eq!(verdict(&mut w0, behind, OUT), Verdict::Drop(DropReason::NdInvalid));
}

/// The IPv6 shard's defence budgets are in proportion to its own table.
#[test]
fn the_ipv6_table_has_budgets_of_its_size() {
    let (publisher, mut readers) = rcu(Box::new(snapshot_services6()), 1);
    std::mem::forget(publisher);
    let config = WorkerConfig { flows: 4096, flows_v6: 1024, embryonic_max: 1000, unreplied_per_service: 400, unreplied_per_source: 40, ..WorkerConfig::default() };
    let mut w = Worker::new(config, readers.remove(0), Arc::new(Neighbors::new(4)));
    // A SYN flood at the IPv6 NAT service from many sources: its unreplied
    // entries stop at a quarter of the IPv4 service cap (400 * 1024 / 4096).
    for i in 0..300u128 {
        let mut f = tcp6(CLIENT6 + 0x1000 + i, VIP6, 40000, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
        let _ = w.process(&mut f, OUT, false);
    }
    assert_eq!(w.table6().map(|t| t.len()), Some(100));
    assert_eq!(w.counters().unreplied_capped.get(), 200);
}

/// MAT over IPv6 (`dsr-l2`): only the Ethernet addresses change, to the
/// server's MAC from the box's port; the IPv6 packet is untouched, hop
/// limit included (the server holds the VIP and answers the client).
#[test]
fn ipv6_dsr_l2_changes_only_the_macs() {
    use crate::lb::{RealServer, Schedule};
    use crate::state::snapshot::{Forwarding, VirtualService};
    let mut s = snapshot_services6();
    let first = s.servers.len() as u16;
    let vi = s.services.len() as u16;
    for (i, a) in SRV6.iter().enumerate() {
        s.servers.push(RealServer { ip6: a.to_be_bytes(), port: 82, weight: 1, enabled: true, tx_port: IN, nexthop: i as u16, vs: vi, ..RealServer::default() });
    }
    let mut vs = VirtualService::test(Forwarding::DsrL2);
    (vs.ip6, vs.port, vs.members, vs.schedule) = (VIP6, 82, vec![first, first + 1].into_boxed_slice(), Schedule::round_robin(2));
    s.services.push(vs);
    s.index();
    let mut w = worker_on(s, 64, 0, 1, true);
    let sent = tcp6(CLIENT6, VIP6, 40000, 82, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    let mut f = sent.clone();
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(&f[0..6], &SERVER_MAC[0].0);
    assert_eq!(&f[6..12], &IN_MAC.0);
    assert_eq!(f[12..], sent[12..], "the IPv6 packet as the client sent it");
    let mut ack = tcp6(CLIENT6, VIP6, 40000, 82, tcpf::ACK, CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut ack, OUT, false), Verdict::Forward(IN), "the connection's next packets follow");
    assert_eq!(&ack[0..6], &SERVER_MAC[0].0, "to the same server");
}

/// An IPv6 probe's answer takes the `probe` class only from an IPv6
/// server's address on that server's link, to a probe's port: spoofed on
/// the client side, or to another port, it is `other` (dropped).
#[test]
fn ipv6_probe_answers_are_classed_by_their_server_and_link() {
    let snap = snapshot_services6();
    let answer = |src: u128, dport: u16, from: EthernetAddress, to: EthernetAddress| tcp6(src, SELF6_IN, 80, dport, tcpf::SYN | tcpf::ACK, from, to);
    assert_eq!(punt_class(&snap, &answer(SRV6[0], 61001, SERVER_MAC[0], IN_MAC), IN), Ok(PuntClass::Probe));
    assert_eq!(punt_class(&snap, &answer(SRV6[0], 61001, CLIENT_MAC, OUT_MAC), OUT), Ok(PuntClass::Other), "the server's address on the client's link");
    assert_eq!(punt_class(&snap, &answer(SRV6[0], 40000, SERVER_MAC[0], IN_MAC), IN), Ok(PuntClass::Other), "not a probe's port");
    assert_eq!(punt_class(&snap, &answer(ELSEWHERE, 61001, SERVER_MAC[0], IN_MAC), IN), Ok(PuntClass::Other), "not a server");
    // Each server's answers take their own bucket, after the IPv4 ones'.
    let (a, b) = (snap.probe_source_index6(SRV6[0], IN), snap.probe_source_index6(SRV6[1], IN));
    assert!(a.is_some() && b.is_some() && a != b);
    assert_eq!(snap.probe_source_index6(SRV6[0], OUT), None);
}

/// A Packet Too Big (RFC 4443 §3.2) of `mtu` from `router`, quoting
/// `quoted` (an IPv6 packet from its header on), to `dst`.
fn too_big(router: u128, dst: u128, mtu: u32, quoted: &[u8], from: EthernetAddress, to: EthernetAddress) -> Vec<u8> {
    let mut m = vec![2, 0, 0, 0];
    m.extend_from_slice(&mtu.to_be_bytes());
    m.extend_from_slice(&quoted[..quoted.len().min(1232)]);
    ipv6_frame(from, to, router, dst, nh::ICMPV6, 64, &m)
}

/// ICMPv6 errors about IPv6 connections are translated as IPv4's are
/// (RFC 5508 §4's rules): a Packet Too Big from a router on the servers'
/// side about the box's packet to the server reaches the client from the
/// VIP, quoting the packet as the client sent it; one from the client's
/// side about a packet to the client reaches the server, quoting it as
/// the server sent it; checksums refilled; one about no connection, or
/// with a wrong checksum, goes nowhere.
#[test]
fn ipv6_packet_too_big_is_translated_both_ways() {
    let mut w = worker_on(snapshot_services6(), 64, 0, 1, true);
    let router_in: u128 = 0x2001_0db8_0002_u128 << 80 | 0xfe;
    let router_out: u128 = 0x2001_0db8_0001_u128 << 80 | 0xfe;
    for port in [80u16, 81] {
        let mut syn = tcp6(CLIENT6, VIP6, 41000, port, tcpf::SYN, CLIENT_MAC, OUT_MAC);
        assert_eq!(w.process(&mut syn, OUT, false), Verdict::Forward(IN));
        let (local, lport, server) = (a6(&syn, 22), port6(&syn, 54), a6(&syn, 38));
        let i = SRV6.iter().position(|s| *s == server).unwrap();
        // The server's side: about the box's packet to the server.
        let mut ptb = too_big(router_in, local, 1280, &syn[14..], SERVER_MAC[i], IN_MAC);
        assert_eq!(w.process(&mut ptb, IN, false), Verdict::Forward(OUT), "port {port}");
        assert_eq!((a6(&ptb, 22), a6(&ptb, 38)), (VIP6, CLIENT6), "from the VIP to the client");
        assert_eq!(&ptb[0..6], &CLIENT_MAC.0);
        let q = 54 + 8;
        assert_eq!((a6(&ptb, q + 8), a6(&ptb, q + 24)), (CLIENT6, VIP6), "the quote as the client sent it");
        assert_eq!((port6(&ptb, q + 40), port6(&ptb, q + 42)), (41000, port));
        assert_eq!(u32::from_be_bytes(ptb[58..62].try_into().unwrap()), 1280, "the MTU as the router said");
        let m = Icmpv6Packet::new_unchecked(&ptb[54..]);
        assert!(m.verify_checksum(a6(&ptb, 22).into(), a6(&ptb, 38).into()), "ICMPv6 checksum refilled");
        // The client's side: about the server's answer to the client.
        let mut ans = tcp6(server, local, 8080, lport, tcpf::SYN | tcpf::ACK, SERVER_MAC[i], IN_MAC);
        assert_eq!(w.process(&mut ans, IN, false), Verdict::Forward(OUT));
        let mut ptb = too_big(router_out, VIP6, 1280, &ans[14..], CLIENT_MAC, OUT_MAC);
        assert_eq!(w.process(&mut ptb, OUT, false), Verdict::Forward(IN), "port {port}");
        assert_eq!(a6(&ptb, 38), server, "to the server");
        assert_eq!(a6(&ptb, 22), if port == 81 { local } else { router_out }, "full-NAT: from the local address");
        assert_eq!((a6(&ptb, q + 8), a6(&ptb, q + 24)), (server, local), "the quote as the server sent it");
        assert_eq!((port6(&ptb, q + 40), port6(&ptb, q + 42)), (8080, lport));
        let m = Icmpv6Packet::new_unchecked(&ptb[54..]);
        assert!(m.verify_checksum(a6(&ptb, 22).into(), a6(&ptb, 38).into()));
    }
    // About the box's own packet (a probe's): the control plane's. About
    // no connection; to another address than the quote's sender (a
    // reflection); a wrong checksum.
    let probe = tcp6(SELF6_IN, SRV6[0], 61000, 80, tcpf::SYN, IN_MAC, SERVER_MAC[0]);
    let mut ptb = too_big(router_in, SELF6_IN, 1280, &probe[14..], SERVER_MAC[0], IN_MAC);
    assert_eq!(w.process(&mut ptb, IN, false), Verdict::Punt, "to the box's own address: its own traffic's");
    let stray = tcp6(CLIENT6, VIP6, 42000, 80, tcpf::ACK, CLIENT_MAC, OUT_MAC);
    let mut ptb = too_big(router_in, CLIENT6, 1280, &stray[14..], SERVER_MAC[0], IN_MAC);
    assert_eq!(w.process(&mut ptb, IN, false), Verdict::Drop(DropReason::IcmpNoFlow));
    let mut reflected = too_big(router_in, ELSEWHERE, 1280, &stray[14..], SERVER_MAC[0], IN_MAC);
    assert_eq!(w.process(&mut reflected, IN, false), Verdict::Drop(DropReason::IcmpBadEmbedded), "to another address than the quoted packet's sender");
    let mut syn = tcp6(CLIENT6, VIP6, 41001, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut syn, OUT, false), Verdict::Forward(IN));
    let mut bad = too_big(router_in, CLIENT6, 1280, &syn[14..], SERVER_MAC[0], IN_MAC);
    let last = bad.len() - 1;
    bad[last] ^= 0x10;
    assert_eq!(w.process(&mut bad, IN, false), Verdict::Drop(DropReason::IcmpBadChecksum));
}

/// An ICMPv6 error about a connection counts only from the side its
/// quoted packet went to: one quoting the box's packet to the server but
/// arriving from the client's side is not the servers' path's.
#[test]
fn ipv6_errors_come_from_their_side() {
    let mut w = worker_on(snapshot_services6(), 64, 0, 1, true);
    let mut syn = tcp6(CLIENT6, VIP6, 41000, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut syn, OUT, false), Verdict::Forward(IN));
    let spoofed: u128 = 0x2001_0db8_0001_u128 << 80 | 0xfe;
    let mut ptb = too_big(spoofed, CLIENT6, 1280, &syn[14..], CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut ptb, OUT, false), Verdict::Drop(DropReason::ReplyWrongLink));
}

/// A multicast listener query (RFC 3810: hop limit 1, behind a hop-by-hop
/// header) is punted in the `nd` class for the box's report; with another
/// hop limit, or on a link without IPv6, it is ignored.
#[test]
fn mld_queries_reach_the_nd_class() {
    let mut w = worker6();
    let hbh = [nh::ICMPV6, 0, 5, 2, 0, 0, 1, 0];
    let mut p = hbh.to_vec();
    p.extend_from_slice(&[130, 0, 0, 0, 0x27, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let ll_router: u128 = 0xfe80_u128 << 112 | 1;
    let query = |hops: u8| v6(ll_router, 0xff02 << 112 | 1, nh::HOP_BY_HOP, hops, &p);
    assert_eq!(verdict(&mut w, query(1), OUT), Verdict::Punt);
    assert_eq!(punt_class(&snapshot6(), &query(1), OUT), Ok(PuntClass::Nd));
    assert_eq!(verdict(&mut w, query(64), OUT), Verdict::Drop(DropReason::Icmpv6Ignored));
    let mut inside = ipv6_frame(CLIENT_MAC, IN_MAC, ll_router, 0xff02 << 112 | 1, nh::HOP_BY_HOP, 1, &p);
    assert_eq!(w.process(&mut inside, IN, false), Verdict::Drop(DropReason::Icmpv6Ignored));
}

/// `snapshot_services6` with a `dsr-tunnel` service of `kind` on VIP6:83
/// over the two IPv6 servers, the inside link's MTU `mtu`.
fn dsr_tunnel6_snapshot(kind: crate::forward::TunnelKind, mtu: u16) -> Snapshot {
    use crate::lb::{RealServer, Schedule};
    use crate::state::snapshot::{Forwarding, TunnelSpec, VirtualService};
    let mut s = snapshot_services6();
    if let Some(Some(p)) = s.ports.get_mut(IN as usize) {
        p.mtu = mtu;
    }
    let first = s.servers.len() as u16;
    let vi = s.services.len() as u16;
    for (i, a) in SRV6.iter().enumerate() {
        s.servers.push(RealServer { ip6: a.to_be_bytes(), port: 83, weight: 1, enabled: true, tx_port: IN, nexthop: i as u16, vs: vi, ..RealServer::default() });
    }
    let mut vs = VirtualService::test(Forwarding::DsrTunnel);
    (vs.ip6, vs.port, vs.members, vs.schedule) = (VIP6, 83, vec![first, first + 1].into_boxed_slice(), Schedule::round_robin(2));
    vs.tunnel = Some(TunnelSpec { kind, source: None, port: 6080 });
    s.services.push(vs);
    s.index();
    s
}

/// `dsr-tunnel` over IPv6 (RFC 2473): the client's packet byte for byte
/// inside an outer IPv6 header from the inside link's self address to the
/// server, one flow label per flow, varying across flows.
#[test]
fn ipv6_dsr_tunnel_encapsulates_the_untouched_packet_in_ipv6() {
    use super::super::tests::pkt;
    use crate::forward::TunnelKind;
    for (kind, next) in [(TunnelKind::Ipip, nh::IPV6), (TunnelKind::Gre, nh::GRE), (TunnelKind::Gue, nh::UDP)] {
        let mut w = worker_on(dsr_tunnel6_snapshot(kind, 1500), 64, 0, 1, true);
        let at = 14 + kind.overhead6();
        let mut outer_of = |sport: u16, flags: u8| {
            let sent = tcp6(CLIENT6, VIP6, sport, 83, flags, CLIENT_MAC, OUT_MAC);
            let mut b = pkt(sent.clone());
            assert_eq!(w.process_packet(&mut b, false), Verdict::Forward(IN), "{kind:?}");
            let o = b.data.clone();
            assert_eq!(o.len(), at + sent.len() - 14, "{kind:?}");
            assert_eq!(&o[12..14], &[0x86, 0xdd]);
            let srv = SRV6.iter().position(|a| *a == a6(&o, 38)).expect("to a server's own address");
            assert_eq!((&o[0..6], &o[6..12]), (&SERVER_MAC[srv].0[..], &IN_MAC.0[..]), "that server's MAC");
            assert_eq!((o[20], a6(&o, 22)), (next, SELF6_IN), "{kind:?}: from the inside link's self address");
            assert_eq!(&o[at..], &sent[14..], "{kind:?}: the client's packet untouched");
            (u32::from_be_bytes([0, o[15] & 0x0f, o[16], o[17]]), srv)
        };
        let first = outer_of(40000, tcpf::SYN);
        assert_eq!(outer_of(40000, tcpf::ACK), first, "{kind:?}: one flow, one outer header, one server");
        let labels: std::collections::BTreeSet<u32> = (41000..41020).map(|p| outer_of(p, tcpf::SYN).0).collect();
        assert!(labels.len() >= 15, "{kind:?}: 20 flows, {} flow labels", labels.len());
    }
}

/// A packet the tunnel cannot take is answered from the VIP with Packet
/// Too Big carrying the tunnel's MTU (RFC 2473 §7.1); a tunnel whose MTU
/// would be below 1280 drops it by name.
#[test]
fn ipv6_dsr_tunnel_answers_packet_too_big_with_the_tunnel_mtu() {
    use super::super::tests::pkt;
    use crate::forward::TunnelKind;
    let mut w = worker_on(dsr_tunnel6_snapshot(TunnelKind::Gre, 1400), 64, 0, 1, true);
    let mut syn = pkt(tcp6(CLIENT6, VIP6, 40000, 83, tcpf::SYN, CLIENT_MAC, OUT_MAC));
    assert_eq!(w.process_packet(&mut syn, false), Verdict::Forward(IN));
    let mut seg = crate::testkit::tcp_header(40000, 83, tcpf::ACK, 65535);
    seg.extend_from_slice(&[7u8; 1340]);
    let big = ipv6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, nh::TCP, 64, &seg);
    assert_eq!(big.len() - 14, 1400, "1400 bytes, past the tunnel's 1356");
    let mut b = pkt(big.clone());
    assert_eq!(w.process_packet(&mut b, false), Verdict::Forward(OUT), "answered on the client's link");
    let o = &b.data;
    assert_eq!((&o[0..6], &o[6..12]), (&CLIENT_MAC.0[..], &OUT_MAC.0[..]));
    assert_eq!((a6(o, 22), a6(o, 38), o[20]), (VIP6, CLIENT6, nh::ICMPV6), "from the VIP to the client");
    let m = Icmpv6Packet::new_checked(&o[54..]).unwrap();
    assert_eq!((m.msg_type(), m.mtu()), (2, 1400 - 44), "the tunnel's MTU: the link's less IPv6 and GRE");
    assert!(m.verify_checksum(VIP6.into(), CLIENT6.into()));
    assert_eq!(&o[62..], &big[14..14 + 1280 - 48], "the packet quoted");
    // A link of 1300: the tunnel's MTU would be 1260, below IPv6's minimum.
    let mut w = worker_on(dsr_tunnel6_snapshot(TunnelKind::Gre, 1300), 64, 0, 1, true);
    let mut syn = pkt(tcp6(CLIENT6, VIP6, 40000, 83, tcpf::SYN, CLIENT_MAC, OUT_MAC));
    assert_eq!(w.process_packet(&mut syn, false), Verdict::Forward(IN));
    let mut b = pkt(big);
    assert_eq!(w.process_packet(&mut b, false), Verdict::Drop(DropReason::TunnelTooBig));
}

/// `dsr-dscp` over IPv6: the client's packet to the server's own address
/// with the service's DSCP in the traffic class (ECN kept), the hop limit
/// down, the source the client's, the checksum right; the connection's
/// next packets follow.
#[test]
fn ipv6_dsr_dscp_marks_the_traffic_class_towards_the_server() {
    use crate::lb::{RealServer, Schedule};
    use crate::state::snapshot::{Forwarding, VirtualService};
    let mut s = snapshot_services6();
    let first = s.servers.len() as u16;
    let vi = s.services.len() as u16;
    for (i, a) in SRV6.iter().enumerate() {
        s.servers.push(RealServer { ip6: a.to_be_bytes(), port: 86, weight: 1, enabled: true, tx_port: IN, nexthop: i as u16, vs: vi, ..RealServer::default() });
    }
    let mut vs = VirtualService::test(Forwarding::DsrDscp);
    (vs.ip6, vs.port, vs.dscp, vs.members, vs.schedule) = (VIP6, 86, 46, vec![first, first + 1].into_boxed_slice(), Schedule::round_robin(2));
    s.services.push(vs);
    s.index();
    let mut w = worker_on(s, 64, 0, 1, true);
    let mut f = tcp6(CLIENT6, VIP6, 40000, 86, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    f[15] |= 0x10; // ECN bits 01 in the traffic class
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let srv = SRV6.iter().position(|a| *a == a6(&f, 38)).expect("to a server's own address");
    assert_eq!(&f[0..6], &SERVER_MAC[srv].0);
    assert_eq!(a6(&f, 22), CLIENT6, "the client's source");
    let tc = (f[14] & 0x0f) << 4 | f[15] >> 4;
    assert_eq!((tc >> 2, tc & 3), (46, 1), "DSCP 46, ECN kept");
    assert_eq!(f[21], 63, "routed: the hop limit down");
    assert_eq!(port6(&f, 56), 86, "the VIP's port");
    assert!(l4_ok6(&f));
    let mut ack = tcp6(CLIENT6, VIP6, 40000, 86, tcpf::ACK, CLIENT_MAC, OUT_MAC);
    assert_eq!(w.process(&mut ack, OUT, false), Verdict::Forward(IN));
    assert_eq!(a6(&ack, 38), SRV6[srv], "to the same server");
}

/// `source-ip` persistence over IPv6 by prefix: two addresses of one /64
/// (a host's temporary addresses, RFC 8981) keep to one server over many
/// connections, where round robin alone would alternate; a client of
/// another /64 may go elsewhere; the record shows in the IPv6 table.
#[test]
fn ipv6_source_ip_persistence_keeps_a_prefix_on_its_server() {
    let mut s = snapshot_services6();
    let p = crate::lb::Persistence { kind: crate::lb::PersistKind::SourceIp, prefix: 64, timeout: 3000, group: 0, keep_on_down: false };
    if let Some(v) = s.services.iter_mut().find(|v| v.ip6 == VIP6 && v.port == 80) {
        v.persistence = Some(p);
    }
    s.persist_records = 64;
    s.index();
    let mut w = worker_on(s, 64, 0, 1, true);
    let other_host: u128 = CLIENT6 + 1;
    let mut seen = std::collections::BTreeSet::new();
    for (i, src) in [CLIENT6, other_host, CLIENT6, other_host, CLIENT6, other_host].into_iter().enumerate() {
        let mut f = tcp6(src, VIP6, 41000 + i as u16, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
        seen.insert(a6(&f, 38));
    }
    assert_eq!(seen.len(), 1, "one /64, one server: {seen:x?}");
    let elsewhere: u128 = 0x2001_0db8_0001_0001_0000_0000_0000_0010;
    let mut servers = std::collections::BTreeSet::new();
    for i in 0..4u16 {
        let mut f = tcp6(elsewhere + u128::from(i) * (1 << 64), VIP6, 42000 + i, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
        servers.insert(a6(&f, 38));
    }
    assert_eq!(servers.len(), 2, "other /64s are spread: {servers:x?}");
    assert_eq!(w.counters().persisted.get(), 5, "the /64's 5 later connections followed its record");
}

/// The burst pipeline's IPv6 key (`quick_key6`): the connection's key for
/// TCP and UDP right after the fixed header, tagged or not; nothing for a
/// chain of extension headers or other protocols (the parse takes those).
#[test]
fn the_prefetch_key_of_an_ipv6_frame_is_its_connections() {
    use super::super::classify::quick_key6;
    let f = tcp6(CLIENT6, VIP6, 40000, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC);
    let k = quick_key6(&f).unwrap();
    assert_eq!((k.src_ip, k.dst_ip, k.src_port, k.dst_port, k.proto), (CLIENT6, VIP6, 40000, 80, 6));
    let mut tagged = f[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0, 0, 100]);
    tagged.extend_from_slice(&f[12..]);
    assert_eq!(quick_key6(&tagged), Some(k));
    let hbh = v6(CLIENT6, VIP6, nh::HOP_BY_HOP, 64, &[6, 0, 1, 4, 0, 0, 0, 0]);
    assert_eq!(quick_key6(&hbh), None);
    assert_eq!(quick_key6(&v6(CLIENT6, SELF6, nh::ICMPV6, 64, &echo_request())), None);
    assert_eq!(quick_key6(&f[..50]), None, "short");
    // A worker polling IPv6 connections through the pipeline forwards them.
    let mut w = worker_on(snapshot_services6(), 64, 0, 1, true);
    let mut io = super::super::tests::Io::default();
    for p in [40000u16, 40001, 40002] {
        io.rx.push(super::super::tests::pkt(tcp6(CLIENT6, VIP6, p, 80, tcpf::SYN, CLIENT_MAC, OUT_MAC)));
    }
    w.poll(&mut io, 1);
    assert_eq!(io.tx.len(), 3, "three SYNs forwarded through the pipeline");
    assert_eq!(w.table6().map(|t| t.len()), Some(3));
}
