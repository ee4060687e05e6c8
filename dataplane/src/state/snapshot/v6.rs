//! The snapshot's IPv6 side: each link's addresses (`PortView6`), and the
//! IPv6 services', self addresses' and Neighbor Discovery groups' indexes.

use super::{FamilyIndex, PortView, SortedIndex, Snapshot, VirtualService};
use crate::wire::EthernetAddress;

/// A link's IPv6 addresses; all zero for a link without IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortView6 {
    /// The self address (global or unique-local), host order.
    pub self_ip: u128,
    /// Its prefix length, the link's subnet (0: no IPv6 on the link).
    pub prefix: u8,
    /// The link-local address, fe80::/64 with the modified EUI-64 of the
    /// link's MAC (RFC 4291 §2.5.1, appendix A).
    pub link_local: u128,
}

impl PortView6 {
    /// The link's IPv6 addresses from its self address and MAC.
    pub fn new(self_ip: u128, prefix: u8, mac: EthernetAddress) -> Self {
        Self { self_ip, prefix, link_local: link_local(mac) }
    }

    /// True when the link has IPv6.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.prefix != 0
    }

    /// True when `ip` is one of the link's own addresses.
    #[inline]
    pub fn is_own(&self, ip: u128) -> bool {
        self.is_on() && (ip == self.self_ip || ip == self.link_local)
    }

    /// True when `ip` is on the link's subnet (or link-local).
    #[inline]
    pub fn on_link(&self, ip: u128) -> bool {
        let mask = |p: u8| if p == 0 { 0 } else { u128::MAX << (128 - u32::from(p.min(128))) };
        self.is_on() && (ip & mask(self.prefix) == self.self_ip & mask(self.prefix) || ip & mask(64) == LINK_LOCAL_PREFIX)
    }
}

/// fe80::/64 (RFC 4291 §2.5.6).
pub const LINK_LOCAL_PREFIX: u128 = 0xfe80 << 112;

