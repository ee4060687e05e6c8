//! A parsed command run against the modules' APIs: the `show` renderers
//! of lb, health and arp, lb's run-time changes (checked as a file would
//! be, then applied), and the console's own commands (`show workers`,
//! `show config`, `config reload|save`, `log level`). Changes are logged,
//! said on stdout and listed under `show config`.

use super::command::{self, AddrArg, Command, Names, ServerAction, Show};
use super::dump::PendingDump;
use super::server::ConnId;
use super::{Console, Modules};
use crate::config::{self, Config, LogLevel};
use crate::modules::lb::admin::AdminState;
use crate::modules::lb::{MemberAction, MemberRef, Outcome};
use crate::modules::text::{render_config, table};
use crate::out::say;
use crate::runtime::stats;
use crate::runtime::Runtime;
use furiwake_dataplane::ctl::dump::{AddrMatch, DumpFilter, What};
use std::fmt::Write as _;
use std::time::Instant;

fn to_match(a: &AddrArg) -> AddrMatch {
    AddrMatch { ip: a.ip, port: a.port.unwrap_or(0) }
}

fn member(a: AddrArg) -> MemberRef {
    MemberRef { ip: a.ip, port: a.port }
}

/// Pools with their servers, and virtual servers, for completion.
fn names(cfg: &Config) -> Names {
    Names {
        pools: cfg.pools.iter().map(|p| (p.name.get_ref().clone(), p.servers.iter().map(|s| s.address.get_ref().to_string()).collect())).collect(),
        virtual_servers: cfg.virtual_servers.iter().map(|v| (v.name.get_ref().clone(), v.address.to_string())).collect(),
    }
}

impl Console {
    /// Runs a command; None when its answer comes later (`show connections`).
    pub(super) fn execute(&mut self, conn: ConnId, cmd: Command, now: Instant, m: &mut Modules) -> Option<Result<String, String>> {
        Some(match cmd {
            Command::Help(words) => command::help(&words),
            Command::Names => Ok(names(m.lb.config()).render()),
            Command::Banner => Ok(self.banner()),
            Command::Quit => Ok("bye".into()),
            Command::Server { pool, addr, action } => self.server_command(&pool, addr, action, m),
            Command::AddServer { pool, addr, weight } => m.lb.add_server(&pool, addr, weight).and_then(|(new, message)| self.change(new, message, m)),
            Command::RemoveServer { pool, addr } => self.remove_server(&pool, addr, m),
            Command::AddVirtualServer { name, addr, pool, udp, mode } => {
                m.lb.add_virtual_server(name, addr, pool, udp, mode).and_then(|(new, message)| self.change(new, message, m))
            }
            Command::RemoveVirtualServer { name } => m.lb.remove_virtual_server(&name, m.runtime).and_then(|(new, message)| self.change(new, message, m)),
            Command::Reload => self.reload(m),
            Command::Save { path } => self.save(path.as_deref(), m),
            Command::LogLevel(level) => self.log_level(&level, m),
            Command::VrrpPriority { name, priority } => m.vrrp.set_priority(&name, priority),
            Command::VrrpRelease { name } => m.vrrp.release(&name, m.runtime, m.arp, m.lb, m.health),
            Command::Show(Show::Connections { vip, server, limit }) => {
                let filter = DumpFilter { vip: vip.as_ref().map(to_match), server: server.as_ref().map(to_match), limit, ..DumpFilter::default() };
                self.pending.push_back(PendingDump::new(conn, filter, Default::default(), m.runtime.workers().len(), now));
                self.progress_dumps(now, m);
                return None;
            }
            Command::Show(Show::Persistence { server: Some(AddrArg { port: Some(_), .. }), .. }) => Err("show persistence: server takes an address (a record's server has no port)".into()),
            Command::Show(Show::Persistence { vs, server, limit }) => {
                let scope = match m.lb.persistence_scope(vs.as_deref()) {
                    Ok(s) => s,
                    Err(e) => return Some(Err(e)),
                };
                let filter = DumpFilter { what: What::Persistence, server: server.as_ref().map(to_match), group: scope.index, limit, ..DumpFilter::default() };
                let workers = if scope.in_workers() { m.runtime.workers().len() } else { 0 };
                self.pending.push_back(PendingDump::new(conn, filter, scope, workers, now));
                self.progress_dumps(now, m);
                return None;
            }
            Command::Show(s) => self.show(s, m),
        })
    }

