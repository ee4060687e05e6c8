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
//! A new connection's cost does not depend on the pool's size or weights:
//! the priority groups are made with the snapshot (`Group`), a load-aware
//! pick in a group of more than `TWO_CHOICES_FROM` servers compares two
//! random candidates (Mitzenmacher, "The Power of Two Choices in
//! Randomized Load Balancing", 2001: the maximum load falls from
//! log n / log log n to log log n, and a burst on one worker is spread
//! rather than sent to one least-loaded server), and `Schedule::weighted`
//! builds a bounded sequence.
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
/// into the snapshot's servers), the schedule over their positions and
/// those positions by priority group. The snapshot's `VirtualService`
/// implements it.
pub trait Members {
    fn members(&self) -> &[u16];
    fn schedule(&self) -> &Schedule;
    /// By priority, highest first (`Group::of`); empty: not made, every
    /// pick scans the members for the active group.
    fn groups(&self) -> &[Group] {
        &[]
    }
}

/// One priority group of a virtual server: its priority and its members'
/// positions in `Members::members`. Made by the control plane's snapshot
/// (`Snapshot::index`) so that a pick never scans the whole pool to find
/// the highest group that can take a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub priority: i32,
    pub positions: Box<[u16]>,
}

impl Group {
    /// `members`' positions grouped by their servers' priority, highest
    /// first (slow path).
    pub fn of(members: &[u16], servers: &[RealServer]) -> Box<[Group]> {
        let mut by: Vec<(i32, u16)> = members.iter().enumerate().map(|(i, g)| (servers.get(*g as usize).map_or(i32::MIN, |s| s.priority), i as u16)).collect();
        by.sort_unstable_by_key(|(p, i)| (std::cmp::Reverse(*p), *i));
        let mut groups: Vec<Group> = Vec::new();
        for (p, i) in by {
            match groups.last_mut() {
                Some(g) if g.priority == p => {
                    let mut v = std::mem::take(&mut g.positions).into_vec();
                    v.push(i);
                    g.positions = v.into_boxed_slice();
                }
                _ => groups.push(Group { priority: p, positions: Box::new([i]) }),
            }
        }
        groups.into_boxed_slice()
    }
}

/// Pools larger than this pick a load-aware algorithm's server by two
/// random choices (the better of two candidates of the active group,
/// Mitzenmacher's power of two choices) instead of a scan of the group:
/// a new connection's cost does not grow with the pool.
pub const TWO_CHOICES_FROM: usize = 64;

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
        // `as u16` of the count would make 65,536 servers an empty range.
        Schedule::Sequence((0..servers.min(crate::limits::MAX_SERVERS)).map(|i| i as u16).collect())
    }

    /// Weighted round robin over `weights` (0 = never chosen), after
    /// dividing them by their greatest common divisor: nginx's smooth
    /// weighted round robin (3:1:1 runs a b a c a) while that costs at most
    /// `SMOOTH_WORK` steps (total weight x servers); past it stride
    /// scheduling (Waldspurger and Weihl), which costs total weight x log
    /// servers. A sequence longer than `MAX_SEQUENCE` has its weights
    /// scaled down to fit (every positive weight stays at least 1): the
    /// ratios of a pool of thousands of heavy servers are kept to a
    /// millionth. Slow path (the control plane builds it).
    pub fn weighted(weights: &[u32]) -> Self {
        let g = weights.iter().fold(0u32, |a, w| gcd(a, *w)).max(1);
        let mut w: Vec<u64> = weights.iter().map(|x| u64::from(*x / g)).collect();
        let total: u64 = w.iter().sum();
        if total > MAX_SEQUENCE {
            for x in w.iter_mut().filter(|x| **x > 0) {
                *x = (*x * MAX_SEQUENCE / total).max(1);
            }
        }
        let total: u64 = w.iter().sum();
        let live = w.iter().filter(|x| **x > 0).count() as u64;
        let seq = if total.saturating_mul(live) <= SMOOTH_WORK { smooth(&w, total) } else { stride(&w, total) };
        Schedule::Sequence(seq.into_boxed_slice())
    }
}

/// `Schedule::weighted`'s bounds: the smooth algorithm's steps, and the
/// longest sequence (2 MiB of positions).
pub const SMOOTH_WORK: u64 = 1 << 22;
pub const MAX_SEQUENCE: u64 = 1 << 20;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// nginx's smooth weighted round robin: `total` steps over every server.
#[allow(clippy::indexing_slicing, reason = "`i` and `b` index `weights`, and `current` has its length; control-plane code")]
fn smooth(weights: &[u64], total: u64) -> Vec<u16> {
    let total_i = total as i64;
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
            current[b] -= total_i;
            seq.push(b as u16);
        }
    }
    seq
}

