//! Upper bounds the snapshot, the counters and the control plane share, so
//! per-worker arrays are sized once.

/// Virtual servers (snapshot slots, live and retired).
pub const MAX_SERVICES: usize = 256;
/// Real servers (snapshot slots, live and retired).
pub const MAX_SERVERS: usize = 4096;
/// Slots of each worker's protected punt ring (ARP, VRRP, HA).
pub const PUNT_PROTECTED_RING: u32 = 1024;
/// Of them, what HA (sync) datagrams may fill: three quarters, so a
/// sender on the sync link, within the HA class's rate, always leaves a
/// quarter for ARP and the VRRP adverts.
pub const PUNT_HA_SHARE: usize = 768;
/// Next hops (neighbour slots).
pub const MAX_NEXTHOPS: usize = 4096;
