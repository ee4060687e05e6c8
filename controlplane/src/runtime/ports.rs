//! The data interfaces: one `Link` per `[[interface]]`, its port
//! configured with a TX queue per worker (and one for the control lcore
//! when the device has it to spare), started, and watched once a second.
//! Interfaces naming one device (802.1Q VLANs of one port) share it: the
//! first owns the port, the others are links on it (`owner`).

use super::Runtime;
use crate::config::{Config, Interface, Ipv4Cidr, RssSide};
use crate::out::{event, say};
use furiwake_dataplane::rss::{Layout, Steering};
use furiwake_dataplane::wire::EthernetAddress;
use furiwake_platform::{Mempool, Port, PortConfig, PortStats, RxQueue, TxQueue};

/// One data interface: its config, its port and what was set up on it.
pub struct Link {
    cfg: Interface,
    /// The port, for the link that brought it up; None for another VLAN
    /// of a port an earlier link owns.
    port: Option<Port>,
    /// That earlier link (its index).
    owner: Option<usize>,
    port_id: u16,
    mac: EthernetAddress,
    rx_queues: u16,
    /// The control lcore's own TX queue, when the device has one to spare;
    /// otherwise control frames go through worker 0's inject ring.
    control_txq: Option<TxQueue>,
    last_link_up: bool,
    /// A bond's members, in configuration order (empty for a plain port).
    members: Vec<Member>,
    /// The PMD's name.
    driver: String,
    /// The side its RSS follows, when Furiwake programmed the port's key
    /// and RETA (`furiwake_dataplane::rss`); None: the port spreads by
    /// nothing Furiwake mirrors (one queue, no RSS, a VLAN link).
    rss: Option<Layout>,
}

/// One member of a bonded link.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its device spec (`net_af_packet1,iface=lb-out2`).
    pub spec: String,
    pub port_id: u16,
    /// Its link as last watched.
    pub up: bool,
    /// 802.3ad: the watch of its agreement (`rejoin`).
    pub rejoin: super::rejoin::Rejoin,
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

    /// The IPv6 self address and its subnet, when the link has IPv6.
    pub fn address6(&self) -> Option<crate::config::Ipv6Cidr> {
        self.cfg.address6
    }

    /// The PMD's name.
    pub fn driver(&self) -> &str {
        &self.driver
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

    /// The DPDK port the link is on.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// Routes traffic in transit (`route`).
    pub fn route(&self) -> bool {
        self.cfg.route
    }

    /// Its 802.1Q VLAN, 0 for untagged.
    pub fn vlan(&self) -> u16 {
        self.cfg.vlan.as_ref().map_or(0, |v| *v.get_ref())
    }

    /// The link owning the port of this VLAN link, if another.
    pub fn owner(&self) -> Option<usize> {
        self.owner
    }

    fn no_port(&self) -> furiwake_platform::Error {
        furiwake_platform::Error::Usage(format!("VLAN {} on the port of interface #{}", self.vlan(), self.owner.unwrap_or(0)))
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
        self.port.as_ref()?.lacp_state(member).ok()
    }

    /// A bond's members and their links as last watched.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// A bond's mode, members as DPDK sees them and primary.
    pub fn bond(&self) -> Option<(crate::config::BondMode, furiwake_platform::BondMembers)> {
        let mode = *self.cfg.bond.as_ref()?.mode.get_ref();
        self.port.as_ref()?.bond_members().ok().map(|m| (mode, m))
    }

    /// The port's counters (a VLAN link on another link's port has none
    /// of its own).
    pub fn stats(&self) -> furiwake_platform::Result<PortStats> {
        self.port.as_ref().ok_or_else(|| self.no_port())?.stats()
    }

    pub fn state(&self) -> furiwake_platform::Result<furiwake_platform::Link> {
        Port::link_of(self.port_id)
    }

    /// RX queues to poll: none on a VLAN link of another's port.
    pub(super) fn rx_queues(&self) -> u16 {
        if self.port.is_some() {
            self.rx_queues
        } else {
            0
        }
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
        let e = self.no_port();
        self.port.as_mut().ok_or(e)?.take_rx_queue(q)
    }

    pub(super) fn take_tx_queue(&mut self, q: u16) -> furiwake_platform::Result<TxQueue> {
        let e = self.no_port();
        self.port.as_mut().ok_or(e)?.take_tx_queue(q)
    }

    pub(super) fn close(&mut self) {
        if let Some(Err(e)) = self.port.as_mut().map(Port::close) {
            log::warn!("port {}: {e}", self.cfg.name.get_ref());
        }
    }
}

