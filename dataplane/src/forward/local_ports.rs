//! Full-NAT local ports: each worker hands out its own share of the
//! source ports of every local address, so a reply's destination port
//! names the worker that owns its connection.
/// First port handed out to full-NAT connections.
pub const LOCAL_PORT_MIN: u16 = 1024;

/// Last port handed out to full-NAT connections. The ports above it
/// (`PROBE_PORT_MIN..=65535`) are the control plane's: its health probes
/// leave from the self IP, which is also the default full-NAT local
/// address, and their replies are punted to it when no connection entry
/// matches. Keeping the two ranges apart means a probe reply can never hit
/// a full-NAT connection's entry, and is never steered to the worker that
/// owns a full-NAT port (`pipeline::owner`).
pub const LOCAL_PORT_MAX: u16 = 60999;

/// First source port of the control plane's health probes (up to 65535);
/// see `LOCAL_PORT_MAX`.
pub const PROBE_PORT_MIN: u16 = 61000;

const _: () = assert!(LOCAL_PORT_MIN <= LOCAL_PORT_MAX && LOCAL_PORT_MAX < PROBE_PORT_MIN);

/// A worker's full-NAT source ports, per local address. Each worker owns
/// the ports `p` with `p % workers == worker`, so a reply's destination
/// port names the worker that owns its connection (`pipeline::owner`;
/// docs/architecture.md, "A packet's path").
#[derive(Debug, Default)]
pub struct LocalPorts {
    worker: u16,
    workers: u16,
    /// (address, free ports as a stack). Capacity is fixed at creation:
    /// `free` never reallocates.
    pools: Vec<(u32, Vec<u16>)>,
    next: usize,
}

impl LocalPorts {
    pub fn new(worker: u16, workers: u16) -> Self {
        Self { worker, workers: workers.max(1), pools: Vec::new(), next: 0 }
    }

    /// Adds pools for addresses not seen before (slow path: snapshot
    /// change). Pools of known addresses keep their state.
    pub fn ensure(&mut self, addrs: &[u32]) {
        for a in addrs {
            if self.pools.iter().any(|(x, _)| x == a) {
                continue;
            }
            let ports: Vec<u16> = (LOCAL_PORT_MIN..=LOCAL_PORT_MAX).rev().filter(|p| p % self.workers == self.worker % self.workers).collect();
            self.pools.push((*a, ports));
        }
    }

    /// A free (address, port) among `candidates`, round robin over them.
    #[inline]
    pub fn alloc(&mut self, candidates: &[u32]) -> Option<(u32, u16)> {
        let n = candidates.len();
        for i in 0..n {
            let Some(&addr) = candidates.get((self.next + i) % n) else { continue };
            if let Some((_, free)) = self.pools.iter_mut().find(|(a, _)| *a == addr) {
                if let Some(port) = free.pop() {
                    self.next = (self.next + i + 1) % n;
                    return Some((addr, port));
                }
            }
        }
        None
    }

    /// Returns a port taken by `alloc`.
    #[inline]
    pub fn free(&mut self, addr: u32, port: u16) {
        if let Some((_, free)) = self.pools.iter_mut().find(|(a, _)| *a == addr) {
            if free.len() < free.capacity() {
                free.push(port);
            }
        }
    }

    /// Ports free for `addr`.
    pub fn available(&self, addr: u32) -> usize {
        self.pools.iter().find(|(a, _)| *a == addr).map_or(0, |(_, f)| f.len())
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
        assert_eq!(w0.available(7), (60999 + 1 - 1024) / 2);
        assert_eq!(w0.alloc(&[9]), None);
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
        assert_eq!(ports.len(), 60999 - 1024 + 1);
        assert_eq!(ports.iter().min(), Some(&LOCAL_PORT_MIN));
        assert_eq!(ports.iter().max(), Some(&LOCAL_PORT_MAX), "never a probe port");
        assert!(ports.iter().all(|p| *p < PROBE_PORT_MIN));
    }
}
