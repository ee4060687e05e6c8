//! ICMP errors about direct-server-return, tunnelled and SYN-proxied
//! connections: the frame in, the frame out (katran's fixture style).

use super::super::tests::{addr, dsr_l2_snapshot, dsr_tunnel_snapshot, frame, pkt, port, syn, tcp, worker_on, CLIENT, CLIENT_MAC, IN, IN_MAC, OUT, OUT_MAC, SERVER_MAC, SRV, VIP};
use super::super::*;
use crate::forward::TunnelKind;
use crate::wire::checksum;
use crate::wire::ethernet::EthernetAddress;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::tcp::flags as tcpf;

/// A router on the client's side, and one on the servers'.
const ROUTER_OUT: [u8; 4] = [192, 0, 2, 1];
const ROUTER_OUT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x01]);
const ROUTER_IN: [u8; 4] = [198, 51, 100, 254];
const ROUTER_IN_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);

/// ICMP destination unreachable `code` with next-hop `mtu` (RFC 1191),
/// quoting `quote`, from `src` to `dst`, TOS 0xc0 as routers send it.
fn unreachable(mac: EthernetAddress, to_mac: EthernetAddress, src: [u8; 4], dst: [u8; 4], code: u8, mtu: u16, quote: &[u8]) -> Vec<u8> {
    let mut m = vec![3, code, 0, 0, 0, 0];
    m.extend_from_slice(&mtu.to_be_bytes());
    m.extend_from_slice(quote);
    let c = checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = frame(mac, to_mac, src, dst, 1, &m, false);
    f[15] = 0xc0;
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    f
}

/// The server's SYN-ACK as a DSR server sends it: from the VIP, straight
/// to the client.
fn dsr_reply() -> Vec<u8> {
    frame(SERVER_MAC[0], ROUTER_OUT_MAC, VIP, CLIENT, 6, &tcp(80, 40000, tcpf::SYN | tcpf::ACK), true)
}

/// A client-side router's fragmentation needed about the DSR server's
/// reply (it quotes the VIP as source), to the VIP, i.e. to the box.
fn frag_needed_about_reply() -> Vec<u8> {
    unreachable(ROUTER_OUT_MAC, OUT_MAC, ROUTER_OUT, VIP, 4, 1400, &dsr_reply()[14..14 + 28])
}

/// `dsr-l2`: the error goes to the server by MAC alone, every IP byte as
/// it came (the quote names the server's own socket: VIP:80 -> client).
#[test]
fn dsr_l2_errors_about_replies_reach_the_server_untouched() {
    let mut w = worker_on(dsr_l2_snapshot(), 64, 0, 1, true);
    assert_eq!(w.process(&mut syn(40000, 80), OUT, false), Verdict::Forward(IN));
    let sent = frag_needed_about_reply();
    let mut f = sent.clone();
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let mut want = sent;
    want[0..6].copy_from_slice(&SERVER_MAC[0].0);
    want[6..12].copy_from_slice(&IN_MAC.0);
    assert_eq!(f, want);
}

/// `dsr-dscp`: to the server's address with the VIP's code (the server
/// restores the VIP from it), TTL down; the quote untouched.
#[test]
fn dsr_dscp_errors_about_replies_go_to_the_server_marked() {
    let mut s = dsr_l2_snapshot();
    s.services[0].forwarding = Forwarding::DsrDscp;
    s.services[0].dscp = 46;
    let mut w = worker_on(s, 64, 0, 1, true);
    assert_eq!(w.process(&mut syn(40000, 80), OUT, false), Verdict::Forward(IN));
    let sent = frag_needed_about_reply();
    let mut f = sent.clone();
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let mut want = sent;
    want[0..6].copy_from_slice(&SERVER_MAC[0].0);
    want[6..12].copy_from_slice(&IN_MAC.0);
    want[15] = 46 << 2;
    want[22] -= 1;
    want[30..34].copy_from_slice(&SRV[0]);
    Ipv4Packet::new_unchecked(&mut want[14..]).fill_checksum();
    assert_eq!(f, want, "only the outer destination, DSCP, TTL and header checksum change");
}

