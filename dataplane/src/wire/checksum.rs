//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The checksum is the 16-bit ones' complement of the ones' complement sum
//! of the data taken as big-endian 16-bit words, an odd trailing byte padded
//! on the right with zero (RFC 1071 §1). Sums here are carried in a `u32`
//! accumulator whose carries are folded back in by [`fold`]; because
//! 2^16 ≡ 1 (mod 0xffff), where the carries are folded does not change the
//! result.

use core::net::Ipv4Addr;

/// Adds `data` to the partial sum `initial`: the ones' complement sum of
/// `data` as big-endian 16-bit words, an odd last byte padded with a zero
/// byte (RFC 1071 §1, §4.1).
///
/// The return value is a partial sum, not folded to 16 bits; feed it to
/// [`fold`] (or back to `sum` for the next piece — pieces after the first
/// must start at even offsets of the whole). It never overflows: carries
/// past bit 31 are folded back in.
pub fn sum(data: &[u8], initial: u32) -> u32 {
    // 32-bit big-endian words into a 64-bit accumulator: a word w = hi·2^16
    // + lo ≡ hi + lo (mod 0xffff), so this is the RFC 1071 sum, two words at
    // a time, and cannot overflow for any slice shorter than 16 GiB.
    let mut acc = u64::from(initial);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        if let &[a, b, c, d] = w {
            acc += u64::from(u32::from_be_bytes([a, b, c, d]));
        }
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        if let &[a, b] = p {
            acc += u64::from(u16::from_be_bytes([a, b]));
        }
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    // Fold the high 32 bits back in, twice: the first leaves at most
    // 2^32 - 1 + 2^32 - 1, the second fits.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc as u32
}

/// Folds a partial sum's carries into 16 bits (the end-around carry of RFC
/// 1071 §2(C)); does not complement.
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The Internet checksum of `data`: `!fold(sum(data, 0))`.
///
/// Over a header whose checksum field holds a correct checksum this is 0,
/// which is how receivers verify (RFC 1071 §1(3)).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// The partial sum of the IPv4 pseudo header that TCP (RFC 9293 §3.1, RFC
/// 793 §3.1) and UDP (RFC 768) prepend to their checksums: source address,
/// destination address, a zero byte, the protocol and the TCP/UDP length.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(protocol) + u32::from(length)
}

/// Incrementally updates checksum `check` after a 16-bit word of the
/// checksummed data changed from `old` to `new`: RFC 1624 eqn. 3,
/// `HC' = ~(~HC + ~m + m')`.
///
/// Equals a full recompute except when the data after the change is all
/// zero (where eqn. 3 gives 0x0000 and a recompute 0xffff, RFC 1624 §3);
/// the IPv4 header and the TCP/UDP pseudo header are never all zero.
/// `old` and `new` must sit at an even offset of the checksummed data.
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// [`update16`] for a 32-bit field (two adjacent 16-bit words), e.g. an
/// IPv4 address as `u32::from(addr)`, or a TCP sequence number.
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!check)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook IPv4 header (192.168.0.1 → 192.168.0.199, UDP,
    /// total length 115): checksum 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, //
        0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn known_ipv4_header() {
        assert_eq!(checksum(&HEADER), 0, "a correct header sums to 0xffff");
        let mut h = HEADER;
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
        assert_eq!(sum(&[0xab], 0), 0xab00);
        assert_eq!(sum(&[], 7), 7);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn fold_carries() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0xfffe_0002), 1);
    }

    #[test]
    fn sum_does_not_overflow() {
        // 2049 words of 0xffff (≡ 0) and a last 0xff00; the initial
        // 0xffff_ffff ≡ 0 too. Debug builds would trap an overflow.
        let big = [0xffu8; 4099];
        assert_eq!(fold(sum(&big, 0xffff_ffff)), 0xff00);
        assert_eq!(fold(sum(&big, 0)), fold(sum(&big[..4098], 0xff00)));
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 §4: m = 0x5555 becomes m' = 0x3285; the rest of the
        // header sums to 0xcd7a, so HC = 0xdd2f and a recompute gives 0.
        assert_eq!(checksum(&[0xcd, 0x7a, 0x55, 0x55]), 0xdd2f);
        assert_eq!(checksum(&[0xcd, 0x7a, 0x32, 0x85]), 0x0000);
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn pseudo_header_sum() {
        // 192.0.2.1 → 198.51.100.10, TCP, 24 bytes.
        let bytes = [192, 0, 2, 1, 198, 51, 100, 10, 0, 6, 0, 24];
        let ph = pseudo_header(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 10), 6, 24);
        assert_eq!(fold(ph), fold(sum(&bytes, 0)));
    }

    #[test]
    fn address_rewrite_in_header() {
        let mut h = HEADER;
        let old = Ipv4Addr::new(192, 168, 0, 199);
        let new = Ipv4Addr::new(10, 1, 2, 3);
        h[16..20].copy_from_slice(&new.octets());
        let upd = update32(0xb861, u32::from(old), u32::from(new));
        h[10..12].copy_from_slice(&upd.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    /// Words (the checksum field left out), at least one of them nonzero
    /// both before and after the change: see `update16`'s note.
    fn words() -> impl Strategy<Value = Vec<u16>> {
        proptest::collection::vec(any::<u16>(), 2..64)
    }

    fn bytes_of(w: &[u16]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    proptest! {
        #[test]
        fn sum_is_order_free_and_splittable(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
            let cut = (cut * 2).min(data.len() & !1);
            let whole = fold(sum(&data, 0));
            let split = fold(sum(&data[cut..], sum(&data[..cut], 0)));
            prop_assert_eq!(whole, split);
            // Reference: 16 bits at a time with end-around carry.
            let mut r: u32 = 0;
            for c in data.chunks(2) {
                let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
                r += u32::from(w);
                r = (r & 0xffff) + (r >> 16);
            }
            prop_assert_eq!(whole, r as u16);
        }

        #[test]
        fn update16_equals_recompute(mut w in words(), at in any::<prop::sample::Index>(), new in any::<u16>()) {
            let i = at.index(w.len());
            let check = checksum(&bytes_of(&w));
            let old = w[i];
            w[i] = new;
            prop_assume!(w.iter().any(|&x| x != 0));
            prop_assert_eq!(update16(check, old, new), checksum(&bytes_of(&w)));
        }

        #[test]
        fn update32_equals_recompute(mut w in words(), at in any::<prop::sample::Index>(), new in any::<u32>()) {
            let i = at.index(w.len() - 1);
            let check = checksum(&bytes_of(&w));
            let old = (u32::from(w[i]) << 16) | u32::from(w[i + 1]);
            w[i] = (new >> 16) as u16;
            w[i + 1] = new as u16;
            prop_assume!(w.iter().any(|&x| x != 0));
            prop_assert_eq!(update32(check, old, new), checksum(&bytes_of(&w)));
        }

        #[test]
        fn update_keeps_a_verifying_header(mut w in words(), at in any::<prop::sample::Index>(), new in any::<u16>()) {
            // The checksum field lives inside the data, as in real headers.
            let i = at.index(w.len() - 1) + 1;
            w[0] = 0;
            let c = checksum(&bytes_of(&w));
            w[0] = c;
            let old = w[i];
            w[i] = new;
            w[0] = update16(w[0], old, new);
            prop_assume!(w[1..].iter().any(|&x| x != 0));
            prop_assert_eq!(checksum(&bytes_of(&w)), 0);
        }
    }
}
