//! The console's commands, run on the control lcore with the appliance's
//! state at hand. A child module of `appliance` (declared there with
//! `#[path]`), so it reads the appliance's private state without widening
//! it; everything console-specific lives here and in `console/`.
//!
//! Run-time changes go through the same path as the configuration file:
//! a weight is changed in the running `Config`, the base snapshot is
//! rebuilt from it by `build::build` (schedules recomputed: weighted round
//! robin sequences, Maglev tables), and the snapshot the workers read is
//! republished with the operator's and health's states applied
//! (`current_snapshot`). Existing connections keep their entries and
//! server indices; only new connections see the change.

use super::Appliance;
use crate::modules::text::{kebab, render_config, table};
use crate::out::say;
use crate::config::Config;
use crate::modules::lb::admin::{self, Admin, AdminState};
use crate::console::command::{self, AddrArg, Command, Names, ServerAction, Show};
use crate::console::server::{ConnId, ConsoleServer};
use crate::runtime::stats::{self, Rates, Sample, Traffic};
use furiwake_dataplane::state::counters::ServiceCounters;
use furiwake_dataplane::conntrack::TICK_MS;
use furiwake_dataplane::ctl::dump::{AddrMatch, DumpEntry, DumpFilter};
use furiwake_dataplane::{DropReason, WorkerCounters};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// How long `show connections` waits for every worker's answer.
const DUMP_DEADLINE: Duration = Duration::from_secs(3);
/// Counters are sampled for rates this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The console's state inside the appliance.
pub(super) struct Console {
    pub(super) server: Option<ConsoleServer>,
    /// The operator's enable/disable/drain states.
    pub(super) admin: Admin,
    rates: Rates,
    pending: VecDeque<PendingDump>,
    /// Run-time changes, in order, for `show config`.
    changes: Vec<String>,
}

impl Console {
    pub(super) fn new(server_pools: Vec<usize>) -> Self {
        Console { server: None, admin: Admin::new(server_pools), rates: Rates::default(), pending: VecDeque::new(), changes: Vec::new() }
    }
}

/// A `show connections` waiting for the workers.
struct PendingDump {
    conn: ConnId,
    filter: DumpFilter,
    deadline: Instant,
    asked: Vec<bool>,
    answered: Vec<Option<u64>>,
    entries: Vec<(usize, DumpEntry)>,
}

fn addr(ip: u32, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        n => n.to_string(),
    }
}

fn to_match(a: &AddrArg) -> AddrMatch {
    AddrMatch { ip: u32::from(a.ip), port: a.port.unwrap_or(0) }
}

fn secs(ticks: u32) -> f64 {
    ticks as f64 * TICK_MS as f64 / 1000.0
}

impl Appliance {
    /// Opens the console socket and device from `[console]`.
    pub(super) fn open_console(&mut self) {
        let c = &self.cfg.console;
        self.console.server = Some(ConsoleServer::open(&c.socket, c.device.as_deref()));
    }

    /// One turn of the console: counter samples for the rates, commands
    /// that arrived, dumps the workers answered.
    pub(super) fn console_turn(&mut self, now: Instant) {
        if self.console.rates.last().is_none_or(|s| now.duration_since(s.at) >= SAMPLE_EVERY) {
            let s = self.sample(now);
            self.console.rates.push(s);
        }
        let requests = match self.console.server.as_mut() {
            Some(s) => s.poll(),
            None => return,
        };
        for r in requests {
            let (answer, quit) = match command::parse(&r.line) {
                Ok(None) => (Some(Ok(String::new())), false),
                Ok(Some(Command::Quit)) => (Some(Ok("bye".into())), true),
                Ok(Some(cmd)) => (self.execute(r.conn, cmd, now), false),
                Err(e) => (Some(Err(e)), false),
            };
            if let (Some(a), Some(s)) = (answer, self.console.server.as_mut()) {
                s.answer(r.conn, a, quit);
            }
        }
        self.progress_dumps(now);
    }