/// A link for another VLAN of the port link `owner_index` brought up.
pub(super) fn vlan_on(iface: &Interface, owner: &Link, owner_index: usize) -> Link {
    say(&format!("port {}: VLAN {} on the port of {} ({}) mac {} address {}", iface.name.get_ref(), iface.vlan.as_ref().map_or(0, |v| *v.get_ref()), owner.name(), iface.dev_name(), owner.mac, iface.address));
    Link {
        cfg: iface.clone(),
        port: None,
        owner: Some(owner_index),
        port_id: owner.port_id,
        mac: owner.mac,
        rx_queues: 0,
        control_txq: None,
        last_link_up: owner.last_link_up,
        members: Vec::new(),
        driver: owner.driver.clone(),
        rss: None,
    }
}

/// An 802.3ad bond sends its LACPDUs every second (IEEE 802.1AX's fast
/// periodic time) whatever its partner asks: DPDK's bonding PMD cannot ask
/// a partner for the fast rate, and at the slow rate a lost LACPDU holds
/// back agreement for 30 s. A partner still times the box out at its own
/// rate's timeout (90 s slow, 3 s fast), as it would any LACP peer.
const LACP_PERIOD_MS: u32 = 1000;

pub(super) fn bring_up(iface: &Interface, cfg: &Config, n_workers: u16, pool: &Mempool, steer: &Steering) -> Result<Link, String> {
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
    port.configure(&pc, pool).map_err(|e| {
        // The PMD fills its UMEM's fill ring from the pool at queue setup.
        let hint = if info.driver == "net_af_xdp" { " (net_af_xdp keeps 2048 mbufs of the pool per RX queue: raise [platform] mbufs)" } else { "" };
        format!("interface {name}: {e}{hint}")
    })?;
    if iface.bond.as_ref().is_some_and(|b| *b.mode.get_ref() == crate::config::BondMode::Lacp) {
        // A tuning: without it LACP still agrees, at the slow rate.
        if let Err(e) = port.set_lacp_period(LACP_PERIOD_MS) {
            say(&format!("port {name}: LACPDUs at the slow rate (every 30 s): {e}"));
        }
    }
    port.start().map_err(|e| format!("interface {name}: {e}"))?;
    let mac = EthernetAddress(port.mac().map_err(|e| format!("interface {name}: {e}"))?);
    let link = port.link().map_err(|e| format!("interface {name}: {e}"))?;
    let layout = match cfg.rss_side(iface) {
        RssSide::Server => Layout::Server,
        RssSide::Spread => Layout::Spread,
        _ => Layout::Client,
    };
    let rss = steer_port(&port, name, rx_queues, n_workers, layout, steer);
    say(&format!(
        "port {name}: {} (driver {}, port {}) mac {mac} address {} rxq {rx_queues} txq {tx_queues} rss {} control-tx {} link {link}",
        iface.dev_name(),
        info.driver,
        port.id(),
        iface.address,
        rss_names(if rx_queues > 1 { port.rss_hash() } else { 0 }, rss),
        control_txq.map_or("via worker 0".to_string(), |q| format!("queue {q}")),
    ));
    let control_txq = match control_txq {
        Some(q) => Some(port.take_tx_queue(q).map_err(|e| format!("interface {}: {e}", iface.name.get_ref()))?),
        None => None,
    };
    let mut members = Vec::new();
    for m in iface.members() {
        let port_id = Port::id_of(crate::config::model::dev_name(m)).map_err(|e| format!("interface {name}: bond member {m:?}: {e}"))?;
        members.push(Member { spec: m.to_string(), port_id, up: member_up(m, port_id), rejoin: Default::default() });
    }
    let port_id = port.id();
    let mut l = Link { cfg: iface.clone(), port: Some(port), owner: None, port_id, mac, rx_queues, control_txq, last_link_up: link.up, members, driver: info.driver.clone(), rss };
    if let Some((mode, m)) = l.bond() {
        say(&format!("port {name}: bond {} of {}; primary {}", mode.name(), l.members.iter().map(|m| m.spec.as_str()).collect::<Vec<_>>().join(", "), l.member_name(m.primary)));
        // Start on a member whose link is up.
        l.fail_over();
    }
    Ok(l)
}

/// The RSS hash types a port spreads by, as `ip,tcp,udp`, and the key
/// Furiwake gave it (`by client`, `by server`, `spread`; `unsteered` when
/// the device keeps its own key or table); `off`: no RSS.
fn rss_names(hf: u64, steered: Option<Layout>) -> String {
    use furiwake_platform::rss;
    let names: Vec<&str> = [(rss::IP, "ip"), (rss::TCP, "tcp"), (rss::UDP, "udp")].iter().filter(|(m, _)| hf & m != 0).map(|(_, n)| *n).collect();
    let how = match steered {
        Some(Layout::Client) => "by client",
        Some(Layout::Server) => "by server",
        Some(Layout::Spread) => "spread",
        None => "unsteered",
    };
    if names.is_empty() {
        "off".to_string()
    } else {
        format!("{} {how}", names.join(","))
    }
}

