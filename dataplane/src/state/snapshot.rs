//! The immutable view of the configuration the workers read: ports, self
//! IPs, virtual servers, real servers, full-NAT local addresses. Built by
//! the control plane, published through `rcu`, never mutated in place.

pub use crate::conntrack::Forwarding;
pub use crate::wire::tunnel::TunnelKind;
use crate::conntrack::Addr;
use crate::lb::{Group, Members, Persistence, RealServer, Schedule};
pub use crate::limits::{MAX_NEXTHOPS, MAX_SERVERS, MAX_SERVICES};
use crate::wire::EthernetAddress;

/// A data port as the workers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortView {
    pub mac: EthernetAddress,
    pub self_ip: u32,
    /// The self IP's subnet mask: a NAT client inside it shares the
    /// servers' segment and is source-NATed to the self IP (hairpin); 0:
    /// never.
    pub netmask: u32,
    /// The link's IP MTU (`[[interface]] mtu`): an encapsulated packet
    /// must fit it.
    pub mtu: u16,
    /// The DPDK port the link is on (several VLAN links share one).
    pub port: u16,
    /// Its 802.1Q VLAN (1-4094), 0 for untagged frames.
    pub vlan: u16,
    /// Route what arrives here for other hosts (`[[interface]] route`).
    pub route: bool,
    /// Its IPv6 addresses, when it has some (`[[interface]] addresses`).
    pub v6: PortView6,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualService {
    pub name: String,
    /// An IPv4 VIP (0 for an IPv6 one).
    pub ip: u32,
    /// An IPv6 VIP (0 for an IPv4 one): its connections live in the
    /// workers' IPv6 tables.
    pub ip6: u128,
    pub port: u16,
    pub proto: u8,
    pub forwarding: Forwarding,
    /// Its servers: indexes into the snapshot's `servers`. A schedule's
    /// positions index this list. Indexes are stable across snapshots for
    /// as long as a server stays (connection entries hold them), so a
    /// service's members need not be contiguous.
    pub members: Box<[u16]>,
    /// Its members' positions by priority group, highest first
    /// (`lb::sched::Group`); made by `Snapshot::index`.
    pub groups: Box<[Group]>,
    /// Removed by the operator; kept (with no members, out of the VIP
    /// index) until its connections have ended.
    pub retired: bool,
    /// Its VIP belongs to a VRRP instance that is not master here: no new
    /// connection and no packet of an existing one is forwarded (the peer
    /// owns the address; entries synced from it wait for a takeover).
    pub standby: bool,
    /// `dsr-dscp`: the code packets to its servers carry (RFC 2474; 1-63).
    pub dscp: u8,
    /// `dsr-tunnel`: how packets to its servers are encapsulated.
    pub tunnel: Option<TunnelSpec>,
    /// `gateway`: the link whose arriving traffic it takes (`u16::MAX`
    /// for none), and the gateway service on the firewalls' other side.
    pub link: u16,
    pub pair: Option<u16>,
    pub schedule: Schedule,
    /// full-NAT source addresses (empty for NAT).
    pub local_addrs: Box<[u32]>,
    /// An IPv6 full-NAT service's source addresses; a translating
    /// service's (`xlate`) on its servers' side, IPv4 ones mapped
    /// (`forward::xlate::mapped`).
    pub local_addrs6: Box<[u128]>,
    /// full-NAT between the families (RFC 7915): an IPv6 VIP over IPv4
    /// servers, or an IPv4 VIP over IPv6 servers. Its connections live in
    /// the IPv6 table, the IPv4 side as mapped addresses.
    pub xlate: bool,
    pub persistence: Option<Persistence>,
    /// TCP NAT and full-NAT services: when the box answers SYNs itself
    /// with cookies (`pipeline::synproxy`).
    pub syn_proxy: SynProxy,
    /// TCP full-NAT: a PROXY protocol v2 header goes before each
    /// connection's client stream (`forward::proxy_header`; never with the
    /// SYN proxy).
    pub proxy_header: bool,
}

/// When a virtual server's SYNs are answered by the box (SYN cookies,
/// RFC 4987) rather than passed to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynProxy {
    /// Never (direct server return: the box never sees the server's
    /// sequence numbers).
    Off,
    /// Always.
    On,
    /// While the worker's half-open entries pass `[defence]
    /// syn_proxy_threshold`, and for 10 s after the SYN rate that filled
    /// them ends.
    #[default]
    Auto,
}

