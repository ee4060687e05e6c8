//! Turns the configuration into the workers' `Snapshot` (control computes,
//! workers look up): server next hops resolved to ports and neighbour
//! slots, schedules precomputed, full-NAT local addresses defaulted.

use crate::config::{Algorithm, Config, Forwarding, HashOn, PersistenceKind, Protocol, TunnelKind};
use crate::modules::arp::Nexthop;
use furiwake_dataplane::lb::{HashKey, Schedule};
use furiwake_dataplane::lb::RealServer;
use furiwake_dataplane::state::snapshot::{self, PortView, PortView6, Snapshot, VirtualService};
use furiwake_dataplane::wire::EthernetAddress;
use std::net::{IpAddr, Ipv4Addr};

/// A data link as the builder needs it.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    pub port_id: u16,
    /// Its VLAN, 0 for none.
    pub vlan: u16,
    /// `[[interface]] route`.
    pub route: bool,
    pub mac: EthernetAddress,
    pub address: crate::config::Ipv4Cidr,
    /// Its IPv6 self address, when it has IPv6.
    pub address6: Option<crate::config::Ipv6Cidr>,
    /// The link's IP MTU.
    pub mtu: u16,
    /// The host link (the exception path's TAP): no self IP, no ARP, no
    /// route leads there; last of the links.
    pub host: bool,
}

#[derive(Debug)]
pub struct Built {
    pub snapshot: Snapshot,
    pub nexthops: Vec<Nexthop>,
    /// Per link: the addresses ARP answers for (self IP, VIPs and local
    /// addresses in its subnet).
    pub owned: Vec<Vec<Ipv4Addr>>,
    /// Per link: the IPv6 VIPs and full-NAT local addresses in its IPv6
    /// subnet, which Neighbor Discovery answers for beside the link's own.
    pub owned6: Vec<Vec<std::net::Ipv6Addr>>,
    /// Per snapshot server: the index of the config pool it comes from
    /// (its own pool, or the sorry pool), whose health checks apply;
    /// `usize::MAX` for a retired or free slot.
    pub server_pools: Vec<usize>,
    pub layout: Layout,
}

/// Which link reaches `ip` (of either family), and through which next hop.
pub fn route_any(cfg: &Config, links: &[LinkInfo], ip: IpAddr) -> Option<(usize, IpAddr)> {
    match ip {
        IpAddr::V4(a) => route(cfg, links, a).map(|(l, v)| (l, IpAddr::V4(v))),
        IpAddr::V6(a) => route6(cfg, links, a).map(|(l, v)| (l, IpAddr::V6(v))),
    }
}

/// `route` for IPv6: a link's IPv6 subnet, then the longest IPv6 route.
pub fn route6(cfg: &Config, links: &[LinkInfo], ip: std::net::Ipv6Addr) -> Option<(usize, std::net::Ipv6Addr)> {
    let on_link = |a: std::net::Ipv6Addr| links.iter().position(|l| !l.host && l.address6.is_some_and(|c| c.contains(a)));
    if let Some(l) = on_link(ip) {
        return Some((l, ip));
    }
    let r = cfg.routes6().filter(|r| r.prefix.contains(ip)).max_by_key(|r| r.prefix.prefix_len)?;
    Some((on_link(r.via)?, r.via))
}

/// Which link reaches `ip`, and through which next hop: on-link first, then
/// the longest matching static route.
pub fn route(cfg: &Config, links: &[LinkInfo], ip: Ipv4Addr) -> Option<(usize, Ipv4Addr)> {
    if let Some(l) = links.iter().position(|l| !l.host && l.address.contains(ip)) {
        return Some((l, ip));
    }
    let r = cfg.routes4().filter(|r| r.prefix.contains(ip)).max_by_key(|r| r.prefix.prefix_len)?;
    let l = links.iter().position(|l| !l.host && l.address.contains(r.via))?;
    Some((l, r.via))
}

/// Where each virtual server and real server sits in the snapshot. The
/// lb module keeps it across rebuilds (console changes, `config reload`):
/// connection entries hold snapshot indexes, so a virtual server or server
/// that stays keeps its index; one that goes is `Retired` — kept, taking no
/// new connections — while connections still use it, then `Free`. New ones
/// are appended while there is room (`snapshot::MAX_*`), then take free
/// slots. Next hops and persistence groups only grow.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub services: Vec<Slot<ServiceKey>>,
    pub servers: Vec<Slot<ServerKey>>,
    /// Persistence group names (a virtual server without a group has one of
    /// its own, `vs:NAME`); the index is the group id.
    pub groups: Vec<String>,
    pub nexthops: Vec<Nexthop>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot<K> {
    Live(K),
    Retired(K),
    Free,
}

impl<K> Slot<K> {
    fn key(&self) -> Option<&K> {
        match self {
            Slot::Live(k) | Slot::Retired(k) => Some(k),
            Slot::Free => None,
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self, Slot::Live(_))
    }

    pub fn is_retired(&self) -> bool {
        matches!(self, Slot::Retired(_))
    }
}

