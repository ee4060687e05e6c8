//! The connection table: preallocated entries, a chained hash index keyed
//! by both directions, and the expiry sweep (`super::sweep`).
//!
//! Index: `buckets[bucket_index(hash)]` holds a *link*, `id << 1 | dir`, to the
//! first entry of its chain; an entry continues its original-key chain in
//! `orig_next` and its reply-key chain in `reply_next`, so each entry sits in
//! two chains and the link that led to it says which key to compare (after
//! DPVS, whose `ip_vs_conn` carries one `conn_idx` per direction).
//! `NIL` (`u32::MAX`) ends a chain; ids stay below 2^30, so a link never
//! equals it.

use super::entry::{Flow, FlowInit, FlowMut, NIL};
use super::key::{Addr, Dir, FlowId, FlowKey, IPPROTO_ICMP, IPPROTO_TCP};
use super::state::{FlowState, Timeouts};
use super::tcp::{fin_bits_of, next_state, next_state_input_only};
use super::entry::Forwarding;
use super::marks::Marks;
use super::track::{Check, ProxyTrack, Restart, Segment, Sight};
use super::sweep::Sweep;
use unreplied::{list_of, Counts, EmbList};
use crate::region::Region;
pub use unreplied::{CAP_WALK, SOURCE_BUCKETS};

mod expiry;
mod tracking;
mod unreplied;

/// The entries that have a side record (`FlowTable::proxy`).
const PROXIED: super::entry::EntryFlags = super::entry::EntryFlags::SYN_PROXY.union(super::entry::EntryFlags::PROXY_HEADER);

/// The largest table: keeps `id << 1 | dir` links and the bucket count
/// (2^31) within `u32`.
pub const MAX_CAPACITY: u32 = 1 << 30;


/// Why `insert` refused an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// No free entry. Nothing is evicted: expiry makes room.
    Full,
    /// The original or the reply key is already indexed (by either
    /// direction of some entry), or the two keys are equal.
    Exists,
}

/// One worker's connection table. See the module docs for the layout.
pub struct FlowTable<A: Addr = u32> {
    entries: Region<Flow<A>>,
    buckets: Region<u32>,
    /// Buckets: two per entry (one per key), so a chain holds one link on
    /// average at a full table.
    n_buckets: u32,
    /// Head of the free list (through `orig_next`), `NIL` when full.
    free: u32,
    len: u32,
    sweep: Sweep,
    timeouts: Timeouts,
    /// The hash key (`crate::hash`): per boot in the appliance.
    seed: crate::hash::Seed,
    /// Sequence tracking, beside `entries` (same index): 24 bytes per
    /// entry (`super::marks`), touched by TCP packets only.
    tracks: Region<Marks>,
    /// The SYN proxy's and the PROXY header's state (same index), only
    /// for entries with `SYN_PROXY` or `PROXY_HEADER`: heap pages
    /// committed as they are first written (`Region::demand_zeroed`).
    proxies: Region<ProxyTrack>,
    /// The unreplied lists, oldest first (what a flood of spoofed sources
    /// makes): TCP entries in a handshake state (`Unreplied::HalfOpen`) and
    /// UDP entries their server has not answered (`Unreplied::Udp`). What
    /// `oldest_unreplied` offers for eviction (Linux conntrack's early drop
    /// of entries not `IPS_ASSURED`). An entry is in at most one (its
    /// state says which), so both share the entry's links.
    unreplied: [EmbList; 2],
    /// Unreplied entries per service and per source bucket (the caps').
    counts: Counts,
}



impl<A: Addr> FlowTable<A> {
    /// A table for `capacity` connections (at most `MAX_CAPACITY`), with
    /// every byte it will ever use allocated here, hashing with key 0 (tests
    /// and benchmarks; the appliance uses `keyed`).
    pub fn new(capacity: u32, timeouts: Timeouts) -> Self {
        Self::keyed(capacity, timeouts, 0)
    }