    fn reply(&mut self, conn: ConnId, answer: Result<String, String>) {
        if let Some(s) = self.console.server.as_mut() {
            s.answer(conn, answer, false);
        }
    }

    /// Runs a command; None when its answer comes later (`show connections`).
    fn execute(&mut self, conn: ConnId, cmd: Command, now: Instant) -> Option<Result<String, String>> {
        Some(match cmd {
            Command::Help(words) => command::help(&words),
            Command::Names => Ok(self.names().render()),
            Command::Quit => Ok("bye".into()),
            Command::Server { pool, addr, action } => self.server_command(&pool, addr, action),
            Command::AddServer { pool, addr, weight } => self.add_server(&pool, addr, weight),
            Command::RemoveServer { pool, addr } => self.remove_server(&pool, addr),
            Command::AddVirtualServer { name, addr, pool, udp, full_nat } => self.add_virtual_server(name, addr, pool, udp, full_nat),
            Command::RemoveVirtualServer { name } => self.remove_virtual_server(&name),
            Command::Reload => self.reload(),
            Command::Save { path } => self.save(path.as_deref()),
            Command::LogLevel(level) => self.log_level(&level),
            Command::Show(Show::Connections { vip, server, limit }) => {
                let n = self.runtime.workers().len();
                let filter = DumpFilter { vip: vip.as_ref().map(to_match), server: server.as_ref().map(to_match), limit };
                self.console.pending.push_back(PendingDump {
                    conn,
                    filter,
                    deadline: now + DUMP_DEADLINE,
                    asked: vec![false; n],
                    answered: vec![None; n],
                    entries: Vec::new(),
                });
                self.progress_dumps(now);
                return None;
            }
            Command::Show(s) => self.show(s),
        })
    }

    fn show(&self, s: Show) -> Result<String, String> {
        match s {
            Show::VirtualServers { name } => self.show_virtual_servers(name.as_deref()),
            Show::Pools => Ok(self.show_pools()),
            Show::Servers { pool } => self.show_servers(pool.as_deref()),
            Show::Stats => Ok(self.show_stats()),
            Show::Arp => Ok(self.arp.show_arp(&self.runtime)),
            Show::Routes => Ok(self.arp.show_routes(&self.runtime, &self.cfg.routes)),
            Show::Health => Ok(self.health.show(|i| self.base.servers.get(i).and_then(|r| self.base.services.get(r.vs as usize)).map_or("?".into(), |v| v.name.clone()))),
            Show::Workers => Ok(self.show_workers()),
            Show::Config => Ok(self.show_config()),
            Show::Connections { .. } => Err("internal: connections are answered later".into()),
        }
    }

    fn names(&self) -> Names {
        Names {
            pools: self
                .cfg
                .pools
                .iter()
                .map(|p| (p.name.get_ref().clone(), p.servers.iter().map(|s| s.address.get_ref().to_string()).collect()))
                .collect(),
            virtual_servers: self.cfg.virtual_servers.iter().map(|v| (v.name.get_ref().clone(), v.address.to_string())).collect(),
        }
    }

    /// A counter of snapshot server `i` / service `i`, summed over workers.
    fn sum_over(&self, f: impl Fn(&WorkerCounters) -> Option<&ServiceCounters>) -> Traffic {
        self.runtime.workers().traffic(f)
    }

    fn sample(&self, now: Instant) -> Sample {
        self.runtime.sample(now, self.base.services.len(), self.base.servers.len())
    }

    /// Snapshot servers of virtual server `vi` (a snapshot index).
    fn servers_of(&self, vi: usize) -> Vec<usize> {
        self.base.services.get(vi).map_or(Vec::new(), |v| v.members.iter().map(|g| *g as usize).collect())
    }

    /// Does snapshot server `i` take new connections right now (as published)?
    fn published_enabled(&self, i: usize) -> bool {
        self.runtime.workers().published().and_then(|p| p.servers.get(i)).is_some_and(|s| s.enabled)
    }

