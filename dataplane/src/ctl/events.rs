//! Connection-state sync with the HA peer (issue 12): the record that
//! describes one connection entry or persistence record, its wire form,
//! and the bounded rings that carry records between a worker and the
//! control lcore.
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

use crate::conntrack::{Flow, FlowState, Forwarding, TICK_MS};
use crate::sync::{Arc, AtomicU32, AtomicU64, Ordering, UnsafeCell};
use crossbeam_utils::CachePadded;

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SyncKind {
    /// A worker made a connection entry (scheduled a new connection).
    Create = 1,
    /// An entry's TCP state changed (RFC 9293 §3.3.2 as `conntrack::tcp`
    /// folds it).
    Update = 2,
    /// An entry went: closed (RST, both FINs then CLOSE, server reset) or,
    /// with `FLAG_EXPIRED`, idle past its timeout.
    Delete = 3,
    /// A live entry, from a periodic refresh or a bulk walk.
    Refresh = 4,
    /// A worker made a persistence record (`lb::persist`): client, VIP and
    /// server say which, `timeout_ms` is the record's timeout.
    Persist = 5,
    /// A worker dropped a persistence record (its server went down).
    PersistDelete = 6,
}

impl SyncKind {
    pub const ALL: &'static [SyncKind] =
        &[SyncKind::Create, SyncKind::Update, SyncKind::Delete, SyncKind::Refresh, SyncKind::Persist, SyncKind::PersistDelete];

    /// The kind whose byte is `b`; None for an unknown one.
    pub fn from_u8(b: u8) -> Option<SyncKind> {
        Self::ALL.iter().copied().find(|k| *k as u8 == b)
    }
}

/// `SyncRecord::family` of an IPv4 record.
pub const FAMILY_V4: u8 = 4;

/// One connection entry or persistence record, by value: fixed size,
/// `Copy`, the same on both boxes. Addresses are IPv4 in host order
/// (`u32::from(Ipv4Addr)`), as the connection table keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRecord {
    pub kind: SyncKind,
    /// `FAMILY_V4` (IPv6 will add its own).
    pub family: u8,
    pub proto: u8,
    /// The entry's state (`Close` for persistence records).
    pub state: FlowState,
    /// The entry's forwarding mode (the virtual server's, for persistence
    /// records).
    pub mode: Forwarding,
    /// `FLAG_PERSIST`, `FLAG_EXPIRED`.
    pub flags: u8,
    /// The DPDK port the client side uses (the same wiring on both boxes).
    pub client_port_id: u8,
    /// Where replies to the client go (the client's or its router's MAC).
    pub client_mac: [u8; 6],
    pub client_ip: u32,
    pub client_port: u16,
    pub vip: u32,
    pub vport: u16,
    pub server_ip: u32,
    pub server_port: u16,
    /// The server side's client address: the full-NAT local address and
    /// port (the client's own for NAT).
    pub local_ip: u32,
    pub local_port: u16,
    /// Time the entry has left before it expires idle, in milliseconds
    /// (a persistence record's: its timeout).
    pub timeout_ms: u32,
}

impl SyncRecord {
    /// Bytes of a record on the wire.
    pub const WIRE_LEN: usize = 44;
    /// The entry was placed by a persistence record (`EntryFlags::PERSIST`).
    pub const FLAG_PERSIST: u8 = 0x01;
    /// `Delete`: the entry expired idle (rather than closed). The peer
    /// keeps its own copy if it has forwarded packets of it since.
    pub const FLAG_EXPIRED: u8 = 0x80;
    const KNOWN_FLAGS: u8 = Self::FLAG_PERSIST | Self::FLAG_EXPIRED;

    /// A record of nothing, to fill buffers.
    pub const EMPTY: SyncRecord = SyncRecord {
        kind: SyncKind::Refresh,
        family: FAMILY_V4,
        proto: 0,
        state: FlowState::Close,
        mode: Forwarding::Nat,
        flags: 0,
        client_port_id: 0,
        client_mac: [0; 6],
        client_ip: 0,
        client_port: 0,
        vip: 0,
        vport: 0,
        server_ip: 0,
        server_port: 0,
        local_ip: 0,
        local_port: 0,
        timeout_ms: 0,
    };

    /// The record of entry `f` at tick `now`: its time left (in ms) is what
    /// the peer gives its copy.
    #[inline]
    pub fn of_flow(kind: SyncKind, f: &Flow, now: u32) -> SyncRecord {
        let persist = if f.flags.contains(crate::conntrack::EntryFlags::PERSIST) { Self::FLAG_PERSIST } else { 0 };
        SyncRecord {
            kind,
            family: FAMILY_V4,
            proto: f.proto,
            state: f.state,
            mode: f.mode,
            flags: persist,
            client_port_id: f.client_port_id,
            client_mac: f.client_mac,
            client_ip: f.client_ip,
            client_port: f.client_port,
            vip: f.vip,
            vport: f.vport,
            server_ip: f.server_ip,
            server_port: f.server_port,
            local_ip: f.local_ip,
            local_port: f.local_port,
            timeout_ms: f.expire.saturating_sub(now).saturating_mul(TICK_MS),
        }
    }

