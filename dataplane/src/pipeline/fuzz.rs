//! Whole-pipeline fuzzing (issue 14): a `Worker` over a fixed snapshot
//! that has every forwarding mode (NAT, full-NAT, the DSR modes, source
//! NAT, a gateway pair, a `route` link, a VLAN link), driven by arbitrary
//! sequences of (frame, port, handed off, time step). Frames start from
//! valid templates of every kind of traffic and are then mutated. After
//! each packet:
//!
//! - nothing panicked (the hot path has no panic by lint; this runs it);
//! - a forwarded frame leaves on a link that exists, with a valid IPv4
//!   header checksum and total length, and, when its TCP/UDP checksum was
//!   valid coming in, a valid one going out (the inner packet's, inside a
//!   tunnel);
//! - the table's live entries equal the worker's `flows` gauge.
//!
//! `Fuzzer::run` draws the operations from a seed (the test and
//! `examples/fuzz_pipeline`); `Fuzzer::step_bytes` reads them from bytes
//! (a cargo-fuzz target).
#![allow(clippy::indexing_slicing, reason = "builds frames of known sizes; a panic here is a finding of the harness, not the pipeline")]

use super::{Verdict, Worker, WorkerConfig};
use crate::conntrack::Timeouts;
use crate::io::Packet;
use crate::lb::{RealServer, Schedule};
use crate::state::neighbor::Neighbors;
use crate::state::rcu::{rcu, Publisher};
use crate::state::snapshot::{Forwarding, PortView, RouteView, SnatRule, Snapshot, TunnelKind, TunnelSpec, VirtualService};
use crate::testkit::{ipv4_frame, tcp_header, udp_datagram, Rng};
use crate::wire::checksum;
use crate::wire::ethernet::EthernetAddress;
use std::sync::Arc;

const MACS: [EthernetAddress; 4] = [
    EthernetAddress([2, 0, 0, 0, 0, 0xa0]),
    EthernetAddress([2, 0, 0, 0, 0, 0xa1]),
    EthernetAddress([2, 0, 0, 0, 0, 0xa2]),
    EthernetAddress([2, 0, 0, 0, 0, 0xa3]),
];
const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x10]);
const VIP: [u8; 4] = [192, 0, 2, 100];
const SERVERS: [[u8; 4]; 2] = [[198, 51, 100, 11], [198, 51, 100, 12]];
const SNAT: [u8; 4] = [192, 0, 2, 3];
/// Link 0's IPv6 address, 2001:db8:1::2; link 1's (the IPv6 full-NAT
/// source), 2001:db8:2::1; the IPv6 VIP and servers.
const SELF6: u128 = (0x2001_0db8_0001 << 80) | 2;
const LOCAL6: u128 = (0x2001_0db8_0002 << 80) | 1;
const VIP6: u128 = (0x2001_0db8_0001 << 80) | 0x100;
const SERVERS6: [u128; 2] = [(0x2001_0db8_0002 << 80) | 0x11, (0x2001_0db8_0002 << 80) | 0x12];

