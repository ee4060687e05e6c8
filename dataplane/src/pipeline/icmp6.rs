//! ICMPv6 errors through the box (RFC 4443 §2.1: types below 128), not to
//! it: about a tracked IPv6 connection, translated for the other side as
//! `icmp` does for IPv4 (RFC 5508 §4's rules; Packet Too Big first, so a
//! client's or a server's path MTU discovery works through the box); for
//! `dsr-l2`, an error about the server's packet to the client goes to the
//! server by its MAC, untouched.

use super::family::Net;
use super::{Shard, Verdict};
use crate::conntrack::{Dir, FlowKey, Forwarding};
use crate::state::counters::DropReason;
use crate::state::snapshot::Snapshot;
use crate::wire::ethernet::{EthernetAddress, EthernetFrame};
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::ipv6::{self, next_header, Ipv6Packet};

/// An ICMPv6 error in its frame: the outer header at `l3`, the message at
/// `msg` to `end`, the quoted packet's transport header at `quote_l4`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Error6 {
    pub(super) l3: usize,
    pub(super) msg: usize,
    pub(super) end: usize,
    pub(super) src: u128,
    pub(super) dst: u128,
    pub(super) hops: u8,
    pub(super) link: u16,
}

/// The quoted packet's addresses, transport and ports, and where its
/// transport header is in the frame.
#[derive(Debug, Clone, Copy)]
struct Quote6 {
    src: u128,
    dst: u128,
    proto: u8,
    sport: u16,
    dport: u16,
    seq: u32,
    l4: usize,
}

fn quote(frame: &[u8], e: &Error6) -> Option<Quote6> {
    let at = e.msg + icmpv6::HEADER_LEN;
    let ip = Ipv6Packet::new_embedded(frame.get(at..e.end)?).ok()?;
    let chain = ip.walk().ok()?;
    let l4 = ip.payload().get(chain.offset..)?;
    let &[s0, s1, d0, d1, q0, q1, q2, q3] = l4.get(..8)? else { return None };
    let (src, dst) = (u128::from(ip.src_addr()), u128::from(ip.dst_addr()));
    Some(Quote6 { src, dst, proto: chain.proto, sport: u16::from_be_bytes([s0, s1]), dport: u16::from_be_bytes([d0, d1]), seq: u32::from_be_bytes([q0, q1, q2, q3]), l4: at + ipv6::HEADER_LEN + chain.offset })
}

