//! Rates for `show stats` and `show workers`: the control plane samples the
//! workers' and ports' monotonic counters about once a second and divides
//! the difference of the last two samples by the time between them, so
//! the workers count as before and nothing on the hot path changes (seed
//! 004's three figures: new connections per second, concurrent
//! connections, throughput).

use std::time::Instant;

/// A worker loop's time (`furiwake_platform::poll`), read for the busy
/// ratio.
pub use furiwake_platform::poll::LoopStats;

/// Traffic counters of one virtual server or real server, summed over
/// workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub pkts: u64,
    pub bytes: u64,
    pub conns_new: u64,
    /// Connection entries: established or not.
    pub entries: u64,
    /// Established connections among them (`FlowState::is_active`).
    pub established: u64,
}

impl Traffic {
    /// Active connections as `ipvsadm -L` counts them: established.
    pub fn active(&self) -> u64 {
        self.established.min(self.entries)
    }

    /// Inactive connections: in a handshake, closing, TIME_WAIT or CLOSE
    /// (and UDP and ICMP flows).
    pub fn inactive(&self) -> u64 {
        self.entries.saturating_sub(self.established)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortSample {
    pub rx_pkts: u64,
    pub rx_bytes: u64,
    pub tx_pkts: u64,
    pub tx_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSample {
    pub rx_pkts: u64,
    pub tx_pkts: u64,
    pub handed_off: u64,
    pub busy_tsc: u64,
    pub total_tsc: u64,
}

/// Every counter the rates need, at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub ports: Vec<PortSample>,
    pub services: Vec<Traffic>,
    pub servers: Vec<Traffic>,
    pub workers: Vec<WorkerSample>,
    /// Per `DropReason`, summed over workers.
    pub drops: Vec<u64>,
}

/// The last two samples.
#[derive(Debug, Default)]
pub struct Rates {
    prev: Option<Sample>,
    last: Option<Sample>,
}

impl Rates {
    pub fn push(&mut self, s: Sample) {
        self.prev = self.last.take();
        self.last = Some(s);
    }

    /// The last two samples and the seconds between them.
    pub fn window(&self) -> Option<(&Sample, &Sample, f64)> {
        let (a, b) = (self.prev.as_ref()?, self.last.as_ref()?);
        let secs = b.at.duration_since(a.at).as_secs_f64();
        (secs > 0.0).then_some((a, b, secs))
    }

    pub fn last(&self) -> Option<&Sample> {
        self.last.as_ref()
    }
}

/// (b - a) / secs for a monotonic counter (wrapping).
pub fn per_sec(a: u64, b: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        b.wrapping_sub(a) as f64 / secs
    }
}

/// 1234567.0 -> "1.23M", 950.0 -> "950".
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a == a.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Busy share of a worker loop between two samples, in percent.
pub fn busy_percent(a: &WorkerSample, b: &WorkerSample) -> Option<f64> {
    let total = b.total_tsc.wrapping_sub(a.total_tsc);
    (total > 0).then(|| 100.0 * b.busy_tsc.wrapping_sub(a.busy_tsc) as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(at: Instant, pkts: u64, busy: u64, total: u64) -> Sample {
        Sample {
            at,
            ports: vec![PortSample { rx_pkts: pkts, ..Default::default() }],
            services: vec![Traffic { pkts, bytes: pkts * 100, conns_new: pkts / 10, entries: 3, established: 2 }],
            servers: vec![],
            workers: vec![WorkerSample { busy_tsc: busy, total_tsc: total, ..Default::default() }],
            drops: vec![],
        }
    }

    #[test]
    fn rates_from_the_last_two_samples() {
        let t0 = Instant::now();
        let mut r = Rates::default();
        assert!(r.window().is_none());
        r.push(sample(t0, 1000, 10, 100));
        assert!(r.window().is_none(), "one sample gives no rate");
        r.push(sample(t0 + Duration::from_secs(2), 5000, 35, 200));
        let (a, b, secs) = r.window().unwrap();
        assert_eq!(secs, 2.0);
        assert_eq!(per_sec(a.ports[0].rx_pkts, b.ports[0].rx_pkts, secs), 2000.0);
        assert_eq!(per_sec(a.services[0].conns_new, b.services[0].conns_new, secs), 200.0);
        assert_eq!(busy_percent(&a.workers[0], &b.workers[0]), Some(25.0));
        r.push(sample(t0 + Duration::from_secs(3), 5000, 35, 200));
        let (a, b, secs) = r.window().unwrap();
        assert_eq!(per_sec(a.ports[0].rx_pkts, b.ports[0].rx_pkts, secs), 0.0);
        assert_eq!(busy_percent(&a.workers[0], &b.workers[0]), None, "no loop time passed");
        assert_eq!(per_sec(u64::MAX, 4, 1.0), 5.0, "wraps");
    }

    #[test]
    fn si_units() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(2.5), "2.5");
        assert_eq!(si(1234.0), "1.2k");
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(4.2e9), "4.20G");
    }
}
