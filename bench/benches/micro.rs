//! Criterion micro-benchmarks of the dataplane's building blocks, through
//! `furiwake-dataplane`'s public API only:
//!
//! - `parse`: Ethernet + IPv4 (checked, header checksum verified) + TCP/UDP
//!   views over a valid 60-byte frame;
//! - `flow`: the connection table: hash, lookups (hit and miss) in tables of
//!   1k, 100k and 1M entries, per-packet accounting, insert + remove in
//!   steady state near capacity;
//! - `sched`: the cost of choosing a server per new connection, per algorithm;
//! - `nat`: `nat::rewrite` (addresses, ports, TTL, incremental checksums)
//!   and the checksum primitives;
//! - `worker`: `Worker::process` on whole frames: an established NAT flow in
//!   both directions, and a new connection (SYN, then the RST that removes
//!   it, so the table never fills);
//! - `sync`: the control lcore's cost per connection-state sync record
//!   (HA): sending (32 records off a worker's events ring, encoded, signed
//!   with HMAC-SHA256, framed) and receiving (a datagram checked and
//!   decoded, each record's owner worker found, pushed to its installs
//!   ring); `encode-unsigned` is the same send without the HMAC, for its
//!   share. Throughput is in records (events) per second.
//!
//! Each benchmark reports one element per iteration (one packet, lookup,
//! pick, ...; one SYN+RST pair for `worker/syn+rst`).
//!
//! ```sh
//! cargo bench -p furiwake-bench --bench micro            # all (< 2 min)
//! cargo bench -p furiwake-bench --bench micro -- flow/   # one group
//! ```
//! Medians land in `target/criterion/<group>/<bench>/new/estimates.json`.

// A benchmark whose set-up fails should stop loudly, like a test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "benchmark set-up")]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use furiwake_dataplane::conntrack::{tcp as tcpf, Dir, FlowInit, FlowKey, FlowState, FlowTable, Timeouts, IPPROTO_TCP};
use furiwake_dataplane::forward as nat;
use furiwake_dataplane::state::neighbor::Neighbors;
use furiwake_dataplane::state::rcu::rcu;
use furiwake_dataplane::lb::{Flow4, HashKey, Loads, Schedule, Scheduler};
use furiwake_dataplane::lb::RealServer;
use furiwake_dataplane::state::snapshot::{Forwarding, PortView, Snapshot, VirtualService};
use furiwake_dataplane::wire::checksum;
use furiwake_dataplane::wire::ethernet::{parse_l2, EtherType, EthernetAddress};
use furiwake_dataplane::wire::ipv4::{protocol, Ipv4Packet};
use furiwake_dataplane::wire::{TcpPacket, UdpPacket};
use furiwake_dataplane::pipeline::Verdict;
use furiwake_dataplane::{Worker, WorkerConfig};
use furiwake_dataplane::testkit;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Addresses and frames
// ---------------------------------------------------------------------------

const OUT: u16 = 0; // client side
const IN: u16 = 1; // server side
const OUT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa0]);
const IN_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa1]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x10]);
const SERVER_MAC: [EthernetAddress; 2] = [EthernetAddress([2, 0, 0, 0, 0, 0x11]), EthernetAddress([2, 0, 0, 0, 0, 0x12])];

const CLIENT: [u8; 4] = [192, 0, 2, 10];
const VIP: [u8; 4] = [192, 0, 2, 100];
const SELF_OUT: [u8; 4] = [192, 0, 2, 2];
const SELF_IN: [u8; 4] = [198, 51, 100, 1];
const SRV: [[u8; 4]; 3] = [[198, 51, 100, 11], [198, 51, 100, 12], [198, 51, 100, 13]];
const VPORT: u16 = 80;
const SPORT: u16 = 8080;

/// Every frame here is a minimum-size Ethernet frame (without FCS): 60
/// bytes, zero padding after the IP datagram.
const FRAME_LEN: usize = 60;
type Frame = [u8; FRAME_LEN];

