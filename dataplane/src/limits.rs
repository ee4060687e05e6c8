//! Upper bounds the snapshot, the counters and the control plane share, so
//! per-worker arrays are sized once.

/// Virtual servers (snapshot slots, live and retired).
pub const MAX_SERVICES: usize = 256;
/// Real servers (snapshot slots, live and retired): every `u16` index
/// (`VirtualService::members`, a connection entry's `server`). Source-NAT
/// and outbound entries belong to no virtual server (`vs` is
/// `pipeline::snat::NO_INDEX`), which is what tells them apart
/// (`Flow::server_slot`), not their `server`: their traffic is counted
/// on no server's slot. What it costs (README, "Limits"): per worker 56 B a
/// slot for the servers' counters (`WorkerCounters::servers`, 3.5 MiB,
/// all allocated at start); once 32 B a slot for `lb::Loads` (2 MiB);
/// the snapshot, the health engine and ARP hold only the configured
/// servers.
pub const MAX_SERVERS: usize = 65_536;
/// Slots of each worker's protected punt ring (ARP, VRRP, HA).
pub const PUNT_PROTECTED_RING: u32 = 1024;
/// Of them, what HA (sync) datagrams may fill: three quarters, so a
/// sender on the sync link, within the HA class's rate, always leaves a
/// quarter for ARP and the VRRP adverts.
pub const PUNT_HA_SHARE: usize = 768;
/// Next hops (neighbour slots, `u16` indexes): an on-link server is its
/// own next hop, so as many as servers; 8 B a slot in `Neighbors`.
pub const MAX_NEXTHOPS: usize = 65_536;
