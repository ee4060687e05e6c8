//! The checks beyond the syntax: every numeric value within its range
//! (`bounds`), references, duplicates, combinations this build cannot
//! serve.

use super::bounds::{self, Bound};
use super::model::{Algorithm, CheckKind, Config, Forwarding, Persistence, PersistenceKind, Protocol, TunnelKind, VirtualServer};
use super::{ConfigError, Source};
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::net::SocketAddrV4;
use toml::Spanned;

/// Refuses `v` outside `b`, at `v`'s place.
pub(in crate::config) fn within<T: Copy + Into<u64> + Display>(src: &Source<'_>, b: &Bound, v: &Spanned<T>) -> Result<(), ConfigError> {
    let x = *v.get_ref();
    if b.contains(x.into()) {
        Ok(())
    } else {
        Err(src.error(Some(v.span()), b.refusal(x)))
    }
}

/// Refuses port 0 of an address, at the address.
fn port_within(src: &Source<'_>, what: &str, a: &Spanned<impl PortOf + Display>) -> Result<(), ConfigError> {
    let port = a.get_ref().port_of();
    if bounds::PORT.contains(port.into()) {
        Ok(())
    } else {
        Err(src.error(Some(a.span()), format!("{what} {}: port {port} is out of range: allowed {}..={}", a.get_ref(), bounds::PORT.min, bounds::PORT.max)))
    }
}

trait PortOf {
    fn port_of(&self) -> u16;
}

impl PortOf for SocketAddrV4 {
    fn port_of(&self) -> u16 {
        self.port()
    }
}

impl PortOf for std::net::SocketAddr {
    fn port_of(&self) -> u16 {
        self.port()
    }
}

impl Config {
    /// Every check beyond the syntax; `src` places the errors.
    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        self.validate_bounds(src)?;
        let p = &self.platform;
        let workers = p.worker_lcores.get_ref();
        if workers.is_empty() {
            return Err(src.error(Some(p.worker_lcores.span()), "worker_lcores: at least one worker lcore is needed"));
        }
        let mut seen = HashSet::new();
        for w in workers {
            if w.get_ref() == p.control_lcore.get_ref() {
                return Err(src.error(Some(w.span()), format!("worker_lcores: lcore {} is the control lcore", w.get_ref())));
            }
            if !seen.insert(*w.get_ref()) {
                return Err(src.error(Some(w.span()), format!("worker_lcores: lcore {} is listed twice", w.get_ref())));
            }
        }
        for a in &p.eal_args {
            if matches!(a.as_str(), "-l" | "-c" | "--main-lcore" | "--vdev" | "-a" | "--allow") || a.starts_with("--vdev=")
            {
                return Err(src.error(None, format!("platform.eal_args: {a:?} is derived from control_lcore, worker_lcores and [[interface]]; remove it (use --lcores to map lcores to CPUs)")));
            }
        }

