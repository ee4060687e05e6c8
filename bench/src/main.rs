//! `furiwake-bench`: the worker pipeline (the production `Worker`, NAT
//! forwarding) over packets held in memory, one core, no DPDK, so the
//! figure is the packet logic's own cost: parse, flow lookup, rewrite with
//! checksum updates, counters.
//!
//! ```text
//! furiwake-bench [--flows N] [--packets N]
//! ```
//! Scenario `established`: N flows are opened (SYN each), then packets of
//! random established flows (client to VIP) are forwarded. Prints Mpps and
//! ns/packet. Numbers are printed, never asserted.

use furiwake_dataplane::flow::{FlowTable, Timeouts};
use furiwake_dataplane::io::{Burst, Packet, PacketIo, TxReport, BURST_SIZE};
use furiwake_dataplane::neighbor::Neighbors;
use furiwake_dataplane::rcu::rcu;
use furiwake_dataplane::sched::Schedule;
use furiwake_dataplane::snapshot::{Forwarding, PortView, RealServer, Snapshot, VirtualService};
use furiwake_dataplane::wire::checksum;
use furiwake_dataplane::wire::EthernetAddress;
use furiwake_dataplane::{Worker, WorkerConfig};
use std::sync::Arc;
use std::time::Instant;

const VIP: [u8; 4] = [192, 0, 2, 100];
const FRAME_LEN: usize = 64;

struct Pkt {
    buf: [u8; FRAME_LEN],
}

impl Packet for Pkt {
    fn data(&self) -> &[u8] {
        &self.buf[..60]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..60]
    }
    fn port(&self) -> u16 {
        0
    }
}

/// Feeds frames built from `client` numbers; counts what goes out.
struct MemIo {
    next: u64,
    rng: u64,
    flows: u32,
    random: bool,
    syn: bool,
    /// Forward nothing: measure the harness alone.
    bare: bool,
    templates: [[u8; FRAME_LEN]; 2],
    sent: u64,
    last_out: [u8; FRAME_LEN],
}

/// Client `n`'s address and port.
fn client(n: u32) -> ([u8; 4], u16) {
    let src = [198, 18 + (n >> 24) as u8 % 2, (n >> 16) as u8, (n >> 8) as u8];
    let port = 1024 + (n & 0xff) as u16 * 64 + ((n >> 24) as u16 & 63);
    (src, port)
}

/// `template` (client 0) turned into client `n`'s, checksums updated
/// incrementally (RFC 1624) as a NIC would hand over a fresh packet.
#[inline(always)]
fn patch(template: &[u8; FRAME_LEN], n: u32) -> [u8; FRAME_LEN] {
    let mut f = *template;
    let (src0, port0) = client(0);
    let (src, port) = client(n);
    f[26..30].copy_from_slice(&src);
    f[34..36].copy_from_slice(&port.to_be_bytes());
    let (a0, a1) = (u32::from_be_bytes(src0), u32::from_be_bytes(src));
    let ipc = checksum::update32(u16::from_be_bytes([f[24], f[25]]), a0, a1);
    f[24..26].copy_from_slice(&ipc.to_be_bytes());
    let tc = checksum::update16(checksum::update32(u16::from_be_bytes([f[50], f[51]]), a0, a1), port0, port);
    f[50..52].copy_from_slice(&tc.to_be_bytes());
    f
}

