//! Sync's console face (`show sync`), metrics and report line.

use super::Sync;
use crate::modules::metrics::{labels, Text};
use crate::runtime::Runtime;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

impl Sync {
    /// The workers' sync counters summed by name (`sent`, `dropped`,
    /// `installed`, `install-failed-<reason>`).
    fn worker_sums(rt: &Runtime) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for c in rt.workers().counters() {
            for (k, v) in c.sync.named() {
                *m.entry(k).or_default() += v;
            }
        }
        m
    }

    /// `show sync`: the peer, datagrams and records each way, drops by
    /// reason, lag, bulk dumps.
    pub fn show(&self, rt: &Runtime) -> String {
        let now = Instant::now();
        let c = &self.counters;
        let mut out = format!("peer {}:{} via {} from {}\n", self.peer, self.port, rt.links()[self.link].name(), self.src);
        let _ = writeln!(
            out,
            "peer seen: {}; lag {} (largest {} ms)",
            self.peer_seen.map_or("never".into(), |t| format!("{} ms ago", now.duration_since(t).as_millis())),
            self.lag.map_or("-".into(), |l| format!("{:.1} ms", l.as_secs_f64() * 1000.0)),
            self.lag_max.as_millis()
        );
        let _ = writeln!(
            out,
            "keys: sending with {:02x} (key {:02x}{}); peer {}, restarts seen {}",
            self.send_key().id(),
            self.keys.current.id(),
            self.keys.previous.as_ref().map_or(String::new(), |p| format!(", previous_key {:02x}", p.id())),
            self.fresh.sender().map_or("never fresh".into(), |s| format!("sender {s:08x}{}", if self.fresh.live(now) { "" } else { " (silent)" })),
            c.peer_restarts
        );
        let _ = writeln!(
            out,
            "ownership key: {:08x}, {}",
            self.owner.id(),
            self.owner.adopted.map_or("drawn here at boot".into(), |t| format!("the peer's, taken {} ms ago", now.duration_since(t).as_millis()))
        );
        let _ = writeln!(
            out,
            "pair check: {}",
            match (self.peer_fingerprint, self.mismatch()) {
                (None, _) => "peer not heard yet".to_string(),
                (Some(_), None) => "ok".to_string(),
                (Some(_), Some(why)) => format!("MISMATCH: {why}"),
            }
        );
        let _ = writeln!(out, "sent: {} datagrams, {} records", c.datagrams_sent, c.records_sent);
        let _ = writeln!(out, "received: {} datagrams, {} records, {} queued to workers", c.datagrams_received, c.records_received, c.records_queued);
        let w = Self::worker_sums(rt);
        let _ = writeln!(
            out,
            "workers: {} records reported, {} lost to a full ring, {} installed, {} rehomed",
            w.get("sent").unwrap_or(&0),
            w.get("dropped").unwrap_or(&0),
            w.get("installed").unwrap_or(&0),
            w.get("rehomed").unwrap_or(&0)
        );
        let mut drops: Vec<String> = c.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if c.install_ring_full > 0 {
            drops.push(format!("install-ring-full {}", c.install_ring_full));
        }
        drops.extend(w.iter().filter(|(k, v)| k.starts_with("install-failed") && **v > 0).map(|(k, v)| format!("{k} {v}")));
        let _ = writeln!(out, "dropped: {}", if drops.is_empty() { "none".into() } else { drops.join(", ") });
        let asked = match self.asked.done {
            Some((at, n, took)) => format!("received {} ms ago: {n} records in {} ms", now.duration_since(at).as_millis(), took.as_millis()),
            None if self.holds_preempt() => "asked, waiting (preemption held)".into(),
            None => "asked, none came within bulk_limit_ms".into(),
        };
        let _ = write!(out, "bulk dump: {asked}; served to the peer {} times", c.bulk_requests_served);
        out
    }

    /// The sync families.
    pub fn metrics(&self, t: &mut Text, rt: &Runtime) {
        let c = &self.counters;
        let one = |v: u64| vec![(String::new(), v)];
        t.family("sync_datagrams_sent_total", "counter", "Sync datagrams sent to the peer.", one(c.datagrams_sent));
        t.family("sync_records_sent_total", "counter", "Sync records sent to the peer.", one(c.records_sent));
        t.family("sync_datagrams_received_total", "counter", "Authentic, fresh sync datagrams received.", one(c.datagrams_received));
        t.family("sync_records_received_total", "counter", "Sync records received.", one(c.records_received));
        let mut drops: Vec<(String, u64)> = c.dropped.iter().map(|(k, v)| (labels(&[("reason", k)]), *v)).collect();
        drops.push((labels(&[("reason", "install-ring-full")]), c.install_ring_full));
        t.family("sync_dropped_total", "counter", "Sync datagrams (or records) dropped, by reason.", drops);
        let w = Self::worker_sums(rt);
        t.family("sync_worker_records_total", "counter", "The workers' sync records, by what happened to them.", w.iter().map(|(k, v)| (labels(&[("what", k)]), *v)).collect());
        t.family("sync_lag_microseconds", "gauge", "The last received datagram's age on arrival.", one(self.lag.map_or(0, |l| l.as_micros() as u64)));
        t.family("sync_pair_mismatch", "gauge", "1 while the peer's pair fingerprint (workers, links, services) differs from this box's: its records are refused.", one(u64::from(self.mismatch().is_some())));
        t.family("sync_peer_restarts_total", "counter", "New current sender ids of the peer after the first.", one(c.peer_restarts));
        t.family("sync_bulk_dump_complete", "gauge", "1 once the bulk dump asked for at start has arrived.", one(u64::from(self.asked.done.is_some())));
    }

    /// The report's `sync:` line.
    pub fn report(&self, s: &mut String, rt: &Runtime) {
        let c = &self.counters;
        let w = Self::worker_sums(rt);
        let _ = writeln!(
            s,
            "sync: datagrams_sent {} records_sent {} datagrams_received {} records_received {} installed {} dropped {} bulk_done {}",
            c.datagrams_sent,
            c.records_sent,
            c.datagrams_received,
            c.records_received,
            w.get("installed").unwrap_or(&0),
            c.dropped.values().sum::<u64>() + c.install_ring_full,
            self.asked.done.is_some()
        );
    }
}
