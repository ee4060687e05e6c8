//! The checks beyond the syntax: references, duplicates, combinations
//! this build cannot serve.

use super::model::{Algorithm, CheckKind, Config, Forwarding, Persistence, PersistenceKind, Protocol, VirtualServer, MAX_PERSISTENCE_TIMEOUT_S};
use super::{ConfigError, Source};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use toml::Spanned;

impl Config {
    /// Every check beyond the syntax; `src` places the errors.
    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let p = &self.platform;
        let workers = p.worker_lcores.get_ref();
        if workers.is_empty() {
            return Err(src.error(Some(p.worker_lcores.span()), "worker_lcores: at least one worker lcore is needed"));
        }
        let mut seen = HashSet::new();
        for w in workers {
            if *w == p.control_lcore {
                return Err(src.error(Some(p.worker_lcores.span()), format!("worker_lcores: lcore {w} is the control lcore")));
            }
            if !seen.insert(*w) {
                return Err(src.error(Some(p.worker_lcores.span()), format!("worker_lcores: lcore {w} is listed twice")));
            }
        }
        for a in &p.eal_args {
            if matches!(a.as_str(), "-l" | "-c" | "--main-lcore" | "--vdev" | "-a" | "--allow") || a.starts_with("--vdev=")
            {
                return Err(src.error(None, format!("platform.eal_args: {a:?} is derived from control_lcore, worker_lcores and [[interface]]; remove it (use --lcores to map lcores to CPUs)")));
            }
        }

        unique(src, self.interfaces.iter().map(|i| &i.name), "interface")?;
        let mut devs = HashSet::new();
        for i in &self.interfaces {
            if i.device.get_ref().trim().is_empty() {
                return Err(src.error(Some(i.device.span()), "device: empty"));
            }
            if !devs.insert(i.dev_name().to_string()) {
                return Err(src.error(Some(i.device.span()), format!("device {:?} is used by two interfaces", i.dev_name())));
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
            if h.interval_ms == 0 || h.timeout_ms == 0 {
                return Err(src.error(Some(h.name.span()), format!("health_check {:?}: interval_ms and timeout_ms must be positive", h.name.get_ref())));
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
        let mut vips = HashSet::new();
        if self.virtual_servers.len() > furiwake_dataplane::snapshot::MAX_SERVICES {
            return Err(src.error(None, format!("at most {} virtual servers", furiwake_dataplane::snapshot::MAX_SERVICES)));
        }
        let members: usize = self
            .virtual_servers
            .iter()
            .filter_map(|vs| self.pools.iter().find(|p| p.name.get_ref() == vs.pool.get_ref()))
            .map(|p| p.servers.len())
            .sum();
        if members > furiwake_dataplane::snapshot::MAX_SERVERS {
            return Err(src.error(None, format!("at most {} real servers over all virtual servers", furiwake_dataplane::snapshot::MAX_SERVERS)));
        }
        for vs in &self.virtual_servers {
            if !matches!(vs.forwarding.get_ref(), Forwarding::Nat | Forwarding::FullNat) {
                return Err(src.error(
                    Some(vs.forwarding.span()),
                    format!("virtual_server {:?}: forwarding {:?} is not supported by this build (nat, full-nat)", vs.name.get_ref(), vs.forwarding.get_ref()),
                ));
            }
            if *vs.forwarding.get_ref() == Forwarding::Nat && !vs.local_addresses.is_empty() {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {:?}: local_addresses needs forwarding = \"full-nat\"", vs.name.get_ref())));
            }
            if !self.pools.iter().any(|p| p.name.get_ref() == vs.pool.get_ref()) {
                return Err(src.error(Some(vs.pool.span()), format!("virtual_server {:?}: no pool named {:?}", vs.name.get_ref(), vs.pool.get_ref())));
            }
            if !vips.insert((vs.address, vs.protocol)) {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {:?}: {} {:?} is already served", vs.name.get_ref(), vs.address, vs.protocol)));
            }
        }
        self.validate_persistence(src)
    }

    fn validate_persistence(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let mut groups: HashMap<&str, (&VirtualServer, Persistence)> = HashMap::new();
        for vs in &self.virtual_servers {
            let name = vs.name.get_ref();
            let Some(p) = &vs.persistence else {
                if let Some(g) = &vs.persistence_group {
                    return Err(src.error(Some(g.span()), format!("virtual_server {name:?}: persistence_group needs persistence")));
                }
                continue;
            };
            let span = Some(p.span());
            let p = *p.get_ref();
            let mask = u32::from(p.netmask);
            if mask.leading_ones() + mask.trailing_zeros() != 32 {
                return Err(src.error(span, format!("virtual_server {name:?}: persistence netmask {} is not contiguous", p.netmask)));
            }
            if p.kind == PersistenceKind::SourceIpPort && mask != u32::MAX {
                return Err(src.error(span, format!("virtual_server {name:?}: persistence netmask applies to kind \"source-ip\" only")));
            }
            if p.timeout_s == 0 || p.timeout_s > MAX_PERSISTENCE_TIMEOUT_S {
                return Err(src.error(span, format!("virtual_server {name:?}: persistence timeout_s must be 1..={MAX_PERSISTENCE_TIMEOUT_S}")));
            }
            if let Some(g) = &vs.persistence_group {
                match groups.get(g.get_ref().as_str()) {
                    Some((first, fp)) if fp.kind != p.kind || fp.netmask != p.netmask => {
                        return Err(src.error(
                            Some(g.span()),
                            format!(
                                "virtual_server {name:?}: persistence group {:?} has kind {:?} netmask {} (virtual_server {:?}); its members must agree",
                                g.get_ref(),
                                fp.kind,
                                fp.netmask,
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
        let mut owners: HashMap<(SocketAddrV4, Protocol), (&VirtualServer, Option<Ipv4Addr>)> = HashMap::new();
        for vs in self.virtual_servers.iter().filter(|v| *v.forwarding.get_ref() == Forwarding::Nat) {
            let owner = vs.persistence.as_ref().map(|p| *p.get_ref()).filter(|p| p.kind == PersistenceKind::SourceIp).map(|p| p.netmask);
            let pool = self.pools.iter().find(|p| p.name.get_ref() == vs.pool.get_ref());
            let sorry = pool.and_then(|p| p.sorry_pool.as_ref()).and_then(|n| self.pools.iter().find(|p| p.name.get_ref() == n.get_ref()));
            for s in pool.into_iter().chain(sorry).flat_map(|p| p.servers.iter()) {
                match owners.get(&(*s.address.get_ref(), vs.protocol)) {
                    Some((other, o)) if *o != owner => {
                        return Err(src.error(
                            Some(vs.name.span()),
                            format!(
                                "virtual_server {:?}: server {} is also a NAT server of virtual_server {:?} with other persistence; with nat both must use the same (or no) source-ip persistence netmask, or use full-nat",
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
