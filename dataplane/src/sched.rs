//! Choosing a real server for a new connection.
//!
//! Control computes, workers look up (katran's `recalculateHashRing`): the
//! control plane turns each pool's algorithm and weights into a `Schedule`
//! in the snapshot; a worker only walks it with its own cursor. Every
//! algorithm sits behind `Scheduler::pick`.

//!
//! Connection counts are per-worker facts. For the least-connections
//! algorithms the control plane sums every worker's active connections per
//! server into `Loads` on each turn of its loop (well under a millisecond
//! apart) and workers read those sums without locks: a global view that may
//! lag by one control-loop turn. Within that lag a burst of new connections
//! on one worker can land on the same server; ties rotate with the worker's
//! cursor so equal servers still alternate.

use crate::snapshot::{RealServer, VirtualService};
use core::sync::atomic::{AtomicU64, Ordering};

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
}

/// Active connections per server (snapshot index), summed over workers.
/// Control plane: rw; workers: ro.
#[derive(Debug)]
pub struct Loads {
    per_server: Box<[AtomicU64]>,
}

impl Loads {
    pub fn new(servers: usize) -> Self {
        Self { per_server: (0..servers).map(|_| AtomicU64::new(0)).collect() }
    }

    #[inline]
    pub fn get(&self, server: usize) -> u64 {
        self.per_server.get(server).map_or(0, |a| a.load(Ordering::Relaxed))
    }

    pub fn set(&self, server: usize, v: u64) {
        if let Some(a) = self.per_server.get(server) {
            a.store(v, Ordering::Relaxed);
        }
    }
}

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
    /// A Maglev table over `weights` (one per server of the service; 0 for
    /// a disabled or weightless server), keyed by `key`.
    pub fn hashed(key: HashKey, weights: &[u32]) -> Self {
        let backends: Vec<crate::maglev::MaglevBackend> =
            weights.iter().enumerate().map(|(i, w)| crate::maglev::MaglevBackend { key: i as u64 + 1, weight: *w }).collect();
        Schedule::Hash { key, table: crate::maglev::build(&backends, crate::maglev::DEFAULT_TABLE_SIZE).into_boxed_slice() }
    }

    pub fn round_robin(servers: usize) -> Self {
        Schedule::Sequence((0..servers as u16).collect())
    }

    /// Smooth weighted round robin over `weights` (0 = never chosen).
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
fn active_group(vs: &VirtualService, servers: &[RealServer], loads: Option<&Loads>) -> Option<i32> {
    (vs.first_server..vs.first_server + vs.server_count)
        .filter(|g| available(servers, *g, loads))
        .filter_map(|g| servers.get(g as usize).map(|s| s.priority))
        .max()
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
    pub fn pick(&mut self, vs_index: usize, vs: &VirtualService, servers: &[RealServer]) -> Option<u16> {
        self.pick_for(vs_index, vs, servers, &Flow4::default(), None)
    }

    /// `pick` with what the hash and least-connections algorithms need.
    #[inline]
    pub fn pick_for(&mut self, vs_index: usize, vs: &VirtualService, servers: &[RealServer], flow: &Flow4, loads: Option<&Loads>) -> Option<u16> {
        let cursor = self.cursors.get_mut(vs_index)?;
        let group = active_group(vs, servers, loads)?;
        let in_group = |g: u16| servers.get(g as usize).is_some_and(|s| s.priority == group) && available(servers, g, loads);
        match &vs.schedule {
            Schedule::Hash { key, table } => {
                let pos = crate::maglev::lookup(table, flow.hash(*key))?;
                // The table is rebuilt without down servers; between a
                // change and its snapshot, fall back to the next enabled one.
                (0..vs.server_count)
                    .map(|i| vs.first_server + (pos + i) % vs.server_count.max(1))
                    .find(|g| in_group(*g))
            }
            Schedule::LeastConnections { weighted } => {
                let n = vs.server_count as u32;
                let mut best: Option<(u16, u64, u64)> = None;
                for k in 0..n {
                    let i = (*cursor + k) % n.max(1);
                    let global = vs.first_server + i as u16;
                    let Some(s) = servers.get(global as usize) else { continue };
                    if s.weight == 0 || !in_group(global) {
                        continue;
                    }
                    let load = loads.map_or(0, |l| l.get(global as usize));
                    let w = if *weighted { s.weight as u64 } else { 1 };
                    // load/w < best_load/best_w, without division.
                    if best.is_none_or(|(_, bl, bw)| (load as u128) * (bw as u128) < (bl as u128) * (w as u128)) {
                        best = Some((global, load, w));
                    }
                }
                *cursor = cursor.wrapping_add(1) % n.max(1);
                best.map(|b| b.0)
            }
            Schedule::Sequence(seq) => {
                let n = seq.len() as u32;
                for _ in 0..n {
                    let pos = seq[(*cursor % n) as usize];
                    *cursor = cursor.wrapping_add(1) % n;
                    let global = vs.first_server + pos;
                    if in_group(global) {
                        return Some(global);
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
    use crate::snapshot::Forwarding;

    fn vs(schedule: Schedule, n: u16) -> VirtualService {
        VirtualService { schedule, first_server: 0, server_count: n, ..VirtualService::test(Forwarding::Nat) }
    }

    fn servers(n: usize) -> Vec<RealServer> {
        (0..n).map(|i| RealServer { ip: i as u32, enabled: true, ..Default::default() }).collect()
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
        let v = vs(Schedule::hashed(HashKey::SourceIp, &[1, 1, 1]), 3);
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
            let v = vs(Schedule::hashed(HashKey::SourceIp, &[1, 2, 1]), 3);
            let s = servers(3);
            let mut sch = Scheduler::default();
            sch.resize(1);
            (0..1000u32).map(|c| sch.pick_for(0, &v, &s, &Flow4 { src: 0xcb00_7100 + c, ..Default::default() }, None).unwrap()).collect::<Vec<_>>()
        };
        let first = picks();
        assert_eq!(first, picks());
        // Pinned: a change of hash or table is a deliberate one.
        assert_eq!(&first[..8], &[2, 1, 2, 1, 2, 1, 1, 1]);
    }

    #[test]
    fn maglev_moves_only_the_down_servers_flows() {
        let all = vs(Schedule::hashed(HashKey::FiveTuple, &[1, 1, 1, 1]), 4);
        let without_2 = vs(Schedule::hashed(HashKey::FiveTuple, &[1, 1, 0, 1]), 4);
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
}
