//! Connection-state sync with the HA peer (issue 12): the record that
//! describes one connection entry or persistence record and its wire form
//! (`record`), and the bounded rings that carry records between a worker
//! and the control lcore.
//!
//! ```text
//!   worker ──push──> [events ring] ──pop_batch──> control lcore ──UDP──> peer
//!   worker <──pop_batch── [installs ring] <──push── control lcore <──UDP── peer
//! ```
//!
//! Each worker has two rings, each single-producer single-consumer:
//!
//! - *events* (worker writes, control plane reads): `Create` when the
//!   worker makes an entry, `Update` on a TCP state change, `Delete` when an
//!   entry goes, `Persist` / `PersistDelete` for persistence records, and
//!   `Refresh` for every live entry during a refresh or bulk walk. A full
//!   ring drops the record and counts it (`SyncCounters::dropped`); the
//!   walk instead waits for room, keeping headroom for live events.
//! - *installs* (control plane writes, worker reads): the peer's records,
//!   pushed into the ring of the worker that owns the connection here
//!   (`pipeline::owner_of`); the worker drains a budget of them per pass.
//!
//! Records carry addresses by value, never snapshot slot indexes (which
//! differ between the two boxes); the receiving worker finds its own
//! virtual server and server by address. IPv4 only for now: `family`
//! (`FAMILY_V4`) leaves room for an IPv6 record of its own length.
//!
//! The ring is preallocated at `channel` (a power-of-two number of slots),
//! the head and tail positions sit on cache lines of their own, and each
//! end keeps a cached copy of the other's position so that a push or a pop
//! touches the shared line only when the cached one says full or empty.
//! Positions are `u32` and wrap. Ordering: the producer writes a slot, then
//! publishes it with a Release store of the tail; the consumer reads slots
//! after an Acquire load of the tail, then frees them with a Release store
//! of the head, which the producer Acquires before reusing them. Neither
//! end is `Clone`, so each ring has one producer and one consumer. Nothing
//! here allocates after `channel`, locks or panics. Model-checked with loom
//! (`loom_tests`): weakening the producer's tail store to `Relaxed` makes
//! loom report the consumer's read of a slot being written.
//!
//! `SyncControl` is the small shared cell through which the control plane
//! asks a worker for a bulk walk (a peer started or came back) and learns
//! when it is done.

use crate::sync::{Arc, AtomicU32, AtomicU64, Ordering, UnsafeCell};
use crossbeam_utils::CachePadded;

mod record;
pub use record::{ProxyState, SyncKind, SyncRecord, TcpMarks, FAMILY_V4};

/// The largest ring (slots).
pub const MAX_RING: usize = 1 << 24;

/// The shared part of one ring.
struct Ring {
    /// The next position the consumer reads. Consumer: rw; producer: ro.
    head: CachePadded<AtomicU32>,
    /// The next position the producer writes. Producer: rw; consumer: ro.
    tail: CachePadded<AtomicU32>,
    /// `slots[pos & mask]`: written by the producer between `tail` and
    /// `head + capacity`, read by the consumer between `head` and `tail`.
    slots: Box<[UnsafeCell<SyncRecord>]>,
    mask: u32,
}

// SAFETY: a slot is written only by the one producer while it is outside
// [head, tail) and read only by the one consumer while it is inside; the
// positions are atomics whose Release/Acquire pairs order those accesses
// (module docs). SyncRecord is plain data.
unsafe impl Sync for Ring {}
// SAFETY: as above.
unsafe impl Send for Ring {}

/// A ring of at least `capacity` records (rounded up to a power of two,
/// at most `MAX_RING`), allocated here once, and its two ends.
pub fn channel(capacity: usize) -> (RecordProducer, RecordConsumer) {
    channel_at(capacity, 0)
}

