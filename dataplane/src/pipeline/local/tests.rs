//! The exception path through the pipeline: a `Local` service's client
//! connection to the host link and back, the stack's own connection out
//! and its answers, and each side kept to its link.

use super::super::tests::{addr, assert_checksums, frame, port, snapshot, tcp, udp, worker_on, CLIENT, CLIENT_MAC, IN, IN_MAC, OUT, OUT_MAC, SRV, VIP};
use super::super::*;
use crate::state::snapshot::{HostView, PortView, RouteView, SynProxy, VirtualService};
use crate::wire::ethernet::EthernetAddress;
use crate::wire::tcp::flags as tcpf;

/// The host link (a TAP: its kernel side has the port's MAC).
const HOST: u16 = 3;
const HOST_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb0]);
/// The stack's source address toward the servers.
const SOURCE: [u8; 4] = [198, 51, 100, 50];
const SRV_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x31]);

/// The pipeline's snapshot plus a host link, an `http` service on
/// VIP:8000 served by it (its pool: both servers), and the servers' subnet
/// routed on the inside link.
fn host_snapshot() -> Snapshot {
    let mut s = snapshot();
    s.ports.push(Some(PortView { mac: HOST_MAC, self_ip: 0, netmask: 0, mtu: 1500, port: HOST, vlan: 0, route: false, ..Default::default() }));
    let mut vs = VirtualService::test(Forwarding::Local);
    vs.ip = ip(VIP);
    vs.port = 8000;
    vs.members = vec![0, 1].into_boxed_slice();
    vs.local_addrs = vec![ip(SOURCE)].into_boxed_slice();
    vs.syn_proxy = SynProxy::Off;
    s.services.push(vs);
    s.routes.push(RouteView { net: ip([198, 51, 100, 0]), mask: 0xffff_ff00, link: IN, via: None });
    s.routes.push(RouteView { net: ip([192, 0, 2, 0]), mask: 0xffff_ff00, link: OUT, via: None });
    s.host = Some(HostView { link: HOST, sources: Vec::new() });
    s.index();
    s
}

fn ip(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

fn worker() -> Worker {
    let (publisher, mut readers) = crate::state::rcu::rcu(Box::new(host_snapshot()), 1);
    std::mem::forget(publisher);
    let n = Arc::new(Neighbors::new(4));
    n.set_host(IN, ip(SRV[0]), SRV_MAC);
    Worker::new(WorkerConfig { flows: 64, ..WorkerConfig::default() }, readers.remove(0), n)
}

#[test]
fn the_index_lists_the_stacks_sources_apart_from_full_nat_local_addresses() {
    let s = host_snapshot();
    assert!(s.is_host_source(ip(SOURCE)));
    assert!(!s.is_local(ip(SOURCE)), "not a full-NAT local address: its ports are the kernel's");
    assert_eq!(s.host_link(), Some(HOST));
}

#[test]
fn a_ttl_of_1_reaches_the_stack_it_ends_in() {
    let mut w = worker();
    let mut f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40001, 8000, tcpf::SYN), true);
    let c = crate::wire::checksum::update16(u16::from_be_bytes([f[24], f[25]]), u16::from_be_bytes([f[22], f[23]]), u16::from_be_bytes([1, f[23]]));
    f[22] = 1;
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(HOST), "the box ends it: no hop is taken");
    assert_eq!(f[22], 1, "untouched");
}

#[test]
fn a_client_connection_goes_to_the_host_untouched_and_its_answers_back() {
    let mut w = worker();
    let mut f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 8000, tcpf::SYN), true);
    let before = f.clone();
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(HOST));
    assert_eq!(&f[0..6], &HOST_MAC.0, "to the kernel side's MAC");
    assert_eq!(&f[12..], &before[12..], "IP and TCP untouched, TTL included");
    assert_eq!(w.counters().local_in.get(), 1);

    // The kernel's SYN-ACK from the VIP, on the host link: to the client.
    let mut r = frame(HOST_MAC, HOST_MAC, VIP, CLIENT, 6, &tcp(8000, 40000, tcpf::SYN | tcpf::ACK), true);
    let rb = r.clone();
    assert_eq!(w.process(&mut r, HOST, false), Verdict::Forward(OUT));
    assert_eq!(&r[0..6], &CLIENT_MAC.0);
    assert_eq!(&r[6..12], &OUT_MAC.0);
    assert_eq!(&r[12..], &rb[12..], "untouched");
    assert_checksums(&r);

    // The same answer from outside is a spoof of the appliance's stack.
    let mut spoof = frame(CLIENT_MAC, OUT_MAC, VIP, CLIENT, 6, &tcp(8000, 40000, tcpf::ACK), true);
    assert_eq!(w.process(&mut spoof, OUT, false), Verdict::Drop(DropReason::LocalWrongLink));
    let mut spoof = frame(SRV_MAC, IN_MAC, VIP, CLIENT, 6, &tcp(8000, 40000, tcpf::ACK), true);
    assert_eq!(w.process(&mut spoof, IN, false), Verdict::Drop(DropReason::LocalWrongLink));
    // And the client's side never comes from the host.
    let mut odd = frame(HOST_MAC, HOST_MAC, CLIENT, VIP, 6, &tcp(40000, 8000, tcpf::ACK), true);
    assert_eq!(w.process(&mut odd, HOST, false), Verdict::Drop(DropReason::LocalWrongLink));
}

