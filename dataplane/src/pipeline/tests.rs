//! Packet-in, packet-out fixtures for the pipeline (katran's
//! `lib/testing/fixtures` style): a frame, the verdict, and the frame that
//! leaves, with checksums checked by full recomputation.

use super::*;
use crate::state::rcu::rcu;
use crate::lb::{RealServer, Schedule};
use crate::state::snapshot::{PortView, VirtualService};
use crate::wire::checksum;
use crate::wire::ethernet::EthernetAddress;
use crate::conntrack::FlowState;
use crate::wire::tcp::flags as tcpf;

pub(super) const OUT: u16 = 0; // client side
pub(super) const IN: u16 = 1; // server side
/// A third link: VLAN 100 on the client side's port.
pub(super) const OUT_VLAN100: u16 = 2;
pub(super) const OUT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa0]);
pub(super) const IN_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa1]);
pub(super) const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x10]);
pub(super) const SERVER_MAC: [EthernetAddress; 2] = [EthernetAddress([2, 0, 0, 0, 0, 0x11]), EthernetAddress([2, 0, 0, 0, 0, 0x12])];

pub(super) fn ip(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

pub(super) const CLIENT: [u8; 4] = [192, 0, 2, 10];
pub(super) const VIP: [u8; 4] = [192, 0, 2, 100];
pub(super) const SELF_OUT: [u8; 4] = [192, 0, 2, 2];
pub(super) const SELF_IN: [u8; 4] = [198, 51, 100, 1];
pub(super) const SRV: [[u8; 4]; 2] = [[198, 51, 100, 11], [198, 51, 100, 12]];

/// One NAT service on VIP:80/tcp, one full-NAT on VIP:81/tcp, one NAT on
/// VIP:53/udp, each over both servers, round robin.
pub(super) fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.ports = vec![Some(PortView { mac: OUT_MAC, self_ip: ip(SELF_OUT), netmask: 0xffff_ff00, mtu: 1500, port: OUT, vlan: 0, route: false, ..Default::default() }), Some(PortView { mac: IN_MAC, self_ip: ip(SELF_IN), netmask: 0xffff_ff00, mtu: 1500, port: IN, vlan: 0, route: false, ..Default::default() }), Some(PortView { mac: OUT_MAC, self_ip: ip([203, 0, 113, 2]), netmask: 0xffff_ff00, mtu: 1500, port: OUT, vlan: 100, route: false, ..Default::default() })];
    s.self_ips = vec![ip(SELF_OUT), ip(SELF_IN), ip([203, 0, 113, 2])];
    for (vi, (port, proto, fwd)) in [(80u16, 6u8, Forwarding::Nat), (81, 6, Forwarding::FullNat), (53, 17, Forwarding::Nat)].into_iter().enumerate() {
        let first = s.servers.len() as u16;
        for (i, srv) in SRV.iter().enumerate() {
            s.servers.push(RealServer { ip: ip(*srv), port: 8080, weight: 1, enabled: true, tx_port: IN, nexthop: i as u16, vs: vi as u16, reset: false, max_connections: 0, priority: 0, epoch: 0, sticky_only: false, ip6: [0; 16] });
        }
        let mut vs = VirtualService::test(fwd);
        vs.ip = ip(VIP);
        vs.port = port;
        vs.proto = proto;
        vs.members = vec![first, first + 1].into_boxed_slice();
        vs.schedule = Schedule::round_robin(2);
        if fwd == Forwarding::FullNat {
            vs.local_addrs = vec![ip(SELF_IN)].into_boxed_slice();
        }
        s.services.push(vs);
    }
    s.index();
    s
}

fn worker_with(flows: u32, id: u16, workers: u16, resolved: bool) -> Worker {
    worker_on(snapshot(), flows, id, workers, resolved)
}

pub(super) fn worker_on(snap: Snapshot, flows: u32, id: u16, workers: u16, resolved: bool) -> Worker {
    let (publisher, mut readers) = rcu(Box::new(snap), 1);
    std::mem::forget(publisher); // keep the snapshot alive for the test
    let n = Arc::new(Neighbors::new(4));
    if resolved {
        n.set(0, SERVER_MAC[0]);
        n.set(1, SERVER_MAC[1]);
    }
    Worker::new(WorkerConfig { id, workers, flows, timeouts: Timeouts::default(), hash_key: 0, sync_refresh: 0, ..WorkerConfig::default() }, readers.remove(0), n)
}

fn worker() -> Worker {
    worker_with(64, 0, 1, true)
}

pub(super) use crate::testkit::ipv4_frame as frame;

pub(super) fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    crate::testkit::tcp_header(sport, dport, flags, 65535)
}

pub(super) fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    crate::testkit::udp_datagram(sport, dport, payload)
}

pub(super) fn syn(sport: u16, dport: u16) -> Vec<u8> {
    frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(sport, dport, tcpf::SYN), true)
}

/// Checks the frame's IPv4 and TCP/UDP checksums by recomputation.
pub(super) fn assert_checksums(f: &[u8]) {
    assert!(crate::testkit::checksums_ok(f), "IPv4 and TCP/UDP checksums equal a full recomputation");
}

pub(super) fn addr(f: &[u8], at: usize) -> [u8; 4] {
    [f[at], f[at + 1], f[at + 2], f[at + 3]]
}

pub(super) fn port(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

#[test]
fn nat_rewrites_both_directions_with_valid_checksums() {
    let mut w = worker();
    let mut f = syn(40000, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(&f[0..6], &SERVER_MAC[0].0, "to the server's MAC");
    assert_eq!(&f[6..12], &IN_MAC.0, "from the inside port");
    assert_eq!(addr(&f, 26), CLIENT, "NAT keeps the client source");
    assert_eq!(addr(&f, 30), SRV[0]);
    assert_eq!((port(&f, 34), port(&f, 36)), (40000, 8080));
    assert_eq!(f[22], 63, "TTL decremented");
    assert_checksums(&f);

    let mut r = frame(SERVER_MAC[0], IN_MAC, SRV[0], CLIENT, 6, &tcp(8080, 40000, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(OUT));
    assert_eq!(&r[0..6], &CLIENT_MAC.0, "back to the MAC the client's packets came from");
    assert_eq!(&r[6..12], &OUT_MAC.0);
    assert_eq!(addr(&r, 26), VIP);
    assert_eq!(addr(&r, 30), CLIENT);
    assert_eq!((port(&r, 34), port(&r, 36)), (80, 40000));
    assert_checksums(&r);

    let c = w.counters();
    assert_eq!(c.services[0].conns_new.get(), 1);
    assert_eq!(c.services[0].conns_active.get(), 1);
    assert_eq!((c.services[0].in_pkts.get(), c.services[0].out_pkts.get()), (1, 1));
    assert_eq!(c.servers[0].conns_active.get(), 1);
    assert_eq!(w.table().get(0).map(|f| f.state), Some(FlowState::SynRecv));

    // The next connection goes to the other server (round robin).
    let mut f2 = syn(40001, 80);
    assert_eq!(w.process(&mut f2, OUT, false), Verdict::Forward(IN));
    assert_eq!(addr(&f2, 30), SRV[1]);
}

#[test]
fn full_nat_rewrites_source_to_a_local_address_and_back() {
    let mut w = worker_with(64, 1, 2, true);
    // Pick a client port this worker (1 of 2) owns.
    let snap = snapshot();
    let sport = (40000..41000).find(|p| owner(&snap, &Owners::new(2, 0), ip(CLIENT), *p, ip(VIP), 81, 6) == 1).unwrap();
    let mut f = syn(sport, 81);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(addr(&f, 26), SELF_IN, "source is the local address");
    let lport = port(&f, 34);
    assert_eq!(Owners::new(2, 0).worker(ip(SELF_IN), lport), 1, "a local port whose replies RSS queues on this worker");
    assert_eq!(addr(&f, 30), SRV[0]);
    assert_checksums(&f);

    let mut r = frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 6, &tcp(8080, lport, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(owner(&snap, &Owners::new(2, 0), ip(SRV[0]), 8080, ip(SELF_IN), lport, 6), 1, "the reply's owner is the same worker");
    assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(OUT));
    assert_eq!((addr(&r, 26), addr(&r, 30)), (VIP, CLIENT));
    assert_eq!((port(&r, 34), port(&r, 36)), (81, sport));
    assert_checksums(&r);

    // A packet owned by worker 0 is handed over, untouched.
    let other = (40000..41000).find(|p| owner(&snap, &Owners::new(2, 0), ip(CLIENT), *p, ip(VIP), 81, 6) == 0).unwrap();
    let mut h = syn(other, 81);
    let before = h.clone();
    assert_eq!(w.process(&mut h, OUT, false), Verdict::Handoff(0));
    assert_eq!(h, before);
    assert_eq!(w.process(&mut h, OUT, true), Verdict::Forward(IN), "once handed over, processed");
}

#[test]
fn udp_flow_and_icmp_error_translation() {
    let mut w = worker();
    let mut q = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5000, 53, b"query"), true);
    assert_eq!(w.process(&mut q, OUT, false), Verdict::Forward(IN));
    assert_eq!((addr(&q, 30), port(&q, 36)), (SRV[0], 8080));
    assert_checksums(&q);

    // The server answers "port unreachable", quoting the datagram it got.
    let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&q[14..14 + 28]);
    let c = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut e = frame(SERVER_MAC[0], IN_MAC, SRV[0], CLIENT, 1, &icmp, false);
    assert_eq!(w.process(&mut e, IN, false), Verdict::Forward(OUT));
    assert_eq!(&e[0..6], &CLIENT_MAC.0);
    assert_eq!((addr(&e, 26), addr(&e, 30)), (VIP, CLIENT), "outer source is the VIP");
    let inner = 34 + 8;
    assert_eq!((addr(&e, inner + 12), addr(&e, inner + 16)), (CLIENT, VIP), "embedded header as the client sent it");
    assert_eq!((port(&e, inner + 20), port(&e, inner + 22)), (5000, 53));
    assert_eq!(checksum::checksum(&e[14..34]), 0);
    assert_eq!(checksum::checksum(&e[inner..inner + 20]), 0, "embedded header checksum");
    assert_eq!(checksum::checksum(&e[34..]), 0, "ICMP checksum");

    // The same error with one quoted byte flipped: dropped by name, not
    // sent on with a fresh checksum.
    let mut bad = icmp.clone();
    bad[8 + 26] ^= 0x40;
    let mut e = frame(SERVER_MAC[0], IN_MAC, SRV[0], CLIENT, 1, &bad, false);
    assert_eq!(w.process(&mut e, IN, false), Verdict::Drop(DropReason::IcmpBadChecksum));
}

#[test]
fn rst_closes_the_entry_and_its_timer_frees_it() {
    let mut w = worker();
    let mut f = syn(40000, 80);
    w.shard.now = 5;
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(w.table().len(), 1);
    let mut r = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::RST), true);
    assert_eq!(w.process(&mut r, OUT, false), Verdict::Forward(IN), "the RST itself is forwarded");
    let state = |w: &Worker| w.table().iter().next().map(|(_, f)| f.state);
    assert_eq!(state(&w), Some(FlowState::Close));
    w.shard.expire(w.snapshot.get(), 5 + Timeouts::default().tcp_close - 1);
    assert_eq!(w.table().len(), 1);
    w.shard.expire(w.snapshot.get(), 5 + Timeouts::default().tcp_close);
    assert_eq!(w.table().len(), 0);
    let c = w.counters();
    assert_eq!((c.flows.get(), c.services[0].conns_active.get(), c.servers[0].conns_active.get()), (0, 0, 0));
}

#[test]
fn idle_entries_expire_after_their_timeout() {
    let mut w = worker();
    let mut f = syn(40000, 80);
    w.shard.now = 10;
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let syn_timeout = Timeouts::default().tcp_syn;
    w.shard.expire(w.snapshot.get(), 10 + syn_timeout - 1);
    assert_eq!(w.table().len(), 1);
    w.shard.expire(w.snapshot.get(), 10 + syn_timeout);
    assert_eq!(w.table().len(), 0);
    assert_eq!(w.counters().services[0].conns_active.get(), 0);
}

/// A packet that finds its entry past the deadline before the sweep came
/// by (`conntrack::sweep`) does not revive it: the entry goes as the sweep
/// would have removed it (counters and all), and the packet is judged
/// afresh: here a new SYN, a new connection.
#[test]
fn a_lookup_after_the_deadline_finds_the_entry_gone() {
    let mut w = worker();
    w.shard.now = 10;
    let mut f = syn(40000, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let first = w.table().iter().next().map(|(id, _)| id);
    let syn_timeout = Timeouts::default().tcp_syn;
    // The same SYN again just before the deadline: the same entry.
    w.shard.now = 10 + syn_timeout - 1;
    let mut again = syn(40000, 80);
    assert_eq!(w.process(&mut again, OUT, false), Verdict::Forward(IN));
    assert_eq!(w.table().len(), 1);
    let deadline = w.table().iter().next().map(|(_, f)| f.expire()).unwrap_or(0);
    // An ACK at the deadline, no sweep call since: the entry is gone and
    // the ACK makes none (an ACK opens nothing).
    w.shard.now = deadline;
    let mut ack = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::ACK), true);
    assert_ne!(w.process(&mut ack, OUT, false), Verdict::Forward(IN));
    assert_eq!(w.table().len(), 0);
    assert_eq!(w.counters().services[0].conns_active.get(), 0);
    // A new SYN now opens a new entry.
    let mut f = syn(40000, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(w.table().len(), 1);
    assert!(first.is_some());
}

