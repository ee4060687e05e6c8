//! The probe engine's timers: a binary heap of (due time, event), so a
//! turn costs O(log n) per event due and nothing per server that is not
//! (the engine used to walk every check of every server every turn).
//! Events are not removed when they stop mattering (a check retargeted,
//! a probe answered before its deadline); the engine checks each one it
//! pops against the state it names (a generation, a serial) and drops
//! the stale ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug)]
pub(super) struct Timers<T: Ord> {
    heap: BinaryHeap<Reverse<(Instant, T)>>,
}

impl<T: Ord> Default for Timers<T> {
    fn default() -> Self {
        Timers { heap: BinaryHeap::new() }
    }
}

impl<T: Ord + Copy> Timers<T> {
    pub(super) fn push(&mut self, at: Instant, event: T) {
        self.heap.push(Reverse((at, event)));
    }

    /// The earliest event due at `now`, taken off.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<T> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, e))| e),
            _ => None,
        }
    }

    /// Is an event due at `now`?
    pub(super) fn is_due(&self, now: Instant) -> bool {
        self.heap.peek().is_some_and(|Reverse((at, _))| *at <= now)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(super) fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn events_come_due_in_time_order_and_not_before() {
        let t0 = Instant::now();
        let mut t: Timers<u32> = Timers::default();
        for (ms, e) in [(30, 3), (10, 1), (20, 2), (10, 0)] {
            t.push(t0 + Duration::from_millis(ms), e);
        }
        assert_eq!(t.pop_due(t0), None, "nothing is due yet");
        assert!(!t.is_due(t0 + Duration::from_millis(9)));
        let at = t0 + Duration::from_millis(20);
        let due: Vec<u32> = std::iter::from_fn(|| t.pop_due(at)).collect();
        assert_eq!(due, vec![0, 1, 2], "by time, ties by event");
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1)), Some(3));
        assert_eq!(t.len(), 0);
    }
}

/// The pace of probe starts: the configured probes a second (each
/// check's one an interval, summed) and half as many again, with 20 ms of
/// them at once (at least 32). After the control loop was held up, the
/// starts that fell due meanwhile go out at this pace rather than as
/// fast as turns go (32 a turn): their answers come back at it too,
/// within the punt policer's probe class when it is sized with that
/// headroom (README), not in a burst past its bucket that it would drop
/// (their probes then time out and healthy servers go down).
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Pace {
    pub(super) fn new(probes_per_sec: f64) -> Self {
        let per_sec = (probes_per_sec * 1.5).max(1.0);
        let burst = (per_sec / 50.0).max(32.0);
        Pace { per_sec, burst, tokens: burst, at: None }
    }

    /// A new configured rate (a configuration change): what the bucket
    /// holds is kept.
    pub(super) fn set_rate(&mut self, probes_per_sec: f64) {
        let next = Pace::new(probes_per_sec);
        self.per_sec = next.per_sec;
        self.burst = next.burst;
        self.tokens = self.tokens.min(self.burst);
    }

    fn tokens_at(&self, now: Instant) -> f64 {
        let dt = self.at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        (self.tokens + dt * self.per_sec).min(self.burst)
    }

    /// May a start go at `now`?
    pub(super) fn allows(&self, now: Instant) -> bool {
        self.tokens_at(now) >= 1.0
    }

    /// A start went at `now`.
    pub(super) fn take(&mut self, now: Instant) {
        self.tokens = (self.tokens_at(now) - 1.0).max(0.0);
        self.at = Some(now);
    }
}
