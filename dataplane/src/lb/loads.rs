//! What the control plane publishes per server for the load-aware
//! schedulers (`sched` module docs: what the workers see and how late).

use core::sync::atomic::{AtomicU64, Ordering};

/// What the control plane publishes per server (snapshot index) for the
/// load-aware schedulers; one slot per server in each array.
/// Control plane: rw (every loop turn); workers: ro.
#[derive(Debug)]
pub struct Loads {
    /// Connection entries (active and inactive), summed over workers.
    conns: Box<[AtomicU64]>,
    /// Established connections (`FlowState::is_active`), summed over
    /// workers.
    established: Box<[AtomicU64]>,
    /// Smoothed probe RTT in µs; 0: no measurement.
    rtt_us: Box<[AtomicU64]>,
    /// Recent bytes per second, client to server plus server to client.
    bytes_per_s: Box<[AtomicU64]>,
}

fn atomics(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

#[inline]
fn load(a: &[AtomicU64], i: usize) -> u64 {
    a.get(i).map_or(0, |a| a.load(Ordering::Relaxed))
}

fn store(a: &[AtomicU64], i: usize, v: u64) {
    if let Some(a) = a.get(i) {
        a.store(v, Ordering::Relaxed);
    }
}

impl Loads {
    pub fn new(servers: usize) -> Self {
        Self { conns: atomics(servers), established: atomics(servers), rtt_us: atomics(servers), bytes_per_s: atomics(servers) }
    }

    /// Connection entries of `server`, active and inactive (what
    /// `max_connections` limits, as IPVS's upper threshold counts both).
    #[inline]
    pub fn get(&self, server: usize) -> u64 {
        load(&self.conns, server)
    }

    pub fn set(&self, server: usize, v: u64) {
        store(&self.conns, server, v);
    }

    /// Established connections of `server` (IPVS's `activeconns`).
    #[inline]
    pub fn established(&self, server: usize) -> u64 {
        load(&self.established, server)
    }

    pub fn set_established(&self, server: usize, v: u64) {
        store(&self.established, server, v);
    }

    /// What least-connections compares, as IPVS's
    /// `ip_vs_dest_conn_overhead`: active x 256 + inactive, so a server
    /// holding many finished (TIME_WAIT) entries is not taken for a busy
    /// one, while entries still weigh a little.
    #[inline]
    pub fn overhead(&self, server: usize) -> u64 {
        let (all, est) = (self.get(server), self.established(server));
        let est = est.min(all);
        est.saturating_mul(256).saturating_add(all - est)
    }

    /// The smoothed probe RTT of `server` in µs, if it has one.
    #[inline]
    pub fn rtt_us(&self, server: usize) -> Option<u64> {
        Some(load(&self.rtt_us, server)).filter(|r| *r > 0)
    }

    /// Sets (or clears, with None) the RTT of `server`; a measured RTT
    /// below 1 µs is stored as 1 µs (0 means "none").
    pub fn set_rtt_us(&self, server: usize, rtt: Option<u64>) {
        store(&self.rtt_us, server, rtt.map_or(0, |r| r.max(1)));
    }

    /// Recent bytes per second through `server`.
    #[inline]
    pub fn bytes_per_s(&self, server: usize) -> u64 {
        load(&self.bytes_per_s, server)
    }

    pub fn set_bytes_per_s(&self, server: usize, v: u64) {
        store(&self.bytes_per_s, server, v);
    }
}