fn ip(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

/// Ethernet + IPv4 around `l4`, IPv4 and TCP/UDP checksums filled, padded
/// to a 60-byte frame (`furiwake_dataplane::testkit`).
fn frame(src_mac: EthernetAddress, dst_mac: EthernetAddress, src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Frame {
    let v = testkit::ipv4_frame(src_mac, dst_mac, src, dst, proto, l4, true);
    let mut f = [0u8; FRAME_LEN];
    f[..v.len()].copy_from_slice(&v);
    f
}

fn tcp(sport: u16, dport: u16, flags: u8) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    // A reset carries the sender's next sequence number (its SYN's + 1):
    // sequence tracking takes nothing else as exact (RFC 5961 §3.2).
    let seq = if flags & tcpf::TCP_RST != 0 { 1001u32 } else { 1000 };
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

/// UDP with `payload_len` bytes of payload.
fn udp(sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let mut u = vec![0x5a; 8 + payload_len];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    u[6..8].copy_from_slice(&[0, 0]);
    u
}

/// The client's TCP segment to VIP:80 from `sport`.
fn client_tcp(sport: u16, flags: u8) -> Frame {
    frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, protocol::TCP, &tcp(sport, VPORT, flags))
}

fn ipv4_ok(ip: &[u8]) -> bool {
    checksum::checksum(&ip[..20]) == 0
}

fn tcp_ok(f: &[u8]) -> bool {
    let p = Ipv4Packet::new_checked(&f[14..]).map(|p| (p.src_addr(), p.dst_addr(), p.payload().to_vec()));
    p.is_ok_and(|(s, d, l4)| TcpPacket::new_unchecked(&l4[..]).verify_checksum(s, d))
}

/// Deterministic, so every run measures the same sequence.
struct Rng(testkit::Rng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: u32) -> u32 {
        self.0.below_u32(n)
    }
}

// ---------------------------------------------------------------------------
// parse
// ---------------------------------------------------------------------------

/// What the worker reads before its flow lookup: addresses, ports, TCP
/// flags (0 for UDP). Both parsers return this same shape, so they compare.
type Parsed = (Ipv4Addr, Ipv4Addr, u16, u16, u8);

#[inline(always)]
fn parse_tcp(f: &[u8]) -> Option<Parsed> {
    let l2 = parse_l2(f).ok()?;
    if l2.ethertype != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(f.get(l2.l3_offset..)?).ok()?;
    if !ip.verify_checksum() || ip.protocol() != protocol::TCP {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((ip.src_addr(), ip.dst_addr(), t.src_port(), t.dst_port(), t.flags()))
}

#[inline(always)]
fn parse_udp(f: &[u8]) -> Option<Parsed> {
    let l2 = parse_l2(f).ok()?;
    if l2.ethertype != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(f.get(l2.l3_offset..)?).ok()?;
    if !ip.verify_checksum() || ip.protocol() != protocol::UDP {
        return None;
    }
    let u = UdpPacket::new_checked(ip.payload()).ok()?;
    Some((ip.src_addr(), ip.dst_addr(), u.src_port(), u.dst_port(), 0))
}

fn bench_parse(c: &mut Criterion) {
    let syn = client_tcp(40000, tcpf::TCP_SYN);
    // 14 + 20 + 8 + 18 = 60 bytes: a full minimum frame, no padding.
    let dns = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, protocol::UDP, &udp(5000, 53, 18));
    assert_eq!(parse_tcp(&syn).map(|p| (p.2, p.3, p.4)), Some((40000, VPORT, tcpf::TCP_SYN)));
    assert_eq!(parse_udp(&dns).map(|p| (p.2, p.3, p.4)), Some((5000, 53, 0)));

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tcp-syn", |b| b.iter(|| parse_tcp(black_box(&syn[..]))));
    g.bench_function("udp", |b| b.iter(|| parse_udp(black_box(&dns[..]))));
    g.finish();
}

// ---------------------------------------------------------------------------
// flow
// ---------------------------------------------------------------------------

/// Connection `i` (NAT, so the local address is the client's): client
/// 10.x.y.z:port (64 ports per address) -> VIP:80, served by one of three
/// servers on :8080. Keys are distinct for every `i < 2^30`.
fn flow_init(i: u32) -> FlowInit {
    let i = i & ((1 << 30) - 1);
    let client_ip = 0x0a00_0000 | (i >> 6);
    let client_port = 10_000 + (i & 63) as u16;
    let server = (i % 3) as u16;
    FlowInit {
        proto: IPPROTO_TCP,
        client_ip,
        client_port,
        vip: ip(VIP),
        vport: VPORT,
        server_ip: ip(SRV[server as usize]),
        server_port: SPORT,
        local_ip: client_ip,
        local_port: client_port,
        vs: 0,
        server,
        client_port_id: OUT as u8,
        client_mac: CLIENT_MAC.0,
        ..FlowInit::default()
    }
}

