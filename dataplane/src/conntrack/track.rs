//! TCP sequence tracking: what each side of a connection has sent and
//! acknowledged, so that resets can be told from blind guesses (seed 001:
//! the entry tracks the sequence numbers of both sides).
//!
//! A connection's `Track` is stored beside its entry (`FlowTable`'s second
//! array, 24 bytes, plus two bytes in the entry: `super::marks`). Per direction
//! it keeps the highest sequence number sent (`end`: SND.NXT as the box
//! sees it), the highest acknowledgment sent (`ack`: that side's RCV.NXT)
//! and its receive window in bytes, after RFC 7323's scaling once both
//! SYNs were seen.
//!
//! Segments move the marks only when they are plausible, a simplified
//! form of Linux conntrack's `tcp_in_window` (after Rooij, "Real Stateful
//! TCP Packet Filtering in IP Filter"): an ACK may not acknowledge what
//! the other side never sent, nor lag more than a window behind what it
//! did send, and data must fall within the other side's window.
//! Implausible segments are still forwarded (the endpoints judge them),
//! they just do not move the marks, so a blind attacker cannot drag the
//! window to where its reset would land.
//!
//! A SYN restarts its side's marks only while the connection is not
//! synchronized (`Restart`): the client's SYN in SYN_SENT (a retransmission
//! with a new ISN) or reusing a closed entry, the server's SYN-ACK during
//! the handshake. In a synchronized state a SYN changes nothing, as Linux
//! conntrack ignores it (`TCP_CONNTRACK_IGNORE`): it is forwarded and the
//! endpoint answers it with a challenge ACK (RFC 5961 §4), so a spoofed
//! SYN cannot move the mark a blind reset must hit. The pipeline verifies
//! the checksum of every SYN, FIN and RST of a tracked connection before
//! it gets here (`classify`).
//!
//! Resets (RFC 5961 §3.2): one whose sequence number is exactly what the
//! receiver expects (its RCV.NXT, or the sender's own SND.NXT) ends the
//! connection; one elsewhere inside the receiver's window is forwarded
//! without ending anything (the endpoint answers it with a challenge ACK,
//! and a genuine sender then resets exactly); one outside the window is
//! dropped. When nothing is known of the receiver or the sender (an entry
//! installed from the HA peer before it saw a segment), a reset is
//! forwarded as in the window: the endpoint judges it, the entry stays.
//! The state machine (`tcp`) only sees the resets that pass.

use super::key::Dir;
use super::tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// What a TCP segment says, for tracking. Built by the pipeline from the
/// header; UDP and ICMP packets use `Segment::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The raw window field.
    pub win: u16,
    /// Payload bytes (SYN and FIN are counted by `Track`).
    pub len: u32,
    /// The window scale option, read from SYNs only.
    pub wscale: Option<u8>,
}

/// May a SYN restart its side's marks (`Track::on_segment`)? Only while
/// the connection is not synchronized (RFC 9293 §3.5: a SYN in a
/// synchronized state is answered with an ACK, it starts nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Handshake, or a closed entry being reused: a SYN starts its side
    /// afresh.
    Allowed,
    /// Synchronized: a SYN changes no mark.
    Ignored,
}

/// The furthest an acknowledgment may lag behind what the other side
/// sent and still move the marks, at the least (Linux conntrack's
/// `MAXACKWINDOW` floor: 66000 bytes); a larger window of the sender
/// widens it.
const MAX_ACK_LAG: u32 = 66_000;

/// How tracking judged a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not a reset, or a reset that ends the connection.
    Pass,
    /// A reset inside the receiver's window but not where it expects the
    /// next byte: forwarded, the connection kept (RFC 5961 §3.2, the
    /// receiver challenges it).
    RstInWindow,
    /// A reset outside the receiver's window: dropped.
    RstOutOfWindow,
    /// Not a reset, and not one an endpoint of this synchronized
    /// connection would accept (an ACK of data never sent, data outside
    /// the receiver's window, no ACK at all): forwarded for the endpoint
    /// to judge, but it moves neither the marks nor the state nor the
    /// timer, as Linux conntrack ignores what `tcp_in_window` refuses.
    Implausible,
}

