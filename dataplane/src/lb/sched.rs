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
        let backends: Vec<maglev::MaglevBackend> =
            servers.iter().map(|(ip, port, w)| maglev::MaglevBackend { key: maglev::server_key(*ip, *port), weight: *w }).collect();
        Schedule::Hash { key, table: maglev::build(&backends, maglev::DEFAULT_TABLE_SIZE).into_boxed_slice() }
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
                Some(Rank { num: conns(g), den: w, then: 0 })
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
mod tests {
    use super::*;
    use crate::state::snapshot::{Forwarding, VirtualService};

    fn vs(schedule: Schedule, n: u16) -> VirtualService {
        VirtualService { schedule, members: (0..n).collect(), ..VirtualService::test(Forwarding::Nat) }
    }

    fn servers(n: usize) -> Vec<RealServer> {
        (0..n).map(|i| RealServer { ip: 0xc633_640b + i as u32, port: 8080, enabled: true, ..Default::default() }).collect()
    }

    /// `servers`' addresses with these weights, for `Schedule::hashed`.
    fn by_addr(weights: &[u32]) -> Vec<(u32, u16, u32)> {
        weights.iter().enumerate().map(|(i, w)| (0xc633_640b + i as u32, 8080, *w)).collect()
    }

    #[test]
    fn round_robin_is_exact() {
        let v = vs(Schedule::round_robin(3), 3);
        let s = servers(3);
        let mut sch = Scheduler::default();
        sch.resize(1);
        let mut count = [0; 3];
        for _ in 0..30 {
            count[sch.pick(0, &v, &s).unwrap() as usize] += 1;
        }
        assert_eq!(count, [10, 10, 10]);
    }

    #[test]
    fn smooth_weighted_interleaves() {
        assert_eq!(Schedule::weighted(&[3, 1, 1]), Schedule::Sequence(Box::new([0, 1, 0, 2, 0])));
        let v = vs(Schedule::weighted(&[3, 1, 1]), 3);
        let s = servers(3);
        let mut sch = Scheduler::default();
        sch.resize(1);
        let mut count = [0; 3];
        for _ in 0..30 {
            count[sch.pick(0, &v, &s).unwrap() as usize] += 1;
        }
        assert_eq!(count, [18, 6, 6]);
        assert_eq!(Schedule::weighted(&[0, 2]), Schedule::Sequence(Box::new([1, 1])));
    }

