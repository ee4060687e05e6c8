//! Translation between the families at a full-NAT virtual server (RFC
//! 7915; `forward::xlate`): an IPv6 VIP over IPv4 servers, an IPv4 VIP over
//! IPv6 servers. The connections live in the IPv6 shard's table with
//! their IPv4 side as mapped addresses; an IPv4 packet for one (to a
//! translating VIP, or an answer to a translating local address's port) is
//! handed to that shard here with its addresses mapped, and a packet the
//! flow path marked `Verdict::Xlate` has its header changed here, in
//! `process_packet`, growing or shrinking the buffer at the head.

use super::{L4Info, Shard, Verdict};
use crate::forward::xlate::{self as x, mapped, unmapped};
use crate::io::Packet;
use crate::state::counters::DropReason;
use crate::state::snapshot::Snapshot;
use crate::wire::ethernet::{EthernetAddress, EthernetFrame};

/// A translated connection's packet for `process_packet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xlate {
    /// The entry in the IPv6 table.
    pub id: crate::conntrack::FlowId,
    /// Toward the client (from the VIP) rather than the server.
    pub reply: bool,
    pub port: u16,
    /// The packet as received: its IP header's offset and length, its
    /// length.
    pub l3: u8,
    pub hl: u8,
    pub ip_len: u16,
}

/// An ICMP error about a translated connection's packet to its server,
/// for its client in the other family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XlateError {
    pub id: crate::conntrack::FlowId,
    /// The link to the client.
    pub port: u16,
    pub l3: u8,
    /// The error's IPv4 header length, and the quoted header's.
    pub hl: u8,
    pub qhl: u8,
    /// Transport bytes quoted.
    pub n: u16,
    /// The MTU to tell the client (the IPv4 one plus 20, or the IPv6 one
    /// less 20).
    pub mtu: u16,
    /// An ICMPv6 Packet Too Big (`hl` and `qhl` 40) to turn into ICMPv4
    /// fragmentation needed, rather than the reverse.
    pub to4: bool,
    /// For the server (an error from the client's side about a packet to
    /// the client), out of `port` to its next hop; else for the client.
    pub to_server: bool,
}

/// The local ports of a translating IPv4 local address (a link's self
/// address) the IPv6 table hands out; IPv4 full-NAT keeps the lower ones
/// of that address (`adopt`), so a server's answer names its table by its
/// port alone.
pub const XLATE_PORT_MIN: u16 = 32768;

impl Shard {
    /// An IPv4 TCP/UDP packet of a translated connection (`classify`): to
    /// a translating VIP, or to a translating local address's port.
    /// Looked up and forwarded by the IPv6 shard, its addresses mapped;
    /// the owner was the IPv4 path's (`handed`).
    pub(super) fn xlate_in(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, link: u16, ttl: u8) -> Verdict {
        let Some(v6) = self.v6.as_mut() else { return Verdict::Drop(DropReason::NoVirtualServer) };
        let info = L4Info { l3: p.l3, hl: p.hl, proto: p.proto, src: mapped(p.src), dst: mapped(p.dst), sport: p.sport, dport: p.dport, tcp_flags: p.tcp_flags, ip_len: p.ip_len, seg: p.seg };
        v6.flow(snap, frame, &info, (link, ttl), true, false)
    }

    /// `Verdict::Xlate`: the packet's header becomes the other family's,
    /// with the entry's addresses of that side (`forward::xlate`).
    pub(super) fn xlate<P: Packet>(&mut self, _snap: &Snapshot, pkt: &mut P, t: Xlate) -> Verdict {
        let no = Verdict::Drop(DropReason::XlateNoRoom);
        let Some(f) = self.v6.as_ref().and_then(|v6| v6.table.get(t.id)) else { return Verdict::Drop(DropReason::TcpNoFlow) };
        let (src, dst) = if t.reply { ((f.vip, f.vport), (f.client_ip, f.client_port)) } else { ((f.local_ip, f.local_port), (f.server_ip, f.server_port)) };
        let (l3, ip_len) = (usize::from(t.l3), usize::from(t.ip_len));
        let to4 = (unmapped(src.0), unmapped(dst.0));
        if !pkt.set_len(l3 + ip_len) {
            return no;
        }
        match to4 {
            // IPv6 in, IPv4 out.
            (Some(s), Some(d)) => {
                if x::v6_to_v4(pkt.data_mut(), l3, ip_len, (s, src.1), (d, dst.1)).is_none() || !pkt.adj(x::DELTA) {
                    return no;
                }
            }
            // IPv4 in, IPv6 out.
            (None, None) => {
                if !pkt.prepend(x::DELTA) || x::v4_to_v6(pkt.data_mut(), l3, ip_len, src, dst).is_none() {
                    return no;
                }
            }
            _ => return no,
        }
        Verdict::Forward(t.port)
    }

    /// `Verdict::XlateError`: fragmentation needed from the IPv4 servers'
    /// side becomes Packet Too Big to the IPv6 client, from the VIP,
    /// quoting the client's packet as it sent it.
    pub(super) fn xlate_error<P: Packet>(&mut self, snap: &Snapshot, pkt: &mut P, e: XlateError) -> Verdict {
        let no = Verdict::Drop(DropReason::IcmpXlateNotRelayed);
        let Some(f) = self.v6.as_ref().and_then(|v6| v6.table.get(e.id)).copied() else { return no };
        let Some(mac) = snap.port(e.port).map(|p| p.mac) else { return no };
        // To the server: from the local address, quoting what the server
        // sent it; to the client: from the VIP, quoting what it sent.
        let (outer, qs, qd) = if e.to_server { ((f.local_ip, f.server_ip), (f.server_ip, f.server_port), (f.local_ip, f.local_port)) } else { ((f.vip, f.client_ip), (f.client_ip, f.client_port), (f.vip, f.vport)) };
        let dst_mac = if e.to_server {
            match snap.servers.get(f.server_slot()).and_then(|s| self.neighbors.get(s.nexthop)) {
                Some(m) => m,
                None => return Verdict::Drop(DropReason::NeighborUnresolved),
            }
        } else {
            EthernetAddress(f.client_mac)
        };
        let l3 = usize::from(e.l3);
        if e.to4 {
            let (Some(o0), Some(o1), Some(s), Some(d)) = (unmapped(outer.0), unmapped(outer.1), unmapped(qs.0), unmapped(qd.0)) else { return no };
            let a = x::ErrorAddrs4 { outer: (o0, o1), quoted_src: (s, qs.1), quoted_dst: (d, qd.1) };
            let Some(len) = x::frag_needed_from_ptb(pkt.data_mut(), l3, usize::from(e.n), e.mtu, &a) else { return no };
            if !pkt.set_len(len + x::PTB_SHRINK) || !pkt.adj(x::PTB_SHRINK) {
                return no;
            }
        } else {
            let a = x::ErrorAddrs { outer, quoted_src: qs, quoted_dst: qd };
            let (hl, qhl) = (usize::from(e.hl), usize::from(e.qhl));
            let Some(grow) = x::ptb_growth(hl, qhl) else { return no };
            if !pkt.prepend(grow) {
                return no;
            }
            let Some(len) = x::ptb_from_frag_needed(pkt.data_mut(), l3, (hl, qhl), usize::from(e.n), u32::from(e.mtu), &a) else { return no };
            if !pkt.set_len(len) {
                return no;
            }
        }
        let mut eth = EthernetFrame::new_unchecked(pkt.data_mut());
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(mac);
        self.counters.frag_needed.inc();
        Verdict::Forward(e.port)
    }
}

#[cfg(test)]
mod tests;
