//! Load balancing: the running configuration compiled into the snapshot
//! the workers read (control computes, workers look up), and changed at
//! run time without dropping a connection.
//!
//! - `build`: a `Config` to a `Snapshot` on stable slots (`Layout`):
//!   servers' next hops, schedules, full-NAT local addresses.
//! - `restart`: what only a restart can change.
//! - `admin`: the operator's enable/disable/drain state of pool members.
//! - `loads`: bytes per second per server for the load-aware schedulers.
//! - `publish`: the snapshot with the servers' states applied; hash
//!   tables rebuilt only for the pools that changed.
//! - `commands`: the console's run-time changes (server weight and
//!   state, servers and virtual servers added and removed).
//! - `show`: `show virtual-servers|pools|servers|stats|connections`.
//! - `metrics`: the virtual servers' and servers' metrics and report
//!   lines.
//!
//! Its steps in the control loop: `publish_loads` every turn,
//! `republish` when health or an operator changes a server's state,
//! `collect_retired` once a second. A configuration change
//! (`apply_config`) also retargets health and gives the ARP module the
//! addresses and next hops it now owns.

pub mod admin;
pub mod build;
mod commands;
pub mod loads;
mod metrics;
pub mod publish;
mod show;

pub use commands::{MemberAction, MemberRef, Outcome, VsMode};
pub use show::PersistScope;

use crate::config::{Config, LogLevel};
use crate::modules::arp::{Arp, Nexthop};
use crate::modules::health::{Health, Target, Via, ViaKind};
use crate::runtime::Runtime;
use admin::{Admin, AdminState};
use build::{LinkInfo, Slot, SlotKind};
use furiwake_dataplane::lb::Loads;
use furiwake_dataplane::state::counters::ServiceCounters;
use furiwake_dataplane::state::snapshot::{Snapshot, VirtualService, MAX_SERVERS};
use crate::config::restart_needed;
use std::net::Ipv4Addr;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

pub struct Lb {
    /// The running configuration: the whole file (the other modules read
    /// their sections through `config`).
    cfg: Config,
    /// The snapshot as built from the config; published copies differ in
    /// the servers' `enabled` flags (health).
    base: Snapshot,
    /// Where each virtual server and server sits in the snapshot.
    layout: build::Layout,
    /// Per service and server slot: the snapshot generation that retired
    /// it; it is freed only once every worker has moved past it.
    retired_gen: [Vec<u64>; 2],
    /// What the load-aware schedulers read, per server slot.
    loads: Arc<Loads>,
    /// Bytes per second per server, for `loads`.
    rates: loads::Rates,
    /// Where `publish_loads`'s pass over the servers stands.
    loads_at: usize,
    /// Per service slot: the hash schedule last built and what it was
    /// built over (key, servers with their effective weights).
    tables: std::cell::RefCell<publish::HashTables>,
    /// The operator's enable/disable/drain states.
    admin: Admin,
    /// Per config pool: its servers' snapshot slots (`pool_up`).
    pool_members: Vec<Vec<usize>>,
    /// VIPs whose VRRP instance is not master here (`vrrp`): their
    /// virtual servers are published `standby`.
    standby: HashSet<Ipv4Addr>,
}

/// What the other modules start from, compiled with the configuration.
pub struct Initial {
    /// Per link: the addresses ARP answers for.
    pub owned: Vec<Vec<Ipv4Addr>>,
    /// Per link: the IPv6 VIPs and local addresses ND answers for.
    pub owned6: Vec<Vec<std::net::Ipv6Addr>>,
    /// The next hops to keep resolved, by neighbour slot.
    pub nexthops: Vec<Nexthop>,
    /// The servers to probe.
    pub targets: Vec<Target>,
}

/// The links of `rt` as the builder needs them.
fn link_infos(rt: &Runtime) -> Vec<LinkInfo> {
    let mut infos: Vec<LinkInfo> = rt.links().iter().map(|l| LinkInfo { port_id: l.port_id(), vlan: l.vlan(), route: l.route(), mac: l.mac(), address: l.address(), address6: l.address6(), mtu: l.mtu(), host: false }).collect();
    // The host link comes last (the snapshot's `host`).
    if let Some(h) = rt.host() {
        infos.push(LinkInfo { port_id: h.port_id(), vlan: 0, route: false, mac: h.mac(), address: crate::config::Ipv4Cidr { addr: std::net::Ipv4Addr::UNSPECIFIED, prefix_len: 32 }, address6: None, mtu: h.mtu(), host: true });
    }
    infos
}

