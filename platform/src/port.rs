//! Ethernet devices (ethdev ports).

use crate::error::{check, Error, Result};
use crate::mbuf::Mbuf;
use crate::mempool::Mempool;
use crate::ring::Ring;
use dpdk_sys as sys;
use furiwake_dataplane::{Burst, BURST_SIZE};
use std::ffi::{CStr, CString};
use std::fmt;
use std::sync::Arc;

/// What the PMD says it can do.
#[derive(Debug, Clone)]
pub struct DevInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// RSS hash types the device offers (`RTE_ETH_RSS_*`); 0 for none.
    pub rss_offloads: u64,
    /// Its RSS indirection table's entries and key's bytes (0: none).
    pub reta_size: u16,
    pub hash_key_size: u8,
    pub if_index: u32,
}

/// Queue and ring sizes for `Port::configure`.
#[derive(Debug, Clone, Copy)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        Self { rx_queues: 1, tx_queues: 1, rx_desc: 1024, tx_desc: 1024, promiscuous: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let duplex = if self.full_duplex { "full-duplex" } else { "half-duplex" };
        if !self.up {
            write!(f, "down")
        } else if self.speed_mbps == 0 || self.speed_mbps == u32::MAX {
            // RTE_ETH_SPEED_NUM_NONE / _UNKNOWN (virtio, af_packet on some kernels)
            write!(f, "up speed unknown {duplex}")
        } else {
            write!(f, "up {} Mbps {duplex}", self.speed_mbps)
        }
    }
}

/// Basic counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Dropped by the NIC for lack of RX descriptors.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// An ethdev port. Its queues are used through owned endpoints, `RxQueue`
/// and `TxQueue`, each handed out once (`take_rx_queue`,
/// `take_tx_queue`) after `configure` and moved to the lcore that polls it:
/// a queue is never polled by two threads (DPDK's rule), by construction.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    started: bool,
    closed: bool,
    /// Per queue: handed out already. Sized by `configure`.
    rx_taken: Vec<bool>,
    tx_taken: Vec<bool>,
    /// Rings backing a ring port; they must outlive it.
    rings: Vec<Arc<Ring<Mbuf>>>,
}

/// One RX queue of one port, owned by the lcore that polls it. Not `Clone`:
/// `Port::take_rx_queue` makes one per queue, so no two threads poll it.
#[derive(Debug)]
pub struct RxQueue {
    port: u16,
    queue: u16,
}

/// One TX queue of one port, owned by the lcore that sends on it (see
/// `RxQueue`).
#[derive(Debug)]
pub struct TxQueue {
    port: u16,
    queue: u16,
}

fn take(taken: &mut [bool], port: &str, kind: &str, q: u16) -> Result<()> {
    match taken.get_mut(q as usize) {
        Some(t) if !*t => {
            *t = true;
            Ok(())
        }
        Some(_) => Err(Error::Usage(format!("port {port}: {kind} queue {q} is already taken"))),
        None => Err(Error::Usage(format!("port {port}: no {kind} queue {q} (configured: {})", taken.len()))),
    }
}

