//! Two workers, as `furiwake run` starts them on a two-port box: two
//! `net_ring` ports, `outside` (clients) and `inside` (servers), each with
//! an RX and a TX ring per worker; the production `Worker`s on lcores 1
//! and 2 (both on CPU 1 of this two-CPU machine, `--lcores 1@1,2@1`) with
//! the hand-off rings between them, through the production `MbufIo` and
//! poll loop (`furiwake_platform::poll`).
//!
//! The generator (main lcore) puts each frame on the RX queue a NIC would:
//!
//! - `steered`: the queue the port's RSS gives it under the key and RETA
//!   Furiwake programs (`furiwake_dataplane::rss`: the client key on the
//!   outside port, the server key inside), the Toeplitz hash computed here
//!   from the key bytes alone with per-byte tables of DPDK's `rte_softrss`
//!   (`Nic`), independently of the box's own mirror;
//! - `unsteered`: the queues in turn, whatever the hash, as a device whose
//!   spreading is not Furiwake's (af_packet's fanout, RSS with its own
//!   key).
//!
//! Reported: Mpps over the phase, ns of busy worker time per packet, and
//! the share of packets one worker handed to the other.

use crate::gen::{self, Templates, FRAME_LEN};
use crate::harness::{account, local_ip, Phase, LOCALS};
use furiwake_dataplane::conntrack::Timeouts;
use furiwake_dataplane::lb::{RealServer, Schedule};
use furiwake_dataplane::rss::{ipv4_input, Steering, KEY_LEN, RETA_SIZE};
use furiwake_dataplane::state::neighbor::Neighbors;
use furiwake_dataplane::state::rcu::{rcu, Publisher};
use furiwake_dataplane::state::snapshot::{Forwarding, PortView, Snapshot, VirtualService};
use furiwake_dataplane::wire::EthernetAddress;
use furiwake_dataplane::{Burst, Worker, WorkerConfig, WorkerCounters};
use furiwake_platform::lcore::{self, LcoreHandle};
use furiwake_platform::poll::{worker_loop, Clock, LoopStats};
use furiwake_platform::{spsc, Consumer, Mbuf, MbufIo, Mempool, Port, PortConfig, Producer, Ring};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The worker lcores (the EAL maps both onto CPU 1).
pub const LCORES: [u32; 2] = [1, 2];
const W: usize = 2;
const RING: u32 = 4096;
const IN_FLIGHT: usize = 2048;
const OWNER_KEY: u64 = 0x6f77_6e65_725f_6b65;

/// A NIC's Toeplitz over the IPv4 4-tuple, by per-byte tables of the key
/// made with DPDK's `rte_softrss` (any key: nothing of Furiwake's key
/// structure, nor its own Toeplitz, is used).
struct Nic {
    t: Vec<[u32; 256]>,
}

impl Nic {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        let t = (0..12)
            .map(|i| {
                let mut row = [0u32; 256];
                for (v, slot) in row.iter_mut().enumerate() {
                    let mut input = [0u8; 12];
                    input[i] = v as u8;
                    let words: Vec<u32> = input.chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
                    *slot = furiwake_platform::rss::softrss(&words, key);
                }
                row
            })
            .collect();
        Nic { t }
    }

    fn hash(&self, input: &[u8; 12]) -> u32 {
        input.iter().zip(&self.t).fold(0, |h, (b, row)| h ^ row[*b as usize])
    }
}

/// What to send in a phase.
#[derive(Debug, Clone, Copy)]
pub enum Traffic {
    /// SYNs of clients from `first` (the outputs teach each client's
    /// server and local port).
    Open { first: u32 },
    /// Server SYN-ACK then client ACK of clients 0.. (entries established).
    Handshake,
    /// Random established clients below `flows`, both directions alike.
    Established { flows: u32 },
}

pub struct Multi {
    ports: Vec<Port>,
    /// [outside, inside][queue].
    rx: [[Arc<Ring<Mbuf>>; W]; 2],
    tx: [[Arc<Ring<Mbuf>>; W]; 2],
    stop: Arc<AtomicBool>,
    handles: Vec<LcoreHandle>,
    stats: Vec<Arc<LoopStats>>,
    counters: Vec<Arc<WorkerCounters>>,
    _punts: Vec<Consumer<Mbuf>>,
    _publisher: Publisher<Snapshot>,
    steered: bool,
    nic: [Nic; 2],
    reta: [u16; RETA_SIZE],
    full_nat: bool,
    /// Per client: server (2 bits), local address index (6), local port (16).
    learned: Vec<u32>,
    /// Per client: its queue on the outside (bit 0) and inside (bit 1).
    queues: Vec<u8>,
    templates: Templates,
    rng: u64,
}

