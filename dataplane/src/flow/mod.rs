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
//! - `timer`: a hashed timing wheel (Varghese & Lauck, "Hashed and
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

mod state;
mod table;
pub mod tcp;
mod timer;

pub use state::{FlowState, Timeouts};
pub use table::{Flow, FlowInit, FlowMut, FlowTable, InsertError, MAX_CAPACITY};
pub use tcp::next_state;
pub use timer::WHEEL_SLOTS;

/// The table's time unit, in milliseconds. Callers pass `now` in ticks.
///
/// Ticks are `u32`: 2^32 ticks of 100 ms are 13.6 years, so wrap-around is
/// not handled.
pub const TICK_MS: u32 = 100;

/// Index of an entry in its table. Stable for the entry's lifetime;
/// recycled after `remove` or expiry.
pub type FlowId = u32;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// A 5-tuple as seen on the wire. IPs are `u32::from(Ipv4Addr)` (host
/// order). ICMP echo (RFC 792) uses its identifier as both ports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct FlowKey {
    pub src_ip: u32,
    pub dst_ip: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

/// Which way a packet travels relative to the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    /// Client -> VIP.
    Original,
    /// Server -> local address.
    Reply,
}

#[cfg(test)]
mod tests;
