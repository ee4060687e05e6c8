//! Health checks from the appliance itself (seeds 002, 003, 004): probes
//! leave from the self IP through the DPDK ports, handled by a userspace IP
//! stack (smoltcp) per data link on the control lcore; replies reach it as
//! frames the workers punt. Nothing here runs on a worker.
//!
//! Per server and check: `rise` consecutive successes make it up, `fall`
//! consecutive failures make it down (a server with checks starts down and
//! comes up after `rise` successes, as a BIG-IP member is "checking" until
//! its monitor passes). A server is up when every check of its pool passes.
//! The lb module turns the states into the snapshot's `enabled` flags;
//! workers only look them up. Each success's round-trip time feeds an EWMA
//! kept for the scheduler and the stats.
//!
//! - `probes`: the engine (targets, checks, rise and fall; `run`: one
//!   probe's start, news and verdict).
//! - `stack`: the probes' smoltcp interfaces on IP, in shards of a
//!   bounded number of sockets, per link.
//! - `timers`: the heap probes start and time out from.
//! - `ports`: each server's rotation through the probe source ports.
//! - `judge`: what an answer means; what a down server's connections
//!   become.
//!
//! Its step in the control loop is `step` (probes run, frames sent, state
//! changes logged); its console face `show health`; its metrics and report
//! line the probe counters. The lb module gives it its targets
//! (`retarget`) and reads the servers' states.

mod judge;
mod ports;
pub mod probes;
mod stack;
mod timers;
mod via;

pub use judge::cuts_connections;
pub use probes::{Change, CheckStatus, HealthCounters, Target};
pub use stack::ProbeLink;
pub use via::{Via, ViaKind};

use crate::config::Route;
use crate::modules::metrics::Text;
use crate::modules::text::{kebab, table};
use crate::out::event;
use crate::runtime::Runtime;
use furiwake_dataplane::state::neighbor::Neighbors;
use probes::Probes;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

pub struct Health {
    probes: Probes,
    /// Per server address: how many times it has gone down (persistence
    /// records made before are stale).
    epochs: HashMap<std::net::IpAddr, u32>,
}

impl Health {
    /// Probe stacks per link of `rt` (its default gateway from
    /// `routes`), watching `targets`; probes go to the MACs the ARP
    /// module keeps in `neighbors`.
    pub fn new(rt: &Runtime, (routes, routes6): (&[Route], &[crate::config::Route6]), targets: Vec<Target>, neighbors: Arc<Neighbors>, now: Instant) -> Self {
        let links: Vec<ProbeLink> = rt
            .links()
            .iter()
            .map(|l| ProbeLink {
                mac: l.mac().0,
                address: l.address().addr,
                prefix_len: l.address().prefix_len,
                gateway: routes.iter().find(|r| r.prefix.prefix_len == 0 && l.address().contains(r.via)).map(|r| r.via),
                address6: l.address6().map(|a| (a.addr, a.prefix_len)),
                gateway6: routes6.iter().find(|r| r.prefix.prefix_len == 0 && l.address6().is_some_and(|a| a.contains(r.via))).map(|r| r.via),
            })
            .collect();
        Health { probes: Probes::new(&links, targets, neighbors, now), epochs: HashMap::new() }
    }

    /// A frame punted from link `link` that may belong to a probe,
    /// received `at` (when the worker took it in).
    pub fn on_frame(&mut self, link: usize, frame: &[u8], at: Instant) {
        self.probes.on_frame(link, frame, at);
    }

    /// Are probes due (the control loop should not sleep)?
    pub fn busy(&self, now: Instant) -> bool {
        self.probes.busy(now)
    }

    /// Runs the probes and sends what they queued; logs state changes.
    /// True when a server changed state (the snapshot is to be
    /// republished).
    /// `horizon`: the workers' answers received up to then are in, later
    /// ones may still wait in a punt ring (`Probes::judge_by`); None when
    /// the rings were drained.
    pub fn step(&mut self, now: Instant, horizon: Option<Instant>, rt: &mut Runtime) -> bool {
        self.probes.judge_by(horizon);
        // Answers first, and what they call for sent at once: an RTT
        // counts to the answer, and the turn's new probes wait.
        let mut changes = self.probes.news(now);
        self.send(rt);
        changes.extend(self.probes.due(Instant::now()));
        self.send(rt);
        if changes.is_empty() {
            return false;
        }
        for c in &changes {
            if let Some(t) = self.probes.target(c.target) {
                if c.up {
                    let rtt = c.rtt.map_or(String::new(), |d| format!(" (rtt {:.1} ms)", d.as_secs_f64() * 1e3));
                    event(&format!("health: server {} (pool {}) up{rtt}", t.addr, t.pool));
                } else {
                    event(&format!("health: server {} (pool {}) down: {}", t.addr, t.pool, c.reason));
                    let epoch = self.epochs.entry(t.addr.ip()).or_insert(0);
                    *epoch = epoch.wrapping_add(1);
                }
            }
        }
        true
    }

