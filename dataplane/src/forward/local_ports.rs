//! Full-NAT local ports: each worker hands out its own share of the
//! source ports of every local address, the ports whose replies the ports'
//! RSS queues on that worker (`crate::rss`), so a reply reaches the worker
//! that owns its connection without a hand-over.

use crate::rss::Steering;
use crate::conntrack::Addr;

/// First port handed out to full-NAT connections.
pub const LOCAL_PORT_MIN: u16 = 1024;

/// Last port handed out to full-NAT connections. The ports above it are
/// the appliance's own: the kernel stack behind the host link connects
/// from `HOST_PORT_MIN..=HOST_PORT_MAX` (its `ip_local_port_range`), and
/// the health probes from `PROBE_PORT_MIN..=65535`; both may leave from
/// the self IP, which is also the default full-NAT local address, and a
/// probe's reply is punted to the control plane when no entry matches.
/// Keeping the three ranges apart means neither can hit a full-NAT
/// connection's entry, nor be steered to the worker that owns a full-NAT
/// port (`pipeline::owner`).
pub const LOCAL_PORT_MAX: u16 = 49151;

/// The appliance's own stack's ephemeral ports (IANA's dynamic range up
/// to the probes'); see `LOCAL_PORT_MAX`.
pub const HOST_PORT_MIN: u16 = 49152;
pub const HOST_PORT_MAX: u16 = 60999;

/// First source port of the control plane's health probes (up to 65535);
/// see `LOCAL_PORT_MAX`.
pub const PROBE_PORT_MIN: u16 = 61000;

const _: () = assert!(LOCAL_PORT_MIN <= LOCAL_PORT_MAX && LOCAL_PORT_MAX < HOST_PORT_MIN && HOST_PORT_MIN <= HOST_PORT_MAX && HOST_PORT_MAX < PROBE_PORT_MIN);

/// A worker's full-NAT source ports, per local address. Each worker owns
/// the ports `p` of an address `a` that the ports' RSS queues on it
/// (`Steering::worker(a, p)`): a reply to `a:p` arrives at the worker that
/// owns its connection, and `pipeline::owner` names that worker for it
/// (docs/architecture.md, "A packet's path").
#[derive(Debug, Default)]
pub struct LocalPorts<A: Addr = u32> {
    worker: u16,
    steer: Steering,
    pools: Vec<Pool<A>>,
    next: usize,
}

/// The ports of one address: the free ones as a stack, and for each port
/// of the range its index in that stack, or `NOT_FREE`, or `NOT_OURS`, so
/// that `reserve` takes a given port out in O(1) and `free` ignores a port
/// already free or another worker's. Capacities are the whole range's from
/// creation: nothing here reallocates after `ensure`, not even `rekey`.
#[derive(Debug)]
struct Pool<A: Addr> {
    addr: A,
    /// The ports of the address (full-NAT's range, or a source-NAT rule's
    /// own).
    min: u16,
    max: u16,
    free: Vec<u16>,
    at: Box<[u16]>,
}

/// `Pool::at` of one of this worker's ports in use, and of another
/// worker's port (the stack holds fewer than 65,000 ports).
const NOT_FREE: u16 = u16::MAX;
const NOT_OURS: u16 = u16::MAX - 1;

impl<A: Addr> Pool<A> {
    fn new(addr: A, min: u16, max: u16) -> Self {
        let len = usize::from(max - min) + 1;
        Pool { addr, min, max, free: Vec::with_capacity(len), at: vec![NOT_OURS; len].into_boxed_slice() }
    }

    /// This worker's share under `steer`, free (the lowest handed out
    /// first) but for the ports in use here that stay this worker's: a
    /// connection kept across a key change keeps its port, and nothing
    /// hands it out again.
    fn fill(&mut self, worker: u16, steer: &Steering) {
        self.free.clear();
        for port in (self.min..=self.max).rev() {
            let Some(a) = self.at.get_mut(usize::from(port - self.min)) else { continue };
            if steer.worker(self.addr.steer_word(), port) != worker {
                *a = NOT_OURS;
            } else if *a != NOT_FREE {
                *a = self.free.len() as u16;
                self.free.push(port);
            }
        }
    }

