//! Freshness of the peer's datagrams (issue 20, review S5): which of the
//! authentic datagrams may change anything here, in a way that survives
//! restarts of either box and needs no clock.
//!
//! - Nonce echo. Each box draws a random nonce at boot and a new one every
//!   `ROTATE_EVERY` (`Nonces`); every datagram carries the sender's nonce
//!   and, inside the tag, the receiver's nonce as the sender last received
//!   it (the echo). A datagram that echoes this box's current or previous
//!   nonce was made after that nonce was drawn: it is fresh. Records and
//!   bulk requests are taken only from fresh datagrams; an unfresh one is
//!   used as a Hello (its nonce is learnt, so the two boxes find each
//!   other after a restart). A datagram captured before this box's last
//!   restart, or more than two rotations ago, can never be fresh again.
//! - The current sender. The peer's sender id of the last fresh datagram
//!   is current; its sequence numbers pass a 64-wide window (RFC 4303
//!   §3.4.3): a duplicate, or one older than the window, is stale. Another
//!   sender id, fresh, replaces it only once the current one has sent
//!   nothing fresh for `LIVE` (the peer restarted): so no replay, however
//!   fresh, displaces a peer that is still talking, and the id replaced is
//!   retired for good (the last `RETIRED`).
//! - The candidate. While no current sender is live, the nonce echoed is
//!   that of a candidate: another sender id heard (unfresh). A datagram
//!   of another id takes the place when it was sent later, by the peer's
//!   own clock (`sent_us`, under the tag), than anything the candidate
//!   sent: the peer's newest boot wins over captures of older ones at
//!   once. Otherwise the candidate keeps the place for `TRIAL`; one that
//!   does not become current in that time gives way and is barred for
//!   `BARRED` (should the peer's clock have gone back).

use super::wire::Header;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// A box's nonce is replaced this often; the one before stays valid.
pub const ROTATE_EVERY: Duration = Duration::from_secs(60);
/// The current sender counts as live this long after its last fresh datagram
/// (three Hellos).
pub const LIVE: Duration = Duration::from_secs(3);
/// How long a candidate keeps its place (the peer needs up to `LIVE` plus
/// a Hello to accept this box's new id and answer with its nonce).
pub const TRIAL: Duration = Duration::from_secs(8);
/// How long a candidate that failed its trial is passed over.
pub const BARRED: Duration = Duration::from_secs(30);
/// Sender ids remembered after they were replaced.
const RETIRED: usize = 8;
/// Candidates remembered as barred.
const BARS: usize = 4;

/// This box's nonces: drawn from a per-boot secret seed (urandom), so a
/// rotation costs no syscall.
pub struct Nonces {
    seed: [u8; 32],
    drawn: u64,
    current: u64,
    previous: u64,
    since: Instant,
}

impl Nonces {
    pub fn new(seed: [u8; 32], now: Instant) -> Nonces {
        let mut n = Nonces { seed, drawn: 0, current: 0, previous: 0, since: now };
        n.current = n.draw();
        n
    }

    fn draw(&mut self) -> u64 {
        self.drawn += 1;
        let h = Sha256::new().chain_update(self.seed).chain_update(self.drawn.to_be_bytes()).finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        // 0 means "no nonce" on the wire.
        u64::from_be_bytes(b).max(1)
    }

    /// A new nonce when the current one is `ROTATE_EVERY` old.
    pub fn rotate(&mut self, now: Instant) {
        if now.duration_since(self.since) >= ROTATE_EVERY {
            self.since = now;
            self.previous = self.current;
            self.current = self.draw();
        }
    }

    pub fn current(&self) -> u64 {
        self.current
    }

    /// `echo` is this box's current or previous nonce.
    pub fn fresh(&self, echo: u64) -> bool {
        echo != 0 && (echo == self.current || echo == self.previous)
    }
}

/// An anti-replay window of 64 sequence numbers (RFC 4303 §3.4.3): the
/// highest taken and a bitmap of the 63 below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    top: u64,
    bits: u64,
}

impl Window {
    /// A window that has taken `seq` only.
    pub fn starting(seq: u64) -> Window {
        Window { top: seq, bits: 1 }
    }

    /// Takes `seq` unless it was taken or is older than the window.
    pub fn take(&mut self, seq: u64) -> bool {
        if seq > self.top {
            let shift = seq - self.top;
            self.bits = if shift >= 64 { 1 } else { (self.bits << shift) | 1 };
            self.top = seq;
            return true;
        }
        let age = self.top - seq;
        if seq == 0 || age >= 64 || self.bits & (1 << age) != 0 {
            return false;
        }
        self.bits |= 1 << age;
        true
    }
}