impl Port {
    /// The port the EAL probed under `name` (a vdev name such as
    /// `net_af_packet0`, or a PCI address such as `0000:03:00.0`).
    pub fn by_name(name: &str) -> Result<Port> {
        let cname = CString::new(name).map_err(|_| Error::Usage(format!("port name {name:?} holds a NUL byte")))?;
        let mut id = 0u16;
        // SAFETY: valid C string and out pointer.
        check(unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) }, "rte_eth_dev_get_port_by_name")?;
        Ok(Port { id, name: name.to_string(), started: false, closed: false, rx_taken: Vec::new(), tx_taken: Vec::new(), rings: Vec::new() })
    }

    /// Creates the virtual device `name` with `args` after EAL init
    /// (`rte_vdev_init`): a PMD that opens kernel objects (net_tap's TAP)
    /// opens them in the calling thread's network namespace, so the
    /// caller picks where they appear. Probed but not configured: take it
    /// with `by_name`.
    pub fn create_vdev(name: &str, args: &str) -> Result<()> {
        let cname = CString::new(name).map_err(|_| Error::Usage(format!("device name {name:?} holds a NUL byte")))?;
        let cargs = CString::new(args).map_err(|_| Error::Usage(format!("device arguments {args:?} hold a NUL byte")))?;
        // SAFETY: two valid C strings; the EAL copies what it keeps.
        check(unsafe { sys::rte_vdev_init(cname.as_ptr(), cargs.as_ptr()) }, "rte_vdev_init")?;
        Ok(())
    }

    /// The id of the port DPDK named `name`, without taking it.
    pub fn id_of(name: &str) -> Result<u16> {
        let cname = CString::new(name).map_err(|_| Error::Usage(format!("port name {name:?} holds a NUL byte")))?;
        let mut id = 0u16;
        // SAFETY: valid C string and out pointer.
        check(unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) }, "rte_eth_dev_get_port_by_name")?;
        Ok(id)
    }

    /// The link state of port `id` (a bond's member), without waiting.
    pub fn link_of(id: u16) -> Result<Link> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: valid out pointer; DPDK checks the id.
        check(unsafe { sys::rte_eth_link_get_nowait(id, &mut l) }, "rte_eth_link_get_nowait")?;
        Ok(Link { up: l.link_status() == sys::RTE_ETH_LINK_UP as u16, speed_mbps: l.link_speed, full_duplex: l.link_duplex() == 1 })
    }

    /// A `net_ring` port receiving from `rx` and sending into `tx`: two
    /// ports built over the same rings crosswise are a wire.
    pub fn from_rings(name: &str, rx: &[Arc<Ring<Mbuf>>], tx: &[Arc<Ring<Mbuf>>]) -> Result<Port> {
        let cname = CString::new(name).map_err(|_| Error::Usage(format!("port name {name:?} holds a NUL byte")))?;
        let mut rxp: Vec<*mut sys::rte_ring> = rx.iter().map(|r| r.as_ptr()).collect();
        let mut txp: Vec<*mut sys::rte_ring> = tx.iter().map(|r| r.as_ptr()).collect();
        // SAFETY: the ring arrays are valid for the call; the rings are kept
        // alive in `rings` for the life of the port.
        let ret = unsafe {
            sys::rte_eth_from_rings(cname.as_ptr(), rxp.as_mut_ptr(), rxp.len() as u32, txp.as_mut_ptr(), txp.len() as u32, 0)
        };
        if ret < 0 {
            return Err(Error::last("rte_eth_from_rings"));
        }
        let rings = rx.iter().chain(tx).cloned().collect();
        Ok(Port { id: ret as u16, name: name.to_string(), started: false, closed: false, rx_taken: Vec::new(), tx_taken: Vec::new(), rings })
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn info(&self) -> Result<DevInfo> {
        Port::info_of(self.id)
    }

    /// The device info of port `id` (a bond's member), without taking it.
    pub fn info_of(id: u16) -> Result<DevInfo> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: valid out pointer; DPDK checks the id.
        check(unsafe { sys::rte_eth_dev_info_get(id, &mut info) }, "rte_eth_dev_info_get")?;
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: non-null driver_name is a static C string of the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        Ok(DevInfo {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            reta_size: info.reta_size,
            hash_key_size: info.hash_key_size,
            if_index: info.if_index,
        })
    }

    /// Configures queues; asks for RSS over IP/TCP/UDP when more than one RX
    /// queue is wanted and the PMD offers it. Queue counts above what the
    /// device has are refused.
    pub fn configure(&mut self, cfg: &PortConfig, pool: &Mempool) -> Result<()> {
        let info = self.info()?;
        if cfg.rx_queues == 0 || cfg.rx_queues > info.max_rx_queues || cfg.tx_queues == 0 || cfg.tx_queues > info.max_tx_queues {
            return Err(Error::Usage(format!(
                "port {}: {} rx / {} tx queues asked, device {} has at most {} / {}",
                self.name, cfg.rx_queues, cfg.tx_queues, info.driver, info.max_rx_queues, info.max_tx_queues
            )));
        }
        let mut conf = sys::rte_eth_conf::default();
        let wanted = (sys::RTE_ETH_RSS_IP | sys::RTE_ETH_RSS_TCP | sys::RTE_ETH_RSS_UDP) as u64;
        let rss = wanted & info.rss_offloads;
        if cfg.rx_queues > 1 && rss != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            // SAFETY: writing a plain-data field of a bindgen union/struct.
            conf.rx_adv_conf.rss_conf.rss_hf = rss;
        }
        // SAFETY: conf is fully initialised; the port is stopped.
        check(unsafe { sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf) }, "rte_eth_dev_configure")?;
        let (mut nb_rx, mut nb_tx) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid out pointers.
        check(unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut nb_rx, &mut nb_tx) }, "rte_eth_dev_adjust_nb_rx_tx_desc")?;
        // SAFETY: plain getter.
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.id) }.max(0) as u32;
        for q in 0..cfg.rx_queues {
            // SAFETY: NULL rx_conf means the PMD default; pool outlives the port's use
            // (the caller stops the port before dropping the pool).
            let ret = unsafe { sys::rte_eth_rx_queue_setup(self.id, q, nb_rx, socket, std::ptr::null(), pool.as_ptr()) };
            check(ret, "rte_eth_rx_queue_setup")?;
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: NULL tx_conf means the PMD default.
            check(unsafe { sys::rte_eth_tx_queue_setup(self.id, q, nb_tx, socket, std::ptr::null()) }, "rte_eth_tx_queue_setup")?;
        }
        self.rx_taken = vec![false; cfg.rx_queues as usize];
        self.tx_taken = vec![false; cfg.tx_queues as usize];
        if cfg.promiscuous {
            // SAFETY: plain call on a configured port. Not every PMD supports it.
            let ret = unsafe { sys::rte_eth_promiscuous_enable(self.id) };
            if ret < 0 && ret != -95 {
                check(ret, "rte_eth_promiscuous_enable")?;
            }
        }
        Ok(())
    }

    pub fn start(&mut self) -> Result<()> {
        // SAFETY: plain call on a configured port.
        check(unsafe { sys::rte_eth_dev_start(self.id) }, "rte_eth_dev_start")?;
        self.started = true;
        Ok(())
    }

    /// Stops the port. No lcore may be polling it.
    pub fn stop(&mut self) -> Result<()> {
        if self.started {
            // SAFETY: plain call; no queue is in use (caller's contract).
            check(unsafe { sys::rte_eth_dev_stop(self.id) }, "rte_eth_dev_stop")?;
            self.started = false;
        }
        Ok(())
    }

    /// Stops and releases the port; its queues' mbufs return to the pool.
    pub fn close(&mut self) -> Result<()> {
        self.stop()?;
        if !self.closed {
            // SAFETY: stopped port, closed once.
            check(unsafe { sys::rte_eth_dev_close(self.id) }, "rte_eth_dev_close")?;
            self.closed = true;
        }
        Ok(())
    }

    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: valid out pointer.
        check(unsafe { sys::rte_eth_macaddr_get(self.id, &mut a) }, "rte_eth_macaddr_get")?;
        Ok(a.addr_bytes)
    }

    /// A bonded port (`net_bonding`): its member ports, all and active
    /// (by the bonding PMD's own view), and the primary (the member an
    /// active-backup bond sends and receives on; `u16::MAX` for none).
    pub fn bond_members(&self) -> Result<BondMembers> {
        let mut all = [0u16; 8];
        let mut active = [0u16; 8];
        // SAFETY: valid out arrays of the length given.
        let n = check(unsafe { sys::rte_eth_bond_slaves_get(self.id, all.as_mut_ptr(), all.len() as u16) }, "rte_eth_bond_slaves_get")?;
        // SAFETY: as above.
        let a = check(unsafe { sys::rte_eth_bond_active_slaves_get(self.id, active.as_mut_ptr(), active.len() as u16) }, "rte_eth_bond_active_slaves_get")?;
        // SAFETY: no pointer. -1 when the bond has no member.
        let primary = unsafe { sys::rte_eth_bond_primary_get(self.id) };
        Ok(BondMembers {
            all: all.get(..n as usize).unwrap_or_default().to_vec(),
            active: active.get(..a as usize).unwrap_or_default().to_vec(),
            primary: u16::try_from(primary).unwrap_or(u16::MAX),
        })
    }

    /// An 802.3ad bond member's LACP state bytes, (actor, partner) (IEEE
    /// 802.1AX 6.4.2.3: bit 3 synchronization, 4 collecting, 5
    /// distributing).
    pub fn lacp_state(&self, member: u16) -> Result<(u8, u8)> {
        let (mut actor, mut partner) = (0u8, 0u8);
        // SAFETY: valid out pointers; DPDK checks both ids.
        check(unsafe { sys::fw_bond_lacp_state(self.id, member, &mut actor, &mut partner) }, "rte_eth_bond_8023ad_slave_info")?;
        Ok((actor, partner))
    }

    /// Sends an 802.3ad bond's periodic LACPDUs every `period_ms` whatever
    /// rate the partner asks for (IEEE 802.1AX 6.4.4: 30 s slow, 1 s fast;
    /// DPDK's bonding PMD never asks its partner for the fast rate, so
    /// without this a lost LACPDU delays agreement by 30 s). Call before
    /// `start`.
    pub fn set_lacp_period(&self, period_ms: u32) -> Result<()> {
        // SAFETY: no pointer; DPDK checks the id and that it is a bond.
        check(unsafe { sys::fw_bond_lacp_period(self.id, period_ms) }, "rte_eth_bond_8023ad_setup").map(|_| ())
    }

    /// Takes `member` out of bond `bond` (its link went down: an 802.3ad
    /// bond stops distributing to it at once, `rte_eth_bond_slave_remove`).
    pub fn bond_remove_of(bond: u16, member: u16) -> Result<()> {
        // SAFETY: no pointer; DPDK checks both ids.
        check(unsafe { sys::rte_eth_bond_slave_remove(bond, member) }, "rte_eth_bond_slave_remove").map(|_| ())
    }

    /// Puts `member` back into bond `bond` (configured and started as the
    /// bond is; LACP negotiates it again, `rte_eth_bond_slave_add`).
    pub fn bond_add_of(bond: u16, member: u16) -> Result<()> {
        // SAFETY: no pointer; DPDK checks both ids.
        check(unsafe { sys::rte_eth_bond_slave_add(bond, member) }, "rte_eth_bond_slave_add").map(|_| ())
    }

    /// Makes `member` bond `bond`'s primary: an active-backup bond moves
    /// its traffic there at once (`rte_eth_bond_primary_set`).
    pub fn bond_set_primary_of(bond: u16, member: u16) -> Result<()> {
        // SAFETY: no pointer; DPDK checks both ids.
        check(unsafe { sys::rte_eth_bond_primary_set(bond, member) }, "rte_eth_bond_primary_set").map(|_| ())
    }

    /// The RSS hash types the started port spreads its RX queues by
    /// (`RTE_ETH_RSS_*`, as the device reports them); 0: no RSS.
    pub fn rss_hash(&self) -> u64 {
        let mut conf = sys::rte_eth_rss_conf::default();
        // SAFETY: a NULL key with key_len 0 asks for the hash types only.
        let ret = unsafe { sys::rte_eth_dev_rss_hash_conf_get(self.id, &mut conf) };
        if ret == 0 { conf.rss_hf } else { 0 }
    }

    /// Programs the started port's RSS: `key` (zero-padded to the device's
    /// key length) and an indirection table repeating `reta` over the
    /// device's. `Ok(false)` when the port spreads by no RSS (one queue, a
    /// PMD without it, or a table smaller than `reta` or not a multiple of
    /// it: the queue choice would differ from `reta`'s); the port keeps its
    /// own then.
    pub fn program_rss(&self, key: &[u8], reta: &[u16]) -> Result<bool> {
        let info = self.info()?;
        let hf = self.rss_hash();
        let size = usize::from(info.reta_size);
        if hf == 0 || reta.is_empty() || size < reta.len() || size % reta.len() != 0 || usize::from(info.hash_key_size) < key.len().min(40) {
            return Ok(false);
        }
        let mut k = vec![0u8; usize::from(info.hash_key_size)];
        for (d, s) in k.iter_mut().zip(key) {
            *d = *s;
        }
        let mut conf = sys::rte_eth_rss_conf { rss_key: k.as_mut_ptr(), rss_key_len: info.hash_key_size, rss_hf: hf };
        // SAFETY: `conf` points at `k`, alive for the call; DPDK copies it.
        check(unsafe { sys::rte_eth_dev_rss_hash_update(self.id, &mut conf) }, "rte_eth_dev_rss_hash_update")?;
        let group = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
        let mut entries: Vec<sys::rte_eth_rss_reta_entry64> = (0..size.div_ceil(group)).map(|_| sys::rte_eth_rss_reta_entry64 { mask: u64::MAX, ..Default::default() }).collect();
        for (i, e) in entries.iter_mut().enumerate() {
            for (j, slot) in e.reta.iter_mut().enumerate() {
                *slot = reta.get((i * group + j) % reta.len()).copied().unwrap_or(0);
            }
        }
        // SAFETY: `entries` holds `size` entries (64 a group), alive for the call.
        check(unsafe { sys::rte_eth_dev_rss_reta_update(self.id, entries.as_mut_ptr(), info.reta_size) }, "rte_eth_dev_rss_reta_update")?;
        Ok(true)
    }

    /// The port's RSS key and indirection table as the device reports them
    /// (tests: what `program_rss` set).
    pub fn rss_state(&self) -> Result<(Vec<u8>, Vec<u16>)> {
        let info = self.info()?;
        let mut k = vec![0u8; usize::from(info.hash_key_size)];
        let mut conf = sys::rte_eth_rss_conf { rss_key: k.as_mut_ptr(), rss_key_len: info.hash_key_size, ..Default::default() };
        // SAFETY: `conf` points at `k`, of the length given.
        check(unsafe { sys::rte_eth_dev_rss_hash_conf_get(self.id, &mut conf) }, "rte_eth_dev_rss_hash_conf_get")?;
        let group = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
        let size = usize::from(info.reta_size);
        let mut entries: Vec<sys::rte_eth_rss_reta_entry64> = (0..size.div_ceil(group)).map(|_| sys::rte_eth_rss_reta_entry64 { mask: u64::MAX, ..Default::default() }).collect();
        // SAFETY: as in `program_rss`.
        check(unsafe { sys::rte_eth_dev_rss_reta_query(self.id, entries.as_mut_ptr(), info.reta_size) }, "rte_eth_dev_rss_reta_query")?;
        let reta = entries.iter().flat_map(|e| e.reta.iter().copied()).take(size).collect();
        Ok((k, reta))
    }

    /// Link state without waiting for autonegotiation.
    pub fn link(&self) -> Result<Link> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: valid out pointer.
        check(unsafe { sys::rte_eth_link_get_nowait(self.id, &mut l) }, "rte_eth_link_get_nowait")?;
        Ok(Link {
            up: l.link_status() == sys::RTE_ETH_LINK_UP as u16,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() == 1,
        })
    }

    pub fn stats(&self) -> Result<PortStats> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid out pointer.
        check(unsafe { sys::rte_eth_stats_get(self.id, &mut s) }, "rte_eth_stats_get")?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    pub fn reset_stats(&self) -> Result<()> {
        // SAFETY: plain call.
        check(unsafe { sys::rte_eth_stats_reset(self.id) }, "rte_eth_stats_reset")?;
        Ok(())
    }

    /// Extended statistics by name.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>> {
        // SAFETY: NULL/0 asks for the count.
        let n = check(unsafe { sys::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) }, "rte_eth_xstats_get_names")? as usize;
        let mut names = vec![sys::rte_eth_xstat_name::default(); n];
        let mut vals = vec![sys::rte_eth_xstat::default(); n];
        // SAFETY: arrays of n entries.
        let got_n = check(unsafe { sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32) }, "rte_eth_xstats_get_names")? as usize;
        // SAFETY: arrays of n entries.
        let got_v = check(unsafe { sys::rte_eth_xstats_get(self.id, vals.as_mut_ptr(), n as u32) }, "rte_eth_xstats_get")? as usize;
        let mut out = Vec::with_capacity(got_v.min(got_n));
        for v in vals.iter().take(got_v.min(n)) {
            let Some(name) = names.get(v.id as usize) else { continue };
            // SAFETY: DPDK NUL-terminates xstat names within the array.
            let s = unsafe { CStr::from_ptr(name.name.as_ptr()) }.to_string_lossy().into_owned();
            out.push((s, v.value));
        }
        Ok(out)
    }

    /// The endpoint of RX queue `q`, once (after `configure`).
    pub fn take_rx_queue(&mut self, q: u16) -> Result<RxQueue> {
        take(&mut self.rx_taken, &self.name, "rx", q)?;
        Ok(RxQueue { port: self.id, queue: q })
    }

    /// The endpoint of TX queue `q`, once (after `configure`).
    pub fn take_tx_queue(&mut self, q: u16) -> Result<TxQueue> {
        take(&mut self.tx_taken, &self.name, "tx", q)?;
        Ok(TxQueue { port: self.id, queue: q })
    }
}