fn snapshot(out: u16, inside: u16, full_nat: bool) -> Snapshot {
    let mut s = Snapshot::default();
    s.ports = vec![None; out.max(inside) as usize + 1];
    let view = |port, ip: [u8; 4]| Some(PortView { mac: EthernetAddress(gen::PORT_MAC), self_ip: u32::from_be_bytes(ip), netmask: 0, mtu: 1500, port, vlan: 0, route: false, ..Default::default() });
    s.ports[out as usize] = view(out, [192, 0, 2, 2]);
    s.ports[inside as usize] = view(inside, [198, 51, 100, 1]);
    s.self_ips = vec![u32::from_be_bytes([192, 0, 2, 2]), u32::from_be_bytes([198, 51, 100, 1])];
    for i in 0..gen::SERVERS {
        s.servers.push(RealServer {
            ip: u32::from_be_bytes(gen::server_ip(i)),
            port: gen::SERVER_PORT,
            weight: 1,
            enabled: true,
            tx_port: inside,
            nexthop: i as u16,
            vs: 0,
            reset: false,
            max_connections: 0,
            priority: 0,
            epoch: 0,
            sticky_only: false,
            ip6: [0; 16],
        });
    }
    let mut vs = VirtualService::test(if full_nat { Forwarding::FullNat } else { Forwarding::Nat });
    vs.name = "bench".into();
    vs.ip = u32::from_be_bytes(gen::VIP);
    vs.port = gen::VPORT;
    vs.members = (0..gen::SERVERS as u16).collect();
    vs.schedule = Schedule::round_robin(gen::SERVERS);
    if full_nat {
        vs.local_addrs = (0..LOCALS).map(|i| u32::from_be_bytes(local_ip(i))).collect();
    }
    s.services.push(vs);
    s.index();
    s
}

type Rings = [Arc<Ring<Mbuf>>; W];

fn rings(tag: &str, id: u32) -> Result<Rings, String> {
    let a = Ring::new(&format!("mb-{tag}0-{id}"), RING).map_err(|e| e.to_string())?;
    let b = Ring::new(&format!("mb-{tag}1-{id}"), RING).map_err(|e| e.to_string())?;
    Ok([a, b])
}

/// Hand-off rings: `tx[a][b]` from worker a to b, `rx[b]` into b.
type Handoff = (Vec<Vec<Option<Producer<Mbuf>>>>, Vec<Vec<Consumer<Mbuf>>>);

fn handoff_rings(id: u32) -> Result<Handoff, String> {
    let mut tx: Vec<Vec<Option<Producer<Mbuf>>>> = (0..W).map(|_| (0..W).map(|_| None).collect()).collect();
    let mut rx: Vec<Vec<Consumer<Mbuf>>> = (0..W).map(|_| Vec::new()).collect();
    for (a, row) in tx.iter_mut().enumerate() {
        for (b, slot) in row.iter_mut().enumerate() {
            if a != b {
                let (p, c) = spsc::<Mbuf>(&format!("mb-ho{a}{b}-{id}"), 4096).map_err(|e| e.to_string())?;
                *slot = Some(p);
                rx[b].push(c);
            }
        }
    }
    Ok((tx, rx))
}

