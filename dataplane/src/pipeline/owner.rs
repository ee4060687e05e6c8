//! Which worker owns a connection: a key both directions share.

use crate::conntrack::Addr;
use crate::ctl::events::SyncRecord;
use crate::forward as nat;
use crate::state::snapshot::Snapshot;

/// How many workers share the connections, and the per-boot key their
/// ownership hash uses (`crate::hash`); every worker has the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owners {
    pub workers: u16,
    pub key: u64,
}

impl Owners {
    pub fn new(workers: u16, key: u64) -> Self {
        Self { workers, key }
    }
}

/// Which worker owns the connection of a packet: a key both directions
/// share (docs/architecture.md, "A packet's path"): the client's address
/// and port, or for replies to a full-NAT local address the local port,
/// partitioned per worker; the appliance's own address and port for its
/// stack's connections out.
#[inline]
pub fn owner(snap: &Snapshot, owners: Owners, src: u32, sport: u16, dst: u32, dport: u16, proto: u8) -> u16 {
    let workers = owners.workers;
    if workers <= 1 {
        return 0;
    }
    // Probe replies (ports from `forward::PROBE_PORT_MIN`) are the control
    // plane's, not a full-NAT connection's: hashed like other traffic, and
    // punted by whichever worker gets them.
    if snap.is_local(dst) && (nat::LOCAL_PORT_MIN..=nat::LOCAL_PORT_MAX).contains(&dport) {
        return dport % workers;
    }
    // The appliance's own stack's connections out (`Forwarding::LocalOut`)
    // are keyed by its side: the source out, the destination back.
    if snap.is_host_source(src) && (nat::HOST_PORT_MIN..=nat::HOST_PORT_MAX).contains(&sport) {
        return (crate::hash::keyed64((src as u64) << 16 | sport as u64, owners.key) % workers as u64) as u16;
    }
    if snap.is_host_source(dst) && (nat::HOST_PORT_MIN..=nat::HOST_PORT_MAX).contains(&dport) {
        return (crate::hash::keyed64((dst as u64) << 16 | dport as u64, owners.key) % workers as u64) as u16;
    }
    // With `source-ip` persistence every connection of a client (under the
    // netmask) must meet its record on one worker: the client address
    // alone is the key (`persist` has the trade-off).
    let (ip, port) = match snap.owner_service(dst, dport, proto) {
        Some(vs) => match snap.services.get(vs as usize).and_then(|v| v.persistence).and_then(|p| p.owner_prefix()) {
            Some(prefix) => (src.masked(prefix), 0),
            None => (src, sport),
        },
        None => match snap.reply_owner_prefix(src, sport, proto) {
            Some(prefix) => (dst.masked(prefix), 0),
            None => (dst, dport),
        },
    };
    // Keyed (`crate::hash`), and every input bit reaches the result (Linux
    // hands out even ephemeral ports to connect(), so a weak mix would send
    // every connection of a client to one worker).
    let x = crate::hash::keyed64((ip as u64) << 16 | port as u64, owners.key);
    (x % workers as u64) as u16
}

/// Which worker here owns the connection (or persistence record) of a
/// state-sync record from the HA peer: `owner` of its client-side key, as
/// the classify path computes it for the connection's packets, so the
/// control plane pushes the record into that worker's installs ring. Both
/// boxes agree when they share the hash key and the worker count.
#[inline]
pub fn owner_of(snap: &Snapshot, owners: Owners, rec: &SyncRecord) -> u16 {
    owner(snap, owners, rec.client_ip, rec.client_port, rec.vip, rec.vport, rec.proto)
}