/// `[[snat]]`: connections the servers under `net/mask` open themselves
/// (updates, DNS, mail; seeds 002 and 004) leave source-NATed to `addr`,
/// from its ports `port_min..=port_max`. Only what arrives on the servers'
/// link `link` is theirs: the same source from anywhere else is spoofed
/// (review S3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnatRule {
    pub net: u32,
    pub mask: u32,
    pub link: u16,
    pub addr: u32,
    pub port_min: u16,
    pub port_max: u16,
}

/// What the control lcore's protocols expect, keyed by what a remote
/// sender cannot choose alone: the link a frame arrived on, its
/// destination and port (review S2; keepalived binds its sockets per
/// interface the same way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlView {
    /// Links with a VRRP instance: adverts to 224.0.0.18 arrive there.
    pub vrrp_links: Vec<u16>,
    /// (link, peer address) of VRRP unicast peers: their adverts arrive
    /// on that link, to its self IP.
    pub vrrp_unicast: Vec<(u16, u32)>,
    /// The `[sync]` peer: its datagrams arrive on this link, from this
    /// address, to the link's self IP at this UDP port.
    pub sync: Option<SyncPeerView>,
}

/// The `[sync]` peer, as `ControlView::sync` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPeerView {
    pub link: u16,
    pub peer: u32,
    pub port: u16,
}

/// A route: destinations under `net/mask` leave link `link`, to the
/// gateway in neighbour slot `via`, or with none to the destination itself
/// (on the link's subnet, resolved on demand: `Neighbors::host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteView {
    pub net: u32,
    pub mask: u32,
    pub link: u16,
    pub via: Option<u16>,
}

/// A `dsr-tunnel` virtual server's encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSpec {
    pub kind: TunnelKind,
    /// Outer sources: the prefix (`tunnel_source`) and its host bits, one
    /// address per flow (`forward::tunnel::entropy`); with no prefix, the
    /// self IP of the port towards the server and a mask of 0.
    pub source: Option<(u32, u32)>,
    /// GUE: the servers' UDP port.
    pub port: u16,
}

impl VirtualService {
    /// A minimal service for tests.
    pub fn test(forwarding: Forwarding) -> Self {
        VirtualService {
            name: "test".into(),
            ip: 0,
            ip6: 0,
            port: 0,
            proto: 6,
            forwarding,
            members: Box::new([]),
            groups: Box::new([]),
            retired: false,
            standby: false,
            dscp: 0,
            tunnel: None,
            link: u16::MAX,
            pair: None,
            schedule: Schedule::Sequence(Box::new([])),
            local_addrs: Box::new([]),
            local_addrs6: Box::new([]),
            xlate: false,
            persistence: None,
            syn_proxy: if matches!(forwarding, Forwarding::Nat | Forwarding::FullNat) { SynProxy::Auto } else { SynProxy::Off },
            proxy_header: false,
        }
    }
}

impl Members for VirtualService {
    #[inline(always)]
    fn members(&self) -> &[u16] {
        &self.members
    }
    #[inline(always)]
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    #[inline(always)]
    fn groups(&self) -> &[Group] {
        &self.groups
    }
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The data links (`[[interface]]`), by link index: a port, or one
    /// VLAN on a port. `Verdict::Forward` and the entries' client port
    /// name links; `PortView::port` is the DPDK port under one.
    pub ports: Vec<Option<PortView>>,
    pub services: Vec<VirtualService>,
    pub servers: Vec<RealServer>,
    /// Addresses the box itself answers on (self IPs): punted when no flow
    /// matches.
    pub self_ips: Vec<u32>,
    /// Every full-NAT local address of every service, distinct.
    pub local_addrs: Vec<u32>,
    /// Persistence records per worker, allocated by a worker when a
    /// snapshot with persistence first reaches it.
    pub persist_records: u32,
    /// Source NAT of the servers' own connections (`[[snat]]`).
    pub snat: Vec<SnatRule>,
    /// Where routed traffic (source NAT, `route` links) goes, longest
    /// prefix first: the links' subnets and `[[route]]`s.
    pub routes: Vec<RouteView>,
    /// Per link: its gateway service, if any (`index`).
    pub gateways: Vec<Option<u16>>,
    /// Where the control lcore's protocols expect their frames from
    /// (`pipeline::police`): VRRP's links and unicast peers, the `[sync]`
    /// peer.
    pub control: ControlView,
    /// (address, link) of every server, and of the VIP of a DSR service on
    /// each of its servers' links, sorted (`index`): where a health probe's
    /// answer comes from (`PuntClass::Probe`).
    probe_sources: Vec<(u32, u16)>,
    /// The exception path (`Forwarding::Local`, `LocalOut`): the host
    /// link and the addresses the appliance's own stack connects from.
    pub host: Option<HostView>,
    /// The IPv4 lookup indexes (IPv6 will add its own beside).
    v4: FamilyIndex<u32>,
    /// The IPv6 lookup indexes.
    v6: FamilyIndex<u128>,
    /// Every IPv6 full-NAT local address, distinct and sorted (`index`).
    pub local_addrs6: Vec<u128>,
    /// The IPv6 self addresses of every link (global and link-local),
    /// sorted (`index`).
    pub self_ips6: Vec<u128>,
    /// (link, low 24 bits) of every IPv6 address the box answers Neighbor
    /// Discovery for on a link, sorted (`index`): a solicitation to a
    /// solicited-node group (ff02::1:ffXX:XXXX, RFC 4291 §2.7.1) is punted
    /// only when it may be for one of them.
    nd_groups: Vec<(u16, u32)>,
    /// (link, address) of every IPv6 address the box answers Neighbor
    /// Discovery for: each link's own, and the VIPs and local addresses on
    /// its subnet (`index`), sorted.
    nd_owned: Vec<(u16, u128)>,
    /// Every IPv6 server's address, sorted (`index`): what a NAT answer
    /// comes from.
    servers6: Vec<u128>,
    /// (address, link) of every IPv6 server, sorted: where an IPv6 health
    /// probe's answer comes from (`PuntClass::Probe`; their per-source
    /// buckets follow the IPv4 ones').
    probe_sources6: Vec<(u128, u16)>,
}

