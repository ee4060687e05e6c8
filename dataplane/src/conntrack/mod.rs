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
//!   bucket array of `u32` chain heads, exactly 2 x capacity; beside the
//!   entries their sequence marks (`marks`, 24 B). 64 + 24 + 8 = 96 B per
//!   IPv4 connection; the SYN proxy's side table (`track::ProxyTrack`) is
//!   committed only where used.
//! - `entry`: the entry (one cache line) and what creates it.
//! - `sweep`: expiry by a budgeted scan of the entries plus expiry on
//!   lookup (Linux conntrack's garbage collector), so refreshing a
//!   connection on a packet only writes its `expire` tick and the entry
//!   carries no timer links.
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
mod marks;
mod state;
mod table;
pub mod tcp;
pub mod track;
mod sweep;

pub use entry::{server_slot, EntryFlags, Flow, FlowInit, FlowMut, Forwarding};
pub use state::{FlowState, Timeouts};
pub use table::{FlowTable, InsertError, CAP_WALK, MAX_CAPACITY, SOURCE_BUCKETS};
pub use tcp::next_state;
pub use marks::{Marks, TrackBits};
pub use track::{Check, ProxyTrack, Restart, Segment, Sight, Track};
pub use sweep::{LAP_TICKS_MIN, SCAN_PER_CALL, SCAN_PER_TICK_MAX, SWEEP_WHOLE};

pub use key::{Addr, Dir, FlowId, FlowKey, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, TICK_MS};

#[cfg(test)]
mod tests;
