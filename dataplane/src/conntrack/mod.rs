//! Per-worker connection table, after DPVS's per-lcore `ip_vs_conn` table
//! and katran's per-CPU LRU: each worker lcore owns one `FlowTable` (a
//! shard), so nothing here locks or uses atomics.
//!
//! A load-balanced connection has two directions. The *original* direction
//! is client -> VIP; the *reply* direction is server -> local address (the
//! full-NAT source, or the client itself for plain NAT). Both directions
//! find the same entry: each entry sits in two hash chains, one per key.
//!
//! Layout and cost model:
//!
//! - `table`: entries in one preallocated slice indexed by `FlowId`, 64 B
//!   (one cache line) each; a free list threaded through the entries; a
//!   bucket array of `u32` chain heads, a power of two >= 2 x capacity.
//!   With a power-of-two capacity that is 64 + 8 = 72 B per connection.
//! - `entry`: the entry (one cache line) and what creates it.
//! - `wheel`: a hashed timing wheel (Varghese & Lauck, "Hashed and
//!   Hierarchical Timing Wheels", SOSP 1987) of 4096 one-tick slots with
//!   lazy re-insertion, so refreshing a connection on a packet only writes
//!   its `expire` tick.
//! - `tcp`: the TCP connection-tracking state machine (RFC 9293 §3.3.2,
//!   IPVS's TCP state table as the model); `state`: the states and their
//!   per-state idle timeouts (IPVS's defaults).
//!
//! Nothing allocates after `FlowTable::new`, nothing locks, nothing panics.
//!
//! Lookups are meant to be batched per burst: hash every packet's key and
//! `prefetch` its bucket, then `lookup` each, so the bucket misses of a
//! burst overlap instead of serialising.
#![deny(clippy::indexing_slicing)]

mod entry;
mod key;
mod state;
mod table;
pub mod tcp;
pub mod track;
mod wheel;

pub use entry::{EntryFlags, Flow, FlowInit, FlowMut, Forwarding};
pub use state::{FlowState, Timeouts};
pub use table::{FlowTable, InsertError, CAP_WALK, MAX_CAPACITY, SOURCE_BUCKETS};
pub use tcp::next_state;
pub use track::{Check, Restart, Segment, Sight, Track};
pub use wheel::WHEEL_SLOTS;

pub use key::{Addr, Dir, FlowId, FlowKey, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, TICK_MS};

#[cfg(test)]
mod tests;
