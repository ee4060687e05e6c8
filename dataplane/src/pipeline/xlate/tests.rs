//! Translation between the families through the worker: an IPv6 VIP over
//! IPv4 servers and an IPv4 VIP over IPv6 servers, both directions, the
//! checksums right for the family on the wire; fragmentation needed from
//! the IPv4 servers' side turned into Packet Too Big; too big with DF
//! answered.

use super::super::tests::{frame, ip, pkt, snapshot, tcp, worker_on, CLIENT, CLIENT_MAC, IN, IN_MAC, OUT, OUT_MAC, SELF_IN, SERVER_MAC, SRV, VIP};
use super::super::{Verdict, Worker};
use crate::forward::xlate::mapped;
use crate::lb::{RealServer, Schedule};
use crate::state::counters::DropReason;
use crate::state::snapshot::{Forwarding, PortView6, Snapshot, VirtualService};
use crate::testkit::{checksums_ok, ipv6_frame};
use crate::wire::checksum;
use crate::wire::tcp::flags as tcpf;

const CLIENT6: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0010;
const VIP6: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0100;
const SELF6_OUT: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0002;
const SELF6_IN: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_0001;
const SRV6: [u128; 2] = [0x2001_0db8_0002_0000_0000_0000_0000_0011, 0x2001_0db8_0002_0000_0000_0000_0000_0012];

/// The fixture with IPv6 on both links and two translating services:
/// `[VIP6]:84` over the IPv4 servers (from SELF_IN), `VIP:85` over the
/// IPv6 servers (from SELF6_IN), and `VIP:87` its UDP twin.
fn snapshot_xlate() -> Snapshot {
    let mut s = snapshot();
    for (port, a, mac) in [(OUT, SELF6_OUT, OUT_MAC), (IN, SELF6_IN, IN_MAC)] {
        if let Some(Some(p)) = s.ports.get_mut(port as usize) {
            p.v6 = PortView6::new(a, 64, mac);
        }
    }
    for (vport, six_to_four, proto) in [(84u16, true, 6u8), (85, false, 6), (87, false, 17)] {
        let first = s.servers.len() as u16;
        let vi = s.services.len() as u16;
        for i in 0..2 {
            let (ip4, ip6) = if six_to_four { (ip(SRV[i]), [0; 16]) } else { (0, SRV6[i].to_be_bytes()) };
            s.servers.push(RealServer { ip: ip4, ip6, port: 8080, weight: 1, enabled: true, tx_port: IN, nexthop: i as u16, vs: vi, ..RealServer::default() });
        }
        let mut vs = VirtualService::test(Forwarding::FullNat);
        if six_to_four {
            vs.ip6 = VIP6;
            vs.local_addrs6 = vec![mapped(ip(SELF_IN))].into_boxed_slice();
        } else {
            vs.ip = ip(VIP);
            vs.local_addrs6 = vec![SELF6_IN].into_boxed_slice();
        }
        (vs.port, vs.proto, vs.xlate, vs.members, vs.schedule) = (vport, proto, true, vec![first, first + 1].into_boxed_slice(), Schedule::round_robin(2));
        s.services.push(vs);
    }
    s.index();
    s
}

fn a6(f: &[u8], at: usize) -> u128 {
    u128::from_be_bytes(f[at..at + 16].try_into().unwrap())
}