#[test]
fn the_stacks_connection_out_is_routed_and_answered_to_the_host_only() {
    let mut w = worker();
    let mut f = frame(HOST_MAC, HOST_MAC, SOURCE, SRV[0], 6, &tcp(50000, 8080, tcpf::SYN), true);
    let before = f.clone();
    assert_eq!(w.process(&mut f, HOST, false), Verdict::Forward(IN));
    assert_eq!(&f[0..6], &SRV_MAC.0, "to the server's MAC, resolved on the link");
    assert_eq!(&f[6..12], &IN_MAC.0);
    assert_eq!(&f[12..], &before[12..], "untouched");
    assert_eq!(w.counters().local_out.get(), 1);

    let mut r = frame(SRV_MAC, IN_MAC, SRV[0], SOURCE, 6, &tcp(8080, 50000, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(HOST));
    assert_eq!(&r[0..6], &HOST_MAC.0);
    assert_eq!((addr(&r, 30), port(&r, 36)), (SOURCE, 50000));

    // The server's answer from the client side, or the stack's packet from
    // outside: spoofed.
    let mut spoof = frame(CLIENT_MAC, OUT_MAC, SRV[0], SOURCE, 6, &tcp(8080, 50000, tcpf::ACK), true);
    assert_eq!(w.process(&mut spoof, OUT, false), Verdict::Drop(DropReason::LocalWrongLink));
    let mut spoof = frame(SRV_MAC, IN_MAC, SOURCE, SRV[0], 6, &tcp(50000, 8080, tcpf::ACK), true);
    assert_eq!(w.process(&mut spoof, IN, false), Verdict::Drop(DropReason::LocalWrongLink));
}

#[test]
fn the_host_opens_nothing_but_its_own_connections() {
    let mut w = worker();
    // Not one of its sources, or not its ephemeral range, or not a SYN.
    for (src, sport, flags) in [(CLIENT, 50000u16, tcpf::SYN), (SOURCE, 40000, tcpf::SYN), (SOURCE, 50000, tcpf::ACK)] {
        let mut f = frame(HOST_MAC, HOST_MAC, src, SRV[0], 6, &tcp(sport, 8080, flags), true);
        assert_eq!(w.process(&mut f, HOST, false), Verdict::Drop(DropReason::HostUnmatched), "{src:?}:{sport} flags {flags:#x}");
    }
    // To the box itself.
    let mut f = frame(HOST_MAC, HOST_MAC, SOURCE, VIP, 6, &tcp(50001, 80, tcpf::SYN), true);
    assert_eq!(w.process(&mut f, HOST, false), Verdict::Drop(DropReason::HostUnmatched));
    // ARP and ICMP from the kernel are its own chatter.
    let mut f = frame(HOST_MAC, HOST_MAC, SOURCE, SRV[0], 1, &[8, 0, 0, 0, 0, 0, 0, 0], false);
    assert_eq!(w.process(&mut f, HOST, false), Verdict::Drop(DropReason::HostUnmatched));
    // A UDP exchange of its own passes.
    let mut f = frame(HOST_MAC, HOST_MAC, SOURCE, SRV[0], 17, &udp(50002, 53, b"q"), true);
    assert_eq!(w.process(&mut f, HOST, false), Verdict::Forward(IN));
    assert_eq!(w.counters().flows.get(), 1);
}

#[test]
fn the_exception_path_is_not_replicated() {
    use crate::conntrack::EntryFlags;
    assert!(!super::super::replicate::replicable_with(EntryFlags::ASSURED, Forwarding::Local, 6));
    assert!(!super::super::replicate::replicable_with(EntryFlags::ASSURED | EntryFlags::SYN_PROXY, Forwarding::LocalOut, 6));
    assert!(super::super::replicate::replicable_with(EntryFlags::ASSURED, Forwarding::Nat, 6));
}

#[test]
fn the_syn_proxy_stands_in_front_of_the_host() {
    let mut snap = host_snapshot();
    let last = snap.services.len() - 1;
    snap.services[last].syn_proxy = SynProxy::On;
    let mut w = worker_on(snap, 64, 0, 1, true);
    let mut f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 8000, tcpf::SYN), true);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Rebuild, "answered with a cookie by the box");
    assert_eq!(w.counters().syn_cookies.get(), 1);
    assert_eq!(w.counters().local_in.get(), 0, "the kernel sees nothing yet");
}