/// The key connection `i`'s packets carry in direction `dir`.
fn flow_key(i: u32, dir: Dir) -> FlowKey {
    let f = flow_init(i);
    match dir {
        Dir::Original => FlowKey { src_ip: f.client_ip, dst_ip: f.vip, src_port: f.client_port, dst_port: f.vport, proto: f.proto },
        Dir::Reply => FlowKey { src_ip: f.server_ip, dst_ip: f.local_ip, src_port: f.server_port, dst_port: f.local_port, proto: f.proto },
    }
}

fn random_dir(rng: &mut Rng) -> Dir {
    if rng.next() >> 63 == 0 {
        Dir::Original
    } else {
        Dir::Reply
    }
}

/// A table holding connections `0..n` (ids `0..n`), capacity the next
/// power of two (the production default, 2^20, is one), all established.
fn established_table(n: u32) -> FlowTable {
    let mut t = FlowTable::new(n.next_power_of_two(), Timeouts::default());
    for i in 0..n {
        let id = t.insert(&flow_init(i), 0).expect("room for every connection");
        assert_eq!(id, i, "a fresh table hands out ids in order");
        t.on_packet(id, Dir::Reply, tcpf::TCP_SYN | tcpf::TCP_ACK, 0);
        assert_eq!(t.on_packet(id, Dir::Original, tcpf::TCP_ACK, 0), FlowState::Established);
    }
    assert_eq!(t.len(), n);
    t
}

/// Enough precomputed inputs that a bench does not loop over a few cache
/// lines of the table, few enough that their array stays small next to
/// it: a power of two, so the cursor wraps with a mask.
fn inputs_for(n: u32) -> usize {
    (n as usize * 4).next_power_of_two().clamp(1 << 12, 1 << 20)
}

/// Runs `f` over `inputs` in a cycle.
#[inline(always)]
fn cycle<T, R>(inputs: &[T], pos: &mut usize, f: impl FnOnce(&T) -> R) -> R {
    let x = &inputs[*pos & (inputs.len() - 1)];
    *pos = pos.wrapping_add(1);
    f(black_box(x))
}

fn label(n: u32) -> &'static str {
    match n {
        1_000 => "1k",
        100_000 => "100k",
        1_000_000 => "1M",
        _ => "?",
    }
}

fn bench_flow(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow");
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(testkit::Rng(0x9e37_79b9_7f4a_7c15));

    let keys: Vec<FlowKey> = (0..1u32 << 12).map(|_| flow_key(rng.below(1 << 20), random_dir(&mut rng))).collect();
    let mut pos = 0;
    let keyed = FlowTable::keyed(1024, Timeouts::default(), 0x0123_4567_89ab_cdef);
    g.bench_function("hash", |b| b.iter(|| cycle(&keys, &mut pos, |k| keyed.hash(k))));

    for n in [1_000u32, 100_000, 1_000_000] {
        let mut table = established_table(n);
        let len = inputs_for(n);
        // Hits: random connections, random direction.
        let hits: Vec<FlowKey> = (0..len).map(|_| flow_key(rng.below(n), random_dir(&mut rng))).collect();
        // Misses: connections of the same shape that were never opened.
        let misses: Vec<FlowKey> = (0..len).map(|_| flow_key(n + rng.below(1 << 24), random_dir(&mut rng))).collect();
        assert!(hits.iter().all(|k| table.lookup(k, table.hash(k)).is_some()));
        assert!(misses.iter().all(|k| table.lookup(k, table.hash(k)).is_none()));

        let mut pos = 0;
        g.bench_with_input(BenchmarkId::new("lookup-hit", label(n)), &hits, |b, keys| {
            b.iter(|| cycle(keys, &mut pos, |k| table.lookup(k, table.hash(k))))
        });
        let mut pos = 0;
        g.bench_with_input(BenchmarkId::new("lookup-miss", label(n)), &misses, |b, keys| {
            b.iter(|| cycle(keys, &mut pos, |k| table.lookup(k, table.hash(k))))
        });

        if n != 100_000 {
            // An ACK of an established connection, either way: the state
            // stays, only `expire` is written. 1k: the entry is in cache (as
            // in the worker, right after its lookup); 1M: a random entry.
            let ids: Vec<(u32, Dir)> = (0..len).map(|_| (rng.below(n), random_dir(&mut rng))).collect();
            let mut pos = 0;
            g.bench_with_input(BenchmarkId::new("on_packet", label(n)), &ids, |b, ids| {
                b.iter(|| cycle(ids, &mut pos, |&(id, dir)| table.on_packet(id, dir, tcpf::TCP_ACK, 1)))
            });
        }
    }

    // Steady state near capacity: 1M live in a table of 2^20; each
    // iteration removes the oldest connection and opens a new one.
    let live = 1_000_000u32;
    let mut table = FlowTable::new(1 << 20, Timeouts::default());
    let mut ring: Vec<u32> = (0..live).map(|i| table.insert(&flow_init(i), 0).expect("room")).collect();
    let (mut next, mut at) = (live, 0usize);
    g.bench_function(BenchmarkId::new("insert+remove", "1M"), |b| {
        b.iter(|| {
            table.remove(black_box(ring[at]));
            // The clock moves on, as it does in a worker.
            let id = table.insert(black_box(&flow_init(next)), next >> 10).expect("a slot was just freed");
            ring[at] = id;
            at = if at + 1 == ring.len() { 0 } else { at + 1 };
            next = next.wrapping_add(1);
        })
    });
    assert_eq!(table.len(), live);
    g.finish();
}

