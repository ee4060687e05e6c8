//! The plant the modules run on, below every one of them: the DPDK EAL,
//! the packet pool, the ports, the worker lcores and their poll loop, the
//! publisher of the snapshot the workers read, and the control lcore's own
//! packet path (punted frames in, control frames out). The control loop
//! that turns the modules over it is `Appliance::run`.
//!
//! - `eal`: the EAL's arguments; packet capture (pdump).
//! - `ports`: one `Link` per data interface: brought up, watched.
//! - `host`, `netns`: the exception path's port (a TAP) and the
//!   appliance's own network namespace its kernel side lives in.
//! - `workers`: launching the workers (rings, RCU readers), their poll
//!   loop, their counters as the control plane reads them, the publisher.
//! - `control`: punted frames in, control frames (ARP, probes, echo
//!   replies) out.
//! - `stats`: counter samples and rates (`show stats`, `show workers`).
//! - `report`: the ports', workers' and pool's lines of the SIGUSR1
//!   report.
//!
//! Shutdown is in two steps around the final report: `stop_workers`, then
//! `release` (rings, publisher, ports, pool, EAL, in that order).

mod control;
mod eal;
mod host;
mod netns;
mod ports;
mod rejoin;
mod report;
pub mod stats;
mod workers;

pub use control::PuntCounters;
pub use eal::eal_args;
pub use host::{HostLink, HOST_IFACE};
pub use netns::Netns;
pub use ports::Link;
pub use workers::{SyncEnds, SyncSetup, Workers};

use crate::config::Config;
use crate::out::say;
use furiwake_dataplane::rss::Steering;
use furiwake_platform::{Eal, Mempool};
use stats::{PortSample, Sample, WorkerSample};
use std::time::Instant;

const MEMPOOL_CACHE: u32 = 256;
const MBUF_DATA_ROOM: u16 = 2048 + 128; // RTE_MBUF_DEFAULT_BUF_SIZE

pub struct Runtime {
    eal: &'static Eal,
    /// By link index (`[[interface]]` order); VLAN links of one port share
    /// it.
    links: Vec<Link>,
    /// The exception path's port, after the links (its link index is
    /// `links.len()`), when a virtual server needs it.
    host: Option<HostLink>,
    workers: Workers,
    /// The worker lcores, by worker index.
    lcores: Vec<u32>,
    control: control::Control,
    /// `dpdk-dumpcap` can attach (pdump initialised).
    capture: bool,
    // Last: freed after every port and ring that holds its mbufs.
    pool: Option<Mempool>,
}

impl Runtime {
    /// Initialises DPDK, the packet pool and every interface; the workers
    /// come later (`launch_workers`), once there is a snapshot for them.
    pub fn start(cfg: &Config) -> Result<Self, String> {
        let args = eal_args(cfg);
        log::info!("EAL arguments: {}", args.join(" "));
        let eal = Eal::init(&args).map_err(|e| format!("DPDK EAL: {e} (arguments: {})", args.join(" ")))?;
        say(&format!("furiwake: {} up, control lcore {}, workers on lcores {:?}", furiwake_platform::version(), eal.main_lcore(), eal.worker_lcores()));
        if !furiwake_platform::punt_stamp_registered() {
            say("furiwake: no mbuf field left for the punt stamp (rte_mbuf_dynfield_register): probe RTTs count the answers' wait for the control loop");
        }
        // The workers' tables on hugepages, beside the mbufs (under
        // --no-huge the EAL's memory is what `-m` gave: the heap serves).
        if !eal.no_huge() {
            furiwake_dataplane::region::set_backing(&furiwake_platform::memory::HUGEPAGES);
        }

        let n_workers = cfg.platform.worker_lcores.get_ref().len() as u16;
        let pool = Mempool::new("furiwake-mbufs", *cfg.platform.mbufs.get_ref(), MEMPOOL_CACHE, MBUF_DATA_ROOM, -1)
            .map_err(|e| format!("packet pool of {} mbufs: {e}", cfg.platform.mbufs))?;

        // The ownership key, per boot (an HA pair agrees on one later,
        // `set_owner_key`): the ports' RSS keys and RETA derive from it
        // (`furiwake_dataplane::rss`), so it is drawn before they start.
        let owner_key = workers::boot_hash_key()?;
        let steer = Steering::new(n_workers, owner_key);
        let mut links: Vec<Link> = Vec::new();
        for (i, iface) in cfg.interfaces.iter().enumerate() {
            // Another VLAN of a port an earlier interface brought up.
            let owner = cfg.interfaces[..i].iter().position(|o| o.dev_name() == iface.dev_name());
            let link = match owner.and_then(|o| links.get(o).map(|l| (o, l))) {
                Some((o, l)) => ports::vlan_on(iface, l, o),
                None => ports::bring_up(iface, cfg, n_workers, &pool, &steer)?,
            };
            links.push(link);
        }
        let host = match cfg.has_l7() {
            true => {
                let mtu = links.iter().map(Link::mtu).min().unwrap_or(crate::config::DEFAULT_MTU);
                Some(host::bring_up(cfg, n_workers, &pool, mtu)?)
            }
            false => None,
        };
        Ok(Runtime {
            eal,
            links,
            host,
            workers: Workers::with_owner_key(owner_key),
            lcores: cfg.platform.worker_lcore_ids(),
            control: control::Control::default(),
            capture: false,
            pool: Some(pool),
        })
    }

