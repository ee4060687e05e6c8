//! `[[interface]]` (a port, a VLAN of one, a bond) and `[[route]]`; and
//! `[[snat]]`, the servers' own connections out through the box.

use super::cidr::{ipv6_unusable, spanned_ipv4, IpCidr, Ipv6Cidr};
use super::Ipv4Cidr;
use serde::Deserialize;
use std::net::Ipv4Addr;
use toml::Spanned;

/// `[platform] pci_driver`: what the data NICs named by PCI address are
/// bound to before DPDK starts (`auto`: vfio-pci, in no-IOMMU mode where
/// the box has no IOMMU, else uio_pci_generic), or `none` (the operator
/// binds them; NICs DPDK drives beside their kernel driver, mlx5 and
/// mlx4, are never rebound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum PciDriver {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "vfio-pci")]
    VfioPci,
    #[serde(rename = "uio_pci_generic")]
    UioPciGeneric,
    #[serde(rename = "none")]
    None,
}

impl PciDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            PciDriver::Auto => "auto",
            PciDriver::VfioPci => "vfio-pci",
            PciDriver::UioPciGeneric => "uio_pci_generic",
            PciDriver::None => "none",
        }
    }
}

/// `[[interface]]` as written: `address` (one IPv4 prefix, the form
/// before IPv6) or `addresses` (one IPv4 prefix and at most one IPv6
/// prefix), made into an `Interface` by `TryFrom`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterface {
    name: Spanned<String>,
    device: Spanned<String>,
    address: Option<Ipv4Cidr>,
    addresses: Option<Vec<IpCidr>>,
    mtu: Option<Spanned<u16>>,
    bond: Option<Bond>,
    vlan: Option<Spanned<u16>>,
    #[serde(default)]
    route: bool,
    #[serde(default)]
    rss: RssSide,
}

impl TryFrom<RawInterface> for Interface {
    type Error = String;
    fn try_from(r: RawInterface) -> Result<Self, String> {
        let name = r.name.get_ref().clone();
        let (address, address6) = self_addresses(&name, r.address, r.addresses)?;
        Ok(Interface { name: r.name, device: r.device, address, address6, mtu: r.mtu, bond: r.bond, vlan: r.vlan, route: r.route, rss: r.rss })
    }
}

/// The link's IPv4 and IPv6 self addresses from `address` or `addresses`.
fn self_addresses(name: &str, address: Option<Ipv4Cidr>, addresses: Option<Vec<IpCidr>>) -> Result<(Ipv4Cidr, Option<Ipv6Cidr>), String> {
    let list = match (address, addresses) {
        (Some(_), Some(_)) => return Err(format!("interface {name:?}: give `address` or `addresses`, not both")),
        (Some(a), None) => return Ok((a, None)),
        (None, None) => return Err(format!("interface {name:?}: missing field `address` (or `addresses`)")),
        (None, Some(l)) => l,
    };
    let mut v4 = None;
    let mut v6 = None;
    for a in list {
        match a {
            IpCidr::V4(c) if v4.is_none() => v4 = Some(c),
            IpCidr::V6(c) if v6.is_none() => {
                if let Some(why) = ipv6_unusable(c.addr) {
                    return Err(format!("interface {name:?}: {c} is {why}: a self address is global or unique-local unicast"));
                }
                if c.prefix_len == 0 || c.prefix_len == 128 {
                    return Err(format!("interface {name:?}: {c}: the prefix length is the link's subnet, 1..=127 (64 on most links)"));
                }
                v6 = Some(c);
            }
            IpCidr::V4(c) => return Err(format!("interface {name:?}: a second IPv4 address {c}: a link has one self address per family")),
            IpCidr::V6(c) => return Err(format!("interface {name:?}: a second IPv6 address {c}: a link has one self address per family")),
        }
    }
    let v4 = v4.ok_or_else(|| format!("interface {name:?}: `addresses` has no IPv4 address: every link has one (an IPv6 one is optional)"))?;
    Ok((v4, v6))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawInterface")]
pub struct Interface {
    pub name: Spanned<String>,
    /// A vdev spec (`net_af_packet0,iface=lb-out`) or a PCI address.
    pub device: Spanned<String>,
    /// The appliance's own ("self") IPv4 address on this link.
    pub address: Ipv4Cidr,
    /// Its IPv6 self address, if any (`addresses`): answered by Neighbor
    /// Discovery and ICMPv6 echo; its link-local address is made from the
    /// link's MAC.
    pub address6: Option<Ipv6Cidr>,
    /// The link's IP MTU (default 1500): a `dsr-tunnel` packet that the
    /// encapsulation would take past it is answered with ICMP
    /// fragmentation needed (or dropped without DF).
    pub mtu: Option<Spanned<u16>>,
    /// A bonded port: `device` names the `net_bonding` device, these its
    /// members (DPDK's bonding PMD).
    pub bond: Option<Bond>,
    /// An 802.1Q VLAN (1-4094) on the device: frames of this interface
    /// carry the tag. Several interfaces may name one device with
    /// different VLANs (one of them may be untagged).
    pub vlan: Option<Spanned<u16>>,
    /// Route what arrives here for other hosts (TTL down, next hop by the
    /// interfaces' subnets and `[[route]]`s): the leg facing the firewalls'
    /// return side in firewall load balancing. Default: only VIPs, what
    /// the servers opened and the box's own addresses are reached.
    #[serde(default)]
    pub route: bool,
    /// Which side of a connection the port's RSS queues it by
    /// (`furiwake_dataplane::rss`): `client` (its source: the port clients
    /// reach), `server` (its destination: the port the real servers are
    /// behind, so their replies reach the worker that saw the client),
    /// `spread` (the whole 4-tuple: a port facing both), or `auto`
    /// (`Config::rss_side`).
    pub rss: RssSide,
}

/// `[[interface]] rss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RssSide {
    #[default]
    Auto,
    Client,
    Server,
    Spread,
}

