//! Received datagrams waiting for their tag check (issue 20, review S2 and
//! P4): at most `INBOX`, in buffers made once, and at most
//! `VERIFY_PER_TURN` taken out per control-loop turn. A flood of junk on
//! the sync link then costs at most 64 HMAC-SHA256 checks a turn (a few
//! microseconds each in a release build), never a stall of the loop that
//! sends the VRRP adverts; what does not fit is dropped and counted
//! (`inbox-full`).

use super::wire::MAX_DATAGRAM;
use std::collections::VecDeque;

/// Datagrams kept at most.
pub const INBOX: usize = 256;
/// Tags checked per control-loop turn at most.
pub const VERIFY_PER_TURN: usize = 64;

pub struct Inbox {
    queue: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox { queue: VecDeque::with_capacity(INBOX), spare: (0..INBOX).map(|_| Vec::with_capacity(MAX_DATAGRAM)).collect() }
    }
}

impl Inbox {
    /// Keeps a copy of `payload` (at most `MAX_DATAGRAM` bytes, checked
    /// by the caller); false when the inbox is full.
    pub fn push(&mut self, payload: &[u8]) -> bool {
        let Some(mut b) = self.spare.pop() else { return false };
        b.clear();
        b.extend_from_slice(payload);
        self.queue.push_back(b);
        true
    }

    /// The oldest datagram while `budget` (a turn's, from
    /// `VERIFY_PER_TURN`) lasts; hand its buffer back with `recycle`.
    pub fn pop(&mut self, budget: &mut usize) -> Option<Vec<u8>> {
        *budget = budget.checked_sub(1)?;
        self.queue.pop_front()
    }

    pub fn recycle(&mut self, b: Vec<u8>) {
        self.spare.push(b);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood: what is kept is bounded, what a turn takes is bounded, and
    /// the buffers are reused (no allocation after start).
    #[test]
    fn a_flood_is_bounded_per_turn_and_in_memory() {
        let mut inbox = Inbox::default();
        let kept = (0..10_000u32).filter(|i| inbox.push(&i.to_be_bytes())).count();
        assert_eq!((kept, inbox.len()), (INBOX, INBOX));
        let mut seen = Vec::new();
        let mut budget = VERIFY_PER_TURN;
        while let Some(d) = inbox.pop(&mut budget) {
            seen.push(d.clone());
            inbox.recycle(d);
        }
        assert_eq!(seen.len(), VERIFY_PER_TURN);
        assert_eq!(seen[0], 0u32.to_be_bytes(), "oldest first");
        assert_eq!(inbox.len(), INBOX - VERIFY_PER_TURN);
        assert!(inbox.push(&[1; MAX_DATAGRAM]), "room again");
        let caps: usize = inbox.spare.iter().chain(inbox.queue.iter()).map(|b| b.capacity()).filter(|c| *c >= MAX_DATAGRAM).count();
        assert_eq!(caps, INBOX, "every buffer is one of those made at start");
        let mut turns = 0;
        while inbox.len() > 0 {
            let mut budget = VERIFY_PER_TURN;
            while let Some(d) = inbox.pop(&mut budget) {
                inbox.recycle(d);
            }
            turns += 1;
        }
        assert_eq!(turns, INBOX.div_ceil(VERIFY_PER_TURN));
    }
}