    /// `new` with the hash key `key` (`crate::hash`).
    pub fn keyed(capacity: u32, timeouts: Timeouts, key: u64) -> Self {
        let capacity = capacity.min(MAX_CAPACITY);
        let mut entries = Region::filled(capacity as usize, Flow::<A>::FREE);
        // Thread the free list in id order, so the first ids used are the
        // lowest (and the most recently freed are reused first).
        for (id, e) in (1..=capacity).zip(entries.iter_mut()) {
            e.orig_next = if id < capacity { id } else { NIL };
        }
        // Exactly two per entry (`bucket_index` maps a hash onto any
        // count): 8 bytes of index per connection, whatever the capacity.
        let n_buckets = capacity.saturating_mul(2).max(1);
        Self {
            entries,
            buckets: Region::filled(n_buckets as usize, NIL),
            n_buckets,
            free: if capacity > 0 { 0 } else { NIL },
            len: 0,
            sweep: Sweep::new(capacity),
            timeouts,
            seed: crate::hash::Seed::new(key),
            tracks: Region::filled(capacity as usize, Marks::NEW),
            proxies: Region::demand_zeroed(capacity as usize),
            unreplied: [EmbList::EMPTY; 2],
            counts: Counts::new(key),
        }
    }

    /// TCP entries in a handshake state (`FlowState::is_embryonic`).
    pub fn embryonic(&self) -> u32 {
        self.unreplied[0].len
    }

    /// Entries nobody answered yet (`FlowState::is_unreplied`): half-open
    /// TCP and unreplied UDP.
    pub fn unreplied(&self) -> u32 {
        self.unreplied[0].len + self.unreplied[1].len
    }

    /// The entry to evict when room is short: the oldest of the longer
    /// unreplied list (half-open TCP or unreplied UDP), so a flood of one
    /// kind evicts its own entries, not the other kind's few legitimate
    /// ones (a client's handshake under a UDP flood).
    pub fn oldest_unreplied(&self) -> Option<FlowId> {
        let [tcp, udp] = self.unreplied;
        let l = if udp.len > tcp.len { udp } else { tcp };
        (l.head != NIL).then_some(l.head)
    }

    /// Whether every entry is in use.
    pub fn is_full(&self) -> bool {
        self.free == NIL
    }

