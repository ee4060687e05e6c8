//! The first look at an IPv6 frame (RFC 8200): the fixed header and the
//! extension-header chain validated, what the box does not walk or serve
//! dropped under a name, Neighbor Discovery and ICMPv6 for the box punted
//! to the control lcore (its `nd` module answers).

use super::family::Net;
use super::{L4Info, Shard, Verdict};
use crate::conntrack::{Dir, FlowKey, FlowState, Segment};
use crate::state::counters::DropReason;
use crate::state::snapshot::Snapshot;
use crate::wire::tcp::{flags as tcpf, TcpPacket};
use crate::wire::udp::UdpPacket;
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
    pub(super) fn process_v6(&mut self, snap: &Snapshot, frame: &mut [u8], (l3, link): (usize, u16), handed: bool, from_host: bool) -> Verdict {
        // The appliance's own stack speaks IPv4 (the exception path): its
        // kernel's IPv6 chatter (router solicitations, listener reports) is
        // not the box's to handle.
        if from_host {
            return Verdict::Drop(DropReason::UnhandledEthertype);
        }
        let Some(bytes) = frame.get(l3..) else { return Verdict::Drop(DropReason::Ipv6Truncated) };
        let ip = match Ipv6Packet::new_checked(bytes) {
            Ok(ip) => ip,
            Err(e) => return Verdict::Drop(ipv6_drop(e)),
        };
        let (src, dst) = (u128::from(ip.src_addr()), u128::from(ip.dst_addr()));
        if is_multicast6(src) || is_mapped(src) || is_mapped(dst) || src == 1 || dst == 1 {
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
        let (hops, proto) = (ip.hop_limit(), chain.proto);
        let (hl, ip_len) = (super::super::wire::ipv6::HEADER_LEN + chain.offset, super::super::wire::ipv6::HEADER_LEN + usize::from(ip.payload_len()));
        match proto {
            // An error (RFC 4443 §2.1) about a connection through the box
            // (to a client, a full-NAT local address or a VIP) is
            // translated; one about none to a self address is the box's.
            next_header::ICMPV6 if l4.first().is_some_and(|t| *t < 128) && self.v6.is_some() && Icmpv6Packet::new_checked(l4).is_ok() => {
                let e = super::icmp6::Error6 { l3, msg: hl + l3, end: l3 + ip_len, src, dst, hops, link };
                match self.v6.as_mut().map(|v6| v6.icmp6_error(snap, frame, &e, handed)) {
                    Some(Verdict::Drop(DropReason::IcmpNoFlow)) if ours => Verdict::Punt,
                    Some(v) => v,
                    None => Verdict::Drop(DropReason::IcmpNoFlow),
                }
            }
            next_header::ICMPV6 => icmp6_verdict(snap, link, (hops, chain.headers), dst, l4),
            // RFC 8200 §8.1: a zero UDP checksum is invalid over IPv6.
            next_header::UDP if l4.get(6..8) == Some(&[0, 0][..]) => Verdict::Drop(DropReason::UdpZeroChecksum),
            next_header::TCP | next_header::UDP => {
                let (sport, dport, tcp_flags, seg) = match transport(proto, l4) {
                    Ok(t) => t,
                    Err(reason) => return Verdict::Drop(reason),
                };
                let info = L4Info { l3, hl, proto, src, dst, sport, dport, tcp_flags, ip_len, seg };
                match self.v6.as_mut() {
                    // Neither end may be unspecified or link-local on the
                    // flow path (RFC 4291 §2.5.2, §2.5.6: never forwarded).
                    Some(_) if !ours && (src == 0 || dst == 0 || is_link_local(src) || is_link_local(dst)) => Verdict::Drop(DropReason::Ipv6BadAddress),
                    Some(v6) => v6.flow(snap, frame, &info, (link, hops), handed, ours),
                    // A port of a self address nothing listens on (`other`).
                    None if ours => Verdict::Punt,
                    None => Verdict::Drop(DropReason::NoVirtualServer),
                }
            }
            _ if ours => Verdict::Drop(DropReason::UnhandledProtocol),
            _ => Verdict::Drop(DropReason::NoVirtualServer),
        }
    }
}