impl RxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to a burst into an empty `burst`; stamps each mbuf with
    /// the port (not every PMD does: net_ring does not; the pipeline relies
    /// on it).
    #[inline(always)]
    pub fn rx_burst(&mut self, burst: &mut Burst<Mbuf>) -> usize {
        if !burst.is_empty() {
            return 0;
        }
        let slots = burst.slots_mut().as_mut_ptr() as *mut *mut sys::rte_mbuf;
        // SAFETY: `slots` has room for BURST_SIZE pointers and Option<Mbuf>
        // is layout-compatible with *mut rte_mbuf; the PMD fills the first n
        // with mbufs whose ownership passes to us. This endpoint is the
        // queue's only one (`Port::take_rx_queue`) and `&mut self` keeps it
        // on one thread at a time. If the port was stopped or closed, DPDK
        // (since 21.11) points its burst functions at dummies that return 0.
        let n = unsafe { sys::fw_eth_rx_burst(self.port, self.queue, slots, BURST_SIZE as u16) } as usize;
        // SAFETY: the first n slots were just filled.
        unsafe { burst.set_len(n) };
        for m in burst.slots_mut().iter_mut().take(n).flatten() {
            m.set_port(self.port);
        }
        n
    }
}

impl TxQueue {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Offers every packet of `burst` to the queue; those the PMD took leave
    /// the burst, the rest stay (at its front) for the caller to retry or
    /// drop. Returns how many were sent.
    #[inline(always)]
    pub fn tx_burst(&mut self, burst: &mut Burst<Mbuf>) -> usize {
        let len = burst.len();
        if len == 0 {
            return 0;
        }
        let slots = burst.slots_mut().as_mut_ptr() as *mut *mut sys::rte_mbuf;
        // SAFETY: the first `len` slots hold valid mbufs; the PMD takes
        // ownership of the first n it returns. One endpoint per queue, used
        // from one thread at a time (`RxQueue::rx_burst`).
        let n = unsafe { sys::fw_eth_tx_burst(self.port, self.queue, slots, len as u16) } as usize;
        burst.forget_front(n);
        n
    }

    /// `rte_eth_tx_burst` with nothing to send: an 802.3ad bond sends its
    /// LACPDUs from inside its TX burst, which must run at least every 100
    /// ms (DPDK's link bonding guide, "Mode 4").
    pub fn poke(&mut self) {
        // SAFETY: zero packets: the PMD reads no slot; one endpoint per
        // queue, used from one thread at a time.
        unsafe { sys::fw_eth_tx_burst(self.port, self.queue, std::ptr::null_mut(), 0) };
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!("port {}: {e}", self.name);
        }
        // Ring ports: the rings are freed after the port (field order).
        let _ = &self.rings;
    }
}

/// A bond's members (`Port::bond_members`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BondMembers {
    pub all: Vec<u16>,
    pub active: Vec<u16>,
    pub primary: u16,
}