/// The host link: a TAP whose kernel side is the appliance's own network
/// stack (the L7 engine's sockets), in a network namespace of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    /// Its link index (`ports`; the kernel side's MAC is its `mac`).
    pub link: u16,
    /// The addresses the stack opens connections from (`index`: the
    /// `Local` services' `local_addrs`), sorted: what arrives on the host
    /// link from one of them opens a `LocalOut` entry.
    pub sources: Vec<u32>,
}

/// Sorted (address, port, protocol) -> value pairs of one address family,
/// looked up by binary search.
#[derive(Debug, Clone)]
struct SortedIndex<A: Addr, V>(Vec<(A::ServiceKey, V)>);

impl<A: Addr, V: Copy> Default for SortedIndex<A, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<A: Addr, V: Copy> SortedIndex<A, V> {
    /// From pairs whose keys may repeat: the first of each key stays.
    fn new(pairs: Vec<((A, u16, u8), V)>) -> Self {
        let mut pairs: Vec<(A::ServiceKey, V)> = pairs.into_iter().map(|((a, port, proto), v)| (a.service_key(port, proto), v)).collect();
        pairs.sort_by_key(|e| e.0);
        pairs.dedup_by_key(|e| e.0);
        Self(pairs)
    }

    #[inline]
    fn get(&self, (a, port, proto): (A, u16, u8)) -> Option<V> {
        let key = a.service_key(port, proto);
        self.0.binary_search_by_key(&key, |e| e.0).ok().and_then(|i| self.0.get(i)).map(|e| e.1)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The lookup indexes of one address family.
#[derive(Debug, Clone, Default)]
struct FamilyIndex<A: Addr> {
    /// (VIP, port, protocol) -> service index: services taking new
    /// connections.
    vips: SortedIndex<A, u16>,
    /// The same with retired services too (a live one wins a shared key):
    /// their open connections keep their owner worker.
    owners: SortedIndex<A, u16>,
    /// (server, port, protocol) -> persistence prefix: NAT servers of
    /// `source-ip` persistent services, whose replies are owned by the
    /// client address alone (`pipeline::owner`).
    masked_servers: SortedIndex<A, u8>,
}

impl Snapshot {
    /// The link a frame that arrived on DPDK port `port` with VLAN `vlan`
    /// (None or 0: untagged) belongs to; None when the port has no such
    /// link (`unknown-vlan`). Links are few: the untagged link whose index
    /// is its port (the usual case) is found at once, others by a scan.
    #[inline]
    pub fn link_of(&self, port: u16, vlan: Option<u16>) -> Option<u16> {
        let vlan = vlan.unwrap_or(0);
        let hit = |p: &Option<PortView>| p.as_ref().is_some_and(|p| p.port == port && p.vlan == vlan);
        if self.ports.get(port as usize).is_some_and(hit) {
            return Some(port);
        }
        self.ports.iter().position(hit).map(|i| i as u16)
    }

    /// The source-NAT rule for a connection a host at `src` opens, if any.
    #[inline]
    pub fn snat_rule(&self, src: u32) -> Option<SnatRule> {
        self.snat.iter().find(|r| src & r.mask == r.net).copied()
    }

    /// The gateway service of link `link`, if any.
    #[inline]
    pub fn gateway_of(&self, link: u16) -> Option<u16> {
        self.gateways.get(link as usize).copied().flatten()
    }

    /// The route to `dst`: the longest prefix that holds it.
    #[inline]
    pub fn route(&self, dst: u32) -> Option<RouteView> {
        self.routes.iter().find(|r| dst & r.mask == r.net).copied()
    }

    /// Builds the lookup index; call after filling `services`.
    pub fn index(&mut self) {
        for v in &mut self.services {
            v.groups = Group::of(&v.members, &self.servers);
        }
        // Retired services take no new connections; their local addresses
        // and reply owners stay until their entries are gone.
        // (A `Local` service of no address schedules a pool for the L7
        // engine's rules: it takes no connection itself.)
        let pool_only = |s: &VirtualService| s.forwarding == Forwarding::Local && s.ip == 0;
        // (IPv6 services are in `v6`, below.)
        let vips = self.services.iter().enumerate().filter(|(_, s)| !s.retired && !pool_only(s) && s.ip6 == 0).map(|(i, s)| ((s.ip, s.port, s.proto), i as u16)).collect();
        // Live first, so that the live service of a key stays.
        let mut owners: Vec<(bool, usize)> = self.services.iter().enumerate().filter(|(_, s)| s.ip != 0).map(|(i, s)| (s.retired, i)).collect();
        owners.sort_unstable();
        let owners = owners.into_iter().filter_map(|(_, i)| self.services.get(i).map(|s| ((s.ip, s.port, s.proto), i as u16))).collect();
        let mut locals: Vec<u32> = self.services.iter().filter(|s| s.forwarding != Forwarding::Local).flat_map(|s| s.local_addrs.iter().copied()).collect();
        // The host's sources: its ports are the kernel's, above the
        // full-NAT range (`forward::HOST_PORT_MIN`).
        if let Some(h) = self.host.as_mut() {
            let mut sources: Vec<u32> = self.services.iter().filter(|s| s.forwarding == Forwarding::Local).flat_map(|s| s.local_addrs.iter().copied()).collect();
            sources.sort_unstable();
            sources.dedup();
            h.sources = sources;
        }
        // Source NAT addresses: their ports own the replies as full-NAT's.
        locals.extend(self.snat.iter().map(|r| r.addr));
        self.gateways = vec![None; self.ports.len()];
        for (i, v) in self.services.iter().enumerate().filter(|(_, v)| v.forwarding == Forwarding::Gateway && !v.retired) {
            if let Some(g) = self.gateways.get_mut(v.link as usize) {
                *g = Some(i as u16);
            }
        }
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.mask.count_ones()));
        // Hairpin: a NAT service's clients on its servers' segment are
        // source-NATed to that port's self IP, whose local ports own their
        // replies as full-NAT's do.
        for s in self.servers.iter().filter(|s| s.ip != 0) {
            if self.services.get(s.vs as usize).is_some_and(|v| v.forwarding == Forwarding::Nat) {
                if let Some(pv) = self.port(s.tx_port).filter(|pv| pv.netmask != 0) {
                    locals.push(pv.self_ip);
                }
            }
        }
        locals.sort_unstable();
        locals.dedup();
        self.local_addrs = locals;
        // Every server of such a service, removed ones with open
        // connections included (they keep the service's index).
        let mut masked = Vec::new();
        for s in self.servers.iter().filter(|s| s.ip != 0) {
            let Some(vs) = self.services.get(s.vs as usize).filter(|v| v.forwarding == Forwarding::Nat) else { continue };
            if let Some(prefix) = vs.persistence.and_then(|p| p.owner_prefix()) {
                masked.push(((s.ip, s.port, vs.proto), prefix));
            }
        }
        // Probes talk to a server's address on its link; a DSR server is
        // probed at its VIP and answers from it (`health::via`).
        let dsr_vip = |s: &RealServer| self.services.get(s.vs as usize).filter(|v| v.forwarding.is_dsr()).map(|v| (v.ip, s.tx_port));
        let mut sources: Vec<(u32, u16)> = self.servers.iter().filter(|s| s.ip != 0).flat_map(|s| [Some((s.ip, s.tx_port)), dsr_vip(s)]).flatten().filter(|(a, _)| *a != 0).collect();
        sources.sort_unstable();
        sources.dedup();
        self.probe_sources = sources;
        self.index_v6();
        self.control.vrrp_links.sort_unstable();
        self.control.vrrp_links.dedup();
        self.control.vrrp_unicast.sort_unstable();
        self.control.vrrp_unicast.dedup();
        self.v4 = FamilyIndex { vips: SortedIndex::new(vips), owners: SortedIndex::new(owners), masked_servers: SortedIndex::new(masked) };
    }

