//! What `process_packet` builds in place of the packet it holds, growing
//! or shrinking it: the outer headers of a tunnel, the refusals and ICMP
//! errors (rate limited: `Shard::answers`), the SYN proxy's segments and
//! the replay of a parked one.

use super::{synproxy, Encap, Encap6, Reject, Relay, Shard, TooBig, Verdict};
use crate::forward as nat;
use crate::io::Packet;
use crate::state::counters::DropReason;
use crate::state::snapshot::Snapshot;

impl Shard {
    /// Puts the outer headers of `e` in front of the packet's IPv4 header:
    /// the buffer grows at the head (`Packet::prepend`, into the mbuf's
    /// headroom) by what the encapsulation adds less what a VLAN tag or
    /// Ethernet padding took; the Ethernet addresses move with it.
    #[inline]
    pub(super) fn encapsulate<P: Packet>(&mut self, pkt: &mut P, e: Encap) -> Verdict {
        let (l3, ip_len) = (e.l3 as usize, e.ip_len as usize);
        let at = crate::wire::ethernet::HEADER_LEN + e.outer.kind.overhead();
        // Padding after the IPv4 packet goes; then the head grows by what
        // takes the inner header from `l3` to `at` (`at` > `l3`: the
        // encapsulation adds 20 bytes or more, a VLAN tag takes 4).
        if !pkt.set_len(l3 + ip_len) || !pkt.prepend(at - l3) {
            return Verdict::Drop(DropReason::TunnelNoHeadroom);
        }
        let frame = pkt.data_mut();
        // The old Ethernet header now starts at `at - l3`.
        frame.copy_within(at - l3..at - l3 + 12, 0);
        match nat::encapsulate(frame, ip_len, &e.outer) {
            Some(_) => Verdict::Forward(e.port),
            None => Verdict::Drop(DropReason::TunnelNoHeadroom),
        }
    }

    /// `encapsulate` for IPv6 (`forward::tunnel6`): the outer addresses
    /// from the snapshot (the server's; the self address of the link
    /// towards it).
    #[inline]
    pub(super) fn encapsulate6<P: Packet>(&mut self, snap: &Snapshot, pkt: &mut P, e: Encap6) -> Verdict {
        let no = Verdict::Drop(DropReason::TunnelNoHeadroom);
        let (Some(server), Some(out)) = (snap.servers.get(e.server as usize), snap.port(e.port)) else { return no };
        let outer = nat::Outer6 { kind: e.kind, src: out.v6.self_ip.to_be_bytes(), dst: server.ip6, hash: e.hash, dport: e.dport };
        let (l3, ip_len) = (e.l3 as usize, e.ip_len as usize);
        let at = crate::wire::ethernet::HEADER_LEN + e.kind.overhead6();
        if !pkt.set_len(l3 + ip_len) || !pkt.prepend(at - l3) {
            return no;
        }
        let frame = pkt.data_mut();
        frame.copy_within(at - l3..at - l3 + 12, 0);
        match nat::encapsulate6(frame, ip_len, &outer) {
            Some(_) => Verdict::Forward(e.port),
            None => no,
        }
    }

    /// Answers a packet too big for its tunnel with ICMP fragmentation
    /// needed out of `port`, resizing it (`forward::build_frag_needed`).
    #[cold]
    pub(super) fn too_big<P: Packet>(&mut self, snap: &Snapshot, pkt: &mut P, port: u16, t: TooBig) -> Verdict {
        let reason = if t.xlate { DropReason::XlateTooBig } else { DropReason::TunnelTooBig };
        if !self.answers.take(self.now) {
            self.counters.answers_limited.inc();
            return Verdict::Drop(reason);
        }
        self.counters.count_drop(reason);
        let Some(mac) = snap.port(port).map(|p| p.mac) else { return Verdict::Drop(reason) };
        let (l3, hl) = (t.l3 as usize, t.hl as usize);
        if t.len6 != 0 {
            // IPv6: Packet Too Big, never longer than the packet (`tunnel6`).
            let Some(len) = nat::build_packet_too_big6(pkt.data_mut(), l3, usize::from(t.len6), u32::from(t.mtu), mac) else { return Verdict::Drop(reason) };
            if !pkt.set_len(len) {
                return Verdict::Drop(reason);
            }
            self.counters.frag_needed.inc();
            return Verdict::Forward(port);
        }
        if pkt.data().len() < nat::frag_needed_len(l3, hl) {
            // Too big for the tunnel, yet shorter than an ICMP error:
            // only with a tunnel MTU below 68 (refused by check-config).
            return Verdict::Drop(reason);
        }
        let Some(len) = nat::build_frag_needed(pkt.data_mut(), l3, hl, t.mtu, mac) else { return Verdict::Drop(reason) };
        if !pkt.set_len(len) {
            return Verdict::Drop(reason);
        }
        self.counters.frag_needed.inc();
        Verdict::Forward(port)
    }

