//! Choosing a real server for a new connection.
//!
//! Control computes, workers look up (katran's `recalculateHashRing`): the
//! control plane turns each pool's algorithm and weights into a `Schedule`
//! in the snapshot; a worker only walks it with its own cursor. Every
//! algorithm sits behind `Scheduler::pick`.

use crate::snapshot::{RealServer, VirtualService};

/// What the control plane precomputed for one virtual server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A cyclic sequence of positions in the service's server list: plain
    /// round robin lists each server once; weighted round robin lists each
    /// `weight` times, interleaved (nginx's smooth weighted round robin, so
    /// 3:1:1 runs a b a c a rather than a a a b c).
    Sequence(Box<[u16]>),
}

impl Schedule {
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
        let cursor = self.cursors.get_mut(vs_index)?;
        match &vs.schedule {
            Schedule::Sequence(seq) => {
                let n = seq.len() as u32;
                for _ in 0..n {
                    let pos = seq[(*cursor % n) as usize];
                    *cursor = cursor.wrapping_add(1) % n;
                    let global = vs.first_server + pos;
                    if servers.get(global as usize).is_some_and(|s| s.enabled) {
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
        let Schedule::Sequence(seq) = Schedule::weighted(&[3, 1, 1]);
        assert_eq!(&*seq, &[0, 1, 0, 2, 0]);
        let v = vs(Schedule::weighted(&[3, 1, 1]), 3);
        let s = servers(3);
        let mut sch = Scheduler::default();
        sch.resize(1);
        let mut count = [0; 3];
        for _ in 0..30 {
            count[sch.pick(0, &v, &s).unwrap() as usize] += 1;
        }
        assert_eq!(count, [18, 6, 6]);
        let Schedule::Sequence(seq) = Schedule::weighted(&[0, 2]);
        assert_eq!(&*seq, &[1, 1]);
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
}