/// Review of the sweep, M1: with NAT, a client's connection to another
/// virtual port of the same server:port has the reply key of its older
/// one; once the older one is past its deadline, the new one is not
/// refused while the sweep has yet to reach it (it was, for up to a lap).
#[test]
fn an_expired_unswept_entry_does_not_block_its_reply_key() {
    let mut w = worker_on(twin_ports_snapshot(), 100_000, 0, 1, true);
    w.shard.now = 1;
    let mut f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::SYN), true);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let deadline = w.table().get(0).map(|f| f.expire()).unwrap_or(0);
    let mut refused_at = Vec::new();
    for now in 1..=deadline + 12 {
        w.shard.now = now;
        w.shard.expire(w.snapshot.get(), now);
        if now >= deadline && w.table().len() == 1 && w.table().get(0).is_some_and(|f| f.vport == 80) {
            let mut g = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 81, tcpf::SYN), true);
            if w.process(&mut g, OUT, false) == Verdict::Drop(DropReason::FlowExists) {
                refused_at.push(now - deadline);
            }
        }
    }
    assert!(refused_at.is_empty(), "refused at deadline + {refused_at:?}");
    assert!(w.table().iter().any(|(_, f)| f.vport == 81), "the new connection has its entry");
}

/// SYN, SYN-ACK, ACK of client port `sport` to VIP:80 through `w`, whose
/// only server up is server 0 (`worker_with`'s snapshot round-robins: the
/// caller checks where the SYN went).
fn open(w: &mut Worker, sport: u16) -> usize {
    let mut f = syn(sport, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let s = SRV.iter().position(|a| *a == addr(&f, 30)).unwrap();
    let mut r = frame(SERVER_MAC[s], IN_MAC, SRV[s], CLIENT, 6, &tcp(8080, sport, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(OUT));
    let mut a = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(sport, 80, tcpf::ACK), true);
    assert_eq!(w.process(&mut a, OUT, false), Verdict::Forward(IN));
    s
}

#[test]
fn full_table_evicts_half_open_entries_and_keeps_established_ones() {
    let mut w = worker_with(1, 0, 1, true);
    let mut a = syn(40000, 80);
    assert_eq!(w.process(&mut a, OUT, false), Verdict::Forward(IN));
    // The half-open entry makes room for the next connection.
    open(&mut w, 40001);
    assert_eq!(w.counters().embryonic_evicted.get(), 1);
    assert_eq!(w.table().len(), 1);
    // An established one does not.
    let mut c = syn(40002, 80);
    assert_eq!(w.process(&mut c, OUT, false), Verdict::Drop(DropReason::FlowTableFull));
    let mut ack = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40001, 80, tcpf::ACK), true);
    assert_eq!(w.process(&mut ack, OUT, false), Verdict::Forward(IN), "existing connection untouched");
    // Nor for a new UDP flow.
    let mut u = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5000, 53, b"q"), true);
    assert_eq!(w.process(&mut u, OUT, false), Verdict::Drop(DropReason::FlowTableFull));
}

#[test]
fn the_embryonic_budget_evicts_the_oldest_first() {
    let (publisher, mut readers) = rcu(Box::new(snapshot()), 1);
    std::mem::forget(publisher);
    let n = Arc::new(Neighbors::new(4));
    n.set(0, SERVER_MAC[0]);
    n.set(1, SERVER_MAC[1]);
    let mut w = Worker::new(WorkerConfig { flows: 64, embryonic_max: 3, ..WorkerConfig::default() }, readers.remove(0), n);
    open(&mut w, 1000);
    for sport in 2000..2010 {
        let mut f = syn(sport, 80);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    }
    assert_eq!(w.table().embryonic(), 3);
    assert_eq!(w.table().len(), 4, "the established one and the three newest SYNs");
    assert_eq!(w.counters().embryonic_evicted.get(), 7);
    let ports: Vec<u16> = w.table().iter().map(|(_, f)| f.client_port).collect();
    for p in [1000, 2007, 2008, 2009] {
        assert!(ports.contains(&p), "{p} in {ports:?}");
    }
    // Active (established) and inactive (the rest) by gauge.
    let c = w.counters();
    assert_eq!(c.services[0].conns_active.get(), 4);
    assert_eq!(c.services[0].conns_established.get(), 1);
}

/// Review S4: a spoofed UDP flood at a UDP VIP fills the table with
/// entries nobody answers. They are unreplied (short timeout, evictable,
/// within the unreplied budget), so a TCP client still gets an entry, and
/// an answered UDP flow is never evicted.
#[test]
fn a_spoofed_udp_flood_leaves_room_for_everyone_else() {
    let (publisher, mut readers) = rcu(Box::new(snapshot()), 1);
    std::mem::forget(publisher);
    let n = Arc::new(Neighbors::new(4));
    n.set(0, SERVER_MAC[0]);
    n.set(1, SERVER_MAC[1]);
    let mut w = Worker::new(WorkerConfig { flows: 64, embryonic_max: 16, ..WorkerConfig::default() }, readers.remove(0), n);
    // A real UDP client, answered by its server.
    let mut q = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5000, 53, b"query"), true);
    assert_eq!(w.process(&mut q, OUT, false), Verdict::Forward(IN));
    let (srv, lport) = (addr(&q, 30), port(&q, 36));
    let mut a = frame(SERVER_MAC[0], IN_MAC, srv, CLIENT, 17, &udp(lport, 5000, b"answer"), true);
    assert_eq!(w.process(&mut a, IN, false), Verdict::Forward(OUT));
    assert_eq!(w.table().iter().next().map(|(_, f)| f.state), Some(FlowState::Udp), "assured by its answer");
    // The flood: 1000 spoofed sources.
    for i in 0..1000u32 {
        let src = [203, 0, 113 + (i / 250) as u8 % 2, (i % 250) as u8 + 3];
        let mut f = frame(CLIENT_MAC, OUT_MAC, src, VIP, 17, &udp(1024 + (i % 60000) as u16, 53, b"x"), true);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN), "flood packet {i}");
    }
    assert_eq!(w.table().unreplied(), 16, "the unreplied budget");
    assert_eq!(w.counters().drops(DropReason::FlowTableFull), 0);
    // A TCP client still connects, and the answered UDP flow is still there.
    let mut f = syn(40000, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let states: Vec<FlowState> = w.table().iter().map(|(_, f)| f.state).collect();
    assert!(states.contains(&FlowState::Udp) && states.contains(&FlowState::SynSent), "{states:?}");
    assert!(w.counters().embryonic_evicted.get() >= 1000 - 16);
}

/// RFC 5961 §3.2 through the pipeline: a reset outside the server's window
/// is dropped, one inside it but not at its next byte passes without
/// ending anything, one at the next byte closes.
#[test]
fn resets_are_checked_against_the_window() {
    let mut w = worker();
    open(&mut w, 40000);
    let rst = |seq: u32| {
        let mut t = tcp(40000, 80, tcpf::RST);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &t, true)
    };
    let state = |w: &Worker| w.table().iter().next().map(|(_, f)| f.state);
    // The server's window is 65535 bytes from 1001.
    let mut f = rst(1001 + 70_000);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Drop(DropReason::TcpRstOutOfWindow));
    let mut f = rst(1001 + 100);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(state(&w), Some(FlowState::Established));
    assert_eq!(w.counters().rst_in_window.get(), 1);
    let mut f = rst(1001);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(state(&w), Some(FlowState::Close));
    let c = w.counters();
    assert_eq!((c.services[0].conns_active.get(), c.services[0].conns_established.get()), (1, 0));
}

/// Review S1 through the pipeline: a spoofed SYN with a live connection's
/// 4-tuple, then a RST at that SYN's seq + 1, then a SYN again. The SYN is
/// forwarded (the server challenges it) but moves nothing, so the RST
/// misses the window and the entry stays; and a RST exactly at the next
/// byte but with a bad checksum is dropped before it touches the state.
#[test]
fn a_blind_syn_then_reset_ends_nothing() {
    let mut w = worker();
    open(&mut w, 40000);
    let seg = |flags: u8, seq: u32| {
        let mut t = tcp(40000, 80, flags);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &t, true)
    };
    let state = |w: &Worker| w.table().iter().next().map(|(_, f)| f.state);
    let server = |w: &Worker| w.table().iter().next().map(|(_, f)| f.server_ip);
    let before = server(&w);
    let mut f = seg(tcpf::SYN, 3_000_000_000);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN), "forwarded: the server challenges it");
    assert_eq!(state(&w), Some(FlowState::Established));
    let mut f = seg(tcpf::RST, 3_000_000_001);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Drop(DropReason::TcpRstOutOfWindow));
    let mut f = seg(tcpf::SYN, 3_000_000_000);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!((state(&w), server(&w), w.table().len()), (Some(FlowState::Established), before, 1), "not rescheduled");
    // Exactly at the server's next byte, but corrupt: dropped unread.
    let mut f = seg(tcpf::RST, 1001);
    f[50] ^= 0x55;
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Drop(DropReason::L4BadChecksum));
    let mut f = seg(tcpf::FIN | tcpf::ACK, 1001);
    f[51] ^= 0x01;
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Drop(DropReason::L4BadChecksum));
    assert_eq!(state(&w), Some(FlowState::Established));
    // The genuine one still ends it.
    let mut f = seg(tcpf::RST, 1001);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(state(&w), Some(FlowState::Close));
}

