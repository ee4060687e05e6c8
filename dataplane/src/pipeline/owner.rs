//! Which worker owns a connection: a key both directions share.

use crate::conntrack::Addr;
use crate::ctl::events::SyncRecord;
use crate::forward as nat;
use crate::state::snapshot::Snapshot;

/// How many workers share the connections and where the ports' RSS puts
/// each one (`crate::rss`): the worker that receives a connection's packets
/// is the one that owns it, wherever the device steers by the keys and
/// RETA Furiwake gave it; elsewhere the packets are handed over. Built from
/// the ownership key (`WorkerConfig::owner_key`), the same in every worker.
pub type Owners = crate::rss::Steering;

/// Which worker owns the connection of a packet: the worker whose RX
/// queue the ports' RSS puts the connection's client side on
/// (docs/architecture.md, "A packet's path"): the client's address and
/// port, or for replies to a full-NAT local address the local address and
/// port (chosen so that they map to the client's worker,
/// `forward::LocalPorts`); the appliance's own address and port for its
/// stack's connections out.
#[inline]
pub fn owner(snap: &Snapshot, owners: &Owners, src: u32, sport: u16, dst: u32, dport: u16, proto: u8) -> u16 {
    if owners.workers() <= 1 {
        return 0;
    }
    // Probe replies (ports from `forward::PROBE_PORT_MIN`) are the control
    // plane's, not a full-NAT connection's: steered like other traffic, and
    // punted by whichever worker gets them.
    if snap.is_local(dst) && (nat::LOCAL_PORT_MIN..=nat::LOCAL_PORT_MAX).contains(&dport) {
        return owners.worker(dst, dport);
    }
    // A translated connection's reply to its local address (`xlate`): the
    // IPv6 shard's ports of that address are steered as IPv4 full-NAT's
    // (whatever a NAT service's persistence says of the server).
    if (super::xlate::XLATE_PORT_MIN..=nat::LOCAL_PORT_MAX).contains(&dport) && snap.is_local6(nat::xlate::mapped(dst)) {
        return owners.worker(dst, dport);
    }
    // The appliance's own stack's connections out (`Forwarding::LocalOut`)
    // are keyed by its side: the source out, the destination back.
    if snap.is_host_source(src) && (nat::HOST_PORT_MIN..=nat::HOST_PORT_MAX).contains(&sport) {
        return owners.worker(src, sport);
    }
    if snap.is_host_source(dst) && (nat::HOST_PORT_MIN..=nat::HOST_PORT_MAX).contains(&dport) {
        return owners.worker(dst, dport);
    }
    // With `source-ip` persistence every connection of a client (under the
    // netmask) must meet its record on one worker: the client address
    // alone is the key (`persist` has the trade-off; RSS spreads the
    // client's connections, so they are handed over).
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
    owners.worker(ip, port)
}

/// Which worker here owns the connection (or persistence record) of a
/// state-sync record from the HA peer: `owner` of its client-side key, as
/// the classify path computes it for the connection's packets, so the
/// control plane pushes the record into that worker's installs ring. Both
/// boxes agree when they share the ownership key and the worker count.
#[inline]
pub fn owner_of(snap: &Snapshot, owners: &Owners, rec: &SyncRecord) -> u16 {
    owner(snap, owners, rec.client_ip, rec.client_port, rec.vip, rec.vport, rec.proto)
}