/// How the box sees a connection: both directions, or the client's alone
/// (direct server return: the server's marks are never known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    Both,
    ClientOnly,
}

/// `known` bits.
pub(super) const END_SEEN: u8 = 0x01; // << dir
pub(super) const ACK_SEEN: u8 = 0x04; // << dir
pub(super) const SYN_SEEN: u8 = 0x10; // << dir
pub(super) const SCALE_OFFERED: u8 = 0x40; // << dir
/// `known2` bits: `last_ack` is set, and came from the reply side.
pub(super) const LAST_ACK_SEEN: u8 = 0x01;
pub(super) const LAST_ACK_REPLY: u8 = 0x02;

/// RFC 7323 §2.3: a shift above 14 is used as 14.
pub(super) const MAX_WSCALE: u8 = 14;

/// The sequence marks of one connection, both directions (indexed by
/// `Dir as usize`), as the tracking works on them. Stored packed
/// (`super::marks`): 24 bytes beside the entry plus two bytes in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Track {
    /// The highest SEG.SEQ + SEG.LEN each side sent (its SND.NXT).
    pub end: [u32; 2],
    /// The highest SEG.ACK each side sent (its RCV.NXT).
    pub ack: [u32; 2],
    /// Each side's receive window in bytes, scaled (stored as the window
    /// field, the scale applied on loading: a SYN's unscaled window is
    /// kept rounded up to a whole scaled unit).
    pub win: [u32; 2],
    /// Each side's window scale shift, as its SYN offered (at most 14).
    pub wscale: [u8; 2],
    pub(super) known: u8,
    /// `LAST_ACK_SEEN`, `LAST_ACK_REPLY`.
    pub(super) known2: u8,
    /// The ACK number of the latest segment that carried a plausible one
    /// (of either side, `known2` says which, as Linux conntrack's
    /// `last_ack`/`last_dir`): a reset answering that segment carries it
    /// as its sequence number (RFC 9293 §3.10.7: `<SEQ=SEG.ACK><CTL=RST>`).
    pub(super) last_ack: u32,
}

/// What the SYN proxy (`pipeline::synproxy`) and the PROXY header
/// (`pipeline::pheader`) keep of a connection, in a side table beside the
/// marks (`FlowTable::proxy`): 20 bytes, all zero for a connection that
/// has neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct ProxyTrack {
    /// SYN proxy: what to add to the server's sequence numbers to make
    /// them the client's view (the cookie's ISN less the server's), and to
    /// its timestamps. PROXY header: the client's ISN + 1, where it goes.
    pub seq_delta: u32,
    pub ts_delta: u32,
    /// SYN proxy: the client's latest TSval and raw window, for the ACK
    /// the box sends the server in its name.
    pub client_tsval: u32,
    pub client_win: u16,
    /// SYN proxy: the tick (`TICK_MS`, low 16 bits, never 0) the SYN was
    /// last sent to the server again; 0 for never (review S9: one cookie
    /// must not make the box send SYNs at the client's rate).
    pub resent_at: u16,
    /// SYN proxy: the window scale the box announced to the client, and
    /// the one the server announced; when they differ server windows are
    /// rescaled.
    pub proxy_wscale: [u8; 2],
    /// `PROXY_*` and `PP_ACKED` bits.
    pub proxy: u8,
    /// SYN proxy: the parked client segment's slot + 1, 0 for none.
    pub park: u8,
}

const _: () = assert!(core::mem::size_of::<ProxyTrack>() == 20);

// SAFETY: integers and arrays of integers, no padding (20 bytes, asserted).
unsafe impl crate::region::Zeroable for ProxyTrack {}

/// `ProxyTrack::proxy`: the connection's SYN was answered by the box's SYN proxy.
pub const PROXY_ON: u8 = 1;
/// The server has answered: `seq_delta` and `ts_delta` are final (before,
/// they hold the cookie and the box's TSval).
pub const PROXY_OPEN: u8 = 2;
/// Timestamps are in use on both sides.
pub const PROXY_TS: u8 = 4;
/// `EntryFlags::PROXY_HEADER`: the server has acknowledged the PROXY
/// header (`pipeline::pheader`).
pub const PP_ACKED: u8 = 8;