fn ip(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

/// A packet in a plain buffer, as an mbuf holds one: at most `cap`
/// bytes, `head` bytes of room in front, received on DPDK port `port`.
/// The fuzzer's packets, and the pipeline tests' (`tests::pkt`).
pub(super) struct TestPkt {
    pub(super) data: Vec<u8>,
    pub(super) cap: usize,
    /// Room at the head (RTE_PKTMBUF_HEADROOM).
    pub(super) head: usize,
    pub(super) port: u16,
}

impl Packet for TestPkt {
    fn data(&self) -> &[u8] {
        &self.data
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn set_len(&mut self, len: usize) -> bool {
        if len > self.cap {
            return false;
        }
        // Grown bytes are unspecified: make them visible garbage.
        self.data.resize(len, 0xee);
        true
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.head {
            return false;
        }
        self.head -= n;
        self.data.splice(0..0, std::iter::repeat_n(0xee, n));
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.data.len() {
            return false;
        }
        self.head += n;
        self.data.drain(..n);
        true
    }
}

/// The fixed snapshot: links 0 (clients), 1 (servers), 2 (VLAN 100 on 0),
/// 3 (a `route` link); NAT :80, full-NAT :81 (and :85 with a PROXY
/// header), UDP NAT :53, dsr-l2 :82,
/// dsr-dscp :83, dsr-tunnel (GRE) :84; source NAT of the servers; a
/// gateway pair between links 0 and 1 over two next hops.
fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    let link = |i: usize, self_ip: [u8; 4], port: u16, vlan: u16, route: bool| Some(PortView { mac: MACS[i], self_ip: ip(self_ip), netmask: 0xffff_ff00, mtu: 1500, port, vlan, route, ..Default::default() });
    s.ports = vec![link(0, [192, 0, 2, 2], 0, 0, false), link(1, [198, 51, 100, 1], 1, 0, false), link(2, [203, 0, 113, 2], 0, 100, false), link(3, [203, 0, 114, 1], 3, 0, true)];
    if let Some(Some(p)) = s.ports.get_mut(0) {
        p.v6 = crate::state::snapshot::PortView6::new(SELF6, 64, MACS[0]);
    }
    if let Some(Some(p)) = s.ports.get_mut(1) {
        p.v6 = crate::state::snapshot::PortView6::new(LOCAL6, 64, MACS[1]);
    }
    s.self_ips = vec![ip([192, 0, 2, 2]), ip([198, 51, 100, 1]), ip([203, 0, 113, 2]), ip([203, 0, 114, 1])];
    let modes = [(80u16, 6u8, Forwarding::Nat), (81, 6, Forwarding::FullNat), (53, 17, Forwarding::Nat), (82, 6, Forwarding::DsrL2), (83, 6, Forwarding::DsrDscp), (84, 6, Forwarding::DsrTunnel)];
    for (vi, (port, proto, fwd)) in modes.into_iter().enumerate() {
        let first = s.servers.len() as u16;
        for (i, srv) in SERVERS.iter().enumerate() {
            let sport = if fwd.is_dsr() { port } else { 8080 };
            s.servers.push(RealServer { ip: ip(*srv), port: sport, weight: 1, enabled: true, tx_port: 1, nexthop: i as u16, vs: vi as u16, ..RealServer::default() });
        }
        let mut vs = VirtualService::test(fwd);
        vs.ip = ip(VIP);
        vs.port = port;
        vs.proto = proto;
        vs.members = vec![first, first + 1].into_boxed_slice();
        vs.schedule = Schedule::round_robin(2);
        vs.dscp = 46;
        if fwd == Forwarding::FullNat {
            vs.local_addrs = vec![ip([198, 51, 100, 1])].into_boxed_slice();
            // Full-NAT's SYNs always through the SYN proxy (NAT's: `Auto`).
            vs.syn_proxy = crate::state::snapshot::SynProxy::On;
        }
        if fwd == Forwarding::DsrTunnel {
            vs.tunnel = Some(TunnelSpec { kind: TunnelKind::Gre, source: Some((ip([203, 0, 113, 0]), 0xff)), port: 6080 });
        }
        s.services.push(vs);
    }
    // The gateway pair: next hops 2, 3 on link 3 and 1.
    let first = s.servers.len() as u16;
    for (i, (a, link)) in [([203, 0, 114, 11], 3u16), ([198, 51, 100, 21], 1)].into_iter().enumerate() {
        s.servers.push(RealServer { ip: ip(a), port: 0, weight: 1, enabled: true, tx_port: link, nexthop: 2 + i as u16, vs: 6 + i as u16, ..RealServer::default() });
    }
    for (i, link) in [0u16, 1].into_iter().enumerate() {
        let mut vs = VirtualService::test(Forwarding::Gateway);
        vs.link = link;
        vs.pair = Some(7 - i as u16);
        vs.members = vec![first + i as u16].into_boxed_slice();
        s.services.push(vs);
    }
    // Full-NAT :85 with a PROXY header before each client stream.
    let first = s.servers.len() as u16;
    for (i, srv) in SERVERS.iter().enumerate() {
        s.servers.push(RealServer { ip: ip(*srv), port: 8080, weight: 1, enabled: true, tx_port: 1, nexthop: i as u16, vs: 8, ..RealServer::default() });
    }
    let mut vs = VirtualService::test(Forwarding::FullNat);
    (vs.ip, vs.port, vs.proxy_header, vs.syn_proxy) = (ip(VIP), 85, true, crate::state::snapshot::SynProxy::Off);
    vs.members = vec![first, first + 1].into_boxed_slice();
    vs.schedule = Schedule::round_robin(2);
    vs.local_addrs = vec![ip([198, 51, 100, 1])].into_boxed_slice();
    s.services.push(vs);
    // IPv6 (services 9 and 10): NAT on VIP6:80, full-NAT from LOCAL6 on VIP6:81.
    push_ipv6_services(&mut s, VIP6, &SERVERS6, 1, LOCAL6);
    // Translated (services 11 and 12): full-NAT from VIP6:84 to the IPv4
    // servers (from 198.51.100.1, mapped), and from VIP:86 to the IPv6
    // servers (from LOCAL6).
    for (vport, six_to_four) in [(84u16, true), (86, false)] {
        let first = s.servers.len() as u16;
        let vi = s.services.len() as u16;
        for i in 0..2 {
            let (ip4, ip6) = if six_to_four { (ip(SERVERS[i]), [0; 16]) } else { (0, SERVERS6[i].to_be_bytes()) };
            s.servers.push(RealServer { ip: ip4, ip6, port: 8080, weight: 1, enabled: true, tx_port: 1, nexthop: i as u16, vs: vi, ..RealServer::default() });
        }
        let mut vs = VirtualService::test(Forwarding::FullNat);
        if six_to_four {
            (vs.ip6, vs.local_addrs6) = (VIP6, vec![crate::forward::xlate::mapped(ip([198, 51, 100, 1]))].into_boxed_slice());
        } else {
            (vs.ip, vs.local_addrs6) = (ip(VIP), vec![LOCAL6].into_boxed_slice());
        }
        (vs.port, vs.xlate, vs.members, vs.schedule) = (vport, true, vec![first, first + 1].into_boxed_slice(), Schedule::round_robin(2));
        s.services.push(vs);
    }
    s.snat = vec![SnatRule { net: ip([198, 51, 100, 0]), mask: 0xffff_ff00, link: 1, addr: ip(SNAT), port_min: 20000, port_max: 20999 }];
    s.routes = vec![
        RouteView { net: ip([192, 0, 2, 0]), mask: 0xffff_ff00, link: 0, via: None },
        RouteView { net: ip([198, 51, 100, 0]), mask: 0xffff_ff00, link: 1, via: None },
        RouteView { net: 0, mask: 0, link: 3, via: Some(2) },
    ];
    s.index();
    s
}

/// The worker under test and its clock.
pub struct Fuzzer {
    worker: Worker,
    _publisher: Publisher<Snapshot>,
    neighbors: Arc<Neighbors>,
    links: usize,
    now: u32,
    /// Inputs run, and of them forwarded (their frames checked).
    pub steps: u64,
    pub forwarded: u64,
    /// Inputs punted, and dropped by reason (`DropReason as usize`): what
    /// the inputs reached.
    pub punted: u64,
    pub dropped: [u64; crate::state::counters::DropReason::COUNT],
    /// The last cookie SYN-ACK the worker sent: (client, its port, the
    /// VIP's port, the client's next sequence number, the cookie).
    cookie: Option<([u8; 4], u16, u16, u32, u32)>,
    /// The last IPv6 packet the worker sent a server: (server, the source
    /// it saw, the source port), for `run`'s answers.
    answer6: Option<(u128, u128, u16)>,
    /// The last translated IPv4 packet the worker sent a server: (server,
    /// the local port), for `run`'s answers.
    answer4: Option<([u8; 4], u16)>,
}

impl Fuzzer {
    /// The worker over the fixed snapshot (`None` only if the RCU cell
    /// handed out no reader).
    pub fn new() -> Option<Self> {
        let snap = snapshot();
        let links = snap.ports.len();
        let (publisher, mut readers) = rcu(Box::new(snap), 1);
        let neighbors = Arc::new(Neighbors::new(8));
        for slot in 0..4u16 {
            neighbors.set(slot, EthernetAddress([2, 0, 0, 0, 1, slot as u8]));
        }
        let reader = readers.pop()?;
        let config = WorkerConfig { id: 0, workers: 1, flows: 256, timeouts: Timeouts::default(), hash_key: 7, sync_refresh: 0, embryonic_max: 64, unreplied_per_service: 6, unreplied_per_source: 3, syn_proxy_threshold: 8, syn_proxy_rate: 50, ..WorkerConfig::default() };
        Some(Fuzzer { worker: Worker::new(config, reader, Arc::clone(&neighbors)), _publisher: publisher, neighbors, links, now: 0, steps: 0, forwarded: 0, punted: 0, dropped: [0; crate::state::counters::DropReason::COUNT], cookie: None, answer6: None, answer4: None })
    }

    /// One input: a frame that arrived on DPDK `port`, `handed` off or not,
    /// `dt` ticks after the last. `Err` names a broken invariant.
    pub fn step(&mut self, frame: Vec<u8>, port: u16, handed: bool, dt: u32) -> Result<(), String> {
        self.steps += 1;
        self.now = self.now.wrapping_add(dt);
        let valid_l4 = l4_ok(&untagged(&frame)) == Some(true) || l4_ok6(&untagged(&frame)) == Some(true);
        let mut pkt = TestPkt { data: frame, cap: 2048, head: 128, port };
        let v = self.worker.process_packet(&mut pkt, handed);
        match v {
            Verdict::Punt => self.punted += 1,
            Verdict::Drop(r) => {
                if let Some(n) = self.dropped.get_mut(r as usize) {
                    *n += 1;
                }
            }
            _ => {}
        }
        if let Verdict::Forward(link) = v {
            self.forwarded += 1;
            if link as usize >= self.links {
                return Err(format!("forwarded to link {link} of {}", self.links));
            }
            check_out(&pkt.data, valid_l4)?;
            let f = &pkt.data;
            if f.len() >= 58 && f.get(12..14) == Some(&[0x86, 0xdd][..]) && f[20] == 6 {
                let a = |at: usize| f.get(at..at + 16).and_then(|b| <[u8; 16]>::try_from(b).ok()).map_or(0, u128::from_be_bytes);
                if SERVERS6.contains(&a(38)) {
                    self.answer6 = Some((a(38), a(22), u16::from_be_bytes([f[54], f[55]])));
                }
            }
            // From a translating local address's upper ports (`xlate`).
            if f.len() >= 38 && f.get(12..14) == Some(&[0x08, 0x00][..]) && f[23] == 6 && f[26..30] == [198, 51, 100, 1] && f[14] == 0x45 {
                let sport = u16::from_be_bytes([f[34], f[35]]);
                if sport >= super::xlate::XLATE_PORT_MIN {
                    self.answer4 = Some(([f[30], f[31], f[32], f[33]], sport));
                }
            }
            // A cookie SYN-ACK: the client's side of it, for `run`'s ACKs.
            let f = &pkt.data;
            if f.len() >= 54 && f.get(12..14) == Some(&[0x08, 0x00][..]) && f[23] == 6 && f[47] == 0x12 {
                let l4 = 14 + usize::from(f[14] & 0x0f) * 4;
                if let Some(t) = f.get(l4..l4 + 12) {
                    let cookie = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
                    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
                    self.cookie = Some(([f[30], f[31], f[32], f[33]], u16::from_be_bytes([t[2], t[3]]), u16::from_be_bytes([t[0], t[1]]), ack, cookie));
                }
            }
        }
        // Expiry and the rest of a pass, now and then.
        if dt > 0 {
            let mut io = NoIo;
            self.worker.poll(&mut io, self.now);
        }
        // Hosts asked for come and go.
        for (l, h) in self.neighbors.take_wanted() {
            if h % 2 == 0 {
                self.neighbors.set_host(l, h, EthernetAddress([2, 0, 0, 0, 2, h as u8]));
            }
        }
        let live = (self.worker.table().len() + self.worker.table6().map_or(0, |t| t.len())) as u64;
        let gauge = self.worker.counters().flows.get();
        if live != gauge {
            return Err(format!("{live} live entries, flows gauge {gauge}"));
        }
        if self.steps.is_multiple_of(64) {
            self.check_table()?;
        }
        Ok(())
    }

    /// The whole table against its lists and gauges: the embryonic list
    /// holds exactly the entries in a handshake, each service's unreplied
    /// count (the cap's) its unreplied entries, and the established
    /// gauges count exactly the established entries.
    fn check_table(&self) -> Result<(), String> {
        let mut established = self.check_lists(self.worker.table())?;
        if let Some(t6) = self.worker.table6() {
            established += self.check_lists(t6)?;
        }
        // The gauges count both families' entries.
        let c = self.worker.counters();
        let gauge: u64 = c.services.iter().map(|s| s.conns_established.get()).fold(0, u64::wrapping_add);
        if established != gauge {
            return Err(format!("{established} established entries, established gauges {gauge}"));
        }
        Ok(())
    }

    /// One family's table against its lists: the embryonic list holds its
    /// half-open entries, each service's unreplied count its unreplied
    /// entries. Its established entries of a counted service.
    fn check_lists<A: crate::conntrack::Addr>(&self, t: &crate::conntrack::FlowTable<A>) -> Result<u64, String> {
        let half_open = t.iter().filter(|(_, f)| f.state.is_embryonic()).count() as u32;
        if half_open != t.embryonic() {
            return Err(format!("{half_open} half-open entries, embryonic list {}", t.embryonic()));
        }
        for vs in 0..crate::limits::MAX_SERVICES as u16 {
            let n = t.iter().filter(|(_, f)| f.vs == vs && f.state.is_unreplied()).count() as u32;
            if n != t.unreplied_of_service(vs) {
                return Err(format!("service {vs}: {n} unreplied entries, its cap's count {}", t.unreplied_of_service(vs)));
            }
        }
        let services = self.worker.counters().services.len();
        Ok(t.iter().filter(|(_, f)| f.state.is_active() && (f.vs as usize) < services).count() as u64)
    }

    /// `n` inputs drawn from `seed`.
    pub fn run(&mut self, seed: u64, n: u64) -> Result<(), String> {
        let mut rng = Rng(seed);
        for _ in 0..n {
            // Now and then the ACK of the last cookie (the SYN proxy's
            // connections), with the first request in it or not.
            let (frame, port) = match self.cookie.take().filter(|_| rng.below(3) == 0) {
                Some((client, sport, dport, next, cookie)) => {
                    let data = rng.below(2) == 0;
                    let mut t = tcp_header(sport, dport, if data { 0x18 } else { 0x10 }, 1024);
                    t[4..8].copy_from_slice(&next.to_be_bytes());
                    t[8..12].copy_from_slice(&cookie.wrapping_add(1).to_be_bytes());
                    if data {
                        t.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
                    }
                    (ipv4_frame(PEER, MACS[0], client, VIP, 6, &t, true), 0)
                }
                None => match self.answer6.take().filter(|_| rng.below(2) == 0) {
                    // The server's answer to the last IPv6 packet it got.
                    Some((server, to, port)) => {
                        let flags = [0x12u8, 0x10, 0x18, 0x11, 0x14][rng.index(5)];
                        (crate::testkit::ipv6_frame(PEER, MACS[1], server, to, 6, 64, &tcp_header(8080, port, flags, 1024)), 1)
                    }
                    None => match self.answer4.take().filter(|_| rng.below(2) == 0) {
                        Some((server, port)) => {
                            let flags = [0x12u8, 0x10, 0x18, 0x11, 0x14][rng.index(5)];
                            (ipv4_frame(PEER, MACS[1], server, [198, 51, 100, 1], 6, &tcp_header(8080, port, flags, 1024), true), 1)
                        }
                        None => draw(&mut rng),
                    },
                },
            };
            let handed = rng.below(8) == 0;
            let dt = if rng.below(16) == 0 { rng.below_u32(2000) } else { 0 };
            let input = frame.clone();
            self.step(frame, port, handed, dt).map_err(|e| format!("{e}\ninput (port {port}, handed {handed}): {input:02x?}"))?;
        }
        Ok(())
    }

    /// The worker's counters (what the inputs reached).
    pub fn counters(&self) -> Arc<crate::state::counters::WorkerCounters> {
        self.worker.counters()
    }

    /// One input read from `bytes` (for cargo-fuzz): the first byte picks
    /// the port, handed off and time step, the rest is the frame.
    pub fn step_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Some((&ctl, frame)) = bytes.split_first() else { return Ok(()) };
        self.step(frame.to_vec(), u16::from(ctl & 3), ctl & 4 != 0, if ctl & 8 != 0 { u32::from(ctl >> 4) * 100 } else { 0 })
    }
}

