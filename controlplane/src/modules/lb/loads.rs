//! What the control plane measures for the load-aware schedulers beyond
//! what it already has at hand: the recent bytes per second through each
//! server. (Connections are summed from the workers' gauges and RTTs come
//! from the health engine; both are published as they are. See
//! `furiwake_dataplane::lb::sched` for how the workers read them and how stale
//! they may be.)

use furiwake_dataplane::lb::Loads;
use std::time::{Duration, Instant};

/// How often a rate sample is taken: short enough that a download that
/// starts is seen within a tenth of a second, long enough that a sample
/// spans many packets.
pub const SAMPLE: Duration = Duration::from_millis(100);

/// Time constant of the rate's EWMA: a step in traffic shows at 63% after
/// this long and at 95% after three times it; bursts shorter than it are
/// smoothed out.
pub const TAU: Duration = Duration::from_secs(1);

/// Bytes per second per server, an exponentially weighted moving average
/// over `SAMPLE`-long deltas of a monotonic byte counter.
#[derive(Debug, Default)]
pub struct Rates {
    /// The counter at the last sample, per server.
    bytes: Vec<u64>,
    /// The smoothed rate, per server.
    rate: Vec<f64>,
    last: Option<Instant>,
}

impl Rates {
    /// Takes a sample when `SAMPLE` has passed since the last one (the
    /// first call only records the counters): `bytes(i)` is server i's
    /// total (wrapping), and the new rates go to `loads`. Returns whether
    /// it sampled.
    pub fn sample(&mut self, now: Instant, servers: usize, bytes: impl Fn(usize) -> u64, loads: &Loads) -> bool {
        let Some(last) = self.last else {
            self.bytes = (0..servers).map(&bytes).collect();
            self.rate = vec![0.0; servers];
            self.last = Some(now);
            return false;
        };
        let dt = now.saturating_duration_since(last);
        if dt < SAMPLE {
            return false;
        }
        self.last = Some(now);
        self.bytes.resize(servers, 0);
        self.rate.resize(servers, 0.0);
        // Exact for irregular intervals: the weight of the new sample is
        // 1 - e^(-dt/tau).
        let alpha = 1.0 - (-dt.as_secs_f64() / TAU.as_secs_f64()).exp();
        for i in 0..servers {
            let now_bytes = bytes(i);
            let delta = now_bytes.wrapping_sub(self.bytes[i]);
            self.bytes[i] = now_bytes;
            let instant = delta as f64 / dt.as_secs_f64();
            self.rate[i] += alpha * (instant - self.rate[i]);
            // Below 1 B/s is idle: let a finished transfer decay to 0.
            if self.rate[i] < 1.0 {
                self.rate[i] = 0.0;
            }
            loads.set_bytes_per_s(i, self.rate[i].round() as u64);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Drives `Rates` with server 0 moving `per_sample` bytes every sample
    /// for `samples` samples; returns the published rate.
    fn run(r: &mut Rates, t: &mut Instant, total: &Cell<u64>, loads: &Loads, per_sample: u64, samples: u32) -> u64 {
        for _ in 0..samples {
            *t += SAMPLE;
            total.set(total.get().wrapping_add(per_sample));
            assert!(r.sample(*t, 2, |i| if i == 0 { total.get() } else { 7 }, loads));
        }
        loads.bytes_per_s(0)
    }

    #[test]
    fn rate_follows_a_transfer_and_decays_after_it() {
        let loads = Loads::new(2);
        let mut r = Rates::default();
        let mut t = Instant::now();
        let total = Cell::new(u64::MAX - 50_000); // wraps during the test
        assert!(!r.sample(t, 2, |i| if i == 0 { total.get() } else { 7 }, &loads), "first call only records");
        assert!(!r.sample(t + SAMPLE / 2, 2, |_| 0, &loads), "too early");
        // 100 kB per 100 ms = 1 MB/s: 63% after TAU, ~95% after 3 TAU.
        let after_tau = run(&mut r, &mut t, &total, &loads, 100_000, 10);
        assert!((600_000..=660_000).contains(&after_tau), "{after_tau}");
        let steady = run(&mut r, &mut t, &total, &loads, 100_000, 40);
        assert!((990_000..=1_000_000).contains(&steady), "{steady}");
        assert_eq!(loads.bytes_per_s(1), 0, "a counter that does not move is idle");
        // Stopped: below 5% after 3 TAU, exactly 0 eventually.
        let after = run(&mut r, &mut t, &total, &loads, 0, 30);
        assert!(after < 50_000, "{after}");
        let idle = run(&mut r, &mut t, &total, &loads, 0, 200);
        assert_eq!(idle, 0);
    }

    #[test]
    fn irregular_intervals_weigh_by_time() {
        let loads = Loads::new(1);
        let mut r = Rates::default();
        let t0 = Instant::now();
        r.sample(t0, 1, |_| 0, &loads);
        // One long gap of 5 TAU at 2 MB/s is nearly the whole rate.
        assert!(r.sample(t0 + 5 * TAU, 1, |_| 10_000_000, &loads));
        let v = loads.bytes_per_s(0);
        assert!((1_980_000..=2_000_000).contains(&v), "{v}");
    }
}
