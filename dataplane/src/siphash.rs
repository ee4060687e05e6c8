//! SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input
//! PRF", 2012): a keyed pseudo-random function of short inputs under a
//! 128-bit key, the MAC of the SYN cookies (`forward::synproxy`), as Linux
//! has used it for its syncookies since 4.13.
//!
//! Unlike the table hash (`crate::hash`, wyhash's fold: fast, no PRF
//! claim), its outputs tell nothing usable about the key, however many a
//! sender obtains for inputs it chose. Two compression rounds per 8-byte
//! block, four finalization rounds; no allocation, no panic.

/// A 128-bit key: (k0, k1), the key's bytes 0..8 and 8..16 read
/// little-endian (the paper's convention).
pub type Key = [u64; 2];

struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    /// The paper's initialization: the key XORed with "somepseudorandomlygeneratedbytes".
    #[inline(always)]
    fn new(k: &Key) -> Self {
        State { v0: k[0] ^ 0x736f_6d65_7073_6575, v1: k[1] ^ 0x646f_7261_6e64_6f6d, v2: k[0] ^ 0x6c79_6765_6e65_7261, v3: k[1] ^ 0x7465_6462_7974_6573 }
    }

    /// SipRound.
    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    /// One message word, c = 2 rounds.
    #[inline(always)]
    fn block(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    /// d = 4 rounds.
    #[inline(always)]
    fn finish(mut self) -> u64 {
        self.v2 ^= 0xff;
        for _ in 0..4 {
            self.round();
        }
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

/// SipHash-2-4 of `msg` under `key`.
pub fn siphash24(key: &Key, msg: &[u8]) -> u64 {
    let mut s = State::new(key);
    let mut words = msg.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        for (d, x) in b.iter_mut().zip(w) {
            *d = *x;
        }
        s.block(u64::from_le_bytes(b));
    }
    // The last block: the remaining bytes, the length's low byte on top.
    let mut last = (msg.len() as u64) << 56;
    for (i, x) in words.remainder().iter().enumerate() {
        last |= u64::from(*x) << (8 * i);
    }
    s.block(last);
    s.finish()
}

/// SipHash-2-4 of the 20 bytes `m` makes in little-endian order (what
/// `siphash24` would compute of them), without going through bytes: the
/// SYN cookie's input (addresses, ports, ISN, counter).
#[inline]
pub fn siphash24_u32x5(key: &Key, m: [u32; 5]) -> u64 {
    let [a, b, c, d, e] = m.map(u64::from);
    let mut s = State::new(key);
    s.block(a | b << 32);
    s.block(c | d << 32);
    s.block(e | 20 << 56);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's key: bytes 00 01 .. 0f.
    const KEY: Key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];

    fn message(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    /// The reference implementation's test vectors (`vectors.h`, message
    /// 00 01 .. n-1) and the paper's Appendix A example (15 bytes).
    #[test]
    fn reference_vectors() {
        let cases: [(u8, u64); 5] = [
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (2, 0x0d6c_8009_d9a9_4f5a),
            (8, 0x93f5_f579_9a93_2462),
            (15, 0xa129_ca61_49be_45e5),
        ];
        for (n, want) in cases {
            assert_eq!(siphash24(&KEY, &message(n)), want, "{n} bytes");
        }
    }

    #[test]
    fn five_words_are_their_twenty_bytes() {
        for key in [KEY, [0, 0], [u64::MAX, 1]] {
            for m in [[0u32; 5], [1, 2, 3, 4, 5], [u32::MAX, 0xc000_020a, 0x9c40_0050, 0xdead_beef, 7]] {
                let bytes: Vec<u8> = m.iter().flat_map(|w| w.to_le_bytes()).collect();
                assert_eq!(siphash24_u32x5(&key, m), siphash24(&key, &bytes), "{m:x?}");
            }
        }
    }

    /// Every length from 0 to 64 bytes, under other keys, as the standard
    /// library's SipHash-2-4 (deprecated there as a `Hasher`, kept here as
    /// a second reference) computes it.
    #[test]
    #[allow(deprecated)]
    fn agrees_with_the_standard_librarys_siphash_2_4() {
        use std::hash::{Hasher, SipHasher};
        for key in [KEY, [0, 0], [u64::MAX, 0x1234_5678_9abc_def0]] {
            for n in 0..=64u8 {
                let m: Vec<u8> = (0..n).map(|i| i.wrapping_mul(151).wrapping_add(n)).collect();
                let mut h = SipHasher::new_with_keys(key[0], key[1]);
                h.write(&m);
                assert_eq!(siphash24(&key, &m), h.finish(), "{n} bytes under {key:x?}");
            }
        }
    }
}
