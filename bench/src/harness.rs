//! The DPDK side of the harness: one `net_ring` port whose RX ring the
//! generator (main lcore) fills and whose TX ring it drains, and the
//! production `Worker` polling that port on worker lcore 1 through the
//! production `MbufIo` and poll loop (`furiwake_platform::poll`), exactly as
//! `furiwake run` does.

use crate::gen::{self, Out, Templates, FRAME_LEN};
use furiwake_dataplane::conntrack::Timeouts;
use furiwake_dataplane::state::neighbor::Neighbors;
use furiwake_dataplane::state::rcu::{rcu, Publisher};
use furiwake_dataplane::lb::Schedule;
use furiwake_dataplane::lb::RealServer;
use furiwake_dataplane::state::snapshot::{Forwarding, PortView, Snapshot, VirtualService};
use furiwake_dataplane::wire::EthernetAddress;
use furiwake_dataplane::{Burst, Worker, WorkerConfig};
use furiwake_platform::lcore::{self, LcoreHandle};
use furiwake_platform::poll::{worker_loop, Clock, LoopStats};
use furiwake_platform::{spsc, Consumer, Mbuf, MbufIo, Mempool, Port, PortConfig, Ring};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const WORKER_LCORE: u32 = 1;
/// full-NAT local addresses: 198.51.101.1 .. (64,512 ports each per worker).
pub const LOCALS: usize = 32;
const RING: u32 = 4096;
/// Keep at most this many packets queued toward the worker.
const IN_FLIGHT: usize = 2048;

pub fn local_ip(i: usize) -> [u8; 4] {
    [198, 51, 101, 1 + i as u8]
}

/// The generator's view of a measured phase.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    pub packets: u64,
    pub cycles: u64,
    pub seconds: f64,
    pub forwarded: u64,
    pub errors: u64,
    pub first_error: Option<&'static str>,
    /// Packets the worker dropped, by reason.
    pub drops: Vec<(&'static str, u64)>,
    /// Packets one worker handed to another (two workers).
    pub handed: u64,
}

impl Phase {
    pub fn mpps(&self) -> f64 {
        self.packets as f64 / self.seconds / 1e6
    }
    pub fn cycles_per_packet(&self) -> f64 {
        self.cycles as f64 / self.packets.max(1) as f64
    }
    pub fn ns_per_packet(&self, tsc_hz: u64) -> f64 {
        self.cycles_per_packet() * 1e9 / tsc_hz as f64
    }
}

/// Counts a checked output frame into `ph` (a wrong one by its first
/// error); with `learned`, a client's packet to its server records, by
/// client, the server (2 bits), the local address index (6) and the local
/// port (16).
pub fn account(ph: &mut Phase, checked: Result<Out, &'static str>, learned: Option<&mut [u32]>) {
    match checked {
        Ok(Out::ToServer { n, server, src, sport }) => {
            let li = (src[3] as u32).saturating_sub(1) & 63;
            if let Some(slot) = learned.and_then(|l| l.get_mut(n as usize)) {
                *slot = (server as u32) << 24 | li << 16 | sport as u32;
            }
        }
        Ok(_) => {}
        Err(e) => {
            ph.errors += 1;
            ph.first_error.get_or_insert(e);
        }
    }
}

/// Which packets to send in a phase.
#[derive(Debug, Clone, Copy)]
pub enum Traffic {
    /// SYNs of clients first..first+count (opens connections; the outputs
    /// teach the harness each client's server and local port).
    Open { first: u32 },
    /// SYNs of new clients, measured.
    New { first: u32 },
    /// RSTs of clients first.. (tears them down).
    Reset { first: u32 },
    /// ACKs of random established clients below `flows`.
    Established { flows: u32, zipf: bool },
    /// Server replies to random established clients below `flows`.
    Replies { flows: u32 },
    /// The rest of the handshake of clients 0..`flows` (opened by `Open`):
    /// for each, the server's SYN-ACK, then the client's ACK, so their
    /// entries are ESTABLISHED (half-open ones would be evicted first).
    Handshake,
    /// 89% established, 10% new connections (from `first_new`), 1% bad
    /// IPv4 checksum.
    Mixed { flows: u32, first_new: u32 },
}