impl Multi {
    /// Both ports and both workers started; `steered` as the module says.
    pub fn start(id: u32, pool: &Mempool, full_nat: bool, capacity: u32, steered: bool) -> Result<Multi, String> {
        let rx = [rings("ro", id)?, rings("ri", id)?];
        let tx = [rings("to", id)?, rings("ti", id)?];
        let mut ports = Vec::new();
        for (i, name) in ["out", "in"].iter().enumerate() {
            let mut p = Port::from_rings(&format!("mb{name}{id}"), &rx[i], &tx[i]).map_err(|e| e.to_string())?;
            p.configure(&PortConfig { rx_queues: W as u16, tx_queues: W as u16, rx_desc: 1024, tx_desc: 1024, promiscuous: false }, pool).map_err(|e| e.to_string())?;
            p.start().map_err(|e| e.to_string())?;
            ports.push(p);
        }
        let (out_id, in_id) = (ports[0].id(), ports[1].id());
        let (publisher, mut readers) = rcu(Box::new(snapshot(out_id, in_id, full_nat)), W);
        let neighbors = Arc::new(Neighbors::new(8));
        for i in 0..gen::SERVERS {
            neighbors.set(i as u16, EthernetAddress(gen::SERVER_MAC));
        }
        let (mut ho_tx, mut ho_rx) = handoff_rings(id)?;
        let stop = Arc::new(AtomicBool::new(false));
        let clock = Clock::start();
        let (mut handles, mut stats, mut counters, mut punts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for w in (0..W).rev() {
            let rxq = vec![ports[0].take_rx_queue(w as u16).map_err(|e| e.to_string())?, ports[1].take_rx_queue(w as u16).map_err(|e| e.to_string())?];
            let txq = vec![ports[0].take_tx_queue(w as u16).map_err(|e| e.to_string())?, ports[1].take_tx_queue(w as u16).map_err(|e| e.to_string())?];
            let (punt_p, punt_c) = spsc::<Mbuf>(&format!("mb-punt{w}-{id}"), 1024).map_err(|e| e.to_string())?;
            punts.push(punt_c);
            let io = MbufIo::new(rxq, txq, punt_p, None).with_handoff(ho_tx.pop().unwrap_or_default(), ho_rx.pop().unwrap_or_default());
            let config = WorkerConfig { id: w as u16, workers: W as u16, flows: capacity, timeouts: Timeouts::default(), hash_key: 0x0123_4567_89ab_cdef, owner_key: OWNER_KEY, ..WorkerConfig::default() };
            let worker = Worker::new(config, readers.pop().ok_or("rcu readers")?, Arc::clone(&neighbors));
            counters.push(worker.counters());
            let st = Arc::new(LoopStats::default());
            stats.push(Arc::clone(&st));
            let s = Arc::clone(&stop);
            handles.push(lcore::launch(LCORES[w], move || worker_loop(worker, io, &s, Duration::ZERO, clock, &st)).map_err(|e| e.to_string())?);
        }
        handles.reverse();
        stats.reverse();
        counters.reverse();
        let steer = Steering::new(W as u16, OWNER_KEY);
        Ok(Multi {
            ports,
            rx,
            tx,
            stop,
            handles,
            stats,
            counters,
            _punts: punts,
            _publisher: publisher,
            steered,
            nic: [Nic::new(&steer.keys().client), Nic::new(&steer.keys().server)],
            reta: *steer.reta(),
            full_nat,
            learned: Vec::new(),
            queues: Vec::new(),
            templates: Templates::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        })
    }

    /// Room for clients 0..n.
    pub fn clients(&mut self, n: usize) {
        self.learned = vec![0; n];
        self.queues = vec![0; n];
    }

    /// The queue of a frame (IPv4 at 14) arriving on `port` (0 outside,
    /// 1 inside) from client or for client `n`.
    fn queue(&self, port: usize, n: u32, f: &[u8]) -> usize {
        if !self.steered {
            return (n as usize + port) % W;
        }
        let ip = |at: usize| u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
        let p16 = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
        let h = self.nic[port].hash(&ipv4_input(ip(26), ip(30), p16(34), p16(36)));
        usize::from(self.reta[h as usize % RETA_SIZE]) % W
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn local_of(&self, n: u32) -> Option<([u8; 4], u16)> {
        let l = self.learned.get(n as usize).copied().unwrap_or(0);
        self.full_nat.then(|| (local_ip(((l >> 16) & 63) as usize), (l & 0xffff) as u16))
    }

    fn server_of(&self, n: u32) -> usize {
        (self.learned.get(n as usize).copied().unwrap_or(0) >> 24) as usize
    }

    /// Frame `i` of `traffic` into `out`; the port (0 outside, 1 inside)
    /// and queue it arrives on.
    fn fill(&mut self, traffic: Traffic, i: u64, out: &mut [u8]) -> (usize, usize) {
        let (n, port) = match traffic {
            Traffic::Open { first } => {
                let n = first + i as u32;
                self.templates.to_vip(n, gen::SYN, out);
                (n, 0)
            }
            Traffic::Handshake => {
                let n = (i / 2) as u32;
                if i.is_multiple_of(2) {
                    self.templates.server_segment(n, self.server_of(n), self.local_of(n), true, out);
                    (n, 1)
                } else {
                    self.templates.to_vip(n, gen::ACK, out);
                    (n, 0)
                }
            }
            Traffic::Established { flows } => {
                let r = self.rand();
                let n = ((r >> 32) % flows as u64) as u32;
                if r & 1 == 0 {
                    self.templates.to_vip(n, gen::ACK, out);
                    (n, 0)
                } else {
                    self.templates.server_reply(n, self.server_of(n), self.local_of(n), out);
                    (n, 1)
                }
            }
        };
        let cached = matches!(traffic, Traffic::Established { .. });
        let q = match self.queues.get(n as usize) {
            Some(bits) if cached => usize::from(bits >> port & 1),
            _ => self.queue(port, n, out),
        };
        if !cached {
            if let Some(bits) = self.queues.get_mut(n as usize) {
                *bits = (*bits & !(1 << port)) | ((q as u8) << port);
            }
        }
        (port, q)
    }

    fn drain(&mut self, ph: &mut Phase, learn: bool, check_every: u64) {
        let mut out = Burst::new();
        for p in 0..2 {
            for q in 0..W {
                if self.tx[p][q].dequeue_burst(&mut out) == 0 {
                    continue;
                }
                for m in out.drain() {
                    ph.forwarded += 1;
                    if !learn && !ph.forwarded.is_multiple_of(check_every) {
                        continue;
                    }
                    let mode = if self.full_nat { gen::Mode::FullNat } else { gen::Mode::Nat };
                    account(ph, gen::check(m.data(), mode), learn.then_some(&mut self.learned[..]));
                }
            }
        }
    }

    fn totals(&self) -> (u64, u64, u64) {
        let p = self.stats.iter().map(|s| s.packets.get()).sum();
        let c = self.stats.iter().map(|s| s.busy_tsc.get()).sum();
        let h = self.counters.iter().map(|c| c.handed_off.get()).sum();
        (p, c, h)
    }

    /// Sends `count` frames of `traffic` (or for `duration`); `Phase`'s
    /// packets are those sent (a handed-over packet is counted once), its
    /// cycles both workers' busy time, `handed` what they handed over.
    pub fn phase(&mut self, pool: &Mempool, traffic: Traffic, count: u64, duration: Duration, check_every: u64) -> Phase {
        let (p0, c0, h0) = self.totals();
        let t0 = Instant::now();
        let mut ph = Phase::default();
        let mut sent = 0u64;
        let mut inject = Burst::new();
        let learn = matches!(traffic, Traffic::Open { .. });
        while sent < count && t0.elapsed() < duration {
            self.drain(&mut ph, learn, check_every);
            if self.rx.iter().flatten().any(|r| r.len() >= IN_FLIGHT) {
                continue;
            }
            let n = (count - sent).min(32) as usize;
            if pool.alloc_burst(&mut inject, n).is_err() {
                continue;
            }
            let mut by_queue: [[Burst<Mbuf>; W]; 2] = [[Burst::new(), Burst::new()], [Burst::new(), Burst::new()]];
            for (k, mut m) in inject.drain().enumerate() {
                if let Some(buf) = m.append(FRAME_LEN as u16) {
                    let (p, q) = self.fill(traffic, sent + k as u64, buf);
                    let _ = by_queue[p][q].push(m);
                }
            }
            for (p, per) in by_queue.iter_mut().enumerate() {
                for (q, b) in per.iter_mut().enumerate() {
                    sent += self.rx[p][q].enqueue_burst(b) as u64;
                    b.drain().for_each(drop);
                }
            }
        }
        // Every frame sent counted by a worker (its owner), outputs drained.
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(5) {
            self.drain(&mut ph, learn, check_every);
            let (p, _, h) = self.totals();
            if p - p0 >= sent + (h - h0) && self.tx.iter().flatten().all(|r| r.is_empty()) {
                break;
            }
        }
        let (p1, c1, h1) = self.totals();
        ph.seconds = t0.elapsed().as_secs_f64();
        ph.packets = sent.min(p1 - p0);
        ph.cycles = c1 - c0;
        ph.handed = h1 - h0;
        ph
    }

    pub fn finish(mut self) {
        self.stop.store(true, Relaxed);
        for h in self.handles.drain(..) {
            h.join();
        }
        for p in &mut self.ports {
            let _ = p.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use furiwake_dataplane::rss::toeplitz;

    #[test]
    fn the_generators_nic_hashes_as_toeplitz() {
        let s = Steering::new(2, OWNER_KEY);
        for key in [&s.keys().client, &s.keys().server] {
            let nic = Nic::new(key);
            let mut x = 0x1234_5678_9abc_def1u64;
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let input = ipv4_input(x as u32, (x >> 32) as u32, (x >> 5) as u16, (x >> 40) as u16);
                assert_eq!(nic.hash(&input), toeplitz(key, &input));
            }
        }
    }
}