// ---------------------------------------------------------------------------
// sched
// ---------------------------------------------------------------------------

/// Three servers by address and weight, for the hash schedules.
const THREE: [(u32, u16, u32); 3] = [(0xc633_640b, 8080, 1), (0xc633_640c, 8080, 1), (0xc633_640d, 8080, 1)];

fn bench_sched(c: &mut Criterion) {
    let servers: Vec<RealServer> =
        SRV.iter().map(|s| RealServer { ip: ip(*s), port: SPORT, weight: 1, enabled: true, ..Default::default() }).collect();
    let mut g = c.benchmark_group("sched");
    g.throughput(Throughput::Elements(1));
    let loads = Loads::new(3);
    loads.set(0, 12);
    loads.set(1, 7);
    loads.set(2, 9);
    for (i, (rtt, bps)) in [(420, 3_000_000), (380, 1_200_000), (900, 800_000)].into_iter().enumerate() {
        loads.set_rtt_us(i, Some(rtt));
        loads.set_bytes_per_s(i, bps);
    }
    for (name, schedule) in [
        ("round-robin", Schedule::round_robin(3)),
        ("weighted-3-1-1", Schedule::weighted(&[3, 1, 1])),
        ("least-connections", Schedule::LeastConnections { weighted: false }),
        ("weighted-least-connections", Schedule::LeastConnections { weighted: true }),
        ("source-hash", Schedule::hashed(HashKey::SourceIp, &THREE)),
        ("maglev", Schedule::hashed(HashKey::FiveTuple, &THREE)),
        ("source-destination-hash", Schedule::hashed(HashKey::SourceDestIp, &THREE)),
        ("fastest", Schedule::Fastest),
        ("least-bandwidth", Schedule::LeastBandwidth),
        ("composite", Schedule::Composite),
    ] {
        let mut vs = VirtualService::test(Forwarding::Nat);
        vs.ip = ip(VIP);
        vs.port = VPORT;
        vs.members = (0..3).collect();
        vs.schedule = schedule;
        let mut sched = Scheduler::default();
        sched.resize(1);
        let picks: Vec<_> = (0..5).map(|_| sched.pick(0, &vs, &servers)).collect();
        assert!(picks.iter().all(Option::is_some), "{name}: {picks:?}");
        let mut n = 0u32;
        g.bench_function(BenchmarkId::new("pick", name), |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let flow = Flow4 { src: 0xc612_0000 ^ n, dst: ip(VIP), sport: n as u16, dport: VPORT, proto: 6 };
                sched.pick_for(black_box(0), black_box(&vs), black_box(&servers), &flow, Some(&loads))
            })
        });
    }
    // Persistence: what a new connection of a persistent service adds — a
    // record lookup for a returning client among 64k (8-way sets), or a
    // miss and an insert for a new one.
    let mut table = furiwake_dataplane::lb::PersistTable::new(65536);
    for c in 0..60_000u32 {
        table.insert(furiwake_dataplane::lb::persist::key(0, 0xc612_0000 + c, 0), c, 0, 0, 3000);
    }
    let mut n = 0u32;
    g.bench_function(BenchmarkId::new("persist", "hit-60k"), |b| {
        b.iter(|| {
            n = (n + 7919) % 60_000;
            let k = furiwake_dataplane::lb::persist::key(0, 0xc612_0000 + n, 0);
            let r = table.get(black_box(k), 1);
            table.attach(k, 1, 3000);
            r
        })
    });
    let mut m = 0u32;
    g.bench_function(BenchmarkId::new("persist", "miss+insert"), |b| {
        b.iter(|| {
            m = m.wrapping_add(1);
            let k = furiwake_dataplane::lb::persist::key(1, 0x0a00_0000 ^ m.wrapping_mul(2654435761), 0);
            let r = table.get(black_box(k), 1);
            table.insert(k, 7, 0, 1, 3000);
            r
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// nat
// ---------------------------------------------------------------------------

fn bench_nat(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(1));
    // full-NAT in: source to a local address and port, destination to the
    // server, TTL - 1. Rewritten in place over and over: `rewrite` has no
    // data-dependent work (TTL wraps), and the checksums stay valid.
    let src = Some((ip(SELF_IN), 1025u16));
    let dst = Some((ip(SRV[0]), SPORT));
    let mut seg = client_tcp(40000, tcpf::TCP_ACK);
    g.bench_function(BenchmarkId::new("rewrite", "tcp"), |b| {
        b.iter(|| nat::rewrite(black_box(&mut seg[14..54]), 20, protocol::TCP, black_box(src), black_box(dst), true))
    });
    assert!(ipv4_ok(&seg[14..]) && tcp_ok(&seg), "the rewritten segment still verifies");
    let mut dgram = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, protocol::UDP, &udp(5000, 53, 18));
    g.bench_function(BenchmarkId::new("rewrite", "udp"), |b| {
        b.iter(|| nat::rewrite(black_box(&mut dgram[14..60]), 20, protocol::UDP, black_box(src), black_box(dst), true))
    });
    assert!(ipv4_ok(&dgram[14..]));

    let hdr: [u8; 20] = seg[14..34].try_into().expect("20 bytes");
    let check = u16::from_be_bytes([hdr[10], hdr[11]]);
    g.bench_function("checksum-update32", |b| {
        b.iter(|| checksum::update32(black_box(check), black_box(ip(CLIENT)), black_box(ip(SRV[1]))))
    });
    g.bench_function("checksum-20B", |b| b.iter(|| checksum::checksum(black_box(&hdr[..]))));
    g.finish();
}

// ---------------------------------------------------------------------------
// worker
// ---------------------------------------------------------------------------

/// As in the worker's tests: one NAT service on VIP:80/tcp over two
/// servers, round robin; ports 0 (clients) and 1 (servers).
fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.ports = vec![Some(PortView { mac: OUT_MAC, self_ip: ip(SELF_OUT), netmask: 0, mtu: 1500, port: OUT, vlan: 0, route: false, ..Default::default() }), Some(PortView { mac: IN_MAC, self_ip: ip(SELF_IN), netmask: 0, mtu: 1500, port: IN, vlan: 0, route: false, ..Default::default() })];
    s.self_ips = vec![ip(SELF_OUT), ip(SELF_IN)];
    for (i, srv) in SRV[..2].iter().enumerate() {
        s.servers.push(RealServer { ip: ip(*srv), port: SPORT, weight: 1, enabled: true, tx_port: IN, nexthop: i as u16, vs: 0, reset: false, max_connections: 0, priority: 0, epoch: 0, sticky_only: false, ip6: [0; 16] });
    }
    let mut vs = VirtualService::test(Forwarding::Nat);
    vs.ip = ip(VIP);
    vs.port = VPORT;
    vs.proto = protocol::TCP;
    vs.members = (0..2).collect();
    vs.schedule = Schedule::round_robin(2);
    s.services.push(vs);
    s.index();
    s
}

fn worker(flows: u32) -> Worker {
    let (publisher, mut readers) = rcu(Box::new(snapshot()), 1);
    // The worker reads the snapshot for as long as the process runs.
    std::mem::forget(publisher);
    let n = Arc::new(Neighbors::new(4));
    n.set(0, SERVER_MAC[0]);
    n.set(1, SERVER_MAC[1]);
    Worker::new(WorkerConfig { id: 0, workers: 1, flows, timeouts: Timeouts::default(), hash_key: 0x0123_4567_89ab_cdef, sync_refresh: 0, ..WorkerConfig::default() }, readers.remove(0), n)
}

/// Copies `template` into `scratch` (as a NIC would hand over a fresh
/// frame) and processes it.
#[inline(always)]
fn run(w: &mut Worker, scratch: &mut Frame, template: &Frame, port: u16) -> Verdict {
    scratch.copy_from_slice(black_box(template));
    let v = w.process(black_box(&mut scratch[..]), port, false);
    black_box(&mut *scratch);
    v
}

fn bench_worker(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker");
    g.throughput(Throughput::Elements(1));
    let mut scratch: Frame = [0; FRAME_LEN];

    // One established connection: SYN, SYN-ACK, ACK.
    let mut w = worker(1 << 20);
    let server_ack = |flags| frame(SERVER_MAC[0], IN_MAC, SRV[0], CLIENT, protocol::TCP, &tcp(SPORT, 40000, flags));
    assert_eq!(run(&mut w, &mut scratch, &client_tcp(40000, tcpf::TCP_SYN), OUT), Verdict::Forward(IN));
    assert_eq!(run(&mut w, &mut scratch, &server_ack(tcpf::TCP_SYN | tcpf::TCP_ACK), IN), Verdict::Forward(OUT));
    let to_server = client_tcp(40000, tcpf::TCP_ACK);
    let to_client = server_ack(tcpf::TCP_ACK);
    assert_eq!(run(&mut w, &mut scratch, &to_server, OUT), Verdict::Forward(IN));
    assert!(ipv4_ok(&scratch[14..]) && tcp_ok(&scratch) && scratch[30..34] == SRV[0], "DNATed to the server");
    assert_eq!(run(&mut w, &mut scratch, &to_client, IN), Verdict::Forward(OUT));
    assert!(ipv4_ok(&scratch[14..]) && tcp_ok(&scratch) && scratch[26..30] == VIP, "SNATed back to the VIP");
    assert_eq!(w.table().get(0).map(|f| f.state), Some(FlowState::Established));

    g.bench_function("copy", |b| {
        b.iter(|| {
            scratch.copy_from_slice(black_box(&to_server));
            black_box(&mut scratch);
        })
    });
    g.bench_function(BenchmarkId::new("process", "established-to-server"), |b| {
        b.iter(|| run(&mut w, &mut scratch, &to_server, OUT))
    });
    g.bench_function(BenchmarkId::new("process", "established-to-client"), |b| {
        b.iter(|| run(&mut w, &mut scratch, &to_client, IN))
    });
    assert_eq!(w.table().len(), 1);

    // New connections: each iteration is a SYN (checksum check, schedule,
    // insert, DNAT) and then the client's RST (lookup, sequence check,
    // DNAT, the entry closed), so the production-sized table holds at
    // most the 1024 client ports' closed entries, which their next SYN
    // reopens (RFC 9293 §3.6.1).
    let mut w = worker(1 << 20);
    let pairs: Vec<(Frame, Frame)> =
        (0..1024u16).map(|i| (client_tcp(20000 + i, tcpf::TCP_SYN), client_tcp(20000 + i, tcpf::TCP_RST))).collect();
    for (i, (syn, rst)) in pairs[..4].iter().enumerate() {
        assert_eq!(run(&mut w, &mut scratch, syn, OUT), Verdict::Forward(IN));
        assert_eq!(w.table().len() as usize, i + 1);
        assert_eq!(run(&mut w, &mut scratch, rst, OUT), Verdict::Forward(IN));
    }
    assert_eq!(w.table().len(), 4, "the reset entries wait out their close");
    let mut pos = 0;
    g.bench_function(BenchmarkId::new("process", "syn+rst"), |b| {
        b.iter(|| {
            cycle(&pairs, &mut pos, |(syn, rst)| {
                let opened = run(&mut w, &mut scratch, syn, OUT);
                let reset = run(&mut w, &mut scratch, rst, OUT);
                (opened, reset)
            })
        })
    });
    assert!(w.table().len() <= 1024, "a port's next SYN reopens its closed entry: {}", w.table().len());
    g.finish();
}

// ---------------------------------------------------------------------------
// worker, IPv6 (issue 24): the same service over IPv6, beside IPv4's
// ---------------------------------------------------------------------------

const VIP6: u128 = 0x2001_0db8_0001_u128 << 80 | 0x100;
const CLIENT6: u128 = 0x2001_0db8_0001_u128 << 80 | 0x10;
const SRV6: [u128; 2] = [0x2001_0db8_0002_u128 << 80 | 0x11, 0x2001_0db8_0002_u128 << 80 | 0x12];

/// `snapshot` with the NAT service's IPv6 twin on [VIP6]:80 over two IPv6
/// servers (service 1).
fn snapshot6() -> Snapshot {
    let mut s = snapshot();
    for (i, a) in SRV6.iter().enumerate() {
        s.servers.push(RealServer { ip6: a.to_be_bytes(), port: SPORT, weight: 1, enabled: true, tx_port: IN, nexthop: i as u16, vs: 1, ..RealServer::default() });
    }
    let mut vs = VirtualService::test(Forwarding::Nat);
    (vs.ip6, vs.port, vs.proto, vs.members, vs.schedule) = (VIP6, VPORT, protocol::TCP, vec![2, 3].into_boxed_slice(), Schedule::round_robin(2));
    s.services.push(vs);
    s.index();
    s
}

fn tcp6_frame(src_mac: EthernetAddress, dst_mac: EthernetAddress, src: u128, dst: u128, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    testkit::ipv6_frame(src_mac, dst_mac, src, dst, protocol::TCP, 64, &tcp(sport, dport, flags))
}

#[inline(always)]
fn run6(w: &mut Worker, scratch: &mut [u8], template: &[u8], port: u16) -> Verdict {
    scratch.copy_from_slice(black_box(template));
    let v = w.process(black_box(&mut *scratch), port, false);
    black_box(&mut *scratch);
    v
}

fn bench_worker6(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker6");
    g.throughput(Throughput::Elements(1));
    let (publisher, mut readers) = rcu(Box::new(snapshot6()), 1);
    std::mem::forget(publisher);
    let n = Arc::new(Neighbors::new(4));
    n.set(0, SERVER_MAC[0]);
    n.set(1, SERVER_MAC[1]);
    let config = WorkerConfig { flows: 1 << 20, flows_v6: 1 << 20, hash_key: 0x0123_4567_89ab_cdef, ..WorkerConfig::default() };
    let mut w = Worker::new(config, readers.remove(0), n);
    let mut scratch = vec![0u8; 74];
    let to_server = tcp6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 40000, VPORT, tcpf::TCP_ACK);
    let to_client = tcp6_frame(SERVER_MAC[0], IN_MAC, SRV6[0], CLIENT6, SPORT, 40000, tcpf::TCP_ACK);
    assert_eq!(run6(&mut w, &mut scratch, &tcp6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 40000, VPORT, tcpf::TCP_SYN), OUT), Verdict::Forward(IN));
    assert_eq!(run6(&mut w, &mut scratch, &tcp6_frame(SERVER_MAC[0], IN_MAC, SRV6[0], CLIENT6, SPORT, 40000, tcpf::TCP_SYN | tcpf::TCP_ACK), IN), Verdict::Forward(OUT));
    assert_eq!(run6(&mut w, &mut scratch, &to_server, OUT), Verdict::Forward(IN));
    assert_eq!(run6(&mut w, &mut scratch, &to_client, IN), Verdict::Forward(OUT));
    let t6 = w.table6().expect("the IPv6 table");
    assert_eq!(t6.len(), 1);
    eprintln!("worker6: an IPv6 slot costs {} B (entries, buckets and marks of a {}-entry table)", t6.memory_bytes() as f64 / f64::from(t6.capacity()), t6.capacity());
    g.bench_function(BenchmarkId::new("process", "established-to-server"), |b| b.iter(|| run6(&mut w, &mut scratch, &to_server, OUT)));
    g.bench_function(BenchmarkId::new("process", "established-to-client"), |b| b.iter(|| run6(&mut w, &mut scratch, &to_client, IN)));
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..1024u16)
        .map(|i| (tcp6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 20000 + i, VPORT, tcpf::TCP_SYN), tcp6_frame(CLIENT_MAC, OUT_MAC, CLIENT6, VIP6, 20000 + i, VPORT, tcpf::TCP_RST)))
        .collect();
    let mut pos = 0;
    g.bench_function(BenchmarkId::new("process", "syn+rst"), |b| {
        b.iter(|| {
            cycle(&pairs, &mut pos, |(syn, rst)| {
                let opened = run6(&mut w, &mut scratch, syn, OUT);
                let reset = run6(&mut w, &mut scratch, rst, OUT);
                (opened, reset)
            })
        })
    });
    g.finish();
}