/// `channel` with both positions starting at `start` (tests of the
/// positions' wrap-around).
fn channel_at(capacity: usize, start: u32) -> (RecordProducer, RecordConsumer) {
    let cap = capacity.clamp(1, MAX_RING).next_power_of_two();
    let ring = Arc::new(Ring {
        head: CachePadded::new(AtomicU32::new(start)),
        tail: CachePadded::new(AtomicU32::new(start)),
        slots: (0..cap).map(|_| UnsafeCell::new(SyncRecord::EMPTY)).collect(),
        // At most MAX_RING (2^24).
        mask: (cap - 1) as u32,
    });
    let producer = RecordProducer { ring: Arc::clone(&ring), tail: start, cached_head: start };
    (producer, RecordConsumer { ring, head: start, cached_tail: start })
}

/// The writing end of a ring: one per ring (not `Clone`).
pub struct RecordProducer {
    ring: Arc<Ring>,
    /// Our tail (the shared one is a copy of it).
    tail: u32,
    /// The consumer's head as last read.
    cached_head: u32,
}

impl RecordProducer {
    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.ring.slots.len()
    }

    /// Appends `rec`; false when the ring is full (the record is not
    /// written).
    #[inline]
    pub fn push(&mut self, rec: SyncRecord) -> bool {
        if !self.has_room(1) {
            return false;
        }
        let Some(slot) = self.ring.slots.get((self.tail & self.ring.mask) as usize) else { return false };
        // SAFETY: the slot at `tail` is outside [head, tail): the consumer
        // has finished with it (Acquire of its head in `has_room`) and will
        // not read it before the Release store below.
        slot.with_mut(|p| unsafe { p.write(rec) });
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail.store(self.tail, Ordering::Release);
        true
    }

    /// Whether `n` records would fit now. Reads the consumer's position
    /// only when the cached one says they would not.
    #[inline]
    pub fn has_room(&mut self, n: usize) -> bool {
        let cap = self.ring.slots.len();
        if (self.tail.wrapping_sub(self.cached_head) as usize).saturating_add(n) <= cap {
            return true;
        }
        self.cached_head = self.ring.head.load(Ordering::Acquire);
        (self.tail.wrapping_sub(self.cached_head) as usize).saturating_add(n) <= cap
    }

    /// Records waiting in the ring (a moment's view).
    pub fn len(&self) -> usize {
        self.tail.wrapping_sub(self.ring.head.load(Ordering::Acquire)) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position the next record will take (positions count every
    /// record ever pushed, and wrap).
    #[inline]
    pub fn position(&self) -> u32 {
        self.tail
    }
}

/// The reading end of a ring: one per ring (not `Clone`).
pub struct RecordConsumer {
    ring: Arc<Ring>,
    /// Our head (the shared one is a copy of it).
    head: u32,
    /// The producer's tail as last read.
    cached_tail: u32,
}

impl RecordConsumer {
    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.ring.slots.len()
    }

    /// Moves up to `out.len()` records, oldest first, into `out`; returns
    /// how many. Reads the producer's position only when the cached one
    /// does not fill `out`.
    #[inline]
    pub fn pop_batch(&mut self, out: &mut [SyncRecord]) -> usize {
        let mut avail = self.cached_tail.wrapping_sub(self.head) as usize;
        if avail < out.len() {
            self.cached_tail = self.ring.tail.load(Ordering::Acquire);
            avail = self.cached_tail.wrapping_sub(self.head) as usize;
        }
        let n = avail.min(out.len());
        for (i, o) in out.iter_mut().take(n).enumerate() {
            // `n` is at most the ring's capacity, below 2^25.
            let pos = self.head.wrapping_add(i as u32);
            if let Some(slot) = self.ring.slots.get((pos & self.ring.mask) as usize) {
                // SAFETY: `pos` is inside [head, tail): the producer wrote
                // the slot before its Release store of the tail, which the
                // Acquire load above (now or earlier) saw, and does not
                // write it again before our Release store of the head below.
                *o = slot.with(|p| unsafe { *p });
            }
        }
        // As above: n fits in u32.
        self.head = self.head.wrapping_add(n as u32);
        self.ring.head.store(self.head, Ordering::Release);
        n
    }

    /// Records waiting in the ring (a moment's view).
    pub fn len(&self) -> usize {
        self.ring.tail.load(Ordering::Acquire).wrapping_sub(self.head) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every record before producer position `pos`
    /// (`RecordProducer::position`) has been read. Positions wrap: `pos`
    /// must be less than 2^31 records behind the producer.
    pub fn has_read(&self, pos: u32) -> bool {
        self.head.wrapping_sub(pos) as i32 >= 0
    }
}

/// Requests from the control plane to one worker's sync walk, shared by
/// the control plane and the worker (`Arc`).
///
/// A bulk walk answers one request of the peer's, named by its id (the
/// peer asks again every second until it hears `BulkEnd`, with the same
/// id): the same id again changes nothing, so re-asks do not restart a
/// long walk. When the walk ends the worker publishes the id with the
/// events ring's position after its last record; the walk's records have
/// all been sent once the control plane's reading has passed that
/// position (`RecordConsumer::has_read`), whatever live events keep
/// arriving behind them.
#[derive(Debug)]
pub struct SyncControl {
    /// The request asked for, 0 for none. Control: rw (`request_bulk`);
    /// worker: ro.
    bulk_requested: AtomicU32,
    /// The last request the worker's walk finished (high 32 bits) and the
    /// events ring position after its last record (low 32), in one word so
    /// they are read together. Worker: rw; control: ro.
    bulk_done: AtomicU64,
    /// The pair's ownership key (`WorkerConfig::owner_key`), once the
    /// pair has agreed on one; 0 for the worker's own. Control: rw;
    /// worker: ro, at each pass.
    owner_key: AtomicU64,
}

impl Default for SyncControl {
    fn default() -> Self {
        Self { bulk_requested: AtomicU32::new(0), bulk_done: AtomicU64::new(0), owner_key: AtomicU64::new(0) }
    }
}

impl SyncControl {
    /// Control plane: asks the worker to push every live entry, answering
    /// the peer's request `id` (not 0). A new id starts the walk again from
    /// the beginning; the id under way or done changes nothing.
    pub fn request_bulk(&self, id: u32) {
        self.bulk_requested.store(id, Ordering::Release);
    }

    /// Where the walk answering request `id` ended in the events ring (the
    /// position after its last record), once it has.
    pub fn bulk_end(&self, id: u32) -> Option<u32> {
        let done = self.bulk_done.load(Ordering::Acquire);
        // The high half is the id, the low half the position.
        (id != 0 && (done >> 32) as u32 == id).then_some(done as u32)
    }

    /// Control plane: the pair agreed on ownership key `key` (not 0): the
    /// worker takes it at its next pass and drops the entries it no
    /// longer owns (`SyncCounters::rehomed`).
    pub fn set_owner_key(&self, key: u64) {
        self.owner_key.store(key, Ordering::Release);
    }

    /// Worker: the ownership key the control plane set, 0 for none.
    #[inline]
    pub(crate) fn owner_key(&self) -> u64 {
        self.owner_key.load(Ordering::Acquire)
    }

    /// Worker: the request asked for, 0 for none.
    #[inline]
    pub(crate) fn requested(&self) -> u32 {
        self.bulk_requested.load(Ordering::Acquire)
    }

    /// Worker: the walk answering request `id` is complete; its last
    /// record is before events ring position `end`.
    pub(crate) fn finish(&self, id: u32, end: u32) {
        self.bulk_done.store(u64::from(id) << 32 | u64::from(end), Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    fn rec(i: u32) -> SyncRecord {
        SyncRecord { client_ip: i, timeout_ms: i * 10, ..SyncRecord::EMPTY }
    }

    #[test]
    fn the_consumer_reads_every_record_once_in_order() {
        loom::model(|| {
            let (mut p, mut c) = channel(2);
            let producer = loom::thread::spawn(move || {
                let mut sent = 0;
                while sent < 3 {
                    if p.push(rec(sent)) {
                        sent += 1;
                    } else {
                        loom::thread::yield_now();
                    }
                }
            });
            let mut got = Vec::new();
            let mut buf = [SyncRecord::EMPTY; 2];
            while got.len() < 3 {
                let n = c.pop_batch(&mut buf);
                got.extend_from_slice(&buf[..n]);
                if n == 0 {
                    loom::thread::yield_now();
                }
            }
            producer.join().unwrap();
            assert_eq!(got, vec![rec(0), rec(1), rec(2)]);
            assert!(c.is_empty());
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