/// Stride scheduling: each server's pass advances by the inverse of its
/// weight (fixed point), the lowest pass goes next (ties by position);
/// a heap makes each step log(servers).
fn stride(weights: &[u64], total: u64) -> Vec<u16> {
    use std::cmp::Reverse;
    const ONE: u64 = 1 << 40;
    let mut heap: std::collections::BinaryHeap<Reverse<(u64, u16)>> = weights.iter().enumerate().filter(|(_, w)| **w > 0).map(|(i, w)| Reverse((ONE / w / 2, i as u16))).collect();
    let mut seq = Vec::with_capacity(total as usize);
    while seq.len() < total as usize {
        let Some(Reverse((pass, i))) = heap.pop() else { break };
        seq.push(i);
        let w = weights.get(i as usize).copied().unwrap_or(1).max(1);
        heap.push(Reverse((pass + ONE / w, i)));
    }
    seq
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
/// full; the sorry pool sits below them all), and its positions when the
/// snapshot made the groups: the first group with an available server, in
/// practice its first member or so; else a scan of the members.
#[inline]
fn active_group<'a, V: Members>(vs: &'a V, servers: &[RealServer], loads: Option<&Loads>) -> Option<(i32, Option<&'a [u16]>)> {
    let members = vs.members();
    if !vs.groups().is_empty() {
        return vs.groups().iter().find(|g| g.positions.iter().any(|p| members.get(*p as usize).is_some_and(|m| available(servers, *m, loads)))).map(|g| (g.priority, Some(&*g.positions)));
    }
    members.iter().copied().filter(|g| available(servers, *g, loads)).filter_map(|g| servers.get(g as usize).map(|s| s.priority)).max().map(|p| (p, None))
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
/// positive weight (`rank` None: not a candidate), over the active group's
/// `positions` when known, else every member. The scan starts at the
/// worker's cursor and the first of equals wins; the cursor then moves past
/// the winner, so equal servers take turns. A group of more than
/// `TWO_CHOICES_FROM` is not scanned: the better of two random candidates.
#[inline]
fn lowest<V: Members>(
    cursor: &mut u32,
    rng: &mut u64,
    vs: &V,
    servers: &[RealServer],
    positions: Option<&[u16]>,
    in_group: impl Fn(u16) -> bool,
    rank: impl Fn(u16, &RealServer) -> Option<Rank>,
) -> Option<u16> {
    let members = vs.members();
    let n = positions.map_or(members.len(), <[u16]>::len);
    let at = |k: usize| -> Option<u16> { positions.map_or(Some(k as u16), |p| p.get(k).copied()) };
    let candidate = |k: usize| -> Option<(u16, Rank)> {
        let global = *members.get(at(k)? as usize)?;
        let s = servers.get(global as usize)?;
        if s.weight == 0 || !in_group(global) {
            return None;
        }
        rank(global, s).map(|r| (global, r))
    };
    if n > TWO_CHOICES_FROM {
        if let Some(g) = two_choices(rng, n, &candidate) {
            return Some(g);
        }
    }
    let m = (n as u32).max(1);
    let mut best: Option<(u32, u16, Rank)> = None;
    for k in 0..n as u32 {
        let i = cursor.wrapping_add(k) % m;
        let Some((global, r)) = candidate(i as usize) else { continue };
        if best.is_none_or(|(_, _, b)| r.below(&b)) {
            best = Some((i, global, r));
        }
    }
    let (i, global, _) = best?;
    *cursor = (i + 1) % m;
    Some(global)
}

/// The better of two random candidates among `n` (up to 16 draws to find
/// two; None when fewer turned up, and the caller scans).
#[inline]
fn two_choices(rng: &mut u64, n: usize, candidate: &impl Fn(usize) -> Option<(u16, Rank)>) -> Option<u16> {
    let mut found: Option<(u16, Rank)> = None;
    for _ in 0..16 {
        // xorshift64
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let Some((g, r)) = candidate((*rng % n as u64) as usize) else { continue };
        match found {
            None => found = Some((g, r)),
            Some((h, b)) => return Some(if r.below(&b) { g } else { h }),
        }
    }
    None
}

/// A worker's scheduling state: one cursor per virtual server.
#[derive(Debug)]
pub struct Scheduler {
    cursors: Vec<u32>,
    /// The two-choices draws (`lowest`): per worker, never 0.
    rng: u64,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler { cursors: Vec::new(), rng: 0x9e37_79b9_7f4a_7c15 }
    }
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
        let rng = &mut self.rng;
        let (group, positions) = active_group(vs, servers, loads)?;
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
            Schedule::LeastConnections { weighted } => lowest(cursor, rng, vs, servers, positions, in_group, |g, s| {
                let w = if *weighted { s.weight as u64 } else { 1 };
                Some(Rank { num: loads.map_or(0, |l| l.overhead(g as usize)), den: w, then: 0 })
            }),
            Schedule::Fastest => {
                let rtt = |g: u16| loads.and_then(|l| l.rtt_us(g as usize)).unwrap_or(UNMEASURED_RTT_US);
                if positions.is_some_and(|p| p.len() > TWO_CHOICES_FROM) {
                    // The faster of two: no band over the whole group.
                    return lowest(cursor, rng, vs, servers, positions, in_group, |g, _| Some(Rank { num: rtt(g), den: 1, then: 0 }));
                }
                let best = vs
                    .members()
                    .iter()
                    .copied()
                    .filter(|g| servers.get(*g as usize).is_some_and(|s| s.weight > 0) && in_group(*g))
                    .map(rtt)
                    .min()?;
                let limit = best.saturating_add((best / FASTEST_BAND.0).max(FASTEST_BAND.1));
                lowest(cursor, rng, vs, servers, positions, in_group, |g, _| (rtt(g) <= limit).then_some(Rank { num: 0, den: 1, then: 0 }))
            }
            Schedule::LeastBandwidth => lowest(cursor, rng, vs, servers, positions, in_group, |g, s| {
                let bps = loads.map_or(0, |l| l.bytes_per_s(g as usize));
                Some(Rank { num: bps, den: s.weight as u64, then: conns(g) })
            }),
            Schedule::Composite => lowest(cursor, rng, vs, servers, positions, in_group, |g, s| {
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