    fn show_virtual_servers(&self, name: Option<&str>) -> Result<String, String> {
        if let Some(n) = name {
            if !self.cfg.virtual_servers.iter().any(|v| v.name.get_ref() == n) {
                return Err(format!("no virtual server named {n:?} (virtual servers: {})", self.names().virtual_servers.iter().map(|v| v.0.as_str()).collect::<Vec<_>>().join(", ")));
            }
        }
        let mut rows = Vec::new();
        for v in &self.cfg.virtual_servers {
            if name.is_some_and(|n| n != v.name.get_ref()) {
                continue;
            }
            let Some(vi) = self.vs_slot(v.name.get_ref()) else { continue };
            let range = self.servers_of(vi);
            let total = range.len();
            let up = range.into_iter().filter(|i| self.published_enabled(*i)).count();
            let t = self.sum_over(|w| w.services.get(vi));
            rows.push(vec![
                v.name.get_ref().clone(),
                v.address.to_string(),
                kebab(&v.protocol),
                kebab(v.forwarding.get_ref()),
                v.pool.get_ref().clone(),
                format!("{up}/{total}"),
                t.conns_active.to_string(),
                t.conns_new.to_string(),
            ]);
        }
        Ok(table(&["NAME", "ADDRESS", "PROTOCOL", "FORWARDING", "POOL", "TAKING-NEW", "ACTIVE", "TOTAL"], &rows))
    }

    fn show_pools(&self) -> String {
        let mut rows = Vec::new();
        for (pi, p) in self.cfg.pools.iter().enumerate() {
            let checks: Vec<String> = p.check_names().map(|c| c.get_ref().clone()).collect();
            let members: Vec<usize> = (0..self.base.servers.len()).filter(|i| self.console.admin.pool_of(*i) == Some(pi)).collect();
            let up = p
                .servers
                .iter()
                .filter(|s| {
                    let a = *s.address.get_ref();
                    members.iter().any(|i| self.base.servers.get(*i).is_some_and(|r| addr(r.ip, r.port) == a) && self.published_enabled(*i))
                })
                .count();
            let vss: Vec<String> = self.cfg.virtual_servers.iter().filter(|v| v.pool.get_ref() == p.name.get_ref()).map(|v| v.name.get_ref().clone()).collect();
            rows.push(vec![
                p.name.get_ref().clone(),
                kebab(p.algorithm.get_ref()),
                if checks.is_empty() { "-".into() } else { checks.join(",") },
                p.sorry_pool.as_ref().map_or("-".into(), |s| s.get_ref().clone()),
                kebab(&p.on_down),
                format!("{up}/{}", p.servers.len()),
                if vss.is_empty() { "-".into() } else { vss.join(",") },
            ]);
        }
        table(&["POOL", "ALGORITHM", "HEALTH-CHECKS", "SORRY-POOL", "ON-DOWN", "TAKING-NEW", "VIRTUAL-SERVERS"], &rows)
    }