/// Second-round review H4: a new connection whose source is the box's
/// own (a VIP, a self IP): its answers would come back to the box as
/// replies that make a spoofed entry look answered. Dropped by name.
/// Review S9: a server's answer arriving on the clients' link (its source
/// spoofed from outside) is dropped by name and changes nothing; the same
/// answer on the servers' link passes.
#[test]
fn a_reply_on_the_clients_link_is_spoofed() {
    let mut w = worker();
    let mut f = syn(40000, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let s = SRV.iter().position(|a| *a == addr(&f, 30)).unwrap();
    let answer = || frame(SERVER_MAC[s], IN_MAC, SRV[s], CLIENT, 6, &tcp(8080, 40000, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(w.process(&mut answer(), OUT, false), Verdict::Drop(DropReason::ReplyWrongLink));
    assert_eq!(w.table().iter().next().map(|(_, f)| f.state), Some(FlowState::SynSent), "nothing changed");
    assert_eq!(w.process(&mut answer(), IN, false), Verdict::Forward(OUT));
    assert_eq!(w.table().iter().next().map(|(_, f)| f.state), Some(FlowState::SynRecv));
}

#[test]
fn a_new_connection_from_the_boxs_own_address_is_spoofed() {
    let mut w = worker();
    for src in [VIP, SELF_OUT, SELF_IN] {
        let mut f = frame(CLIENT_MAC, OUT_MAC, src, VIP, 17, &udp(40000, 53, b"q"), true);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Drop(DropReason::OwnSource), "{src:?}");
    }
    assert_eq!(w.table().len(), 0);
}

#[test]
fn unresolved_next_hop_drops_by_name() {
    let mut w = worker_with(8, 0, 1, false);
    let mut f = syn(40000, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Drop(DropReason::NeighborUnresolved));
}

/// Malformed and unwanted frames: each maps to one named drop (or punt).
#[test]
fn fixture_table_of_verdicts() {
    let good_syn = syn(40000, 80);
    let mut cases: Vec<(&str, Vec<u8>, Verdict)> = Vec::new();
    let mut runt = good_syn.clone();
    runt.truncate(13);
    cases.push(("runt", runt, Verdict::Drop(DropReason::RuntFrame)));
    let mut v6 = good_syn.clone();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    cases.push(("an IPv4 packet under the IPv6 EtherType", v6, Verdict::Drop(DropReason::Ipv6BadVersion)));
    let mut lldp = good_syn.clone();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    cases.push(("lldp", lldp, Verdict::Drop(DropReason::UnhandledEthertype)));
    let mut short = good_syn.clone();
    short.truncate(14 + 12);
    cases.push(("ip truncated", short, Verdict::Drop(DropReason::Ipv4Truncated)));
    let mut ver = good_syn.clone();
    ver[14] = 0x65;
    cases.push(("version 6", ver, Verdict::Drop(DropReason::Ipv4BadVersion)));
    let mut ihl = good_syn.clone();
    ihl[14] = 0x44;
    cases.push(("ihl 4", ihl, Verdict::Drop(DropReason::Ipv4BadHeaderLength)));
    let mut tot = good_syn.clone();
    tot[16..18].copy_from_slice(&1500u16.to_be_bytes());
    cases.push(("total length", tot, Verdict::Drop(DropReason::Ipv4BadTotalLength)));
    let mut sum = good_syn.clone();
    sum[24] ^= 0xff;
    cases.push(("ip checksum", sum, Verdict::Drop(DropReason::Ipv4BadChecksum)));
    let mut mf = good_syn.clone();
    mf[20] = 0x20; // MF
    let c = checksum::update16(u16::from_be_bytes([mf[24], mf[25]]), 0, 0x2000);
    mf[24..26].copy_from_slice(&c.to_be_bytes());
    cases.push(("fragment MF", mf, Verdict::Drop(DropReason::Fragment)));
    let mut off = good_syn.clone();
    off[21] = 0x10; // offset 16 units
    let c = checksum::update16(u16::from_be_bytes([off[24], off[25]]), 0, 0x0010);
    off[24..26].copy_from_slice(&c.to_be_bytes());
    cases.push(("fragment offset", off, Verdict::Drop(DropReason::Fragment)));
    let mut ttl = good_syn.clone();
    ttl[22] = 1;
    let c = checksum::update16(u16::from_be_bytes([ttl[24], ttl[25]]), 0x4006, 0x0106);
    ttl[24..26].copy_from_slice(&c.to_be_bytes());
    cases.push(("ttl 1", ttl, Verdict::Drop(DropReason::TtlExceeded)));
    let mut doff = tcp(40000, 80, tcpf::SYN);
    doff[12] = 0x40;
    cases.push(("tcp data offset 4", frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &doff, false), Verdict::Drop(DropReason::TcpBadHeaderLength)));
    cases.push(("tcp truncated", frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(1, 80, 2)[..10], false), Verdict::Drop(DropReason::TcpTruncated)));
    let mut ulen = udp(5000, 53, b"x");
    ulen[4..6].copy_from_slice(&100u16.to_be_bytes());
    cases.push(("udp length", frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &ulen, false), Verdict::Drop(DropReason::UdpBadLength)));
    cases.push(("udp truncated", frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &[0u8; 5], false), Verdict::Drop(DropReason::UdpTruncated)));
    cases.push(("icmp truncated", frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 1, &[8u8, 0, 0], false), Verdict::Drop(DropReason::IcmpTruncated)));
    let mut bad_l4 = syn(40000, 80);
    bad_l4[50] ^= 0x55;
    cases.push(("syn with bad tcp checksum", bad_l4, Verdict::Drop(DropReason::L4BadChecksum)));
    cases.push(("ack without connection", frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::ACK), true), Verdict::Drop(DropReason::TcpNoFlow)));
    cases.push(("gre to vip", frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 47, &[0u8; 8], false), Verdict::Drop(DropReason::UnhandledProtocol)));
    cases.push(("tcp to another port", syn(40000, 8443), Verdict::Drop(DropReason::NoVirtualServer)));
    cases.push(("to a stranger", frame(CLIENT_MAC, OUT_MAC, CLIENT, [192, 0, 2, 77], 6, &tcp(1, 2, 2), true), Verdict::Drop(DropReason::NoVirtualServer)));
    cases.push(("tcp to a self ip", frame(CLIENT_MAC, OUT_MAC, CLIENT, SELF_OUT, 6, &tcp(1, 22, 2), true), Verdict::Punt));
    let mut echo = vec![8u8, 0, 0, 0, 0, 1, 0, 1, b'h', b'i'];
    let c = checksum::checksum(&echo);
    echo[2..4].copy_from_slice(&c.to_be_bytes());
    cases.push(("ping the vip", frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 1, &echo, false), Verdict::Punt));
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    cases.push(("arp", arp, Verdict::Punt));

    for (name, mut f, expected) in cases {
        let mut w = worker();
        let got = w.process(&mut f, OUT, false);
        assert_eq!(got, expected, "{name}");
        if matches!(expected, Verdict::Drop(_)) {
            assert_eq!(w.table().len(), 0, "{name}: no entry created");
        }
    }
}

/// A packet in a buffer of `cap` bytes at most, received on OUT.
pub(super) use super::fuzz::TestPkt as Pkt;

pub(super) fn pkt(data: Vec<u8>) -> Pkt {
    Pkt { data, cap: 2048, head: 128, port: OUT }
}

#[derive(Default)]
pub(super) struct Io {
    pub(super) rx: Vec<Pkt>,
    pub(super) tx: Vec<(u16, Pkt)>,
    pub(super) punted: usize,
    /// What `protected_len` says.
    pub(super) protected: usize,
}

impl PacketIo for Io {
    type Pkt = Pkt;
    fn rx_queues(&self) -> usize {
        1
    }
    fn rx_burst(&mut self, _q: usize, b: &mut Burst<Pkt>) {
        while !b.is_full() {
            let Some(p) = self.rx.pop() else { break };
            let _ = b.push(p);
        }
    }
    fn tx(&mut self, port: u16, p: Pkt) {
        self.tx.push((port, p));
    }
    fn punt(&mut self, _p: Pkt) -> Result<(), Pkt> {
        self.punted += 1;
        Ok(())
    }
    fn protected_len(&self) -> usize {
        self.protected
    }
    fn flush(&mut self) -> crate::io::TxReport {
        crate::io::TxReport { packets: self.tx.len() as u64, bytes: self.tx.iter().map(|(_, p)| p.data.len() as u64).sum(), dropped: 0 }
    }
}

/// Review finding (second round): sync datagrams, even from the peer on
/// the sync link within the HA rate, fill at most `PUNT_HA_SHARE` of the
/// protected ring; past it they are dropped (`punt-ring-full`) while VRRP
/// adverts and ARP still go in.
#[test]
fn sync_datagrams_leave_a_quarter_of_the_protected_ring() {
    use crate::state::snapshot::SyncPeerView;
    const PEER: [u8; 4] = [198, 51, 100, 3];
    let mut snap = snapshot();
    snap.control.vrrp_links = vec![IN];
    snap.control.sync = Some(SyncPeerView { link: IN, peer: ip(PEER), port: 8848 });
    snap.index();
    let mut w = worker_on(snap, 64, 0, 1, true);
    let on_link = |mut f: Vec<u8>| {
        f[22] = 255;
        crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        Pkt { port: IN, ..pkt(f) }
    };
    let sync = || on_link(frame(SERVER_MAC[1], IN_MAC, PEER, SELF_IN, 17, &udp(8848, 8848, b"sync"), true));
    let advert = || on_link(frame(SERVER_MAC[1], IN_MAC, PEER, [224, 0, 0, 18], 112, &[0x31, 1, 100, 1, 0, 100, 0, 0, 10, 0, 2, 1], false));
    let mut io = Io { protected: crate::limits::PUNT_HA_SHARE - 1, ..Io::default() };
    io.rx.extend([sync(), advert()]);
    w.poll(&mut io, 1);
    assert_eq!((io.punted, w.counters().drops(DropReason::PuntRingFull)), (2, 0), "room: both in");
    io.protected = crate::limits::PUNT_HA_SHARE;
    io.rx.extend([sync(), advert(), sync()]);
    w.poll(&mut io, 1);
    assert_eq!((io.punted, w.counters().drops(DropReason::PuntRingFull)), (3, 2), "the sync datagrams dropped, the advert in");
}

/// Punted frames by class, each class its own bucket: a flood of UDP to
/// the self IP from strangers is dropped (`other`: rate 0), while ARP,
/// pings and a server's answers still reach the control lcore.
#[test]
fn punts_are_classified_and_policed() {
    let (publisher, mut readers) = rcu(Box::new(snapshot()), 1);
    std::mem::forget(publisher);
    let mut rates = super::DEFAULT_PUNT_RATES;
    rates[PuntClass::Icmp as usize] = 40; // burst 32, 4 a tick
    let mut w = Worker::new(WorkerConfig { flows: 64, punt_rates: rates, ..WorkerConfig::default() }, readers.remove(0), Arc::new(Neighbors::new(4)));
    let mut io = Io::default();
    let stranger = |i: u8| frame(CLIENT_MAC, OUT_MAC, [203, 0, 113, i], SELF_OUT, 17, &udp(1000 + u16::from(i), 9999, b"flood"), true);
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let echo = || frame(CLIENT_MAC, OUT_MAC, CLIENT, SELF_OUT, 1, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0], true);
    let probe = frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 6, &tcp(80, 61001, tcpf::SYN | tcpf::ACK), true);
    for i in 0..30 {
        io.rx.push(pkt(stranger(i)));
    }
    io.rx.push(pkt(arp));
    io.rx.push(Pkt { port: IN, ..pkt(probe) });
    w.poll(&mut io, 1);
    for _ in 0..2 {
        for _ in 0..32 {
            io.rx.push(pkt(echo()));
        }
        w.poll(&mut io, 1);
    }
    let c = w.counters();
    assert_eq!(c.punts(PuntClass::Other), (0, 30));
    assert_eq!(c.punts(PuntClass::Arp), (1, 0));
    assert_eq!(c.punts(PuntClass::Probe), (1, 0));
    assert_eq!(c.punts(PuntClass::Icmp), (32, 32), "the burst, then nothing in the same tick");
    assert_eq!(io.punted, 34);
    assert_eq!(c.drops(DropReason::PuntLimited), 62);
    // A tick later the pings' bucket has 4 more.
    for _ in 0..10 {
        io.rx.push(pkt(echo()));
    }
    w.poll(&mut io, 2);
    assert_eq!(w.counters().punts(PuntClass::Icmp), (36, 38));
}

/// Review S2: the punt class comes from what a remote sender cannot
/// choose alone. VRRP needs TTL 255 and the right link and destination
/// (else `vrrp-refused`, before any bucket); sync datagrams the sync link,
/// peer and port; probe answers a server's link and a probe port.
#[test]
fn punt_classes_key_on_link_destination_port_and_ttl() {
    use super::police::punt_class;
    use crate::state::snapshot::SyncPeerView;
    const PEER: [u8; 4] = [198, 51, 100, 3];
    let mut snap = snapshot();
    snap.control.vrrp_links = vec![IN];
    snap.control.vrrp_unicast = vec![(IN, ip(PEER))];
    snap.control.sync = Some(SyncPeerView { link: IN, peer: ip(PEER), port: 8848 });
    snap.index();
    let ttl = |mut f: Vec<u8>, t: u8| {
        f[22] = t;
        f
    };
    let advert = |src: [u8; 4], dst: [u8; 4]| frame(SERVER_MAC[1], IN_MAC, src, dst, 112, &[0x31, 1, 100, 1, 0, 100, 0, 0, 10, 0, 2, 1], false);
    let group = [224, 0, 0, 18];
    assert_eq!(punt_class(&snap, &ttl(advert(PEER, group), 255), IN), Ok(PuntClass::Vrrp));
    assert_eq!(punt_class(&snap, &ttl(advert(PEER, SELF_IN), 255), IN), Ok(PuntClass::Vrrp), "unicast from the peer");
    // From the Internet: TTL below 255, another link, another source.
    assert_eq!(punt_class(&snap, &ttl(advert(PEER, group), 64), IN), Err(DropReason::VrrpRefused));
    assert_eq!(punt_class(&snap, &ttl(advert(CLIENT, SELF_OUT), 255), OUT), Err(DropReason::VrrpRefused), "no instance on the outside link");
    assert_eq!(punt_class(&snap, &ttl(advert(PEER, SELF_OUT), 255), OUT), Err(DropReason::VrrpRefused), "the peer's address spoofed from outside");
    assert_eq!(punt_class(&snap, &ttl(advert(CLIENT, SELF_IN), 255), IN), Err(DropReason::VrrpRefused), "unicast from no peer");
    // Sync datagrams.
    let sync = |src: [u8; 4], dport: u16| ttl(frame(SERVER_MAC[1], IN_MAC, src, SELF_IN, 17, &udp(8848, dport, b"sync"), true), 255);
    assert_eq!(punt_class(&snap, &sync(PEER, 8848), IN), Ok(PuntClass::Ha));
    let routed = frame(SERVER_MAC[1], IN_MAC, PEER, SELF_IN, 17, &udp(8848, 8848, b"sync"), true);
    assert_eq!(punt_class(&snap, &routed, IN), Ok(PuntClass::Other), "TTL below 255: from off the link (RFC 5082)");
    assert_eq!(punt_class(&snap, &sync(PEER, 8848), OUT), Ok(PuntClass::Other), "the peer spoofed from outside");
    assert_eq!(punt_class(&snap, &sync(PEER, 9999), IN), Ok(PuntClass::Other));
    // Probe answers: a server, its link, a probe port; a VIP is no source.
    let answer = |src: [u8; 4], dport: u16| frame(SERVER_MAC[0], IN_MAC, src, SELF_IN, 6, &tcp(80, dport, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(punt_class(&snap, &answer(SRV[0], 61001), IN), Ok(PuntClass::Probe));
    assert_eq!(punt_class(&snap, &answer(SRV[0], 61001), OUT), Ok(PuntClass::Other), "a server's address from outside");
    assert_eq!(punt_class(&snap, &answer(SRV[0], 22), IN), Ok(PuntClass::Other), "no probe's port");
    assert_eq!(punt_class(&snap, &answer(VIP, 61001), OUT), Ok(PuntClass::Other), "the VIP as source (NAT)");
    let reply = frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 1, &[0, 0, 0xff, 0xff, 0, 0, 0, 0], true);
    assert_eq!(punt_class(&snap, &reply, IN), Ok(PuntClass::Probe), "an echo reply");
    let request = frame(CLIENT_MAC, OUT_MAC, SRV[0], SELF_OUT, 1, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0], true);
    assert_eq!(punt_class(&snap, &request, OUT), Ok(PuntClass::Icmp));
}

