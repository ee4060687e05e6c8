//! The operator's state of each pool member (`server POOL ADDR
//! enable|disable|drain`), kept apart from health so that each survives
//! the other's changes: a disabled server that passes its checks stays
//! disabled, and an enabled one that fails them is down until they pass.
//!
//! Semantics (README, "Console"):
//!
//! - `enabled`: takes new connections when its health checks pass.
//! - `draining`: no new connections from the scheduler; existing
//!   connections finish on their own and are never cut. Clients whose
//!   persistence record names it are still sent to it (while it passes
//!   its checks), as with BIG-IP's "Disabled" and HAProxy's "drain".
//!   Health checks go on.
//! - `disabled`: forced offline (BIG-IP "Forced Offline"): no new
//!   connections of any kind, persistence ignored; existing connections
//!   run on until they end. Health checks go on.
//!
//! Neither cuts a connection: to cut, an operator waits for the drain or
//! uses the pool's `on_down = "reset"` with a failing check.

use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminState {
    #[default]
    Enabled,
    Disabled,
    Draining,
}

impl AdminState {
    pub fn name(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Disabled => "disabled",
            AdminState::Draining => "draining",
        }
    }

    /// May the scheduler give it a new connection?
    pub fn accepts_new(self) -> bool {
        self == AdminState::Enabled
    }
}

/// Operator states by (config pool index, server address); servers never
/// touched are enabled.
#[derive(Debug, Clone, Default)]
pub struct Admin {
    /// Per snapshot server: the config pool it comes from.
    server_pools: Vec<usize>,
    states: HashMap<(usize, SocketAddr), AdminState>,
}

impl Admin {
    pub fn new(server_pools: Vec<usize>) -> Self {
        Admin { server_pools, states: HashMap::new() }
    }

    /// Sets a state; returns the previous one.
    pub fn set(&mut self, pool: usize, addr: SocketAddr, state: AdminState) -> AdminState {
        let old = self.get(pool, addr);
        if state == AdminState::Enabled {
            self.states.remove(&(pool, addr));
        } else {
            self.states.insert((pool, addr), state);
        }
        old
    }

    pub fn get(&self, pool: usize, addr: SocketAddr) -> AdminState {
        self.states.get(&(pool, addr)).copied().unwrap_or_default()
    }

    /// After a configuration change: the servers' new pools, and the
    /// states kept by pool name (a removed pool's are dropped).
    pub fn remap(&mut self, server_pools: Vec<usize>, old_pools: &[String], new_pools: &[String]) {
        self.server_pools = server_pools;
        self.states = std::mem::take(&mut self.states)
            .into_iter()
            .filter_map(|((p, a), st)| {
                let name = old_pools.get(p)?;
                let q = new_pools.iter().position(|n| n == name)?;
                Some(((q, a), st))
            })
            .collect();
    }

    /// The state of snapshot server `index`, at `addr`.
    pub fn of_server(&self, index: usize, addr: SocketAddr) -> AdminState {
        self.server_pools.get(index).map_or(AdminState::Enabled, |p| self.get(*p, addr))
    }

    /// The snapshot servers of each config pool, in slot order (VRRP's
    /// pool tracking asks every turn: a pool's members, not every slot).
    pub fn pool_members(&self) -> Vec<Vec<usize>> {
        let mut m: Vec<Vec<usize>> = Vec::new();
        for (i, p) in self.server_pools.iter().enumerate().filter(|(_, p)| **p != usize::MAX) {
            if m.len() <= *p {
                m.resize(p + 1, Vec::new());
            }
            m[*p].push(i);
        }
        m
    }

    /// The config pool of snapshot server `index`.
    pub fn pool_of(&self, index: usize) -> Option<usize> {
        self.server_pools.get(index).copied()
    }
}

/// Whether a server takes new connections: a positive weight, passing
/// health checks, and the operator's consent.
pub fn takes_new(weight: u32, health_up: bool, admin: AdminState) -> bool {
    weight > 0 && health_up && admin.accepts_new()
}

/// The state `show servers` prints: the operator's when it is not
/// `enabled`, otherwise health's (`up`/`down`), or `weight-0`.
pub fn display_state(weight: u32, health_up: bool, admin: AdminState) -> &'static str {
    match admin {
        AdminState::Disabled => "disabled",
        AdminState::Draining => "draining",
        AdminState::Enabled if !health_up => "down",
        AdminState::Enabled if weight == 0 => "weight-0",
        AdminState::Enabled => "up",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_state_and_health_compose() {
        let a: SocketAddr = "198.51.100.11:80".parse().unwrap();
        let b: SocketAddr = "198.51.100.12:80".parse().unwrap();
        // Snapshot servers 0, 1 from pool 0; 2 (same address as 0) from pool 1.
        let mut admin = Admin::new(vec![0, 0, 1]);
        assert_eq!(admin.of_server(0, a), AdminState::Enabled);
        assert_eq!(admin.set(0, a, AdminState::Disabled), AdminState::Enabled);
        assert_eq!(admin.of_server(0, a), AdminState::Disabled);
        assert_eq!(admin.of_server(1, b), AdminState::Enabled);
        assert_eq!(admin.of_server(2, a), AdminState::Enabled, "another pool's member with the same address");
        // Health coming up does not re-enable a disabled server.
        for health_up in [false, true, false, true] {
            assert!(!takes_new(1, health_up, admin.of_server(0, a)));
            assert_eq!(display_state(1, health_up, admin.of_server(0, a)), "disabled");
        }
        assert_eq!(admin.set(0, a, AdminState::Draining), AdminState::Disabled);
        assert!(!takes_new(1, true, admin.of_server(0, a)));
        assert_eq!(display_state(1, true, admin.of_server(0, a)), "draining");
        assert_eq!(admin.set(0, a, AdminState::Enabled), AdminState::Draining);
        // Enabled again: health decides.
        assert!(takes_new(1, true, admin.of_server(0, a)));
        assert!(!takes_new(1, false, admin.of_server(0, a)));
        assert_eq!(display_state(1, false, AdminState::Enabled), "down");
        assert_eq!(display_state(0, true, AdminState::Enabled), "weight-0");
        assert!(!takes_new(0, true, AdminState::Enabled));
        assert_eq!(admin.of_server(99, a), AdminState::Enabled, "unknown index");
    }
}
