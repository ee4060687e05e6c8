//! Expiry of a `FlowTable`'s entries: the sweep (`super::super::sweep`)
//! and the reclaim of a full table.

use super::super::entry::Flow;
use super::super::key::Addr;
use super::super::sweep::SCAN_PER_CALL;
use super::FlowTable;

impl<A: Addr> FlowTable<A> {
    /// The entry the expiry sweep looks at next.
    pub fn sweep_position(&self) -> u32 {
        self.sweep.pos
    }

    /// Ticks a lap of the expiry sweep takes: the longest an entry stays
    /// past its deadline without a packet (`super::sweep`).
    pub fn sweep_lap_ticks(&self) -> u32 {
        self.sweep.lap_ticks(self.capacity())
    }

    /// Sweeps on at tick `now` (`super::sweep`): looks at the entries the
    /// sweep owes by now, at most `SCAN_PER_CALL`, and removes each live
    /// one whose `expire <= now` (after passing it to `on_expire`). Stops
    /// after `budget` removals; what is still owed carries over to the next
    /// call. Returns the number of removals.
    pub fn expire(&mut self, now: u32, budget: u32, on_expire: impl FnMut(&Flow<A>)) -> u32 {
        if budget == 0 {
            return 0;
        }
        self.sweep.accrue(now, self.capacity());
        let n = self.sweep.credit.min(SCAN_PER_CALL);
        let (removed, scanned) = self.sweep_span(now, n, budget, on_expire);
        self.sweep.credit -= scanned;
        removed
    }

    /// A whole lap at tick `now`, whatever is owed: every live entry whose
    /// `expire <= now` removed (after `on_expire`). O(capacity): for tests
    /// and tools.
    pub fn expire_all(&mut self, now: u32, on_expire: impl FnMut(&Flow<A>)) -> u32 {
        self.sweep_span(now, self.capacity(), u32::MAX, on_expire).0
    }

    /// The table is full: looks at the next `scan` entries from the
    /// sweep's cursor whatever is owed, removing the due ones (after
    /// `on_expire`), so a slot that expired since the sweep last passed is
    /// not refused to a new connection. Returns the number of removals.
    ///
    /// Once a reclaim found nothing, none runs again in the same tick:
    /// nothing new is due before the next, and a flood of new connections
    /// at a full table must not pay the scan each.
    pub fn reclaim(&mut self, now: u32, scan: u32, on_expire: impl FnMut(&Flow<A>)) -> u32 {
        if self.sweep.dry_at == Some(now) {
            return 0;
        }
        let removed = self.sweep_span(now, scan, u32::MAX, on_expire).0;
        self.sweep.dry_at = (removed == 0).then_some(now);
        removed
    }

    /// Looks at up to `n` entries from the sweep's cursor, removing the due
    /// ones, up to `budget`: (removed, looked at).
    fn sweep_span(&mut self, now: u32, n: u32, budget: u32, mut on_expire: impl FnMut(&Flow<A>)) -> (u32, u32) {
        let cap = self.capacity();
        let (mut removed, mut scanned) = (0, 0);
        while scanned < n && removed < budget {
            let id = self.sweep.pos;
            self.sweep.pos = if id + 1 >= cap { 0 } else { id + 1 };
            scanned += 1;
            let Some(f) = self.entries.get(id as usize).filter(|f| f.is_live() && f.expire <= now) else { continue };
            on_expire(f);
            self.remove(id);
            removed += 1;
        }
        (removed, scanned)
    }
}
