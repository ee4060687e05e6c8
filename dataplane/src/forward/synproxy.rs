//! The SYN proxy's packet work, as pure functions over bytes: SYN cookies
//! (RFC 4987 §3.6), the segments the box writes itself (the cookie SYN-ACK
//! to the client, the SYN and the ACK to the server), and the sequence,
//! timestamp, SACK and window translation of a proxied connection.
//!
//! A cookie is the ISN of the box's SYN-ACK (after Linux's
//! `secure_tcp_syn_cookie`): the top 8 bits a 64-second counter, the low
//! 24 a MAC (SipHash-2-4 under a per-boot key) of the connection's
//! addresses, ports, client ISN and counter plus an index into
//! `MSS_TABLE`. The client's ACK returns it +1; a cookie is good for two
//! counter periods. When the client's SYN carried timestamps (RFC 7323),
//! the box's TSval carries the rest of the SYN's options in its low 6 bits
//! (window scale, SACK permitted), which the client echoes in TSecr;
//! without timestamps, window scaling and SACK are lost, as with Linux's
//! syncookies.

use super::nat::{get16, get32, put16, put32};
use crate::siphash::{siphash24_u32x5, Key};
use crate::wire::checksum;
use crate::wire::ipv4::protocol;
use crate::wire::tcp::{self, TcpOptions};

/// The MSS values a cookie can carry (Linux's `msstab`): the largest not
/// above the client's is kept.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// Ticks (100 ms) per cookie counter period: 64 s.
pub const COOKIE_PERIOD_TICKS: u32 = 640;

/// Counter periods a cookie stays good for (Linux: `MAX_SYNCOOKIE_AGE`).
const COOKIE_AGE: u32 = 2;

/// Low TSval bits that carry options (Linux: `TS_OPT_MASK`).
const TS_OPT_BITS: u32 = 0x3f;
const TS_NO_WSCALE: u32 = 0x0f;
const TS_SACK: u32 = 0x10;

/// What identifies the connection a cookie is for: the client's SYN as
/// sent (source = client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
}

/// The cookie's MAC: the low 24 bits of SipHash-2-4 (`crate::siphash`,
/// Linux's `cookie_hash` since 4.13) over the addresses, ports, client ISN
/// and counter, under the per-boot cookie key (`WorkerConfig::cookie_key`,
/// which keys nothing else): each SYN hands its sender 24 bits of output
/// for inputs it chose, and a PRF's outputs tell nothing of its key.
fn hash24(key: &Key, t: &Tuple, count: u32, client_isn: u32) -> u32 {
    let m = [t.src, t.dst, u32::from(t.sport) << 16 | u32::from(t.dport), client_isn, count];
    (siphash24_u32x5(key, m) as u32) & 0x00ff_ffff
}

/// The cookie counter at tick `now`.
#[inline]
pub fn counter(now: u32) -> u32 {
    now / COOKIE_PERIOD_TICKS
}

/// The index in `MSS_TABLE` for a client MSS (536 when it gave none,
/// RFC 9293 §3.7.1).
pub fn mss_index(mss: Option<u16>) -> u8 {
    let m = mss.unwrap_or(536);
    MSS_TABLE.iter().rposition(|t| *t <= m).unwrap_or(0) as u8
}

/// The cookie for a SYN of `t` with ISN `client_isn` at counter `count`.
pub fn make(key: &Key, t: &Tuple, client_isn: u32, count: u32, mss_idx: u8) -> u32 {
    (count & 0xff) << 24 | (hash24(key, t, count, client_isn).wrapping_add(u32::from(mss_idx)) & 0x00ff_ffff)
}