/// Two IPv6 services on `vip` over `servers` (port 8080, next hops 0 and
/// 1, on link `link`), round robin: NAT on :80, full-NAT from `local` on
/// :81 (the fuzzer's and the pipeline tests').
pub(super) fn push_ipv6_services(s: &mut Snapshot, vip: u128, servers: &[u128; 2], link: u16, local: u128) {
    for (port, fwd) in [(80u16, Forwarding::Nat), (81, Forwarding::FullNat)] {
        let first = s.servers.len() as u16;
        let vi = s.services.len() as u16;
        for (i, a) in servers.iter().enumerate() {
            s.servers.push(RealServer { ip6: a.to_be_bytes(), port: 8080, weight: 1, enabled: true, tx_port: link, nexthop: i as u16, vs: vi, ..RealServer::default() });
        }
        let mut vs = VirtualService::test(fwd);
        (vs.ip6, vs.port, vs.members, vs.schedule) = (vip, port, vec![first, first + 1].into_boxed_slice(), Schedule::round_robin(2));
        if fwd == Forwarding::FullNat {
            vs.local_addrs6 = vec![local].into_boxed_slice();
        }
        s.services.push(vs);
    }
}

/// A frame leaving the worker: IPv4 header sane and its checksum right;
/// TCP/UDP checksum right when it was coming in.
fn check_out(out: &[u8], valid_l4: bool) -> Result<(), String> {
    let f = untagged(out);
    if f.get(12..14) == Some(&[0x86, 0xdd][..]) {
        return check_out6(&f, valid_l4);
    }
    if f.len() < 14 || f.get(12..14) != Some(&[0x08, 0x00][..]) {
        return Ok(());
    }
    let Some(hdr) = f.get(14..34) else { return Err("short IPv4 header".into()) };
    if checksum::checksum(&f[14..14 + ((hdr[0] & 0x0f) as usize * 4).min(f.len() - 14)]) != 0 {
        return Err("IPv4 header checksum".into());
    }
    let total = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if total > f.len() - 14 {
        return Err(format!("IPv4 total length {total} past the frame ({})", f.len()));
    }
    // Inside a tunnel: the inner packet.
    let inner = match hdr[9] {
        47 if f.len() >= 14 + 24 + 20 => {
            let mut g = f[..14].to_vec();
            g.extend_from_slice(&f[14 + 24..]);
            g
        }
        _ => f.clone(),
    };
    if valid_l4 && l4_ok(&inner) == Some(false) {
        return Err("TCP/UDP checksum broken on the way through".into());
    }
    Ok(())
}