/// `dsr-tunnel`: the error goes inside the connection's own tunnel (the
/// outer header its packets have), untouched.
#[test]
fn dsr_tunnel_errors_about_replies_go_through_the_tunnel() {
    for kind in [TunnelKind::Ipip, TunnelKind::Gre, TunnelKind::Gue] {
        let mut w = worker_on(dsr_tunnel_snapshot(kind), 64, 0, 1, true);
        let mut data = pkt(syn(40000, 80));
        assert_eq!(w.process_packet(&mut data, false), Verdict::Forward(IN));
        let at = 14 + kind.overhead();
        let sent = frag_needed_about_reply();
        let mut e = pkt(sent.clone());
        assert_eq!(w.process_packet(&mut e, false), Verdict::Forward(IN), "{kind:?}");
        let o = &e.data;
        assert_eq!(&o[at..], &sent[14..], "{kind:?}: the error untouched inside");
        assert_eq!(&o[..12], &data.data[..12], "{kind:?}: to the server's MAC");
        let outer = |f: &[u8]| (addr(f, 26), addr(f, 30), port(f, 34), port(f, 36), f[23]);
        let want = if kind == TunnelKind::Gue { outer(&data.data) } else { (outer(&data.data).0, outer(&data.data).1, 0, 0, data.data[23]) };
        let got = if kind == TunnelKind::Gue { outer(o) } else { (addr(o, 26), addr(o, 30), 0, 0, o[23]) };
        assert_eq!(got, want, "{kind:?}: the connection's outer header");
        let ip = Ipv4Packet::new_checked(&o[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len() as usize, kind.overhead() + sent.len() - 14);
    }
}

/// RFC 2003 §4: fragmentation needed from a router inside a tunnel
/// quotes the outer header the box sent; the box relays it to the
/// client, from the VIP, with the MTU less the encapsulation, as if it
/// had found the packet too big itself. A quote too short for the
/// client's header, another error, and an outer header the box did not
/// send for that connection (a forgery) are not relayed.
#[test]
fn tunnel_errors_are_relayed_to_the_client_with_the_inner_mtu() {
    for kind in [TunnelKind::Ipip, TunnelKind::Gre, TunnelKind::Gue] {
        let mut w = worker_on(dsr_tunnel_snapshot(kind), 64, 0, 1, true);
        let client_syn = syn(40000, 80);
        let mut t = pkt(client_syn.clone());
        assert_eq!(w.process_packet(&mut t, false), Verdict::Forward(IN));
        let tunnelled = t.data;
        let outer_src = addr(&tunnelled, 26);
        let error = |quote: &[u8], code: u8| pkt(unreachable(ROUTER_IN_MAC, IN_MAC, ROUTER_IN, outer_src, code, 1400, quote));
        let mut e = error(&tunnelled[14..], 4);
        e.port = IN;
        assert_eq!(w.process_packet(&mut e, false), Verdict::Forward(OUT), "{kind:?}");
        let mtu = 1400 - kind.overhead() as u16;
        let mut want = client_syn.clone();
        want.resize(crate::forward::frag_needed_len(14, 20), 0);
        let len = crate::forward::build_frag_needed(&mut want, 14, 20, mtu, OUT_MAC).unwrap();
        want.truncate(len);
        assert_eq!(e.data, want, "{kind:?}: fragmentation needed from the VIP to the client, quoting its packet");
        assert_eq!((addr(&e.data, 26), addr(&e.data, 30), &e.data[0..6]), (VIP, CLIENT, &CLIENT_MAC.0[..]));
        assert_eq!(port(&e.data, 40), mtu);
        assert_eq!(w.counters().frag_needed.get(), 1);

        let short = &tunnelled[14..14 + kind.overhead() + 8];
        assert_eq!(w.process_packet(&mut error(short, 4), false), Verdict::Drop(DropReason::IcmpTunnelNotRelayed), "{kind:?}: quote too short");
        assert_eq!(w.process_packet(&mut error(&tunnelled[14..], 1), false), Verdict::Drop(DropReason::IcmpTunnelNotRelayed), "{kind:?}: host unreachable");
        let mut forged = tunnelled[14..].to_vec();
        forged[15] ^= 0x01; // another source of tunnel_source
        assert_eq!(w.process_packet(&mut error(&forged, 4), false), Verdict::Drop(DropReason::IcmpNoFlow), "{kind:?}: not the box's outer header");
        assert_eq!(w.counters().frag_needed.get(), 1);
    }
}

/// A SYN-proxied connection: the server's segments reach the client in
/// the cookie's sequence space; an error about one quotes that, and goes
/// back to the server with the server's own sequence number (its TCP
/// drops an error quoting a number it never sent).
#[test]
fn errors_about_proxied_segments_quote_the_servers_sequence_number() {
    let mut snap = super::super::tests::snapshot();
    snap.services[0].syn_proxy = crate::state::snapshot::SynProxy::On;
    let mut w = worker_on(snap, 64, 0, 1, true);
    let (isn, s_isn) = (0x1000u32, 0x7000_0000u32);
    let seg = |sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]| {
        let mut t = tcp(sport, dport, flags);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t.extend_from_slice(payload);
        t
    };
    let mut p = pkt(frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::SYN, isn, 0, b""), true));
    assert_eq!(w.process_packet(&mut p, false), Verdict::Forward(OUT), "the box answers the SYN");
    let cookie = u32::from_be_bytes(p.data[38..42].try_into().unwrap());
    let mut ack = pkt(frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::ACK, isn + 1, cookie + 1, b""), true));
    assert_eq!(w.process_packet(&mut ack, false), Verdict::Forward(IN), "the client's SYN to a server");
    let s = SRV.iter().position(|a| *a == addr(&ack.data, 30)).unwrap();
    let mut synack = pkt(frame(SERVER_MAC[s], IN_MAC, SRV[s], CLIENT, 6, &seg(8080, 40000, tcpf::SYN | tcpf::ACK, s_isn, isn + 1, b""), true));
    synack.port = IN;
    assert_eq!(w.process_packet(&mut synack, false), Verdict::Forward(IN), "the box acknowledges it");
    let mut data = frame(SERVER_MAC[s], IN_MAC, SRV[s], CLIENT, 6, &seg(8080, 40000, tcpf::ACK | tcpf::PSH, s_isn + 1, isn + 1, &[0x61; 100]), true);
    assert_eq!(w.process(&mut data, IN, false), Verdict::Forward(OUT));
    assert_eq!(u32::from_be_bytes(data[38..42].try_into().unwrap()), cookie + 1, "the client's view");

    let mut e = unreachable(ROUTER_OUT_MAC, OUT_MAC, ROUTER_OUT, VIP, 4, 1400, &data[14..14 + 40]);
    assert_eq!(w.process(&mut e, OUT, false), Verdict::Forward(IN));
    let q = 42;
    assert_eq!((&e[0..6], addr(&e, 30)), (&SERVER_MAC[s].0[..], SRV[s]), "to the server");
    assert_eq!((addr(&e, q + 12), port(&e, q + 20), addr(&e, q + 16), port(&e, q + 22)), (SRV[s], 8080, CLIENT, 40000), "the quote as the server sent it");
    assert_eq!(u32::from_be_bytes(e[q + 24..q + 28].try_into().unwrap()), s_isn + 1, "in the server's sequence space");
    assert_eq!(checksum::checksum(&e[34..]), 0, "ICMP checksum");
    assert_eq!(checksum::checksum(&e[q..q + 20]), 0, "quoted header checksum");
    assert_eq!(checksum::checksum(&e[14..34]), 0);
}