/// A direct-server-return virtual server's servers are probed at its VIP,
/// as its clients reach them (`health::Via`).
fn probe_via(v: &VirtualService) -> Option<Via> {
    use furiwake_dataplane::state::snapshot::Forwarding as F;
    let kind = match v.forwarding {
        F::Nat | F::FullNat | F::Snat | F::Gateway | F::Local | F::LocalOut => return None,
        F::DsrL2 => ViaKind::Mac,
        F::DsrDscp => ViaKind::Dscp(v.dscp),
        F::DsrTunnel => {
            let t = v.tunnel?;
            ViaKind::Tunnel { kind: t.kind, port: t.port }
        }
    };
    Some(Via { vip: Ipv4Addr::from(v.ip), kind })
}

/// One health target per live server whose pool has checks.
fn targets(cfg: &Config, built: &build::Built) -> Vec<Target> {
    let mut targets = Vec::new();
    for (si, rs) in built.snapshot.servers.iter().enumerate() {
        let Some(pool) = built.server_pools.get(si).and_then(|p| cfg.pools.get(*p)) else { continue };
        let checks: Vec<_> = pool.check_names().filter_map(|n| cfg.health_checks.iter().find(|h| h.name.get_ref() == n.get_ref())).cloned().collect();
        if checks.is_empty() {
            continue;
        }
        let link = built.nexthops.get(rs.nexthop as usize).map_or(0, |n| n.link);
        let via = built.snapshot.services.get(rs.vs as usize).and_then(probe_via);
        targets.push(Target { server: si, pool: pool.name.get_ref().clone(), addr: rs.socket_addr(), link, nexthop: rs.nexthop, checks, via });
    }
    targets
}