        unique(src, self.interfaces.iter().map(|i| &i.name), "interface")?;
        self.validate_ipv6(src)?;
        let mut devs = HashSet::new();
        // Per device: its spec and the VLANs (0: untagged) of the
        // interfaces on it.
        let mut on_device: HashMap<String, (String, Vec<u16>)> = HashMap::new();
        for i in &self.interfaces {
            if i.device.get_ref().trim().is_empty() {
                return Err(src.error(Some(i.device.span()), "device: empty"));
            }
            if let Some(v) = &i.vlan {
                within(src, &bounds::VLAN, v)?;
            }
            let vlan = i.vlan.as_ref().map_or(0, |v| *v.get_ref());
            if let Some((spec, vlans)) = on_device.get_mut(i.dev_name()) {
                // Another VLAN of a port an earlier interface brought up.
                if spec != i.device.get_ref() || i.bond.is_some() {
                    return Err(src.error(Some(i.device.span()), format!("interface {:?}: device {:?} is also another interface's, with other arguments: VLAN interfaces of one port name it alike (the first one's `bond` holds for all)", i.name.get_ref(), i.dev_name())));
                }
                if vlans.contains(&vlan) {
                    return Err(src.error(Some(i.vlan.as_ref().map_or(i.device.span(), |v| v.span())), format!("device {:?} is used by two interfaces{}", i.dev_name(), if vlan == 0 { " without a vlan".to_string() } else { format!(" with vlan {vlan}") })));
                }
                vlans.push(vlan);
                if let Some(m) = &i.mtu {
                    within(src, &bounds::MTU, m)?;
                }
                continue;
            }
            on_device.insert(i.dev_name().to_string(), (i.device.get_ref().clone(), vec![vlan]));
            if !devs.insert(i.dev_name().to_string()) {
                return Err(src.error(Some(i.device.span()), format!("device {:?} is used by two interfaces", i.dev_name())));
            }
            if let Some(m) = &i.mtu {
                within(src, &bounds::MTU, m)?;
            }
            let bonding = i.dev_name().starts_with("net_bonding");
            match &i.bond {
                None if bonding => return Err(src.error(Some(i.device.span()), format!("interface {:?}: a net_bonding device needs `bond` (its mode and members)", i.name.get_ref()))),
                None => {}
                Some(_) if !bonding || i.device.get_ref().contains(',') => {
                    return Err(src.error(Some(i.device.span()), format!("interface {:?}: with `bond`, device names the bond: \"net_bonding0\" (no arguments: mode and members come from `bond`)", i.name.get_ref())))
                }
                Some(b) => {
                    let members = b.members.get_ref();
                    if !(2..=8).contains(&members.len()) {
                        return Err(src.error(Some(b.members.span()), format!("interface {:?}: a bond has 2 to 8 members, not {}", i.name.get_ref(), members.len())));
                    }
                    for m in members {
                        let name = super::model::dev_name(m.get_ref());
                        if name.is_empty() || name.starts_with("net_bonding") {
                            return Err(src.error(Some(m.span()), format!("interface {:?}: bond member {:?}: a device spec such as \"net_af_packet1,iface=lb-out2\"", i.name.get_ref(), m.get_ref())));
                        }
                        if !devs.insert(name.to_string()) {
                            return Err(src.error(Some(m.span()), format!("device {name:?} is used twice")));
                        }
                    }
                }
            }
        }
        unique(src, self.health_checks.iter().map(|h| &h.name), "health_check")?;
        for h in &self.health_checks {
            let missing = match h.kind {
                CheckKind::Script if h.command.is_none() => Some("command"),
                CheckKind::SendExpect if h.expect.is_none() => Some("expect"),
                _ => None,
            };
            if let Some(key) = missing {
                return Err(src.error(Some(h.name.span()), format!("health_check {:?}: kind {:?} needs `{key}`", h.name.get_ref(), h.kind)));
            }
        }
        unique(src, self.pools.iter().map(|p| &p.name), "pool")?;
        unique(src, self.virtual_servers.iter().map(|v| &v.name), "virtual_server")?;

