//! Choosing a real server for a new connection.
//!
//! Control computes, workers look up (katran's `recalculateHashRing`): the
//! control plane turns each pool's algorithm and weights into a `Schedule`
//! in the snapshot; a worker only walks it with its own cursor. Every
//! algorithm sits behind `Scheduler::pick`.
//!
//! ## What the workers see of the servers' load
//!
//! Connection counts and byte counters are per-worker facts, and the probe
//! RTT is the health engine's (control lcore). The control plane folds them
//! into `Loads`, one slot per snapshot server, on each turn of its loop
//! (well under a millisecond apart), and workers read those slots without
//! locks (relaxed atomics; each value is independent, so no ordering
//! between them is needed):
//!
//! - active connections, summed over workers (least-connections,
//!   composite, `max_connections`), every turn;
//! - the smoothed probe RTT in microseconds (the health engine's EWMA,
//!   0.8 old + 0.2 new per passing probe; 0 = no measurement yet), every
//!   turn — it only moves once per probe interval anyway;
//! - bytes per second through the server, both directions, an EWMA with a
//!   time constant of about a second over 100 ms samples of the workers'
//!   `in_bytes + out_bytes` (least-bandwidth).
//!
//! The trade-off: a worker decides on a view that may lag by one
//! control-loop turn (connections, RTT) or one 100 ms sample (bandwidth),
//! in exchange for a scheduling decision that costs a few loads from
//! shared, read-mostly cache lines and no cross-core traffic on the fast
//! path. Within that lag a burst of new connections on one worker can land
//! on the same server; ties rotate with the worker's cursor so that equal
//! servers still alternate, and `max_connections` may be exceeded by what
//! the workers admit within one turn (documented tolerance).
//!
//! Response-time scheduling has a known weakness (seed 004: response time
//! worsens abruptly under load, and probe measurements jump around):
//! `Fastest` therefore treats RTTs within `FASTEST_BAND` of the best as
//! equal and rotates among them, and `Composite` (seed 002 "複合型":
//! connections + response time) multiplies the RTT by the active
//! connections, so a server that takes a burst stops looking cheap before
//! its probes notice.

use super::loads::Loads;
use super::maglev;
use super::server::RealServer;

/// What the scheduler needs of a virtual server: its servers (indexes
/// into the snapshot's servers) and the schedule over their positions.
/// The snapshot's `VirtualService` implements it.
pub trait Members {
    fn members(&self) -> &[u16];
    fn schedule(&self) -> &Schedule;
}

/// What a hash-based algorithm hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address: one client, one server (source-hash).
    SourceIp,
    /// Source and destination addresses, order-independent, for setups
    /// where the same box sees both directions (symmetric source-hash).
    SourceDestIp,
    /// The connection's 5-tuple (Maglev, as in katran).
    FiveTuple,
}

/// What the control plane precomputed for one virtual server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A cyclic sequence of positions in the service's server list: plain
    /// round robin lists each server once; weighted round robin lists each
    /// `weight` times, interleaved (nginx's smooth weighted round robin, so
    /// 3:1:1 runs a b a c a rather than a a a b c).
    Sequence(Box<[u16]>),
    /// A Maglev lookup table of positions (NSDI 2016 §3.4), built by the
    /// control plane over the enabled servers and their weights, indexed
    /// by a hash of `key`.
    Hash { key: HashKey, table: Box<[u16]> },
    /// The enabled server with the fewest active connections (per unit of
    /// weight when `weighted`), from `Loads`.
    LeastConnections { weighted: bool },
    /// The enabled server with the lowest smoothed probe RTT (seed 002
    /// "応答時間"), from `Loads`. RTTs within `FASTEST_BAND` of the best
    /// are ties and rotate; a server without a measurement ranks after
    /// every measured one (slowest, but usable). Weight 0: never chosen;
    /// other weights do not matter.
    Fastest,
    /// The enabled server with the lowest recent bytes per second (both
    /// directions) per unit of weight, from `Loads`; equal rates go to the
    /// one with fewer active connections, then rotate.
    LeastBandwidth,
    /// Connections + response time (seed 002 "複合型"): the lowest
    /// `(active + 1) × rtt` per unit of weight, from `Loads`. The `+ 1`
    /// counts the connection being placed, so an idle fast server beats an
    /// idle slow one; a server without a measurement counts as
    /// `UNMEASURED_RTT_US`. With no RTT anywhere it is
    /// weighted-least-connections.
    Composite,
}

/// `Fastest`: an RTT at most this much above the best is as good as the
/// best — a fraction of the best (1/8) or an absolute floor, whichever is
/// larger, since probe RTTs of idle servers jitter by tens of microseconds.
pub const FASTEST_BAND: (u64, u64) = (8, 100);