    pub fn capacity(&self) -> u32 {
        // At most MAX_CAPACITY.
        self.entries.len() as u32
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hash buckets (2 x capacity).
    pub fn buckets(&self) -> u32 {
        self.n_buckets
    }

    /// Bytes allocated: entries, tracks and buckets. The side table of
    /// SYN-proxied and PROXY-header connections (`proxy`) is not counted:
    /// its pages are committed only as such connections use them
    /// (`proxy_memory_bytes`).
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.entries) + core::mem::size_of_val(&*self.tracks) + core::mem::size_of_val(&*self.buckets)
    }

    /// Bytes the side table reserves (committed only where written).
    pub fn proxy_memory_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.proxies)
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Takes effect at each entry's next packet; until then an entry keeps
    /// the deadline it has.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        self.timeouts = t;
    }

    /// Hashes a key for `lookup` and `prefetch` (`Addr::hash_key`): every
    /// bit of the tuple and of the table's key reaches every output bit, and
    /// a set of tuples that share a bucket under one key spreads under
    /// another (`crate::hash`).
    #[inline]
    pub fn hash(&self, key: &FlowKey<A>) -> u32 {
        A::hash_key(key, &self.seed)
    }

    #[inline(always)]
    pub(super) fn bucket_index(&self, hash: u32) -> usize {
        // Lemire's multiply-shift ("A fast alternative to the modulo
        // reduction", 2016): uniform over any count for a uniform hash,
        // one multiplication instead of a division.
        ((u64::from(hash) * u64::from(self.n_buckets)) >> 32) as usize
    }

    /// Prefetches the bucket head for `hash` into L1, so a later `lookup`
    /// of the same burst does not wait for it.
    #[inline(always)]
    pub fn prefetch(&self, hash: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = self.buckets.as_ptr().wrapping_add(self.bucket_index(hash));
            // SAFETY: PREFETCHT0 is a hint: it never faults and has no
            // architectural effect, whatever the address. `p` is in bounds
            // anyway (`bucket_index` < buckets.len()).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = hash;
    }

    /// Second stage of a batched lookup: once the bucket is in cache
    /// (`prefetch` a little earlier), prefetch the first entry of its chain.
    /// False when the chain is empty (the lookup will miss).
    #[inline(always)]
    pub fn prefetch_entry(&self, hash: u32) -> bool {
        let link = self.buckets.get(self.bucket_index(hash)).copied().unwrap_or(NIL);
        if link == NIL {
            return false;
        }
        self.prefetch_id(link >> 1);
        true
    }

    /// Third stage, once the chain's first entry is in cache
    /// (`prefetch_entry` a little earlier): when that entry is not `key`'s,
    /// prefetch the next one in the chain. With two links per entry and two
    /// buckets per slot, a full table's chains hold one link per bucket on
    /// average, and about a quarter of lookups find their entry second: a
    /// dependent miss (two with its marks) the lookup would otherwise wait
    /// for packet by packet.
    #[inline(always)]
    pub fn prefetch_chase(&self, key: &FlowKey<A>, hash: u32) {
        let link = self.buckets.get(self.bucket_index(hash)).copied().unwrap_or(NIL);
        if link == NIL {
            return;
        }
        let Some(f) = self.entries.get((link >> 1) as usize) else { return };
        let next = f.next_link(link & 1);
        if next != NIL && !f.matches(key, link & 1) {
            self.prefetch_id(next >> 1);
        }
    }

    /// Prefetches entry `id` and its sequence marks (a TCP packet touches
    /// them: 24 bytes that may straddle two lines).
    #[inline(always)]
    fn prefetch_id(&self, id: FlowId) {
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = self.entries.as_ptr().wrapping_add(id as usize);
            let t = self.tracks.as_ptr().wrapping_add(id as usize).cast::<i8>();
            // SAFETY: PREFETCHT0 is a hint and never faults, whatever the
            // address.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
                _mm_prefetch::<_MM_HINT_T0>(t);
                _mm_prefetch::<_MM_HINT_T0>(t.wrapping_add(core::mem::size_of::<Marks>() - 1));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = id;
    }

    /// Finds the entry `key` belongs to, and which direction `key` is.
    /// `hash` must be `self.hash(key)`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey<A>, hash: u32) -> Option<(FlowId, Dir)> {
        let mut link = *self.buckets.get(self.bucket_index(hash))?;
        while link != NIL {
            let id = link >> 1;
            let dir_bit = link & 1;
            let f = self.entries.get(id as usize)?;
            if f.matches(key, dir_bit) {
                return Some((id, if dir_bit == 0 { Dir::Original } else { Dir::Reply }));
            }
            link = f.next_link(dir_bit);
            // The next entry's marks on their way with it, not after it.
            if link != NIL {
                self.prefetch_id(link >> 1);
            }
        }
        None
    }

    /// Creates an entry for `init` at tick `now`: indexes its original and
    /// reply keys and schedules its expiry. The initial state is
    /// `SynSent` for TCP, `Icmp` for ICMP, `Udp` otherwise, with that
    /// state's timeout.
    pub fn insert(&mut self, init: &FlowInit<A>, now: u32) -> Result<FlowId, InsertError> {
        self.insert_checked(init, now, true)
    }

    /// `insert` for a caller that has just looked up the original key and
    /// missed, with no change to the table since: skips that lookup (a
    /// cache miss at scale). The reply key is still checked.
    pub fn insert_after_miss(&mut self, init: &FlowInit<A>, now: u32) -> Result<FlowId, InsertError> {
        self.insert_checked(init, now, false)
    }

    /// Prefetches what an insert with this reply-key hash will touch: its
    /// bucket and the next free entry.
    #[inline(always)]
    pub fn prefetch_insert(&self, reply_hash: u32) {
        self.prefetch(reply_hash);
        self.prefetch_free();
    }

    /// Prefetches the next free entry and its marks: what the next insert
    /// writes. Called when a burst holds a packet its lookup will miss, and
    /// by each insert for the one after it, so a burst of new connections
    /// has its next entry on the way while the current one is made.
    #[inline(always)]
    pub fn prefetch_free(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let id = self.free as usize;
            let p = self.entries.as_ptr().wrapping_add(id).cast::<i8>();
            let t = self.tracks.as_ptr().wrapping_add(id).cast::<i8>();
            // SAFETY: PREFETCHT0 is a hint and never faults, whatever the
            // address (`free` may be the end-of-list marker).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(t);
                _mm_prefetch::<_MM_HINT_T0>(t.wrapping_add(core::mem::size_of::<Marks>() - 1));
            }
        }
    }

    /// Creates an entry in `state` that expires at tick `expire` (state
    /// sync: an entry the HA peer made, with the time it has left there).
    /// Both keys are checked; FIN bits follow from the state
    /// (`tcp::fin_bits_of`).
    pub fn install(&mut self, init: &FlowInit<A>, state: FlowState, expire: u32) -> Result<FlowId, InsertError> {
        let mut flow = Flow::from_init(init, state, expire);
        flow.fin_seen = fin_bits_of(state);
        self.insert_flow(flow, true)
    }

    /// Sets live entry `id`'s state (and its FIN bits, `tcp::fin_bits_of`)
    /// and deadline (state sync). False if `id` is not live.
    pub fn set_state(&mut self, id: FlowId, state: FlowState, expire: u32) -> bool {
        let Some(f) = self.entries.get_mut(id as usize).filter(|f| f.is_live()) else {
            return false;
        };
        let old = f.state;
        if f.state != state {
            f.state = state;
            f.fin_seen = fin_bits_of(state);
        }
        f.expire = expire;
        self.emb_follow(id, old, state);
        true
    }

    fn insert_checked(&mut self, init: &FlowInit<A>, now: u32, check_original: bool) -> Result<FlowId, InsertError> {
        let state = match init.proto {
            IPPROTO_TCP => FlowState::SynSent,
            IPPROTO_ICMP => FlowState::Icmp,
            _ => FlowState::UdpUnreplied,
        };
        let expire = now.saturating_add(self.timeouts.for_state(state));
        self.insert_flow(Flow::from_init(init, state, expire), check_original)
    }

    fn insert_flow(&mut self, flow: Flow<A>, check_original: bool) -> Result<FlowId, InsertError> {
        let (okey, rkey) = (flow.original_key(), flow.reply_key());
        let (ohash, rhash) = (self.hash(&okey), self.hash(&rkey));
        if okey == rkey || (check_original && self.lookup(&okey, ohash).is_some()) || self.lookup(&rkey, rhash).is_some() {
            return Err(InsertError::Exists);
        }
        let id = self.free;
        let (ob, rb) = (self.bucket_index(ohash), self.bucket_index(rhash));
        let Some(e) = self.entries.get_mut(id as usize) else {
            return Err(InsertError::Full);
        };
        self.free = e.orig_next;
        *e = flow;
        if let Some(head) = self.buckets.get_mut(ob) {
            e.orig_next = *head;
            *head = id << 1;
        }
        // The reply chain may share the bucket: read the head after the
        // original link went in.
        if let Some(head) = self.buckets.get_mut(rb) {
            e.reply_next = *head;
            *head = (id << 1) | 1;
        }
        self.len += 1;
        // The next insert's entry, while this one is made.
        self.prefetch_free();
        if let Some(t) = self.tracks.get_mut(id as usize) {
            *t = Marks::NEW;
        }
        // (`track_bits` came zero with `flow`.)
        if flow.flags.intersects(PROXIED) {
            if let Some(p) = self.proxies.get_mut(id as usize) {
                *p = ProxyTrack::default();
            }
        }
        if let Some(k) = list_of(flow.state) {
            self.emb_link(id, k);
        }
        Ok(id)
    }

    /// The live entry `id`.
    #[inline]
    pub fn get(&self, id: FlowId) -> Option<&Flow<A>> {
        self.entries.get(id as usize).filter(|f| f.is_live())
    }

    /// The live entry `id`, writable through `FlowMut`'s setters only (the
    /// keyed fields cannot change while indexed).
    #[inline]
    pub fn get_mut(&mut self, id: FlowId) -> Option<FlowMut<'_, A>> {
        self.entries.get_mut(id as usize).filter(|f| f.is_live()).map(FlowMut)
    }

    /// Replaces entry `id`'s caller bits. False if `id` is not live.
    pub fn set_flags(&mut self, id: FlowId, flags: super::entry::EntryFlags) -> bool {
        let Some(f) = self.entries.get_mut(id as usize).filter(|f| f.is_live()) else { return false };
        // A side record given now starts from zero, not from the last
        // connection that had this slot.
        let given = flags.intersects(PROXIED) && !f.flags.intersects(PROXIED);
        f.flags = flags;
        if given {
            if let Some(p) = self.proxies.get_mut(id as usize) {
                *p = ProxyTrack::default();
            }
        }
        true
    }

    /// Accounts one packet of entry `id` travelling `dir` at tick `now`:
    /// advances the TCP state machine (`tcp::next_state`; `tcp_flags` is
    /// ignored for UDP and ICMP) and pushes the expiry to `now` + the new
    /// state's timeout. Returns the new state, or `Close` for an unknown id.
    /// Sequence numbers are not tracked (`on_segment` does): for tests and
    /// benchmarks of the state machine alone.
    ///
    /// Usually only `expire` is written (and `state`): the sweep reads the
    /// deadline when it comes by.
    #[inline]
    pub fn on_packet(&mut self, id: FlowId, dir: Dir, tcp_flags: u8, now: u32) -> FlowState {
        self.advance(id, dir, tcp_flags, now)
    }

    /// `on_packet` for a TCP segment with its sequence numbers
    /// (`track::Track`): a reset the receiver would not accept changes
    /// nothing and comes back as `Check::RstInWindow` (forward it: the
    /// endpoint challenges it) or `Check::RstOutOfWindow` (drop it), with
    /// the state as it was. UDP and ICMP: as `on_packet`.
    #[inline]
    pub fn on_segment(&mut self, id: FlowId, dir: Dir, seg: &Segment, now: u32) -> (FlowState, Check) {
        let Some(f) = self.entries.get(id as usize).filter(|f| f.is_live()) else {
            return (FlowState::Close, Check::Pass);
        };
        if f.proto == IPPROTO_TCP {
            let (mode, state, flags) = (f.mode, f.state, f.flags);
            if let Some(mut t) = self.tracks.get(id as usize).map(|m| m.load(f.track_bits)) {
                // A SYN reopening a closed entry starts afresh.
                if matches!(state, FlowState::TimeWait | FlowState::Close) && seg.flags & 0x12 == 0x02 && dir == Dir::Original {
                    t.reset_marks();
                    if flags.intersects(PROXIED) {
                        if let Some(p) = self.proxies.get_mut(id as usize) {
                            *p = ProxyTrack::default();
                        }
                    }
                }
                // Direct server return: the other side is never seen.
                let sight = if mode.is_dsr() { Sight::ClientOnly } else { Sight::Both };
                let check = t.on_segment(dir, seg, restart(mode, state, dir), sight);
                self.put_track(id, &t);
                if check != Check::Pass && !(mode.is_dsr() && dir == Dir::Reply) {
                    return (state, check);
                }
            }
        }
        (self.advance(id, dir, seg.flags, now), Check::Pass)
    }

    #[inline]
    fn advance(&mut self, id: FlowId, dir: Dir, tcp_flags: u8, now: u32) -> FlowState {
        let Some(f) = self.entries.get_mut(id as usize).filter(|f| f.is_live()) else {
            return FlowState::Close;
        };
        let old = f.state;
        let state = if f.mode.is_dsr() { next_state_input_only(f.state, tcp_flags, &mut f.fin_seen) } else { next_state(f.state, dir, tcp_flags, &mut f.fin_seen) };
        f.state = state;
        f.expire = now.saturating_add(self.timeouts.for_state(state));
        if old != state {
            self.emb_follow(id, old, state);
        }
        state
    }

    /// Unlinks `link` (`id << 1 | dir`) from the chain of bucket
    /// `bucket_index(hash)`. O(chain length).
    fn unlink_chain(&mut self, hash: u32, link: u32) {
        let dir_bit = link & 1;
        let after = match self.entries.get((link >> 1) as usize) {
            Some(f) => f.next_link(dir_bit),
            None => return,
        };
        let b = self.bucket_index(hash);
        let Some(head) = self.buckets.get_mut(b) else { return };
        if *head == link {
            *head = after;
            return;
        }
        let mut cur = *head;
        while cur != NIL {
            let Some(f) = self.entries.get_mut((cur >> 1) as usize) else { return };
            let next = if cur & 1 == 0 { &mut f.orig_next } else { &mut f.reply_next };
            if *next == link {
                *next = after;
                return;
            }
            cur = *next;
        }
    }

    /// Removes entry `id`: unlinks it from both chains and its unreplied
    /// list, recycles it, and returns a copy.
    pub fn remove(&mut self, id: FlowId) -> Option<Flow<A>> {
        let flow = *self.get(id)?;
        self.unlink_chain(self.hash(&flow.original_key()), id << 1);
        self.unlink_chain(self.hash(&flow.reply_key()), (id << 1) | 1);
        if let Some(k) = list_of(flow.state) {
            self.emb_unlink(id, k);
        }
        if let Some(e) = self.entries.get_mut(id as usize) {
            *e = Flow::<A>::FREE;
            e.orig_next = self.free;
            self.free = id;
        }
        self.len -= 1;
        Some(Flow { orig_next: NIL, reply_next: NIL, emb_prev: NIL, emb_next: NIL, ..flow })
    }

    /// Live entries in id order. O(capacity): for dumps and tests.
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &Flow<A>)> + '_ {
        (0..self.capacity()).zip(self.entries.iter()).filter(|(_, f)| f.is_live())
    }

    /// Chain lengths per bucket, as a histogram (`hist[n]` buckets hold `n`
    /// links, the last slot counting longer chains too). O(capacity): for
    /// diagnostics and tests.
    pub fn chain_histogram(&self, hist: &mut [u32]) {
        let Some(last) = hist.len().checked_sub(1) else { return };
        for &head in self.buckets.iter() {
            let mut n = 0usize;
            let mut link = head;
            while link != NIL {
                n += 1;
                link = match self.entries.get((link >> 1) as usize) {
                    Some(f) => f.next_link(link & 1),
                    None => NIL,
                };
            }
            if let Some(h) = hist.get_mut(n.min(last)) {
                *h += 1;
            }
        }
    }
}

/// May a SYN of `dir` restart its side's marks in `state`
/// (`track::Restart`)? The client's SYN while its own is unanswered or
/// when it reopens a closed entry (with direct server return also a
/// closing one: `tcp::next_state_input_only` reopens there); the server's
/// SYN-ACK during the handshake. Never in a synchronized state (RFC 9293
/// §3.5, RFC 5961 §4).
#[inline]
fn restart(mode: Forwarding, state: FlowState, dir: Dir) -> Restart {
    let allowed = match dir {
        Dir::Original if mode.is_dsr() => !matches!(state, FlowState::SynRecv | FlowState::Established),
        Dir::Original => matches!(state, FlowState::SynSent | FlowState::TimeWait | FlowState::Close),
        Dir::Reply => state.is_embryonic(),
    };
    if allowed {
        Restart::Allowed
    } else {
        Restart::Ignored
    }
}