    /// For a NAT reply from `ip:port`: the prefix its connection's owner
    /// hashes the client address under, when a `source-ip` persistent
    /// service uses that server.
    #[inline]
    pub fn reply_owner_prefix(&self, ip: u32, port: u16, proto: u8) -> Option<u8> {
        if self.v4.masked_servers.is_empty() {
            return None;
        }
        self.v4.masked_servers.get((ip, port, proto))
    }

    /// The virtual server listening on ip:port/proto.
    #[inline]
    pub fn find_service(&self, ip: u32, port: u16, proto: u8) -> Option<u16> {
        self.v4.vips.get((ip, port, proto))
    }

    /// The service whose connections `ip:port/proto` addresses, for
    /// ownership: like `find_service`, and retired services too.
    #[inline]
    pub fn owner_service(&self, ip: u32, port: u16, proto: u8) -> Option<u16> {
        self.v4.owners.get((ip, port, proto))
    }

    /// True when some service listens on `ip` (any port).
    pub fn is_vip(&self, ip: u32) -> bool {
        self.services.iter().any(|s| s.ip == ip && s.ip6 == 0 && !s.retired)
    }

    /// A server's address on its link, or a DSR service's VIP on one of
    /// its servers' links (`PuntClass::Probe`).
    #[inline]
    pub fn is_probe_source(&self, ip: u32, link: u16) -> bool {
        self.probe_sources.binary_search(&(ip, link)).is_ok()
    }