impl RssSide {
    pub fn as_str(self) -> &'static str {
        match self {
            RssSide::Auto => "auto",
            RssSide::Client => "client",
            RssSide::Server => "server",
            RssSide::Spread => "spread",
        }
    }
}

/// `[[interface]] bond`: link redundancy over several devices.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bond {
    pub mode: Spanned<BondMode>,
    /// The members' device specs (vdev specs or PCI addresses), as
    /// `device` takes them.
    pub members: Spanned<Vec<Spanned<String>>>,
}

/// How a bond uses its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BondMode {
    /// One member carries everything; another takes over when its link
    /// goes down (DPDK mode 1, Linux's `active-backup`).
    #[serde(rename = "active-backup")]
    ActiveBackup,
    /// LACP (IEEE 802.3ad / 802.1AX, DPDK mode 4): every member carries
    /// traffic, flows spread by an L3/L4 hash.
    #[serde(rename = "802.3ad")]
    Lacp,
}

impl BondMode {
    /// DPDK's bonding mode number.
    pub fn dpdk_mode(self) -> u8 {
        match self {
            BondMode::ActiveBackup => 1,
            BondMode::Lacp => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BondMode::ActiveBackup => "active-backup",
            BondMode::Lacp => "802.3ad",
        }
    }
}

impl Interface {
    /// True when `device` names a PCI device rather than a vdev.
    pub fn is_pci(&self) -> bool {
        is_pci_address(self.device.get_ref())
    }

    /// The ethdev name DPDK gives the device: the vdev name before the first
    /// comma, or the PCI address.
    pub fn dev_name(&self) -> &str {
        dev_name(self.device.get_ref())
    }

    /// The bond's members' device specs (none for a plain port).
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.bond.iter().flat_map(|b| b.members.get_ref().iter().map(|m| m.get_ref().as_str()))
    }
}

impl super::Config {
    /// The side `iface`'s RSS follows: `rss` as given, or for `auto`: the
    /// server side when real servers are reached through the interface's
    /// device (in the subnet of one of its interfaces, or behind a
    /// `[[route]]` whose next hop is) while neither the default route nor a
    /// VIP is; `spread` when the device faces both (one-arm: a port, or
    /// VLANs of one port, carrying clients and servers); the client side
    /// otherwise. Decided at start.
    pub fn rss_side(&self, iface: &Interface) -> RssSide {
        if iface.rss != RssSide::Auto {
            return iface.rss;
        }
        // Every interface of the device (VLANs share its RSS).
        let on_dev: Vec<&Interface> = self.interfaces.iter().filter(|i| i.dev_name() == iface.dev_name()).collect();
        let here = |a: Ipv4Addr| on_dev.iter().any(|i| i.address.contains(a));
        // (IPv4 only: IPv6 is not steered by the RSS mirror yet.)
        let servers = self.pools.iter().flat_map(|p| p.servers.iter()).filter(|s| s.address.get_ref().is_ipv4()).any(|s| self.reached_by(s.ip4()).is_some_and(|d| d == iface.dev_name()));
        let default = self.routes4().any(|r| r.prefix.prefix_len == 0 && here(r.via));
        let vips = self.virtual_servers.iter().filter(|v| !v.is_v6()).any(|v| here(v.ip4()));
        let others = self.interfaces.iter().any(|i| i.dev_name() != iface.dev_name());
        match (servers, default || vips || !others) {
            (true, false) => RssSide::Server,
            (true, true) => RssSide::Spread,
            (false, _) => RssSide::Client,
        }
    }

    /// The device `a` is reached through: an interface's subnet holding it,
    /// else the longest `[[route]]` prefix holding it whose next hop is in
    /// one.
    fn reached_by(&self, a: Ipv4Addr) -> Option<&str> {
        let on_link = |x: Ipv4Addr| self.interfaces.iter().find(|i| i.address.contains(x)).map(Interface::dev_name);
        on_link(a).or_else(|| self.routes4().filter(|r| r.prefix.contains(a)).max_by_key(|r| r.prefix.prefix_len).and_then(|r| on_link(r.via)))
    }
}