#[test]
fn nothing_reaches_the_stacks_source_address_but_its_answers() {
    let mut w = worker();
    // No connection of the stack's: neither punted, nor a [[snat]] or
    // transit connection that would later take its reply key.
    let mut f = frame(SRV_MAC, IN_MAC, SRV[0], SOURCE, 6, &tcp(8080, 50000, tcpf::SYN), true);
    assert_eq!(w.process(&mut f, IN, false), Verdict::Drop(DropReason::HostUnmatched));
    let mut f = frame(SRV_MAC, IN_MAC, SRV[0], SOURCE, 17, &udp(53, 50000, b"x"), true);
    assert_eq!(w.process(&mut f, IN, false), Verdict::Drop(DropReason::HostUnmatched));
    assert_eq!(w.counters().flows.get(), 0);
}

#[test]
fn on_a_shared_self_ip_only_the_stacks_ports_are_the_stacks() {
    use super::super::tests::SELF_IN;
    let mut snap = host_snapshot();
    let last = snap.services.len() - 1;
    snap.services[last].local_addrs = vec![ip(SELF_IN)].into_boxed_slice();
    snap.index();
    let (publisher, mut readers) = crate::state::rcu::rcu(Box::new(snap), 1);
    std::mem::forget(publisher);
    let mut w = Worker::new(WorkerConfig { flows: 64, ..WorkerConfig::default() }, readers.remove(0), Arc::new(Neighbors::new(4)));
    // The control plane's (a sync datagram, a probe's answer) is punted.
    let mut f = frame(SRV_MAC, IN_MAC, SRV[0], SELF_IN, 17, &udp(8888, 8888, b"x"), true);
    assert_eq!(w.process(&mut f, IN, false), Verdict::Punt);
    // The stack's ephemeral ports with no connection: dropped.
    let mut f = frame(SRV_MAC, IN_MAC, SRV[0], SELF_IN, 6, &tcp(8080, 50000, tcpf::ACK), true);
    assert_eq!(w.process(&mut f, IN, false), Verdict::Drop(DropReason::HostUnmatched));
}

/// An `http` virtual server's connections have no real server (their
/// entry's `server` holds `NO_INDEX`, 65535, and their `vs` is real):
/// with 65,536 server slots the last is a real server's, and it counts
/// none of their packets, nor does its link decide where their answers
/// may come from (review S4 H1).
#[test]
fn the_exception_paths_connections_are_on_no_servers_slot() {
    let mut s = host_snapshot();
    let model = s.servers[0];
    s.servers.resize(crate::limits::MAX_SERVERS, model);
    s.index();
    let (publisher, mut readers) = crate::state::rcu::rcu(Box::new(s), 1);
    std::mem::forget(publisher);
    let mut w = Worker::new(WorkerConfig { flows: 64, ..WorkerConfig::default() }, readers.remove(0), Arc::new(Neighbors::new(4)));
    let mut syn = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 8000, tcpf::SYN), true);
    assert_eq!(w.process(&mut syn, OUT, false), Verdict::Forward(HOST));
    let mut synack = frame(HOST_MAC, HOST_MAC, VIP, CLIENT, 6, &tcp(8000, 40000, tcpf::SYN | tcpf::ACK), true);
    assert_eq!(w.process(&mut synack, HOST, false), Verdict::Forward(OUT), "the host's answer, whatever the last server's link");
    let mut ack = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 8000, tcpf::ACK), true);
    assert_eq!(w.process(&mut ack, OUT, false), Verdict::Forward(HOST));
    let mut rst = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(40000, 8000, tcpf::RST | tcpf::ACK), true);
    assert_eq!(w.process(&mut rst, OUT, false), Verdict::Forward(HOST));
    let last = &w.counters().servers[usize::from(u16::MAX)];
    let counts = (last.conns_active.get(), last.conns_established.get(), last.conns_new.get(), last.in_pkts.get(), last.out_pkts.get(), last.out_bytes.get());
    assert_eq!(counts, (0, 0, 0, 0, 0, 0));
}