/// A TCP segment from client `n` (198.18.x.y:port) to the VIP, with valid
/// checksums.
fn frame(n: u32, flags: u8) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xaa]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x01]);
    f[12] = 0x08;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    let (src, port) = client(n);
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&VIP);
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut f[34..54];
    t[0..2].copy_from_slice(&port.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&1u32.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let ps = checksum::pseudo_header(src.into(), VIP.into(), 6, 20);
    let c = !checksum::fold(checksum::sum(&f[34..54], ps));
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

impl PacketIo for MemIo {
    type Pkt = Pkt;
    fn rx_queues(&self) -> usize {
        1
    }
    fn rx_burst(&mut self, _rxq: usize, burst: &mut Burst<Pkt>) {
        for _ in 0..BURST_SIZE {
            let n = if self.random {
                // xorshift64*
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32 % self.flows
            } else {
                let n = self.next as u32;
                self.next += 1;
                n
            };
            let t = &self.templates[self.syn as usize];
            let _ = burst.push(Pkt { buf: patch(t, n) });
        }
    }
    fn tx(&mut self, _port: u16, pkt: Pkt) {
        self.sent += 1;
        self.last_out = pkt.buf;
    }
    fn punt(&mut self, pkt: Pkt) -> Result<(), Pkt> {
        Err(pkt)
    }
    fn flush(&mut self) -> TxReport {
        TxReport::default()
    }
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.ports = vec![Some(PortView { mac: EthernetAddress([2, 0, 0, 0, 0, 0xaa]), self_ip: u32::from_be_bytes([192, 0, 2, 2]) })];
    s.self_ips = vec![u32::from_be_bytes([192, 0, 2, 2])];
    for i in 0..3u32 {
        s.servers.push(RealServer {
            ip: u32::from_be_bytes([198, 51, 100, 11 + i as u8]),
            port: 80,
            weight: 1,
            enabled: true,
            tx_port: 0,
            nexthop: i as u16,
            vs: 0,
        });
    }
    let mut vs = VirtualService::test(Forwarding::Nat);
    vs.ip = u32::from_be_bytes(VIP);
    vs.port = 80;
    vs.server_count = 3;
    vs.schedule = Schedule::round_robin(3);
    s.services.push(vs);
    s.index();
    s
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let flows = arg("--flows", 1_000_000) as u32;
    let packets = arg("--packets", 20_000_000);
    let (_publisher, mut readers) = rcu(Box::new(snapshot()), 1);
    let neighbors = Arc::new(Neighbors::new(16));
    for i in 0..3 {
        neighbors.set(i, EthernetAddress([2, 0, 0, 0, 1, i as u8]));
    }
    let config = WorkerConfig { id: 0, workers: 1, flows: flows + flows / 8, timeouts: Timeouts::default() };
    let mut worker = Worker::new(config, readers.remove(0), neighbors);
    let templates = [frame(0, 0x10), frame(0, 0x02)];
    assert_eq!(patch(&templates[1], 12345), frame(12345, 0x02), "incremental patch equals a fresh frame");
    let mut io = MemIo {
        next: 0,
        rng: 0x9e37_79b9_7f4a_7c15,
        flows,
        random: false,
        syn: true,
        bare: false,
        templates,
        sent: 0,
        last_out: [0; FRAME_LEN],
    };

    let t0 = Instant::now();
    while io.next < flows as u64 {
        worker.poll(&mut io, 0);
    }
    let setup = t0.elapsed();
    let live = worker.table().len();
    println!(
        "new-connections: {} SYNs in {:.2} s = {:.2} M conn/s; {} flows live; entry {} B",
        io.next,
        setup.as_secs_f64(),
        io.next as f64 / setup.as_secs_f64() / 1e6,
        live,
        std::mem::size_of::<furiwake_dataplane::flow::Flow>()
    );

    io.random = true;
    io.syn = false;
    let rounds = packets / BURST_SIZE as u64;
    // bare: the harness's own cost (generate, hand over, drop), no worker.
    io.bare = true;
    let tb = Instant::now();
    let mut burst = Burst::new();
    for _ in 0..rounds {
        io.rx_burst(0, &mut burst);
        for p in burst.drain() {
            io.tx(0, p);
        }
    }
    let bare_dt = tb.elapsed().as_secs_f64();
    let n = rounds * BURST_SIZE as u64;
    println!("bare (harness only): {:.2} Mpps, {:.1} ns/packet", n as f64 / bare_dt / 1e6, bare_dt * 1e9 / n as f64);
    io.bare = false;
    io.sent = 0;
    let t1 = Instant::now();
    for _ in 0..rounds {
        worker.poll(&mut io, 1);
    }
    let dt = t1.elapsed().as_secs_f64();
    println!(
        "established (NAT, {} flows, uniform random): {} packets in {:.2} s = {:.2} Mpps/worker, {:.1} ns/packet; forwarded {}",
        live,
        n,
        dt,
        n as f64 / dt / 1e6,
        dt * 1e9 / n as f64,
        io.sent
    );
    println!("worker cost net of the harness: {:.1} ns/packet", (dt - bare_dt) * 1e9 / n as f64);
    // The benchmark must not measure a broken path.
    assert_eq!(io.sent, n, "every established packet forwarded");
    assert_eq!(&io.last_out[30..32], &[198, 51], "destination rewritten to a server");
    assert_eq!(checksum::checksum(&io.last_out[14..34]), 0, "IPv4 checksum valid");
    let _ = FlowTable::hash;
}
