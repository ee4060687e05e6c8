//! The expiry wheel: a hashed timing wheel (Varghese & Lauck, "Hashed and
//! Hierarchical Timing Wheels", SOSP 1987, scheme 6) of `WHEEL_SLOTS`
//! one-tick slots. Each slot heads a doubly linked list threaded through the
//! entries (`wheel_prev` / `wheel_next`), so linking and unlinking are O(1)
//! and need no allocation.
//!
//! An entry linked for tick `e` sits in slot `e % WHEEL_SLOTS`. Refreshing
//! an entry only rewrites its `expire`; it stays where it is (lazy
//! re-insertion: the deadline is re-read when the slot comes round, so a
//! busy connection costs one store per packet, not a relink). When the
//! table's `expire` reaches a slot, each entry in it is removed if
//! `expire <= now`, and otherwise moved to the slot of its current
//! `expire`. The same move handles timeouts longer than the wheel's span,
//! as scheme 6 does with its per-entry round count: such an entry is visited
//! once per lap until its lap comes.
//!
//! Invariant: the cursor `next_tick` is the first tick whose slot has not
//! been fully processed, and an entry in slot `s` is visited at
//! `visit_tick(s)`, the first tick >= `next_tick` that maps to `s`. Linking
//! keeps `visit_tick <= max(expire, next_tick)`, so an entry is never
//! visited after it is due; a refresh that *shortens* the deadline (a
//! state change to a shorter timeout) re-links (see `FlowTable::on_packet`).

use super::key::FlowId;

/// What the wheel needs of an entry: its links, which live in the entry so
/// that linking allocates nothing. The entry type implements it.
pub(super) trait WheelLinks {
    /// (previous, next, slot).
    fn wheel_links(&self) -> (u32, u32, u16);
    fn set_wheel_links(&mut self, prev: u32, next: u32, slot: u16);
    fn set_wheel_prev(&mut self, prev: u32);
    fn set_wheel_next(&mut self, next: u32);
}

/// Slots in the wheel: 4096 ticks of 100 ms, 6.8 minutes per lap.
pub const WHEEL_SLOTS: u32 = 4096;
pub(super) const WHEEL_MASK: u32 = WHEEL_SLOTS - 1;

/// No entry (end of a list, or an entry not in the wheel: a free one).
pub(super) const NIL: u32 = u32::MAX;
/// `wheel_prev` of the first entry in a slot: its slot is in `wheel_slot`.
pub(super) const HEAD: u32 = u32::MAX - 1;

const _: () = assert!(WHEEL_SLOTS.is_power_of_two() && WHEEL_SLOTS <= 1 << 16);

/// Slot heads and the cursor. The links live in the entries.
pub(super) struct Wheel {
    heads: Box<[u32]>,
    /// The first tick not yet fully processed.
    pub(super) next_tick: u32,
}

impl Wheel {
    pub(super) fn new() -> Self {
        Self { heads: vec![NIL; WHEEL_SLOTS as usize].into_boxed_slice(), next_tick: 0 }
    }

    pub(super) fn memory_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.heads)
    }

    /// The first entry in `slot`, or `NIL`.
    #[inline]
    pub(super) fn head(&self, slot: u32) -> u32 {
        self.heads.get((slot & WHEEL_MASK) as usize).copied().unwrap_or(NIL)
    }

    /// The tick at which the wheel will next process `slot`.
    #[inline]
    pub(super) fn visit_tick(&self, slot: u16) -> u32 {
        let ahead = u32::from(slot).wrapping_sub(self.next_tick) & WHEEL_MASK;
        self.next_tick.wrapping_add(ahead)
    }

    /// Links entry `id` so it is visited no later than tick `expire` (or
    /// at the cursor, if `expire` is already behind it). `id` must not be
    /// in the wheel.
    #[inline]
    pub(super) fn link<E: WheelLinks>(&mut self, entries: &mut [E], id: FlowId, expire: u32) {
        let slot = expire.max(self.next_tick) & WHEEL_MASK;
        let Some(head) = self.heads.get_mut(slot as usize) else { return };
        let old = *head;
        *head = id;
        if let Some(f) = entries.get_mut(id as usize) {
            // WHEEL_SLOTS <= 2^16 (const-asserted above).
            f.set_wheel_links(HEAD, old, slot as u16);
        }
        if let Some(f) = entries.get_mut(old as usize) {
            f.set_wheel_prev(id);
        }
    }

    /// Unlinks entry `id` from its slot in O(1). Leaves its links `NIL`.
    #[inline]
    pub(super) fn unlink<E: WheelLinks>(&mut self, entries: &mut [E], id: FlowId) {
        let Some(f) = entries.get_mut(id as usize) else { return };
        let (prev, next, slot) = f.wheel_links();
        f.set_wheel_links(NIL, NIL, slot);
        if prev == HEAD {
            if let Some(h) = self.heads.get_mut(usize::from(slot)) {
                *h = next;
            }
        } else if let Some(p) = entries.get_mut(prev as usize) {
            p.set_wheel_next(next);
        }
        if let Some(n) = entries.get_mut(next as usize) {
            n.set_wheel_prev(prev);
        }
    }
}