/// A forwarded IPv6 frame: its payload length within the frame, its
/// TCP/UDP checksum right when it was coming in.
fn check_out6(f: &[u8], valid_l4: bool) -> Result<(), String> {
    let ip = crate::wire::ipv6::Ipv6Packet::new_checked(f.get(14..).unwrap_or_default()).map_err(|e| format!("IPv6 header out: {e:?}"))?;
    if valid_l4 && l4_ok6(f) == Some(false) {
        return Err("IPv6 TCP/UDP checksum broken on the way through".into());
    }
    if ip.hop_limit() == 0 {
        return Err("hop limit 0 forwarded".into());
    }
    // A translated connection's IPv4 side is held mapped: never on the wire.
    for a in [ip.src_addr(), ip.dst_addr()] {
        if u128::from(a) >> 32 == 0xffff {
            return Err(format!("an IPv4-mapped address forwarded: {a}"));
        }
    }
    // The payload within the frame (translation writes the length).
    if 14 + 40 + usize::from(ip.payload_len()) > f.len() {
        return Err(format!("IPv6 payload length {} for a frame of {}", ip.payload_len(), f.len()));
    }
    Ok(())
}

/// `l4_ok` for an IPv6 frame whose transport header follows the fixed
/// header (RFC 8200 §8.1's pseudo header).
fn l4_ok6(f: &[u8]) -> Option<bool> {
    let ip = crate::wire::ipv6::Ipv6Packet::new_checked(f.get(14..)?).ok()?;
    let proto = ip.next_header();
    if !(proto == 6 || proto == 17 || proto == 58) {
        return None;
    }
    let seg = ip.payload();
    if seg.len() < if proto == 6 { 20 } else if proto == 58 { 4 } else { 8 } {
        return None;
    }
    let ps = crate::wire::ipv6::pseudo_header(ip.src_addr(), ip.dst_addr(), proto, seg.len() as u32);
    Some(checksum::fold(checksum::sum(seg, ps)) == 0xffff)
}

