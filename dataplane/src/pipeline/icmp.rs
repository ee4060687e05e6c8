//! ICMP through the box: echo to it is punted, errors about a tracked
//! connection are translated (RFC 792; RFC 5508 §4 for what a NAT does
//! with them) or, for direct server return, delivered the way the mode
//! delivers data; errors about a `dsr-tunnel`'s outer packet are relayed
//! to the client (RFC 2003 §4).

use super::owner::owner;
use super::{Encap, Shard, Verdict};
use crate::conntrack::track::PROXY_OPEN;
use crate::conntrack::{Dir, EntryFlags, Flow, FlowKey};
use crate::forward as nat;
use crate::state::counters::DropReason;
use crate::state::snapshot::{Forwarding, Snapshot};

use crate::wire::ethernet::{EthernetAddress, EthernetFrame};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::tunnel::{GRE_LEN, UDP_LEN};

/// RFC 791: every host takes datagrams of 68 bytes unfragmented; a relayed
/// MTU never goes below it.
const MIN_MTU: u16 = 68;

/// An ICMP fragmentation needed about a `dsr-tunnel` packet, to relay to
/// the client (`Verdict::Relay`): the client's quoted packet was moved to
/// `l3`; `process_packet` turns it into fragmentation needed with `mtu`
/// (`forward::build_frag_needed`, from the VIP) and sends it out of the
/// client's `link` to its `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay {
    pub link: u16,
    pub mac: EthernetAddress,
    pub l3: u8,
    pub hl: u8,
    pub mtu: u16,
}

/// The IPv4 header an ICMP error quotes, and the first 8 bytes after it
/// (TCP/UDP ports; TCP's sequence number).
#[derive(Debug, Clone, Copy)]
struct Quote {
    src: u32,
    dst: u32,
    proto: u8,
    hl: usize,
    sport: u16,
    dport: u16,
    seq: u32,
}

impl Quote {
    /// `b` starts at the quoted header: at least the header and 8 bytes
    /// (RFC 792; `Ipv4Packet::new_embedded`).
    fn parse(b: &[u8]) -> Option<Quote> {
        let ip = Ipv4Packet::new_embedded(b).ok()?;
        let &[s0, s1, d0, d1, q0, q1, q2, q3] = ip.payload().get(..8)? else { return None };
        let (sport, dport) = (u16::from_be_bytes([s0, s1]), u16::from_be_bytes([d0, d1]));
        Some(Quote { src: ip.src_addr().into(), dst: ip.dst_addr().into(), proto: ip.protocol(), hl: ip.header_len(), sport, dport, seq: u32::from_be_bytes([q0, q1, q2, q3]) })
    }
}

/// Where the error sits in the frame, and what its outer header says.
#[derive(Debug, Clone, Copy)]
struct Error {
    l3: usize,
    hl: usize,
    ip_len: usize,
    src: u32,
    dst: u32,
    ttl: u8,
    link: u16,
}

impl Error {
    /// Offset of the quoted IPv4 header.
    fn quote_at(&self) -> usize {
        self.l3 + self.hl + icmp::HEADER_LEN
    }
}