/// Checks the cookie an ACK returns (its ACK number less one, with the
/// client ISN its sequence number less one) at counter `now_count`:
/// the MSS index it carries when it is one the box made in the last
/// periods.
pub fn check(key: &Key, t: &Tuple, client_isn: u32, cookie: u32, now_count: u32) -> Option<u8> {
    (0..COOKIE_AGE).find_map(|age| {
        let count = now_count.checked_sub(age)?;
        if count & 0xff != cookie >> 24 {
            return None;
        }
        let idx = (cookie & 0x00ff_ffff).wrapping_sub(hash24(key, t, count, client_isn)) & 0x00ff_ffff;
        (idx < MSS_TABLE.len() as u32).then_some(idx as u8)
    })
}

/// The box's TSval in a cookie SYN-ACK: its clock in ms with the SYN's
/// window scale and SACK permitted in the low 6 bits.
pub fn encode_ts(now_ms: u32, wscale: Option<u8>, sack: bool) -> u32 {
    let ws = wscale.map_or(TS_NO_WSCALE, |w| u32::from(w.min(14)));
    (now_ms & !TS_OPT_BITS) | ws | if sack { TS_SACK } else { 0 }
}

/// The options a cookie's TSval carried back (TSecr): (window scale, SACK).
pub fn decode_ts(tsecr: u32) -> (Option<u8>, bool) {
    let ws = tsecr & 0x0f;
    ((ws != TS_NO_WSCALE && ws <= 14).then_some(ws as u8), tsecr & TS_SACK != 0)
}

/// A TCP segment the box writes itself, with its IPv4 header (20 bytes,
/// DF set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOut {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    pub ttl: u8,
    /// A SYN's options (`TcpOptions::emit_syn`), or, when `syn` is false,
    /// the timestamps option alone (NOP, NOP, TS) when it has one.
    pub opts: TcpOptions,
    pub syn: bool,
}

impl TcpOut {
    fn opts_len(&self) -> usize {
        if self.syn {
            let mut b = [0u8; 20];
            self.opts.emit_syn(&mut b).unwrap_or(0)
        } else if self.opts.timestamp.is_some() {
            12
        } else {
            0
        }
    }

    /// The frame length with the IPv4 header at `l3`.
    pub fn frame_len(&self, l3: usize) -> usize {
        l3 + 20 + 20 + self.opts_len()
    }

    /// Writes the IPv4 and TCP headers at `frame[l3..]` (the Ethernet
    /// header is the caller's), checksums filled. None when the frame is
    /// shorter than `frame_len(l3)`.
    pub fn write(&self, frame: &mut [u8], l3: usize) -> Option<()> {
        let olen = self.opts_len();
        let tlen = 20 + olen;
        let ip = frame.get_mut(l3..l3 + 20 + tlen)?;
        let (iph, seg) = ip.split_at_mut(20);
        iph.fill(0);
        iph.copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, self.ttl, protocol::TCP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        put16(iph, 2, (20 + tlen) as u16);
        put32(iph, 12, self.src);
        put32(iph, 16, self.dst);
        let c = checksum::checksum(iph);
        put16(iph, 10, c);
        seg.fill(0);
        put16(seg, 0, self.sport);
        put16(seg, 2, self.dport);
        put32(seg, 4, self.seq);
        put32(seg, 8, self.ack);
        *seg.get_mut(12)? = ((tlen / 4) as u8) << 4;
        *seg.get_mut(13)? = self.flags;
        put16(seg, 14, self.win);
        let opts = seg.get_mut(20..)?;
        if self.syn {
            self.opts.emit_syn(opts)?;
        } else if let Some((val, ecr)) = self.opts.timestamp {
            opts.get_mut(..2)?.copy_from_slice(&[tcp::option::NOP, tcp::option::NOP]);
            opts.get_mut(2..4)?.copy_from_slice(&[tcp::option::TIMESTAMP, 10]);
            put32(opts, 4, val);
            put32(opts, 8, ecr);
        }
        let ps = checksum::pseudo_header(self.src.into(), self.dst.into(), protocol::TCP, tlen as u16);
        let c = !checksum::fold(checksum::sum(seg, ps));
        put16(seg, 16, c);
        Some(())
    }
}

