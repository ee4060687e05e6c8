//! `show connections`: every worker is asked for its matching entries
//! through its dump cell; the answer goes out once all did (or after
//! `DUMP_DEADLINE`), rendered by the lb module.

use super::server::ConnId;
use super::{Console, Modules};
use furiwake_dataplane::ctl::dump::{DumpEntry, DumpFilter};
use std::time::{Duration, Instant};

/// How long `show connections` waits for every worker's answer.
const DUMP_DEADLINE: Duration = Duration::from_secs(3);

/// A `show connections` waiting for the workers.
pub(super) struct PendingDump {
    conn: ConnId,
    filter: DumpFilter,
    deadline: Instant,
    asked: Vec<bool>,
    answered: Vec<Option<u64>>,
    entries: Vec<(usize, DumpEntry)>,
}

impl PendingDump {
    /// `show connections` from `conn` for `workers` workers.
    pub(super) fn new(conn: ConnId, filter: DumpFilter, workers: usize, now: Instant) -> Self {
        PendingDump { conn, filter, deadline: now + DUMP_DEADLINE, asked: vec![false; workers], answered: vec![None; workers], entries: Vec::new() }
    }
}

impl Console {
    /// Asks the workers for their entries and answers the oldest pending
    /// `show connections` once all did (or after `DUMP_DEADLINE`).
    pub(super) fn progress_dumps(&mut self, now: Instant, m: &Modules) {
        let Some(d) = self.pending.front_mut() else { return };
        for (w, dump) in m.runtime.workers().dumps().enumerate() {
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
        let answer = if done {
            Ok(m.lb.render_connections(d.entries, d.answered.iter().map(|m| m.unwrap_or(0)).sum(), d.filter.limit))
        } else {
            let late: Vec<String> = d.answered.iter().enumerate().filter(|(_, a)| a.is_none()).map(|(w, _)| w.to_string()).collect();
            Err(format!("worker(s) {} did not answer within {} s", late.join(", "), DUMP_DEADLINE.as_secs()))
        };
        self.reply(d.conn, answer);
    }
}
