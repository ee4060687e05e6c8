//! A watchdog over an 802.3ad bond member's agreement. DPDK's bonding PMD
//! runs the IEEE 802.1AX machines itself; once in a CI run (2 cores, five
//! tests at once) a member that came back never left its initial state
//! for 30 s while its link was up and its partner sent LACPDUs. A member
//! whose link is up but which has not agreed with its partner (both ends
//! collecting) within `FIRST` is taken out of the bond and put back, which
//! begins its machines again; the wait doubles at each try up to `MAX`, so
//! a port wired to a switch without LACP is retried rarely, and the event
//! log says each time.

use std::time::{Duration, Instant};

/// How long a member may stay out of agreement before the first retry:
/// an agreement takes about 3 s (802.1AX's 2 s aggregate wait and a
/// LACPDU each way).
pub const FIRST: Duration = Duration::from_secs(15);
/// The longest wait between retries.
pub const MAX: Duration = Duration::from_secs(160);
/// Retries in a row without agreement before the watch gives up on the
/// member until its link goes down and up again (a port wired to a switch
/// without LACP is bounced this often, then left alone).
pub const TRIES: u32 = 5;

/// One member's watch.
#[derive(Debug, Clone, Default)]
pub struct Rejoin {
    /// Since when the member has been up and out of agreement.
    since: Option<Instant>,
    /// The wait before the next retry (zero: `FIRST`).
    wait: Duration,
    /// Retries so far without agreement.
    tries: u32,
}

impl Rejoin {
    /// Called each watch of a member whose link is up and which is in its
    /// bond; `agreed`: both ends collecting. True: take it out and put it
    /// back now.
    pub fn due(&mut self, agreed: bool, now: Instant) -> bool {
        if agreed {
            *self = Rejoin::default();
            return false;
        }
        if self.tries >= TRIES {
            return false;
        }
        let wait = if self.wait.is_zero() { FIRST } else { self.wait };
        match self.since {
            None => {
                self.since = Some(now);
                self.wait = wait;
                false
            }
            Some(t) if now.saturating_duration_since(t) >= wait => {
                self.since = Some(now);
                self.wait = (wait * 2).min(MAX);
                self.tries += 1;
                true
            }
            Some(_) => false,
        }
    }

    /// The member's link went down: the next time it is up is a new start.
    pub fn reset(&mut self) {
        *self = Rejoin::default();
    }
}

/// Both ends of a member at least collecting (802.1AX state bits: 0x08
/// synchronization, 0x10 collecting), from `(actor, partner)`.
pub fn agreed(actor: u8, partner: u8) -> bool {
    const BOTH: u8 = 0x08 | 0x10;
    actor & BOTH == BOTH && partner & BOTH == BOTH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_out_of_agreement_is_retried_after_15_s_then_less_often() {
        let t0 = Instant::now();
        let mut r = Rejoin::default();
        assert!(!r.due(false, t0));
        assert!(!r.due(false, t0 + Duration::from_secs(14)));
        assert!(r.due(false, t0 + Duration::from_secs(15)), "first retry at 15 s");
        assert!(!r.due(false, t0 + Duration::from_secs(44)));
        assert!(r.due(false, t0 + Duration::from_secs(45)), "then after 30 s");
        let mut at = t0 + Duration::from_secs(45);
        for _ in 2..TRIES {
            at += MAX;
            assert!(r.due(false, at), "never less often than every {MAX:?}");
        }
        assert!(!r.due(false, at + MAX * 10), "then it gives up until the link goes down");
        r.reset();
        assert!(!r.due(false, at + MAX * 11));
        assert!(r.due(false, at + MAX * 11 + FIRST), "a new start after the link came back");
    }

    #[test]
    fn agreement_or_a_link_down_starts_the_watch_again() {
        let t0 = Instant::now();
        let mut r = Rejoin::default();
        r.due(false, t0);
        assert!(r.due(false, t0 + FIRST));
        assert!(!r.due(true, t0 + FIRST * 2), "agreed: nothing to do");
        assert!(!r.due(false, t0 + FIRST * 3), "a new watch begins");
        assert!(r.due(false, t0 + FIRST * 4), "and waits FIRST again, not the doubled wait");
        r.reset();
        assert!(!r.due(false, t0 + FIRST * 10));
    }

    #[test]
    fn agreement_needs_both_ends_in_sync_and_collecting() {
        assert!(agreed(0x3d, 0x3d));
        assert!(agreed(0x1d, 0x3f));
        assert!(!agreed(0x0d, 0x3d), "actor only in sync");
        assert!(!agreed(0x3d, 0x47), "partner defaulted");
        assert!(!agreed(0x10, 0x3d), "collecting without sync");
    }
}
