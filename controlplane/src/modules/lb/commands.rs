//! The console's run-time changes to load balancing, through the same
//! path as the configuration file: a weight is changed in the running
//! `Config`, the base snapshot is rebuilt from it by `build` (schedules
//! recomputed: weighted round robin sequences, Maglev tables), and the
//! snapshot the workers read is republished with the operator's and
//! health's states applied (`current_snapshot`). Existing connections keep
//! their entries and server indices; only new connections see the change.
//!
//! Adding and removing servers and virtual servers only proposes the new
//! configuration here; the console checks it as a file would be and
//! applies it (`Lb::apply_config`).

use super::admin::AdminState;
use super::Lb;
use crate::config::{unplaced, Config, Protocol, Server, VirtualServer};
use crate::modules::arp::Arp;
use crate::modules::health::Health;
use crate::modules::text::kebab;
use crate::runtime::Runtime;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};

/// A new virtual server's forwarding, with what its mode needs: the DSCP
/// of `dsr-dscp`, the encapsulation of `dsr-tunnel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsMode {
    pub forwarding: crate::config::Forwarding,
    pub dscp: Option<u8>,
    pub tunnel: Option<crate::config::TunnelKind>,
}

/// What `server POOL ADDR ...` does to a pool member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAction {
    Weight(u32),
    Admin(AdminState),
}

/// What a member command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Changed and republished: the message for the log and `show config`.
    Changed(String),
    /// Nothing to do: the answer.
    Unchanged(String),
}

/// A pool member as the operator names it: `IP`, or `IP:PORT` when the
/// address alone is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberRef {
    pub ip: std::net::IpAddr,
    pub port: Option<u16>,
}

impl fmt::Display for MemberRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}", std::net::SocketAddr::new(self.ip, p)),
            None => write!(f, "{}", self.ip),
        }
    }
}

impl Lb {
    /// The index of pool `name`.
    pub(super) fn pool_index(&self, name: &str) -> Result<usize, String> {
        self.cfg.pools.iter().position(|p| p.name.get_ref() == name).ok_or_else(|| {
            let all: Vec<&str> = self.cfg.pools.iter().map(|p| p.name.get_ref().as_str()).collect();
            format!("no pool named {name:?} (pools: {})", if all.is_empty() { "none".into() } else { all.join(", ") })
        })
    }

    /// The member `arg` of `pool`: pool index, index in the pool, address.
    fn member(&self, pool: &str, arg: MemberRef) -> Result<(usize, usize, SocketAddr), String> {
        let pi = self.pool_index(pool)?;
        let servers = &self.cfg.pools[pi].servers;
        let hits: Vec<usize> =
            (0..servers.len()).filter(|k| servers[*k].address.get_ref().ip() == arg.ip && arg.port.is_none_or(|p| servers[*k].address.get_ref().port() == p)).collect();
        let list = || servers.iter().map(|s| s.address.get_ref().to_string()).collect::<Vec<_>>().join(", ");
        match hits.as_slice() {
            [k] => Ok((pi, *k, *servers[*k].address.get_ref())),
            [] => Err(format!("pool {pool} has no server {arg} (its servers: {})", list())),
            _ => Err(format!("{arg} is ambiguous in pool {pool}: give IP:PORT ({})", list())),
        }
    }

    /// `server POOL ADDR enable|disable|drain|weight N`.
    pub fn member_command(&mut self, pool: &str, arg: MemberRef, action: MemberAction, rt: &mut Runtime, arp: &mut Arp, health: &mut Health) -> Result<Outcome, String> {
        let (pi, k, a) = self.member(pool, arg)?;
        let what = format!("server {a} (pool {pool})");
        let message = match action {
            MemberAction::Weight(w) => {
                let old = *self.cfg.pools[pi].servers[k].weight.get_ref();
                if old == w {
                    return Ok(Outcome::Unchanged(format!("{what}: weight already {w}")));
                }
                let mut new = self.cfg.clone();
                new.pools[pi].servers[k].weight = unplaced(w);
                self.apply_config(new, rt, arp, health).map_err(|e| format!("{what}: weight {w} refused: {e}"))?;
                format!("{what} weight {w} (was {old})")
            }
            MemberAction::Admin(state) => {
                let old = self.admin.set(pi, a, state);
                if old == state {
                    return Ok(Outcome::Unchanged(format!("{what}: already {}", state.name())));
                }
                let active = self.active_connections(pi, a, rt);
                let tail = match state {
                    AdminState::Enabled => String::new(),
                    _ => format!("; {active} active connection(s) continue"),
                };
                format!("{what} {} (was {}){tail}", state.name(), old.name())
            }
        };
        self.republish(rt, health);
        Ok(Outcome::Changed(message))
    }