    fn show_servers(&self, pool: Option<&str>) -> Result<String, String> {
        if let Some(p) = pool {
            self.pool_index(p)?;
        }
        let mut rows = Vec::new();
        for (pi, p) in self.cfg.pools.iter().enumerate() {
            if pool.is_some_and(|n| n != p.name.get_ref()) {
                continue;
            }
            for s in &p.servers {
                let a = *s.address.get_ref();
                let members: Vec<usize> = (0..self.base.servers.len())
                    .filter(|i| self.console.admin.pool_of(*i) == Some(pi) && self.base.servers.get(*i).is_some_and(|r| addr(r.ip, r.port) == a))
                    .collect();
                let health_up = members.iter().all(|i| self.health.is_up(*i));
                let checked = members.iter().any(|i| self.health.has_checks(*i));
                let admin = self.console.admin.get(pi, a);
                let mut t = Traffic::default();
                for i in &members {
                    let x = self.sum_over(|w| w.servers.get(*i));
                    t.conns_active = t.conns_active.wrapping_add(x.conns_active);
                    t.conns_new = t.conns_new.wrapping_add(x.conns_new);
                }
                let rtt = members.iter().find_map(|i| self.health.rtt_us(*i)).map_or("-".into(), |r| format!("{:.1}ms", r / 1000.0));
                let last = members
                    .iter()
                    .map(|i| self.health.check_status(*i))
                    .find(|c| !c.is_empty())
                    .map_or("-".into(), |cs| cs.iter().map(|c| c.last_result()).collect::<Vec<_>>().join("; "));
                rows.push(vec![
                    p.name.get_ref().clone(),
                    a.to_string(),
                    admin::display_state(s.weight, health_up, admin).to_string(),
                    if !checked { "unchecked".into() } else if health_up { "up".into() } else { "down".into() },
                    s.weight.to_string(),
                    s.priority.to_string(),
                    t.conns_active.to_string(),
                    t.conns_new.to_string(),
                    rtt,
                    last,
                ]);
            }
        }
        // Removed servers whose connections are still open.
        for (i, slot) in self.layout.servers.iter().enumerate() {
            let crate::modules::lb::build::Slot::Retired((_, p, a)) = slot else { continue };
            if pool.is_some_and(|n| n != p) {
                continue;
            }
            let x = self.sum_over(|w| w.servers.get(i));
            let w = self.base.servers.get(i).map_or(0, |s| s.weight);
            rows.push(vec![p.clone(), a.to_string(), "removed".into(), "-".into(), w.to_string(), "-".into(), x.conns_active.to_string(), x.conns_new.to_string(), "-".into(), "-".into()]);
        }
        Ok(table(&["POOL", "SERVER", "STATE", "HEALTH", "WEIGHT", "PRIORITY", "ACTIVE", "TOTAL", "RTT", "LAST-CHECK"], &rows))
    }

