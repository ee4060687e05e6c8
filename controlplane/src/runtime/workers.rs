//! The worker lcores: launched with their rings and RCU readers, their
//! poll loop, their counters as the control plane reads them, and the
//! publisher of the snapshot they read.

use super::stats::{LoopStats, Traffic};
use super::Runtime;
use crate::config::Config;
use furiwake_dataplane::region;
use crate::out::say;
use furiwake_dataplane::ctl::dump::{self, DumpClient};
use furiwake_dataplane::ctl::events::{self, RecordConsumer, RecordProducer, SyncControl};
use furiwake_dataplane::lb::Loads;
use furiwake_dataplane::state::counters::ServiceCounters;
use furiwake_dataplane::state::neighbor::Neighbors;
use furiwake_dataplane::state::rcu::{rcu, Publisher};
use furiwake_dataplane::state::snapshot::Snapshot;
use furiwake_dataplane::{Worker, WorkerConfig, WorkerCounters};
use furiwake_platform::lcore::{self, LcoreHandle};
use furiwake_platform::poll::{worker_loop, Clock};
use furiwake_platform::{spsc, Consumer, Mbuf, MbufIo, Producer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PUNT_RING: u32 = 1024;
/// The protected classes' ring (ARP, VRRP, HA), per worker: their buckets
/// pass a quarter second's burst at most (`[defence.punt]`), and the
/// control lcore drains this ring first, every turn.
use furiwake_dataplane::limits::PUNT_PROTECTED_RING;
const HANDOFF_RING: u32 = 4096;
const INJECT_RING: u32 = 1024;
/// Records per sync ring (events out, installs in), per worker: 8192 x 48 B.
const SYNC_RING: usize = 8192;

/// What connection-state sync needs of the workers: the pair's ownership
/// key and the refresh period (`[sync]`).
#[derive(Debug, Clone, Copy)]
pub struct SyncSetup {
    /// Flow-table ticks between refresh walks.
    pub refresh_ticks: u32,
}

/// The control plane's ends of one worker's sync rings.
pub struct SyncEnds {
    /// What the worker reports (creates, updates, deletes, refreshes).
    pub events: RecordConsumer,
    /// What the peer sent, for the worker to install.
    pub installs: RecordProducer,
    /// Bulk walks: requested here, done there.
    pub control: Arc<SyncControl>,
}

struct WorkerHandle {
    lcore: Option<LcoreHandle>,
    counters: Arc<WorkerCounters>,
    /// The console's connection-table dumps (`show connections`).
    dump: DumpClient,
    /// Its loop's busy time (`show workers`).
    loops: Arc<LoopStats>,
}

/// The running workers, what the control plane reads of them, and the
/// snapshot they read.
#[derive(Default)]
pub struct Workers {
    handles: Vec<WorkerHandle>,
    stop: Arc<AtomicBool>,
    publisher: Option<Publisher<Snapshot>>,
    /// The sync rings' control-plane ends, until the sync module takes them.
    sync: Vec<SyncEnds>,
    /// The workers' ownership key (`WorkerConfig::owner_key`).
    owner_key: u64,
}

impl Workers {
    /// No worker yet; the ownership key they will get.
    pub(super) fn with_owner_key(owner_key: u64) -> Self {
        Workers { owner_key, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// The sync rings' ends, by worker (once; empty without `[sync]`).
    pub fn take_sync_ends(&mut self) -> Vec<SyncEnds> {
        std::mem::take(&mut self.sync)
    }

    /// The key of the workers' ownership hash (`pipeline::owner`).
    pub fn owner_key(&self) -> u64 {
        self.owner_key
    }

    /// The pair agreed on another ownership key (the sync module has set
    /// it in every worker's `SyncControl`; `Runtime::set_owner_key`).
    pub(super) fn set_owner_key(&mut self, key: u64) {
        self.owner_key = key;
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Each worker's counters, by worker index.
    pub fn counters(&self) -> impl Iterator<Item = &WorkerCounters> {
        self.handles.iter().map(|w| &*w.counters)
    }

    /// `f` summed over the workers (wrapping).
    pub fn sum(&self, f: impl Fn(&WorkerCounters) -> u64) -> u64 {
        self.handles.iter().fold(0u64, |a, w| a.wrapping_add(f(&w.counters)))
    }

    /// Active connections of snapshot server `i`, over the workers.
    pub fn server_active(&self, i: usize) -> u64 {
        self.sum(|c| c.servers.get(i).map_or(0, |c| c.conns_active.get()))
    }

    /// Active connections of snapshot service `i`, over the workers.
    pub fn service_active(&self, i: usize) -> u64 {
        self.sum(|c| c.services.get(i).map_or(0, |c| c.conns_active.get()))
    }

    /// A virtual server's or server's counters (`sel` picks them out of a
    /// worker's), summed over workers.
    pub fn traffic(&self, sel: impl Fn(&WorkerCounters) -> Option<&ServiceCounters>) -> Traffic {
        let mut t = Traffic::default();
        for w in &self.handles {
            if let Some(c) = sel(&w.counters) {
                t.pkts = t.pkts.wrapping_add(c.in_pkts.get()).wrapping_add(c.out_pkts.get());
                t.bytes = t.bytes.wrapping_add(c.in_bytes.get()).wrapping_add(c.out_bytes.get());
                t.conns_new = t.conns_new.wrapping_add(c.conns_new.get());
                t.entries = t.entries.wrapping_add(c.conns_active.get());
                t.established = t.established.wrapping_add(c.conns_established.get());
            }
        }
        t
    }

    /// Each worker's connection-table dump cell, by worker index.
    pub fn dumps(&self) -> impl Iterator<Item = &DumpClient> {
        self.handles.iter().map(|w| &w.dump)
    }

    /// Each worker's loop times, by worker index.
    pub(super) fn loops(&self) -> impl Iterator<Item = &LoopStats> {
        self.handles.iter().map(|w| &*w.loops)
    }

    /// Publishes `snap` to the workers; its generation (0 before launch).
    pub fn publish(&mut self, snap: Snapshot) -> u64 {
        self.publisher.as_mut().map_or(0, |p| p.publish(Box::new(snap)))
    }

    /// The oldest generation a worker may still read (`u64::MAX` before
    /// launch).
    pub fn min_seen(&self) -> u64 {
        self.publisher.as_ref().map_or(u64::MAX, |p| p.min_seen())
    }

    /// The generation last published (0 before launch).
    pub fn generation(&self) -> u64 {
        self.publisher.as_ref().map_or(0, |p| p.generation())
    }

    /// The snapshot as last published.
    pub fn published(&self) -> Option<&Snapshot> {
        self.publisher.as_ref().map(|p| p.current())
    }

    /// Frees the snapshots no worker reads any more.
    pub fn reclaim(&mut self) {
        if let Some(p) = self.publisher.as_mut() {
            p.reclaim();
        }
    }

    /// Stops the workers and waits for them.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (i, w) in self.handles.iter_mut().enumerate() {
            if let Some(h) = w.lcore.take() {
                let rc = h.join();
                if rc != 0 {
                    log::warn!("worker {i} returned {rc}");
                }
            }
        }
    }

    pub(super) fn drop_publisher(&mut self) {
        self.publisher = None;
    }
}

impl Runtime {
    /// Launches a worker on each worker lcore, reading `snapshot` (then
    /// what `Workers::publish` gives them), the next hops' MACs from
    /// `neighbors` and the servers' loads from `loads`.
    pub fn launch_workers(&mut self, cfg: &Config, snapshot: Snapshot, neighbors: &Arc<Neighbors>, loads: &Arc<Loads>, sync: Option<SyncSetup>) -> Result<(), String> {
        // One key per boot for the workers' table and persistence hashes
        // (`furiwake_dataplane::hash`), with or without `[sync]`; the
        // ownership hash's is the pair's with `[sync]` (docs/architecture.md,
        // "Hashing").
        let hash_key = boot_hash_key()?;
        // Drawn per boot before the ports started (`Runtime::start`), with
        // or without a peer: a pair agrees on the older of its two
        // (`modules::sync::Ownership`).
        let owner_key = self.workers.owner_key;
        // The SYN cookies' own key, per boot and never shared: the peer
        // need not validate this box's cookies.
        let cookie_key = boot_cookie_key()?;
        let mut sync_ends = Vec::new();
        let lcores = cfg.platform.worker_lcore_ids();
        let n = lcores.len();
        let need_inject = self.links.iter().any(|l| !l.has_control_txq());
        let mut inject_consumer = None;
        if need_inject {
            let (p, c) = spsc::<Mbuf>("fw-inject", INJECT_RING).map_err(|e| format!("inject ring: {e}"))?;
            self.control.set_inject(p);
            inject_consumer = Some(c);
        }
        // handoff[a][b]: worker a -> worker b.
        let mut handoff_tx: Vec<Vec<Option<Producer<Mbuf>>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut handoff_rx: Vec<Vec<Consumer<Mbuf>>> = (0..n).map(|_| Vec::new()).collect();
        for (a, row) in handoff_tx.iter_mut().enumerate() {
            for (b, slot) in row.iter_mut().enumerate() {
                if a != b {
                    let (p, c) = spsc::<Mbuf>(&format!("fw-ho-{a}-{b}"), HANDOFF_RING).map_err(|e| format!("handoff ring: {e}"))?;
                    *slot = Some(p);
                    handoff_rx[b].push(c);
                }
            }
        }
        let (publisher, mut readers) = rcu(Box::new(snapshot), n);
        self.workers.publisher = Some(publisher);
        let timeouts = cfg.timeouts.ticks();
        let idle_sleep = Duration::from_micros(u64::from(*cfg.platform.idle_sleep_us.get_ref()));
        let clock = Clock::start();
        for (w, (&lcore_id, (ho_tx, ho_rx))) in lcores.iter().zip(handoff_tx.into_iter().zip(handoff_rx)).enumerate().rev() {
            let mut rx = Vec::new();
            let mut tx = Vec::new();
            for l in &mut self.links {
                for q in 0..l.rx_queues() {
                    if q as usize % n == w {
                        rx.push(l.take_rx_queue(q).map_err(|e| format!("worker {w}: {e}"))?);
                    }
                }
                // VLAN links of one port: its queues once, with its owner.
                if l.owner().is_none() {
                    tx.push(l.take_tx_queue(w as u16).map_err(|e| format!("worker {w}: {e}"))?);
                }
            }
            // The host link: its queue pair `w`.
            if let Some(h) = self.host.as_mut() {
                for q in (0..h.queues()).filter(|q| *q as usize % n == w) {
                    rx.push(h.take_rx_queue(q).map_err(|e| format!("worker {w}: host link: {e}"))?);
                }
                tx.push(h.take_tx_queue(w as u16).map_err(|e| format!("worker {w}: host link: {e}"))?);
            }
            let (punt_p, punt_c) = spsc::<Mbuf>(&format!("fw-punt-{w}"), PUNT_RING).map_err(|e| format!("punt ring: {e}"))?;
            let (prot_p, prot_c) = spsc::<Mbuf>(&format!("fw-puntp-{w}"), PUNT_PROTECTED_RING).map_err(|e| format!("protected punt ring: {e}"))?;
            self.control.add_punt(punt_c, prot_c);
            self.control.set_tsc_hz(furiwake_platform::tsc_hz());
            // Worker 0 keeps the 802.3ad bonds' LACP running.
            let lacp: Vec<u16> = if w == 0 { self.links.iter().filter(|l| l.is_lacp()).map(|l| l.port_id()).collect() } else { Vec::new() };
            let io = MbufIo::new(rx, tx, punt_p, if w == 0 { inject_consumer.take() } else { None }).with_protected_punt(prot_p).with_handoff(ho_tx, ho_rx).with_poke(lacp);
            let reader = readers.pop().ok_or("rcu readers")?;
            let sync_refresh = sync.map_or(0, |s| s.refresh_ticks);
            let flows = *cfg.platform.flows_per_worker.get_ref();
            let flows_v6 = cfg.platform.flows_per_worker_v6.as_ref().map_or(0, |f| *f.get_ref());
            let config = WorkerConfig { id: w as u16, workers: n as u16, flows, flows_v6, timeouts, hash_key, cookie_key, owner_key, sync_refresh, embryonic_max: cfg.defence.embryonic_max(flows),
                unreplied_per_service: cfg.defence.unreplied_per_service(flows),
                unreplied_per_source: cfg.defence.unreplied_per_source(flows),
                icmp_rate: *cfg.defence.icmp_rate.get_ref(),
                icmp_burst: *cfg.defence.icmp_burst.get_ref(),
                punt_rates: cfg.defence.punt.rates(),
                syn_proxy_threshold: cfg.defence.syn_proxy_threshold(flows),
                // The SYN rate that would fill the threshold within the SYN
                // timeout keeps `auto` on.
                syn_proxy_rate: (cfg.defence.syn_proxy_threshold(flows) / (*cfg.timeouts.tcp_syn.get_ref()).max(1)).max(1),
            };
            let (dump, dump_server) = dump::channel();
            let loops = Arc::new(LoopStats::default());
            let node = furiwake_platform::memory::lcore_node(lcore_id);
            let mut worker = region::on_node(node, || Worker::new(config, reader, Arc::clone(neighbors))).with_loads(Arc::clone(loads)).with_dump(dump_server);
            if sync.is_some() {
                let (out_p, out_c) = events::channel(SYNC_RING);
                let (in_p, in_c) = events::channel(SYNC_RING);
                worker = worker.with_sync(out_p, in_c);
                let control = worker.sync_control().ok_or("worker sync control")?;
                sync_ends.push(SyncEnds { events: out_c, installs: in_p, control });
            }
            let counters = worker.counters();
            let stop = Arc::clone(&self.workers.stop);
            let loop_stats = Arc::clone(&loops);
            let handle = lcore::launch(lcore_id, move || worker_loop(worker, io, &stop, idle_sleep, clock, &loop_stats))
                .map_err(|e| format!("worker {w} on lcore {lcore_id}: {e}"))?;
            self.workers.handles.push(WorkerHandle { lcore: Some(handle), counters, dump, loops });
        }
        self.workers.handles.reverse();
        sync_ends.reverse();
        self.workers.sync = sync_ends;
        self.control.reverse_punts();
        let (huge, heap) = region::placed();
        let mib = |b: u64| b.div_ceil(1 << 20);
        say(&format!("tables: {} MiB on hugepages, {} MiB on the heap", mib(huge), mib(heap)));
        say(&format!("side tables: {} MiB reserved on the heap for SYN-proxied and PROXY-header connections, committed as they use it", mib(region::demand_reserved())));
        if heap > 0 && !self.eal.no_huge() {
            log::warn!("tables: {} MiB on the heap: the hugepages had no room (reserve more, or lower flows_per_worker)", mib(heap));
        }
        Ok(())
    }
}

/// 64 random bits from the kernel, for the workers' hash key.
pub(super) fn boot_hash_key() -> Result<u64, String> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(u64::from_ne_bytes(b))
}

/// The SYN cookies' SipHash key (`WorkerConfig::cookie_key`): 128 bits
/// from /dev/urandom, independent of the hash key and of the sync key.
fn boot_cookie_key() -> Result<[u64; 2], String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).map_err(|e| format!("/dev/urandom: {e}"))?;
    let k = u128::from_le_bytes(b);
    Ok([k as u64, (k >> 64) as u64])
}
