//! Next-hop MAC addresses shared by the control plane (writer, from ARP)
//! and the workers (readers), one atomic word per next hop: no locks, and a
//! torn read is impossible.
//!
//! Slot numbers are assigned by the control plane when it builds a snapshot
//! (one per server or gateway IP); the snapshot stores them.

use crate::wire::EthernetAddress;
use core::sync::atomic::{AtomicU64, Ordering};

const VALID: u64 = 1 << 63;

/// Control plane: rw (`set`, `clear`); workers: ro (`get`).
#[derive(Debug)]
pub struct Neighbors {
    slots: Box<[AtomicU64]>,
}

impl Neighbors {
    pub fn new(slots: usize) -> Self {
        Self { slots: (0..slots).map(|_| AtomicU64::new(0)).collect() }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The MAC of next hop `slot`, if resolved.
    #[inline(always)]
    pub fn get(&self, slot: u16) -> Option<EthernetAddress> {
        let v = self.slots.get(slot as usize)?.load(Ordering::Relaxed);
        if v & VALID == 0 {
            return None;
        }
        let b = v.to_be_bytes();
        Some(EthernetAddress([b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    pub fn set(&self, slot: u16, mac: EthernetAddress) {
        if let Some(s) = self.slots.get(slot as usize) {
            let m = mac.0;
            let v = u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]) | VALID;
            s.store(v, Ordering::Relaxed);
        }
    }

    pub fn clear(&self, slot: u16) {
        if let Some(s) = self.slots.get(slot as usize) {
            s.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_clear() {
        let n = Neighbors::new(4);
        assert_eq!(n.get(1), None);
        let mac = EthernetAddress([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        n.set(1, mac);
        assert_eq!(n.get(1), Some(mac));
        n.set(1, EthernetAddress([0; 6]));
        assert_eq!(n.get(1), Some(EthernetAddress([0; 6])), "all-zero MAC is still valid");
        n.clear(1);
        assert_eq!(n.get(1), None);
        assert_eq!(n.get(99), None);
    }
}