#[test]
fn poll_counts_every_packet() {
    let mut io = Io::default();
    io.rx.push(pkt(syn(40000, 80)));
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    io.rx.push(pkt(arp));
    io.rx.push(pkt(vec![0u8; 10]));
    let mut w = worker();
    assert_eq!(w.poll(&mut io, 5), 3);
    let c = w.counters();
    assert_eq!(c.rx_packets.get(), 3);
    assert_eq!(c.punted.get(), 1);
    assert_eq!(c.drops(DropReason::RuntFrame), 1);
    assert_eq!(io.tx.len(), 1);
    assert_eq!(io.tx[0].0, IN);
    assert_eq!(c.tx_packets.get(), 1);
}

#[test]
fn syn_reusing_a_closing_entry_is_a_new_connection() {
    let mut w = worker();
    let mut f = syn(40000, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(addr(&f, 30), SRV[0]);
    let mut synack = frame(SERVER_MAC[0], IN_MAC, SRV[0], CLIENT, 6, &tcp(8080, 40000, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(w.process(&mut synack, IN, false), Verdict::Forward(OUT));
    let mut ack = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::ACK), true);
    assert_eq!(w.process(&mut ack, OUT, false), Verdict::Forward(IN));
    assert_eq!(w.table().get(0).map(|f| f.state), Some(FlowState::Established));
    // Both sides close: FIN from each, the entry waits in TIME_WAIT.
    for (src_mac, src, dst, sp, dp, port) in [(CLIENT_MAC, CLIENT, VIP, 40000, 80, OUT), (SERVER_MAC[0], SRV[0], CLIENT, 8080, 40000, IN)] {
        let mut fin = frame(src_mac, if port == OUT { OUT_MAC } else { IN_MAC }, src, dst, 6, &tcp(sp, dp, tcpf::FIN | tcpf::ACK), true);
        assert!(matches!(w.process(&mut fin, port, false), Verdict::Forward(_)));
    }
    assert_eq!(w.table().get(0).map(|f| f.state), Some(FlowState::TimeWait));
    // The client reuses its port: a fresh connection, scheduled anew.
    let mut again = syn(40000, 80);
    assert_eq!(w.process(&mut again, OUT, false), Verdict::Forward(IN));
    assert_eq!(addr(&again, 30), SRV[1], "rescheduled (round robin moved on)");
    let c = w.counters();
    assert_eq!(c.services[0].conns_new.get(), 2);
    assert_eq!(c.services[0].conns_active.get(), 1);
    assert_eq!(w.table().len(), 1);
}

/// The services of `snapshot()` with every server disabled (health checks
/// failed, or an operator took them out).
fn worker_without_servers() -> Worker {
    let mut snap = snapshot();
    for s in &mut snap.servers {
        s.enabled = false;
    }
    worker_on(snap, 64, 0, 1, true)
}

/// Inserts 4 bytes of IPv4 options (NOP, NOP, NOP, EOL) into a frame from
/// `frame`, fixing IHL, total length and the header checksum (the L4
/// checksum does not cover the IP header).
fn with_ip_options(f: &[u8]) -> Vec<u8> {
    let mut g = f[..34].to_vec();
    g.extend_from_slice(&[1, 1, 1, 0]);
    g.extend_from_slice(&f[34..]);
    g[14] = 0x46;
    let total = u16::from_be_bytes([g[16], g[17]]) + 4;
    g[16..18].copy_from_slice(&total.to_be_bytes());
    g[24] = 0;
    g[25] = 0;
    let c = checksum::checksum(&g[14..38]);
    g[24..26].copy_from_slice(&c.to_be_bytes());
    g
}

/// Tags a frame with 802.1Q VLAN 100.
fn with_vlan(f: &[u8]) -> Vec<u8> {
    let mut g = f[..12].to_vec();
    g.extend_from_slice(&[0x81, 0x00, 0x00, 100]);
    g.extend_from_slice(&f[12..]);
    g
}

#[test]
fn no_server_syn_is_answered_with_a_reset() {
    let mut w = worker_without_servers();
    let mut buf = pkt(syn(40000, 80));
    assert_eq!(w.process_packet(&mut buf, false), Verdict::Forward(OUT), "back out of the port it came in");
    let r = &buf.data;
    assert_eq!(r.len(), 14 + 20 + 20, "a bare RST");
    assert_eq!(&r[0..6], &CLIENT_MAC.0, "to the MAC it came from");
    assert_eq!(&r[6..12], &OUT_MAC.0, "from the receiving port's MAC");
    assert_eq!(&r[12..14], &[0x08, 0x00]);
    assert_eq!(r[14], 0x45);
    assert_eq!(port(r, 16), 40, "IPv4 total length");
    assert_eq!(port(r, 20), 0x4000, "DF, not a fragment");
    assert_eq!((r[22], r[23]), (64, 6), "TTL 64, TCP");
    assert_eq!((addr(r, 26), addr(r, 30)), (VIP, CLIENT), "from the VIP to the client");
    assert_eq!((port(r, 34), port(r, 36)), (80, 40000), "ports swapped");
    assert_eq!(u32::from_be_bytes([r[38], r[39], r[40], r[41]]), 0, "SEQ=0");
    assert_eq!(u32::from_be_bytes([r[42], r[43], r[44], r[45]]), 1000 + 1, "ACK=SEG.SEQ+SEG.LEN, the SYN counting 1");
    assert_eq!(r[46], 0x50, "data offset 5");
    assert_eq!(r[47], tcpf::RST | tcpf::ACK);
    assert_eq!((port(r, 48), port(r, 52)), (0, 0), "window, urgent pointer");
    assert_checksums(r);
    let c = w.counters();
    assert_eq!(c.drops(DropReason::NoServer), 1, "the SYN still counts as refused");
    assert_eq!(c.rejected.get(), 1);
    assert_eq!(c.total_drops(), 1);
    assert_eq!(w.table().len(), 0, "no entry");
    assert_eq!((c.flows.get(), c.services[0].conns_new.get()), (0, 0));

    // IP options and TCP options do not end up in the RST.
    let mut opts = tcp(40001, 80, tcpf::SYN);
    opts[12] = 0x60;
    opts.extend_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    let f = with_ip_options(&frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &opts, true));
    let mut buf = pkt(f);
    assert_eq!(w.process_packet(&mut buf, false), Verdict::Forward(OUT));
    let r = &buf.data;
    assert_eq!(r.len(), 54);
    assert_eq!((r[14], port(r, 16)), (0x45, 40));
    assert_eq!((port(r, 34), port(r, 36)), (80, 40001));
    assert_eq!(u32::from_be_bytes([r[42], r[43], r[44], r[45]]), 1001);
    assert_checksums(r);
    assert_eq!(w.counters().rejected.get(), 2);
}

/// The ICMP error of a refused datagram `orig` (IPv4 header at `l3`, `hl`
/// bytes), every field checked.
fn assert_port_unreachable(r: &[u8], orig: &[u8], l3: usize, hl: usize) {
    let quoted = &orig[l3..l3 + hl + 8];
    assert_eq!(r.len(), l3 + 20 + 8 + hl + 8, "IPv4 header, ICMP header, quoted header + 8 bytes");
    assert_eq!(&r[0..6], &CLIENT_MAC.0);
    assert_eq!(&r[6..12], &OUT_MAC.0);
    assert_eq!(&r[12..l3], &orig[12..l3], "EtherType (and VLAN tag) kept");
    let ip = &r[l3..];
    assert_eq!(ip[0], 0x45);
    assert_eq!(ip[1], 0xc0, "precedence internetwork control (RFC 1812 §4.3.2.5)");
    assert_eq!(port(ip, 2) as usize, 20 + 8 + hl + 8, "IPv4 total length");
    assert_eq!(port(ip, 6), 0x4000);
    assert_eq!((ip[8], ip[9]), (64, 1), "TTL 64, ICMP");
    assert_eq!((addr(ip, 12), addr(ip, 16)), (VIP, CLIENT));
    assert_eq!(checksum::checksum(&ip[..20]), 0, "IPv4 header checksum");
    let m = &ip[20..];
    assert_eq!((m[0], m[1]), (3, 3), "destination unreachable, port unreachable");
    assert_eq!(&m[4..8], &[0, 0, 0, 0], "unused");
    assert_eq!(&m[8..], quoted, "the datagram's header and first 8 bytes, exactly as received");
    assert_eq!(checksum::checksum(m), 0, "ICMP checksum");
    let mut g = m.to_vec();
    g[2] = 0;
    g[3] = 0;
    assert_eq!(checksum::checksum(&g).to_be_bytes(), [m[2], m[3]], "equals a full computation");
}

#[test]
fn no_server_udp_is_answered_with_port_unreachable() {
    let mut w = worker_without_servers();
    let small = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5000, 53, b"q"), true);
    let big = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5001, 53, &[0x5a; 1000]), true);
    let vlan_opts = with_vlan(&with_ip_options(&frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5002, 53, b"abcdef"), true)));
    for (name, orig, l3, hl, link) in [("1-byte payload (grows)", small, 14, 20, OUT), ("1000-byte payload (shrinks)", big, 14, 20, OUT), ("VLAN, IP options", vlan_opts, 18, 24, OUT_VLAN100)] {
        let mut buf = pkt(orig.clone());
        assert_eq!(w.process_packet(&mut buf, false), Verdict::Forward(link), "{name}");
        assert_port_unreachable(&buf.data, &orig, l3, hl);
    }
    let c = w.counters();
    assert_eq!((c.drops(DropReason::NoServer), c.rejected.get()), (3, 3));
    assert_eq!(w.table().len(), 0);
}

#[test]
fn no_server_answer_leaves_through_poll() {
    let mut w = worker_without_servers();
    let mut io = Io::default();
    io.rx.push(pkt(syn(40000, 80)));
    assert_eq!(w.poll(&mut io, 1), 1);
    assert_eq!(io.tx.len(), 1);
    assert_eq!(io.tx[0].0, OUT);
    assert_eq!(io.tx[0].1.data[47], tcpf::RST | tcpf::ACK);
    let c = w.counters();
    assert_eq!((c.drops(DropReason::NoServer), c.total_drops(), c.rejected.get()), (1, 1, 1));
    assert_eq!((c.tx_packets.get(), c.tx_bytes.get()), (1, 54));
}

/// RFC 1812 §4.3.2.8: refusals are rate limited (`icmp_rate`, here 20 a
/// second, burst 5): 100 SYNs in one tick get 5 answers, the next second
/// 20 more.
#[test]
fn refusals_are_rate_limited() {
    let mut snap = snapshot();
    for s in &mut snap.servers {
        s.enabled = false;
    }
    let (publisher, mut readers) = rcu(Box::new(snap), 1);
    std::mem::forget(publisher);
    let mut w = Worker::new(WorkerConfig { flows: 64, icmp_rate: 20, icmp_burst: 5, ..WorkerConfig::default() }, readers.remove(0), Arc::new(Neighbors::new(4)));
    let mut sent = 0;
    for t in 0..=10u32 {
        for i in 0..10u16 {
            let mut io = Io::default();
            for j in 0..10u16 {
                io.rx.push(pkt(syn(10000 + (t as u16) * 100 + i * 10 + j, 80)));
            }
            w.poll(&mut io, 1 + t);
            sent += io.tx.len();
        }
    }
    // The burst of 5, then 2 a tick for 10 ticks.
    assert_eq!(sent, 5 + 20);
    let c = w.counters();
    assert_eq!(c.rejected.get(), 25);
    assert_eq!(c.answers_limited.get(), 1100 - 25);
    assert_eq!(c.drops(DropReason::NoServer), 1100, "every refused SYN is one no-server drop");
}