    fn show(&self, s: Show, m: &Modules) -> Result<String, String> {
        let (rt, lb) = (&*m.runtime, &*m.lb);
        match s {
            Show::VirtualServers { name } => lb.show_virtual_servers(name.as_deref(), rt),
            Show::Pools => Ok(lb.show_pools(rt)),
            Show::Servers { pool } => lb.show_servers(pool.as_deref(), rt, m.health),
            Show::Stats => Ok(lb.show_stats(self.rates.window(), rt)),
            Show::Arp => Ok(m.arp.show_arp(rt)),
            Show::Ndp => Ok(m.arp.show_ndp(rt)),
            Show::Routes => Ok(m.arp.show_routes(rt, &lb.config().routes4().copied().collect::<Vec<_>>())),
            Show::Health => Ok(m.health.show(|i| lb.vs_name_of_server(i))),
            Show::Workers => Ok(self.show_workers(rt)),
            Show::Config => Ok(self.show_config(lb.config())),
            Show::Vrrp => Ok(m.vrrp.show()),
            Show::Sync => m.sync.map(|s| s.show(rt)).ok_or_else(|| "no [sync] configured".to_string()),
            Show::L7 => m.l7.map(|l| l.show()).ok_or_else(|| "no protocol = \"http\" virtual server: the L7 engine is not running".to_string()),
            Show::Connections { .. } | Show::Persistence { .. } => Err("internal: dumps are answered later".into()),
        }
    }

