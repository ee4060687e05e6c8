//! Safe DPDK for Furiwake, and the only crate that touches `dpdk-sys`.
//!
//! - [`Eal`]: EAL initialisation, once per process.
//! - [`Mempool`] and [`Mbuf`]: packet buffers; an `Mbuf` is freed when
//!   dropped, and bursts move arrays of raw pointers without per-packet
//!   overhead.
//! - [`Port`]: an ethdev: configure queues (RSS when the PMD offers it),
//!   start, link, MAC, stats, xstats; rx/tx bursts.
//! - [`lcore`]: run closures on worker lcores.
//! - [`Ring`] and [`spsc`]: `rte_ring` carrying owned values.
//! - [`MbufIo`]: the dataplane's `PacketIo` over ports, queues and rings.
//! - [`memory`]: DPDK's hugepage heap as the dataplane tables' backing.
//!
//! Negative errno values become [`Error`]s with the call that failed.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod eal;
mod error;
pub mod lcore;
mod mbuf;
mod mempool;
pub mod memory;
pub mod poll;
mod port;
mod ring;
mod io;

pub use eal::Eal;
pub use error::{Error, Result};
pub use io::MbufIo;
pub use mbuf::{punt_stamp_registered, Mbuf};
pub use mempool::Mempool;
pub use port::{BondMembers, DevInfo, Link, Port, PortConfig, PortStats, RxQueue, TxQueue};
pub use ring::{spsc, Consumer, Producer, Ring, RingItem};

/// RSS hash type groups (`RTE_ETH_RSS_IP`, `_TCP`, `_UDP`).
pub mod rss {
    use dpdk_sys as sys;
    pub const IP: u64 = sys::RTE_ETH_RSS_IP as u64;
    pub const TCP: u64 = sys::RTE_ETH_RSS_TCP as u64;
    pub const UDP: u64 = sys::RTE_ETH_RSS_UDP as u64;
    /// IPv4 TCP and UDP by addresses and ports: what steering needs.
    pub const IPV4_TCP_UDP: u64 = (sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP | sys::RTE_ETH_RSS_NONFRAG_IPV4_UDP) as u64;

    /// DPDK's software Toeplitz hash (`rte_softrss`) of `words` (each the
    /// big-endian reading of 4 bytes of the hash input) under `key` (40
    /// bytes, as the NIC takes it).
    pub fn softrss(words: &[u32], key: &[u8; 40]) -> u32 {
        // `rte_softrss` reads key words `j` and `j + 1` for input word `j`.
        if words.len() + 1 > key.len() / 4 {
            return 0;
        }
        // SAFETY: `words` and `key` are valid for the lengths given, and the
        // check above keeps the key reads in bounds.
        unsafe { sys::fw_softrss(words.as_ptr(), words.len() as u32, key.as_ptr()) }
    }

    #[cfg(test)]
    mod tests {
        use furiwake_dataplane::rss::{ipv4_input, toeplitz, Steering};

        fn words(b: &[u8]) -> Vec<u32> {
            b.chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
        }

        /// The dataplane's Toeplitz (what `pipeline::owner` mirrors a port's
        /// RSS with) is DPDK's, under the keys Furiwake programs.
        #[test]
        fn the_dataplane_toeplitz_is_dpdks() {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for seed in 0..16u64 {
                let s = Steering::new(2, seed);
                for key in [&s.keys().client, &s.keys().server] {
                    for _ in 0..500 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let input = ipv4_input(x as u32, (x >> 32) as u32, (x >> 7) as u16, (x >> 23) as u16);
                        assert_eq!(toeplitz(key, &input), super::softrss(&words(&input), key), "seed {seed} input {input:?}");
                        assert_eq!(toeplitz(key, &input[..8]), super::softrss(&words(&input[..8]), key), "ipv4 only");
                    }
                }
            }
        }
    }
}

/// Current TSC value: the instruction inline, as `rte_rdtsc` is (the
/// shim's copy is a call across the FFI boundary, twice per worker pass).
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC reads the time-stamp counter; no memory is touched.
    return unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the time-stamp counter; no memory is touched.
    return unsafe { dpdk_sys::fw_rdtsc() };
}

/// TSC ticks per second, as measured by the EAL.
pub fn tsc_hz() -> u64 {
    // SAFETY: plain getter of an EAL global set at init.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// The DPDK version string, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: rte_version() returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(dpdk_sys::rte_version()) }
        .to_string_lossy()
        .into_owned()
}