impl Lb {
    /// Compiles `cfg` for the links of `rt`.
    pub fn new(cfg: Config, rt: &Runtime) -> Result<(Lb, Initial), String> {
        let built = build::build(&cfg, &link_infos(rt))?;
        let initial = Initial { owned: built.owned.clone(), owned6: built.owned6.clone(), nexthops: built.nexthops.clone(), targets: targets(&cfg, &built) };
        let mut lb = Lb {
            cfg,
            base: built.snapshot,
            layout: built.layout,
            retired_gen: [Vec::new(), Vec::new()],
            // Sized for every slot a configuration change may use.
            loads: Arc::new(Loads::new(MAX_SERVERS)),
            rates: loads::Rates::default(),
            loads_at: 0,
            tables: std::cell::RefCell::new(publish::HashTables::default()),
            pool_members: Vec::new(),
            admin: Admin::new(built.server_pools),
            standby: HashSet::new(),
        };
        lb.pool_members = lb.admin.pool_members();
        Ok((lb, initial))
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The servers' loads, for the workers.
    pub fn loads(&self) -> &Arc<Loads> {
        &self.loads
    }

    /// How many virtual-server and server slots the snapshot has.
    pub fn slots(&self) -> (usize, usize) {
        (self.base.services.len(), self.base.servers.len())
    }

    /// `[logging] level` of the running configuration (`log level`).
    pub fn set_log_level(&mut self, level: LogLevel) {
        self.cfg.logging.level = level;
    }

    /// Active connections of a slot, over the workers.
    fn active(rt: &Runtime, kind: SlotKind, slot: usize) -> u64 {
        match kind {
            SlotKind::Service => rt.workers().service_active(slot),
            SlotKind::Server => rt.workers().server_active(slot),
        }
    }

    /// Runs `new` in place of the running configuration without dropping
    /// a connection (console changes, `config reload`): validated first,
    /// then the snapshot rebuilt on the same slots (`build::Layout`), health
    /// targets carried over, ARP ownership and next hops extended, and
    /// published. What only a restart can change is refused.
    pub fn apply_config(&mut self, new: Config, rt: &mut Runtime, arp: &mut Arp, health: &mut Health) -> Result<String, String> {
        restart_needed(&self.cfg, &new)?;
        let infos = link_infos(rt);
        let min_seen = rt.workers().min_seen();
        let busy = |kind: SlotKind, slot: usize| Self::active(rt, kind, slot) > 0 || self.retired_gen[kind as usize].get(slot).is_some_and(|g| *g > min_seen);
        let built = build::rebuild(&new, &infos, &self.layout, &self.base, &busy)?;
        // Open connections depend on their virtual server's forwarding and
        // local addresses (where replies come back), and on its persistence
        // key (which worker owns them, `pipeline::owner`; which record they
        // reference). Those change only while it has no connection.
        for (i, (old, new)) in self.base.services.iter().zip(built.snapshot.services.iter()).enumerate() {
            let live = |l: &build::Layout| l.services.get(i).is_some_and(Slot::is_live);
            let key = |v: &VirtualService| (v.forwarding, v.local_addrs.clone(), v.persistence.map(|p| (p.kind, p.prefix, p.group)));
            if live(&self.layout) && live(&built.layout) && key(old) != key(new) && Self::active(rt, SlotKind::Service, i) > 0 {
                return Err(format!(
                    "virtual_server {:?}: its forwarding, local addresses or persistence (kind, netmask, group) cannot change while it has connections; nothing changed (wait for them to end, or restart)",
                    old.name
                ));
            }
        }
        let before = (self.layout.services.iter().filter(|s| s.is_live()).count(), self.layout.servers.iter().filter(|s| s.is_live()).count());
        let before_owned = arp.reconfigure(built.owned.clone(), &built.nexthops);
        arp.nd.answer_for(rt, built.owned6.clone());
        health.retarget(targets(&new, &built), Instant::now());
        let old_pools: Vec<String> = self.cfg.pools.iter().map(|p| p.name.get_ref().clone()).collect();
        let new_pools: Vec<String> = new.pools.iter().map(|p| p.name.get_ref().clone()).collect();
        self.admin.remap(built.server_pools.clone(), &old_pools, &new_pools);
        self.pool_members = self.admin.pool_members();
        if std::env::var_os("RUST_LOG").is_none() {
            log::set_max_level(new.logging.level.filter());
        }
        self.cfg = new;
        self.base = built.snapshot;
        let old_layout = std::mem::replace(&mut self.layout, built.layout);
        let snap = self.current_snapshot(health, rt);
        let generation = rt.workers_mut().publish(snap);
        for (kind, now, before) in [
            (SlotKind::Service, self.layout.services.iter().map(Slot::is_retired).collect::<Vec<_>>(), old_layout.services.iter().map(Slot::is_retired).collect::<Vec<_>>()),
            (SlotKind::Server, self.layout.servers.iter().map(Slot::is_retired).collect(), old_layout.servers.iter().map(Slot::is_retired).collect()),
        ] {
            let gens = &mut self.retired_gen[kind as usize];
            gens.resize(now.len(), 0);
            for (i, r) in now.iter().enumerate() {
                if *r && !before.get(i).copied().unwrap_or(false) {
                    gens[i] = generation;
                }
            }
        }
        // Gratuitous ARP for the addresses this change added.
        arp.announce_added(rt, &before_owned);
        arp.resolve_nexthops(rt, Instant::now());
        let retired_v = self.layout.services.iter().filter(|s| s.is_retired()).count();
        let retired_s = self.layout.servers.iter().filter(|s| s.is_retired()).count();
        Ok(format!(
            "{} virtual servers (was {}), {} servers (was {}); removed ones with open connections: {retired_v} virtual servers, {retired_s} servers",
            self.layout.services.iter().filter(|s| s.is_live()).count(),
            before.0,
            self.layout.servers.iter().filter(|s| s.is_live()).count(),
            before.1
        ))
    }

    /// Frees the slots of removed virtual servers and servers whose last
    /// connection has ended (once a second).
    pub fn collect_retired(&mut self, rt: &mut Runtime, arp: &mut Arp, health: &mut Health) {
        let any = self.layout.services.iter().enumerate().any(|(i, s)| s.is_retired() && Self::active(rt, SlotKind::Service, i) == 0)
            || self.layout.servers.iter().enumerate().any(|(i, s)| s.is_retired() && Self::active(rt, SlotKind::Server, i) == 0);
        if any {
            if let Err(e) = self.apply_config(self.cfg.clone(), rt, arp, health) {
                log::warn!("freeing removed servers: {e}");
            }
        }
    }

    /// The snapshot index of the live virtual server `name`.
    fn vs_slot(&self, name: &str) -> Option<usize> {
        self.base.services.iter().position(|v| !v.retired && v.name == name)
    }

    /// The base snapshot with each server enabled when its weight is
    /// positive, its health checks pass and the operator lets it.
    pub fn current_snapshot(&self, health: &Health, rt: &Runtime) -> Snapshot {
        let state = |i: usize, s: &furiwake_dataplane::lb::RealServer| {
            // Removed (retired or free): no new connection, nothing cut.
            if !self.layout.servers.get(i).is_some_and(Slot::is_live) {
                return None;
            }
            let admin = self.admin.of_server(i, s.socket_addr());
            let up = health.is_up(i);
            Some(publish::ServerState {
                enabled: admin::takes_new(s.weight, up, admin),
                sticky_only: admin == AdminState::Draining && s.weight > 0 && up,
                reset: !up && self.cuts_connections(i, s.vs as usize, health, rt),
                epoch: health.epoch(s.socket_addr().ip()),
            })
        };
        publish::with_states(&self.base, state, |ip| self.standby.contains(&Ipv4Addr::from(ip)), &mut self.tables.borrow_mut())
    }

    /// Publishes the base snapshot with health and operator states
    /// applied; the generation the workers will see it as.
    pub fn republish(&self, rt: &mut Runtime, health: &Health) -> u64 {
        let snap = self.current_snapshot(health, rt);
        rt.workers_mut().publish(snap)
    }

    /// Moves the hash tables being rebuilt on (a bounded share a turn,
    /// `publish::TABLE_STEPS_PER_TURN`) and publishes once one is done.
    /// Every turn.
    pub fn step_tables(&mut self, rt: &mut Runtime, health: &Health) {
        let done = self.tables.borrow_mut().step(publish::TABLE_STEPS_PER_TURN);
        if done {
            self.republish(rt, health);
        }
    }

    /// The VRRP addresses at start (before the workers run): all standby.
    pub fn init_standby(&mut self, standby: HashSet<Ipv4Addr>) {
        self.standby = standby;
    }

    /// The VIPs a VRRP peer owns now (their virtual servers forward
    /// nothing here); publishes when that changed. The generation to wait
    /// for, or None when nothing changed.
    pub fn set_standby(&mut self, standby: HashSet<Ipv4Addr>, rt: &mut Runtime, health: &Health) -> Option<u64> {
        if standby == self.standby {
            return None;
        }
        self.standby = standby;
        Some(self.republish(rt, health))
    }

    /// Servers of pool `name` that are up (health and operator), for VRRP's
    /// pool tracking.
    pub fn pool_up(&self, name: &str, health: &Health) -> usize {
        let Some(pool) = self.cfg.pools.iter().position(|p| p.name.get_ref() == name) else { return 0 };
        self.pool_members.get(pool).map_or(0, |m| m.iter().filter(|&&i| self.layout.servers.get(i).is_some_and(Slot::is_live) && health.is_up(i)).count())
    }

    /// Publishes what the load-aware schedulers read, per server, each
    /// under its own slot: connections summed over workers for
    /// `LOADS_PER_TURN` servers a turn (all of them every turn up to that
    /// many; a pass over 65,536 takes 64 turns), the RTTs the probes
    /// measured since the last turn, bytes per second every
    /// `loads::SAMPLE`. Every turn.
    pub fn publish_loads(&mut self, rt: &Runtime, health: &mut Health) {
        const LOADS_PER_TURN: usize = 1024;
        let n = self.base.servers.len();
        let workers = rt.workers();
        let sum = |i: usize, f: &dyn Fn(&ServiceCounters) -> u64| workers.sum(|c| c.servers.get(i).map_or(0, f));
        let from = if self.loads_at >= n { 0 } else { self.loads_at };
        let to = (from + LOADS_PER_TURN).min(n);
        for i in from..to {
            self.loads.set(i, sum(i, &|c| c.conns_active.get()));
            self.loads.set_established(i, sum(i, &|c| c.conns_established.get()));
        }
        self.loads_at = to;
        for (i, rtt) in health.take_rtts() {
            self.loads.set_rtt_us(i, rtt.map(|us| us.round() as u64));
        }
        self.rates.sample(Instant::now(), n, |i| sum(i, &|c| c.in_bytes.get().wrapping_add(c.out_bytes.get())), &self.loads);
    }

    /// A down server's connections are cut with `on_down = "reset"`,
    /// unless the pool says `slow_down` and the server only timed out while
    /// it still has connections: overloaded, not dead (seed 004).
    fn cuts_connections(&self, server: usize, vs: usize, health: &Health, rt: &Runtime) -> bool {
        let name = self.base.services.get(vs).filter(|v| !v.retired).map(|v| v.name.as_str());
        let Some(pool) = self
            .cfg
            .virtual_servers
            .iter()
            .find(|v| Some(v.name.get_ref().as_str()) == name)
            .and_then(|v| self.cfg.pools.iter().find(|p| p.name.get_ref() == v.pool.get_ref()))
        else {
            return false;
        };
        let active = rt.workers().server_active(server);
        crate::modules::health::cuts_connections(pool.on_down, pool.slow_down, health.down_reason(server), active)
    }
}