    /// Relays fragmentation needed about a tunnel packet to its client
    /// (`pipeline::icmp`, RFC 2003 §4): built in place from the client's
    /// quoted packet, from the VIP, sent to the client's MAC on its link.
    #[cold]
    pub(super) fn relay<P: Packet>(&mut self, snap: &Snapshot, pkt: &mut P, r: Relay) -> Verdict {
        let no = Verdict::Drop(DropReason::IcmpTunnelNotRelayed);
        if !self.answers.take(self.now) {
            self.counters.answers_limited.inc();
            return no;
        }
        let Some(mac) = snap.port(r.link).map(|p| p.mac) else { return no };
        let Some(len) = nat::build_frag_needed(pkt.data_mut(), r.l3 as usize, r.hl as usize, r.mtu, mac) else { return no };
        if !pkt.set_len(len) {
            return no;
        }
        crate::wire::ethernet::EthernetFrame::new_unchecked(pkt.data_mut()).set_dst_addr(r.mac);
        self.counters.frag_needed.inc();
        Verdict::Forward(r.link)
    }

    /// Turns a refused first packet into its answer (`forward::build_refusal`),
    /// resizing it, and sends it back out of `port`.
    #[cold]
    pub(super) fn refuse<P: Packet>(&mut self, snap: &Snapshot, pkt: &mut P, port: u16, r: Reject) -> Verdict {
        if !self.answers.take(self.now) {
            self.counters.answers_limited.inc();
            return Verdict::Drop(DropReason::NoServer);
        }
        let Some(mac) = snap.port(port).map(|p| p.mac) else { return Verdict::Drop(DropReason::NoServer) };
        let (l3, hl) = (r.l3 as usize, r.hl as usize);
        let need = nat::refusal_len(r.proto, l3, hl);
        if pkt.data().len() < need && !pkt.set_len(need) {
            return Verdict::Drop(DropReason::NoServer);
        }
        let Some(len) = nat::build_refusal(pkt.data_mut(), l3, hl, r.proto, mac) else { return Verdict::Drop(DropReason::NoServer) };
        if pkt.data().len() != len && !pkt.set_len(len) {
            return Verdict::Drop(DropReason::NoServer);
        }
        self.counters.count_drop(DropReason::NoServer);
        self.counters.rejected.inc();
        Verdict::Forward(port)
    }

    /// Writes the SYN proxy's segment (`rebuilt`) over the packet.
    #[inline]
    pub(super) fn rebuild<P: Packet>(&mut self, pkt: &mut P) -> Verdict {
        let r = self.rebuilt;
        let (l3, len) = (r.l3 as usize, r.out.frame_len(r.l3 as usize));
        if !pkt.set_len(len) {
            return Verdict::Drop(DropReason::SynProxyPending);
        }
        let frame = pkt.data_mut();
        let mut eth = crate::wire::ethernet::EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(r.dst_mac);
        eth.set_src_addr(r.src_mac);
        match r.out.write(frame, l3) {
            Some(()) => Verdict::Forward(r.link),
            None => Verdict::Drop(DropReason::SynProxyPending),
        }
    }

    /// Sends a parked client segment through the pipeline in place of the
    /// packet at hand (the server's SYN-ACK, which it answers).
    #[cold]
    pub(super) fn replay<P: Packet>(&mut self, snap: &Snapshot, pkt: &mut P, r: synproxy::Replay) -> Verdict {
        let mut buf = [0u8; synproxy::PARK_FRAME_BYTES];
        let Some((port, len)) = self.unpark(r, &mut buf) else { return Verdict::Drop(DropReason::SynProxyPending) };
        if !pkt.set_len(len) {
            return Verdict::Drop(DropReason::SynProxyPending);
        }
        let (Some(frame), Some(data)) = (pkt.data_mut().get_mut(..len), buf.get(..len)) else { return Verdict::Drop(DropReason::SynProxyPending) };
        frame.copy_from_slice(data);
        match self.process(snap, pkt.data_mut(), port, true) {
            Verdict::Forward(l) => Verdict::Forward(l),
            Verdict::Drop(d) => Verdict::Drop(d),
            _ => Verdict::Drop(DropReason::SynProxyPending),
        }
    }
}
