//! The first look at an IPv6 frame (RFC 8200): the fixed header and the
//! extension-header chain validated, what the box does not walk or serve
//! dropped under a name, Neighbor Discovery and ICMPv6 for the box punted
//! to the control lcore (its `nd` module answers).

use super::{Shard, Verdict};
use crate::state::counters::DropReason;
use crate::state::snapshot::Snapshot;
use crate::wire::icmpv6::{kind, Icmpv6Packet, ND_HOP_LIMIT};
use crate::wire::ipv6::{next_header, Ipv6Packet};
use crate::wire::WireError;

/// ff00::/8 (RFC 4291 §2.7).
#[inline]
pub(super) fn is_multicast6(a: u128) -> bool {
    a >> 120 == 0xff
}

/// ::ffff:0:0/96, an IPv4-mapped address (RFC 4291 §2.5.5.2).
#[inline]
pub(super) fn is_mapped(a: u128) -> bool {
    a >> 32 == 0xffff
}

fn ipv6_drop(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Ipv6Truncated,
        WireError::BadVersion => DropReason::Ipv6BadVersion,
        _ => DropReason::Ipv6BadPayloadLength,
    }
}

impl Shard {
    /// An IPv6 frame that arrived on `link`, its header at `l3`.
    pub(super) fn process_v6(&mut self, snap: &Snapshot, frame: &[u8], l3: usize, link: u16, from_host: bool) -> Verdict {
        // The appliance's own stack speaks IPv4 (the exception path).
        if from_host {
            return Verdict::Drop(DropReason::HostUnmatched);
        }
        let Some(bytes) = frame.get(l3..) else { return Verdict::Drop(DropReason::Ipv6Truncated) };
        let ip = match Ipv6Packet::new_checked(bytes) {
            Ok(ip) => ip,
            Err(e) => return Verdict::Drop(ipv6_drop(e)),
        };
        let (src, dst) = (u128::from(ip.src_addr()), u128::from(ip.dst_addr()));
        if is_multicast6(src) || is_mapped(src) || is_mapped(dst) {
            return Verdict::Drop(DropReason::Ipv6BadAddress);
        }
        let Ok(chain) = ip.walk() else { return Verdict::Drop(DropReason::Ipv6BadChain) };
        // Fragments are not reassembled, as for IPv4 (README, "Fragments").
        if chain.is_fragment() {
            return Verdict::Drop(DropReason::Fragment);
        }
        if chain.segments_left != 0 {
            return Verdict::Drop(DropReason::Ipv6RoutingHeader);
        }
        let Some(l4) = ip.payload().get(chain.offset..) else { return Verdict::Drop(DropReason::Ipv6BadChain) };
        let ours = snap.is_self6(dst);
        match chain.proto {
            next_header::ICMPV6 => icmp6_verdict(snap, link, ip.hop_limit(), dst, l4),
            // RFC 8200 §8.1: a zero UDP checksum is invalid over IPv6.
            next_header::UDP if l4.get(6..8) == Some(&[0, 0][..]) => Verdict::Drop(DropReason::UdpZeroChecksum),
            next_header::UDP if l4.len() < 8 => Verdict::Drop(DropReason::UdpTruncated),
            next_header::TCP if l4.len() < 20 => Verdict::Drop(DropReason::TcpTruncated),
            // A port of a self address nothing listens on (`other`).
            next_header::TCP | next_header::UDP if ours => Verdict::Punt,
            _ if ours => Verdict::Drop(DropReason::UnhandledProtocol),
            _ => Verdict::Drop(DropReason::NoVirtualServer),
        }
    }
}

/// What becomes of an ICMPv6 message to `dst` that arrived on `link`
/// with hop limit `hops`: Neighbor Discovery for the box punted after
/// RFC 4861 §7.1's checks the worker can make (hop limit 255, code 0, to
/// an address of the link: the control lcore checks the rest), echo and
/// errors to a self address punted, router and multicast-listener
/// messages ignored.
#[inline]
fn icmp6_verdict(snap: &Snapshot, link: u16, hops: u8, dst: u128, l4: &[u8]) -> Verdict {
    use kind as t;
    let Ok(m) = Icmpv6Packet::new_checked(l4) else { return Verdict::Drop(DropReason::IcmpTruncated) };
    match m.msg_type() {
        t::NEIGHBOR_SOLICIT | t::NEIGHBOR_ADVERT if hops != ND_HOP_LIMIT || m.msg_code() != 0 => Verdict::Drop(DropReason::NdInvalid),
        t::NEIGHBOR_SOLICIT | t::NEIGHBOR_ADVERT if snap.nd_for_us(link, dst) => Verdict::Punt,
        t::NEIGHBOR_SOLICIT | t::NEIGHBOR_ADVERT => Verdict::Drop(DropReason::NdNotOurs),
        t::ECHO_REQUEST | t::ECHO_REPLY if snap.is_self6(dst) => Verdict::Punt,
        // Errors about the box's own traffic (RFC 4443 §2.1: types below
        // 128).
        ty if ty < 128 && snap.is_self6(dst) => Verdict::Punt,
        ty if ty < 128 => Verdict::Drop(DropReason::IcmpNoFlow),
        _ if snap.is_self6(dst) || is_multicast6(dst) => Verdict::Drop(DropReason::Icmpv6Ignored),
        _ => Verdict::Drop(DropReason::NoVirtualServer),
    }
}

#[cfg(test)]
mod tests;
