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

use super::{say, Appliance};
use crate::config::Config;
use crate::modules::lb::admin::{self, Admin, AdminState};
use crate::console::command::{self, AddrArg, Command, Names, ServerAction, Show};
use crate::console::server::{ConnId, ConsoleServer};
use crate::runtime::stats::{self, PortSample, Rates, Sample, Traffic, WorkerSample};
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

/// `RoundRobin` -> `round-robin`: the config's spelling from a variant's
/// Debug name.
fn kebab(v: &impl std::fmt::Debug) -> String {
    let s = format!("{v:?}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        n => n.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let _ = write!(s, "{c:<w$}  ");
        }
        s.trim_end().to_string()
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn to_match(a: &AddrArg) -> AddrMatch {
    AddrMatch { ip: u32::from(a.ip), port: a.port.unwrap_or(0) }
}

fn secs(ticks: u32) -> f64 {
    ticks as f64 * TICK_MS as f64 / 1000.0
}

/// TOML text of a string (basic string, escaped).
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(o, "\\u{:04X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The running configuration as TOML (what `show config` prints).
pub(crate) fn render_config(cfg: &Config) -> String {
    let mut s = String::new();
    let p = &cfg.platform;
    let list = |v: &[String]| v.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ");
    let _ = writeln!(s, "[platform]\neal_args = [{}]\ncontrol_lcore = {}", list(&p.eal_args), p.control_lcore);
    let lcores: Vec<String> = p.worker_lcores.get_ref().iter().map(u32::to_string).collect();
    let _ = writeln!(
        s,
        "worker_lcores = [{}]\nflows_per_worker = {}\nmbufs = {}\nrx_descriptors = {}\ntx_descriptors = {}\nidle_sleep_us = {}\npersistence_records = {}",
        lcores.join(", "),
        p.flows_per_worker,
        p.mbufs,
        p.rx_descriptors,
        p.tx_descriptors,
        p.idle_sleep_us,
        p.persistence_records
    );
    for i in &cfg.interfaces {
        let _ = writeln!(s, "\n[[interface]]\nname = {}\ndevice = {}\naddress = {}", q(i.name.get_ref()), q(i.device.get_ref()), q(&i.address.to_string()));
    }
    for r in &cfg.routes {
        let _ = writeln!(s, "\n[[route]]\nprefix = {}\nvia = {}", q(&r.prefix.to_string()), q(&r.via.to_string()));
    }
    for h in &cfg.health_checks {
        let _ = writeln!(
            s,
            "\n[[health_check]]\nname = {}\nkind = {}\ninterval_ms = {}\ntimeout_ms = {}\nfall = {}\nrise = {}",
            q(h.name.get_ref()),
            q(&kebab(&h.kind)),
            h.interval_ms,
            h.timeout_ms,
            h.fall,
            h.rise
        );
        if let Some(port) = h.port {
            let _ = writeln!(s, "port = {port}");
        }
        if let Some(st) = h.expect_status {
            let _ = writeln!(s, "expect_status = {st}");
        }
        for (k, v) in [("request", &h.request), ("expect_body", &h.expect_body), ("send", &h.send), ("expect", &h.expect), ("command", &h.command)] {
            if let Some(v) = v {
                let _ = writeln!(s, "{k} = {}", q(v));
            }
        }
    }
    for pool in &cfg.pools {
        let _ = writeln!(s, "\n[[pool]]\nname = {}\nalgorithm = {}", q(pool.name.get_ref()), q(&kebab(pool.algorithm.get_ref())));
        if let Some(h) = &pool.health_check {
            let _ = writeln!(s, "health_check = {}", q(h.get_ref()));
        }
        if !pool.health_checks.is_empty() {
            let hs: Vec<String> = pool.health_checks.iter().map(|h| q(h.get_ref())).collect();
            let _ = writeln!(s, "health_checks = [{}]", hs.join(", "));
        }
        if let Some(h) = &pool.hash {
            let _ = writeln!(s, "hash = {}", q(&kebab(h.get_ref())));
        }
        if let Some(sp) = &pool.sorry_pool {
            let _ = writeln!(s, "sorry_pool = {}", q(sp.get_ref()));
        }
        let _ = writeln!(s, "on_down = {}\nslow_down = {}\nservers = [", q(&kebab(&pool.on_down)), pool.slow_down);
        for sv in &pool.servers {
            let _ = writeln!(
                s,
                "  {{ address = {}, weight = {}, max_connections = {}, priority = {} }},",
                q(&sv.address.get_ref().to_string()),
                sv.weight,
                sv.max_connections,
                sv.priority
            );
        }
        s.push_str("]\n");
    }
    for v in &cfg.virtual_servers {
        let _ = writeln!(
            s,
            "\n[[virtual_server]]\nname = {}\naddress = {}\nprotocol = {}\nforwarding = {}\npool = {}",
            q(v.name.get_ref()),
            q(&v.address.to_string()),
            q(&kebab(&v.protocol)),
            q(&kebab(v.forwarding.get_ref())),
            q(v.pool.get_ref())
        );
        if !v.local_addresses.is_empty() {
            let la: Vec<String> = v.local_addresses.iter().map(|a| q(&a.to_string())).collect();
            let _ = writeln!(s, "local_addresses = [{}]", la.join(", "));
        }
        if let Some(p) = &v.persistence {
            let p = p.get_ref();
            let _ = writeln!(
                s,
                "persistence = {{ kind = {}, netmask = {}, timeout_s = {}, keep_on_down = {} }}",
                q(&kebab(&p.kind)),
                q(&p.netmask.to_string()),
                p.timeout_s,
                p.keep_on_down
            );
        }
        if let Some(g) = &v.persistence_group {
            let _ = writeln!(s, "persistence_group = {}", q(g.get_ref()));
        }
    }
    let t = &cfg.timeouts;
    let _ = writeln!(
        s,
        "\n[timeouts]\ntcp_syn = {}\ntcp_established = {}\ntcp_fin = {}\ntcp_time_wait = {}\ntcp_close = {}\nudp = {}\nicmp = {}",
        t.tcp_syn, t.tcp_established, t.tcp_fin, t.tcp_time_wait, t.tcp_close, t.udp, t.icmp
    );
    let _ = writeln!(s, "\n[logging]\nlevel = {}", q(&kebab(&cfg.logging.level)));
    if let Some(l) = cfg.management.listen {
        let _ = writeln!(s, "\n[management]\nlisten = {}", q(&l.to_string()));
    }
    let _ = writeln!(s, "\n[console]\nsocket = {}", q(&cfg.console.socket));
    if let Some(d) = &cfg.console.device {
        let _ = writeln!(s, "device = {}", q(d));
    }
    s.trim_end().to_string()
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
                let n = self.workers.len();
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
            Show::Arp => Ok(self.show_arp()),
            Show::Routes => Ok(self.show_routes()),
            Show::Health => Ok(self.show_health()),
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
        let mut t = Traffic::default();
        for w in &self.workers {
            if let Some(c) = f(&w.counters) {
                t.pkts = t.pkts.wrapping_add(c.in_pkts.get()).wrapping_add(c.out_pkts.get());
                t.bytes = t.bytes.wrapping_add(c.in_bytes.get()).wrapping_add(c.out_bytes.get());
                t.conns_new = t.conns_new.wrapping_add(c.conns_new.get());
                t.conns_active = t.conns_active.wrapping_add(c.conns_active.get());
            }
        }
        t
    }

    fn sample(&self, now: Instant) -> Sample {
        let ports = self
            .links
            .iter()
            .map(|l| {
                l.port.stats().map_or(PortSample::default(), |st| PortSample {
                    rx_pkts: st.ipackets,
                    rx_bytes: st.ibytes,
                    tx_pkts: st.opackets,
                    tx_bytes: st.obytes,
                })
            })
            .collect();
        let services = (0..self.base.services.len()).map(|i| self.sum_over(|w| w.services.get(i))).collect();
        let servers = (0..self.base.servers.len()).map(|i| self.sum_over(|w| w.servers.get(i))).collect();
        let workers = self
            .workers
            .iter()
            .map(|w| WorkerSample {
                rx_pkts: w.counters.rx_packets.get(),
                tx_pkts: w.counters.tx_packets.get(),
                handed_off: w.counters.handed_off.get(),
                busy_tsc: w.loops.busy_tsc.get(),
                total_tsc: w.loops.total_tsc.get(),
            })
            .collect();
        let drops = DropReason::ALL.iter().map(|r| self.workers.iter().fold(0u64, |a, w| a.wrapping_add(w.counters.drops(*r)))).collect();
        Sample { at: now, ports, services, servers, workers, drops }
    }

    /// Snapshot servers of virtual server `vi` (a snapshot index).
    fn servers_of(&self, vi: usize) -> Vec<usize> {
        self.base.services.get(vi).map_or(Vec::new(), |v| v.members.iter().map(|g| *g as usize).collect())
    }

    /// Does snapshot server `i` take new connections right now (as published)?
    fn published_enabled(&self, i: usize) -> bool {
        self.publisher.as_ref().and_then(|p| p.current().servers.get(i)).is_some_and(|s| s.enabled)
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
        for (i, l) in self.links.iter().enumerate() {
            let (Some(x), Some(y)) = (a.ports.get(i), b.ports.get(i)) else { continue };
            rows.push(vec![
                l.cfg.name.get_ref().clone(),
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

    fn show_arp(&self) -> String {
        let now = Instant::now();
        let mut learned: Vec<_> = self.neighbors.iter().collect();
        learned.sort_by_key(|(ip, _)| **ip);
        let rows: Vec<Vec<String>> = learned
            .iter()
            .map(|(ip, n)| {
                vec![
                    ip.to_string(),
                    n.mac.to_string(),
                    self.links.get(n.interface).map_or("?".into(), |l| l.cfg.name.get_ref().clone()),
                    format!("{}s", now.duration_since(n.updated).as_secs()),
                ]
            })
            .collect();
        let mut out = table(&["ADDRESS", "MAC", "INTERFACE", "AGE"], &rows);
        let hops: Vec<Vec<String>> = self
            .nexthops
            .iter()
            .enumerate()
            .map(|(slot, nh)| {
                vec![
                    nh.hop.ip.to_string(),
                    self.links.get(nh.hop.link).map_or("?".into(), |l| l.cfg.name.get_ref().clone()),
                    slot.to_string(),
                    self.slots.get(slot as u16).map_or("unresolved".into(), |m| m.to_string()),
                    nh.confirmed.map_or("never".into(), |t| format!("{}s ago", now.duration_since(t).as_secs())),
                ]
            })
            .collect();
        out.push_str("\n\nnext hops the workers use:\n");
        out.push_str(&table(&["NEXT-HOP", "INTERFACE", "SLOT", "MAC", "CONFIRMED"], &hops));
        out
    }

    fn show_routes(&self) -> String {
        let mut rows: Vec<Vec<String>> = self
            .links
            .iter()
            .map(|l| {
                let a = l.cfg.address;
                vec![format!("{}/{}", a.network(), a.prefix_len), "connected".into(), l.cfg.name.get_ref().clone(), format!("self {}", a.addr)]
            })
            .collect();
        for r in &self.cfg.routes {
            let iface = self.links.iter().find(|l| l.cfg.address.contains(r.via)).map_or("unreachable".into(), |l| l.cfg.name.get_ref().clone());
            rows.push(vec![r.prefix.to_string(), r.via.to_string(), iface, "static".into()]);
        }
        table(&["PREFIX", "VIA", "INTERFACE", "KIND"], &rows)
    }

    fn show_health(&self) -> String {
        let mut rows = Vec::new();
        for t in self.health.targets() {
            let vs = self.base.servers.get(t.server).and_then(|r| self.base.services.get(r.vs as usize)).map_or("?".into(), |v| v.name.clone());
            let rtt = self.health.rtt_us(t.server).map_or("-".into(), |r| format!("{:.1}ms", r / 1000.0));
            let up = if self.health.is_up(t.server) { "up" } else { "down" };
            for c in self.health.check_status(t.server) {
                rows.push(vec![
                    t.addr.to_string(),
                    t.pool.clone(),
                    vs.clone(),
                    up.into(),
                    c.name.clone(),
                    kebab(&c.kind),
                    if c.passing { "passing".into() } else { "failing".into() },
                    c.last_result(),
                    format!("{}/{}", c.ok_run, c.fail_run),
                    rtt.clone(),
                ]);
            }
        }
        let h = self.health.counters;
        let mut out = if rows.is_empty() {
            "no health checks configured".to_string()
        } else {
            table(&["SERVER", "POOL", "VIRTUAL-SERVER", "SERVER-STATE", "CHECK", "KIND", "CHECK-STATE", "LAST", "OK/FAIL-RUN", "RTT"], &rows)
        };
        let _ = write!(out, "\n\nprobes {}; failures {}; state-changes {}", h.probes, h.failures, h.state_changes);
        out
    }

    fn show_workers(&self) -> String {
        let lcores = self.cfg.platform.worker_lcores.get_ref();
        let window = self.console.rates.window();
        let rows: Vec<Vec<String>> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let c = &w.counters;
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
        if let Some(p) = self.publisher.as_mut() {
            p.publish(Box::new(snap));
        }
    }

    /// Asks the workers for their entries and answers the oldest pending
    /// `show connections` once all did (or after `DUMP_DEADLINE`).
    fn progress_dumps(&mut self, now: Instant) {
        let Some(d) = self.console.pending.front_mut() else { return };
        for (w, h) in self.workers.iter().enumerate() {
            if !d.asked[w] {
                d.asked[w] = h.dump.request(&d.filter);
            } else if d.answered[w].is_none() {
                let mut got = Vec::new();
                if let Some(matched) = h.dump.take(&mut got) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_names_match_the_config_spelling() {
        assert_eq!(kebab(&crate::config::Algorithm::WeightedRoundRobin), "weighted-round-robin");
        assert_eq!(kebab(&crate::config::Forwarding::FullNat), "full-nat");
        assert_eq!(kebab(&crate::config::CheckKind::SendExpect), "send-expect");
        assert_eq!(kebab(&crate::config::OnDown::Keep), "keep");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["xxxx".into(), "1".into()], vec!["y".into(), "22".into()]]);
        assert_eq!(t, "A     LONGER\nxxxx  1\ny     22");
    }

    #[test]
    fn running_config_renders_as_a_valid_equivalent_config() {
        let text = r#"
[platform]
eal_args = ["--no-huge", "-m", "256"]
worker_lcores = [1]
[[interface]]
name = "outside"
device = "net_null0"
address = "192.0.2.2/24"
[[route]]
prefix = "0.0.0.0/0"
via = "192.0.2.1"
[[health_check]]
name = "web-ok"
kind = "http"
request = "GET /health HTTP/1.0\r\n\r\n"
expect_body = "OK \"quoted\""
[[pool]]
name = "web"
algorithm = "weighted-round-robin"
health_check = "web-ok"
servers = [ { address = "192.0.2.11:80", weight = 3, priority = 1 }, { address = "192.0.2.12:80" } ]
[[pool]]
name = "sorry"
servers = [ { address = "192.0.2.13:80" } ]
[[virtual_server]]
name = "www"
address = "192.0.2.100:80"
forwarding = "full-nat"
local_addresses = ["192.0.2.50"]
pool = "web"
persistence = { kind = "source-ip", netmask = "255.255.255.0", timeout_s = 60, keep_on_down = true }
persistence_group = "shop"
[[pool]]
name = "hashed"
algorithm = "source-hash"
hash = "source-destination-ip"
servers = [ { address = "192.0.2.14:80" } ]
[console]
socket = "/tmp/x.sock"
[logging]
level = "debug"
[management]
listen = "127.0.0.1:9100"
"#;
        let cfg = Config::parse("t", text).unwrap();
        let rendered = render_config(&cfg);
        let again = Config::parse("rendered", &rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
        assert_eq!(render_config(&again), rendered);
        assert_eq!(again.pools[0].servers[0].weight, 3);
        assert_eq!(again.pools[0].servers[0].priority, 1);
        assert_eq!(again.health_checks[0].request.as_deref(), Some("GET /health HTTP/1.0\r\n\r\n"));
        assert_eq!(again.health_checks[0].expect_body.as_deref(), Some("OK \"quoted\""));
        assert_eq!(again.virtual_servers[0].local_addresses, vec![Ipv4Addr::new(192, 0, 2, 50)]);
        assert_eq!(again.console.socket, "/tmp/x.sock");
        let p = *again.virtual_servers[0].persistence.as_ref().unwrap().get_ref();
        assert_eq!((p.netmask, p.timeout_s, p.keep_on_down), (Ipv4Addr::new(255, 255, 255, 0), 60, true));
        assert_eq!(again.virtual_servers[0].persistence_group.as_ref().map(|g| g.get_ref().as_str()), Some("shop"));
        assert_eq!(again.pools[2].hash.as_ref().map(|h| *h.get_ref()), Some(crate::config::HashOn::SourceDestinationIp));
        assert_eq!(again.logging.level, crate::config::LogLevel::Debug);
        assert_eq!(again.management.listen, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(again.routes.len(), 1);
    }
}
