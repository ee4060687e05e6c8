//! Furiwake's packet logic, free of DPDK. Folders by concern, each
//! depending only on those listed before it (no module cycles):
//!
//! - `wire`: typed views over frame bytes (Ethernet, ARP, IPv4, ICMP, TCP,
//!   UDP, checksums).
//! - `io`: the packet-I/O abstraction the platform implements for
//!   `rte_mbuf` and tests implement for plain buffers.
//! - `region`: the memory of the big tables (hugepages in the appliance).
//! - `limits`: the sizes everything else is dimensioned by; `hash`: the
//!   keyed hash of client-chosen fields; `siphash`: the PRF of the SYN
//!   cookies; `rss`: the Toeplitz hash and the keys and RETA that make
//!   a port's RSS queue a connection on the worker that owns it.
//! - `conntrack`: the per-worker connection table (entry, keys, hash
//!   table, expiry sweep, TCP states and sequence marks).
//! - `lb`: choosing a server (schedules, Maglev, persistence records, the
//!   published loads).
//! - `state`: what the control plane shares with the workers (the RCU
//!   snapshot, neighbours, counters).
//! - `forward`: the rewrites of each forwarding mode (NAT, full-NAT, ICMP
//!   error translation, refusals) and full-NAT local ports.
//! - `ctl`: the workers' side of control requests (connection dumps, HA
//!   state-sync records and their rings).
//! - `pipeline`: the worker: classify, ownership, the poll loop.
//!
//! Nothing here allocates, locks or panics on the packet path; `cargo test
//! -p furiwake-dataplane` needs neither DPDK, hugepages nor root.

// Indexing that can panic is denied here (the workspace lints deny
// unwrap/expect/panic and undocumented unsafe everywhere): a proven index
// carries an `#[allow]` with its reason.
#![deny(clippy::indexing_slicing)]

pub mod conntrack;
pub mod ctl;
pub mod forward;
pub mod hash;
pub mod io;
pub mod lb;
pub mod limits;
pub mod pipeline;
pub mod region;
pub mod rss;
pub mod siphash;
pub mod state;
mod sync;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod wire;

pub use io::{Burst, Packet, PacketIo, BURST_SIZE};
pub use pipeline::{Worker, WorkerConfig};
pub use state::counters::{DropReason, WorkerCounters};
