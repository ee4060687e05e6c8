//! Full-NAT local ports: each worker hands out its own share of the
//! source ports of every local address, so a reply's destination port
//! names the worker that owns its connection.
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
/// the ports `p` with `p % workers == worker`, so a reply's destination
/// port names the worker that owns its connection (`pipeline::owner`;
/// docs/architecture.md, "A packet's path").
#[derive(Debug, Default)]
pub struct LocalPorts {
    worker: u16,
    workers: u16,
    pools: Vec<Pool>,
    next: usize,
}

/// The ports of one local address: the free ones as a stack, and where
/// each of this worker's ports sits in it, so that `reserve` takes a given
/// port out in O(1) and `free` ignores a port already free. Capacities
/// are fixed at creation: nothing here reallocates after `ensure`.
#[derive(Debug)]
struct Pool {
    addr: u32,
    /// The ports of the address (full-NAT's range, or a source-NAT rule's
    /// own).
    min: u16,
    max: u16,
    free: Vec<u16>,
    /// Indexed by `(port - LOCAL_PORT_MIN) / workers` for this worker's
    /// ports: the port's index in `free`, or `NOT_FREE`.
    at: Box<[u16]>,
}

/// `Pool::at` of a port in use (the stack holds fewer than 60,000 ports).
const NOT_FREE: u16 = u16::MAX;

impl Pool {
    /// The slot of `port` in `at`, when the port is in this worker's share.
    #[inline]
    fn slot(&self, port: u16, worker: u16, workers: u16) -> Option<usize> {
        let ours = (self.min..=self.max).contains(&port) && port % workers == worker % workers;
        ours.then(|| usize::from((port - self.min) / workers))
    }

    #[inline]
    fn pop(&mut self, worker: u16, workers: u16) -> Option<u16> {
        let port = self.free.pop()?;
        if let Some(s) = self.slot(port, worker, workers).and_then(|i| self.at.get_mut(i)) {
            *s = NOT_FREE;
        }
        Some(port)
    }
}

impl LocalPorts {
    pub fn new(worker: u16, workers: u16) -> Self {
        Self { worker, workers: workers.max(1), pools: Vec::new(), next: 0 }
    }

    /// Adds pools for addresses not seen before (slow path: snapshot
    /// change). Pools of known addresses keep their state.
    pub fn ensure(&mut self, addrs: &[u32]) {
        for a in addrs {
            self.ensure_range(*a, LOCAL_PORT_MIN, LOCAL_PORT_MAX);
        }
    }

    /// Adds a pool of the ports `min..=max` (within the full-NAT range) for
    /// `addr` when it has none (slow path).
    pub fn ensure_range(&mut self, addr: u32, min: u16, max: u16) {
        if self.pools.iter().any(|p| p.addr == addr) || min > max {
            return;
        }
        let free: Vec<u16> = (min..=max).rev().filter(|p| p % self.workers == self.worker % self.workers).collect();
        let mut at = vec![NOT_FREE; usize::from((max - min) / self.workers) + 1].into_boxed_slice();
        let mut pool = Pool { addr, min, max, free: Vec::new(), at: Box::new([]) };
        for (i, port) in free.iter().enumerate() {
            if let Some(s) = pool.slot(*port, self.worker, self.workers).and_then(|s| at.get_mut(s)) {
                // Fewer than 60,000 ports: the index fits.
                *s = i as u16;
            }
        }
        pool.free = free;
        pool.at = at;
        self.pools.push(pool);
    }