/// How a proxied connection's segments change on their way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    /// Server sequence numbers less this are the client's view.
    pub seq: u32,
    /// Server timestamps less this are the client's view.
    pub ts: u32,
    /// Server windows are scaled by `from` and the client reads them by
    /// `to`.
    pub wscale_from: u8,
    pub wscale_to: u8,
}

/// A client segment (`seg`: the TCP header and payload) to the server: its
/// ACK number, TSecr and SACK blocks move into the server's sequence space
/// (+ `s.seq`, + `s.ts`). The checksum is updated (RFC 1624).
pub fn to_server(seg: &mut [u8], s: &Shift) {
    let mut c = get16(seg, 16);
    if seg.get(13).is_some_and(|f| f & tcp::flags::ACK != 0) {
        let old = get32(seg, 8);
        let new = old.wrapping_add(s.seq);
        put32(seg, 8, new);
        c = checksum::update32(c, old, new);
    }
    let hl = seg.get(12).map_or(20, |b| usize::from(b >> 4) * 4).max(20);
    walk_options(seg, hl, |seg, kind, at, len| {
        match kind {
            // TSecr echoes the box's clock: the server's.
            tcp::option::TIMESTAMP if len == 10 => {
                let old = get32(seg, at + 6);
                let new = old.wrapping_add(s.ts);
                put32(seg, at + 6, new);
                c = checksum::update32(c, old, new);
            }
            // SACK blocks (RFC 2018) name server sequence numbers.
            tcp::option::SACK if len >= 10 && (len - 2) % 8 == 0 => {
                let mut p = at + 2;
                while p + 4 <= at + len {
                    let old = get32(seg, p);
                    let new = old.wrapping_add(s.seq);
                    put32(seg, p, new);
                    c = checksum::update32(c, old, new);
                    p += 4;
                }
            }
            _ => {}
        }
    });
    put16(seg, 16, c);
}

/// A server segment to the client: its sequence number and TSval move into
/// the client's view (- `s.seq`, - `s.ts`), its window is rescaled. The
/// checksum is updated (RFC 1624).
pub fn to_client(seg: &mut [u8], s: &Shift) {
    let mut c = get16(seg, 16);
    let old = get32(seg, 4);
    let new = old.wrapping_sub(s.seq);
    put32(seg, 4, new);
    c = checksum::update32(c, old, new);
    if s.wscale_from != s.wscale_to {
        let old = get16(seg, 14);
        let bytes = u64::from(old) << s.wscale_from;
        let new = (bytes >> s.wscale_to).min(0xffff) as u16;
        put16(seg, 14, new);
        c = checksum::update16(c, old, new);
    }
    let hl = seg.get(12).map_or(20, |b| usize::from(b >> 4) * 4).max(20);
    walk_options(seg, hl, |seg, kind, at, len| {
        if kind == tcp::option::TIMESTAMP && len == 10 {
            let old = get32(seg, at + 2);
            let new = old.wrapping_sub(s.ts);
            put32(seg, at + 2, new);
            c = checksum::update32(c, old, new);
        }
    });
    put16(seg, 16, c);
}