fn bench_sync(c: &mut Criterion) {
    use furiwake::modules::sync::frame::{udp_datagram, udp_frame};
    use furiwake::modules::sync::wire::{self, Header, Keys, MessageType, SyncKey, MAX_RECORDS};
    use furiwake_dataplane::ctl::events::{self, SyncKind, SyncRecord};
    use furiwake_dataplane::pipeline::{owner_of, Owners};

    let mut g = c.benchmark_group("sync");
    g.throughput(Throughput::Elements(MAX_RECORDS as u64));
    let key = SyncKey::new(&[0x42; 32]).unwrap();
    let snap = snapshot();
    let keys = Keys::new(key.clone());
    let owners = Owners::new(4, 0x5eed_1234_5678_9abc);
    let records: Vec<SyncRecord> = (0..MAX_RECORDS as u16)
        .map(|i| SyncRecord {
            kind: SyncKind::Create,
            proto: protocol::TCP,
            state: FlowState::Established,
            client_ip: ip(CLIENT) + u32::from(i),
            client_port: 40000 + i,
            vip: ip(VIP),
            vport: VPORT,
            server_ip: ip(SRV[0]),
            server_port: SPORT,
            local_ip: ip(CLIENT) + u32::from(i),
            local_port: 40000 + i,
            timeout_ms: 900_000,
            ..SyncRecord::EMPTY
        })
        .collect();
    let (mut events_in, mut events_out) = events::channel(1024);
    let mut batch = [SyncRecord::EMPTY; MAX_RECORDS];
    let mut buf = Vec::with_capacity(wire::MAX_DATAGRAM);
    let mut seq = 0u64;
    let (a, b) = (Ipv4Addr::new(198, 51, 100, 3), Ipv4Addr::new(198, 51, 100, 4));
    let mut send = |sign: bool| {
        for r in &records {
            events_in.push(*r);
        }
        let n = events_out.pop_batch(&mut batch);
        seq += 1;
        let h = Header { msg: MessageType::Records, sender: 7, seq, sent_us: seq, ..Header::default() };
        if sign {
            wire::encode(&mut buf, &key, &h, &batch[..n]).unwrap();
        } else {
            let mut rec = [0u8; SyncRecord::MAX_WIRE_LEN];
            buf.clear();
            for r in &batch[..n] {
                let len = r.encode(&mut rec);
                buf.extend_from_slice(&rec[..len]);
            }
        }
        black_box(udp_frame(OUT_MAC, IN_MAC, a, b, 8848, 8848, &buf))
    };
    g.bench_function("send", |bn| bn.iter(|| send(true)));
    g.bench_function("encode-unsigned", |bn| bn.iter(|| send(false)));
    let frame = send(true);
    let (mut installs_in, mut installs_out) = events::channel(1024);
    g.bench_function("receive", |bn| {
        bn.iter(|| {
            let d = udp_datagram(black_box(&frame)).unwrap();
            let (_, recs) = wire::decode(d.payload, &keys).unwrap();
            let mut n = 0u16;
            for r in recs {
                n = n.wrapping_add(owner_of(&snap, &owners, &r));
                installs_in.push(r);
            }
            installs_out.pop_batch(&mut batch);
            black_box(n)
        })
    });
    g.finish();
}

/// Short runs: the whole suite takes about a minute on a 2-core VM. The
/// bootstrap's default 100,000 resamples cost ~2.5 s of analysis per
/// benchmark there (more than the measurement); 10,000 are plenty for 20
/// samples.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .nresamples(10_000)
}

criterion_group! {
    name = micro;
    config = config();
    targets = bench_parse, bench_flow, bench_sched, bench_nat, bench_worker, bench_worker6, bench_sync
}
criterion_main!(micro);