impl Track {
    pub const NEW: Track = Track { end: [0; 2], ack: [0; 2], win: [0; 2], wscale: [0; 2], known: 0, known2: 0, last_ack: 0 };

    #[inline(always)]
    fn has(&self, bit: u8, d: usize) -> bool {
        self.known & (bit << d) != 0
    }

    /// Side `d`'s segment carried ACK number `ack`: the latest one a reset
    /// may answer.
    #[inline]
    fn note_last_ack(&mut self, d: usize, ack: u32) {
        self.last_ack = ack;
        self.known2 = LAST_ACK_SEEN | if d == 1 { LAST_ACK_REPLY } else { 0 };
    }

    /// The ACK number of side `d`'s segment, if that was the latest.
    #[inline]
    fn last_ack_of(&self, d: usize) -> Option<u32> {
        let from = usize::from(self.known2 & LAST_ACK_REPLY != 0);
        (self.known2 & LAST_ACK_SEEN != 0 && from == d).then_some(self.last_ack)
    }

    /// The shift applied to side `d`'s window fields outside SYNs: its
    /// offer when both SYNs offered scaling, none when both SYNs were seen
    /// without, and the largest (liberal) when a SYN was missed (an entry
    /// picked up mid-stream, or installed from the HA peer).
    #[inline]
    pub(super) fn shift(&self, d: usize) -> u8 {
        let both_syns = self.has(SYN_SEEN, 0) && self.has(SYN_SEEN, 1);
        if !both_syns {
            return MAX_WSCALE;
        }
        if self.has(SCALE_OFFERED, 0) && self.has(SCALE_OFFERED, 1) {
            self.wscale.get(d).copied().unwrap_or(0).min(MAX_WSCALE)
        } else {
            0
        }
    }

    /// Accounts a segment from side `dir`. With direct server return the
    /// box sees the client's direction only, so the other side's marks are
    /// never known and resets are judged by the sender's own. `restart`:
    /// whether a SYN may start its side afresh (`Restart`).
    pub fn on_segment(&mut self, dir: Dir, s: &Segment, restart: Restart, sight: Sight) -> Check {
        let d = dir as usize;
        let r = 1 - d;
        if s.flags & TCP_RST != 0 {
            return self.check_rst(d, r, sight, s);
        }
        let syn = s.flags & TCP_SYN != 0;
        let ack = s.flags & TCP_ACK != 0;
        if syn && restart == Restart::Ignored {
            // RFC 5961 §4 / Linux `TCP_CONNTRACK_IGNORE`: forwarded, the
            // endpoint challenges it; nothing here moves.
            return Check::Pass;
        }
        // A server answering the client's SYN from a stale TIME-WAIT (RFC
        // 9293 §3.10.7.3): its ACK number, implausible as it is, is what
        // the client's reset carries.
        if ack && !syn && self.has(SYN_SEEN, r) && !self.has(SYN_SEEN, d) {
            self.note_last_ack(d, s.ack);
        }
        // Was the segment's ACK checked against what the other side sent?
        let checked = self.has(END_SEEN, r);
        let seg_end = s.seq.wrapping_add(s.len).wrapping_add(u32::from(syn)).wrapping_add(u32::from(s.flags & TCP_FIN != 0));
        if syn {
            // A SYN (re)starts this side: its ISN, its scale offer.
            self.known &= !((END_SEEN | ACK_SEEN | SCALE_OFFERED) << d);
            self.known |= (SYN_SEEN | END_SEEN) << d;
            if let Some(ws) = s.wscale {
                self.known |= SCALE_OFFERED << d;
                set(&mut self.wscale, d, ws.min(MAX_WSCALE));
            }
            set(&mut self.end, d, seg_end);
            if ack {
                self.known |= ACK_SEEN << d;
                set(&mut self.ack, d, s.ack);
                // RFC 7323 §2.2: the window of a SYN is never scaled.
                set(&mut self.win, d, u32::from(s.win));
            }
            return Check::Pass;
        }
        if !self.plausible(d, r, s, seg_end, sight) {
            // Seen here from the handshake on, the marks are sure: what
            // misses them changes nothing. Picked up mid-stream (from the
            // HA peer), they may be old: the state follows the endpoints.
            return if self.marks_sure(sight) { Check::Implausible } else { Check::Pass };
        }
        // With the client's side alone, its mark moves only with segments
        // that start at or before it (no gap): nothing bounds it from the
        // other side, so a segment far ahead must not drag it there.
        let contiguous = sight == Sight::Both || !after(s.seq, get(&self.end, d));
        if !self.has(END_SEEN, d) || (after(seg_end, get(&self.end, d)) && contiguous) {
            set(&mut self.end, d, seg_end);
            self.known |= END_SEEN << d;
        }
        if ack {
            // Plausible: a reset answering this segment may carry its ACK
            // number (RFC 9293 §3.10.7).
            if checked {
                self.note_last_ack(d, s.ack);
            }
            if !self.has(ACK_SEEN, d) || !after(get(&self.ack, d), s.ack) {
                set(&mut self.ack, d, s.ack);
                let shift = self.shift(d);
                set(&mut self.win, d, u32::from(s.win) << shift);
                self.known |= ACK_SEEN << d;
            }
        }
        Check::Pass
    }