        for pool in &self.pools {
            for hc in pool.check_names() {
                if !self.health_checks.iter().any(|h| h.name.get_ref() == hc.get_ref()) {
                    return Err(src.error(Some(hc.span()), format!("pool {:?}: no health_check named {:?}", pool.name.get_ref(), hc.get_ref())));
                }
            }
            if let Some(sorry) = &pool.sorry_pool {
                if sorry.get_ref() == pool.name.get_ref() || !self.pools.iter().any(|p| p.name.get_ref() == sorry.get_ref()) {
                    return Err(src.error(Some(sorry.span()), format!("pool {:?}: sorry_pool {:?} must name another pool", pool.name.get_ref(), sorry.get_ref())));
                }
            }
            if let Some(h) = &pool.hash {
                if *pool.algorithm.get_ref() != Algorithm::SourceHash {
                    return Err(src.error(Some(h.span()), format!("pool {:?}: `hash` needs algorithm = \"source-hash\"", pool.name.get_ref())));
                }
            }
            let mut addrs = HashSet::new();
            for s in &pool.servers {
                if !addrs.insert(*s.address.get_ref()) {
                    return Err(src.error(Some(s.address.span()), format!("pool {:?}: server {} listed twice", pool.name.get_ref(), s.address.get_ref())));
                }
            }
        }
        // IPv6 virtual servers first: the rules below are IPv4's.
        self.validate_ipv6_services(src)?;
        let mut vips = HashSet::new();
        if let Some(vs) = self.virtual_servers.get(furiwake_dataplane::limits::MAX_SERVICES) {
            return Err(src.error(Some(vs.name.span()), format!("at most {} virtual servers", furiwake_dataplane::limits::MAX_SERVICES)));
        }
        let members: usize = self
            .virtual_servers
            .iter()
            .filter_map(|vs| self.pools.iter().find(|p| p.name.get_ref() == vs.pool.get_ref()))
            .map(|p| p.servers.len())
            .sum();
        if members > furiwake_dataplane::limits::MAX_SERVERS {
            return Err(src.error(None, format!("at most {} real servers over all virtual servers", furiwake_dataplane::limits::MAX_SERVERS)));
        }
        for vs in &self.virtual_servers {
            if vs.name.get_ref().contains('#') {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {:?}: no '#' in a name (VS#POOL names a rule's pool)", vs.name.get_ref())));
            }
            self.validate_tunnel(src, vs)?;
            if let Some(m) = vs.syn_proxy.as_ref().filter(|m| *m.get_ref() == super::model::SynProxyMode::On) {
                let proxiable = vs.protocol.transport() == Protocol::Tcp && matches!(vs.forwarding.get_ref(), Forwarding::Nat | Forwarding::FullNat);
                if !proxiable {
                    return Err(src.error(Some(m.span()), format!("virtual_server {:?}: syn_proxy = \"on\" needs a TCP virtual server with forwarding \"nat\" or \"full-nat\" (the box must see the server's answers to translate them)", vs.name.get_ref())));
                }
            }
            if let Some(pp) = &vs.proxy_protocol {
                let name = vs.name.get_ref();
                if vs.protocol != Protocol::Tcp || *vs.forwarding.get_ref() != Forwarding::FullNat {
                    return Err(src.error(Some(pp.span()), format!("virtual_server {name:?}: proxy_protocol needs protocol = \"tcp\" and forwarding = \"full-nat\" (an http virtual server names it in client_address)")));
                }
                if let Some(m) = vs.syn_proxy.as_ref().filter(|m| *m.get_ref() == super::model::SynProxyMode::On) {
                    return Err(src.error(Some(m.span()), format!("virtual_server {name:?}: syn_proxy = \"on\" and proxy_protocol: the header rides the handshake's last ACK, which the SYN proxy writes itself")));
                }
            }
            if *vs.forwarding.get_ref() != Forwarding::Gateway {
                if let Some(k) = vs.interface.as_ref().map(|i| i.span()).or(vs.pair.as_ref().map(|p| p.span())) {
                    return Err(src.error(Some(k), format!("virtual_server {:?}: interface and pair belong to forwarding = \"gateway\"", vs.name.get_ref())));
                }
            }
            match (vs.forwarding.get_ref(), &vs.dscp) {
                (Forwarding::DsrDscp, None) => return Err(src.error(Some(vs.forwarding.span()), format!("virtual_server {:?}: forwarding = \"dsr-dscp\" needs `dscp` (1..=63): the code that names the VIP to its servers", vs.name.get_ref()))),
                (Forwarding::DsrDscp, Some(d)) => within(src, &bounds::DSCP, d)?,
                (_, Some(d)) => return Err(src.error(Some(d.span()), format!("virtual_server {:?}: dscp needs forwarding = \"dsr-dscp\"", vs.name.get_ref()))),
                (_, None) => {}
            }
            if vs.engine_served() {
                self.validate_l7(src, vs)?;
            } else if let Some(r) = vs.rule.first() {
                return Err(src.error(Some(r.at()), format!("virtual_server {:?}: rules need protocol = \"http\" (the L7 engine reads the requests)", vs.name.get_ref())));
            } else if let Some(a) = vs.http_request.first().or(vs.http_response.first()) {
                return Err(src.error(Some(a.name.span()), format!("virtual_server {:?}: header actions need protocol = \"http\"", vs.name.get_ref())));
            } else if let Some(c) = vs.client_address.first() {
                return Err(src.error(Some(c.span()), format!("virtual_server {:?}: client_address needs protocol = \"http\"", vs.name.get_ref())));
            } else if let Some(l) = &vs.limits {
                return Err(src.error(Some(l.span()), format!("virtual_server {:?}: limits need protocol = \"http\"", vs.name.get_ref())));
            } else if let Some(p) = &vs.sorry_page {
                return Err(src.error(Some(p.span()), format!("virtual_server {:?}: sorry_page needs protocol = \"http\"", vs.name.get_ref())));
            } else if let Some(t) = &vs.tls {
                return Err(src.error(Some(t.span()), format!("virtual_server {:?}: tls needs protocol = \"https\" (a tcp virtual server passes TLS through)", vs.name.get_ref())));
            } else if let Some(t) = &vs.server_tls {
                return Err(src.error(Some(t.span()), format!("virtual_server {:?}: server_tls needs protocol = \"http\" or \"https\"", vs.name.get_ref())));
            } else if *vs.forwarding.get_ref() != Forwarding::FullNat && !vs.local_addresses.is_empty() {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {:?}: local_addresses needs forwarding = \"full-nat\"", vs.name.get_ref())));
            }
            if matches!(vs.forwarding.get_ref(), Forwarding::DsrL2 | Forwarding::DsrDscp | Forwarding::DsrTunnel) {
                self.validate_dsr(src, vs)?;
            }
            if !self.pools.iter().any(|p| p.name.get_ref() == vs.pool.get_ref()) {
                return Err(src.error(Some(vs.pool.span()), format!("virtual_server {:?}: no pool named {:?}", vs.name.get_ref(), vs.pool.get_ref())));
            }
            if *vs.forwarding.get_ref() != Forwarding::Gateway && !vips.insert((*vs.address.get_ref(), vs.protocol.transport())) {
                return Err(src.error(Some(vs.address.span()), format!("virtual_server {:?}: {} {:?} is already served", vs.name.get_ref(), vs.address.get_ref(), vs.protocol)));
            }
        }
        self.validate_persistence(src)?;
        self.validate_snat(src)?;
        self.validate_console(src)?;
        self.validate_ha(src)
    }

    /// A gateway service (firewall load balancing): the wildcard address
    /// `0.0.0.0:0`, an interface that has no other, and a pair that pairs
    /// back with as many members.
    fn validate_gateway(&self, src: &Source<'_>, vs: &VirtualServer) -> Result<(), ConfigError> {
        let name = vs.name.get_ref();
        let a = vs.address.get_ref();
        if !a.ip().is_unspecified() || a.port() != 0 {
            return Err(src.error(Some(vs.address.span()), format!("virtual_server {name:?}: a gateway service takes any destination: address = \"0.0.0.0:0\"")));
        }
        let Some(iface) = &vs.interface else {
            return Err(src.error(Some(vs.forwarding.span()), format!("virtual_server {name:?}: forwarding = \"gateway\" needs `interface`: the one whose arriving traffic it takes")));
        };
        if !self.interfaces.iter().any(|i| i.name.get_ref() == iface.get_ref()) {
            return Err(src.error(Some(iface.span()), format!("virtual_server {name:?}: no interface named {:?}", iface.get_ref())));
        }
        let twice = self.virtual_servers.iter().filter(|o| *o.forwarding.get_ref() == Forwarding::Gateway && o.interface.as_ref().map(|i| i.get_ref()) == Some(iface.get_ref())).count() > 1;
        if twice {
            return Err(src.error(Some(iface.span()), format!("virtual_server {name:?}: interface {:?} has another gateway service", iface.get_ref())));
        }
        let members = |v: &VirtualServer| self.pools.iter().find(|p| p.name.get_ref() == v.pool.get_ref()).map_or(0, |p| p.servers.len());
        if let Some(pair) = &vs.pair {
            let other = self.virtual_servers.iter().find(|o| o.name.get_ref() == pair.get_ref() && *o.forwarding.get_ref() == Forwarding::Gateway);
            let ok = other.is_some_and(|o| o.pair.as_ref().map(|p| p.get_ref()) == Some(name) && members(o) == members(vs));
            if !ok {
                return Err(src.error(Some(pair.span()), format!("virtual_server {name:?}: pair {:?} must be a gateway service pairing back with {name:?}, with as many members (the same firewalls, in the same order)", pair.get_ref())));
            }
        }
        Ok(())
    }

    /// `[[snat]]`: a port range of the full-NAT range; an address on an
    /// interface's subnet (the box answers ARP for it) that is no self IP,
    /// VIP or full-NAT local address; at most 8 rules, with distinct
    /// addresses.
    fn validate_snat(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        unique(src, self.snat.iter().map(|r| &r.name), "snat")?;
        if let Some(r) = self.snat.get(8) {
            return Err(src.error(Some(r.name.span()), "at most 8 [[snat]] rules"));
        }
        let mut addrs = HashSet::new();
        for r in &self.snat {
            let name = r.name.get_ref();
            let a = *r.address.get_ref();
            if r.port_range().is_none() {
                let p = r.ports.as_ref().map_or(r.name.span(), |p| p.span());
                return Err(src.error(Some(p), format!("snat {name:?}: ports: \"FIRST-LAST\" within 1024-49151 (49152 and up are the appliance's own stack's and the health probes')")));
            }
            if !self.interfaces.iter().any(|i| i.address.contains(a)) {
                return Err(src.error(Some(r.address.span()), format!("snat {name:?}: address {a} is on no interface's subnet: the box answers ARP for it there")));
            }
            let sources = r.sources.get_ref();
            if sources.netmask() == 0 {
                return Err(src.error(Some(r.sources.span()), format!("snat {name:?}: sources {sources} is everyone: name the servers' prefix")));
            }
            if r.link(&self.interfaces).is_none() {
                return Err(match &r.interface {
                    Some(i) => src.error(Some(i.span()), format!("snat {name:?}: no interface {:?}", i.get_ref())),
                    None => src.error(Some(r.sources.span()), format!("snat {name:?}: sources {sources} is on no interface's subnet: name the servers' `interface`")),
                });
            }
            let taken = self.interfaces.iter().any(|i| i.address.addr == a)
                || self.virtual_servers.iter().any(|v| v.address.get_ref().ip() == std::net::IpAddr::V4(a) || v.local_addresses.contains(&a));
            if taken || !addrs.insert(a) {
                return Err(src.error(Some(r.address.span()), format!("snat {name:?}: address {a} is already a self IP, VIP, local address or another rule's")));
            }
        }
        Ok(())
    }

    /// `tunnel`, `tunnel_source` and `tunnel_port` belong to `dsr-tunnel`
    /// (and the port to GUE); the tunnel needs its kind; its sources are a
    /// unicast prefix.
    fn validate_tunnel(&self, src: &Source<'_>, vs: &VirtualServer) -> Result<(), ConfigError> {
        let name = vs.name.get_ref();
        let tunnel = *vs.forwarding.get_ref() == Forwarding::DsrTunnel;
        match (&vs.tunnel, tunnel) {
            (None, true) => return Err(src.error(Some(vs.forwarding.span()), format!("virtual_server {name:?}: forwarding = \"dsr-tunnel\" needs `tunnel` (\"ipip\", \"gre\" or \"gue\"): how packets reach the servers"))),
            (Some(t), false) => return Err(src.error(Some(t.span()), format!("virtual_server {name:?}: tunnel needs forwarding = \"dsr-tunnel\""))),
            _ => {}
        }
        if let Some(s) = &vs.tunnel_source {
            if !tunnel {
                return Err(src.error(Some(s.span()), format!("virtual_server {name:?}: tunnel_source needs forwarding = \"dsr-tunnel\"")));
            }
            let c = s.get_ref();
            let first = c.network().octets()[0];
            if c.prefix_len < 8 || first == 0 || first == 127 || first >= 224 {
                return Err(src.error(Some(s.span()), format!("virtual_server {name:?}: tunnel_source {c} must be a unicast prefix of /8 or longer: each flow's outer source is one of its addresses")));
            }
        }
        if let Some(p) = &vs.tunnel_port {
            if vs.tunnel.as_ref().map(|t| *t.get_ref()) != Some(TunnelKind::Gue) {
                return Err(src.error(Some(p.span()), format!("virtual_server {name:?}: tunnel_port needs tunnel = \"gue\"")));
            }
            within(src, &bounds::TUNNEL_PORT, p)?;
        }
        Ok(())
    }

    /// Direct server return rewrites no port: each server must listen on
    /// the VIP's port. MAT (`dsr-l2`) reaches its servers by MAC: each must
    /// sit on a link of the box. `dsr-dscp`: a server shared by two such
    /// virtual servers must see two codes, or it could not tell their VIPs
    /// apart.
    fn validate_dsr(&self, src: &Source<'_>, vs: &VirtualServer) -> Result<(), ConfigError> {
        let name = vs.name.get_ref();
        let servers_of = |v: &VirtualServer| -> Vec<std::net::Ipv4Addr> {
            let pool = self.pools.iter().find(|p| p.name.get_ref() == v.pool.get_ref());
            let sorry = pool.and_then(|p| p.sorry_pool.as_ref()).and_then(|n| self.pools.iter().find(|p| p.name.get_ref() == n.get_ref()));
            pool.into_iter().chain(sorry).flat_map(|p| p.servers.iter()).map(|s| s.ip4()).collect()
        };
        if let (Forwarding::DsrDscp, Some(d)) = (vs.forwarding.get_ref(), &vs.dscp) {
            let mine = servers_of(vs);
            for other in self.virtual_servers.iter().take_while(|o| !std::ptr::eq(*o, vs)) {
                let same = other.dscp.as_ref().is_some_and(|o| o.get_ref() == d.get_ref()) && *other.forwarding.get_ref() == Forwarding::DsrDscp;
                if let Some(s) = servers_of(other).into_iter().find(|s| same && mine.contains(s)) {
                    return Err(src.error(
                        Some(d.span()),
                        format!("virtual_server {name:?}: dscp {} is also virtual_server {:?}'s, and both send to server {s}: it could not tell the two VIPs apart", d.get_ref(), other.name.get_ref()),
                    ));
                }
            }
        }
        let l2 = *vs.forwarding.get_ref() == Forwarding::DsrL2;
        let vport = vs.address.get_ref().port();
        let pool = self.pools.iter().find(|p| p.name.get_ref() == vs.pool.get_ref());
        let sorry = pool.and_then(|p| p.sorry_pool.as_ref()).and_then(|n| self.pools.iter().find(|p| p.name.get_ref() == n.get_ref()));
        for s in pool.into_iter().chain(sorry).flat_map(|p| p.servers.iter()) {
            let a = s.address.get_ref();
            if a.port() != vport {
                return Err(src.error(Some(s.address.span()), format!("virtual_server {name:?} ({}): server {a} must listen on the VIP's port {vport}: direct server return rewrites no port", kebab_forwarding(*vs.forwarding.get_ref()))));
            }
            let on_link = match a.ip() {
                std::net::IpAddr::V4(v4) => self.interfaces.iter().any(|i| i.address.contains(v4)),
                std::net::IpAddr::V6(v6) => self.interfaces.iter().any(|i| i.address6.is_some_and(|c| c.contains(v6))),
            };
            if l2 && !on_link {
                return Err(src.error(Some(s.address.span()), format!("virtual_server {name:?} (dsr-l2): server {a} is on no interface's subnet: MAT reaches servers by their MAC on a shared segment")));
            }
        }
        Ok(())
    }

    /// Every numeric value within its range (`bounds`).
    fn validate_bounds(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let p = &self.platform;
        within(src, &bounds::CONTROL_LCORE, &p.control_lcore)?;
        for w in p.worker_lcores.get_ref() {
            within(src, &bounds::WORKER_LCORE, w)?;
        }
        within(src, &bounds::FLOWS_PER_WORKER, &p.flows_per_worker)?;
        if let Some(f) = &p.flows_per_worker_v6 {
            within(src, &bounds::FLOWS_PER_WORKER_V6, f)?;
        }
        within(src, &bounds::MBUFS, &p.mbufs)?;
        within(src, &bounds::RX_DESCRIPTORS, &p.rx_descriptors)?;
        within(src, &bounds::TX_DESCRIPTORS, &p.tx_descriptors)?;
        within(src, &bounds::IDLE_SLEEP_US, &p.idle_sleep_us)?;
        within(src, &bounds::CONTROL_IDLE_SLEEP_US, &p.control_idle_sleep_us)?;
        within(src, &bounds::PERSISTENCE_RECORDS, &p.persistence_records)?;
        for h in &self.health_checks {
            within(src, &bounds::INTERVAL_MS, &h.interval_ms)?;
            within(src, &bounds::TIMEOUT_MS, &h.timeout_ms)?;
            within(src, &bounds::FALL, &h.fall)?;
            within(src, &bounds::RISE, &h.rise)?;
            if let Some(port) = &h.port {
                within(src, &bounds::PORT, port)?;
            }
            if let Some(status) = &h.expect_status {
                within(src, &bounds::EXPECT_STATUS, status)?;
            }
        }
        // A gateway pool's members are next hops: their port means nothing.
        let gateway_pools: HashSet<&str> = self.virtual_servers.iter().filter(|v| *v.forwarding.get_ref() == Forwarding::Gateway).map(|v| v.pool.get_ref().as_str()).collect();
        for s in self.pools.iter().filter(|p| !gateway_pools.contains(p.name.get_ref().as_str())).flat_map(|p| p.servers.iter()) {
            port_within(src, "server", &s.address)?;
        }
        for s in self.pools.iter().flat_map(|p| p.servers.iter()) {
            within(src, &bounds::WEIGHT, &s.weight)?;
            within(src, &bounds::MAX_CONNECTIONS, &s.max_connections)?;
            within(src, &bounds::PRIORITY, &s.priority)?;
        }
        for vs in &self.virtual_servers {
            if *vs.forwarding.get_ref() == Forwarding::Gateway {
                self.validate_gateway(src, vs)?;
            } else {
                port_within(src, "virtual_server address", &vs.address)?;
            }
            if let Some(per) = &vs.persistence {
                within(src, &bounds::PERSISTENCE_TIMEOUT_S, &per.get_ref().timeout_s)?;
            }
        }
        let t = &self.timeouts;
        for (b, v) in [
            (&bounds::TCP_SYN, &t.tcp_syn),
            (&bounds::TCP_ESTABLISHED, &t.tcp_established),
            (&bounds::TCP_FIN, &t.tcp_fin),
            (&bounds::TCP_TIME_WAIT, &t.tcp_time_wait),
            (&bounds::TCP_CLOSE, &t.tcp_close),
            (&bounds::UDP, &t.udp),
            (&bounds::ICMP, &t.icmp),
            (&bounds::UDP_UNREPLIED, &t.udp_unreplied),
        ] {
            within(src, b, v)?;
        }
        for (b, v) in self.defence.bounded().into_iter().chain(self.l7.bounded()) {
            within(src, b, v)?;
        }
        if let Some(l) = &self.management.listen {
            port_within(src, "management listen", l)?;
        }
        Ok(())
    }

    fn validate_persistence(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let mut groups: HashMap<&str, (&VirtualServer, &Persistence)> = HashMap::new();
        for vs in &self.virtual_servers {
            let name = vs.name.get_ref();
            let Some(p) = &vs.persistence else {
                if let Some(g) = &vs.persistence_group {
                    return Err(src.error(Some(g.span()), format!("virtual_server {name:?}: persistence_group needs persistence")));
                }
                continue;
            };
            let tls_id = p.get_ref().kind == super::persistence::PersistenceKind::TlsSessionId;
            if tls_id && vs.protocol != Protocol::Tcp {
                return Err(src.error(Some(p.span()), format!("virtual_server {name:?}: tls-session-id keeps a tcp virtual server's TLS clients (TLS passed through); an https virtual server terminates TLS: use a cookie")));
            }
            if p.get_ref().kind.is_l7() && !tls_id && !vs.protocol.is_l7() {
                return Err(src.error(Some(p.span()), format!("virtual_server {name:?}: persistence kind {:?} reads HTTP requests: it needs protocol = \"http\"", super::render::kebab(&p.get_ref().kind))));
            }
            let p = p.get_ref();
            let netmask = *p.netmask.get_ref();
            let at = Some(p.netmask.span());
            let mask = u32::from(netmask);
            if mask.leading_ones() + mask.trailing_zeros() != 32 {
                return Err(src.error(at, format!("virtual_server {name:?}: persistence netmask {netmask} is not contiguous")));
            }
            if p.kind == PersistenceKind::SourceIpPort && mask != u32::MAX {
                return Err(src.error(at, format!("virtual_server {name:?}: persistence netmask applies to kind \"source-ip\" only")));
            }
            let b = &bounds::NETMASK_PREFIX;
            if !b.contains(mask.leading_ones().into()) {
                return Err(src.error(at, format!("{} {netmask} (/{}) is out of range: allowed /{}..=/{}", b.key, mask.leading_ones(), b.min, b.max)));
            }
            let prefix6 = *p.prefix6.get_ref();
            if !(1..=128).contains(&prefix6) {
                return Err(src.error(Some(p.prefix6.span()), format!("virtual_server {name:?}: persistence prefix6 {prefix6} is out of range: allowed 1..=128")));
            }
            if p.kind == PersistenceKind::SourceIpPort && prefix6 != 128 {
                return Err(src.error(Some(p.prefix6.span()), format!("virtual_server {name:?}: persistence prefix6 applies to kind \"source-ip\" only")));
            }
            if let Some(g) = &vs.persistence_group {
                match groups.get(g.get_ref().as_str()) {
                    // (Each family's records are its own table's: the
                    // prefix of the members' own family must agree.)
                    Some((first, fp)) if fp.kind != p.kind || (first.is_v6() == vs.is_v6() && if vs.is_v6() { fp.prefix6 != p.prefix6 } else { fp.netmask != p.netmask }) => {
                        return Err(src.error(
                            Some(g.span()),
                            format!(
                                "virtual_server {name:?}: persistence group {:?} has kind {:?} netmask {} prefix6 {} (virtual_server {:?}); its members must agree",
                                g.get_ref(),
                                fp.kind,
                                fp.netmask.get_ref(),
                                fp.prefix6.get_ref(),
                                first.name.get_ref()
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        groups.insert(g.get_ref().as_str(), (vs, p));
                    }
                }
            }
        }
        // With NAT the server's replies must reach the worker that owns the
        // connection: servers shared between NAT virtual servers need the
        // same ownership key (the client address under one netmask, or
        // address and port).
        // (The key is the client prefix of the virtual server's family:
        // `netmask` for IPv4, `prefix6` for IPv6; the server's address says
        // which.)
        let mut owners: HashMap<(std::net::SocketAddr, Protocol), (&VirtualServer, Option<u8>)> = HashMap::new();
        for vs in self.virtual_servers.iter().filter(|v| *v.forwarding.get_ref() == Forwarding::Nat) {
            let prefix = |p: &super::persistence::Persistence| if vs.is_v6() { *p.prefix6.get_ref() } else { u32::from(*p.netmask.get_ref()).leading_ones() as u8 };
            let owner = vs.persistence.as_ref().map(|p| p.get_ref()).filter(|p| p.kind == PersistenceKind::SourceIp).map(prefix);
            let pool = self.pools.iter().find(|p| p.name.get_ref() == vs.pool.get_ref());
            let sorry = pool.and_then(|p| p.sorry_pool.as_ref()).and_then(|n| self.pools.iter().find(|p| p.name.get_ref() == n.get_ref()));
            for s in pool.into_iter().chain(sorry).flat_map(|p| p.servers.iter()) {
                match owners.get(&(*s.address.get_ref(), vs.protocol)) {
                    Some((other, o)) if *o != owner => {
                        return Err(src.error(
                            Some(vs.name.span()),
                            format!(
                                "virtual_server {:?}: server {} is also a NAT server of virtual_server {:?} with other persistence; with nat both must use the same (or no) source-ip persistence netmask (prefix6 over IPv6), or use full-nat",
                                vs.name.get_ref(),
                                s.address.get_ref(),
                                other.name.get_ref()
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        owners.insert((*s.address.get_ref(), vs.protocol), (vs, owner));
                    }
                }
            }
        }
        Ok(())
    }
}

fn unique<'a>(src: &Source<'_>, names: impl Iterator<Item = &'a Spanned<String>>, what: &str) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for n in names {
        if n.get_ref().is_empty() {
            return Err(src.error(Some(n.span()), format!("{what}: empty name")));
        }
        if !seen.insert(n.get_ref().as_str()) {
            return Err(src.error(Some(n.span()), format!("{what} {:?} is defined twice", n.get_ref())));
        }
    }
    Ok(())
}

/// The config spelling of a forwarding mode.
pub(crate) fn kebab_forwarding(f: Forwarding) -> &'static str {
    match f {
        Forwarding::Nat => "nat",
        Forwarding::FullNat => "full-nat",
        Forwarding::DsrL2 => "dsr-l2",
        Forwarding::DsrDscp => "dsr-dscp",
        Forwarding::DsrTunnel => "dsr-tunnel",
        Forwarding::Gateway => "gateway",
    }
}