#[test]
fn no_server_refusals_without_an_answer() {
    let mut w = worker_without_servers();
    let mut bad_l4 = syn(40000, 80);
    bad_l4[50] ^= 0x55;
    let multicast_src = frame(CLIENT_MAC, OUT_MAC, [224, 0, 0, 1], VIP, 17, &udp(5000, 53, b"q"), true);
    let zero_src = frame(CLIENT_MAC, OUT_MAC, [0, 0, 0, 0], VIP, 6, &tcp(40000, 80, tcpf::SYN), true);
    let broadcast = frame(CLIENT_MAC, EthernetAddress::BROADCAST, CLIENT, VIP, 17, &udp(5000, 53, b"q"), true);
    let group_src = frame(EthernetAddress([3, 0, 0, 0, 0, 1]), OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::SYN), true);
    let cases: Vec<(&str, Pkt, Verdict)> = vec![
        ("ack without connection", pkt(frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::ACK), true)), Verdict::Drop(DropReason::TcpNoFlow)),
        ("syn-ack", pkt(frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::SYN | tcpf::ACK), true)), Verdict::Drop(DropReason::TcpNoFlow)),
        ("rst", pkt(frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::RST), true)), Verdict::Drop(DropReason::TcpNoFlow)),
        ("syn with bad tcp checksum", pkt(bad_l4), Verdict::Drop(DropReason::L4BadChecksum)),
        ("udp from a multicast source", pkt(multicast_src), Verdict::Drop(DropReason::NoServer)),
        ("syn from 0.0.0.0", pkt(zero_src), Verdict::Drop(DropReason::NoServer)),
        ("udp to the broadcast MAC", pkt(broadcast), Verdict::Drop(DropReason::NoServer)),
        ("syn from a group MAC", pkt(group_src), Verdict::Drop(DropReason::NoServer)),
        ("udp with no room to grow", Pkt { cap: 14 + 20 + 9, ..pkt(frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5000, 53, b"q"), true)) }, Verdict::Drop(DropReason::NoServer)),
        ("udp without a checksum, no room", Pkt { cap: 0, ..pkt(frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5000, 53, b"q"), false)) }, Verdict::Drop(DropReason::NoServer)),
    ];
    for (name, mut buf, expected) in cases {
        let before = buf.data.clone();
        assert_eq!(w.process_packet(&mut buf, false), expected, "{name}");
        assert_eq!(buf.data, before, "{name}: no answer, frame untouched");
    }
    let c = w.counters();
    assert_eq!(c.rejected.get(), 0);
    assert_eq!(c.total_drops(), 0, "drops are counted by the caller (`handle`)");
    assert_eq!(w.table().len(), 0);
    // Through `process`: the refusal asks to be built.
    let mut f = syn(40000, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Reject(Reject { proto: 6, l3: 14, hl: 20 }));
}

#[test]
fn replies_to_the_box_are_owned_where_rss_queues_them() {
    let snap = snapshot();
    for workers in [2u16, 3, 4] {
        let owners = Owners::new(workers, 0);
        for lport in [nat::LOCAL_PORT_MIN, 4242, 40000, nat::LOCAL_PORT_MAX, nat::PROBE_PORT_MIN, u16::MAX] {
            assert_eq!(owner(&snap, &owners, ip(SRV[0]), 8080, ip(SELF_IN), lport, 6), owners.worker(ip(SELF_IN), lport), "{workers} workers, port {lport}");
        }
    }
    // A probe reply lands on its owner, which punts it (no connection entry).
    let owners = Owners::new(2, 0);
    let p = (nat::PROBE_PORT_MIN..=u16::MAX).find(|p| owners.worker(ip(SELF_IN), *p) == 0).unwrap();
    let mut reply = frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 6, &tcp(8080, p, tcpf::SYN | tcpf::ACK), true);
    let mut w0 = worker_with(64, 0, 2, true);
    let mut w1 = worker_with(64, 1, 2, true);
    assert_eq!(w1.process(&mut reply.clone(), IN, false), Verdict::Handoff(0));
    assert_eq!(w0.process(&mut reply, IN, false), Verdict::Punt);
}

#[test]
fn connections_of_a_reset_server_are_cut() {
    let (mut publisher, mut readers) = rcu(Box::new(snapshot()), 1);
    let n = Arc::new(Neighbors::new(4));
    n.set(0, SERVER_MAC[0]);
    n.set(1, SERVER_MAC[1]);
    let mut w = Worker::new(WorkerConfig { id: 0, workers: 1, flows: 16, timeouts: Timeouts::default(), hash_key: 0, sync_refresh: 0, ..WorkerConfig::default() }, readers.remove(0), n);
    let mut f = syn(40000, 80);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(w.table().len(), 1);
    // Server 0 goes down with on_down = "reset".
    let mut next = snapshot();
    next.servers[0].enabled = false;
    next.servers[0].reset = true;
    publisher.publish(Box::new(next));
    w.poll(&mut Idle, 1); // quiescent point: picks up the snapshot
    let mut ack = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::ACK), true);
    assert_eq!(w.process(&mut ack, OUT, false), Verdict::Drop(DropReason::ServerDown));
    assert_eq!(w.table().len(), 0, "entry removed");
    assert_eq!(w.counters().servers[0].conns_active.get(), 0);
    std::mem::forget(publisher);
}

// ---------------------------------------------------------------------------
// Persistence (`persist`).

/// Reads nothing, sends nothing: `poll` on it only moves the worker to the
/// latest snapshot and expires entries.
struct Idle;
impl PacketIo for Idle {
    type Pkt = Pkt;
    fn rx_queues(&self) -> usize {
        0
    }
    fn rx_burst(&mut self, _q: usize, _b: &mut Burst<Pkt>) {}
    fn tx(&mut self, _p: u16, _pkt: Pkt) {}
    fn punt(&mut self, p: Pkt) -> Result<(), Pkt> {
        Err(p)
    }
    fn flush(&mut self) -> crate::io::TxReport {
        crate::io::TxReport::default()
    }
}

pub(super) const PERSIST_TIMEOUT: u32 = 50;

/// The fixture snapshot with `source-ip` persistence (`netmask`) on
/// VIP:80 (NAT) and VIP:81 (full-NAT), one persistence group.
pub(super) fn persistent_snapshot(netmask: u32, keep_on_down: bool) -> Snapshot {
    let mut s = snapshot();
    let p = crate::lb::Persistence {
        kind: crate::lb::PersistKind::SourceIp,
        prefix: netmask.leading_ones() as u8,
        timeout: PERSIST_TIMEOUT,
        group: 0,
        keep_on_down,
    };
    s.services[0].persistence = Some(p);
    s.services[1].persistence = Some(p);
    s.persist_records = 256;
    s.index();
    s
}

fn persistent_worker(snap: Snapshot) -> (crate::state::rcu::Publisher<Snapshot>, Worker) {
    let (publisher, mut readers) = rcu(Box::new(snap), 1);
    let n = Arc::new(Neighbors::new(4));
    n.set(0, SERVER_MAC[0]);
    n.set(1, SERVER_MAC[1]);
    let w = Worker::new(WorkerConfig { id: 0, workers: 1, flows: 256, timeouts: Timeouts::default(), hash_key: 0, sync_refresh: 0, ..WorkerConfig::default() }, readers.remove(0), n);
    (publisher, w)
}

/// A SYN from `client:sport` to VIP:`vport`: the server address it went to.
fn connect(w: &mut Worker, client: [u8; 4], sport: u16, vport: u16) -> [u8; 4] {
    let mut f = frame(CLIENT_MAC, OUT_MAC, client, VIP, 6, &tcp(sport, vport, tcpf::SYN), true);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    addr(&f, 30)
}

/// A RST from the client, and its entry's `tcp_close` run out.
fn reset(w: &mut Worker, client: [u8; 4], sport: u16, vport: u16) {
    let mut f = frame(CLIENT_MAC, OUT_MAC, client, VIP, 6, &tcp(sport, vport, tcpf::RST), true);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let now = w.shard.now + Timeouts::default().tcp_close;
    w.shard.expire(w.snapshot.get(), now);
    w.shard.now = now;
}

#[test]
fn source_ip_persistence_keeps_a_client_while_others_spread() {
    let (_p, mut w) = persistent_worker(persistent_snapshot(u32::MAX, false));
    let first = connect(&mut w, CLIENT, 1000, 80);
    for sport in 1001..1050 {
        assert_eq!(connect(&mut w, CLIENT, sport, 80), first, "connection from port {sport}");
    }
    // Other clients each get a record of their own, round robin.
    let mut seen = [0; 2];
    // (203.0.113.2 is a self IP of the test snapshot: no client.)
    for c in 10..=29u8 {
        let s = connect(&mut w, [203, 0, 113, c], 2000, 80);
        seen[SRV.iter().position(|x| *x == s).unwrap()] += 1;
        assert_eq!(connect(&mut w, [203, 0, 113, c], 2001, 80), s, "client {c} stays");
    }
    assert_eq!(seen, [10, 10]);
    let c = w.counters();
    assert_eq!(c.persist_records.get(), 21);
    assert_eq!(c.persisted.get(), 49 + 20);
    assert_eq!(w.persist_records(), 21);
}

#[test]
fn netmask_groups_clients_and_the_group_spans_virtual_servers() {
    let (_p, mut w) = persistent_snapshot(0xffff_ff00, false).pipe(persistent_worker);
    let a = connect(&mut w, [192, 0, 2, 10], 1000, 80);
    assert_eq!(connect(&mut w, [192, 0, 2, 20], 1000, 80), a, "same /24, same server");
    let b = connect(&mut w, [203, 0, 113, 7], 1000, 80);
    assert_ne!(a, b, "another /24 gets the next server");
    // VIP:81 (full-NAT) is in the same group: the same servers.
    assert_eq!(connect(&mut w, [192, 0, 2, 30], 5000, 81), a);
    assert_eq!(connect(&mut w, [203, 0, 113, 7], 5000, 81), b);
    assert_eq!(w.persist_records(), 2, "one record per /24, shared by both services");
}

trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

/// Server `srv` of every service down (`up` false) or back, with its node's
/// down count.
fn with_server(mut s: Snapshot, srv: usize, up: bool, epoch: u32) -> Snapshot {
    for r in s.servers.iter_mut().filter(|r| r.ip == ip(SRV[srv])) {
        r.enabled = up;
        r.epoch = epoch;
    }
    s
}

#[test]
fn a_down_servers_records_are_dropped_unless_kept() {
    for keep in [false, true] {
        let base = persistent_snapshot(u32::MAX, keep);
        let (mut publisher, mut w) = persistent_worker(base.clone());
        let home = connect(&mut w, CLIENT, 1000, 80);
        let h = SRV.iter().position(|x| *x == home).unwrap();
        let other = SRV[1 - h];
        reset(&mut w, CLIENT, 1000, 80);
        // Down: the client goes elsewhere.
        publisher.publish(Box::new(with_server(base.clone(), h, false, 1)));
        w.poll(&mut Idle, 1);
        assert_eq!(connect(&mut w, CLIENT, 1001, 80), other, "keep_on_down {keep}: server down");
        reset(&mut w, CLIENT, 1001, 80);
        // Back up.
        publisher.publish(Box::new(with_server(base.clone(), h, true, 1)));
        w.poll(&mut Idle, 2);
        let after = connect(&mut w, CLIENT, 1002, 80);
        if keep {
            assert_eq!(after, home, "kept record: back to its server");
        } else {
            assert_eq!(after, other, "dropped record: the new record stays");
        }
        // A record made before a down/up cycle the client did not see is
        // stale too (unless kept).
        let (mut publisher, mut w) = persistent_worker(base.clone());
        let home = connect(&mut w, CLIENT, 1000, 80);
        let h = SRV.iter().position(|x| *x == home).unwrap();
        publisher.publish(Box::new(with_server(base.clone(), h, true, 7)));
        w.poll(&mut Idle, 1);
        let next = connect(&mut w, CLIENT, 1001, 80);
        assert_eq!(next == home, keep, "keep_on_down {keep}: record across an unseen outage");
        std::mem::forget(publisher);
    }
}

#[test]
fn records_live_while_their_connections_do_then_for_the_timeout() {
    let (_p, mut w) = persistent_worker(persistent_snapshot(u32::MAX, false));
    w.shard.now = 10;
    connect(&mut w, CLIENT, 1000, 80);
    // Long after the timeout, the open connection keeps the record.
    w.shard.now = 10 + 10 * PERSIST_TIMEOUT;
    assert_eq!(w.persist_records(), 1);
    reset(&mut w, CLIENT, 1000, 80);
    w.shard.now += PERSIST_TIMEOUT - 1;
    assert_eq!(w.persist_records(), 1, "lives the timeout after its last connection");
    w.shard.now += 1;
    assert_eq!(w.persist_records(), 0, "then expires");
    // Entries removed by idle expiry release their record too.
    w.shard.now = 1000;
    connect(&mut w, CLIENT, 2000, 80);
    w.shard.expire(w.snapshot.get(), 1000 + Timeouts::default().tcp_syn);
    assert_eq!(w.table().len(), 0);
    w.shard.now = 1000 + Timeouts::default().tcp_syn + PERSIST_TIMEOUT;
    assert_eq!(w.persist_records(), 0);
}