    /// Whether a non-SYN segment from `d` is one the endpoints would
    /// accept (a simplified `tcp_in_window`): in a synchronized connection
    /// it carries an ACK (RFC 9293 §3.10.7.4); its ACK acknowledges
    /// nothing the other side never sent nor lags more than a window
    /// behind it (Linux's MAXACKWINDOW); its data ends within the
    /// receiver's window and not more than a window behind what the
    /// receiver acknowledged. With the client's side alone, its data must
    /// fall within `MAX_ACK_LAG` of the client's mark.
    fn plausible(&self, d: usize, r: usize, s: &Segment, seg_end: u32, sight: Sight) -> bool {
        let ack = s.flags & TCP_ACK != 0;
        if !ack && self.marks_sure(sight) {
            return false;
        }
        if ack && self.has(END_SEEN, r) {
            let sent = get(&self.end, r);
            let lag = get(&self.win, d).max(MAX_ACK_LAG);
            if after(s.ack, sent) || after(sent.wrapping_sub(lag), s.ack) {
                return false;
            }
        }
        if self.has(ACK_SEEN, r) {
            let (rcv_nxt, win) = (get(&self.ack, r), get(&self.win, r).max(1));
            if after(seg_end, rcv_nxt.wrapping_add(win)) || after(rcv_nxt.wrapping_sub(win.max(MAX_ACK_LAG)), seg_end) {
                return false;
            }
        }
        if sight == Sight::ClientOnly && self.has(END_SEEN, d) {
            let end = get(&self.end, d);
            if after(seg_end, end.wrapping_add(MAX_ACK_LAG)) || after(end.wrapping_sub(MAX_ACK_LAG), seg_end) {
                return false;
            }
        }
        true
    }

    /// The marks were learned here from the handshake on: both SYNs seen,
    /// or with the client's side alone its SYN.
    #[inline]
    fn marks_sure(&self, sight: Sight) -> bool {
        match sight {
            Sight::Both => self.handshake_seen(),
            Sight::ClientOnly => self.has(SYN_SEEN, 0),
        }
    }

    /// Both SYNs were seen here: the marks were learned from the
    /// handshake on, not picked up mid-stream (an entry installed from the
    /// HA peer).
    #[inline]
    pub fn handshake_seen(&self) -> bool {
        self.has(SYN_SEEN, 0) && self.has(SYN_SEEN, 1)
    }

