//! How a connection's tracking is stored: `Marks`, 24 bytes beside the
//! entry (`FlowTable`'s `tracks`), and two bytes in the entry itself
//! (`Flow::track_bits`: which marks are known, both window scales). The
//! tracking works on them unpacked (`Track`), a copy made per segment.
//!
//! Windows are kept as the 16-bit field a segment carries, the side's
//! scale applied on loading (RFC 7323 §2.3). A SYN's window, which is
//! never scaled, is kept rounded up to a whole scaled unit: a little
//! more liberal than the endpoint until the side's next ACK.

use super::track::{Track, MAX_WSCALE, SCALE_OFFERED};

/// A connection's sequence marks as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Marks {
    /// Each side's highest SEG.SEQ + SEG.LEN (its SND.NXT).
    pub end: [u32; 2],
    /// Each side's highest SEG.ACK (its RCV.NXT).
    pub ack: [u32; 2],
    /// `Track::last_ack`.
    pub last_ack: u32,
    /// Each side's window field, unscaled.
    pub win: [u16; 2],
}

const _: () = assert!(core::mem::size_of::<Marks>() == 24);

/// The two bytes of a connection's tracking that live in its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrackBits {
    /// `Track::known`'s first six bits (`END_SEEN`, `ACK_SEEN`,
    /// `SYN_SEEN`), `Track::known2` in the top two.
    pub known: u8,
    /// Each side's window scale + 1 in a nibble (side 0 low), 0 when its
    /// SYN offered none.
    pub wscale: u8,
}

impl Marks {
    pub const NEW: Marks = Marks { end: [0; 2], ack: [0; 2], last_ack: 0, win: [0; 2] };

    /// The tracking these marks and `bits` hold.
    #[inline]
    pub fn load(&self, bits: TrackBits) -> Track {
        let mut t = Track { end: self.end, ack: self.ack, win: [0; 2], wscale: [0; 2], known: bits.known & 0x3f, known2: bits.known >> 6, last_ack: self.last_ack };
        for (d, ws) in t.wscale.iter_mut().enumerate() {
            let nib = (bits.wscale >> (4 * d)) & 0x0f;
            if nib != 0 {
                t.known |= SCALE_OFFERED << d;
                *ws = (nib - 1).min(MAX_WSCALE);
            }
        }
        for d in 0..2 {
            let shift = t.shift(d);
            if let (Some(w), Some(raw)) = (t.win.get_mut(d), self.win.get(d)) {
                *w = u32::from(*raw) << shift;
            }
        }
        t
    }

    /// Stores `t`: its marks, and the bits for the entry.
    #[inline]
    pub fn store(t: &Track) -> (Marks, TrackBits) {
        let mut m = Marks { end: t.end, ack: t.ack, last_ack: t.last_ack, win: [0; 2] };
        let mut bits = TrackBits { known: (t.known & 0x3f) | (t.known2 << 6), wscale: 0 };
        for d in 0..2 {
            if t.known & (SCALE_OFFERED << d) != 0 {
                bits.wscale |= (t.wscale.get(d).copied().unwrap_or(0).min(MAX_WSCALE) + 1) << (4 * d);
            }
        }
        for (d, raw) in m.win.iter_mut().enumerate() {
            let shift = u32::from(t.shift(d));
            let bytes = u64::from(t.win.get(d).copied().unwrap_or(0));
            // Rounded up: never narrower than what was seen (shifts, not a
            // division: this runs for every TCP segment).
            *raw = ((bytes + (1u64 << shift) - 1) >> shift).min(u64::from(u16::MAX)) as u16;
        }
        (m, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::super::key::Dir;
    use super::super::track::{Restart, Segment, Sight};
    use super::*;

    fn seg(flags: u8, seq: u32, ack: u32, win: u16, len: u32, wscale: Option<u8>) -> Segment {
        Segment { flags, seq, ack, win, len, wscale }
    }

    /// Stored and loaded after every segment of a connection, the
    /// tracking is what it was (windows of ACKs exactly, a SYN-ACK's
    /// rounded up to a scaled unit).
    #[test]
    fn a_connection_survives_storing_after_each_segment() {
        let (syn, synack, ack) = (0x02, 0x12, 0x10);
        let steps = [
            (Dir::Original, seg(syn, 1000, 0, 65535, 0, Some(7))),
            (Dir::Reply, seg(synack, 5000, 1001, 65000, 0, Some(3))),
            (Dir::Original, seg(ack, 1001, 5001, 500, 100, None)),
            (Dir::Reply, seg(ack, 5001, 1101, 4000, 10, None)),
            (Dir::Original, seg(ack, 1101, 5011, 501, 0, None)),
        ];
        let (mut m, mut bits) = (Marks::NEW, TrackBits::default());
        let mut plain = Track::NEW;
        for (i, (d, s)) in steps.iter().enumerate() {
            let mut t = m.load(bits);
            t.on_segment(*d, s, Restart::Allowed, Sight::Both);
            plain.on_segment(*d, s, Restart::Allowed, Sight::Both);
            (m, bits) = Marks::store(&t);
            let back = m.load(bits);
            assert_eq!((back.end, back.ack, back.wscale, back.known, back.known2, back.last_ack), (plain.end, plain.ack, plain.wscale, plain.known, plain.known2, plain.last_ack), "step {i}");
            if i == 1 {
                // The SYN-ACK's 65000 bytes, unscaled, kept as 8125 << 3.
                assert_eq!(back.win[1], 65000);
            }
        }
        let t = m.load(bits);
        assert_eq!(t.win, [501 << 7, 4000 << 3]);
        assert_eq!(t.win, plain.win);
        // A SYN-ACK window that is not a whole unit rounds up.
        let mut t = Track::NEW;
        t.on_segment(Dir::Original, &seg(syn, 1, 0, 100, 0, Some(3)), Restart::Allowed, Sight::Both);
        t.on_segment(Dir::Reply, &seg(synack, 9, 2, 1001, 0, Some(3)), Restart::Allowed, Sight::Both);
        let (m, bits) = Marks::store(&t);
        assert_eq!(m.load(bits).win[1], 1008);
        // A shift offered above 14 is used as 14.
        let mut t = Track::NEW;
        t.on_segment(Dir::Original, &seg(syn, 1, 0, 100, 0, Some(15)), Restart::Allowed, Sight::Both);
        let (m, bits) = Marks::store(&t);
        assert_eq!(m.load(bits).wscale[0], 14);
    }
}