/// The link-local address of `mac`: fe80::/64 and the modified EUI-64
/// interface identifier (the MAC with ff:fe in its middle and the
/// universal/local bit flipped; RFC 4291 appendix A).
pub fn link_local(mac: EthernetAddress) -> u128 {
    let m = mac.0;
    let iid = u64::from_be_bytes([m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    LINK_LOCAL_PREFIX | u128::from(iid)
}

impl PortView {
    /// True when `ip` is on this port's own subnet.
    #[inline]
    pub fn on_link(&self, ip: u32) -> bool {
        self.netmask != 0 && ip & self.netmask == self.self_ip & self.netmask
    }
}

impl VirtualService {
    /// Its key in the IPv6 indexes: its IPv6 VIP, or, translating from
    /// IPv4 (`xlate`), its IPv4 VIP mapped; 0 for none.
    #[inline]
    pub fn key6(&self) -> u128 {
        if self.ip6 != 0 {
            self.ip6
        } else if self.xlate {
            crate::forward::xlate::mapped(self.ip)
        } else {
            0
        }
    }
}

impl Snapshot {
    /// The IPv6 side of `index`: the services' lookup indexes and local
    /// addresses, the self addresses and the solicited-node groups of each
    /// link.
    pub(super) fn index_v6(&mut self) {
        let live = |s: &VirtualService| s.key6() != 0 && !s.retired;
        let vips = self.services.iter().enumerate().filter(|(_, s)| live(s)).map(|(i, s)| ((s.key6(), s.port, s.proto), i as u16)).collect();
        let mut owners: Vec<(bool, usize)> = self.services.iter().enumerate().filter(|(_, s)| s.key6() != 0).map(|(i, s)| (s.retired, i)).collect();
        owners.sort_unstable();
        let owners = owners.into_iter().filter_map(|(_, i)| self.services.get(i).map(|s| ((s.key6(), s.port, s.proto), i as u16))).collect();
        // A `source-ip` persistent NAT service's IPv6 servers: their replies'
        // owner hashes the client under the prefix (as `index` for IPv4).
        let mut masked = Vec::new();
        for s in self.servers.iter().filter(|s| s.ip6 != [0; 16]) {
            let Some(vs) = self.services.get(s.vs as usize).filter(|v| v.forwarding == super::Forwarding::Nat) else { continue };
            if let Some(prefix) = vs.persistence.and_then(|p| p.owner_prefix()) {
                masked.push(((s.ip6(), s.port, vs.proto), prefix));
            }
        }
        self.v6 = FamilyIndex { vips: SortedIndex::new(vips), owners: SortedIndex::new(owners), masked_servers: SortedIndex::new(masked) };
        let mut sources: Vec<(u128, u16)> = self.servers.iter().filter(|s| s.ip6 != [0; 16]).map(|s| (s.ip6(), s.tx_port)).collect();
        sources.sort_unstable();
        sources.dedup();
        self.probe_sources6 = sources;
        // A translating service's IPv4 servers by their mapped addresses.
        let xlated = |s: &crate::lb::RealServer| self.services.get(s.vs as usize).is_some_and(|v| v.xlate);
        let mut servers: Vec<u128> = self.servers.iter().map(|s| if s.ip6 == [0; 16] && xlated(s) { crate::forward::xlate::mapped(s.ip) } else { s.ip6() }).filter(|a| *a != 0).collect();
        servers.sort_unstable();
        servers.dedup();
        self.servers6 = servers;
        let mut locals: Vec<u128> = self.services.iter().flat_map(|s| s.local_addrs6.iter().copied()).collect();
        locals.sort_unstable();
        locals.dedup();
        self.local_addrs6 = locals;
        let mut selfs = Vec::new();
        let mut groups = Vec::new();
        // Retired services' too: their connections drain.
        let answered: Vec<u128> = self.services.iter().flat_map(|s| std::iter::once(s.ip6).chain(s.local_addrs6.iter().copied())).filter(|a| *a != 0).collect();
        let mut owned = Vec::new();
        for (li, pv) in self.ports.iter().enumerate() {
            let Some(v6) = pv.as_ref().map(|p| p.v6).filter(PortView6::is_on) else { continue };
            for a in [v6.self_ip, v6.link_local] {
                selfs.push(a);
                owned.push((li as u16, a));
            }
            // The VIPs and local addresses on its subnet: ND answers for
            // them there.
            owned.extend(answered.iter().filter(|a| v6.on_link(**a)).map(|a| (li as u16, *a)));
        }
        for (li, a) in &owned {
            groups.push((*li, *a as u32 & 0x00ff_ffff));
        }
        owned.sort_unstable();
        owned.dedup();
        self.nd_owned = owned;
        selfs.sort_unstable();
        selfs.dedup();
        groups.sort_unstable();
        groups.dedup();
        self.self_ips6 = selfs;
        self.nd_groups = groups;
    }

    /// The IPv6 virtual server listening on ip:port/proto.
    #[inline]
    pub fn find_service6(&self, ip: u128, port: u16, proto: u8) -> Option<u16> {
        self.v6.vips.get((ip, port, proto))
    }

    /// `owner_service` for IPv6.
    #[inline]
    pub fn owner_service6(&self, ip: u128, port: u16, proto: u8) -> Option<u16> {
        self.v6.owners.get((ip, port, proto))
    }

    /// `reply_owner_prefix` for IPv6.
    #[inline]
    pub fn reply_owner_prefix6(&self, ip: u128, port: u16, proto: u8) -> Option<u8> {
        if self.v6.masked_servers.is_empty() {
            return None;
        }
        self.v6.masked_servers.get((ip, port, proto))
    }

    /// An IPv6 server's address (any service's, retired ones' too).
    #[inline]
    pub fn is_server6(&self, ip: u128) -> bool {
        self.servers6.binary_search(&ip).is_ok()
    }

    /// True when some live service listens on IPv6 `ip` (any port).
    pub fn is_vip6(&self, ip: u128) -> bool {
        ip != 0 && self.services.iter().any(|s| s.ip6 == ip && !s.retired)
    }

    /// An IPv6 full-NAT local address.
    #[inline]
    pub fn is_local6(&self, ip: u128) -> bool {
        self.local_addrs6.binary_search(&ip).is_ok()
    }

    /// An IPv6 address of the box on any link (self or link-local).
    #[inline]
    pub fn is_self6(&self, ip: u128) -> bool {
        self.self_ips6.binary_search(&ip).is_ok()
    }

    /// Whether Neighbor Discovery to `dst` that arrived on `link` may be
    /// for the box: to one of the link's own addresses, to all-nodes
    /// (ff02::1: unsolicited adverts), or to the solicited-node group of
    /// an address the box answers for there.
    #[inline]
    pub fn nd_for_us(&self, link: u16, dst: u128) -> bool {
        const ALL_NODES: u128 = 0xff02 << 112 | 1;
        const SOLICITED: u128 = 0xff02 << 112 | 1 << 32 | 0xff << 24;
        if !self.port(link).is_some_and(|p| p.v6.is_on()) {
            return false;
        }
        if dst == ALL_NODES || self.nd_owned.binary_search(&(link, dst)).is_ok() {
            return true;
        }
        dst & !0x00ff_ffff == SOLICITED && self.nd_groups.binary_search(&(link, dst as u32 & 0x00ff_ffff)).is_ok()
    }

}
