//! The data interfaces: one `Link` per `[[interface]]`, its port
//! configured with a TX queue per worker (and one for the control lcore
//! when the device has it to spare), started, and watched once a second.

use super::Runtime;
use crate::config::{Config, Interface, Ipv4Cidr};
use crate::out::{event, say};
use furiwake_dataplane::wire::EthernetAddress;
use furiwake_platform::{Mempool, Port, PortConfig, PortStats, RxQueue, TxQueue};

/// One data interface: its config, its port and what was set up on it.
pub struct Link {
    cfg: Interface,
    port: Port,
    mac: EthernetAddress,
    rx_queues: u16,
    /// The control lcore's own TX queue, when the device has one to spare;
    /// otherwise control frames go through worker 0's inject ring.
    control_txq: Option<TxQueue>,
    last_link_up: bool,
}

impl Link {
    /// The interface's name (`[[interface]] name`).
    pub fn name(&self) -> &String {
        self.cfg.name.get_ref()
    }

    /// The self IP and its subnet.
    pub fn address(&self) -> Ipv4Cidr {
        self.cfg.address
    }

    /// The link's IP MTU (`mtu`, default 1500).
    pub fn mtu(&self) -> u16 {
        self.cfg.mtu.as_ref().map_or(crate::config::DEFAULT_MTU, |m| *m.get_ref())
    }

    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// The link state as last watched (once a second, `watch_links`).
    pub fn is_up(&self) -> bool {
        self.last_link_up
    }

    pub fn port_id(&self) -> u16 {
        self.port.id()
    }

    pub fn stats(&self) -> furiwake_platform::Result<PortStats> {
        self.port.stats()
    }

    pub fn state(&self) -> furiwake_platform::Result<furiwake_platform::Link> {
        self.port.link()
    }

    pub(super) fn rx_queues(&self) -> u16 {
        self.rx_queues
    }

    /// The control lcore's TX queue, when it has its own.
    pub(super) fn control_txq(&mut self) -> Option<&mut TxQueue> {
        self.control_txq.as_mut()
    }

    pub(super) fn has_control_txq(&self) -> bool {
        self.control_txq.is_some()
    }

    /// The endpoints of RX queue `q` and TX queue `q`, for a worker (each
    /// is handed out once).
    pub(super) fn take_rx_queue(&mut self, q: u16) -> furiwake_platform::Result<RxQueue> {
        self.port.take_rx_queue(q)
    }

    pub(super) fn take_tx_queue(&mut self, q: u16) -> furiwake_platform::Result<TxQueue> {
        self.port.take_tx_queue(q)
    }

    pub(super) fn close(&mut self) {
        if let Err(e) = self.port.close() {
            log::warn!("port {}: {e}", self.cfg.name.get_ref());
        }
    }
}

pub(super) fn bring_up(iface: &Interface, cfg: &Config, n_workers: u16, pool: &Mempool) -> Result<Link, String> {
    let name = iface.name.get_ref();
    let mut port = Port::by_name(iface.dev_name()).map_err(|e| format!("interface {name}: device {:?}: {e}", iface.device.get_ref()))?;
    let info = port.info().map_err(|e| format!("interface {name}: {e}"))?;
    // af_packet fans the kernel's packets out over every queue pair it
    // opened (`qpairs=`), so all of them must be polled.
    let rx_queues = if info.driver == "net_af_packet" { info.max_rx_queues } else { n_workers.min(info.max_rx_queues) };
    if info.max_tx_queues < n_workers {
        return Err(format!(
            "interface {name}: device {} has {} TX queue(s) but {} workers need one each{}",
            info.driver,
            info.max_tx_queues,
            n_workers,
            if info.driver == "net_af_packet" { " (add qpairs=N to the device)" } else { "" }
        ));
    }
    let tx_queues = (n_workers + 1).min(info.max_tx_queues);
    let control_txq = (tx_queues > n_workers).then_some(n_workers);
    let pc = PortConfig {
        rx_queues,
        tx_queues,
        rx_desc: *cfg.platform.rx_descriptors.get_ref(),
        tx_desc: *cfg.platform.tx_descriptors.get_ref(),
        promiscuous: true,
    };
    port.configure(&pc, pool).map_err(|e| format!("interface {name}: {e}"))?;
    port.start().map_err(|e| format!("interface {name}: {e}"))?;
    let mac = EthernetAddress(port.mac().map_err(|e| format!("interface {name}: {e}"))?);
    let link = port.link().map_err(|e| format!("interface {name}: {e}"))?;
    say(&format!(
        "port {name}: {} (driver {}, port {}) mac {mac} address {} rxq {rx_queues} txq {tx_queues} control-tx {} link {link}",
        iface.dev_name(),
        info.driver,
        port.id(),
        iface.address,
        control_txq.map_or("via worker 0".to_string(), |q| format!("queue {q}")),
    ));
    let control_txq = match control_txq {
        Some(q) => Some(port.take_tx_queue(q).map_err(|e| format!("interface {}: {e}", iface.name.get_ref()))?),
        None => None,
    };
    Ok(Link { cfg: iface.clone(), port, mac, rx_queues, control_txq, last_link_up: link.up })
}

impl Runtime {
    /// Reports links going up or down (once a second).
    pub fn watch_links(&mut self) {
        for l in &mut self.links {
            if let Ok(mut state) = l.port.link() {
                // net_af_packet and net_af_xdp report the link up whatever
                // the kernel interface under them does: ask the kernel.
                if kernel_iface(&l.cfg).and_then(kernel_link_up) == Some(false) {
                    state.up = false;
                }
                if state.up != l.last_link_up {
                    l.last_link_up = state.up;
                    event(&format!("port {}: link {state}", l.cfg.name.get_ref()));
                }
            }
        }
    }
}

/// The kernel interface under an af_packet or af_xdp vdev (`iface=NAME`).
fn kernel_iface(i: &Interface) -> Option<String> {
    let d = i.device.get_ref();
    if !(d.starts_with("net_af_packet") || d.starts_with("net_af_xdp")) {
        return None;
    }
    d.split(',').find_map(|kv| kv.strip_prefix("iface=")).map(str::to_string)
}

/// The kernel's operational state of `name` (`/sys/class/net/NAME/operstate`):
/// false when down or its lower layer (a veth's peer, a cable) is; None
/// when unknown.
fn kernel_link_up(name: String) -> Option<bool> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/operstate")).ok()?;
    match s.trim() {
        "up" => Some(true),
        "down" | "lowerlayerdown" | "notpresent" => Some(false),
        _ => None,
    }
}