/// A virtual server is its name, address and protocol: changing the
/// address makes it another one.
pub type ServiceKey = (String, std::net::SocketAddr, Protocol);
/// A real server is its virtual server's slot, the pool it is listed in
/// (its own or the sorry pool) and its address.
pub type ServerKey = (usize, String, std::net::SocketAddr);

/// Which kind of slot `busy` is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    Service,
    Server,
}

/// The slots of one kind being claimed by a rebuild: the layout's slots,
/// each key's slot (a hash index, so claiming is O(1) per server at any
/// pool size), and which slots this rebuild claimed.
struct Claims<'a, K> {
    slots: &'a mut Vec<Slot<K>>,
    index: std::collections::HashMap<K, usize>,
    claimed: Vec<bool>,
}

impl<'a, K: PartialEq + Eq + std::hash::Hash + Clone> Claims<'a, K> {
    fn new(slots: &'a mut Vec<Slot<K>>) -> Self {
        let index = slots.iter().enumerate().filter_map(|(i, s)| Some((s.key()?.clone(), i))).collect();
        let claimed = vec![false; slots.len()];
        Claims { slots, index, claimed }
    }

    /// The slot of `key`: its own when it has one, else a new one
    /// (appended below `max`, else a free one).
    fn claim(&mut self, key: K, max: usize, what: &str) -> Result<usize, String> {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None if self.slots.len() < max => {
                self.slots.push(Slot::Free);
                self.slots.len() - 1
            }
            None => self
                .slots
                .iter()
                .enumerate()
                .position(|(i, s)| *s == Slot::Free && !self.claimed.get(i).copied().unwrap_or(false))
                .ok_or_else(|| format!("more than {max} {what} (counting removed ones whose connections are still open)"))?,
        };
        if self.claimed.len() < self.slots.len() {
            self.claimed.resize(self.slots.len(), false);
        }
        self.claimed[i] = true;
        self.index.insert(key.clone(), i);
        self.slots[i] = Slot::Live(key);
        Ok(i)
    }
}

/// The neighbour slot of next hop `via` on `link`, appended when new
/// (`index` finds it in O(1)).
fn nexthop(nexthops: &mut Vec<Nexthop>, index: &mut std::collections::HashMap<(IpAddr, usize), usize>, via: IpAddr, link: usize) -> Result<usize, String> {
    if let Some(&i) = index.get(&(via, link)) {
        return Ok(i);
    }
    if nexthops.len() >= snapshot::MAX_NEXTHOPS {
        return Err(format!("more than {} next hops", snapshot::MAX_NEXTHOPS));
    }
    nexthops.push(Nexthop { ip: via, link });
    index.insert((via, link), nexthops.len() - 1);
    Ok(nexthops.len() - 1)
}

/// The persistence namespace of `vs`: its group, or itself alone (the L7
/// engine's `persist::Spec::of` names it the same).
pub fn group_name(vs: &crate::config::VirtualServer) -> String {
    match &vs.persistence_group {
        Some(g) => format!("group:{}", g.get_ref()),
        None => format!("vs:{}", vs.name.get_ref()),
    }
}

/// The persistence of `vs`, with its group's stable id.
fn persistence(vs: &crate::config::VirtualServer, groups: &mut Vec<String>) -> Option<furiwake_dataplane::lb::Persistence> {
    // The L7 engine keeps an `http` virtual server's clients itself.
    let p = vs.persistence.as_ref()?.get_ref();
    if p.kind.is_l7() || vs.protocol.is_l7() {
        return None;
    }
    let name = group_name(vs);
    let group = match groups.iter().position(|g| *g == name) {
        Some(i) => i,
        None => {
            groups.push(name);
            groups.len() - 1
        }
    };
    let ticks_per_s = 1000 / furiwake_dataplane::conntrack::TICK_MS;
    Some(furiwake_dataplane::lb::Persistence {
        kind: match p.kind {
            PersistenceKind::SourceIp => furiwake_dataplane::lb::PersistKind::SourceIp,
            PersistenceKind::SourceIpPort => furiwake_dataplane::lb::PersistKind::SourceIpPort,
            // (Left above.)
            _ => furiwake_dataplane::lb::PersistKind::SourceIp,
        },
        // check-config accepts contiguous masks only.
        // An IPv6 virtual server's clients under `prefix6`.
        prefix: if vs.is_v6() { *p.prefix6.get_ref() } else { u32::from(*p.netmask.get_ref()).leading_ones() as u8 },
        timeout: p.timeout_s.get_ref().saturating_mul(ticks_per_s),
        group: group as u16,
        keep_on_down: p.keep_on_down,
    })
}

/// Per link: the live IPv6 VIPs and local addresses in its IPv6 subnet.
fn owned6(snap: &Snapshot, links: &[LinkInfo]) -> Vec<Vec<std::net::Ipv6Addr>> {
    let mut owned = vec![Vec::new(); links.len()];
    // (Retired services' too: their connections drain.)
    let addrs = snap.services.iter().flat_map(|v| std::iter::once(v.ip6).chain(v.local_addrs6.iter().copied())).filter(|a| *a != 0);
    for a in addrs {
        let a = std::net::Ipv6Addr::from(a);
        if let Some(li) = links.iter().position(|l| !l.host && l.address6.is_some_and(|c| c.contains(a) && c.addr != a)) {
            if !owned[li].contains(&a) {
                owned[li].push(a);
            }
        }
    }
    owned
}

