//! The control lcore's packet path: frames the workers punt (ARP, ICMP
//! echo, probe replies) come in on one ring per worker; control frames go
//! out on the link's control TX queue, or through worker 0's inject ring
//! when the device has no queue to spare.

use super::Runtime;
use furiwake_dataplane::Burst;
use furiwake_platform::{Consumer, Mbuf, Mempool, Producer};
use std::time::{Duration, Instant};

/// The punt rings (two per worker) and the inject ring.
#[derive(Default)]
pub(super) struct Control {
    /// One per worker, by worker index.
    punts: Vec<Consumer<Mbuf>>,
    /// The protected classes' (ARP, VRRP, HA), one per worker, by worker
    /// index: drained first (`dequeue_protected`).
    protected: Vec<Consumer<Mbuf>>,
    inject: Option<Producer<Mbuf>>,
    counters: PuntCounters,
    /// The TSC's rate, for the workers' punt stamps.
    tsc_hz: u64,
}

/// Frames in and out of the control lcore (the report's `control:` line,
/// with the ARP module's counters).
#[derive(Debug, Default, Clone, Copy)]
pub struct PuntCounters {
    /// Frames taken off the punt rings.
    pub punted_rx: u64,
    /// Punted from a port that is no data link.
    pub not_handled: u64,
    /// Control frames not sent: no mbuf, no room, no way out.
    pub tx_dropped: u64,
}

impl Control {
    /// The inject ring's producer (worker 0 consumes it).
    pub(super) fn set_inject(&mut self, p: Producer<Mbuf>) {
        self.inject = Some(p);
    }

    /// Takes the TSC's rate (after EAL init), for `punted_at`.
    pub(super) fn set_tsc_hz(&mut self, hz: u64) {
        self.tsc_hz = hz;
    }

    /// A worker's punt ring (workers are launched last to first: see
    /// `reverse_punts`).
    pub(super) fn add_punt(&mut self, c: Consumer<Mbuf>, protected: Consumer<Mbuf>) {
        self.punts.push(c);
        self.protected.push(protected);
    }

    /// Puts the punt rings in worker order once all are launched.
    pub(super) fn reverse_punts(&mut self) {
        self.punts.reverse();
        self.protected.reverse();
    }

    /// Frees the rings (they may hold mbufs: before the ports and the pool).
    pub(super) fn clear(&mut self) {
        self.punts.clear();
        self.protected.clear();
        self.inject = None;
    }
}

impl Runtime {
    /// How many punt rings there are (one per worker).
    pub fn punt_rings(&self) -> usize {
        self.control.punts.len()
    }

    /// Takes what punt ring `ring` holds into `burst`; how many.
    pub fn dequeue_punted(&mut self, ring: usize, burst: &mut Burst<Mbuf>) -> usize {
        self.control.punts.get_mut(ring).map_or(0, |r| r.dequeue_burst(burst))
    }

    /// Takes what worker `ring`'s protected punt ring (ARP, VRRP, HA)
    /// holds into `burst`; how many.
    pub fn dequeue_protected(&mut self, ring: usize, burst: &mut Burst<Mbuf>) -> usize {
        self.control.protected.get_mut(ring).map_or(0, |r| r.dequeue_burst(burst))
    }

    /// When a worker received punted frame `m` (its stamp), for an RTT
    /// that does not count the frame's wait for a busy control lcore;
    /// now when it carries no stamp that can be one (none registered, or
    /// one not of the last second on this clock).
    pub fn punted_at(&self, m: &Mbuf) -> Instant {
        let (now, tsc) = (Instant::now(), furiwake_platform::rdtsc());
        let hz = u128::from(self.control.tsc_hz.max(1));
        m.punt_stamp()
            .and_then(|s| tsc.checked_sub(s))
            .map(|ticks| u128::from(ticks) * 1_000_000_000 / hz)
            .filter(|&ns| ns < 1_000_000_000)
            .and_then(|ns| now.checked_sub(Duration::from_nanos(ns as u64)))
            .unwrap_or(now)
    }