fn port(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn l4_ok6(f: &[u8]) -> bool {
    let ps = crate::wire::ipv6::pseudo_header(a6(f, 22).into(), a6(f, 38).into(), f[20], (f.len() - 54) as u32);
    checksum::fold(checksum::sum(&f[54..], ps)) == 0xffff
}

/// Processes `f` as arrived on the link its source MAC is on (a server's
/// on the inside, the client's outside).
fn send(w: &mut Worker, f: Vec<u8>) -> (Verdict, Vec<u8>) {
    let inside = SERVER_MAC.iter().any(|m| f[6..12] == m.0);
    let mut b = pkt(f);
    if inside {
        b.port = IN;
    }
    let v = w.process_packet(&mut b, false);
    (v, b.data)
}

/// An IPv6 client through an IPv6 VIP to IPv4 servers: its SYN leaves as
/// IPv4 from the inside self address (a port of the upper half) to a
/// server, the server's answer comes back as IPv6 from the VIP, every
/// checksum right for its family.
#[test]
fn an_ipv6_client_reaches_ipv4_servers_and_hears_back_from_the_vip() {
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let syn = ipv6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 6, 64, &tcp(40000, 84, tcpf::SYN));
    let (v, out) = send(&mut w, syn.clone());
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(&out[12..14], &[8, 0], "IPv4 on the servers' side");
    assert_eq!(out.len(), syn.len() - 20);
    assert!(checksums_ok(&out), "IPv4 and TCP checksums");
    let srv = SRV.iter().position(|s| out[30..34] == s[..]).expect("to an IPv4 server");
    assert_eq!((&out[0..6], &out[6..12]), (&SERVER_MAC[srv].0[..], &IN_MAC.0[..]));
    assert_eq!(&out[26..30], &SELF_IN, "from the servers' link's self address");
    let lport = port(&out, 34);
    assert!((super::XLATE_PORT_MIN..=crate::forward::LOCAL_PORT_MAX).contains(&lport), "a local port of the upper half: {lport}");
    assert_eq!((port(&out, 36), out[22]), (8080, 63), "to the server's port, TTL the hop limit less one");
    // The server answers to the local address and port, as IPv4.
    let answer = frame(SERVER_MAC[srv], IN_MAC, SRV[srv], SELF_IN, 6, &tcp(8080, lport, tcpf::SYN | tcpf::ACK), true);
    let (v, back) = send(&mut w, answer.clone());
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!(&back[12..14], &[0x86, 0xdd]);
    assert_eq!(back.len(), answer.len() + 20);
    assert_eq!((a6(&back, 22), a6(&back, 38)), (VIP6, CLIENT6), "from the VIP to the client");
    assert_eq!((port(&back, 54), port(&back, 56)), (84, 40000));
    assert_eq!((&back[0..6], &back[6..12]), (&CLIENT_MAC.0[..], &OUT_MAC.0[..]));
    assert!(l4_ok6(&back), "the TCP checksum over the IPv6 pseudo header");
    // The client's ACK goes the same way; the entry is one.
    let (v, _) = send(&mut w, ipv6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 6, 64, &tcp(40000, 84, tcpf::ACK)));
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(w.shard.v6.as_ref().map(|v6| v6.table.len()), Some(1));
    // An IPv4 packet to a lower port of the self address is not the
    // translation's: no entry, punted as the box's own.
    let (v, _) = send(&mut w, frame(SERVER_MAC[srv], IN_MAC, SRV[srv], SELF_IN, 6, &tcp(8080, 2000, tcpf::ACK), true));
    assert_eq!(v, Verdict::Punt);
}