impl Shard {
    /// ICMP: echo to the box is punted (the control plane answers); errors
    /// about a tracked connection go to the other side (`icmp_error`).
    pub(super) fn process_icmp(&mut self, snap: &Snapshot, frame: &mut [u8], l3: usize, hl: usize, handed: bool, link: u16) -> Verdict {
        let (src, dst, ttl, ip_len) = {
            let Some(ip) = frame.get(l3..) else { return Verdict::Drop(DropReason::Ipv4Truncated) };
            let ip = Ipv4Packet::new_unchecked(ip);
            (u32::from(ip.src_addr()), u32::from(ip.dst_addr()), ip.ttl(), ip.total_len() as usize)
        };
        let l4 = l3 + hl;
        let Some(msg) = frame.get(l4..l3 + ip_len) else { return Verdict::Drop(DropReason::IcmpTruncated) };
        let Ok(msg) = IcmpPacket::new_checked(msg) else { return Verdict::Drop(DropReason::IcmpTruncated) };
        let to_box = snap.is_self(dst) || snap.is_vip(dst);
        if !msg.is_error() {
            return if to_box && (msg.msg_type() == icmp::kind::ECHO_REQUEST || snap.is_self(dst)) {
                Verdict::Punt
            } else if to_box || snap.is_local(dst) {
                Verdict::Drop(DropReason::IcmpUnhandled)
            } else {
                // In transit (a ping through the firewalls).
                self.transit(snap, frame, l3, link, src, dst).unwrap_or(Verdict::Drop(DropReason::NoVirtualServer))
            };
        }
        // An error is rewritten with incremental checksum updates, which
        // would carry a corruption through: verify it first (the message
        // is small).
        if !nat::icmp_xlate::verify(msg.into_inner()) {
            return Verdict::Drop(DropReason::IcmpBadChecksum);
        }
        let e = Error { l3, hl, ip_len, src, dst, ttl, link };
        // The embedded datagram is one the box sent; its reverse is a key.
        let Some(q) = frame.get(e.quote_at()..l3 + ip_len).and_then(Quote::parse) else { return Verdict::Drop(DropReason::IcmpBadEmbedded) };
        // About a tunnel's outer packet (GUE: to a GUE server's port).
        if q.proto == protocol::IPIP || q.proto == protocol::GRE || (q.proto == protocol::UDP && is_gue_quote(snap, &q)) {
            return self.tunnel_error(snap, frame, &e, q, handed);
        }
        if q.proto != protocol::TCP && q.proto != protocol::UDP {
            return if snap.is_self(dst) { Verdict::Punt } else { Verdict::Drop(DropReason::IcmpNoFlow) };
        }
        self.icmp_error(snap, frame, &e, q, handed)
    }

    /// An error quoting TCP/UDP: to the owner, then looked up by the
    /// quoted header reversed.
    fn icmp_error(&mut self, snap: &Snapshot, frame: &mut [u8], e: &Error, q: Quote, handed: bool) -> Verdict {
        // An error goes to the sender of the datagram it quotes (RFC 792,
        // RFC 1812 §4.3.2.3): one to any other address would have the box
        // send it on from the VIP, a reflection.
        if e.dst != q.src {
            return if snap.is_self(e.dst) { Verdict::Punt } else { Verdict::Drop(DropReason::IcmpBadEmbedded) };
        }
        if !handed && self.config.workers > 1 {
            let o = owner(snap, &self.owners, q.dst, q.dport, q.src, q.sport, q.proto);
            if o != self.config.id {
                return Verdict::Handoff(o);
            }
        }
        let key = FlowKey { src_ip: q.dst, dst_ip: q.src, src_port: q.dport, dst_port: q.sport, proto: q.proto };
        let Some((id, dir)) = self.lookup_live(snap, &key, self.table.hash(&key)) else {
            if let Some(v) = self.xlate_icmp(snap, frame, e, &q) {
                return v;
            }
            let to_box = snap.is_self(e.dst) || snap.is_vip(e.dst);
            return if snap.is_self(e.dst) {
                Verdict::Punt
            } else if to_box || snap.is_local(e.dst) || snap.is_host_source(e.dst) {
                Verdict::Drop(DropReason::IcmpNoFlow)
            } else {
                // An error about traffic in transit goes its way too.
                self.transit(snap, frame, e.l3, e.link, e.src, e.dst).unwrap_or(Verdict::Drop(DropReason::IcmpNoFlow))
            };
        };
        let Some(f) = self.table.get(id) else { return Verdict::Drop(DropReason::IcmpNoFlow) };
        let f = *f;
        if e.ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        // Direct server return, about a packet the server sent the client:
        // it sent it from the VIP, so the quote is already the server's;
        // the error goes to it as the mode's data goes (Katran does so
        // with "packet too big" to a VIP).
        if dir == Dir::Original && f.mode.is_dsr() {
            return self.dsr_error(snap, frame, e, &f);
        }
        if f.mode.is_local() {
            // An error arrives as the packets its quote answers would:
            // from the client's side or the server's link, never the host.
            if !super::classify::local_link_ok(snap, Some(&f), dir, e.link) {
                return Verdict::Drop(DropReason::LocalWrongLink);
            }
            return local_error(snap, frame, &f, dir);
        }
        self.translate(snap, frame, e, q, id, dir, &f)
    }