/// fe80::/10 (RFC 4291 §2.5.6).
#[inline]
fn is_link_local(a: u128) -> bool {
    a >> 118 == 0xfe80 >> 6
}

/// The ports, TCP flags and sequence numbers of a TCP or UDP header; the
/// drop (as for IPv4) when it is cut short or its lengths are wrong.
#[inline]
fn transport(proto: u8, l4: &[u8]) -> Result<(u16, u16, u8, Segment), DropReason> {
    if proto == next_header::TCP {
        match TcpPacket::new_checked(l4) {
            Ok(t) => Ok((t.src_port(), t.dst_port(), t.flags(), super::classify::segment(&t))),
            Err(WireError::Truncated) => Err(DropReason::TcpTruncated),
            Err(_) => Err(DropReason::TcpBadHeaderLength),
        }
    } else {
        match UdpPacket::new_checked(l4) {
            Ok(u) => Ok((u.src_port(), u.dst_port(), 0, Segment::default())),
            Err(WireError::Truncated) => Err(DropReason::UdpTruncated),
            Err(_) => Err(DropReason::UdpBadLength),
        }
    }
}

impl Shard<u128> {
    /// An IPv6 TCP/UDP packet on the flow path (the IPv6 shard): its
    /// owner, then its connection (the lookup) or a new one to a virtual
    /// server. `ours`: to a self address.
    pub(super) fn flow(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info<u128>, (link, hops): (u16, u8), handed: bool, ours: bool) -> Verdict {
        // What can match nothing goes before it costs a hand-off: to none
        // of the box's IPv6 services, local or self addresses, and from
        // none of its IPv6 servers (a NAT answer).
        let served = ours || snap.is_local6(p.dst) || snap.owner_service6(p.dst, p.dport, p.proto).is_some() || snap.is_server6(p.src);
        if !served {
            return Verdict::Drop(DropReason::NoVirtualServer);
        }
        if !handed && self.config.workers > 1 {
            let o = self.owner6(snap, p);
            if o != self.config.id {
                return Verdict::Handoff(o);
            }
        }
        // RFC 8200 §3: forwarding takes the hop limit down, and never to 0.
        if hops <= 1 && !ours {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let key = FlowKey { src_ip: p.src, dst_ip: p.dst, src_port: p.sport, dst_port: p.dport, proto: p.proto };
        let hash = self.key_hash(&key);
        let mut found = self.lookup_live(snap, &key, hash);
        if found.is_some() && p.proto == next_header::TCP && p.tcp_flags & (tcpf::SYN | tcpf::FIN | tcpf::RST) != 0 && !<u128 as Net>::l4_checksum_ok(frame, p) {
            return Verdict::Drop(DropReason::L4BadChecksum);
        }
        // A new SYN on a closing entry reuses the client port (RFC 9293
        // §3.6.1): a new connection, as `classify` does for IPv4.
        if let Some((id, Dir::Original)) = found {
            let closing = self.table.get(id).is_some_and(|f| matches!(f.state, FlowState::TimeWait | FlowState::Close));
            if closing && p.tcp_flags & (tcpf::SYN | tcpf::ACK) == tcpf::SYN {
                self.remove(snap, id);
                found = None;
            }
        }
        let standby = |vs: u16| snap.services.get(vs as usize).is_some_and(|v| v.standby);
        match found {
            Some((id, _)) if self.table.get(id).is_some_and(|f| standby(f.vs)) => Verdict::Drop(DropReason::VrrpBackup),
            Some((id, Dir::Original)) => self.forward_original(snap, frame, p, id),
            Some((id, Dir::Reply)) if !self.table.get(id).is_none_or(|f| f.mode.is_dsr() || snap.servers.get(f.server_slot()).is_none_or(|s| s.tx_port == link)) => Verdict::Drop(DropReason::ReplyWrongLink),
            Some((id, Dir::Reply)) => self.forward_reply(snap, frame, p, id),
            None => match <u128 as Net>::find_service(snap, p.dst, p.dport, p.proto) {
                Some(vs) if standby(vs) => Verdict::Drop(DropReason::VrrpBackup),
                Some(_) if snap.is_self6(p.src) || snap.is_local6(p.src) || snap.is_vip6(p.src) => Verdict::Drop(DropReason::OwnSource),
                Some(vs) => self.new_connection(snap, frame, p, vs, link),
                None if ours || snap.is_local6(p.dst) => Verdict::Punt,
                None => Verdict::Drop(DropReason::NoVirtualServer),
            },
        }
    }

    /// Which worker owns an IPv6 connection: as `owner` for IPv4, keyed by
    /// the client's address and port, or by the local address and port of
    /// a full-NAT reply (`LocalPorts` hands each worker the ports of its
    /// share). IPv6's packets are not steered by the ports' RSS yet: they
    /// reach the owner by hand-off.
    #[inline]
    pub(super) fn owner6(&self, snap: &Snapshot, p: &L4Info<u128>) -> u16 {
        use crate::conntrack::Addr;
        let (a, port) = if snap.is_local6(p.dst) && (crate::forward::LOCAL_PORT_MIN..=crate::forward::LOCAL_PORT_MAX).contains(&p.dport) {
            (p.dst, p.dport)
        } else if let Some(vs) = snap.owner_service6(p.dst, p.dport, p.proto) {
            // `source-ip` persistence: every connection of the client's
            // prefix on one worker, where its record is (as `owner`).
            match snap.services.get(vs as usize).and_then(|v| v.persistence).and_then(|p| p.owner_prefix()) {
                Some(prefix) => (p.src.masked(prefix), 0),
                None => (p.src, p.sport),
            }
        } else {
            match snap.reply_owner_prefix6(p.src, p.sport, p.proto) {
                Some(prefix) => (p.dst.masked(prefix), 0),
                None => (p.dst, p.dport),
            }
        };
        self.owners.worker(crate::conntrack::Addr::steer_word(a), port)
    }
}

/// What becomes of an ICMPv6 message to `dst` that arrived on `link`
/// with hop limit `hops` behind `headers` extension headers: Neighbor
/// Discovery for the box punted after RFC 4861 §7.1's checks the worker
/// can make (hop limit 255, code 0, no extension header, to an address of
/// the link: the control lcore checks the rest), echo and
/// errors to a self address punted, router and multicast-listener
/// messages ignored.
#[inline]
fn icmp6_verdict(snap: &Snapshot, link: u16, (hops, headers): (u8, u8), dst: u128, l4: &[u8]) -> Verdict {
    use kind as t;
    let Ok(m) = Icmpv6Packet::new_checked(l4) else { return Verdict::Drop(DropReason::IcmpTruncated) };
    match m.msg_type() {
        // RFC 6980 §5: Neighbor Discovery behind extension headers (a
        // fragment header among them) is not taken.
        t::NEIGHBOR_SOLICIT | t::NEIGHBOR_ADVERT if hops != ND_HOP_LIMIT || m.msg_code() != 0 || headers != 0 => Verdict::Drop(DropReason::NdInvalid),
        t::NEIGHBOR_SOLICIT | t::NEIGHBOR_ADVERT if snap.nd_for_us(link, dst) => Verdict::Punt,
        t::NEIGHBOR_SOLICIT | t::NEIGHBOR_ADVERT => Verdict::Drop(DropReason::NdNotOurs),
        t::ECHO_REQUEST | t::ECHO_REPLY if snap.is_self6(dst) => Verdict::Punt,
        // (A VIP answers pings as the box's own addresses do.)
        t::ECHO_REQUEST if snap.is_vip6(dst) => Verdict::Punt,
        // Errors about the box's own traffic (RFC 4443 §2.1: types below
        // 128).
        ty if ty < 128 && snap.is_self6(dst) => Verdict::Punt,
        ty if ty < 128 => Verdict::Drop(DropReason::IcmpNoFlow),
        // A multicast listener query (RFC 3810 §5.1.14: hop limit 1, behind
        // its Router Alert) on a link with IPv6: answered with a report.
        t::MLD_QUERY if hops == 1 && headers != 0 && snap.port(link).is_some_and(|p| p.v6.is_on()) && (is_multicast6(dst) || snap.is_self6(dst)) => Verdict::Punt,
        _ if snap.is_self6(dst) || is_multicast6(dst) => Verdict::Drop(DropReason::Icmpv6Ignored),
        _ => Verdict::Drop(DropReason::NoVirtualServer),
    }
}

#[cfg(test)]
mod tests;
