//! Maglev consistent hashing: the lookup table that maps a flow hash to a
//! backend, after Eisenbud et al., "Maglev: A Fast and Reliable Software
//! Network Load Balancer", NSDI 2016, §3.4 and Pseudocode 1, with weights
//! honoured the way katran does (`katran/lib/MaglevBase.cpp` and
//! `MaglevHash.cpp`).
//!
//! Each backend `i` owns a permutation of the table positions `0..M`
//! (`M` prime, the paper's table size):
//!
//! ```text
//! offset    = h1(key) mod M
//! skip      = h2(key) mod (M - 1) + 1
//! permutation[j] = (offset + j * skip) mod M
//! ```
//!
//! `skip` is in `1..M` and `M` is prime, so `skip` is coprime with `M` and
//! the permutation visits every position exactly once. The population loop
//! then lets backends take turns: on its turn a backend walks its own
//! permutation to the first position not yet taken and claims it, until all
//! `M` positions are filled. A backend of weight `w` takes `w` turns per
//! round (weight 0: none), so its share of the table is proportional to its
//! weight; with equal weights the shares differ by at most one entry.
//!
//! Unlike katran's `MaglevHash`, which gives a backend its `w` turns only in
//! the first round and one turn in every later round, every round here
//! honours the weights, so shares stay proportional however large `M` is.
//!
//! Because each backend's preferences depend only on its own key, removing
//! or adding one backend mostly moves the entries that backend loses or
//! gains ("minimal disruption", §3.4); the table is a pure function of the
//! backend list (order included) and `M`, so every load balancer building
//! it from the same list agrees on it.
//!
//! This runs on the control plane when the backend set changes: it
//! allocates (the table plus `M` bytes of scratch) and costs roughly
//! `M log M` probes. The packet path only calls [`lookup`].

/// Default table size: a prime (the paper's M), larger than 100 x backends.
///
/// With at most 655 backends each gets at least ~100 entries, which keeps
/// the imbalance from rounding small (§3.4 recommends `M` ≫ backends).
pub const DEFAULT_TABLE_SIZE: u32 = 65537;

const _: () = assert!(is_prime(DEFAULT_TABLE_SIZE));

/// A backend: a stable identity (hashed for its permutation) and a weight.
///
/// `key` should be distinct per backend and stable across rebuilds (e.g.
/// derived from the backend's address and port): two backends with the same
/// key share one permutation and the table would no longer be minimally
/// disrupted when one of them leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaglevBackend {
    pub key: u64,
    pub weight: u32,
}

/// Seeds for the two permutation hashes, so `offset` and `skip` are
/// independent functions of the key.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SKIP_SEED: u64 = 0x736b_6970_5f66_7277; // "skip_frw"

/// splitmix64's finaliser (Steele, Lea, Flood 2014; Stafford's "Mix13"
/// constants), after adding the golden-ratio increment.
const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// MurmurHash3's 64-bit finaliser `fmix64` (different shifts and
/// multipliers from splitmix64, so the two hashes are unrelated).
const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// `h1`: picks where a backend's permutation starts.
const fn offset_hash(key: u64) -> u64 {
    splitmix64(key ^ OFFSET_SEED)
}

/// `h2`: picks the stride of a backend's permutation.
const fn skip_hash(key: u64) -> u64 {
    fmix64(key ^ SKIP_SEED)
}

/// One backend's place in the population loop.
struct Cursor {
    /// Index into the caller's `backends`, the value stored in the table.
    index: u16,
    weight: u32,
    skip: u64,
    /// `permutation[next]` for this backend's `next` (Pseudocode 1), kept
    /// incrementally: `(offset + next * skip) mod M`, always `< M`.
    pos: u64,
}

impl Cursor {
    /// `next += 1`: `pos + skip < 2M`, so one subtraction reduces it.
    #[inline]
    fn advance(&mut self, m: u64) {
        self.pos += self.skip;
        if self.pos >= m {
            self.pos -= m;
        }
    }
}

/// A server's Maglev identity: its address and port, unkeyed, so that it
/// is the same across restarts and on an HA peer.
#[inline]
pub const fn server_key(ip: u32, port: u16) -> u64 {
    (ip as u64) << 16 | port as u64
}

/// Builds the lookup table of `size` entries, each the index of a backend
/// in `backends` (Pseudocode 1, with katran-style weights).
///
/// `size` must be prime (see [`is_prime`]; [`DEFAULT_TABLE_SIZE`] is). The
/// result is empty — and [`lookup`] on it returns `None` — if `size` is not
/// prime (including 0 and 1: a composite size could leave a backend's
/// permutation short of a free slot) or no backend has a positive weight.
///
/// A backend of weight `w` takes `w` turns per round, so its share of
/// entries is proportional to `w`; weight-0 backends get no entry. Only the
/// first 65536 backends are representable as `u16` indices; any beyond
/// that get no entry.
pub fn build(backends: &[MaglevBackend], size: u32) -> Vec<u16> {
    let mut b = Builder::new(backends, size);
    loop {
        if let Some(table) = b.step(u64::MAX) {
            return table;
        }
    }
}

