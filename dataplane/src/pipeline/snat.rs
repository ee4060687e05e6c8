//! Source NAT of the servers' own connections (`[[snat]]`, seeds 002 and
//! 004: the servers behind a NAT box reach the outside world for updates,
//! DNS and mail through it, while from outside nothing but the VIP ports
//! passes). A server's first packet to a host that is no VIP or address of
//! the box opens an entry: the source becomes the rule's address and one
//! of its ports, the packet is routed by its destination; the answer, to
//! that address and port, gets the server's address back and goes to the
//! MAC the server sent from. A connection from outside to a server's own
//! address matches nothing and is dropped as `no-virtual-server`.

use super::{L4Info, Shard, Verdict};
use crate::conntrack::{Dir, EntryFlags, FlowId, FlowInit, InsertError};
use crate::ctl::events::SyncKind;
use crate::forward as nat;
use crate::state::counters::DropReason;
use crate::state::snapshot::{Forwarding, SnatRule, Snapshot};
use crate::wire::ethernet::{EthernetAddress, EthernetFrame};
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags as tcpf;

/// The service and server index of a source-NAT entry: none (no
/// virtual-server or server counters).
pub(super) const NO_INDEX: u16 = u16::MAX;

/// The entry of a connection whose packets keep their addresses (the
/// sender's side is its "client", the destination its "server"), from
/// `in_link` and the frame's source MAC.
#[inline]
pub(super) fn untranslated(frame: &[u8], p: &L4Info, vs: u16, in_link: u16, flags: EntryFlags, mode: Forwarding) -> FlowInit {
    FlowInit {
        proto: p.proto,
        client_ip: p.src,
        client_port: p.sport,
        vip: p.dst,
        vport: p.dport,
        server_ip: p.dst,
        server_port: p.dport,
        local_ip: p.src,
        local_port: p.sport,
        vs,
        server: NO_INDEX,
        client_port_id: in_link as u8,
        client_mac: EthernetFrame::new_unchecked(frame).src_addr().0,
        flags,
        mode,
    }
}

impl Shard {
    /// A server's first packet out under `rule`: a port of the rule's
    /// address, the entry, the packet forwarded.
    pub(super) fn new_snat(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, rule: SnatRule, in_link: u16) -> Verdict {
        if p.proto == protocol::TCP && p.tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) != tcpf::SYN {
            return Verdict::Drop(DropReason::TcpNoFlow);
        }
        if frame.get(p.l3 + p.hl..p.l3 + p.ip_len).is_none() {
            return Verdict::Drop(DropReason::Ipv4BadTotalLength);
        }
        if !super::classify::l4_checksum_ok(frame, p) {
            return Verdict::Drop(DropReason::L4BadChecksum);
        }
        if !self.make_room(snap, NO_INDEX, p.proto) {
            return Verdict::Drop(DropReason::FlowTableFull);
        }
        let Some((local_ip, local_port)) = self.local_ports.alloc(&[rule.addr]) else { return Verdict::Drop(DropReason::NoLocalPort) };
        let init = FlowInit { local_ip, local_port, ..untranslated(frame, p, NO_INDEX, in_link, EntryFlags::empty(), Forwarding::Snat) };
        let id = match self.table.insert_after_miss(&init, self.now) {
            Ok(id) => id,
            Err(e) => {
                self.local_ports.free(local_ip, local_port);
                return Verdict::Drop(match e {
                    InsertError::Full => DropReason::FlowTableFull,
                    InsertError::Exists => DropReason::FlowExists,
                });
            }
        };
        self.counters.flows.inc();
        self.counters.snat.inc();
        self.emit_flow(SyncKind::Create, id);
        self.forward_snat(snap, frame, p, id, Dir::Original)
    }

    /// Where a routed packet to `dst` leaves: the link of its route and
    /// the next hop's MAC (the gateway's, or `dst`'s own on the link).
    pub(super) fn route_out(&self, snap: &Snapshot, dst: u32) -> Result<(u16, EthernetAddress), Verdict> {
        let route = snap.route(dst).ok_or(Verdict::Drop(DropReason::NoVirtualServer))?;
        let mac = match route.via {
            Some(slot) => self.neighbors.get(slot),
            None => self.neighbors.host(route.link, dst),
        };
        mac.map(|m| (route.link, m)).ok_or(Verdict::Drop(DropReason::NeighborUnresolved))
    }

    /// A packet of a source-NAT connection: out, the rule's address and
    /// port as source, routed; back, the server's address and port as
    /// destination, to its MAC on its link.
    pub(super) fn forward_snat(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, id: FlowId, dir: Dir) -> Verdict {
        if let Err(v) = self.account(id, dir, p) {
            return v;
        }
        let Some(f) = self.table.get(id) else { return Verdict::Drop(DropReason::TcpNoFlow) };
        let (client_ip, client_port, client_mac, client_link, local_ip, local_port) = (f.client_ip, f.client_port, f.client_mac, f.client_port_id as u16, f.local_ip, f.local_port);
        let (link, mac) = match dir {
            Dir::Original => match self.route_out(snap, p.dst) {
                Ok(hop) => hop,
                Err(v) => return v,
            },
            Dir::Reply => (client_link, EthernetAddress(client_mac)),
        };
        let Some(out) = snap.port(link) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        let Some(ip) = frame.get_mut(p.l3..p.l3 + p.ip_len) else { return Verdict::Drop(DropReason::Ipv4BadTotalLength) };
        match dir {
            Dir::Original => nat::rewrite(ip, p.hl, p.proto, Some((local_ip, local_port)), None, true),
            Dir::Reply => nat::rewrite(ip, p.hl, p.proto, None, Some((client_ip, client_port)), true),
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(mac);
        eth.set_src_addr(out.mac);
        Verdict::Forward(link)
    }
}