/// Whether an untagged frame's TCP or UDP checksum is right (RFC 9293
/// §3.1, RFC 768: over the pseudo header and the segment; a UDP checksum
/// of 0 is none); None when it is no whole TCP/UDP packet.
fn l4_ok(f: &[u8]) -> Option<bool> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = f.get(14..)?;
    let hl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let proto = *ip.get(9)?;
    if hl < 20 || total < hl + 8 || total > ip.len() || !(proto == 6 || proto == 17) || ip.get(6)? & 0x3f != 0 || *ip.get(7)? != 0 {
        return None;
    }
    let seg = ip.get(hl..total)?;
    if proto == 17 && seg.get(6..8)? == [0, 0] {
        return Some(true);
    }
    if proto == 6 && seg.len() < 20 {
        return None;
    }
    let a = |at: usize| -> Option<core::net::Ipv4Addr> { Some(core::net::Ipv4Addr::new(*ip.get(at)?, *ip.get(at + 1)?, *ip.get(at + 2)?, *ip.get(at + 3)?)) };
    let ps = checksum::pseudo_header(a(12)?, a(16)?, proto, seg.len() as u16);
    Some(checksum::fold(checksum::sum(seg, ps)) == 0xffff)
}

/// The frame without its 802.1Q tag, if it has one.
fn untagged(f: &[u8]) -> Vec<u8> {
    if f.len() >= 18 && f[12..14] == [0x81, 0x00] {
        let mut g = f[..12].to_vec();
        g.extend_from_slice(&f[16..]);
        g
    } else {
        f.to_vec()
    }
}

