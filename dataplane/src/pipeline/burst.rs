//! The receive side of a pass, pipelined (DPDK l3fwd, katran, VPP): the
//! bursts of the RX queues are taken in turn, and while one is processed
//! the next one's cache misses are on their way. Each packet's key is
//! parsed and hashed once when its burst arrives (`Meta`), its bucket
//! prefetched then; its first entry and tracking line once the burst
//! before it is done (the bucket has arrived by then); the chain's second
//! entry, where the first is another connection's, just before the burst
//! is processed (the first has arrived by then); the hash goes with
//! the packet to the lookup (`Shard::pending`), so nothing is hashed twice.
//! A queue that filled its burst is read a second time in the pass, so one
//! busy queue pipelines against itself.

use super::classify::{quick_key, quick_key6};
use super::Shard;
use crate::conntrack::FlowKey;
use crate::io::{Burst, Packet, PacketIo, BURST_SIZE};
use crate::state::snapshot::Snapshot;

/// Per packet of a burst, by position: its TCP/UDP key and the table's
/// hash of it, in the IPv4 table or (IPv6 without extension headers, when
/// the worker has an IPv6 shard) the IPv6 one.
#[derive(Clone, Copy)]
pub(super) struct Meta {
    v4: [Option<(FlowKey, u32)>; BURST_SIZE],
    v6: [Option<(FlowKey<u128>, u32)>; BURST_SIZE],
}

impl Meta {
    const NONE: Meta = Meta { v4: [None; BURST_SIZE], v6: [None; BURST_SIZE] };
}

impl Shard {
    /// Every RX queue once, a queue that gave a full burst once more;
    /// each burst processed while the next one's lines are fetched.
    /// Returns packets received.
    pub(super) fn receive<I: PacketIo>(&mut self, snap: &Snapshot, io: &mut I) -> usize {
        let n = io.rx_queues();
        let (mut cur, mut next) = (Burst::new(), Burst::new());
        let mut cur_meta = Meta::NONE;
        // Queues (below 64) that gave a full burst in the first round.
        let mut full = 0u64;
        let mut received = 0;
        for k in 0..2 * n {
            let q = k % n;
            if k >= n && (q >= 64 || full & (1 << q) == 0) {
                continue;
            }
            io.rx_burst(q, &mut next);
            if k < n && q < 64 && next.len() == BURST_SIZE {
                full |= 1 << q;
            }
            if next.is_empty() {
                continue;
            }
            received += next.len();
            let meta = self.hash_and_fetch_buckets(&next);
            self.process_burst(snap, io, &mut cur, &cur_meta);
            self.fetch_entries(&meta);
            core::mem::swap(&mut cur, &mut next);
            cur_meta = meta;
        }
        self.process_burst(snap, io, &mut cur, &cur_meta);
        received
    }

    /// Processes (and empties) `burst`, each packet with its `meta`.
    fn process_burst<I: PacketIo>(&mut self, snap: &Snapshot, io: &mut I, burst: &mut Burst<I::Pkt>, meta: &Meta) {
        // Stage three: a chain's second entry where its first is another
        // connection's (the first entries, fetched a stage ago, are in).
        for (key, h) in meta.v4.iter().take(burst.len()).flatten() {
            self.table.prefetch_chase(key, *h);
        }
        if let Some(v6) = self.v6.as_ref() {
            for (key, h) in meta.v6.iter().take(burst.len()).flatten() {
                v6.table.prefetch_chase(key, *h);
            }
        }
        for (i, pkt) in burst.drain().enumerate() {
            self.counters.rx_packets.inc();
            self.counters.rx_bytes.add(pkt.data().len() as u64);
            self.pending = meta.v4.get(i).copied().flatten();
            if let Some(v6) = self.v6.as_mut() {
                v6.pending = meta.v6.get(i).copied().flatten();
            }
            self.handle(snap, io, pkt, false);
        }
        self.pending = None;
        if let Some(v6) = self.v6.as_mut() {
            v6.pending = None;
        }
    }

    /// Stage one: each packet's key read unchecked (`quick_key`), hashed,
    /// its bucket prefetched.
    fn hash_and_fetch_buckets<P: Packet>(&self, burst: &Burst<P>) -> Meta {
        let mut meta = Meta::NONE;
        for (i, pkt) in burst.iter().enumerate() {
            if let Some(key) = quick_key(pkt.data()) {
                let h = self.table.hash(&key);
                self.table.prefetch(h);
                if let Some(slot) = meta.v4.get_mut(i) {
                    *slot = Some((key, h));
                }
            } else if let (Some(v6), Some(key)) = (self.v6.as_ref(), quick_key6(pkt.data())) {
                let h = v6.table.hash(&key);
                v6.table.prefetch(h);
                if let Some(slot) = meta.v6.get_mut(i) {
                    *slot = Some((key, h));
                }
            }
        }
        meta
    }

    /// Stage two: the first entry of each packet's chain (and its tracking
    /// line); when a chain is empty (a new connection, most likely), the
    /// entry an insert would take (each insert then fetches the next).
    fn fetch_entries(&self, meta: &Meta) {
        let mut miss = false;
        for (_, h) in meta.v4.iter().flatten() {
            miss |= !self.table.prefetch_entry(*h);
        }
        if miss {
            self.table.prefetch_free();
        }
        if let Some(v6) = self.v6.as_ref() {
            let mut miss6 = false;
            for (_, h) in meta.v6.iter().flatten() {
                miss6 |= !v6.table.prefetch_entry(*h);
            }
            if miss6 {
                v6.table.prefetch_free();
            }
        }
    }
}

impl<A: crate::conntrack::Addr> Shard<A> {
    /// The table's hash of `key`: the one computed when the packet's burst
    /// arrived, when this is that packet's key; else computed now.
    #[inline]
    pub(super) fn key_hash(&mut self, key: &FlowKey<A>) -> u32 {
        match self.pending.take() {
            Some((k, h)) if k == *key => h,
            _ => self.table.hash(key),
        }
    }
}