    fn active_connections(&self, pi: usize, a: SocketAddr, rt: &Runtime) -> u64 {
        (0..self.base.servers.len())
            .filter(|i| self.admin.pool_of(*i) == Some(pi) && self.base.servers.get(*i).is_some_and(|r| r.socket_addr() == a))
            .map(|i| rt.workers().traffic(|w| w.servers.get(i)).entries)
            .fold(0u64, u64::wrapping_add)
    }

    /// `pool POOL add-server IP:PORT [weight N]`: the new configuration
    /// and what it does.
    pub fn add_server(&self, pool: &str, addr: SocketAddrV4, weight: u32) -> Result<(Config, String), String> {
        let pi = self.pool_index(pool)?;
        let mut new = self.cfg.clone();
        new.pools[pi].servers.push(Server { address: unplaced(SocketAddr::V4(addr)), weight: unplaced(weight), max_connections: unplaced(0), priority: unplaced(0) });
        let checks = if self.cfg.pools[pi].check_names().next().is_some() { "; new connections once its health checks pass" } else { "" };
        Ok((new, format!("server {addr} (pool {pool}) added, weight {weight}{checks}")))
    }

    /// `pool POOL remove-server ADDR`: the new configuration, what it
    /// does, and the member (pool index, address) to `forget` once
    /// applied.
    pub fn remove_server(&self, pool: &str, arg: MemberRef, rt: &Runtime) -> Result<(Config, String, (usize, SocketAddr)), String> {
        let (pi, k, a) = self.member(pool, arg)?;
        let active = self.active_connections(pi, a, rt);
        let mut new = self.cfg.clone();
        new.pools[pi].servers.remove(k);
        Ok((new, format!("server {a} (pool {pool}) removed; {active} active connection(s) finish first"), (pi, a)))
    }

    /// A removed member's operator state goes with it: added again, it
    /// starts enabled.
    pub fn forget(&mut self, (pool, addr): (usize, SocketAddr)) {
        self.admin.set(pool, addr, AdminState::Enabled);
    }

    /// `virtual-server add NAME IP:PORT POOL [tcp|udp] [nat|full-nat|dsr-l2|dsr-dscp CODE|dsr-tunnel KIND]`;
    /// the result is checked as a file is (`Config::validate`).
    pub fn add_virtual_server(&self, name: String, addr: SocketAddrV4, pool: String, udp: bool, mode: VsMode) -> Result<(Config, String), String> {
        let forwarding = mode.forwarding;
        self.pool_index(&pool)?;
        let mut new = self.cfg.clone();
        let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
        new.virtual_servers.push(VirtualServer {
            name: unplaced(name.clone()),
            address: unplaced(SocketAddr::V4(addr)),
            protocol,
            forwarding: unplaced(forwarding),
            pool: unplaced(pool.clone()),
            local_addresses: Vec::new(),
            persistence: None,
            persistence_group: None,
            dscp: mode.dscp.map(unplaced),
            tunnel: mode.tunnel.map(unplaced),
            tunnel_source: None,
            tunnel_port: None,
            interface: None,
            pair: None,
            syn_proxy: None,
            proxy_protocol: None,
            rule: Vec::new(),
            client_address: Vec::new(),
            x_forwarded_for: None,
            trusted_proxies: Vec::new(),
            http_request: Vec::new(),
            http_response: Vec::new(),
            limits: None,
            sorry_page: None,
            tls: None,
            server_tls: None,
        });
        let extra = match (mode.dscp, mode.tunnel) {
            (Some(d), _) => format!(" {d}"),
            (_, Some(t)) => format!(" {}", kebab(&t)),
            _ => String::new(),
        };
        Ok((new, format!("virtual-server {name} added: {addr} {} {}{extra} pool {pool}", kebab(&protocol), kebab(&forwarding))))
    }

    /// `virtual-server remove NAME`.
    pub fn remove_virtual_server(&self, name: &str, rt: &Runtime) -> Result<(Config, String), String> {
        let Some(i) = self.cfg.virtual_servers.iter().position(|v| v.name.get_ref() == name) else {
            let all: Vec<&str> = self.cfg.virtual_servers.iter().map(|v| v.name.get_ref().as_str()).collect();
            return Err(format!("no virtual server named {name:?} (virtual servers: {})", if all.is_empty() { "none".into() } else { all.join(", ") }));
        };
        let active = self.vs_slot(name).map_or(0, |s| rt.workers().traffic(|w| w.services.get(s)).entries);
        let mut new = self.cfg.clone();
        new.virtual_servers.remove(i);
        Ok((new, format!("virtual-server {name} removed; {active} active connection(s) finish first")))
    }
}