/// Fragmentation needed from a router on the IPv4 side about a packet to
/// a server becomes Packet Too Big to the IPv6 client, from the VIP, the
/// MTU 20 more, quoting the packet as the client sent it; from the
/// client's side, or not fragmentation needed, it is not relayed.
#[test]
fn fragmentation_needed_from_the_ipv4_side_reaches_the_client_as_packet_too_big() {
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let mut seg = tcp(40000, 84, tcpf::ACK);
    seg.extend_from_slice(&[9u8; 1400]);
    let (_, _) = send(&mut w, ipv6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 6, 64, &tcp(40000, 84, tcpf::SYN)));
    let big = ipv6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 6, 64, &seg);
    let (v, out4) = send(&mut w, big.clone());
    assert_eq!(v, Verdict::Forward(IN));
    let error = |ty: u8, code: u8, from_mac, link_mac| {
        let mut icmp = vec![ty, code, 0, 0, 0, 0, 0x05, 0x78];
        icmp.extend_from_slice(&out4[14..14 + 20 + 520]);
        let c = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        frame(from_mac, link_mac, [198, 51, 100, 254], SELF_IN, 1, &icmp, false)
    };
    let (v, ptb) = send(&mut w, error(3, 4, SERVER_MAC[0], IN_MAC));
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!((a6(&ptb, 22), a6(&ptb, 38), ptb[20]), (VIP6, CLIENT6, 58));
    let m = crate::wire::icmpv6::Icmpv6Packet::new_checked(&ptb[54..]).unwrap();
    assert_eq!((m.msg_type(), m.mtu()), (2, 1400 + 20));
    assert!(m.verify_checksum(VIP6.into(), CLIENT6.into()));
    assert_eq!(&ptb[62 + 8..62 + 40], &big[22..54], "quoting the client's addresses");
    assert_eq!((port(&ptb, 102), port(&ptb, 104)), (40000, 84), "and ports");
    assert_eq!((&ptb[0..6], &ptb[6..12]), (&CLIENT_MAC.0[..], &OUT_MAC.0[..]));
    // Another error, or one arriving on the client's link, goes no further.
    assert_eq!(send(&mut w, error(3, 1, SERVER_MAC[0], IN_MAC)).0, Verdict::Drop(DropReason::IcmpXlateNotRelayed));
    let mut wrong = error(3, 4, CLIENT_MAC, OUT_MAC);
    let mut b = pkt(std::mem::take(&mut wrong));
    b.port = OUT;
    assert_eq!(w.process_packet(&mut b, false), Verdict::Drop(DropReason::ReplyWrongLink));
}

/// An IPv4 client through an IPv4 VIP to IPv6 servers: out as IPv6 from
/// the inside IPv6 address, the answer back as IPv4 from the VIP; a
/// 1500-byte packet with DF, 1520 as IPv6, is answered with fragmentation
/// needed of 1480.
#[test]
fn an_ipv4_client_reaches_ipv6_servers_and_a_too_big_packet_is_answered() {
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let syn = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 85, tcpf::SYN), true);
    let (v, out) = send(&mut w, syn.clone());
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    assert_eq!(out.len(), syn.len() + 20);
    let server = a6(&out, 38);
    let srv = SRV6.iter().position(|s| *s == server).expect("to an IPv6 server");
    assert_eq!(a6(&out, 22), SELF6_IN, "from the inside IPv6 address");
    assert!(l4_ok6(&out));
    assert_eq!((port(&out, 56), out[21]), (8080, 63));
    let lport = port(&out, 54);
    let answer = ipv6_frame(SERVER_MAC[srv], IN_MAC, server, SELF6_IN, 6, 64, &tcp(8080, lport, tcpf::SYN | tcpf::ACK));
    let (v, back) = send(&mut w, answer.clone());
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!(&back[12..14], &[8, 0]);
    assert_eq!(back.len(), answer.len() - 20);
    assert_eq!((&back[26..30], &back[30..34]), (&VIP[..], &CLIENT[..]), "from the VIP to the client");
    assert_eq!((port(&back, 34), port(&back, 36)), (85, 40000));
    assert!(checksums_ok(&back));
    // 1500 bytes with DF: 1520 once IPv6, past the inside link's 1500.
    let mut seg = tcp(40000, 85, tcpf::ACK);
    seg.extend_from_slice(&[1u8; 1460]);
    let mut big = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg, true);
    assert_eq!(big.len() - 14, 1500);
    big[20] |= 0x40;
    let c = checksum::checksum(&{
        let mut h = big[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    big[24..26].copy_from_slice(&c.to_be_bytes());
    let (v, answer) = send(&mut w, big);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!((answer[23], answer[34], answer[35]), (1, 3, 4), "ICMP fragmentation needed");
    assert_eq!(port(&answer, 40), 1480, "the translated path's MTU");
    assert_eq!(&answer[26..30], &VIP, "from the VIP");
}

/// Packet Too Big from a router on the IPv6 servers' side about a
/// translated packet becomes fragmentation needed from the IPv4 VIP to
/// the IPv4 client with the MTU less 20, quoting its packet as it sent
/// it; arriving on the client's link it goes no further.
#[test]
fn packet_too_big_from_the_ipv6_side_reaches_the_ipv4_client_as_fragmentation_needed() {
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let (v, _) = send(&mut w, frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 85, tcpf::SYN), true));
    assert_eq!(v, Verdict::Forward(IN));
    let mut seg = tcp(40000, 85, tcpf::ACK);
    seg.extend_from_slice(&[3u8; 1300]);
    let sent = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg, true);
    let (v, out6) = send(&mut w, sent.clone());
    assert_eq!(v, Verdict::Forward(IN));
    let mut m = vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x00];
    m.extend_from_slice(&out6[14..14 + 1232]);
    let router: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_00fe;
    let ptb = ipv6_frame(SERVER_MAC[0], IN_MAC, router, SELF6_IN, 58, 64, &m);
    let (v, err4) = send(&mut w, ptb.clone());
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!((&err4[0..6], &err4[6..12], &err4[12..14]), (&CLIENT_MAC.0[..], &OUT_MAC.0[..], &[8u8, 0][..]));
    assert_eq!((&err4[26..30], &err4[30..34]), (&VIP[..], &CLIENT[..]), "from the VIP to the client");
    assert_eq!((err4[23], err4[34], err4[35], port(&err4, 40)), (1, 3, 4, 1260), "fragmentation needed, 1280 less 20");
    assert_eq!(checksum::checksum(&err4[14..34]), 0);
    assert_eq!(checksum::checksum(&err4[34..]), 0);
    assert_eq!(&err4[42 + 12..42 + 20], &sent[26..34], "quoting the client's addresses");
    assert_eq!((port(&err4, 62), port(&err4, 64)), (40000, 85), "and ports");
    // From the client's side: not the server's link.
    let mut b = pkt(ptb);
    b.port = OUT;
    assert_eq!(w.process_packet(&mut b, false), Verdict::Drop(DropReason::ReplyWrongLink));
}