/// The ethdev name DPDK gives a device spec: the vdev name before the
/// first comma, or the PCI address.
pub fn dev_name(spec: &str) -> &str {
    spec.split(',').next().unwrap_or(spec)
}

pub(crate) fn is_pci_address(s: &str) -> bool {
    // [DDDD:]BB:DD.F
    let s = s.split(',').next().unwrap_or(s);
    let parts: Vec<&str> = s.split(':').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [dom, bus, devfn] => hex(dom, 4) && hex(bus, 2) && devfn_ok(devfn, &hex),
        [bus, devfn] => hex(bus, 2) && devfn_ok(devfn, &hex),
        _ => false,
    }
}

fn devfn_ok(s: &str, hex: &dyn Fn(&str, usize) -> bool) -> bool {
    matches!(s.split_once('.'), Some((d, f)) if hex(d, 2) && f.len() == 1 && f.chars().all(|c| c.is_digit(8)))
}

/// An IPv4 `[[route]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Cidr,
    pub via: Ipv4Addr,
}

/// An IPv6 `[[route]]`: its next hop a global or unique-local address on
/// a link's IPv6 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route6 {
    pub prefix: Ipv6Cidr,
    pub via: std::net::Ipv6Addr,
}

/// `[[route]]` of either family (`prefix` and `via` of one family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRoute")]
pub enum AnyRoute {
    V4(Route),
    V6(Route6),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    prefix: IpCidr,
    via: String,
}

impl TryFrom<RawRoute> for AnyRoute {
    type Error = String;
    fn try_from(r: RawRoute) -> Result<Self, String> {
        let via: std::net::IpAddr = r.via.parse().map_err(|_| format!("route {}: via {:?} is not an IP address", r.prefix, r.via))?;
        match (r.prefix, via) {
            (IpCidr::V4(prefix), std::net::IpAddr::V4(via)) => Ok(AnyRoute::V4(Route { prefix, via })),
            (IpCidr::V6(prefix), std::net::IpAddr::V6(via)) => match ipv6_unusable(via) {
                Some(why) => Err(format!("route {prefix}: via {via} is {why}: a next hop is a global or unique-local address on a link's subnet")),
                None => Ok(AnyRoute::V6(Route6 { prefix, via })),
            },
            (p, v) => Err(format!("route {p}: via {v} is of the other address family")),
        }
    }
}

impl super::Config {
    /// The IPv4 `[[route]]`s.
    pub fn routes4(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter_map(|r| match r.get_ref() {
            AnyRoute::V4(r) => Some(r),
            AnyRoute::V6(_) => None,
        })
    }

    /// The IPv6 `[[route]]`s.
    pub fn routes6(&self) -> impl Iterator<Item = &Route6> {
        self.routes.iter().filter_map(|r| match r.get_ref() {
            AnyRoute::V6(r) => Some(r),
            AnyRoute::V4(_) => None,
        })
    }
}


/// `[[snat]]`: connections the hosts under `sources` (the servers) open
/// themselves leave through the box source-NATed to `address`, from its
/// `ports` (seeds 002, 004: updates, DNS, mail of servers behind a NAT
/// load balancer). Nothing from outside reaches those hosts but their
/// answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snat {
    pub name: Spanned<String>,
    pub sources: Spanned<Ipv4Cidr>,
    /// The `[[interface]]` the servers are on: only what arrives there is
    /// theirs (a `sources` address arriving elsewhere is spoofed). Default:
    /// the interface whose subnet holds `sources`.
    pub interface: Option<Spanned<String>>,
    #[serde(deserialize_with = "spanned_ipv4")]
    pub address: Spanned<Ipv4Addr>,
    /// `"FIRST-LAST"`, within 1024-49151; default all of them.
    pub ports: Option<Spanned<String>>,
}

impl Snat {
    /// The index of the `[[interface]]` the servers are on: the one named,
    /// else the one whose subnet holds `sources` (`validate` refuses a
    /// rule with neither).
    pub fn link(&self, interfaces: &[Interface]) -> Option<usize> {
        match &self.interface {
            Some(n) => interfaces.iter().position(|i| i.name.get_ref() == n.get_ref()),
            None => interfaces.iter().position(|i| i.address.contains(self.sources.get_ref().network())),
        }
    }

    /// The port range, parsed (`validate` refuses a bad one).
    pub fn port_range(&self) -> Option<(u16, u16)> {
        let Some(p) = &self.ports else { return Some((1024, furiwake_dataplane::forward::LOCAL_PORT_MAX)) };
        let (a, b) = p.get_ref().split_once('-')?;
        let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
        (1024 <= a && a <= b && b <= furiwake_dataplane::forward::LOCAL_PORT_MAX).then_some((a, b))
    }
}