    /// Sends what the probes queued, stamped with the time it leaves.
    fn send(&mut self, rt: &mut Runtime) {
        for li in 0..self.probes.links() {
            for frame in self.probes.take_tx(li, Instant::now()) {
                rt.send_frame(li, &frame);
            }
        }
    }

    /// Replaces the targets (a configuration change); see
    /// `Probes::retarget`.
    pub fn retarget(&mut self, targets: Vec<Target>, now: Instant) {
        self.probes.retarget(targets, now);
    }

    /// Is the server behind snapshot index `server` up (true for servers
    /// without checks)?
    pub fn is_up(&self, server: usize) -> bool {
        self.probes.is_up(server)
    }

    /// The smoothed RTT of a server's probes.
    pub fn rtt_us(&self, server: usize) -> Option<f64> {
        self.probes.rtt_us(server)
    }

    /// The servers whose smoothed RTT changed since the last call, and
    /// their RTT (µs), for the schedulers' loads.
    pub fn take_rtts(&mut self) -> Vec<(usize, Option<f64>)> {
        self.probes.take_rtts()
    }

    /// Every server with checks and its smoothed probe RTT (µs), if any.
    pub fn rtts(&self) -> impl Iterator<Item = (usize, Option<f64>)> + '_ {
        self.probes.rtts()
    }

    /// Why a down server is down (the reason of its first failing check).
    pub fn down_reason(&self, server: usize) -> Option<&str> {
        self.probes.down_reason(server)
    }

    pub fn has_checks(&self, server: usize) -> bool {
        self.probes.has_checks(server)
    }

    /// Where each check of snapshot server `server` stands; empty without
    /// checks.
    pub fn check_status(&self, server: usize) -> Vec<CheckStatus> {
        self.probes.check_status(server)
    }

    /// How many times the server at `ip` has gone down.
    pub fn epoch(&self, ip: std::net::IpAddr) -> u32 {
        self.epochs.get(&ip).copied().unwrap_or(0)
    }

    /// Ends every probe (scripts killed).
    pub fn shutdown(&mut self) {
        self.probes.shutdown();
    }

    /// `show health`; `vs_name(server)` names a snapshot server's virtual
    /// server.
    pub fn show(&self, vs_name: impl Fn(usize) -> String) -> String {
        let mut rows = Vec::new();
        for t in self.probes.targets() {
            let vs = vs_name(t.server);
            let rtt = self.rtt_us(t.server).map_or("-".into(), |r| format!("{:.1}ms", r / 1000.0));
            let up = if self.is_up(t.server) { "up" } else { "down" };
            for c in self.check_status(t.server) {
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
        let h = self.probes.counters;
        let mut out = if rows.is_empty() {
            "no health checks configured".to_string()
        } else {
            table(&["SERVER", "POOL", "VIRTUAL-SERVER", "SERVER-STATE", "CHECK", "KIND", "CHECK-STATE", "LAST", "OK/FAIL-RUN", "RTT"], &rows)
        };
        let _ = write!(out, "\n\nprobes {}; failures {}; state-changes {}; unsolicited {}{}", h.probes, h.failures, h.state_changes, h.unsolicited, skipped(&h));
        out
    }

    /// Its metric families.
    pub fn metrics(&self, t: &mut Text) {
        let h = self.probes.counters;
        t.family("health_probes_total", "counter", "Health probes started (and those failed as unresolved, which send nothing).", vec![(String::new(), h.probes)]);
        t.family("health_state_changes_total", "counter", "Servers going up or down.", vec![(String::new(), h.state_changes)]);
        t.family(
            "health_probes_skipped_total",
            "counter",
            "Health probes not started for a shortage of the box's own (no free source port, no probe stack, no process): no verdict on their servers.",
            vec![(String::new(), h.skipped)],
        );
        t.family(
            "health_unsolicited_total",
            "counter",
            "Frames for the probe stack that answer no open probe, dropped unanswered.",
            vec![(String::new(), h.unsolicited)],
        );
    }

    /// Its line of the report.
    pub fn report(&self, s: &mut String) {
        let h = self.probes.counters;
        let _ = writeln!(s, "health: probes {}; failures {}; state-changes {}; unsolicited {}{}", h.probes, h.failures, h.state_changes, h.unsolicited, skipped(&h));
    }
}

/// `; skipped N (last: REASON)` when probes were not started for the
/// box's own shortage, else nothing.
fn skipped(h: &probes::HealthCounters) -> String {
    match h.last_skip {
        Some(r) if h.skipped > 0 => format!("; skipped {} (the box's own shortage, no verdict; last: {r})", h.skipped),
        _ => String::new(),
    }
}