    /// An ICMPv4 error about a translated connection's packet (`xlate`):
    /// only fragmentation needed is translated, into Packet Too Big with
    /// the MTU plus 20 (RFC 7915 §4.2; at least 1280, at most the next
    /// link's), for the IPv6 end of the connection. About a packet the box
    /// sent an IPv4 server (quoting local -> server), from the servers'
    /// link, it goes to the IPv6 client; about one it sent an IPv4 client
    /// (quoting VIP -> client), from the client's link and for TCP with a
    /// sequence number in flight (RFC 5927), to the IPv6 server. None: not
    /// about a translated connection.
    fn xlate_icmp(&mut self, snap: &Snapshot, frame: &[u8], e: &Error, q: &Quote) -> Option<Verdict> {
        use crate::forward::xlate::mapped;
        let to_client = snap.is_local6(mapped(q.src));
        if !to_client && snap.owner_service6(mapped(q.src), q.sport, q.proto).is_none() {
            return None;
        }
        let v6 = self.v6.as_mut()?;
        let key = FlowKey { src_ip: mapped(q.dst), dst_ip: mapped(q.src), src_port: q.dport, dst_port: q.sport, proto: q.proto };
        let hash = v6.table.hash(&key);
        let (id, dir) = v6.lookup_live(snap, &key, hash)?;
        let f = *v6.table.get(id)?;
        let no = Some(Verdict::Drop(DropReason::IcmpXlateNotRelayed));
        let server = snap.servers.get(f.server_slot())?;
        let (want, from) = if to_client { (Dir::Reply, server.tx_port) } else { (Dir::Original, u16::from(f.client_port_id)) };
        if dir != want {
            return no;
        }
        if from != e.link {
            return Some(Verdict::Drop(DropReason::ReplyWrongLink));
        }
        // Only an error about a segment in flight toward the client; and
        // none about UDP from there: the server's path MTU to the local
        // address is every client's (as for IPv6 full-NAT, `icmp6`).
        if !to_client && (q.proto == protocol::UDP || !v6.table.track(id).is_none_or(|t| quoted_seq_plausible(&t, q.seq))) {
            return Some(Verdict::Drop(DropReason::IcmpOutOfWindow));
        }
        let msg = frame.get(e.l3 + e.hl..e.l3 + e.hl + icmp::HEADER_LEN)?;
        let (ty, code, mtu4) = (msg.first().copied()?, msg.get(1).copied()?, u16::from_be_bytes([msg.get(6).copied()?, msg.get(7).copied()?]));
        if ty != icmp::kind::DEST_UNREACHABLE || code != icmp::unreachable::FRAG_NEEDED || mtu4 < 68 {
            return no;
        }
        // Both headers become IPv6's 40 bytes: options longer than that
        // are not translated.
        if crate::forward::xlate::ptb_growth(e.hl, q.hl).is_none() {
            return Some(Verdict::Drop(DropReason::XlateHeaders));
        }
        let port = if to_client { u16::from(f.client_port_id) } else { server.tx_port };
        let link_mtu = snap.port(port).map_or(1500, |p| p.mtu);
        let mtu = mtu4.saturating_add(crate::forward::xlate::DELTA as u16).min(link_mtu).max(crate::forward::tunnel6::MIN_MTU as u16);
        let n = e.ip_len.checked_sub(e.hl + icmp::HEADER_LEN + q.hl)?;
        Some(Verdict::XlateError(super::XlateError { id, port, l3: e.l3 as u8, hl: e.hl as u8, qhl: q.hl as u8, n: n as u16, mtu, to4: false, to_server: !to_client }))
    }