    /// RFC 5961 §3.2 from the middle: `d` resets, `r` receives.
    fn check_rst(&self, d: usize, r: usize, sight: Sight, s: &Segment) -> Check {
        if !self.has(SYN_SEEN, 0) && !self.has(SYN_SEEN, 1) {
            return self.check_rst_midstream(r, s);
        }
        // The sender's own next byte, or the answer to the receiver's
        // latest segment (RFC 9293 §3.10.7: a reset answering an
        // unacceptable segment takes its ACK number; a SYN-SENT client
        // resets a stale TIME-WAIT's ACK so): neither is a blind guess.
        let answers = self.last_ack_of(r) == Some(s.seq);
        let exact_own = (self.has(END_SEEN, d) && s.seq == get(&self.end, d)) || answers;
        if self.has(ACK_SEEN, r) {
            let rcv_nxt = get(&self.ack, r);
            if s.seq == rcv_nxt || exact_own {
                return Check::Pass;
            }
            let off = s.seq.wrapping_sub(rcv_nxt);
            return if off < get(&self.win, r).max(1) { Check::RstInWindow } else { Check::RstOutOfWindow };
        }
        // The receiver has acknowledged nothing yet (its SYN-ACK not seen:
        // a server refusing the SYN, RFC 9293 §3.10.7.3): the reset is
        // acceptable when it acknowledges the SYN.
        if s.flags & TCP_ACK != 0 && self.has(END_SEEN, r) {
            return if s.ack == get(&self.end, r) { Check::Pass } else { Check::RstOutOfWindow };
        }
        if self.has(END_SEEN, d) {
            // With the client's side alone its mark may lag (a segment
            // seen out of order does not move it): a reset off it is
            // forwarded, never taken as exact.
            return match (exact_own, sight) {
                (true, _) => Check::Pass,
                (false, Sight::Both) => Check::RstOutOfWindow,
                (false, Sight::ClientOnly) => Check::RstInWindow,
            };
        }
        // Nothing known (an entry installed from the HA peer, no segment
        // seen since): no proof the sender is a party. Forwarded, so a
        // genuine reset still reaches the endpoint, which judges it; the
        // entry stays until the endpoints' own segments end it.
        Check::RstInWindow
    }

    /// A reset on an entry picked up mid-stream (installed from the HA
    /// peer): its marks come from whatever segments passed since, which a
    /// spoofer may have sent, so only the receiver's own RCV.NXT makes a
    /// reset exact; the rest is forwarded for the endpoint to judge
    /// (RFC 5961 §3.2), never dropped on marks that may be wrong.
    fn check_rst_midstream(&self, r: usize, s: &Segment) -> Check {
        if self.has(ACK_SEEN, r) && s.seq == get(&self.ack, r) {
            Check::Pass
        } else {
            Check::RstInWindow
        }
    }

    /// Forgets the marks (the entry is reused by a new SYN: RFC 9293
    /// §3.6.1 port reuse).
    pub fn reset_marks(&mut self) {
        *self = Track::NEW;
    }

    /// State sync (`ctl::events::TcpMarks`): which marks are known, an
    /// opaque byte for `adopt`. `adopt` sets the marks of an entry
    /// installed from the HA peer to the peer's, so that its resets are
    /// judged as there rather than from nothing known; `last_ack` stays (the
    /// SYN proxy's state is `ProxyTrack`'s). Windows are kept at the
    /// liberal scale of marks picked up mid-stream (`super::marks`): never
    /// narrower than the peer's, less than 16 KiB wider.
    pub fn known_marks(&self) -> u8 {
        self.known
    }
    pub fn adopt(&mut self, end: [u32; 2], ack: [u32; 2], win: [u32; 2], wscale: [u8; 2], known: u8) {
        // Up to `refresh_s` old: hints, judged as marks picked up
        // mid-stream (`check_rst_midstream`, state never frozen by them),
        // not as a handshake seen here.
        let known = known & !(SYN_SEEN | (SYN_SEEN << 1));
        (self.end, self.ack, self.win, self.known) = (end, ack, win, known);
        self.wscale = wscale.map(|w| w.min(MAX_WSCALE));
    }
}

/// `a` is after `b` in sequence space (RFC 9293 §3.4, modulo 2^32).
#[inline(always)]
pub fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[inline(always)]
fn get<T: Copy + Default>(a: &[T; 2], i: usize) -> T {
    a.get(i).copied().unwrap_or_default()
}