/// The RTT a server without a measurement counts as (µs): above any real
/// probe (timeouts are far shorter), so it ranks last but stays usable.
pub const UNMEASURED_RTT_US: u64 = u32::MAX as u64;

/// What a new connection looks like, for the hash-based algorithms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flow4 {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Flow4 {
    #[inline]
    fn hash(&self, key: HashKey) -> u32 {
        let x = match key {
            HashKey::SourceIp => self.src as u64,
            HashKey::SourceDestIp => (self.src ^ self.dst) as u64 | ((self.src.min(self.dst) as u64) << 32),
            HashKey::FiveTuple => {
                (self.src as u64) << 32 ^ self.dst as u64 ^ ((self.sport as u64) << 48 | (self.dport as u64) << 16 | self.proto as u64).rotate_left(7)
            }
        };
        // splitmix64's finaliser.
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as u32
    }
}

impl Schedule {
    /// A Maglev table over the service's servers, as (address, port,
    /// weight) in member order (weight 0 for a disabled or weightless
    /// server), hashing `key`. A server's place in the table follows from
    /// its address and port, not its position in the pool (`maglev::
    /// server_key`), so removing a member moves only its own slots (and at
    /// most 1% of the others), and two boxes with the same pool agree.
    pub fn hashed(key: HashKey, servers: &[(u32, u16, u32)]) -> Self {
        Schedule::Hash { key, table: maglev::build(&Self::hash_backends(servers), maglev::DEFAULT_TABLE_SIZE).into_boxed_slice() }
    }

    /// The Maglev backends `hashed` builds its table over, for a table
    /// built a share at a time (`maglev::Builder`, size
    /// `maglev::DEFAULT_TABLE_SIZE`).
    pub fn hash_backends(servers: &[(u32, u16, u32)]) -> Vec<maglev::MaglevBackend> {
        servers.iter().map(|(ip, port, w)| maglev::MaglevBackend { key: maglev::server_key(*ip, *port), weight: *w }).collect()
    }

    pub fn round_robin(servers: usize) -> Self {
        Schedule::Sequence((0..servers as u16).collect())
    }

    /// Smooth weighted round robin over `weights` (0 = never chosen).
    #[allow(clippy::indexing_slicing, reason = "`i` and `b` index `weights`, and `current` has its length; control-plane code")]
    pub fn weighted(weights: &[u32]) -> Self {
        let total: i64 = weights.iter().map(|w| *w as i64).sum();
        let mut current = vec![0i64; weights.len()];
        let mut seq = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best: Option<usize> = None;
            for (i, w) in weights.iter().enumerate() {
                if *w == 0 {
                    continue;
                }
                current[i] += *w as i64;
                if best.is_none_or(|b| current[i] > current[b]) {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                current[b] -= total;
                seq.push(b as u16);
            }
        }
        Schedule::Sequence(seq.into_boxed_slice())
    }
}

/// Can server `global` take a new connection: enabled, and below its
/// `max_connections` by the published loads. The limit holds across workers
/// within one control-loop turn: in that window each worker may add a few
/// connections beyond it (documented tolerance).
#[inline]
pub fn available(servers: &[RealServer], global: u16, loads: Option<&Loads>) -> bool {
    servers.get(global as usize).is_some_and(|s| {
        s.enabled && (s.max_connections == 0 || loads.is_none_or(|l| l.get(global as usize) < s.max_connections as u64))
    })
}

/// The highest priority group of `vs` with a server that can take a new
/// connection (groups spill to the next when all their servers are down or
/// full; the sorry pool sits below them all).
#[inline]
fn active_group<V: Members>(vs: &V, servers: &[RealServer], loads: Option<&Loads>) -> Option<i32> {
    vs.members()
        .iter()
        .copied()
        .filter(|g| available(servers, *g, loads))
        .filter_map(|g| servers.get(g as usize).map(|s| s.priority))
        .max()
}

/// A server's standing for the "lowest wins" algorithms: `num / den`,
/// then `then`; lower is better.
#[derive(Debug, Clone, Copy)]
struct Rank {
    num: u64,
    den: u64,
    then: u64,
}

impl Rank {
    /// `self < other`, without division (u64 x u64 cannot overflow u128).
    #[inline]
    fn below(&self, other: &Rank) -> bool {
        let a = self.num as u128 * other.den as u128;
        let b = other.num as u128 * self.den as u128;
        a < b || (a == b && self.then < other.then)
    }
}