    /// A free (address, port) among `candidates`, round robin over them.
    #[inline]
    pub fn alloc(&mut self, candidates: &[u32]) -> Option<(u32, u16)> {
        let n = candidates.len();
        let (worker, workers) = (self.worker, self.workers);
        for i in 0..n {
            let Some(&addr) = candidates.get((self.next + i) % n) else { continue };
            if let Some(pool) = self.pools.iter_mut().find(|p| p.addr == addr) {
                if let Some(port) = pool.pop(worker, workers) {
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
    pub fn free(&mut self, addr: u32, port: u16) {
        let (worker, workers) = (self.worker, self.workers);
        let Some(pool) = self.pools.iter_mut().find(|p| p.addr == addr) else { return };
        let Some(i) = pool.slot(port, worker, workers) else { return };
        let len = pool.free.len();
        if let Some(s) = pool.at.get_mut(i) {
            if *s == NOT_FREE && len < pool.free.capacity() {
                // Below the capacity, itself below 60,000.
                *s = len as u16;
                pool.free.push(port);
            }
        }
    }

    /// Takes `port` of `addr` out of the free ports, for a connection that
    /// already uses it (state sync: an entry the HA peer made, whose
    /// replies come back to that port). False when the port is not this
    /// worker's to give (another worker's share, outside the full-NAT
    /// range, an address this worker has no pool for) or is in use
    /// already. O(1): the port's place in the stack is known, and the top
    /// of the stack moves into it.
    pub fn reserve(&mut self, addr: u32, port: u16) -> bool {
        let (worker, workers) = (self.worker, self.workers);
        let Some(pool) = self.pools.iter_mut().find(|p| p.addr == addr) else { return false };
        let Some(i) = pool.slot(port, worker, workers) else { return false };
        let Some(&at) = pool.at.get(i) else { return false };
        if at == NOT_FREE {
            return false;
        }
        let Some(top) = pool.free.pop() else { return false };
        if top != port {
            // Move the top into the reserved port's place.
            if let Some(s) = pool.free.get_mut(usize::from(at)) {
                *s = top;
            }
            if let Some(t) = pool.slot(top, worker, workers).and_then(|t| pool.at.get_mut(t)) {
                *t = at;
            }
        }
        if let Some(s) = pool.at.get_mut(i) {
            *s = NOT_FREE;
        }
        true
    }

    /// Ports free for `addr`.
    pub fn available(&self, addr: u32) -> usize {
        self.pools.iter().find(|p| p.addr == addr).map_or(0, |p| p.free.len())
    }

    /// Whether `port` of `addr` is free (tests and reports).
    pub fn is_free(&self, addr: u32, port: u16) -> bool {
        self.pools
            .iter()
            .find(|p| p.addr == addr)
            .and_then(|p| p.slot(port, self.worker, self.workers).and_then(|i| p.at.get(i)))
            .is_some_and(|at| *at != NOT_FREE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ports_are_partitioned_and_recycled() {
        let mut w0 = LocalPorts::new(0, 2);
        let mut w1 = LocalPorts::new(1, 2);
        w0.ensure(&[7, 8]);
        w1.ensure(&[7]);
        let (a, p) = w0.alloc(&[7, 8]).unwrap();
        assert_eq!((a, p % 2), (7, 0));
        let (a2, _) = w0.alloc(&[7, 8]).unwrap();
        assert_eq!(a2, 8, "round robin over addresses");
        let (_, q) = w1.alloc(&[7]).unwrap();
        assert_eq!(q % 2, 1);
        let before = w0.available(7);
        w0.free(7, p);
        assert_eq!(w0.available(7), before + 1);
        assert_eq!(w0.available(7), (LOCAL_PORT_MAX as usize + 1 - 1024) / 2);
        assert_eq!(w0.alloc(&[9]), None);
        w0.free(7, p);
        assert_eq!(w0.available(7), before + 1, "a double free is ignored");
        w0.free(7, q);
        assert_eq!(w0.available(7), before + 1, "another worker's port is ignored");
    }

    #[test]
    fn reserve_takes_a_given_port_out_in_place() {
        let mut w = LocalPorts::new(1, 3);
        w.ensure(&[7]);
        let share = w.available(7);
        assert!(!w.reserve(7, 1026), "1026 % 3 == 0: worker 0's");
        assert!(!w.reserve(7, 61003), "a probe port");
        assert!(!w.reserve(8, 1030), "no pool for that address");
        // 1024 is the top of the stack (handed out first), 1030 is not.
        assert!(w.reserve(7, 1030));
        assert!(!w.is_free(7, 1030));
        assert!(!w.reserve(7, 1030), "in use already");
        assert_eq!(w.available(7), share - 1);
        let mut got = Vec::new();
        while let Some((_, p)) = w.alloc(&[7]) {
            got.push(p);
        }
        assert_eq!(got.len(), share - 1);
        assert!(!got.contains(&1030), "a reserved port is never handed out");
        assert!(got.iter().all(|p| p % 3 == 1));
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "no port twice");
        // Freed, it comes back; freed ports can be reserved again.
        w.free(7, 1030);
        w.free(7, 1024);
        assert!(w.is_free(7, 1030));
        assert!(w.reserve(7, 1024), "the top of the stack");
        assert!(w.reserve(7, 1030));
        assert_eq!(w.available(7), 0);
        assert_eq!(w.alloc(&[7]), None);
    }

    #[test]
    fn local_ports_leave_probe_ports_alone() {
        let mut w = LocalPorts::new(0, 1);
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