/// The first snapshot of `cfg`.
pub fn build(cfg: &Config, links: &[LinkInfo]) -> Result<Built, String> {
    rebuild(cfg, links, &Layout::default(), &Snapshot::default(), &|_, _| false)
}

/// The snapshot of `cfg`, keeping the slots of `prev` (the layout of
/// `prev_snap`). `busy(kind, slot)`: does a connection still use it — a
/// slot no longer in the config stays `Retired` while it is busy.
pub fn rebuild(cfg: &Config, links: &[LinkInfo], prev: &Layout, prev_snap: &Snapshot, busy: &dyn Fn(SlotKind, usize) -> bool) -> Result<Built, String> {
    let with_rule_pools = rule_pools(cfg);
    let cfg = with_rule_pools.as_ref().unwrap_or(cfg);
    let mut layout = prev.clone();
    let mut snap = Snapshot::default();
    // The snapshot's links are the runtime's, by link index.
    for (i, l) in links.iter().enumerate() {
        if l.host {
            snap.ports.push(Some(PortView { mac: l.mac, self_ip: 0, netmask: 0, mtu: l.mtu, port: l.port_id, vlan: 0, route: false, ..Default::default() }));
            snap.host = Some(snapshot::HostView { link: i as u16, sources: Vec::new() });
            continue;
        }
        snap.ports.push(Some(PortView { mac: l.mac, self_ip: u32::from(l.address.addr), netmask: l.address.netmask(), mtu: l.mtu, port: l.port_id, vlan: l.vlan, route: l.route, v6: l.address6.map_or_else(PortView6::default, |a| PortView6::new(u128::from(a.addr), a.prefix_len, l.mac)) }));
        snap.self_ips.push(u32::from(l.address.addr));
    }
    let mut services: Vec<VirtualService> = prev_snap.services.clone();
    let mut servers: Vec<RealServer> = prev_snap.servers.clone();
    services.resize_with(layout.services.len(), || VirtualService { retired: true, ..VirtualService::test(snapshot::Forwarding::Nat) });
    servers.resize(layout.servers.len(), RealServer::default());
    let mut server_pools: Vec<usize> = vec![usize::MAX; layout.servers.len()];
    let mut service_claims = Claims::new(&mut layout.services);
    let mut server_claims = Claims::new(&mut layout.servers);
    let mut hop_index: std::collections::HashMap<(IpAddr, usize), usize> = layout.nexthops.iter().enumerate().map(|(i, n)| ((n.ip, n.link), i)).collect();
    let mut owned: Vec<Vec<Ipv4Addr>> = links.iter().map(|l| if l.host { Vec::new() } else { vec![l.address.addr] }).collect();
    let own = |ip: Ipv4Addr, owned: &mut Vec<Vec<Ipv4Addr>>| {
        if let Some(l) = links.iter().position(|l| !l.host && l.address.contains(ip)) {
            if !owned[l].contains(&ip) {
                owned[l].push(ip);
            }
        }
    };

    for vs in &cfg.virtual_servers {
        let name = vs.name.get_ref();
        let pool = cfg
            .pools
            .iter()
            .find(|p| p.name.get_ref() == vs.pool.get_ref())
            .ok_or_else(|| format!("virtual_server {name}: no pool {:?}", vs.pool.get_ref()))?;
        let vs_slot = service_claims.claim((name.clone(), *vs.address.get_ref(), vs.protocol), snapshot::MAX_SERVICES, "virtual servers")?;
        if services.len() <= vs_slot {
            services.resize_with(vs_slot + 1, || VirtualService { retired: true, ..VirtualService::test(snapshot::Forwarding::Nat) });
        }
        // The pool's servers, then its sorry pool's below every priority.
        let pool_index = |name: &str| cfg.pools.iter().position(|p| p.name.get_ref() == name).unwrap_or(0);
        let mut members: Vec<(&crate::config::Server, usize, i32)> =
            pool.servers.iter().map(|s| (s, pool_index(pool.name.get_ref()), i32::from(*s.priority.get_ref()))).collect();
        if let Some(sorry) = pool.sorry_pool.as_ref().and_then(|n| cfg.pools.iter().find(|p| p.name.get_ref() == n.get_ref())) {
            members.extend(sorry.servers.iter().map(|s| (s, pool_index(sorry.name.get_ref()), -1)));
        }
        let mut slots: Vec<u16> = Vec::with_capacity(members.len());
        for (s, member_pool, priority) in &members {
            let addr = *s.address.get_ref();
            let (link, via) = route_any(cfg, links, addr.ip())
                .ok_or_else(|| format!("pool {}: server {addr} is on no interface's subnet and no route reaches it", pool.name.get_ref()))?;
            let hop = nexthop(&mut layout.nexthops, &mut hop_index, via, link)?;
            let pool_name = cfg.pools.get(*member_pool).map_or(String::new(), |p| p.name.get_ref().clone());
            let slot = server_claims.claim((vs_slot, pool_name, addr), snapshot::MAX_SERVERS, "real servers")?;
            if servers.len() <= slot {
                servers.resize(slot + 1, RealServer::default());
                server_pools.resize(slot + 1, usize::MAX);
            }
            servers[slot] = RealServer {
                ip: u32::from(crate::config::ip4(&addr)),
                port: addr.port(),
                weight: *s.weight.get_ref(),
                enabled: *s.weight.get_ref() > 0,
                tx_port: link as u16,
                nexthop: hop as u16,
                vs: vs_slot as u16,
                reset: false,
                max_connections: *s.max_connections.get_ref(),
                priority: *priority,
                epoch: 0,
                sticky_only: false,
                ip6: match addr.ip() {
                    IpAddr::V6(a) => a.octets(),
                    IpAddr::V4(_) => [0; 16],
                },
            };
            server_pools[slot] = *member_pool;
            slots.push(slot as u16);
        }
        let count = members.len();
        let member_weights: Vec<u32> = members.iter().map(|(s, _, _)| *s.weight.get_ref()).collect();
        let member_addrs: Vec<(u32, u16, u32)> =
            slots.iter().zip(members.iter()).map(|(g, (s, _, _))| (servers.get(*g as usize).map_or(0, RealServer::hash_word), s.address.get_ref().port(), *s.weight.get_ref())).collect();
        let schedule = match pool.algorithm.get_ref() {
            Algorithm::RoundRobin => Schedule::round_robin(count),
            Algorithm::WeightedRoundRobin => Schedule::weighted(&member_weights),
            Algorithm::LeastConnections => Schedule::LeastConnections { weighted: false },
            Algorithm::WeightedLeastConnections => Schedule::LeastConnections { weighted: true },
            Algorithm::SourceHash => {
                let key = match pool.hash.as_ref().map(|h| *h.get_ref()).unwrap_or_default() {
                    HashOn::SourceIp => HashKey::SourceIp,
                    HashOn::SourceDestinationIp => HashKey::SourceDestIp,
                };
                Schedule::hashed(key, &member_addrs)
            }
            Algorithm::Maglev => Schedule::hashed(HashKey::FiveTuple, &member_addrs),
            Algorithm::Fastest => Schedule::Fastest,
            Algorithm::LeastBandwidth => Schedule::LeastBandwidth,
            Algorithm::Composite => Schedule::Composite,
        };
        let forwarding = match vs.forwarding.get_ref() {
            _ if vs.engine_served() => snapshot::Forwarding::Local,
            Forwarding::Nat => snapshot::Forwarding::Nat,
            Forwarding::FullNat => snapshot::Forwarding::FullNat,
            Forwarding::DsrL2 => snapshot::Forwarding::DsrL2,
            Forwarding::DsrDscp => snapshot::Forwarding::DsrDscp,
            Forwarding::DsrTunnel => snapshot::Forwarding::DsrTunnel,
            Forwarding::Gateway => snapshot::Forwarding::Gateway,
        };
        let tunnel = vs.tunnel.as_ref().map(|t| snapshot::TunnelSpec {
            kind: match t.get_ref() {
                TunnelKind::Ipip => snapshot::TunnelKind::Ipip,
                TunnelKind::Gre => snapshot::TunnelKind::Gre,
                TunnelKind::Gue => snapshot::TunnelKind::Gue,
            },
            source: vs.tunnel_source.as_ref().map(|c| {
                let c = c.get_ref();
                (u32::from(c.network()), !c.netmask())
            }),
            port: vs.tunnel_port.as_ref().map_or(crate::config::DEFAULT_GUE_PORT, |p| *p.get_ref()),
        });
        let local_addrs: Vec<u32> = match forwarding {
            snapshot::Forwarding::Nat | snapshot::Forwarding::DsrL2 | snapshot::Forwarding::DsrDscp | snapshot::Forwarding::DsrTunnel | snapshot::Forwarding::Snat | snapshot::Forwarding::Gateway | snapshot::Forwarding::LocalOut => Vec::new(),
            snapshot::Forwarding::FullNat | snapshot::Forwarding::Local if !vs.local_addresses.is_empty() => vs.local_addresses.iter().map(|a| u32::from(*a)).collect(),
            snapshot::Forwarding::FullNat | snapshot::Forwarding::Local => {
                // Default: the self IP of the interface facing the servers.
                let server_port = slots.first().and_then(|g| servers.get(*g as usize)).map(|s| s.tx_port);
                let link = server_port.and_then(|p| links.get(p as usize)).or(links.first());
                link.map(|l| vec![u32::from(l.address.addr)]).unwrap_or_default()
            }
        };
        let vip = *vs.address.get_ref();
        // A gateway service owns no address (it takes any destination).
        if forwarding != snapshot::Forwarding::Gateway && !vs.is_v6() {
            own(vs.ip4(), &mut owned);
        }
        // Servers of the other family than the VIP: translated (RFC 7915;
        // `config::ipv6check` allows it for full-NAT alone).
        let servers_v6 = cfg.pools.iter().find(|p| p.name.get_ref() == vs.pool.get_ref()).and_then(|p| p.servers.first()).map(|s| s.address.get_ref().is_ipv6());
        let xlate = forwarding == snapshot::Forwarding::FullNat && servers_v6.is_some_and(|v6| v6 != vs.is_v6());
        let local_addrs6: Vec<u128> = match (vip.ip(), forwarding) {
            // An IPv6 VIP over IPv4 servers: the IPv4 self address of the
            // servers' interface, mapped.
            (IpAddr::V6(_), snapshot::Forwarding::FullNat) if xlate => local_addrs.iter().map(|a| furiwake_dataplane::forward::xlate::mapped(*a)).collect(),
            (_, snapshot::Forwarding::FullNat) if vs.is_v6() || xlate => {
                // The IPv6 self address of the interface facing the servers.
                // (A pool with no server yet: the first link with IPv6.)
                let server_port = slots.first().and_then(|g| servers.get(*g as usize)).map(|s| s.tx_port);
                let link = server_port.and_then(|p| links.get(p as usize)).or_else(|| links.iter().find(|l| l.address6.is_some()));
                link.and_then(|l| l.address6).map(|a| vec![u128::from(a.addr)]).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let local_addrs = if vs.is_v6() || xlate { Vec::new() } else { local_addrs };
        if (vs.is_v6() || xlate) && forwarding == snapshot::Forwarding::FullNat && local_addrs6.is_empty() {
            return Err(format!("virtual_server {name}: its servers' interface has no address of their family for full-nat to go out from"));
        }
        let link = vs.interface.as_ref().and_then(|i| cfg.interfaces.iter().position(|c| c.name.get_ref() == i.get_ref())).map_or(u16::MAX, |l| l as u16);
        services[vs_slot] = VirtualService {
            name: name.clone(),
            ip: u32::from(vs.ip4()),
            ip6: match vip.ip() {
                IpAddr::V6(a) => u128::from(a),
                IpAddr::V4(_) => 0,
            },
            port: vip.port(),
            proto: match vs.protocol.transport() {
                Protocol::Udp => 17,
                _ => 6,
            },
            forwarding,
            members: slots.into_boxed_slice(),
            // By priority: `Snapshot::index`.
            groups: Box::new([]),
            retired: false,
            standby: false,
            dscp: vs.dscp.as_ref().map_or(0, |d| *d.get_ref()),
            tunnel,
            link,
            pair: None,
            schedule,
            local_addrs: local_addrs.into_boxed_slice(),
            local_addrs6: local_addrs6.into_boxed_slice(),
            xlate,
            persistence: persistence(vs, &mut layout.groups),
            syn_proxy: {
                let proxiable = vs.protocol.transport() == Protocol::Tcp && matches!(forwarding, snapshot::Forwarding::Nat | snapshot::Forwarding::FullNat | snapshot::Forwarding::Local);
                match vs.syn_proxy.as_ref().map(|m| *m.get_ref()).unwrap_or_default() {
                    // The PROXY header rides the handshake's last ACK,
                    // which the SYN proxy writes itself.
                    _ if !proxiable || vs.proxy_protocol.is_some() => snapshot::SynProxy::Off,
                    crate::config::SynProxyMode::Auto => snapshot::SynProxy::Auto,
                    crate::config::SynProxyMode::On => snapshot::SynProxy::On,
                    crate::config::SynProxyMode::Off => snapshot::SynProxy::Off,
                }
            },
            proxy_header: vs.proxy_protocol.is_some(),
        };
    }

    // What left the config is retired: a worker may still be creating a
    // connection on it from the snapshot before this one. A retired slot is
    // freed by a later rebuild, once `busy` says no connection and no worker
    // can still use it.
    let claimed_services = service_claims.claimed;
    let claimed_servers = server_claims.claimed;
    for (i, slot) in layout.services.iter_mut().enumerate() {
        if claimed_services.get(i).copied().unwrap_or(false) {
            continue;
        }
        let Some(v) = services.get_mut(i) else { continue };
        match slot.key().cloned() {
            Some(k) if slot.is_live() || busy(SlotKind::Service, i) => {
                *slot = Slot::Retired(k);
                v.retired = true;
                v.members = Box::new([]);
            }
            _ => {
                *slot = Slot::Free;
                *v = VirtualService { retired: true, ..VirtualService::test(snapshot::Forwarding::Nat) };
            }
        }
    }
    for (i, slot) in layout.servers.iter_mut().enumerate() {
        if claimed_servers.get(i).copied().unwrap_or(false) {
            continue;
        }
        let Some(s) = servers.get_mut(i) else { continue };
        match slot.key().cloned() {
            Some(k) if slot.is_live() || busy(SlotKind::Server, i) => {
                *slot = Slot::Retired(k);
                s.enabled = false;
                s.sticky_only = false;
            }
            _ => {
                *slot = Slot::Free;
                *s = RealServer::default();
            }
        }
    }
    // Local addresses of every service that still has connections (the
    // servers' replies come back to them), and the VIPs of removed ones
    // until their connections have ended (their clients keep sending).
    for v in services.iter().filter(|v| v.ip != 0) {
        if v.retired {
            own(Ipv4Addr::from(v.ip), &mut owned);
        }
        for a in v.local_addrs.iter() {
            own(Ipv4Addr::from(*a), &mut owned);
        }
    }
    // Source NAT: its rules, its addresses owned on their links, and the
    // routes its connections leave by (on-link subnets, then `[[route]]`s
    // through their gateways' neighbour slots).
    for r in &cfg.snat {
        let (min, max) = r.port_range().unwrap_or((1024, furiwake_dataplane::forward::LOCAL_PORT_MAX));
        let c = r.sources.get_ref();
        let link = r.link(&cfg.interfaces).unwrap_or(usize::MAX) as u16;
        snap.snat.push(snapshot::SnatRule { net: u32::from(c.network()), mask: c.netmask(), link, addr: u32::from(*r.address.get_ref()), port_min: min, port_max: max });
        own(*r.address.get_ref(), &mut owned);
    }
    // Gateway services' pairs, by their slots.
    for vs in cfg.virtual_servers.iter().filter(|v| v.pair.is_some()) {
        let slot_of = |name: &str| services.iter().position(|v| !v.retired && v.name == name);
        if let (Some(me), Some(other)) = (slot_of(vs.name.get_ref()), vs.pair.as_ref().and_then(|p| slot_of(p.get_ref()))) {
            if let Some(v) = services.get_mut(me) {
                v.pair = Some(other as u16);
            }
        }
    }
    {
        for (li, l) in links.iter().enumerate().filter(|(_, l)| !l.host) {
            snap.routes.push(snapshot::RouteView { net: u32::from(l.address.network()), mask: l.address.netmask(), link: li as u16, via: None });
        }
        for r in cfg.routes4() {
            let Some(link) = links.iter().position(|l| l.address.contains(r.via)) else { continue };
            let hop = nexthop(&mut layout.nexthops, &mut hop_index, IpAddr::V4(r.via), link)?;
            snap.routes.push(snapshot::RouteView { net: u32::from(r.prefix.network()), mask: r.prefix.netmask(), link: link as u16, via: Some(hop as u16) });
        }
    }
    snap.services = services;
    snap.servers = servers;
    snap.persist_records = *cfg.platform.persistence_records.get_ref();
    snap.control = control_view(cfg);
    snap.index();
    let owned6 = owned6(&snap, links);
    Ok(Built { snapshot: snap, nexthops: layout.nexthops.clone(), owned, owned6, server_pools, layout })
}

/// The name of the snapshot service that schedules `pool` for the rules
/// of `http` virtual server `vs`.
pub fn rule_pool_name(vs: &str, pool: &str) -> String {
    format!("{vs}#{pool}")
}

/// `cfg` with, for each pool the rules of an `http` virtual server name
/// (`pool`, a script's `pools`), a virtual server of no address
/// (`0.0.0.0:0`) over it, compiled like any other: its servers get slots,
/// health checks, operator states and a schedule, which the L7 engine
/// picks from when the rule matches (`rule_pool_name`). None when no rule
/// names a pool.
fn rule_pools(cfg: &Config) -> Option<Config> {
    let mut extra = Vec::new();
    for vs in cfg.virtual_servers.iter().filter(|v| v.protocol.is_l7()) {
        // A rule's `pool`, and every pool its script may name.
        for pool in vs.rule.iter().flat_map(|r| r.pool.iter().chain(r.pools.iter().flat_map(|p| p.get_ref()))) {
            let name = rule_pool_name(vs.name.get_ref(), pool.get_ref());
            if extra.iter().any(|e: &crate::config::VirtualServer| e.name.get_ref() == &name) {
                continue;
            }
            let mut v = vs.clone();
            v.name = crate::config::unplaced(name);
            v.address = crate::config::unplaced(std::net::SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
            v.pool = pool.clone();
            v.rule = Vec::new();
            extra.push(v);
        }
    }
    if extra.is_empty() {
        return None;
    }
    let mut c = cfg.clone();
    c.virtual_servers.extend(extra);
    Some(c)
}

/// Where VRRP adverts and sync datagrams come from, by link
/// (`pipeline::police`): the punt classes of the HA protocols.
fn control_view(cfg: &Config) -> snapshot::ControlView {
    let link = |name: &str| cfg.interfaces.iter().position(|i| i.name.get_ref() == name).map(|l| l as u16);
    let mut c = snapshot::ControlView::default();
    for v in &cfg.vrrp {
        let Some(l) = link(v.interface.get_ref()) else { continue };
        c.vrrp_links.push(l);
        c.vrrp_unicast.extend(v.unicast_peers.iter().map(|p| (l, u32::from(*p.get_ref()))));
    }
    c.sync = cfg.sync.as_ref().and_then(|s| Some(snapshot::SyncPeerView { link: link(s.interface.get_ref())?, peer: u32::from(*s.peer.get_ref()), port: *s.port.get_ref() }));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[platform]
worker_lcores = [1]
[[interface]]
name = "outside"
device = "net_null0"
address = "192.0.2.2/24"
[[interface]]
name = "inside"
device = "net_null1"
address = "198.51.100.1/24"
[[route]]
prefix = "203.0.113.0/24"
via = "198.51.100.254"
[[pool]]
name = "web"
algorithm = "weighted-round-robin"
servers = [ { address = "198.51.100.11:80", weight = 3 }, { address = "203.0.113.7:8080" } ]
[[virtual_server]]
name = "www"
address = "192.0.2.100:80"
pool = "web"
[[virtual_server]]
name = "app"
address = "192.0.2.101:80"
forwarding = "full-nat"
pool = "web"
"#;

    fn links() -> Vec<LinkInfo> {
        vec![
            LinkInfo { port_id: 0, vlan: 0, route: false, mac: EthernetAddress([2, 0, 0, 0, 0, 1]), address: "192.0.2.2/24".parse().unwrap(), address6: None, mtu: 1500, host: false },
            LinkInfo { port_id: 1, vlan: 0, route: false, mac: EthernetAddress([2, 0, 0, 0, 0, 2]), address: "198.51.100.1/24".parse().unwrap(), address6: None, mtu: 1500, host: false },
        ]
    }

    #[test]
    fn servers_get_ports_nexthops_and_schedules() {
        let cfg = Config::parse("t", CFG).unwrap();
        let b = build(&cfg, &links()).unwrap();
        let s = &b.snapshot;
        assert_eq!(s.services.len(), 2);
        assert_eq!(s.servers.len(), 4, "one entry per (service, server)");
        assert_eq!(s.servers[0].tx_port, 1);
        assert_eq!(b.nexthops, vec![
            Nexthop { ip: "198.51.100.11".parse().unwrap(), link: 1 },
            Nexthop { ip: "198.51.100.254".parse().unwrap(), link: 1 },
        ]);
        assert_eq!(s.servers[1].nexthop, 1, "routed server goes via the gateway");
        assert_eq!(s.services[0].schedule, Schedule::weighted(&[3, 1]));
        assert_eq!(s.find_service(u32::from(Ipv4Addr::new(192, 0, 2, 101)), 80, 6), Some(1));
        // full-NAT defaults to the self IP facing the servers.
        assert_eq!(&*s.services[1].local_addrs, &[u32::from(Ipv4Addr::new(198, 51, 100, 1))]);
        assert!(s.is_local(u32::from(Ipv4Addr::new(198, 51, 100, 1))));
        assert_eq!(b.owned[0], vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 101)]);
    }

    #[test]
    fn algorithms_become_schedules() {
        let with = |algo: &str| {
            let cfg = Config::parse("t", &CFG.replace("algorithm = \"weighted-round-robin\"", algo)).unwrap();
            build(&cfg, &links()).unwrap().snapshot.services[0].schedule.clone()
        };
        assert_eq!(with("algorithm = \"fastest\""), Schedule::Fastest);
        assert_eq!(with("algorithm = \"least-bandwidth\""), Schedule::LeastBandwidth);
        assert_eq!(with("algorithm = \"composite\""), Schedule::Composite);
        let members = [(u32::from(Ipv4Addr::new(198, 51, 100, 11)), 80, 3), (u32::from(Ipv4Addr::new(203, 0, 113, 7)), 8080, 1)];
        assert_eq!(with("algorithm = \"source-hash\""), Schedule::hashed(HashKey::SourceIp, &members));
        assert_eq!(with("algorithm = \"source-hash\"\nhash = \"source-ip\""), Schedule::hashed(HashKey::SourceIp, &members));
        assert_eq!(with("algorithm = \"source-hash\"\nhash = \"source-destination-ip\""), Schedule::hashed(HashKey::SourceDestIp, &members));
    }

    #[test]
    fn unreachable_server_is_refused() {
        let cfg = Config::parse("t", &CFG.replace("203.0.113.7", "100.64.0.1")).unwrap();
        let e = build(&cfg, &links()).unwrap_err();
        assert!(e.contains("100.64.0.1:8080"), "{e}");
    }

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    /// A config change keeps every index a connection may hold; removed
    /// objects stay (retired) while busy, then free their slots.
    #[test]
    fn rebuilds_keep_slots_and_retire_what_left() {
        let cfg = Config::parse("t", CFG).unwrap();
        let first = build(&cfg, &links()).unwrap();
        // www: servers 0, 1; app: 2, 3.
        assert_eq!(&*first.snapshot.services[0].members, &[0, 1]);
        assert_eq!(&*first.snapshot.services[1].members, &[2, 3]);

        // A server added to `web`, `app` removed while it has connections.
        let added = CFG
            .replace("{ address = \"203.0.113.7:8080\" } ]", "{ address = \"203.0.113.7:8080\" }, { address = \"198.51.100.12:80\" } ]")
            .replace("[[virtual_server]]\nname = \"app\"\naddress = \"192.0.2.101:80\"\nforwarding = \"full-nat\"\npool = \"web\"\n", "");
        let cfg2 = Config::parse("t", &added).unwrap();
        let busy = |k: SlotKind, i: usize| (k == SlotKind::Service && i == 1) || (k == SlotKind::Server && i == 3);
        let b = rebuild(&cfg2, &links(), &first.layout, &first.snapshot, &busy).unwrap();
        let s = &b.snapshot;
        assert_eq!(&*s.services[0].members, &[0, 1, 4], "www keeps 0 and 1, the new server is appended");
        assert_eq!(s.servers[4].ip, ip("198.51.100.12"));
        assert_eq!(s.servers[0], first.snapshot.servers[0], "unchanged server, same slot, same data");
        assert!(s.services[1].retired && s.services[1].members.is_empty(), "app retired");
        assert_eq!(s.services[1].name, "app");
        assert_eq!(s.find_service(ip("192.0.2.101"), 80, 6), None, "no new connections to a removed VIP");
        assert!(!s.is_vip(ip("192.0.2.101")));
        assert!(s.is_local(ip("198.51.100.1")), "its local address still takes replies");
        assert!(b.layout.servers[3].is_retired() && !s.servers[3].enabled, "app's busy server retired");
        assert_eq!(s.servers[3].ip, first.snapshot.servers[3].ip, "a retired server keeps its data for its connections");
        assert!(b.layout.servers[2].is_retired(), "an idle server is retired first too: a worker may be using the previous snapshot");
        assert!(b.owned[0].contains(&Ipv4Addr::new(192, 0, 2, 101)), "ARP still answers for the removed VIP while its connections last");
        assert_eq!(s.owner_service(ip("192.0.2.101"), 80, 6), Some(1), "its connections keep their owner worker");
        assert_eq!(b.server_pools[3], usize::MAX);
        // Still busy: stays.
        let b2 = rebuild(&cfg2, &links(), &b.layout, &b.snapshot, &busy).unwrap();
        assert!(b2.layout.services[1].is_retired() && b2.layout.servers[3].is_retired());
        assert_eq!(b2.layout.servers[2], Slot::Free, "idle and retired: freed");

        // Its connections ended: the next rebuild frees the slots.
        let c = rebuild(&cfg2, &links(), &b.layout, &b.snapshot, &|_, _| false).unwrap();
        assert_eq!(c.layout.services[1], Slot::Free);
        assert_eq!(c.layout.servers[3], Slot::Free);
        assert!(!c.owned[0].contains(&Ipv4Addr::new(192, 0, 2, 101)), "ARP stops answering for the removed VIP");
        assert_eq!(c.snapshot.owner_service(ip("192.0.2.101"), 80, 6), None);
        assert_eq!(&*c.snapshot.services[0].members, &[0, 1, 4]);

        // `app` back: new slots (appended while there is room), same
        // schedule shape.
        let d = rebuild(&cfg, &links(), &c.layout, &c.snapshot, &|_, _| false).unwrap();
        assert_eq!(d.snapshot.find_service(ip("192.0.2.101"), 80, 6), Some(2));
        assert_eq!(&*d.snapshot.services[0].members, &[0, 1], "198.51.100.12 removed again, www's others kept");
        assert_eq!(d.nexthops[..2], first.nexthops[..], "next hops only grow");
    }

    #[test]
    fn a_retired_server_listed_again_gets_its_slot_back() {
        let cfg = Config::parse("t", CFG).unwrap();
        let first = build(&cfg, &links()).unwrap();
        let without = Config::parse("t", &CFG.replace(", { address = \"203.0.113.7:8080\" } ]", " ]")).unwrap();
        let b = rebuild(&without, &links(), &first.layout, &first.snapshot, &|k, i| k == SlotKind::Server && i == 1).unwrap();
        assert!(b.layout.servers[1].is_retired());
        assert_eq!(&*b.snapshot.services[0].members, &[0]);
        let c = rebuild(&cfg, &links(), &b.layout, &b.snapshot, &|_, _| true).unwrap();
        assert!(c.layout.servers[1].is_live());
        assert_eq!(&*c.snapshot.services[0].members, &[0, 1], "its old slot, so its connections count again");
    }

    #[test]
    fn persistence_groups_keep_their_ids_across_rebuilds() {
        let with = |extra: &str| {
            Config::parse(
                "t",
                &CFG.replace("name = \"www\"\naddress = \"192.0.2.100:80\"\npool = \"web\"\n", &format!("name = \"www\"\naddress = \"192.0.2.100:80\"\npool = \"web\"\npersistence = {{ kind = \"source-ip\" }}\npersistence_group = \"shop\"\n{extra}")),
            )
            .unwrap()
        };
        let first = build(&with(""), &links()).unwrap();
        let g = first.snapshot.services[0].persistence.unwrap().group;
        let more = with("\n[[virtual_server]]\nname = \"x\"\naddress = \"192.0.2.103:80\"\npool = \"web\"\nforwarding = \"full-nat\"\npersistence = { kind = \"source-ip\" }\npersistence_group = \"another\"\n");
        let b = rebuild(&more, &links(), &first.layout, &first.snapshot, &|_, _| false).unwrap();
        assert_eq!(b.snapshot.services[0].persistence.unwrap().group, g, "records keep their keys");
        assert_ne!(b.snapshot.services[2].persistence.unwrap().group, g);
    }
}