/// Gives a started port the key of its side and the RETA of `steer`;
/// false when it has no RSS Furiwake can steer (`Port::program_rss`).
fn program(port: &Port, layout: Layout, steer: &Steering) -> furiwake_platform::Result<bool> {
    port.program_rss(steer.keys().of(layout), steer.reta())
}

/// Programs the port's RSS when Furiwake can steer it: one RX queue per
/// worker (two or more: the RETA names workers), RSS over IPv4 TCP and
/// UDP by ports, a table Furiwake's repeats over. Anything else, an error
/// included, leaves the port as its PMD set it (a warning): packets reach
/// their owner by hand-off then.
fn steer_port(port: &Port, name: &str, rx_queues: u16, n_workers: u16, layout: Layout, steer: &Steering) -> Option<Layout> {
    if rx_queues < 2 || rx_queues != n_workers {
        return None;
    }
    let need = furiwake_platform::rss::IPV4_TCP_UDP;
    if port.rss_hash() & need != need {
        log::warn!("port {name}: RSS does not hash IPv4 TCP and UDP by ports: not steered");
        return None;
    }
    match program(port, layout, steer) {
        Ok(true) => Some(layout),
        Ok(false) => None,
        Err(e) => {
            log::warn!("port {name}: RSS key and table not taken ({e}): not steered");
            None
        }
    }
}

/// PMDs whose RSS key and table change on a running port while workers
/// poll it (a control queue or registers; mlx5 restarts the port).
const LIVE_RSS: &[&str] = &["net_virtio", "net_ixgbe", "net_i40e", "net_ice", "net_iavf", "net_ena", "net_e1000_igb"];

impl Link {
    /// The ownership key changed (the HA pair's): the port's RSS follows
    /// the new steering, where the PMD takes that on a running port; else
    /// (or on an error) the port is no longer steered, said in the log.
    pub(super) fn reprogram_rss(&mut self, steer: &Steering) {
        let (Some(port), Some(layout)) = (&self.port, self.rss) else { return };
        let outcome = if LIVE_RSS.contains(&self.driver.as_str()) { program(port, layout, steer).map_err(|e| e.to_string()) } else { Err(format!("{} cannot change it while running", self.driver)) };
        if !matches!(outcome, Ok(true)) {
            self.rss = None;
            log::warn!("port {}: RSS not steered under the pair's key: {}", self.name(), outcome.err().unwrap_or_else(|| "the device refused".into()));
        }
    }
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
            let now = std::time::Instant::now();
            let states: Vec<Option<(u8, u8)>> = self.members.iter().map(|m| self.lacp_state(m.port_id)).collect();
            for (m, state) in self.members.iter_mut().zip(states) {
                let (member, inside) = (m.port_id, b.all.contains(&m.port_id));
                if !m.up {
                    m.rejoin.reset();
                }
                let stuck = m.up && inside && state.is_some_and(|(a, p)| m.rejoin.due(super::rejoin::agreed(a, p), now));
                let r = match (m.up, inside) {
                    (false, true) => Some(("left", Port::bond_remove_of(self.port_id, member))),
                    (true, false) => Some(("rejoined", Port::bond_add_of(self.port_id, member))),
                    // Out of agreement too long: its machines begin again.
                    (true, true) if stuck => {
                        Some(("had not agreed with its partner and was put back into", Port::bond_remove_of(self.port_id, member).and_then(|()| Port::bond_add_of(self.port_id, member))))
                    }
                    _ => None,
                };
                match r {
                    Some((what, Ok(()))) => {
                        changed = true;
                        event(&format!("port {name}: bond member {} {what} the aggregation", m.spec));
                    }
                    Some((what, Err(e))) => log::warn!("port {name}: bond member {}: {what} failed: {e}", m.spec),
                    None => {}
                }
            }
            return changed;
        }
        if self.members.iter().any(|m| m.port_id == b.primary && m.up) {
            return false;
        }
        let Some(next) = self.members.iter().find(|m| m.up && m.port_id != b.primary).map(|m| m.port_id) else { return false };
        match Port::bond_set_primary_of(self.port_id, next) {
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
        for i in 0..self.links.len() {
            let l = &self.links[i];
            // A VLAN link is up when the port under it is.
            if let Some(o) = l.owner {
                let up = self.links.get(o).is_some_and(|o| o.last_link_up);
                let l = &mut self.links[i];
                if up != l.last_link_up {
                    l.last_link_up = up;
                    event(&format!("port {}: link {}", l.cfg.name.get_ref(), if up { "up" } else { "down" }));
                }
                continue;
            }
            let l = &mut self.links[i];
            if let Ok(mut state) = l.state() {
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
