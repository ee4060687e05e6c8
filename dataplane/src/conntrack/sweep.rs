//! Expiry by sweep: a cursor walks the entry array, a budgeted stretch at
//! a time, and removes what is due (`FlowTable::expire`); a lookup that
//! finds an entry past its deadline treats it as gone (the pipeline's
//! `classify`). Linux conntrack made the same move in 4.7 (Westphal, "get
//! rid of conntrack timer"): a garbage-collecting scan plus expiry on
//! lookup instead of a timer per entry, so the entry carries no timer
//! links. Here that is what lets a connection fit in 96 bytes: a timing
//! wheel's links were 10 bytes of every entry.
//!
//! A refresh writes only `expire`. The sweep owes `per_tick` entries for
//! each tick (`TICK_MS`) that passes, so a lap of the table takes at least
//! `LAP_TICKS_MIN` ticks and never more than `SCAN_PER_TICK_MAX` entries a
//! tick: an entry is removed at most one lap after its deadline (1 s up to
//! 4 million entries per worker, 2.5 s at 10 million), and a packet that
//! comes meanwhile finds it expired. Tables of up to `SWEEP_WHOLE` entries
//! are swept whole every tick. One `expire` call looks at `SCAN_PER_CALL`
//! entries at most, so a worker's pass stays short; owed entries carry
//! over to the next calls.

/// A lap takes at least this many ticks (one second).
pub const LAP_TICKS_MIN: u32 = 10;
/// The most entries the sweep owes per tick: 4 million a second, a few
/// per cent of a core reading lines in order.
pub const SCAN_PER_TICK_MAX: u32 = 400_000;
/// Up to this many entries a table is swept whole at every tick.
pub const SWEEP_WHOLE: u32 = 4096;
/// Entries one `expire` call looks at, at most.
pub const SCAN_PER_CALL: u32 = 4096;

/// The sweep's cursor and what it owes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sweep {
    /// The next entry to look at.
    pub(super) pos: u32,
    /// The tick the credit was last brought up to.
    tick: u32,
    /// Entries owed and not yet looked at (at most a lap).
    pub(super) credit: u32,
    /// Entries owed per tick.
    per_tick: u32,
    /// The tick a full table's reclaim last found nothing
    /// (`FlowTable::reclaim`).
    pub(super) dry_at: Option<u32>,
}

impl Sweep {
    pub(super) fn new(capacity: u32) -> Self {
        let per_tick = if capacity <= SWEEP_WHOLE {
            capacity
        } else {
            capacity.div_ceil(LAP_TICKS_MIN.max(capacity.div_ceil(SCAN_PER_TICK_MAX)))
        };
        Sweep { pos: 0, tick: 0, credit: 0, per_tick, dry_at: None }
    }

    /// Ticks one lap takes.
    pub(super) fn lap_ticks(&self, capacity: u32) -> u32 {
        capacity.div_ceil(self.per_tick.max(1))
    }

    /// Brings the credit up to tick `now` (at most one lap of `capacity`).
    #[inline]
    pub(super) fn accrue(&mut self, now: u32, capacity: u32) {
        if now > self.tick {
            let owed = u64::from(now - self.tick) * u64::from(self.per_tick) + u64::from(self.credit);
            // At most `capacity`, a u32.
            self.credit = owed.min(u64::from(capacity)) as u32;
            self.tick = now;
        }
    }
}
