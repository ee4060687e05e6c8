//! Next-hop MAC addresses shared by the control plane (writer, from ARP)
//! and the workers (readers), one atomic word per next hop: no locks, and a
//! torn read is impossible.
//!
//! Slot numbers are assigned by the control plane when it builds a snapshot
//! (one per server or gateway IP); the snapshot stores them.
//!
//! Besides the slots, hosts on a link's own subnet that traffic is routed
//! to (a source-NAT connection to a host on the outside segment) are
//! resolved on demand: `host` looks them up in a small open-addressing
//! cache the control plane fills from ARP, and a miss leaves a request in
//! a lock-free mailbox (`want`) the control plane empties each turn
//! (`take_wanted`), ARPing for each. The packet that missed is dropped as
//! `neighbor-unresolved`; its sender retransmits (as a router without a
//! queue for unresolved neighbours would have it).

use crate::wire::EthernetAddress;
use core::sync::atomic::{AtomicU64, Ordering};

const VALID: u64 = 1 << 63;

/// Entries of the on-demand host cache (a power of two).
const HOSTS: usize = 1024;
/// Slots probed from a host's home slot.
const PROBES: usize = 8;
/// Resolution requests outstanding at most (more are dropped: the sender
/// retransmits).
const WANTED: usize = 64;

/// Control plane: rw (`set`, `clear`, `set_host`, `take_wanted`); workers:
/// ro but for `want` (`get`, `host`).
#[derive(Debug)]
pub struct Neighbors {
    slots: Box<[AtomicU64]>,
    /// Host cache: key (link << 32 | ip, with VALID) and MAC per entry.
    host_keys: Box<[AtomicU64]>,
    host_macs: Box<[AtomicU64]>,
    /// Requests: a host key each, 0 when free.
    wanted: Box<[AtomicU64]>,
}

impl Neighbors {
    pub fn new(slots: usize) -> Self {
        let atomics = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[AtomicU64]>>();
        Self { slots: atomics(slots), host_keys: atomics(HOSTS), host_macs: atomics(HOSTS), wanted: atomics(WANTED) }
    }

    #[inline(always)]
    fn host_key(link: u16, ip: u32) -> u64 {
        VALID | u64::from(link) << 32 | u64::from(ip)
    }

    #[inline(always)]
    fn home(key: u64) -> usize {
        (crate::hash::keyed64(key, 0) as usize) & (HOSTS - 1)
    }

    /// The MAC of host `ip` on link `link`, if resolved; otherwise a
    /// resolution request is left for the control plane (at most one per
    /// host at a time, none when the mailbox is full).
    #[inline]
    pub fn host(&self, link: u16, ip: u32) -> Option<EthernetAddress> {
        let key = Self::host_key(link, ip);
        let home = Self::home(key);
        for i in 0..PROBES {
            let at = (home + i) & (HOSTS - 1);
            let (Some(k), Some(m)) = (self.host_keys.get(at), self.host_macs.get(at)) else { break };
            if k.load(Ordering::Acquire) == key {
                let mac = m.load(Ordering::Acquire);
                // The key again: an entry being replaced reads 0 meanwhile.
                if k.load(Ordering::Acquire) == key {
                    return Some(mac_of(mac));
                }
            }
        }
        self.want(key);
        None
    }

    /// Leaves a resolution request for `key` (lock-free, no allocation).
    #[inline]
    fn want(&self, key: u64) {
        if self.wanted.iter().any(|w| w.load(Ordering::Relaxed) == key) {
            return;
        }
        for w in self.wanted.iter() {
            if w.compare_exchange(0, key, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return;
            }
        }
    }

    /// Control plane: the hosts workers asked for since the last call,
    /// as (link, ip).
    pub fn take_wanted(&self) -> Vec<(u16, u32)> {
        self.wanted.iter().map(|w| w.swap(0, Ordering::AcqRel)).filter(|k| *k != 0).map(|k| ((k >> 32 & 0xffff) as u16, k as u32)).collect()
    }

    /// Control plane: host `ip` on link `link` is at `mac` (an ARP answer).
    /// A full neighbourhood replaces its home slot's entry.
    pub fn set_host(&self, link: u16, ip: u32, mac: EthernetAddress) {
        let key = Self::host_key(link, ip);
        let home = Self::home(key);
        let slot = (0..PROBES)
            .map(|i| (home + i) & (HOSTS - 1))
            .find(|at| self.host_keys.get(*at).is_some_and(|k| matches!(k.load(Ordering::Relaxed), 0) || k.load(Ordering::Relaxed) == key))
            .unwrap_or(home);
        let (Some(k), Some(m)) = (self.host_keys.get(slot), self.host_macs.get(slot)) else { return };
        k.store(0, Ordering::Release);
        m.store(mac_word(mac), Ordering::Release);
        k.store(key, Ordering::Release);
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
        Some(mac_of(v))
    }

    pub fn set(&self, slot: u16, mac: EthernetAddress) {
        if let Some(s) = self.slots.get(slot as usize) {
            s.store(mac_word(mac), Ordering::Relaxed);
        }
    }

    pub fn clear(&self, slot: u16) {
        if let Some(s) = self.slots.get(slot as usize) {
            s.store(0, Ordering::Relaxed);
        }
    }
}

#[inline(always)]
fn mac_word(mac: EthernetAddress) -> u64 {
    let m = mac.0;
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]) | VALID
}

#[inline(always)]
fn mac_of(v: u64) -> EthernetAddress {
    let b = v.to_be_bytes();
    EthernetAddress([b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_asked_for_once_and_found_once_answered() {
        let n = Neighbors::new(1);
        let ip = u32::from_be_bytes([192, 0, 2, 50]);
        assert_eq!(n.host(0, ip), None);
        assert_eq!(n.host(0, ip), None, "asked again");
        assert_eq!(n.take_wanted(), vec![(0, ip)], "one request");
        assert_eq!(n.take_wanted(), vec![], "taken");
        let mac = EthernetAddress([2, 0, 0, 0, 0, 0x50]);
        n.set_host(0, ip, mac);
        assert_eq!(n.host(0, ip), Some(mac));
        assert_eq!(n.host(1, ip), None, "per link");
        let other = EthernetAddress([2, 0, 0, 0, 0, 0x51]);
        n.set_host(0, ip, other);
        assert_eq!(n.host(0, ip), Some(other), "replaced in place");
        // More hosts than the mailbox: the rest are dropped, not blocked.
        for i in 0..(WANTED as u32 + 10) {
            let _ = n.host(2, i + 1);
        }
        assert_eq!(n.take_wanted().len(), WANTED, "the link-1 request and the rest up to the mailbox's size");
        // Hundreds of hosts fit (linear probing over the home slots).
        for i in 0..600u32 {
            n.set_host(3, 0x0a00_0000 + i, EthernetAddress([2, 0, 0, 0, (i >> 8) as u8, i as u8]));
        }
        let found = (0..600u32).filter(|i| n.host(3, 0x0a00_0000 + i).is_some()).count();
        assert!(found >= 590, "{found} of 600");
    }

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
