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
mod port;
mod ring;
mod io;

pub use eal::Eal;
pub use error::{Error, Result};
pub use io::MbufIo;
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{BondMembers, DevInfo, Link, Port, PortConfig, PortStats, RxQueue, TxQueue};
pub use ring::{spsc, Consumer, Producer, Ring, RingItem};

/// RSS hash type groups (`RTE_ETH_RSS_IP`, `_TCP`, `_UDP`).
pub mod rss {
    use dpdk_sys as sys;
    pub const IP: u64 = sys::RTE_ETH_RSS_IP as u64;
    pub const TCP: u64 = sys::RTE_ETH_RSS_TCP as u64;
    pub const UDP: u64 = sys::RTE_ETH_RSS_UDP as u64;
}

/// Current TSC value.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the time-stamp counter; no memory is touched.
    unsafe { dpdk_sys::fw_rdtsc() }
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
