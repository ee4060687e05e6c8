//! Probe source ports, per server: each server's probes take every port of
//! `PROBE_PORT_MIN..=65535` once per cycle, in an order of their own, so
//! one 4-tuple (self IP, port, server, server port) comes back only after
//! 4,536 probes of that server: 75 minutes at a 1 s interval, 7.5 at the
//! fastest (100 ms), far past the TIME_WAIT a server may keep for it
//! (RFC 9293 §3.6.1: 2 MSL; Linux 60 s), as long as the server is one
//! target (a restart or a changed check starts a new cycle). The order is
//! secret (`boot_secret`): the start a keyed hash of the server, each next
//! port a keyed permutation of the range (a Feistel network, walked into
//! the range), so one who sees a probe cannot tell the next one's port
//! (an answer spoofed to it would have to guess it, and then the
//! smoltcp sequence number, seeded per shard from the same secret). Ports
//! in use by another probe for the same 4-tuple are skipped
//! (`Rotation::next`).

use furiwake_dataplane::hash::keyed64;

/// Source ports of probes: above the full-NAT range and the L7 engine's
/// kernel stack, so replies never match a full-NAT connection and are
/// punted to us.
pub(super) const PROBE_PORT_MIN: u16 = furiwake_dataplane::forward::PROBE_PORT_MIN;
pub(super) const PROBE_PORT_MAX: u16 = u16::MAX;
const RANGE: u32 = PROBE_PORT_MAX as u32 - PROBE_PORT_MIN as u32 + 1;
/// Ports tried for one probe before it gives up (`busy` said no to all).
const TRIES: u32 = 16;

/// One server's place in its cycle through the port range.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rotation {
    next: u32,
    key: u64,
}

impl Rotation {
    /// Where the server at `ip:port` starts, under the engine's `key`:
    /// servers probed together do not walk the range in step.
    pub(super) fn new(ip: u32, port: u16, key: u64) -> Self {
        let start = keyed64(u64::from(ip) << 16 | u64::from(port), key) % u64::from(RANGE);
        Rotation { next: start as u32, key }
    }

    /// The next port whose 4-tuple is free (`busy(port)` false), None
    /// when `TRIES` in a row are taken.
    pub(super) fn next(&mut self, busy: impl Fn(u16) -> bool) -> Option<u16> {
        for _ in 0..TRIES {
            let port = PROBE_PORT_MIN + spread(self.next, self.key) as u16;
            self.next = (self.next + 1) % RANGE;
            if !busy(port) {
                return Some(port);
            }
        }
        None
    }
}

/// A keyed permutation of `0..RANGE`: a four-round Feistel network over
/// 14 bits, applied again until the value falls in the range (cycle
/// walking keeps it a permutation).
fn spread(i: u32, key: u64) -> u32 {
    let mut x = i;
    loop {
        let (mut l, mut r) = (x >> 7, x & 0x7f);
        for round in 0..4u64 {
            let f = (keyed64(u64::from(r) | round << 8, key) & 0x7f) as u32;
            (l, r) = (r, l ^ f);
        }
        x = l << 7 | r;
        if x < RANGE {
            return x;
        }
    }
}

/// 64 bits from the kernel: the probe engine's per-boot secret (the order
/// of each server's source ports, the smoltcp shards' sequence-number
/// seeds, ICMP identifiers and payloads). Without /dev/urandom, a clock
/// reading, said in the log.
pub(super) fn boot_secret() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_ne_bytes(b),
        Err(e) => {
            log::warn!("health: /dev/urandom: {e}; the probes' ports and sequence numbers are seeded from the clock");
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's 4-tuple recurs only after every port of the range, even
    /// while thousands of other servers are probed in between; ports in
    /// use are skipped.
    #[test]
    fn a_servers_ports_cycle_through_the_whole_range() {
        const K: u64 = 0x5eed;
        let mut r = Rotation::new(0xc633_640b, 80, K);
        let mut others: Vec<Rotation> = (0..1000).map(|i| Rotation::new(0xc633_6500 + i, 80, K)).collect();
        let mut seen = std::collections::HashSet::new();
        let mut order = Vec::new();
        for _ in 0..RANGE {
            let p = r.next(|_| false).unwrap();
            assert!(seen.insert(p), "a port came back before the range was used up");
            order.push(p);
            for o in others.iter_mut().take(10) {
                o.next(|_| false);
            }
        }
        assert!(seen.iter().all(|p| *p >= PROBE_PORT_MIN));
        assert_eq!(seen.len() as u32, RANGE);
        // Not in step: the next port is not the last one's neighbour.
        let steps = order.windows(2).filter(|w| w[0].checked_add(1) == Some(w[1])).count();
        assert!(steps < 20, "{steps} ports followed their predecessor");
        let mut a = Rotation::new(1, 1, K);
        let (first, second) = (a.next(|_| false).unwrap(), a.next(|_| false).unwrap());
        assert_eq!(Rotation::new(1, 1, K).next(|p| p == first), Some(second), "a busy port is skipped");
        assert_eq!(Rotation::new(1, 1, K).next(|_| true), None, "all busy: no port");
        let starts: std::collections::HashSet<u16> = (0..100u32).map(|i| Rotation::new(0xc633_6400 + i, 80, K).next(|_| false).unwrap()).collect();
        assert!(starts.len() > 90, "neighbouring servers start apart: {}", starts.len());
        // Another secret, another order.
        let other: Vec<u16> = { let mut b = Rotation::new(0xc633_640b, 80, K + 1); (0..50).map(|_| b.next(|_| false).unwrap()).collect() };
        assert_ne!(other, order[..50].to_vec(), "the order follows the secret");
    }
}