#[test]
fn source_ip_persistence_owns_connections_by_client_address() {
    let snap = persistent_snapshot(0xffff_ff00, false);
    for workers in [2u16, 3, 4] {
        let o = owner(&snap, &Owners::new(workers, 0), ip(CLIENT), 1000, ip(VIP), 80, 6);
        for sport in (1000..60000).step_by(997) {
            assert_eq!(owner(&snap, &Owners::new(workers, 0), ip(CLIENT), sport, ip(VIP), 80, 6), o, "every port of the client");
            assert_eq!(owner(&snap, &Owners::new(workers, 0), ip([192, 0, 2, 77]), sport, ip(VIP), 80, 6), o, "every client of the /24");
            // NAT replies from its servers: the same owner.
            assert_eq!(owner(&snap, &Owners::new(workers, 0), ip(SRV[1]), 8080, ip(CLIENT), sport, 6), o, "reply");
        }
        // Without persistence (VIP:53/udp) the port still counts.
        let spread: std::collections::BTreeSet<u16> = (1000..1100).map(|p| owner(&snap, &Owners::new(workers, 0), ip(CLIENT), p, ip(VIP), 53, 17)).collect();
        assert_eq!(spread.len(), workers as usize);
    }
}

#[test]
fn a_drained_server_keeps_its_persistent_clients_but_gets_no_new_ones() {
    let base = persistent_snapshot(u32::MAX, false);
    let (mut publisher, mut w) = persistent_worker(base.clone());
    let home = connect(&mut w, CLIENT, 1000, 80);
    let h = SRV.iter().position(|x| *x == home).unwrap();
    // Drained: not enabled, but sticky.
    let mut drained = base.clone();
    for r in drained.servers.iter_mut().filter(|r| r.ip == ip(SRV[h])) {
        r.enabled = false;
        r.sticky_only = true;
    }
    publisher.publish(Box::new(drained.clone()));
    w.poll(&mut Idle, 1);
    assert_eq!(connect(&mut w, CLIENT, 1001, 80), home, "its persistent client still comes");
    for c in 10..=15u8 {
        assert_ne!(connect(&mut w, [203, 0, 113, c], 1000, 80), home, "new client {c} sent to a drained server");
    }
    // Disabled (forced offline): the record is not followed.
    for r in drained.servers.iter_mut() {
        r.sticky_only = false;
    }
    publisher.publish(Box::new(drained));
    w.poll(&mut Idle, 2);
    assert_ne!(connect(&mut w, CLIENT, 1002, 80), home);
    std::mem::forget(publisher);
}

/// `snapshot()` with VIP:81 as NAT to SRV[0]:8080 only, so that a
/// client's connections to VIP:80 and VIP:81 can share a server-side key.
fn twin_ports_snapshot() -> Snapshot {
    let mut s = snapshot();
    s.services[1].forwarding = Forwarding::Nat;
    s.services[1].local_addrs = Box::new([]);
    s.services[1].members = Box::new([2]);
    s.services[1].schedule = Schedule::round_robin(1);
    s.index();
    s
}

/// NAT: a client's connections to two virtual ports leading to one
/// server:port share the server-side key. A new one reusing the client port
/// of a closed one takes over its entry; one whose twin is still open is
/// refused.
#[test]
fn a_closing_entry_gives_way_to_a_new_connection_with_its_reply_key() {
    let mut w = worker_on(twin_ports_snapshot(), 64, 0, 1, true);
    let seg = |from_client: bool, dport: u16, flags: u8| {
        if from_client {
            frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, dport, flags), true)
        } else {
            frame(SERVER_MAC[0], IN_MAC, SRV[0], CLIENT, 6, &tcp(8080, 40000, flags), true)
        }
    };
    let mut f = seg(true, 80, tcpf::SYN);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(addr(&f, 30), SRV[0]);
    // Open: the twin through VIP:81 (also to SRV[0]:8080) is refused.
    assert_eq!(w.process(&mut seg(true, 81, tcpf::SYN), OUT, false), Verdict::Drop(DropReason::FlowExists));
    for (client, flags) in [(false, tcpf::SYN | tcpf::ACK), (true, tcpf::ACK), (true, tcpf::FIN | tcpf::ACK), (false, tcpf::FIN | tcpf::ACK), (true, tcpf::ACK)] {
        let mut g = seg(client, 80, flags);
        w.process(&mut g, if client { OUT } else { IN }, false);
    }
    assert_eq!(w.table().len(), 1);
    assert!(matches!(w.table().get(0).map(|f| f.state), Some(FlowState::TimeWait)), "{:?}", w.table().get(0).map(|f| f.state));
    // Closed: the new connection takes the key over.
    let mut g = seg(true, 81, tcpf::SYN);
    assert_eq!(w.process(&mut g, OUT, false), Verdict::Forward(IN));
    assert_eq!((addr(&g, 30), port(&g, 36)), (SRV[0], 8080));
    assert_eq!(w.table().len(), 1, "the closing entry went");
    let mut r = seg(false, 81, tcpf::SYN | tcpf::ACK);
    assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(OUT));
    assert_eq!(port(&r, 34), 81, "replies now belong to the VIP:81 connection");
    let c = w.counters();
    assert_eq!((c.services[0].conns_active.get(), c.services[1].conns_active.get()), (0, 1));
}

/// Removing a virtual server or a server changes nothing for the owner
/// worker of their open connections.
#[test]
fn removed_services_and_servers_keep_their_connections_owners() {
    let live = persistent_snapshot(0xffff_ff00, false);
    let mut gone = live.clone();
    gone.services[0].retired = true;
    gone.services[0].members = Box::new([]);
    gone.index();
    assert_eq!(gone.find_service(ip(VIP), 80, 6), None, "no new connections");
    // VIP:80 keeps its services, but server 0 (SRV[0]) is removed from it.
    let mut server_gone = live.clone();
    server_gone.services[0].members = Box::new([1]);
    server_gone.index();
    for workers in [2u16, 3, 4] {
        for sport in (1000..60000u16).step_by(1777) {
            let o = owner(&live, &Owners::new(workers, 0), ip(CLIENT), sport, ip(VIP), 80, 6);
            assert_eq!(owner(&gone, &Owners::new(workers, 0), ip(CLIENT), sport, ip(VIP), 80, 6), o, "client to a removed VIP");
            assert_eq!(owner(&gone, &Owners::new(workers, 0), ip(SRV[0]), 8080, ip(CLIENT), sport, 6), o, "its server's replies");
            assert_eq!(owner(&server_gone, &Owners::new(workers, 0), ip(SRV[0]), 8080, ip(CLIENT), sport, 6), o, "a removed server's replies");
        }
    }
}

/// Full-NAT without a free local port: the connection is refused and the
/// persistence record it would have used does not stay referenced.
#[test]
fn a_refused_full_nat_connection_leaves_no_reference() {
    let mut s = persistent_snapshot(u32::MAX, false);
    s.services[1].local_addrs = Box::new([]);
    s.index();
    let (_p, mut w) = persistent_worker(s);
    w.shard.now = 10;
    let mut f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(1000, 81, tcpf::SYN), true);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Drop(DropReason::NoLocalPort));
    w.shard.now = 10 + PERSIST_TIMEOUT;
    assert_eq!(w.persist_records(), 0, "the record expired: nothing references it");
}

/// A record naming a server no service of the group has any more is
/// replaced at the client's next connection.
#[test]
fn a_record_naming_a_removed_server_is_replaced() {
    let base = persistent_snapshot(u32::MAX, false);
    let (mut publisher, mut w) = persistent_worker(base.clone());
    let home = connect(&mut w, CLIENT, 1000, 80);
    let h = SRV.iter().position(|x| *x == home).unwrap();
    reset(&mut w, CLIENT, 1000, 80);
    let mut removed = base.clone();
    for v in removed.services.iter_mut().take(2) {
        let keep: Vec<u16> = v.members.iter().copied().filter(|g| base.servers[*g as usize].ip != ip(SRV[h])).collect();
        v.members = keep.into_boxed_slice();
        v.schedule = Schedule::round_robin(1);
    }
    removed.index();
    publisher.publish(Box::new(removed));
    w.poll(&mut Idle, 1);
    let made = w.counters().persist_records.get();
    let next = connect(&mut w, CLIENT, 1001, 80);
    assert_eq!(next, SRV[1 - h]);
    assert_eq!(w.counters().persist_records.get(), made + 1, "a new record");
    assert_eq!(connect(&mut w, CLIENT, 1002, 81), next, "and the group follows it");
    std::mem::forget(publisher);
}

/// The fixture's snapshot with the NAT service on VIP:80 turned into MAT
/// (`dsr-l2`) with servers listening on port 80.
pub(super) fn dsr_l2_snapshot() -> Snapshot {
    let mut s = snapshot();
    if let Some(vs) = s.services.get_mut(0) {
        vs.forwarding = Forwarding::DsrL2;
    }
    for srv in s.servers.iter_mut().filter(|r| r.vs == 0) {
        srv.port = 80;
    }
    s.index();
    s
}

/// MAT: only the Ethernet addresses change (the server's MAC, from the
/// port towards it); IP and TCP bytes leave as they came, TTL included;
/// the entry follows the client's direction alone (SYN, ACK, FIN), and
/// the server's own reply, if it came through the box, is routed back.
#[test]
fn dsr_l2_changes_the_destination_mac_only_and_tracks_the_client_side() {
    let mut w = worker_on(dsr_l2_snapshot(), 64, 0, 1, true);
    let mut f = syn(40000, 80);
    let sent = f.clone();
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(&f[0..6], &SERVER_MAC[0].0, "to the server's MAC");
    assert_eq!(&f[6..12], &IN_MAC.0, "from the port towards it");
    assert_eq!(&f[12..], &sent[12..], "IP and TCP untouched: the server holds the VIP");
    let id = w.table().iter().next().map(|(id, _)| id).unwrap();
    assert_eq!(w.table().get(id).map(|e| (e.state, e.mode)), Some((FlowState::SynSent, Forwarding::DsrL2)));
    for (flags, want) in [(tcpf::ACK, FlowState::Established), (tcpf::ACK | tcpf::PSH, FlowState::Established), (tcpf::FIN | tcpf::ACK, FlowState::FinWait)] {
        let mut f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, flags), true);
        let sent = f.clone();
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
        assert_eq!((&f[0..6], &f[12..]), (&SERVER_MAC[0].0[..], &sent[12..]));
        assert_eq!(w.table().get(id).map(|e| e.state), Some(want), "after {flags:#04x}");
    }
    // A second client goes to the other server, by MAC too.
    let mut g = syn(40001, 80);
    assert_eq!(w.process(&mut g, OUT, false), Verdict::Forward(IN));
    assert_eq!(&g[0..6], &SERVER_MAC[1].0);
    // The server's real answer (from the VIP) goes straight to the client;
    // one that reached the box anyway matches nothing here (README: DSR
    // servers must not route through the box).
    let mut r = frame(SERVER_MAC[1], IN_MAC, VIP, CLIENT, 6, &tcp(80, 40001, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(w.process(&mut r, IN, false), Verdict::Drop(DropReason::NoVirtualServer));
    // A packet on the entry's reply key (the server's own address) is
    // routed back to the client, TTL decremented.
    let reply = frame(SERVER_MAC[1], IN_MAC, SRV[1], CLIENT, 6, &tcp(80, 40001, tcpf::SYN | tcpf::ACK), true);
    let mut rr = reply.clone();
    assert_eq!(w.process(&mut rr, IN, false), Verdict::Forward(OUT));
    assert_eq!(&rr[0..6], &CLIENT_MAC.0);
    assert_eq!(rr[22], reply[22] - 1);
    assert_checksums(&rr);
}

/// L3 DSR (`dsr-dscp`): the destination becomes the server (port kept),
/// the DSCP names the VIP (ECN bits kept), TTL goes down, checksums stay
/// right; the source is the client's.
#[test]
fn dsr_dscp_rewrites_the_destination_and_marks_the_vip() {
    let mut s = dsr_l2_snapshot();
    if let Some(vs) = s.services.get_mut(0) {
        vs.forwarding = Forwarding::DsrDscp;
        vs.dscp = 46;
    }
    let mut w = worker_on(s, 64, 0, 1, true);
    let mut f = syn(40000, 80);
    f[15] |= 0x01; // ECT(1) from the client
    crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    let sent = f.clone();
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(&f[0..6], &SERVER_MAC[0].0);
    assert_eq!(addr(&f, 26), CLIENT, "the client's source, for the server to answer directly");
    assert_eq!(addr(&f, 30), SRV[0]);
    assert_eq!((port(&f, 34), port(&f, 36)), (40000, 80), "ports untouched");
    assert_eq!(f[15], 46 << 2 | 0x01, "DSCP 46 (EF), ECN kept");
    assert_eq!(f[22], sent[22] - 1, "routed: TTL decremented");
    assert_checksums(&f);
    let id = w.table().iter().next().map(|(id, _)| id).unwrap();
    assert_eq!(w.table().get(id).map(|e| e.mode), Some(Forwarding::DsrDscp));
    let mut a = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::ACK), true);
    assert_eq!(w.process(&mut a, OUT, false), Verdict::Forward(IN));
    assert_eq!(w.table().get(id).map(|e| e.state), Some(FlowState::Established), "the client's ACK alone establishes it");
}