/// A table being built a bounded share at a time (`step`), so a control
/// loop never spends a whole turn on a large pool's table (10,000
/// backends and `M` = 65537: about a millisecond and a half): the same
/// population loop as [`build`], stopped and resumed between two
/// placements, so the table is the same.
pub struct Builder {
    cursors: Vec<Cursor>,
    table: Vec<u16>,
    taken: Vec<bool>,
    filled: u64,
    m: u64,
    /// Where the loop stands: the cursor whose turn it is, and how many
    /// of its `weight` turns this round it has taken.
    at: usize,
    turn: u32,
}

#[allow(clippy::indexing_slicing, reason = "positions are below `size`, the length of `table` and `taken` (Cursor::advance works mod size); `at` is below the number of cursors; control-plane code")]
impl Builder {
    /// The builder of `build(backends, size)`.
    pub fn new(backends: &[MaglevBackend], size: u32) -> Self {
        let m = u64::from(size);
        let cursors: Vec<Cursor> = if is_prime(size) {
            backends
                .iter()
                .enumerate()
                .take(usize::from(u16::MAX) + 1)
                .filter(|(_, b)| b.weight > 0)
                .filter_map(|(i, b)| {
                    Some(Cursor {
                        index: u16::try_from(i).ok()?,
                        weight: b.weight,
                        // size >= 2, so M - 1 >= 1 and skip is in 1..M.
                        skip: skip_hash(b.key) % (m - 1) + 1,
                        pos: offset_hash(b.key) % m,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let len = if cursors.is_empty() { 0 } else { size as usize };
        Builder { cursors, table: vec![0u16; len], taken: vec![false; len], filled: 0, m, at: 0, turn: 0 }
    }

    /// Places entries until the table is full (then it is returned) or
    /// `budget` probes of the table have been spent (None: call again).
    pub fn step(&mut self, budget: u64) -> Option<Vec<u16>> {
        if self.cursors.is_empty() {
            return Some(Vec::new());
        }
        let m = self.m;
        let mut spent: u64 = 0;
        // Every round fills at least one entry (some cursor has weight > 0),
        // so the loop ends after at most M rounds.
        loop {
            let c = &mut self.cursors[self.at];
            while self.turn < c.weight {
                // M prime: the permutation visits every position, and one
                // is still free, so this ends within M probes.
                while self.taken[c.pos as usize] {
                    c.advance(m);
                    spent += 1;
                }
                self.taken[c.pos as usize] = true;
                self.table[c.pos as usize] = c.index;
                c.advance(m);
                self.filled += 1;
                self.turn += 1;
                spent += 1;
                if self.filled == m {
                    return Some(std::mem::take(&mut self.table));
                }
                if spent >= budget {
                    return None;
                }
            }
            self.turn = 0;
            self.at = (self.at + 1) % self.cursors.len();
        }
    }
}

/// Picks an entry for a 32-bit flow hash: `table[hash mod len]`, or `None`
/// for an empty table (no backend can serve).
#[inline]
pub fn lookup(table: &[u16], hash: u32) -> Option<u16> {
    let i = (hash as usize).checked_rem(table.len())?;
    table.get(i).copied()
}

/// Whether `n` is prime (trial division by 6k ± 1; at most ~11k steps
/// for any `u32`).
// `u64::is_multiple_of` is Rust 1.87; the workspace's rust-version is 1.80.
#[allow(clippy::manual_is_multiple_of)]
pub const fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n % 2 == 0 || n % 3 == 0 {
        return false;
    }
    let n = n as u64;
    let mut d: u64 = 5;
    while d * d <= n {
        if n % d == 0 || n % (d + 2) == 0 {
            return false;
        }
        d += 6;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Instant;

    const M: u32 = DEFAULT_TABLE_SIZE;

    /// Address-like keys: 10.0.<i>.<i> port 8080, packed into a u64.
    fn key(i: u32) -> u64 {
        (u64::from(0x0a00_0000 | (i & 0xffff) << 8 | (i & 0xff)) << 16) | 8080
    }

    fn equal(n: u32) -> Vec<MaglevBackend> {
        (0..n)
            .map(|i| MaglevBackend {
                key: key(i),
                weight: 1,
            })
            .collect()
    }

    fn counts(table: &[u16], n: usize) -> Vec<usize> {
        let mut c = vec![0usize; n];
        for &e in table {
            c[usize::from(e)] += 1;
        }
        c
    }

    #[test]
    fn every_entry_filled_with_valid_index() {
        for n in [1u32, 2, 3, 10, 100] {
            let backends = equal(n);
            let table = build(&backends, M);
            assert_eq!(table.len(), M as usize);
            assert!(table.iter().all(|&e| usize::from(e) < backends.len()));
            // Equal weights: shares differ by at most one entry.
            let c = counts(&table, backends.len());
            let (lo, hi) = (c.iter().min().unwrap(), c.iter().max().unwrap());
            assert!(hi - lo <= 1, "n={n}: min {lo} max {hi}");
        }
    }

    #[test]
    fn balance_equal_weights() {
        let table = build(&equal(3), M);
        let c = counts(&table, 3);
        let ideal = f64::from(M) / 3.0;
        for (i, &n) in c.iter().enumerate() {
            let dev = (n as f64 - ideal).abs() / ideal;
            println!(
                "balance 1:1:1 backend {i}: {n} entries ({:.4}% of M), deviation from M/3 {:.4}%",
                100.0 * n as f64 / f64::from(M),
                100.0 * dev
            );
            assert!(dev <= 0.01, "backend {i}: {n} vs {ideal}");
        }
    }

    #[test]
    fn balance_weighted() {
        let backends = [
            MaglevBackend {
                key: key(0),
                weight: 3,
            },
            MaglevBackend {
                key: key(1),
                weight: 1,
            },
            MaglevBackend {
                key: key(2),
                weight: 1,
            },
        ];
        let table = build(&backends, M);
        let c = counts(&table, 3);
        for (i, (&n, want)) in c.iter().zip([0.6, 0.2, 0.2]).enumerate() {
            let share = n as f64 / f64::from(M);
            println!(
                "balance 3:1:1 backend {i}: {n} entries = {:.4}% (want {:.0}%)",
                100.0 * share,
                100.0 * want
            );
            // Within 1% of its weighted share (issue 6).
            assert!((share - want).abs() <= 0.01 * want, "backend {i}: {share}");
        }
    }

    #[test]
    fn weight_zero_gets_nothing() {
        let backends = [
            MaglevBackend {
                key: key(0),
                weight: 2,
            },
            MaglevBackend {
                key: key(1),
                weight: 0,
            },
            MaglevBackend {
                key: key(2),
                weight: 1,
            },
        ];
        let table = build(&backends, M);
        assert_eq!(table.len(), M as usize);
        assert!(!table.contains(&1));
        let c = counts(&table, 3);
        println!("balance 2:0:1: {c:?}");
        assert_eq!(c[0] + c[2], M as usize);
    }

    /// §3.4: removing a backend moves its own entries and only a few others;
    /// adding it back restores the table.
    #[test]
    fn minimal_disruption() {
        let backends = equal(10);
        let before = build(&backends, M);
        let removed = 4usize;
        let mut fewer = backends.clone();
        fewer.remove(removed);
        let after = build(&fewer, M);
        assert_eq!(after.len(), before.len());

        // Compare by backend identity: indices shift after `removed`.
        let mut others = 0usize;
        let mut moved = 0usize;
        for (&b, &a) in before.iter().zip(&after) {
            let kb = backends[usize::from(b)].key;
            let ka = fewer[usize::from(a)].key;
            assert_ne!(ka, backends[removed].key);
            if usize::from(b) != removed {
                others += 1;
                if ka != kb {
                    moved += 1;
                }
            }
        }
        let frac = moved as f64 / others as f64;
        println!(
            "disruption (remove 1 of 10, M={M}): {} entries of the removed backend reassigned; \
             {moved} of {others} other entries moved = {:.3}%",
            before.len() - others,
            100.0 * frac
        );
        assert!(frac <= 0.02, "{:.3}% of other entries moved", 100.0 * frac);
        // In all, at most 1/N + 1% of the slots change hands.
        let total = (before.len() - others + moved) as f64 / before.len() as f64;
        println!("disruption (remove 1 of 10): {:.3}% of all slots moved (bound {:.3}%)", 100.0 * total, 100.0 * (0.1 + 0.01));
        assert!(total <= 1.0 / 10.0 + 0.01, "{:.3}% of slots moved", 100.0 * total);

        // Adding it back (same position) restores the original exactly.
        let mut restored = fewer.clone();
        restored.insert(removed, backends[removed]);
        assert_eq!(build(&restored, M), before);
    }

    /// Same measurement with 100 backends, reported only.
    #[test]
    fn disruption_figures_100() {
        let backends = equal(100);
        let before = build(&backends, M);
        let mut fewer = backends.clone();
        fewer.remove(37);
        let after = build(&fewer, M);
        let (mut others, mut moved) = (0usize, 0usize);
        for (&b, &a) in before.iter().zip(&after) {
            if usize::from(b) != 37 {
                others += 1;
                moved += usize::from(backends[usize::from(b)].key != fewer[usize::from(a)].key);
            }
        }
        println!(
            "disruption (remove 1 of 100, M={M}): {moved} of {others} other entries moved = {:.3}%",
            100.0 * moved as f64 / others as f64
        );
    }

    /// Built a share at a time, whatever the share, the table is the one
    /// `build` makes (weights, a zero weight, a size not prime, none).
    #[test]
    fn built_in_steps_is_the_same_table() {
        let mut weighted = equal(300);
        weighted[7].weight = 5;
        weighted[8].weight = 0;
        for (backends, size) in [(equal(1), 13), (equal(10), DEFAULT_TABLE_SIZE), (weighted, DEFAULT_TABLE_SIZE), (equal(5), 100), (Vec::new(), 13)] {
            let whole = build(&backends, size);
            for budget in [1, 7, 1000, 50_000] {
                let mut b = Builder::new(&backends, size);
                let mut steps = 0;
                let table = loop {
                    steps += 1;
                    if let Some(t) = b.step(budget) {
                        break t;
                    }
                };
                assert_eq!(table, whole, "{} backends, size {size}, budget {budget}", backends.len());
                if budget == 1000 && whole.len() > 10_000 {
                    assert!(steps > 10, "the work was spread: {steps} steps");
                }
            }
        }
    }

    #[test]
    fn deterministic() {
        let backends: Vec<_> = (0..25)
            .map(|i| MaglevBackend {
                key: key(i),
                weight: 1 + i % 4,
            })
            .collect();
        let a = build(&backends, M);
        let b = build(&backends.clone(), M);
        assert_eq!(a, b);
        // Pinned: load balancers building from the same list must agree, so
        // a change to the hashes or the loop has to be deliberate.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf); // reference vector
        assert_eq!(offset_hash(key(0)), 0xc3d9_de54_371d_62ab);
        assert_eq!(skip_hash(key(0)), 0xc3b1_5f27_e6ad_a915);
        assert_eq!(
            build(&equal(3), 13),
            [0, 0, 0, 1, 2, 1, 2, 2, 0, 1, 2, 0, 1]
        );
    }

    #[test]
    fn sizes_and_empty() {
        assert!(is_prime(65537));
        assert!(!is_prime(65536));
        assert!(!is_prime(0));
        assert!(!is_prime(1));
        assert!(is_prime(2));
        assert!(is_prime(3));
        assert!(!is_prime(4));
        assert!(is_prime(251));
        assert!(!is_prime(65535));
        assert!(is_prime(4_294_967_291)); // largest u32 prime
        assert!(!is_prime(u32::MAX));
        let primes: Vec<u32> = (0..50).filter(|&n| is_prime(n)).collect();
        assert_eq!(
            primes,
            [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47]
        );

        let backends = equal(3);
        assert!(build(&backends, 0).is_empty());
        assert!(build(&backends, 1).is_empty());
        assert!(build(&backends, 65536).is_empty());
        assert!(build(&[], M).is_empty());
        let zero = [
            MaglevBackend { key: 1, weight: 0 },
            MaglevBackend { key: 2, weight: 0 },
        ];
        assert!(build(&zero, M).is_empty());

        assert_eq!(lookup(&[], 0), None);
        assert_eq!(lookup(&[], u32::MAX), None);
        let table = build(&backends, 7);
        assert_eq!(table.len(), 7);
        for h in [0u32, 1, 6, 7, 12345, u32::MAX] {
            assert_eq!(lookup(&table, h), Some(table[h as usize % 7]));
        }
    }

    #[test]
    fn build_time_100_backends() {
        let backends = equal(100);
        let start = Instant::now();
        let table = build(&backends, M);
        let elapsed = start.elapsed();
        assert_eq!(table.len(), M as usize);
        println!(
            "build: 100 backends, M={M}: {:.3} ms",
            elapsed.as_secs_f64() * 1e3
        );
    }

    proptest! {
        #[test]
        fn prop_filled_valid_and_deterministic(
            weights in proptest::collection::vec(0u32..5, 1..20),
            size in prop::sample::select(vec![2u32, 3, 7, 13, 101, 1009, 4099]),
        ) {
            let backends: Vec<_> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| MaglevBackend { key: key(i as u32), weight: w })
                .collect();
            let table = build(&backends, size);
            if weights.iter().all(|&w| w == 0) {
                prop_assert!(table.is_empty());
            } else {
                prop_assert_eq!(table.len(), size as usize);
                for &e in &table {
                    prop_assert!(weights[usize::from(e)] > 0);
                }
                prop_assert_eq!(build(&backends, size), table);
            }
        }
    }
}