/// An IPv4 UDP datagram without a checksum (RFC 768 allows it) to an IPv4
/// VIP over IPv6 servers leaves as IPv6 with one (zero is invalid there).
#[test]
fn ipv4_udp_without_a_checksum_is_translated_with_one() {
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let d = crate::testkit::udp_datagram(40000, 87, b"no checksum here");
    let f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &d, false);
    assert_eq!(&f[40..42], &[0, 0]);
    let (v, out) = send(&mut w, f);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    assert_ne!(&out[60..62], &[0, 0]);
    assert!(l4_ok6(&out));
}

/// The client's side of a translated connection (`xlate_icmp`,
/// `xlate_ptb` for the server): an error about a segment the server sent
/// the client, in flight, becomes the server's family's error from the
/// local address, quoting the segment as the server sent it, to the
/// server; about a UDP datagram, or a sequence number not in flight, it
/// goes nowhere.
#[test]
fn errors_from_the_clients_side_reach_the_server_in_its_family() {
    let mut seg = tcp(8080, 0, tcpf::ACK | 0x08);
    seg.extend_from_slice(&[4u8; 100]);
    // 6 -> 4: Packet Too Big from the IPv6 client's path.
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let (_, out) = send(&mut w, ipv6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 6, 64, &tcp(40000, 84, tcpf::SYN)));
    let srv = SRV.iter().position(|s| out[30..34] == s[..]).unwrap();
    let lport = port(&out, 34);
    let (v, _) = send(&mut w, frame(SERVER_MAC[srv], IN_MAC, SRV[srv], SELF_IN, 6, &tcp(8080, lport, tcpf::SYN | tcpf::ACK), true));
    assert_eq!(v, Verdict::Forward(OUT));
    let mut data = seg.clone();
    data[2..4].copy_from_slice(&lport.to_be_bytes());
    let (v, to_client) = send(&mut w, frame(SERVER_MAC[srv], IN_MAC, SRV[srv], SELF_IN, 6, &data, true));
    assert_eq!(v, Verdict::Forward(OUT));
    let mut m = vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x78];
    m.extend_from_slice(&to_client[14..]);
    let router6: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_00fe;
    let (v, err) = send(&mut w, ipv6_frame(CLIENT_MAC, OUT_MAC, router6, VIP6, 58, 64, &m));
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!((&err[0..6], &err[6..12], &err[12..14]), (&SERVER_MAC[srv].0[..], &IN_MAC.0[..], &[8u8, 0][..]), "to the server's MAC");
    assert_eq!((&err[26..30], &err[30..34]), (&SELF_IN[..], &SRV[srv][..]), "from the local address to the server");
    assert_eq!((err[34], err[35], port(&err, 40)), (3, 4, 1400 - 20));
    assert_eq!(checksum::checksum(&err[34..]), 0);
    assert_eq!((&err[42 + 12..42 + 16], &err[42 + 16..42 + 20]), (&SRV[srv][..], &SELF_IN[..]), "quoting what the server sent");
    assert_eq!((port(&err, 62), port(&err, 64)), (8080, lport));
    // A sequence number not in flight: a blind guess.
    let mut blind = to_client.clone();
    blind[58..62].copy_from_slice(&0x5000_0000u32.to_be_bytes());
    let mut m = vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x78];
    m.extend_from_slice(&blind[14..]);
    assert_eq!(send(&mut w, ipv6_frame(CLIENT_MAC, OUT_MAC, router6, VIP6, 58, 64, &m)).0, Verdict::Drop(DropReason::IcmpOutOfWindow));

    // 4 -> 6: fragmentation needed from the IPv4 client's path.
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let (_, out) = send(&mut w, frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 85, tcpf::SYN), true));
    let server = a6(&out, 38);
    let srv = SRV6.iter().position(|s| *s == server).unwrap();
    let lport = port(&out, 54);
    let (v, _) = send(&mut w, ipv6_frame(SERVER_MAC[srv], IN_MAC, server, SELF6_IN, 6, 64, &tcp(8080, lport, tcpf::SYN | tcpf::ACK)));
    assert_eq!(v, Verdict::Forward(OUT));
    let mut data = seg.clone();
    data[2..4].copy_from_slice(&lport.to_be_bytes());
    let (v, to_client) = send(&mut w, ipv6_frame(SERVER_MAC[srv], IN_MAC, server, SELF6_IN, 6, 64, &data));
    assert_eq!(v, Verdict::Forward(OUT));
    let mut icmp = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&to_client[14..14 + 20 + 28]);
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let (v, err) = send(&mut w, frame(CLIENT_MAC, OUT_MAC, [192, 0, 2, 254], VIP, 1, &icmp, false));
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!((&err[0..6], &err[12..14]), (&SERVER_MAC[srv].0[..], &[0x86u8, 0xdd][..]));
    assert_eq!((a6(&err, 22), a6(&err, 38)), (SELF6_IN, server), "from the local address to the server");
    let m = crate::wire::icmpv6::Icmpv6Packet::new_checked(&err[54..]).unwrap();
    assert_eq!((m.msg_type(), m.mtu()), (2, 1400 + 20));
    assert!(m.verify_checksum(SELF6_IN.into(), server.into()));
    assert_eq!((a6(&err, 62 + 8), a6(&err, 62 + 24)), (server, SELF6_IN), "quoting what the server sent");
    assert_eq!((port(&err, 102), port(&err, 104)), (8080, lport));
}

