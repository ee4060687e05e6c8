//! The host link: the exception path's port (docs/architecture.md, "The
//! exception path"). A `net_tap` device made after EAL init from inside
//! the appliance's own network namespace (`Netns`), so its kernel side,
//! `fwhost0`, appears there and nowhere else; the workers poll its queues
//! and send to it like any link's (one queue pair per worker: the TAP
//! fans the kernel's packets out over every queue by flow, so every one is
//! polled). Its kernel side is set up by the `host` module.

use super::netns::Netns;
use super::Runtime;
use crate::config::Config;
use crate::out::say;
use furiwake_dataplane::wire::EthernetAddress;
use furiwake_platform::{Mempool, Port, PortConfig, RxQueue, TxQueue};

/// The DPDK device name of the host link's TAP.
const HOST_VDEV: &str = "net_tap_fwhost";
/// The kernel side's interface name, inside the appliance's namespace.
pub const HOST_IFACE: &str = "fwhost0";

pub struct HostLink {
    netns: Netns,
    port: Port,
    port_id: u16,
    mac: EthernetAddress,
    queues: u16,
    mtu: u16,
}

impl HostLink {
    /// The appliance's network namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The DPDK port.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// The kernel side's MAC (a TAP's port and kernel side share it).
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// The MTU the kernel side is given: the smallest of the data links'.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    pub(super) fn queues(&self) -> u16 {
        self.queues
    }

    pub(super) fn take_rx_queue(&mut self, q: u16) -> furiwake_platform::Result<RxQueue> {
        self.port.take_rx_queue(q)
    }

    pub(super) fn take_tx_queue(&mut self, q: u16) -> furiwake_platform::Result<TxQueue> {
        self.port.take_tx_queue(q)
    }

    pub fn stats(&self) -> furiwake_platform::Result<furiwake_platform::PortStats> {
        self.port.stats()
    }

    pub(super) fn close(&mut self) {
        if let Err(e) = self.port.close() {
            log::warn!("host link: {e}");
        }
    }
}

/// Makes the namespace and the TAP in it, and brings the port up with one
/// queue pair per worker.
pub(super) fn bring_up(cfg: &Config, n_workers: u16, pool: &Mempool, mtu: u16) -> Result<HostLink, String> {
    let netns = Netns::create().map_err(|e| format!("host link: the appliance's network namespace: {e}"))?;
    netns
        .run(|| Port::create_vdev(HOST_VDEV, &format!("iface={HOST_IFACE}")))
        .map_err(|e| format!("host link: entering the namespace: {e}"))?
        .map_err(|e| format!("host link: {HOST_VDEV} (net_tap, /dev/net/tun): {e}"))?;
    let mut port = Port::by_name(HOST_VDEV).map_err(|e| format!("host link: {e}"))?;
    let info = port.info().map_err(|e| format!("host link: {e}"))?;
    // net_tap needs as many RX as TX queues.
    let queues = n_workers.min(info.max_rx_queues).min(info.max_tx_queues);
    if queues < n_workers {
        return Err(format!("host link: {} offers {queues} queue pairs, {n_workers} workers need one each", info.driver));
    }
    let pc = PortConfig { rx_queues: queues, tx_queues: queues, rx_desc: *cfg.platform.rx_descriptors.get_ref(), tx_desc: *cfg.platform.tx_descriptors.get_ref(), promiscuous: false };
    // Each queue is a file of /dev/net/tun attached to the TAP by name in
    // the namespace of the thread that opens it: in ours, or a second
    // `fwhost0` would appear where the appliance runs.
    netns
        .run(|| port.configure(&pc, pool).and_then(|()| port.start()))
        .map_err(|e| format!("host link: entering the namespace: {e}"))?
        .map_err(|e| format!("host link: {e}"))?;
    let mac = EthernetAddress(port.mac().map_err(|e| format!("host link: {e}"))?);
    let port_id = port.id();
    say(&format!("host link: {HOST_IFACE} (net_tap, port {port_id}) mac {mac} queues {queues}, in the appliance's network namespace {}", netns.path()));
    Ok(HostLink { netns, port, port_id, mac, queues, mtu })
}

impl Runtime {
    /// The host link, when a virtual server needs the appliance's own
    /// stack.
    pub fn host(&self) -> Option<&HostLink> {
        self.host.as_ref()
    }
}