    /// The slot of `port` in `at`, when it is in the range.
    #[inline]
    fn slot(&self, port: u16) -> Option<usize> {
        (self.min..=self.max).contains(&port).then(|| usize::from(port - self.min))
    }

    #[inline]
    fn pop(&mut self) -> Option<u16> {
        let port = self.free.pop()?;
        if let Some(s) = self.slot(port).and_then(|i| self.at.get_mut(i)) {
            *s = NOT_FREE;
        }
        Some(port)
    }
}

impl<A: Addr> LocalPorts<A> {
    pub fn new(worker: u16, steer: &Steering) -> Self {
        Self { worker, steer: steer.clone(), pools: Vec::new(), next: 0 }
    }

    /// Adds pools for addresses not seen before (slow path: snapshot
    /// change). Pools of known addresses keep their state.
    pub fn ensure(&mut self, addrs: &[A]) {
        for a in addrs {
            self.ensure_range(*a, LOCAL_PORT_MIN, LOCAL_PORT_MAX);
        }
    }

    /// The last port of `addr`'s pool, if it has one.
    pub fn max_of(&self, addr: A) -> Option<u16> {
        self.pools.iter().find(|p| p.addr == addr).map(|p| p.max)
    }

    /// Adds a pool of the ports `min..=max` (within the full-NAT range) for
    /// `addr` when it has none (slow path).
    pub fn ensure_range(&mut self, addr: A, min: u16, max: u16) {
        if self.pools.iter().any(|p| p.addr == addr) || min > max {
            return;
        }
        let mut pool = Pool::new(addr, min, max);
        pool.fill(self.worker, &self.steer);
        self.pools.push(pool);
    }

    /// The ownership key changed (`pipeline::replicate::rehome`): every
    /// pool is this worker's new share, free but for the ports its
    /// connections hold that are still its own (the others' connections
    /// are dropped by the rehome walk, whose `free` of a port no longer
    /// this worker's is ignored). No allocation.
    pub fn rekey(&mut self, steer: &Steering) {
        self.steer.clone_from(steer);
        for pool in &mut self.pools {
            pool.fill(self.worker, &self.steer);
        }
    }

    /// A free (address, port) among `candidates`, round robin over them.
    #[inline]
    pub fn alloc(&mut self, candidates: &[A]) -> Option<(A, u16)> {
        let n = candidates.len();
        for i in 0..n {
            let Some(&addr) = candidates.get((self.next + i) % n) else { continue };
            if let Some(pool) = self.pools.iter_mut().find(|p| p.addr == addr) {
                if let Some(port) = pool.pop() {
                    self.next = (self.next + i + 1) % n;
                    return Some((addr, port));
                }
            }
        }
        None
    }

    /// Returns a port taken by `alloc` or `reserve`. A port that is free
    /// already, or not this worker's, is ignored.
    #[inline]
    pub fn free(&mut self, addr: A, port: u16) {
        let Some(pool) = self.pools.iter_mut().find(|p| p.addr == addr) else { return };
        let Some(i) = pool.slot(port) else { return };
        let len = pool.free.len();
        if let Some(s) = pool.at.get_mut(i) {
            if *s == NOT_FREE && len < pool.free.capacity() {
                // Below the capacity, itself below 65,000.
                *s = len as u16;
                pool.free.push(port);
            }
        }
    }