/// A frame of some kind of traffic, valid or mutated, and its port.
fn draw(rng: &mut Rng) -> (Vec<u8>, u16) {
    let client = [192, 0, 2, 10 + rng.below(4) as u8];
    let sport = 40000 + rng.below(32) as u16;
    let flags = [0x02u8, 0x10, 0x18, 0x11, 0x04, 0x12][rng.index(6)];
    let server = SERVERS[rng.index(2)];
    let (mut f, port) = match rng.below(10) {
        9 => draw_v6(rng),
        // A client to a VIP port (some that no service has).
        0 | 1 => (ipv4_frame(PEER, MACS[0], client, VIP, 6, &tcp_header(sport, 79 + rng.below(7) as u16, flags, 1024), true), 0),
        2 => (ipv4_frame(PEER, MACS[0], client, VIP, 17, &udp_datagram(sport, 53, b"query"), true), 0),
        // A server answering (NAT, or full-NAT to a local port).
        3 => {
            let dst = if rng.below(2) == 0 { (client, sport) } else { ([198, 51, 100, 1], 1024 + rng.below(64) as u16) };
            (ipv4_frame(PEER, MACS[1], server, dst.0, 6, &tcp_header(8080, dst.1, flags | 0x10, 1024), true), 1)
        }
        // A server's own connection out; an answer to the source-NAT address.
        4 => (ipv4_frame(PEER, MACS[1], server, [192, 0, 2, 50 + rng.below(3) as u8], 6, &tcp_header(sport, 443, flags, 1024), true), 1),
        5 => (ipv4_frame(PEER, MACS[0], [192, 0, 2, 50], SNAT, 6, &tcp_header(443, 20000 + rng.below(4) as u16, flags | 0x10, 1024), true), 0),
        // In transit (the gateway pair, the route link).
        6 => (ipv4_frame(PEER, MACS[rng.index(2)], client, [10, 1, 2, 3], 17, &udp_datagram(sport, 9, b"x"), true), rng.below(2) as u16),
        7 => (ipv4_frame(PEER, MACS[3], [10, 9, 9, 9], client, 6, &tcp_header(80, sport, flags, 1024), true), 3),
        // ICMP: echo, or an error quoting a packet.
        _ => {
            let quoted = ipv4_frame(PEER, MACS[0], VIP, client, 6, &tcp_header(80, sport, 0x12, 1024), true);
            let mut icmp = vec![if rng.below(2) == 0 { 8 } else { 3 }, rng.below(5) as u8, 0, 0, 0, 0, 0x05, 0xdc];
            icmp.extend_from_slice(&quoted[14..14 + 28]);
            let c = checksum::checksum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            (ipv4_frame(PEER, MACS[0], client, VIP, 1, &icmp, false), 0)
        }
    };
    // Big with DF now and then (the tunnel's MTU).
    if rng.below(32) == 0 && f.get(12..14) == Some(&[0x08, 0x00][..]) {
        f.extend(std::iter::repeat_n(0x61, 1460));
        let len = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&len.to_be_bytes());
        f[20] = 0x40;
        f[24] = 0;
        f[25] = 0;
        let c = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        if matches!(f[23], 6 | 17) {
            crate::testkit::fill_l4_checksum(&mut f);
        }
    }
    // A VLAN tag (100: a link; others: none).
    if rng.below(8) == 0 {
        let vlan = if rng.below(2) == 0 { 100u16 } else { rng.below(4095) as u16 };
        let mut g = f[..12].to_vec();
        g.extend_from_slice(&[0x81, 0x00]);
        g.extend_from_slice(&vlan.to_be_bytes());
        g.extend_from_slice(&f[12..]);
        f = g;
    }
    // Mutations: flipped bytes, cut or grown.
    match rng.below(4) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.index(f.len());
                f[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let n = rng.index(f.len() + 1);
            f.truncate(n);
        }
        2 => f.extend((0..rng.below(40)).map(|_| rng.below(256) as u8)),
        _ => {}
    }
    (f, port)
}