/// What `Freshness::check` says of an authentic datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the current sender and fresh: everything in it may be used.
    Fresh,
    /// Fresh, from a sender id that is now current (the first contact, or
    /// the peer restarted): everything in it may be used.
    NewSender,
    /// New (it passed the window) but echoes no nonce of ours: only what
    /// a Hello carries is used (its nonce).
    Unfresh,
    /// Its sequence number was taken or is older than the window.
    Stale,
    /// From another sender id while the current one is live, or from a
    /// retired or barred one: dropped.
    NotCurrent,
}

#[derive(Debug, Clone, Copy)]
struct Sender {
    id: u32,
    window: Window,
    nonce: u64,
    /// Current: the last fresh datagram. Candidate: when it took the place.
    at: Instant,
    /// The latest `sent_us` taken from it.
    sent_us: u64,
}

/// The peer's sender ids as this box sees them (module docs). Call
/// `check` only on authentic datagrams, so a forger moves nothing.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    current: Option<Sender>,
    candidate: Option<Sender>,
    retired: [Option<u32>; RETIRED],
    next_retired: usize,
    barred: [Option<(u32, Instant)>; BARS],
    next_barred: usize,
    /// Sender ids that became current after the first (peer restarts).
    pub restarts: u64,
}

impl Freshness {
    pub fn check(&mut self, h: &Header, fresh: bool, now: Instant) -> Verdict {
        if let Some(c) = self.current.as_mut().filter(|c| c.id == h.sender) {
            if !c.window.take(h.seq) {
                return Verdict::Stale;
            }
            c.nonce = h.nonce;
            if !fresh {
                return Verdict::Unfresh;
            }
            c.at = now;
            return Verdict::Fresh;
        }
        if self.retired.contains(&Some(h.sender)) || self.live(now) {
            return Verdict::NotCurrent;
        }
        let mut window = Window::starting(h.seq);
        if let Some(c) = self.candidate.as_mut().filter(|c| c.id == h.sender) {
            if !c.window.take(h.seq) {
                return Verdict::Stale;
            }
            c.nonce = h.nonce;
            c.sent_us = c.sent_us.max(h.sent_us);
            window = c.window;
        } else if self.barred(h.sender, now) {
            return Verdict::NotCurrent;
        }
        let taken = Sender { id: h.sender, window, nonce: h.nonce, at: now, sent_us: h.sent_us };
        if fresh {
            if let Some(old) = self.current.take() {
                self.retire(old.id);
                self.restarts += 1;
            }
            self.candidate = None;
            self.current = Some(taken);
            return Verdict::NewSender;
        }
        match self.candidate {
            Some(c) if c.id == h.sender => Verdict::Unfresh,
            Some(c) if now.duration_since(c.at) < TRIAL && h.sent_us <= c.sent_us => Verdict::NotCurrent,
            other => {
                if let Some(c) = other {
                    self.bar(c.id, now);
                }
                self.candidate = Some(taken);
                Verdict::Unfresh
            }
        }
    }

    /// The current sender sent something fresh within `LIVE`.
    pub fn live(&self, now: Instant) -> bool {
        self.current.is_some_and(|c| now.duration_since(c.at) < LIVE)
    }

    /// The nonce to echo: the live current sender's, else the candidate's,
    /// else the last current sender's; 0 before any.
    pub fn echo(&self, now: Instant) -> u64 {
        let pick = if self.live(now) { self.current } else { self.candidate.or(self.current) };
        pick.map_or(0, |s| s.nonce)
    }

    /// The peer's current sender id.
    pub fn sender(&self) -> Option<u32> {
        self.current.map(|c| c.id)
    }

    fn retire(&mut self, id: u32) {
        if let Some(slot) = self.retired.get_mut(self.next_retired) {
            *slot = Some(id);
        }
        self.next_retired = (self.next_retired + 1) % RETIRED;
    }

    fn bar(&mut self, id: u32, now: Instant) {
        if let Some(slot) = self.barred.get_mut(self.next_barred) {
            *slot = Some((id, now));
        }
        self.next_barred = (self.next_barred + 1) % BARS;
    }

    fn barred(&self, id: u32, now: Instant) -> bool {
        self.barred.iter().flatten().any(|(b, at)| *b == id && now.duration_since(*at) < BARRED)
    }
}

#[cfg(test)]
mod tests;
