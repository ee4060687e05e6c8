//! What identifies a connection: the 5-tuple of each direction, which way
//! a packet travels, entry ids, and the table's time unit.

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