/// With two workers an error about a tunnel packet belongs to the worker
/// that owns the client's connection (its outer header, addressed to a
/// tunnel source, says nothing of it): handed there, relayed there.
#[test]
fn a_tunnel_error_is_handed_to_the_owner_of_the_clients_connection() {
    let kind = TunnelKind::Gre;
    let mut w0 = worker_on(dsr_tunnel_snapshot(kind), 64, 0, 2, true);
    let mut w1 = worker_on(dsr_tunnel_snapshot(kind), 64, 1, 2, true);
    // A client port whose connection worker 1 owns.
    let sport = (40000..40100).find(|&p| w0.process(&mut syn(p, 80), OUT, false) == Verdict::Handoff(1)).expect("some port owned by worker 1");
    let mut t = pkt(syn(sport, 80));
    assert_eq!(w1.process_packet(&mut t, true), Verdict::Forward(IN));
    let e = unreachable(ROUTER_IN_MAC, IN_MAC, ROUTER_IN, addr(&t.data, 26), 4, 1400, &t.data[14..]);
    let mut at0 = pkt(e.clone());
    assert_eq!(w0.process_packet(&mut at0, false), Verdict::Handoff(1));
    assert_eq!(at0.data, e, "handed over untouched");
    let mut at1 = pkt(e);
    assert_eq!(w1.process_packet(&mut at1, true), Verdict::Forward(OUT));
    assert_eq!((addr(&at1.data, 26), addr(&at1.data, 30), port(&at1.data, 40)), (VIP, CLIENT, 1400 - 24));
}

