//! The IPv6 rules (issue 24, in stages): self addresses and routes, and
//! what an IPv6 virtual server may be in this release: `nat`, `full-nat`
//! `dsr-l2` or `dsr-tunnel` over IPv6 servers of its own family, TCP or UDP, without
//! what only IPv4 has yet (persistence, the SYN proxy always on, the PROXY
//! header, local addresses of its own, ICMPv6 echo checks, checks of
//! dsr-l2 servers).

use super::cidr::ipv6_unusable;
use super::{Config, ConfigError, Forwarding, PersistenceKind, Source, SynProxyMode, VirtualServer};
use std::collections::HashSet;

impl Config {
    /// The IPv6 self addresses (one per link, none twice) and routes
    /// (each next hop on a link's IPv6 subnet; no prefix twice).
    pub(super) fn validate_ipv6(&self, src: &Source) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for i in &self.interfaces {
            if let Some(a) = i.address6 {
                if !seen.insert(a.addr) {
                    return Err(src.error(Some(i.name.span()), format!("interface {:?}: IPv6 address {} is another interface's too", i.name.get_ref(), a.addr)));
                }
            }
        }
        let mut prefixes = HashSet::new();
        for r in &self.routes {
            let super::AnyRoute::V6(r6) = r.get_ref() else { continue };
            if !self.interfaces.iter().any(|i| i.address6.is_some_and(|a| a.contains(r6.via))) {
                return Err(src.error(Some(r.span()), format!("route {}: via {} is on no interface's IPv6 subnet", r6.prefix, r6.via)));
            }
            if !prefixes.insert((r6.prefix.network(), r6.prefix.prefix_len)) {
                return Err(src.error(Some(r.span()), format!("route {}: the prefix is routed twice", r6.prefix)));
            }
        }
        Ok(())
    }

    /// Every virtual server's servers are of one family, its VIP's or the
    /// other (translated, full-NAT only), and an IPv6 one is what this
    /// release forwards.
    pub(super) fn validate_ipv6_services(&self, src: &Source) -> Result<(), ConfigError> {
        for p in &self.pools {
            for s in &p.servers {
                if let std::net::IpAddr::V6(a) = s.address.get_ref().ip() {
                    if let Some(why) = ipv6_unusable(a) {
                        return Err(src.error(Some(s.address.span()), format!("pool {:?}: server {} is {why}", p.name.get_ref(), s.address.get_ref())));
                    }
                }
            }
        }
        for vs in &self.virtual_servers {
            let name = vs.name.get_ref();
            // Its pool, its rules' pools, and their sorry pools.
            let by_name = |n: &str| self.pools.iter().find(|p| p.name.get_ref() == n);
            let mut names: Vec<&str> = vec![vs.pool.get_ref().as_str()];
            for r in &vs.rule {
                names.extend(r.pool.iter().map(|p| p.get_ref().as_str()));
                names.extend(r.pools.iter().flat_map(|l| l.get_ref().iter().map(|p| p.get_ref().as_str())));
            }
            let pools: Vec<&super::Pool> = names.iter().filter_map(|n| by_name(n)).collect();
            let sorry: Vec<&super::Pool> = pools.iter().filter_map(|p| p.sorry_pool.as_ref()).filter_map(|n| by_name(n.get_ref())).collect();
            // One family per virtual server's servers; of the other family
            // than the VIP, the service translates (RFC 7915).
            let mut all = pools.iter().chain(sorry.iter()).flat_map(|p| p.servers.iter());
            let servers_v6 = all.next().map(|s| s.address.get_ref().is_ipv6());
            if let Some(s) = all.find(|s| Some(s.address.get_ref().is_ipv6()) != servers_v6) {
                return Err(src.error(Some(s.address.span()), format!("virtual_server {name:?}: server {} is of another address family than the virtual server's other servers: one family per virtual server (its pools, sorry pools and rules' pools)", s.address.get_ref())));
            }
            let translated = servers_v6.is_some_and(|v6| v6 != vs.is_v6());
            if translated {
                self.validate_translation(src, vs)?;
            }
            let pool = self.pools.iter().find(|p| p.name.get_ref() == vs.pool.get_ref());
            let sorry = pool.and_then(|p| p.sorry_pool.as_ref()).and_then(|n| self.pools.iter().find(|p| p.name.get_ref() == n.get_ref()));
            if vs.is_v6() {
                self.validate_ipv6_service(src, vs)?;
            }
            if servers_v6 == Some(true) {
                let checks: Vec<&super::HealthCheck> = pool.into_iter().chain(sorry).flat_map(|p| p.check_names()).filter_map(|n| self.health_checks.iter().find(|h| h.name.get_ref() == n.get_ref())).collect();
                if !checks.is_empty() && matches!(vs.forwarding.get_ref(), Forwarding::DsrL2 | Forwarding::DsrDscp | Forwarding::DsrTunnel) {
                    return Err(src.error(Some(vs.pool.span()), format!("virtual_server {name:?}: pool {:?} has health checks: a DSR server over IPv6 ({:?}) would be probed at the VIP, which is not in this release", vs.pool.get_ref(), vs.forwarding.get_ref())));
                }
            }
        }
        Ok(())
    }

    /// A virtual server over servers of the other family (RFC 7915
    /// translation, DPVS's NAT64): full-NAT only (the servers answer the
    /// box's local address of their own family), without what translation
    /// does not carry yet.
    fn validate_translation(&self, src: &Source, vs: &VirtualServer) -> Result<(), ConfigError> {
        let name = vs.name.get_ref();
        let refuse = |span, why: &str| Err(src.error(Some(span), format!("virtual_server {name:?} (servers of the other family than its VIP: translated): {why}")));
        if *vs.forwarding.get_ref() != Forwarding::FullNat {
            // (At the pool: `forwarding` may be left to its default.)
            return refuse(vs.pool.span(), &format!("forwarding must be \"full-nat\", not {:?} (the servers answer the box's local address of their family)", vs.forwarding.get_ref()));
        }
        if vs.engine_served() {
            return refuse(vs.name.span(), "protocol is \"tcp\" or \"udp\" (the L7 engine does not translate)");
        }
        if let Some(p) = &vs.persistence {
            return refuse(p.span(), "persistence of translated connections is not in this release");
        }
        if let Some(p) = vs.syn_proxy.as_ref().filter(|m| *m.get_ref() == SynProxyMode::On) {
            return refuse(p.span(), "syn_proxy = \"on\" is not in this release for translated connections");
        }
        if let Some(p) = &vs.proxy_protocol {
            return refuse(p.span(), "proxy_protocol is not in this release for translated connections");
        }
        if !vs.local_addresses.is_empty() {
            return refuse(vs.name.span(), "local_addresses: a translated connection goes out from the self address of its family on the servers' interface");
        }
        if !self.vrrp.is_empty() || self.sync.is_some() {
            return refuse(vs.address.span(), "translation with [[vrrp]] or [sync]: the sync of translated (IPv6-table) connections is not in this release");
        }
        Ok(())
    }

    /// What an IPv6 virtual server may be in this release.
    fn validate_ipv6_service(&self, src: &Source, vs: &VirtualServer) -> Result<(), ConfigError> {
        let name = vs.name.get_ref();
        let refuse = |span, why: &str| Err(src.error(Some(span), format!("virtual_server {name:?} (IPv6): {why}")));
        let std::net::IpAddr::V6(vip) = vs.address.get_ref().ip() else { return Ok(()) };
        if let Some(why) = ipv6_unusable(vip) {
            return refuse(vs.address.span(), &format!("the VIP is {why}"));
        }
        if self.interfaces.iter().any(|i| i.address6.is_some_and(|a| a.addr == vip)) {
            return refuse(vs.address.span(), "the VIP is a self address");
        }
        // Both boxes of a pair would answer for it (VRRP's addresses are
        // IPv4's) and its connections are not synced.
        if !self.vrrp.is_empty() || self.sync.is_some() {
            return refuse(vs.address.span(), "an IPv6 VIP with [[vrrp]] or [sync]: VRRP and sync over IPv6 are not in this release (both boxes would answer for it)");
        }
        if !matches!(vs.forwarding.get_ref(), Forwarding::Nat | Forwarding::FullNat | Forwarding::DsrL2 | Forwarding::DsrDscp | Forwarding::DsrTunnel) {
            return refuse(vs.forwarding.span(), "forwarding is \"nat\", \"full-nat\", \"dsr-l2\", \"dsr-dscp\" or \"dsr-tunnel\" (\"gateway\" over IPv6 is not in this release)");
        }
        // The outer source of an IPv6 tunnel is the self address of the
        // link towards the server (an IPv4 prefix cannot be one).
        if let Some(t) = &vs.tunnel_source {
            return refuse(t.span(), "tunnel_source over IPv6 is not in this release (the outer source is the self IPv6 address of the servers' link)");
        }
        if vs.engine_served() {
            return refuse(vs.name.span(), "protocol is \"tcp\" or \"udp\" (the L7 engine over IPv6 is not in this release)");
        }
        if let Some(p) = vs.persistence.as_ref().filter(|p| !matches!(p.get_ref().kind, PersistenceKind::SourceIp | PersistenceKind::SourceIpPort)) {
            return refuse(p.span(), "persistence over IPv6 is source-ip or source-ip-port");
        }
        if let Some(p) = vs.syn_proxy.as_ref().filter(|m| *m.get_ref() == SynProxyMode::On) {
            return refuse(p.span(), "syn_proxy = \"on\": the SYN proxy over IPv6 is not in this release (auto and off leave IPv6 SYNs to the servers)");
        }
        if let Some(p) = &vs.proxy_protocol {
            return refuse(p.span(), "proxy_protocol over IPv6 is not in this release");
        }
        if !vs.local_addresses.is_empty() {
            return refuse(vs.name.span(), "local_addresses: an IPv6 full-nat virtual server goes out from the IPv6 address of the servers' interface");
        }
        Ok(())
    }
}