    /// `is_probe_source`'s slot: the source's place among them, for the
    /// per-source punt buckets (`pipeline::police`).
    #[inline]
    pub fn probe_source_index(&self, ip: u32, link: u16) -> Option<usize> {
        self.probe_sources.binary_search(&(ip, link)).ok()
    }

    /// An IPv6 server's address on its link, and its per-source bucket's
    /// slot (after every IPv4 source's).
    #[inline]
    pub fn probe_source_index6(&self, ip: u128, link: u16) -> Option<usize> {
        self.probe_sources6.binary_search(&(ip, link)).ok().map(|i| self.probe_sources.len() + i)
    }

    /// A server's address (or a DSR service's VIP), on any link.
    #[inline]
    pub fn is_server_address(&self, ip: u32) -> bool {
        let i = self.probe_sources.partition_point(|(a, _)| *a < ip);
        self.probe_sources.get(i).is_some_and(|(a, _)| *a == ip)
    }

    #[inline]
    pub fn is_self(&self, ip: u32) -> bool {
        self.self_ips.contains(&ip)
    }

    /// The host link's index, when the box has one.
    #[inline]
    pub fn host_link(&self) -> Option<u16> {
        self.host.as_ref().map(|h| h.link)
    }

    /// An address the appliance's own stack connects from.
    #[inline]
    pub fn is_host_source(&self, ip: u32) -> bool {
        self.host.as_ref().is_some_and(|h| h.sources.binary_search(&ip).is_ok())
    }

    #[inline]
    pub fn is_local(&self, ip: u32) -> bool {
        self.local_addrs.contains(&ip)
    }

    #[inline]
    pub fn port(&self, id: u16) -> Option<&PortView> {
        self.ports.get(id as usize).and_then(Option::as_ref)
    }
}

mod v6;
pub use v6::{link_local, PortView6, LINK_LOCAL_PREFIX};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_lookup() {
        let mut s = Snapshot::default();
        for (i, port) in [80u16, 443, 53].iter().enumerate() {
            let mut v = VirtualService::test(Forwarding::Nat);
            v.ip = 0xc0000264;
            v.port = *port;
            v.proto = if *port == 53 { 17 } else { 6 };
            v.local_addrs = vec![0xc6336401 + i as u32 % 2].into_boxed_slice();
            s.services.push(v);
        }
        s.index();
        assert_eq!(s.find_service(0xc0000264, 443, 6), Some(1));
        assert_eq!(s.find_service(0xc0000264, 53, 17), Some(2));
        assert_eq!(s.find_service(0xc0000264, 53, 6), None);
        assert_eq!(s.find_service(0xc0000265, 80, 6), None);
        assert!(s.is_vip(0xc0000264));
        assert_eq!(s.local_addrs, vec![0xc6336401, 0xc6336402]);
    }
}