    fn show_stats(&self) -> String {
        let Some((a, b, secs)) = self.console.rates.window() else {
            return "no rates yet: counters are sampled every second; ask again in a moment".into();
        };
        let r = |x: u64, y: u64| stats::per_sec(x, y, secs);
        let mut out = format!("rates over the last {secs:.1} s (pps: packets/s, bps: bits/s)\n\n");
        let mut rows = Vec::new();
        for (i, l) in self.runtime.links().iter().enumerate() {
            let (Some(x), Some(y)) = (a.ports.get(i), b.ports.get(i)) else { continue };
            rows.push(vec![
                l.name().clone(),
                stats::si(r(x.rx_pkts, y.rx_pkts)),
                stats::si(8.0 * r(x.rx_bytes, y.rx_bytes)),
                stats::si(r(x.tx_pkts, y.tx_pkts)),
                stats::si(8.0 * r(x.tx_bytes, y.tx_bytes)),
                y.rx_pkts.to_string(),
                y.tx_pkts.to_string(),
            ]);
        }
        out.push_str(&table(&["PORT", "RX-PPS", "RX-BPS", "TX-PPS", "TX-BPS", "RX-PKTS", "TX-PKTS"], &rows));
        let traffic_row = |name: String, x: &Traffic, y: &Traffic| {
            vec![
                name,
                stats::si(r(x.pkts, y.pkts)),
                stats::si(8.0 * r(x.bytes, y.bytes)),
                stats::si(r(x.conns_new, y.conns_new)),
                y.conns_active.to_string(),
                y.conns_new.to_string(),
            ]
        };
        let mut vrows = Vec::new();
        let mut srows = Vec::new();
        for (vi, v) in self.base.services.iter().enumerate() {
            if !self.layout.services.get(vi).is_some_and(|s| s.is_live() || s.is_retired()) {
                continue;
            }
            if let (Some(x), Some(y)) = (a.services.get(vi), b.services.get(vi)) {
                vrows.push(traffic_row(v.name.clone(), x, y));
            }
            for si in self.servers_of(vi) {
                if let (Some(x), Some(y), Some(rs)) = (a.servers.get(si), b.servers.get(si), self.base.servers.get(si)) {
                    srows.push(traffic_row(format!("{} {}", v.name, addr(rs.ip, rs.port)), x, y));
                }
            }
        }
        out.push_str("\n\n");
        out.push_str(&table(&["VIRTUAL-SERVER", "PPS", "BPS", "NEW-CONN/S", "CONCURRENT", "TOTAL-CONN"], &vrows));
        out.push_str("\n\n");
        out.push_str(&table(&["VIRTUAL-SERVER SERVER", "PPS", "BPS", "NEW-CONN/S", "CONCURRENT", "TOTAL-CONN"], &srows));
        let drops: Vec<Vec<String>> = DropReason::ALL
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let (x, y) = (a.drops.get(i).copied().unwrap_or(0), b.drops.get(i).copied().unwrap_or(0));
                (y > 0).then(|| vec![d.name().to_string(), y.to_string(), stats::si(r(x, y))])
            })
            .collect();
        out.push_str("\n\n");
        if drops.is_empty() {
            out.push_str("drops: none");
        } else {
            out.push_str(&table(&["DROP-REASON", "TOTAL", "PER-SECOND"], &drops));
        }
        out
    }

    fn show_workers(&self) -> String {
        let lcores = self.runtime.worker_lcores();
        let window = self.console.rates.window();
        let rows: Vec<Vec<String>> = self
            .runtime
            .workers()
            .counters()
            .enumerate()
            .map(|(i, c)| {
                let (pps, busy) = match window {
                    Some((a, b, secs)) => match (a.workers.get(i), b.workers.get(i)) {
                        (Some(x), Some(y)) => (
                            stats::si(stats::per_sec(x.rx_pkts, y.rx_pkts, secs)),
                            stats::busy_percent(x, y).map_or("-".into(), |p| format!("{p:.1}%")),
                        ),
                        _ => ("-".into(), "-".into()),
                    },
                    None => ("-".into(), "-".into()),
                };
                vec![
                    i.to_string(),
                    lcores.get(i).map_or("?".into(), u32::to_string),
                    c.rx_packets.get().to_string(),
                    c.tx_packets.get().to_string(),
                    pps,
                    busy,
                    c.handed_off.get().to_string(),
                    c.punted.get().to_string(),
                    c.flows.get().to_string(),
                    c.rejected.get().to_string(),
                    c.total_drops().to_string(),
                ]
            })
            .collect();
        let mut out = table(&["WORKER", "LCORE", "RX-PKTS", "TX-PKTS", "RX-PPS", "BUSY", "HANDED-OFF", "PUNTED", "CONNECTIONS", "REJECTED", "DROPS"], &rows);
        out.push_str("\n(BUSY: share of the loop's time spent in polls that found packets, over the last second)");
        out
    }

    fn show_config(&self) -> String {
        let mut out = render_config(&self.cfg);
        if !self.console.changes.is_empty() {
            out.push_str("\n\n# changed at run time (included above where they are configuration):");
            for c in &self.console.changes {
                let _ = write!(out, "\n#   {c}");
            }
        }
        out
    }

    fn pool_index(&self, name: &str) -> Result<usize, String> {
        self.cfg.pools.iter().position(|p| p.name.get_ref() == name).ok_or_else(|| {
            let all: Vec<&str> = self.cfg.pools.iter().map(|p| p.name.get_ref().as_str()).collect();
            format!("no pool named {name:?} (pools: {})", if all.is_empty() { "none".into() } else { all.join(", ") })
        })
    }

    /// The member `arg` of `pool`: pool index, index in the pool, address.
    fn member(&self, pool: &str, arg: AddrArg) -> Result<(usize, usize, SocketAddrV4), String> {
        let pi = self.pool_index(pool)?;
        let servers = &self.cfg.pools[pi].servers;
        let hits: Vec<usize> =
            (0..servers.len()).filter(|k| *servers[*k].address.get_ref().ip() == arg.ip && arg.port.is_none_or(|p| servers[*k].address.get_ref().port() == p)).collect();
        let list = || servers.iter().map(|s| s.address.get_ref().to_string()).collect::<Vec<_>>().join(", ");
        match hits.as_slice() {
            [k] => Ok((pi, *k, *servers[*k].address.get_ref())),
            [] => Err(format!("pool {pool} has no server {arg} (its servers: {})", list())),
            _ => Err(format!("{arg} is ambiguous in pool {pool}: give IP:PORT ({})", list())),
        }
    }

    /// `server POOL ADDR enable|disable|drain|weight N`.
    fn server_command(&mut self, pool: &str, arg: AddrArg, action: ServerAction) -> Result<String, String> {
        let (pi, k, a) = self.member(pool, arg)?;
        let what = format!("server {a} (pool {pool})");
        let message = match action {
            ServerAction::Weight(w) => {
                let old = self.cfg.pools[pi].servers[k].weight;
                if old == w {
                    return Ok(format!("{what}: weight already {w}"));
                }
                let mut new = self.cfg.clone();
                new.pools[pi].servers[k].weight = w;
                self.apply_config(new).map_err(|e| format!("{what}: weight {w} refused: {e}"))?;
                format!("{what} weight {w} (was {old})")
            }
            _ => {
                let state = match action {
                    ServerAction::Disable => AdminState::Disabled,
                    ServerAction::Drain => AdminState::Draining,
                    _ => AdminState::Enabled,
                };
                let old = self.console.admin.set(pi, a, state);
                if old == state {
                    return Ok(format!("{what}: already {}", state.name()));
                }
                let active = self.active_connections(pi, a);
                let tail = match state {
                    AdminState::Enabled => String::new(),
                    _ => format!("; {active} active connection(s) continue"),
                };
                format!("{what} {} (was {}){tail}", state.name(), old.name())
            }
        };
        self.republish();
        log::info!("console: {message}");
        say(&format!("admin: {message}"));
        self.console.changes.push(message.clone());
        Ok(message)
    }

    fn active_connections(&self, pi: usize, a: SocketAddrV4) -> u64 {
        (0..self.base.servers.len())
            .filter(|i| self.console.admin.pool_of(*i) == Some(pi) && self.base.servers.get(*i).is_some_and(|r| addr(r.ip, r.port) == a))
            .map(|i| self.sum_over(|w| w.servers.get(i)).conns_active)
            .fold(0u64, u64::wrapping_add)
    }

    /// A configuration change from the console: checked as a file would
    /// be (rendered and parsed back: every rule of `check-config`), then
    /// applied (`apply_config`); logged.
    fn change(&mut self, new: Config, message: String) -> Result<String, String> {
        let text = render_config(&new);
        let checked = Config::parse("(running configuration)", &text).map_err(|e| format!("{message}: refused: {}; nothing changed", e.message))?;
        let summary = self.apply_config(checked).map_err(|e| format!("{message}: refused: {e}"))?;
        self.changed(&message);
        Ok(format!("{message}\n{summary}"))
    }

    fn changed(&mut self, message: &str) {
        log::info!("console: {message}");
        say(&format!("admin: {message}"));
        self.console.changes.push(message.to_string());
    }

    /// `pool POOL add-server IP:PORT [weight N]`.
    fn add_server(&mut self, pool: &str, addr: SocketAddrV4, weight: u32) -> Result<String, String> {
        let pi = self.pool_index(pool)?;
        let mut new = self.cfg.clone();
        new.pools[pi].servers.push(crate::config::Server {
            address: toml::Spanned::new(0..0, addr),
            weight,
            max_connections: 0,
            priority: 0,
        });
        let checks = if self.cfg.pools[pi].check_names().next().is_some() { "; new connections once its health checks pass" } else { "" };
        self.change(new, format!("server {addr} (pool {pool}) added, weight {weight}{checks}"))
    }

    /// `pool POOL remove-server ADDR`.
    fn remove_server(&mut self, pool: &str, arg: AddrArg) -> Result<String, String> {
        let (pi, k, a) = self.member(pool, arg)?;
        let active = self.active_connections(pi, a);
        let mut new = self.cfg.clone();
        new.pools[pi].servers.remove(k);
        let answer = self.change(new, format!("server {a} (pool {pool}) removed; {active} active connection(s) finish first"))?;
        // Its operator state goes with it: added again, it starts enabled.
        self.console.admin.set(pi, a, AdminState::Enabled);
        Ok(answer)
    }

    /// `virtual-server add NAME IP:PORT POOL [tcp|udp] [nat|full-nat]`.
    fn add_virtual_server(&mut self, name: String, addr: SocketAddrV4, pool: String, udp: bool, full_nat: bool) -> Result<String, String> {
        self.pool_index(&pool)?;
        let mut new = self.cfg.clone();
        let protocol = if udp { crate::config::Protocol::Udp } else { crate::config::Protocol::Tcp };
        let forwarding = if full_nat { crate::config::Forwarding::FullNat } else { crate::config::Forwarding::Nat };
        new.virtual_servers.push(crate::config::VirtualServer {
            name: toml::Spanned::new(0..0, name.clone()),
            address: addr,
            protocol,
            forwarding: toml::Spanned::new(0..0, forwarding),
            pool: toml::Spanned::new(0..0, pool.clone()),
            local_addresses: Vec::new(),
            persistence: None,
            persistence_group: None,
        });
        self.change(new, format!("virtual-server {name} added: {addr} {} {} pool {pool}", kebab(&protocol), kebab(&forwarding)))
    }

    /// `virtual-server remove NAME`.
    fn remove_virtual_server(&mut self, name: &str) -> Result<String, String> {
        let Some(i) = self.cfg.virtual_servers.iter().position(|v| v.name.get_ref() == name) else {
            let all: Vec<&str> = self.cfg.virtual_servers.iter().map(|v| v.name.get_ref().as_str()).collect();
            return Err(format!("no virtual server named {name:?} (virtual servers: {})", if all.is_empty() { "none".into() } else { all.join(", ") }));
        };
        let active = self.vs_slot(name).map_or(0, |s| self.sum_over(|w| w.services.get(s)).conns_active);
        let mut new = self.cfg.clone();
        new.virtual_servers.remove(i);
        self.change(new, format!("virtual-server {name} removed; {active} active connection(s) finish first"))
    }

    /// `config reload`: the file again; a bad one changes nothing.
    fn reload(&mut self) -> Result<String, String> {
        let Some(path) = self.config_path.clone() else { return Err("config reload: the appliance was not started from a file".into()) };
        let new = Config::load(&path).map_err(|e| format!("config reload refused: {e}; nothing changed"))?;
        let summary = self.apply_config(new).map_err(|e| format!("config reload refused: {e}"))?;
        self.console.changes.clear();
        let message = format!("config reloaded from {}", path.display());
        log::info!("console: {message}");
        say(&format!("admin: {message}"));
        Ok(format!("{message}\n{summary}"))
    }

    /// `config save [PATH]`: the running configuration, written whole
    /// (a temporary file renamed over the target).
    fn save(&mut self, path: Option<&str>) -> Result<String, String> {
        let target = match path {
            Some(p) => std::path::PathBuf::from(p),
            None => self.config_path.clone().ok_or("config save: give a PATH (the appliance was not started from a file)")?,
        };
        let text = format!("# The running configuration of furiwake, saved by `config save`.\n\n{}\n", render_config(&self.cfg));
        let tmp = target.with_extension("toml.tmp");
        std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &target)).map_err(|e| format!("config save: {}: {e}", target.display()))?;
        self.console.changes.clear();
        let message = format!("config saved to {}", target.display());
        log::info!("console: {message}");
        say(&format!("admin: {message}"));
        Ok(message)
    }

    /// `log level LEVEL`.
    fn log_level(&mut self, level: &str) -> Result<String, String> {
        let lv: crate::config::LogLevel = toml::Value::String(level.to_string()).try_into().map_err(|e| format!("log level {level:?}: {e}"))?;
        log::set_max_level(lv.filter());
        self.cfg.logging.level = lv;
        let message = format!("log level {level}");
        self.changed(&message);
        Ok(message)
    }

    /// Publishes the base snapshot with health and operator states applied.
    fn republish(&mut self) {
        let snap = self.current_snapshot();
        self.runtime.workers_mut().publish(snap);
    }

    /// Asks the workers for their entries and answers the oldest pending
    /// `show connections` once all did (or after `DUMP_DEADLINE`).
    fn progress_dumps(&mut self, now: Instant) {
        let Some(d) = self.console.pending.front_mut() else { return };
        for (w, dump) in self.runtime.workers().dumps().enumerate() {
            if !d.asked[w] {
                d.asked[w] = dump.request(&d.filter);
            } else if d.answered[w].is_none() {
                let mut got = Vec::new();
                if let Some(matched) = dump.take(&mut got) {
                    d.answered[w] = Some(matched);
                    d.entries.extend(got.into_iter().map(|e| (w, e)));
                }
            }
        }
        let done = d.answered.iter().all(Option::is_some);
        if !done && now < d.deadline {
            return;
        }
        let Some(d) = self.console.pending.pop_front() else { return };
        let answer = if done {
            Ok(self.render_connections(d.entries, d.answered.iter().map(|m| m.unwrap_or(0)).sum(), d.filter.limit))
        } else {
            let late: Vec<String> = d.answered.iter().enumerate().filter(|(_, a)| a.is_none()).map(|(w, _)| w.to_string()).collect();
            Err(format!("worker(s) {} did not answer within {} s", late.join(", "), DUMP_DEADLINE.as_secs()))
        };
        self.reply(d.conn, answer);
    }

    /// Seed 001's entry layout, one block per connection.
    fn render_connections(&self, mut entries: Vec<(usize, DumpEntry)>, matched: u64, limit: u32) -> String {
        entries.sort_by_key(|(w, e)| (e.vs, e.client_ip, e.client_port, *w));
        entries.truncate(limit as usize);
        let mut out = if entries.len() as u64 == matched {
            format!("{matched} connection(s)")
        } else {
            format!("{matched} connection(s), showing {} (limit {limit})", entries.len())
        };
        for (w, e) in &entries {
            let vs = self.base.services.get(e.vs as usize);
            let pool = vs.and_then(|_| self.console.admin.pool_of(e.server as usize)).and_then(|p| self.cfg.pools.get(p)).map_or("?".into(), |p| p.name.get_ref().clone());
            let _ = write!(
                out,
                "\n\nclient side client address: {}\nclient side server address: {}\nserver side client address: {}\nserver side server address: {}\nvirtual address: {}\nnode address: {}\nprotocol: {}\nstate: {}\nidle: {:.1} s / timeout: {:.0} s\nvirtual server: {} (pool {pool}), worker {w}",
                addr(e.client_ip, e.client_port),
                addr(e.vip, e.vport),
                addr(e.local_ip, e.local_port),
                addr(e.server_ip, e.server_port),
                addr(e.vip, e.vport),
                addr(e.server_ip, e.server_port),
                proto_name(e.proto),
                e.state.name(),
                secs(e.idle_ticks),
                secs(e.timeout_ticks),
                vs.map_or("?".into(), |v| v.name.clone()),
            );
        }
        out
    }
}