    /// The data links, by link index (the order of `[[interface]]`).
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    pub fn workers_mut(&mut self) -> &mut Workers {
        &mut self.workers
    }

    /// The HA pair agreed on another ownership key (the sync module has
    /// set it in every worker's `SyncControl`): the ports' RSS follows it,
    /// so the workers, which take it at their next pass, keep receiving
    /// what they own.
    pub fn set_owner_key(&mut self, key: u64) {
        self.workers.set_owner_key(key);
        let steer = Steering::new(self.lcores.len() as u16, key);
        for l in &mut self.links {
            l.reprogram_rss(&steer);
        }
    }

    /// The lcore of each worker, by worker index.
    pub fn worker_lcores(&self) -> &[u32] {
        &self.lcores
    }

    /// Every counter the rates need, now; `services` and `servers` are how
    /// many snapshot slots there are.
    pub fn sample(&self, now: Instant, services: usize, servers: usize) -> Sample {
        let ports = self
            .links
            .iter()
            .map(|l| {
                l.stats().map_or(PortSample::default(), |st| PortSample {
                    rx_pkts: st.ipackets,
                    rx_bytes: st.ibytes,
                    tx_pkts: st.opackets,
                    tx_bytes: st.obytes,
                })
            })
            .collect();
        let w = &self.workers;
        let services = (0..services).map(|i| w.traffic(|c| c.services.get(i))).collect();
        let servers = (0..servers).map(|i| w.traffic(|c| c.servers.get(i))).collect();
        let workers = w
            .counters()
            .zip(w.loops())
            .map(|(c, l)| WorkerSample {
                rx_pkts: c.rx_packets.get(),
                tx_pkts: c.tx_packets.get(),
                handed_off: c.handed_off.get(),
                busy_tsc: l.busy_tsc.get(),
                total_tsc: l.total_tsc.get(),
            })
            .collect();
        let drops = furiwake_dataplane::DropReason::ALL.iter().map(|r| w.sum(|c| c.drops(*r))).collect();
        Sample { at: now, ports, services, servers, workers, drops }
    }

    /// Mbufs out of the packet pool.
    pub fn mbufs_in_use(&self) -> Option<u32> {
        self.pool.as_ref().map(Mempool::in_use)
    }

    /// Stops the workers and waits for them; then frees what they punted
    /// after the control loop's last turn (the final report counts the
    /// pool: nothing may sit in a punt ring then).
    pub fn stop_workers(&mut self) {
        self.workers.stop();
        let mut burst = furiwake_dataplane::Burst::new();
        for i in 0..self.punt_rings() {
            while self.dequeue_punted(i, &mut burst) > 0 {
                burst.drain().for_each(drop);
            }
        }
    }

    /// Frees everything, in order: rings (they may hold mbufs), the
    /// publisher, ports, the pool; then capture and the EAL.
    pub fn release(&mut self) {
        self.control.clear();
        self.workers.drop_publisher();
        for l in &mut self.links {
            l.close();
        }
        self.links.clear();
        if let Some(h) = self.host.as_mut() {
            h.close();
        }
        self.host = None;
        self.pool = None;
        if self.capture {
            self.eal.disable_capture();
        }
        self.eal.cleanup();
    }
}