/// Calls `f(seg, kind, offset, len)` for each option of the header
/// (`hl` bytes) whose bytes are all within it.
pub(super) fn walk_options(seg: &mut [u8], hl: usize, mut f: impl FnMut(&mut [u8], u8, usize, usize)) {
    let mut i = 20;
    let end = hl.min(seg.len());
    while i < end {
        let Some(&kind) = seg.get(i) else { return };
        match kind {
            tcp::option::END => return,
            tcp::option::NOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = seg.get(i + 1) else { return };
        let len = usize::from(len);
        if len < 2 || i + len > end {
            return;
        }
        f(seg, kind, i, len);
        i += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tuple = Tuple { src: 0xc000_020a, dst: 0xc000_0264, sport: 40000, dport: 80 };
    const KEY: Key = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

    /// A cookie made under one key checks under no other: not under a key
    /// one bit away in either half, not under another boot's key, not
    /// under the flow-table key nor with it as either half.
    #[test]
    fn a_cookie_checks_under_its_key_only() {
        let table_key = 0x1234u64;
        let others = [[KEY[0] ^ 1, KEY[1]], [KEY[0], KEY[1] ^ (1 << 63)], [KEY[1], KEY[0]], [table_key, 0], [0, table_key], [table_key, table_key]];
        for isn in 0..64u32 {
            for idx in 0..4u8 {
                let c = make(&KEY, &T, isn, 7, idx);
                assert_eq!(check(&KEY, &T, isn, c, 7), Some(idx));
                for k in &others {
                    // A wrong key still finds a valid index 4 times in 2^24:
                    // a wrong MAC that lands on another valid index is what
                    // would show here, and it must not.
                    assert_eq!(check(k, &T, isn, c, 7), None, "isn {isn} idx {idx} under {k:x?}");
                }
            }
        }
    }

    /// The cookie as it was made before (two nested wyhash folds under the
    /// flow-table key, `crate::hash::keyed64`): one a client could have
    /// forged from that key no longer checks, whatever the cookie key.
    #[test]
    fn a_cookie_under_the_old_hash_no_longer_checks() {
        fn old_hash24(key: u64, t: &Tuple, count: u32, client_isn: u32) -> u32 {
            let a = u64::from(t.src) << 32 | u64::from(t.dst);
            let b = u64::from(t.sport) << 48 | u64::from(t.dport) << 32 | u64::from(client_isn);
            let h = crate::hash::keyed64(a ^ crate::hash::keyed64(b ^ u64::from(count) << 8, key), key ^ 0x5359_4e43_4f4f_4b49);
            (h as u32) & 0x00ff_ffff
        }
        let table_key = 0x1234u64;
        let mut checked = 0;
        for isn in 0..256u32 {
            let old = (7 << 24) | (old_hash24(table_key, &T, 7, isn) & 0x00ff_ffff);
            for key in [KEY, [table_key, 0], [table_key, table_key]] {
                checked += usize::from(check(&key, &T, isn, old, 7).is_some());
            }
        }
        assert_eq!(checked, 0);
    }

    #[test]
    fn cookies_check_within_two_periods_only() {
        let key = &KEY;
        for idx in 0..4u8 {
            let c = make(key, &T, 1000, 7, idx);
            assert_eq!(check(key, &T, 1000, c, 7), Some(idx));
            assert_eq!(check(key, &T, 1000, c, 8), Some(idx), "one period later");
            assert_eq!(check(key, &T, 1000, c, 9), None, "too old");
            assert_eq!(check(key, &T, 1001, c, 7), None, "another ISN");
            assert_eq!(check(key, &Tuple { sport: 40001, ..T }, 1000, c, 7), None, "another port");
            assert_eq!(check(key, &Tuple { dst: T.dst ^ 1, ..T }, 1000, c, 7), None, "another address");
        }
        // Forged cookies: about 4 in 2^24 pass (fewer tries under Miri).
        let tries = if cfg!(miri) { 2_000u32 } else { 100_000 };
        let passed = (0..tries).filter(|i| check(key, &T, 1000, (7 << 24) | (i * 167), 7).is_some()).count();
        assert!(passed <= 2, "{passed}");
    }

    #[test]
    fn mss_and_options_round_trip() {
        assert_eq!(MSS_TABLE[mss_index(Some(1460)) as usize], 1460);
        assert_eq!(MSS_TABLE[mss_index(Some(1450)) as usize], 1440);
        assert_eq!(MSS_TABLE[mss_index(Some(100)) as usize], 536);
        assert_eq!(MSS_TABLE[mss_index(None) as usize], 536);
        assert_eq!(decode_ts(encode_ts(123_456, Some(7), true)), (Some(7), true));
        assert_eq!(decode_ts(encode_ts(123_456, None, false)), (None, false));
        assert_eq!(encode_ts(123_456, None, false) & !0x3f, 123_456 & !0x3f);
    }

    fn segment(flags: u8, seq: u32, ack: u32, win: u16, opts: &[u8]) -> Vec<u8> {
        let mut s = vec![0u8; 20];
        put32(&mut s, 4, seq);
        put32(&mut s, 8, ack);
        s[12] = (((20 + opts.len()) / 4) as u8) << 4;
        s[13] = flags;
        put16(&mut s, 14, win);
        s.extend_from_slice(opts);
        s.extend_from_slice(b"data");
        let ps = checksum::pseudo_header(1.into(), 2.into(), protocol::TCP, s.len() as u16);
        let c = !checksum::fold(checksum::sum(&s, ps));
        put16(&mut s, 16, c);
        s
    }

    fn ok(s: &[u8]) -> bool {
        let ps = checksum::pseudo_header(1.into(), 2.into(), protocol::TCP, s.len() as u16);
        checksum::fold(checksum::sum(s, ps)) == 0xffff
    }

    #[test]
    fn translation_both_ways_keeps_checksums() {
        let shift = Shift { seq: 0x1000_0000, ts: 500, wscale_from: 9, wscale_to: 7 };
        // Client: ACK 77, TSecr 1000, one SACK block.
        let mut opts = vec![1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0x03, 0xe8, 1, 1, 5, 10];
        opts.extend_from_slice(&100u32.to_be_bytes());
        opts.extend_from_slice(&200u32.to_be_bytes());
        let mut c = segment(tcp::flags::ACK, 5, 77, 1000, &opts);
        to_server(&mut c, &shift);
        assert!(ok(&c));
        assert_eq!(get32(&c, 8), 77 + 0x1000_0000);
        assert_eq!(get32(&c, 20 + 8), 1500, "TSecr");
        assert_eq!((get32(&c, 20 + 16), get32(&c, 20 + 20)), (100 + 0x1000_0000, 200 + 0x1000_0000));
        assert_eq!(get16(&c, 14), 1000, "the client's window as it is");
        // Server: seq, TSval, window 100 << 9 read as << 7.
        let mut s = segment(tcp::flags::ACK, 0x1000_0010, 9, 100, &[1, 1, 8, 10, 0, 0, 0x07, 0xd0, 0, 0, 0, 1]);
        to_client(&mut s, &shift);
        assert!(ok(&s));
        assert_eq!(get32(&s, 4), 0x10);
        assert_eq!(get32(&s, 24), 2000 - 500, "TSval");
        assert_eq!(get16(&s, 14), 400);
    }

    #[test]
    fn written_segments_parse_back() {
        let out = TcpOut {
            src: 0xc000_0264,
            dst: 0xc000_020a,
            sport: 80,
            dport: 40000,
            seq: 99,
            ack: 1001,
            flags: tcp::flags::SYN | tcp::flags::ACK,
            win: 65535,
            ttl: 64,
            opts: TcpOptions { mss: Some(1460), wscale: Some(7), sack_perm: true, timestamp: Some((5, 6)) },
            syn: true,
        };
        let mut f = vec![0u8; out.frame_len(14)];
        out.write(&mut f, 14).unwrap();
        assert_eq!(f.len(), 14 + 20 + 40);
        assert_eq!(checksum::checksum(&f[14..34]), 0);
        let t = tcp::TcpPacket::new_checked(&f[34..]).unwrap();
        assert!(t.verify_checksum(0xc000_0264u32.into(), 0xc000_020au32.into()));
        assert_eq!(TcpOptions::parse(t.options()), out.opts);
        let ack = TcpOut { flags: tcp::flags::ACK, syn: false, ..out };
        let mut f = vec![0u8; ack.frame_len(18)];
        ack.write(&mut f, 18).unwrap();
        let t = tcp::TcpPacket::new_checked(&f[38..]).unwrap();
        assert!(t.verify_checksum(0xc000_0264u32.into(), 0xc000_020au32.into()));
        assert_eq!(TcpOptions::parse(t.options()).timestamp, Some((5, 6)));
        assert_eq!(t.header_len(), 32);
    }
}
