//! The operator console (README, "Console"): a line-based CLI on a local
//! UNIX socket (`furiwake console`) and on stdin/stdout or a serial device.
//!
//! - `command`: the language — parsing, help, completion, the socket's
//!   framing. Pure, unit-tested.
//! - `server`: the appliance's non-blocking socket and device I/O, polled
//!   from the control loop.
//! - `client`: `furiwake console`, with rustyline.
//! - `dispatch`: runs a command against the modules' APIs (`Modules`):
//!   the `show` renderers and actions of lb, health and arp, and the
//!   console's own (`show workers`, `show config`, `config reload|save`,
//!   `log level`).
//! - `dump`: `show connections`, answered once every worker has.
//!
//! Its step in the control loop is `turn`: counter samples for the rates,
//! the commands that arrived, the dumps the workers answered.

pub mod client;
pub mod command;
mod dispatch;
mod dump;
pub mod server;

use crate::config::ConsoleConfig;
use crate::modules::arp::Arp;
use crate::modules::health::Health;
use crate::modules::lb::Lb;
use crate::runtime::stats::Rates;
use crate::runtime::Runtime;
use command::Command;
use server::{ConnId, ConsoleServer};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Counters are sampled for rates this often.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The modules a command may read or change.
pub struct Modules<'a> {
    pub runtime: &'a mut Runtime,
    pub arp: &'a mut Arp,
    pub health: &'a mut Health,
    pub vrrp: &'a mut crate::modules::vrrp::Vrrp,
    pub sync: Option<&'a crate::modules::sync::Sync>,
    pub l7: Option<&'a crate::modules::l7::L7>,
    pub lb: &'a mut Lb,
}

#[derive(Default)]
pub struct Console {
    server: Option<ConsoleServer>,
    /// The last two counter samples (`show stats`, `show workers`).
    rates: Rates,
    /// `show connections` waiting for the workers, oldest first.
    pending: VecDeque<dump::PendingDump>,
    /// Run-time changes, in order, for `show config`.
    changes: Vec<String>,
    /// The file `config reload` reads and `config save` writes.
    config_path: Option<PathBuf>,
    /// Where the configuration that last started or reloaded is kept.
    last_good: Option<PathBuf>,
    /// Why the box runs on the last good configuration, until a reload.
    fallback: Option<String>,
    /// The text the appliance started from, until it serves.
    starting: Option<String>,
}

impl Console {
    pub fn new() -> Self {
        Console::default()
    }

    /// Opens the console socket and device of `[console]`.
    pub fn open(&mut self, c: &ConsoleConfig) {
        let server = ConsoleServer::open(&c.socket, c.device.as_deref());
        if let (Some(g), Some(p)) = (&c.group, server.socket_path()) {
            if let Err(e) = server::give_to_group(p, g) {
                log::warn!("console socket: {e}");
            }
        }
        self.server = Some(server);
    }

    /// Closes the socket and the device.
    pub fn close(&mut self) {
        self.server = None;
    }

    /// Names the configuration file (`config reload`, `config save`), the
    /// last good one, and why the box runs on that one instead.
    pub fn set_config_path(&mut self, path: &Path, last_good: Option<&Path>, fallback: Option<&str>, text: &str) {
        self.config_path = Some(path.to_path_buf());
        self.last_good = last_good.map(Path::to_path_buf);
        self.fallback = fallback.map(str::to_string);
        self.starting = Some(text.to_string());
    }

    /// The appliance serves: the configuration it started from is the
    /// last good one (unless it is that one already).
    pub fn started_well(&mut self) {
        let Some(text) = self.starting.take() else { return };
        if self.fallback.is_none() {
            self.remember_good(&text);
        }
    }

    /// One turn of the console: counter samples for the rates, commands
    /// that arrived, dumps the workers answered.
    pub fn turn(&mut self, now: Instant, m: &mut Modules) {
        if self.rates.last().is_none_or(|s| now.duration_since(s.at) >= SAMPLE_EVERY) {
            let (services, servers) = m.lb.slots();
            let s = m.runtime.sample(now, services, servers);
            self.rates.push(s);
        }
        let requests = match self.server.as_mut() {
            Some(s) => s.poll(),
            None => return,
        };
        for r in requests {
            let (answer, quit) = match command::parse(&r.line) {
                Ok(None) => (Some(Ok(String::new())), false),
                Ok(Some(Command::Quit)) => (Some(Ok("bye".into())), true),
                Ok(Some(cmd)) => (self.execute(r.conn, cmd, now, m), false),
                Err(e) => (Some(Err(e)), false),
            };
            if let (Some(a), Some(s)) = (answer, self.server.as_mut()) {
                s.answer(r.conn, a, quit);
            }
        }
        self.progress_dumps(now, m);
    }

    fn reply(&mut self, conn: ConnId, answer: Result<String, String>) {
        if let Some(s) = self.server.as_mut() {
            s.answer(conn, answer, false);
        }
    }
}