    /// Takes `port` of `addr` out of the free ports, for a connection that
    /// already uses it (state sync: an entry the HA peer made, whose
    /// replies come back to that port; a connection kept across `rekey`).
    /// False when the port is not this worker's to give (another worker's
    /// share, outside the range, an address this worker has no pool for)
    /// or is in use already. O(1): the port's place in the stack is known,
    /// and the top of the stack moves into it.
    pub fn reserve(&mut self, addr: A, port: u16) -> bool {
        let Some(pool) = self.pools.iter_mut().find(|p| p.addr == addr) else { return false };
        let Some(i) = pool.slot(port) else { return false };
        let Some(&at) = pool.at.get(i) else { return false };
        if at == NOT_FREE || at == NOT_OURS {
            return false;
        }
        let Some(top) = pool.free.pop() else { return false };
        if top != port {
            // Move the top into the reserved port's place.
            if let Some(s) = pool.free.get_mut(usize::from(at)) {
                *s = top;
            }
            if let Some(t) = pool.slot(top).and_then(|t| pool.at.get_mut(t)) {
                *t = at;
            }
        }
        if let Some(s) = pool.at.get_mut(i) {
            *s = NOT_FREE;
        }
        true
    }

    /// Ports free for `addr`.
    pub fn available(&self, addr: A) -> usize {
        self.pools.iter().find(|p| p.addr == addr).map_or(0, |p| p.free.len())
    }

