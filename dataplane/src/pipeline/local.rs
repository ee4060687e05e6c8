//! The exception path (docs/architecture.md, "The exception path"): what
//! the box serves with its own network stack rather than forwards. A
//! virtual server of the appliance's own stack (`protocol = "http"`: the L7
//! engine) has its clients' connections delivered untouched to the host
//! link, a TAP whose kernel side lives in the appliance's network
//! namespace (`Forwarding::Local`: the entry is made as for NAT, its
//! "server" the host, so the SYN proxy, the unreplied caps and the punt
//! policing stand in front of the kernel as they stand in front of a
//! server); the stack's own connections, from its source addresses and
//! ephemeral ports (`forward::HOST_PORT_MIN..=HOST_PORT_MAX`), leave
//! untouched, routed by their destination as `[[snat]]`'s do
//! (`Forwarding::LocalOut`), their answers back to the host link.
//! `classify::local_link_ok` keeps each side of both to its link.

use super::snat::{untranslated, NO_INDEX};
use super::{L4Info, Shard, Verdict};
use crate::conntrack::{Dir, EntryFlags, FlowId, InsertError};
use crate::ctl::events::SyncKind;
use crate::state::counters::DropReason;
use crate::state::snapshot::{Forwarding, Snapshot};
use crate::wire::ethernet::{EthernetAddress, EthernetFrame};
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags as tcpf;

impl Shard {
    /// The entry of a client's new connection to a `Local` service: the
    /// packet's own addresses on both sides (nothing is translated), the
    /// host as its server.
    pub(super) fn open_local(&mut self, frame: &[u8], p: &L4Info, vs_index: u16, in_link: u16, flags: EntryFlags) -> Result<FlowId, Verdict> {
        let init = untranslated(frame, p, vs_index, in_link, flags, Forwarding::Local);
        let id = self.table.insert_after_miss(&init, self.now).map_err(|e| Verdict::Drop(insert_drop(e)))?;
        let c = &self.counters;
        c.flows.inc();
        c.local_in.inc();
        if let Some(v) = c.services.get(vs_index as usize) {
            v.conns_new.inc();
            v.conns_active.inc();
        }
        Ok(id)
    }

    /// A client's packet of a `Local` connection, accounted: to the host
    /// link, untouched but for its Ethernet addresses (and the SYN proxy's
    /// translation, done by the caller).
    pub(super) fn deliver_to_host(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, vs: u16) -> Verdict {
        let Some(link) = snap.host_link() else { return Verdict::Drop(DropReason::NoServer) };
        let Some(out) = snap.port(link) else { return Verdict::Drop(DropReason::NoServer) };
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        // The kernel side's MAC is the port's own (net_tap), and it takes
        // frames to it.
        eth.set_dst_addr(out.mac);
        eth.set_src_addr(out.mac);
        if let Some(c) = self.counters.services.get(vs as usize) {
            c.in_pkts.inc();
            c.in_bytes.add(p.ip_len as u64);
        }
        Verdict::Forward(link)
    }

    /// The stack's first packet of a connection out (a SYN, or a UDP
    /// datagram) from one of its sources: the entry, the packet routed.
    pub(super) fn new_local_out(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, in_link: u16) -> Verdict {
        if p.proto == protocol::TCP && p.tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) != tcpf::SYN {
            return Verdict::Drop(DropReason::HostUnmatched);
        }
        if frame.get(p.l3 + p.hl..p.l3 + p.ip_len).is_none() {
            return Verdict::Drop(DropReason::Ipv4BadTotalLength);
        }
        // The destination must be somewhere the box routes to, and not the
        // box itself.
        if snap.route(p.dst).is_none() || snap.is_self(p.dst) || snap.is_vip(p.dst) {
            return Verdict::Drop(DropReason::HostUnmatched);
        }
        if !self.make_room(snap, NO_INDEX, p.proto) {
            return Verdict::Drop(DropReason::FlowTableFull);
        }
        let init = untranslated(frame, p, NO_INDEX, in_link, EntryFlags::empty(), Forwarding::LocalOut);
        let id = match self.table.insert_after_miss(&init, self.now) {
            Ok(id) => id,
            Err(e) => return Verdict::Drop(insert_drop(e)),
        };
        self.counters.flows.inc();
        self.counters.local_out.inc();
        self.emit_flow(SyncKind::Create, id);
        self.forward_local_out(snap, frame, p, id, Dir::Original)
    }

    /// A packet of the stack's connection out: out, routed by its
    /// destination; back, to the host link. Nothing is translated.
    pub(super) fn forward_local_out(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, id: FlowId, dir: Dir) -> Verdict {
        if let Err(v) = self.account(id, dir, p) {
            return v;
        }
        let (link, mac) = match dir {
            Dir::Original => match self.route_out(snap, p.dst) {
                Ok(hop) => hop,
                Err(v) => return v,
            },
            Dir::Reply => {
                let Some(f) = self.table.get(id) else { return Verdict::Drop(DropReason::TcpNoFlow) };
                (f.client_port_id as u16, EthernetAddress(f.client_mac))
            }
        };
        let Some(out) = snap.port(link) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        // The box is an end of these connections, not a router on their
        // way: the TTL stays.
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(mac);
        eth.set_src_addr(out.mac);
        Verdict::Forward(link)
    }
}

#[inline]
fn insert_drop(e: InsertError) -> DropReason {
    match e {
        InsertError::Full => DropReason::FlowTableFull,
        InsertError::Exists => DropReason::FlowExists,
    }
}

#[cfg(test)]
mod tests;