/// An IPv6 frame and its port: a connection through the IPv6 services;
/// or to link 0 Neighbor Discovery, echo, TCP/UDP to the self address or
/// elsewhere, behind extension headers or not.
fn draw_v6(rng: &mut Rng) -> (Vec<u8>, u16) {
    use crate::wire::ipv6::next_header as nh;
    let client: u128 = (0x2001_0db8_0001 << 80) | (0x10 + rng.below(4) as u128);
    // Half the time a connection through the IPv6 services: a client to
    // the VIP, or a server's answer (NAT, or full-NAT to a local port).
    if rng.below(2) == 0 {
        let sport = 40000 + rng.below(4) as u16;
        let flags = [0x02u8, 0x10, 0x18, 0x11, 0x04, 0x12][rng.index(6)];
        let xport = 32768 + rng.below(64) as u16;
        return match rng.below(8) {
            0 => (crate::testkit::ipv6_frame(PEER, MACS[0], client, VIP6, nh::TCP, 64, &tcp_header(sport, 80 + rng.below(2) as u16, flags, 1024)), 0),
            // Translated: an IPv6 client to VIP6:84 (IPv4 servers), an
            // IPv4 server's answer to a translated port, an IPv4 client to
            // VIP:86 (IPv6 servers), an IPv4 server's fragmentation needed.
            4 => (crate::testkit::ipv6_frame(PEER, MACS[0], client, VIP6, nh::TCP, 64, &tcp_header(sport, 84, flags, 1024)), 0),
            5 => (ipv4_frame(PEER, MACS[1], SERVERS[rng.index(2)], [198, 51, 100, 1], 6, &tcp_header(8080, xport, flags | 0x10, 1024), true), 1),
            6 => (ipv4_frame(PEER, MACS[0], [192, 0, 2, 10 + rng.below(4) as u8], VIP, 6, &tcp_header(sport, 86, flags, 1024), true), 0),
            7 => {
                let quoted = ipv4_frame(PEER, MACS[1], [198, 51, 100, 1], SERVERS[rng.index(2)], 6, &tcp_header(xport, 8080, 0x10, 1024), true);
                let mut m = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
                m.extend_from_slice(&quoted[14..]);
                let c = checksum::checksum(&m);
                m[2..4].copy_from_slice(&c.to_be_bytes());
                (ipv4_frame(PEER, MACS[1], [198, 51, 100, 254], [198, 51, 100, 1], 1, &m, false), 1)
            }
            // A Packet Too Big from the servers' side about a packet the
            // box sent a server (to the client, or to the local address).
            3 => {
                let to = if rng.below(2) == 0 { client } else { LOCAL6 };
                let quoted = crate::testkit::ipv6_frame(PEER, MACS[1], to, SERVERS6[rng.index(2)], nh::TCP, 64, &tcp_header(if to == LOCAL6 { 1024 + rng.below(64) as u16 } else { sport }, 8080, 0x10, 1024));
                let mut m = vec![2, 0, 0, 0, 0, 0, 5, 0];
                m.extend_from_slice(&quoted[14..]);
                (crate::testkit::ipv6_frame(PEER, MACS[1], (0x2001_0db8_0002 << 80) | 0xfe, to, nh::ICMPV6, 64, &m), 1)
            }
            1 => (crate::testkit::ipv6_frame(PEER, MACS[1], SERVERS6[rng.index(2)], client, nh::TCP, 64, &tcp_header(8080, sport, flags | 0x10, 1024)), 1),
            _ => (crate::testkit::ipv6_frame(PEER, MACS[1], SERVERS6[rng.index(2)], LOCAL6, nh::TCP, 64, &tcp_header(8080, 1024 + rng.below(64) as u16, flags | 0x10, 1024)), 1),
        };
    }
    let dst = [SELF6, 0xff02 << 112 | 1 << 32 | 0xff00_0002, 0x2001_0db8_0009 << 80 | 1, 0xff02 << 112 | 1][rng.index(4)];
    let (next, mut payload) = match rng.below(4) {
        0 => {
            let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
            ns.extend_from_slice(&SELF6.to_be_bytes());
            ns.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 0x10]);
            (nh::ICMPV6, ns)
        }
        1 => (nh::ICMPV6, vec![128, 0, 0, 0, 0, 1, 0, 1, b'x']),
        2 => (nh::TCP, tcp_header(40000 + rng.below(8) as u16, 80, 0x02, 1024)),
        _ => (nh::UDP, udp_datagram(40000, 53, b"query")),
    };
    let hops = if rng.below(4) == 0 { 64 } else { 255 };
    let f = crate::testkit::ipv6_frame(PEER, MACS[0], client, dst, next, hops, &payload);
    // Behind a chain now and then: hop-by-hop, destination options,
    // routing (segments left or not), fragment (atomic or not).
    if rng.below(3) != 0 {
        return (f, 0);
    }
    let kinds = [nh::HOP_BY_HOP, nh::DEST_OPTS, nh::ROUTING, nh::FRAGMENT];
    let mut first = next;
    for _ in 0..1 + rng.below(3) {
        let k = kinds[rng.index(4)];
        let mut h = match k {
            nh::FRAGMENT => vec![first, 0, 0, rng.below(2) as u8, 0, 0, 0, 9],
            nh::ROUTING => vec![first, 0, 4, rng.below(2) as u8, 0, 0, 0, 0],
            _ => vec![first, 0, 1, 4, 0, 0, 0, 0],
        };
        h.append(&mut payload);
        payload = h;
        first = k;
    }
    let mut g = crate::testkit::ipv6_frame(PEER, MACS[0], client, dst, first, hops, &payload);
    // The upper layer's checksum as the frame without the chain had it.
    let at = g.len() - (f.len() - crate::testkit::L4_V6);
    g[at..].copy_from_slice(&f[crate::testkit::L4_V6..]);
    (g, 0)
}