    fn show_workers(&self, rt: &Runtime) -> String {
        let lcores = rt.worker_lcores();
        let window = self.rates.window();
        let rows: Vec<Vec<String>> = rt
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

    fn show_config(&self, cfg: &Config) -> String {
        let mut out = render_config(cfg);
        if !self.changes.is_empty() {
            out.push_str("\n\n# changed at run time (included above where they are configuration):");
            for c in &self.changes {
                let _ = write!(out, "\n#   {c}");
            }
        }
        out
    }

    /// `server POOL ADDR enable|disable|drain|weight N`.
    fn server_command(&mut self, pool: &str, arg: AddrArg, action: ServerAction, m: &mut Modules) -> Result<String, String> {
        let action = match action {
            ServerAction::Weight(w) => MemberAction::Weight(w),
            ServerAction::Disable => MemberAction::Admin(AdminState::Disabled),
            ServerAction::Drain => MemberAction::Admin(AdminState::Draining),
            ServerAction::Enable => MemberAction::Admin(AdminState::Enabled),
        };
        match m.lb.member_command(pool, member(arg), action, m.runtime, m.arp, m.health)? {
            Outcome::Unchanged(answer) => Ok(answer),
            Outcome::Changed(message) => {
                self.changed(&message);
                Ok(message)
            }
        }
    }

    /// `pool POOL remove-server ADDR`.
    fn remove_server(&mut self, pool: &str, arg: AddrArg, m: &mut Modules) -> Result<String, String> {
        let (new, message, member) = m.lb.remove_server(pool, member(arg), m.runtime)?;
        let answer = self.change(new, message, m)?;
        // Its operator state goes with it: added again, it starts enabled.
        m.lb.forget(member);
        Ok(answer)
    }

    /// A configuration change from the console: checked as a file would
    /// be (rendered and parsed back: every rule of `check-config`), then
    /// applied (`Lb::apply_config`); logged.
    fn change(&mut self, new: Config, message: String, m: &mut Modules) -> Result<String, String> {
        // Secrets included, or the check would refuse the redacted key;
        // the text is never shown.
        let text = config::render_with_secrets(&new);
        let checked = Config::parse("(running configuration)", &text).map_err(|e| format!("{message}: refused: {}; nothing changed", e.message))?;
        let summary = m.lb.apply_config(checked, m.runtime, m.arp, m.health).map_err(|e| format!("{message}: refused: {e}"))?;
        self.changed(&message);
        Ok(format!("{message}\n{summary}"))
    }

    fn changed(&mut self, message: &str) {
        log::info!("console: {message}");
        say(&format!("admin: {message}"));
        self.changes.push(message.to_string());
    }

    /// `furiwake console`'s greeting.
    fn banner(&self) -> String {
        let mut s = format!("furiwake {}", env!("CARGO_PKG_VERSION"));
        if let Some(p) = &self.config_path {
            s.push_str(&format!(", configuration {}", p.display()));
        }
        if let Some(why) = &self.fallback {
            s.push_str(&format!("\nWARNING: {why}\n(fix the file, then `config reload`)"));
        }
        s
    }

    /// The configuration now running is the last good one (its text as
    /// written to its file).
    pub(super) fn remember_good(&mut self, text: &str) {
        self.fallback = None;
        // A reload before the first start served supersedes it.
        self.starting = None;
        if let Some(good) = &self.last_good {
            if let Err(e) = crate::service::lastgood::remember(good, text) {
                log::warn!("last good configuration: {e}");
            }
        }
    }

    /// `config reload`: the file again; a bad one changes nothing.
    fn reload(&mut self, m: &mut Modules) -> Result<String, String> {
        let Some(path) = self.config_path.clone() else { return Err("config reload: the appliance was not started from a file".into()) };
        let refused = |e: String| format!("config reload refused: {e}; nothing changed");
        let text = std::fs::read_to_string(&path).map_err(|e| refused(format!("{}: cannot read: {e}", path.display())))?;
        let new = Config::parse(&path.display().to_string(), &text).map_err(|e| refused(e.to_string()))?;
        let summary = m.lb.apply_config(new, m.runtime, m.arp, m.health).map_err(|e| format!("config reload refused: {e}"))?;
        self.changes.clear();
        self.remember_good(&text);
        let message = format!("config reloaded from {}", path.display());
        log::info!("console: {message}");
        say(&format!("admin: {message}"));
        Ok(format!("{message}\n{summary}"))
    }

    /// `config save [PATH]`: the running configuration, secrets included,
    /// written whole to the configuration file or PATH (relative: to the
    /// save directory), which must lie in the save directory (`[console]
    /// save_dir`, by default the configuration file's): mode 0600,
    /// atomically (`config::write_secret_file`).
    fn save(&mut self, path: Option<&str>, m: &Modules) -> Result<String, String> {
        let cfg = m.lb.config();
        let dir = config::save_dir(cfg, self.config_path.as_deref()).map_err(|e| format!("config save: {e}"))?;
        let wanted = match path {
            Some(p) => std::path::PathBuf::from(p),
            None => self.config_path.clone().ok_or("config save: give a PATH (the appliance was not started from a file)")?,
        };
        let wanted = if path.is_none() { std::path::absolute(&wanted).unwrap_or(wanted) } else { wanted };
        let target = config::save_target(&wanted, &dir).map_err(|e| format!("config save refused: {e}"))?;
        let text = format!("# The running configuration of furiwake, saved by `config save`.\n\n{}\n", config::render_with_secrets(cfg));
        let kept = config::keep_previous(&target).map_err(|e| format!("config save: {e}"))?;
        config::write_secret_file(&target, &text).map_err(|e| format!("config save: {}: {e}", target.display()))?;
        self.changes.clear();
        if self.config_path.as_deref().and_then(|p| std::path::absolute(p).ok()) == std::path::absolute(&target).ok() {
            self.remember_good(&text);
        }
        let mut message = format!("config saved to {}", target.display());
        if let Some(k) = kept {
            message.push_str(&format!(" (the previous file kept as {})", k.display()));
        }
        log::info!("console: {message}");
        say(&format!("admin: {message}"));
        Ok(message)
    }

    /// `log level LEVEL`.
    fn log_level(&mut self, level: &str, m: &mut Modules) -> Result<String, String> {
        let lv: LogLevel = toml::Value::String(level.to_string()).try_into().map_err(|e| format!("log level {level:?}: {e}"))?;
        log::set_max_level(lv.filter());
        m.lb.set_log_level(lv);
        let message = format!("log level {level}");
        self.changed(&message);
        Ok(message)
    }
}