    #[test]
    fn disabled_servers_are_skipped_and_none_when_all_down() {
        let v = vs(Schedule::round_robin(3), 3);
        let mut s = servers(3);
        s[1].enabled = false;
        let mut sch = Scheduler::default();
        sch.resize(1);
        let picks: Vec<_> = (0..4).map(|_| sch.pick(0, &v, &s).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        s.iter_mut().for_each(|x| x.enabled = false);
        assert_eq!(sch.pick(0, &v, &s), None);
        assert_eq!(sch.pick(5, &v, &s), None, "unknown service");
    }

    #[test]
    fn least_connections_follows_loads_and_weights() {
        let v = vs(Schedule::LeastConnections { weighted: false }, 3);
        let mut s = servers(3);
        s.iter_mut().for_each(|x| x.weight = 1);
        let loads = Loads::new(3);
        loads.set(0, 5);
        loads.set(1, 2);
        loads.set(2, 9);
        let mut sch = Scheduler::default();
        sch.resize(1);
        assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), Some(1));
        // Weighted: 9 connections on weight 10 beats 2 on weight 1.
        let w = vs(Schedule::LeastConnections { weighted: true }, 3);
        s[2].weight = 10;
        assert_eq!(sch.pick_for(0, &w, &s, &Flow4::default(), Some(&loads)), Some(2));
        // Equal loads rotate.
        let eq = Loads::new(3);
        let picks: Vec<_> = (0..3).map(|_| sch.pick_for(0, &v, &s, &Flow4::default(), Some(&eq)).unwrap()).collect();
        let mut sorted = picks.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "{picks:?}");
        s[1].enabled = false;
        assert_ne!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), Some(1));
    }

    #[test]
    fn source_hash_keeps_a_client_on_one_server() {
        let v = vs(Schedule::hashed(HashKey::SourceIp, &by_addr(&[1, 1, 1])), 3);
        let s = servers(3);
        let mut sch = Scheduler::default();
        sch.resize(1);
        let mut seen = [0u32; 3];
        for client in 0..3000u32 {
            let a = Flow4 { src: 0xc612_0000 + client, sport: 1000, ..Default::default() };
            let b = Flow4 { sport: 2000, dport: 443, ..a };
            let pa = sch.pick_for(0, &v, &s, &a, None).unwrap();
            assert_eq!(pa, sch.pick_for(0, &v, &s, &b, None).unwrap(), "same client, other ports: same server");
            seen[pa as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 800), "{seen:?}");
    }

    /// A restart rebuilds the table from the config: the same clients must
    /// land on the same servers (no random seed anywhere).
    #[test]
    fn source_hash_is_stable_across_restarts() {
        let picks = || {
            let v = vs(Schedule::hashed(HashKey::SourceIp, &by_addr(&[1, 2, 1])), 3);
            let s = servers(3);
            let mut sch = Scheduler::default();
            sch.resize(1);
            (0..1000u32).map(|c| sch.pick_for(0, &v, &s, &Flow4 { src: 0xcb00_7100 + c, ..Default::default() }, None).unwrap()).collect::<Vec<_>>()
        };
        let first = picks();
        assert_eq!(first, picks());
        // Pinned: a change of hash or table is a deliberate one (servers
        // became keyed by address rather than position in issue 11).
        assert_eq!(&first[..8], &[0, 0, 1, 1, 1, 1, 0, 1]);
    }

    #[test]
    fn maglev_moves_only_the_down_servers_flows() {
        let all = vs(Schedule::hashed(HashKey::FiveTuple, &by_addr(&[1, 1, 1, 1])), 4);
        let without_2 = vs(Schedule::hashed(HashKey::FiveTuple, &by_addr(&[1, 1, 0, 1])), 4);
        let mut s = servers(4);
        let mut sch = Scheduler::default();
        sch.resize(1);
        let mut moved_others = 0;
        for i in 0..4000u32 {
            let f = Flow4 { src: 0x0a00_0000 + i, dst: 1, sport: (i % 60000) as u16, dport: 80, proto: 6 };
            let before = sch.pick_for(0, &all, &s, &f, None).unwrap();
            s[2].enabled = false;
            let after = sch.pick_for(0, &without_2, &s, &f, None).unwrap();
            s[2].enabled = true;
            assert_ne!(after, 2);
            if before != 2 && before != after {
                moved_others += 1;
            }
        }
        assert!(moved_others < 4000 / 50, "{moved_others} flows of healthy servers moved");
    }

    /// Maglev is keyed by server address: removing one of ten members
    /// (from the pool, so the others' positions shift) moves only the
    /// removed server's flows, plus at most 1% of the others.
    #[test]
    fn maglev_removal_by_address_moves_only_the_removed_servers_share() {
        let all: Vec<(u32, u16, u32)> = (0..10u32).map(|i| (0xc633_6400 + 7 * i, 8080, 1)).collect();
        let mut fewer = all.clone();
        let gone = fewer.remove(3);
        let (Schedule::Hash { table: before, .. }, Schedule::Hash { table: after, .. }) =
            (Schedule::hashed(HashKey::FiveTuple, &all), Schedule::hashed(HashKey::FiveTuple, &fewer))
        else {
            panic!("hash schedules")
        };
        let addr = |list: &[(u32, u16, u32)], pos: u16| list.get(pos as usize).map(|s| (s.0, s.1));
        let (mut of_gone, mut moved) = (0usize, 0usize);
        for (b, a) in before.iter().zip(after.iter()) {
            let (was, now) = (addr(&all, *b), addr(&fewer, *a));
            if was == Some((gone.0, gone.1)) {
                of_gone += 1;
            } else if was != now {
                moved += 1;
            }
        }
        let others = before.len() - of_gone;
        let frac = moved as f64 / others as f64;
        println!("removed 1 of 10: {of_gone} slots of its own reassigned, {moved} of {others} others moved ({:.3}%)", 100.0 * frac);
        assert!((of_gone as f64 / before.len() as f64 - 0.1).abs() < 0.01, "the removed server had ~10%: {of_gone}");
        assert!(frac <= 0.01, "others moved: {:.3}%", 100.0 * frac);
    }

    #[test]
    fn servers_at_max_connections_are_skipped() {
        let v = vs(Schedule::round_robin(3), 3);
        let mut s = servers(3);
        s[0].max_connections = 2;
        let loads = Loads::new(3);
        loads.set(0, 2);
        let mut sch = Scheduler::default();
        sch.resize(1);
        let picks: Vec<_> = (0..4).map(|_| sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)).unwrap()).collect();
        assert!(!picks.contains(&0), "{picks:?}");
        loads.set(0, 1);
        let picks: Vec<_> = (0..3).map(|_| sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)).unwrap()).collect();
        assert!(picks.contains(&0), "below its limit again: {picks:?}");
        loads.set(1, 5);
        loads.set(2, 5);
        s[1].max_connections = 5;
        s[2].max_connections = 5;
        loads.set(0, 2);
        assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), None, "all full");
    }

    #[test]
    fn priority_groups_spill_to_the_next_and_the_sorry_pool_last() {
        let v = vs(Schedule::round_robin(4), 4);
        let mut s = servers(4);
        s[0].priority = 10;
        s[1].priority = 10;
        s[2].priority = 0;
        s[3].priority = -1; // sorry pool
        let mut sch = Scheduler::default();
        sch.resize(1);
        let picks: Vec<_> = (0..4).map(|_| sch.pick(0, &v, &s).unwrap()).collect();
        assert!(picks.iter().all(|p| *p < 2), "highest group only: {picks:?}");
        s[0].enabled = false;
        assert!((0..4).all(|_| sch.pick(0, &v, &s) == Some(1)), "one left in the group");
        s[1].max_connections = 1;
        let loads = Loads::new(4);
        loads.set(1, 1);
        assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), Some(2), "full group spills");
        s[2].enabled = false;
        assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), Some(3), "sorry pool last");
        s[3].enabled = false;
        assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), None);
    }

    /// `n` picks from a fresh scheduler with `loads`.
    fn picks(v: &VirtualService, s: &[RealServer], loads: &Loads, n: usize) -> Vec<u16> {
        let mut sch = Scheduler::default();
        sch.resize(1);
        (0..n).filter_map(|_| sch.pick_for(0, v, s, &Flow4::default(), Some(loads))).collect()
    }

    fn weighted_servers(weights: &[u32]) -> Vec<RealServer> {
        let mut s = servers(weights.len());
        s.iter_mut().zip(weights).for_each(|(x, w)| x.weight = *w);
        s
    }

    fn loads_with(conns: &[u64], rtt: &[Option<u64>], bps: &[u64]) -> Loads {
        let l = Loads::new(conns.len().max(rtt.len()).max(bps.len()));
        conns.iter().enumerate().for_each(|(i, v)| l.set(i, *v));
        rtt.iter().enumerate().for_each(|(i, v)| l.set_rtt_us(i, *v));
        bps.iter().enumerate().for_each(|(i, v)| l.set_bytes_per_s(i, *v));
        l
    }

    fn distinct(p: &[u16]) -> Vec<u16> {
        let mut d = p.to_vec();
        d.sort();
        d.dedup();
        d
    }

    #[test]
    fn loads_hold_rtt_and_bandwidth_beside_connections() {
        let l = Loads::new(2);
        assert_eq!((l.get(0), l.rtt_us(0), l.bytes_per_s(0)), (0, None, 0));
        l.set(0, 4);
        l.set_rtt_us(0, Some(250));
        l.set_bytes_per_s(0, 1_000_000);
        l.set_rtt_us(1, Some(0));
        assert_eq!((l.get(0), l.rtt_us(0), l.bytes_per_s(0)), (4, Some(250), 1_000_000));
        assert_eq!(l.rtt_us(1), Some(1), "a measured 0 is not 'no measurement'");
        l.set_rtt_us(0, None);
        assert_eq!(l.rtt_us(0), None);
        // Out of range: nothing, no panic.
        l.set(9, 1);
        l.set_rtt_us(9, Some(1));
        l.set_bytes_per_s(9, 1);
        assert_eq!((l.get(9), l.rtt_us(9), l.bytes_per_s(9)), (0, None, 0));
    }

    #[test]
    fn fastest_picks_the_lowest_rtt() {
        let v = vs(Schedule::Fastest, 3);
        let s = weighted_servers(&[1, 1, 1]);
        let l = loads_with(&[50, 0, 0], &[Some(900), Some(300), Some(2500)], &[]);
        assert_eq!(picks(&v, &s, &l, 6), [1; 6], "lowest RTT, connections do not matter");
        // Weights do not matter either, except 0 (never chosen).
        let s = weighted_servers(&[10, 1, 10]);
        assert_eq!(picks(&v, &s, &l, 3), [1; 3]);
        let s = weighted_servers(&[1, 0, 1]);
        assert_eq!(picks(&v, &s, &l, 3), [0; 3]);
    }

    #[test]
    fn fastest_rotates_ties_and_rtts_within_the_band() {
        let v = vs(Schedule::Fastest, 3);
        let s = weighted_servers(&[1, 1, 1]);
        // 300 and 380 µs are within 100 µs: equal; 2000 is not.
        let l = loads_with(&[], &[Some(300), Some(380), Some(2000)], &[]);
        let p = picks(&v, &s, &l, 6);
        assert_eq!(p, [0, 1, 0, 1, 0, 1], "alternate within the band");
        // 10 ms and 11 ms are within 1/8 of 10 ms; 12 ms is not.
        let l = loads_with(&[], &[Some(10_000), Some(11_000), Some(12_000)], &[]);
        assert_eq!(distinct(&picks(&v, &s, &l, 6)), [0, 1]);
        // Exactly equal: all three take turns.
        let l = loads_with(&[], &[Some(500); 3], &[]);
        assert_eq!(picks(&v, &s, &l, 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn fastest_ranks_unmeasured_servers_last_but_uses_them() {
        let v = vs(Schedule::Fastest, 3);
        let mut s = weighted_servers(&[1, 1, 1]);
        let l = loads_with(&[], &[None, Some(800), None], &[]);
        assert_eq!(picks(&v, &s, &l, 4), [1; 4], "a measured server beats unmeasured ones");
        s[1].enabled = false;
        assert_eq!(picks(&v, &s, &l, 4), [0, 2, 0, 2], "only unmeasured left: usable, rotating");
        let none = Loads::new(3);
        s[1].enabled = true;
        assert_eq!(picks(&v, &s, &none, 3), [0, 1, 2], "no RTT anywhere: round robin");
        let mut sch = Scheduler::default();
        sch.resize(1);
        assert!(sch.pick(0, &v, &s).is_some(), "no loads at all: still a server");
    }

    #[test]
    fn fastest_skips_disabled_and_full_servers() {
        let v = vs(Schedule::Fastest, 3);
        let mut s = weighted_servers(&[1, 1, 1]);
        let l = loads_with(&[0, 4, 0], &[Some(900), Some(300), Some(600)], &[]);
        s[1].enabled = false;
        assert_eq!(picks(&v, &s, &l, 3), [2; 3]);
        s[1].enabled = true;
        s[1].max_connections = 4;
        assert_eq!(picks(&v, &s, &l, 3), [2; 3], "the fastest is full");
        s.iter_mut().for_each(|x| x.enabled = false);
        assert_eq!(picks(&v, &s, &l, 1), []);
    }

    #[test]
    fn least_bandwidth_picks_the_lowest_rate_per_weight() {
        let v = vs(Schedule::LeastBandwidth, 3);
        let mut s = weighted_servers(&[1, 1, 1]);
        let l = loads_with(&[0, 9, 0], &[], &[5_000_000, 100_000, 3_000_000]);
        assert_eq!(picks(&v, &s, &l, 3), [1; 3], "bytes/s, not connections");
        // Weighted: 3 MB/s on weight 10 is 300 kB/s per unit.
        s[2].weight = 10;
        let l = loads_with(&[], &[], &[5_000_000, 1_000_000, 3_000_000]);
        assert_eq!(picks(&v, &s, &l, 3), [2; 3]);
        s[2].weight = 0;
        assert_eq!(picks(&v, &s, &l, 3), [1; 3], "weight 0: never chosen");
        s[1].enabled = false;
        assert_eq!(picks(&v, &s, &l, 3), [0; 3], "disabled skipped");
    }

    #[test]
    fn least_bandwidth_breaks_ties_by_connections_then_rotates() {
        let v = vs(Schedule::LeastBandwidth, 3);
        let s = weighted_servers(&[1, 1, 1]);
        let l = loads_with(&[3, 1, 2], &[], &[0, 0, 0]);
        assert_eq!(picks(&v, &s, &l, 2), [1, 1], "idle alike: fewer connections");
        let l = loads_with(&[0, 0, 0], &[], &[0, 0, 0]);
        assert_eq!(picks(&v, &s, &l, 6), [0, 1, 2, 0, 1, 2], "all equal: turns");
        let l = loads_with(&[0, 0, 0], &[], &[700, 0, 0]);
        assert_eq!(picks(&v, &s, &l, 4), [1, 2, 1, 2], "the busy one sits out");
    }

    #[test]
    fn composite_weighs_connections_by_response_time() {
        let v = vs(Schedule::Composite, 3);
        let mut s = weighted_servers(&[1, 1, 1]);
        // Idle: the fastest.
        let l = loads_with(&[0, 0, 0], &[Some(1000), Some(300), Some(600)], &[]);
        assert_eq!(picks(&v, &s, &l, 2), [1, 1]);
        // (1+0)*1000, (1+5)*300 = 1800, (1+0)*600: the fast one has too many.
        let l = loads_with(&[0, 5, 0], &[Some(1000), Some(300), Some(600)], &[]);
        assert_eq!(picks(&v, &s, &l, 2), [2, 2]);
        // Weighted like weighted-least-connections: (1+3)*1000/4 = 1000 beats
        // (1+0)*1200/1.
        s[0].weight = 4;
        let l = loads_with(&[3, 0, 0], &[Some(1000), Some(1200), Some(1300)], &[]);
        assert_eq!(picks(&v, &s, &l, 2), [0, 0]);
        s[0].weight = 1;
        // No RTT anywhere: least connections; equal: turns.
        let l = loads_with(&[5, 2, 9], &[], &[]);
        assert_eq!(picks(&v, &s, &l, 2), [1, 1]);
        let l = loads_with(&[1, 1, 1], &[Some(400); 3], &[]);
        assert_eq!(picks(&v, &s, &l, 3), [0, 1, 2]);
        // Unmeasured ranks after measured ones even when loaded.
        let l = loads_with(&[0, 1000, 0], &[None, Some(500), None], &[]);
        assert_eq!(picks(&v, &s, &l, 2), [1, 1]);
        // Disabled and full servers are skipped.
        let l = loads_with(&[0, 0, 1], &[Some(1000), Some(300), Some(600)], &[]);
        s[1].enabled = false;
        s[2].max_connections = 1;
        assert_eq!(picks(&v, &s, &l, 2), [0, 0]);
    }

    #[test]
    fn load_aware_algorithms_respect_priority_groups() {
        // Servers 0 and 1 in group 10, server 2 (the best by every measure)
        // in group 0: it only gets connections once group 10 is full.
        let l = loads_with(&[3, 2, 0], &[Some(900), Some(300), Some(10)], &[9000, 8000, 0]);
        for schedule in [Schedule::Fastest, Schedule::LeastBandwidth, Schedule::Composite, Schedule::LeastConnections { weighted: true }] {
            let v = vs(schedule.clone(), 3);
            let mut s = weighted_servers(&[1, 1, 1]);
            s[0].priority = 10;
            s[1].priority = 10;
            assert_eq!(picks(&v, &s, &l, 4), [1; 4], "{schedule:?}: best of the top group");
            s[1].max_connections = 2;
            assert_eq!(picks(&v, &s, &l, 2), [0; 2], "{schedule:?}");
            s[0].max_connections = 3;
            assert_eq!(picks(&v, &s, &l, 2), [2; 2], "{schedule:?}: group full, spill");
        }
    }
}