/// A `PacketIo` with nothing to receive and nowhere to send.
struct NoIo;

impl crate::io::PacketIo for NoIo {
    type Pkt = TestPkt;
    fn rx_queues(&self) -> usize {
        0
    }
    fn rx_burst(&mut self, _q: usize, _b: &mut crate::io::Burst<TestPkt>) {}
    fn tx(&mut self, _port: u16, _pkt: TestPkt) {}
    fn punt(&mut self, _pkt: TestPkt) -> Result<(), TestPkt> {
        Ok(())
    }
    fn flush(&mut self) -> crate::io::TxReport {
        crate::io::TxReport::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run in every `cargo test`; `examples/fuzz_pipeline` runs
    /// millions (scripts/fuzz.sh).
    #[test]
    fn the_pipeline_survives_mutated_traffic_of_every_kind() {
        let mut f = Fuzzer::new().expect("a reader");
        f.run(0x5eed, 20_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.steps, 20_000);
        assert!(f.forwarded > 3_000, "the templates reach every path: {} forwarded", f.forwarded);
        assert!(f.worker.counters().unreplied_capped.get() > 0, "the unreplied caps were reached");
        // IPv6 reached its parse, its chain walk and its punts.
        use crate::state::counters::DropReason as D;
        for r in [D::Ipv6BadChain, D::Ipv6RoutingHeader, D::Fragment, D::NdInvalid, D::NdNotOurs, D::Ipv6Truncated, D::Ipv6BadPayloadLength] {
            assert!(f.dropped[r as usize] > 0, "{}", r.name());
        }
        assert!(f.punted > 100, "{} punted", f.punted);
        let v6 = |i: usize| f.worker.counters().services.get(i).map_or((0, 0), |c| (c.conns_new.get(), c.out_pkts.get()));
        eprintln!("IPv6 NAT (connections, answers) {:?}, full-NAT {:?}", v6(9), v6(10));

        assert!(v6(9).0 > 0 && v6(9).1 > 0, "IPv6 NAT connections made and answered");
        assert!(v6(10).0 > 0 && v6(10).1 > 0, "IPv6 full-NAT connections made and answered");
        eprintln!("translated 6->4 {:?}, 4->6 {:?}", v6(11), v6(12));
        assert!(v6(11).0 > 0 && v6(11).1 > 0, "IPv6 clients to IPv4 servers, translated and answered");
        assert!(v6(12).0 > 0 && v6(12).1 > 0, "IPv4 clients to IPv6 servers, translated and answered");
        assert!(f.dropped[D::IcmpNoFlow as usize] > 0, "IPv6 errors about no connection reached the lookup");
        // Bytes too (the cargo-fuzz entry point).
        for b in [&[][..], &[0xff][..], &[0x0b, 0, 1, 2][..]] {
            f.step_bytes(b).unwrap();
        }
    }

    /// The cargo-fuzz target's IPv6 seeds (`dataplane/fuzz/corpus/
    /// pipeline`, records `[ctl, len_hi, len_lo, frame...]` as the target
    /// reads them) run through a fresh worker: an IPv6 NAT handshake, a
    /// full-NAT connection's Packet Too Big, and a translated handshake
    /// each way, every frame forwarded and checked.
    #[test]
    fn the_ipv6_seeds_of_the_cargo_fuzz_target_are_forwarded() {
        for (seed, frames) in [
            (&include_bytes!("../../fuzz/corpus/pipeline/ipv6_nat_handshake")[..], 3u64),
            (&include_bytes!("../../fuzz/corpus/pipeline/ipv6_full_nat_packet_too_big")[..], 2),
            (&include_bytes!("../../fuzz/corpus/pipeline/xlate_6to4_handshake")[..], 2),
            (&include_bytes!("../../fuzz/corpus/pipeline/xlate_4to6_handshake")[..], 2),
        ] {
            let mut f = Fuzzer::new().expect("a reader");
            let mut rest = seed;
            while let [ctl, hi, lo, tail @ ..] = rest {
                let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
                let (frame, next) = tail.split_at(len);
                let mut record = vec![*ctl];
                record.extend_from_slice(frame);
                f.step_bytes(&record).unwrap_or_else(|e| panic!("{e}"));
                rest = next;
            }
            assert_eq!(f.forwarded, frames, "every frame of the seed forwarded");
        }
    }
}
