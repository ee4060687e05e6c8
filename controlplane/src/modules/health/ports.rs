//! Probe source ports, per server: each server's probes take the ports of
//! `PROBE_PORT_MIN..=65535` in turn from a starting point of their own,
//! so one 4-tuple (self IP, port, server, server port) comes back only
//! after 4,536 probes of that server: 75 minutes at a 1 s interval, 7.5
//! at the fastest (100 ms), far past the TIME_WAIT a server may keep
//! for it (RFC 9293 §3.6.1: 2 MSL; Linux 60 s). A global counter, as
//! before, hands a server ports at a stride set by everything else
//! probed, which can bring one 4-tuple back within seconds. Ports in use
//! by another probe for the same 4-tuple are skipped (`Rotation::next`).

/// Source ports of probes: above the full-NAT range and the L7 engine's
/// kernel stack, so replies never match a full-NAT connection and are
/// punted to us.
pub(super) const PROBE_PORT_MIN: u16 = furiwake_dataplane::forward::PROBE_PORT_MIN;
pub(super) const PROBE_PORT_MAX: u16 = u16::MAX;
const RANGE: u32 = PROBE_PORT_MAX as u32 - PROBE_PORT_MIN as u32 + 1;
/// Ports tried for one probe before it gives up (`busy` said no to all).
const TRIES: u32 = 16;

/// One server's place in the port range.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rotation(u32);

impl Rotation {
    /// Where the server at `ip:port` starts: spread by a hash, so servers
    /// probed together do not walk the range in step.
    pub(super) fn new(ip: u32, port: u16) -> Self {
        let h = (u64::from(ip) << 16 | u64::from(port)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Rotation(((h >> 32) as u32) % RANGE)
    }

    /// The next port whose 4-tuple is free (`busy(port)` false), None
    /// when `TRIES` in a row are taken.
    pub(super) fn next(&mut self, busy: impl Fn(u16) -> bool) -> Option<u16> {
        for _ in 0..TRIES {
            let port = PROBE_PORT_MIN + (self.0 % RANGE) as u16;
            self.0 = (self.0 + 1) % RANGE;
            if !busy(port) {
                return Some(port);
            }
        }
        None
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
        let mut r = Rotation::new(0xc633_640b, 80);
        let mut others: Vec<Rotation> = (0..1000).map(|i| Rotation::new(0xc633_6500 + i, 80)).collect();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..RANGE {
            assert!(seen.insert(r.next(|_| false).unwrap()), "a port came back before the range was used up");
            for o in others.iter_mut().take(10) {
                o.next(|_| false);
            }
        }
        assert!(seen.iter().all(|p| *p >= PROBE_PORT_MIN));
        assert_eq!(seen.len() as u32, RANGE);
        let first = Rotation::new(1, 1).next(|_| false).unwrap();
        let mut r = Rotation::new(1, 1);
        assert_eq!(r.next(|p| p == first), first.checked_add(1).or(Some(PROBE_PORT_MIN)), "a busy port is skipped");
        assert_eq!(Rotation::new(1, 1).next(|_| true), None, "all busy: no port");
        let starts: std::collections::HashSet<u16> = (0..100u32).map(|i| Rotation::new(0xc633_6400 + i, 80).next(|_| false).unwrap()).collect();
        assert!(starts.len() > 90, "neighbouring servers start apart: {}", starts.len());
    }
}