/// Hairpin (one-arm NAT): a NAT client on the servers' own segment is
/// source-NATed to the self IP there, so the server answers through the
/// box; the answer goes back from the VIP. A client elsewhere keeps its
/// address (plain NAT).
#[test]
fn a_nat_client_on_the_servers_segment_is_source_natted_to_the_self_ip() {
    let mut w = worker();
    const NEAR: [u8; 4] = [198, 51, 100, 50];
    let near_mac = EthernetAddress([2, 0, 0, 0, 0, 0x50]);
    let mut f = frame(near_mac, IN_MAC, NEAR, VIP, 6, &tcp(41000, 80, tcpf::SYN), true);
    assert_eq!(w.process(&mut f, IN, false), Verdict::Forward(IN));
    assert_eq!(addr(&f, 26), SELF_IN, "source NAT to the self IP on the servers' segment");
    assert_eq!(addr(&f, 30), SRV[0]);
    let lport = port(&f, 34);
    assert!((crate::forward::LOCAL_PORT_MIN..=crate::forward::LOCAL_PORT_MAX).contains(&lport));
    assert_checksums(&f);
    let id = w.table().iter().next().map(|(id, _)| id).unwrap();
    assert_eq!(w.table().get(id).map(|e| e.mode), Some(Forwarding::FullNat), "the entry is full-NAT: its replies come to the self IP");
    let mut r = frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 6, &tcp(8080, lport, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(IN));
    assert_eq!(&r[0..6], &near_mac.0);
    assert_eq!((addr(&r, 26), port(&r, 34)), (VIP, 80), "from the VIP");
    assert_eq!((addr(&r, 30), port(&r, 36)), (NEAR, 41000), "to the client");
    assert_checksums(&r);
    // A client on the outside keeps plain NAT.
    let mut g = syn(40000, 80);
    assert_eq!(w.process(&mut g, OUT, false), Verdict::Forward(IN));
    assert_eq!(addr(&g, 26), CLIENT);
}

/// The fixture's MAT snapshot turned into `dsr-tunnel` of `kind`, outer
/// sources from 203.0.113.0/24 and GUE to port 6080.
pub(super) fn dsr_tunnel_snapshot(kind: crate::forward::TunnelKind) -> Snapshot {
    let mut s = dsr_l2_snapshot();
    if let Some(vs) = s.services.get_mut(0) {
        vs.forwarding = Forwarding::DsrTunnel;
        vs.tunnel = Some(crate::state::snapshot::TunnelSpec { kind, source: Some((ip([203, 0, 113, 0]), 0xff)), port: 6080 });
    }
    s
}

/// `dsr-tunnel`: the client's packet leaves byte for byte inside IPIP, GRE
/// or GUE to the server (VLAN tag and Ethernet padding gone), with a valid
/// outer header whose source (and GUE source port) is one per flow and
/// varies between flows; the entry follows the client's side.
#[test]
fn dsr_tunnel_encapsulates_the_untouched_packet_towards_the_server() {
    use crate::forward::TunnelKind;
    for (kind, proto) in [(TunnelKind::Ipip, 4u8), (TunnelKind::Gre, 47), (TunnelKind::Gue, 17)] {
        let mut w = worker_on(dsr_tunnel_snapshot(kind), 256, 0, 1, true);
        let at = 14 + kind.overhead();
        let outer_of = |w: &mut Worker, f: Vec<u8>| {
            let inner = f[14..].to_vec();
            let mut b = pkt(f);
            assert_eq!(w.process_packet(&mut b, false), Verdict::Forward(IN), "{kind:?}");
            let o = &b.data;
            assert_eq!(o.len(), at + inner.len(), "{kind:?}");
            let srv = SRV.iter().position(|a| *a == addr(o, 30)).expect("to a server's own address");
            assert_eq!((&o[0..6], &o[6..12], &o[12..14]), (&SERVER_MAC[srv].0[..], &IN_MAC.0[..], &[8u8, 0][..]), "that server's MAC");
            let ip4 = crate::wire::ipv4::Ipv4Packet::new_checked(&o[14..]).unwrap();
            assert!(ip4.verify_checksum());
            assert_eq!((ip4.protocol(), ip4.total_len() as usize), (proto, kind.overhead() + inner.len()));
            assert_eq!(&o[at..], &inner[..], "{kind:?}: the client's packet untouched");
            if kind == TunnelKind::Gue {
                assert_eq!(port(o, 36), 6080);
                assert!(port(o, 34) >= 49152);
            }
            (addr(o, 26), port(o, 34))
        };
        let first = outer_of(&mut w, syn(40000, 80));
        assert_eq!(first.0[..3], [203, 0, 113], "{kind:?}: outer source in tunnel_source");
        let again = outer_of(&mut w, frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 80, tcpf::ACK), true));
        assert_eq!(again, first, "{kind:?}: one flow, one outer header");
        // An unkeyed hash of the flow: it tells the servers' side nothing
        // of the flow-table key.
        let (src, sport) = crate::forward::tunnel::entropy(crate::forward::tunnel::flow_hash(ip(CLIENT), 40000, 6), ip([203, 0, 113, 0]), 0xff);
        assert_eq!(first.0, src.to_be_bytes(), "{kind:?}");
        if kind == TunnelKind::Gue {
            assert_eq!(first.1, sport);
        }
        // Other flows vary it.
        let seen: std::collections::BTreeSet<_> = (41000..41020).map(|sport| outer_of(&mut w, syn(sport, 80))).collect();
        assert!(seen.len() >= 15, "{kind:?}: 20 flows, {} outer sources", seen.len());
        // Tagged in, padded in: the inner packet alone goes in the tunnel.
        let mut tagged = with_vlan(&syn(42000, 80));
        tagged.extend_from_slice(&[0; 6]);
        let mut b = pkt(tagged);
        assert_eq!(w.process_packet(&mut b, false), Verdict::Forward(IN));
        assert_eq!(&b.data[at..], &syn(42000, 80)[14..]);
        let id = w.table().iter().next().map(|(id, _)| id).unwrap();
        assert_eq!(w.table().get(id).map(|e| e.mode), Some(Forwarding::DsrTunnel));
    }
}

/// A packet that the encapsulation would take past the link's MTU: with
/// DF, answered from the VIP with ICMP fragmentation needed carrying the
/// MTU less the encapsulation (RFC 1191); without, dropped; no headroom
/// is its own drop.
#[test]
fn dsr_tunnel_answers_a_packet_too_big_for_the_tunnel() {
    use crate::forward::TunnelKind;
    for kind in [TunnelKind::Ipip, TunnelKind::Gre, TunnelKind::Gue] {
        let mut w = worker_on(dsr_tunnel_snapshot(kind), 64, 0, 1, true);
        let mut open = pkt(syn(40000, 80));
        assert_eq!(w.process_packet(&mut open, false), Verdict::Forward(IN));
        let fits = 1500 - kind.overhead() - 40;
        let big = |data: usize, df: bool| {
            let mut l4 = tcp(40000, 80, tcpf::ACK);
            l4.extend(std::iter::repeat_n(0x61, data));
            let mut f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &l4, true);
            if df {
                f[20] = 0x40;
                crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
            }
            f
        };
        let mut ok = pkt(big(fits, true));
        assert_eq!(w.process_packet(&mut ok, false), Verdict::Forward(IN), "{kind:?}: exactly the MTU fits");
        assert_eq!(ok.data.len(), 14 + 1500);
        let sent = big(fits + 1, true);
        let mut b = pkt(sent.clone());
        assert_eq!(w.process_packet(&mut b, false), Verdict::Forward(OUT), "{kind:?}: answered back out");
        let r = &b.data;
        assert_eq!((&r[0..6], &r[6..12]), (&CLIENT_MAC.0[..], &OUT_MAC.0[..]));
        assert_eq!((addr(r, 26), addr(r, 30), r[23]), (VIP, CLIENT, 1), "ICMP from the VIP to the client");
        assert_eq!((r[34], r[35]), (3, 4), "destination unreachable, fragmentation needed");
        assert_eq!(port(r, 40) as usize, 1500 - kind.overhead(), "{kind:?}: the tunnel's MTU");
        assert_eq!(&r[42..42 + 28], &sent[14..14 + 28], "quotes the header and 8 bytes");
        assert_eq!(checksum::checksum(&r[34..]), 0, "ICMP checksum");
        assert_eq!(r.len(), 14 + 20 + 8 + 28);
        assert_eq!(w.counters().frag_needed.get(), 1);
        let mut nodf = pkt(big(fits + 1, false));
        assert_eq!(w.process_packet(&mut nodf, false), Verdict::Drop(DropReason::TunnelTooBig), "not fragmented");
        let mut cramped = Pkt { head: 10, ..pkt(syn(40002, 80)) };
        assert_eq!(w.process_packet(&mut cramped, false), Verdict::Drop(DropReason::TunnelNoHeadroom));
    }
}

/// 802.1Q: a frame's link is its port and its VLAN; what leaves a link
/// carries that link's tag (added, rewritten or removed on the way out);
/// a VLAN no link has is dropped by name; the entry remembers the
/// client's link, so the answer goes back tagged.
#[test]
fn vlan_links_tag_what_leaves_them() {
    let mut w = worker();
    let mut io = Io::default();
    io.rx.push(pkt(with_vlan(&syn(40000, 80))));
    let mut other = with_vlan(&syn(40001, 80));
    other[15] = 200;
    io.rx.push(pkt(other));
    assert_eq!(w.poll(&mut io, 1), 2);
    assert_eq!(w.counters().drops(DropReason::UnknownVlan), 1, "VLAN 200: no such link");
    assert_eq!(io.tx.len(), 1);
    let (port, out) = (io.tx[0].0, io.tx[0].1.data.clone());
    assert_eq!(port, IN, "to the server's port");
    assert_eq!(&out[12..14], &[0x08, 0x00], "untagged on the server side");
    assert_eq!(addr(&out, 30), SRV[0]);
    assert_checksums(&out);
    let id = w.table().iter().next().map(|(id, _)| id).unwrap();
    assert_eq!(w.table().get(id).map(|e| e.client_port_id), Some(OUT_VLAN100 as u8), "the client's link");
    io.tx.clear();
    // The server's answer, on the servers' link (review S9: the same
    // answer on the clients' link is spoofed).
    io.rx.push(pkt(frame(SERVER_MAC[0], IN_MAC, SRV[0], CLIENT, 6, &tcp(8080, 40000, tcpf::SYN | tcpf::ACK), true)));
    assert_eq!(w.poll(&mut io, 2), 1);
    assert_eq!((io.tx.len(), w.counters().drops(DropReason::ReplyWrongLink)), (0, 1));
    io.rx.push(Pkt { port: IN, ..pkt(frame(SERVER_MAC[0], IN_MAC, SRV[0], CLIENT, 6, &tcp(8080, 40000, tcpf::SYN | tcpf::ACK), true)) });
    assert_eq!(w.poll(&mut io, 2), 1);
    let (port, back) = (io.tx[0].0, io.tx[0].1.data.clone());
    assert_eq!(port, OUT, "the client's port");
    assert_eq!(&back[12..16], &[0x81, 0x00, 0x00, 100], "tagged VLAN 100 again");
    assert_eq!(&back[16..18], &[0x08, 0x00]);
    assert_eq!(&back[0..6], &CLIENT_MAC.0);
    let mut untagged = back[..12].to_vec();
    untagged.extend_from_slice(&back[16..]);
    assert_eq!(addr(&untagged, 26), VIP);
    assert_checksums(&untagged);
    // Retagging a tagged frame onto another VLAN rewrites the tag in place.
    let mut p = pkt(with_vlan(&syn(1, 2)));
    assert!(retag(&mut p, 7));
    assert_eq!(&p.data[12..16], &[0x81, 0x00, 0x00, 7]);
    let mut cramped = Pkt { head: 0, ..pkt(syn(1, 2)) };
    assert!(!retag(&mut cramped, 7), "no headroom for a tag");
}