pub struct Run {
    port: Port,
    rx: Arc<Ring<Mbuf>>,
    tx: Arc<Ring<Mbuf>>,
    stop: Arc<AtomicBool>,
    handle: Option<LcoreHandle>,
    /// The worker loop's (`furiwake_platform::poll`): packets and busy
    /// cycles.
    pub stats: Arc<LoopStats>,
    /// The worker's own counters (drops by reason).
    pub counters: Option<Arc<furiwake_dataplane::WorkerCounters>>,
    _punts: Option<Consumer<Mbuf>>,
    _publisher: Option<Publisher<Snapshot>>,
    /// How output frames are checked (DSR modes: no replies).
    pub mode: gen::Mode,
    /// Per client: server (2 bits), local address index (6), local port (16).
    pub learned: Vec<u32>,
    rng: u64,
    templates: Templates,
    templates6: crate::gen6::Templates6,
}

fn snapshot(port: u16, forwarding: Forwarding) -> Snapshot {
    let mut s = Snapshot::default();
    s.ports = vec![None; port as usize + 1];
    s.ports[port as usize] = Some(PortView { mac: EthernetAddress(gen::PORT_MAC), self_ip: u32::from_be_bytes([192, 0, 2, 2]), netmask: 0, mtu: 1500, port, vlan: 0, route: false, ..Default::default() });
    s.self_ips = vec![u32::from_be_bytes([192, 0, 2, 2])];
    for i in 0..gen::SERVERS {
        s.servers.push(RealServer {
            ip: u32::from_be_bytes(gen::server_ip(i)),
            // MAT rewrites no port: its servers listen on the VIP's.
            port: if forwarding.is_dsr() { gen::VPORT } else { gen::SERVER_PORT },
            weight: 1,
            enabled: true,
            tx_port: port,
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
    let mut vs = VirtualService::test(forwarding);
    vs.name = "bench".into();
    vs.ip = u32::from_be_bytes(gen::VIP);
    vs.port = gen::VPORT;
    vs.members = (0..gen::SERVERS as u16).collect();
    vs.schedule = Schedule::round_robin(gen::SERVERS);
    if forwarding == Forwarding::FullNat {
        vs.local_addrs = (0..LOCALS).map(|i| u32::from_be_bytes(local_ip(i))).collect();
    }
    if forwarding == Forwarding::DsrTunnel {
        vs.tunnel = Some(furiwake_dataplane::state::snapshot::TunnelSpec { kind: furiwake_dataplane::state::snapshot::TunnelKind::Ipip, source: None, port: 6080 });
    }
    s.services.push(vs);
    s.index();
    s
}

/// `snapshot`'s NAT service, over IPv6: [VIP6]:80 over the IPv6 servers.
fn snapshot6(port: u16) -> Snapshot {
    let mut s = snapshot(port, Forwarding::Nat);
    if let Some(Some(p)) = s.ports.get_mut(port as usize) {
        p.v6 = furiwake_dataplane::state::snapshot::PortView6::new(u128::from_be_bytes([0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]), 64, EthernetAddress(gen::PORT_MAC));
    }
    for (i, srv) in s.servers.iter_mut().enumerate() {
        (srv.ip, srv.ip6) = (0, crate::gen6::server6(i));
    }
    if let Some(vs) = s.services.get_mut(0) {
        (vs.ip, vs.ip6) = (0, u128::from_be_bytes(crate::gen6::VIP6));
    }
    s.index();
    s
}

/// What a `Run`'s worker lcore runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Loop {
    /// The production worker.
    Worker,
    /// rx burst -> tx burst.
    Bare,
    /// rx burst, each frame's MAC addresses swapped, tx burst.
    Touch,
}

impl Run {
    /// A ring port and a worker lcore: the production `Worker`, or a
    /// plain rx->tx loop (`Loop::Bare`), or one that also reads and writes
    /// each frame's first line as l2fwd does (`Loop::Touch`: swaps the
    /// MAC addresses), the floor of any forwarder that looks at packets.
    pub fn start(id: u32, pool: &Mempool, forwarding: Forwarding, capacity: u32, kind: Loop) -> Result<Run, String> {
        Self::start_family(id, pool, forwarding, capacity, kind, false)
    }

    /// `start` with NAT over IPv6 (`gen6`): the same service's IPv6 twin,
    /// the worker's IPv6 table of `capacity` entries.
    pub fn start_v6(id: u32, pool: &Mempool, capacity: u32) -> Result<Run, String> {
        Self::start_family(id, pool, Forwarding::Nat, capacity, Loop::Worker, true)
    }

    fn start_family(id: u32, pool: &Mempool, forwarding: Forwarding, capacity: u32, kind: Loop, v6: bool) -> Result<Run, String> {
        let (bare, touch) = (kind != Loop::Worker, kind == Loop::Touch);
        let rx: Arc<Ring<Mbuf>> = Ring::new(&format!("bench-rx-{id}"), RING).map_err(|e| e.to_string())?;
        let tx: Arc<Ring<Mbuf>> = Ring::new(&format!("bench-tx-{id}"), RING).map_err(|e| e.to_string())?;
        let mut port = Port::from_rings(&format!("bench{id}"), &[Arc::clone(&rx)], &[Arc::clone(&tx)]).map_err(|e| e.to_string())?;
        port.configure(&PortConfig { rx_queues: 1, tx_queues: 1, rx_desc: 1024, tx_desc: 1024, promiscuous: false }, pool)
            .map_err(|e| e.to_string())?;
        port.start().map_err(|e| e.to_string())?;
        let pid = port.id();
        let (mut rxq, mut txq) = (port.take_rx_queue(0).map_err(|e| e.to_string())?, port.take_tx_queue(0).map_err(|e| e.to_string())?);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LoopStats::default());
        let (s, st) = (Arc::clone(&stop), Arc::clone(&stats));
        let mut punts = None;
        let mut publisher = None;
        let mut counters = None;
        let handle = if bare {
            lcore::launch(WORKER_LCORE, move || {
                let mut b = Burst::new();
                while !s.load(Relaxed) {
                    let t0 = furiwake_platform::rdtsc();
                    let n = rxq.rx_burst(&mut b);
                    if n > 0 {
                        if touch {
                            for m in b.slots_mut().iter_mut().take(n).flatten() {
                                if let Some(eth) = m.data_mut().get_mut(..12) {
                                    let (dst, src) = eth.split_at_mut(6);
                                    dst.swap_with_slice(src);
                                }
                            }
                        }
                        txq.tx_burst(&mut b);
                        b.drain().for_each(drop);
                        st.busy_tsc.add(furiwake_platform::rdtsc() - t0);
                        st.packets.add(n as u64);
                    }
                }
                0
            })
        } else {
            let (p, mut readers) = rcu(Box::new(if v6 { snapshot6(pid) } else { snapshot(pid, forwarding) }), 1);
            publisher = Some(p);
            let neighbors = Arc::new(Neighbors::new(8));
            for i in 0..gen::SERVERS {
                neighbors.set(i as u16, EthernetAddress(gen::SERVER_MAC));
            }
            // (With IPv6 the IPv4 table is the smallest, so the memory
            // measured is the IPv6 table's.)
            let config = WorkerConfig { id: 0, workers: 1, flows: if v6 { 1024 } else { capacity }, flows_v6: if v6 { capacity } else { 0 }, timeouts: Timeouts::default(), hash_key: 0x0123_4567_89ab_cdef, sync_refresh: 0, ..WorkerConfig::default() };
            let worker = Worker::new(config, readers.remove(0), neighbors);
            counters = Some(worker.counters());
            let (punt_p, punt_c) = spsc::<Mbuf>(&format!("bench-punt-{id}"), 1024).map_err(|e| e.to_string())?;
            punts = Some(punt_c);
            let io = MbufIo::new(vec![rxq], vec![txq], punt_p, None);
            // The production loop, without idle sleeps.
            lcore::launch(WORKER_LCORE, move || worker_loop(worker, io, &s, Duration::ZERO, Clock::start(), &st))
        }
        .map_err(|e| e.to_string())?;
        Ok(Run {
            port,
            rx,
            tx,
            stop,
            handle: Some(handle),
            stats,
            counters,
            _punts: punts,
            _publisher: publisher,
            mode: match forwarding {
                _ if v6 => gen::Mode::Nat6,
                Forwarding::FullNat => gen::Mode::FullNat,
                Forwarding::DsrL2 => gen::Mode::Mat,
                Forwarding::DsrTunnel => gen::Mode::Ipip,
                _ => gen::Mode::Nat,
            },
            learned: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            templates: Templates::new(),
            templates6: crate::gen6::Templates6::new(),
        })
    }

    #[inline(always)]
    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A client below `flows`: uniform, or Zipf-like with exponent 1
    /// (log-uniform rank: rank r drawn with probability ~ 1/r).
    #[inline(always)]
    fn pick(&mut self, flows: u32, zipf: bool) -> u32 {
        let r = self.rand();
        if zipf {
            let u = (r >> 11) as f64 / (1u64 << 53) as f64;
            (((flows as f64 + 1.0).ln() * u).exp() as u32).saturating_sub(1).min(flows - 1)
        } else {
            ((r >> 32) % flows as u64) as u32
        }
    }

    fn fill(&mut self, traffic: Traffic, i: u64, out: &mut [u8]) {
        if self.mode == gen::Mode::Nat6 {
            return self.fill6(traffic, i, out);
        }
        match traffic {
            Traffic::Open { first } | Traffic::New { first } => self.templates.to_vip(first + i as u32, gen::SYN, out),
            Traffic::Reset { first } => self.templates.to_vip(first + i as u32, gen::RST, out),
            Traffic::Established { flows, zipf } => {
                let n = self.pick(flows, zipf);
                self.templates.to_vip(n, gen::ACK, out)
            }
            Traffic::Replies { flows } => {
                let n = self.pick(flows, false);
                let l = self.learned.get(n as usize).copied().unwrap_or(0);
                let local = (self.mode == gen::Mode::FullNat).then(|| (local_ip(((l >> 16) & 63) as usize), (l & 0xffff) as u16));
                self.templates.server_reply(n, (l >> 24) as usize, local, out)
            }
            Traffic::Handshake => {
                let n = (i / 2) as u32;
                if i.is_multiple_of(2) {
                    let l = self.learned.get(n as usize).copied().unwrap_or(0);
                    let local = (self.mode == gen::Mode::FullNat).then(|| (local_ip(((l >> 16) & 63) as usize), (l & 0xffff) as u16));
                    self.templates.server_segment(n, (l >> 24) as usize, local, true, out)
                } else {
                    self.templates.to_vip(n, gen::ACK, out)
                }
            }
            Traffic::Mixed { flows, first_new } => {
                let r = self.rand() % 100;
                if r == 0 {
                    self.templates.malformed(out)
                } else if r <= 10 {
                    self.templates.to_vip(first_new + i as u32, gen::SYN, out)
                } else {
                    let n = self.pick(flows, false);
                    self.templates.to_vip(n, gen::ACK, out)
                }
            }
        }
    }

    /// `fill` for NAT over IPv6 (no mixed traffic).
    fn fill6(&mut self, traffic: Traffic, i: u64, out: &mut [u8]) {
        let t = &self.templates6;
        match traffic {
            Traffic::Open { first } | Traffic::New { first } => t.to_vip(first + i as u32, gen::SYN, out),
            Traffic::Reset { first } => t.to_vip(first + i as u32, gen::RST, out),
            Traffic::Established { flows, zipf } => {
                let n = self.pick(flows, zipf);
                self.templates6.to_vip(n, gen::ACK, out)
            }
            Traffic::Replies { flows } => {
                let n = self.pick(flows, false);
                let l = self.learned.get(n as usize).copied().unwrap_or(0);
                self.templates6.server_segment(n, (l >> 24) as usize, false, out)
            }
            Traffic::Handshake => {
                let n = (i / 2) as u32;
                if i.is_multiple_of(2) {
                    let l = self.learned.get(n as usize).copied().unwrap_or(0);
                    t.server_segment(n, (l >> 24) as usize, true, out)
                } else {
                    t.to_vip(n, gen::ACK, out)
                }
            }
            Traffic::Mixed { flows, .. } => {
                let n = self.pick(flows, false);
                self.templates6.to_vip(n, gen::ACK, out)
            }
        }
    }

    fn frame_len(&self) -> usize {
        if self.mode == gen::Mode::Nat6 { crate::gen6::FRAME_LEN6 } else { FRAME_LEN }
    }

    /// Sends `count` packets of `traffic` (or for `duration`, whichever
    /// ends first) and measures the worker while it processes them.
    /// `check_every`: validate 1 output in N (1 = all; learning needs all).
    pub fn phase(&mut self, pool: &Mempool, traffic: Traffic, count: u64, duration: Duration, check_every: u64) -> Phase {
        let (p0, c0) = (self.stats.packets.get(), self.stats.busy_tsc.get());
        let drops0 = self.drops();
        let t0 = Instant::now();
        let mut ph = Phase::default();
        let mut sent = 0u64;
        let mut out = Burst::new();
        let mut inject = Burst::new();
        let learn = matches!(traffic, Traffic::Open { .. }) && check_every == 1;
        let frame_len = self.frame_len();
        loop {
            if self.tx.dequeue_burst(&mut out) > 0 {
                for m in out.drain() {
                    ph.forwarded += 1;
                    if ph.forwarded % check_every == 0 {
                        account(&mut ph, check_frame(m.data(), self.mode), learn.then_some(&mut self.learned[..]));
                    }
                }
            }
            let done = sent >= count || t0.elapsed() >= duration;
            if done {
                break;
            }
            if self.rx.len() < IN_FLIGHT {
                let n = (count - sent).min(32) as usize;
                if pool.alloc_burst(&mut inject, n).is_ok() {
                    let mut filled = Burst::new();
                    for (k, mut m) in inject.drain().enumerate() {
                        if let Some(buf) = m.append(frame_len as u16) {
                            self.fill(traffic, sent + k as u64, buf);
                            let _ = filled.push(m);
                        }
                    }
                    let pushed = self.rx.enqueue_burst(&mut filled);
                    sent += pushed as u64;
                }
            }
        }
        // Let the worker finish what is queued, then count.
        let settle = Instant::now();
        // Until the worker has counted every packet sent and its output is
        // drained (a burst may be in its hands while both rings are empty).
        while (self.stats.packets.get() - p0 < sent || !self.tx.is_empty()) && settle.elapsed() < Duration::from_secs(5) {
            if self.tx.dequeue_burst(&mut out) > 0 {
                for m in out.drain() {
                    ph.forwarded += 1;
                    if learn {
                        account(&mut ph, check_frame(m.data(), self.mode), Some(&mut self.learned[..]));
                    }
                }
            }
        }
        ph.seconds = t0.elapsed().as_secs_f64();
        ph.packets = self.stats.packets.get() - p0;
        ph.cycles = self.stats.busy_tsc.get() - c0;
        while self.tx.dequeue_burst(&mut out) > 0 {
            ph.forwarded += out.len() as u64;
            out.drain().for_each(drop);
        }
        ph.drops = self
            .drops()
            .into_iter()
            .zip(drops0)
            .filter_map(|((name, n), (_, n0))| (n > n0).then_some((name, n - n0)))
            .collect();
        ph
    }

    fn drops(&self) -> Vec<(&'static str, u64)> {
        use furiwake_dataplane::DropReason;
        DropReason::ALL.iter().map(|r| (r.name(), self.counters.as_ref().map_or(0, |c| c.drops(*r)))).collect()
    }

    pub fn flows(&self) -> u64 {
        self.counters.as_ref().map_or(0, |c| c.flows.get())
    }

    /// Stops the worker lcore and closes the port.
    pub fn finish(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            h.join();
        }
        let _ = self.port.close();
    }
}

/// `gen::check`, or `gen6::check6` for NAT over IPv6.
fn check_frame(f: &[u8], mode: gen::Mode) -> Result<Out, &'static str> {
    if mode == gen::Mode::Nat6 {
        return crate::gen6::check6(f);
    }
    gen::check(f, mode)
}

/// Resident memory of this process, bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |kb| kb * 1024)
}
