//! Furiwake's packet logic, free of DPDK: typed views over frame bytes
//! (`wire`), the packet-I/O abstraction the platform implements for
//! `rte_mbuf` and tests implement for plain buffers (`io`), per-worker
//! counters with a name for every drop (`counters`), and the worker pipeline
//! (`worker`).
//!
//! Nothing here allocates, locks or panics on the packet path; `cargo test
//! -p furiwake-dataplane` needs neither DPDK, hugepages nor root.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod counters;
pub mod flow;
pub mod io;
pub mod maglev;
pub mod nat;
pub mod neighbor;
pub mod persist;
pub mod rcu;
pub mod sched;
pub mod snapshot;
pub mod wire;
pub mod worker;

pub use counters::{DropReason, WorkerCounters};
pub use io::{Burst, Packet, PacketIo, BURST_SIZE};
pub use worker::{Worker, WorkerConfig};
