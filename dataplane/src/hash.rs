//! Keyed hashing of fields a client chooses (its ports, its address).
//!
//! The connection table, the flow ownership and the persistence table hash
//! with a key the control plane draws at boot (`WorkerConfig::hash_key`),
//! as IPVS seeds its connection hash with `ip_vs_conn_rnd` and rte_hash
//! with `hash_func_init_val`: with a fixed public function, a client that
//! picks its source ports could compute offline a set that lands in one
//! bucket and make every lookup walk a long chain. Under an unknown key the
//! same set spreads (`tests::colliding_keys_spread_under_another_key`).
//!
//! Maglev and source-hash are not keyed: they must pick the same server
//! across restarts and on an HA peer.
//!
//! The mixing is wyhash's (Wang Yi, public domain): a 64 x 64 -> 128-bit
//! multiply folded, with the key inside the multiplicands, so the bucket
//! of a value depends on every bit of the key.

/// wyhash's default secrets.
pub(crate) const S0: u64 = 0xa076_1d64_78bd_642f;
pub(crate) const S1: u64 = 0xe703_7ed1_a0b4_28db;
pub(crate) const S2: u64 = 0x8ebc_6af0_9c88_c6e3;
pub(crate) const S3: u64 = 0x5899_65cc_7537_4cc3;

/// 64 x 64 -> 128-bit multiply, as (low, high): wyhash's `_wymum`.
#[inline(always)]
pub(crate) fn mum(a: u64, b: u64) -> (u64, u64) {
    let r = u128::from(a) * u128::from(b);
    (r as u64, (r >> 64) as u64)
}

/// A hash key ready to mix: the secrets of the first multiply already
/// folded with the key, so a keyed hash costs what an unkeyed one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    pub k0: u64,
    pub k1: u64,
}

impl Seed {
    pub const fn new(key: u64) -> Self {
        Seed { k0: S0 ^ key, k1: S1 ^ key.rotate_left(32) }
    }
}

/// A 64-bit value hashed under `key`: every bit of both reaches every bit
/// of the result.
#[inline(always)]
pub fn keyed64(x: u64, key: u64) -> u64 {
    let (lo, hi) = mum(x ^ S0, key ^ S1);
    let (lo, hi) = mum(lo ^ S2 ^ key, hi ^ S3);
    lo ^ hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_of_value_and_key_matters() {
        let base = keyed64(0x0123_4567_89ab_cdef, 0xfeed_f00d);
        for bit in 0..64 {
            assert_ne!(keyed64(0x0123_4567_89ab_cdef ^ (1 << bit), 0xfeed_f00d), base, "value bit {bit}");
            assert_ne!(keyed64(0x0123_4567_89ab_cdef, 0xfeed_f00d ^ (1 << bit)), base, "key bit {bit}");
        }
    }
}