    /// `timeout_ms` in flow-table ticks, rounded up.
    #[inline]
    pub fn timeout_ticks(&self) -> u32 {
        self.timeout_ms.div_ceil(TICK_MS)
    }

    /// The wire form, in network byte order:
    ///
    /// ```text
    ///  0 kind  1 family  2 proto  3 state  4 mode  5 flags  6 client port id  7 zero
    ///  8 client MAC (6)  14 zero (2)
    /// 16 client ip  20 vip  24 server ip  28 local ip          (4 each)
    /// 32 client port  34 vport  36 server port  38 local port  (2 each)
    /// 40 timeout ms (4)                                        = 44 bytes
    /// ```
    pub fn encode(&self, out: &mut [u8; Self::WIRE_LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&[self.kind as u8, self.family, self.proto, self.state as u8, self.mode as u8, self.flags, self.client_port_id, 0]);
        w.put(&self.client_mac);
        w.put(&[0, 0]);
        for ip in [self.client_ip, self.vip, self.server_ip, self.local_ip] {
            w.put(&ip.to_be_bytes());
        }
        for port in [self.client_port, self.vport, self.server_port, self.local_port] {
            w.put(&port.to_be_bytes());
        }
        w.put(&self.timeout_ms.to_be_bytes());
    }

    /// A record from its wire form (the first `WIRE_LEN` bytes of
    /// `bytes`). None when too short, or when the kind, family, state,
    /// mode or a flag is unknown.
    pub fn decode(bytes: &[u8]) -> Option<SyncRecord> {
        let mut r = Reader { buf: bytes.get(..Self::WIRE_LEN)?, at: 0 };
        let [kind, family, proto, state, mode, flags, client_port_id, _] = r.take::<8>()?;
        let client_mac = r.take::<6>()?;
        r.take::<2>()?;
        let (client_ip, vip, server_ip, local_ip) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let (client_port, vport, server_port, local_port) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
        let timeout_ms = r.u32()?;
        if family != FAMILY_V4 || flags & !Self::KNOWN_FLAGS != 0 {
            return None;
        }
        Some(SyncRecord {
            kind: SyncKind::from_u8(kind)?,
            family,
            proto,
            state: FlowState::from_u8(state)?,
            mode: Forwarding::from_u8(mode)?,
            flags,
            client_port_id,
            client_mac,
            client_ip,
            client_port,
            vip,
            vport,
            server_ip,
            server_port,
            local_ip,
            local_port,
            timeout_ms,
        })
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(d) = self.buf.get_mut(self.at..self.at + bytes.len()) {
            d.copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let b = self.buf.get(self.at..self.at + N)?.try_into().ok()?;
        self.at += N;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
}

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
}

/// Requests from the control plane to one worker's sync walk, shared by
/// the control plane and the worker (`Arc`).
#[derive(Debug)]
pub struct SyncControl {
    /// Bulk walks asked for, a generation. Control: rw (`request_bulk`);
    /// worker: ro.
    bulk_requested: AtomicU64,
    /// The generation of the last bulk walk the worker finished (every
    /// live entry pushed as a `Refresh`). Worker: rw; control: ro.
    bulk_done: AtomicU64,
}

impl Default for SyncControl {
    fn default() -> Self {
        Self { bulk_requested: AtomicU64::new(0), bulk_done: AtomicU64::new(0) }
    }
}

impl SyncControl {
    /// Control plane: asks the worker to push every live entry (a peer
    /// asked for a bulk dump). A walk under way starts again from the
    /// beginning. Returns the request's generation: the walk is complete
    /// once `bulk_done()` reaches it.
    pub fn request_bulk(&self) -> u64 {
        self.bulk_requested.fetch_add(1, Ordering::AcqRel).wrapping_add(1)
    }

    /// The generation of the last bulk walk the worker finished.
    pub fn bulk_done(&self) -> u64 {
        self.bulk_done.load(Ordering::Acquire)
    }

    /// Worker: the latest generation asked for.
    #[inline]
    pub(crate) fn requested(&self) -> u64 {
        self.bulk_requested.load(Ordering::Acquire)
    }

    /// Worker: the walk for generation `g` is complete.
    pub(crate) fn finish(&self, g: u64) {
        self.bulk_done.store(g, Ordering::Release);
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