impl Shard<u128> {
    /// An ICMPv6 error not to the box: checked, to its connection's owner,
    /// translated or delivered; to nobody's connection, dropped.
    pub(super) fn icmp6_error(&mut self, snap: &Snapshot, frame: &mut [u8], e: &Error6, handed: bool) -> Verdict {
        let Some(q) = quote(frame, e).filter(|q| q.proto == next_header::TCP || q.proto == next_header::UDP) else { return Verdict::Drop(DropReason::IcmpBadEmbedded) };
        // An error goes to the sender of the packet it quotes (RFC 4443
        // §2.2): any other destination would make the box reflect it.
        if e.dst != q.src {
            return Verdict::Drop(DropReason::IcmpBadEmbedded);
        }
        // What can be about no connection of the box's goes before it costs
        // a checksum or a hand-off: the quote is from a VIP or a local
        // address, or to a server.
        if !(snap.is_server6(q.dst) || snap.is_local6(q.src) || snap.owner_service6(q.src, q.sport, q.proto).is_some()) {
            return Verdict::Drop(DropReason::IcmpNoFlow);
        }
        let Some(msg) = frame.get(e.msg..e.end) else { return Verdict::Drop(DropReason::IcmpTruncated) };
        // Rewritten and its checksum refilled: verified first.
        if !Icmpv6Packet::new_unchecked(msg).verify_checksum(e.src.into(), e.dst.into()) {
            return Verdict::Drop(DropReason::IcmpBadChecksum);
        }
        // The quoted packet is one the box sent; its reverse is a key.
        let key = FlowKey { src_ip: q.dst, dst_ip: q.src, src_port: q.dport, dst_port: q.sport, proto: q.proto };
        if !handed && self.config.workers > 1 {
            let p = super::L4Info { l3: 0, hl: 0, proto: q.proto, src: key.src_ip, dst: key.dst_ip, sport: key.src_port, dport: key.dst_port, tcp_flags: 0, ip_len: 0, seg: Default::default() };
            let o = self.owner6(snap, &p);
            if o != self.config.id {
                return Verdict::Handoff(o);
            }
        }
        let Some((id, dir)) = self.lookup_live(snap, &key, self.table.hash(&key)) else { return Verdict::Drop(DropReason::IcmpNoFlow) };
        let Some(f) = self.table.get(id).copied() else { return Verdict::Drop(DropReason::IcmpNoFlow) };
        // A translated connection's other side is IPv4: only Packet Too
        // Big from the IPv6 servers' link about a packet to a server is
        // translated, into fragmentation needed for the IPv4 client (RFC
        // 7915 §5.2; the other way round is `pipeline::icmp`).
        if f.client_ip >> 32 == 0xffff || f.server_ip >> 32 == 0xffff {
            return self.xlate_ptb(snap, frame, e, (id, dir, &f), &q);
        }
        if e.hops <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        // RFC 5927 §4.1: about a segment to the client, the quoted
        // sequence number must be one the server sent and the client has
        // not acknowledged.
        if dir == Dir::Original && q.proto == next_header::TCP && !self.table.track(id).is_none_or(|t| super::icmp::quoted_seq_plausible(&t, q.seq)) {
            return Verdict::Drop(DropReason::IcmpOutOfWindow);
        }
        // A full-NAT server's path MTU to the local address is every
        // client's: an error about a UDP datagram (which no window
        // vouches for) from the client's side could lower it for all.
        if dir == Dir::Original && q.proto == next_header::UDP && f.mode == Forwarding::FullNat {
            return Verdict::Drop(DropReason::IcmpOutOfWindow);
        }
        let server = snap.servers.get(f.server_slot());
        // An error comes from the side its quoted packet went to: the
        // server's link, or the link the client's packets come in on.
        let from_side = match dir {
            Dir::Reply => server.is_some_and(|s| s.tx_port == e.link),
            Dir::Original => u16::from(f.client_port_id) == e.link,
        };
        if !from_side {
            return Verdict::Drop(DropReason::ReplyWrongLink);
        }
        let (out_port, mac, outer, inner) = match self.error_route(server, &f, dir) {
            Ok(r) => r,
            Err(v) => return v,
        };
        let Some(out) = snap.port(out_port) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        // A link-local source that stays is not forwarded to another link
        // (RFC 4291 §2.5.6).
        let keeps_src = outer.is_none_or(|(s, _)| s.is_none());
        if keeps_src && e.src >> 118 == 0xfe80 >> 6 {
            return Verdict::Drop(DropReason::Ipv6BadAddress);
        }
        if let (Some(outer), Some(inner)) = (outer, inner) {
            if !translate(frame, e, &q, outer, inner) {
                return Verdict::Drop(DropReason::IcmpBadEmbedded);
            }
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(mac);
        eth.set_src_addr(out.mac);
        Verdict::Forward(out_port)
    }
    /// Where an error about connection `f` (its quote travelling `dir`)
    /// goes: the link and MAC, and for NAT and full-NAT the outer
    /// (source, destination) and quoted (source, destination) rewrites.
    #[allow(clippy::type_complexity, reason = "the four parts of one route, taken apart at once")]
    fn error_route(&self, server: Option<&crate::lb::RealServer>, f: &crate::conntrack::Flow<u128>, dir: Dir) -> Result<(u16, EthernetAddress, Option<(Option<u128>, Option<u128>)>, Option<((u128, u16), (u128, u16))>), Verdict> {
        Ok(match (dir, f.mode) {
            // About the server's packet to the client (MAT: sent from the
            // VIP): to the server as the connection's data goes.
            (Dir::Original, Forwarding::DsrL2) => {
                let Some(s) = server else { return Err(Verdict::Drop(DropReason::NoServer)) };
                let Some(m) = self.neighbors.get(s.nexthop) else { return Err(Verdict::Drop(DropReason::NeighborUnresolved)) };
                (s.tx_port, m, None, None)
            }
            // About a packet sent to the server: to the client, as if the
            // VIP had sent it back.
            (Dir::Reply, Forwarding::Nat | Forwarding::FullNat) => {
                let outer_dst = (f.mode == Forwarding::FullNat).then_some(f.client_ip);
                (f.client_port_id as u16, EthernetAddress(f.client_mac), Some((Some(f.vip), outer_dst)), Some(((f.client_ip, f.client_port), (f.vip, f.vport))))
            }
            // About a packet sent to the client: to the server.
            (Dir::Original, Forwarding::Nat | Forwarding::FullNat) => {
                let Some(s) = server else { return Err(Verdict::Drop(DropReason::NoServer)) };
                let Some(m) = self.neighbors.get(s.nexthop) else { return Err(Verdict::Drop(DropReason::NeighborUnresolved)) };
                let outer_src = (f.mode == Forwarding::FullNat).then_some(f.local_ip);
                (s.tx_port, m, Some((outer_src, Some(<u128 as Net>::server_ip(s)))), Some(((f.server_ip, f.server_port), (f.local_ip, f.local_port))))
            }
            _ => return Err(Verdict::Drop(DropReason::IcmpNoFlow)),
        })
    }
}

/// Rewrites an ICMPv6 error for the other side: the quoted packet's
/// addresses and ports to `inner` (source, destination), the outer
/// addresses (`None` keeps one), the hop limit down by one, and the
/// ICMPv6 checksum refilled over the new pseudo header (the message was
/// verified). False when the quote's ports lie outside the frame.
fn translate(frame: &mut [u8], e: &Error6, q: &Quote6, (outer_src, outer_dst): (Option<u128>, Option<u128>), ((isrc, isport), (idst, idport)): ((u128, u16), (u128, u16))) -> bool {
    let qat = e.msg + icmpv6::HEADER_LEN;
    if q.l4 + 4 > e.end || qat + ipv6::HEADER_LEN > e.end {
        return false;
    }
    let put = |frame: &mut [u8], at: usize, b: &[u8]| frame.get_mut(at..at + b.len()).map(|d| d.copy_from_slice(b)).is_some();
    let ok = put(frame, qat + 8, &isrc.to_be_bytes())
        && put(frame, qat + 24, &idst.to_be_bytes())
        && put(frame, q.l4, &isport.to_be_bytes())
        && put(frame, q.l4 + 2, &idport.to_be_bytes());
    if !ok {
        return false;
    }
    let Some(ip) = frame.get_mut(e.l3..e.end) else { return false };
    let mut ip = Ipv6Packet::new_unchecked(ip);
    if let Some(s) = outer_src {
        ip.set_src_addr(s.into());
    }
    if let Some(d) = outer_dst {
        ip.set_dst_addr(d.into());
    }
    ip.set_hop_limit(e.hops.saturating_sub(1));
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let Some(msg) = frame.get_mut(e.msg..e.end) else { return false };
    Icmpv6Packet::new_unchecked(msg).fill_checksum(src, dst);
    true
}

impl Shard<u128> {
    /// `icmp6_error` for a translated connection (see there): Packet Too
    /// Big becomes `Verdict::XlateError`, fragmentation needed with the MTU
    /// less 20 (RFC 7915 §5.2; at least 68, at most the next link's), for
    /// the IPv4 end of the connection: about a packet the box sent an IPv6
    /// server (local -> server), from the servers' link, to the IPv4
    /// client; about one it sent an IPv6 client (VIP -> client), from the
    /// client's link and for TCP with a sequence number in flight (RFC
    /// 5927), to the IPv4 server. Neither header may have extension
    /// headers (`xlate-headers`); anything else is not relayed.
    fn xlate_ptb(&self, snap: &Snapshot, frame: &[u8], e: &Error6, (id, dir, f): (crate::conntrack::FlowId, Dir, &crate::conntrack::Flow<u128>), q: &Quote6) -> Verdict {
        let no = Verdict::Drop(DropReason::IcmpXlateNotRelayed);
        if frame.get(e.msg).copied() != Some(icmpv6::kind::PACKET_TOO_BIG) {
            return no;
        }
        let Some(server) = snap.servers.get(f.server_slot()) else { return no };
        let (to_client, from) = match dir {
            Dir::Reply if f.client_ip >> 32 == 0xffff => (true, server.tx_port),
            Dir::Original if f.server_ip >> 32 == 0xffff => (false, u16::from(f.client_port_id)),
            _ => return no,
        };
        if from != e.link {
            return Verdict::Drop(DropReason::ReplyWrongLink);
        }
        if !to_client && (q.proto == next_header::UDP || !self.table.track(id).is_none_or(|t| super::icmp::quoted_seq_plausible(&t, q.seq))) {
            return Verdict::Drop(DropReason::IcmpOutOfWindow);
        }
        if e.msg != e.l3 + ipv6::HEADER_LEN || q.l4 != e.msg + icmpv6::HEADER_LEN + ipv6::HEADER_LEN {
            return Verdict::Drop(DropReason::XlateHeaders);
        }
        let Some(&[a, b, c, d]) = frame.get(e.msg + 4..e.msg + 8) else { return no };
        let mtu6 = u32::from_be_bytes([a, b, c, d]);
        let port = if to_client { u16::from(f.client_port_id) } else { server.tx_port };
        let link_mtu = snap.port(port).map_or(1500, |p| p.mtu);
        let mtu = u16::try_from(mtu6.saturating_sub(crate::forward::xlate::DELTA as u32)).unwrap_or(u16::MAX).min(link_mtu).max(68);
        // The quoted packet's transport bytes, after its 40-byte header.
        let n = e.end.saturating_sub(q.l4);
        Verdict::XlateError(super::XlateError { id, port, l3: e.l3 as u8, hl: 40, qhl: 40, n: n.min(usize::from(u16::MAX)) as u16, mtu, to4: true, to_server: !to_client })
    }
}
