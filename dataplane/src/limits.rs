//! Upper bounds the snapshot, the counters and the control plane share, so
//! per-worker arrays are sized once.

/// Virtual servers (snapshot slots, live and retired).
pub const MAX_SERVICES: usize = 256;
/// Real servers (snapshot slots, live and retired).
pub const MAX_SERVERS: usize = 4096;
/// Next hops (neighbour slots).
pub const MAX_NEXTHOPS: usize = 4096;
