//! ICMP through the box: echo to it is punted, errors about a tracked
//! connection are translated (RFC 792; RFC 5508 §4 for what a NAT does
//! with them).

use super::owner::{owner, Owners};
use super::{Shard, Verdict};
use crate::conntrack::{Dir, FlowKey};
use crate::forward as nat;
use crate::state::counters::DropReason;
use crate::state::snapshot::{Forwarding, Snapshot};

use crate::wire::ethernet::{EthernetAddress, EthernetFrame};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet};

impl Shard {
    /// ICMP: echo to the box is punted (the control plane answers); errors
    /// about a tracked connection are translated, outer and embedded
    /// headers, and sent to the other side (RFC 792; RFC 5508 §4 for what
    /// a NAT does with them).
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
        let Some(msg) = frame.get(l4..l3 + ip_len) else { return Verdict::Drop(DropReason::IcmpTruncated) };
        let msg = IcmpPacket::new_unchecked(msg);
        // The embedded datagram is one the box sent; its reverse is a key.
        let (isrc, idst, iproto, ihl, isport, idport) = {
            let Ok(inner) = msg.embedded_ipv4() else { return Verdict::Drop(DropReason::IcmpBadEmbedded) };
            let ihl = inner.header_len();
            let Some(&[s0, s1, d0, d1]) = inner.payload().get(..4) else { return Verdict::Drop(DropReason::IcmpBadEmbedded) };
            let (sp, dp) = (u16::from_be_bytes([s0, s1]), u16::from_be_bytes([d0, d1]));
            (u32::from(inner.src_addr()), u32::from(inner.dst_addr()), inner.protocol(), ihl, sp, dp)
        };
        if iproto != protocol::TCP && iproto != protocol::UDP {
            return if snap.is_self(dst) { Verdict::Punt } else { Verdict::Drop(DropReason::IcmpNoFlow) };
        }
        if !handed && self.config.workers > 1 {
            let o = owner(snap, Owners::new(self.config.workers, self.config.owner_key), idst, idport, isrc, isport, iproto);
            if o != self.config.id {
                return Verdict::Handoff(o);
            }
        }
        let key = FlowKey { src_ip: idst, dst_ip: isrc, src_port: idport, dst_port: isport, proto: iproto };
        let Some((id, dir)) = self.table.lookup(&key, self.table.hash(&key)) else {
            return if snap.is_self(dst) {
                Verdict::Punt
            } else if to_box || snap.is_local(dst) {
                Verdict::Drop(DropReason::IcmpNoFlow)
            } else {
                // An error about traffic in transit goes its way too.
                self.transit(snap, frame, l3, link, src, dst).unwrap_or(Verdict::Drop(DropReason::IcmpNoFlow))
            };
        };
        let Some(f) = self.table.get(id) else { return Verdict::Drop(DropReason::IcmpNoFlow) };
        let f = *f;
        if ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let (out_port, dst_mac, outer_src, outer_dst, in_src, in_dst) = match dir {
            // About a packet sent to the server: goes to the client, as if
            // the VIP had sent it back.
            Dir::Reply => (
                f.client_port_id as u16,
                EthernetAddress(f.client_mac),
                Some(f.vip),
                (f.mode == Forwarding::FullNat).then_some(f.client_ip),
                (f.client_ip, f.client_port),
                (f.vip, f.vport),
            ),
            // About a packet sent to the client: goes to the server.
            Dir::Original => {
                let Some(server) = snap.servers.get(f.server as usize) else { return Verdict::Drop(DropReason::NoServer) };
                let Some(mac) = self.neighbors.get(server.nexthop) else { return Verdict::Drop(DropReason::NeighborUnresolved) };
                let full_nat = f.mode == Forwarding::FullNat;
                (server.tx_port, mac, full_nat.then_some(f.local_ip), Some(f.server_ip), (f.server_ip, f.server_port), (f.local_ip, f.local_port))
            }
        };
        let Some(out) = snap.port(out_port) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        let xlate = nat::IcmpXlate { l3, hl, ip_len, inner_hl: ihl, outer_src, outer_dst, inner_src: in_src, inner_dst: in_dst };
        if !nat::translate_icmp_error(frame, &xlate) {
            return Verdict::Drop(DropReason::IcmpBadEmbedded);
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(out.mac);
        Verdict::Forward(out_port)
    }
}