/// The server of `vs` with the lowest `rank` among those `in_group` with a
/// positive weight (`rank` None: not a candidate). The scan starts at the
/// worker's cursor and the first of equals wins; the cursor then moves past
/// the winner, so equal servers take turns.
#[inline]
fn lowest<V: Members>(
    cursor: &mut u32,
    vs: &V,
    servers: &[RealServer],
    in_group: impl Fn(u16) -> bool,
    rank: impl Fn(u16, &RealServer) -> Option<Rank>,
) -> Option<u16> {
    let n = (vs.members().len() as u32).max(1);
    let mut best: Option<(u32, Rank)> = None;
    for k in 0..vs.members().len() as u32 {
        let i = cursor.wrapping_add(k) % n;
        let Some(&global) = vs.members().get(i as usize) else { continue };
        let Some(s) = servers.get(global as usize) else { continue };
        if s.weight == 0 || !in_group(global) {
            continue;
        }
        let Some(r) = rank(global, s) else { continue };
        if best.is_none_or(|(_, b)| r.below(&b)) {
            best = Some((i, r));
        }
    }
    let (i, _) = best?;
    *cursor = (i + 1) % n;
    vs.members().get(i as usize).copied()
}

/// A worker's scheduling state: one cursor per virtual server.
#[derive(Debug, Default)]
pub struct Scheduler {
    cursors: Vec<u32>,
}

impl Scheduler {
    /// Sizes the cursors for `services` virtual servers. Called when a
    /// worker moves to a new snapshot (a slow-path point), never per packet.
    pub fn resize(&mut self, services: usize) {
        self.cursors.resize(services, 0);
    }

    /// Picks a server (an index into the snapshot's `servers`) for a new
    /// connection to `vs`, skipping disabled servers. `None` when no server
    /// can take it.
    #[inline]
    pub fn pick<V: Members>(&mut self, vs_index: usize, vs: &V, servers: &[RealServer]) -> Option<u16> {
        self.pick_for(vs_index, vs, servers, &Flow4::default(), None)
    }

    /// `pick` with what the hash and least-connections algorithms need.
    #[inline]
    pub fn pick_for<V: Members>(&mut self, vs_index: usize, vs: &V, servers: &[RealServer], flow: &Flow4, loads: Option<&Loads>) -> Option<u16> {
        let cursor = self.cursors.get_mut(vs_index)?;
        let group = active_group(vs, servers, loads)?;
        let in_group = |g: u16| servers.get(g as usize).is_some_and(|s| s.priority == group) && available(servers, g, loads);
        let conns = |g: u16| loads.map_or(0, |l| l.get(g as usize));
        match vs.schedule() {
            Schedule::Hash { key, table } => {
                let pos = maglev::lookup(table, flow.hash(*key))?;
                // The table is rebuilt without down servers; between a
                // change and its snapshot, fall back to the next enabled one.
                let n = vs.members().len();
                (0..n).filter_map(|i| vs.members().get((pos as usize + i) % n.max(1)).copied()).find(|g| in_group(*g))
            }
            Schedule::LeastConnections { weighted } => lowest(cursor, vs, servers, in_group, |g, s| {
                let w = if *weighted { s.weight as u64 } else { 1 };
                Some(Rank { num: loads.map_or(0, |l| l.overhead(g as usize)), den: w, then: 0 })
            }),
            Schedule::Fastest => {
                let rtt = |g: u16| loads.and_then(|l| l.rtt_us(g as usize)).unwrap_or(UNMEASURED_RTT_US);
                let best = vs
                    .members()
                    .iter()
                    .copied()
                    .filter(|g| servers.get(*g as usize).is_some_and(|s| s.weight > 0) && in_group(*g))
                    .map(rtt)
                    .min()?;
                let limit = best.saturating_add((best / FASTEST_BAND.0).max(FASTEST_BAND.1));
                lowest(cursor, vs, servers, in_group, |g, _| (rtt(g) <= limit).then_some(Rank { num: 0, den: 1, then: 0 }))
            }
            Schedule::LeastBandwidth => lowest(cursor, vs, servers, in_group, |g, s| {
                let bps = loads.map_or(0, |l| l.bytes_per_s(g as usize));
                Some(Rank { num: bps, den: s.weight as u64, then: conns(g) })
            }),
            Schedule::Composite => lowest(cursor, vs, servers, in_group, |g, s| {
                let rtt = loads.and_then(|l| l.rtt_us(g as usize)).unwrap_or(UNMEASURED_RTT_US);
                // Saturates only beyond 2^64 connection-microseconds.
                Some(Rank { num: conns(g).saturating_add(1).saturating_mul(rtt), den: s.weight as u64, then: 0 })
            }),
            Schedule::Sequence(seq) => {
                let n = seq.len() as u32;
                for _ in 0..n {
                    let pos = seq.get((*cursor % n) as usize).copied().unwrap_or(0);
                    *cursor = cursor.wrapping_add(1) % n;
                    match vs.members().get(pos as usize) {
                        Some(&global) if in_group(global) => return Some(global),
                        _ => {}
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