    /// NAT and full-NAT (and DSR errors about packets sent to the server):
    /// outer and quoted headers rewritten for the other side (RFC 5508 §4).
    #[allow(clippy::too_many_arguments, reason = "one error's parts, each used once")]
    fn translate(&mut self, snap: &Snapshot, frame: &mut [u8], e: &Error, q: Quote, id: crate::conntrack::FlowId, dir: Dir, f: &Flow) -> Verdict {
        let (out_port, dst_mac, outer_src, outer_dst, in_src, in_dst) = match dir {
            // About a packet sent to the server: goes to the client, as if
            // the VIP had sent it back.
            Dir::Reply => (f.client_port_id as u16, EthernetAddress(f.client_mac), Some(f.vip), (f.mode == Forwarding::FullNat).then_some(f.client_ip), (f.client_ip, f.client_port), (f.vip, f.vport)),
            // About a packet sent to the client: goes to the server.
            Dir::Original => {
                let Some(server) = snap.servers.get(f.server_slot()) else { return Verdict::Drop(DropReason::NoServer) };
                let Some(mac) = self.neighbors.get(server.nexthop) else { return Verdict::Drop(DropReason::NeighborUnresolved) };
                let full_nat = f.mode == Forwarding::FullNat;
                (server.tx_port, mac, full_nat.then_some(f.local_ip), Some(f.server_ip), (f.server_ip, f.server_port), (f.local_ip, f.local_port))
            }
        };
        // RFC 5927 §4.1: an error about a segment to the client quotes a
        // sequence number the server sent and the client has not yet
        // acknowledged, as the box saw them; a blind guess goes no further.
        if dir == Dir::Original && q.proto == protocol::TCP && !self.table.track(id).is_none_or(|t| quoted_seq_plausible(&t, q.seq)) {
            return Verdict::Drop(DropReason::IcmpOutOfWindow);
        }
        let Some(out) = snap.port(out_port) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        let xlate = nat::IcmpXlate { l3: e.l3, hl: e.hl, ip_len: e.ip_len, inner_hl: q.hl, outer_src, outer_dst, inner_src: in_src, inner_dst: in_dst };
        if !nat::translate_icmp_error(frame, &xlate) {
            return Verdict::Drop(DropReason::IcmpBadEmbedded);
        }
        // SYN proxy: the quoted segment went to the client with its
        // sequence number in the client's view; the server's TCP accepts
        // only its own (Linux's tcp_v4_err checks SND.UNA..SND.NXT).
        if dir == Dir::Original && q.proto == protocol::TCP && f.flags.contains(EntryFlags::SYN_PROXY) {
            if let Some(t) = self.table.proxy(id).filter(|t| t.proxy & PROXY_OPEN != 0) {
                let s = super::synproxy::shift_of(t);
                if !nat::icmp_xlate::shift_quoted_seq(frame, &xlate, s.seq) {
                    return Verdict::Drop(DropReason::IcmpBadEmbedded);
                }
            }
        }
        // PROXY header: the quoted segment went to the server past the
        // header; the client knows its own numbers.
        if dir == Dir::Reply && q.proto == protocol::TCP && f.flags.contains(EntryFlags::PROXY_HEADER) {
            if let Some((at, acked)) = self.pheader_at(id) {
                let delta = nat::proxy_header::client_view(q.seq, at, acked).wrapping_sub(q.seq);
                if delta != 0 && !nat::icmp_xlate::shift_quoted_seq(frame, &xlate, delta) {
                    return Verdict::Drop(DropReason::IcmpBadEmbedded);
                }
            }
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(out.mac);
        Verdict::Forward(out_port)
    }

    /// A DSR error for the server (see `icmp_error`): the quote untouched;
    /// `dsr-l2` changes the MAC only, `dsr-dscp` the destination (the
    /// server's address) and the DSCP naming the VIP, TTL down, and
    /// `dsr-tunnel` encapsulates it as the connection's packets are.
    fn dsr_error(&mut self, snap: &Snapshot, frame: &mut [u8], e: &Error, f: &Flow) -> Verdict {
        let Some(server) = snap.servers.get(f.server_slot()) else { return Verdict::Drop(DropReason::NoServer) };
        let Some(mac) = self.neighbors.get(server.nexthop) else { return Verdict::Drop(DropReason::NeighborUnresolved) };
        let Some(out) = snap.port(server.tx_port) else { return Verdict::Drop(DropReason::NoServer) };
        let Some(h) = frame.get_mut(e.l3..e.l3 + e.hl) else { return Verdict::Drop(DropReason::Ipv4Truncated) };
        let mut encap = None;
        match f.mode {
            Forwarding::DsrL2 => {}
            Forwarding::DsrDscp => {
                nat::rewrite_addrs(h, None, Some(f.server_ip), true);
                if let Some(v) = snap.services.get(f.vs as usize) {
                    nat::set_dscp(h, v.dscp);
                }
            }
            Forwarding::DsrTunnel => {
                let Some(outer) = self.tunnel_outer(snap, f) else { return Verdict::Drop(DropReason::NoVirtualServer) };
                if e.ip_len + outer.kind.overhead() > out.mtu as usize {
                    return Verdict::Drop(DropReason::TunnelTooBig);
                }
                encap = Some(Encap { port: server.tx_port, l3: e.l3 as u8, ip_len: e.ip_len as u16, outer });
            }
            _ => return Verdict::Drop(DropReason::NoVirtualServer),
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(mac);
        eth.set_src_addr(out.mac);
        encap.map_or(Verdict::Forward(server.tx_port), Verdict::Encap)
    }

    /// The outer header of `f`'s packets (`forwarding`'s `dsr-tunnel`
    /// case): one per flow, from the client's address and port.
    fn tunnel_outer(&self, snap: &Snapshot, f: &Flow) -> Option<nat::Outer> {
        let t = snap.services.get(f.vs as usize)?.tunnel?;
        let out = snap.port(snap.servers.get(f.server_slot())?.tx_port)?;
        Some(super::forwarding::tunnel_outer(&t, out.self_ip, f.client_ip, f.client_port, f.proto, f.server_ip))
    }

    /// An error about a `dsr-tunnel` packet on its way to the server (RFC
    /// 2003 §4): the quote holds the outer header the box wrote, the
    /// tunnel's, then the client's packet. Fragmentation needed is relayed
    /// to the client with the reported MTU less the encapsulation, when
    /// the outer header is exactly the one the box sends for that
    /// connection (so no one makes the box lower a path it does not
    /// use); the rest is dropped as `icmp-tunnel-not-relayed`, or
    /// `icmp-no-flow` when no connection sent the quoted outer header.
    fn tunnel_error(&mut self, snap: &Snapshot, frame: &mut [u8], e: &Error, q: Quote, handed: bool) -> Verdict {
        let (quote_at, end) = (e.quote_at(), e.l3 + e.ip_len);
        let tunnel_at = quote_at + q.hl;
        let inner_at = match q.proto {
            protocol::IPIP => tunnel_at,
            // RFC 2784 §2.1: no options, IPv4 inside.
            protocol::GRE if frame.get(tunnel_at..(tunnel_at + GRE_LEN).min(end)) == Some(&[0, 0, 0x08, 0x00][..]) => tunnel_at + GRE_LEN,
            protocol::UDP => tunnel_at + UDP_LEN,
            _ => return Verdict::Drop(DropReason::IcmpNoFlow),
        };
        let not_relayed = Verdict::Drop(DropReason::IcmpTunnelNotRelayed);
        let Some(inner) = frame.get(inner_at..end).and_then(Quote::parse) else { return not_relayed };
        if inner.proto != protocol::TCP && inner.proto != protocol::UDP {
            return not_relayed;
        }
        if !handed && self.config.workers > 1 {
            let o = owner(snap, &self.owners, inner.src, inner.sport, inner.dst, inner.dport, inner.proto);
            if o != self.config.id {
                return Verdict::Handoff(o);
            }
        }
        let key = FlowKey { src_ip: inner.src, dst_ip: inner.dst, src_port: inner.sport, dst_port: inner.dport, proto: inner.proto };
        let no_flow = Verdict::Drop(DropReason::IcmpNoFlow);
        let f = match self.lookup_live(snap, &key, self.table.hash(&key)).and_then(|(id, dir)| self.table.get(id).filter(|_| dir == Dir::Original)) {
            Some(f) => *f,
            None => return no_flow,
        };
        let outer = self.tunnel_outer(snap, &f).filter(|_| f.mode == Forwarding::DsrTunnel);
        let ours = outer.is_some_and(|o| (o.src, o.dst) == (q.src, q.dst) && (q.proto != protocol::UDP || (o.sport, o.dport) == (q.sport, q.dport)));
        let Some(outer) = outer.filter(|_| ours) else { return no_flow };
        let Some(msg) = frame.get(e.l3 + e.hl..end).map(IcmpPacket::new_unchecked) else { return no_flow };
        let reported = msg.next_hop_mtu();
        // RFC 1191 §4; a router older than it reports 0: nothing to relay.
        if (msg.msg_type(), msg.msg_code()) != (icmp::kind::DEST_UNREACHABLE, icmp::unreachable::FRAG_NEEDED) || reported == 0 {
            return not_relayed;
        }
        let mtu = reported.saturating_sub(outer.kind.overhead() as u16).max(MIN_MTU);
        // The client's packet to where `build_frag_needed` expects it.
        frame.copy_within(inner_at..end, e.l3);
        Verdict::Relay(Relay { link: f.client_port_id as u16, mac: EthernetAddress(f.client_mac), l3: e.l3 as u8, hl: inner.hl as u8, mtu })
    }
}

/// RFC 5927 §4.1 from the middle: whether `seq`, quoted by an error about
/// a server's segment to the client, lies in the server's SND.UNA ..=
/// SND.NXT as the box saw them (the client's highest acknowledgment, the
/// server's highest sequence number sent; for a proxied connection both
/// in the client's view, as the quote is). With nothing seen of the
/// server (an entry from the HA peer: the marks are 0) it passes, as a
/// reset does then; with no acknowledgment from the client yet, the
/// largest window (RFC 7323 §2.3: 2^30) before SND.NXT counts.
pub(super) fn quoted_seq_plausible(t: &crate::conntrack::track::Track, seq: u32) -> bool {
    // Indexed by `Dir`: [Original, Reply].
    let ([una, _], [_, nxt]) = (t.ack, t.end);
    if nxt == 0 {
        return true;
    }
    let una = if una == 0 { nxt.wrapping_sub(1 << 30) } else { una };
    seq.wrapping_sub(una) <= nxt.wrapping_sub(una)
}

/// Whether a quoted UDP header is a GUE tunnel's: to the GUE port of a
/// `dsr-tunnel` service, at one of its servers. (A server's address is
/// looked up first, by binary search: errors quoting other UDP cost no
/// walk of the services.)
fn is_gue_quote(snap: &Snapshot, q: &Quote) -> bool {
    snap.is_server_address(q.dst) && snap.services.iter().any(|v| {
        v.forwarding == Forwarding::DsrTunnel
            && v.tunnel.is_some_and(|t| t.kind == nat::TunnelKind::Gue && t.port == q.dport)
            && v.members.iter().any(|&m| snap.servers.get(m as usize).is_some_and(|s| s.ip == q.dst))
    })
}

#[cfg(test)]
mod tests;

/// An error about a packet the appliance's own stack sent (a `Local`
/// connection's answer to its client, a `LocalOut` connection's packet to
/// its server): to the host link untouched, where the kernel checks it as
/// any host does (RFC 5927 §4.1; Linux's `tcp_v4_err`) and learns the path
/// MTU from it. Nothing else of those connections sends errors here.
fn local_error(snap: &Snapshot, frame: &mut [u8], f: &Flow, dir: Dir) -> Verdict {
    let about_stack = matches!((f.mode, dir), (Forwarding::Local, Dir::Original) | (Forwarding::LocalOut, Dir::Reply));
    let Some((link, mac)) = snap.host_link().and_then(|l| snap.port(l).map(|pv| (l, pv.mac))).filter(|_| about_stack) else { return Verdict::Drop(DropReason::IcmpNoFlow) };
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst_addr(mac);
    eth.set_src_addr(mac);
    Verdict::Forward(link)
}
