//! `show connections` and `show persistence`: every worker is asked for
//! its matching entries (or records) through its dump cell; the answer
//! goes out once all did (or after `DUMP_DEADLINE`), rendered by the lb
//! module, with the L7 engine's records for `show persistence`.

use super::server::ConnId;
use super::{Console, Modules};
use crate::modules::lb::PersistScope;
use furiwake_dataplane::ctl::dump::{DumpFilter, Dumped, What};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a dump waits for every worker's answer.
const DUMP_DEADLINE: Duration = Duration::from_secs(3);

/// A `show connections` or `show persistence` waiting for the workers.
pub(super) struct PendingDump {
    conn: ConnId,
    filter: DumpFilter,
    /// `show persistence`: whose records (the L7 engine's by name).
    scope: PersistScope,
    deadline: Instant,
    asked: Vec<bool>,
    answered: Vec<Option<u64>>,
    entries: Vec<(usize, Dumped)>,
}

impl PendingDump {
    /// A dump from `conn` for `workers` workers (none: the answer is the
    /// L7 engine's alone).
    pub(super) fn new(conn: ConnId, filter: DumpFilter, scope: PersistScope, workers: usize, now: Instant) -> Self {
        PendingDump { conn, filter, scope, deadline: now + DUMP_DEADLINE, asked: vec![false; workers], answered: vec![None; workers], entries: Vec::new() }
    }
}

impl Console {
    /// Asks the workers for their entries and answers the oldest pending
    /// dump once all did (or after `DUMP_DEADLINE`).
    pub(super) fn progress_dumps(&mut self, now: Instant, m: &Modules) {
        let Some(d) = self.pending.front_mut() else { return };
        for (w, dump) in m.runtime.workers().dumps().enumerate().take(d.asked.len()) {
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
        let Some(d) = self.pending.pop_front() else { return };
        let conn = d.conn;
        let answer = if done {
            Ok(render(d, m))
        } else {
            let late: Vec<String> = d.answered.iter().enumerate().filter(|(_, a)| a.is_none()).map(|(w, _)| w.to_string()).collect();
            Err(format!("worker(s) {} did not answer within {} s", late.join(", "), DUMP_DEADLINE.as_secs()))
        };
        self.reply(conn, answer);
    }
}

fn render(d: PendingDump, m: &Modules) -> String {
    let matched = d.answered.iter().map(|m| m.unwrap_or(0)).sum();
    let limit = d.filter.limit;
    match d.filter.what {
        What::Connections => {
            let entries = d.entries.into_iter().filter_map(|(w, e)| if let Dumped::Connection(c) = e { Some((w, c)) } else { None }).collect();
            m.lb.render_connections(entries, matched, limit)
        }
        What::Persistence => {
            let records = d.entries.into_iter().filter_map(|(w, e)| if let Dumped::Persistence(r) = e { Some((w, r)) } else { None }).collect();
            let server: Option<IpAddr> = d.filter.server.map(|s| s.ip);
            let wants_l7 = d.scope.group.is_none() || d.scope.index.is_none();
            let l7 = m.l7.filter(|_| wants_l7).map(|l| l.records(d.scope.group.as_deref(), server, limit as usize));
            m.lb.render_persistence(records, matched, l7, limit)
        }
    }
}