/// What the review found (2026-12-07): an ICMP error whose headers' options
/// are longer than IPv6's 40 bytes, and a Packet Too Big behind an
/// extension header, are refused by name (no panic); a too-big datagram
/// from a broadcast source is not answered.
#[test]
fn malformed_errors_and_odd_sources_are_refused_by_name() {
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let (_, out) = send(&mut w, ipv6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 6, 64, &tcp(40000, 84, tcpf::SYN)));
    let srv = SRV.iter().position(|s| out[30..34] == s[..]).unwrap();
    // The quote with 4 bytes of options (hl 24), the error with 40 (hl 60).
    let mut q = out[14..14 + 20].to_vec();
    q.extend_from_slice(&[1, 1, 1, 0]);
    q[0] = 0x46;
    q.extend_from_slice(&out[34..34 + 8]);
    q[10] = 0;
    q[11] = 0;
    let c = checksum::checksum(&q[..24]);
    q[10..12].copy_from_slice(&c.to_be_bytes());
    let mut icmp = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&q);
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = frame(SERVER_MAC[srv], IN_MAC, [198, 51, 100, 254], SELF_IN, 1, &icmp, false);
    // Outer options: 40 bytes of NOPs.
    let mut g = f[..34].to_vec();
    g.extend_from_slice(&[1u8; 40]);
    g.extend_from_slice(&f[34..]);
    g[14] = 0x4f;
    let total = (g.len() - 14) as u16;
    g[16..18].copy_from_slice(&total.to_be_bytes());
    g[24] = 0;
    g[25] = 0;
    let c = checksum::checksum(&g[14..74]);
    g[24..26].copy_from_slice(&c.to_be_bytes());
    f = g;
    assert_eq!(send(&mut w, f).0, Verdict::Drop(DropReason::XlateHeaders));
    // A Packet Too Big behind a hop-by-hop header, 4 -> 6.
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let (_, out) = send(&mut w, frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 85, tcpf::SYN), true));
    let server = a6(&out, 38);
    let srv = SRV6.iter().position(|s| *s == server).unwrap();
    let mut m = vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x00];
    m.extend_from_slice(&out[14..]);
    let mut hbh = vec![58u8, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&m);
    let router6: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_00fe;
    let mut ptb = ipv6_frame(SERVER_MAC[srv], IN_MAC, router6, SELF6_IN, 0, 64, &hbh);
    // The ICMPv6 checksum over the message behind the hop-by-hop header.
    let ps = crate::wire::ipv6::pseudo_header(router6.into(), SELF6_IN.into(), 58, m.len() as u32);
    let at = 54 + 8;
    let c = !checksum::fold(checksum::sum(&ptb[at..], ps));
    ptb[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
    assert_eq!(send(&mut w, ptb).0, Verdict::Drop(DropReason::XlateHeaders));
    // 1500 bytes with DF from 255.255.255.255 to the UDP VIP over IPv6.
    let mut w = worker_on(snapshot_xlate(), 64, 0, 1, true);
    let mut big = frame(CLIENT_MAC, OUT_MAC, [255, 255, 255, 255], VIP, 17, &crate::testkit::udp_datagram(40000, 87, &[0u8; 1472]), true);
    big[20] |= 0x40;
    big[24] = 0;
    big[25] = 0;
    let c = checksum::checksum(&big[14..34]);
    big[24..26].copy_from_slice(&c.to_be_bytes());
    let v = send(&mut w, big).0;
    assert!(matches!(v, Verdict::Drop(_)), "not answered to a broadcast source: {v:?}");
}

/// With several workers, a translated connection's IPv4 reply is owned by
/// the worker of its local address and port (the port's RSS share), even
/// when its server is also a `source-ip` persistent NAT service's (whose
/// replies are owned by the client's prefix).
#[test]
fn a_translated_reply_is_owned_by_its_local_port_whatever_nat_persistence_says() {
    let mut s = snapshot_xlate();
    s.services[0].persistence = Some(crate::lb::Persistence { kind: crate::lb::PersistKind::SourceIp, prefix: 24, timeout: 100, group: 0, keep_on_down: false });
    s.persist_records = 64;
    s.index();
    assert!(s.reply_owner_prefix(ip(SRV[0]), 8080, 6).is_some(), "the server's NAT replies are owned by prefix");
    let owners = crate::pipeline::Owners::new(4, 0x5eed);
    for lport in [32768u16, 33000, 40000, 49151] {
        let o = super::super::owner::owner(&s, &owners, ip(SRV[0]), 8080, ip(SELF_IN), lport, 6);
        assert_eq!(o, owners.worker(ip(SELF_IN), lport), "port {lport}");
    }
}