/// `[[snat]]`: a server's own connection to a host on the outside
/// segment (resolved on demand) and to one behind the default gateway:
/// out from the rule's address and one of its ports, back to the server;
/// unsolicited traffic from outside to a server's address is dropped.
#[test]
fn servers_reach_out_through_source_nat_and_nothing_reaches_them_unasked() {
    use crate::state::snapshot::{RouteView, SnatRule};
    const SNAT: [u8; 4] = [192, 0, 2, 3];
    const HOST: [u8; 4] = [192, 0, 2, 50];
    const FAR: [u8; 4] = [203, 0, 113, 9];
    let host_mac = EthernetAddress([2, 0, 0, 0, 0, 0x50]);
    let gw_mac = EthernetAddress([2, 0, 0, 0, 0, 0x01]);
    let mut s = snapshot();
    s.snat = vec![SnatRule { net: ip([198, 51, 100, 0]), mask: 0xffff_ff00, link: IN, addr: ip(SNAT), port_min: 20000, port_max: 20099 }];
    s.routes = vec![
        RouteView { net: 0, mask: 0, link: OUT, via: Some(2) },
        RouteView { net: ip([192, 0, 2, 0]), mask: 0xffff_ff00, link: OUT, via: None },
        RouteView { net: ip([198, 51, 100, 0]), mask: 0xffff_ff00, link: IN, via: None },
    ];
    s.index();
    let (publisher, mut readers) = rcu(Box::new(s), 1);
    let n = Arc::new(Neighbors::new(4));
    n.set(2, gw_mac);
    let mut w = Worker::new(WorkerConfig { flows: 64, ..WorkerConfig::default() }, readers.remove(0), Arc::clone(&n));
    let out = |w: &mut Worker, f: &mut Vec<u8>| w.process(f, IN, false);
    // UDP to a host on the outside segment: its MAC is asked for first.
    let mut q = frame(SERVER_MAC[0], IN_MAC, SRV[0], HOST, 17, &udp(40000, 53, b"query"), true);
    assert_eq!(out(&mut w, &mut q.clone()), Verdict::Drop(DropReason::NeighborUnresolved));
    assert_eq!(n.take_wanted(), vec![(OUT, ip(HOST))], "asked for on the outside link");
    n.set_host(OUT, ip(HOST), host_mac);
    assert_eq!(out(&mut w, &mut q), Verdict::Forward(OUT));
    assert_eq!((&q[0..6], &q[6..12]), (&host_mac.0[..], &OUT_MAC.0[..]));
    assert_eq!(addr(&q, 26), SNAT, "from the rule's address");
    let sport = port(&q, 34);
    assert!((20000..=20099).contains(&sport), "from its own ports: {sport}");
    assert_eq!((addr(&q, 30), port(&q, 36)), (HOST, 53), "to the host, unchanged");
    assert_checksums(&q);
    assert_eq!(w.counters().snat.get(), 1);
    // The answer goes back to the server, at the MAC it sent from.
    let mut a = frame(host_mac, OUT_MAC, HOST, SNAT, 17, &udp(53, sport, b"answer"), true);
    assert_eq!(w.process(&mut a, OUT, false), Verdict::Forward(IN));
    assert_eq!((&a[0..6], addr(&a, 30), port(&a, 36), addr(&a, 26)), (&SERVER_MAC[0].0[..], SRV[0], 40000, HOST));
    assert_checksums(&a);
    // TCP to a host behind the default gateway.
    let mut syn = frame(SERVER_MAC[1], IN_MAC, SRV[1], FAR, 6, &tcp(41000, 443, tcpf::SYN), true);
    assert_eq!(out(&mut w, &mut syn), Verdict::Forward(OUT));
    assert_eq!((&syn[0..6], addr(&syn, 26), addr(&syn, 30)), (&gw_mac.0[..], SNAT, FAR));
    assert_checksums(&syn);
    let tcp_sport = port(&syn, 34);
    let mut synack = frame(gw_mac, OUT_MAC, FAR, SNAT, 6, &tcp(443, tcp_sport, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(w.process(&mut synack, OUT, false), Verdict::Forward(IN));
    let mut ack = frame(SERVER_MAC[1], IN_MAC, SRV[1], FAR, 6, &tcp(41000, 443, tcpf::ACK), true);
    assert_eq!(out(&mut w, &mut ack), Verdict::Forward(OUT), "the connection's next packet");
    // Established, and on no server's counters: the last server slot
    // (65,535, a server's like any other: `limits::MAX_SERVERS`) is the
    // `server` a source-NAT entry carries, and counts nothing of it.
    let last = &w.counters().servers[usize::from(u16::MAX)];
    assert_eq!(w.counters().servers.len(), 65_536);
    assert_eq!((last.conns_active.get(), last.conns_established.get(), last.in_pkts.get(), last.out_pkts.get()), (0, 0, 0, 0));
    // Not opened by a SYN: nothing.
    let mut stray = frame(SERVER_MAC[1], IN_MAC, SRV[1], FAR, 6, &tcp(41001, 443, tcpf::ACK), true);
    assert_eq!(out(&mut w, &mut stray), Verdict::Drop(DropReason::TcpNoFlow));
    // From outside to a server's own address, unasked: dropped by name.
    let mut knock = frame(CLIENT_MAC, OUT_MAC, CLIENT, SRV[0], 6, &tcp(50000, 22, tcpf::SYN), true);
    assert_eq!(w.process(&mut knock, OUT, false), Verdict::Drop(DropReason::NoVirtualServer));
    // To a port of the rule's address nobody opened: punted (the box's own).
    let mut probe = frame(host_mac, OUT_MAC, HOST, SNAT, 17, &udp(53, 20098, b"?"), true);
    assert_eq!(w.process(&mut probe, OUT, false), Verdict::Punt);
    // A server's address as source, arriving from outside (review S3: an
    // open relay): dropped by name, no entry, no port taken.
    let before = w.table().len();
    let mut spoofed = frame(CLIENT_MAC, OUT_MAC, SRV[0], FAR, 17, &udp(40001, 53, b"relay me"), true);
    assert_eq!(w.process(&mut spoofed, OUT, false), Verdict::Drop(DropReason::SnatWrongLink));
    let mut spoofed = frame(CLIENT_MAC, OUT_MAC, SRV[1], FAR, 6, &tcp(41002, 443, tcpf::SYN), true);
    assert_eq!(w.process(&mut spoofed, OUT, false), Verdict::Drop(DropReason::SnatWrongLink));
    assert_eq!((w.table().len(), w.counters().snat.get()), (before, 2));
    std::mem::forget(publisher);
}

/// Firewall load balancing: two gateway services, one per side, over the
/// same two firewalls' legs: a flow's two directions pick the same
/// firewall (only the MACs change), flows spread over both, a firewall
/// down on either side is left out on both; a `route` link routes what
/// comes back (TTL down, on-link host resolved on demand).
#[test]
fn gateway_services_keep_both_directions_of_a_flow_on_one_firewall() {
    use crate::lb::RealServer;
    const FW_OUT: [EthernetAddress; 2] = [EthernetAddress([2, 0, 0, 0, 0xf1, 1]), EthernetAddress([2, 0, 0, 0, 0xf2, 1])];
    const FW_IN: [EthernetAddress; 2] = [EthernetAddress([2, 0, 0, 0, 0xf1, 2]), EthernetAddress([2, 0, 0, 0, 0xf2, 2])];
    let mut s = snapshot();
    // Link 3: the firewalls' outer segment, routing what comes back.
    s.ports.push(Some(PortView { mac: EthernetAddress([2, 0, 0, 0, 0, 0xa3]), self_ip: ip([203, 0, 113, 1]), netmask: 0xffff_ff00, mtu: 1500, port: 3, vlan: 0, route: true, ..Default::default() }));
    s.routes = vec![crate::state::snapshot::RouteView { net: ip([192, 0, 2, 0]), mask: 0xffff_ff00, link: OUT, via: None }];
    let first = s.servers.len() as u16;
    for (i, (a, b)) in [([203, 0, 113, 11], [198, 51, 100, 21]), ([203, 0, 113, 12], [198, 51, 100, 22])].into_iter().enumerate() {
        s.servers.push(RealServer { ip: ip(a), port: 0, weight: 1, enabled: true, tx_port: 3, nexthop: 4 + i as u16, vs: 3, ..RealServer::default() });
        s.servers.push(RealServer { ip: ip(b), port: 0, weight: 1, enabled: true, tx_port: IN, nexthop: 6 + i as u16, vs: 4, ..RealServer::default() });
    }
    for (side, link, pair, members) in [(3u16, OUT, 4u16, [first, first + 2]), (4, IN, 3, [first + 1, first + 3])] {
        let mut vs = VirtualService::test(Forwarding::Gateway);
        vs.link = link;
        vs.pair = Some(pair);
        vs.members = members.to_vec().into_boxed_slice();
        assert_eq!(s.services.len(), side as usize);
        s.services.push(vs);
    }
    s.index();
    let (publisher, mut readers) = rcu(Box::new(s.clone()), 1);
    let n = Arc::new(Neighbors::new(8));
    for (i, m) in FW_OUT.iter().enumerate() {
        n.set(4 + i as u16, *m);
    }
    for (i, m) in FW_IN.iter().enumerate() {
        n.set(6 + i as u16, *m);
    }
    let mut w = Worker::new(WorkerConfig { flows: 64, ..WorkerConfig::default() }, readers.remove(0), Arc::clone(&n));
    let mut chosen = [0usize; 2];
    for c in 0..20u8 {
        let client = [192, 0, 2, 100 + c];
        let mut f = frame(CLIENT_MAC, OUT_MAC, client, SRV[0], 6, &tcp(40000, 80, tcpf::SYN), true);
        let sent = f.clone();
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(3), "to the outer segment");
        let fw = FW_OUT.iter().position(|m| f[0..6] == m.0).expect("a firewall's outer leg");
        assert_eq!(&f[14..], &sent[14..], "only the MACs change");
        chosen[fw] += 1;
        // The answer, on the servers' side: the same firewall's inner leg.
        let mut r = frame(SERVER_MAC[0], IN_MAC, SRV[0], client, 6, &tcp(80, 40000, tcpf::SYN | tcpf::ACK), true);
        assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(IN));
        assert_eq!(&r[0..6], &FW_IN[fw].0, "client {client:?}: the answer through the firewall the request took");
    }
    assert!(chosen[0] > 2 && chosen[1] > 2, "20 flows over both: {chosen:?}");
    assert_eq!(w.table().len(), 0, "stateless");
    // Firewall 1's inner leg down: it leaves both sides.
    let mut down = s.clone();
    down.servers[first as usize + 1].enabled = false;
    let (publisher2, mut readers) = rcu(Box::new(down), 1);
    let mut w2 = Worker::new(WorkerConfig { flows: 64, ..WorkerConfig::default() }, readers.remove(0), Arc::clone(&n));
    for c in 0..20u8 {
        let mut f = frame(CLIENT_MAC, OUT_MAC, [192, 0, 2, 100 + c], SRV[0], 6, &tcp(40000, 80, tcpf::SYN), true);
        assert_eq!(w2.process(&mut f, OUT, false), Verdict::Forward(3));
        assert_eq!(&f[0..6], &FW_OUT[1].0, "every flow through firewall 2");
    }
    // Back from a firewall on the route link: routed to the client.
    let mut back = frame(FW_OUT[0], EthernetAddress([2, 0, 0, 0, 0, 0xa3]), SRV[0], CLIENT, 6, &tcp(80, 40000, tcpf::ACK), true);
    let ttl = back[22];
    assert_eq!(w.process(&mut back, 3, false), Verdict::Drop(DropReason::NeighborUnresolved), "the client's MAC asked for");
    assert_eq!(n.take_wanted(), vec![(OUT, ip(CLIENT))]);
    n.set_host(OUT, ip(CLIENT), CLIENT_MAC);
    let mut back = frame(FW_OUT[0], EthernetAddress([2, 0, 0, 0, 0, 0xa3]), SRV[0], CLIENT, 6, &tcp(80, 40000, tcpf::ACK), true);
    assert_eq!(w.process(&mut back, 3, false), Verdict::Forward(OUT));
    assert_eq!((&back[0..6], &back[6..12], back[22]), (&CLIENT_MAC.0[..], &OUT_MAC.0[..], ttl - 1));
    assert_checksums(&back);
    assert_eq!(w.counters().routed.get(), 1);
    std::mem::forget((publisher, publisher2));
}

/// The pipelined receive (`burst`): a queue that fills its burst is read
/// twice a pass, every packet is processed once and in arrival order, the
/// hash computed on arrival is the lookup's (each connection found again).
#[test]
fn a_full_queue_is_read_twice_a_pass_in_order() {
    let mut io = Io::default();
    // `Io::rx_burst` pops from the end: push in reverse arrival order.
    for sport in (40000..40070u16).rev() {
        io.rx.push(pkt(syn(sport, 80)));
    }
    let mut w = worker_on(snapshot(), 1024, 0, 1, true);
    assert_eq!(w.poll(&mut io, 5), 64, "two full bursts of the one queue");
    assert_eq!(w.poll(&mut io, 5), 6, "the rest next pass");
    assert_eq!(w.table().len(), 70);
    let sports: Vec<u16> = io.tx.iter().map(|(_, p)| port(&p.data, 34)).collect();
    assert_eq!(sports, (40000..40070).collect::<Vec<_>>(), "forwarded once each, in arrival order");
    // The same segments again: each finds its entry (the hash handed from
    // the burst's first stage is the table's).
    for sport in (40000..40070u16).rev() {
        io.rx.push(pkt(syn(sport, 80)));
    }
    w.poll(&mut io, 6);
    w.poll(&mut io, 6);
    assert_eq!(w.table().len(), 70, "no second entry for any connection");
    assert_eq!(w.counters().rx_packets.get(), 140);
}
