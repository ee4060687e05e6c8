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
    /// A bond's members, in configuration order (empty for a plain port).
    members: Vec<Member>,
}

/// One member of a bonded link.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its device spec (`net_af_packet1,iface=lb-out2`).
    pub spec: String,
    pub port_id: u16,
    /// Its link as last watched.
    pub up: bool,
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

    /// An 802.3ad bond.
    pub fn is_lacp(&self) -> bool {
        self.cfg.bond.as_ref().is_some_and(|b| *b.mode.get_ref() == crate::config::BondMode::Lacp)
    }

    /// An 802.3ad bond member's LACP (actor, partner) state bytes.
    pub fn lacp_state(&self, member: u16) -> Option<(u8, u8)> {
        if !self.is_lacp() {
            return None;
        }
        self.port.lacp_state(member).ok()
    }

    /// A bond's members and their links as last watched.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// A bond's mode, members as DPDK sees them and primary.
    pub fn bond(&self) -> Option<(crate::config::BondMode, furiwake_platform::BondMembers)> {
        let mode = *self.cfg.bond.as_ref()?.mode.get_ref();
        self.port.bond_members().ok().map(|m| (mode, m))
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
    let mut info = port.info().map_err(|e| format!("interface {name}: {e}"))?;
    // A bond offers what every member has (the bonding PMD reports more
    // and then fails to configure a member).
    for m in iface.members() {
        let mi = Port::id_of(crate::config::model::dev_name(m)).and_then(Port::info_of).map_err(|e| format!("interface {name}: bond member {m:?}: {e}"))?;
        info.max_rx_queues = info.max_rx_queues.min(mi.max_rx_queues);
        info.max_tx_queues = info.max_tx_queues.min(mi.max_tx_queues);
    }
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
    let mut members = Vec::new();
    for m in iface.members() {
        let port_id = Port::id_of(crate::config::model::dev_name(m)).map_err(|e| format!("interface {name}: bond member {m:?}: {e}"))?;
        members.push(Member { spec: m.to_string(), port_id, up: member_up(m, port_id) });
    }
    let mut l = Link { cfg: iface.clone(), port, mac, rx_queues, control_txq, last_link_up: link.up, members };
    if let Some((mode, m)) = l.bond() {
        say(&format!("port {name}: bond {} of {}; primary {}", mode.name(), l.members.iter().map(|m| m.spec.as_str()).collect::<Vec<_>>().join(", "), l.member_name(m.primary)));
        // Start on a member whose link is up.
        l.fail_over();
    }
    Ok(l)
}

/// A bond member's link: the kernel's view under af_packet/af_xdp, the
/// PMD's otherwise.
fn member_up(spec: &str, port_id: u16) -> bool {
    match kernel_iface_of(spec).and_then(kernel_link_up) {
        Some(up) => up,
        None => Port::link_of(port_id).is_ok_and(|l| l.up),
    }
}

impl Link {
    fn member_name(&self, port_id: u16) -> String {
        self.members.iter().find(|m| m.port_id == port_id).map_or_else(|| format!("port {port_id}"), |m| m.spec.clone())
    }

    /// Watches the members of an active-backup bond: when the primary's
    /// link is down and another member's is up, that one becomes primary
    /// (the bonding PMD sees af_packet members up whatever the kernel
    /// does, so Furiwake watches them, as Linux bonding's miimon). True
    /// when the primary moved.
    fn fail_over(&mut self) -> bool {
        let name = self.cfg.name.get_ref().clone();
        for m in &mut self.members {
            let up = member_up(&m.spec, m.port_id);
            if up != m.up {
                m.up = up;
                event(&format!("port {name}: bond member {} link {}", m.spec, if up { "up" } else { "down" }));
            }
        }
        let Some((mode, b)) = self.bond() else { return false };
        if mode == crate::config::BondMode::Lacp {
            // 802.3ad: a member whose link is down leaves the bond (LACP
            // alone would notice only when its partner's LACPDUs time out,
            // 90 s at the slow rate), and rejoins when it is back.
            let mut changed = false;
            for m in &self.members {
                let (member, inside) = (m.port_id, b.all.contains(&m.port_id));
                let r = match (m.up, inside) {
                    (false, true) => Some(("left", self.port.bond_remove(member))),
                    (true, false) => Some(("rejoined", self.port.bond_add(member))),
                    _ => None,
                };
                match r {
                    Some((what, Ok(()))) => {
                        changed = true;
                        event(&format!("port {name}: bond member {} {what} the aggregation", m.spec));
                    }
                    Some((what, Err(e))) => log::warn!("port {name}: bond member {} not {what}: {e}", m.spec),
                    None => {}
                }
            }
            return changed;
        }
        if self.members.iter().any(|m| m.port_id == b.primary && m.up) {
            return false;
        }
        let Some(next) = self.members.iter().find(|m| m.up && m.port_id != b.primary).map(|m| m.port_id) else { return false };
        match self.port.bond_set_primary(next) {
            Ok(()) => {
                event(&format!("port {name}: bond active member now {} (was {})", self.member_name(next), self.member_name(b.primary)));
                true
            }
            Err(e) => {
                log::warn!("port {name}: bond: cannot make {} primary: {e}", self.member_name(next));
                false
            }
        }
    }
}

impl Runtime {
    /// Watches every bond's members (every 100 ms): an active-backup bond
    /// whose active member lost its link moves to another. Returns the
    /// links whose active member changed (the caller announces their
    /// addresses).
    pub fn watch_bonds(&mut self) -> Vec<usize> {
        let mut moved = Vec::new();
        for (i, l) in self.links.iter_mut().enumerate() {
            if !l.members.is_empty() && l.fail_over() {
                moved.push(i);
            }
        }
        moved
    }

    /// Reports links going up or down (once a second).
    pub fn watch_links(&mut self) {
        for l in &mut self.links {
            if let Ok(mut state) = l.port.link() {
                // net_af_packet and net_af_xdp report the link up whatever
                // the kernel interface under them does: ask the kernel.
                if kernel_iface(&l.cfg).and_then(kernel_link_up) == Some(false) {
                    state.up = false;
                }
                // A bond is up while a member is (as Furiwake watches them).
                if !l.members.is_empty() {
                    state.up = l.members.iter().any(|m| m.up);
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
    kernel_iface_of(i.device.get_ref())
}

fn kernel_iface_of(d: &str) -> Option<String> {
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