    /// Whether `port` of `addr` is free (tests and reports).
    pub fn is_free(&self, addr: A, port: u16) -> bool {
        self.pools
            .iter()
            .find(|p| p.addr == addr)
            .and_then(|p| p.slot(port).and_then(|i| p.at.get(i)))
            .is_some_and(|at| *at != NOT_FREE && *at != NOT_OURS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(s: &Steering, addr: u32, worker: u16) -> Vec<u16> {
        (LOCAL_PORT_MIN..=LOCAL_PORT_MAX).filter(|p| s.worker(addr, *p) == worker).collect()
    }

    #[test]
    fn local_ports_are_partitioned_by_rss_and_recycled() {
        let s = Steering::new(2, 3);
        let mut w0 = LocalPorts::<u32>::new(0, &s);
        let mut w1 = LocalPorts::<u32>::new(1, &s);
        w0.ensure(&[7, 8]);
        w1.ensure(&[7]);
        let (a, p) = w0.alloc(&[7, 8]).unwrap();
        assert_eq!((a, s.worker(7, p)), (7, 0), "a reply to the port is queued on worker 0");
        let (a2, _) = w0.alloc(&[7, 8]).unwrap();
        assert_eq!(a2, 8, "round robin over addresses");
        let (_, q) = w1.alloc(&[7]).unwrap();
        assert_eq!(s.worker(7, q), 1);
        let before = w0.available(7);
        w0.free(7, p);
        assert_eq!(w0.available(7), before + 1);
        assert_eq!(w0.available(7), share(&s, 7, 0).len());
        assert_eq!(w0.available(7) + w1.available(7) + 1, usize::from(LOCAL_PORT_MAX - LOCAL_PORT_MIN) + 1, "every port is one worker's");
        assert_eq!(w0.alloc(&[9]), None);
        w0.free(7, p);
        assert_eq!(w0.available(7), before + 1, "a double free is ignored");
        w0.free(7, q);
        assert_eq!(w0.available(7), before + 1, "another worker's port is ignored");
    }

    #[test]
    fn reserve_takes_a_given_port_out_in_place() {
        let s = Steering::new(3, 11);
        let mut w = LocalPorts::<u32>::new(1, &s);
        w.ensure(&[7]);
        let mine = share(&s, 7, 1);
        let theirs = share(&s, 7, 0)[0];
        let total = w.available(7);
        assert_eq!(total, mine.len());
        assert!(!w.reserve(7, theirs), "worker 0's");
        assert!(!w.reserve(7, 61003), "a probe port");
        assert!(!w.reserve(8, mine[5]), "no pool for that address");
        // mine[0] is the top of the stack (handed out first), mine[5] is not.
        assert!(w.reserve(7, mine[5]));
        assert!(!w.is_free(7, mine[5]));
        assert!(!w.reserve(7, mine[5]), "in use already");
        assert_eq!(w.available(7), total - 1);
        let mut got = Vec::new();
        while let Some((_, p)) = w.alloc(&[7]) {
            got.push(p);
        }
        assert_eq!(got.len(), total - 1);
        assert!(!got.contains(&mine[5]), "a reserved port is never handed out");
        assert!(got.iter().all(|p| s.worker(7, *p) == 1));
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "no port twice");
        // Freed, it comes back; freed ports can be reserved again.
        w.free(7, mine[5]);
        w.free(7, mine[0]);
        assert!(w.is_free(7, mine[5]));
        assert!(w.reserve(7, mine[0]), "the top of the stack");
        assert!(w.reserve(7, mine[5]));
        assert_eq!(w.available(7), 0);
        assert_eq!(w.alloc(&[7]), None);
    }

    /// Review finding: a key change must not hand out a port a kept
    /// connection holds, and a dropped connection's `free` must not
    /// release a port handed out since.
    #[test]
    fn rekey_keeps_the_ports_in_use_that_stay_ours() {
        let (a, b) = (Steering::new(2, 1), Steering::new(2, 2));
        let mut w = LocalPorts::<u32>::new(0, &a);
        w.ensure_range(7, 2000, 2999);
        let mut held = Vec::new();
        while let Some((_, p)) = w.alloc(&[7]) {
            held.push(p);
        }
        w.rekey(&b);
        let (kept, moved): (Vec<u16>, Vec<u16>) = held.iter().partition(|p| b.worker(7, **p) == 0);
        assert!(!kept.is_empty() && !moved.is_empty());
        let mut got = Vec::new();
        while let Some((_, p)) = w.alloc(&[7]) {
            got.push(p);
        }
        assert!(got.iter().all(|p| !kept.contains(p) && b.worker(7, *p) == 0), "a kept connection's port handed out again");
        // The walk drops the connections whose ports moved: their frees are
        // ignored, the new holders keep theirs.
        for p in &moved {
            w.free(7, *p);
        }
        assert_eq!(w.available(7), 0, "no port released twice");
        for p in &kept {
            w.free(7, *p);
        }
        assert_eq!(w.available(7), kept.len());
    }

    #[test]
    fn rekey_makes_the_new_share_free() {
        let (a, b) = (Steering::new(2, 1), Steering::new(2, 2));
        let mut w = LocalPorts::<u32>::new(0, &a);
        w.ensure_range(7, 2000, 2999);
        while w.alloc(&[7]).is_some() {}
        w.rekey(&b);
        // Every port of the old share was in use: what is free now is the
        // new share's ports the old share did not have.
        let fresh: Vec<u16> = (2000..=2999).filter(|p| b.worker(7, *p) == 0 && a.worker(7, *p) != 0).collect();
        assert_eq!(w.available(7), fresh.len());
        assert!(w.reserve(7, fresh[3]), "a peer's connection takes a free port of the share");
        assert!(!w.is_free(7, fresh[3]));
        let theirs = (2000..=2999).find(|p| b.worker(7, *p) == 1).unwrap();
        assert!(!w.is_free(7, theirs));
        w.free(7, theirs);
        assert_eq!(w.available(7), fresh.len() - 1, "not this worker's any more");
    }

    #[test]
    fn local_ports_leave_probe_ports_alone() {
        let mut w = LocalPorts::<u32>::new(0, &Steering::new(1, 0));
        w.ensure(&[7]);
        assert_eq!(w.available(7), usize::from(LOCAL_PORT_MAX - LOCAL_PORT_MIN) + 1);
        let mut ports = Vec::new();
        while let Some((_, p)) = w.alloc(&[7]) {
            ports.push(p);
        }
        assert_eq!(ports.len(), LOCAL_PORT_MAX as usize - 1024 + 1);
        assert_eq!(ports.iter().min(), Some(&LOCAL_PORT_MIN));
        assert_eq!(ports.iter().max(), Some(&LOCAL_PORT_MAX), "never a probe port");
        assert!(ports.iter().all(|p| *p < PROBE_PORT_MIN));
    }
}
