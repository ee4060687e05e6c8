//! Which worker owns a connection: a key both directions share.

use crate::forward as nat;
use crate::state::snapshot::Snapshot;

/// Which worker owns the connection of a packet: a key both directions
/// share (design.md): the client's address and port, or for replies to a
/// full-NAT local address the local port, partitioned per worker.
#[inline]
pub fn owner(snap: &Snapshot, workers: u16, src: u32, sport: u16, dst: u32, dport: u16, proto: u8) -> u16 {
    if workers <= 1 {
        return 0;
    }
    // Probe replies (ports from `nat::PROBE_PORT_MIN`) are the control
    // plane's, not a full-NAT connection's: hashed like other traffic, and
    // punted by whichever worker gets them.
    if snap.is_local(dst) && (nat::LOCAL_PORT_MIN..=nat::LOCAL_PORT_MAX).contains(&dport) {
        return dport % workers;
    }
    // With `source-ip` persistence every connection of a client (under the
    // netmask) must meet its record on one worker: the client address
    // alone is the key (`persist` has the trade-off).
    let (ip, port) = match snap.owner_service(dst, dport, proto) {
        Some(vs) => match snap.services.get(vs as usize).and_then(|v| v.persistence).and_then(|p| p.owner_mask()) {
            Some(mask) => (src & mask, 0),
            None => (src, sport),
        },
        None => match snap.reply_owner_mask(src, sport, proto) {
            Some(mask) => (dst & mask, 0),
            None => (dst, dport),
        },
    };
    // splitmix64's finaliser: every input bit reaches the result (Linux
    // hands out even ephemeral ports to connect(), so a weak mix would send
    // every connection of a client to one worker).
    let mut x = (ip as u64) << 16 | port as u64;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x % workers as u64) as u16
}