/// Relayed errors are answers the box sends: within `icmp_rate` (here
/// the default burst of 50 at one instant), the rest dropped by name and
/// counted as limited (RFC 1812 §4.3.2.8).
#[test]
fn relayed_tunnel_errors_are_rate_limited() {
    let mut w = worker_on(dsr_tunnel_snapshot(TunnelKind::Ipip), 64, 0, 1, true);
    let mut t = pkt(syn(40000, 80));
    assert_eq!(w.process_packet(&mut t, false), Verdict::Forward(IN));
    let e = unreachable(ROUTER_IN_MAC, IN_MAC, ROUTER_IN, addr(&t.data, 26), 4, 1400, &t.data[14..]);
    let verdicts: Vec<Verdict> = (0..60).map(|_| w.process_packet(&mut pkt(e.clone()), false)).collect();
    assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Forward(OUT)).count(), 50);
    assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Drop(DropReason::IcmpTunnelNotRelayed)).count(), 10);
    assert_eq!((w.counters().frag_needed.get(), w.counters().answers_limited.get()), (50, 10));
}

/// RFC 5927 §4.1: an error about a server's segment to the client goes on
/// to the server only when it quotes a sequence number the server has
/// sent and the client not yet acknowledged; a blind attacker guessing
/// one (to make the server lower its MSS, or to break a connection with
/// a hard error) is dropped as `icmp-out-of-window`.
#[test]
fn errors_quoting_a_sequence_number_outside_the_servers_window_are_dropped() {
    let mut w = worker_on(super::super::tests::snapshot(), 64, 0, 1, true);
    let s_isn = 0x5000_0000u32;
    let seg = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, data: usize| {
        let mut t = tcp(sport, dport, flags);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t.extend(std::iter::repeat_n(0x61, data));
        let mac = if src == CLIENT { CLIENT_MAC } else { SERVER_MAC[0] };
        frame(mac, if src == CLIENT { OUT_MAC } else { IN_MAC }, src, dst, 6, &t, true)
    };
    let mut f = seg(CLIENT, VIP, 40000, 80, tcpf::SYN, 1000, 0, 0);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    for (mut f, port, want) in [
        (seg(SRV[0], CLIENT, 8080, 40000, tcpf::SYN | tcpf::ACK, s_isn, 1001, 0), IN, OUT),
        (seg(CLIENT, VIP, 40000, 80, tcpf::ACK, 1001, s_isn + 1, 0), OUT, IN),
        // 1000 bytes out, the first 500 acknowledged.
        (seg(SRV[0], CLIENT, 8080, 40000, tcpf::ACK, s_isn + 1, 1001, 1000), IN, OUT),
        (seg(CLIENT, VIP, 40000, 80, tcpf::ACK, 1001, s_isn + 501, 0), OUT, IN),
    ] {
        assert_eq!(w.process(&mut f, port, false), Verdict::Forward(want));
    }
    let error = |seq: u32| {
        let quoted = seg(VIP, CLIENT, 80, 40000, tcpf::ACK, seq, 1001, 0);
        unreachable(ROUTER_OUT_MAC, OUT_MAC, ROUTER_OUT, VIP, 4, 1400, &quoted[14..14 + 28])
    };
    for (seq, ok) in [(s_isn + 501, true), (s_isn + 1001, true), (s_isn + 700, true), (s_isn + 500, false), (s_isn + 1, false), (s_isn + 1002, false), (s_isn ^ 0x8000_0000, false)] {
        let want = if ok { Verdict::Forward(IN) } else { Verdict::Drop(DropReason::IcmpOutOfWindow) };
        assert_eq!(w.process(&mut error(seq), OUT, false), want, "quoted seq ISN + {}", seq.wrapping_sub(s_isn));
    }
}

/// Review (IPv6 stages) 4, for IPv4 too: an error whose destination is
/// not the sender of the datagram it quotes is not sent on (the box would
/// reflect it from the VIP to any address).
#[test]
fn an_error_not_to_its_quotes_sender_is_not_reflected() {
    let mut w = worker_on(dsr_l2_snapshot(), 64, 0, 1, true);
    assert_eq!(w.process(&mut syn(40000, 80), OUT, false), Verdict::Forward(IN));
    let victim = [203, 0, 113, 77];
    let mut f = unreachable(ROUTER_OUT_MAC, OUT_MAC, ROUTER_OUT, victim, 4, 1400, &dsr_reply()[14..14 + 28]);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Drop(DropReason::IcmpBadEmbedded));
}