#[inline(always)]
fn set<T>(a: &mut [T; 2], i: usize, v: T) {
    if let Some(x) = a.get_mut(i) {
        *x = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: Dir = Dir::Original;
    const R: Dir = Dir::Reply;

    impl Track {
        /// `on_segment` as in a handshake (a SYN may restart its side).
        fn seg_in(&mut self, d: Dir, s: &Segment) -> Check {
            self.on_segment(d, s, Restart::Allowed, Sight::Both)
        }
    }

    fn seg(flags: u8, seq: u32, ack: u32, win: u16, len: u32) -> Segment {
        Segment { flags, seq, ack, win, len, wscale: None }
    }

    /// Client ISN 1000, server ISN 5000, windows 1000 and 2000 (scale 2 on
    /// both sides), 10 bytes each way.
    fn established() -> Track {
        let mut t = Track::NEW;
        let mut syn = seg(TCP_SYN, 1000, 0, 65535, 0);
        syn.wscale = Some(2);
        assert_eq!(t.seg_in(O, &syn), Check::Pass);
        let mut synack = seg(TCP_SYN | TCP_ACK, 5000, 1001, 65535, 0);
        synack.wscale = Some(2);
        t.seg_in(R, &synack);
        t.seg_in(O, &seg(TCP_ACK, 1001, 5001, 1000, 0));
        t.seg_in(O, &seg(TCP_ACK, 1001, 5001, 1000, 10));
        t.seg_in(R, &seg(TCP_ACK, 5001, 1011, 2000, 10));
        t.seg_in(O, &seg(TCP_ACK, 1011, 5011, 1000, 0));
        t
    }

    #[test]
    fn marks_follow_both_sides() {
        let t = established();
        assert_eq!(t.end, [1011, 5011]);
        assert_eq!(t.ack, [5011, 1011]);
        assert_eq!(t.win, [4000, 8000]);
    }

    #[test]
    fn resets_are_judged_against_the_receiver() {
        let t = established();
        // Exactly the server's RCV.NXT.
        assert_eq!(t.check_rst(0, 1, Sight::Both, &seg(TCP_RST, 1011, 0, 0, 0)), Check::Pass);
        // Inside its 8000-byte window: challenged.
        assert_eq!(t.check_rst(0, 1, Sight::Both, &seg(TCP_RST, 1011 + 7999, 0, 0, 0)), Check::RstInWindow);
        assert_eq!(t.check_rst(0, 1, Sight::Both, &seg(TCP_RST, 1011 + 8000, 0, 0, 0)), Check::RstOutOfWindow);
        assert_eq!(t.check_rst(0, 1, Sight::Both, &seg(TCP_RST, 1010, 0, 0, 0)), Check::RstOutOfWindow);
        // The server resetting at the client's RCV.NXT, or at its own
        // SND.NXT.
        assert_eq!(t.check_rst(1, 0, Sight::Both, &seg(TCP_RST, 5011, 0, 0, 0)), Check::Pass);
        assert_eq!(t.check_rst(1, 0, Sight::Both, &seg(TCP_RST | TCP_ACK, 5011 + 4000, 0, 0, 0)), Check::RstOutOfWindow);
    }

    #[test]
    fn implausible_segments_do_not_move_the_marks() {
        let mut t = established();
        let before = t;
        // Acknowledges bytes the server never sent.
        t.seg_in(O, &seg(TCP_ACK, 1011, 9_000_000, 1000, 0));
        // Data far past the server's window.
        t.seg_in(O, &seg(TCP_ACK, 1011 + 100_000, 5011, 1000, 10));
        assert_eq!(t, before);
        // So a reset there still misses.
        assert_eq!(t.check_rst(0, 1, Sight::Both, &seg(TCP_RST, 1011 + 100_010, 0, 0, 0)), Check::RstOutOfWindow);
    }

    #[test]
    fn refusing_a_syn_must_acknowledge_it() {
        let mut t = Track::NEW;
        t.seg_in(O, &seg(TCP_SYN, 1000, 0, 65535, 0));
        assert_eq!(t.seg_in(R, &seg(TCP_RST | TCP_ACK, 0, 1001, 0, 0)), Check::Pass);
        assert_eq!(t.seg_in(R, &seg(TCP_RST | TCP_ACK, 0, 77, 0, 0)), Check::RstOutOfWindow);
        // The client aborting its own SYN.
        assert_eq!(t.seg_in(O, &seg(TCP_RST, 1001, 0, 0, 0)), Check::Pass);
        assert_eq!(t.seg_in(O, &seg(TCP_RST, 4242, 0, 0, 0)), Check::RstOutOfWindow);
    }

    /// A client in SYN-SENT whose SYN met a stale TIME-WAIT on the server
    /// gets an ACK from the old connection and resets it with that ACK
    /// number: the reset must pass, or the server keeps its TIME-WAIT.
    #[test]
    fn a_reset_answering_the_last_segment_passes() {
        let mut t = Track::NEW;
        t.seg_in(O, &seg(TCP_SYN, 1000, 0, 65535, 0));
        // The server's stale ACK, acknowledging the old connection.
        t.seg_in(R, &seg(TCP_ACK, 777_000, 55_555, 502, 0));
        assert_eq!(t.seg_in(O, &seg(TCP_RST, 55_555, 0, 0, 0)), Check::Pass);
        assert_eq!(t.seg_in(O, &seg(TCP_RST, 55_556, 0, 0, 0)), Check::RstOutOfWindow);
    }

    #[test]
    fn unscaled_when_either_syn_did_not_offer() {
        let mut t = Track::NEW;
        let mut syn = seg(TCP_SYN, 1, 0, 100, 0);
        syn.wscale = Some(7);
        t.seg_in(O, &syn);
        t.seg_in(R, &seg(TCP_SYN | TCP_ACK, 9, 2, 100, 0));
        t.seg_in(O, &seg(TCP_ACK, 2, 10, 100, 0));
        assert_eq!(t.win[0], 100);
    }

    /// An entry installed from the HA peer knows nothing: a reset is
    /// forwarded for the endpoint to judge, never trusted to end the entry
    /// (review S1); the receiver's own RCV.NXT, once seen, is exact.
    #[test]
    fn nothing_known_trusts_no_reset() {
        let t = Track::NEW;
        assert_eq!(t.check_rst(0, 1, Sight::Both, &seg(TCP_RST, 123, 0, 0, 0)), Check::RstInWindow);
        // Picked up mid-stream: liberal scale.
        let mut t = Track::NEW;
        t.seg_in(R, &seg(TCP_ACK, 5000, 1000, 10, 0));
        assert_eq!(t.win[1], 10 << 14);
        // The spoofer's own segment seeds the client's mark: its reset
        // there is still not exact.
        t.seg_in(O, &seg(TCP_ACK, 777, 5000, 10, 100));
        assert_eq!(t.seg_in(O, &seg(TCP_RST, 877, 0, 0, 0)), Check::RstInWindow);
        // At the server's RCV.NXT (what it acknowledged): exact.
        assert_eq!(t.seg_in(O, &seg(TCP_RST, 1000, 0, 0, 0)), Check::Pass);
    }

    /// Review S1: SYN, then RST at the SYN's seq + 1, on an established
    /// connection. The SYN moves no mark (Linux `TCP_CONNTRACK_IGNORE`),
    /// so the reset is judged against the real marks.
    #[test]
    fn a_syn_in_a_synchronized_state_moves_nothing() {
        let mut t = established();
        let before = t;
        let mut syn = seg(TCP_SYN, 3_000_000_000, 0, 65535, 0);
        syn.wscale = Some(14);
        assert_eq!(t.on_segment(O, &syn, Restart::Ignored, Sight::Both), Check::Pass);
        assert_eq!(t, before);
        assert_eq!(t.seg_in(O, &seg(TCP_RST, 3_000_000_001, 0, 0, 0)), Check::RstOutOfWindow);
        // The same SYN where a restart is allowed (SYN_SENT) does move it.
        let mut fresh = Track::NEW;
        fresh.on_segment(O, &seg(TCP_SYN, 1000, 0, 100, 0), Restart::Allowed, Sight::Both);
        fresh.on_segment(O, &seg(TCP_SYN, 2000, 0, 100, 0), Restart::Allowed, Sight::Both);
        assert_eq!(fresh.end[0], 2001);
    }

    /// Review (second round) H1: what no endpoint would accept moves
    /// nothing, the state included: a blind FIN (far off the window, far
    /// behind it, or without an ACK) or an ACK of data never sent.
    #[test]
    fn what_no_endpoint_would_accept_changes_nothing() {
        let mut t = established();
        let before = t;
        assert_eq!(t.seg_in(O, &seg(TCP_FIN | TCP_ACK, 1011 + 1_000_000, 5011, 1000, 0)), Check::Implausible);
        assert_eq!(t.seg_in(O, &seg(TCP_FIN | TCP_ACK, 1011u32.wrapping_sub(1_000_000), 5011, 1000, 0)), Check::Implausible);
        assert_eq!(t.seg_in(O, &seg(TCP_FIN, 1011, 0, 1000, 0)), Check::Implausible);
        assert_eq!(t.seg_in(O, &seg(TCP_ACK, 1011, 9_000_000, 1000, 0)), Check::Implausible);
        assert_eq!(t, before);
        assert_eq!(t.seg_in(O, &seg(TCP_FIN | TCP_ACK, 1011, 5011, 1000, 0)), Check::Pass);
    }

    /// Review (second round) H2: with the client's side alone, a segment
    /// after a gap does not drag the client's mark there (so a RST at its
    /// end is no exact reset), and data far from the mark is implausible.
    #[test]
    fn with_the_client_side_alone_a_gap_does_not_drag_the_mark() {
        let mut t = Track::NEW;
        let mut c = |s: Segment| t.on_segment(O, &s, Restart::Allowed, Sight::ClientOnly);
        c(seg(TCP_SYN, 1000, 0, 100, 0));
        assert_eq!(c(seg(TCP_ACK, 1001, 5001, 100, 10)), Check::Pass);
        assert_eq!(c(seg(TCP_ACK, 1011 + 0x8000_0000, 5001, 100, 1)), Check::Implausible);
        assert_eq!(c(seg(TCP_ACK, 1011 + 100, 5001, 100, 1)), Check::Pass, "a gap inside the tolerance: forwarded");
        assert_eq!(c(seg(TCP_RST, 1011 + 101, 0, 0, 0)), Check::RstInWindow, "the mark did not move: not exact");
        assert_eq!(c(seg(TCP_FIN | TCP_ACK, 1011 + 0x4000_0000, 5001, 100, 0)), Check::Implausible, "a blind FIN");
        assert_eq!(c(seg(TCP_RST, 1011, 0, 0, 0)), Check::Pass, "at the client's own next byte");
    }

    /// An implausible segment's ACK number is not what a reset may answer:
    /// else a spoofed ACK from one side sets the value the other side's
    /// reset must hit (review S1).
    #[test]
    fn implausible_acks_are_not_answers() {
        let mut t = established();
        // Far behind what the server sent (more than a window).
        t.seg_in(O, &seg(TCP_ACK, 1011, 5011u32.wrapping_sub(1_000_000), 1000, 0));
        assert_eq!(t.seg_in(R, &seg(TCP_RST, 5011u32.wrapping_sub(1_000_000), 0, 0, 0)), Check::RstOutOfWindow);
        // Past it.
        t.seg_in(O, &seg(TCP_ACK, 1011, 9_999_999, 1000, 0));
        assert_eq!(t.seg_in(R, &seg(TCP_RST, 9_999_999, 0, 0, 0)), Check::RstOutOfWindow);
        // A plausible one is.
        t.seg_in(O, &seg(TCP_ACK, 1011, 5005, 1000, 0));
        assert_eq!(t.seg_in(R, &seg(TCP_RST, 5005, 0, 0, 0)), Check::Pass);
    }

    #[test]
    fn sequence_space_wraps() {
        assert!(after(5, u32::MAX - 5));
        assert!(!after(u32::MAX - 5, 5));
        let mut t = Track::NEW;
        t.seg_in(O, &seg(TCP_SYN, u32::MAX, 0, 1000, 0));
        assert_eq!(t.end[0], 0);
    }
}