    /// Counts a punted frame; the index of the link it came from (its port
    /// and VLAN), None (counted as not handled) when it is no data link's.
    /// A VLAN tag is taken off: the modules see untagged frames, and
    /// `send` tags what leaves a VLAN link.
    pub fn punted_link(&mut self, m: &mut Mbuf) -> Option<usize> {
        self.control.counters.punted_rx += 1;
        let vlan = match m.data().get(12..16) {
            Some([0x81, 0x00, hi, lo]) => u16::from_be_bytes([*hi, *lo]) & 0x0fff,
            _ => 0,
        };
        let port = m.port();
        let link = self.links.iter().position(|l| l.port_id() == port && l.vlan() == vlan);
        if link.is_none() {
            self.control.counters.not_handled += 1;
        } else if m.data().get(12..14) == Some(&[0x81, 0x00][..]) {
            m.data_mut().copy_within(0..12, 4);
            m.adj(4);
        }
        link
    }

    /// Sends a control frame out of link `li` (tagged with its VLAN).
    pub fn send(&mut self, li: usize, mut m: Mbuf) {
        let vlan = self.links[li].vlan();
        if vlan != 0 {
            if m.prepend(4).is_none() {
                self.control.counters.tx_dropped += 1;
                return;
            }
            let f = m.data_mut();
            f.copy_within(4..16, 0);
            f[12..14].copy_from_slice(&[0x81, 0x00]);
            f[14..16].copy_from_slice(&vlan.to_be_bytes());
        }
        // The port's control queue is its owner link's.
        let li = self.links[li].owner().unwrap_or(li);
        let link = &mut self.links[li];
        let port_id = link.port_id();
        match (link.control_txq(), self.control.inject.as_mut()) {
            (Some(q), _) => {
                let mut b = Burst::new();
                let _ = b.push(m);
                if q.tx_burst(&mut b) == 0 {
                    self.control.counters.tx_dropped += 1;
                }
            }
            (None, Some(inject)) => {
                m.set_port(port_id);
                if inject.enqueue(m).is_err() {
                    self.control.counters.tx_dropped += 1;
                }
            }
            (None, None) => self.control.counters.tx_dropped += 1,
        }
    }

    /// Copies `frame` into an mbuf and sends it out of link `li`.
    pub fn send_frame(&mut self, li: usize, frame: &[u8]) {
        let Some(mut m) = self.pool.as_ref().and_then(Mempool::alloc) else {
            self.control.counters.tx_dropped += 1;
            return;
        };
        if m.set_data(frame) {
            self.send(li, m);
        } else {
            self.control.counters.tx_dropped += 1;
        }
    }

    /// Writes a `len`-byte frame with `write` into a fresh mbuf and sends
    /// it out of link `li`; false (counted as dropped) when there was no
    /// mbuf for it.
    pub fn send_built(&mut self, li: usize, len: u16, write: impl FnOnce(&mut [u8])) -> bool {
        let Some(mut m) = self.pool.as_ref().and_then(Mempool::alloc) else {
            self.control.counters.tx_dropped += 1;
            return false;
        };
        match m.append(len) {
            Some(buf) => {
                write(buf);
                self.send(li, m);
                true
            }
            None => {
                self.control.counters.tx_dropped += 1;
                false
            }
        }
    }

    /// Waits (up to `limit`) until worker 0 has sent what the control
    /// lcore queued on its inject ring: at shutdown, the last frames (VRRP's
    /// priority-0 adverts) leave before the workers stop.
    pub fn drain_control(&self, limit: std::time::Duration) {
        let t0 = std::time::Instant::now();
        while self.control.inject.as_ref().is_some_and(|r| !r.is_empty()) && t0.elapsed() < limit {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    pub fn punt_counters(&self) -> PuntCounters {
        self.control.counters
    }
}
